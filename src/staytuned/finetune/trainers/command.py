"""The command trainer: the user's own training command trains each trial.

For each trial: a fresh output folder (``save_dir``, else a temporary one); the trial's config
written with the exporters (``{config}``, in ``command_format``); the sampled rows as JSONL
(``{train_file}``, ``{eval_file}``, ``{test_file}``); the placeholders substituted into each
argument of the command (split with :mod:`shlex` first, so a path with spaces stays one argument).
The command runs in its own process group with stdout and stderr in
``{output_dir}/staytuned-command.log``; per-epoch protocol lines (or ``metric_regex`` matches that
capture an epoch) feed pruning; the score comes from the metric file (default
``{output_dir}/metrics.json``), else a final protocol line, else the regex's last match. The whole
group is killed (SIGTERM, then SIGKILL after a grace period) on prune, timeout, Ctrl-C, and when
the command exits (children it left behind). The protocol and recipes: docs/trainers.md.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import queue
import re
import shlex
import shutil
import signal
import string
import subprocess
import tempfile
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, ClassVar

from staytuned.errors import InputError
from staytuned.hparams.schema import COMMAND_FORMATS, TRAIN

if TYPE_CHECKING:
    from staytuned.finetune.trainers.base import TrialJob
    from staytuned.tasks import Row, Task

LOG_NAME = "staytuned-command.log"
DEFAULT_METRIC_FILE = "{output_dir}/metrics.json"
#: The key of a protocol line: ``{"staytuned": {"epoch": 1, "score": 0.7}}`` (an epoch's score) or
#: ``{"staytuned": {"score": 0.8, "metrics": {...}}}`` (the final score, when no metric file exists).
PROTOCOL_KEY = "staytuned"
#: Placeholders besides the hyperparameter names (``{learning_rate}``, ``{epochs}``, ``{seed}`` ...).
PLACEHOLDERS: dict[str, str] = {
    "config": "the trial's config file, in command_format",
    "output_dir": "the trial's own output folder",
    "data": "the folder holding train.jsonl, eval.jsonl and test.jsonl",
    "train_file": "the sampled training rows (JSONL)",
    "eval_file": "the sampled evaluation rows, each with its reference (JSONL)",
    "test_file": "the sampled test rows (JSONL; empty unless the test split is scored)",
    "metric_file": "where the command writes its score",
    "log_file": "the command's log (stdout and stderr)",
    "model": "the model reference as given",
    "model_path": "a folder (or hub id) transformers loads the model from",
    "task": "the task's name",
    "metric": "the task's primary metric",
    "data_seed": "the seed the rows were sampled with",
    "eval_split": "the split the evaluation rows come from",
    "eval_size": "how many evaluation rows were sampled",
}
_CONFIG_NAMES = {"json": "staytuned-config.json", "trl": "staytuned-config.json",
                 "axolotl": "staytuned-config.yaml", "llama-factory": "staytuned-config.yaml"}
_TAIL_LINES = 20
_POLL_S = 0.1


@dataclass
class CommandTrainer:
    """Runs ``command`` once per trial (options: the command execution settings of the schema)."""

    name: ClassVar[str] = "command"

    command: str | None = None
    command_format: str | None = None  # None: json
    metric_file: str | None = None  # None: {output_dir}/metrics.json
    metric_regex: str | None = None
    trial_timeout: float | None = None  # seconds; None: no limit
    kill_grace_s: float = 5.0  # between SIGTERM and SIGKILL
    _argv: list[str] = field(init=False, repr=False, default_factory=list)
    _regex: re.Pattern[str] | None = field(init=False, repr=False, default=None)

    def __post_init__(self) -> None:
        # Everything here fails every trial the same way: refused before the first one.
        if not self.command or not self.command.strip():
            raise InputError("the command trainer needs a training command", field="command",
                             value=self.command,
                             expected="e.g. `python train.py --lr {learning_rate} --out {output_dir}`")
        fmt = self.command_format or "json"
        if fmt not in COMMAND_FORMATS:
            raise InputError("unknown command format", field="command_format", value=fmt,
                             expected="one of " + ", ".join(COMMAND_FORMATS))
        try:
            self._argv = shlex.split(self.command)
        except ValueError as exc:
            raise InputError(f"cannot split the command into arguments: {exc}", field="command",
                             value=self.command, expected="shell-style quoting") from None
        for arg in self._argv:
            _check_placeholders(arg, "command", self.command)
        if self.metric_file is not None:  # formatted before the config is written, with no model_path
            _check_placeholders(self.metric_file, "metric_file", self.metric_file,
                                exclude=("metric_file", "config", "model_path"))
        if self.metric_regex is not None:
            self._regex = _compile_regex(self.metric_regex)
        if self.trial_timeout is not None and not self.trial_timeout > 0:
            raise InputError("must be a positive number of seconds", field="trial_timeout",
                             value=self.trial_timeout)

    @property
    def format(self) -> str:
        return self.command_format or "json"

    def _wants_model_path(self) -> bool:
        """The exported configs name the model by its folder; a command may ask for it."""
        return self.format != "json" or any("model_path" in _names(arg) for arg in self._argv)

    def run(self, job: TrialJob) -> None:
        result = job.result
        if not isinstance(job.model, str | Path):
            raise InputError("the command trainer runs a model reference, not a model in memory",
                             field="model", value=type(job.model).__name__,
                             expected="a model alias, folder, .gguf file or hub id")
        if job.eval_only:
            result.error = ("the command trainer trains with your command: it cannot score the untuned "
                            "model (eval_only)")
            return
        temporary = job.save_dir is None
        out_dir = job.save_dir if job.save_dir is not None else Path(tempfile.mkdtemp(prefix="staytuned-command-"))
        try:
            try:
                values = self._prepare(job, out_dir)
            except (InputError, OSError) as exc:
                result.error = f"cannot prepare the command's files: {exc}"
                return
            self._run_command(job, [arg.format_map(values) for arg in self._argv], values)
            if not temporary and result.status == "ok":
                result.saved_to = str(out_dir)
        finally:
            # A temporary folder goes with the trial (trained weights can be large), unless the
            # trial failed: then it is kept for its log, which the error names.
            if temporary and result.status != "failed":
                shutil.rmtree(out_dir, ignore_errors=True)

    # ------------------------------------------------------------------ files
    def _prepare(self, job: TrialJob, out_dir: Path) -> dict[str, Any]:
        """Write the data and config files; return the placeholder values."""
        from staytuned.export.mapping import resolve_config

        out_dir.mkdir(parents=True, exist_ok=True)
        data = out_dir / "data"
        data.mkdir(exist_ok=True)
        files = {"train_file": data / "train.jsonl", "eval_file": data / "eval.jsonl",
                 "test_file": data / "test.jsonl"}
        for key, rows in (("train_file", job.train_rows), ("eval_file", job.eval_rows),
                          ("test_file", job.test_rows)):
            _write_jsonl(files[key], [_data_row(job.task, row, self.format, job.template,
                                                reference=key != "train_file") for row in rows])
        if self.format == "llama-factory":  # LLaMA-Factory finds datasets by name in dataset_info.json
            info = {f"staytuned_{split}": {"file_name": f"{split}.jsonl"} for split in ("train", "eval", "test")}
            (data / "dataset_info.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        hp = resolve_config(job.config.to_dict())
        values: dict[str, Any] = {
            **hp, **{k: str(v) for k, v in files.items()},
            "output_dir": str(out_dir), "data": str(data), "log_file": str(out_dir / LOG_NAME),
            "model": str(job.model), "task": job.task.name, "metric": job.task.metric, "data_seed": job.seed,
            "eval_split": job.result.eval_split, "eval_size": len(job.eval_rows),
            # Resolved only when asked for: a tiny or GGUF model is saved as a folder the first time.
            "model_path": model_path(str(job.model)) if self._wants_model_path() else None,
        }
        metric_file = Path((self.metric_file or DEFAULT_METRIC_FILE).format_map(values))
        values["metric_file"] = str(metric_file)
        if metric_file.exists():
            metric_file.unlink()  # a score left by an earlier run in this folder is not this trial's
        config_path = out_dir / _CONFIG_NAMES[self.format]
        config_path.write_text(self._config_text(job, hp, values), encoding="utf-8")
        values["config"] = str(config_path)
        return values

    def _config_text(self, job: TrialJob, hp: dict[str, Any], values: Mapping[str, Any]) -> str:
        if self.format == "json":
            task = job.task
            body = {"model": values["model"], "model_path": values["model_path"], "task": task.name,
                    "task_type": task.type, "metric": task.metric, "direction": task.direction,
                    "labels": list(task.labels), "config": hp, "data_seed": job.seed,
                    "eval_split": values["eval_split"], "eval_size": values["eval_size"],
                    **{k: values[k] for k in ("output_dir", "train_file", "eval_file", "test_file",
                                              "metric_file", "log_file")}}
            return json.dumps(body, indent=2) + "\n"
        import yaml

        from staytuned.export import plan_export
        from staytuned.export.writers import render

        # Where the tool reads its data from: a file (axolotl), a dataset name in dataset_dir
        # (LLaMA-Factory); a TRL script gets {train_file} on its command line.
        dataset = {"axolotl": values["train_file"], "llama-factory": "staytuned_train"}.get(self.format)
        plan = plan_export(hp, self.format, model=str(values["model_path"]),
                           source=f"staytuned trial ({job.task.name})", micro_batch=job.micro_batch_size,
                           dataset=dataset, output_dir=str(values["output_dir"]), precision=job.precision)
        text = render(plan, "json" if self.format == "trl" else "yaml")
        if self.format == "llama-factory":
            text += yaml.safe_dump({"dataset_dir": values["data"]}, default_flow_style=False)
        return text

    # ------------------------------------------------------------------ the process
    def _run_command(self, job: TrialJob, argv: list[str], values: Mapping[str, Any]) -> None:
        result = job.result
        log_path = Path(values["log_file"])
        watch = _Watch(job, self._regex)
        started = time.perf_counter()
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # protocol lines arrive when printed, not at exit
        with open(log_path, "w", encoding="utf-8") as log:
            try:
                proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, start_new_session=True, env=env,
                                        text=True, encoding="utf-8", errors="replace", bufsize=1)
            except OSError as exc:
                result.error = f"cannot start the command {argv[0]!r}: {exc.strerror or exc}"
                return
            try:
                outcome = self._follow(proc, log, watch, started)
            except Exception as exc:  # e.g. raised by the pruning callback: this trial fails, not the study
                outcome, result.error = "error", f"{type(exc).__name__}: {exc}"
            finally:
                kill_group(proc, self.kill_grace_s)  # every path: done, pruned, timed out, Ctrl-C
            result.train_runtime_s = time.perf_counter() - started
            result.epoch_scores = list(watch.epoch_scores)
        tail = "".join(watch.tail).rstrip("\n")
        where = f"last lines of {log_path}:\n{tail}" if tail else f"no output (log: {log_path})"
        if outcome == "error":
            return
        if outcome == "pruned":
            result.status, result.score = "pruned", watch.epoch_scores[-1]
            result.metrics = {job.task.metric: result.score}
        elif outcome == "timeout":
            result.error = f"timed out after {self.trial_timeout:g} s (trial_timeout); {where}"
        elif proc.returncode != 0:
            code = proc.returncode
            how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
            result.error = f"the command {how}; {where}"
        else:
            self._read_score(job, Path(values["metric_file"]), watch, where)

    def _follow(self, proc: subprocess.Popen[str], log: IO[str], watch: _Watch, started: float) -> str:
        """Read the command's output until it exits: "done", "pruned" or "timeout"."""
        lines: queue.Queue[str | None] = queue.Queue()
        assert proc.stdout is not None
        threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True).start()
        deadline = started + self.trial_timeout if self.trial_timeout is not None else math.inf
        exited_at: float | None = None
        ended = False  # the output ended; the command may still run (it closed or redirected it)
        while True:
            now = time.perf_counter()
            if now >= deadline:
                return "timeout"
            if ended:
                if proc.poll() is not None:
                    return "done"
                time.sleep(min(_POLL_S, deadline - now))
                continue
            try:
                line = lines.get(timeout=min(_POLL_S, deadline - now))
            except queue.Empty:
                if exited_at is None and proc.poll() is not None:
                    exited_at = now
                elif exited_at is not None and now - exited_at > 1.0:
                    # The command exited but something it started still holds its output open.
                    kill_group(proc, self.kill_grace_s)
                continue
            if line is None:
                ended = True
                continue
            log.write(line)
            if watch.line(line):
                log.flush()
                return "pruned"

    def _read_score(self, job: TrialJob, metric_file: Path, watch: _Watch, where: str) -> None:
        result = job.result
        report: Mapping[str, Any] | None = None
        source = ""
        if metric_file.is_file():
            source = str(metric_file)
            try:
                report = json.loads(metric_file.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                result.error = f"cannot read the metric file {metric_file}: {exc}"
                return
            if not isinstance(report, Mapping):
                result.error = f"the metric file {metric_file} is not a JSON object"
                return
        elif watch.final is not None:
            report, source = watch.final, "its final protocol line"
        elif watch.regex_score is not None:
            report, source = {"score": watch.regex_score}, "metric_regex"
        if report is None:
            result.error = (f"the command exited 0 but reported no score: no {metric_file}, no final "
                            f'{{"{PROTOCOL_KEY}": {{"score": ...}}}} line'
                            + (", no metric_regex match" if watch.regex is not None else "") + f"; {where}")
            return
        try:
            _fill(result, report, job.task.metric, watch.epoch_scores)
        except InputError as exc:
            result.error = f"the score from {source}: {exc}"
            return
        result.status = "ok"


# ---------------------------------------------------------------------- output parsing
class _Watch:
    """What the command's output said: epoch scores (pruning asked after each), its final report,
    the regex's last score, and its last lines."""

    def __init__(self, job: TrialJob, regex: re.Pattern[str] | None) -> None:
        self.on_epoch = job.on_epoch
        self.regex = regex
        self.epoch_scores: list[float] = []
        self.final: dict[str, Any] | None = None
        self.regex_score: float | None = None
        self.tail: deque[str] = deque(maxlen=_TAIL_LINES)

    def line(self, line: str) -> bool:
        """Take one output line; True when the trial is to be pruned."""
        self.tail.append(line)
        text = line.strip()
        if text.startswith("{") and f'"{PROTOCOL_KEY}"' in text:
            try:
                payload = json.loads(text).get(PROTOCOL_KEY)
            except (ValueError, AttributeError):
                payload = None
            if isinstance(payload, dict):
                if "epoch" in payload:
                    return self._epoch(payload.get("epoch"), payload.get("score"))
                self.final = payload
                return False
        if self.regex is not None:
            match = self.regex.search(line)
            if match is not None:
                score = match.group("score") if "score" in self.regex.groupindex else match.group(1)
                self.regex_score = _number(score)  # the last match is the final score
                if "epoch" in self.regex.groupindex:
                    return self._epoch(match.group("epoch"), score)
        return False

    def _epoch(self, epoch: Any, score: Any) -> bool:
        value, number = _number(score), _number(epoch)
        if value is None or number is None:
            return False  # an epoch line without a usable score: logged, nothing to prune on
        self.epoch_scores.append(value)
        return bool(self.on_epoch(int(number), value)) if self.on_epoch is not None else False


def _pump(stream: IO[str], lines: queue.Queue[str | None]) -> None:
    """Move the command's output lines into ``lines`` (None at the end): the trainer's loop must
    not block on a read, or a silent command could never time out."""
    try:
        for line in stream:
            lines.put(line)
    except (OSError, ValueError):
        pass  # the stream was closed under us
    finally:
        lines.put(None)
        stream.close()


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _fill(result: Any, report: Mapping[str, Any], metric: str, epochs: list[float]) -> None:
    """Set the result's score, metrics, epoch scores and test scores from a final report."""
    raw = report.get("metrics") or {}
    if not isinstance(raw, Mapping):
        raise InputError("metrics must be an object of names to numbers", field="metrics", value=raw)
    metrics = {str(k): v for k, v in ((k, _number(v)) for k, v in raw.items()) if v is not None}
    score = report.get("score", report.get(metric, metrics.get(metric)))
    value = _number(score)
    if value is None:
        raise InputError("no finite score", field="score", value=score,
                         expected=f'"score" or "{metric}" (top level or in "metrics"): a finite number')
    metrics.setdefault(metric, value)
    result.score, result.metrics = value, metrics
    given = report.get("epoch_scores")
    if isinstance(given, list) and given and all(_number(v) is not None for v in given):
        result.epoch_scores = [float(v) for v in given]
    else:
        result.epoch_scores = list(epochs) or [value]
    test = report.get("test_metrics")
    if isinstance(test, Mapping):
        result.test_metrics = {str(k): float(v) for k, v in test.items() if _number(v) is not None}
    score_test = _number(report.get("score_test", result.test_metrics.get(metric)))
    if score_test is not None:
        result.score_test = score_test


# ---------------------------------------------------------------------- process groups
def kill_group(proc: subprocess.Popen[Any], grace_s: float) -> None:
    """End the command's process group: SIGTERM, then SIGKILL after ``grace_s`` seconds.

    ``start_new_session`` made the command the leader of its own group (group id = its pid), so
    its children go too, also after it exited; only a process that left the group (setsid, a
    daemon) escapes.
    """
    pgid = proc.pid
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            break
        except PermissionError:  # cannot happen for our own children; never hang on it
            break
        if _wait_group(proc, pgid, wait_s):
            break
    try:
        proc.wait(timeout=5.0)  # reap the leader (no zombie left behind by us)
    except subprocess.TimeoutExpired:
        pass


def _wait_group(proc: subprocess.Popen[Any], pgid: int, timeout_s: float) -> bool:
    """Wait until no live process is left in group ``pgid``; False after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        proc.poll()  # reap the leader as soon as it exits
        if not any(True for _ in _group_members(pgid)):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def _group_members(pgid: int) -> Iterator[int]:
    """Live (non-zombie) processes of group ``pgid``: from /proc where there is one (a zombie
    counts as alive for kill(0), and its parent may never reap it), else kill(0)."""
    proc_root = Path("/proc")
    if not (proc_root / "self" / "stat").is_file():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        yield pgid
        return
    for entry in proc_root.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        # pid (comm) state ppid pgrp ...: comm may hold spaces and parentheses, so split after it
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) > 2 and fields[0] not in ("Z", "X") and int(fields[2]) == pgid:
            yield int(entry.name)


# ---------------------------------------------------------------------- placeholders and data
def placeholder_names() -> list[str]:
    """Every placeholder a command may use: :data:`PLACEHOLDERS` and the hyperparameter names."""
    return [*PLACEHOLDERS, *(p.name for p in TRAIN if p.name not in PLACEHOLDERS)]


def _check_placeholders(text: str, what: str, value: str, exclude: tuple[str, ...] = ()) -> None:
    known = set(placeholder_names()) - set(exclude)
    try:
        names = _names(text)
    except ValueError as exc:
        raise InputError(f"bad braces in {text!r}: {exc}", field=what, value=value,
                         expected="{name} placeholders; {{ and }} for literal braces") from None
    for name in names:
        if name not in known:
            close = difflib.get_close_matches(name, sorted(known), n=1)
            hint = f" (did you mean {{{close[0]}}}?)" if close else ""
            raise InputError(f"unknown placeholder {{{name}}}{hint}", field=what, value=value,
                             expected="a placeholder of docs/trainers.md ({config}, {output_dir}, {data}, "
                                      "{train_file}, {eval_file}, {model}, {model_path} ...) or a "
                                      "hyperparameter name ({learning_rate}, {epochs}, {lora_r} ...); "
                                      "{{ and }} for literal braces")
    try:  # a format spec that does not fit the value's type ({task:.2f}) fails every trial too
        text.format_map(_SAMPLE_VALUES)
    except (ValueError, TypeError) as exc:
        raise InputError(f"cannot substitute the placeholders of {text!r}: {exc}", field=what,
                         value=value, expected="format specs that fit the value ({learning_rate:.1e})") from None


#: Values of the kinds a trial substitutes (numbers where numbers come), to try a command's format specs.
_SAMPLE_VALUES: dict[str, Any] = {
    **{name: "x" for name in PLACEHOLDERS}, "data_seed": 0, "eval_size": 1,
    **{p.name: p.default for p in TRAIN}, "learning_rate": 1e-4,
}


def _names(text: str) -> list[str]:
    """The placeholder names in ``text`` (ValueError for unbalanced braces)."""
    return [name for _, name, _, _ in string.Formatter().parse(text) if name is not None]


def _compile_regex(pattern: str) -> re.Pattern[str]:
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        raise InputError(f"not a valid regular expression: {exc}", field="metric_regex", value=pattern) from None
    if "score" not in regex.groupindex and regex.groups != 1:
        raise InputError("the regex must capture the score", field="metric_regex", value=pattern,
                         expected="one group, or a group named score (and one named epoch for per-epoch "
                                  r"scores), e.g. 'eval_accuracy[=:] *(?P<score>[0-9.]+)'")
    return regex


def _data_row(task: Task, row: Row, fmt: str, template: str | None, *, reference: bool) -> dict[str, Any]:
    """One JSONL row: prompt/completion (json, trl) or alpaca instruction/input/output (axolotl,
    LLaMA-Factory); evaluation rows also carry the gold ``reference`` (label, summary or answers)."""
    from staytuned.tasks.templates import format_instruction, target_text

    prompt, answer = format_instruction(task, row, template), target_text(task, row)
    out: dict[str, Any] = ({"prompt": prompt, "completion": answer} if fmt in ("json", "trl")
                           else {"instruction": prompt, "input": "", "output": answer})
    if reference:
        out["reference"] = task.references([row])[0]
    return out


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def model_path(ref: str) -> str:
    """A folder (or hub id) that transformers loads ``ref`` from (see :func:`staytuned.models.cache_model`)."""
    from staytuned.models import cache_model

    return cache_model(ref)
