"""Metrics of a queue besides its status counts: lifetime counters, per-minute throughput,
duration/lateness histograms, and all of them for every queue at once (``/metrics``).
Pure builders and parsers; the drivers run them.

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
from collections.abc import Mapping, Sequence
from typing import Any

from streamq.protocol.calls import Call, Flow, raw, server_time
from streamq.protocol.calls import text as _s
from streamq.protocol.keys import BUCKETS_MS, QueueKeys
from streamq.protocol.partitions import PartitionMeta, partition_keys, read_meta
from streamq.protocol.queues import discover, queue_status
from streamq.results import Counters, Histogram, MinuteCount, QueueMetrics

__all__ = [
    "COUNTER_FIELDS",
    "THROUGHPUT_MINUTES",
    "fleet_metrics",
    "parse_histogram",
    "read_counters",
    "read_histograms",
    "sum_counters",
    "throughput",
]

#: The fields of ``sq:{Q}:stats``, in :class:`~streamq.results.Counters` order.
COUNTER_FIELDS = ("completed", "failed", "retried", "dead", "reclaimed")

#: Minutes of throughput the dashboard shows.
THROUGHPUT_MINUTES = 60


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


def _read_hist_fields(keys: QueueKeys) -> Call[dict[str, Any]]:
    return raw("HGETALL", keys.histograms, parse=_hash)


def _histograms_of(fields: Sequence[Mapping[str, Any]]) -> tuple[Histogram, Histogram]:
    """The duration and lateness histograms of the histogram hashes of a queue's partitions
    added up field by field (per-bucket counts and sums add; a malformed value is 0)."""
    if len(fields) == 1:
        merged: Mapping[str, Any] = fields[0]
    else:
        total: dict[str, float] = {}
        for one in fields:
            for name, value in one.items():
                total[name] = total.get(name, 0.0) + _float(value)
        merged = {name: repr(v) for name, v in total.items()}
    return parse_histogram(merged, "dur"), parse_histogram(merged, "late")


def read_histograms(keys: QueueKeys) -> Call[tuple[Histogram, Histogram]]:
    """The job-duration and delayed-lateness histograms of one queue."""
    return raw("HGETALL", keys.histograms, parse=lambda r: _histograms_of([_hash(r)]))


def sum_counters(found: Sequence[Counters]) -> Counters:
    """The counters of a queue's partitions added up."""
    return Counters(*(sum(getattr(c, f) for c in found) for f in COUNTER_FIELDS))


def throughput(
    keys: QueueKeys, minutes: int = THROUGHPUT_MINUTES, *, meta: PartitionMeta | None = None
) -> Flow[list[MinuteCount]]:
    """Completed jobs and failed attempts per minute over the last ``minutes`` minutes
    (the current one included), oldest first, by the Redis clock; with ``meta``, of every
    partition of the queue added up (the workers count each job in its own partition)."""
    now_ms = yield server_time()
    last = now_ms // 60_000
    span = range(last - minutes + 1, last + 1)
    fields: list[str] = []
    for minute in span:
        fields += [str(minute), f"{minute}:f"]
    parts = partition_keys(keys, meta) if meta is not None else [keys]
    replies = yield [raw("HMGET", k.throughput, *fields) for k in parts]
    return [
        MinuteCount(
            minute,
            sum(_int(r[2 * i]) for r in replies),
            sum(_int(r[2 * i + 1]) for r in replies),
        )
        for i, minute in enumerate(span)
    ]


def fleet_metrics(prefix: str) -> Flow[list[QueueMetrics]]:
    """:class:`QueueMetrics` of every queue under ``prefix``: one round trip for the counters,
    histograms and partition counts of all queues after
    :func:`~streamq.protocol.queues.queue_status`, and one more for the other partitions of
    the partitioned ones (their counters and histograms are added to the queue's)."""
    queues = yield from discover(prefix)
    homes = [QueueKeys(q, prefix) for q in queues]
    if not homes:
        return []
    infos = yield from queue_status(homes)
    replies = yield [
        c for k in homes for c in (read_counters(k), _read_hist_fields(k), read_meta(k))
    ]
    rows = [replies[3 * i : 3 * i + 3] for i in range(len(homes))]
    extra = {i: partition_keys(k, rows[i][2])[1:] for i, k in enumerate(homes)}
    flat = [k for ks in extra.values() for k in ks]
    more = (
        (yield [c for k in flat for c in (read_counters(k), _read_hist_fields(k))]) if flat else []
    )
    out, at = [], 0
    for i, info in enumerate(infos):
        n = len(extra[i])
        mine = more[2 * at : 2 * (at + n)]
        at += n
        counters = sum_counters([rows[i][0], *mine[0::2]])
        duration, lateness = _histograms_of([rows[i][1], *mine[1::2]])
        out.append(QueueMetrics(info, counters, duration, lateness))
    return out
