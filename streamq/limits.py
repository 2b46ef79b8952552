"""Flow-control limits of a queue, as plain data: :class:`Limit`, its validation, and the
parsing of the ``50/15m`` rate form the CLI and the API take. No I/O; storing and reading
limits is :mod:`streamq.protocol.limits`, running it :class:`streamq.admin.Admin`.

A limit applies to the keyed jobs of one queue whose key matches ``pattern``, a glob where
only ``*`` is special (any run of characters; ``*`` alone matches every keyed job):

* ``shared=False`` (*each*): every matching key has its own budget (per connection);
* ``shared=True``: all matching keys share one budget (per platform app).

``rate`` jobs per ``period_ms`` is an exact sliding window on the Redis clock: at most
``rate`` starts in any window of that length. ``concurrency`` (each limits only) is the most
jobs of one key admitted and unfinished at once, fleet-wide.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal, get_args

from streamq.errors import ConfigError

__all__ = [
    "FLOW_MODES",
    "MAX_PATTERN_CHARS",
    "MAX_PERIOD_MS",
    "MAX_RATE",
    "FlowMode",
    "Limit",
    "check_mode",
    "format_duration",
    "parse_duration",
    "parse_rate",
    "period_ms_of",
    "rule_id",
]

#: The longest rate window (30 days), the same bound as a retry's backoff.
MAX_PERIOD_MS = 30 * 24 * 3600 * 1000
#: The most starts a rate may allow per window: the sliding log keeps one entry per start
#: (about 60 bytes), so this bounds a bucket's memory to a few MB.
MAX_RATE = 100_000
#: Longest key pattern (a job key is at most 200 characters too).
MAX_PATTERN_CHARS = 200

FlowMode = Literal["strict", "weighted"]
#: Priority modes of a queue: ``strict`` (higher priority always first, the default) or
#: ``weighted`` (lower levels get a share of the turns, so they are never starved).
FLOW_MODES: tuple[str, ...] = get_args(FlowMode)

# The characters of a job key, plus the wildcard.
_PATTERN_OK = re.compile(r"[A-Za-z0-9_.:\-@/+=#*]")
_UNITS_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)?\s*([smhd])?\s*$")


def _check_pattern(pattern: object) -> str:
    if not isinstance(pattern, str) or not pattern:
        raise ConfigError(f"limit pattern must be a non-empty string, got {pattern!r}")
    if len(pattern) > MAX_PATTERN_CHARS:
        raise ConfigError(
            f"limit pattern is {len(pattern)} characters long: at most {MAX_PATTERN_CHARS}"
        )
    for i, ch in enumerate(pattern):
        if not _PATTERN_OK.match(ch):
            raise ConfigError(
                f"limit pattern {pattern!r}: character {ch!r} at position {i} is not allowed; "
                "use A-Z a-z 0-9 _ . : - @ / + = # and * (any run of characters)"
            )
    return pattern


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True, slots=True)
class Limit:
    """One rule: at most ``rate`` starts per ``period_ms`` and/or at most ``concurrency``
    running jobs, for the keys matching ``pattern`` (each key its own budget, or one budget
    for all when ``shared``). Invalid combinations raise :class:`ConfigError` naming the
    bad part."""

    pattern: str
    rate: int | None = None
    period_ms: int | None = None
    concurrency: int | None = None
    shared: bool = False

    def __post_init__(self) -> None:
        _check_pattern(self.pattern)
        where = f"limit {self.pattern!r}"
        if not isinstance(self.shared, bool):
            raise ConfigError(f"{where}: shared must be true or false, got {self.shared!r}")
        if (self.rate is None) != (self.period_ms is None):
            raise ConfigError(f"{where}: a rate needs a period and a period needs a rate")
        if self.rate is not None:
            if not _is_int(self.rate) or not 1 <= self.rate <= MAX_RATE:
                raise ConfigError(
                    f"{where}: rate must be an integer from 1 to {MAX_RATE:,} "
                    f"(the window keeps one entry per start), got {self.rate!r}"
                )
            period = self.period_ms
            if not isinstance(period, int) or isinstance(period, bool):
                period = -1
            if not 0 < period <= MAX_PERIOD_MS:
                raise ConfigError(
                    f"{where}: period must be more than 0 and at most 30 days, "
                    f"got {self.period_ms!r} ms"
                )
        if self.concurrency is not None:
            if self.shared:
                raise ConfigError(
                    f"{where}: concurrency applies to each key, not to a shared limit "
                    "(set it on a limit without shared)"
                )
            if not _is_int(self.concurrency) or self.concurrency < 1:
                raise ConfigError(
                    f"{where}: concurrency must be an integer >= 1, got {self.concurrency!r}"
                )
        if self.rate is None and self.concurrency is None:
            raise ConfigError(f"{where}: give a rate (N per period), a concurrency, or both")

    @property
    def period(self) -> float | None:
        """The rate window in seconds (None without a rate)."""
        return None if self.period_ms is None else self.period_ms / 1000

    @property
    def rule_id(self) -> str:
        """The field of the limits hash: ``each|<pattern>`` or ``shared|<pattern>``."""
        return rule_id(self.pattern, self.shared)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: the stored fields plus ``period`` in seconds."""
        return {
            "pattern": self.pattern,
            "shared": self.shared,
            "rate": self.rate,
            "period_ms": self.period_ms,
            "period": self.period,
            "concurrency": self.concurrency,
        }

    def describe(self) -> str:
        """``50 per 15m, 1 at a time`` (for people)."""
        parts = []
        if self.rate is not None and self.period_ms is not None:
            parts.append(f"{self.rate} per {format_duration(self.period_ms)}")
        if self.concurrency is not None:
            parts.append(f"{self.concurrency} at a time")
        return ", ".join(parts)


def rule_id(pattern: str, shared: bool) -> str:
    """The id a rule is stored under: ``each|<pattern>`` or ``shared|<pattern>`` (one rule
    of each kind per pattern)."""
    return f"{'shared' if shared else 'each'}|{pattern}"


def period_ms_of(per: float | timedelta, what: str = "per") -> int:
    """A rate window given as seconds or a :class:`~datetime.timedelta`, in whole ms
    (ConfigError when it is not more than 0 ms nor at most 30 days)."""
    if isinstance(per, timedelta):
        seconds = per.total_seconds()
    elif isinstance(per, int | float) and not isinstance(per, bool):
        seconds = float(per)
    else:
        raise ConfigError(f"{what} must be seconds or a timedelta, got {per!r}")
    if not math.isfinite(seconds) or seconds <= 0:
        raise ConfigError(f"{what} must be more than 0 seconds, got {per!r}")
    ms = round(seconds * 1000)
    if ms < 1 or ms > MAX_PERIOD_MS:
        raise ConfigError(f"{what} must be between 1 ms and 30 days, got {seconds:g} s")
    return ms


def parse_duration(text: str, what: str = "period") -> float:
    """``900``, ``15m``, ``1.5h``, ``2d``, ``s`` (one second) as seconds; units s m h d."""
    m = _DURATION.match(text)
    if not m or (m.group(1) is None and m.group(2) is None):
        raise ConfigError(
            f"{what} {text!r} is not a duration: use a number of seconds or a number with "
            "a unit s, m, h or d (900, 15m, 1h, 1d)"
        )
    number = float(m.group(1)) if m.group(1) is not None else 1.0
    return number * _UNITS_S[m.group(2) or "s"]


def parse_rate(text: str) -> tuple[int, float]:
    """``50/15m`` -> (50, 900.0); ``10/s`` -> (10, 1.0). ConfigError with the expected form."""
    count, sep, per = text.partition("/")
    if not sep:
        raise ConfigError(f"rate {text!r} has no period: write it as N/PERIOD, like 50/15m")
    try:
        rate = int(count.strip())
    except ValueError:
        raise ConfigError(
            f"rate {text!r}: {count.strip()!r} is not a whole number of jobs (like 50/15m)"
        ) from None
    if rate < 1:
        raise ConfigError(f"rate {text!r}: the number of jobs must be >= 1")
    return rate, parse_duration(per, f"rate {text!r}: period")


def format_duration(ms: int) -> str:
    """``900000`` -> ``15m``; the largest unit that divides it, else seconds or ms."""
    if ms % 1000:
        return f"{ms}ms"
    seconds = ms // 1000
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def check_mode(mode: object) -> str:
    """``mode`` if it is a flow mode (:data:`FLOW_MODES`), else ConfigError."""
    if mode not in FLOW_MODES:
        raise ConfigError(f"flow mode must be one of {', '.join(FLOW_MODES)}, got {mode!r}")
    return str(mode)
