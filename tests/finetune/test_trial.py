"""run_trial on tiny Llama/Mistral models: methods x task types, reuse, failures, pruning, memory."""

from __future__ import annotations

import gc
import json
import math

import pytest

torch = pytest.importorskip("torch")

from staytuned.errors import InputError  # noqa: E402
from staytuned.finetune import ModelCache, TrainConfig, TrialResult, run_trial  # noqa: E402

SMALL = {"epochs": 1, "max_seq_length": 96, "batch_size": 4}
METRICS = {"sst2": {"accuracy", "macro_f1"}, "scitldr": {"rouge1", "rouge2", "rougeL"}, "squad": {"f1", "exact_match"}}


@pytest.mark.parametrize("ref", ["tiny-llama", "tiny-mistral"])
@pytest.mark.parametrize("method", ["lora", "full"])
@pytest.mark.parametrize("task", ["sst2", "scitldr", "squad"])
def test_methods_and_task_types(ref: str, method: str, task: str, cache: ModelCache) -> None:
    result = run_trial(ref, task, {**SMALL, "method": method}, train_size=8, eval_size=4, model_cache=cache)
    assert result.status == "ok", result.error
    assert result.error is None
    assert set(result.metrics) == METRICS[task]
    assert result.metric == {"sst2": "accuracy", "scitldr": "rougeL", "squad": "f1"}[task]
    assert result.score == result.metrics[result.metric] and 0.0 <= result.score <= 1.0
    assert result.steps == 2 and [s for s, _ in result.loss_curve] == [1, 2]
    assert all(math.isfinite(v) and v > 0 for _, v in result.loss_curve)
    assert result.train_tokens_per_s > 0 and result.peak_memory_mb > 0 and result.runtime_s > 0
    assert (result.n_train, result.n_eval, result.train_size) == (8, 4, 8)
    assert result.config["method"] == method and result.model == ref and result.task == task
    json.dumps(result.to_dict())  # JSON-able as is


def _state(model) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("method", ["lora", "full"])
def test_base_weights_stay_bit_identical_and_adapters_start_fresh(method: str, cache: ModelCache) -> None:
    base = cache.get("tiny-llama").model
    before = _state(base)
    modules_before = [n for n, _ in base.named_modules()]
    cfg = {**SMALL, "method": method, "learning_rate": 5e-3, "epochs": 2}
    first = run_trial("tiny-llama", "sst2", cfg, train_size=8, eval_size=4, model_cache=cache)
    after = base.state_dict()
    assert first.status == "ok" and first.loss_curve[-1][1] != first.loss_curve[0][1]  # it did train
    assert after.keys() == before.keys()
    assert all(torch.equal(before[k], after[k]) for k in before), "base weights changed"
    assert [n for n, _ in base.named_modules()] == modules_before, "LoRA layers left behind"
    assert not any(p.requires_grad for p in base.parameters())
    second = run_trial("tiny-llama", "sst2", cfg, train_size=8, eval_size=4, model_cache=cache)
    # A leftover adapter would start the second trial from trained weights: its curve would differ.
    assert second.loss_curve == first.loss_curve and second.score == first.score
    assert cache.loads <= 2  # tiny-llama loaded once for all these trials


def test_a_different_seed_gives_a_different_adapter(cache: ModelCache) -> None:
    a = run_trial("tiny-llama", "sst2", {**SMALL, "seed": 0}, train_size=8, eval_size=4, model_cache=cache)
    b = run_trial("tiny-llama", "sst2", {**SMALL, "seed": 1}, train_size=8, eval_size=4, model_cache=cache)
    assert a.loss_curve != b.loss_curve


def test_global_rng_is_restored(cache: ModelCache) -> None:
    state = torch.random.get_rng_state()
    run_trial("tiny-llama", "sst2", SMALL, train_size=4, eval_size=2, model_cache=cache)
    assert torch.equal(state, torch.random.get_rng_state())


def test_fine_tuning_learns_a_toy_task(toy_task, cache: ModelCache) -> None:
    cfg = {"method": "full", "learning_rate": 3e-3, "epochs": 8, "batch_size": 8, "lr_scheduler": "constant"}
    untuned = run_trial("tiny-mistral", toy_task, cfg, eval_size=None, model_cache=cache, eval_only=True)
    tuned = run_trial("tiny-mistral", toy_task, cfg, eval_size=None, model_cache=cache, eval_test=True)
    assert untuned.status == tuned.status == "ok"
    assert untuned.steps == 0 and untuned.n_train == 0 and untuned.loss_curve == []
    assert tuned.score == 1.0 and tuned.score > untuned.score
    assert tuned.score_test == 1.0 and set(tuned.test_metrics) == {"accuracy", "macro_f1"}
    assert tuned.loss_curve[-1][1] < 0.2 * tuned.loss_curve[0][1]


@pytest.mark.parametrize("method", ["lora", "full"])
def test_nan_loss_from_an_absurd_learning_rate_fails_the_trial(method: str, cache: ModelCache) -> None:
    base = cache.get("tiny-llama").model
    before = _state(base)
    result = run_trial("tiny-llama", "sst2", {**SMALL, "method": method, "learning_rate": 1e30, "epochs": 3},
                       train_size=16, eval_size=4, model_cache=cache)
    assert result.status == "failed"
    assert "nan" in result.error or "inf" in result.error
    assert result.failed_step is not None and 1 <= result.failed_step < 12
    assert result.loss_curve[-1][0] == result.failed_step and not math.isfinite(result.loss_curve[-1][1])
    assert math.isnan(result.score)
    assert all(torch.equal(before[k], v) for k, v in base.state_dict().items())
    # the cache is still usable afterwards
    assert run_trial("tiny-llama", "sst2", SMALL, train_size=4, eval_size=2, model_cache=cache).status == "ok"


@pytest.mark.parametrize("config,needle", [
    ({"method": "lora", "lora_alpha": 0}, "lora_alpha"),
    ({"batch_size": 0}, "batch_size"),
    ({"lr_scheduler": "bogus"}, "lr_scheduler"),
    ({"learning_rat": 1e-4}, "unknown training hyperparameter"),
    ({"lora_target_modules": "no_such_proj"}, "no_such_proj"),
])
def test_invalid_hyperparameters_fail_with_a_clear_message(config: dict, needle: str, cache: ModelCache) -> None:
    result = run_trial("tiny-llama", "sst2", {**SMALL, **config}, train_size=4, eval_size=2, model_cache=cache)
    assert result.status == "failed"
    assert needle in result.error
    assert math.isnan(result.score)


def test_lora_fields_are_ignored_by_full(cache: ModelCache) -> None:
    result = run_trial("tiny-llama", "sst2", {**SMALL, "method": "full", "lora_alpha": 0},
                       train_size=4, eval_size=2, model_cache=cache)
    assert result.status == "ok"


def test_unknown_task_or_model_raise(cache: ModelCache) -> None:
    with pytest.raises(InputError):
        run_trial("tiny-llama", "no-such-task", SMALL, model_cache=cache)
    with pytest.raises(InputError, match="unknown model"):
        run_trial("no-such-model", "sst2", SMALL, model_cache=cache)


def test_on_epoch_scores_and_pruning(cache: ModelCache) -> None:
    seen: list[tuple[int, float]] = []

    def record(epoch: int, score: float) -> bool:
        seen.append((epoch, score))
        return False

    ok = run_trial("tiny-llama", "sst2", {**SMALL, "epochs": 2}, train_size=8, eval_size=4,
                   model_cache=cache, on_epoch=record)
    assert ok.status == "ok" and [e for e, _ in seen] == [1, 2]
    assert ok.epoch_scores == [s for _, s in seen] and ok.score == ok.epoch_scores[-1]
    pruned = run_trial("tiny-llama", "sst2", {**SMALL, "epochs": 3}, train_size=8, eval_size=4,
                       model_cache=cache, on_epoch=lambda e, s: True)
    assert pruned.status == "pruned" and pruned.steps == 2 and len(pruned.epoch_scores) == 1
    assert pruned.score == pruned.epoch_scores[0] and pruned.error is None


def test_save_adapter_and_full_model(tmp_path, cache: ModelCache) -> None:
    lora = run_trial("tiny-llama", "sst2", SMALL, train_size=4, eval_size=2, model_cache=cache,
                     save_dir=tmp_path / "lora")
    assert lora.saved_to == str(tmp_path / "lora")
    assert (tmp_path / "lora" / "adapter_config.json").is_file()
    assert (tmp_path / "lora" / "adapter_model.safetensors").is_file()
    meta = json.loads((tmp_path / "lora" / "staytuned-trial.json").read_text())
    assert meta["model"] == "tiny-llama" and meta["method"] == "lora"
    full = run_trial("tiny-llama", "sst2", {**SMALL, "method": "full"}, train_size=4, eval_size=2,
                     model_cache=cache, save_dir=tmp_path / "full")
    assert full.status == "ok"
    from staytuned.models import load_model

    reloaded, _ = load_model(str(tmp_path / "full"), device="cpu")
    assert type(reloaded).__name__ == "LlamaForCausalLM"


def test_loaded_model_and_config_object(cache: ModelCache) -> None:
    from staytuned.models import LoadedModel, load_model

    model, tok = load_model("tiny-mistral", device="cpu")
    for p in model.parameters():
        p.requires_grad_(False)
    result = run_trial(LoadedModel(model, tok, "mine"), "sst2", TrainConfig(**SMALL), train_size=4, eval_size=2)
    assert result.status == "ok" and result.model == "mine"
    assert isinstance(result, TrialResult)
    result2 = run_trial((model, tok), "sst2", SMALL, train_size=4, eval_size=2, label_scoring="generate")
    assert result2.status == "ok" and result2.label_scoring == "generate"


def _live_tensors() -> int:
    import warnings

    gc.collect()
    with warnings.catch_warnings():  # isinstance() pokes deprecated lazy torch attributes
        warnings.simplefilter("ignore")
        return sum(1 for o in gc.get_objects() if isinstance(o, torch.Tensor))


@pytest.mark.slow
def test_twenty_trials_do_not_grow_memory(cache: ModelCache) -> None:
    results = []
    tensors = []
    for i in range(20):
        method = "lora" if i % 2 == 0 else "full"
        results.append(run_trial("tiny-mistral", "sst2", {**SMALL, "method": method, "seed": i},
                                 train_size=8, eval_size=4, model_cache=cache))
        tensors.append(_live_tensors())
    assert all(r.status == "ok" for r in results)
    peaks = [r.peak_memory_mb for r in results]
    assert max(peaks[2:]) <= 1.10 * max(peaks[:2]), peaks  # first trial of each method as reference
    # Nothing of a finished trial survives it: same number of live tensors after trial 2 and 20.
    assert tensors[-1] == tensors[1], tensors


@pytest.mark.parametrize("optimizer,scheduler", [("sgd", "time_based"), ("adafactor", "exponential"),
                                                 ("adamw", "step")])
def test_optimizers_schedules_and_bf16(optimizer: str, scheduler: str, cache: ModelCache) -> None:
    cfg = {**SMALL, "optimizer": optimizer, "lr_scheduler": scheduler,
           "warmup_ratio": 0.5, "weight_decay": 0.01, "lora_target_modules": "q_proj,v_proj"}
    result = run_trial("tiny-mistral", "sst2", cfg, train_size=8, eval_size=4, model_cache=cache,
                       precision="bf16")
    assert result.status == "ok", result.error
    assert result.precision == "bf16" and result.steps == 2
    assert "precision" not in result.config  # an execution setting, recorded beside the config
