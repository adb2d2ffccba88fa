"""Shared fixtures of the decoding tests: one tiny model per session (random init, offline)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_backend():
    pytest.importorskip("torch")
    from staytuned.decoding.hf_backend import HFBackend

    return HFBackend.load("tiny-llama", device="cpu", batch_size=4, chat=False)
