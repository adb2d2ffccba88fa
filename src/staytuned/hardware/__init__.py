"""What the machine can do and how a run should use it: probe, precision, threads, doctor.

Light at import: torch is imported only inside the functions that measure or describe devices.
"""

from __future__ import annotations

from staytuned.hardware.precision import (
    FAST_BF16_RATIO,
    PRECISIONS,
    PrecisionChoice,
    SlowPrecisionWarning,
    check_precision,
    choose_precision,
    load_dtype,
)
from staytuned.hardware.probe import (
    CpuInfo,
    GpuInfo,
    MatmulSpeed,
    Probe,
    cpu_matmul_speed,
    probe_machine,
)
from staytuned.hardware.threads import (
    ThreadChoice,
    UsableCpus,
    threads_per_worker,
    usable_cpus,
)

__all__ = [
    "FAST_BF16_RATIO",
    "PRECISIONS",
    "CpuInfo",
    "GpuInfo",
    "MatmulSpeed",
    "PrecisionChoice",
    "Probe",
    "SlowPrecisionWarning",
    "ThreadChoice",
    "UsableCpus",
    "check_precision",
    "choose_precision",
    "cpu_matmul_speed",
    "load_dtype",
    "probe_machine",
    "threads_per_worker",
    "usable_cpus",
]
