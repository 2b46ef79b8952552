"""The worker's structured log events (queued, processing, completed, failed, retrying, dead,
worker and supervisor lifecycle), rendered one line each as JSON or as human-readable text.

``configure_logging(level, fmt)`` picks the rendering once: ``json`` (one object a line, for
log shippers), ``text`` (``time level event key=value ...``, the level coloured on a
terminal unless ``NO_COLOR`` is set) or ``auto`` (text when the stream is a TTY, else JSON).
:func:`log_event` stays a single level check when the level is disabled: the choice costs
nothing per event.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from typing import IO, Any

import orjson

__all__ = [
    "LOG_FORMATS",
    "JsonFormatter",
    "TextFormatter",
    "configure_logging",
    "log_event",
    "logger",
    "resolve_format",
    "use_color",
]

logger = logging.getLogger("streamq")

#: Choices of ``--log-format`` (and ``STREAMQ_LOG_FORMAT``).
LOG_FORMATS = ("auto", "json", "text")

_STD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    """The event's own fields: those given to :func:`log_event`, then any ``extra``."""
    out: dict[str, Any] = {}
    fields = record.__dict__.get("sq")
    if isinstance(fields, dict):
        out.update(fields)  # carried under one key: LogRecord reserves 'name' etc.
    for k, v in record.__dict__.items():
        if k not in _STD and k != "sq":
            out[k] = v
    return out


class JsonFormatter(logging.Formatter):
    """Render a record as one JSON object: ts, level, event, then the extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "event": record.getMessage(),
        }
        out.update(_fields(record))
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


# A value shown bare in text lines; anything else (spaces, quotes, '=', control characters,
# escape sequences from a job's error message, non-ASCII) is JSON-quoted, so one event stays
# one line and cannot repaint the terminal.
_BARE = re.compile(r"[\w.:/@+,%-]+", re.ASCII)
_RESET = "\x1b[0m"
_LEVEL_COLOURS = {
    "DEBUG": "\x1b[2m",  # dim
    "INFO": "\x1b[32m",  # green
    "WARNING": "\x1b[33m",  # yellow
    "ERROR": "\x1b[31m",  # red
    "CRITICAL": "\x1b[1;31m",  # bold red
}
_BOLD = "\x1b[1m"
_DIM = "\x1b[2m"


def _text_value(value: Any) -> str:
    if isinstance(value, str):
        return value if _BARE.fullmatch(value) else orjson.dumps(value).decode()
    if isinstance(value, bool) or value is None:
        return orjson.dumps(value).decode()
    if isinstance(value, int | float):
        return repr(value)
    return orjson.dumps(value, default=str).decode()


class TextFormatter(logging.Formatter):
    """Render a record for people: ``2026-01-31 09:00:00.123 INFO [pid] event key=value ...``.

    Local time (a terminal's reader thinks in it; JSON lines keep UTC); fields whose value
    is None are left out (JSON lines keep them). The pid tells the processes of
    ``--processes N`` apart. ``color=True`` colours the level and emboldens the event with
    ANSI escapes; values never carry raw escapes (see ``_BARE``).
    """

    def __init__(self, *, color: bool = False) -> None:
        super().__init__()
        self.color = color

    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.created))
        level = f"{record.levelname:<7}"
        event = record.getMessage()
        if not _BARE.fullmatch(event):
            event = orjson.dumps(event).decode()
        key = f"{_DIM}{{}}={_RESET}" if self.color else "{}="
        pairs = " ".join(
            key.format(k) + _text_value(v) for k, v in _fields(record).items() if v is not None
        )
        if self.color:
            level = f"{_LEVEL_COLOURS.get(record.levelname, '')}{level}{_RESET}"
            event = f"{_BOLD}{event}{_RESET}"
        line = f"{ts}.{int(record.msecs):03d} {level} [{record.process}] {event}"
        if pairs:
            line += " " + pairs
        if record.exc_info:
            # A traceback is many lines by nature; only its escape characters are defused.
            line += "\n" + self.formatException(record.exc_info).replace("\x1b", "\\x1b")
        return line


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def resolve_format(fmt: str, stream: IO[str]) -> str:
    """``json`` or ``text`` for a ``--log-format`` choice: ``auto`` means text when
    ``stream`` is a terminal, JSON otherwise (a pipe, a file, a log collector)."""
    if fmt not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}, not {fmt!r}")
    if fmt == "auto":
        return "text" if _isatty(stream) else "json"
    return fmt


def use_color(stream: IO[str], env: dict[str, str] | None = None) -> bool:
    """Colour for text lines: only on a terminal, and never when ``NO_COLOR`` is set to
    anything non-empty (https://no-color.org)."""
    env = dict(os.environ) if env is None else env
    return _isatty(stream) and not env.get("NO_COLOR")


def configure_logging(level: str = "info", fmt: str = "json", stream: IO[str] | None = None) -> str:
    """Send streamq's logs to ``stream`` (default stderr) as JSON lines or text (``fmt``:
    ``json``, ``text`` or ``auto``, see :func:`resolve_format`); returns the format used.
    The worker process entry calls this."""
    out = sys.stderr if stream is None else stream
    chosen = resolve_format(fmt, out)
    handler = logging.StreamHandler(out)
    formatter: logging.Formatter
    formatter = TextFormatter(color=use_color(out)) if chosen == "text" else JsonFormatter()
    handler.setFormatter(formatter)
    logger.handlers[:] = [handler]
    logger.setLevel(level.upper())
    logger.propagate = False
    return chosen


def log_event(event: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log one transition; cheap when the level is disabled."""
    if logger.isEnabledFor(level):
        logger.log(level, event, extra={"sq": fields})
