"""The ``dlq`` subcommands: ``list``, ``show``, ``retry`` and ``purge`` the dead-letter
queue of one queue."""

from __future__ import annotations

import sys

from streamq.cli.context import EXIT_NOT_FOUND, EXIT_OK, EXIT_USAGE, Context, _listing
from streamq.cli.output import (
    Progress,
    _block,
    _data_text,
    _fields,
    _relative,
    _short,
    _timestamp,
    table,
)
from streamq.errors import JobNotFoundError


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


def cmd_dlq_retry(ctx: Context) -> int:
    """``streamq dlq retry Q (ID | --all)``."""
    a = ctx.args
    if a.all:
        total = ctx.admin.dead_count(a.queue)
        progress = Progress("replaying", total, ctx.err)
        moved = ctx.admin.replay_all_dead(a.queue, progress=progress) if total else 0
        if total:
            progress.finish(moved)
        if ctx.json:
            ctx.emit_json({"queue": a.queue, "replayed": moved})
        else:
            ctx.say(f"replayed {moved} dead-letter entries of {a.queue!r}")
        return EXIT_OK
    entry = ctx.admin.replay_dead(a.queue, a.ident)
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
