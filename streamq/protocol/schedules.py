"""Repeating schedules, the model and its operations: by interval or by cron expression,
identified by a key.

Each tick is enqueued exactly once however many workers run the scheduler: a script
compares-and-sets the schedule's tick and the job id is derived from it (``rep:KEY:TICK``).
Due times use the Redis clock. A schedule lives in Redis (``sq:{Q}:repeat``), so it survives
restarts.

Missed ticks (no worker ran for a while): the schedule fires **once** for everything it
missed, then continues at the first tick after now — never a burst of N catch-up jobs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
from croniter import croniter

from streamq.errors import ConfigError
from streamq.job import MAX_DELAY_S, JobOptions
from streamq.protocol.calls import Call, Flow, raw, score_pairs, server_time
from streamq.protocol.calls import text as _s
from streamq.protocol.keys import (
    GROUP,
    QueueKeys,
    validate_job_id,
    validate_job_key,
    validate_priority,
)

__all__ = [
    "Schedule",
    "add_schedule",
    "as_ms",
    "aware",
    "fire_due",
    "list_schedules",
    "remove_schedule",
    "schedules_page",
    "tick_job_id",
]


#: Definitions keep the defaults' explicit form, as stored before they encoded as b"": an
#: unchanged schedule re-added after an upgrade still compares equal and keeps its tick.
#: The stored form of library-default options in a definition: the 6-item form earlier
#: versions wrote, so an unchanged schedule re-added after an upgrade keeps its tick.
_DEFAULT_OPTIONS = JobOptions().encode_legacy()


def _compact_options(raw_opts: bytes) -> bytes:
    return b"" if raw_opts == _DEFAULT_OPTIONS else raw_opts


@dataclass(frozen=True, slots=True)
class Schedule:
    """A repeating job: ``every_ms`` or ``cron`` (5-field, in ``tz``), the job's name,
    payload (JSON bytes) and encoded options."""

    key: str
    name: str
    data: bytes
    options: bytes
    every_ms: int | None = None
    cron: str | None = None
    tz: str = "UTC"
    next_tick_ms: int | None = None
    #: Flow control for the jobs it enqueues: their key ('' = none) and priority.
    job_key: str = ""
    priority: int = 0

    def __post_init__(self) -> None:
        validate_job_id(self.key)
        if self.job_key:
            validate_job_key(self.job_key)
        validate_priority(self.priority)
        if (self.every_ms is None) == (self.cron is None):
            raise ConfigError(f"schedule {self.key!r}: give exactly one of every= or cron=")
        if self.every_ms is not None and self.every_ms < 1000:
            raise ConfigError(f"schedule {self.key!r}: every must be >= 1 s")
        if self.cron is not None and not croniter.is_valid(self.cron):
            raise ConfigError(f"schedule {self.key!r}: invalid cron expression {self.cron!r}")
        try:
            ZoneInfo(self.tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(f"schedule {self.key!r}: unknown time zone {self.tz!r}") from None

    def definition(self, *, legacy: bool = False) -> bytes:
        """The stored form (compared on add: an identical definition keeps its next tick).
        ``legacy``: the form versions before the options' ``explicit`` mask stored for the
        same schedule (its options in the 6-item form)."""
        options = self.options or _DEFAULT_OPTIONS
        if legacy and self.options:
            options = JobOptions.decode(self.options).encode_legacy()
        d: dict[str, Any] = {
            "name": self.name,
            "data": self.data.decode(),
            "o": options.decode(),
            "every_ms": self.every_ms,
            "cron": self.cron,
            "tz": self.tz,
        }
        # Only when set: a schedule without flow control keeps the definition it had.
        if self.job_key:
            d["k"] = self.job_key
        if self.priority:
            d["p"] = self.priority
        return orjson.dumps(d)

    @classmethod
    def from_definition(cls, key: str, raw_def: bytes | str, next_tick_ms: int | None) -> Schedule:
        """Inverse of :meth:`definition`."""
        d = orjson.loads(raw_def)
        return cls(
            key,
            d["name"],
            d["data"].encode(),
            _compact_options(d["o"].encode()),
            d.get("every_ms"),
            d.get("cron"),
            d.get("tz", "UTC"),
            next_tick_ms,
            d.get("k", ""),
            d.get("p", 0),
        )

    def next_after(self, after_ms: int) -> int:
        """The first tick strictly after ``after_ms`` (ms since the epoch)."""
        if self.every_ms is not None:
            return after_ms + self.every_ms
        start = datetime.fromtimestamp(after_ms / 1000, tz=ZoneInfo(self.tz))
        nxt: datetime = croniter(self.cron, start).get_next(datetime)
        return int(nxt.timestamp() * 1000)

    def following(self, tick_ms: int, now_ms: int) -> int:
        """The tick after ``tick_ms`` that is later than ``now_ms``: missed ticks collapse
        into the one being fired now."""
        if self.every_ms is not None:
            if tick_ms + self.every_ms > now_ms:
                return tick_ms + self.every_ms
            skipped = math.floor((now_ms - tick_ms) / self.every_ms) + 1
            return tick_ms + skipped * self.every_ms
        return self.next_after(max(tick_ms, now_ms))

    @property
    def data_value(self) -> Any:
        """The payload, decoded."""
        return orjson.loads(self.data)


# ---------------------------------------------------------------------------- operations


def add_schedule(keys: QueueKeys, schedule: Schedule, first_at_ms: int | None) -> Flow[int]:
    """Create or update a schedule; returns its next tick (ms). ``first_at_ms`` overrides
    the first tick (default: one interval, or the next cron time, after now)."""
    now = yield server_time()
    first = first_at_ms if first_at_ms is not None else schedule.next_after(now)
    current = schedule.definition()
    legacy = schedule.definition(legacy=True)
    reply = yield Call(
        "sched_add",
        [keys.repeat, keys.repeat_defs],
        [schedule.key, current, first, b"" if legacy == current else legacy],
    )
    return int(reply[1])


def remove_schedule(keys: QueueKeys, key: str) -> Call[bool]:
    """Delete a schedule; True when it existed."""
    return Call("sched_remove", [keys.repeat, keys.repeat_defs], [key], lambda r: int(r) == 1)


def list_schedules(keys: QueueKeys) -> Flow[list[Schedule]]:
    """Every schedule of the queue with its next tick, soonest first."""
    ticks, defs = yield [
        raw("ZRANGE", keys.repeat, 0, -1, "WITHSCORES"),
        raw("HGETALL", keys.repeat_defs),
    ]
    by_key = {_s(k): v for k, v in defs.items()}
    out = []
    for member, score in ticks:
        key = _s(member)
        if key in by_key:
            out.append(Schedule.from_definition(key, by_key[key], int(score)))
    return out


def tick_job_id(key: str, tick_ms: int) -> str:
    """The id of the job enqueued for one tick: the same for every scheduler that races."""
    return f"rep:{key}:{tick_ms}"


def fire_due(keys: QueueKeys, limit: int = 100) -> Flow[tuple[int, float]]:
    """Fire every due tick once; returns (ticks fired by this caller, seconds until the
    next tick or -1)."""
    now, nxt, flat = yield Call(
        "sched_due",
        [keys.repeat, keys.repeat_defs],
        [limit],
        lambda r: (int(r[0]), int(r[1]), r[2]),
    )
    calls = []
    for i in range(0, len(flat), 3):
        key, tick, raw_def = _s(flat[i]), int(float(flat[i + 1])), flat[i + 2]
        if not raw_def:
            continue
        try:
            sch = Schedule.from_definition(key, raw_def, tick)
        except (ConfigError, ValueError, KeyError):
            continue  # a corrupt definition cannot be fired; list/remove still show it
        job_id = tick_job_id(key, tick)
        calls.append(
            Call(
                "sched_fire",
                [
                    keys.repeat,
                    keys.stream,
                    keys.job(job_id),
                    *(keys.flow_keys() if sch.job_key or sch.priority else ()),
                ],
                [
                    GROUP,
                    key,
                    tick,
                    sch.following(tick, now),
                    job_id,
                    sch.name,
                    sch.data,
                    sch.options,
                    sch.job_key,
                    sch.priority,
                ],
                int,
            )
        )
    fired = 0
    if calls:
        results = yield calls
        fired = sum(results)
    wait = -1.0 if nxt < 0 else max((nxt - now) / 1000, 0.0)
    return fired, (0.0 if len(flat) // 3 >= limit else wait)


def schedules_page(keys: QueueKeys, offset: int, limit: int) -> Flow[tuple[list[Schedule], int]]:
    """``limit`` repeating schedules of one queue after the first ``offset``, soonest tick
    first, and how many there are: two round trips, whatever the number of schedules."""
    ticks, total = yield [
        raw("ZRANGE", keys.repeat, offset, offset + limit - 1, "WITHSCORES"),
        raw("ZCARD", keys.repeat, parse=int),
    ]
    pairs = [(_s(m), int(float(sc))) for m, sc in score_pairs(ticks)]
    if not pairs:
        return [], total
    defs = yield raw("HMGET", keys.repeat_defs, *(k for k, _ in pairs))
    # A tick without a definition is a schedule being removed right now: skip it.
    return [
        Schedule.from_definition(k, d, tick) for (k, tick), d in zip(pairs, defs, strict=True) if d
    ], total


# ---------------------------------------------------------------------------- input


def as_ms(every: float | timedelta) -> int:
    """Seconds or timedelta -> ms (at most :data:`~streamq.job.MAX_DELAY_S`)."""
    try:
        seconds = every.total_seconds() if isinstance(every, timedelta) else float(every)
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(
            f"every must be a number of seconds or a timedelta, got {every!r}"
        ) from None
    if not math.isfinite(seconds) or not 0 <= seconds <= MAX_DELAY_S:
        raise ConfigError(
            f"every must be a finite number of seconds within [1, {MAX_DELAY_S}], got {seconds}"
        )
    return int(seconds * 1000)


def aware(dt: datetime) -> datetime:
    """Refuse naive datetimes (ambiguous); pass aware ones through."""
    if dt.tzinfo is None:
        raise ConfigError("datetimes must be timezone-aware")
    return dt.astimezone(UTC)
