"""A bounded pool of long-lived runner tasks that take delivered entries from one inbox.

Why not one asyncio Task per job: creating, scheduling and finishing a Task costs more
than a no-op job itself (it was the largest item in the worker's profile). A runner
awaits the job's coroutine directly, so a job that never suspends costs no task switch at
all; a job that suspends holds its runner, and the next entry goes to another runner.
``size`` runners (the worker's concurrency) bound how many jobs run at once, as the
per-job tasks did.

Wake-ups are chained rather than broadcast: a batch of entries wakes one idle runner;
a runner that takes an entry while more are waiting wakes one more before it runs its
job. At most one wake-up is in flight, so a batch of jobs that finish without
suspending is worked through by one runner with no per-job scheduling.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from streamq.worker.logs import log_event

__all__ = ["RunnerPool"]

T = TypeVar("T")


class RunnerPool(Generic[T]):
    """Runs ``run(item)`` for every submitted item on at most ``size`` concurrent runners.

    ``finished()`` is called after each item, however ``run`` ended. ``run`` is expected
    to handle its own errors; one that escapes is logged and the runner goes on (a runner
    lost to a bug would silently shrink the concurrency for the life of the process).
    """

    def __init__(
        self, size: int, run: Callable[[T], Awaitable[None]], finished: Callable[[], None]
    ) -> None:
        if size < 1:
            raise ValueError(f"a runner pool needs at least one runner, not {size}")
        self.size = size
        self._run = run
        self._finished = finished
        self._inbox: deque[T] = deque()
        self._idle: list[asyncio.Future[bool]] = []
        self._waking = 0  # runners told to take an entry that have not started yet
        self._closing = False
        self._tasks: list[asyncio.Task[None]] = []
        #: Runners in the middle of an item.
        self.busy: set[asyncio.Task[None]] = set()

    def submit(self, item: T) -> None:
        """Queue ``item``; an idle runner (or a new one, up to ``size``) takes it."""
        if self._closing:
            raise RuntimeError("the runner pool is closed")
        self._inbox.append(item)
        self._kick()

    def _kick(self) -> None:
        if self._waking or not self._inbox or self._closing:
            return
        while self._idle:
            fut = self._idle.pop()
            if not fut.done():
                fut.set_result(True)
                self._waking += 1
                return
        if len(self._tasks) < self.size:
            # Runners are created on demand: a worker with concurrency 1,000 that never
            # sees more than ten jobs at once keeps ten tasks.
            self._waking += 1
            self._tasks.append(asyncio.create_task(self._runner(first=True)))

    async def _runner(self, *, first: bool) -> None:
        loop = asyncio.get_running_loop()
        me = asyncio.current_task()
        assert me is not None
        if first:
            self._waking -= 1
        while True:
            if not self._inbox:
                if self._closing:
                    return
                fut: asyncio.Future[bool] = loop.create_future()
                self._idle.append(fut)
                try:
                    kicked = await fut
                finally:
                    if not fut.done():
                        fut.cancel()
                if kicked:
                    self._waking -= 1
                continue
            item = self._inbox.popleft()
            self._kick()  # if this job suspends, the next entry must not wait for it
            self.busy.add(me)
            try:
                await self._run(item)
            except Exception as exc:  # run() handles job errors; this is a bug in streamq
                log_event("runner_error", logging.ERROR, error=f"{type(exc).__name__}: {exc}")
            finally:
                self.busy.discard(me)
                self._finished()

    def close(self) -> list[T]:
        """Stop taking items: idle runners exit, busy ones exit after their item. Returns
        the items that were queued but not started (the caller hands them back)."""
        self._closing = True
        left = list(self._inbox)
        self._inbox.clear()
        for fut in self._idle:
            if not fut.done():
                fut.set_result(False)
        self._idle.clear()
        return left

    async def aclose(self) -> None:
        """Cancel every runner (busy ones too) and wait until they are gone."""
        self.close()
        tasks = [t for t in self._tasks if not t.done()]
        for t in tasks:
            t.cancel()
        while tasks:
            _, pending = await asyncio.wait(tasks, timeout=0.1)
            for t in pending:
                t.cancel()  # see runner._cancel_and_wait: one cancel is not always enough
            tasks = list(pending)
        for t in self._tasks:
            if not t.cancelled():
                with contextlib.suppress(BaseException):
                    t.exception()
