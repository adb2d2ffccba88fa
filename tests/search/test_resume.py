"""A real `staytuned tune` (tiny model) killed with SIGKILL mid-study, then re-run."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import optuna
import pytest
from optuna.trial import TrialState

from .conftest import spawn, staytuned_cmd

pytestmark = pytest.mark.slow


def _trials(url: str, name: str):
    try:
        return optuna.load_study(study_name=name, storage=url).get_trials(deepcopy=False)
    except KeyError:
        return []


def test_sigkill_mid_study_then_resume(tmp_path):
    url = f"sqlite:///{tmp_path}/resume.db"
    # The kill must land while a trial runs after one has finished. On an idle machine a 16-row
    # trial ended all 4 before a poll saw that state, so trials are longer and more of them.
    budget = 8
    args = ["tune", "--task", "sst2", "--model", "tiny-llama", "--space", "preset:demo",
            "--strategy", "random", "--trials", str(budget), "--train-size", "16", "--eval-size", "64",
            "--set", "max_seq_length=48", "--storage", url, "--study", "r", "--heartbeat", "1", "-q"]
    proc = spawn(args, tmp_path)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:  # kill once a trial is done and the next one is running
        states = [t.state for t in _trials(url, "r")]
        if TrialState.COMPLETE in states and TrialState.RUNNING in states:
            break
        assert proc.poll() is None, proc.communicate()[1]
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = {t.number: (t.value, t.params) for t in _trials(url, "r") if t.state == TrialState.COMPLETE}
    killed = [t.number for t in _trials(url, "r") if t.state == TrialState.RUNNING]
    assert before and len(killed) == 1

    done = subprocess.run(staytuned_cmd() + args + ["--json", "-"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    trials = _trials(url, "r")
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == budget  # exactly: nothing lost, nothing repeated
    for number, (value, params) in before.items():  # completed trials kept as they were
        t = next(t for t in trials if t.number == number)
        assert (t.state, t.value, t.params) == (TrialState.COMPLETE, value, params)
    dead = next(t for t in trials if t.number == killed[0])
    assert dead.state == TrialState.FAIL and "status" not in dead.user_attrs  # heartbeat-failed
    retry = [t for t in trials if t.system_attrs.get("failed_trial") == killed[0]]
    assert len(retry) == 1 and retry[0].state == TrialState.COMPLETE
    assert retry[0].params == dead.params  # the killed config ran again, once
