"""Optuna storages: SQLite in the run folder by default, PostgreSQL to share between machines.

Heartbeats are always on for RDB storages: a trial left RUNNING by a killed process is marked
failed after ``grace_period`` seconds by the next worker that starts a trial, and
:class:`optuna.storages.RetryHeartbeatStaleTrialCallback` enqueues it again with the same params.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import re
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from staytuned.errors import DependencyError, StorageError


@dataclass(frozen=True)
class HeartbeatSettings:
    """How often running trials prove they are alive, and when a silent one counts as dead."""

    interval: int = 10
    grace_period: int = 30
    max_retry: int = 2


def default_storage_url(study_name: str, runs_dir: str | Path = "runs") -> str:
    """``sqlite:///runs/<study>/study.db`` (relative to the current folder).

    The folder is the study's name (``tune-sst2-...-cbs+tpe``) with only the characters that a
    file system or a SQLite URL cannot hold replaced by ``_``. A study stored by an older
    version, which also replaced ``+`` and every other non-word character, stays where it is.
    """
    folder = Path(runs_dir) / folder_name(study_name)
    legacy = Path(runs_dir) / _legacy_folder_name(study_name)
    if legacy != folder and not (folder / "study.db").exists() and (legacy / "study.db").exists():
        folder = legacy
    return f"sqlite:///{folder / 'study.db'}"


# Path separators, what Windows forbids, what a URL reads as syntax (% escapes, ? query,
# # fragment), control characters and whitespace (a URL with a space is cut when copied).
_UNSAFE = re.compile(r'[\x00-\x1f\s/\\:*?"<>|%#]')


def folder_name(study_name: str) -> str:
    """The folder of a study's default storage: its name, filesystem-unsafe characters -> _."""
    name = _UNSAFE.sub("_", study_name)
    return name if name.strip(".") else "study"


def _legacy_folder_name(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name) or "study"


def normalize_url(url: str) -> str:
    """Accept a bare ``.db`` path as a SQLite URL; pick the installed PostgreSQL driver."""
    if "://" not in url:
        return f"sqlite:///{url}"
    scheme, rest = url.split("://", 1)
    if scheme in ("postgres", "postgresql"):
        # SQLAlchemy 2.1 defaults to psycopg 3; the postgres extra installs psycopg2-binary.
        import importlib.util

        has3 = importlib.util.find_spec("psycopg") is not None
        has2 = importlib.util.find_spec("psycopg2") is not None
        return f"postgresql+psycopg2://{rest}" if has2 and not has3 else f"postgresql://{rest}"
    return url


def sqlite_path(url: str) -> Path | None:
    """The file of a ``sqlite:///`` URL (None for other backends or in-memory SQLite)."""
    if not url.startswith("sqlite:///"):
        return None
    rest = url[len("sqlite:///"):]
    return None if rest in ("", ":memory:") else Path(rest)


def open_storage(url: str, heartbeat: HeartbeatSettings | None = None) -> Any:
    """Open (and create) an Optuna RDB storage; a clear :class:`StorageError` if unreachable."""
    import optuna
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    url = normalize_url(url)
    hb = heartbeat or HeartbeatSettings()
    engine_kwargs: dict[str, Any] = {}
    path = sqlite_path(url)
    if url.startswith("sqlite"):
        if path is not None:
            _sqlite_folder(url, path)
            engine_kwargs["creator"] = _sqlite_creator(path)
        else:
            engine_kwargs["connect_args"] = {"timeout": 120}
    elif url.startswith(("postgresql", "postgres")):
        import importlib.util

        if not any(importlib.util.find_spec(m) for m in ("psycopg2", "psycopg")):
            raise DependencyError("psycopg2-binary", "postgres", "A PostgreSQL storage")
        engine_kwargs.update(pool_pre_ping=True, connect_args={"connect_timeout": 10})
    elif url.startswith("mysql"):
        engine_kwargs["pool_pre_ping"] = True
    try:
        # Two processes creating the tables of a new storage at once would collide.
        with enqueue_lock(url, "staytuned:create-tables"), warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            storage = RDBStorage(
                url,
                engine_kwargs=engine_kwargs,
                heartbeat_interval=hb.interval,
                grace_period=hb.grace_period,
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(
                    max_retry=hb.max_retry),
            )
        if path is not None:
            _serialize_sqlite(storage.engine)
        return storage
    except Exception as exc:  # sqlalchemy errors: connection refused, bad URL, bad driver ...
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StorageError(f"cannot open storage {redact(url)}: {first}") from None


def _sqlite_folder(url: str, path: Path) -> None:
    """The folder of a SQLite file, created; a :class:`StorageError` naming the URL and the
    path in the way when it cannot be (a file where a folder should be, /proc, no permission)."""
    if path.is_dir():
        raise StorageError(f"cannot open storage {redact(url)}: {path} is a folder; "
                           "expected a database file path such as runs/study.db")
    folder = path.parent
    ancestor = folder.absolute()
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise StorageError(f"cannot open storage {redact(url)}: {ancestor} is a file, "
                           "not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(f"cannot open storage {redact(url)}: cannot create the folder "
                           f"{folder} ({exc.strerror or exc})") from None


def _sqlite_creator(path: Path) -> Any:
    """Connections in WAL mode: readers never block the writer (live display, other workers),
    and synchronous=NORMAL commits without an fsync each (a trial writes ~20 attributes). WAL
    with NORMAL stays consistent after a killed process; only an OS crash may lose the last
    commits. ``timeout``: several workers write to one file, so wait for the lock."""
    import sqlite3

    def connect() -> sqlite3.Connection:
        # isolation_level=None: the driver opens no transactions itself; _serialize_sqlite does.
        conn = sqlite3.connect(str(path), timeout=120, check_same_thread=False,
                               isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    return connect


def _serialize_sqlite(engine: Any) -> None:
    """Every transaction takes the write lock up front (BEGIN IMMEDIATE).

    Python's sqlite3 starts a transaction only at the first write, so a read-then-write such as
    "claim a WAITING trial" (Optuna's check then update) could succeed in two processes at once
    and run one grid point twice. Trials are long, so serializing storage access costs nothing.
    """
    import sqlalchemy

    def begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    sqlalchemy.event.listen(engine, "begin", begin)


def redact(url: str) -> str:
    """Hide a password in a URL before it goes into a message."""
    if "://" in url and "@" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}" if ":" in creds else url
    return url


@contextlib.contextmanager
def enqueue_lock(url: str, key: str) -> Iterator[None]:
    """Serialize "enqueue the grid points of a study" across processes (and machines).

    Optuna's ``enqueue_trial(skip_if_exists=True)`` is check-then-insert; two workers starting
    together could both insert. SQLite: a file lock beside the database (one machine by nature).
    PostgreSQL: a session advisory lock, so workers on several machines agree too.
    """
    url = normalize_url(url)
    path = sqlite_path(url)
    if path is not None:
        lock_file = path.with_name(path.name + ".lock")
        lock_file.parent.mkdir(parents=True, exist_ok=True)
        with open(lock_file, "a+") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
        return
    if url.startswith(("postgresql", "postgres")):
        import sqlalchemy

        lock_id = int.from_bytes(hashlib.sha1(key.encode()).digest()[:8], "big", signed=True)
        engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
        try:
            with engine.connect() as conn:
                conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": lock_id})
                try:
                    yield
                finally:
                    conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": lock_id})
        finally:
            engine.dispose()
        return
    yield  # other backends: best effort (skip_if_exists still removes most duplicates)


def study_names(url: str) -> list[str]:
    """Names of the studies in a storage (for ``results export``)."""
    import optuna

    storage = open_storage(url)
    return [s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)]


def package_versions() -> dict[str, str]:
    """Versions of the packages that decide a trial's result (stored with every trial)."""
    from importlib import metadata

    out = {}
    for pkg in ("staytuned", "torch", "transformers", "peft", "optuna", "numpy"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            continue
    out["python"] = ".".join(map(str, sys.version_info[:3]))
    return out
