"""TrialRecord: one writer, one reader, one rule for Optuna states and legacy configs."""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState, create_trial

from staytuned.errors import InputError
from staytuned.hparams.schema import EXECUTION_SETTINGS
from staytuned.search.records import (
    INTERRUPTED_ERROR,
    MAX_CURVE_POINTS,
    cell_attrs,
    read_record,
    read_records,
    result_attrs,
    study_records,
    write_record,
)
from staytuned.search.space import config_id

REPO = Path(__file__).resolve().parents[2]
CONFIG = {"method": "lora", "learning_rate": 1e-4, "lr_scheduler": "cosine", "epochs": 2.0}
DIST = {"learning_rate": CategoricalDistribution([1e-4, 3e-4])}


@pytest.fixture(autouse=True)
def _quiet():
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def _study(kind: str | None = "tune") -> optuna.Study:
    study = optuna.create_study(storage=optuna.storages.InMemoryStorage(), study_name="s",
                                direction="maximize")
    if kind is not None:
        study.set_user_attr("kind", kind)
    return study


def _cell(config=CONFIG) -> dict:
    return cell_attrs(task="sst2", model="tiny-llama", method="lora", train_size=100, seed=3,
                      config=config, versions={"optuna": optuna.__version__})


def _add(study, state, attrs, value=None) -> None:
    study.add_trial(create_trial(params={"learning_rate": 1e-4}, distributions=DIST, state=state,
                                 value=value, user_attrs=attrs))


def test_round_trip_through_a_real_study():
    study = _study()
    result = {"status": "ok", "score": 0.8, "metric": "accuracy", "metrics": {"accuracy": 0.8, "f1": 0.7},
              "score_test": 0.75, "runtime_s": 12.5, "train_runtime_s": 9.0, "eval_runtime_s": 3.0,
              "loss_curve": [[1, 2.0], [2, 1.5]], "epoch_scores": [0.7, 0.8],
              "train_tokens_per_s": 1000.0, "peak_memory_mb": 300.0, "n_train": 100, "n_eval": 50,
              "micro_batch_size": 4}

    def objective(trial: optuna.Trial) -> float:
        trial.suggest_categorical("learning_rate", [1e-4, 3e-4])
        write_record(trial, _cell())
        attrs = result_attrs(result, execution={"precision": "bf16", "device": None})
        write_record(trial, attrs)
        return attrs["score"]

    study.optimize(objective, n_trials=1)
    [rec] = study_records(study)
    assert (rec.number, rec.study, rec.status, rec.state) == (0, "s", "ok", "COMPLETE")
    assert rec.config == CONFIG and rec.config_id == config_id(CONFIG)
    assert (rec.task, rec.model, rec.method, rec.train_size, rec.seed) == ("sst2", "tiny-llama", "lora", 100, 3)
    assert (rec.metric, rec.score, rec.score_test) == ("accuracy", 0.8, 0.75)
    assert rec.metrics == {"accuracy": 0.8, "f1": 0.7} and rec.error is None
    assert (rec.runtime_s, rec.train_runtime_s, rec.eval_runtime_s) == (12.5, 9.0, 3.0)
    assert rec.loss_curve == [[1, 2.0], [2, 1.5]] and rec.epoch_scores == [0.7, 0.8]
    assert (rec.train_tokens_per_s, rec.peak_memory_mb, rec.n_train, rec.n_eval) == (1000.0, 300.0, 100, 50)
    assert rec.versions == {"optuna": optuna.__version__}
    # the micro-batch the trial chose and the run's precision; an unset device is not recorded
    assert rec.execution == {"micro_batch_size": 4, "precision": "bf16"}
    assert rec.datetime_start is not None and rec.datetime_complete >= rec.datetime_start
    assert rec.finished and rec.values == (0.8,)


def test_every_optuna_state_maps_to_one_status():
    study = _study()
    _add(study, TrialState.COMPLETE, {**_cell(), **result_attrs({"status": "ok", "score": 0.9})}, 0.9)
    _add(study, TrialState.PRUNED, {**_cell(), **result_attrs({"status": "pruned", "score": 0.4})})
    _add(study, TrialState.FAIL, {**_cell(), **result_attrs({"status": "failed", "error": "OOM"})})
    _add(study, TrialState.FAIL, _cell())  # its worker died: the cell was stored, the result never
    study.enqueue_trial({"learning_rate": 3e-4})  # WAITING
    study.ask()  # takes the enqueued trial: RUNNING
    study.enqueue_trial({"learning_rate": 1e-4})  # WAITING
    recs = study_records(study)
    assert [r.status for r in recs] == ["ok", "pruned", "failed", "interrupted", "running", "running"]
    assert [r.state for r in recs][-2:] == ["RUNNING", "WAITING"]
    assert [r.finished for r in recs] == [True, True, True, False, False, False]
    ok, pruned, failed, dead = recs[:4]
    assert ok.score == 0.9 and ok.error is None
    assert pruned.score == 0.4  # the partial score it stored
    assert failed.error == "OOM" and failed.score is None
    assert dead.error == INTERRUPTED_ERROR and dead.config == CONFIG


def test_a_plain_optuna_failure_is_a_failure_not_an_interruption():
    study = _study(kind=None)  # not written by staytuned: no kind, no cell attrs
    _add(study, TrialState.FAIL, {})
    [rec] = study_records(study)
    assert rec.status == "failed" and rec.config == {"learning_rate": 1e-4}
    assert rec.config_id == config_id({"learning_rate": 1e-4})
    # ...but in a staytuned study, a trial killed before it stored anything was interrupted
    study.set_user_attr("kind", "grid")
    assert study_records(study)[0].status == "interrupted"
    frozen = study.get_trials()[0]
    assert read_record(frozen, "s").status == "failed"  # without the study's attrs: plain
    assert read_record(frozen, "s", study_attrs={"kind": "grid"}).status == "interrupted"


def test_legacy_precision_in_a_stored_config_becomes_an_execution_setting():
    legacy = {**CONFIG, "precision": "bf16"}
    attrs = {**_cell(), "config": legacy, "config_id": "c-old-id-with-precision",
             **result_attrs({"status": "ok", "score": 0.5})}
    study = _study()
    _add(study, TrialState.COMPLETE, attrs, 0.5)
    [rec] = study_records(study)
    assert rec.config == CONFIG and "precision" not in rec.config
    assert rec.config_id == config_id(CONFIG) != "c-old-id-with-precision"
    assert rec.execution == {"precision": "bf16"}


def test_a_stored_id_of_a_clean_config_is_kept():
    attrs = {**_cell(), "config_id": "my-own-id", **result_attrs({"status": "ok", "score": 0.5})}
    study = _study()
    _add(study, TrialState.COMPLETE, attrs, 0.5)
    assert study_records(study)[0].config_id == "my-own-id"


def test_writer_normalises_what_a_trial_returns():
    assert result_attrs({"status": "ok", "score": float("nan")})["status"] == "failed"
    assert result_attrs({"status": "ok", "score": None})["error"] == "no score"
    odd = result_attrs({"status": "weird", "score": 1.0, "error": "x"})
    assert odd["status"] == "failed" and "weird" in odd["error"]
    curve = [[i, 1.0 / (i + 1)] for i in range(1, 1001)]
    thin = result_attrs({"status": "ok", "score": 1.0, "loss_curve": curve})["loss_curve"]
    assert len(thin) <= MAX_CURVE_POINTS + 1 and thin[0] == curve[0] and thin[-1] == curve[-1]
    attrs = result_attrs({"status": "ok", "score": 1.0, "metrics": {"a": float("inf")}, "micro_batch_size": 0})
    assert attrs["metrics"] == {"a": None} and attrs["execution"] == {}  # 0 = not chosen
    assert attrs["error"] is None and math.isclose(attrs["score"], 1.0)


def test_a_config_never_holds_an_execution_setting():
    with pytest.raises(InputError, match="execution setting") as info:
        _cell({**CONFIG, "precision": "bf16"})
    assert info.value.field == "config.precision"


def test_read_records_by_storage_url(tmp_path):
    url = f"sqlite:///{tmp_path}/r.db"
    for name in ("a", "b"):
        study = optuna.create_study(storage=url, study_name=name, direction="maximize")
        study.set_user_attr("kind", "tune")
        _add(study, TrialState.COMPLETE, {**_cell(), **result_attrs({"status": "ok", "score": 0.5})}, 0.5)
    assert [(r.study, r.status) for r in read_records(url)] == [("a", "ok"), ("b", "ok")]
    assert [r.study for r in read_records(url, "b")] == ["b"]
    with pytest.raises(InputError) as info:
        read_records(url, "nope")
    assert info.value.field == "study_name" and "a, b" in str(info.value)


def test_interrupted_trials_are_not_results_nor_budget(tmp_path):
    from staytuned.search.study import counts, trial_rows
    from staytuned.search.table import collect_rows

    url = f"sqlite:///{tmp_path}/i.db"
    study = optuna.create_study(storage=url, study_name="s", direction="maximize")
    study.set_user_attr("kind", "tune")
    _add(study, TrialState.FAIL, {**_cell(), **result_attrs({"status": "failed", "error": "OOM"})})
    _add(study, TrialState.FAIL, _cell())
    rows = collect_rows(url)
    assert [(r["status"], r["error"]) for r in rows] == [("failed", "OOM")]
    assert counts(study).failed == 1 and counts(study).finished == 1
    assert [r["status"] for r in trial_rows(study)] == ["failed", "interrupted"]


def test_export_says_which_trainer_and_precision_ran_and_cbs_ignores_them(tmp_path):
    from staytuned.results import load_results
    from staytuned.search.table import collect_rows, export_results

    url = f"sqlite:///{tmp_path}/e.db"
    study = optuna.create_study(storage=url, study_name="s", direction="maximize")
    study.set_user_attr("kind", "tune")
    for lr, trainer, precision in ((1e-4, "native", "fp32"), (3e-4, "trl", "bf16")):
        config = {**CONFIG, "learning_rate": lr}
        attrs = {**_cell(config), **result_attrs({"status": "ok", "score": 0.5, "trainer": trainer,
                                                  "precision": precision}, execution={"precision": "auto"})}
        _add(study, TrialState.COMPLETE, attrs, 0.5)
    rows = collect_rows(url)
    assert [(r["trainer"], r["precision"]) for r in rows] == [("native", "fp32"), ("trl", "bf16")]
    assert export_results(url, tmp_path / "t.csv") == 2
    table = load_results(tmp_path / "t.csv")
    assert table.hp_columns == tuple(f"hp_{k}" for k in sorted(k for k in CONFIG if k != "method"))
    plain = tmp_path / "plain.csv"  # no hp_ columns: every unknown column is an HP, but not these
    plain.write_text("dataset,lr,trainer,precision,score\na,1,native,fp32,0.5\nb,1,trl,bf16,0.6\n")
    assert load_results(plain).hp_columns == ("lr",)


def test_the_committed_smollm2_grid_reads_without_precision_in_configs(tmp_path):
    db = tmp_path / "grid.db"
    shutil.copy(REPO / "studies" / "smollm2" / "grid.db", db)
    recs = read_records(f"sqlite:///{db}")
    assert len(recs) == 504
    assert all(not (set(r.config) & EXECUTION_SETTINGS) for r in recs)
    assert all(r.execution.get("precision") == "bf16" for r in recs)
    assert all(r.config_id == config_id(r.config) for r in recs)
    # one config, one id: the same hyperparameters share their id across every cell
    by_config = {tuple(sorted(r.config.items())): r.config_id for r in recs}
    assert len(set(by_config.values())) == len(by_config)
    # its 20 failed trials are the ones whose worker was stopped; each was run again
    dead = [r for r in recs if r.status != "ok"]
    assert len(dead) == 20 and {r.status for r in dead} == {"interrupted"}
    retried = {(r.study, r.retry_of) for r in recs if r.retry_of is not None}
    assert all((r.study, r.number) in retried for r in dead)


def test_records_import_no_heavy_module():
    code = ("import sys, staytuned.search.records; "
            "print(sorted(m for m in ('optuna', 'torch', 'transformers', 'peft', 'ray', 'plotly', "
            "'pandas') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
