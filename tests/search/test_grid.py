"""Grid completeness, resume, and concurrent workers on one SQLite storage (no duplicates)."""

from __future__ import annotations

import json
from collections import Counter

import optuna
import pytest

from staytuned.search.runner import grid, grid_status, prepare_grid
from staytuned.search.space import config_id, load_space
from staytuned.search.storage import HeartbeatSettings
from staytuned.search.study import Cell, GridSpec

from .conftest import SYNTH, spawn


def _finished_configs(url: str, study_name: str) -> list[str]:
    study = optuna.load_study(study_name=study_name, storage=url)
    return [t.user_attrs["config_id"] for t in study.trials if t.state.is_finished()]


def test_grid_runs_every_config_on_every_cell_once(tmp_path):
    url = f"sqlite:///{tmp_path}/g.db"
    cells = (Cell("a", "m", "lora", 10), Cell("a", "m", "full", 10), Cell("b", "m", "lora", None))
    spec = prepare_grid(GridSpec(storage=url, name="g", cells=cells, space="preset:demo",
                                 trial_fn=SYNTH, heartbeat=HeartbeatSettings(1, 3)))
    assert spec.size() == 8 + 4 + 8
    assert grid(spec) == 20
    space = load_space("preset:demo")
    for cell in cells:
        cs = spec.cell_spec(cell)
        got = _finished_configs(url, cs.study_name)
        want = {config_id({**g, "method": cell.method}) for g in space.grid(cs.context)}
        assert sorted(got) == sorted(want)
    assert grid(spec) == 0  # resume: nothing left to run
    assert sum(c.finished for c in grid_status(spec).values()) == 20


@pytest.mark.slow
def test_two_processes_and_workers_share_a_grid_without_duplicates(tmp_path):
    """Two `staytuned grid` processes (one of them with --workers 2) on one SQLite file."""
    args = ["grid", "--tasks", "a,b", "--models", "m", "--methods", "lora", "--train-sizes", "10",
            "--space", "preset:demo", "--trial-fn", SYNTH, "--heartbeat", "2", "-q",
            "--storage", f"sqlite:///{tmp_path}/shared.db", "--json", "-"]
    env = {"STAYTUNED_SYNTHETIC_SLEEP": "0.15"}  # slow enough that the workers overlap
    p1 = spawn([*args, "--workers", "2"], tmp_path, env)
    p2 = spawn(args, tmp_path, env)
    outs = [p.communicate(timeout=300) for p in (p1, p2)]
    for p, (_stdout, stderr) in zip((p1, p2), outs, strict=True):
        assert p.returncode == 0, stderr
    ran = [json.loads(stdout)["ran_now"] for stdout, _ in outs]
    assert sum(ran) == 16 and all(r > 0 for r in ran), ran  # both processes did work
    url = f"sqlite:///{tmp_path}/shared.db"
    for task in ("a", "b"):
        study = optuna.load_study(study_name=f"grid/{task}/m/lora/10", storage=url)
        ids = [t.user_attrs.get("config_id") for t in study.trials]
        assert len(study.trials) == 8  # nothing enqueued twice, nothing sampled beyond the grid
        assert Counter(ids).most_common(1)[0][1] == 1
        assert all(t.state.name == "COMPLETE" for t in study.trials)


def test_a_second_space_with_another_distribution_is_refused_before_any_trial(tmp_path):
    """A study keeps one distribution per parameter: a clear error (exit 2), nothing lost."""
    from typer.testing import CliRunner

    from staytuned.cli import build_app

    url = f"sqlite:///{tmp_path / 'g.db'}"
    synth = "staytuned.search.synthetic:synthetic_trial"
    common = ["grid", "--tasks", "sst2", "--models", "tiny-llama", "--train-sizes", "10",
              "--trial-fn", synth, "-q", "--storage", url]
    first = CliRunner().invoke(build_app(), [*common, "--space", "preset:demo"])
    assert first.exit_code == 0, first.output
    space = tmp_path / "other.yaml"
    space.write_text("params:\n  lr_scheduler: {type: categorical, choices: [linear, cosine]}\n")
    second = CliRunner().invoke(build_app(), [*common, "--space", str(space)])
    assert second.exit_code == 2
    assert "lr_scheduler" in second.output and "does not match the one stored" in second.output
    import optuna

    study = optuna.load_study(study_name="grid/sst2/tiny-llama/lora/10", storage=url)
    assert len(study.trials) == 8 and all(t.state.name == "COMPLETE" for t in study.trials)
