"""Settings of the web app, from the environment.

* ``STREAMQ_API_TOKEN`` — the bearer token every ``/api`` route requires. Without one the
  app refuses to start, unless ``STREAMQ_WEB_ALLOW_NO_TOKEN=1`` says to serve without
  authentication (local experiments only).
* ``STREAMQ_HEALTH_QUEUES`` — the queues ``GET /api/queue/health`` reports, as
  ``alias=queue`` pairs separated by commas (a bare ``queue`` is its own alias). Default:
  ``dispatch=distribution:dispatch,scheduled=distribution:scheduled,``
  ``tokenRefresh=distribution:token-refresh`` — the queues of the first user; plain
  configuration, no code of that user.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from streamq.config import Settings
from streamq.errors import ConfigError
from streamq.protocol.keys import validate_queue_name

__all__ = ["DEFAULT_HEALTH_QUEUES", "WebSettings", "parse_queue_map"]

TOKEN_ENV = "STREAMQ_API_TOKEN"
ALLOW_NO_TOKEN_ENV = "STREAMQ_WEB_ALLOW_NO_TOKEN"
QUEUES_ENV = "STREAMQ_HEALTH_QUEUES"

DEFAULT_HEALTH_QUEUES: Mapping[str, str] = {
    "dispatch": "distribution:dispatch",
    "scheduled": "distribution:scheduled",
    "tokenRefresh": "distribution:token-refresh",
}

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def parse_queue_map(raw: str, *, variable: str = QUEUES_ENV) -> dict[str, str]:
    """``"alias=queue,other"`` -> ``{"alias": "queue", "other": "other"}`` (validated)."""
    out: dict[str, str] = {}
    for item in raw.split(","):
        item = item.strip()
        if not item:
            continue
        alias, sep, queue = item.partition("=")
        alias, queue = alias.strip(), (queue.strip() if sep else alias.strip())
        if not alias or not queue:
            raise ConfigError(f"{variable}: bad entry {item!r} (use alias=queue)")
        try:
            validate_queue_name(queue)
        except ConfigError as exc:
            raise ConfigError(f"{variable}: {exc}") from None
        if alias in out:
            raise ConfigError(f"{variable}: alias {alias!r} appears twice")
        out[alias] = queue
    if not out:
        raise ConfigError(f"{variable} names no queue")
    return out


def normalise_queues(queues: Mapping[str, str] | Sequence[str]) -> dict[str, str]:
    """A mapping alias -> queue from a mapping or a list of queue names (validated)."""
    pairs = list(queues.items()) if isinstance(queues, Mapping) else [(q, q) for q in queues]
    if not pairs:
        raise ConfigError("the health check needs at least one queue")
    out: dict[str, str] = {}
    for alias, queue in pairs:
        if not isinstance(alias, str) or not alias:
            raise ConfigError(f"queue alias must be a non-empty string, got {alias!r}")
        out[alias] = validate_queue_name(queue)
    return out


@dataclass(frozen=True)
class WebSettings:
    """What the web app needs besides the engine :class:`~streamq.config.Settings`.
    ``repr`` never shows the token."""

    api_token: str | None = field(default=None, repr=False)
    allow_no_token: bool = False
    queues: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_HEALTH_QUEUES))
    engine: Settings = field(default_factory=Settings)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> WebSettings:
        """Read the ``STREAMQ_API_TOKEN``, ``STREAMQ_WEB_ALLOW_NO_TOKEN`` and
        ``STREAMQ_HEALTH_QUEUES`` variables (and the engine's)."""
        env = os.environ if env is None else env
        token = (env.get(TOKEN_ENV) or "").strip() or None
        raw_allow = (env.get(ALLOW_NO_TOKEN_ENV) or "").strip().lower()
        if raw_allow not in _TRUE | _FALSE:
            raise ConfigError(f"{ALLOW_NO_TOKEN_ENV} must be a boolean (true/false/1/0)")
        raw_queues = env.get(QUEUES_ENV)
        queues = (
            parse_queue_map(raw_queues)
            if raw_queues and raw_queues.strip()
            else dict(DEFAULT_HEALTH_QUEUES)
        )
        return cls(token, raw_allow in _TRUE, queues, Settings.from_env(env))

    def check(self) -> None:
        """Refuse to serve without a token unless explicitly allowed."""
        if self.api_token is None and not self.allow_no_token:
            raise ConfigError(
                f"{TOKEN_ENV} is not set: the web app will not serve its API without "
                f"authentication (set {TOKEN_ENV}, e.g. to the output of "
                f"`openssl rand -hex 32`, or {ALLOW_NO_TOKEN_ENV}=1 for a local experiment)"
            )
