"""Threads from the CPUs this process may use: affinity mask and cgroup v1/v2 quotas."""

from __future__ import annotations

from pathlib import Path

import pytest

from staytuned.errors import InputError
from staytuned.hardware.threads import cgroup_cpu_quota, threads_per_worker, usable_cpus


def _v2(tmp_path: Path, quotas: dict[str, str], self_path: str) -> tuple[Path, Path]:
    root = tmp_path / "cgroup"
    for rel, value in quotas.items():
        d = root / rel if rel else root
        d.mkdir(parents=True, exist_ok=True)
        (d / "cpu.max").write_text(value + "\n")
    proc = tmp_path / "proc-self-cgroup"
    proc.write_text(f"0::{self_path}\n")
    return root, proc


def test_cgroup_v2_quota_of_the_process_and_its_ancestors(tmp_path: Path) -> None:
    root, proc = _v2(tmp_path, {"": "max 100000", "job": "250000 100000", "job/step": "max 100000"},
                     "/job/step")
    assert cgroup_cpu_quota(root, proc) == 2.5
    cpus = usable_cpus(affinity=16, cgroup_root=root, proc_self_cgroup=proc)
    assert cpus.cpus == 3 and cpus.affinity == 16 and cpus.cgroup_quota == 2.5  # 2.5 CPUs' time: 3 threads
    assert "cgroup quota 2.5 CPUs" in cpus.reason
    # A tighter affinity mask wins over a loose quota.
    assert usable_cpus(affinity=2, cgroup_root=root, proc_self_cgroup=proc).cpus == 2


def test_cgroup_v2_unlimited_and_container_view(tmp_path: Path) -> None:
    root, proc = _v2(tmp_path, {"": "max 100000"}, "/")
    assert cgroup_cpu_quota(root, proc) is None
    assert usable_cpus(affinity=8, cgroup_root=root, proc_self_cgroup=proc).cpus == 8
    # Inside a container the process's path is not under the mount: the mount root's limit counts.
    root2, proc2 = _v2(tmp_path / "c", {"": "100000 100000"}, "/kubepods/pod1/abc")
    assert usable_cpus(affinity=8, cgroup_root=root2, proc_self_cgroup=proc2).cpus == 1


def test_cgroup_v1_cfs_quota(tmp_path: Path) -> None:
    cpu = tmp_path / "cgroup" / "cpu"
    cpu.mkdir(parents=True)
    (cpu / "cpu.cfs_quota_us").write_text("-1\n")
    (cpu / "cpu.cfs_period_us").write_text("100000\n")
    (cpu / "docker").mkdir()
    (cpu / "docker" / "cpu.cfs_quota_us").write_text("200000\n")
    (cpu / "docker" / "cpu.cfs_period_us").write_text("100000\n")
    proc = tmp_path / "proc-self-cgroup"
    proc.write_text("5:memory:/docker\n1:cpu:/docker\n0::/\n")
    assert cgroup_cpu_quota(tmp_path / "cgroup", proc) == 2.0
    assert usable_cpus(affinity=32, cgroup_root=tmp_path / "cgroup", proc_self_cgroup=proc).cpus == 2
    proc.write_text("1:cpu:/\n")
    assert cgroup_cpu_quota(tmp_path / "cgroup", proc) is None


def test_threads_per_worker(tmp_path: Path) -> None:
    root, proc = _v2(tmp_path, {"": "400000 100000"}, "/")
    usable = usable_cpus(affinity=8, cgroup_root=root, proc_self_cgroup=proc)
    got = [threads_per_worker(n, env={}, usable=usable).threads for n in (1, 2, 3, 4, 8)]
    assert got == [4, 2, 1, 1, 1]
    choice = threads_per_worker(2, env={}, usable=usable)
    assert choice.source == "cpus" and choice.reason == "4 usable CPUs (affinity 8, cgroup quota 4 CPUs) / 2 workers"


def test_an_exported_thread_count_and_an_explicit_request_win(tmp_path: Path) -> None:
    usable = usable_cpus(affinity=8, cgroup_root=tmp_path, proc_self_cgroup=tmp_path / "none")
    env = threads_per_worker(4, env={"OMP_NUM_THREADS": "3"}, usable=usable)
    assert (env.threads, env.source, env.reason) == (3, "env", "OMP_NUM_THREADS=3 is set")
    assert threads_per_worker(4, env={"OMP_NUM_THREADS": "x"}, usable=usable).threads == 2  # not a count
    asked = threads_per_worker(1, requested=5, env={"OMP_NUM_THREADS": "3"}, usable=usable)
    assert (asked.threads, asked.source) == (5, "explicit")
    with pytest.raises(InputError) as info:
        threads_per_worker(1, requested=0, usable=usable)
    assert info.value.field == "threads" and info.value.value == 0


def test_this_machine_has_at_least_one_usable_cpu() -> None:
    cpus = usable_cpus()
    assert cpus.cpus >= 1 and (cpus.affinity is None or cpus.cpus <= cpus.affinity)
