"""A simulated social platform: deterministic failures, slowness and rate limits on purpose.

The behaviour is chosen by the id of the target (dispatch) or connection (token refresh), so
a demo or a test decides what happens by naming things:

=================  ===========================================================================
id starts with     behaviour
=================  ===========================================================================
``fail-``          always fails (the job exhausts its retries and lands in the DLQ)
``flaky-``         fails the first ``flaky_failures`` attempts (default 2), then succeeds;
                   ``flaky<N>-`` fails the first N attempts
``ratelimit-``     the first request for it (per post, per worker process) is refused with a
                   rate limit (HTTP 429 style) whose retry-after is ``retry_after_ms``
                   (default 1000 ms), later ones succeed
``slow-``          sleeps ``slow_ms`` (default 1500 ms) before succeeding
anything else      succeeds after ``latency_ms`` (default 20 ms)
=================  ===========================================================================

Failures depend on the attempt number only, so every worker process agrees on them. Rate
limits cannot: a run refused with a 429 does not use an attempt (``streamq.RateLimited``),
so the platform remembers, per worker process, what it has refused and what it has served.

Like the real ones, the platform also has quotas of its own (:data:`APP_QUOTA`,
:data:`CONNECTION_QUOTA` calls per :data:`QUOTA_PERIOD_MS`, sliding windows; counted per
worker process): a call over either is refused with a 429 whose retry-after is when the
window lets the next one through. :mod:`examples.distribution.limits` declares flow-control
limits just under these so the queue, not the platform, does the pacing.

The platform name is the part of the id before the first ``-`` or ``:``
(``linkedin-42`` -> ``linkedin``), after any behaviour prefix; a bare number (an integer
connection id such as ``42``) is platform ``generic``: :func:`platform_of`.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from streamq import ConfigError

__all__ = [
    "PlatformError",
    "PublishReceipt",
    "RateLimitedError",
    "SimulatedPlatform",
    "TokenReceipt",
    "platform_of",
]

#: The platform's own quotas (what a real API documents): calls per app (every connection
#: of one platform) and per connection, in any window of ``QUOTA_PERIOD_MS``.
APP_QUOTA = 360
CONNECTION_QUOTA = 60
QUOTA_PERIOD_MS = 15 * 60 * 1000

_FLAKY = re.compile(r"^flaky(\d*)-")
_BEHAVIOURS = ("fail-", "ratelimit-", "slow-")


class PlatformError(Exception):
    """The platform refused or failed the request (the job's attempt fails and retries)."""


class RateLimitedError(PlatformError):
    """The platform asked us to slow down; ``retry_after_s`` is its hint."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


@dataclass(frozen=True, slots=True)
class PublishReceipt:
    """What a successful publish returns."""

    platform: str
    external_id: str
    url: str


@dataclass(frozen=True, slots=True)
class TokenReceipt:
    """What a successful token refresh returns."""

    platform: str
    expires_at: datetime


def platform_of(ident: str) -> str:
    """The platform an id belongs to (``flaky-x-1`` -> ``x``, ``42`` -> ``generic``)."""
    rest = _FLAKY.sub("", ident, count=1)
    for prefix in _BEHAVIOURS:
        rest = rest.removeprefix(prefix)
    name = re.split(r"[-:]", rest, maxsplit=1)[0]
    return "generic" if not name or name.isdigit() else name


class _Memory:
    """What the platform remembers in this process: the 429s it has answered (so a
    ``ratelimit-`` id is refused once) and its calls per quota bucket (sliding logs)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.refused: set[str] = set()
        self.calls: dict[str, deque[float]] = {}

    def refuse_once(self, what: str) -> bool:
        """True the first time ``what`` is asked about."""
        with self.lock:
            if what in self.refused:
                return False
            self.refused.add(what)
            return True

    def take(self, buckets: list[tuple[str, int]], period_s: float) -> float:
        """Count one call in every (bucket, quota) and return 0, or, when one is full,
        count nothing and return the seconds until its window lets a call through."""
        now = time.monotonic()
        with self.lock:
            wait = 0.0
            for name, quota in buckets:
                log = self.calls.setdefault(name, deque())
                while log and log[0] <= now - period_s:
                    log.popleft()
                if len(log) >= quota:
                    wait = max(wait, log[len(log) - quota] + period_s - now)
            if wait > 0:
                return wait
            for name, _ in buckets:
                self.calls[name].append(now)
            return 0.0


_MEMORY = _Memory()


def _env_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < 0:
        raise ConfigError(f"{name} must be >= 0, got {value}")
    return value


@dataclass(frozen=True, slots=True)
class SimulatedPlatform:
    """The adapter the handlers call instead of a real platform API."""

    flaky_failures: int = 2
    slow_ms: int = 1500
    latency_ms: int = 20
    retry_after_ms: int = 1000
    app_quota: int = APP_QUOTA
    connection_quota: int = CONNECTION_QUOTA
    quota_period_ms: int = QUOTA_PERIOD_MS

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SimulatedPlatform:
        """From ``DISTRIBUTION_FLAKY_FAILURES``, ``DISTRIBUTION_SLOW_MS``,
        ``DISTRIBUTION_LATENCY_MS``, ``DISTRIBUTION_RETRY_AFTER_MS`` and the quotas
        ``DISTRIBUTION_APP_QUOTA``, ``DISTRIBUTION_CONNECTION_QUOTA`` (0: none) per
        ``DISTRIBUTION_QUOTA_PERIOD_MS``."""
        env = os.environ if env is None else env
        return cls(
            _env_int(env, "DISTRIBUTION_FLAKY_FAILURES", 2),
            _env_int(env, "DISTRIBUTION_SLOW_MS", 1500),
            _env_int(env, "DISTRIBUTION_LATENCY_MS", 20),
            _env_int(env, "DISTRIBUTION_RETRY_AFTER_MS", 1000),
            _env_int(env, "DISTRIBUTION_APP_QUOTA", APP_QUOTA),
            _env_int(env, "DISTRIBUTION_CONNECTION_QUOTA", CONNECTION_QUOTA),
            _env_int(env, "DISTRIBUTION_QUOTA_PERIOD_MS", QUOTA_PERIOD_MS),
        )

    def _quota(self, ident: str, what: str) -> None:
        """Refuse with a 429 when the app's or the connection's quota is used up."""
        if self.quota_period_ms <= 0:
            return
        platform = platform_of(ident)
        buckets = [
            (f"app|{platform}|{what}", self.app_quota),
            (f"connection|{ident}|{what}", self.connection_quota),
        ]
        buckets = [(name, quota) for name, quota in buckets if quota > 0]
        wait = _MEMORY.take(buckets, self.quota_period_ms / 1000) if buckets else 0.0
        if wait > 0:
            raise RateLimitedError(f"{platform} quota used up (HTTP 429)", wait)

    def _behave(self, ident: str, attempt: int, what: str, once: str = "") -> None:
        """Sleep and/or raise as the id asks; ``once`` names the request for ``ratelimit-``."""
        self._quota(ident, what)
        if ident.startswith("fail-"):
            time.sleep(self.latency_ms / 1000)
            raise PlatformError(f"{platform_of(ident)} rejected the {what} (HTTP 500)")
        flaky = _FLAKY.match(ident)
        if flaky:
            failures = int(flaky.group(1)) if flaky.group(1) else self.flaky_failures
            time.sleep(self.latency_ms / 1000)
            if attempt <= failures:
                raise PlatformError(
                    f"{platform_of(ident)} timed out on the {what} "
                    f"(attempt {attempt} of the first {failures} that fail)"
                )
            return
        if ident.startswith("ratelimit-") and _MEMORY.refuse_once(f"{ident}|{what}|{once}"):
            raise RateLimitedError(
                f"{platform_of(ident)} rate limit hit (HTTP 429)", self.retry_after_ms / 1000
            )
        delay = self.slow_ms if ident.startswith("slow-") else self.latency_ms
        time.sleep(delay / 1000)

    def publish(
        self, target_id: str, post_id: str, *, attempt: int = 1, message: str | None = None
    ) -> PublishReceipt:
        """Publish ``post_id`` to ``target_id``; raises :class:`PlatformError` as configured."""
        self._behave(target_id, attempt, "post", post_id)
        platform = platform_of(target_id)
        digest = hashlib.sha256(f"{target_id}|{post_id}|{message or ''}".encode()).hexdigest()
        external = f"{platform}-{digest[:12]}"
        return PublishReceipt(platform, external, f"https://{platform}.example/posts/{external}")

    def refresh_token(self, connection_id: str, *, attempt: int = 1) -> TokenReceipt:
        """Refresh the token of ``connection_id``; the new one lasts 60 days."""
        self._behave(connection_id, attempt, "token refresh")
        return TokenReceipt(platform_of(connection_id), datetime.now(UTC) + timedelta(days=60))
