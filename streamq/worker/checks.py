"""What a worker checks about the server before it starts."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from streamq.errors import ServerError
from streamq.worker.logs import log_event

__all__ = ["ServerInfo", "check_server", "parse_version"]

MIN_VERSION = (6, 2, 0)


def parse_version(text: str) -> tuple[int, ...]:
    """'7.0.15' -> (7, 0, 15)."""
    return tuple(int(p) for p in text.split(".")[:3] if p.isdigit())


@dataclass(frozen=True, slots=True)
class ServerInfo:
    """The facts a worker needs about its server."""

    version: tuple[int, ...]
    flavour: str
    maxmemory_policy: str
    aof_enabled: bool
    rdb_enabled: bool | None
    warnings: tuple[str, ...]


def check_server(info: dict[str, Any], save_config: str | None) -> ServerInfo:
    """Refuse servers older than 6.2; warn when eviction could drop jobs or persistence is off.

    ``info`` is ``INFO`` as a dict; ``save_config`` the ``save`` setting (None when
    ``CONFIG GET`` is not allowed, e.g. for a least-privilege ACL user).
    """
    raw = str(info.get("valkey_version") or info.get("redis_version") or "0")
    flavour = "valkey" if info.get("valkey_version") else "redis"
    version = parse_version(str(info.get("redis_version", raw)))
    if version < MIN_VERSION:
        raise ServerError(
            f"Redis {info.get('redis_version')} is too old: streamq needs Redis >= 6.2 "
            "(XAUTOCLAIM, XPENDING IDLE, ZRANGE ... WITHSCORES)"
        )
    policy = str(info.get("maxmemory_policy", "unknown"))
    aof = str(info.get("aof_enabled", "0")) == "1"
    rdb = None if save_config is None else bool(save_config.strip())
    warnings = []
    if policy != "noeviction":
        warnings.append(
            f"maxmemory-policy is {policy!r}, not 'noeviction': Redis may EVICT queued jobs "
            "under memory pressure. Set 'maxmemory-policy noeviction' (see redis.conf)."
        )
    if not aof and rdb is not True:
        warnings.append(
            "persistence is off (no AOF, no RDB save points): a Redis restart loses every "
            "job. Use the shipped redis.conf (appendonly yes)."
        )
    elif not aof:
        warnings.append(
            "AOF is off: a Redis crash may lose every write since the last RDB snapshot. "
            "Set 'appendonly yes'."
        )
    for w in warnings:
        log_event("server_warning", logging.WARNING, warning=w)
    return ServerInfo(
        version=parse_version(raw),
        flavour=flavour,
        maxmemory_policy=policy,
        aof_enabled=aof,
        rdb_enabled=rdb,
        warnings=tuple(warnings),
    )
