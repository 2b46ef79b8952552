"""The entry point :func:`main`: hand delegates over, parse, run the handler, and turn
errors into messages and exit codes."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import TextIO
from urllib.parse import urlsplit

from redis.exceptions import InvalidResponse, RedisError

from streamq.cli.context import EXIT_NOT_FOUND, EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE, Context
from streamq.cli.delegates import _delegate, _exit_code, _split_delegate
from streamq.cli.parser import build_parser
from streamq.errors import (
    AuthenticationFailedError,
    ConfigError,
    ConnectionFailedError,
    JobNotFoundError,
    PayloadError,
    StreamQError,
)


def _fail(ctx_err: TextIO, message: str, code: int) -> int:
    print(f"error: {message}", file=ctx_err)
    return code


def _dispatch(ctx: Context) -> int:
    try:
        handler: Callable[[Context], int] = ctx.args.handler
        return handler(ctx)
    except JobNotFoundError as exc:
        return _fail(ctx.err, str(exc), EXIT_NOT_FOUND)
    except ConnectionFailedError as exc:
        return _fail(ctx.err, str(exc), EXIT_UNREACHABLE)
    except (ConfigError, PayloadError, AuthenticationFailedError) as exc:
        return _fail(ctx.err, str(exc), EXIT_USAGE)
    except StreamQError as exc:
        return _fail(ctx.err, str(exc), EXIT_NOT_FOUND)
    except InvalidResponse:
        where = ctx.settings.redis.describe()
        return _fail(ctx.err, f"{where} does not speak the Redis protocol", EXIT_UNREACHABLE)
    except RedisError as exc:
        return _fail(ctx.err, f"Redis answered: {exc}", EXIT_NOT_FOUND)
    finally:
        ctx.close()


def _carries_password(url: str) -> bool:
    """True when ``url`` holds a password: in its user part or a ``sentinel_password``."""
    parts = urlsplit(url)
    return ":" in parts.netloc.rpartition("@")[0] or "sentinel_password=" in parts.query


def _warn_password_in_argv(url: str | None) -> None:
    """Anyone on the machine can read a process's arguments (``ps``, /proc): say so, never
    quoting the secret, and go on (a script that passes one keeps working)."""
    if url is not None and _carries_password(url):
        print(
            "streamq: warning: the --url password is visible to every user of this machine "
            "in the process list; set REDIS_URL (or REDIS_PASSWORD) in the environment instead",
            file=sys.stderr,
        )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``streamq`` command with ``argv`` (default ``sys.argv[1:]``); returns the
    exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    opts, delegate, rest = _split_delegate(args_list)
    if delegate is not None:
        _warn_password_in_argv(opts.get("--url"))
        # The delegates read the environment; global options given before them apply.
        if "--url" in opts:
            os.environ["REDIS_URL"] = opts["--url"]
        if "--prefix" in opts:
            os.environ["STREAMQ_PREFIX"] = opts["--prefix"]
        return _delegate(delegate, rest)
    parser = build_parser()
    try:
        args = parser.parse_args(args_list)
    except SystemExit as exc:
        return _exit_code(exc.code)
    if getattr(args, "handler", None) is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    _warn_password_in_argv(getattr(args, "url", None))
    try:
        return _dispatch(Context(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # Output piped into `head` and closed early. Point stdout at /dev/null so the flush
        # at interpreter exit does not fail again (the recipe of the `signal` docs).
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
