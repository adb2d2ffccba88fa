from __future__ import annotations

import os

from staytuned.search import worker


def test_threads_per_worker_splits_the_cores(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    assert [worker.threads_per_worker(n) for n in (1, 2, 3, 8, 16)] == [8, 4, 2, 1, 1]


def test_limit_threads_sets_the_pool_unless_the_user_did(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setenv("MKL_NUM_THREADS", "3")
    worker._limit_threads(1)
    assert os.environ["OMP_NUM_THREADS"] == "1"
    assert os.environ["MKL_NUM_THREADS"] == "3"


def test_for_worker_offsets_the_sampler_seed():
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class Spec:
        seed: int

    assert [worker.for_worker(Spec(5), i).seed for i in range(3)] == [5, 6, 7]
