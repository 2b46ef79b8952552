"""The operations of one logical queue over its partitions (see
:mod:`streamq.protocol.partitions`): each takes the queue's home keys and its
:class:`~streamq.protocol.partitions.PartitionMeta` and sends what the per-partition
operations of :mod:`~streamq.protocol.jobs`, :mod:`~streamq.protocol.queues` and
:mod:`~streamq.protocol.dlq` send, to the partitions concerned. With one partition each is
exactly the unpartitioned operation."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from streamq.job import Job
from streamq.protocol import dlq, jobs, queues
from streamq.protocol.calls import Call, Flow
from streamq.protocol.jobs import PreparedJob
from streamq.protocol.keys import QueueKeys
from streamq.protocol.partitions import PartitionMeta, lookup_keys, partition_keys, write_keys
from streamq.results import DeadEntry, EnqueueResult, JobEntry, QueueStatus

__all__ = [
    "cancel",
    "dead_count",
    "dead_letters",
    "delete_dead",
    "enqueue",
    "find",
    "find_dead",
    "get_job",
    "list_jobs",
    "move",
    "purge_dead",
    "replay_all_dead",
    "replay_dead",
    "replay_entry",
    "status",
    "wait_for",
]


def enqueue(
    home: QueueKeys,
    meta: PartitionMeta,
    prepared: Sequence[PreparedJob],
    fresh: bool,
    durable: Callable[[list[Call[list[EnqueueResult]]]], Flow[list[list[EnqueueResult]]]]
    | None = None,
) -> Flow[list[EnqueueResult]]:
    """Enqueue ``prepared`` into their partitions: plain jobs by id, flow jobs at home; one
    pipeline (``durable``, e.g. :func:`~streamq.protocol.jobs.durable_enqueue_many`: every
    partition's call with its WAITAOF, still one pipeline, so the fsync waits overlap).

    A partition whose WAITAOF does not confirm (:class:`DurabilityError`) does not stop the
    others: every job is written, and one DurabilityError at the end names every job not
    confirmed, so the caller knows exactly which to check (none is left unwritten)."""
    groups: dict[QueueKeys, list[int]] = {}
    for i, j in enumerate(prepared):
        k = home if j.is_flow else write_keys(home, meta, j.job_id)
        groups.setdefault(k, []).append(i)
    calls = [jobs.enqueue(k, [prepared[i] for i in idx], fresh=fresh) for k, idx in groups.items()]
    if durable is None:
        replies = yield calls
    else:
        replies = yield from durable(calls)
    out: list[EnqueueResult | None] = [None] * len(prepared)
    for idx, results in zip(groups.values(), replies, strict=True):
        for i, r in zip(idx, results, strict=True):
            out[i] = r
    return [r for r in out if r is not None]


def find(home: QueueKeys, meta: PartitionMeta, job_id: str) -> Flow[tuple[QueueKeys, Job | None]]:
    """The partition that holds job ``job_id`` and its record (home and None if none)."""
    where = lookup_keys(home, meta, job_id)
    if len(where) == 1:
        return home, (yield jobs.get_job(home, job_id))
    found = yield [jobs.get_job(k, job_id) for k in where]
    for k, job in zip(where, found, strict=True):
        if job is not None:
            return k, job
    return home, None


def get_job(home: QueueKeys, meta: PartitionMeta, job_id: str) -> Flow[Job | None]:
    """:func:`~streamq.protocol.jobs.get_job` in whichever partition holds the job."""
    _, job = yield from find(home, meta, job_id)
    return job


def cancel(home: QueueKeys, meta: PartitionMeta, job_id: str, events_maxlen: int) -> Flow[None]:
    """:func:`~streamq.protocol.jobs.cancel` where the job is."""
    k, _ = yield from find(home, meta, job_id)
    yield jobs.cancel(k, job_id, events_maxlen)


def move(home: QueueKeys, meta: PartitionMeta, job_id: str, delay_ms: int, at_ms: int) -> Flow[int]:
    """:func:`~streamq.protocol.jobs.move` where the job is."""
    k, _ = yield from find(home, meta, job_id)
    return int((yield jobs.move(k, job_id, delay_ms, at_ms)))


def wait_for(
    home: QueueKeys,
    meta: PartitionMeta,
    job_id: str,
    timeout_s: float,
    clock: Callable[[], float],
    max_block_ms: int,
) -> Flow[Job]:
    """:func:`~streamq.protocol.jobs.wait_for` on the partition that holds the job."""
    k, _ = yield from find(home, meta, job_id)
    return (yield from jobs.wait_for(k, job_id, timeout_s, clock, max_block_ms))


def status(home: QueueKeys, meta: PartitionMeta) -> Flow[QueueStatus]:
    """The queue's counts: the sum over its partitions (the oldest waiting job of all)."""
    parts = partition_keys(home, meta)
    if len(parts) == 1:
        one: QueueStatus = yield queues.status(home)
        return one
    found: list[QueueStatus] = yield [queues.status(k) for k in parts]
    return queues.sum_status(found)


def dead_letters(
    home: QueueKeys, meta: PartitionMeta, limit: int, after: str
) -> Flow[list[DeadEntry]]:
    """Up to ``limit`` DLQ entries of every partition, oldest first, after entry id
    ``after`` (entry ids are times: the order is the time of death)."""
    parts = partition_keys(home, meta)
    if len(parts) == 1:
        entries: list[DeadEntry] = yield dlq.list_dead(home, limit, after)
        return entries
    found = yield [dlq.list_dead(k, limit, after) for k in parts]
    merged = sorted((e for part in found for e in part), key=lambda e: _id_order(e.dead_id))
    return merged[:limit]


def _id_order(eid: str) -> tuple[int, int]:
    ms, _, seq = eid.partition("-")
    return int(ms), int(seq or 0)


def replay_dead(home: QueueKeys, meta: PartitionMeta, dead_id: str) -> Flow[bool]:
    """Replay the DLQ entry ``dead_id`` of whichever partition holds it."""
    for k in partition_keys(home, meta):
        if (yield from dlq.replay_one(k, dead_id)):
            return True
    return False


def replay_all_dead(
    home: QueueKeys, meta: PartitionMeta, progress: Callable[[int], None] | None = None
) -> Flow[int]:
    """Replay every DLQ entry of every partition; returns how many moved."""
    moved = 0
    for k in partition_keys(home, meta):
        moved += yield from dlq.replay_all(k, progress=progress)
    return moved


def delete_dead(home: QueueKeys, meta: PartitionMeta, dead_id: str) -> Flow[bool]:
    """Delete the DLQ entry ``dead_id`` of whichever partition holds it."""
    found = yield [dlq.delete_dead(k, dead_id) for k in partition_keys(home, meta)]
    return any(found)


def purge_dead(home: QueueKeys, meta: PartitionMeta) -> Flow[int]:
    """Delete every DLQ entry of every partition; returns how many."""
    found = yield [dlq.purge_dead(k) for k in partition_keys(home, meta)]
    return int(sum(found))


def find_dead(home: QueueKeys, meta: PartitionMeta, ident: str) -> Flow[DeadEntry | None]:
    """:func:`~streamq.protocol.dlq.find_dead` in the partitions, home first."""
    for k in partition_keys(home, meta):
        found = yield from dlq.find_dead(k, ident)
        if found is not None:
            return found
    return None


def replay_entry(home: QueueKeys, meta: PartitionMeta, ident: str) -> Flow[DeadEntry]:
    """:func:`~streamq.protocol.dlq.replay_entry` in the partition holding ``ident``."""
    parts = partition_keys(home, meta)
    for k in parts[1:]:
        if (yield from dlq.find_dead(k, ident)) is not None:
            return (yield from dlq.replay_entry(k, ident))
    return (yield from dlq.replay_entry(home, ident))  # home, or its not-found error


def dead_count(home: QueueKeys, meta: PartitionMeta) -> Flow[int]:
    """DLQ entries of every partition."""
    found = yield [dlq.dead_count(k) for k in partition_keys(home, meta)]
    return int(sum(found))


def list_jobs(
    home: QueueKeys, meta: PartitionMeta, state: str, limit: int, offset: int
) -> Flow[list[JobEntry]]:
    """:func:`~streamq.protocol.queues.list_jobs` over every partition, in the order it
    promises (held jobs live at home only): each partition's first ``offset + limit``,
    merged, then the page."""
    parts = partition_keys(home, meta)
    if len(parts) == 1 or state == "held":
        rows: list[JobEntry] = yield from queues.list_jobs(home, state, limit, offset)
        return rows
    merged: list[JobEntry] = []
    for k in parts:
        merged += yield from queues.list_jobs(k, state, offset + limit, 0)
    if state in ("completed", "failed"):
        merged.sort(key=lambda r: -(r.score_ms or 0))
    elif state == "delayed":
        merged.sort(key=lambda r: r.score_ms or 0)
    else:  # waiting, active: by entry id (its time)
        merged.sort(key=lambda r: _id_order(r.entry_id or "0-0"))
    return merged[offset : offset + limit]
