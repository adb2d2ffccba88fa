"""Fixtures for the fine-tuning tests: a shared model cache and tiny in-memory tasks."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread() -> None:
    # Tiny models gain nothing from intra-op threads, and on a shared 2-core CI box extra
    # OpenMP threads spin against other processes (measured: 5x slower under load).
    try:
        import torch
    except ImportError:  # the light task/metric tests still run
        return
    torch.set_num_threads(1)


@pytest.fixture
def forward_inputs(monkeypatch):
    """``spy(model)`` records the ``input_ids`` shape of each of the model's forward calls; returns the list."""

    def spy(model) -> list[tuple[int, int]]:
        shapes: list[tuple[int, int]] = []
        real = model.forward

        def recording(*args, **kwargs):
            shapes.append(tuple(kwargs["input_ids"].shape))
            return real(*args, **kwargs)

        monkeypatch.setattr(model, "forward", recording)
        return shapes

    return spy


@pytest.fixture(scope="module")
def cache():
    from staytuned.finetune.trial import ModelCache

    c = ModelCache(device="cpu", max_models=2)
    yield c
    c.clear()


@pytest.fixture
def toy_task():
    """A trivially learnable classification task: the label is the first word of the text."""
    from staytuned.tasks import Task

    n_train, n_val = 24, 8

    def rows(n: int, offset: int) -> list[dict]:
        out = []
        for i in range(n):
            label = "yes" if i % 2 == 0 else "no"
            out.append({"text": f"{label} {offset + i}", "label": label})
        return out

    return Task(name="toy", type="classification",
                splits={"train": rows(n_train, 0), "validation": rows(n_val, 1000), "test": rows(n_val, 2000)},
                labels=["no", "yes"], template="{text}")
