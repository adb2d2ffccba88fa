"""Real Ray clusters (and a real PostgreSQL) for the distributed tests, started and stopped here.

* ``ray_local``: ``ray.init(num_cpus=2)`` in this process, as ``run_study_on_ray(address=None)``
  would do, kept for the module.
* ``ray_cluster``: a ``ray start --head`` process plus one ``ray start --address`` worker node
  (separate processes on this machine, one CPU each). Teardown sends SIGTERM to the ``ray start
  --block`` processes we started (they stop their Ray daemons), then SIGKILLs whatever of their
  process trees is left: only processes these fixtures started are touched.
* ``postgres_url``: a throwaway PostgreSQL server (Debian ``postgresql``), skipped when absent.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
# The test modules import st_ray_helpers; Ray workers import st_ray_trials (via PYTHONPATH).
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from st_ray_helpers import free_port, worker_env  # noqa: E402

VENV_BIN = Path(sys.executable).parent
OBJECT_STORE = str(100 * 1024**2)  # bytes; Ray's minimum is 75 MB


def ray_bin() -> str:
    exe = VENV_BIN / "ray"
    found = str(exe) if exe.exists() else shutil.which("ray")
    if not found:
        pytest.skip("the `ray` command is not installed")
    return found


# Ray 2.5x+ turns token authentication on by default for `ray start --head`: worker nodes and
# drivers must then use it too, with the same token (~/.ray/auth_token, see ray_cluster).
# Ray reads RAY_AUTH_MODE when it is first imported, so set it before any test imports ray.
os.environ.setdefault("RAY_AUTH_MODE", "token")


def _ensure_ray_token() -> None:
    """The default token file, created once when missing (never overwritten)."""
    token = Path.home() / ".ray" / "auth_token"
    if not token.exists() and "RAY_AUTH_TOKEN" not in os.environ:
        token.parent.mkdir(parents=True, exist_ok=True)
        token.write_text(os.urandom(32).hex())
        token.chmod(0o600)


@pytest.fixture(scope="module")
def ray_local() -> Iterator[object]:
    import ray

    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=int(OBJECT_STORE),
             log_to_driver=False, configure_logging=False)
    try:
        yield ray
    finally:
        ray.shutdown()


# --------------------------------------------------------------------------------------------
# a multi-process cluster started with `ray start`


@dataclass
class ProcessCluster:
    address: str
    temp_dir: Path
    logs: Path
    procs: list[subprocess.Popen] = field(default_factory=list)

    def add_node(self, *, head: bool, cpus: int = 1, port: int | None = None) -> None:
        name = "head" if head else f"worker{len(self.procs)}"
        log = open(self.logs / f"{name}.log", "w")  # noqa: SIM115 - closed with the process
        cmd = [ray_bin(), "start", "--block", "--num-cpus", str(cpus), "--node-ip-address",
               "127.0.0.1", "--disable-usage-stats", "--object-store-memory", OBJECT_STORE]
        if head:
            cmd += ["--head", "--port", str(port), "--include-dashboard", "false",
                    "--temp-dir", str(self.temp_dir)]
        else:
            cmd += ["--address", self.address]
        env = {**os.environ, **worker_env()}
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
        self.procs.append(proc)
        deadline = time.monotonic() + 180
        path = self.logs / f"{name}.log"
        while "Ray runtime started" not in path.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = path.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"`ray start` failed:\n{tail}")
            time.sleep(0.2)

    def wait_for_nodes(self, n: int) -> None:
        import ray

        deadline = time.monotonic() + 120
        while len([x for x in ray.nodes() if x.get("Alive")]) < n:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {len(ray.nodes())} of {n} Ray nodes came up")
            time.sleep(0.5)

    def stop(self) -> None:
        import psutil

        tree: list[psutil.Process] = []
        for proc in self.procs:
            try:
                p = psutil.Process(proc.pid)
                tree += [p, *p.children(recursive=True)]
            except psutil.NoSuchProcess:
                continue
        for proc in reversed(self.procs):  # workers first, then the head
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        _, alive = psutil.wait_procs(tree, timeout=20)
        for p in alive:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(alive, timeout=10)
        for proc in self.procs:
            proc.wait(timeout=10)


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[ProcessCluster]:
    """Head (1 CPU) + one worker node (1 CPU), each from its own `ray start` process."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
    _ensure_ray_token()
    # Short path: Ray's unix sockets live under the temp dir (108-byte limit).
    temp_dir = Path(tempfile.mkdtemp(prefix="st-ray-", dir="/tmp"))
    port = free_port()
    cluster = ProcessCluster(address=f"127.0.0.1:{port}", temp_dir=temp_dir, logs=temp_dir)
    try:
        cluster.add_node(head=True, port=port)
        cluster.add_node(head=False)
        ray.init(address=cluster.address, log_to_driver=False, configure_logging=False)
        cluster.wait_for_nodes(2)
        ray.shutdown()  # the code under test connects by itself, through `address=`
        yield cluster
    finally:
        if ray.is_initialized():
            ray.shutdown()
        cluster.stop()
        shutil.rmtree(temp_dir, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# PostgreSQL


def _pg_bin() -> Path | None:
    for root in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (root / "initdb").exists():
            return root
    found = shutil.which("initdb")
    return Path(found).parent if found else None


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """``postgresql://`` URL of a fresh server in a temp folder (trust auth, 127.0.0.1)."""
    bindir = _pg_bin()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries (initdb) not installed")
    pytest.importorskip("psycopg2")
    data = Path(tempfile.mkdtemp(prefix="st-pg-", dir="/tmp"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # postgres refuses to run as root
        if shutil.which("runuser") is None:
            pytest.skip("running as root without runuser: cannot start PostgreSQL")
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(data, "postgres", "postgres")
    port = free_port()
    pgdata = data / "db"
    subprocess.run([*as_user, str(bindir / "initdb"), "-D", str(pgdata), "-U", "staytuned",
                    "--auth=trust", "-E", "UTF8"], check=True, capture_output=True)
    log = data / "pg.log"
    subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(pgdata), "-l", str(log), "-w",
                    "-o", f"-p {port} -k {data} -c listen_addresses=127.0.0.1 -c fsync=off",
                    "start"], check=True, capture_output=True)
    try:
        subprocess.run([*as_user, str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port),
                        "-U", "staytuned", "staytuned"], check=True, capture_output=True)
        # A bare postgresql:// as users write it (staytuned picks the installed psycopg2 driver).
        yield f"postgresql://staytuned@127.0.0.1:{port}/staytuned"
    finally:
        subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(pgdata), "-m", "immediate",
                        "-w", "stop"], capture_output=True)
        shutil.rmtree(data, ignore_errors=True)
