"""``staytuned doctor``'s content: this machine, its libraries and what ``precision=auto`` will do.

Users paste it into bug reports, so it names everything a run's speed and numerics depend on:
CPU model and vector flags, measured bf16/fp32 matmul speed, threads, GPUs, library versions and
the precision chosen on each device. Light at import; torch is used only if installed.
"""

from __future__ import annotations

import platform
import sys
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from staytuned.hardware.precision import (
    FAST_BF16_RATIO,
    PrecisionChoice,
    choose_precision,
)
from staytuned.hardware.probe import Probe, cpu_info, cpu_matmul_speed, gpu_info
from staytuned.hardware.threads import ThreadChoice, threads_per_worker

#: Distributions whose versions decide what runs and how (reported as "not installed" when absent).
PACKAGES = ("torch", "transformers", "peft", "bitsandbytes", "optuna", "ray", "accelerate", "trl")


@dataclass(frozen=True)
class DoctorReport:
    """Everything ``staytuned doctor`` shows; ``to_dict()`` is its JSON."""

    staytuned: str
    python: str
    platform: str
    probe: Probe
    threads: ThreadChoice
    packages: dict[str, str]
    precision_auto: dict[str, PrecisionChoice]  # device -> what precision=auto runs there
    notes: list[str] = field(default_factory=list)

    @property
    def bf16_fast(self) -> bool | None:
        """bf16 matmuls on this CPU are at least FAST_BF16_RATIO x fp32 (None: not measured)."""
        m = self.probe.matmul
        return None if m is None else m.bf16_ratio >= FAST_BF16_RATIO

    def to_dict(self) -> dict[str, Any]:
        return {
            "staytuned": self.staytuned,
            "python": self.python,
            "platform": self.platform,
            "cpu": self.probe.to_dict()["cpu"],
            "bf16_fast": self.bf16_fast,
            "matmul": self.probe.to_dict()["matmul"],
            "threads": {"threads": self.threads.threads, "source": self.threads.source,
                        "reason": self.threads.reason, **asdict(self.threads.usable)},
            "gpus": self.probe.to_dict()["gpus"],
            "packages": dict(self.packages),
            "precision_auto": {dev: c.to_dict() for dev, c in self.precision_auto.items()},
            "notes": list(self.notes),
        }


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    """Installed versions from package metadata (nothing is imported)."""
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def _staytuned_version() -> str:
    try:
        from staytuned import __version__

        return str(__version__)
    except ImportError:
        return "unknown"


def diagnose(*, refresh: bool = False, cache_dir: str | Path | None = None) -> DoctorReport:
    """Describe this machine; ``refresh`` measures the CPU matmul speed again instead of reading the cache."""
    notes: list[str] = []
    cpu = cpu_info()
    matmul = None
    try:
        matmul = cpu_matmul_speed(cpu, cache_dir=cache_dir, refresh=refresh)
    except ImportError:
        notes.append("torch is not installed: matmul speed not measured, no GPUs seen")
    probe = Probe(cpu=cpu, matmul=matmul, gpus=gpu_info())
    choices: dict[str, PrecisionChoice] = {}
    if matmul is not None:
        choices["cpu"] = choose_precision("auto", "cpu", probe)
    for gpu in probe.gpus:
        dev = f"cuda:{gpu.index}"
        choices[dev] = choose_precision("auto", dev, probe)
    return DoctorReport(staytuned=_staytuned_version(), python=sys.version.split()[0],
                        platform=platform.platform(), probe=probe, threads=threads_per_worker(1),
                        packages=package_versions(), precision_auto=choices, notes=notes)
