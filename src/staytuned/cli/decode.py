"""``staytuned decode tune``, ``generate``, ``compare`` and ``serve``."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from staytuned.cli._common import EXIT_FAILED, check_output, cli_errors, err, out, write_json
from staytuned.cli._flags import flag_names
from staytuned.cli._options import JsonOpt, OptionGroup, QuietOpt, VerboseOpt, grouped
from staytuned.errors import InputError

if TYPE_CHECKING:
    from staytuned.decoding.factory import BackendOptions

decode_app = typer.Typer(help="Tune decoding parameters (temperature, top-k/p, min-p, penalties, ...).",
                         no_args_is_help=True)

# -- shared options ------------------------------------------------------------------------------
BatchOpt = typer.Option(8, "--batch-size", help="hf: prompts generated together.")
DeviceOpt = typer.Option(None, "--device", help="hf: cpu or cuda (default: cuda when available).")
AdapterBaseOpt = typer.Option(None, "--adapter-base", help="Base model of a LoRA adapter folder (default: from its adapter_config.json).")


class RunArgs(OptionGroup):
    """How generate, compare and decode tune run the model (the fields of BackendOptions, as
    flags) and what they print."""

    kind: str = typer.Option("hf", "--backend", help="hf (local transformers) or http (OpenAI-compatible server).")
    base_url: str | None = typer.Option(None, "--base-url", help="Server URL for --backend http, e.g. http://127.0.0.1:8000/v1.")
    api_key: str | None = typer.Option(None, "--api-key", envvar="STAYTUNED_API_KEY", help="Bearer token for the server.")
    flavor: str = typer.Option("vllm", "--flavor", help="How the server spells extra fields: vllm | llamacpp | tgi | openai | staytuned.")
    timeout: float = typer.Option(60.0, "--timeout", help="HTTP: seconds to wait for an answer.")
    retries: int = typer.Option(2, "--retries", help="HTTP: retries on connection errors, timeouts, 429 and 5xx.")
    concurrency: int = typer.Option(4, "--concurrency", help="HTTP: requests in flight at most.")
    batch_size: int = BatchOpt
    device: str | None = DeviceOpt
    chat: bool | None = typer.Option(None, "--chat/--no-chat", help="Send prompts through the chat template (default: when the model has one; http: the chat endpoint).")
    adapter_base: str | None = AdapterBaseOpt
    json_path: str | None = JsonOpt
    quiet: bool = QuietOpt
    verbose: bool = VerboseOpt

    def backend(self) -> BackendOptions:
        """The library's BackendOptions (refuses an unknown backend, or http without a URL)."""
        from dataclasses import fields

        from staytuned.decoding.factory import BackendOptions

        return BackendOptions(**{f.name: getattr(self, f.name) for f in fields(BackendOptions)})


# The API parameters (or fields) of BackendOptions and the backends -> the shared flags above.
BACKEND_FLAGS = {"backend": "--backend", "kind": "--backend", "base_url": "--base-url",
                 "api_key": "--api-key", "retries": "--retries", "batch_size": "--batch-size",
                 "adapter_base": "--adapter-base", "model": "--model", "chat=False": "--no-chat",
                 "chat": "--chat"}


def _quiet_libs(verbose: bool) -> None:
    import logging
    import os
    import warnings

    if not verbose:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        logging.getLogger("transformers").setLevel(logging.ERROR)
        warnings.filterwarnings("ignore")


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "nan" if not math.isfinite(v) else f"{v:.4g}"
    return repr(v) if isinstance(v, str) else str(v)


# -- generate ------------------------------------------------------------------------------------
@grouped
def generate_cmd(
    model: str | None = typer.Option(None, "--model", help="smollm2-135m, tiny-llama, a model/adapter folder, a .gguf, a hub id (http: the served name; default the server's first)."),
    prompt: list[str] = typer.Option(..., "--prompt", help="Prompt text (repeatable: one generation each)."),
    temperature: float | None = typer.Option(None, "--temperature", help="0..2; 0 = greedy (default 1)."),
    top_k: int | None = typer.Option(None, "--top-k", help=">= 0; 0 = off."),
    top_p: float | None = typer.Option(None, "--top-p", help="(0, 1]; 1 = off."),
    min_p: float | None = typer.Option(None, "--min-p", help="[0, 1]; 0 = off."),
    max_new_tokens: int | None = typer.Option(None, "--max-new-tokens", help=">= 1 (default 64)."),
    stop: list[str] | None = typer.Option(None, "--stop", help="Stop sequence (repeatable); cut before it. Escapes like \\n are read."),
    frequency_penalty: float | None = typer.Option(None, "--frequency-penalty", help="-2..2, OpenAI's additive per-occurrence penalty."),
    presence_penalty: float | None = typer.Option(None, "--presence-penalty", help="-2..2, OpenAI's additive once-per-token penalty."),
    repetition_penalty: float | None = typer.Option(None, "--repetition-penalty", help="> 0; multiplicative (HF/CTRL), 1 = off."),
    seed: int | None = typer.Option(None, "--seed", help="Seed of the sampling (same seed, same text)."),
    config: Path | None = typer.Option(None, "--config", help="Decoding config YAML/JSON (or a `decode tune --json` result); flags override it."),
    run: RunArgs = RunArgs.param(),
) -> None:
    """Generate with one decoding config: the text on stdout, details on stderr / --json."""
    quiet, json_path = run.quiet, run.json_path
    with cli_errors(), flag_names(BACKEND_FLAGS):
        from staytuned.decoding.factory import open_backend, read_config_file
        from staytuned.hparams.decode import DecodingConfig

        data: dict[str, Any] = read_config_file(config) if config else {}
        flags = {"temperature": temperature, "top_k": top_k, "top_p": top_p, "min_p": min_p,
                 "max_new_tokens": max_new_tokens, "frequency_penalty": frequency_penalty,
                 "presence_penalty": presence_penalty, "repetition_penalty": repetition_penalty,
                 "seed": seed}
        data.update({k: v for k, v in flags.items() if v is not None})
        if stop:
            from staytuned.decoding.factory import unescape

            data["stop"] = [unescape(s) for s in stop]
        cfg = DecodingConfig.from_dict(data, source=str(config) if config else None)
        opts = run.backend()
        if opts.kind == "http":
            cfg.for_backend(opts.flavor)  # unsupported fields: refused before connecting
        _quiet_libs(run.verbose)
        started = time.perf_counter()
        if not quiet:
            err.print(f"loading {model or opts.base_url} ...")
        be = open_backend(model, opts)
        loaded = time.perf_counter()
        gens = be.generate(prompt, cfg)
        elapsed = time.perf_counter() - loaded
        if json_path != "-":
            for i, g in enumerate(gens):
                if len(gens) > 1 and not quiet:
                    err.print(f"[dim]--- prompt {i + 1}[/]", markup=True)
                typer.echo(g.text)  # raw: no markup or emoji codes interpreted
        n_tokens = sum(g.n_output_tokens for g in gens)
        if not quiet:
            reasons = ", ".join(sorted({g.finish_reason + (f" ({g.stop_sequence!r})" if g.stop_sequence else "")
                                        for g in gens}))
            err.print(f"[dim]{cfg.describe()} | {n_tokens} tokens in {elapsed:.2f} s "
                      f"({n_tokens / elapsed if elapsed > 0 else float('nan'):.1f} tok/s) | finish: {reasons}[/]",
                      markup=True, highlight=False)
        write_json(json_path, {
            "model": model or be.model_name, "backend": opts.kind, "config": cfg.to_dict(),
            "generations": [g.to_dict() for g in gens],
            "load_s": loaded - started, "generate_s": elapsed,
        })


# -- compare -------------------------------------------------------------------------------------
@grouped
def compare_cmd(
    models: str | None = typer.Option(None, "--models", help="Comma-separated models: aliases, model folders, LoRA adapter folders, .gguf files (http: served names)."),
    configs: str = typer.Option("greedy", "--configs", help="Decoding configs: a YAML/JSON file (name -> params) or inline 'greedy;warm:temperature=0.7,top_p=0.9' (';' between configs)."),
    prompts: Path | None = typer.Option(None, "--prompts", help="Prompts file: .txt (one per line), .jsonl ('prompt' field) or .json list."),
    task: str | None = typer.Option(None, "--task", help="Use a task's validation prompts instead (and score each column with its metric)."),
    n: int = typer.Option(5, "--n", help="With --task: how many validation examples."),
    max_new_tokens: int | None = typer.Option(None, "--max-new-tokens", help="Default for configs that do not set it."),
    output: Path | None = typer.Option(None, "-o", "--output", help="Also write the comparison: .jsonl, .csv or .md (side by side)."),
    width: int = typer.Option(60, "--width", help="Characters of each output shown in the terminal table (0 = all)."),
    run: RunArgs = RunArgs.param(),
) -> None:
    """The same prompts through several models and/or decoding configs, side by side."""
    quiet, json_path = run.quiet, run.json_path
    with cli_errors(), flag_names({**BACKEND_FLAGS, "models": "--models", "configs": "--configs",
                                   "prompts": "--prompts", "task": "--task"}):
        from rich.table import Table

        from staytuned.decoding.compare import check_output_path, read_prompts, run_compare, side_by_side, write_compare
        from staytuned.decoding.factory import load_named_configs

        check_output_path(output)
        check_output(output, "-o")
        model_list: list[str | None] = [m.strip() for m in (models or "").split(",") if m.strip()]
        if not model_list:
            if run.kind != "http":
                raise InputError("no models given", field="--models", expected="--models a,b")
            model_list = [None]  # the server's own model
        defaults = {"max_new_tokens": max_new_tokens} if max_new_tokens is not None else {}
        named = load_named_configs(configs, defaults)
        opts = run.backend()
        if opts.kind == "http":
            for _, cfg in named:
                cfg.for_backend(opts.flavor)
        if (prompts is None) == (task is None):
            raise InputError("give --prompts FILE or --task NAME", field="--prompts")
        texts = read_prompts(prompts) if prompts is not None else None
        task_obj = rows = None
        if task is not None:
            from staytuned.tasks import load_task

            if n < 1:
                raise InputError("must be at least 1", field="--n", value=n)
            task_obj = load_task(task)
            rows = task_obj.eval_rows("validation", size=n, seed=0)
        _quiet_libs(run.verbose)
        with err.status("comparing", spinner="dots") if not quiet else _nullcontext() as status:
            def step(msg: str) -> None:
                if status is not None:
                    status.update(msg)

            result = run_compare(model_list, named, prompts=texts, task=task_obj, rows=rows,
                                 options=opts, on_step=step)
        if json_path != "-":
            header, table_rows = side_by_side(result)
            table = Table(show_lines=True)
            for h in header:
                table.add_column(h, overflow="fold")
            for row in table_rows:
                table.add_row(*(_clip(c, width) if i >= 1 else c for i, c in enumerate(row)))
            out.print(table)
            for col, score in result.scores.items():
                out.print(f"{col}: {result.metric} = {score:.4f}")
        if output is not None:
            write_compare(result, output)
            if not quiet:
                err.print(f"wrote {output}")
        write_json(json_path, result.to_dict())


def _clip(text: str, width: int) -> str:
    return text if width <= 0 or len(text) <= width else text[: width - 1] + "…"


class _nullcontext:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


# -- serve ---------------------------------------------------------------------------------------
def serve_cmd(
    model: str = typer.Option(..., "--model", help="Model to serve: alias, folder, LoRA adapter folder, .gguf, hub id."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on (0.0.0.0 = every interface)."),
    port: int = typer.Option(8000, "--port", help="TCP port."),
    served_name: str | None = typer.Option(None, "--served-name", help="Model id in the API (default: the model reference)."),
    api_key: str | None = typer.Option(None, "--api-key", envvar="STAYTUNED_API_KEY", help="Require this bearer token."),
    batch_size: int = BatchOpt,
    device: str | None = DeviceOpt,
    adapter_base: str | None = AdapterBaseOpt,
    verbose: bool = VerboseOpt,
) -> None:
    """Serve a model with the OpenAI API: /v1/completions, /v1/chat/completions, /v1/models."""
    with cli_errors(), flag_names(BACKEND_FLAGS):
        from staytuned.decoding.hf_backend import HFBackend
        from staytuned.decoding.server import serve

        if not 0 < port < 65536:
            raise InputError("not a TCP port", field="--port", value=port, expected="1..65535")
        _quiet_libs(verbose)
        err.print(f"loading {model} ...")
        backend = HFBackend.load(model, device=device, batch_size=batch_size, base=adapter_base)
        name = served_name or backend.model_name
        err.print(f"serving [bold]{name}[/] at http://{host}:{port}/v1 (Ctrl-C to stop)", markup=True)
        serve(backend, host=host, port=port, model_name=name, api_key=api_key,
              log_level="info" if verbose else "warning")


# -- decode tune ---------------------------------------------------------------------------------
# The API parameter (or field) a library error names -> the flag that sets it here.
DECODE_TUNE_FLAGS = {**BACKEND_FLAGS, "overrides": "--set", "trials": "--trials", "n_trials": "--trials", "samples": "--samples",
                     "eval_size": "--eval-size", "eval_split": "--eval-split",
                     "confirm_top": "--confirm-top", "confirm_samples": "--confirm-samples",
                     "confidence": "--confidence", "secondary": "--secondary",
                     "strategy": "--strategy", "model": "--model", "backend": "--backend",
                     "base_url": "--base-url", "study_name": "--study"}


@grouped
def tune_cmd(
    task: str = typer.Option(..., "--task", help="Task: a bundled name (sst2, trec, ...) or a data path."),
    model: str | None = typer.Option(None, "--model", help="Model (hf) or served name (http; default the server's first)."),
    space: str = typer.Option("preset:decoding", "--space", help="Decoding search space: preset:decoding or a YAML file (kind: decode)."),
    strategy: str = typer.Option("tpe", "--strategy", help="grid | random | tpe | gp"),
    trials: int = typer.Option(12, "--trials", help="Finished trials the study ends with (re-running resumes)."),
    samples: int = typer.Option(3, "--samples", help="Seeds each sampling config is decoded with (greedy: once)."),
    eval_size: int | None = typer.Option(32, "--eval-size", help="Validation prompts per sample."),
    eval_split: str = typer.Option("validation", "--eval-split", help="Split the prompts come from."),
    set_: list[str] | None = typer.Option(None, "--set", help="Fix a decoding parameter, e.g. --set max_new_tokens=48 (repeatable)."),
    secondary: str | None = typer.Option(None, "--secondary", help="Secondary objectives for a Pareto front: output_tokens,distinct_n,repetition_rate."),
    confirm_top: int = typer.Option(0, "--confirm-top", help="Re-score the best K sampling configs with more seeds before choosing."),
    confirm_samples: int = typer.Option(5, "--confirm-samples", help="Extra seeds for --confirm-top."),
    confidence: float = typer.Option(0.95, "--confidence", help="Confidence level of the intervals."),
    storage: str | None = typer.Option(None, "--storage", help="Optuna storage URL (default sqlite:///RUNS/STUDY/study.db)."),
    study: str | None = typer.Option(None, "--study", help="Study name (default from task, model, space, strategy)."),
    runs_dir: Path = typer.Option(Path("runs"), "--runs-dir", help="Folder of the default SQLite storage."),
    seed: int = typer.Option(0, "--seed", help="First sampling seed and the sampler's seed."),
    run: RunArgs = RunArgs.param(),
) -> None:
    """Tune decoding parameters on a task: mean +- CI over seeds, noise-aware winner, Pareto front."""
    quiet, json_path = run.quiet, run.json_path
    with cli_errors(), flag_names(DECODE_TUNE_FLAGS):
        from staytuned.decoding.factory import parse_decoding_values
        from staytuned.decoding.tune import DecodeTuneSpec, check_spec, run_decode_tune
        from staytuned.search.display import StudyProgress
        from staytuned.search.failures import failure_report
        from staytuned.search.space import load_space
        from staytuned.search.storage import default_storage_url, redact

        overrides = parse_decoding_values(set_, field="--set")
        sec = tuple(s.strip() for s in (secondary or "").split(",") if s.strip())
        if model is None and run.kind == "hf":
            raise InputError("no model given", field="--model", expected="--model NAME|PATH")
        sp = load_space(space)
        label = model or "server"
        name = study or re.sub(r"[^A-Za-z0-9_.+-]+", "_",
                               f"decode-{Path(task).name}-{Path(label).name}-{sp.name}-{strategy}")
        url = storage or default_storage_url(name, runs_dir)
        opts = run.backend()
        spec = DecodeTuneSpec(task=task, model=model, storage=url, study_name=name, space=space,
                              strategy=strategy, n_trials=trials, samples=samples,
                              eval_size=eval_size, eval_split=eval_split, seed=seed,
                              overrides=overrides, confidence=confidence, secondary=sec,
                              confirm_top=confirm_top,
                              confirm_samples=confirm_samples if confirm_top else 0, backend=opts)
        _, task_def = check_spec(spec)  # bad values refused before the model loads
        _quiet_libs(run.verbose)
        if not quiet:
            from rich.markup import escape

            # soft_wrap: one line however narrow the terminal, so the URL never breaks in two
            err.print(f"study [bold]{escape(name)}[/] in {escape(redact(url))}: {strategy}, "
                      f"{trials} trials x {samples} samples on {eval_size or 'all'} prompts",
                      markup=True, soft_wrap=True)
            err.print(f"loading {model or opts.base_url} ...")

        progress = StudyProgress(
            err, url, [name], trials, title=name, mode="off" if quiet else "auto",
            maximize=not str(task_def.direction).lower().startswith("min"))

        def on_trial(number: int, result: Any, config: dict[str, Any], error: str | None) -> None:
            # On a terminal these lines (with the confidence interval) pile up above the live
            # panel; in a log the progress lines already tell each trial.
            if progress.mode != "live":
                return
            cfg_text = ", ".join(f"{k}={_fmt(v)}" for k, v in config.items())
            if result is None:
                err.print(f"trial {number}: [red]failed[/] ({error})", markup=True)
                return
            est = result.score
            err.print(f"trial {number}: {result.metric} {est.mean:.4f} "
                      f"[{est.low:.4f}, {est.high:.4f}] n={est.n} | {cfg_text}", highlight=False)

        def on_confirm(cid: str, extra: int) -> None:
            if not quiet:
                err.print(f"confirming {cid} with {extra} more seeds")

        with progress:
            outcome = run_decode_tune(spec, on_trial=on_trial, on_confirm=on_confirm)
        payload = outcome.to_dict()
        payload["storage"] = redact(url)
        failures = failure_report(url, [name])
        payload.update(failures.to_dict())
        if json_path != "-":
            _print_tune(outcome, failures.lines)
        write_json(json_path, payload)
        if outcome.winner is None:
            raise typer.Exit(EXIT_FAILED)


def _describe(config: dict[str, Any]) -> str:
    from staytuned.hparams.decode import DecodingConfig

    try:
        return DecodingConfig.from_dict(config).describe()
    except InputError:
        return ", ".join(f"{k}={_fmt(v)}" for k, v in config.items())


def _num(v: float, digits: int) -> str:
    return "-" if not math.isfinite(v) else f"{v:.{digits}f}"


def _print_tune(outcome: Any, failure_lines: Sequence[str] = ()) -> None:
    from rich.table import Table

    table = Table(title=f"{outcome.study_name}: {outcome.metric}, mean ± CI half-width over seeds")
    ci_pct = f"{outcome.confidence:.0%} CI" if hasattr(outcome, "confidence") else "CI"
    for col in ("#", "config", f"{outcome.metric} ± {ci_pct}", "n", "tokens", "distinct", "repeat", ""):
        table.add_column(col, overflow="fold")
    sign = 1 if outcome.direction == "max" else -1
    rows = sorted(outcome.rows, key=lambda r: -sign * (r.estimate.mean if math.isfinite(r.estimate.mean) else -sign * math.inf))
    for r in rows:
        marks = []
        if outcome.winner is not None and r.config_id == outcome.winner.config_id:
            marks.append("winner")
        elif r.config_id in outcome.indistinguishable:
            marks.append("≈")
        if r.pareto:
            marks.append("pareto")
        e = r.estimate
        table.add_row(str(r.trial), _describe(r.config), f"{e.mean:.4f} ± {e.half_width:.4f}",
                      str(e.n), _num(r.secondary["output_tokens"], 1), _num(r.secondary["distinct_n"], 3),
                      _num(r.secondary["repetition_rate"], 3), " ".join(marks))
    out.print(table)
    for line in failure_lines:  # failed trials with their reasons, interrupted ones
        out.print(line, markup=False)
    if outcome.winner is None:
        out.print("no successful trial")
        return
    w = outcome.winner
    out.print(f"winner (best {'lower' if outcome.direction == 'max' else 'upper'} confidence bound): "
              f"trial {w.trial}, {outcome.metric} {w.estimate.mean:.4f} "
              f"[{w.estimate.low:.4f}, {w.estimate.high:.4f}]")
    out.print("  config: " + ", ".join(f"{k}={_fmt(v)}" for k, v in w.config.items()))
    if outcome.best_mean is not None and outcome.best_mean.config_id != w.config_id:
        out.print(f"  (best mean was trial {outcome.best_mean.trial}, {outcome.best_mean.estimate.mean:.4f}, "
                  "with a wider interval)")
    if outcome.indistinguishable:
        out.print(f"  {len(outcome.indistinguishable)} other config(s) statistically indistinguishable (≈)")


def register(app: typer.Typer) -> None:
    decode_app.command("tune")(tune_cmd)
    app.add_typer(decode_app, name="decode")
    app.command("generate")(generate_cmd)
    app.command("compare")(compare_cmd)
    app.command("serve")(serve_cmd)
