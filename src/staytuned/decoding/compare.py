"""``staytuned compare``: the same prompts through several models and/or decoding configs.

Models are loaded one at a time (base models, PEFT adapter folders merged into their base, full
fine-tune folders, GGUF files, or one OpenAI-compatible server); every config runs on every model.
The result is a long table (one row per prompt x model x config), written as JSONL, CSV or
Markdown (side by side: one row per prompt, one column per model/config).
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from staytuned._util.io import atomic_open, atomic_write_text, read_jsonl
from staytuned._util.mapping import load_data
from staytuned.decoding.factory import BackendOptions, open_backend
from staytuned.errors import InputError
from staytuned.hparams.decode import DecodingConfig

OUTPUT_FORMATS = (".jsonl", ".csv", ".md")


@dataclass
class CompareRow:
    prompt_id: int
    prompt: str
    model: str
    config: str
    output: str
    finish_reason: str
    n_output_tokens: int
    reference: str | None = None

    @property
    def column(self) -> str:
        return f"{self.model} | {self.config}"


@dataclass
class CompareResult:
    rows: list[CompareRow]
    columns: list[str]  # "model | config" in run order
    scores: dict[str, float]  # column -> task metric (with --task), else empty
    metric: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"columns": self.columns, "metric": self.metric,
                "scores": {k: (v if math.isfinite(v) else None) for k, v in self.scores.items()},
                "rows": [asdict(r) for r in self.rows]}


def read_prompts(path: str | Path) -> list[str]:
    """Prompts from a file: .txt (one per line, blank lines skipped), .jsonl (a "prompt" field per
    line) or .json (a list of strings or of objects with "prompt")."""
    p = Path(path)
    if not p.is_file():
        raise InputError("prompts file not found", file=str(p), expected="a .txt, .jsonl or .json file")
    suffix = p.suffix.lower()
    if suffix == ".jsonl":
        prompts = [_prompt_of(obj, str(p), i) for i, obj in read_jsonl(p, objects=False)]
    elif suffix == ".json":
        data = load_data(p, what="prompts file")
        if not isinstance(data, list):
            raise InputError("expected a JSON list of prompts", file=str(p))
        prompts = [_prompt_of(obj, str(p), i) for i, obj in enumerate(data, start=1)]
    else:
        prompts = [line for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not prompts:
        raise InputError("no prompts in the file", file=str(p))
    return prompts


def _prompt_of(obj: Any, file: str, row: int) -> str:
    if isinstance(obj, str):
        return obj
    if isinstance(obj, dict) and isinstance(obj.get("prompt"), str):
        return obj["prompt"]
    raise InputError("expected a string or an object with a string 'prompt'", file=file, row=row,
                     column="prompt")


def model_labels(models: Sequence[str]) -> list[str]:
    """Short, unique labels: a folder's name, else the reference itself."""
    short = [Path(m).name if Path(m).expanduser().exists() else m for m in models]
    return [s if short.count(s) == 1 else m for s, m in zip(short, models, strict=True)]


def check_output_path(path: str | Path | None) -> None:
    if path is not None and Path(path).suffix.lower() not in OUTPUT_FORMATS:
        raise InputError("unknown output format", file=str(path),
                         expected="a file ending in " + ", ".join(OUTPUT_FORMATS))


def run_compare(models: Sequence[str | None], configs: Sequence[tuple[str, DecodingConfig]], *,
                prompts: Sequence[str] | None = None, task: Any = None,
                rows: Sequence[dict[str, Any]] | None = None,
                options: BackendOptions | None = None,
                on_step: Callable[[str], None] | None = None) -> CompareResult:
    """Run every config on every model. Give either ``prompts`` or ``task`` + ``rows`` (then the
    prompts are the task's template, rendered per model, and each column gets the task metric)."""
    from staytuned.decoding.objective import task_prompts

    options = options or BackendOptions()
    if not models:
        raise InputError("no models given", field="models", expected="one model name or path or more")
    if not configs:
        raise InputError("no decoding configs given", field="configs")
    if (prompts is None) == (task is None):
        raise InputError("give prompts or a task (not both)", field="prompts")
    labels = model_labels([m or "server" for m in models])
    result_rows: list[CompareRow] = []
    columns: list[str] = []
    scores: dict[str, float] = {}
    references = [str(r) for r in task.references(rows)] if task is not None else None
    shown = list(prompts) if prompts is not None else [_row_text(task, r) for r in rows or []]
    for model, label in zip(models, labels, strict=True):
        if on_step is not None:
            on_step(f"loading {label}")
        backend = open_backend(model, options)
        if task is not None:
            texts, raw = task_prompts(task, rows or [], backend)
        else:
            texts, raw = list(prompts or []), False
        for name, cfg in configs:
            if on_step is not None:
                on_step(f"{label} / {name}")
            gens = backend.generate(texts, cfg, raw=raw)
            column = f"{label} | {name}"
            columns.append(column)
            for i, g in enumerate(gens):
                result_rows.append(CompareRow(
                    prompt_id=i, prompt=shown[i], model=label, config=name, output=g.text,
                    finish_reason=g.finish_reason, n_output_tokens=g.n_output_tokens,
                    reference=None if references is None else references[i]))
            if task is not None:
                from staytuned.tasks import compute_metrics

                metrics = compute_metrics(task, [g.text for g in gens], task.references(rows))
                scores[column] = float(metrics[task.metric])
        del backend  # free the model before loading the next one
    return CompareResult(rows=result_rows, columns=columns, scores=scores,
                         metric=task.metric if task is not None else None)


def _row_text(task: Any, row: dict[str, Any]) -> str:
    from staytuned.tasks import format_instruction

    return format_instruction(task, row)


def write_compare(result: CompareResult, path: str | Path) -> None:
    """Write by extension: .jsonl / .csv (one row per prompt x model x config) or .md (side by side)."""
    check_output_path(path)
    suffix = Path(path).suffix.lower()
    if suffix == ".jsonl":
        with atomic_open(path) as fh:
            for r in result.rows:
                fh.write(json.dumps(asdict(r), ensure_ascii=False) + "\n")
    elif suffix == ".csv":
        with atomic_open(path, newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(asdict(result.rows[0]) if result.rows
                                                        else CompareRow.__dataclass_fields__))
            writer.writeheader()
            for r in result.rows:
                writer.writerow(asdict(r))
    else:
        atomic_write_text(path, to_markdown(result))


def _md(text: str | None) -> str:
    return (text or "").replace("|", "\\|").replace("\r", "").replace("\n", "<br>")


def side_by_side(result: CompareResult) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the wide layout: prompt (+ reference) then one cell per column."""
    by_prompt: dict[int, dict[str, CompareRow]] = {}
    for r in result.rows:
        by_prompt.setdefault(r.prompt_id, {})[r.column] = r
    has_ref = any(r.reference is not None for r in result.rows)
    header = ["#", "prompt", *(["reference"] if has_ref else []), *result.columns]
    table = []
    for pid in sorted(by_prompt):
        cells = by_prompt[pid]
        first = next(iter(cells.values()))
        table.append([str(pid), first.prompt, *([first.reference or ""] if has_ref else []),
                      *(cells[c].output if c in cells else "" for c in result.columns)])
    return header, table


def to_markdown(result: CompareResult) -> str:
    header, table = side_by_side(result)
    lines = ["| " + " | ".join(_md(h) for h in header) + " |",
             "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_md(c) for c in row) + " |" for row in table]
    if result.scores:
        lines += ["", f"| model \\| config | {result.metric} |", "|---|---|"]
        lines += [f"| {_md(c)} | {s:.4f} |" for c, s in result.scores.items()]
    return "\n".join(lines) + "\n"
