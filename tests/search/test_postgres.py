"""PostgreSQL storage against a real server that this test starts and stops."""

from __future__ import annotations

import glob
import json
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections import Counter
from pathlib import Path

import optuna
import pytest

from staytuned.search.storage import open_storage

from .conftest import SYNTH, spawn

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def _bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_url():
    bindir = _bin_dir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries (/usr/lib/postgresql/*/bin) are absent")
    pytest.importorskip("psycopg2")
    root = Path(tempfile.mkdtemp(prefix="staytuned-pg-"))
    prefix: list[str] = []
    if os.geteuid() == 0:  # postgres refuses to run as root: run it as the postgres user
        user = "postgres" if _has_user("postgres") else "nobody"
        shutil.chown(root, user=user)
        root.chmod(0o755)
        prefix = ["runuser", "-u", user, "--"]
    data, port = root / "data", _free_port()
    subprocess.run([*prefix, str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"],
                   check=True, capture_output=True)
    subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-w",
                             "-o", f"-p {port} -k {root} -c listen_addresses=127.0.0.1", "start"],
                   check=True, capture_output=True)
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
                       capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def test_grid_with_two_workers_on_postgres(postgres_url, tmp_path):
    args = ["grid", "--tasks", "a,b", "--models", "m", "--methods", "lora,full", "--train-sizes", "10",
            "--space", "preset:demo", "--trial-fn", SYNTH, "--heartbeat", "1", "-q", "--storage",
            postgres_url, "--workers", "2", "--json", "-"]
    p = spawn(args, tmp_path, {"STAYTUNED_SYNTHETIC_SLEEP": "0.05"})
    stdout, stderr = p.communicate(timeout=300)
    assert p.returncode == 0, stderr
    assert json.loads(stdout)["total"] == 24
    storage = open_storage(postgres_url)
    for task in ("a", "b"):
        for method, size in (("lora", 8), ("full", 4)):
            study = optuna.load_study(study_name=f"grid/{task}/m/{method}/10", storage=storage)
            ids = Counter(t.user_attrs["config_id"] for t in study.trials)
            assert len(study.trials) == size and max(ids.values()) == 1
            assert all(t.state.name == "COMPLETE" for t in study.trials)


def test_tune_tpe_two_workers_on_postgres(postgres_url, tmp_path):
    args = ["tune", "--task", "t", "--model", "m", "--space", "preset:demo", "--strategy", "tpe",
            "--trials", "6", "--trial-fn", SYNTH, "--storage", postgres_url, "--workers", "2",
            "--study", "pg-tune", "-q", "--json", "-"]
    p = spawn(args, tmp_path, {"STAYTUNED_SYNTHETIC_SLEEP": "0.05"})
    stdout, stderr = p.communicate(timeout=300)
    assert p.returncode == 0, stderr
    data = json.loads(stdout)
    assert data["trials"]["complete"] >= 6 and data["trials"]["ran_now"] == data["trials"]["finished"]
    study = optuna.load_study(study_name="pg-tune", storage=open_storage(postgres_url))
    configs = [tuple(sorted(t.params.items())) for t in study.trials]
    assert len(set(configs)) == len(configs)  # constant liar: no config handed out twice
