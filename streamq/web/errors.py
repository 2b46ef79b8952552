"""Error messages safe to put in an HTTP answer: streamq's own messages (which name no
secret), else just the exception type, with any credential that slipped in masked, and the
server's address masked too (an HTTP client has no business knowing where Redis lives)."""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import quote

from streamq.config import Settings
from streamq.errors import StreamQError

__all__ = ["BadRequest", "safe_error", "secrets_of"]


class BadRequest(Exception):
    """A query parameter or path segment the API cannot use (answered with 400); the
    message names the parameter and the value received."""


def secrets_of(settings: Settings) -> list[str]:
    """The strings an answer must never contain: the password, the URLs carrying it, and the
    address streamq's own messages name (``RedisSettings.describe()``: scheme, host, port,
    db), whether or not a password is set."""
    r = settings.redis
    values = [r.password, r.url, r.to_url(), r.describe()]
    if r.password:
        values.append(quote(r.password, safe=""))
    return [v for v in values if v]


def safe_error(exc: BaseException, secrets: Sequence[str] = ()) -> str:
    """A message for an HTTP answer: streamq's own messages (which name no secret), else
    just the exception type; any of ``secrets`` that slipped in anyway is masked."""
    if isinstance(exc, StreamQError):
        message = str(exc) or type(exc).__name__
    elif isinstance(exc, TimeoutError):
        message = "Redis did not answer in time"
    else:
        message = f"unexpected error ({type(exc).__name__})"
    for secret in sorted(secrets, key=len, reverse=True):
        message = message.replace(secret, "***")
    return message
