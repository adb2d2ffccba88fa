"""tasks/templates/metrics import and work without torch, transformers or pandas (ROUGE aside)."""

from __future__ import annotations

import subprocess
import sys

CODE = r"""
import sys, types
from pathlib import Path
import staytuned
# Bypass staytuned/finetune/__init__.py (the trainer's, which may import torch).
pkg = types.ModuleType("staytuned.finetune")
pkg.__path__ = [str(Path(staytuned.__file__).parent / "finetune")]
sys.modules["staytuned.finetune"] = pkg
from staytuned.finetune.tasks import load_task
from staytuned.finetune.templates import build_chat_example
from staytuned.finetune.metrics import compute_metrics
task = load_task("squad")
rows = task.eval_rows("validation", 5)
prompt, target = build_chat_example(task, rows[0], None)
m = compute_metrics(task, [r["answers"][0] for r in rows], task.references(rows))
assert m["exact_match"] == 1.0, m
s = load_task("scitldr", template="TLDR: {document}")
heavy = sorted(m for m in ("torch", "transformers", "pandas", "datasets", "peft") if m in sys.modules)
print("heavy:", heavy)
# ROUGE imports rouge-score lazily (which itself pulls in nltk/scipy/pandas): only now.
m = compute_metrics(s, ["a b"], ["a b"])
assert m["rougeL"] == 1.0, m
assert "torch" not in sys.modules
"""


def test_light_modules_need_no_heavy_imports() -> None:
    res = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "heavy: []"
