"""Output of the ``streamq`` command: durations and times, aligned tables, key/value records,
JSON encoding, and a progress counter on stderr. Nothing here talks to Redis; URLs are only
ever shown through ``RedisSettings.describe()`` and ``Admin.where``, which leave credentials
out."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TextIO

import orjson

from streamq.scheduler import Schedule

if TYPE_CHECKING:
    from streamq.cli.context import Context


def _duration(ms: int | float | None) -> str:
    """``850ms``, ``4.2s``, ``3m12s``, ``2h05m``, ``3d04h``; ``-`` for None."""
    if ms is None:
        return "-"
    ms = max(float(ms), 0.0)
    if ms < 1000:
        return f"{ms:.0f}ms"
    s = ms / 1000
    if s < 60:
        return f"{s:.1f}s"
    m, s = divmod(int(s), 60)
    if m < 60:
        return f"{m}m{s:02d}s"
    h, m = divmod(m, 60)
    if h < 24:
        return f"{h}h{m:02d}m"
    d, h = divmod(h, 24)
    return f"{d}d{h:02d}h"


def _relative(ms: int | None, now_ms: int) -> str:
    """``12s ago`` / ``in 4.0s`` relative to the Redis clock; ``-`` for None."""
    if ms is None:
        return "-"
    delta = now_ms - ms
    return f"{_duration(delta)} ago" if delta >= 0 else f"in {_duration(-delta)}"


def _timestamp(ms: int | None, now_ms: int) -> str:
    """ISO time (UTC) and its distance from now."""
    if ms is None:
        return "-"
    at = datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    return f"{at}Z ({_relative(ms, now_ms)})"


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _short(text: str | None, width: int = 60) -> str:
    line = " ".join((text or "").split())
    return line if len(line) <= width else line[: width - 1] + "…"


def _is_number(text: str) -> bool:
    return text == "-" or text.replace(".", "", 1).lstrip("-").isdigit()


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], out: TextIO) -> None:
    """Print an aligned table: numeric columns right-aligned, ``-`` for missing values."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    numeric = [bool(cells) and all(_is_number(r[i]) for r in cells) for i in range(len(headers))]

    def fmt(row: Sequence[str]) -> str:
        parts = [
            c.rjust(w) if num else c.ljust(w)
            for c, w, num in zip(row, widths, numeric, strict=True)
        ]
        return "  ".join(parts).rstrip()

    print(fmt(headers), file=out)
    for row in cells:
        print(fmt(row), file=out)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, bytes):
        return obj.decode("utf-8", errors="replace")
    if isinstance(obj, Schedule):
        return _schedule_dict(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__}")


def _schedule_dict(s: Schedule) -> dict[str, Any]:
    try:
        data = s.data_value
    except orjson.JSONDecodeError:
        data = s.data.decode("utf-8", errors="replace")
    return {
        "key": s.key,
        "name": s.name,
        "data": data,
        "every_ms": s.every_ms,
        "cron": s.cron,
        "tz": s.tz,
        "next_tick_ms": s.next_tick_ms,
    }


def _fields(ctx: Context, pairs: Sequence[tuple[str, Any]]) -> None:
    width = max(len(k) for k, _ in pairs)
    for key, value in pairs:
        ctx.say(f"{key.ljust(width)}  {_cell(value)}")


def _block(ctx: Context, title: str, text: str | None) -> None:
    if text:
        ctx.say(f"{title}:")
        for line in text.rstrip("\n").splitlines():
            ctx.say(f"  {line}")


def _data_text(data: Any) -> str:
    return orjson.dumps(data, default=_json_default).decode()


class Progress:
    """``done/total`` on stderr: rewritten in place on a terminal, a line a second otherwise."""

    def __init__(self, what: str, total: int, err: TextIO) -> None:
        self.what, self.total, self.err = what, total, err
        self.tty = err.isatty()
        self._last = 0.0

    def __call__(self, done: int) -> None:
        now = time.monotonic()
        if self.tty:
            print(f"\r{self.what}: {done}/{self.total}", end="", file=self.err, flush=True)
        elif now - self._last >= 1.0:
            print(f"{self.what}: {done}/{self.total}", file=self.err, flush=True)
            self._last = now

    def finish(self, done: int) -> None:
        """Print the final count and end the line."""
        end = "\r" if self.tty else ""
        print(f"{end}{self.what}: {done}/{self.total} done", file=self.err, flush=True)
