"""``staytuned report`` (HTML + PNG) and ``staytuned export`` (configs for fine-tuning tools).

Exit codes: 0 written; 2 bad input (file, study, flag or value named in the message); 130 interrupted.
"""

from __future__ import annotations

from pathlib import Path

import typer

from staytuned.cli._common import check_output, cli_errors, err, out, write_json
from staytuned.cli._flags import flag_names
from staytuned.cli._options import JsonOpt, QuietOpt, VerboseOpt
from staytuned.cli.cbs import TABLE_FLAGS

_TARGETS = "axolotl | llama-factory | trl | peft | hf-args"


def _fmt_bytes(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.0f} kB"


# The API parameter (or field) a library error names -> the flag that sets it here.
REPORT_FLAGS = {**TABLE_FLAGS, "study": "--study", "out": "--output", "png_dir": "--png-dir",
                "columns": "column options", "direction": "--direction"}
EXPORT_FLAGS = {"target": "--to", "model": "--model", "ref": "--from-recommendation", "rank": "--rank",
                "study_name": "--study", "study": "--study", "path": "--output", "fmt": "--format",
                "micro_batch": "--micro-batch", "devices": "--devices", "dataset": "--dataset",
                "output_dir": "--output-dir", "strict": "--strict", "precision": "--precision"}


def report(
    source: str = typer.Argument(..., help="Optuna storage (sqlite:///x.db, postgresql://..., or a .db file) "
                                          "or a results table (.csv, .parquet, .jsonl)."),
    output: Path = typer.Option(Path("report.html"), "--output", "-o", help="HTML file to write."),
    study: str | None = typer.Option(None, "--study", help="Only this study of the storage (default: all)."),
    png_dir: Path | None = typer.Option(None, "--png-dir", help="Also write each plot as a PNG into DIR."),
    tol: float = typer.Option(0.01, "--tol", help="CBS coverage tolerance, relative (0.01 = within 1% of the best)."),
    k: int = typer.Option(10, "--k", "-k", help="Largest k of the best-of-top-k curves."),
    title: str | None = typer.Option(None, "--title", help="Page title."),
    dataset_col: str | None = typer.Option(None, "--dataset-col", help="Results table: dataset column (default 'dataset')."),
    score_col: str | None = typer.Option(None, "--score-col", help="Results table: score column (default 'score')."),
    config_col: str | None = typer.Option(None, "--config-col", help="Results table: config-id column (default 'config_id' when present)."),
    hp_cols: str | None = typer.Option(None, "--hp-cols", help="Results table: comma-separated HP columns (default hp_* or the role-less columns)."),
    metric_col: str | None = typer.Option(None, "--metric-col", help="Results table: metric-name column (sets the direction)."),
    status_col: str | None = typer.Option(None, "--status-col", help="Results table: status column (default 'status')."),
    ignore_cols: str | None = typer.Option(None, "--ignore-cols", help="Results table: columns that are neither HPs nor roles."),
    direction: str | None = typer.Option(None, "--direction", help="Results table: max or min for every dataset (default: from the metric name)."),
    json_path: str | None = JsonOpt,
    quiet: bool = QuietOpt,
    verbose: bool = VerboseOpt,
) -> None:
    """Write ONE self-contained HTML report (works offline: plotly.js and CSS are inline).

    Sections: CBS coverage + best-of-top-k vs baselines, per-dataset score heatmaps over the two
    most important HPs, fANOVA HP importance, parallel coordinates, optimization history, Pareto
    front (decoding studies), failed trials with their errors. Sections that do not apply say why.

    Example: staytuned report runs/sst2/study.db -o report.html --png-dir figs

    Exit codes: 0 written; 2 bad input (missing file, unknown study, bad column); 130 interrupted.
    """
    from staytuned.cli._progress import step_progress
    from staytuned.report import REPORT_STEPS, write_report

    with cli_errors(), flag_names(REPORT_FLAGS):
        from staytuned.errors import InputError

        if k < 1:
            raise InputError("must be >= 1", field="--k", value=k)
        if not tol >= 0:
            raise InputError("must be >= 0", field="--tol", value=tol)
        check_output(output, "--output")
        check_output(png_dir, "--png-dir", folder=True)
        with step_progress(err, quiet=quiet) as progress:
            total = REPORT_STEPS + (png_dir is not None)
            done = [0]

            def step(name: str) -> None:  # called as each section starts
                progress.update("report", done[0], total, detail=name)
                done[0] += 1
                if verbose:
                    err.print(f"[dim]{name}[/]")

            cols = dict(dataset_col=dataset_col, score_col=score_col, config_col=config_col, hp_cols=hp_cols,
                        metric_col=metric_col, status_col=status_col, ignore_cols=ignore_cols)
            columns = None
            if any(v is not None for v in cols.values()):
                from staytuned.cli.cbs import _columns  # the same column options as `staytuned cbs`

                columns = _columns(**cols)
            result = write_report(source, output, study=study, png_dir=png_dir, tol=tol, k=k,
                                  title=title, columns=columns, direction=direction, on_step=step)
            progress.update("report", total, total, detail="written")
        shown = [s for s, v in result.sections.items() if v == "shown"]
        if not quiet:
            out.print(f"wrote {result.html} ({_fmt_bytes(result.bytes)}; {result.n_runs} runs, "
                      f"{len(result.datasets)} datasets; {len(shown)} of {len(result.sections)} sections shown)")
            for name, status in result.sections.items():
                if status != "shown" or verbose:
                    err.print(f"  {name}: {status}", markup=False)
            if result.pngs:
                out.print(f"wrote {len(result.pngs)} PNGs to {png_dir}")
                if verbose:
                    for p in result.pngs:
                        out.print(f"  {p}", markup=False)
        write_json(json_path, result.to_dict())


def export(
    to: str = typer.Option(..., "--to", help=f"Target tool: {_TARGETS}."),
    model: str = typer.Option(..., "--model", help="Model to fine-tune (Hugging Face id or local path)."),
    from_recommendation: str | None = typer.Option(
        None, "--from-recommendation", help="A shipped recommendation, MODEL/METHOD (see `staytuned recommend`)."),
    rank: int = typer.Option(1, "--rank", help="Which rank of the recommendation (with --from-recommendation)."),
    from_study: str | None = typer.Option(None, "--from-study", help="Best trial of a study in this storage."),
    study: str | None = typer.Option(None, "--study", help="Study name (with --from-study)."),
    config: Path | None = typer.Option(None, "--config", help="JSON/YAML file of HPs (TrainConfig names)."),
    set_: list[str] = typer.Option([], "--set", help="Override HPs: --set learning_rate=2e-4 (repeatable)."),
    output: str | None = typer.Option(None, "--output", "-o", help="File or directory to write ('-' or unset: stdout)."),
    fmt: str | None = typer.Option(None, "--format", help="py | json | yaml (default: from -o's suffix, else the tool's usual)."),
    micro_batch: int | None = typer.Option(None, "--micro-batch", help="Per-device batch; must divide the "
                                           "effective batch size (default: its largest divisor <= 8)."),
    devices: int = typer.Option(1, "--devices", help="GPUs sharing the effective batch."),
    dataset: str | None = typer.Option(None, "--dataset", help="Dataset the config trains on (tool-specific name)."),
    output_dir: str | None = typer.Option(None, "--output-dir", help="Training output folder written into the config."),
    strict: bool = typer.Option(False, "--strict", help="Refuse schedules the tool lacks (time_based, step, "
                                "exponential) instead of mapping them to the nearest polynomial decay."),
    precision: str | None = typer.Option(None, "--precision", help="Precision of the exported run: auto "
                                         "(bf16 where the GPU has it), fp32, bf16 or fp16. An execution "
                                         "setting, not part of the config."),
    json_path: str | None = JsonOpt,
    quiet: bool = QuietOpt,
    verbose: bool = VerboseOpt,
) -> None:
    """Write a recommended or best configuration as a ready-to-run config for a fine-tuning tool.

    YAML for axolotl and LLaMA-Factory; Python (default) or JSON for TRL's SFTConfig + PEFT
    LoraConfig and for HF TrainingArguments; JSON (adapter_config.json) or Python for PEFT.
    The effective batch size becomes micro-batch x gradient accumulation x devices.

    Schedules the tools lack (time_based, step, exponential) become HF's polynomial decay with the
    same final and mean learning rate, with a warning in the file and on stderr; --strict refuses.

    Example: staytuned export --to axolotl --config best.yaml --model Qwen/Qwen2.5-0.5B -o axolotl.yaml

    Exit codes: 0 written; 2 bad input (source, HP, micro-batch, target named in the message).
    """
    from staytuned.errors import InputError
    from staytuned.export import export_config
    from staytuned.export.sources import config_from_file, config_from_recommendation, config_from_study
    from staytuned.results import parse_assignment

    with cli_errors(), flag_names(EXPORT_FLAGS):
        chosen = [n for n, v in (("--from-recommendation", from_recommendation), ("--from-study", from_study),
                                 ("--config", config)) if v is not None]
        if len(chosen) > 1:
            raise InputError("give one source of the configuration", value=" and ".join(chosen),
                             expected="one of --from-recommendation, --from-study, --config")
        if study is not None and from_study is None:
            raise InputError("--study goes with --from-study", field="study", value=study)
        if from_recommendation is not None:
            hp, source = config_from_recommendation(from_recommendation, rank)
        elif from_study is not None:
            hp, source = config_from_study(from_study, study)
        elif config is not None:
            hp, source = config_from_file(config)
        elif set_:
            hp, source = {}, "command-line HPs"
        else:
            raise InputError("no configuration given",
                             expected="--from-recommendation MODEL/METHOD, --from-study STORAGE, --config FILE or --set")
        if set_:
            from staytuned.export.sources import clean_config

            overrides = clean_config(parse_assignment(",".join(set_)), where="--set")
            hp = {**hp, **overrides}
            source += " with " + ", ".join(f"{k}={v}" for k, v in overrides.items())
        to_stdout = output in (None, "-")
        if output is not None and not to_stdout:  # a file, or a folder the tool's usual file name goes into
            check_output(output, "--output", folder=Path(output).is_dir())
        if to_stdout and json_path == "-":
            raise InputError("--json - and the config would both go to stdout", field="output",
                             expected="-o FILE (or --json PATH)")
        result = export_config(hp, to, model=model, path=None if to_stdout else output, fmt=fmt,
                               source=source, micro_batch=micro_batch, devices=devices, dataset=dataset,
                               output_dir=output_dir, strict=strict, precision=precision)
        if not quiet:
            for w in result.warnings:
                err.print(f"[yellow]warning:[/] {w}", highlight=False)
            if verbose:
                for n in result.plan.notes:
                    err.print(f"note: {n}", markup=False)
        b = result.plan.batch
        if to_stdout:
            out.file.write(result.text)
        elif not quiet:
            out.print(f"wrote {result.path} ({to} {result.format}) from {source}: batch {b.effective} = "
                      f"{b.micro_batch} x {b.grad_accum} accumulation x {b.devices} device(s), "
                      f"lr_scheduler {result.plan.schedule.name}", markup=False)
        write_json(json_path, result.to_dict())


def register(app: typer.Typer) -> None:
    app.command("report")(report)
    app.command("export")(export)
