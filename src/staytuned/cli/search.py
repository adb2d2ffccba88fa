"""``staytuned tune``, ``grid``, ``results export`` and ``simulate``."""

from __future__ import annotations

import dataclasses
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape

from staytuned.cli import cbs as cbs_cli  # the column flags of `cbs evaluate`, shared
from staytuned.cli._common import EXIT_FAILED, check_output, cli_errors, err, out, write_json
from staytuned.cli._flags import flag_names
from staytuned.cli._options import (
    TRAINER_FLAGS,
    CheckpointingOpt,
    CommandFormatOpt,
    CommandOpt,
    DeviceOpt,
    DistributedOpt,
    JsonOpt,
    MetricFileOpt,
    MetricRegexOpt,
    MicroBatchOpt,
    NumProcessesOpt,
    OptionGroup,
    PrecisionOpt,
    QuietOpt,
    ThreadsOpt,
    TrainerOpt,
    TrialTimeoutOpt,
    VerboseOpt,
    check_trainer,
    grouped,
)
from staytuned.errors import InputError

if TYPE_CHECKING:
    from staytuned.hardware.gpus import Workers
    from staytuned.hparams.execution import ExecutionSettings
    from staytuned.search.executors import Executor
    from staytuned.search.storage import HeartbeatSettings

STRATEGY_HELP = "grid | random | tpe | gp | cbs | cbs+tpe | cbs-adaptive | zeroshot | greedy-portfolio | transfer"

# The API parameter (or field) a library error names -> the flag that sets it here.
_EXECUTOR_FLAGS = {"workers": "--workers", "n_workers": "--workers", "backend": "--backend",
                   "ray_address": "--ray-address", "address": "--ray-address",
                   "cpus_per_trial": "--cpus-per-trial", "gpus_per_trial": "--gpus-per-trial",
                   "share_gpus": "--share-gpus",
                   "precision": "--precision", "device": "--device", "threads": "--threads",
                   "micro_batch_size": "--micro-batch-size",
                   "gradient_checkpointing": "--gradient-checkpointing", "trainer": "--trainer",
                   **TRAINER_FLAGS}
TUNE_FLAGS = {**_EXECUTOR_FLAGS, "n_trials": "--trials", "method": "--method", "model": "--model",
              "strategy": "--strategy", "pruner": "--pruner", "cbs_table": "--cbs-table",
              "offline": "--cbs-table", "cbs_k": "--cbs-k", "study": "--study",
              "study_name": "--study", "train_size": "--train-size", "eval_size": "--eval-size"}
GRID_FLAGS = {**_EXECUTOR_FLAGS, "cells": "--tasks", "study": "--name", "study_name": "--name",
              "train_size": "--train-sizes", "eval_size": "--eval-size"}
SIMULATE_FLAGS = {**cbs_cli.TABLE_FLAGS, "strategies": "--strategies", "cbs_k": "--cbs-k",
                  "tol": "--tol", "k": "--k", "seeds": "--seeds", "rankers": "--rankers"}


def _csv(text: str | None) -> list[str]:
    return [s.strip() for s in (text or "").split(",") if s.strip()]


def _overrides(items: list[str] | None) -> dict[str, Any]:
    """``--set max_seq_length=64`` -> fixed HP values, validated like a space's ``fixed``."""
    from staytuned._util.parse import parse_assignments
    from staytuned.search.space import parse_space

    # One assignment per --set: a value may hold commas (lora_target_modules=q_proj,v_proj).
    fixed = parse_assignments(items, field="--set", split=False)
    if fixed:
        parse_space({"fixed": fixed}, source="--set")  # unknown names / wrong types: clear error
    return fixed


def _quiet_logs(verbose: bool) -> None:
    import logging
    import os
    import warnings

    if not verbose:  # read by transformers/huggingface_hub at import, also in spawned workers
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("TQDM_DISABLE", "1")

    import optuna

    optuna.logging.set_verbosity(optuna.logging.INFO if verbose else optuna.logging.ERROR)
    if not verbose:
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        logging.getLogger("transformers").setLevel(logging.ERROR)
    from staytuned._noise import quiet_third_party_warnings, set_verbose

    set_verbose(verbose)  # worker processes filter (or not) the same way
    quiet_third_party_warnings(verbose)  # e.g. transformers' past_key_values FutureWarning


def _study_name(*parts: Any) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", "-".join(str(p) for p in parts if p is not None))


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _heartbeat(seconds: int) -> HeartbeatSettings:
    """--heartbeat: a trial silent for three beats is retried."""
    from staytuned.search.storage import HeartbeatSettings

    return HeartbeatSettings(interval=seconds, grace_period=3 * seconds)


def parse_workers(text: str | None) -> Workers:
    """--workers: a positive number or "auto" (checked by the executor)."""
    if text is None or text.strip().lower() == "auto":
        return None if text is None else "auto"
    try:
        return int(text)
    except ValueError:
        raise InputError("must be a positive integer or 'auto'", field="workers",
                         value=text) from None


class RunOptions(OptionGroup):
    """The options of tune and grid: where the workers run, how a trial runs, what is printed."""

    workers: str | None = typer.Option(None, "--workers", help="Trials in parallel: N or auto (default: 1 on this machine; auto: one per GPU, 1 without GPUs; with --backend ray, as many as the cluster holds).")
    backend: str = typer.Option("local", "--backend", help="local: worker processes on this machine; ray: workers on a Ray cluster (docs/cluster.md).")
    ray_address: str | None = typer.Option(None, "--ray-address", help="With --backend ray: 'auto' (the cluster this node joined, or RAY_ADDRESS), or the head's host:port; default: a local Ray on this machine.")
    cpus_per_trial: float = typer.Option(1.0, "--cpus-per-trial", help="With --backend ray: CPUs each trial holds (fractions below 1 allowed).")
    gpus_per_trial: float | None = typer.Option(None, "--gpus-per-trial", help="GPUs each trial holds (default: 1 where there are GPUs, else 0): local workers each get their own (CUDA_VISIBLE_DEVICES); Ray reserves them (0.5 = two trials per GPU).")
    share_gpus: bool = typer.Option(False, "--share-gpus", help="Local: allow more workers than the GPUs hold (GPUs handed out round-robin).")
    precision: str = PrecisionOpt
    device: str | None = DeviceOpt
    threads: int | None = ThreadsOpt
    micro_batch_size: int | None = MicroBatchOpt
    gradient_checkpointing: str = CheckpointingOpt
    trainer: str = TrainerOpt
    command: str | None = CommandOpt
    command_format: str | None = CommandFormatOpt
    metric_file: str | None = MetricFileOpt
    metric_regex: str | None = MetricRegexOpt
    trial_timeout: float | None = TrialTimeoutOpt
    distributed: str | None = DistributedOpt
    num_processes: int | None = NumProcessesOpt
    json_path: str | None = JsonOpt
    quiet: bool = QuietOpt
    verbose: bool = VerboseOpt

    def execution(self) -> ExecutionSettings:
        from staytuned.hparams.execution import ExecutionSettings

        # One option per execution setting, under the same name: the settings are read by name.
        settings = ExecutionSettings(**{f.name: getattr(self, f.name) for f in dataclasses.fields(ExecutionSettings)})
        check_trainer(settings.trainer, settings.trial_kwargs().get("trainer_options"))
        return settings

    def start(self) -> tuple[Executor, int | None, str]:
        """Logs quieted; the executor of --backend and its options, checked; the number of
        workers (None: as many as a Ray cluster holds); the header's words on them."""
        from staytuned.search.executors import (
            make_executor,  # light: Ray is imported only to run
        )

        _quiet_logs(self.verbose)
        executor = make_executor(self.backend, ray_address=self.ray_address,
                                 cpus_per_trial=self.cpus_per_trial,
                                 gpus_per_trial=self.gpus_per_trial, share_gpus=self.share_gpus)
        workers = parse_workers(self.workers)
        executor.check(workers)
        return executor, executor.resolve(workers), executor.describe(workers)


@grouped
def tune_cmd(
    task: str = typer.Option(..., "--task", help="Task: a bundled name (sst2, trec, ...) or a data path."),
    model: str | None = typer.Option(None, "--model", help="Model: smollm2-135m, tiny-llama, a folder, a .gguf, a hub id. Omit when the space searches 'model'."),
    method: str | None = typer.Option(None, "--method", help="lora, qlora or full (default: the space's, else lora)."),
    space: str = typer.Option("preset:lora", "--space", help="Search space: preset:lora | preset:full | preset:demo | a YAML file."),
    strategy: str = typer.Option("tpe", "--strategy", help=STRATEGY_HELP),
    trials: int = typer.Option(12, "--trials", help="Finished trials the study ends with (re-running resumes)."),
    train_size: int | None = typer.Option(None, "--train-size", help="Training examples per trial (default: all)."),
    eval_size: int | None = typer.Option(200, "--eval-size", help="Validation examples scored per trial."),
    eval_split: str = typer.Option("validation", "--eval-split", help="Split the trials are scored on."),
    set_: list[str] | None = typer.Option(None, "--set", help="Fix an HP for every trial, e.g. --set max_seq_length=64 (repeatable)."),
    pruner: str = typer.Option("none", "--pruner", help="none | median | halving | hyperband (per-epoch validation scores)."),
    cbs_table: str | None = typer.Option(None, "--cbs-table", help="Results table CBS ranks for cbs / cbs+tpe (default: the shipped recommendations) and cbs-adaptive (required)."),
    cbs_k: int = typer.Option(3, "--cbs-k", help="cbs+tpe: CBS configs tried before TPE."),
    storage: str | None = typer.Option(None, "--storage", help="Optuna storage URL (default sqlite:///RUNS/STUDY/study.db); postgresql://... to share."),
    study: str | None = typer.Option(None, "--study", help="Study name (default from task, model, method, space, strategy, train size)."),
    runs_dir: Path = typer.Option(Path("runs"), "--runs-dir", help="Folder of the default SQLite storages."),
    seed: int = typer.Option(0, "--seed", help="Seed of the trials and the sampler."),
    heartbeat: int = typer.Option(10, "--heartbeat", help="Seconds between heartbeats; a trial silent for 3x this is retried."),
    baseline: bool = typer.Option(True, "--baseline/--no-baseline", help="Score the untuned model on the same rows first (cached per model, task and rows) and report the gain."),
    outputs: bool = typer.Option(True, "--outputs/--no-outputs", help="With the default storage: write the study's results table (results.csv) and report (report.html) beside it."),
    trial_fn: str = typer.Option("staytuned.finetune:run_trial", "--trial-fn", hidden=True, help="module:function run per trial."),
    direction: str = typer.Option("max", "--direction", hidden=True, help="With --trial-fn: max or min."),
    run: RunOptions = RunOptions.param(),
) -> None:
    """Tune one task: a stored, resumable study; prints the best config and its metrics."""
    with cli_errors(), flag_names(TUNE_FLAGS):
        from staytuned.search.display import StudyProgress
        from staytuned.search.failures import failure_report
        from staytuned.search.objective import TrialSettings
        from staytuned.search.runner import prepare_spec, tune
        from staytuned.search.space import load_space
        from staytuned.search.storage import default_storage_url, redact
        from staytuned.search.study import StudySpec

        executor, workers, workers_text = run.start()
        quiet, json_path = run.quiet, run.json_path
        sp = load_space(space)
        name = study or _study_name("tune", Path(task).name, model and Path(model).name, method,
                                    sp.name, strategy, train_size and f"n{train_size}")
        url = storage or default_storage_url(name, runs_dir)
        spec = StudySpec(
            storage=url, study_name=name, task=task, model=model, space=space, strategy=strategy,
            n_trials=trials, method=method, pruner=pruner, seed=seed, cbs_k=cbs_k, trial_fn=trial_fn,
            direction=direction,
            settings=TrialSettings(train_size=train_size, eval_size=eval_size, eval_split=eval_split,
                                   seed=seed, overrides=_overrides(set_),
                                   execution=run.execution()),
            heartbeat=_heartbeat(heartbeat),
        )
        spec = prepare_spec(spec, cbs_table=cbs_table)
        if not quiet:
            # soft_wrap: one line however narrow the terminal, so the URL never breaks in two
            err.print(f"study [bold]{escape(name)}[/] in {escape(redact(url))}: {strategy}, "
                      f"{trials} trials, {workers_text}", markup=True, soft_wrap=True)
            if spec.offline is not None:
                # Each strategy ranks (or reweighs) the same offline source its own way.
                err.print(f"offline source ({strategy}): {spec.offline.provenance}", soft_wrap=True)
        started = time.perf_counter()
        untuned = None
        if baseline:
            from staytuned.search.baseline import untuned_baseline

            if not quiet:
                err.print("scoring the untuned model ...", soft_wrap=True)
            untuned = untuned_baseline(spec)
            if untuned is not None and not quiet:
                how = "cached" if untuned.cached else f"{untuned.runtime_s:.0f} s"
                err.print(f"untuned {escape(untuned.model)}: {untuned.metric} {untuned.score:.3f} on "
                          f"{untuned.n_eval} {untuned.eval_split} rows ({how})", soft_wrap=True)
        with StudyProgress(err, url, [name], trials, title=name, maximize=spec.direction == "max",
                           mode="off" if quiet else "auto", workers=workers):
            outcome = tune(spec, workers=workers, executor=executor)
        minutes = (time.perf_counter() - started) / 60
        report = outcome.report
        if report is not None and report.description and not quiet:
            err.print(report.description)
        c = outcome.counts
        payload: dict[str, Any] = {
            "study": name, "storage": redact(url), "strategy": strategy, "task": task, "model": model,
            "trials": {"finished": c.finished, "complete": c.complete, "failed": c.failed,
                       "pruned": c.pruned, "ran_now": outcome.ran},
            "best": None if outcome.best is None else {
                "trial": outcome.best.number, "score": outcome.best.value,
                "config": outcome.best.config, "config_id": outcome.best.config_id,
                "metrics": outcome.best.metrics},
        }
        if report is not None and report.details is not None:
            payload[executor.name] = dict(report.details)
        failures = failure_report(url, [name])
        payload.update(failures.to_dict())
        if untuned is not None:
            payload["untuned"] = untuned.to_dict()
        written = _study_outputs(url, name, runs_dir, storage is None and outputs and c.finished > 0)
        payload["outputs"] = {k: str(v) for k, v in written.items()}
        if json_path != "-":
            out.print(f"{c.finished} trials ({c.complete} ok, {c.failed} failed, {c.pruned} pruned; "
                      f"{outcome.ran} run now)")
            for line in failures.lines:
                out.print(line, markup=False)
            if outcome.best is None:
                out.print("no successful trial")
            else:
                b = outcome.best
                out.print(f"best: trial {b.number}, score {b.value:.4f}")
                out.print("  config: " + ", ".join(f"{k}={_fmt(v)}" for k, v in b.config.items()))
                out.print("  metrics: " + ", ".join(f"{k}={_fmt(v)}" for k, v in b.metrics.items()))
                if untuned is not None:
                    out.print(gain_line(untuned.score, b.value, c.finished, minutes,
                                        maximize=spec.direction == "max"))
            out.print(f"study: {redact(url)}", markup=False)
            for label, path in written.items():
                out.print(f"{label}: {path}", markup=False)
        write_json(json_path, payload)
        if outcome.best is None:
            raise typer.Exit(EXIT_FAILED)


def gain_line(untuned: float, best: float, trials: int, minutes: float, *, maximize: bool = True) -> str:
    """``untuned 0.630 -> best 0.810 (+18.0 points) in 3 trials, 2.1 min``.

    Points are hundredths of the metric (accuracy, F1 and ROUGE run from 0 to 1).
    """
    gain = (best - untuned) * (1 if maximize else -1) * 100
    return (f"untuned {untuned:.3f} -> best {best:.3f} ({gain:+.1f} points) in {trials} trials, "
            f"{minutes:.1f} min")


def _study_outputs(url: str, name: str, runs_dir: Path, wanted: bool) -> dict[str, Path]:
    """The results table and report of a study in its default folder (nothing for shared storages)."""
    if not wanted:
        return {}
    from staytuned.report import write_report
    from staytuned.search.table import export_results

    folder = Path(url.removeprefix("sqlite:///")).parent
    table, page = folder / "results.csv", folder / "report.html"
    export_results(url, table, [name])
    write_report(url, page, study=name, title=f"staytuned: {name}")
    return {"table": table, "report": page}


@grouped
def grid_cmd(
    tasks: str = typer.Option(..., "--tasks", help="Comma-separated tasks."),
    models: str = typer.Option(..., "--models", help="Comma-separated models."),
    methods: str = typer.Option("lora", "--methods", help="Comma-separated methods (lora, qlora, full)."),
    train_sizes: str = typer.Option("all", "--train-sizes", help="Comma-separated train sizes ('all' = the whole train split)."),
    space: str = typer.Option("preset:demo", "--space", help="Search space (its grid points are run)."),
    eval_size: int | None = typer.Option(200, "--eval-size", help="Validation examples scored per trial."),
    set_: list[str] | None = typer.Option(None, "--set", help="Fix an HP for every trial (repeatable)."),
    storage: str | None = typer.Option(None, "--storage", help="Optuna storage URL (default sqlite:///RUNS/NAME/study.db)."),
    name: str = typer.Option("grid", "--name", help="Grid name: studies are NAME/task/model/method/size."),
    runs_dir: Path = typer.Option(Path("runs"), "--runs-dir", help="Folder of the default SQLite storage."),
    seed: int = typer.Option(0, "--seed", help="Seed of every trial."),
    heartbeat: int = typer.Option(10, "--heartbeat", help="Seconds between heartbeats; silent 3x this = retried."),
    trial_fn: str = typer.Option("staytuned.finetune:run_trial", "--trial-fn", hidden=True),
    run: RunOptions = RunOptions.param(),
) -> None:
    """Every config of the space on every cell (task x model x method x train size), one storage."""
    with cli_errors(), flag_names(GRID_FLAGS):
        from staytuned.search.display import StudyProgress
        from staytuned.search.failures import failure_report
        from staytuned.search.objective import TrialSettings
        from staytuned.search.runner import grid_status, prepare_grid
        from staytuned.search.storage import default_storage_url, redact
        from staytuned.search.study import Cell, GridSpec

        executor, workers, workers_text = run.start()
        quiet, json_path = run.quiet, run.json_path
        sizes: list[int | None] = []
        for s in _csv(train_sizes):
            if s == "all":
                sizes.append(None)
            elif s.isdigit() and int(s) > 0:
                sizes.append(int(s))
            else:
                raise InputError("bad train size", field="--train-sizes", value=s,
                                 expected="positive integers or 'all'")
        from staytuned.hparams.schema import METHODS

        for m in _csv(methods):
            if m not in METHODS:
                raise InputError("unknown method", field="--methods", value=m, expected=", ".join(METHODS))
        cells = tuple(Cell(t, mo, me, ts) for t in _csv(tasks) for mo in _csv(models)
                      for me in _csv(methods) for ts in sizes)
        url = storage or default_storage_url(name, runs_dir)
        spec = GridSpec(storage=url, name=name, cells=cells, space=space, trial_fn=trial_fn,
                        settings=TrialSettings(eval_size=eval_size, seed=seed,
                                               overrides=_overrides(set_),
                                               execution=run.execution()),
                        heartbeat=_heartbeat(heartbeat))
        spec = prepare_grid(spec)
        total = spec.size()
        if not quiet:
            err.print(f"grid [bold]{escape(name)}[/]: {len(cells)} cells, {total} trials in "
                      f"{escape(redact(url))}, {workers_text}", markup=True, soft_wrap=True)
        names = [spec.cell_spec(c).study_name for c in cells]
        with StudyProgress(err, url, names, total, title=name, mode="off" if quiet else "auto",
                           workers=workers):
            report = executor.run(spec, workers=workers)
        ran = report.trials_run
        if report.description and not quiet:
            err.print(report.description)
        status = grid_status(spec)
        rows = {k: {"finished": c.finished, "complete": c.complete, "failed": c.failed,
                    "pruned": c.pruned} for k, c in status.items()}
        failures = failure_report(url, names)
        if json_path != "-":
            for key, r in rows.items():
                out.print(f"{key}: {r['finished']} trials ({r['complete']} ok, {r['failed']} failed)")
            for line in failures.lines:
                out.print(line, markup=False)
            held = sum(r["finished"] for r in rows.values())
            # a cell's study may also hold the trials of other spaces run into it
            done = f"{held}/{total} trials done" if held <= total else \
                f"{total} configs of this space; the cells hold {held} finished trials"
            out.print(f"{done} ({ran} run now); export with: staytuned results export {url} -o results.csv")
        payload = {"grid": name, "storage": redact(url), "total": total, "ran_now": ran,
                   "cells": rows, **failures.to_dict()}
        if report.details is not None:
            payload[executor.name] = dict(report.details)
        write_json(json_path, payload)


results_app = typer.Typer(help="Results stored by tune/grid.", no_args_is_help=True)


@results_app.command("export")
def export_cmd(
    storage: str = typer.Argument(..., help="Storage URL (sqlite:///runs/x/study.db, postgresql://...) or a .db file."),
    output: Path = typer.Option(..., "-o", "--output", help="Output table: .csv, .parquet or .jsonl."),
    study: list[str] | None = typer.Option(None, "--study", help="Only this study (repeatable; default all)."),
    json_path: str | None = JsonOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Write the canonical results table (what `staytuned cbs` reads with its defaults)."""
    with cli_errors():
        from staytuned.search.storage import normalize_url, redact, sqlite_path
        from staytuned.search.table import FORMATS, export_results

        if output.suffix not in FORMATS:
            raise InputError("unknown output format", field="-o", value=str(output),
                             expected="a path ending in " + ", ".join(FORMATS))
        check_output(output, "-o")
        url = normalize_url(storage)
        path = sqlite_path(url)
        if path is not None and not path.is_file():
            raise InputError("storage file not found", file=str(path), expected="an existing study.db")
        with flag_names({"out": "-o", "studies": "--study"}):
            n = export_results(url, output, study or None)
        if not quiet:
            err.print(f"{n} rows written to {output}")
        write_json(json_path, {"output": str(output), "rows": n, "storage": redact(url), "studies": study or "all"})


def simulate_cmd(
    table: Path = typer.Argument(..., help="Results table (CSV, Parquet, JSONL)."),
    strategies: str = typer.Option("grid,random,tpe,gp,cbs,cbs+tpe,cbs-adaptive,transfer", "--strategies", help="Comma list: " + STRATEGY_HELP),
    rankers: str = typer.Option("cbs,zeroshot,greedy-portfolio,best-average", "--rankers", help="Static rankings reported beside the strategies as static:<ranker> (comma list; '' for none)."),
    k: int = typer.Option(10, "--k", help="Trials per held-out dataset (best-of-k for k = 1..K)."),
    seeds: int = typer.Option(10, "--seeds", help="Seeds of the stochastic strategies."),
    cbs_k: int = typer.Option(3, "--cbs-k", help="cbs+tpe: CBS configs before TPE."),
    dataset_col: str = cbs_cli.DatasetCol,
    config_col: str | None = cbs_cli.ConfigCol,
    score_col: str = cbs_cli.ScoreCol,
    test_score_col: str | None = typer.Option(None, "--test-score-col", help="Second score column that scores held-out datasets (default 'score_test' when filled)."),
    hp_cols: str | None = cbs_cli.HpCols,
    hp_json_col: str | None = cbs_cli.HpJsonCol,
    ignore_cols: str | None = cbs_cli.IgnoreCols,
    status_col: str | None = cbs_cli.StatusCol,
    seed_col: str | None = cbs_cli.SeedCol,
    metric_col: str | None = cbs_cli.MetricCol,
    model_col: str | None = cbs_cli.ModelCol,
    method_col: str | None = cbs_cli.MethodCol,
    train_size_col: str | None = cbs_cli.TrainSizeCol,
    split_col: str | None = cbs_cli.SplitCol,
    model: str | None = cbs_cli.Model,
    method: str | None = cbs_cli.Method,
    train_size: str | None = cbs_cli.TrainSize,
    direction: str | None = cbs_cli.Direction,
    tol: float = typer.Option(0.01, "--tol", help="Solved = within tol*|best| of the held-out dataset's best."),
    agg: str = cbs_cli.Agg,
    choose_split: str = cbs_cli.ChooseSplit,
    score_split: str = cbs_cli.ScoreSplit,
    json_path: str | None = JsonOpt,
    quiet: bool = QuietOpt,
    verbose: bool = VerboseOpt,
) -> None:
    """Replay strategies on a results table, leaving each dataset out in turn."""
    with cli_errors(), flag_names(SIMULATE_FLAGS):
        from staytuned.search.simulate import parse_strategies, simulate

        _quiet_logs(verbose)
        names = parse_strategies(strategies)
        t = cbs_cli._load(table, verbose, dataset_col=dataset_col, config_col=config_col, score_col=score_col,
                  test_score_col=test_score_col, hp_cols=hp_cols, hp_json_col=hp_json_col,
                  ignore_cols=ignore_cols, status_col=status_col, seed_col=seed_col,
                  metric_col=metric_col, model_col=model_col, method_col=method_col,
                  train_size_col=train_size_col, split_col=split_col, group_col=None)
        t = cbs_cli._slice(t, model, method, train_size)
        choose, scoring, what = t.eval_matrices(choose_split, score_split,
                                                direction=cbs_cli._direction(direction), agg=agg)
        if not quiet:
            err.print(f"{len(choose.datasets)} datasets x {choose.shape[0]} configs; {what}; "
                      f"k={k}, seeds={seeds}")
        from staytuned.cli._progress import step_progress

        with step_progress(err, quiet=quiet) as bar:
            def tick(strategy: str, step: int, total: int) -> None:
                bar.update("simulating", step, total)

            sim = simulate(choose, scoring, strategies=names, k=k, seeds=seeds, tol=tol,
                           cbs_k=cbs_k, progress=tick,
                           rankers=[r.strip() for r in rankers.split(",") if r.strip()])
        if json_path != "-":
            _print_sim(sim)
        payload = sim.to_dict()
        payload.update(source=str(table), pairing=what)
        write_json(json_path, payload)


def _print_sim(sim: Any) -> None:
    from rich.table import Table

    ks = [i for i in (1, 2, 3, 5, 10) if i <= sim.k]
    tab = Table(title=f"mean best-of-k normalized score / solved fraction (tol {sim.tol:g})")
    tab.add_column("strategy")
    for i in ks:
        tab.add_column(f"k={i}", justify="right")
    tab.add_column("trials to solve", justify="right")
    for c in sim.strategies:
        tab.add_row(c.strategy, *[f"{c.mean_best_of_k[i - 1]:.3f} / {c.solved_fraction[i - 1]:.2f}"
                                  for i in ks], f"{c.trials_to_solve:.1f}")
    out.print(tab)


def register(app: typer.Typer) -> None:
    app.command("tune")(tune_cmd)
    app.command("grid")(grid_cmd)
    app.add_typer(results_app, name="results")
    app.command("simulate")(simulate_cmd)
