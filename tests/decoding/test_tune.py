"""decode tune: a stored study scored over seeds, resumable, validated before anything runs."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
optuna = pytest.importorskip("optuna")

from staytuned.decoding.objective import Estimate, score_config  # noqa: E402
from staytuned.decoding.tune import DecodeTuneSpec, check_spec, run_decode_tune  # noqa: E402
from staytuned.errors import InputError  # noqa: E402
from staytuned.hparams.decode import DecodingConfig  # noqa: E402

SMALL_SPACE = {
    "name": "small", "kind": "decode",
    "params": {"do_sample": {"type": "categorical", "choices": [False, True]},
               "temperature": {"type": "categorical", "choices": [1.2], "when": {"do_sample": True}}},
}


def _spec(tmp_path, **kw):
    base = dict(task="sst2", model="tiny-llama", storage=f"sqlite:///{tmp_path / 'study.db'}",
                study_name="dec", space=SMALL_SPACE, strategy="grid", n_trials=2, samples=3,
                eval_size=4, overrides={"max_new_tokens": 3})
    base.update(kw)
    return DecodeTuneSpec(**base)


def test_grid_study_scores_each_config_over_seeds_and_stores_it(tmp_path, tiny_backend):
    spec = _spec(tmp_path, secondary=("output_tokens", "distinct_n"), confidence=0.9)
    outcome = run_decode_tune(spec, backend=tiny_backend)
    assert outcome.ran == 2 and outcome.metric == "accuracy" and outcome.direction == "max"
    by_sampling = {r.config["do_sample"]: r for r in outcome.rows}
    assert by_sampling[False].estimate.n == 1  # greedy is deterministic: decoded once
    assert by_sampling[True].estimate.n == 3
    # The stored sample scores are exactly what scoring the config with seeds 0, 1, 2 gives.
    from staytuned.tasks import load_task

    task = load_task("sst2")
    rows = task.eval_rows("validation", size=4, seed=0)
    direct = score_config(tiny_backend, task, rows,
                          DecodingConfig(temperature=1.2, max_new_tokens=3), samples=3, seed=0)
    assert by_sampling[True].sample_scores == [s.score for s in direct.samples]
    assert by_sampling[True].estimate == Estimate.of(by_sampling[True].sample_scores, 0.9)
    assert any(r.pareto for r in outcome.rows)
    # Optuna storage holds the trial like a training trial, with kind "decode".
    study = optuna.load_study(study_name="dec", storage=spec.storage)
    assert study.user_attrs["kind"] == "decode"
    t = study.trials[0]
    for key in ("status", "metrics", "metric", "score", "config_id", "config", "runtime_s", "versions"):
        assert key in t.user_attrs
    assert t.user_attrs["metrics"]["n_samples"] in (1, 3)
    payload = outcome.to_dict()
    assert payload["best"]["config"] == outcome.winner.config


def test_rerun_resumes_and_confirm_adds_seeds(tmp_path, tiny_backend):
    spec = _spec(tmp_path, strategy="random", n_trials=1, space="preset:decoding", samples=2)
    first = run_decode_tune(spec, backend=tiny_backend)
    assert first.ran == 1
    again = run_decode_tune(spec, backend=tiny_backend)
    assert again.ran == 0  # the study already holds its trials
    more = run_decode_tune(_spec(tmp_path, strategy="random", n_trials=3, space="preset:decoding",
                                 samples=2, confirm_top=1, confirm_samples=2), backend=tiny_backend)
    assert more.ran == 2
    confirmed = [r for r in more.rows if len(r.sample_scores) == 4]
    sampling = [r for r in more.rows if r.config.get("do_sample")]
    assert len(confirmed) == (1 if sampling else 0)


def test_bad_inputs_are_refused_before_anything_runs(tmp_path):
    bad_space = {"kind": "decode", "params": {"top_p": {"type": "categorical", "choices": [0.0, 0.9]}}}
    with pytest.raises(InputError, match="top_p"):
        check_spec(_spec(tmp_path, space=bad_space))
    with pytest.raises(InputError, match="kind"):
        check_spec(_spec(tmp_path, space="preset:demo"))
    with pytest.raises(InputError, match="strategy"):
        check_spec(_spec(tmp_path, strategy="cbs"))
    with pytest.raises(InputError, match="temperature"):
        check_spec(_spec(tmp_path, overrides={"temperature": 3}))
    with pytest.raises(InputError, match="samples"):
        check_spec(_spec(tmp_path, samples=0))
    with pytest.raises(InputError, match="secondary"):
        check_spec(_spec(tmp_path, secondary=("speed",)))


def test_a_server_that_is_down_stops_the_study_with_its_error(tmp_path):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from servers import free_port

    from staytuned.decoding.http_backend import BackendError, HTTPBackend, RetryPolicy

    client = HTTPBackend(f"http://127.0.0.1:{free_port()}/v1", model="m",
                         retry=RetryPolicy(max_retries=0))
    with pytest.raises(BackendError, match="connection refused"):
        run_decode_tune(_spec(tmp_path, model=None), backend=client)
