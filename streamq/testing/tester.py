""":class:`QueueTester`: drive and inspect one test's namespace on a real server.

Every key the tester (and code using its settings) writes lives under its own prefix
(``Settings.prefix``), so tests sharing one server never see each other's jobs and nothing
needs ``FLUSHALL``. Inspection helpers return plain data (payloads, results, error strings)
for ``assert tester.completed("dispatch") == [...]``; :meth:`QueueTester.jobs` and
:meth:`QueueTester.dead_letters` return the full records when a test needs more.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from types import TracebackType
from typing import Any

from streamq import connection
from streamq._driver import SyncDriver
from streamq.config import Settings
from streamq.errors import ConfigError
from streamq.job import Backoff, Job, JobState
from streamq.producer import At, Delay, Producer
from streamq.protocol import dlq
from streamq.protocol import testing as tops
from streamq.protocol.keys import QueueKeys, validate_queue_name
from streamq.protocol.queues import discover
from streamq.results import DeadEntry, EnqueueResult
from streamq.testing.drain import DrainResult, drain
from streamq.worker.app import App

__all__ = ["QueueTester"]

_STATES = tuple(s.value for s in JobState)


class QueueTester:
    """One test's view of a streamq server: enqueue, drain, make delayed jobs due, inspect.

    ``settings`` decide the server and the namespace (``settings.prefix``, unique per test
    when the pytest plugin makes the tester). Use as a context manager, or call
    :meth:`close` (keeps the keys) or :meth:`cleanup` (deletes the namespace's keys).
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._client = connection.sync_client(settings.redis)
        self._driver = SyncDriver(self._client, settings.redis.describe())
        self._producer: Producer | None = None

    # ------------------------------------------------------------------ identity

    @property
    def prefix(self) -> str:
        """The key prefix of this tester's namespace."""
        return self.settings.prefix

    @property
    def url(self) -> str:
        """The server's URL (contains the password: never log it)."""
        return self.settings.redis.to_url()

    def __repr__(self) -> str:
        return f"QueueTester({self.settings.redis.describe()!r}, prefix={self.prefix!r})"

    # ------------------------------------------------------------------ producing

    @property
    def producer(self) -> Producer:
        """A :class:`~streamq.Producer` on this namespace (made on first use, closed with
        the tester)."""
        if self._producer is None:
            self._producer = Producer(settings=self.settings)
        return self._producer

    def enqueue(
        self,
        queue: str,
        name: str,
        data: Any = None,
        *,
        job_id: str | None = None,
        delay: Delay | None = None,
        at: At | None = None,
        max_retries: int | None = None,
        backoff: Backoff | None = None,
        timeout: float | None = None,
        key: str | None = None,
        priority: int | None = None,
    ) -> EnqueueResult:
        """Enqueue one job into this namespace: :meth:`streamq.Producer.enqueue`."""
        return self.producer.enqueue(
            queue,
            name,
            data,
            job_id=job_id,
            delay=delay,
            at=at,
            max_retries=max_retries,
            backoff=backoff,
            timeout=timeout,
            key=key,
            priority=priority,
        )

    # ------------------------------------------------------------------ running

    def drain(
        self,
        app: App,
        queues: Sequence[str] | None = None,
        *,
        timeout: float = 10.0,
        run_delayed: bool = False,
        concurrency: int = 1,
    ) -> DrainResult:
        """Run ``app``'s handlers in-process (the real worker) until ``queues`` are idle:
        nothing waiting, running, or delayed and due now. Returns what happened.

        ``queues`` default to ``app.queues``, else every queue of the namespace.
        ``run_delayed=True`` makes delayed jobs and retries due whenever the queues go
        quiet, so a failing job runs through its retries to the dead-letter queue.
        ``concurrency=1`` (the default) runs jobs one at a time in queue order.
        Raises :class:`~streamq.testing.DrainTimeoutError` after ``timeout`` seconds; the
        jobs still running are handed back to their queue (a sync handler that never
        returns keeps its thread: Python cannot stop one).

        Runs its own event loop: from ``async def`` tests use :meth:`adrain`.
        """
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise RuntimeError(
                "QueueTester.drain() runs its own event loop and cannot be called from a "
                "running one: use `await tester.adrain(...)` in async tests"
            )
        return asyncio.run(
            self.adrain(
                app, queues, timeout=timeout, run_delayed=run_delayed, concurrency=concurrency
            )
        )

    async def adrain(
        self,
        app: App,
        queues: Sequence[str] | None = None,
        *,
        timeout: float = 10.0,
        run_delayed: bool = False,
        concurrency: int = 1,
    ) -> DrainResult:
        """The asyncio form of :meth:`drain`: async handlers run on the caller's loop."""
        if not isinstance(app, App):
            raise ConfigError(f"drain needs a streamq.worker.App, got {type(app).__name__}")
        if isinstance(queues, str):
            raise ConfigError(f"queues must be a list of queue names, not the string {queues!r}")
        if queues is not None and not queues:
            raise ConfigError("queues is empty: name at least one queue (or pass None)")
        names = list(queues) if queues is not None else list(app.queues) or self.queues()
        if not names:
            return DrainResult()  # nothing was ever enqueued in this namespace
        return await drain(
            app,
            names,
            self.settings,
            timeout=timeout,
            run_delayed=run_delayed,
            concurrency=concurrency,
        )

    def make_due(self, queue: str | None = None, *, job_ids: Sequence[str] | None = None) -> int:
        """Make delayed jobs and pending retries due now (the Redis clock) and move them
        into their streams; returns how many. ``queue`` default: every queue of the
        namespace; ``job_ids``: only those jobs."""
        total = 0
        for k in self._keys(queue):
            total += self._driver.run(tops.make_due(k, job_ids))
        return total

    # ------------------------------------------------------------------ inspecting

    def queues(self) -> list[str]:
        """Every queue of the namespace, sorted."""
        return self._driver.run(discover(self.prefix))

    def jobs(
        self, name: str | None = None, *, queue: str | None = None, state: str | None = None
    ) -> list[Job]:
        """Job records of the namespace (optionally of one ``name``, ``queue``, ``state``),
        in enqueue order: by the server clock's millisecond, then, among jobs still in a
        stream, by stream entry; finished jobs enqueued in the same millisecond may come
        in either order.
        Retention applies: only the last ``keep_completed``/``keep_failed`` finished
        records are kept."""
        if state is not None and state not in _STATES:
            raise ConfigError(f"state must be one of {', '.join(_STATES)}, got {state!r}")
        found: list[Job] = []
        for k in self._keys(queue):
            found += self._driver.run(tops.jobs(k))
        picked = [
            j
            for j in found
            if (name is None or j.name == name) and (state is None or j.state == state)
        ]
        return sorted(picked, key=_enqueue_order)

    def enqueued(self, name: str | None = None, *, queue: str | None = None) -> list[Any]:
        """Payloads of every job enqueued in this test, whatever became of it, in enqueue
        order (see :meth:`jobs`)."""
        return [j.data for j in self.jobs(name, queue=queue)]

    def pending(self, name: str | None = None, *, queue: str | None = None) -> list[Any]:
        """Payloads of the jobs not finished yet (waiting, held, running or delayed)."""
        return [j.data for j in self.jobs(name, queue=queue) if j.state in _PENDING]

    def completed(self, name: str | None = None, *, queue: str | None = None) -> list[Any]:
        """Results of the completed jobs, in completion order (with the default
        ``concurrency=1`` of :meth:`drain`, the order they were enqueued)."""
        done: list[tuple[int, Job]] = []
        for k in self._keys(queue):
            order = _positions(self._driver.run(tops.events(k)), "completed")
            recs = self._driver.run(tops.jobs(k))
            for j in recs:
                if j.state is JobState.COMPLETED and (name is None or j.name == name):
                    done.append((order.get(j.id, len(order)), j))
        done.sort(key=lambda p: (p[0], p[1].finished_at_ms or 0))
        return [j.result for _, j in done]

    def dead_letters(self, name: str | None = None, *, queue: str | None = None) -> list[DeadEntry]:
        """Dead-letter entries (job id, name, payload, attempts, error, traceback, reason),
        oldest first."""
        out: list[DeadEntry] = []
        for k in self._keys(queue):
            after = "-"
            while True:
                page = self._driver.run(dlq.list_dead(k, 500, after))
                out += [d for d in page if name is None or d.name == name]
                if len(page) < 500:
                    break
                after = page[-1].dead_id
        return out

    def dead(self, name: str | None = None, *, queue: str | None = None) -> list[str]:
        """The error of each dead-lettered job (``"RuntimeError: boom"``), oldest first."""
        return [d.error for d in self.dead_letters(name, queue=queue)]

    def assert_no_dead(self, queue: str | None = None) -> None:
        """Fail with every dead-lettered job's name, payload, error and last traceback line
        when the dead-letter queue of ``queue`` (default: every queue) is not empty."""
        dead = self.dead_letters(queue=queue)
        if not dead:
            return
        lines = [f"{len(dead)} dead-lettered job(s) in namespace {self.prefix!r}:"]
        for d in dead:
            lines.append(
                f"  {d.name} (job {d.job_id}, {d.attempts} attempt(s), reason {d.reason!r}) "
                f"data={d.data!r}: {d.error}"
            )
            tb = [t for t in d.traceback.strip().splitlines() if t.strip()]
            if len(tb) > 1:
                lines.append(f"    at {tb[-2].strip()}")
        raise AssertionError("\n".join(lines))

    # ------------------------------------------------------------------ lifecycle

    def _keys(self, queue: str | None) -> list[QueueKeys]:
        names = [validate_queue_name(queue)] if queue is not None else self.queues()
        return [QueueKeys(q, self.prefix) for q in names]

    def cleanup(self) -> int:
        """Delete every key of the namespace (only this prefix's keys), then close;
        returns how many keys were deleted."""
        try:
            return self._driver.run(tops.delete_prefix(self.prefix))
        finally:
            self.close()

    def close(self) -> None:
        """Release the connections (the keys stay)."""
        if self._producer is not None:
            self._producer.close()
            self._producer = None
        self._client.close()

    def __enter__(self) -> QueueTester:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


_PENDING = (JobState.WAITING, JobState.HELD, JobState.ACTIVE, JobState.DELAYED)


def _positions(events: list[tuple[str, str]], event: str) -> dict[str, int]:
    """Job id -> position of its last ``event`` in the events stream."""
    return {job_id: i for i, (job_id, what) in enumerate(events) if what == event}


def _enqueue_order(job: Job) -> tuple[int, int, int, str]:
    """Sort key: creation ms; then stream entry sequence (exact for jobs still in a
    stream: an entry id is ``<ms>-<seq>``); then job id."""
    seq = -1
    if job.entry_id:
        head, _, tail = job.entry_id.partition("-")
        if head.isdigit() and tail.isdigit():
            seq = int(tail)
    return (job.created_at_ms or 0, 0 if seq >= 0 else 1, seq, job.id)
