"""Plain data about jobs: options, backoff policy, the job record. No I/O."""

from __future__ import annotations

import functools
import math
import random
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import orjson

from streamq.errors import ConfigError

__all__ = [
    "EXPLICIT_ALL",
    "EXPLICIT_BACKOFF",
    "EXPLICIT_RETRIES",
    "EXPLICIT_TIMEOUT",
    "MAX_AT_S",
    "MAX_BACKOFF_MS",
    "MAX_DELAY_S",
    "MAX_RETRIES",
    "MAX_TIMEOUT_MS",
    "Backoff",
    "Job",
    "JobOptions",
    "JobState",
    "check_backoff",
    "check_retries",
    "timeout_ms",
]

#: The longest wait before a retry (30 days), whatever the backoff policy computes; also
#: the largest ``Backoff.delay_ms``.
MAX_BACKOFF_MS = 30 * 24 * 3600 * 1000
#: The largest retry budget a job may carry.
MAX_RETRIES = 1_000_000
#: The longest per-attempt time limit (30 days).
MAX_TIMEOUT_MS = 30 * 24 * 3600 * 1000
#: The longest ``delay=`` (100 years, in seconds).
MAX_DELAY_S = 100 * 365 * 24 * 3600
#: The latest ``at=``: 9999-12-31T23:59:59Z (epoch seconds). Due times beyond these bounds
#: would overflow the integer milliseconds stored in Redis.
MAX_AT_S = 253_402_300_799


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


class JobState(StrEnum):
    """Where a job is in its life. ``active`` is derived: waiting + held by a worker."""

    WAITING = "waiting"
    DELAYED = "delayed"
    #: Waiting for flow control (its key's turn, a rate window or a concurrency slot).
    HELD = "held"
    ACTIVE = "active"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        """True for completed, failed (dead) and cancelled."""
        return self in (JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED)


@dataclass(frozen=True, slots=True)
class Backoff:
    """How long to wait before retry number ``n`` (1-based).

    ``exponential``: ``delay_ms * factor ** (n - 1)`` (default 5 s, 25 s, 125 s);
    ``fixed``: ``delay_ms`` every time. ``jitter`` in [0, 1] takes up to that fraction off
    at random, so a burst of failures does not retry in lockstep.
    """

    type: str = "exponential"
    delay_ms: int = 5000
    factor: float = 5.0
    jitter: float = 0.0

    def __post_init__(self) -> None:
        if self.type not in ("exponential", "fixed"):
            raise ConfigError(f"backoff type must be 'exponential' or 'fixed', got {self.type!r}")
        if not _is_int(self.delay_ms) or not 0 <= self.delay_ms <= MAX_BACKOFF_MS:
            raise ConfigError(
                f"backoff delay_ms must be an int within [0, {MAX_BACKOFF_MS}] (30 days), "
                f"got {self.delay_ms!r}"
            )
        if not _is_number(self.factor) or not math.isfinite(self.factor) or self.factor < 1:
            raise ConfigError(f"backoff factor must be a finite number >= 1, got {self.factor}")
        if not _is_number(self.jitter) or not 0 <= self.jitter <= 1:
            raise ConfigError(f"backoff jitter must be within [0, 1], got {self.jitter}")

    @classmethod
    def fixed(cls, delay_ms: int, *, jitter: float = 0.0) -> Backoff:
        """The same delay before every retry."""
        return cls("fixed", delay_ms, 1.0, jitter)

    @classmethod
    def exponential(
        cls, delay_ms: int = 5000, factor: float = 5.0, *, jitter: float = 0.0
    ) -> Backoff:
        """``delay_ms * factor ** (n - 1)`` before retry ``n``."""
        return cls("exponential", delay_ms, factor, jitter)

    def delay_for(self, retry: int, rng: random.Random | None = None) -> int:
        """Milliseconds to wait before retry number ``retry`` (1 for the first retry)."""
        base = float(self.delay_ms)
        if self.type == "exponential":
            try:
                base *= self.factor ** max(retry - 1, 0)
            except OverflowError:
                base = math.inf
        if self.jitter:
            base *= 1.0 - self.jitter * (rng or random).random()
        return int(min(base, MAX_BACKOFF_MS))


#: Bits of :attr:`JobOptions.explicit`: which options the enqueuer set for this one job.
EXPLICIT_RETRIES, EXPLICIT_BACKOFF, EXPLICIT_TIMEOUT = 1, 2, 4
EXPLICIT_ALL = EXPLICIT_RETRIES | EXPLICIT_BACKOFF | EXPLICIT_TIMEOUT


@dataclass(frozen=True, slots=True)
class JobOptions:
    """What a job carries besides its payload: retry budget, backoff, per-attempt timeout.

    ``explicit`` says which of them were given for this job at enqueue (bits
    ``EXPLICIT_RETRIES | EXPLICIT_BACKOFF | EXPLICIT_TIMEOUT``): a handler's own defaults
    (``@app.handler("x", max_retries=...)``) replace the others when the job runs. It is
    not part of equality: two options that behave the same compare equal.
    """

    max_retries: int = 3
    backoff: Backoff = field(default_factory=Backoff)
    timeout_ms: int = 0
    explicit: int = field(default=0, compare=False)

    def __post_init__(self) -> None:
        if not _is_int(self.max_retries) or not 0 <= self.max_retries <= MAX_RETRIES:
            raise ConfigError(
                f"max_retries must be an int within [0, {MAX_RETRIES}], got {self.max_retries!r}"
            )
        if not _is_int(self.timeout_ms) or not 0 <= self.timeout_ms <= MAX_TIMEOUT_MS:
            raise ConfigError(
                f"timeout must be within [0, {MAX_TIMEOUT_MS // 1000}] s (30 days), "
                f"got {self.timeout_ms!r} ms"
            )
        if not _is_int(self.explicit) or not 0 <= self.explicit <= 7:
            raise ConfigError(f"explicit must be a bit mask within [0, 7], got {self.explicit!r}")

    def encode(self) -> bytes:
        """Compact wire form stored on the stream entry and the job record. The library
        defaults (``JobOptions()``) encode as ``b""``: most jobs carry them, and the empty
        string saves ~24 bytes in both the entry and the record of every waiting job."""
        return b"" if self == _DEFAULTS and not self.explicit else self.encode_explicit()

    def encode_explicit(self) -> bytes:
        """:meth:`encode` without the empty form for the defaults: ``[max_retries, backoff
        type, delay_ms, factor, jitter, timeout_ms, explicit]``."""
        return orjson.dumps([*self._fields(), self.explicit])

    def encode_legacy(self) -> bytes:
        """The 6-item form versions before the ``explicit`` mask wrote (no mask): for stored
        forms compared as bytes across versions (schedule definitions)."""
        return orjson.dumps(self._fields())

    def _fields(self) -> list[Any]:
        b = self.backoff
        return [self.max_retries, b.type[0], b.delay_ms, b.factor, b.jitter, self.timeout_ms]

    @classmethod
    def decode(cls, raw: bytes | str) -> JobOptions:
        """Inverse of :meth:`encode`; raises ``ValueError`` on anything malformed. An empty
        ``raw`` is the library defaults, nothing given explicitly. The 6-item form of
        earlier versions carries no mask: it reads as all given (``explicit=7``), so a job
        or schedule stored before keeps running with exactly the options it carries."""
        if not raw:
            return _DEFAULTS
        v = orjson.loads(raw)
        if not isinstance(v, list) or len(v) not in (6, 7):
            raise ValueError("job options must be a 7-item list (or the legacy 6-item list)")
        kind = {"e": "exponential", "f": "fixed"}.get(v[1]) if isinstance(v[1], str) else None
        if kind is None:
            raise ValueError(f"unknown backoff type {v[1]!r}")
        if not all(_is_number(x) for x in (v[0], v[2], v[3], v[4], v[5], *v[6:])):
            raise ValueError(f"job options of the wrong types: {v!r}")
        explicit = v[6] if len(v) == 7 else EXPLICIT_ALL
        try:
            return cls(v[0], Backoff(kind, v[2], float(v[3]), float(v[4])), v[5], explicit)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None

    def with_defaults(
        self, max_retries: int | None, backoff: Backoff | None, timeout_ms: int | None
    ) -> JobOptions:
        """These options with each one not set explicitly for the job replaced by the given
        default (None: keep this one)."""
        e = self.explicit
        return JobOptions(
            self.max_retries if max_retries is None or e & EXPLICIT_RETRIES else max_retries,
            self.backoff if backoff is None or e & EXPLICIT_BACKOFF else backoff,
            self.timeout_ms if timeout_ms is None or e & EXPLICIT_TIMEOUT else timeout_ms,
            e,
        )


def check_retries(value: Any) -> int:
    """``value`` if it is a valid retry budget, else :class:`ConfigError`."""
    if not _is_int(value) or not 0 <= value <= MAX_RETRIES:
        raise ConfigError(f"max_retries must be an int within [0, {MAX_RETRIES}], got {value!r}")
    return int(value)


def check_backoff(value: Any) -> Backoff:
    """``value`` if it is a :class:`Backoff`, else :class:`ConfigError`."""
    if not isinstance(value, Backoff):
        raise ConfigError(f"backoff must be a streamq.Backoff, got {type(value).__name__}")
    return value


def timeout_ms(seconds: Any) -> int:
    """A per-attempt time limit in seconds -> ms, or :class:`ConfigError`."""
    # Validate before converting: int(nan * 1000) is a ValueError, int(inf) an OverflowError.
    limit = MAX_TIMEOUT_MS // 1000
    # An int is compared as it is: math.isfinite(10**400) would raise OverflowError.
    if (
        not _is_number(seconds)
        or not (_is_int(seconds) or math.isfinite(seconds))
        or not 0 <= seconds <= limit
    ):
        raise ConfigError(
            f"timeout must be a finite number of seconds within [0, {limit}] (30 days), "
            f"got {seconds!r}"
        )
    return int(seconds * 1000)


#: ``JobOptions()``, the options that encode as ``b""`` (immutable, so shared).
_DEFAULTS = JobOptions()


@dataclass(slots=True)
class Job:
    """A job as read back from Redis (:meth:`Producer.get_job`) or handed to a handler."""

    queue: str
    id: str
    name: str
    data: Any
    state: JobState
    attempt: int = 0
    options: JobOptions = field(default_factory=JobOptions)
    created_at_ms: int | None = None
    started_at_ms: int | None = None
    finished_at_ms: int | None = None
    due_at_ms: int | None = None
    result: Any = None
    error: str | None = None
    traceback: str | None = None
    dead_reason: str | None = None
    worker: str | None = None
    entry_id: str | None = None
    lease_idle_ms: int | None = None
    deliveries: int | None = None
    #: Flow control: the job's key (None: none) and priority (0..9, higher first).
    key: str | None = None
    priority: int = 0


@functools.lru_cache(maxsize=512)
def decode_options(raw: bytes) -> JobOptions:
    """:meth:`JobOptions.decode`, cached: most jobs of a queue carry identical option bytes,
    and the result is immutable (the worker decodes it once per job otherwise)."""
    return JobOptions.decode(raw)
