"""The key schema of one queue. Every key carries ``{queue}`` as a Cluster hash tag."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from streamq.errors import ConfigError

__all__ = [
    "BUCKETS_MS",
    "FLOW",
    "GROUP",
    "MAX_PRIORITY",
    "QueueKeys",
    "validate_job_id",
    "validate_job_key",
    "validate_priority",
    "validate_queue_name",
]

#: The one consumer group every worker of a queue joins.
GROUP = "streamq"

#: Upper bounds (ms) of the duration and lateness histogram buckets in ``sq:{Q}:hist``;
#: one more bucket, ``inf``, takes the rest. Counts are per bucket, not cumulative.
BUCKETS_MS = (1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000)

_QUEUE_RE = re.compile(r"^[A-Za-z0-9_.:\-]{1,200}$")
_JOB_ID_RE = re.compile(r"^[A-Za-z0-9_.:\-]{1,200}$")
_JOB_KEY_RE = re.compile(r"^[A-Za-z0-9_.:\-@/+=#]{1,200}$")

#: The lane of flow jobs (keyed or prioritized): their own stream, ``sq:{Q}:kstream``.
FLOW = "flow"
#: Priorities run from 0 (the default) to this, higher first.
MAX_PRIORITY = 9


def validate_queue_name(name: str) -> str:
    """Return ``name`` if it is a valid queue name, else raise ConfigError."""
    if not isinstance(name, str) or not _QUEUE_RE.match(name):
        raise ConfigError(
            f"invalid queue name {name!r}: use 1-200 characters from A-Z a-z 0-9 _ . : -"
        )
    return name


def validate_job_id(job_id: str) -> str:
    """Return ``job_id`` if it is a valid custom job id, else raise ConfigError."""
    if not isinstance(job_id, str) or not _JOB_ID_RE.match(job_id):
        raise ConfigError(
            f"invalid job id {job_id!r}: use 1-200 characters from A-Z a-z 0-9 _ . : -"
        )
    return job_id


def validate_job_key(key: str) -> str:
    """Return ``key`` if it is a valid flow-control key, else raise ConfigError."""
    if not isinstance(key, str) or not _JOB_KEY_RE.match(key):
        raise ConfigError(
            f"invalid job key {key!r}: use 1-200 characters from A-Z a-z 0-9 _ . : - @ / + = #"
        )
    return key


def validate_priority(priority: int) -> int:
    """Return ``priority`` if it is an int in 0..9, else raise ConfigError."""
    if type(priority) is not int or not 0 <= priority <= MAX_PRIORITY:
        raise ConfigError(f"priority must be an int from 0 to {MAX_PRIORITY}, got {priority!r}")
    return priority


@dataclass(frozen=True, slots=True)
class QueueKeys:
    """Names of every key of queue ``queue`` under ``prefix``.

    ``lane`` picks the stream that :attr:`stream` names: ``""`` the queue's stream of plain
    jobs, :data:`FLOW` the stream of flow jobs (keyed or prioritized). Every operation on a
    delivered entry (complete, fail, renew, reclaim) takes the keys of the entry's lane.
    """

    queue: str
    prefix: str = "sq"
    lane: str = ""
    #: The hash tag of one partition of a partitioned queue ('' = the queue's own: its home
    #: partition, where an unpartitioned queue keeps everything). See
    #: :mod:`streamq.protocol.partitions`.
    tag: str = ""
    # Built once: job() runs for every job on both the producer's and the worker's path.
    _job_prefix: str = field(init=False, repr=False, compare=False)
    #: The lane's stream: ready and running jobs; the group's PEL is the running set. (An
    #: attribute, not a property: the worker reads it several times per job.)
    stream: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_job_prefix", f"{self.base}:job:")
        name = "kstream" if self.lane == FLOW else "stream"
        object.__setattr__(self, "stream", f"{self.base}:{name}")

    @property
    def base(self) -> str:
        """``prefix:{queue}`` (``prefix:{tag}`` for a partition): the hash-tagged stem of
        every key."""
        return f"{self.prefix}:{{{self.tag or self.queue}}}"

    @property
    def is_home(self) -> bool:
        """True for the queue's home keys (its only ones unless it is partitioned)."""
        return not self.tag

    def partition(self, tag: str) -> QueueKeys:
        """The same queue's keys in the partition of hash tag ``tag`` (plain lane)."""
        return QueueKeys(self.queue, self.prefix, "", tag)

    @property
    def meta(self) -> str:
        """The queue's metadata (home partition): ``partitions``, ``history``."""
        return f"{self.base}:meta"

    @property
    def is_flow(self) -> bool:
        """True for the keys of the flow lane."""
        return self.lane == FLOW

    def flow_lane(self) -> QueueKeys:
        """The same queue's keys, on the flow lane."""
        return QueueKeys(self.queue, self.prefix, FLOW, self.tag)

    def plain_lane(self) -> QueueKeys:
        """The same queue's keys, on the plain lane."""
        return QueueKeys(self.queue, self.prefix, "", self.tag)

    # ---------------------------------------------------------------- flow control

    @property
    def kstream(self) -> str:
        """Admitted flow jobs: a take delivers each at once, so its PEL is the running set
        of flow jobs; an undelivered entry there is a wake-up call (field ``w``)."""
        return f"{self.base}:kstream"

    @property
    def held(self) -> str:
        """Flow jobs waiting: a zset (score 0) of ``<key>\\0<9-priority>\\0<seq>\\0<id>``,
        so a lex range is one key's jobs, highest priority first, FIFO within a level."""
        return f"{self.base}:held"

    @property
    def held_data(self) -> str:
        """Held job id -> what its entry needs (msgpack), so a take reads no job record."""
        return f"{self.base}:held:data"

    @property
    def held_keys(self) -> str:
        """Key -> number of its held jobs (the busiest keys, by ZREVRANGE)."""
        return f"{self.base}:held:keys"

    @property
    def ring(self) -> str:
        """Keys with work that may run now, scored ``(9 - top priority) * 2^40 + turn``:
        the lowest is next (highest priority, then the key served longest ago)."""
        return f"{self.base}:ring"

    @property
    def blocked(self) -> str:
        """Keys waiting for a rate window (or a ``RateLimited``), scored by ms (Redis clock)."""
        return f"{self.base}:blocked"

    @property
    def full(self) -> str:
        """Keys waiting for a concurrency slot."""
        return f"{self.base}:full"

    @property
    def inflight(self) -> str:
        """Key -> its admitted, unfinished jobs (the concurrency count)."""
        return f"{self.base}:inflight"

    @property
    def rlog(self) -> str:
        """Sliding logs of the rate buckets: lex members ``<bucket>\\0<ms>\\0<uniq>``."""
        return f"{self.base}:rlog"

    @property
    def limits(self) -> str:
        """Rate and concurrency rules: ``each|<pattern>`` / ``shared|<pattern>`` -> JSON."""
        return f"{self.base}:limits"

    @property
    def flow(self) -> str:
        """Flow control's counters and flags: ``seq``, ``turn``, ``wake``, ``mode``."""
        return f"{self.base}:flow"

    def flow_keys(self) -> list[str]:
        """The flow keys every script that holds or releases a flow job takes, in the order
        of ``lib/flow.lua``'s ``flow_keys``."""
        return [
            self.held,
            self.held_data,
            self.ring,
            self.blocked,
            self.full,
            self.inflight,
            self.held_keys,
            self.flow,
            self.kstream,
        ]

    @property
    def delayed(self) -> str:
        """Delayed jobs and retries waiting out their backoff, scored by due ms."""
        return f"{self.base}:delayed"

    @property
    def completed(self) -> str:
        """Completed job ids by finish time (retention index)."""
        return f"{self.base}:completed"

    @property
    def failed(self) -> str:
        """Dead job ids by time of death (retention index)."""
        return f"{self.base}:failed"

    @property
    def cancelled(self) -> str:
        """Cancelled job ids by time of cancellation (retention index)."""
        return f"{self.base}:cancelled"

    @property
    def throughput(self) -> str:
        """Per-minute counters (Redis clock): ``<minute>`` completed, ``<minute>:f`` failed."""
        return f"{self.base}:tput"

    @property
    def histograms(self) -> str:
        """Duration (``dur:<le>``) and delayed-lateness (``late:<le>``) bucket counts."""
        return f"{self.base}:hist"

    @property
    def dead(self) -> str:
        """The dead-letter stream."""
        return f"{self.base}:dead"

    @property
    def events(self) -> str:
        """Capped stream of lifecycle events."""
        return f"{self.base}:events"

    @property
    def stats(self) -> str:
        """Lifetime counters (completed, dead, retried...)."""
        return f"{self.base}:stats"

    @property
    def workers(self) -> str:
        """Live-worker registry: consumer name -> last heartbeat ms."""
        return f"{self.base}:workers"

    @property
    def paused(self) -> str:
        """Present (value "1") while the queue is paused: workers do not fetch from it."""
        return f"{self.base}:paused"

    @property
    def repeat(self) -> str:
        """Repeating schedules: schedule key -> next tick ms."""
        return f"{self.base}:repeat"

    @property
    def repeat_defs(self) -> str:
        """Repeating schedules: schedule key -> definition (JSON)."""
        return f"{self.base}:repeat:defs"

    def job(self, job_id: str) -> str:
        """The record of one job."""
        return self._job_prefix + job_id
