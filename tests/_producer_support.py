"""Helpers for the producer/protocol tests: key inspection, workers to run jobs, command
counts. ``redis_now_ms`` and ``wait_until`` come from :mod:`tests._support` (re-exported
for the tests that import them from here).

Not a test module (no ``test_`` prefix); imported by ``test_producer.py``,
``test_async_producer.py`` and ``test_protocol.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Sequence
from types import TracebackType
from typing import Any

import redis

from streamq import Settings
from streamq.protocol.keys import QueueKeys
from streamq.worker import App, Worker
from tests._support import redis_now_ms as redis_now_ms
from tests._support import wait_until as wait_until
from tests._worker_support import run_burst as run_worker_burst


def queue_keys(client: redis.Redis, queue: str, prefix: str = "sq") -> list[str]:
    """Every key that exists for ``queue`` (they all carry its ``{queue}`` hash tag)."""
    base = QueueKeys(queue, prefix).base
    return sorted(k.decode() for k in client.scan_iter(match=f"{base}:*", count=1000))


def run_burst(
    app: App, queues: Sequence[str], settings: Settings, timeout: float = 20.0, **kw: Any
) -> None:
    """Run an in-process worker (``kw``: more :class:`Worker` options) until the queues are
    drained (nothing waiting, delayed or running)."""
    run_worker_burst(Worker(app, list(queues), settings=settings, **kw), timeout)


class WorkerThread:
    """A worker running in a background thread (its own event loop) until the block ends.

    Unlike :func:`run_burst` it keeps running while jobs wait out a backoff, so a test can
    inspect and steer them in between.
    """

    def __init__(self, app: App, queues: Sequence[str], settings: Settings, **kw: Any) -> None:
        self.app, self.queues, self.settings, self.kw = app, list(queues), settings, kw
        self.worker: Worker | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.error: BaseException | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name="test-worker", daemon=True)

    def _main(self) -> None:
        async def main() -> None:
            self.loop = asyncio.get_running_loop()
            self.worker = Worker(self.app, self.queues, settings=self.settings, **self.kw)
            self._ready.set()
            await self.worker.run()

        try:
            asyncio.run(main())
        except BaseException as exc:  # reported by __exit__
            self.error = exc
        finally:
            self._ready.set()

    def __enter__(self) -> WorkerThread:
        self._thread.start()
        assert self._ready.wait(10), "worker thread did not start"
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.loop is not None and self.worker is not None and not self.loop.is_closed():
            # RuntimeError: the loop already finished (the worker crashed): reported below.
            with contextlib.suppress(RuntimeError):
                self.loop.call_soon_threadsafe(self.worker.stop)
        self._thread.join(20)
        assert not self._thread.is_alive(), "worker thread did not stop within 20 s"
        if self.error is not None and et is None:
            raise AssertionError(f"worker crashed: {self.error!r}") from self.error


def commandstats(client: redis.Redis) -> dict[str, int]:
    """``INFO commandstats`` as {command: calls} (lower-case names, e.g. ``evalsha``)."""
    out: dict[str, int] = {}
    for key, value in client.info("commandstats").items():
        out[key.removeprefix("cmdstat_")] = int(value["calls"])
    return out


def commands_between(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """The commands run between two :func:`commandstats` snapshots (INFO itself excluded)."""
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    return {k: v for k, v in delta.items() if v and k != "info"}
