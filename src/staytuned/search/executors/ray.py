"""The Ray executor: ``tune`` studies and ``grid`` runs on a Ray cluster.

Ray is the engine: it places the workers on the nodes, gives each the CPUs/GPUs of one trial
(fractions allowed) and starts a new one when a worker process or node dies. Optuna's shared
storage is the only state: every Ray task runs the very same worker loop as a local process
(:func:`staytuned.search.executors.base.worker_loop`),
which claims trials atomically from the storage and writes every result there. So

* results are the same as a local run: same configs, same trial function, same storage rows;
* a worker killed mid-trial loses nothing already stored: its trial stays RUNNING, stops
  beating (Optuna heartbeat), is failed after the grace period by whichever worker looks next
  and re-run with the same params (``RetryHeartbeatStaleTrialCallback``); a trial is only ever
  failed from RUNNING and claimed from WAITING, so a completed trial is never run again;
* pruners read the intermediate values of all workers from the storage, so pruning works
  across nodes.

The storage must be reachable from every node: PostgreSQL for a real cluster; SQLite only
when every Ray node runs on this machine.

``import ray`` happens only inside the functions here (it is heavy and optional).
"""

from __future__ import annotations

import dataclasses
import math
import os
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from staytuned.errors import DependencyError, InputError, StaytunedError, StorageError
from staytuned.search.executors.base import ExecutorReport, check_workers, total_of

if TYPE_CHECKING:  # only for annotations: importing search.study pulls in Optuna
    from typing_extensions import TypeIs

    from staytuned.hardware.gpus import Workers
    from staytuned.search.study import Counts, GridSpec, StudySpec

    AnySpec = StudySpec | GridSpec

LOCAL_OBJECT_STORE_BYTES = 200 * 1024**2  # trials exchange a few KB: keep Ray's shared memory small
MAX_WORKER_FAILURES_PER_SLOT = 3  # in a row, no trial finishing: stop instead of looping


@dataclass(frozen=True)
class Progress:
    """Trial counts over all studies of a run, passed to ``on_progress`` about once a second."""

    finished: int
    total: int
    complete: int
    pruned: int
    failed: int
    running: int
    waiting: int
    workers: int  # Ray worker tasks in flight


@dataclass(frozen=True)
class TaskReport:
    """What one Ray worker task sends back when it ends."""

    trials: int
    node: str  # "<ip>/<node id prefix>": several nodes may share one IP (containers, tests)
    hostname: str
    pid: int
    runtime_s: float


@dataclass
class RaySummary:
    """Outcome of :func:`run_study_on_ray`."""

    name: str  # study name (tune) or grid name
    studies: list[str]
    storage: str  # password hidden
    address: str  # the Ray cluster ("local" when started here)
    nodes: int
    cluster_cpus: float
    cluster_gpus: float
    cpus_per_trial: float
    gpus_per_trial: float
    workers: int  # worker tasks run in parallel (one trial at a time each)
    tasks: int  # worker tasks started, replacements included
    trials_run: int  # trials run by the tasks that ended normally
    trials_per_node: dict[str, int]
    retried: int  # trials re-run because the worker running them died (study total)
    worker_failures: list[str]  # worker tasks lost (after Ray's own retries), with the reason
    counts: dict[str, int]  # complete/pruned/failed/running/waiting over all studies
    total: int  # trials the run ends with (budget or grid size)
    wall_s: float

    @property
    def done(self) -> bool:
        return self.counts.get("finished", 0) >= self.total

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "done": self.done}

    def describe(self) -> str:
        """One line for a terminal: where the trials ran and what had to be recovered."""
        gpu = f", {self.gpus_per_trial:g} GPU" if self.gpus_per_trial else ""
        text = (f"ray {self.address}: {self.nodes} node(s), {self.workers} worker(s) x "
                f"{self.cpus_per_trial:g} CPU{gpu}; {self.trials_run} trials run in "
                f"{self.wall_s:.1f} s")
        if self.retried:
            text += f"; {self.retried} trial(s) re-run after their worker died"
        if self.worker_failures:
            text += f"; {len(self.worker_failures)} worker(s) lost ({self.worker_failures[-1]})"
        return text


# --------------------------------------------------------------------------------------------
# public entry points


@dataclass(frozen=True)
class RayExecutor:
    """The executor interface over :func:`run_study_on_ray` (see it for the parameters)."""

    address: str | None = None
    cpus_per_trial: float = 1.0
    gpus_per_trial: float | None = None  # None: 1 on a cluster with GPUs, else 0
    runtime_env: Mapping[str, Any] | None = None
    local_cpus: int | None = None
    name: str = "ray"

    def resolve(self, workers: Workers) -> int | None:
        """"auto" (and None): as many as the cluster holds, counted when it runs."""
        check_workers(workers)
        return None if workers == "auto" else workers

    def check(self, workers: Workers) -> None:
        self.resolve(workers)
        check_resources(self.cpus_per_trial, self.gpus_per_trial)

    def describe(self, workers: Workers) -> str:
        gpus = self.gpus_per_trial
        gpu = (" (+ 1 GPU where the cluster has GPUs)" if gpus is None
               else f" + {gpus:g} GPU" if gpus else "")
        return (f"{self.resolve(workers) or 'as many'} Ray worker(s) on "
                f"{self.address or 'a local Ray'}, {self.cpus_per_trial:g} CPU{gpu} per trial")

    def run(self, spec: AnySpec, *, workers: Workers = None,
            on_progress: Callable[[Progress], None] | None = None) -> ExecutorReport:
        self.check(workers)
        summary = run_study_on_ray(spec, address=self.address, n_workers=self.resolve(workers),
                                   cpus_per_trial=self.cpus_per_trial,
                                   gpus_per_trial=self.gpus_per_trial,
                                   runtime_env=self.runtime_env, local_cpus=self.local_cpus,
                                   on_progress=on_progress)
        return ExecutorReport(trials_run=summary.trials_run, total=summary.total,
                              details=summary.to_dict(), description=summary.describe())


def run_study_on_ray(
    spec: AnySpec,
    *,
    address: str | None = None,
    n_workers: int | None = None,
    cpus_per_trial: float = 1.0,
    gpus_per_trial: float | None = None,
    runtime_env: Mapping[str, Any] | None = None,
    local_cpus: int | None = None,
    max_task_retries: int = 3,
    log_to_driver: bool = False,
    on_progress: Callable[[Progress], None] | None = None,
    poll_s: float = 1.0,
) -> RaySummary:
    """Run a ``tune`` study (:class:`StudySpec`) or a ``grid`` (:class:`GridSpec`) on Ray.

    ``address``: ``None`` starts a local Ray on this machine (``local_cpus`` CPUs, default all)
    unless ``RAY_ADDRESS`` is set (inside a Ray Job);
    ``"auto"`` joins the cluster this machine belongs to (``ray start`` ran here); ``host:port``
    joins that head. When Ray is already initialized in this process, that connection is used
    and left open. ``n_workers``: trials in parallel (default: as many as the cluster's nodes
    fit with ``cpus_per_trial``/``gpus_per_trial``; ``gpus_per_trial`` None: 1 when the cluster
    has GPUs, else 0). Each worker is a Ray task holding those
    resources and running trials one after the other until the study is done; Ray restarts it
    up to ``max_task_retries`` times when its process or node dies. ``runtime_env`` goes to the
    worker tasks (e.g. ``{"env_vars": {...}}``, ``{"pip": [...]}``).
    """
    check_resources(cpus_per_trial, gpus_per_trial, n_workers)
    ray = _import_ray()
    spec = _absolute_storage(spec)
    start = time.perf_counter()
    started_here = False
    if address is None and os.environ.get("RAY_ADDRESS"):
        address = os.environ["RAY_ADDRESS"]  # inside a Ray Job (KubeRay RayJob, `ray job submit`)
    if not ray.is_initialized():
        _init_ray(ray, address, local_cpus=local_cpus, log_to_driver=log_to_driver)
        started_here = True
    try:
        cluster = _cluster_info(ray)
        _check_storage_reachable(spec.storage, cluster)
        gpus_per_trial = default_gpus(gpus_per_trial, cluster)
        check_resources(cpus_per_trial, gpus_per_trial)
        slots = _slots(cluster, cpus_per_trial, gpus_per_trial)
        workers = n_workers or slots
        studies = _prepare(spec)  # fail fast on a bad storage/space before any task starts
        run = _Run(ray, spec, studies, workers=workers, cpus=cpus_per_trial, gpus=gpus_per_trial,
                   runtime_env=runtime_env, max_task_retries=max_task_retries,
                   on_progress=on_progress, poll_s=poll_s)
        run.execute()
        counts = _sum_counts(studies)
        return RaySummary(
            name=spec.study_name if _is_tune(spec) else spec.name,
            studies=[s.study_name for s in studies],
            storage=_redact(spec.storage),
            address=_shown_address(address, started_here, cluster),
            nodes=len(cluster["nodes"]),
            cluster_cpus=cluster["cpus"],
            cluster_gpus=cluster["gpus"],
            cpus_per_trial=cpus_per_trial,
            gpus_per_trial=gpus_per_trial,
            workers=workers,
            tasks=run.tasks_started,
            trials_run=sum(r.trials for r in run.reports),
            trials_per_node=run.trials_per_node(),
            retried=_retried(studies),
            worker_failures=run.failures,
            counts=dataclasses.asdict(counts),
            total=total_of(spec),
            wall_s=round(time.perf_counter() - start, 3),
        )
    finally:
        if started_here:
            ray.shutdown()


# --------------------------------------------------------------------------------------------
# the worker (runs inside a Ray task)


def _worker_main(spec: AnySpec) -> TaskReport:
    """One worker: run trials of the study until it is done (the local worker loop, unchanged)."""
    from staytuned.search.executors.base import worker_loop

    start = time.perf_counter()
    ran = worker_loop(spec)
    return TaskReport(trials=ran, node=_node_name(), hostname=socket.gethostname(),
                      pid=os.getpid(), runtime_s=round(time.perf_counter() - start, 3))


def _node_name() -> str:
    import ray

    if not ray.is_initialized():  # called outside Ray (tests of the worker itself)
        return "local"
    return f"{ray.util.get_node_ip_address()}/{ray.get_runtime_context().get_node_id()[:8]}"


# --------------------------------------------------------------------------------------------
# driver side


class _Run:
    """Keeps ``workers`` worker tasks in flight until the storage says the run is done."""

    def __init__(self, ray: Any, spec: AnySpec, studies: list[Any], *, workers: int, cpus: float,
                 gpus: float, runtime_env: Mapping[str, Any] | None, max_task_retries: int,
                 on_progress: Callable[[Progress], None] | None, poll_s: float) -> None:
        self.ray, self.spec, self.studies = ray, spec, studies
        self.workers, self.poll_s, self.on_progress = workers, poll_s, on_progress
        options: dict[str, Any] = {"num_cpus": cpus, "num_gpus": gpus,
                                   "max_retries": max_task_retries, "retry_exceptions": False}
        if runtime_env:
            options["runtime_env"] = dict(runtime_env)
        self.remote = ray.remote(_worker_main).options(**options)
        self.total = total_of(spec)
        self.reports: list[TaskReport] = []
        self.failures: list[str] = []
        self.tasks_started = 0
        self._finished = _sum_counts(studies).finished
        self._failed_since_progress = 0

    def execute(self) -> None:
        ray = self.ray
        in_flight = [self._submit() for _ in range(self.workers)]
        try:
            while in_flight:
                ready, in_flight = ray.wait(in_flight, num_returns=1, timeout=self.poll_s)
                for ref in ready:
                    self._collect(ref)
                c = _sum_counts(self.studies)
                if c.finished > self._finished:
                    self._finished, self._failed_since_progress = c.finished, 0
                if ready and _work_left(self.spec, c, self.total):
                    # A worker ended while trials remain: it died (after Ray's own retries) or
                    # a dead worker's trial still waits for its heartbeat to go stale.
                    while len(in_flight) < self.workers:
                        in_flight.append(self._submit())
                if self.on_progress is not None:
                    self.on_progress(Progress(
                        finished=c.finished, total=self.total, complete=c.complete,
                        pruned=c.pruned, failed=c.failed, running=c.running, waiting=c.waiting,
                        workers=len(in_flight)))
        except BaseException:
            for ref in in_flight:  # interrupted or a fatal error: stop every worker now;
                ray.cancel(ref, force=True)  # their trials are re-run on resume (heartbeat)
            raise

    def _submit(self) -> Any:
        if self._failed_since_progress >= max(1, self.workers) * MAX_WORKER_FAILURES_PER_SLOT:
            raise StaytunedError(f"{self._failed_since_progress} Ray workers failed in a row "
                                 f"without a trial finishing; last: {self.failures[-1]}")
        from staytuned.search.executors.local import for_worker

        # Every task (replacements too) samples with its own seed, as local workers do:
        # identical seeds would hand every worker the same random (startup) configs.
        index = self.tasks_started
        self.tasks_started += 1
        return self.remote.remote(for_worker(self.spec, index))

    def _collect(self, ref: Any) -> None:
        from ray.exceptions import RayTaskError

        try:
            self.reports.append(self.ray.get(ref))
            return
        except RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, StaytunedError):
                raise cause from None  # bad input: every trial would fail the same way
            self.failures.append(_reason(cause or exc))
        except Exception as exc:  # worker/node died after Ray's own retries, object lost ...
            self.failures.append(_reason(exc))
        self._failed_since_progress += 1

    def trials_per_node(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.reports:
            out[r.node] = out.get(r.node, 0) + r.trials
        return out


def _shown_address(address: str | None, started_here: bool, cluster: Mapping[str, Any]) -> str:
    if address is None and started_here:
        return "local"
    if address in (None, "auto"):
        return str(cluster["address"])  # what Ray resolved
    return address


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".strip()


def _is_tune(spec: AnySpec) -> TypeIs[StudySpec]:
    return hasattr(spec, "study_name")


def _prepare(spec: AnySpec) -> list[Any]:
    """Create the studies (and enqueue grid points) once, from the driver; returns them."""
    from staytuned.search.study import prepare_study

    specs = [spec] if _is_tune(spec) else [spec.cell_spec(c) for c in spec.cells]
    return [prepare_study(s) for s in specs]


def _sum_counts(studies: list[Any]) -> Counts:
    from staytuned.search.study import Counts, counts

    total: dict[str, int] = {}
    for study in studies:
        for key, value in dataclasses.asdict(counts(study)).items():
            total[key] = total.get(key, 0) + value
    return Counts(**total)


def _work_left(spec: AnySpec, c: Counts, total: int) -> bool:
    if _is_tune(spec):
        return c.finished < total
    return c.running > 0 or c.waiting > 0


def _retried(studies: list[Any]) -> int:
    """Trials that are re-runs of a trial whose worker died (Optuna's retry callback marks them)."""
    return sum(1 for study in studies for t in study.get_trials(deepcopy=False)
               if "failed_trial" in t.system_attrs)


# --------------------------------------------------------------------------------------------
# Ray connection and checks


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise DependencyError("ray", "ray", "the Ray executor") from None
    return ray


def _init_ray(ray: Any, address: str | None, *, local_cpus: int | None,
              log_to_driver: bool) -> None:
    import logging

    common = {"log_to_driver": log_to_driver, "logging_level": logging.WARNING,
              "configure_logging": True}
    if address is None:
        # A throwaway local cluster: no dashboard, small object store (trials send a few KB),
        # and no warning about the token Ray makes for it (nobody else connects to it).
        ray.init(num_cpus=local_cpus, include_dashboard=False,
                 object_store_memory=LOCAL_OBJECT_STORE_BYTES,
                 **{**common, "logging_level": logging.ERROR})
        return
    _probe(address)
    try:
        ray.init(address=address, **common)
    except (ConnectionError, TimeoutError, RuntimeError) as exc:
        raise InputError(
            f"cannot connect to the Ray cluster: {_reason(exc)}", field="address",
            value=address, expected="'auto' on a node where `ray start` ran, or the head's "
            "host:port (and the cluster's token in RAY_AUTH_TOKEN / ~/.ray/auth_token when "
            "token authentication is on)") from None
    except Exception as exc:  # ray.exceptions.AuthenticationError and friends
        hint = None
        if "auth" in type(exc).__name__.lower() or "token" in str(exc).lower():
            hint = ("RAY_AUTH_MODE=token and the cluster's token in RAY_AUTH_TOKEN or "
                    "~/.ray/auth_token (Ray never sends a token to an explicit address otherwise)")
        raise InputError(f"cannot connect to the Ray cluster: {_reason(exc)}",
                         field="address", value=address, expected=hint) from None


def _probe(address: str, timeout_s: float = 10.0) -> None:
    """Fail fast on a head that is not listening: ``ray.init`` retries a closed port for ever."""
    if address == "auto":
        return
    host, _, port = address.split("://", 1)[-1].rpartition(":")
    if not host or not port.isdigit():
        raise InputError("not a Ray address", field="address", value=address,
                         expected="'auto', host:port (e.g. 10.0.0.5:6379) or ray://host:10001")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise InputError(f"no Ray head is listening there ({exc.strerror or exc})",
                         field="address", value=address,
                         expected="the host:port that `ray start --head` printed") from None


def _cluster_info(ray: Any) -> dict[str, Any]:
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    resources = ray.cluster_resources()
    try:
        address = ray.get_runtime_context().gcs_address
    except Exception:
        address = "?"
    return {
        "address": address,
        "nodes": [{"ip": n.get("NodeManagerAddress", "?"),
                   "cpus": float(n.get("Resources", {}).get("CPU", 0.0)),
                   "gpus": float(n.get("Resources", {}).get("GPU", 0.0))} for n in nodes],
        "cpus": float(resources.get("CPU", 0.0)),
        "gpus": float(resources.get("GPU", 0.0)),
        "driver_ip": ray.util.get_node_ip_address(),
    }


def default_gpus(gpus: float | None, cluster: Mapping[str, Any]) -> float:
    """GPUs per trial: as given, else 1 on a cluster with GPUs (one trial per GPU) and 0 without."""
    if gpus is not None:
        return gpus
    return 1.0 if cluster["gpus"] > 0 else 0.0


def check_resources(cpus: float, gpus: float | None, n_workers: int | None = None) -> None:
    """Per-trial resources Ray accepts (no Ray needed: the CLI calls it before anything starts);
    ``gpus`` None: chosen from the cluster later (:func:`default_gpus`)."""
    from staytuned.hardware.gpus import check_per_trial

    check_per_trial(cpus, "cpus_per_trial")
    if gpus is not None:
        check_per_trial(gpus, "gpus_per_trial")
    if cpus == 0 and not gpus:  # None (the cluster decides) may be 0: set it with no CPU
        raise InputError("a trial needs some CPU or GPU", field="cpus_per_trial", value=cpus,
                         expected="> 0 (or set gpus_per_trial)")
    check_workers(n_workers, "n_workers", auto=False)


def _slots(cluster: Mapping[str, Any], cpus: float, gpus: float) -> int:
    """Trials that fit on the cluster's nodes at once (each trial's resources on one node)."""
    eps = 1e-9  # Ray keeps resources in 1e-4 units: 3 x 0.333... must fit on 1
    total = 0
    for node in cluster["nodes"]:
        fit = [math.floor(node["cpus"] / cpus + eps)] if cpus > 0 else []
        if gpus > 0:
            fit.append(math.floor(node["gpus"] / gpus + eps))
        total += min(fit) if fit else 0
    if total == 0:
        biggest = max(cluster["nodes"], key=lambda n: (n["gpus"], n["cpus"]), default=None)
        have = f"{biggest['cpus']:g} CPUs and {biggest['gpus']:g} GPUs" if biggest else "no nodes"
        raise InputError(
            f"no Ray node can hold one trial (the largest has {have})",
            field="gpus_per_trial" if gpus > 0 else "cpus_per_trial",
            value=gpus if gpus > 0 else cpus,
            expected="per-trial resources that fit on one node (add worker nodes first)")
    return total


def _absolute_storage(spec: AnySpec) -> AnySpec:
    """Ray workers may run in another folder: turn a relative SQLite path into an absolute one."""
    from staytuned.search.storage import normalize_url, sqlite_path

    url = normalize_url(spec.storage)
    path = sqlite_path(url)
    if path is not None and not path.is_absolute():
        url = f"sqlite:///{Path(path).resolve()}"
    return spec if url == spec.storage else dataclasses.replace(spec, storage=url)


def _check_storage_reachable(url: str, cluster: Mapping[str, Any]) -> None:
    """SQLite is a file on this machine: refuse it when a Ray node is elsewhere."""
    if not url.startswith("sqlite"):
        return
    if url.rstrip("/") in ("sqlite:", "sqlite:///:memory:") or url.endswith(":memory:"):
        raise StorageError("an in-memory SQLite storage cannot be shared with Ray workers; "
                           "use a file (one machine) or postgresql://")
    ips = {n["ip"] for n in cluster["nodes"]}
    local = {cluster["driver_ip"], "127.0.0.1", "localhost"}
    elsewhere = sorted(ips - local)
    if elsewhere:
        raise StorageError(
            f"SQLite storage {url} is a file on this machine but Ray nodes run on "
            f"{', '.join(elsewhere)}; use a PostgreSQL storage (postgresql://user:pass@host/db) "
            "that every node can reach")


def _redact(url: str) -> str:
    from staytuned.search.storage import redact

    return redact(url)


__all__ = ["Progress", "RayExecutor", "RaySummary", "TaskReport", "check_resources",
           "run_study_on_ray"]
