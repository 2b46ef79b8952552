"""The argument parser of the ``streamq`` command: global options, one subparser per
command (each bound to its handler), and the argument types."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import orjson

from streamq.admin import LIST_STATES
from streamq.cli.commands import (
    cmd_enqueue,
    cmd_job,
    cmd_jobs,
    cmd_partitions,
    cmd_pause,
    cmd_status,
    cmd_workers,
)
from streamq.cli.context import Context
from streamq.cli.dlq import cmd_dlq_list, cmd_dlq_purge, cmd_dlq_retry, cmd_dlq_show
from streamq.cli.limits import (
    cmd_limits_list,
    cmd_limits_mode,
    cmd_limits_rm,
    cmd_limits_set,
    period_arg,
)
from streamq.cli.schedules import cmd_schedules_list, cmd_schedules_remove
from streamq.cli.web import cmd_web
from streamq.errors import ConfigError
from streamq.limits import FLOW_MODES


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


def _per(text: str) -> str:
    try:
        return period_arg(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be within [0, 65535], got {text}")
    return value


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
    from streamq import cli  # its docstring is the --help text (cli imports this module)

    common = _common()
    parser = argparse.ArgumentParser(
        prog="streamq",
        description=(cli.__doc__ or "").split("\n\n", 1)[-1],
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
    p.add_argument(
        "queue", metavar="QUEUE", nargs="?", default=None, help="default: search every queue"
    )
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
    p.add_argument("--key", default=None, help="flow-control key (limits, fairness)")
    p.add_argument("--priority", type=int, default=None, help="0-9, higher first")

    p = add("partitions", cmd_partitions, "show or raise a queue's partition count")
    p.add_argument("queue", metavar="QUEUE")
    p.add_argument("count", nargs="?", type=int, default=None, help="new count (1-64, grows only)")

    pause_help = "stop workers fetching from a queue (warns if nothing uses the name yet)"
    for name, verb in (("pause", pause_help), ("resume", "undo pause")):
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

    lim = sub.add_parser(
        "limits",
        help="flow-control limits per key pattern, and the priority mode",
        description="flow-control limits per key pattern (* matches any run of characters), "
        "and the priority mode; changes apply to running workers at once",
    )
    lsub = lim.add_subparsers(dest="limits_command", metavar="ACTION", required=True)

    def ladd(name: str, handler: Callable[[Context], int], help: str) -> Any:
        p = lsub.add_parser(name, help=help, description=help, parents=[common])
        p.set_defaults(handler=handler)
        p.add_argument("queue", metavar="QUEUE")
        return p

    p = ladd("set", cmd_limits_set, "add or replace the limit of a key pattern")
    p.add_argument("pattern", metavar="PATTERN", help="key pattern, e.g. 'x:*' (quote the *)")
    p.add_argument("--rate", default=None, help="N/PERIOD (50/15m; units s m h d), or N with --per")
    p.add_argument("--per", type=_per, default=None, help="the period of --rate N (900, 15m)")
    p.add_argument("--concurrency", type=_positive, default=None, help="most running jobs per key")
    p.add_argument(
        "--shared", action="store_true", help="one budget for all matching keys (no concurrency)"
    )
    p = ladd("list", cmd_limits_list, "the limits of a queue")
    p = ladd("rm", cmd_limits_rm, "delete the limit of a key pattern")
    p.add_argument("pattern", metavar="PATTERN")
    p.add_argument("--shared", action="store_true", help="the shared limit of the pattern")
    p = ladd("mode", cmd_limits_mode, "priority mode: strict (default) or weighted")
    p.add_argument("mode", choices=FLOW_MODES)

    p = add("workers", cmd_workers, "workers: heartbeat, running jobs, idle time")
    p.add_argument("queues", nargs="*", metavar="QUEUE", help="default: every queue found")

    p = add("web", cmd_web, "serve the dashboard, JSON API, health and /metrics (uvicorn)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=_port, default=8000, help="default 8000; 0 picks a free one")
    p.add_argument(
        "--allow-no-token",
        action="store_true",
        help="serve without STREAMQ_API_TOKEN (no authentication; loopback --host only)",
    )
    p.add_argument(
        "--log-level",
        choices=("critical", "error", "warning", "info", "debug"),
        default="info",
        help="uvicorn's log level (default info)",
    )

    for name, what in (
        ("server", "run an embedded Redis/Valkey server (python -m streamq.server)"),
        ("worker", "run a worker (python -m streamq.worker)"),
        ("bench", "run the benchmark (python -m bench)"),
    ):
        p = sub.add_parser(name, help=what, add_help=False)
        p.add_argument("rest", nargs=argparse.REMAINDER)
    return parser
