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
