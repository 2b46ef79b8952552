"""Every exception streamq raises, in one tree.

::

    StreamQError
    ├── ConfigError              a setting is missing or malformed (names the variable)
    ├── PayloadError             a payload cannot be encoded, or is too large; nothing was written
    ├── QueueFullError           Redis refused a write (OOM under ``noeviction``)
    ├── ServerError              the server is unusable (too old, lacks a needed command)
    ├── ConnectionFailedError    Redis could not be reached within the retry budget
    ├── AuthenticationFailedError  the server refused the credentials (never echoes them)
    ├── JobNotFoundError         no job record with that id
    ├── InvalidStateError        the job is not in a state that allows the operation
    ├── WaitTimeoutError         a job did not finish within the wait timeout
    ├── ScriptError              a Lua script answered with an unexpected error code
    ├── DurabilityError          WAITAOF did not confirm the fsync (the job may still exist)
    ├── PermanentJobError        raised by a handler: fail now, no retries (dead-lettered)
    ├── RateLimited              raised by a handler: wait, then run again; no attempt used
    └── RetryJobError            raised by a handler: fail this attempt, retry after a given delay
"""

from __future__ import annotations

import math

__all__ = [
    "AuthenticationFailedError",
    "ConfigError",
    "ConnectionFailedError",
    "DurabilityError",
    "InvalidStateError",
    "JobNotFoundError",
    "PayloadError",
    "PermanentJobError",
    "QueueFullError",
    "RateLimited",
    "RetryJobError",
    "ScriptError",
    "ServerError",
    "StreamQError",
    "WaitTimeoutError",
]


class StreamQError(Exception):
    """Root of every streamq exception."""


class ConfigError(StreamQError):
    """A configuration value is missing or malformed; the message names the variable."""


class PayloadError(StreamQError):
    """A job payload cannot be serialised to JSON or exceeds the size limit."""


class QueueFullError(StreamQError):
    """Redis is out of memory (``maxmemory`` under ``noeviction``) and refused the write."""


class ServerError(StreamQError):
    """The Redis server cannot be used (too old, or missing a command streamq needs)."""


class ConnectionFailedError(StreamQError):
    """Redis could not be reached within the configured retry budget."""


class AuthenticationFailedError(StreamQError):
    """The server refused the credentials. The message names the setting, never the secret."""


class JobNotFoundError(StreamQError):
    """No job record exists with the given id (never enqueued, or removed by retention)."""


class InvalidStateError(StreamQError):
    """The job's current state does not allow the requested operation."""

    def __init__(self, message: str, state: str | None = None) -> None:
        super().__init__(message)
        self.state = state


class WaitTimeoutError(StreamQError):
    """The job did not reach an end state within the timeout."""


class ScriptError(StreamQError):
    """A Lua script returned an error code the client does not know."""


class PermanentJobError(StreamQError):
    """Raise from a handler when retrying cannot help (e.g. invalid job data): the job goes
    straight to the dead-letter stream with reason ``permanent``."""


class RetryJobError(StreamQError):
    """Raise from a handler to fail this attempt and retry after ``delay`` seconds instead
    of the backoff policy's wait: e.g. ``raise RetryJobError("HTTP 429", delay=retry_after)``
    with the ``Retry-After`` a remote API answered. The attempt counts against
    ``max_retries`` like any failure; past it the job is dead. ``delay`` is capped at the
    longest backoff (30 days)."""

    def __init__(self, message: str = "", *, delay: float) -> None:
        if (
            not isinstance(delay, int | float)
            or isinstance(delay, bool)
            or not math.isfinite(delay)
            or delay < 0
        ):
            raise ConfigError(f"RetryJobError delay must be a finite number >= 0, got {delay!r}")
        super().__init__(message)
        self.delay = float(delay)


class RateLimited(StreamQError):
    """Raise from a handler when a remote API says "too early" (an HTTP 429 with its
    ``Retry-After``): the job waits ``retry_after`` seconds and runs again **without using
    an attempt**. ``key_wide=True`` holds every job of the job's key (flow control) until
    then, this one first; a job without a key waits alone. ``retry_after`` is capped at 30
    days."""

    def __init__(self, message: str = "", *, retry_after: float, key_wide: bool = False) -> None:
        if (
            not isinstance(retry_after, int | float)
            or isinstance(retry_after, bool)
            or not math.isfinite(retry_after)
            or retry_after < 0
        ):
            raise ConfigError(
                f"RateLimited retry_after must be a finite number >= 0, got {retry_after!r}"
            )
        super().__init__(message)
        self.retry_after = float(retry_after)
        self.key_wide = bool(key_wide)


class DurabilityError(StreamQError):
    """A durable enqueue was written but WAITAOF did not confirm the fsync (locally, or on
    the requested replicas) within the timeout. The jobs may still be there: ``job_ids``
    names them, so the caller can check or re-enqueue with the same ids (deduplicated)."""

    def __init__(self, message: str, job_ids: list[str]) -> None:
        super().__init__(message)
        self.job_ids = job_ids
