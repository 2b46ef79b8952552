"""The ``streamq`` command: inspect and steer queues; run a server, a worker or the benchmark.

Connection settings come from the environment (REDIS_URL, or REDIS_HOST, REDIS_PORT,
REDIS_PASSWORD..., and STREAMQ_PREFIX) or from --url and --prefix, given before or after
the command. URLs are shown without credentials. Every read command takes --json
(machine-readable output on stdout); progress of long operations goes to stderr.

exit codes:
  0  success
  1  not found, nothing to show (an empty listing), or the operation failed
  2  usage or configuration error (bad flag, bad --data JSON, bad setting, refused password)
  3  Redis unreachable (refused, timed out, or not speaking the Redis protocol)
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import runpy
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import orjson
from redis.connection import parse_url
from redis.exceptions import InvalidResponse, RedisError

from streamq.admin import LIST_STATES, Admin, JobEntry, QueueInfo, WorkerInfo
from streamq.config import Settings
from streamq.errors import (
    AuthenticationFailedError,
    ConfigError,
    ConnectionFailedError,
    JobNotFoundError,
    PayloadError,
    StreamQError,
)
from streamq.job import Job
from streamq.protocol.ops import EnqueueResult
from streamq.scheduler import Schedule

__all__ = ["EXIT_NOT_FOUND", "EXIT_OK", "EXIT_UNREACHABLE", "EXIT_USAGE", "main"]

EXIT_OK = 0
EXIT_NOT_FOUND = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3

#: Subcommands handed whole to another entry point (their own --help applies).
DELEGATES = ("server", "worker", "bench")
_GLOBAL_WITH_VALUE = ("--url", "--prefix")


# ---------------------------------------------------------------------------- formatting


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


# ---------------------------------------------------------------------------- context


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
    settings = Settings.from_env()
    url = getattr(args, "url", None)
    if url is not None:
        # --url replaces where to connect; timeouts and TLS files still come from the env.
        settings = settings.with_changes(redis=replace(settings.redis, url=url))
    prefix = getattr(args, "prefix", None)
    if prefix is not None:
        if not prefix or any(c in prefix for c in "{}: \t\n"):
            raise ConfigError("--prefix must be non-empty, without braces, colons or spaces")
        settings = settings.with_changes(prefix=prefix)
    try:
        parse_url(settings.redis.to_url())  # type: ignore[no-untyped-call]
        settings.redis.describe()
    except ValueError:
        # redis-py's and urllib's messages may quote parts of the URL: never echo it.
        where = "--url" if url is not None else "REDIS_URL"
        raise ConfigError(
            f"{where} is malformed: expected redis://[[user]:password@]host[:port][/db], "
            "rediss://... or unix://..."
        ) from None
    return settings


def _listing(ctx: Context, items: Sequence[Any], json_value: Any, human: Callable[[], None]) -> int:
    """Print a listing; exit 1 when it is empty (so scripts can test for "anything there")."""
    if ctx.json:
        ctx.emit_json(json_value)
    elif items:
        human()
    return EXIT_OK if items else EXIT_NOT_FOUND


# ---------------------------------------------------------------------------- commands


def _status_tail(i: QueueInfo) -> tuple[str, int, str]:
    return _duration(i.oldest_waiting_age_ms), i.workers, "paused" if i.paused else "running"


def cmd_status(ctx: Context) -> int:
    """``streamq status [Q ...]``."""
    admin = ctx.admin
    infos: list[QueueInfo] = admin.status(ctx.args.queues or None)

    def human() -> None:
        ctx.say(f"server {admin.where}  prefix {admin.settings.prefix}")
        counts = ("waiting", "active", "delayed", "completed", "failed", "dead")
        rows = [
            [i.queue, *(getattr(i.status, c) for c in counts), i.lag, *_status_tail(i)]
            for i in infos
        ]
        headers = ["QUEUE", *(c.upper() for c in counts), "LAG", "OLDEST", "WORKERS", "STATE"]
        table(headers, rows, ctx.out)

    if not infos and not ctx.json:
        print(f"no queues under prefix {admin.settings.prefix!r}", file=ctx.err)
    return _listing(ctx, infos, [i.as_dict() for i in infos], human)


def _job_row(e: JobEntry, now: int) -> list[Any]:
    j = e.job
    name = j.name if j else "?"
    attempts = j.attempt if j else None
    if e.state == "waiting":
        return [
            e.job_id,
            name,
            attempts,
            e.entry_id,
            _relative(j.created_at_ms if j else None, now),
        ]
    if e.state == "active":
        return [e.job_id, name, e.consumer, attempts, e.deliveries, _duration(e.idle_ms)]
    if e.state == "delayed":
        return [e.job_id, name, attempts, _relative(e.score_ms, now)]
    took = (
        j.finished_at_ms - j.started_at_ms if j and j.finished_at_ms and j.started_at_ms else None
    )
    row = [e.job_id, name, attempts, _relative(e.score_ms, now), _duration(took)]
    if e.state == "failed":
        row += [j.dead_reason if j else None, _short(j.error if j else None)]
    return row


_JOB_HEADERS = {
    "waiting": ["ID", "NAME", "ATTEMPTS", "ENTRY", "ENQUEUED"],
    "active": ["ID", "NAME", "WORKER", "ATTEMPT", "DELIVERIES", "IDLE"],
    "delayed": ["ID", "NAME", "ATTEMPTS", "DUE"],
    "completed": ["ID", "NAME", "ATTEMPTS", "FINISHED", "TOOK"],
    "failed": ["ID", "NAME", "ATTEMPTS", "FINISHED", "TOOK", "REASON", "ERROR"],
}


def cmd_jobs(ctx: Context) -> int:
    """``streamq jobs Q --state S [--limit N]``."""
    a = ctx.args
    entries = ctx.admin.jobs(a.queue, a.state, limit=a.limit)

    def human() -> None:
        now = ctx.admin.server_time_ms()
        table(_JOB_HEADERS[a.state], [_job_row(e, now) for e in entries], ctx.out)

    if not entries and not ctx.json:
        print(f"no {a.state} jobs in {a.queue!r}", file=ctx.err)
    return _listing(ctx, entries, entries, human)


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


def cmd_job(ctx: Context) -> int:
    """``streamq job Q ID``: the full record."""
    a = ctx.args
    job: Job | None = ctx.admin.job(a.queue, a.job_id)
    if job is None:
        raise JobNotFoundError(f"no job {a.job_id!r} in queue {a.queue!r}")
    if ctx.json:
        ctx.emit_json(job)
        return EXIT_OK
    now = ctx.admin.server_time_ms()
    o = job.options
    state = f"{job.state.value} ({job.dead_reason})" if job.dead_reason else job.state.value
    pairs: list[tuple[str, Any]] = [
        ("queue", job.queue),
        ("id", job.id),
        ("name", job.name),
        ("state", state),
        ("attempts", f"{job.attempt} of {o.max_retries + 1}"),
        ("backoff", f"{o.backoff.type} {o.backoff.delay_ms} ms x{o.backoff.factor:g}"),
        ("timeout", _duration(o.timeout_ms) if o.timeout_ms else "none"),
        ("created", _timestamp(job.created_at_ms, now)),
        ("started", _timestamp(job.started_at_ms, now)),
        ("finished", _timestamp(job.finished_at_ms, now)),
        ("due", _timestamp(job.due_at_ms, now)),
        ("worker", job.worker),
        ("entry", job.entry_id),
    ]
    if job.lease_idle_ms is not None:
        pairs += [("idle", _duration(job.lease_idle_ms)), ("deliveries", job.deliveries)]
    pairs += [("data", _data_text(job.data)), ("result", _data_text(job.result))]
    pairs += [("error", job.error)]
    _fields(ctx, pairs)
    _block(ctx, "traceback", job.traceback)
    return EXIT_OK


def cmd_dlq_list(ctx: Context) -> int:
    """``streamq dlq list Q``."""
    a = ctx.args
    entries = ctx.admin.dead_letters(a.queue, limit=a.limit, after=a.after)

    def human() -> None:
        now = ctx.admin.server_time_ms()
        rows = [
            [
                e.dead_id,
                e.job_id,
                e.name,
                e.attempts,
                e.reason,
                _relative(e.failed_at_ms, now),
                _short(e.error, 50),
            ]
            for e in entries
        ]
        headers = ["ENTRY", "JOB", "NAME", "ATTEMPTS", "REASON", "DIED", "ERROR"]
        table(headers, rows, ctx.out)

    if not entries and not ctx.json:
        print(f"the dead-letter queue of {a.queue!r} is empty", file=ctx.err)
    return _listing(ctx, entries, entries, human)


def cmd_dlq_show(ctx: Context) -> int:
    """``streamq dlq show Q ID`` (entry id or job id)."""
    a = ctx.args
    entry = ctx.admin.dead_letter(a.queue, a.ident)
    if entry is None:
        raise JobNotFoundError(f"no dead-letter entry {a.ident!r} in queue {a.queue!r}")
    if ctx.json:
        ctx.emit_json(entry)
        return EXIT_OK
    now = ctx.admin.server_time_ms()
    _fields(
        ctx,
        [
            ("entry", entry.dead_id),
            ("job", entry.job_id),
            ("name", entry.name),
            ("attempts", entry.attempts),
            ("reason", entry.reason),
            ("died", _timestamp(entry.failed_at_ms, now)),
            ("data", _data_text(entry.data)),
            ("error", entry.error),
        ],
    )
    _block(ctx, "traceback", entry.traceback)
    return EXIT_OK


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


def cmd_dlq_retry(ctx: Context) -> int:
    """``streamq dlq retry Q (ID | --all)``."""
    a = ctx.args
    if a.all:
        total = ctx.admin.dead_count(a.queue)
        progress = Progress("replaying", total, ctx.err)
        moved = ctx.admin.retry_all_dead(a.queue, progress=progress) if total else 0
        if total:
            progress.finish(moved)
        if ctx.json:
            ctx.emit_json({"queue": a.queue, "replayed": moved})
        else:
            ctx.say(f"replayed {moved} dead-letter entries of {a.queue!r}")
        return EXIT_OK
    entry = ctx.admin.retry_dead(a.queue, a.ident)
    if ctx.json:
        ctx.emit_json({"queue": a.queue, "replayed": 1, "job_id": entry.job_id})
    else:
        ctx.say(f"replayed job {entry.job_id} (dead-letter entry {entry.dead_id})")
    return EXIT_OK


def cmd_dlq_purge(ctx: Context) -> int:
    """``streamq dlq purge Q [--yes]``: asks first on a terminal, refuses without one."""
    a = ctx.args
    count = ctx.admin.dead_count(a.queue)
    if count and not a.yes:
        if not sys.stdin.isatty():
            print(
                f"error: refusing to purge {count} dead-letter entries of {a.queue!r} "
                "without --yes",
                file=ctx.err,
            )
            return EXIT_USAGE
        answer = input(f"delete {count} dead-letter entries of {a.queue!r}? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("aborted", file=ctx.err)
            return EXIT_NOT_FOUND
    removed = ctx.admin.purge_dead(a.queue) if count else 0
    if ctx.json:
        ctx.emit_json({"queue": a.queue, "purged": removed})
    else:
        ctx.say(f"purged {removed} dead-letter entries of {a.queue!r}")
    return EXIT_OK


def _json_arg(text: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON ({exc})") from None


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def cmd_enqueue(ctx: Context) -> int:
    """``streamq enqueue Q NAME --data JSON [--delay S] [--job-id ID]``."""
    from streamq.producer import Producer

    a = ctx.args
    with Producer(settings=ctx.settings, retry_attempts=1) as producer:
        res: EnqueueResult = producer.enqueue(
            a.queue,
            a.name,
            a.data,
            job_id=a.job_id,
            delay=a.delay or None,
            max_retries=a.max_retries,
        )
    if ctx.json:
        ctx.emit_json(res)
    elif not res.created:
        ctx.say(f"job {res.job_id} already exists ({res.state.value}): not enqueued again")
    elif res.due_at_ms is not None:
        due = datetime.fromtimestamp(res.due_at_ms / 1000, tz=UTC).isoformat()
        ctx.say(f"enqueued job {res.job_id} (delayed until {due})")
    else:
        ctx.say(f"enqueued job {res.job_id} (waiting, entry {res.entry_id})")
    return EXIT_OK


def cmd_pause(ctx: Context) -> int:
    """``streamq pause Q`` / ``streamq resume Q``."""
    a = ctx.args
    pausing = a.command == "pause"
    changed = ctx.admin.pause(a.queue) if pausing else ctx.admin.resume(a.queue)
    state = "paused" if pausing else "running"
    if ctx.json:
        ctx.emit_json({"queue": a.queue, "paused": pausing, "changed": changed})
    elif changed:
        ctx.say(f"{a.queue}: {state}")
    else:
        ctx.say(f"{a.queue}: already {state}")
    return EXIT_OK


def _every(s: Schedule) -> str:
    if s.cron is not None:
        return f"cron {s.cron} ({s.tz})"
    return f"every {_duration(s.every_ms)}"


def cmd_schedules_list(ctx: Context) -> int:
    """``streamq schedules list Q``."""
    a = ctx.args
    items = ctx.admin.schedules(a.queue)

    def human() -> None:
        now = ctx.admin.server_time_ms()
        rows = [
            [s.key, s.name, _every(s), _relative(s.next_tick_ms, now), _short(s.data.decode())]
            for s in items
        ]
        table(["KEY", "NAME", "REPEAT", "NEXT", "DATA"], rows, ctx.out)

    if not items and not ctx.json:
        print(f"no schedules in {a.queue!r}", file=ctx.err)
    return _listing(ctx, items, [_schedule_dict(s) for s in items], human)


def cmd_schedules_remove(ctx: Context) -> int:
    """``streamq schedules remove Q KEY``."""
    a = ctx.args
    removed = ctx.admin.remove_schedule(a.queue, a.key)
    if ctx.json:
        ctx.emit_json({"queue": a.queue, "key": a.key, "removed": removed})
    elif removed:
        ctx.say(f"removed schedule {a.key!r} of {a.queue!r}")
    else:
        print(f"no schedule {a.key!r} in {a.queue!r}", file=ctx.err)
    return EXIT_OK if removed else EXIT_NOT_FOUND


def cmd_workers(ctx: Context) -> int:
    """``streamq workers [Q ...]``."""
    a = ctx.args
    items: list[WorkerInfo] = ctx.admin.workers(a.queues or None)

    def human() -> None:
        fields = ["queue", "name", "state", "host", "pid", "running", "concurrency"]
        fields += ["processed", "failed", "pending"]
        rows = [
            [getattr(w, f) for f in fields] + [_duration(w.seen_age_ms), _duration(w.idle_ms)]
            for w in items
        ]
        headers = ["QUEUE", "WORKER", "STATE", "HOST", "PID", "RUNNING", "CONC", "DONE"]
        table([*headers, "FAILED", "HELD", "SEEN", "IDLE"], rows, ctx.out)

    if not items and not ctx.json:
        print("no workers", file=ctx.err)
    return _listing(ctx, items, items, human)


# ---------------------------------------------------------------------------- delegates


def _run_bench(argv: list[str]) -> int:
    cwd = str(Path.cwd())
    if importlib.util.find_spec("bench") is None and (Path.cwd() / "bench").is_dir():
        sys.path.insert(0, cwd)  # `python -m bench` finds it in the working directory too
    try:
        found = importlib.util.find_spec("bench.__main__") is not None
    except ImportError:
        found = False
    if not found:
        print(
            "error: the benchmark harness (the `bench` package) is not importable; run "
            "`streamq bench` from a streamq source checkout (where `python -m bench` works)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    saved = sys.argv
    sys.argv = ["python -m bench", *argv]
    try:
        runpy.run_module("bench", run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        return _exit_code(exc.code)
    finally:
        sys.argv = saved
    return EXIT_OK


def _delegate(name: str, argv: list[str]) -> int:
    try:
        if name == "server":
            from streamq import server

            return server.main(argv)
        if name == "worker":
            from streamq.worker import __main__ as worker_main

            return worker_main.main(argv)
    except SystemExit as exc:  # argparse --help and usage errors, load_app's messages
        return _exit_code(exc.code)
    return _run_bench(argv)


def _split_delegate(argv: list[str]) -> tuple[dict[str, str], str | None, list[str]]:
    """Leading global options, and the delegate subcommand with its own arguments."""
    opts: dict[str, str] = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in _GLOBAL_WITH_VALUE and i + 1 < len(argv):
            opts[arg] = argv[i + 1]
            i += 2
        elif arg.split("=", 1)[0] in _GLOBAL_WITH_VALUE and "=" in arg:
            key, value = arg.split("=", 1)
            opts[key] = value
            i += 1
        elif arg == "--json":
            i += 1
        else:
            break
    if i < len(argv) and argv[i] in DELEGATES:
        return opts, argv[i], argv[i + 1 :]
    return opts, None, []


def _exit_code(code: Any) -> int:
    if code is None:
        return EXIT_OK
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return EXIT_USAGE


# ---------------------------------------------------------------------------- parser


def _common() -> argparse.ArgumentParser:
    """Options accepted before or after the subcommand (SUPPRESS: the last one given wins)."""
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("connection and output")
    g.add_argument(
        "--url",
        default=argparse.SUPPRESS,
        help="Redis URL (default: REDIS_URL or REDIS_HOST/REDIS_PORT/...)",
    )
    g.add_argument(
        "--prefix", default=argparse.SUPPRESS, help="key prefix (default: STREAMQ_PREFIX or sq)"
    )
    g.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output"
    )
    return p


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``streamq`` command."""
    common = _common()
    parser = argparse.ArgumentParser(
        prog="streamq",
        description=(__doc__ or "").split("\n\n", 1)[-1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common],
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add(name: str, handler: Callable[[Context], int], help: str, **kw: Any) -> Any:
        p = sub.add_parser(name, help=help, description=help, parents=[common], **kw)
        p.set_defaults(handler=handler)
        return p

    p = add("status", cmd_status, "counts, lag, oldest waiting job and workers of each queue")
    p.add_argument("queues", nargs="*", metavar="QUEUE", help="default: every queue found")

    p = add("jobs", cmd_jobs, "list jobs of a queue in one state")
    p.add_argument("queue", metavar="QUEUE")
    p.add_argument("--state", "-s", choices=LIST_STATES, default="waiting")
    p.add_argument("--limit", "-n", type=_positive, default=20, help="default 20")

    p = add("job", cmd_job, "one job's record: state, attempts, error, traceback")
    p.add_argument("queue", metavar="QUEUE")
    p.add_argument("job_id", metavar="ID")

    dlq = sub.add_parser("dlq", help="the dead-letter queue", description="the dead-letter queue")
    dsub = dlq.add_subparsers(dest="dlq_command", metavar="ACTION", required=True)

    def dadd(name: str, handler: Callable[[Context], int], help: str) -> Any:
        p = dsub.add_parser(name, help=help, description=help, parents=[common])
        p.set_defaults(handler=handler)
        p.add_argument("queue", metavar="QUEUE")
        return p

    p = dadd("list", cmd_dlq_list, "dead-letter entries, oldest first")
    p.add_argument("--limit", "-n", type=_positive, default=100, help="default 100")
    p.add_argument("--after", default="-", help="start after this entry id")
    p = dadd("show", cmd_dlq_show, "one dead-letter entry with its traceback")
    p.add_argument("ident", metavar="ID", help="dead-letter entry id or job id")
    p = dadd("retry", cmd_dlq_retry, "move entries back to the queue with a fresh retry budget")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("ident", nargs="?", metavar="ID", help="dead-letter entry id or job id")
    which.add_argument("--all", action="store_true", help="every entry present now")
    p = dadd("purge", cmd_dlq_purge, "delete every dead-letter entry")
    p.add_argument("--yes", "-y", action="store_true", help="do not ask")

    p = add("enqueue", cmd_enqueue, "add a job")
    p.add_argument("queue", metavar="QUEUE")
    p.add_argument("name", metavar="NAME", help="job name (the handler to run)")
    p.add_argument("--data", type=_json_arg, default=None, help="payload as JSON")
    p.add_argument("--delay", type=_seconds, default=0.0, help="seconds before it is due")
    p.add_argument("--job-id", default=None, help="custom id (deduplicates)")
    p.add_argument("--max-retries", type=int, default=None, help="retry budget")

    for name, verb in (("pause", "stop workers fetching from a queue"), ("resume", "undo pause")):
        p = add(name, cmd_pause, verb)
        p.add_argument("queue", metavar="QUEUE")

    sch = sub.add_parser("schedules", help="repeating schedules", description="repeating schedules")
    ssub = sch.add_subparsers(dest="schedules_command", metavar="ACTION", required=True)
    p = ssub.add_parser("list", help="schedules of a queue, soonest first", parents=[common])
    p.set_defaults(handler=cmd_schedules_list)
    p.add_argument("queue", metavar="QUEUE")
    p = ssub.add_parser("remove", help="delete a schedule", parents=[common])
    p.set_defaults(handler=cmd_schedules_remove)
    p.add_argument("queue", metavar="QUEUE")
    p.add_argument("key", metavar="KEY")

    p = add("workers", cmd_workers, "workers: heartbeat, running jobs, idle time")
    p.add_argument("queues", nargs="*", metavar="QUEUE", help="default: every queue found")

    for name, what in (
        ("server", "run an embedded Redis/Valkey server (python -m streamq.server)"),
        ("worker", "run a worker (python -m streamq.worker)"),
        ("bench", "run the benchmark (python -m bench)"),
    ):
        p = sub.add_parser(name, help=what, add_help=False)
        p.add_argument("rest", nargs=argparse.REMAINDER)
    return parser


# ---------------------------------------------------------------------------- entry


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


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``streamq`` command with ``argv`` (default ``sys.argv[1:]``); returns the
    exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    opts, delegate, rest = _split_delegate(args_list)
    if delegate is not None:
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


if __name__ == "__main__":
    sys.exit(main())
