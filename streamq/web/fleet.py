"""What the dashboard and ``/metrics`` read besides :mod:`streamq.admin`: lifetime counters,
per-minute throughput, duration/lateness histograms, and deleting one dead-letter entry.

The operations are written once, without I/O, in the style of :mod:`streamq.protocol.ops`
(a :class:`~streamq.protocol.ops.Call` or a flow); :class:`WebAdmin` runs them on the
asyncio driver of :class:`~streamq.admin.AsyncAdmin`.

The keys follow the workers' contract, read tolerantly (a missing key or field is 0, a
malformed value is 0, never an error):

* ``sq:{Q}:stats`` (:attr:`QueueKeys.stats`): integer fields ``completed``, ``failed``
  (failed attempts), ``retried``, ``dead``, ``reclaimed``.
* ``sq:{Q}:tput`` (:attr:`QueueKeys.throughput`): ``<minute>`` (epoch minutes, Redis clock)
  -> jobs completed in that minute; ``<minute>:f`` -> failed attempts in that minute.
* ``sq:{Q}:hist`` (:attr:`QueueKeys.histograms`): ``dur:<le>`` / ``late:<le>`` -> jobs whose
  duration / lateness (ms) is at most ``le`` and above the previous bound (per-bucket, not
  cumulative), ``le`` from :data:`~streamq.protocol.keys.BUCKETS_MS` plus ``inf``;
  ``dur:sum`` / ``late:sum`` (ms) and ``dur:count`` / ``late:count``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from streamq.admin import (
    AsyncAdmin,
    QueueInfo,
    _score_pairs,
    discover,
    queue_status,
    server_time,
)
from streamq.job import Job
from streamq.protocol import ops
from streamq.protocol.keys import BUCKETS_MS, QueueKeys, validate_job_id
from streamq.protocol.ops import Call, Flow, _s, raw
from streamq.scheduler import Schedule

__all__ = [
    "COUNTER_FIELDS",
    "DEAD_ID_RE",
    "Counters",
    "Histogram",
    "MinuteCount",
    "QueueMetrics",
    "WebAdmin",
    "delete_dead",
    "find_job",
    "fleet_metrics",
    "parse_histogram",
    "read_counters",
    "read_histograms",
    "schedules_page",
    "throughput",
]

#: The fields of ``sq:{Q}:stats``, in :class:`Counters` order.
COUNTER_FIELDS = ("completed", "failed", "retried", "dead", "reclaimed")

#: What a dead-letter entry id looks like (a stream entry id).
DEAD_ID_RE = re.compile(r"^\d{1,20}-\d{1,20}$")

#: Minutes of throughput the dashboard shows.
THROUGHPUT_MINUTES = 60


# ---------------------------------------------------------------------------- data


@dataclass(frozen=True, slots=True)
class Counters:
    """Lifetime counters of one queue (``sq:{Q}:stats``)."""

    completed: int = 0
    failed: int = 0
    retried: int = 0
    dead: int = 0
    reclaimed: int = 0


@dataclass(frozen=True, slots=True)
class Histogram:
    """A histogram in Prometheus shape: ``buckets`` are (upper bound in ms, cumulative count)
    pairs in increasing order, the last one ``math.inf``; ``count`` equals its count."""

    buckets: tuple[tuple[float, int], ...]
    sum_ms: float
    count: int


@dataclass(frozen=True, slots=True)
class MinuteCount:
    """Jobs completed and attempts failed in one minute (epoch minutes, Redis clock)."""

    minute: int
    completed: int
    failed: int


@dataclass(frozen=True, slots=True)
class QueueMetrics:
    """Everything ``/metrics`` exposes about one queue."""

    info: QueueInfo
    counters: Counters
    duration: Histogram
    lateness: Histogram


# ---------------------------------------------------------------------------- parsing


def _int(value: Any) -> int:
    """A counter value; anything missing or malformed is 0."""
    if value is None:
        return 0
    try:
        return max(int(float(_s(value))), 0)
    except (TypeError, ValueError, OverflowError):
        return 0


def _float(value: Any) -> float:
    try:
        number = float(_s(value)) if value is not None else 0.0
    except (TypeError, ValueError):
        return 0.0
    return number if math.isfinite(number) and number > 0 else 0.0


def _bound(text: str) -> float | None:
    """``"250"`` -> 250.0, ``"inf"``/``"+Inf"`` -> inf; None for anything else."""
    if text.lower() in ("inf", "+inf"):
        return math.inf
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def parse_histogram(fields: Mapping[str, Any], prefix: str) -> Histogram:
    """Build a cumulative :class:`Histogram` from the per-bucket counts ``<prefix>:<le>``.

    The bounds are :data:`BUCKETS_MS` plus any other numeric bound found (so a worker with a
    different list still adds up), then ``inf``. If ``<prefix>:count`` exceeds the sum of
    the buckets, the difference goes to ``inf`` so that ``+Inf`` always equals the count.
    """
    per_bucket: dict[float, int] = dict.fromkeys((float(b) for b in BUCKETS_MS), 0)
    per_bucket[math.inf] = 0
    head = prefix + ":"
    for name, value in fields.items():
        if not name.startswith(head):
            continue
        bound = _bound(name[len(head) :])
        if bound is not None:
            per_bucket[bound] = per_bucket.get(bound, 0) + _int(value)
    running = 0
    buckets: list[tuple[float, int]] = []
    for bound in sorted(per_bucket):
        running += per_bucket[bound]
        buckets.append((bound, running))
    declared = _int(fields.get(f"{prefix}:count"))
    if declared > running:
        buckets[-1] = (math.inf, declared)
        running = declared
    return Histogram(tuple(buckets), _float(fields.get(f"{prefix}:sum")), running)


def _hash(reply: Any) -> dict[str, Any]:
    """HGETALL as str keys (a dict under redis-py's parsers, a flat list otherwise)."""
    if isinstance(reply, Mapping):
        return {_s(k): v for k, v in reply.items()}
    items = list(reply or [])
    return {_s(items[i]): items[i + 1] for i in range(0, len(items) - 1, 2)}


# ---------------------------------------------------------------------------- operations


def read_counters(keys: QueueKeys) -> Call[Counters]:
    """The lifetime counters of one queue (HMGET on ``sq:{Q}:stats``)."""
    return raw(
        "HMGET",
        keys.stats,
        *COUNTER_FIELDS,
        parse=lambda r: Counters(*(_int(v) for v in r)),
    )


def read_histograms(keys: QueueKeys) -> Call[tuple[Histogram, Histogram]]:
    """The job-duration and delayed-lateness histograms of one queue."""

    def parse(reply: Any) -> tuple[Histogram, Histogram]:
        fields = _hash(reply)
        return parse_histogram(fields, "dur"), parse_histogram(fields, "late")

    return raw("HGETALL", keys.histograms, parse=parse)


def throughput(keys: QueueKeys, minutes: int = THROUGHPUT_MINUTES) -> Flow[list[MinuteCount]]:
    """Completed jobs and failed attempts per minute over the last ``minutes`` minutes
    (the current one included), oldest first, by the Redis clock."""
    now_ms = yield server_time()
    last = now_ms // 60_000
    span = range(last - minutes + 1, last + 1)
    fields: list[str] = []
    for minute in span:
        fields += [str(minute), f"{minute}:f"]
    reply = yield raw("HMGET", keys.throughput, *fields)
    return [
        MinuteCount(minute, _int(reply[2 * i]), _int(reply[2 * i + 1]))
        for i, minute in enumerate(span)
    ]


def fleet_metrics(prefix: str) -> Flow[list[QueueMetrics]]:
    """:class:`QueueMetrics` of every queue under ``prefix``; one round trip for the
    counters and histograms of all queues after :func:`~streamq.admin.queue_status`."""
    queues = yield from discover(prefix)
    keys = [QueueKeys(q, prefix) for q in queues]
    if not keys:
        return []
    infos = yield from queue_status(keys)
    replies = yield [c for k in keys for c in (read_counters(k), read_histograms(k))]
    out = []
    for i, info in enumerate(infos):
        counters, (duration, lateness) = replies[2 * i], replies[2 * i + 1]
        out.append(QueueMetrics(info, counters, duration, lateness))
    return out


def delete_dead(keys: QueueKeys, dead_id: str) -> Call[bool]:
    """Delete one dead-letter entry (XDEL); False if there was none with that id."""
    return raw("XDEL", keys.dead, dead_id, parse=lambda r: int(r) > 0)


def find_job(prefix: str, job_id: str) -> Flow[list[Job]]:
    """The record of job ``job_id`` in every queue under ``prefix`` that holds one (a custom
    id may be used in several queues), by queue name; one round trip after discovery.
    :class:`~streamq.errors.ConfigError` if ``job_id`` is not a valid job id."""
    validate_job_id(job_id)
    queues = yield from discover(prefix)
    if not queues:
        return []
    found = yield [ops.get_job(QueueKeys(q, prefix), job_id) for q in queues]
    return [j for j in found if j is not None]


def schedules_page(keys: QueueKeys, offset: int, limit: int) -> Flow[tuple[list[Schedule], int]]:
    """``limit`` repeating schedules of one queue after the first ``offset``, soonest tick
    first, and how many there are: two round trips, whatever the number of schedules."""
    ticks, total = yield [
        raw("ZRANGE", keys.repeat, offset, offset + limit - 1, "WITHSCORES"),
        raw("ZCARD", keys.repeat, parse=int),
    ]
    pairs = [(_s(m), int(float(sc))) for m, sc in _score_pairs(ticks)]
    if not pairs:
        return [], total
    defs = yield raw("HMGET", keys.repeat_defs, *(k for k, _ in pairs))
    # A tick without a definition is a schedule being removed right now: skip it.
    return [
        Schedule.from_definition(k, d, tick) for (k, tick), d in zip(pairs, defs, strict=True) if d
    ], total


# ---------------------------------------------------------------------------- driver


class WebAdmin(AsyncAdmin):
    """:class:`~streamq.admin.AsyncAdmin` plus what the web app alone needs."""

    async def throughput(self, queue: str, minutes: int = THROUGHPUT_MINUTES) -> list[MinuteCount]:
        """Per-minute completed/failed counts of ``queue``, oldest first."""
        return await self._driver.run(throughput(self.keys(queue), minutes))

    async def fleet_metrics(self) -> list[QueueMetrics]:
        """:class:`QueueMetrics` of every queue found under the prefix."""
        return await self._driver.run(fleet_metrics(self.settings.prefix))

    async def delete_dead(self, queue: str, dead_id: str) -> bool:
        """Delete one dead-letter entry by its entry id; False if it was not there."""
        return await self._driver.run(delete_dead(self.keys(queue), dead_id))

    async def find_job(self, job_id: str) -> list[Job]:
        """Job ``job_id`` in every queue that holds a record of it (see :func:`find_job`)."""
        return await self._driver.run(find_job(self.settings.prefix, job_id))

    async def schedules_page(
        self, queue: str, offset: int, limit: int
    ) -> tuple[list[Schedule], int]:
        """One page of the schedules of ``queue`` and their number (see
        :func:`schedules_page`)."""
        return await self._driver.run(schedules_page(self.keys(queue), offset, limit))
