"""How many CPU threads a process (or each of several workers) should run torch with.

``os.cpu_count()`` counts the host's CPUs, not the ones this process may use: a container limited
by a cgroup CPU quota or a CPU affinity mask that starts one OpenMP thread per host CPU
oversubscribes its share, and oversubscribed torch threads run several times slower than one
thread each. The usable count is the smallest of the affinity mask, the cgroup v2 ``cpu.max``
quota and the cgroup v1 CFS quota (of the process's cgroup and its ancestors).

Light module: stdlib only.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from staytuned.hardware.cgroups import CGROUP_ROOT, PROC_SELF_CGROUP, cgroup_dirs, read_value, self_cgroups

#: Environment variables that fix the thread count on purpose; the first set one wins.
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


@dataclass(frozen=True)
class UsableCpus:
    """CPUs this process may use and what limited them (``None``: that limit is absent)."""

    cpus: int
    affinity: int | None
    cgroup_quota: float | None  # CPUs' worth of time per period, e.g. 1.5

    @property
    def reason(self) -> str:
        parts = [f"affinity {self.affinity}" if self.affinity is not None else "no affinity mask"]
        if self.cgroup_quota is not None:
            parts.append(f"cgroup quota {self.cgroup_quota:g} CPUs")
        return f"{self.cpus} usable CPUs ({', '.join(parts)})"


@dataclass(frozen=True)
class ThreadChoice:
    """Threads per process and why (``source``: "env", "explicit" or "cpus")."""

    threads: int
    workers: int
    usable: UsableCpus
    source: str
    reason: str


def _affinity() -> int | None:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


def cgroup_cpu_quota(root: Path | None = None, proc_self_cgroup: Path | None = None) -> float | None:
    """The tightest CPU quota (in CPUs) on this process's cgroup and its ancestors; None if unlimited."""
    root = Path(root) if root is not None else CGROUP_ROOT
    groups = self_cgroups(Path(proc_self_cgroup) if proc_self_cgroup is not None else PROC_SELF_CGROUP)
    quotas: list[float] = []
    # cgroup v2: "<quota> <period>" or "max <period>" in cpu.max.
    for d in cgroup_dirs(root, groups.get("", "/")):
        fields = (read_value(d / "cpu.max") or "").split()
        if len(fields) == 2 and fields[0] != "max":
            try:
                quota, period = float(fields[0]), float(fields[1])
            except ValueError:
                continue
            if quota > 0 and period > 0:
                quotas.append(quota / period)
    # cgroup v1: cpu.cfs_quota_us (-1 = unlimited) and cpu.cfs_period_us under the cpu controller.
    for mount in ("cpu", "cpu,cpuacct", "cpuacct,cpu"):
        base = root / mount
        if not base.is_dir():
            continue
        for d in cgroup_dirs(base, groups.get("cpu", "/")):
            try:
                quota = float(read_value(d / "cpu.cfs_quota_us") or "-1")
                period = float(read_value(d / "cpu.cfs_period_us") or "0")
            except ValueError:
                continue
            if quota > 0 and period > 0:
                quotas.append(quota / period)
        break
    return min(quotas) if quotas else None


def usable_cpus(*, affinity: int | None = None, cgroup_root: Path | None = None,
                proc_self_cgroup: Path | None = None) -> UsableCpus:
    """CPUs this process may use: min(affinity mask, cgroup quota rounded up), at least 1."""
    affinity = affinity if affinity is not None else _affinity()
    quota = cgroup_cpu_quota(cgroup_root, proc_self_cgroup)
    limits = [n for n in (affinity, math.ceil(quota) if quota is not None else None) if n]
    cpus = max(1, min(limits)) if limits else max(1, os.cpu_count() or 1)
    return UsableCpus(cpus=cpus, affinity=affinity, cgroup_quota=quota)


def threads_per_worker(workers: int = 1, *, requested: int | None = None,
                       env: Mapping[str, str] | None = None, usable: UsableCpus | None = None) -> ThreadChoice:
    """Torch threads for each of ``workers`` processes sharing this process's CPUs.

    ``requested`` (e.g. ``threads=``) wins; then an exported ``OMP_NUM_THREADS``/``MKL_NUM_THREADS``;
    else the usable CPUs divided among the workers (at least one thread each).
    """
    workers = max(1, int(workers))
    usable = usable if usable is not None else usable_cpus()
    if requested is not None:
        from staytuned.errors import InputError

        if int(requested) < 1:
            raise InputError("must be >= 1", field="threads", value=requested)
        return ThreadChoice(int(requested), workers, usable, "explicit", "as requested")
    env = os.environ if env is None else env
    for var in THREAD_ENV:
        raw = env.get(var, "").strip()
        if raw.isdigit() and int(raw) >= 1:
            return ThreadChoice(int(raw), workers, usable, "env", f"{var}={raw} is set")
    threads = max(1, usable.cpus // workers)
    per = f" / {workers} workers" if workers > 1 else ""
    return ThreadChoice(threads, workers, usable, "cpus", f"{usable.reason}{per}")
