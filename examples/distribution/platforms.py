"""A simulated social platform: deterministic failures, slowness and rate limits on purpose.

The behaviour is chosen by the id of the target (dispatch) or connection (token refresh), so
a demo or a test decides what happens by naming things:

=================  ===========================================================================
id starts with     behaviour
=================  ===========================================================================
``fail-``          always fails (the job exhausts its retries and lands in the DLQ)
``flaky-``         fails the first ``flaky_failures`` attempts (default 2), then succeeds;
                   ``flaky<N>-`` fails the first N attempts
``ratelimit-``     attempt 1 is refused with a rate limit (HTTP 429 style) whose retry-after is
                   ``retry_after_ms`` (default 1000 ms), later ones succeed
``slow-``          sleeps ``slow_ms`` (default 1500 ms) before succeeding
anything else      succeeds after ``latency_ms`` (default 20 ms)
=================  ===========================================================================

Failures depend on the attempt number only (no hidden state), so every worker process
agrees on them. The platform name is the part of the id before the first ``-`` or ``:``
(``linkedin-42`` -> ``linkedin``), after any behaviour prefix; a bare number (an integer
connection id such as ``42``) is platform ``generic``.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
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
]

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


def _platform_of(ident: str) -> str:
    rest = _FLAKY.sub("", ident, count=1)
    for prefix in _BEHAVIOURS:
        rest = rest.removeprefix(prefix)
    name = re.split(r"[-:]", rest, maxsplit=1)[0]
    return "generic" if not name or name.isdigit() else name


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

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SimulatedPlatform:
        """From ``DISTRIBUTION_FLAKY_FAILURES``, ``DISTRIBUTION_SLOW_MS``,
        ``DISTRIBUTION_LATENCY_MS`` and ``DISTRIBUTION_RETRY_AFTER_MS``."""
        env = os.environ if env is None else env
        return cls(
            _env_int(env, "DISTRIBUTION_FLAKY_FAILURES", 2),
            _env_int(env, "DISTRIBUTION_SLOW_MS", 1500),
            _env_int(env, "DISTRIBUTION_LATENCY_MS", 20),
            _env_int(env, "DISTRIBUTION_RETRY_AFTER_MS", 1000),
        )

    def _behave(self, ident: str, attempt: int, what: str) -> None:
        """Sleep and/or raise as the id asks."""
        if ident.startswith("fail-"):
            time.sleep(self.latency_ms / 1000)
            raise PlatformError(f"{_platform_of(ident)} rejected the {what} (HTTP 500)")
        flaky = _FLAKY.match(ident)
        if flaky:
            failures = int(flaky.group(1)) if flaky.group(1) else self.flaky_failures
            time.sleep(self.latency_ms / 1000)
            if attempt <= failures:
                raise PlatformError(
                    f"{_platform_of(ident)} timed out on the {what} "
                    f"(attempt {attempt} of the first {failures} that fail)"
                )
            return
        if ident.startswith("ratelimit-") and attempt <= 1:
            raise RateLimitedError(
                f"{_platform_of(ident)} rate limit hit (HTTP 429)", self.retry_after_ms / 1000
            )
        delay = self.slow_ms if ident.startswith("slow-") else self.latency_ms
        time.sleep(delay / 1000)

    def publish(
        self, target_id: str, post_id: str, *, attempt: int = 1, message: str | None = None
    ) -> PublishReceipt:
        """Publish ``post_id`` to ``target_id``; raises :class:`PlatformError` as configured."""
        self._behave(target_id, attempt, "post")
        platform = _platform_of(target_id)
        digest = hashlib.sha256(f"{target_id}|{post_id}|{message or ''}".encode()).hexdigest()
        external = f"{platform}-{digest[:12]}"
        return PublishReceipt(platform, external, f"https://{platform}.example/posts/{external}")

    def refresh_token(self, connection_id: str, *, attempt: int = 1) -> TokenReceipt:
        """Refresh the token of ``connection_id``; the new one lasts 60 days."""
        self._behave(connection_id, attempt, "token refresh")
        return TokenReceipt(_platform_of(connection_id), datetime.now(UTC) + timedelta(days=60))
