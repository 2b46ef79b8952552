"""What a worker checks about the server before it starts: on a cluster, every master
(each holds queues of its own), with the masters at fault named."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from streamq.errors import ServerError
from streamq.worker.logs import log_event

__all__ = ["ServerInfo", "check_masters", "check_server", "parse_version"]

MIN_VERSION = (6, 2, 0)


def parse_version(text: str) -> tuple[int, ...]:
    """'7.0.15' -> (7, 0, 15)."""
    return tuple(int(p) for p in text.split(".")[:3] if p.isdigit())


@dataclass(frozen=True, slots=True)
class ServerInfo:
    """The facts a worker needs about its server (a cluster: the weakest of its masters)."""

    version: tuple[int, ...]
    flavour: str
    maxmemory_policy: str
    aof_enabled: bool
    rdb_enabled: bool | None
    warnings: tuple[str, ...]
    #: The masters checked, by node (``host:port``); one server: empty.
    masters: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class _Facts:
    name: str
    version: tuple[int, ...]
    raw_version: str
    flavour: str
    policy: str
    aof: bool
    rdb: bool | None


def _facts(name: str, info: Mapping[str, Any], save_config: str | None) -> _Facts:
    raw = str(info.get("valkey_version") or info.get("redis_version") or "0")
    return _Facts(
        name=name,
        # Valkey reports redis_version 7.2.x for compatibility: that is what is compared.
        version=parse_version(str(info.get("redis_version", raw))),
        raw_version=raw,
        flavour="valkey" if info.get("valkey_version") else "redis",
        policy=str(info.get("maxmemory_policy", "unknown")),
        aof=str(info.get("aof_enabled", "0")) == "1",
        rdb=None if save_config is None else bool(save_config.strip()),
    )


def check_server(info: Mapping[str, Any], save_config: str | None) -> ServerInfo:
    """:func:`check_masters` for one server: ``info`` is its ``INFO`` as a dict,
    ``save_config`` its ``save`` setting (None when ``CONFIG GET`` is not allowed)."""
    return check_masters({"": (info, save_config)})


def check_masters(masters: Mapping[str, tuple[Mapping[str, Any], str | None]]) -> ServerInfo:
    """Refuse servers older than 6.2; warn when eviction could drop jobs or persistence is
    off. ``masters``: by node name, each master's ``INFO`` (a dict) and ``save`` setting
    (None when ``CONFIG GET`` is not allowed, e.g. for a least-privilege ACL user). With
    more than one master, each message names the masters it is about."""
    facts = [_facts(name, info, save) for name, (info, save) in masters.items()]
    if not facts:
        raise ServerError("no master answered INFO: cannot check the server")
    many = len(facts) > 1

    def on(group: list[_Facts]) -> str:
        if not many:
            return ""
        names = ", ".join(f.name for f in group)
        return f" on {len(group)} of {len(facts)} masters ({names})"

    old = [f for f in facts if f.version < MIN_VERSION]
    if old:
        raise ServerError(
            f"Redis {old[0].raw_version} is too old{on(old)}: streamq needs Redis >= 6.2 "
            "(XAUTOCLAIM, XPENDING IDLE, ZRANGE ... WITHSCORES)"
        )
    warnings = []
    by_policy: dict[str, list[_Facts]] = {}
    for f in facts:
        if f.policy != "noeviction":
            by_policy.setdefault(f.policy, []).append(f)
    for policy, group in by_policy.items():
        warnings.append(
            f"maxmemory-policy is {policy!r}, not 'noeviction'{on(group)}: Redis may EVICT "
            "queued jobs under memory pressure. Set 'maxmemory-policy noeviction' "
            "(see redis.conf)."
        )
    none = [f for f in facts if not f.aof and f.rdb is not True]
    if none:
        warnings.append(
            f"persistence is off{on(none)}: no AOF and no RDB save points, so a Redis "
            "restart loses every job. Use the shipped redis.conf (appendonly yes)."
        )
    rdb_only = [f for f in facts if not f.aof and f.rdb is True]
    if rdb_only:
        warnings.append(
            f"AOF is off{on(rdb_only)}: a Redis crash may lose every write since the last "
            "RDB snapshot. Set 'appendonly yes'."
        )
    for w in warnings:
        log_event("server_warning", logging.WARNING, warning=w)
    weakest = min(facts, key=lambda f: f.version)
    rdbs = {f.rdb for f in facts}
    return ServerInfo(
        version=parse_version(weakest.raw_version),
        flavour=weakest.flavour,
        maxmemory_policy=next(iter(by_policy), "noeviction"),
        aof_enabled=all(f.aof for f in facts),
        rdb_enabled=False if False in rdbs else None if None in rdbs else True,
        warnings=tuple(warnings),
        masters=tuple(f.name for f in facts) if many else (),
    )
