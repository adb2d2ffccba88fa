"""Rewrite the hyperparameter tables in README.md and docs/CONTRACTS.md from the schema.

Each table sits between ``<!-- schema:SCOPE -->`` and ``<!-- /schema:SCOPE -->`` markers;
tests/hparams/test_schema.py fails when a table differs from ``markdown_table(SCOPE)``.
Usage: .venv/bin/python scripts/docs_tables.py
"""

from __future__ import annotations

import re
from pathlib import Path

from staytuned.hparams.schema import markdown_table

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    for doc in (ROOT / "README.md", ROOT / "docs" / "CONTRACTS.md"):
        text = doc.read_text(encoding="utf-8")
        for scope in ("train", "decode", "execution"):
            text = re.sub(rf"(<!-- schema:{scope} -->\n).*?(<!-- /schema:{scope} -->)",
                          lambda m, s=scope: m.group(1) + markdown_table(s) + "\n" + m.group(2),  # type: ignore[misc]
                          text, flags=re.S)
        doc.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
