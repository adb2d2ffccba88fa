"""``staytuned train``: run one fine-tuning trial (or score the untuned model) and print its metrics."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

import typer
from rich import box
from rich.table import Table

from staytuned._util.mapping import read_mapping
from staytuned._util.parse import parse_assignments
from staytuned.cli._common import EXIT_FAILED, check_output, cli_errors, err, out, write_json
from staytuned.cli._flags import flag_names
from staytuned.cli._options import (
    TRAINER_FLAGS,
    CheckpointingOpt,
    CommandFormatOpt,
    CommandOpt,
    DistributedOpt,
    JsonOpt,
    MetricFileOpt,
    MetricRegexOpt,
    NumProcessesOpt,
    QuietOpt,
    TrainerOpt,
    TrialTimeoutOpt,
    VerboseOpt,
    check_trainer,
)
from staytuned.cli._progress import step_progress
from staytuned.errors import InputError
from staytuned.hparams.schema import EXECUTION, TRAIN

# Option help comes from the one declaration; the four schedule parameters are set with --hp.
_HELP = {p.name: p.help for p in TRAIN}
_EXEC_HELP = {p.name: p.help for p in EXECUTION}


def _size(value: str | None, flag: str) -> int | None:
    """``"all"`` -> None, else a positive integer."""
    if value is None or str(value).lower() == "all":
        return None
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise InputError("must be a positive integer or 'all'", field=flag, value=value)
    return n


def _print_result(result: Any, verbose: bool) -> None:
    table = Table(box=box.SIMPLE_HEAD, show_header=False, pad_edge=False)
    table.add_column("key", style="bold")
    table.add_column("value")
    status_style = {"ok": "green", "failed": "red", "pruned": "yellow"}.get(result.status, "")
    table.add_row("status", f"[{status_style}]{result.status}[/]")
    table.add_row("task / model", f"{result.task} / {result.model}")
    table.add_row("method", str(result.config.get("method", "")))
    table.add_row("train / eval rows", f"{result.n_train} / {result.n_eval} ({result.eval_split})")
    if math.isfinite(result.score):
        table.add_row(f"score ({result.metric})", f"{result.score:.4f}")
    for name, value in result.metrics.items():
        table.add_row(f"  {name}", f"{value:.4f}")
    if result.score_test is not None:
        table.add_row(f"test {result.metric}", f"{result.score_test:.4f}")
    if result.steps:
        table.add_row("steps", f"{result.steps} (micro-batch {result.micro_batch_size} x "
                               f"{result.grad_accumulation} accumulation, gradient checkpointing "
                               f"{result.gradient_checkpointing})")
        table.add_row("final train loss", f"{result.loss_curve[-1][1]:.4f}")
        table.add_row("train tokens/s", f"{result.train_tokens_per_s:,.0f}")
    if result.precision:
        table.add_row("precision", result.precision)
    table.add_row("runtime", f"{result.runtime_s:.1f} s (train {result.train_runtime_s:.1f} s, "
                             f"eval {result.eval_runtime_s:.1f} s)")
    table.add_row("peak memory", f"{result.peak_memory_mb:,.0f} MiB")
    if result.saved_to:
        table.add_row("saved to", result.saved_to)
    if verbose:
        table.add_row("config", json.dumps(result.config))
    out.print(table)


def register(app: typer.Typer) -> None:
    @app.command("train")
    def train(
        task: str = typer.Option(..., "--task", "-t", help="Bundled task name (see `staytuned tasks`) or a data file/folder."),
        model: str = typer.Option("smollm2-135m", "--model", "-m", help="smollm2-135m, tiny-llama, tiny-mistral, a model folder, a .gguf file or a hub id."),
        method: str | None = typer.Option(None, "--method", help=_HELP["method"]),
        lr: float | None = typer.Option(None, "--lr", "--learning-rate", help=_HELP["learning_rate"]),
        scheduler: str | None = typer.Option(None, "--scheduler", "--lr-scheduler", help=_HELP["lr_scheduler"]),
        warmup_ratio: float | None = typer.Option(None, "--warmup-ratio", help=_HELP["warmup_ratio"]),
        weight_decay: float | None = typer.Option(None, "--weight-decay", help=_HELP["weight_decay"]),
        batch_size: int | None = typer.Option(None, "--batch-size", help=_HELP["batch_size"]),
        epochs: float | None = typer.Option(None, "--epochs", help=_HELP["epochs"]),
        max_seq_length: int | None = typer.Option(None, "--max-seq-length", help=_HELP["max_seq_length"]),
        optimizer: str | None = typer.Option(None, "--optimizer", help=_HELP["optimizer"]),
        seed: int | None = typer.Option(None, "--seed", help=_HELP["seed"]),
        lora_r: int | None = typer.Option(None, "--lora-r", help=_HELP["lora_r"]),
        lora_alpha: int | None = typer.Option(None, "--lora-alpha", help=_HELP["lora_alpha"]),
        lora_dropout: float | None = typer.Option(None, "--lora-dropout", help=_HELP["lora_dropout"]),
        lora_target_modules: str | None = typer.Option(None, "--lora-target-modules", help=_HELP["lora_target_modules"]),
        precision: str = typer.Option("auto", "--precision", help=_EXEC_HELP["precision"]),
        hp: list[str] = typer.Option([], "--hp", help="Any hyperparameter as NAME=VALUE (repeatable), e.g. --hp time_decay_k=0.5."),
        config_file: Path | None = typer.Option(None, "--config", help="JSON/YAML file of hyperparameters (flags win)."),
        train_size: str = typer.Option("100", "--train-size", help="Training rows (stratified sample) or 'all'."),
        eval_size: str = typer.Option("200", "--eval-size", help="Evaluation rows or 'all'."),
        eval_split: str = typer.Option("validation", "--eval-split"),
        data_seed: int = typer.Option(0, "--data-seed", help="Seed of the train/eval row samples."),
        eval_test: bool = typer.Option(False, "--eval-test", help="Also score the test split."),
        label_scoring: str = typer.Option("loglik", "--label-scoring", help="Classification: loglik (score each label) or generate."),
        eval_only: bool = typer.Option(False, "--eval-only", help="Score the untuned model the same way; no training."),
        save_dir: Path | None = typer.Option(None, "--save-dir", help="Save the adapter (lora) or model (full) here."),
        device: str | None = typer.Option(None, "--device", help="cpu, cuda, cuda:1 ... (default: cuda when available)."),
        threads: int | None = typer.Option(None, "--threads", help=_EXEC_HELP["threads"] + " OMP_NUM_THREADS counts as a request."),
        checkpointing: str = CheckpointingOpt,
        trainer: str = TrainerOpt,
        command: str | None = CommandOpt,
        command_format: str | None = CommandFormatOpt,
        metric_file: str | None = MetricFileOpt,
        metric_regex: str | None = MetricRegexOpt,
        trial_timeout: float | None = TrialTimeoutOpt,
        distributed: str | None = DistributedOpt,
        num_processes: int | None = NumProcessesOpt,
        json_path: str | None = JsonOpt,
        quiet: bool = QuietOpt,
        verbose: bool = VerboseOpt,
    ) -> None:
        """Fine-tune a model on a task with one configuration and print its validation metrics.

        Example: [bold]staytuned train --model smollm2-135m --task sst2 --method lora --lr 1e-4 --train-size 100[/]
        """
        flags = {
            "method": method, "learning_rate": lr, "lr_scheduler": scheduler, "warmup_ratio": warmup_ratio,
            "weight_decay": weight_decay, "batch_size": batch_size, "epochs": epochs,
            "max_seq_length": max_seq_length, "optimizer": optimizer, "seed": seed, "lora_r": lora_r,
            "lora_alpha": lora_alpha, "lora_dropout": lora_dropout,
            "lora_target_modules": lora_target_modules,
        }
        options = {"command": command, "command_format": command_format, "metric_file": metric_file,
                   "metric_regex": metric_regex, "trial_timeout": trial_timeout,
                   "distributed": distributed, "num_processes": num_processes}
        with cli_errors(), flag_names(TRAINER_FLAGS):
            check_trainer(trainer, options)  # before the model loads
            # HPs from a JSON or YAML mapping (a top-level ``config:`` mapping is also accepted)
            values = (read_mapping(config_file, what="config file", unwrap="config",
                                   expected="a mapping of hyperparameter names to values")
                      if config_file is not None else {})
            # One assignment per --hp: a value may hold commas (lora_target_modules=q_proj,v_proj).
            values.update(parse_assignments(hp, field="--hp", split=False))
            values.update({k: v for k, v in flags.items() if v is not None})
            n_train, n_eval = _size(train_size, "--train-size"), _size(eval_size, "--eval-size")
            check_output(save_dir, "--save-dir", folder=True)
            from staytuned.hparams.train import TrainConfig

            config = TrainConfig.from_dict(values)  # bad HPs are bad input here (exit 2)
            if config.method == "qlora":  # so is a qlora run without bitsandbytes
                from staytuned.models import require_bitsandbytes

                require_bitsandbytes(field="--method")
            precision = _flag_value(precision, "--precision")
            if label_scoring not in ("loglik", "generate"):
                raise InputError("unknown label scoring", field="--label-scoring", value=label_scoring,
                                 expected="loglik | generate")
            result = _run(model, task, config, n_train, n_eval, eval_split, data_seed, eval_test,
                          label_scoring, eval_only, save_dir, device, threads, precision, quiet, verbose,
                          checkpointing=checkpointing, trainer=trainer,
                          trainer_options={k: v for k, v in options.items() if v is not None})
        if not quiet and json_path != "-":
            _print_result(result, verbose)
        if result.error and (result.status == "failed" or not quiet):
            err.print(f"[bold red]trial {result.status}:[/] {result.error}" if result.status == "failed"
                      else f"[yellow]warning:[/] {result.error}", markup=True, highlight=False)
        write_json(json_path, result.to_dict())
        if result.status == "failed":
            raise typer.Exit(EXIT_FAILED)


def _run(model: str, task: str, config: Any, n_train: int | None, n_eval: int | None, eval_split: str,
         data_seed: int, eval_test: bool, label_scoring: str, eval_only: bool, save_dir: Path | None,
         device: str | None, threads: int | None, precision: str, quiet: bool, verbose: bool, *,
         checkpointing: str = "auto", trainer: str = "native", trainer_options: dict[str, Any] | None = None) -> Any:
    import torch
    import transformers

    from staytuned.finetune.trainers.native import nf4_compute_dtype
    from staytuned.finetune.trial import ModelCache, run_trial
    from staytuned.hardware.threads import threads_per_worker
    from staytuned.tasks import load_task

    if threads is not None and threads < 1:
        raise InputError("must be >= 1", field="--threads", value=threads)
    chosen = threads_per_worker(1, requested=threads)
    torch.set_num_threads(chosen.threads)
    if not quiet:
        err.print(f"threads: {chosen.threads} ({chosen.reason})", highlight=False)
    if not verbose:
        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
    from staytuned._noise import quiet_third_party_warnings

    quiet_third_party_warnings(verbose)  # before catch_warnings below: it records what passes
    task_obj = load_task(task)
    cache = ModelCache(device=device, max_models=1)
    if trainer != "command":  # a training command loads its own model
        if not quiet:
            err.print(f"loading model {model} ...", highlight=False)
        cache.get(model, nf4_compute_dtype=nf4_compute_dtype(config, precision, device))  # the base run_trial uses
    phases = {"train": "training (steps)", "eval": "evaluating (rows)"}
    with step_progress(err, quiet=quiet, transient=False) as bar, \
            warnings.catch_warnings(record=True) as caught:
        result = run_trial(model, task_obj, config, train_size=n_train, eval_size=n_eval,
                           eval_split=eval_split, seed=data_seed, save_dir=save_dir, model_cache=cache,
                           eval_only=eval_only, eval_test=eval_test, label_scoring=label_scoring,
                           precision=precision, gradient_checkpointing=checkpointing,
                           trainer=trainer, trainer_options=trainer_options,
                           progress=lambda phase, done, total: bar.update(phases.get(phase, phase), done, total))
    _show_warnings(caught)
    return result


def _flag_value(precision: str, flag: str) -> str:
    from staytuned.hardware.precision import check_precision

    try:
        return check_precision(precision)
    except InputError as exc:
        raise InputError("unknown precision", field=flag, value=precision, expected=exc.expected) from None


def _show_warnings(caught: list[warnings.WarningMessage]) -> None:
    """A slow precision is the user's to fix: say it plainly; other warnings go out as before."""
    from staytuned.hardware.precision import SlowPrecisionWarning

    for w in caught:
        if issubclass(w.category, SlowPrecisionWarning):
            err.print(f"[yellow]warning:[/] {w.message}", markup=True, highlight=False)
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
