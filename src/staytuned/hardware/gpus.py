"""Which GPUs each local worker process gets: one trial per GPU, or ``gpus_per_trial`` each.

A worker is told its GPUs through ``CUDA_VISIBLE_DEVICES`` in its environment before torch is
imported there, so inside a trial ``cuda:0`` is the worker's own GPU. The GPUs handed out are the
ones this process may use: the entries of its own ``CUDA_VISIBLE_DEVICES`` when it has one
(indices, UUIDs or MIG ids, passed on as they are), else ``0 .. n-1``.

:func:`assign_gpus` is the whole rule, pure (tests fake the device list):

* ``gpus_per_trial`` G >= 1 (whole GPUs): worker i gets G GPUs of its own; N workers x G GPUs
  more than the GPUs visible is an error unless ``share`` (then the GPUs go round-robin);
* 0 < G < 1: ``floor(1/G)`` workers per GPU (0.5: two), round-robin over the GPUs;
* G = 0: no GPU (``CUDA_VISIBLE_DEVICES=""``: the trials run on the CPU);
* ``None`` (default): 1 where there are GPUs; on a machine without any, nothing is set, so a
  CPU-only machine runs exactly as before.

``workers="auto"``: as many workers as the GPUs hold (GPUs // G), 1 on a machine without GPUs.

Light module: torch is imported only by :func:`gpu_count`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Literal

from staytuned.errors import InputError

GPU_ENV = "CUDA_VISIBLE_DEVICES"
Workers = int | Literal["auto"] | None


def gpu_count() -> int:
    """GPUs torch sees (0 without torch or CUDA). Honours ``CUDA_VISIBLE_DEVICES`` and, when NVML
    answers, does not initialise CUDA in this process (torch.cuda.device_count)."""
    try:
        import torch
    except ImportError:
        return 0
    try:
        return int(torch.cuda.device_count())
    except Exception:  # a broken driver counts as no GPU: the trials then say why
        return 0


def visible_gpus(env: Mapping[str, str] | None = None, count: int | None = None) -> tuple[str, ...]:
    """The GPUs this process may hand to its workers, as ``CUDA_VISIBLE_DEVICES`` entries.

    ``count``: GPUs torch sees (default :func:`gpu_count`); ``env``: default ``os.environ``. A
    parent ``CUDA_VISIBLE_DEVICES=2,3`` gives ``("2", "3")``: a worker gets ``2`` or ``3``.
    """
    env = os.environ if env is None else env
    count = gpu_count() if count is None else count
    raw = env.get(GPU_ENV)
    if raw is None:
        return tuple(str(i) for i in range(count))
    ids = [part.strip() for part in raw.split(",") if part.strip()]
    return tuple(ids[:count])  # torch stops at the first entry that names no device


def check_per_trial(value: object, name: str) -> None:
    """A per-trial resource (CPUs or GPUs): a finite number >= 0, a fraction only below 1."""
    if (isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value)
            or value < 0):
        raise InputError("must be a number >= 0", field=name, value=value)
    if value > 1 and value != int(value):
        # Ray's rule, kept locally: fractions only below one unit (0.25 GPU yes, 1.5 GPU no).
        raise InputError("a fraction is only allowed below 1", field=name, value=value,
                         expected="e.g. 0.25, 0.5, 1, 2")


def _per_gpu(gpus_per_trial: float) -> int:
    """Trials one GPU holds when each takes a fraction of it (0.5 -> 2; 1e-4 rounding forgiven)."""
    return math.floor(1 / gpus_per_trial + 1e-9)


def auto_workers(n_gpus: int, gpus_per_trial: float | None = None) -> int:
    """``workers="auto"``: as many as the GPUs hold (GPUs // G); 1 without GPUs or with G = 0."""
    if gpus_per_trial is not None:
        check_per_trial(gpus_per_trial, "gpus_per_trial")
    g = 1.0 if gpus_per_trial is None else float(gpus_per_trial)
    if n_gpus <= 0 or g == 0:
        return 1
    if g < 1:
        return n_gpus * _per_gpu(g)
    return max(1, n_gpus // int(g))


def assign_gpus(workers: int, gpu_ids: Sequence[str], gpus_per_trial: float | None = None,
                share: bool = False) -> list[str | None]:
    """Each worker's ``CUDA_VISIBLE_DEVICES`` (``None``: leave the environment as it is).

    ``gpu_ids``: the GPUs to hand out (:func:`visible_gpus`); ``share``: allow more workers than
    the GPUs hold (round-robin). Errors name ``workers``, ``gpus_per_trial`` or ``share_gpus``.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise InputError("must be a positive integer", field="workers", value=workers)
    if gpus_per_trial is not None:
        check_per_trial(gpus_per_trial, "gpus_per_trial")
    ids, n = list(gpu_ids), len(gpu_ids)
    if n == 0:
        if gpus_per_trial:
            raise InputError("this machine has no GPU (none visible to torch)",
                             field="gpus_per_trial", value=gpus_per_trial,
                             expected="0 or unset on a machine without GPUs")
        return [None] * workers  # CPU-only: exactly as without GPU assignment
    g = 1.0 if gpus_per_trial is None else float(gpus_per_trial)
    if g == 0:
        return [""] * workers  # the trials hold no GPU: hide them
    if g < 1:
        if workers > n * _per_gpu(g) and not share:
            raise _oversubscribed(workers, ids, g, n * _per_gpu(g))
        return [ids[i % n] for i in range(workers)]
    per = int(g)
    if per > n:
        raise InputError(f"more GPUs per trial than the {n} visible ({','.join(ids)})",
                         field="gpus_per_trial", value=gpus_per_trial, expected=f"at most {n}")
    if workers * per > n and not share:
        raise _oversubscribed(workers, ids, g, n // per)
    return [",".join(ids[(i * per + j) % n] for j in range(per)) for i in range(workers)]


def _oversubscribed(workers: int, ids: list[str], g: float, fit: int) -> InputError:
    return InputError(
        f"{workers} workers x {g:g} GPU(s) each is more than the {len(ids)} GPU(s) visible "
        f"({','.join(ids)})", field="workers", value=workers,
        expected=f"at most {fit} workers (or `workers` auto), fewer `gpus_per_trial`, or "
        "`share_gpus` to put several trials on one GPU")


def describe_gpus(devices: Sequence[str | None]) -> str:
    """``2 workers, GPU 0 and GPU 1``; ``3 worker(s)`` when no GPU was assigned (CPU-only)."""
    n = len(devices)
    if all(d is None for d in devices):
        return f"{n} worker(s)"
    head = f"{n} worker{'s' if n > 1 else ''}"
    if not any(devices):
        return f"{head}, no GPU"
    labels = [f"GPU{'s' if ',' in d else ''} {d}" if d else "no GPU" for d in devices]
    listed = labels[0] if n == 1 else ", ".join(labels[:-1]) + " and " + labels[-1]
    return f"{head}, {listed}" + (" (shared)" if len(set(devices)) < n else "")


__all__ = ["GPU_ENV", "Workers", "assign_gpus", "auto_workers", "check_per_trial",
           "describe_gpus", "gpu_count", "visible_gpus"]
