"""What a command runs with and what it returns: the exit codes, :class:`Context` (parsed
arguments, settings, an :class:`Admin` made on first use, the output streams) and the rule
that an empty listing exits 1."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

import orjson
from redis.connection import parse_url

from streamq.admin import Admin
from streamq.cli.output import _json_default
from streamq.config import Settings, check_prefix
from streamq.errors import ConfigError

EXIT_OK = 0
EXIT_NOT_FOUND = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3


@dataclass
class Context:
    """What a command needs: parsed arguments, settings, an :class:`Admin` made on first use,
    and the output streams."""

    args: argparse.Namespace
    out: TextIO = field(default_factory=lambda: sys.stdout)
    err: TextIO = field(default_factory=lambda: sys.stderr)
    _settings: Settings | None = None
    _admin: Admin | None = None

    @property
    def json(self) -> bool:
        """True when ``--json`` was given."""
        return bool(getattr(self.args, "json", False))

    @property
    def settings(self) -> Settings:
        """Settings from the environment, with ``--url`` and ``--prefix`` applied."""
        if self._settings is None:
            self._settings = _settings(self.args)
        return self._settings

    @property
    def admin(self) -> Admin:
        """The shared :class:`Admin` (one connection pool per command)."""
        if self._admin is None:
            self._admin = Admin(settings=self.settings, retry_attempts=1)
        return self._admin

    def emit_json(self, value: Any) -> None:
        """Print ``value`` as indented JSON on stdout."""
        text = orjson.dumps(value, default=_json_default, option=orjson.OPT_INDENT_2)
        print(text.decode(), file=self.out)

    def say(self, text: str) -> None:
        """Print one line of human output."""
        print(text, file=self.out)

    def close(self) -> None:
        """Release the connection pool, if one was made."""
        if self._admin is not None:
            self._admin.close()


def _settings(args: argparse.Namespace) -> Settings:
    # --url replaces where to connect; timeouts and TLS files still come from the env.
    url = getattr(args, "url", None)
    settings = Settings.resolve(url)
    prefix = getattr(args, "prefix", None)
    if prefix is not None:
        settings = settings.with_changes(prefix=check_prefix(prefix, "--prefix"))
    try:
        # Cluster and sentinel URLs were checked by RedisSettings (redis-py has no parser).
        if settings.redis.mode == "single":
            parse_url(settings.redis.to_url())  # type: ignore[no-untyped-call]
        settings.redis.describe()
    except ValueError:
        # redis-py's and urllib's messages may quote parts of the URL: never echo it.
        where = "--url" if url is not None else "REDIS_URL"
        raise ConfigError(
            f"{where} is malformed: expected redis://[[user]:password@]host[:port][/db], "
            "rediss://..., unix://..., redis+cluster://host:port[,host:port...] or "
            "redis+sentinel://host:port[,host:port...]/service[/db]"
        ) from None
    return settings


def _listing(ctx: Context, items: Sequence[Any], json_value: Any, human: Callable[[], None]) -> int:
    """Print a listing; exit 1 when it is empty (so scripts can test for "anything there")."""
    if ctx.json:
        ctx.emit_json(json_value)
    elif items:
        human()
    return EXIT_OK if items else EXIT_NOT_FOUND
