"""Trial functions for the distributed tests, imported by Ray workers through PYTHONPATH.

``pid_trial`` wraps a real trial function (``ST_TEST_BASE``: the synthetic trial or
``staytuned.finetune:run_trial``): it records which process ran each attempt (a file per
attempt holding the process's ``CUDA_VISIBLE_DEVICES``, and ``metrics["pid"]``) and, for the
victim config (``ST_TEST_VICTIM_LR``), writes its PID to ``victim.pid`` and waits to be killed
by the test (once: the re-run goes through).
``ST_TEST_MIN_PIDS`` holds trials until that many worker processes have started one.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from staytuned.search.objective import resolve_trial_fn


def pid_trial(**kwargs: Any) -> dict[str, Any]:
    folder = Path(os.environ["ST_TEST_PIDDIR"])
    config = kwargs["config"]
    lr = float(config["learning_rate"])
    tag = f"{lr:g}-{config.get('lr_scheduler')}"
    # The file holds the GPUs the worker was given (local executor, tests/search/executors).
    (folder / f"attempt_{tag}_{os.getpid()}_{time.monotonic_ns()}").write_text(
        os.environ.get("CUDA_VISIBLE_DEVICES", "<unset>"))
    # ST_TEST_MIN_PIDS=n: hold every trial until n worker processes have started one, so each
    # node surely runs trials, however late its worker process comes up (at most 120 s).
    deadline = time.monotonic() + 120
    while len({p.name.split("_")[2] for p in folder.glob("attempt_*")}) < int(
            os.environ.get("ST_TEST_MIN_PIDS", "0")) and time.monotonic() < deadline:
        time.sleep(0.05)
    victim = os.environ.get("ST_TEST_VICTIM_LR")
    if victim and lr == float(victim) and config.get("lr_scheduler") == os.environ.get(
            "ST_TEST_VICTIM_SCHED") and not (folder / "killed").exists():
        tmp = folder / f"victim.{os.getpid()}.tmp"
        tmp.write_text(str(os.getpid()))
        tmp.replace(folder / "victim.pid")
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:  # the test kills this process here
            time.sleep(0.05)
        raise RuntimeError("the victim trial was not killed")
    base = resolve_trial_fn(os.environ.get("ST_TEST_BASE",
                                           "staytuned.search.synthetic:synthetic_trial"))
    result = base(**kwargs)
    data = result.to_dict() if hasattr(result, "to_dict") else dict(result)
    data["metrics"] = {**(data.get("metrics") or {}), "pid": os.getpid()}
    return data
