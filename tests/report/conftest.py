"""Studies and tables for the report tests, written here with Optuna's own API.

The trials carry the documented user_attrs (docs/CONTRACTS.md, "Storage / results"), and one
dataset name and one error message are HTML/JS payloads, to prove the page escapes them.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import optuna
import pytest

XSS_DATASET = '<script>window.__pwned=1</script>ds"3'
XSS_ERROR = 'CUDA out of memory <img src=x onerror="window.__pwned=2">'


def _attrs(task: str, status: str, score: float, error: str | None = None, cid: str = "") -> dict:
    return {"status": status, "error": error, "metrics": {"accuracy": score}, "metric": "accuracy",
            "score": score, "runtime_s": 1.5, "train_tokens_per_s": 1000.0, "peak_memory_mb": 300.0,
            "versions": {"optuna": optuna.__version__}, "task": task, "model": "tiny-llama", "method": "lora",
            "train_size": 100, "seed": 0, "config_id": cid, "loss_curve": [[1, 2.0], [2, 1.5]]}


def tune_score(lr: float, epochs: int, d: int) -> float:
    """Peak at lr=1e-4, epochs=3; dataset d shifts the level (datasets differ in difficulty)."""
    return 0.9 - 0.1 * abs(math.log10(lr) + 4) - 0.04 * abs(epochs - 3) - 0.1 * d


def make_storage(path: Path) -> str:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = f"sqlite:///{path}"
    study = optuna.create_study(study_name="grid-demo", storage=url, direction="maximize")
    study.set_user_attr("kind", "grid")
    study.set_user_attr("direction", "max")
    dist = {"learning_rate": optuna.distributions.CategoricalDistribution([3e-5, 1e-4, 3e-4, 1e-3]),
            "epochs": optuna.distributions.CategoricalDistribution([1, 2, 3]),
            "lr_scheduler": optuna.distributions.CategoricalDistribution(["linear", "cosine"])}
    datasets = ["sst2", "trec", XSS_DATASET]
    n = 0
    for d, task in enumerate(datasets):
        for lr in (3e-5, 1e-4, 3e-4, 1e-3):
            for ep in (1, 2, 3):
                sch = "cosine" if (n % 2) else "linear"
                params = {"learning_rate": lr, "epochs": ep, "lr_scheduler": sch}
                cid = f"lr{lr}-ep{ep}-{sch}"
                n += 1
                if lr == 1e-3 and ep == 3:  # one failure per dataset, with a hostile error text
                    study.add_trial(optuna.trial.create_trial(
                        params=params, distributions=dist, state=optuna.trial.TrialState.FAIL,
                        user_attrs=_attrs(task, "failed", float("nan"), XSS_ERROR, cid)))
                    continue
                score = tune_score(lr, ep, d)
                study.add_trial(optuna.trial.create_trial(
                    params=params, distributions=dist, value=score, user_attrs=_attrs(task, "ok", score, None, cid)))
    dec = optuna.create_study(study_name="decode-demo", storage=url, directions=["maximize", "minimize"])
    dec.set_user_attr("kind", "decode")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        dec.set_metric_names(["accuracy", "tokens"])
    ddist = {"temperature": optuna.distributions.FloatDistribution(0.0, 1.5),
             "top_p": optuna.distributions.FloatDistribution(0.5, 1.0)}
    for t, p in [(0.0, 1.0), (0.3, 0.9), (0.7, 0.9), (1.0, 0.95), (1.5, 0.5), (0.7, 0.5)]:
        acc = 1 - abs(t - 0.7) - 0.2 * abs(p - 0.9)
        toks = 50 + 100 * t
        dec.add_trial(optuna.trial.create_trial(params={"temperature": t, "top_p": p}, distributions=ddist,
                                                values=[acc, toks], user_attrs={"task": "sst2", "status": "ok"}))
    # A decoding study as `staytuned decode tune` writes it: one objective (the task metric) and
    # the secondary objectives in each trial's metrics (decoding.objective.SECONDARY).
    sec = optuna.create_study(study_name="decode-secondary", storage=url, direction="maximize")
    sec.set_user_attr("kind", "decode")
    sec.set_user_attr("metric", "accuracy")
    for t, acc, toks, distinct in [(0.0, 0.70, 10.0, 0.5), (0.5, 0.75, 14.0, 0.6), (1.0, 0.72, 20.0, 0.8),
                                   (1.5, 0.60, 25.0, 0.7)]:
        cfg = {"temperature": t, "max_new_tokens": 16}
        sec.add_trial(optuna.trial.create_trial(
            params={"temperature": t}, distributions={"temperature": ddist["temperature"]}, value=acc,
            user_attrs={"task": "sst2", "model": "tiny-llama", "status": "ok", "error": None, "config": cfg,
                        "config_id": f"t{t}", "score": acc, "metric": "accuracy",
                        "metrics": {"accuracy": acc, "output_tokens": toks, "distinct_n": distinct,
                                    "repetition_rate": None}}))
    return url


@pytest.fixture(scope="session")
def storage_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return make_storage(tmp_path_factory.mktemp("report-storage") / "study.db")


@pytest.fixture()
def table_csv(tmp_path: Path) -> Path:
    """A canonical results table: 3 configs x 2 datasets, one failed run with an error."""
    rows = ["dataset,config_id,hp_learning_rate,hp_epochs,metric,score,status,error"]
    scores = {"a": {"c1": 0.80, "c2": 0.70, "c3": 0.60}, "b": {"c1": 0.50, "c2": 0.65, "c3": None}}
    hps = {"c1": (1e-4, 1), "c2": (3e-4, 2), "c3": (1e-3, 3)}
    for ds, per in scores.items():
        for cid, s in per.items():
            lr, ep = hps[cid]
            if s is None:
                rows.append(f'{ds},{cid},{lr},{ep},accuracy,,failed,"NaN loss <b>boom</b>"')
            else:
                rows.append(f"{ds},{cid},{lr},{ep},accuracy,{s},ok,")
    p = tmp_path / "results.csv"
    p.write_text("\n".join(rows) + "\n")
    return p
