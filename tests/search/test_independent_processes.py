"""Separate ``staytuned tune`` commands started together on one storage never run one config
twice (issue 20): what users of Optuna do with one command per machine, not only ``--workers``.

Every strategy, 3 OS processes with the same seed (the default 0) on one SQLite study; tpe, random
and gp on PostgreSQL too. Trials sleep a little so that they overlap.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from staytuned.search.records import read_records
from staytuned.search.strategies import STRATEGIES

from .conftest import SYNTH, demo_table, spawn
from .test_postgres import postgres_url  # noqa: F401  (the fixture: a real server)

# Each case starts three staytuned processes (~13 s): part of the full suite, not the fast tier.
pytestmark = pytest.mark.slow

TRIALS = 6  # the study's budget; the demo space's lora grid has 8 configs
PROCESSES = 3
SLEEP = "0.3"  # seconds per (synthetic) epoch: trials of the processes overlap


def _run_together(strategy: str, storage: str, tmp_path: Path, *, seeds: list[int],
                  study: str) -> list:
    table = demo_table(tmp_path / "offline.csv")
    procs = []
    for seed in seeds:
        args = ["tune", "--task", "t1", "--model", "m", "--space", "preset:demo",
                "--strategy", strategy, "--trials", str(TRIALS), "--trial-fn", SYNTH,
                "--storage", storage, "--study", study, "--seed", str(seed), "--cbs-k", "2",
                "--train-size", "10", "-q"]
        if strategy.startswith("cbs") or strategy == "transfer":
            args += ["--cbs-table", str(table)]
        procs.append(spawn(args, tmp_path, {"STAYTUNED_SYNTHETIC_SLEEP": SLEEP}))
    for p in procs:
        _, stderr = p.communicate(timeout=600)  # a hang guard only
        assert p.returncode == 0, stderr
    return read_records(storage, study)


def _assert_distinct(records: list) -> None:
    ids = Counter(r.config_id for r in records)
    dup = {cid: n for cid, n in ids.items() if n > 1}
    assert not dup, f"configs run more than once: {dup} in {[r.config for r in records]}"
    assert [r.status for r in records] == ["ok"] * TRIALS  # the budget, no trial more
    assert all(r.config_id for r in records)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_processes_with_one_seed_never_share_a_config_sqlite(tmp_path, strategy):
    url = f"sqlite:///{tmp_path}/study.db"
    _assert_distinct(_run_together(strategy, url, tmp_path, seeds=[0] * PROCESSES, study="s"))


@pytest.mark.parametrize("strategy", ["grid", "random"])
def test_processes_with_different_seeds_never_share_a_config(tmp_path, strategy):
    """``--seed`` differing per command (as ``--workers`` offsets it per worker): GridSampler
    shuffles its grid by seed, so the same grid id means another point in each process."""
    url = f"sqlite:///{tmp_path}/study.db"
    _assert_distinct(_run_together(strategy, url, tmp_path, seeds=list(range(PROCESSES)),
                                   study="s"))


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["tpe", "random", "gp"])
def test_processes_with_one_seed_never_share_a_config_postgres(postgres_url, tmp_path,  # noqa: F811
                                                               strategy):
    study = f"independent-{strategy}"
    _assert_distinct(_run_together(strategy, postgres_url, tmp_path, seeds=[0] * PROCESSES,
                                   study=study))
