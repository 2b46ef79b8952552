"""The handler registry a worker process runs: ``app = App(); @app.handler("dispatch")``."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from streamq.errors import ConfigError
from streamq.job import Job

__all__ = ["App", "Handler"]

Handler = Callable[[Job], Any] | Callable[[Job], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class Registered:
    """A handler and whether it is a coroutine function (sync ones run in a thread pool)."""

    name: str
    fn: Handler
    is_async: bool


class App:
    """Maps job names to handlers. A handler takes the :class:`~streamq.job.Job` (``job.data``
    is the payload) and returns a JSON-serialisable result; raising fails the attempt."""

    def __init__(self, *, queues: list[str] | None = None) -> None:
        self.handlers: dict[str, Registered] = {}
        #: Default queues for ``python -m streamq.worker MODULE:APP`` when --queue is omitted.
        self.queues: list[str] = list(queues or [])

    def register(self, name: str, fn: Handler) -> None:
        """Register ``fn`` for jobs named ``name``."""
        if not name or not isinstance(name, str):
            raise ConfigError(f"handler name must be a non-empty string, got {name!r}")
        if name in self.handlers:
            raise ConfigError(f"a handler for {name!r} is already registered")
        if not callable(fn):
            raise ConfigError(f"handler for {name!r} is not callable")
        self.handlers[name] = Registered(name, fn, inspect.iscoroutinefunction(fn))

    def handler(self, name: str | None = None) -> Callable[[Handler], Handler]:
        """Decorator form of :meth:`register` (default name: the function's name)."""

        def deco(fn: Handler) -> Handler:
            self.register(name or fn.__name__, fn)
            return fn

        return deco
