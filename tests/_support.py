"""Test-side helpers every test folder shares: waiting on conditions with deadlines, the
Redis clock, a port nothing listens on, and a clean environment. No fixtures here
(conftest owns them); everything is a plain function.

Not a test module (no ``test_`` prefix). Support modules import it as ``tests._support``
(so that ``python -m tests.chaos.report`` finds it too), test files as ``_support``.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Generic, TypeVar

import pytest
import redis

T = TypeVar("T")

#: The repository (the working directory and ``PYTHONPATH`` of the subprocesses tests start).
ROOT = Path(__file__).resolve().parents[1]

#: The variables ``_clean_env`` fixtures drop: the developer's own settings must not steer
#: a test (nor reach the Redis on port 6379).
ENGINE_ENV_PREFIXES = ("REDIS_", "STREAMQ_")
#: The variables the web tests drop: they pass the token and health queues explicitly.
WEB_ENV = ("STREAMQ_API_TOKEN", "STREAMQ_WEB_ALLOW_NO_TOKEN", "STREAMQ_HEALTH_QUEUES")


# ---------------------------------------------------------------------- waiting


class _Poll(Generic[T]):
    """One wait on a condition: each :meth:`check` runs ``predicate`` once, returns its
    value when truthy (else None) and fails at the deadline. The drivers below only sleep."""

    def __init__(self, predicate: Callable[[], T], timeout: float, what: str) -> None:
        self.predicate, self.timeout, self.what = predicate, timeout, what
        self.deadline = time.monotonic() + timeout

    def check(self) -> T | None:
        value = self.predicate()
        if value:
            return value
        if time.monotonic() >= self.deadline:
            raise AssertionError(
                f"timed out after {self.timeout} s waiting for {self.what or self.predicate}"
            )
        return None


def wait_until(
    predicate: Callable[[], T], timeout: float = 10.0, what: str = "", interval: float = 0.02
) -> T:
    """Poll ``predicate`` until it returns something truthy (returned); fail at the deadline."""
    poll = _Poll(predicate, timeout, what)
    while (value := poll.check()) is None:
        time.sleep(interval)
    return value


async def await_until(
    predicate: Callable[[], T], timeout: float = 10.0, what: str = "", interval: float = 0.02
) -> T:
    """:func:`wait_until` for coroutines: the event loop keeps running between polls."""
    poll = _Poll(predicate, timeout, what)
    while (value := poll.check()) is None:
        await asyncio.sleep(interval)
    return value


# ---------------------------------------------------------------------- server and machine


def redis_now_ms(client: redis.Redis) -> int:
    """The server's clock (``TIME``) in ms: the one clock due times must follow."""
    sec, usec = client.time()
    return int(sec) * 1000 + int(usec) // 1000


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clear_env(monkeypatch: pytest.MonkeyPatch, *names: str) -> None:
    """Unset ``names`` for the test; with none, every ``REDIS_*`` and ``STREAMQ_*``."""
    if names:
        for name in names:
            monkeypatch.delenv(name, raising=False)
        return
    for name in list(os.environ):
        if name.startswith(ENGINE_ENV_PREFIXES):
            monkeypatch.delenv(name)


def clean_environ(*prefixes: str) -> dict[str, str]:
    """A copy of ``os.environ`` without ``REDIS_*``, ``STREAMQ_*`` (and ``prefixes``): the
    base of a subprocess's environment that the developer's own settings cannot steer."""
    drop = ENGINE_ENV_PREFIXES + prefixes
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)}


def child_env(*layers: Mapping[str, str], **extra: str) -> dict[str, str]:
    """:func:`clean_environ` with ``PYTHONPATH`` on the repository (so ``tests.apps`` and
    ``streamq`` import), then ``layers`` and ``extra`` on top, later ones winning."""
    env = clean_environ()
    env["PYTHONPATH"] = str(ROOT)
    for layer in layers:
        env.update(layer)
    env.update(extra)
    return env
