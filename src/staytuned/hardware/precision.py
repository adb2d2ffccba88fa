"""The one decision of how a trial computes: fp32, bf16 autocast, or fp16 autocast with loss scaling.

``precision`` is an execution setting (auto, fp32, bf16, fp16). ``auto`` is measured, not assumed:

- CPU: bf16 only where the probe measured bf16 matmuls at least :data:`FAST_BF16_RATIO` x as fast
  as fp32 (CPUs without AVX512-BF16/AMX emulate bf16 tens of times slower), else fp32.
- CUDA: bf16 where the GPU has it (Ampere and later), else fp16 with loss scaling where it has
  fp16 tensor cores (T4/V100 class), else fp32.

An explicit ``bf16`` where it is slow still runs, with a warning that carries the measured
slowdown. Training keeps fp32 master weights under autocast; only a CUDA bf16 choice loads the
base weights in bf16 (``load_dtype``), as before.

Light at import: torch is imported inside the functions.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from staytuned.errors import InputError
from staytuned.hparams.schema import PRECISIONS

if TYPE_CHECKING:
    from staytuned.hardware.probe import Probe

#: bf16 counts as fast on a CPU when its measured matmul throughput is at least this share of fp32.
FAST_BF16_RATIO = 0.9


class SlowPrecisionWarning(UserWarning):
    """An explicitly requested precision runs much slower than fp32 on this hardware."""


@dataclass(frozen=True)
class PrecisionChoice:
    """How a trial computes on one device, and why.

    ``dtype``: compute dtype name ("fp32", "bf16", "fp16"); ``autocast``: run forward passes under
    ``torch.autocast`` with that dtype; ``grad_scaler``: scale the loss (fp16 on GPUs);
    ``load_dtype``: the dtype base weights are loaded in when the caller has no preference;
    ``slowdown``: fp32 throughput / ``dtype`` throughput where measured (e.g. 27.5), else None.
    """

    requested: str
    device: str
    dtype: str
    autocast: bool
    grad_scaler: bool
    reason: str
    load_dtype: str = "fp32"
    slowdown: float | None = None

    def torch_dtype(self) -> Any:
        import torch

        return _TORCH_NAMES[self.dtype](torch)

    def torch_load_dtype(self) -> Any:
        import torch

        return _TORCH_NAMES[self.load_dtype](torch)

    def to_dict(self) -> dict[str, Any]:
        return {"requested": self.requested, "device": self.device, "dtype": self.dtype,
                "autocast": self.autocast, "grad_scaler": self.grad_scaler, "load_dtype": self.load_dtype,
                "slowdown": self.slowdown, "reason": self.reason}


_TORCH_NAMES = {"fp32": lambda t: t.float32, "bf16": lambda t: t.bfloat16, "fp16": lambda t: t.float16}


def check_precision(requested: Any) -> str:
    """``requested`` as one of :data:`PRECISIONS` (None = auto); InputError otherwise."""
    name = "auto" if requested is None else str(requested).strip().lower()
    name = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}.get(name, name)
    if name not in PRECISIONS:
        raise InputError("unknown precision", field="precision", value=requested,
                         expected=", ".join(PRECISIONS))
    return name


def _fixed(requested: str, device: str, dtype: str, reason: str, **kw: Any) -> PrecisionChoice:
    return PrecisionChoice(requested=requested, device=device, dtype=dtype, autocast=dtype != "fp32",
                           grad_scaler=False, reason=reason, **kw)


def choose_precision(requested: Any = "auto", device: Any = "cpu", probe: Probe | None = None,
                     *, warn: bool = True) -> PrecisionChoice:
    """Decide the precision of a run on ``device`` ("cpu", "cuda", "cuda:1", a torch.device).

    ``probe`` describes the hardware (default: this machine's, the CPU speed from the cache,
    measured on first use). With ``warn`` an explicit precision that is slow here issues a
    :class:`SlowPrecisionWarning`.
    """
    name = check_precision(requested)
    dev = str(device) if device is not None else "cpu"
    if dev.startswith("cuda"):
        return _choose_cuda(name, dev, probe)
    if dev not in ("cpu",) and not dev.startswith("cpu"):
        # mps, xpu ...: no measurements; keep the request, and auto stays fp32.
        dtype = "fp32" if name == "auto" else name
        return _fixed(name, dev, dtype, f"{dtype} on {dev} (not measured)")
    return _choose_cpu(name, dev, probe, warn)


def load_dtype(requested: Any = "auto", device: Any = "cpu") -> str:
    """The dtype base weights load in for a run of ``requested`` precision on ``device``.

    Off CUDA it is always fp32 (bf16 runs under autocast over fp32 weights), so nothing is measured.
    """
    if device is None or not str(device).startswith("cuda"):
        check_precision(requested)
        return "fp32"
    return choose_precision(requested, device, warn=False).load_dtype


def _cpu_speed(probe: Probe | None) -> Any:
    if probe is not None and probe.matmul is not None:
        return probe.matmul
    from staytuned.hardware import probe as probe_mod  # the module: tests patch it

    return probe_mod.cpu_matmul_speed(probe.cpu if probe is not None else None)


def _choose_cpu(name: str, dev: str, probe: Probe | None, warn: bool) -> PrecisionChoice:
    if name == "fp32":
        return _fixed(name, dev, "fp32", "fp32 as requested")
    if name == "fp16":
        # CPU fp16 autocast runs, but no CPU this project targets has fast fp16 matmuls.
        return _fixed(name, dev, "fp16", "fp16 as requested (no loss scaling on CPU)")
    speed = _cpu_speed(probe)
    ratio = speed.bf16_ratio
    figures = f"{speed.bf16_gflops:.3g} vs {speed.fp32_gflops:.3g} GFLOP/s"
    if ratio >= FAST_BF16_RATIO:
        what = "as requested" if name == "bf16" else "auto"
        return _fixed(name, dev, "bf16", f"bf16 ({what}): bf16 matmul runs {ratio:.3g}x as fast as fp32 "
                                         f"on this CPU ({figures})")
    slow = f"bf16 matmul runs {_times(ratio)} slower than fp32 on this CPU ({figures})"
    if name == "auto":
        return _fixed(name, dev, "fp32", f"fp32 (auto): {slow}")
    message = f"{slow}; use precision=auto"
    if warn:
        warnings.warn(message, SlowPrecisionWarning, stacklevel=3)
    return _fixed(name, dev, "bf16", f"bf16 as requested, but {message}",
                  slowdown=round(1.0 / ratio, 1) if ratio > 0 else None)


def _times(ratio: float) -> str:
    return f"{1.0 / ratio:.2g}x" if ratio > 0 else "immeasurably"


def _gpu_for(dev: str, probe: Probe | None) -> Any:
    index = 0
    if ":" in dev:
        try:
            index = int(dev.split(":", 1)[1])
        except ValueError:
            raise InputError("unknown device", field="device", value=dev,
                             expected="cpu, cuda or cuda:<index>") from None
    elif probe is None:
        import torch

        index = torch.cuda.current_device() if torch.cuda.is_available() else 0
    if probe is None:
        from staytuned.hardware.probe import gpu_info

        gpus = gpu_info()
    else:
        gpus = probe.gpus
    return next((g for g in gpus if g.index == index), None)


def _choose_cuda(name: str, dev: str, probe: Probe | None) -> PrecisionChoice:
    gpu = _gpu_for(dev, probe)
    if name == "fp32":
        return _fixed(name, dev, "fp32", "fp32 as requested")
    if name == "bf16" or (name == "auto" and gpu is not None and gpu.bf16):
        what = "as requested" if name == "bf16" else f"{gpu.name} supports it"
        return _fixed(name, dev, "bf16", f"bf16 ({what})", load_dtype="bf16")
    if name == "fp16" or (name == "auto" and gpu is not None and gpu.fp16):
        what = "as requested" if name == "fp16" else f"{gpu.name} has fp16 tensor cores but no bf16"
        # fp32 master weights: GradScaler cannot unscale fp16 gradients.
        return PrecisionChoice(requested=name, device=dev, dtype="fp16", autocast=True, grad_scaler=True,
                               reason=f"fp16 with loss scaling ({what})", load_dtype="fp32")
    what = f"{gpu.name} (compute capability {gpu.capability[0]}.{gpu.capability[1]}) has neither " \
           "bf16 nor fp16 tensor cores" if gpu is not None else "no description of this GPU"
    return _fixed(name, dev, "fp32", f"fp32: {what}")
