"""The ``trl`` trainer under ``accelerate launch``: one trial over several processes (GPUs).

The parent (:func:`run_launched`, called by :class:`~staytuned.finetune.trainers.trl.TRLTrainer`)
writes into a fresh trial folder:

- ``accelerate.yaml``: FSDP (version 2, full shard, the model's decoder layer class as the wrap
  policy) or DeepSpeed ZeRO-3 (``accelerate.yaml`` pointing at ``deepspeed.json``);
- ``job.json``: the model reference, the task with the trial's sampled rows, the config, the
  execution settings and the paths below;

then runs the equivalent of ``accelerate launch --config_file accelerate.yaml --num_processes N -m
staytuned.finetune.trainers.trl_launch job.json`` (accelerate's own parser and launcher, in a fresh
interpreter: :func:`accelerate_launch`) in its own process group (killed on Ctrl-C).
Every process loads the model, trains with TRL (the trainer shards it) and scores each epoch;
rank 0 appends ``{"epoch", "score"}`` lines to ``epochs.jsonl``, which the parent tails and hands
to ``on_epoch``; the verdict goes back as ``verdict-<epoch>.json``, which every process waits for,
so pruning works as in one process. Rank 0 writes ``result.json`` at the end; the parent copies it
into the trial's result. ``launch.log`` keeps the processes' output (the folder is removed after a
successful trial and kept, with its path in the error, after a failed one).

When: ``distributed`` fsdp or deepspeed, or auto when the memory planner says, from the model's
config, that the trial does not fit on one GPU and at least two are visible. Full fine-tuning of
7-8B models runs this way. Tested on CPU with one process, where accelerate leaves the FSDP
section unused (see :func:`write_accelerate_config`); untested on GPUs.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from staytuned.errors import InputError

if TYPE_CHECKING:
    from staytuned.finetune.trainers.base import TrialJob

#: Seconds a process waits for the parent's pruning verdict before giving up on it.
VERDICT_TIMEOUT_S = 3600.0
#: The TrialResult fields a launched trial reports back.
RESULT_FIELDS = ("status", "score", "metrics", "loss_curve", "epoch_scores", "train_tokens_per_s", "peak_memory_mb",
                 "error", "score_test", "test_metrics", "failed_step", "train_tokens", "train_runtime_s",
                 "train_cpu_s", "eval_runtime_s", "steps", "micro_batch_size", "grad_accumulation", "precision",
                 "gradient_checkpointing", "planned_memory_mb", "saved_to", "quantization", "quantized_layers")


@dataclass(frozen=True)
class LaunchPlan:
    """How a trial is launched: ``mode`` fsdp, deepspeed or none (plain data parallel, or one
    process), on ``num_processes`` processes; ``cpu``: without CUDA; ``why``: for the record."""

    mode: str
    num_processes: int
    cpu: bool
    why: str


def visible_gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def launch_plan(job: TrialJob, distributed: str, num_processes: int | None) -> LaunchPlan | None:
    """The launch a trial needs, or None to train in this process. InputError when the requested
    launch cannot run (a model already in memory, DeepSpeed not installed)."""
    from staytuned.finetune.trainers.native import refuse_before_loading

    if distributed == "none" or job.eval_only:
        return None
    gpus = visible_gpus()
    cpu = gpus == 0 or str(job.device or "").startswith("cpu")
    if distributed == "auto":
        if cpu or gpus < 2 or not isinstance(job.model, str | Path):
            return None
        refused = refuse_before_loading(job.model, None, "cuda:0", job.config, job.precision, job.micro_batch_size,
                                        job.gradient_checkpointing, job.memory_budget)
        if refused is None:
            return None
        why = f"does not fit on one GPU ({refused[0]}): FSDP over {num_processes or gpus} GPUs"
        return LaunchPlan("fsdp", num_processes or gpus, False, why)
    if not isinstance(job.model, str | Path):
        raise InputError("the accelerate launch loads the model in each process, so it needs a model reference",
                         field="model", value=type(job.model).__name__,
                         expected="a model alias, folder or hub id (or distributed=none)")
    if distributed == "deepspeed":
        import importlib.util

        if importlib.util.find_spec("deepspeed") is None:
            raise InputError("distributed=deepspeed needs the deepspeed package, which is not installed",
                             field="distributed", value=distributed, expected="pip install deepspeed, or fsdp")
    n = num_processes or max(1, gpus)
    if cpu and n > 1:
        raise InputError("several launched processes need as many GPUs; on CPU a launch runs one process",
                         field="num_processes", value=n, expected="1 on CPU")
    return LaunchPlan(distributed, n, cpu, f"distributed={distributed}")


def decoder_layer_class(model: str | Path) -> str | None:
    """The decoder layer class name of a model reference (FSDP's wrap unit), from its config only."""
    import transformers
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    from staytuned.hardware.planner import resolve_arch
    from staytuned.models import TINY_ALIASES

    ref = str(model)
    if ref in TINY_ALIASES:
        model_type = ref.split("-", 1)[1]
    else:
        try:
            model_type = resolve_arch(ref).model_type
        except InputError:
            return None
    cls = getattr(transformers, MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.get(model_type, ""), None)
    layers = getattr(cls, "_no_split_modules", None) or []
    return str(layers[0]) if layers else None


def write_accelerate_config(folder: Path, plan: LaunchPlan, *, layer_class: str | None,
                            mixed_precision: str = "no") -> Path:
    """Write the accelerate config of ``plan`` (and DeepSpeed's JSON) into ``folder``; return its path.

    ``mode`` none writes a plain config (one CPU process, or multi-GPU data parallel). On CPU the
    FSDP section is written but not used: accelerate 1.16 switches its FSDP plugin on only for
    accelerator backends (``AcceleratorState`` sets ``DistributedType.FSDP`` in its multi-GPU/NPU/XPU
    branch, and ``accelerate launch`` runs a ``use_cpu`` config with its simple launcher), so a CPU
    launch trains one unsharded process. DeepSpeed likewise needs CUDA.
    """
    import yaml

    config: dict[str, Any] = {
        "compute_environment": "LOCAL_MACHINE", "num_machines": 1, "machine_rank": 0,
        "num_processes": plan.num_processes, "mixed_precision": mixed_precision, "use_cpu": plan.cpu,
        "rdzv_backend": "static", "same_network": True, "main_training_function": "main",
        "downcast_bf16": "no", "debug": False,
    }
    if plan.mode == "fsdp":
        fsdp: dict[str, Any] = {
            "fsdp_version": 2, "fsdp_reshard_after_forward": True, "fsdp_offload_params": False,
            "fsdp_state_dict_type": "FULL_STATE_DICT", "fsdp_cpu_ram_efficient_loading": True,
            "fsdp_activation_checkpointing": False,  # staytuned's own, decided by the planner
        }
        if layer_class:
            fsdp.update(fsdp_auto_wrap_policy="TRANSFORMER_BASED_WRAP", fsdp_transformer_layer_cls_to_wrap=layer_class)
        config.update(distributed_type="FSDP", fsdp_config=fsdp)
    elif plan.mode == "deepspeed":
        ds = {"zero_optimization": {"stage": 3, "overlap_comm": True, "contiguous_gradients": True,
                                    "stage3_gather_16bit_weights_on_model_save": True},
              "bf16": {"enabled": "auto"}, "fp16": {"enabled": "auto"},
              "train_batch_size": "auto", "train_micro_batch_size_per_gpu": "auto",
              "gradient_accumulation_steps": "auto", "gradient_clipping": "auto"}
        (folder / "deepspeed.json").write_text(json.dumps(ds, indent=2) + "\n", encoding="utf-8")
        config.update(distributed_type="DEEPSPEED",
                      deepspeed_config={"deepspeed_config_file": str(folder / "deepspeed.json"),
                                        "zero3_init_flag": True})
    else:
        config["distributed_type"] = "NO" if plan.num_processes == 1 else ("MULTI_CPU" if plan.cpu else "MULTI_GPU")
    path = folder / "accelerate.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def job_payload(job: TrialJob, folder: Path) -> dict[str, Any]:
    """What the launched processes need to run the trial (JSON-able)."""
    task = job.task
    return {
        "model": str(job.model),
        "task": {"name": task.name, "type": task.type, "labels": list(task.labels), "metric": task.metric,
                 "direction": task.direction, "source": task.source, "template": task.template,
                 "splits": {"train": job.train_rows, "validation": job.eval_rows, "test": job.test_rows}},
        "config": job.config.to_dict(),
        "result": job.result.to_dict(),
        "settings": {"precision": job.precision, "micro_batch_size": job.micro_batch_size,
                     "gradient_checkpointing": job.gradient_checkpointing, "template": job.template,
                     "label_scoring": job.label_scoring,
                     "save_dir": str(job.save_dir) if job.save_dir is not None else None},
        "prune": job.on_epoch is not None,
        "parent_pid": os.getpid(),
        "folder": str(folder),
    }


MODULE = "staytuned.finetune.trainers.trl_launch"


def launch_command(config_file: Path, job_file: Path, num_processes: int) -> list[str]:
    """The launcher process: :func:`accelerate_launch` in a fresh interpreter."""
    return [sys.executable, "-m", MODULE, "launch", str(config_file), str(job_file), str(num_processes)]


def accelerate_launch(config_file: str, job_file: str, num_processes: int) -> None:
    """``accelerate launch`` with ``config_file`` and ``num_processes`` of the module ``MODULE``
    on ``job_file``, through accelerate's own parser and launcher (as its command line does)."""
    from accelerate.commands.launch import launch_command, launch_command_parser  # type: ignore[import-untyped]

    args = launch_command_parser().parse_args([MODULE, job_file])  # the script and its argument
    args.config_file, args.num_processes, args.module = config_file, num_processes, True
    launch_command(args)


def run_launched(job: TrialJob, plan: LaunchPlan, *, poll_s: float = 0.5) -> dict[str, Any]:
    """Run ``job`` under ``accelerate launch`` as ``plan`` says; fill ``job.result`` and return what
    accelerate ran (distributed type, processes; empty when no process reported). Never raises for
    a failed trial; Ctrl-C kills the process group and propagates."""
    from staytuned.hardware.precision import choose_precision

    result = job.result
    folder = Path(tempfile.mkdtemp(prefix="staytuned-launch-"))
    precision = choose_precision(job.precision, "cpu" if plan.cpu else "cuda", warn=False)
    mixed = precision.dtype if precision.autocast else "no"
    config_file = write_accelerate_config(folder, plan, layer_class=decoder_layer_class(str(job.model)),
                                          mixed_precision=mixed)
    job_file = folder / "job.json"
    job_file.write_text(json.dumps(job_payload(job, folder)), encoding="utf-8")
    started = time.perf_counter()
    with open(folder / "launch.log", "wb") as log:
        proc = subprocess.Popen(launch_command(config_file, job_file, plan.num_processes), stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)  # own process group
        try:
            _follow(proc, job, folder, poll_s)
        except BaseException:
            _kill_group(proc)
            raise
    done = folder / "result.json"
    launch: dict[str, Any] = {}
    if done.is_file():
        reported = json.loads(done.read_text(encoding="utf-8"))
        launch = reported["launch"]
        for key, value in reported["result"].items():
            if key in RESULT_FIELDS:
                setattr(result, key, value)
    if result.status == "failed":
        tail = (folder / "launch.log").read_text(encoding="utf-8", errors="replace").strip().splitlines()[-5:]
        if result.error is None:
            result.error = f"accelerate launch exited with {proc.returncode}: " + " | ".join(tail)
        result.error += f" (launch folder kept: {folder})"
    else:
        shutil.rmtree(folder, ignore_errors=True)
    result.runtime_s = max(result.runtime_s, time.perf_counter() - started)
    return launch


def _follow(proc: subprocess.Popen[bytes], job: TrialJob, folder: Path, poll_s: float) -> None:
    """Until the launch exits: hand each epoch score to ``on_epoch``, write its verdict back and
    relay training progress."""
    seen = 0
    lines = folder / "epochs.jsonl"
    while True:
        running = proc.poll() is None
        if lines.is_file():
            records = lines.read_text(encoding="utf-8").splitlines()
            for line in records[seen:]:
                if not line.endswith("}"):
                    break  # a line still being written
                seen += 1
                record = json.loads(line)
                if "epoch" in record:
                    prune = bool(job.on_epoch(record["epoch"], record["score"])) if job.on_epoch else False
                    verdict = folder / f"verdict-{record['epoch']}.json"
                    verdict.with_suffix(".tmp").write_text(json.dumps({"prune": prune}), encoding="utf-8")
                    verdict.with_suffix(".tmp").replace(verdict)
                elif "step" in record and job.progress is not None:
                    job.progress("train", record["step"], record["total"])
        if not running:
            return
        time.sleep(poll_s)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """Stop the launcher and its processes (their own group): TERM, then KILL after 10 s."""
    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


# ---- inside each launched process -------------------------------------------------------------


def _append(path: Path, record: dict[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def _wait_verdict(folder: Path, epoch: int, parent_pid: int) -> bool:
    """Every process waits for the parent's verdict on ``epoch`` (so all stop at the same step)."""
    verdict = folder / f"verdict-{epoch}.json"
    deadline = time.monotonic() + VERDICT_TIMEOUT_S
    while not verdict.is_file():
        try:
            os.kill(parent_pid, 0)
        except ProcessLookupError:
            return True  # the parent is gone: stop training
        if time.monotonic() > deadline:
            return True
        time.sleep(0.1)
    return bool(json.loads(verdict.read_text(encoding="utf-8"))["prune"])


def run_process(payload: dict[str, Any]) -> dict[str, Any] | None:
    """Run the trial in this launched process; rank 0 returns its result and accelerate's state,
    the others None."""
    import torch

    from staytuned.finetune.trainers.native import nf4_compute_dtype
    from staytuned.finetune.trial import ModelCache, TrialResult
    from staytuned.hardware.precision import choose_precision
    from staytuned.hparams.train import TrainConfig
    from staytuned.models import count_4bit_layers
    from staytuned.tasks import Task

    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = f"cuda:{local}" if torch.cuda.is_available() and world >= 1 and _uses_cuda() else "cpu"
    if device.startswith("cuda"):
        torch.cuda.set_device(local)
    folder, settings = Path(payload["folder"]), payload["settings"]
    task = Task(**payload["task"])
    cfg = TrainConfig.from_dict(payload["config"])
    result = TrialResult(**payload["result"])
    choice = choose_precision(settings["precision"], device, warn=False)
    loaded = ModelCache(device=device, max_models=1).get(
        payload["model"], nf4_compute_dtype=nf4_compute_dtype(cfg, settings["precision"], device))
    result.precision = choice.dtype
    result.quantized_layers = count_4bit_layers(loaded.model)
    result.quantization = "nf4" if result.quantized_layers else None
    epochs = folder / "epochs.jsonl"

    def on_epoch(epoch: int, score: float) -> bool:
        if rank == 0:
            _append(epochs, {"epoch": epoch, "score": score})
        return _wait_verdict(folder, epoch, payload["parent_pid"])

    def progress(stage: str, done: int, total: int) -> None:
        if rank == 0 and stage == "train":
            _append(epochs, {"step": done, "total": total})

    run = _launched_run_class()(loaded, task, cfg, result, device=device, template=settings["template"],
                      label_scoring=settings["label_scoring"], micro_batch_size=settings["micro_batch_size"],
                      precision=choice, progress=progress, on_epoch=on_epoch if payload["prune"] else None,
                      checkpointing=settings["gradient_checkpointing"])
    run.world_size, run.rank = world, rank
    save_dir = settings["save_dir"]
    run.run(task.split("train"), task.split("validation"),
            task.split("test") if task.has_split("test") else [], eval_only=False,
            save_dir=Path(save_dir) if save_dir else None)
    if rank != 0:
        return None
    from accelerate.state import PartialState  # type: ignore[import-untyped]

    # What accelerate actually ran (on CPU it leaves an FSDP section unused).
    kept = getattr(run, "kept", None)
    accelerator = kept[0].accelerator if kept else None
    kind = accelerator.distributed_type if accelerator is not None else PartialState().distributed_type
    return {"result": result.to_dict(),
            "launch": {"distributed_type": str(kind.value), "num_processes": PartialState().num_processes,
                       "fsdp": bool(accelerator is not None and accelerator.is_fsdp2), "pid": os.getpid()}}


def _uses_cuda() -> bool:
    return os.environ.get("ACCELERATE_USE_CPU", "false").lower() not in ("1", "true", "yes")


def _launched_run_class() -> type:
    from staytuned.finetune.trainers.trl import TRLRun

    class _LaunchedRun(TRLRun):
        """A TRLRun in one of several processes: the memory plan is the sharded one, not the
        one-device planner's, and saving goes through the trainer (it gathers shards)."""

        rank = 0
        launched = True  # keep the SFTTrainer: saving and the launch report go through it

        def _fit_memory(self, model: Any, examples: list[Any]) -> int | None:
            from staytuned.finetune.trainers.native import enable_checkpointing

            # Launched because memory is short: checkpoint unless told not to.
            on = self.checkpointing == "on" or (self.checkpointing == "auto" and self.world_size > 1)
            if on:
                enable_checkpointing(model)
            self.result.gradient_checkpointing = "on" if on else "off"
            return self.micro_batch_size

        def _save(self, model: Any, folder: Path) -> None:
            trainer = self.kept[0] if getattr(self, "kept", None) else None
            if trainer is None or self.world_size == 1:
                if self.rank == 0:
                    super()._save(model, folder)
                return
            trainer.save_model(str(folder))
            if self.rank == 0:
                self.loaded.tokenizer.save_pretrained(folder)
                meta = {"task": self.task.name, "model": self.result.model, "method": self.cfg.method,
                        "config": self.cfg.to_dict(), "precision": self.precision.dtype,
                        "score": self.result.score, "metric": self.task.metric, "trainer": "trl"}
                (folder / "staytuned-trial.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
                self.result.saved_to = str(folder)

    return _LaunchedRun


def main(argv: list[str] | None = None) -> int:
    """Entry point of the launcher (``launch accelerate.yaml job.json N``) and of each launched
    process (``job.json``)."""
    args = sys.argv[1:] if argv is None else argv
    if args[0] == "launch":  # the launcher: python -m ...trl_launch launch accelerate.yaml job.json N
        accelerate_launch(args[1], args[2], int(args[3]))
        return 0
    payload = json.loads(Path(args[0]).read_text(encoding="utf-8"))
    out = run_process(payload)
    if out is not None:
        target = Path(payload["folder"]) / "result.json"
        target.with_suffix(".tmp").write_text(json.dumps(out), encoding="utf-8")
        target.with_suffix(".tmp").replace(target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
