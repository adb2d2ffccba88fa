"""Reading this process's cgroups (v1 and v2): where its CPU and memory limits live.

Shared by :mod:`staytuned.hardware.threads` (CPU quota) and :mod:`staytuned.hardware.budget`
(memory limit). Stdlib only.
"""

from __future__ import annotations

from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_SELF_CGROUP = Path("/proc/self/cgroup")


def read_value(path: Path) -> str | None:
    """A cgroup or proc file's stripped text; None when it cannot be read (absent controller)."""
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError:
        return None


def cgroup_dirs(root: Path, relative: str) -> list[Path]:
    """The process's cgroup folder under ``root`` and its ancestors, innermost first.

    Inside a container the process's path is often not visible under the mount (the mount is
    the container's own cgroup): then only the mount root is read.
    """
    rel = relative.strip("/")
    dirs = []
    parts = rel.split("/") if rel else []
    for n in range(len(parts), -1, -1):
        d = root.joinpath(*parts[:n])
        if d.is_dir() and d not in dirs:
            dirs.append(d)
    return dirs or [root]


def self_cgroups(proc_self_cgroup: Path) -> dict[str, str]:
    """Controller name ('' for the v2 unified hierarchy) -> the process's cgroup path."""
    groups: dict[str, str] = {}
    for line in (read_value(proc_self_cgroup) or "").splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            for controller in parts[1].split(","):
                groups.setdefault(controller, parts[2])
    return groups
