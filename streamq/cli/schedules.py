"""The ``schedules`` subcommands: ``list`` and ``remove`` the repeating schedules of a
queue."""

from __future__ import annotations

from streamq.cli.context import EXIT_NOT_FOUND, EXIT_OK, Context, _listing
from streamq.cli.output import _duration, _relative, _schedule_dict, _short, table
from streamq.scheduler import Schedule


def _every(s: Schedule) -> str:
    if s.cron is not None:
        return f"cron {s.cron} ({s.tz})"
    return f"every {_duration(s.every_ms)}"


def cmd_schedules_list(ctx: Context) -> int:
    """``streamq schedules list Q``."""
    a = ctx.args
    items = ctx.admin.list_schedules(a.queue)

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
