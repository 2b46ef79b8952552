"""Test-side helpers for the worker tests: in-process and subprocess workers, log capture
and PEL inspection. No fixtures here (conftest owns them); everything is a plain function,
class or context manager. The waiting helpers (``wait_until``, ``await_until``) live in
:mod:`tests._support`; the worker tests import them from here too."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import redis

import streamq
from streamq.protocol.keys import GROUP, QueueKeys
from streamq.worker.logs import JsonFormatter
from streamq.worker.runner import Worker
from tests._support import ROOT, await_until, child_env, wait_until

APP = "tests.apps:app"


# ---------------------------------------------------------------------- in-process workers


def settings(url: str, **changes: Any) -> streamq.Settings:
    """Engine settings for ``url`` with some fields changed."""
    return streamq.Settings(redis=streamq.RedisSettings(url=url)).with_changes(**changes)


def run_burst(worker: Worker, timeout: float = 20.0) -> None:
    """Run ``worker`` in burst mode in a fresh event loop; fail if it takes over ``timeout``."""
    asyncio.run(asyncio.wait_for(worker.run(burst=True), timeout))


async def run_until(
    workers: list[Worker], predicate: Callable[[], Any], timeout: float = 15.0, what: str = ""
) -> None:
    """Run ``workers`` until ``predicate`` holds (or the deadline), then stop them all."""
    tasks = [asyncio.create_task(w.run()) for w in workers]
    try:
        await await_until(
            lambda: predicate() or _crashed(tasks), timeout=timeout, what=what or str(predicate)
        )
    finally:
        for w in workers:
            w.stop()
        done, pending = await asyncio.wait(tasks, timeout=15)
        if pending:
            raise AssertionError("workers did not stop within 15 s:\n" + _task_dump())
        for t in done:
            t.result()


def _task_dump() -> str:
    """Where every task of the running loop waits (the coroutine chain, innermost last)."""
    lines = []
    for t in asyncio.all_tasks():
        lines.append(f"task {t.get_name()} (cancel requests: {t.cancelling()})")
        coro: Any = t.get_coro()
        while coro is not None:
            frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
            if frame is not None:
                lines.append(f"    {frame.f_code.co_filename}:{frame.f_lineno}")
            coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    return "\n".join(lines)


def _crashed(tasks: list[asyncio.Task[None]]) -> bool:
    for t in tasks:
        if t.done():
            t.result()  # raise the worker's error instead of waiting for the deadline
            raise AssertionError("a worker stopped on its own")
    return False


def json_events(text: str, event: str | None = None) -> list[dict[str, Any]]:
    """The JSON log lines of a worker's output (all of them, or those called ``event``)."""
    out = []
    for line in text.splitlines():
        if not line.startswith("{"):
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            continue  # a line being written right now
        if event is None or obj.get("event") == event:
            out.append(obj)
    return out


class LogCapture(logging.Handler):
    """Collects streamq's log records as the JSON objects the worker would print."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.formatter_ = JsonFormatter()
        self.events: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.events.append(json.loads(self.formatter_.format(record)))

    def named(self, event: str, **match: Any) -> list[dict[str, Any]]:
        """Events called ``event`` whose fields include ``match``."""
        return [
            e
            for e in self.events
            if e["event"] == event and all(e.get(k) == v for k, v in match.items())
        ]


@contextlib.contextmanager
def capture_logs(level: int = logging.INFO) -> Iterator[LogCapture]:
    """Capture the ``streamq`` logger (restored afterwards)."""
    logger = logging.getLogger("streamq")
    cap = LogCapture()
    old_level, old_propagate = logger.level, logger.propagate
    logger.addHandler(cap)
    logger.setLevel(level)
    logger.propagate = False
    try:
        yield cap
    finally:
        logger.removeHandler(cap)
        logger.setLevel(old_level)
        logger.propagate = old_propagate


# ---------------------------------------------------------------------- subprocess workers


class WorkerProcess:
    """``python -m streamq.worker`` (or another ``module``) in a subprocess; its stdout and
    stderr (JSON log lines) go to a file."""

    def __init__(
        self,
        args: list[str],
        env: dict[str, str],
        log_path: Path,
        *,
        module: str = "streamq.worker",
    ) -> None:
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in wait()/close()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)  # a no-op once it exited (and was reaped)

    def kill(self) -> None:
        """SIGKILL (a crash: nothing runs on the way out) and reap."""
        self.proc.send_signal(signal.SIGKILL)
        self.wait(10)

    def wait(self, timeout: float) -> int:
        """Wait for the exit and return the code; fail (and kill it) past ``timeout``."""
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            self._log.close()
            raise AssertionError(
                f"worker {self.pid} did not exit within {timeout} s; output:\n"
                + self.output()[-3000:]
            ) from None
        self._log.close()
        return rc

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def events(self, event: str | None = None) -> list[dict[str, Any]]:
        """The JSON log lines printed so far (all of them, or those called ``event``)."""
        return json_events(self.output(), event)

    def consumer(self, timeout: float = 10.0) -> str:
        """The consumer name it announced in ``worker_started``."""
        found = wait_until(lambda: self.events("worker_started"), timeout, "worker_started")
        return str(found[0]["consumer"])


class Spawner:
    """Starts worker subprocesses for one test and kills the leftovers at the end."""

    def __init__(self, url: str, tmp: Path, ledger: Path) -> None:
        self.url = url
        self.tmp = tmp
        self.ledger = ledger
        self.procs: list[WorkerProcess] = []

    def env(self, **extra: str) -> dict[str, str]:
        own = {"REDIS_URL": self.url, "SQ_TEST_LEDGER": str(self.ledger), "PYTHONUNBUFFERED": "1"}
        return child_env(own, extra)

    def start(
        self,
        queue: str,
        *,
        app: str = APP,
        concurrency: int = 5,
        burst: bool = False,
        extra_args: tuple[str, ...] = (),
        **env: str,
    ) -> WorkerProcess:
        args = [app, "--queue", queue, "--concurrency", str(concurrency), *extra_args]
        if burst:
            args.append("--burst")
        wp = WorkerProcess(args, self.env(**env), self.tmp / f"worker-{len(self.procs)}.log")
        self.procs.append(wp)
        return wp

    def close(self) -> None:
        for wp in self.procs:
            wp.close()


# ---------------------------------------------------------------------- inspection


def keys_of(queue: str) -> QueueKeys:
    return QueueKeys(queue)


def pel(client: redis.Redis, queue: str) -> list[dict[str, Any]]:
    """The group's pending entries: message_id, consumer, time_since_delivered,
    times_delivered (str/int values)."""
    rows = client.xpending_range(keys_of(queue).stream, GROUP, "-", "+", 10_000)
    return [
        {
            "entry_id": _s(r["message_id"]),
            "consumer": _s(r["consumer"]),
            "idle": int(r["time_since_delivered"]),
            "deliveries": int(r["times_delivered"]),
        }
        for r in rows
    ]


def pending_count(client: redis.Redis, queue: str) -> int:
    try:
        return int(client.xpending(keys_of(queue).stream, GROUP)["pending"])
    except redis.ResponseError:  # no group yet
        return 0


def entries(client: redis.Redis, key: str) -> list[tuple[str, dict[bytes, bytes]]]:
    """Every entry of the stream ``key``: (entry id, raw fields)."""
    rows: Any = client.xrange(key)
    return [(_s(eid), dict(fields)) for eid, fields in rows]


def members(client: redis.Redis, key: str) -> set[str]:
    """The members of the sorted set ``key``."""
    found: Any = client.zrange(key, 0, -1)
    return {_s(m) for m in found}


def entry_job_id(client: redis.Redis, queue: str, entry_id: str) -> str | None:
    rows: Any = client.xrange(keys_of(queue).stream, entry_id, entry_id)
    if not rows:
        return None
    return _s(rows[0][1][b"i"])


def job_keys(client: redis.Redis, queue: str) -> list[str]:
    """Names of every job record of ``queue`` still in Redis."""
    pattern = keys_of(queue).job("*")
    return [_s(k) for k in client.scan_iter(match=pattern, count=1000)]


def job_hash(client: redis.Redis, queue: str, job_id: str) -> dict[str, str]:
    raw: Any = client.hgetall(keys_of(queue).job(job_id))
    return {_s(k): v.decode(errors="replace") for k, v in raw.items()}


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
