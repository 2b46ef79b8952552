"""The key schema of one queue. Every key carries ``{queue}`` as a Cluster hash tag."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from streamq.errors import ConfigError

__all__ = ["BUCKETS_MS", "GROUP", "QueueKeys", "validate_job_id", "validate_queue_name"]

#: The one consumer group every worker of a queue joins.
GROUP = "streamq"

#: Upper bounds (ms) of the duration and lateness histogram buckets in ``sq:{Q}:hist``;
#: one more bucket, ``inf``, takes the rest. Counts are per bucket, not cumulative.
BUCKETS_MS = (1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000)

_QUEUE_RE = re.compile(r"^[A-Za-z0-9_.:\-]{1,200}$")
_JOB_ID_RE = re.compile(r"^[A-Za-z0-9_.:\-]{1,200}$")


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


@dataclass(frozen=True, slots=True)
class QueueKeys:
    """Names of every key of queue ``queue`` under ``prefix``."""

    queue: str
    prefix: str = "sq"
    # Built once: job() runs for every job on both the producer's and the worker's path.
    _job_prefix: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_job_prefix", f"{self.base}:job:")

    @property
    def base(self) -> str:
        """``prefix:{queue}``: the hash-tagged stem of every key."""
        return f"{self.prefix}:{{{self.queue}}}"

    @property
    def stream(self) -> str:
        """Ready and running jobs; the group's PEL is the running set."""
        return f"{self.base}:stream"

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
