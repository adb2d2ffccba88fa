"""Fixtures shared by every test area."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("STAYTUNED_SHARED", REPO.parent / "shared"))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The ../shared folder beside the checkout (real datasets and tables); skip where absent."""
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} is absent: tests on the shared real data are skipped")
    return SHARED


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    # Keep model caches out of the user's home unless the runner set one on purpose
    # (scripts/test.sh sets STAYTUNED_CACHE so the dequantized SmolLM2 is reused across runs).
    os.environ.setdefault("STAYTUNED_CACHE", str(tmp_path_factory.mktemp("staytuned-cache")))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture()
def run_cli(tmp_path: Path):
    """Run the CLI in-process (typer CliRunner) inside tmp_path; returns the Result."""
    from typer.testing import CliRunner

    from staytuned.cli import build_app

    app = build_app()

    def run(*args: str):
        old = os.getcwd()
        os.chdir(tmp_path)
        try:
            return CliRunner().invoke(app, list(args))
        finally:
            os.chdir(old)

    return run


@pytest.fixture(scope="session")
def long_rows():
    """``rows(n, offset=0, chars=1400)``: classification rows (text, label yes/no) whose text is
    ``chars`` characters long, so each example fills a max_seq_length below that (one token per
    byte for the tiny models)."""
    words = ["staytuned", "plans", "memory", "before", "a", "trial", "starts", "so", "the", "study", "goes", "on"]

    def rows(n: int, offset: int = 0, chars: int = 1400) -> list[dict]:
        out = []
        for i in range(n):
            label = "yes" if i % 2 == 0 else "no"
            text = " ".join(words[(offset + i + j) % len(words)] for j in range(chars // 4))
            out.append({"text": f"{label}: {text}"[:chars], "label": label})
        return out

    return rows


#: Markers of tests that need a real server or browser: they belong to the slow tier by definition.
_SLOW_BY_NATURE = ("postgres", "browser", "ray")


@pytest.hookimpl(tryfirst=True)  # before -m deselects
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # `pytest -m "not slow"` (scripts/test.sh --fast) must never start PostgreSQL, Chromium or Ray.
    for item in items:
        if any(item.get_closest_marker(m) for m in _SLOW_BY_NATURE) and not item.get_closest_marker("slow"):
            item.add_marker(pytest.mark.slow)
