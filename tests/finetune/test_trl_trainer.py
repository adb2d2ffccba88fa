"""The ``trl`` trainer (TRL's SFTTrainer): real trials on the tiny model, the same batch, loss
masking and learning rates as the native loop, pruning, failures, the cached base left alone, the
CLI, and the ``accelerate launch`` path on CPU (one process)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("trl")

# These imports follow the importorskip calls on purpose (E402).
from staytuned.errors import InputError  # noqa: E402
from staytuned.finetune.trainers import get_trainer  # noqa: E402
from staytuned.finetune.trainers.native import checkpointing_state, wrap_lora  # noqa: E402
from staytuned.finetune.trainers.trl import (  # noqa: E402
    build_trainer,
    kept_base,
    sft_train,
    split_batch,
    train_steps,
)
from staytuned.finetune.trainers.trl_launch import (  # noqa: E402
    LaunchPlan,
    decoder_layer_class,
    write_accelerate_config,
)
from staytuned.finetune.trial import run_trial  # noqa: E402
from staytuned.hparams.schema import SCHEDULERS  # noqa: E402
from staytuned.hparams.train import TrainConfig  # noqa: E402

SMALL = {"epochs": 2, "max_seq_length": 96, "batch_size": 4, "learning_rate": 1e-3}


def _examples(cache, n: int = 8, max_len: int = 64):
    from staytuned.finetune.loop import encode_pairs
    from staytuned.tasks import build_chat_example, completion_suffix, load_task

    tok = cache.get("tiny-llama").tokenizer
    task = load_task("sst2")
    pairs = [build_chat_example(task, row, tok) for row in task.split("train")[:n]]
    return encode_pairs(pairs, tok, max_len, completion_suffix(tok))


def _precision():
    from staytuned.hardware.precision import choose_precision

    return choose_precision("fp32", "cpu", warn=False)


def test_lora_trial_scores_saves_and_leaves_the_cached_base_alone(cache, tmp_path: Path) -> None:
    loaded = cache.get("tiny-llama")
    base = loaded.model
    before = {k: v.clone() for k, v in base.state_dict().items()}
    config_before = base.config.to_dict()
    epochs: list[tuple[int, float]] = []
    r = run_trial("tiny-llama", "sst2", SMALL, train_size=12, eval_size=8, model_cache=cache, trainer="trl",
                  on_epoch=lambda e, s: epochs.append((e, s)) or False, save_dir=tmp_path / "out")
    assert r.status == "ok", r.error
    assert r.trainer == "trl" and 0.0 <= r.score <= 1.0
    assert r.steps == 6 and [s for s, _ in r.loss_curve] == list(range(1, 7))  # 12 rows / batch 4 x 2 epochs
    assert all(loss > 0 for _, loss in r.loss_curve)
    assert r.micro_batch_size * r.grad_accumulation == 4
    assert r.train_tokens > 0 and r.train_tokens_per_s > 0 and r.train_runtime_s > 0 and r.peak_memory_mb > 0
    assert [e for e, _ in epochs] == [1, 2] and r.epoch_scores == [s for _, s in epochs] and r.score == epochs[-1][1]
    assert r.gradient_checkpointing == "off" and r.precision
    # The adapter, the tokenizer and staytuned's record are saved, like the native trainer's.
    out = tmp_path / "out"
    assert (out / "adapter_config.json").is_file() and (out / "tokenizer_config.json").is_file()
    meta = json.loads((out / "staytuned-trial.json").read_text())
    assert meta["score"] == r.score and meta["trainer"] == "trl"
    assert r.saved_to == str(out)
    # The cached base: same weights, no adapter, no patched forward, same config, no checkpointing.
    assert all(torch.equal(before[k], v) for k, v in base.state_dict().items())
    assert "forward" not in vars(base) and not hasattr(base, "peft_config")
    assert base.config.to_dict() == config_before
    assert checkpointing_state(base) == (False, False) and not base.training
    assert cache.loads == 1


def test_same_tokens_and_loss_scale_as_native(cache) -> None:
    """Same examples, same adapter init, same token count; the first step (before any update,
    different batch order) has a loss of the same size."""
    results = {tr: run_trial("tiny-llama", "sst2", {**SMALL, "epochs": 1}, train_size=12, eval_size=4,
                             model_cache=cache, trainer=tr) for tr in ("native", "trl")}
    native, trl = results["native"], results["trl"]
    assert native.status == trl.status == "ok", trl.error
    assert native.train_tokens == trl.train_tokens and native.steps == trl.steps == 3
    assert trl.loss_curve[0][1] == pytest.approx(native.loss_curve[0][1], rel=0.05)


def test_prompt_tokens_get_label_minus_100(cache) -> None:
    examples = _examples(cache, n=6)
    tok = cache.get("tiny-llama").tokenizer
    cfg = TrainConfig.from_dict({"batch_size": 6, "max_seq_length": 64})
    import tempfile

    with tempfile.TemporaryDirectory() as out:
        model = wrap_lora(cache.get("tiny-llama").model, cfg)
        try:
            with kept_base(model):  # TRL patches the base's forward
                trainer = build_trainer(model, tok, examples, cfg, output_dir=out, device="cpu",
                                        micro_batch_size=6, precision=_precision())
                batch = next(iter(trainer.get_train_dataloader()))
        finally:
            model.unload()
    by_ids = {tuple(e.input_ids): e for e in examples}
    assert len(batch["input_ids"]) == 6
    for ids, labels, mask in zip(batch["input_ids"], batch["labels"], batch["attention_mask"], strict=True):
        n = int(mask.sum())
        e = by_ids[tuple(ids[:n].tolist())]
        assert labels[:e.n_prompt].tolist() == [-100] * e.n_prompt  # the prompt is not trained on
        assert labels[e.n_prompt:n].tolist() == e.input_ids[e.n_prompt:]  # the answer (+ end of turn) is
        assert labels[n:].tolist() == [-100] * (len(ids) - n)  # nor the padding
        assert ids[:n].tolist() == e.input_ids


@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_every_schedule_gives_the_native_learning_rate_at_each_step(cache, scheduler: str) -> None:
    from transformers import TrainerCallback

    from staytuned.finetune.loop import TrainStats
    from staytuned.finetune.schedules import lr_values

    examples = _examples(cache, n=8, max_len=32)
    cfg = TrainConfig.from_dict({"batch_size": 2, "epochs": 2, "max_seq_length": 32, "learning_rate": 1e-3,
                                 "lr_scheduler": scheduler, "warmup_ratio": 0.25, "step_size_epochs": 0.5})
    total, per_epoch = train_steps(len(examples), cfg)
    assert (total, per_epoch) == (8, 4)
    seen: list[float] = []

    class Record(TrainerCallback):
        def on_pre_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
            seen.append(optimizer.param_groups[0]["lr"])

    base = cache.get("tiny-llama").model
    model = wrap_lora(base, cfg)
    try:
        import staytuned.finetune.trainers.trl as trl_mod

        real = trl_mod.build_trainer

        def with_record(*args, **kwargs):
            kwargs["callbacks"] = [*kwargs.get("callbacks", ()), Record()]
            return real(*args, **kwargs)

        trl_mod.build_trainer = with_record
        try:
            stats = sft_train(model, cache.get("tiny-llama").tokenizer, examples, cfg, device="cpu",
                              micro_batch_size=1, precision=_precision(), stats=TrainStats())
        finally:
            trl_mod.build_trainer = real
    finally:
        model.unload()
    assert stats.steps == total and (stats.micro_batch_size, stats.grad_accumulation) == (1, 2)
    assert seen == pytest.approx(lr_values(cfg, total, per_epoch), rel=1e-9, abs=1e-15)


def test_split_batch_keeps_the_effective_batch() -> None:
    assert split_batch(16, 8) == (8, 2)
    assert split_batch(16, 6) == (4, 4)  # the largest divisor of the batch within the micro-batch
    assert split_batch(12, 100) == (12, 1)
    assert split_batch(16, 4, world_size=2) == (4, 2)
    with pytest.raises(InputError, match="processes"):
        split_batch(10, 4, world_size=4)


def test_pruned_by_on_epoch(cache) -> None:
    r = run_trial("tiny-llama", "sst2", {**SMALL, "epochs": 3}, train_size=8, eval_size=4, model_cache=cache,
                  trainer="trl", on_epoch=lambda epoch, score: epoch >= 1)
    assert r.status == "pruned", r.error
    assert r.steps == 2 and len(r.epoch_scores) == 1 and r.score == r.epoch_scores[0]
    assert checkpointing_state(cache.get("tiny-llama").model) == (False, False)


def test_nan_loss_is_a_failed_trial_with_its_step(cache) -> None:
    base = cache.get("tiny-llama").model
    before = {k: v.clone() for k, v in base.state_dict().items()}
    r = run_trial("tiny-llama", "sst2", {**SMALL, "learning_rate": 1e30, "epochs": 3, "optimizer": "sgd"},
                  train_size=8, eval_size=4, model_cache=cache, trainer="trl")
    assert r.status == "failed" and r.failed_step is not None and "loss became" in (r.error or "")
    assert r.loss_curve and r.loss_curve[-1][0] == r.failed_step
    assert all(torch.equal(before[k], v) for k, v in base.state_dict().items())
    assert "forward" not in vars(base)


def test_bad_options_are_refused(cache) -> None:
    with pytest.raises(InputError, match="distributed"):
        get_trainer("trl", {"distributed": "horovod"})
    with pytest.raises(InputError, match="not an option of the native trainer"):
        get_trainer("native", {"distributed": "fsdp"})
    # A launch loads the model in each process: a model in memory is a failed trial, with why.
    loaded = cache.get("tiny-llama")
    r = run_trial(loaded, "sst2", SMALL, train_size=8, eval_size=4, trainer="trl",
                  trainer_options={"distributed": "fsdp"})
    assert r.status == "failed" and "model reference" in (r.error or "")
    r = run_trial("tiny-llama", "sst2", SMALL, train_size=8, eval_size=4, trainer="trl", model_cache=cache,
                  device="cpu", trainer_options={"distributed": "fsdp", "num_processes": 2})
    assert r.status == "failed" and "GPUs" in (r.error or "")


def test_tune_records_the_trl_trainer_with_each_trial(run_cli, tmp_path: Path, monkeypatch) -> None:
    import optuna

    monkeypatch.chdir(tmp_path)
    res = run_cli("tune", "--task", "sst2", "--model", "tiny-llama", "--space", "preset:demo",
                  "--strategy", "grid", "--trials", "2", "--train-size", "8", "--eval-size", "4",
                  "--no-baseline", "--no-outputs", "--quiet", "--study", "t", "--trainer", "trl",
                  "--distributed", "none", "--device", "cpu")
    assert res.exit_code == 0, res.output
    trials = optuna.load_study(study_name="t", storage=f"sqlite:///{tmp_path / 'runs' / 't' / 'study.db'}").trials
    assert len(trials) == 2
    for t in trials:
        assert t.user_attrs["status"] in ("ok", "pruned"), t.user_attrs.get("error")
        assert t.user_attrs["execution"]["trainer"] == "trl"
        assert t.user_attrs["execution"]["distributed"] == "none"
        assert "trainer" not in t.user_attrs["config"] and "distributed" not in t.user_attrs["config"]


def test_distributed_flag_needs_the_trl_trainer(run_cli) -> None:
    res = run_cli("train", "--task", "sst2", "--model", "tiny-llama", "--distributed", "fsdp")
    assert res.exit_code == 2 and "--distributed" in res.output and "not an option of the native" in res.output


@pytest.mark.parametrize("mode", ["fsdp", "deepspeed", "none"])
def test_accelerate_config_round_trip(tmp_path: Path, mode: str) -> None:
    import yaml
    from accelerate.commands.config.config_args import load_config_from_file

    plan = LaunchPlan(mode, 4 if mode != "none" else 1, cpu=False, why="test")
    layer = decoder_layer_class("tiny-llama")
    assert layer == "LlamaDecoderLayer"
    path = write_accelerate_config(tmp_path, plan, layer_class=layer, mixed_precision="bf16")
    raw = yaml.safe_load(path.read_text())
    assert raw["num_processes"] == plan.num_processes and raw["mixed_precision"] == "bf16"
    config = load_config_from_file(str(path))  # accelerate's own reader
    assert config.num_processes == plan.num_processes
    if mode == "fsdp":
        assert str(config.distributed_type) in ("FSDP", "DistributedType.FSDP")
        assert config.fsdp_config["fsdp_version"] == 2
        assert config.fsdp_config["fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
        assert config.fsdp_config["fsdp_transformer_layer_cls_to_wrap"] == "LlamaDecoderLayer"
    elif mode == "deepspeed":
        assert str(config.distributed_type).endswith("DEEPSPEED")
        ds = json.loads(Path(config.deepspeed_config["deepspeed_config_file"]).read_text())
        assert ds["zero_optimization"]["stage"] == 3 and ds["train_micro_batch_size_per_gpu"] == "auto"
    else:
        assert str(config.distributed_type).endswith("NO")


@pytest.mark.slow  # two more python processes importing torch and TRL: about 30 s on 2 cores
def test_cpu_launch_trains_one_process_and_feeds_pruning(monkeypatch) -> None:
    """A real ``accelerate launch`` of the tiny model on CPU (one process; accelerate leaves the
    FSDP section unused on CPU): scores reach on_epoch from the child, the verdict goes back."""
    import staytuned.finetune.trainers.trl_launch as launch

    reports: list[dict] = []
    real = launch.run_launched

    def spy(job, plan, **kwargs):
        reports.append({"plan": plan, "launch": real(job, plan, **kwargs)})
        return reports[-1]["launch"]

    monkeypatch.setattr(launch, "run_launched", spy)
    seen: list[tuple[int, float]] = []
    r = run_trial("tiny-llama", "sst2", {**SMALL, "epochs": 3}, train_size=8, eval_size=4, trainer="trl",
                  device="cpu", trainer_options={"distributed": "fsdp", "num_processes": 1},
                  on_epoch=lambda e, s: seen.append((e, s)) or e >= 2)
    assert r.status == "pruned", r.error
    assert [e for e, _ in seen] == [1, 2] and r.epoch_scores == [s for _, s in seen] and r.steps == 4
    assert r.trainer == "trl" and r.train_tokens > 0 and r.loss_curve
    [report] = reports
    assert report["plan"].mode == "fsdp" and report["plan"].cpu and report["plan"].num_processes == 1
    assert report["launch"]["num_processes"] == 1 and report["launch"]["pid"] != os.getpid()
    # accelerate switches FSDP on only for accelerator backends: on CPU the process trains unsharded.
    assert report["launch"]["distributed_type"] in ("NO", "MULTI_CPU") and not report["launch"]["fsdp"]


def _job(**over):
    from types import SimpleNamespace

    base = {"model": "llama-3-8b", "eval_only": False, "device": None,
            "config": TrainConfig.from_dict({"method": "full"}), "precision": "bf16", "micro_batch_size": None,
            "gradient_checkpointing": "auto", "memory_budget": None}
    return SimpleNamespace(**{**base, **over})


def test_auto_launches_fsdp_only_when_the_planner_says_one_gpu_is_too_small(monkeypatch) -> None:
    import staytuned.finetune.trainers.native as native
    import staytuned.finetune.trainers.trl_launch as launch

    monkeypatch.setattr(launch, "visible_gpus", lambda: 0)
    assert launch.launch_plan(_job(), "auto", None) is None  # CPU: train in this process
    monkeypatch.setattr(launch, "visible_gpus", lambda: 4)
    monkeypatch.setattr(native, "refuse_before_loading", lambda *a: None)
    assert launch.launch_plan(_job(), "auto", None) is None  # fits on one GPU
    monkeypatch.setattr(native, "refuse_before_loading", lambda *a: ("needs 120 GiB, the GPU has 80", "bf16"))
    plan = launch.launch_plan(_job(), "auto", None)
    assert plan is not None and (plan.mode, plan.num_processes, plan.cpu) == ("fsdp", 4, False)
    assert "120 GiB" in plan.why
    assert launch.launch_plan(_job(), "auto", 2).num_processes == 2
    assert launch.launch_plan(_job(), "none", None) is None
    assert launch.launch_plan(_job(eval_only=True), "fsdp", None) is None  # nothing to train
    monkeypatch.setattr(launch, "visible_gpus", lambda: 1)
    assert launch.launch_plan(_job(), "auto", None) is None  # one GPU: nothing to shard over


def test_trl_options_travel_as_trainer_options() -> None:
    from staytuned.hparams.execution import ExecutionSettings

    kwargs = ExecutionSettings(trainer="trl", distributed="none", num_processes=2).trial_kwargs()
    assert kwargs["trainer"] == "trl" and kwargs["trainer_options"] == {"distributed": "none", "num_processes": 2}
    assert "trainer_options" not in ExecutionSettings(trainer="native").trial_kwargs()
    with pytest.raises(InputError, match="distributed"):
        ExecutionSettings(trainer="trl", distributed="horovod")
