"""The handler registry a worker process runs: ``app = App(); @app.handler("dispatch")``."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from streamq.errors import ConfigError
from streamq.job import Backoff, Job, JobOptions, check_backoff, check_retries, timeout_ms

__all__ = ["App", "Handler"]

Handler = Callable[[Job], Any] | Callable[[Job], Awaitable[Any]]

#: Distinct option encodings remembered per handler (most queues use a handful).
_RESOLVED_CACHE = 256


@dataclass(slots=True)
class Registered:
    """A handler, whether it is a coroutine function (sync ones run in threads), and its
    own option defaults (None: the job's options stand)."""

    name: str
    fn: Handler
    is_async: bool
    max_retries: int | None = None
    backoff: Backoff | None = None
    timeout_ms: int | None = None
    _resolved: dict[bytes, JobOptions] = field(default_factory=dict, repr=False)

    #: True when the handler declared any option default (set once: read for every job).
    has_defaults: bool = field(init=False)

    def __post_init__(self) -> None:
        self.has_defaults = not (
            self.max_retries is None and self.backoff is None and self.timeout_ms is None
        )

    def options(self, raw: bytes, opts: JobOptions) -> JobOptions:
        """The options a job runs with: what its enqueuer set explicitly, else this
        handler's defaults, else the options it was enqueued with. ``raw`` is their
        encoded form, the cache key (a queue's jobs share a few encodings)."""
        got = self._resolved.get(raw)
        if got is None:
            got = opts.with_defaults(self.max_retries, self.backoff, self.timeout_ms)
            if len(self._resolved) >= _RESOLVED_CACHE:
                self._resolved.clear()
            self._resolved[raw] = got
        return got


class App:
    """Maps job names to handlers. A handler takes the :class:`~streamq.job.Job` (``job.data``
    is the payload) and returns a JSON-serialisable result; raising fails the attempt."""

    def __init__(self, *, queues: list[str] | None = None) -> None:
        self.handlers: dict[str, Registered] = {}
        #: Default queues for ``python -m streamq.worker MODULE:APP`` when --queue is omitted.
        self.queues: list[str] = list(queues or [])

    def register(
        self,
        name: str,
        fn: Handler,
        *,
        max_retries: int | None = None,
        backoff: Backoff | None = None,
        timeout: float | None = None,
    ) -> None:
        """Register ``fn`` for jobs named ``name``.

        ``max_retries``, ``backoff`` and ``timeout`` (seconds) are this handler's defaults:
        they apply to every job of this name unless its enqueuer set that option for the
        job itself (``enqueue(..., max_retries=...)``), and they win over the producer-wide
        ``STREAMQ_MAX_RETRIES`` / ``STREAMQ_BACKOFF_*`` / ``STREAMQ_JOB_TIMEOUT``.
        """
        if not name or not isinstance(name, str):
            raise ConfigError(f"handler name must be a non-empty string, got {name!r}")
        if name in self.handlers:
            raise ConfigError(f"a handler for {name!r} is already registered")
        if not callable(fn):
            raise ConfigError(f"handler for {name!r} is not callable")
        try:
            reg = Registered(
                name,
                fn,
                inspect.iscoroutinefunction(fn),
                None if max_retries is None else check_retries(max_retries),
                None if backoff is None else check_backoff(backoff),
                None if timeout is None else timeout_ms(timeout),
            )
        except ConfigError as exc:
            raise ConfigError(f"handler {name!r}: {exc}") from None
        self.handlers[name] = reg

    def handler(
        self,
        name: str | None = None,
        *,
        max_retries: int | None = None,
        backoff: Backoff | None = None,
        timeout: float | None = None,
    ) -> Callable[[Handler], Handler]:
        """Decorator form of :meth:`register` (default name: the function's name)."""

        def deco(fn: Handler) -> Handler:
            self.register(
                name or fn.__name__, fn, max_retries=max_retries, backoff=backoff, timeout=timeout
            )
            return fn

        return deco
