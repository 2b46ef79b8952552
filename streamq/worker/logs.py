"""One JSON line per job transition (queued, processing, completed, failed, retrying, dead)."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import orjson

__all__ = ["JsonFormatter", "configure_logging", "log_event", "logger"]

logger = logging.getLogger("streamq")

_STD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """Render a record as one JSON object: ts, level, event, then the extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "event": record.getMessage(),
        }
        fields = record.__dict__.get("sq")
        if isinstance(fields, dict):
            out.update(fields)  # carried under one key: LogRecord reserves 'name' etc.
        for k, v in record.__dict__.items():
            if k not in _STD and k != "sq":
                out[k] = v
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


def configure_logging(level: str = "info") -> None:
    """Send streamq's logs to stderr as JSON lines (the worker process entry calls this)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    logger.handlers[:] = [handler]
    logger.setLevel(level.upper())
    logger.propagate = False


def log_event(event: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log one transition; cheap when the level is disabled."""
    if logger.isEnabledFor(level):
        logger.log(level, event, extra={"sq": fields})
