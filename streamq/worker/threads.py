"""The threads that run sync handlers, and what happens to one that outlives its time limit.

A Python thread cannot be stopped from outside. When a sync handler passes its job's
``timeout``, the job fails (and is retried) as with an async handler, but its thread runs
on: it is *stuck*. It keeps holding one of the worker's slots until it returns, so the
worker never has more threads busy than ``concurrency`` and never hands a job to a thread
that is not free: a job's time limit starts when its handler starts, never while it waits
for a thread (with a plain ``ThreadPoolExecutor``, a job queued behind stuck threads
"timed out" without having run, and a job without a limit waited for ever while its lease
was renewed). Stuck handlers are reported (log, heartbeat, health, ``/metrics``).

Threads are daemons made on demand and reused: a stuck thread does not keep the process
alive at exit (``ThreadPoolExecutor`` joins its threads at interpreter exit).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["HandlerThreads", "StuckHandler"]

_Work = tuple[
    Callable[[Any], Any],
    Any,
    asyncio.AbstractEventLoop,
    "asyncio.Future[None] | None",
    "asyncio.Future[Any]",
]


@dataclass(slots=True)
class StuckHandler:
    """A sync handler still running past its job's time limit."""

    queue: str
    job_id: str
    name: str
    timeout_ms: int
    started: float  # time.monotonic() when the handler started

    def as_dict(self) -> dict[str, Any]:
        """The heartbeat's form (how long it has run, not a local timestamp)."""
        return {
            "queue": self.queue,
            "job_id": self.job_id,
            "name": self.name,
            "timeout_ms": self.timeout_ms,
            "running_ms": int((time.monotonic() - self.started) * 1000),
        }


def _settle(fut: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if fut.done():  # cancelled meanwhile (shutdown past the grace period)
        return
    if ok:
        fut.set_result(value)
    else:
        fut.set_exception(value)


class HandlerThreads:
    """Runs ``fn(arg)`` on a free thread at once (one is made when none is idle)."""

    def __init__(self, name_prefix: str) -> None:
        self._prefix = name_prefix
        self._work: queue.SimpleQueue[_Work | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0  # threads waiting for work and not yet promised to a submit
        self._count = 0
        self._closed = False

    @property
    def threads(self) -> int:
        """Threads made so far and not exited (busy, stuck or idle)."""
        return self._count

    def submit(
        self, fn: Callable[[Any], Any], arg: Any, *, signal_start: bool = False
    ) -> tuple[asyncio.Future[None] | None, asyncio.Future[Any]]:
        """Start ``fn(arg)`` on a free thread. Returns (started, done) futures of the running
        loop: ``started`` (only with ``signal_start``) resolves when ``fn`` begins, ``done``
        with its result or exception."""
        if self._closed:
            raise RuntimeError("the handler threads are closed")
        loop = asyncio.get_running_loop()
        started = loop.create_future() if signal_start else None
        done = loop.create_future()
        with self._lock:
            spawn = self._idle == 0
            if spawn:
                self._count += 1
            else:
                self._idle -= 1  # this idle thread is ours: the next submit needs another
        self._work.put((fn, arg, loop, started, done))
        if spawn:
            n = self._count
            threading.Thread(target=self._serve, name=f"{self._prefix}-{n}", daemon=True).start()
        return started, done

    def _serve(self) -> None:
        while True:
            item = self._work.get()
            if item is None:
                with self._lock:
                    self._count -= 1
                return
            fn, arg, loop, started, done = item
            try:
                if started is not None:
                    loop.call_soon_threadsafe(_settle, started, True, None)
                ok, value = True, fn(arg)
            except BaseException as exc:  # handed to the job's runner, which reports it
                ok, value = False, exc
            # Count this thread idle before the result is seen: a job submitted as soon as
            # this one ends finds it free instead of making a new thread.
            with self._lock:
                self._idle += 1
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits for it
                loop.call_soon_threadsafe(_settle, done, ok, value)
            del item, fn, arg, value

    def close(self) -> None:
        """Let idle threads exit; busy (and stuck) ones exit when their handler returns."""
        self._closed = True
        for _ in range(self._count):  # one stop item per thread, busy ones too
            self._work.put(None)
