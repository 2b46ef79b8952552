"""Where the distribution handlers record what happened: one SQLite file (stdlib sqlite3).

The path comes from ``DISTRIBUTION_DB``; without it, ``results.sqlite3`` under
``DISTRIBUTION_DATA_DIR`` (default ``./.data/distribution``). Every attempt of every job
writes one row, keyed by (job id, attempt): a job that runs twice after a worker crash
(at-least-once delivery) overwrites its row instead of adding a duplicate.

Each call opens its own short-lived connection, so handlers running in the worker's thread
pool never share one; WAL mode lets the demo read while the worker writes. The file is set
up (WAL, schema) once per process under a lock, so the first jobs of a fresh worker cannot
race each other into ``database is locked``: switching the journal mode needs the file to
itself, and two threads that both hold a read lock and both want that are a deadlock SQLite
refuses at once, without waiting out the busy timeout. Another process setting up the same
file at that moment (the demo reading while the worker writes) is waited for.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

__all__ = ["ResultRow", "ResultsDB", "default_db_path"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS job_results (
    job_id        TEXT    NOT NULL,
    attempt       INTEGER NOT NULL,
    job_name      TEXT    NOT NULL,
    queue         TEXT    NOT NULL,
    status        TEXT    NOT NULL CHECK (status IN ('ok', 'error')),
    schedule_id   TEXT,
    post_id       TEXT,
    target_id     TEXT,
    connection_id TEXT,
    platform      TEXT,
    external_id   TEXT,
    detail        TEXT,
    recorded_at   TEXT    NOT NULL,
    started_at    TEXT,
    PRIMARY KEY (job_id, attempt)
);
CREATE INDEX IF NOT EXISTS job_results_post ON job_results (post_id);
"""

#: Seconds a connection waits for another one's lock (SQLite's busy timeout), and how long
#: the one-time setup keeps retrying when another process sets up the same file.
BUSY_TIMEOUT_S = 30.0

# One setup at a time in this process; files already set up (by resolved path).
_SETUP_LOCK = threading.Lock()
_SET_UP: set[Path] = set()

_COLUMNS = (
    "job_id",
    "attempt",
    "job_name",
    "queue",
    "status",
    "schedule_id",
    "post_id",
    "target_id",
    "connection_id",
    "platform",
    "external_id",
    "detail",
    "recorded_at",
    "started_at",
)


def default_db_path(env: Mapping[str, str] | None = None) -> Path:
    """``DISTRIBUTION_DB``, else ``$DISTRIBUTION_DATA_DIR/results.sqlite3`` (default
    ``./.data/distribution``)."""
    env = os.environ if env is None else env
    explicit = (env.get("DISTRIBUTION_DB") or "").strip()
    if explicit:
        return Path(explicit).expanduser()
    data_dir = (env.get("DISTRIBUTION_DATA_DIR") or "").strip() or ".data/distribution"
    return Path(data_dir).expanduser() / "results.sqlite3"


@dataclass(frozen=True, slots=True)
class ResultRow:
    """One recorded attempt."""

    job_id: str
    attempt: int
    job_name: str
    queue: str
    status: str
    schedule_id: str | None = None
    post_id: str | None = None
    target_id: str | None = None
    connection_id: str | None = None
    platform: str | None = None
    external_id: str | None = None
    detail: str | None = None
    recorded_at: str = ""
    #: When the handler began this run (ISO 8601, UTC); ``recorded_at`` is when it ended.
    started_at: str | None = None


def _upgrade(conn: sqlite3.Connection) -> None:
    """Bring a file of an earlier version to the schema: ``started_at`` came later (a demo's
    file of earlier runs lacks it). Under the write lock, so two processes add it once."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        have = {row[1] for row in conn.execute("PRAGMA table_info(job_results)")}
        if "started_at" not in have:
            conn.execute("ALTER TABLE job_results ADD COLUMN started_at TEXT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _set_up(path: Path) -> None:
    """WAL mode and the schema, once per file and process (see the module docstring)."""
    key = path.resolve()
    if key in _SET_UP and path.exists():  # the usual case: no lock taken
        return
    with _SETUP_LOCK:
        if key in _SET_UP and path.exists():
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        delay = 0.005
        while True:
            try:
                # isolation_level=None: the script's own BEGIN IMMEDIATE takes the write lock
                # up front (waiting on the busy timeout), so no read-then-upgrade deadlock.
                conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
                with closing(conn):
                    conn.execute("PRAGMA journal_mode=WAL")
                    conn.executescript(f"BEGIN IMMEDIATE;{_SCHEMA}COMMIT;")
                    _upgrade(conn)
                break
            except sqlite3.OperationalError as exc:
                # Another process switching the same fresh file to WAL: wait for it.
                if "locked" not in str(exc) or time.monotonic() >= deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 0.2)
        _SET_UP.add(key)


class ResultsDB:
    """The results table in one SQLite file (created with its directory on first use)."""

    def __init__(self, path: Path | str | None = None) -> None:
        self.path = Path(path) if path is not None else default_db_path()

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        _set_up(self.path)
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S)
        with closing(conn), conn:  # one transaction, committed on success, then closed
            yield conn

    def record(self, row: ResultRow) -> None:
        """Insert (or replace: same job id and attempt) one attempt's outcome."""
        values = [getattr(row, c) for c in _COLUMNS]
        if not row.recorded_at:
            values[_COLUMNS.index("recorded_at")] = datetime.now(UTC).isoformat(
                timespec="milliseconds"
            )
        placeholders = ", ".join("?" for _ in _COLUMNS)
        with self._connect() as conn:
            conn.execute(
                f"INSERT OR REPLACE INTO job_results ({', '.join(_COLUMNS)}) "
                f"VALUES ({placeholders})",
                values,
            )

    def rows(self, *, job_id: str | None = None, post_id: str | None = None) -> list[ResultRow]:
        """Recorded attempts, oldest first, optionally for one job or one post."""
        where, args = [], []
        if job_id is not None:
            where.append("job_id = ?")
            args.append(job_id)
        if post_id is not None:
            where.append("post_id = ?")
            args.append(post_id)
        sql = f"SELECT {', '.join(_COLUMNS)} FROM job_results"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY recorded_at, job_id, attempt"
        if not self.path.exists():
            return []
        with self._connect() as conn:
            return [ResultRow(*r) for r in conn.execute(sql, args).fetchall()]
