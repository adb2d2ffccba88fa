"""Failures explained: failed and pruned trials grouped by reason, interrupted trials and their
retries, in the end summary of ``tune`` and ``grid`` (synthetic trials: no model)."""

from __future__ import annotations

import json

import pytest

from staytuned.search.failures import interruptions, reason_groups, summary_lines
from staytuned.search.records import TrialRecord

from .conftest import SYNTH


def _rec(number: int, status: str, error: str | None = None, *, study: str = "s",
         config_id: str = "c0", retry_of: int | None = None,
         epoch_scores: list[float] | None = None) -> TrialRecord:
    return TrialRecord(number=number, study=study, status=status, state="FAIL", config={},
                       config_id=config_id, error=error, retry_of=retry_of,
                       epoch_scores=epoch_scores or [])


def test_failures_with_one_reason_are_one_line():
    reason = "invalid learning_rate (got -0.001); expected a finite number > 0"
    records = [_rec(i, "failed", reason) for i in range(3)] + [_rec(3, "ok")]
    assert summary_lines(records) == [f"3 trials failed: {reason} (trials 0, 1, 2)"]


def test_reasons_differing_only_in_numbers_group_and_tracebacks_show_their_first_line():
    records = [_rec(0, "failed", "loss is NaN at step 12"),
               _rec(1, "failed", "loss is NaN at step 40"),
               _rec(2, "failed", "RuntimeError: CUDA out of memory\nTraceback (most recent ...)\n  x"),
               _rec(3, "pruned", epoch_scores=[0.5]), _rec(4, "pruned", epoch_scores=[0.4])]
    groups = reason_groups(records)
    assert [(g.status, len(g.trials)) for g in groups] == [("failed", 2), ("failed", 1),
                                                            ("pruned", 2)]
    lines = summary_lines(records)
    assert lines[0] == "2 trials failed: loss is NaN at step 12 (and alike) (trials 0, 1)"
    assert lines[1] == "1 trial failed: RuntimeError: CUDA out of memory (trial 2)"
    assert lines[2].startswith("2 trials pruned: stopped early by the pruner")


def test_many_trials_are_cut_and_several_studies_named():
    records = [_rec(i, "failed", "boom") for i in range(30)]
    assert summary_lines(records) == [
        "30 trials failed: boom (trials 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, ... (30 in all))"]
    two = [_rec(0, "failed", "boom", study="g/a"), _rec(0, "failed", "boom", study="g/b")]
    assert summary_lines(two) == ["2 trials failed: boom (trial 0 of g/a; trial 0 of g/b)"]


def test_interrupted_trial_names_its_retry():
    records = [_rec(0, "ok", config_id="a"), _rec(1, "interrupted", config_id="b"),
               _rec(2, "ok", config_id="b", retry_of=1), _rec(3, "interrupted", config_id="d")]
    assert [(i.number, i.retry) for i in interruptions(records)] == [(1, 2), (3, None)]
    lines = summary_lines(records)
    assert "trial 1 was interrupted; its config runs again as trial 2" in lines
    assert "trial 3 was interrupted; its config has not run again yet" in lines
    # without Optuna's retry mark, the next trial of the same config is the retry
    plain = [_rec(1, "interrupted", config_id="b"), _rec(2, "ok", config_id="x"),
             _rec(5, "failed", "boom", config_id="b")]
    assert [(i.number, i.retry) for i in interruptions(plain)] == [(1, 5)]


def _space(tmp_path, text: str):
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return str(path)


def test_tune_whose_trials_all_fail_says_why(run_cli, tmp_path):
    # the synthetic trial fails (like a diverging run) from learning_rate 0.05 on
    space = _space(tmp_path, "params:\n  lora_r: {type: int, values: [8, 16]}\n"
                             "fixed:\n  learning_rate: 0.07\n")
    res = run_cli("tune", "--task", "t", "--model", "m", "--space", space, "--strategy", "grid",
                  "--trials", "2", "--trial-fn", SYNTH, "-q", "--json", "out.json")
    assert res.exit_code == 1, res.output
    assert "2 trials failed: loss is NaN (diverged) (trials 0, 1)" in res.stdout
    assert "no successful trial" in res.stdout
    data = json.loads((tmp_path / "out.json").read_text())
    assert data["failures"][0]["reason"] == "loss is NaN (diverged)"
    assert [t["number"] for t in data["failures"][0]["trials"]] == [0, 1]


def test_grid_summary_lists_failures_per_cell(run_cli, tmp_path):
    space = _space(tmp_path, "params:\n  learning_rate: {type: float, values: [1.0e-4, 0.06]}\n")
    res = run_cli("grid", "--tasks", "a,b", "--models", "m", "--space", space, "--trial-fn",
                  SYNTH, "-q", "--name", "g")
    assert res.exit_code == 0, res.output
    assert "2 trials failed: loss is NaN (diverged) (trial 1 of g/a/m/lora/all; " \
           "trial 1 of g/b/m/lora/all)" in res.stdout


def test_resume_reports_the_interrupted_trial_and_its_retry(run_cli, tmp_path):
    """The state a killed worker leaves once the heartbeat check ran: trial 1 failed without a
    status of its own (interrupted), and Optuna's retry callback enqueued its params again."""
    optuna = pytest.importorskip("optuna")
    from optuna.trial import TrialState, create_trial

    args = ["tune", "--task", "t", "--model", "m", "--space", "preset:demo", "--strategy",
            "random", "--trial-fn", SYNTH, "-q"]
    res = run_cli(*args, "--trials", "1")
    assert res.exit_code == 0, res.output
    storage = f"sqlite:///{tmp_path / 'runs' / 'tune-t-m-demo-random' / 'study.db'}"
    study = optuna.load_study(study_name="tune-t-m-demo-random", storage=storage)
    done = study.trials[0]
    attrs = {k: done.user_attrs[k] for k in ("task", "model", "config", "config_id")}
    study.add_trial(create_trial(state=TrialState.FAIL, params=done.params,
                                 distributions=done.distributions, user_attrs=attrs))
    study.add_trial(create_trial(state=TrialState.WAITING, params=done.params,
                                 distributions=done.distributions, user_attrs=attrs,
                                 system_attrs={"failed_trial": 1, "retry_history": [1]}))
    res = run_cli(*args, "--trials", "2")
    assert res.exit_code == 0, res.output
    assert "trial 1 was interrupted; its config runs again as trial 2" in res.stdout
