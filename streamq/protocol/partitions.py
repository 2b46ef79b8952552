"""Partitioned queues: one logical queue spread over several hash slots (so over the
masters of a Redis Cluster), each partition a full key set of its own.

* A queue has ``N`` partitions (its metadata, ``sq:{Q}:meta``; absent = 1). Partition 0 is
  the queue's **home**: the key set an unpartitioned queue has always had, so going from 1
  to N partitions moves nothing. Partition ``p >= 1`` of an ``N``-partition queue carries
  the hash tag ``Q~N.p.j``: ``~`` cannot appear in a queue name, and ``j`` is the first
  integer that puts the tag's slot within 4 slots of ``home + p * 16384 / N``: the
  partitions sit evenly spaced round the slot space from the home's slot. With masters
  owning equal slot ranges (what ``redis-cli --cluster create`` makes) they spread evenly
  over the masters.
* A plain job's partition is a pure function of its id: ``crc32(id) % N``. Flow jobs (a key
  or a priority) and schedules live in the home partition, so a key's limits stay exact
  across the fleet and a schedule's ticks stay exactly-once.
* ``N`` only grows (``history`` keeps every value it had): a job written under an older
  ``N`` is still found, by id, under that ``N``'s rule, and workers consume the partitions
  of every ``N`` in the history. Nothing is moved, nothing is lost.
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Sequence
from typing import Any, NamedTuple

from redis.crc import key_slot

from streamq.errors import ConfigError
from streamq.protocol.calls import Call, Code
from streamq.protocol.calls import text as _s
from streamq.protocol.keys import QueueKeys

__all__ = [
    "MAX_PARTITIONS",
    "PartitionMeta",
    "lookup_keys",
    "partition_keys",
    "partition_labels",
    "partition_of",
    "partition_tags",
    "read_meta",
    "set_partitions",
    "write_keys",
]

#: The most partitions a queue may have.
MAX_PARTITIONS = 64
_SLOTS = 16384
_WINDOW = 5  # a tag's slot is within 4 slots of its exact point


class PartitionMeta(NamedTuple):
    """A queue's partition count and every count it has had (oldest first)."""

    partitions: int = 1
    history: tuple[int, ...] = (1,)


@functools.lru_cache(maxsize=4096)
def partition_tags(queue: str, n: int) -> tuple[str, ...]:
    """The hash tags of the ``n`` partitions of ``queue`` ('' = home, first)."""
    if not 1 <= n <= MAX_PARTITIONS:
        raise ConfigError(f"partitions must be from 1 to {MAX_PARTITIONS}, got {n!r}")
    home = key_slot(queue.encode())
    # Close to the exact point: a wider window lets a tag cross a master's boundary (with
    # +-1/4 of a stretch, one queue name in four landed 3/2/1 on three masters); +-4 slots
    # costs ~2,000 tries a partition, once per process.
    half = _WINDOW
    tags = [""]
    for p in range(1, n):
        target = (home + p * _SLOTS // n) % _SLOTS
        j = 0
        while True:
            tag = f"{queue}~{n}.{p}.{j}"
            off = (key_slot(tag.encode()) - target) % _SLOTS
            if min(off, _SLOTS - off) < half:
                tags.append(tag)
                break
            j += 1
    return tuple(tags)


def partition_of(job_id: str, n: int) -> int:
    """The partition (0..n-1) of a plain job with id ``job_id``."""
    return zlib.crc32(job_id.encode()) % n if n > 1 else 0


def partition_keys(home: QueueKeys, meta: PartitionMeta) -> list[QueueKeys]:
    """The keys of every partition a worker consumes: of every count in the history, home
    first, each once."""
    seen: dict[str, QueueKeys] = {"": home}
    for n in meta.history:
        for tag in partition_tags(home.queue, n):
            if tag not in seen:
                seen[tag] = home.partition(tag)
    return list(seen.values())


def partition_labels(meta: PartitionMeta) -> list[str]:
    """A name for each key set of :func:`partition_keys`, in its order: ``"p"`` for
    partition ``p`` of the current count (home is ``"0"``), ``"p/n"`` for partition ``p``
    of an earlier count ``n`` (its jobs are still consumed after the count grew). What
    ``/metrics`` and the dashboard label a partition with: at most the sum of the counts
    the queue has had."""
    out = ["0"]
    for n in meta.history:
        suffix = "" if n == meta.partitions else f"/{n}"
        out += [f"{p}{suffix}" for p in range(1, n)]
    return out


def write_keys(home: QueueKeys, meta: PartitionMeta, job_id: str) -> QueueKeys:
    """Where a new plain job with id ``job_id`` goes."""
    if meta.partitions == 1:
        return home
    tag = partition_tags(home.queue, meta.partitions)[partition_of(job_id, meta.partitions)]
    return home.partition(tag) if tag else home


def lookup_keys(home: QueueKeys, meta: PartitionMeta, job_id: str) -> list[QueueKeys]:
    """Where job ``job_id`` may be, most likely first: its partition under each count of
    the history (newest first), then home (flow jobs, schedule ticks)."""
    out: dict[str, QueueKeys] = {}
    for n in (meta.partitions, *reversed(meta.history)):
        tag = partition_tags(home.queue, n)[partition_of(job_id, n)]
        out.setdefault(tag, home.partition(tag) if tag else home)
    out.setdefault("", home)
    return list(out.values())


def _parse_meta(reply: Sequence[Any]) -> PartitionMeta:
    n = int(reply[0] or 1)
    history = tuple(int(x) for x in _s(reply[1] or b"").split(",") if x) or (1,)
    return PartitionMeta(n, history)


def read_meta(home: QueueKeys) -> Call[PartitionMeta]:
    """The queue's partition metadata (an unpartitioned queue: 1, (1,))."""
    return Call(None, command=("HMGET", home.meta, "partitions", "history"), parse=_parse_meta)


def set_partitions(home: QueueKeys, n: int) -> Call[PartitionMeta]:
    """Raise the queue's partition count to ``n`` (ConfigError if it would shrink)."""
    partition_tags(home.queue, n)  # validates n

    def parse(r: Sequence[Any]) -> PartitionMeta:
        if int(r[0]) == Code.BAD_STATE:
            raise ConfigError(
                f"queue {home.queue!r} has {int(r[1])} partitions: the count can only grow "
                "(jobs in the partitions of a larger count would not be consumed otherwise)"
            )
        return _parse_meta(r[1:])

    return Call("partitions", [home.meta], [n], parse)
