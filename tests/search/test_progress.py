"""Progress on stderr: one line per event when stderr is not a terminal (nohup, Slurm, CI,
`2> log`), the live panel on a terminal, nothing with --quiet; an ETA from trial durations."""

from __future__ import annotations

import io
import re
import subprocess
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from staytuned.search.display import ProgressState, StudyProgress
from staytuned.search.records import TrialRecord, read_records

from .conftest import SYNTH, staytuned_cmd

STAMP = r"\[\d\d:\d\d:\d\d\]"


def _run(args: list[str], cwd: Path, **env: str) -> tuple[int, str, str]:
    """Run the CLI with stderr redirected to a file, as `2> log` does (not a terminal)."""
    import os

    log = cwd / "stderr.log"
    with log.open("w") as fh:
        proc = subprocess.run(staytuned_cmd() + args, check=False, cwd=cwd, text=True,
                              stdout=subprocess.PIPE, stderr=fh, env={**os.environ, **env})
    return proc.returncode, proc.stdout, log.read_text()


@pytest.mark.slow
def test_tune_logs_one_line_per_trial_event_when_stderr_is_a_file(tmp_path):
    # Two grid points: one trains, one diverges (the synthetic trial fails at lr >= 0.05).
    space = tmp_path / "space.yaml"
    space.write_text("fixed: {method: lora, epochs: 2, lr_scheduler: cosine, lora_r: 8}\n"
                     "params:\n  learning_rate: {type: categorical, choices: [0.0003, 0.1, 0.0001]}\n")
    code, stdout, log = _run(["tune", "--task", "t1", "--model", "m", "--space", str(space),
                              "--strategy", "grid", "--trials", "3", "--trial-fn", SYNTH],
                             tmp_path, STAYTUNED_SYNTHETIC_SLEEP="0.2")
    assert code == 0, log
    assert "best: trial" in stdout
    records = {r.number: r for r in read_records(f"sqlite:///{tmp_path}/runs/tune-t1-m-space-grid/study.db")}
    assert sorted(records) == [0, 1, 2]
    lines = log.splitlines()
    for n, rec in records.items():
        started = [i for i, line in enumerate(lines)
                   if re.fullmatch(rf"{STAMP} trial {n} started: config {rec.config_id} \(.*"
                                   rf"learning_rate={rec.config['learning_rate']:.3g}.*\)", line)]
        ended = [i for i, line in enumerate(lines) if re.match(rf"{STAMP} trial {n} (finished|failed)", line)]
        assert len(started) == 1 and len(ended) == 1 and started[0] < ended[0], log
        line = lines[ended[0]]
        if rec.status == "ok":
            assert re.search(rf"finished after [\d.]+s: accuracy {rec.score:.4f} \|", line), line
        else:
            assert rec.status == "failed"
            assert re.search(r"failed after [\d.]+s: loss is NaN \(diverged\) \|", line), line
    ends = [line for line in lines if re.match(rf"{STAMP} trial \d (finished|failed)", line)]
    # Best so far, trials done of total, and an ETA from the finished trials' durations.
    best = max(r.score for r in records.values() if r.status == "ok")
    assert [re.search(r"\| (\d)/3 done \|", e).group(1) for e in ends] == ["1", "2", "3"]
    assert all(re.search(r"\| ETA (\d+m\d\ds|[\d.]+s)$", e) for e in ends), ends
    assert ends[-1].endswith("| 3/3 done | ETA 0.0s")
    assert f"best {best:.4f} (trial " in ends[-1]
    assert re.fullmatch(rf"{STAMP} 3/3 done \(2 ok, 1 failed, 0 pruned\) after .*; best {best:.4f} "
                        r"\(trial \d\)", lines[-1]), log
    assert log.endswith("\n")


@pytest.mark.slow
def test_quiet_prints_no_progress(tmp_path):
    code, stdout, log = _run(["tune", "--task", "t1", "--model", "m", "--space", "preset:demo",
                              "--strategy", "grid", "--trials", "2", "--trial-fn", SYNTH, "-q"],
                             tmp_path)
    assert code == 0 and "best: trial" in stdout
    assert log == ""


@pytest.mark.slow
def test_grid_names_the_cell_of_each_trial(tmp_path):
    code, _, log = _run(["grid", "--tasks", "a,b", "--models", "m", "--train-sizes", "10",
                         "--space", "preset:demo", "--set", "lora_r=8", "--set", "lr_scheduler=cosine",
                         "--trial-fn", SYNTH, "--name", "g"], tmp_path)
    assert code == 0, log
    total = len(read_records(f"sqlite:///{tmp_path}/runs/g/study.db"))
    started = re.findall(rf"{STAMP} g/(a|b)/m/lora/10 trial \d+ started: config c", log)
    assert sorted(set(started)) == ["a", "b"] and len(started) == total
    assert re.search(rf"\| {total}/{total} done \| ETA", log)
    assert re.search(rf"{STAMP} {total}/{total} done \({total} ok, 0 failed, 0 pruned\)", log)


@pytest.mark.slow
def test_decode_tune_logs_its_trials_too(tmp_path):
    pytest.importorskip("torch")
    code, stdout, log = _run(["decode", "tune", "--model", "tiny-llama", "--task", "sst2",
                              "--strategy", "random", "--trials", "2", "--samples", "1",
                              "--eval-size", "2", "--set", "max_new_tokens=2"], tmp_path,
                             HF_HUB_OFFLINE="1")
    assert code == 0, log
    for n in (0, 1):
        assert re.search(rf"{STAMP} trial {n} started: config c[0-9a-f]+ \(.*temperature=", log), log
        assert re.search(rf"{STAMP} trial {n} finished after [\d.]+s: accuracy [\d.]+ \| best [\d.]+ "
                         rf"\(trial \d\) \| {n + 1}/2 done \| ETA", log), log
    assert re.search(rf"{STAMP} 2/2 done \(2 ok, 0 failed, 0 pruned\)", log.splitlines()[-1])
    assert "winner" in stdout


# -------------------------------------------------------------------------- the state itself

T0 = datetime(2030, 1, 1, 12, 0, 0)


def _rec(n: int, status: str, *, start: float | None, end: float | None = None,
         score: float | None = None, state: str | None = None, error: str | None = None) -> TrialRecord:
    states = {"ok": "COMPLETE", "failed": "FAIL", "pruned": "PRUNED", "running": "RUNNING"}
    return TrialRecord(
        number=n, study="s", status=status, state=state or states[status],  # type: ignore[arg-type]
        config={"learning_rate": 1e-4 * (n + 1)}, config_id=f"c{n}", score=score, metric="accuracy",
        error=error, datetime_start=None if start is None else T0 + timedelta(seconds=start),
        datetime_complete=None if end is None else T0 + timedelta(seconds=end),
        attrs={"config_id": f"c{n}"})


def test_eta_comes_from_trial_durations_and_does_not_grow_while_a_trial_runs():
    state = ProgressState(10, workers=1)
    state.update([_rec(0, "ok", start=0, end=10, score=0.5),
                  _rec(1, "failed", start=10, end=20, error="boom\nTraceback ..."),
                  _rec(2, "running", start=20)])
    # 8 trials left at 10 s each, the running one 4 s in.
    assert state.snapshot(0, now=T0 + timedelta(seconds=24)).eta_s == pytest.approx(76)
    # Long after: the running trial counts as done with its mean share, never as negative work.
    later = state.snapshot(0, now=T0 + timedelta(seconds=500))
    assert later.eta_s == pytest.approx(70) and later.done == 2 and later.running == 1
    # Two at once halve it.
    assert ProgressState(10, workers=2).snapshot(0).eta_s is None  # nothing finished yet
    two = ProgressState(10, workers=2)
    two.update([_rec(0, "ok", start=0, end=10, score=0.5)])
    assert two.snapshot(0, now=T0 + timedelta(seconds=10)).eta_s == pytest.approx(45)


def test_events_in_order_with_the_progress_as_of_each():
    state = ProgressState(4)
    assert state.update([_rec(0, "running", start=0)], quiet=True) == []  # already there
    waiting = _rec(3, "running", start=None, state="WAITING")  # enqueued, not started
    events = state.update([_rec(0, "ok", start=0, end=5, score=0.7),
                           _rec(1, "failed", start=6, end=7, error="invalid learning_rate\nmore"),
                           _rec(2, "ok", start=5.5, end=9, score=0.9), waiting])
    assert [(e.kind, e.trial) for e in events] == [
        ("ok", "trial 0"), ("started", "trial 2"), ("started", "trial 1"), ("failed", "trial 1"),
        ("ok", "trial 2")]
    assert events[3].reason == "invalid learning_rate" and events[0].score == 0.7
    at_fail = state.snapshot(0, as_of=events[3].at)
    assert (at_fail.done, at_fail.running, at_fail.best_value) == (2, 1, 0.7)
    final = state.snapshot(0)
    assert (final.done, final.complete, final.failed, final.best_value) == (3, 2, 1, 0.9)
    assert final.best_trial == "trial 2"
    # The enqueued trial starts later: reported once its worker has stored its config.
    claimed = _rec(3, "running", start=10)
    assert state.update([TrialRecord(**{**claimed.__dict__, "attrs": {}})]) == []
    assert [(e.kind, e.config_id) for e in state.update([claimed])] == [("started", "c3")]


def _study(tmp_path: Path) -> str:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    tmp_path.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{tmp_path}/p.db"
    study = optuna.create_study(study_name="p", storage=url, direction="maximize")
    dist = {"x": optuna.distributions.FloatDistribution(0, 1)}
    study.add_trial(optuna.trial.create_trial(params={"x": 0.5}, distributions=dist, value=0.5,
                                              user_attrs={"config_id": "cx", "status": "ok"}))
    return url


def _console(terminal: bool):
    from rich.console import Console

    buf = io.StringIO()
    return Console(file=buf, force_terminal=terminal, width=100), buf


def test_mode_follows_the_console_and_output_ends_with_a_newline(tmp_path):
    import optuna

    for terminal, mode in ((True, "live"), (False, "lines")):
        url = _study(tmp_path / mode)
        console, buf = _console(terminal)
        with StudyProgress(console, url, ["p"], 2, title="p", interval=0.05) as progress:
            assert progress.mode == mode
            optuna.load_study(study_name="p", storage=url).add_trial(optuna.trial.create_trial(
                params={"x": 0.9}, distributions={"x": optuna.distributions.FloatDistribution(0, 1)},
                value=0.9, user_attrs={"config_id": "cy", "status": "ok"}))
        text = buf.getvalue()
        # (a terminal gets its cursor back after the panel's last newline)
        assert text.removesuffix("\x1b[?25h").endswith("\n") and "2/2 done" in text
        if mode == "lines":
            assert "resuming: best 0.5000 (trial 0) | 1/2 done" in text
            assert re.search(r"trial 1 finished.*: score 0.9000 \| best 0.9000 \(trial 1\) \| 2/2 done",
                             text)
        else:
            assert "0.9000" in text and "started" not in text

    console, buf = _console(False)
    with StudyProgress(console, _study(tmp_path / "off"), ["p"], 2, mode="off"):
        pass
    assert buf.getvalue() == ""
