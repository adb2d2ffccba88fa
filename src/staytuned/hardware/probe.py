"""What this machine is: CPU model and vector flags, measured bf16/fp32 matmul speed, GPUs.

The CPU flags alone do not say whether bf16 is fast: without AVX512-BF16/AMX, torch emulates
bf16 matmuls and they run tens of times slower than fp32 (1.2 vs 33 GFLOP/s measured on an
AVX2-only EPYC). So the speed is measured once per machine (about 0.3 s) and cached in
``$STAYTUNED_CACHE/hardware-probe.json`` under a key of CPU model, flags and torch version.

Light at import: torch is imported inside the functions that need it.
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from staytuned._util.io import atomic_write_text

#: CPU flags that decide how fast matmuls in each precision run.
VECTOR_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16")
CACHE_FILE = "hardware-probe.json"
#: Square matmul size of the probe: large enough for the vector units to matter, small enough that
#: even emulated bf16 (about 1 GFLOP/s) takes well under a second per multiply.
PROBE_SIZE = 256
#: Seconds spent timing each precision (after one warm-up multiply).
PROBE_BUDGET_S = 0.12


@dataclass(frozen=True)
class CpuInfo:
    """The CPU as the OS describes it; ``usable_cpus`` accounts for affinity and cgroup quotas."""

    model: str
    flags: tuple[str, ...]  # the VECTOR_FLAGS this CPU has
    logical_cpus: int
    usable_cpus: int
    machine: str = ""

    def has(self, flag: str) -> bool:
        return flag in self.flags

    @property
    def native_bf16(self) -> bool:
        """The CPU has bf16 instructions (AVX512-BF16 or AMX); the probe says if torch uses them."""
        return self.has("avx512_bf16") or self.has("amx_bf16")


@dataclass(frozen=True)
class MatmulSpeed:
    """Measured matmul throughput on the CPU in GFLOP/s, with the torch threads it ran on."""

    fp32_gflops: float
    bf16_gflops: float
    threads: int = 1
    size: int = PROBE_SIZE
    torch_version: str = ""
    cached: bool = False  # read from the cache file rather than measured in this process

    @property
    def bf16_ratio(self) -> float:
        """bf16 throughput as a fraction of fp32 (above 1: bf16 is faster)."""
        return self.bf16_gflops / self.fp32_gflops if self.fp32_gflops > 0 else 0.0


@dataclass(frozen=True)
class GpuInfo:
    """One CUDA (or ROCm) device as torch sees it."""

    index: int
    name: str
    total_memory_mb: float
    capability: tuple[int, int]
    bf16: bool  # bf16 matmuls run natively (compute capability 8.0+, or torch says so)

    @property
    def fp16(self) -> bool:
        """Tensor-core fp16 (Volta 7.0 and later: V100, T4): worth fp16 with loss scaling."""
        return self.capability >= (7, 0)


@dataclass(frozen=True)
class Probe:
    """Everything precision and thread choices read; build a fake one in tests."""

    cpu: CpuInfo
    matmul: MatmulSpeed | None = None  # None: not measured (yet)
    gpus: tuple[GpuInfo, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["cpu"]["native_bf16"] = self.cpu.native_bf16
        if self.matmul is not None:
            d["matmul"]["bf16_ratio"] = round(self.matmul.bf16_ratio, 4)
        for g, gpu in zip(d["gpus"], self.gpus, strict=True):
            g["fp16"] = gpu.fp16
        return d


def cpu_info(cpuinfo: str | Path = "/proc/cpuinfo") -> CpuInfo:
    """CPU model and vector flags from ``/proc/cpuinfo`` (platform names elsewhere)."""
    from staytuned.hardware.threads import usable_cpus

    model, flags = "", set[str]()
    try:
        text = Path(cpuinfo).read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not model:
            model = value.strip()
        elif key in ("flags", "Features") and not flags:
            flags = set(value.split())
    return CpuInfo(model=model or platform.processor() or platform.machine() or "unknown",
                   flags=tuple(f for f in VECTOR_FLAGS if f in flags),
                   logical_cpus=os.cpu_count() or 1, usable_cpus=usable_cpus().cpus,
                   machine=platform.machine())


def gpu_info() -> tuple[GpuInfo, ...]:
    """The GPUs torch can use (empty without CUDA/ROCm or without torch)."""
    try:
        import torch
    except ImportError:
        return ()
    if not torch.cuda.is_available():
        return ()
    gpus = []
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        capability = (int(props.major), int(props.minor))
        bf16 = capability >= (8, 0)
        if not bf16 and getattr(torch.version, "hip", None):  # ROCm reports its own capability numbers
            with torch.cuda.device(i):
                bf16 = bool(torch.cuda.is_bf16_supported())
        gpus.append(GpuInfo(index=i, name=str(props.name), total_memory_mb=props.total_memory / 2**20,
                            capability=capability, bf16=bf16))
    return tuple(gpus)


def measure_matmul(size: int = PROBE_SIZE, budget_s: float = PROBE_BUDGET_S, threads: int = 1) -> MatmulSpeed:
    """Time square fp32 and bf16 matmuls on the CPU on ``threads`` torch threads (best rate each).

    One thread by default: the bf16/fp32 ratio is a property of a core, and a multi-threaded
    measurement on cores that neighbours share mostly measures OpenMP barrier waits. The two
    precisions are timed in alternating rounds so that a neighbour's load hits both alike.
    """
    import torch

    flops = 2.0 * size**3
    gen = torch.Generator().manual_seed(0)
    dtypes = (torch.float32, torch.bfloat16)
    mats = {dt: (torch.randn(size, size, generator=gen).to(dt), torch.randn(size, size, generator=gen).to(dt))
            for dt in dtypes}
    best = dict.fromkeys(dtypes, 0.0)
    spent = dict.fromkeys(dtypes, 0.0)
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, threads))
    try:
        for a, b in mats.values():
            for _ in range(2):  # warm-up: kernel selection and first-touch allocation
                torch.matmul(a, b)
        rounds = 4
        for _ in range(rounds):
            for dt, (a, b) in mats.items():
                deadline = spent[dt] + budget_s / rounds
                reps = 0
                while spent[dt] < deadline or reps == 0:
                    t0 = time.perf_counter()
                    torch.matmul(a, b)
                    elapsed = time.perf_counter() - t0
                    spent[dt] += elapsed
                    reps += 1
                    best[dt] = max(best[dt], flops / max(elapsed, 1e-9) / 1e9)
    finally:
        torch.set_num_threads(before)
    return MatmulSpeed(fp32_gflops=round(best[torch.float32], 3), bf16_gflops=round(best[torch.bfloat16], 3),
                       threads=max(1, threads), size=size, torch_version=str(torch.__version__))


def _cache_path(cache_dir: str | Path | None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir) / CACHE_FILE
    from staytuned.models import cache_root

    return cache_root() / CACHE_FILE


def probe_key(cpu: CpuInfo, torch_version: str) -> str:
    """What the cached speed depends on: a different CPU, flags or torch measures again, and so
    does a restricted instruction set (ATEN_CPU_CAPABILITY, ONEDNN_MAX_CPU_ISA: the same CPU
    running AVX2 kernels is another machine for this purpose)."""
    isa = "|".join(f"{k}={os.environ[k]}" for k in _ISA_ENV if os.environ.get(k))
    return f"{cpu.model}|{','.join(cpu.flags)}|{cpu.machine}|torch {torch_version}" + (f"|{isa}" if isa else "")


#: Environment variables that restrict the kernels torch, oneDNN and MKL pick.
_ISA_ENV = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")


def cpu_matmul_speed(cpu: CpuInfo | None = None, *, cache_dir: str | Path | None = None,
                     refresh: bool = False) -> MatmulSpeed:
    """The CPU's bf16/fp32 matmul speed: from the cache file, else measured once and stored there."""
    import torch

    cpu = cpu if cpu is not None else cpu_info()
    path = _cache_path(cache_dir)
    key = probe_key(cpu, str(torch.__version__))
    entries: dict[str, Any] = {}
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
        entries = loaded if isinstance(loaded, dict) else {}
    except (OSError, ValueError):
        pass
    entry = entries.get(key)
    if not refresh and isinstance(entry, dict):
        try:
            return MatmulSpeed(**{**entry, "cached": True})
        except TypeError:
            pass  # written by another version: measure again
    speed = measure_matmul()
    entries[key] = {k: v for k, v in asdict(speed).items() if k != "cached"}
    _write_json(path, entries)
    return speed


def _write_json(path: Path, data: Any) -> None:
    """Write atomically (concurrent workers may probe at once); an unwritable cache is no error."""
    try:
        atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")
    except OSError:
        pass


def probe_machine(*, measure: bool = True, cache_dir: str | Path | None = None) -> Probe:
    """Describe this machine; ``measure=False`` skips the matmul speed (and torch, if absent)."""
    cpu = cpu_info()
    matmul = None
    if measure:
        try:
            matmul = cpu_matmul_speed(cpu, cache_dir=cache_dir)
        except ImportError:
            matmul = None
    return Probe(cpu=cpu, matmul=matmul, gpus=gpu_info())
