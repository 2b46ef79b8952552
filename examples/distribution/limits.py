"""Flow control of the distribution queues: the job keys and the limits declared on them.

Every platform API has quotas, per app (all our connections to that platform together) and
per connection (one user's account); going over them earns a 429. Rather than let the
platform refuse calls, the queue paces them (streamq flow control, docs/flow-control.md):

==============================  ===================  ========================================
jobs                            key                  limit (default)
==============================  ===================  ========================================
``dispatch``, ``retry``         ``<platform>:<id>``  shared per platform: 300 per 15 min;
                                                     each connection: 50 per 15 min
``token_refresh``               ``refresh:<id>``     one at a time per connection
==============================  ===================  ========================================

The rates sit just under the simulated platform's own quotas
(:data:`~examples.distribution.platforms.APP_QUOTA` 360 and
:data:`~examples.distribution.platforms.CONNECTION_QUOTA` 60 per 15 min): the headroom is
for calls the queue does not see (a user posting from the platform's own app uses the same
connection quota) and for the gap between a job's start and its API call. A 429 that still
comes holds the connection's key for the platform's retry-after without using an attempt
(``streamq.RateLimited(key_wide=True)`` in :mod:`~examples.distribution.app`). One refresh
at a time per connection, because refresh tokens rotate: two refreshes racing with the same
refresh token leave the connection with a revoked one.

:func:`declare_limits` writes the rules; the service runs it at start-up
(:meth:`~examples.distribution.service.QueueService.declare_limits`), and so does
``make demo``, with a 3 s window and small rates so the pacing shows within seconds.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from examples.distribution.platforms import platform_of
from examples.distribution.types import Id, id_key
from streamq import AsyncProducer, ConfigError, Producer
from streamq.admin import Admin, AsyncAdmin

__all__ = [
    "PLATFORMS",
    "REFRESH_CONCURRENCY",
    "FlowLimits",
    "declare_limits",
    "declare_limits_async",
    "dispatch_key",
    "refresh_key",
]

#: Platforms that get a shared (per app) budget; a connection of any other platform is
#: still limited per connection.
PLATFORMS: Final = (
    "facebook",
    "generic",
    "instagram",
    "linkedin",
    "threads",
    "tiktok",
    "x",
    "youtube",
)
#: Token refreshes of one connection running at once.
REFRESH_CONCURRENCY: Final = 1
_MAX_KEY = 200  # streamq's limit on a job key


def _bounded(prefix: str, ident: str) -> str:
    """``prefix:ident``, or ``prefix:#<digest>`` when that would pass the 200 characters
    of a job key (the digest keeps one key per connection)."""
    key = f"{prefix}:{ident}"
    if len(key) <= _MAX_KEY:
        return key
    return f"{prefix[:100]}:#{hashlib.sha256(ident.encode()).hexdigest()[:40]}"


def dispatch_key(target_id: Id) -> str:
    """The flow-control key of a dispatch to ``target_id``: ``<platform>:<connection id>``
    (``linkedin-42`` -> ``linkedin:linkedin-42``, ``42`` -> ``generic:42``)."""
    ident = id_key(target_id)
    return _bounded(platform_of(ident), ident)


def refresh_key(connection_id: Id) -> str:
    """The flow-control key of ``connection_id``'s token refreshes: ``refresh:<id>``."""
    return _bounded("refresh", id_key(connection_id))


def _env_int(env: Mapping[str, str], name: str, default: int, least: int) -> int:
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < least:
        raise ConfigError(f"{name} must be >= {least}, got {value}")
    return value


@dataclass(frozen=True, slots=True)
class FlowLimits:
    """The numbers of the distribution limits: ``platform_rate`` dispatches per platform
    and ``connection_rate`` per connection, in any window of ``period_ms``."""

    platform_rate: int = 300
    connection_rate: int = 50
    period_ms: int = 15 * 60 * 1000

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> FlowLimits:
        """From ``DISTRIBUTION_PLATFORM_RATE``, ``DISTRIBUTION_CONNECTION_RATE`` and
        ``DISTRIBUTION_LIMIT_PERIOD_MS`` (defaults 300, 50, 15 min)."""
        env = os.environ if env is None else env
        return cls(
            _env_int(env, "DISTRIBUTION_PLATFORM_RATE", 300, 1),
            _env_int(env, "DISTRIBUTION_CONNECTION_RATE", 50, 1),
            _env_int(env, "DISTRIBUTION_LIMIT_PERIOD_MS", 15 * 60 * 1000, 1),
        )

    def rules(self) -> dict[str, dict[str, dict[str, Any]]]:
        """queue -> rule id -> rule, in the form of the queues' ``limits`` hash."""
        # Imported here: the service imports this module for the job keys.
        from examples.distribution.service import DISPATCH_QUEUE, TOKEN_REFRESH_QUEUE

        def rule(pattern: str, *, shared: bool, rate: int | None, conc: int | None) -> Any:
            return {
                "pattern": pattern,
                "shared": shared,
                "rate": rate,
                "period_ms": None if rate is None else self.period_ms,
                "concurrency": conc,
            }

        dispatch = {
            f"shared|{p}:*": rule(f"{p}:*", shared=True, rate=self.platform_rate, conc=None)
            for p in PLATFORMS
        }
        dispatch["each|*:*"] = rule("*:*", shared=False, rate=self.connection_rate, conc=None)
        refresh = {
            "each|refresh:*": rule("refresh:*", shared=False, rate=None, conc=REFRESH_CONCURRENCY)
        }
        return {DISPATCH_QUEUE: dispatch, TOKEN_REFRESH_QUEUE: refresh}


def _each(limits: FlowLimits | None) -> list[tuple[str, dict[str, Any]]]:
    chosen = limits if limits is not None else FlowLimits.from_env()
    return [(queue, rule) for queue, rules in chosen.rules().items() for rule in rules.values()]


def _args(rule: Mapping[str, Any]) -> dict[str, Any]:
    period = rule["period_ms"]
    return {
        "rate": rule["rate"],
        "per": None if period is None else period / 1000,
        "concurrency": rule["concurrency"],
        "shared": rule["shared"],
    }


# A rule of the same pattern and kind is replaced, so declaring again at each start is safe;
# Admin.set_limit also re-checks the keys already waiting on a limit.
def declare_limits(producer: Producer, limits: FlowLimits | None = None) -> None:
    """Write the distribution limits (default :meth:`FlowLimits.from_env`)."""
    with Admin(settings=producer.settings) as admin:
        for queue, rule in _each(limits):
            admin.set_limit(queue, rule["pattern"], **_args(rule))


async def declare_limits_async(producer: AsyncProducer, limits: FlowLimits | None = None) -> None:
    """See :func:`declare_limits`."""
    async with AsyncAdmin(settings=producer.settings) as admin:
        for queue, rule in _each(limits):
            await admin.set_limit(queue, rule["pattern"], **_args(rule))
