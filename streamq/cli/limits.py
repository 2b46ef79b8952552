"""The ``limits`` subcommands: ``set``, ``list``, ``rm`` the flow-control limits of a queue
and set its priority ``mode``; and the flow lines ``streamq status`` prints under its
table."""

from __future__ import annotations

from streamq.cli.context import EXIT_NOT_FOUND, EXIT_OK, Context, _listing
from streamq.cli.output import table
from streamq.errors import ConfigError
from streamq.limits import format_duration, parse_duration, parse_rate
from streamq.results import QueueInfo


def _rate_and_per(rate: str | None, per: str | None) -> tuple[int | None, float | None]:
    """``--rate 50/15m`` or ``--rate 50 --per 900`` (or ``--per 15m``)."""
    if rate is None:
        if per is not None:
            raise ConfigError("--per needs --rate (e.g. --rate 50 --per 15m)")
        return None, None
    if "/" in rate:
        if per is not None:
            raise ConfigError(f"--rate {rate} already names its period: drop --per")
        return parse_rate(rate)
    if per is None:
        raise ConfigError(f"--rate {rate} needs a period: --rate {rate}/15m or --per SECONDS")
    count, seconds = parse_rate(f"{rate}/{per}")
    return count, seconds


def cmd_limits_set(ctx: Context) -> int:
    """``streamq limits set Q PATTERN [--rate N/PERIOD | --rate N --per S] [--concurrency K]
    [--shared]``."""
    a = ctx.args
    rate, per = _rate_and_per(a.rate, a.per)
    limit = ctx.admin.set_limit(
        a.queue, a.pattern, rate=rate, per=per, concurrency=a.concurrency, shared=a.shared
    )
    if ctx.json:
        ctx.emit_json({"queue": a.queue, "limit": limit.as_dict()})
    else:
        kind = "shared by all keys matching" if limit.shared else "each key matching"
        ctx.say(f"{a.queue}: {kind} {limit.pattern!r}: {limit.describe()}")
    return EXIT_OK


def cmd_limits_list(ctx: Context) -> int:
    """``streamq limits list Q`` (exit 1 when the queue has none)."""
    a = ctx.args
    items = ctx.admin.limits(a.queue)

    def human() -> None:
        rows = [
            [
                limit.pattern,
                "shared" if limit.shared else "each",
                limit.rate,
                format_duration(limit.period_ms) if limit.period_ms is not None else None,
                limit.concurrency,
            ]
            for limit in items
        ]
        table(["PATTERN", "SCOPE", "RATE", "PER", "CONCURRENCY"], rows, ctx.out)

    if not items and not ctx.json:
        print(f"no limits in {a.queue!r}", file=ctx.err)
    return _listing(ctx, items, [x.as_dict() for x in items], human)


def cmd_limits_rm(ctx: Context) -> int:
    """``streamq limits rm Q PATTERN [--shared]`` (exit 1 when there was no such rule)."""
    a = ctx.args
    removed = ctx.admin.remove_limit(a.queue, a.pattern, shared=a.shared)
    scope = "shared" if a.shared else "each"
    if ctx.json:
        ctx.emit_json(
            {"queue": a.queue, "pattern": a.pattern, "shared": a.shared, "removed": removed}
        )
    elif removed:
        ctx.say(f"removed the {scope} limit {a.pattern!r} of {a.queue!r}")
    else:
        print(f"no {scope} limit {a.pattern!r} in {a.queue!r}", file=ctx.err)
    return EXIT_OK if removed else EXIT_NOT_FOUND


def cmd_limits_mode(ctx: Context) -> int:
    """``streamq limits mode Q strict|weighted``."""
    a = ctx.args
    mode = ctx.admin.set_flow_mode(a.queue, a.mode)
    if ctx.json:
        ctx.emit_json({"queue": a.queue, "mode": mode})
    else:
        ctx.say(f"{a.queue}: priority mode {mode}")
    return EXIT_OK


def period_arg(text: str) -> str:
    """``--per``: checked here so a typo fails before anything connects."""
    parse_duration(text, "--per")
    return text


def partition_lines(infos: list[QueueInfo]) -> list[str]:
    """One line per partitioned queue: its partition count and each partition's waiting and
    running counts, home first, for ``streamq status`` (a queue of one partition prints
    none). After a raise, the partitions of earlier counts (still consumed) come with
    them, and the line names them (``p/n``: partition p of n)."""
    lines = []
    for i in infos:
        if not i.partitions:
            continue
        earlier = [label for label in i.labels() if "/" in label]
        extra = f" (+ {', '.join(earlier)} of earlier counts)" if earlier else ""
        lines.append(
            f"{i.queue}: {i.partition_count} partitions{extra}, waiting "
            + "/".join(str(p.waiting) for p in i.partitions)
            + ", running "
            + "/".join(str(p.active) for p in i.partitions)
        )
    return lines


def flow_lines(infos: list[QueueInfo]) -> list[str]:
    """One line per queue with flow jobs held or running now, and its busiest keys, for
    ``streamq status`` (a queue without keyed jobs prints none)."""
    lines = []
    for i in infos:
        f = i.flow
        if not (f.held or f.running or f.keys_rate_limited or f.keys_at_concurrency):
            continue
        parts = [
            f"{f.held} held",
            f"{f.running} running",
            f"{f.keys_rate_limited} keys waiting for a rate window",
            f"{f.keys_at_concurrency} for a slot",
            f"{f.rate_limited_total} held back in all",
        ]
        if f.mode != "strict":
            parts.append(f"mode {f.mode}")
        lines.append(f"{i.queue}: " + ", ".join(parts))
        if f.busiest_keys:
            busiest = ", ".join(f"{k} ({n})" for k, n in f.busiest_keys)
            lines.append(f"  busiest keys: {busiest}")
    return lines
