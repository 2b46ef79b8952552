"""``python -m streamq.worker MODULE:APP --queue Q [--queue Q2] --concurrency N``.

SIGTERM/SIGINT: stop fetching, let running jobs finish within the grace period, hand the
rest back, exit 0. A second signal skips the rest of the grace.

``--processes N`` (N > 1) runs a supervisor of N such worker processes instead: it forwards
SIGTERM/SIGINT to each, restarts one that dies, and exits 0 once all stopped cleanly.
Exit codes: 0 ok, 1 a worker failed to stop cleanly, 2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from streamq.config import Settings
from streamq.errors import StreamQError
from streamq.worker.app import App
from streamq.worker.logs import LOG_FORMATS, configure_logging, log_event
from streamq.worker.runner import JOB_THREAD, Worker
from streamq.worker.supervisor import EXIT_CONFIG, SUPERVISOR_PID_ENV, Supervisor

__all__ = ["LOOPS", "build_parser", "child_args", "load_app", "loop_runner", "main", "parse_args"]

#: Choices of ``--loop`` (and ``STREAMQ_LOOP``).
LOOPS = ("auto", "uvloop", "asyncio")


def load_app(spec: str) -> App:
    """Import ``module.path:attribute`` and check it is an :class:`App`."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise SystemExit(f"error: app must be given as MODULE:ATTRIBUTE, got {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise SystemExit(f"error: cannot import {module_name!r}: {exc}") from None
    app = getattr(module, attr, None)
    if not isinstance(app, App):
        raise SystemExit(f"error: {spec!r} is not a streamq.worker.App")
    return app


def _processes(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {raw!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The worker's command-line parser."""
    p = argparse.ArgumentParser(
        prog="python -m streamq.worker",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("app", help="MODULE:ATTRIBUTE of a streamq.worker.App")
    p.add_argument(
        "--queue",
        "-q",
        action="append",
        default=[],
        help="queue to consume (repeatable; default: the app's queues)",
    )
    p.add_argument(
        "--concurrency",
        "-c",
        type=int,
        default=None,
        help="jobs run at once (default STREAMQ_CONCURRENCY, 5)",
    )
    p.add_argument("--burst", action="store_true", help="exit 0 once the queues are drained")
    p.add_argument("--log-level", default=None, choices=["debug", "info", "warning", "error"])
    p.add_argument(
        "--log-format",
        default=None,
        choices=LOG_FORMATS,
        help="text (human-readable, the level coloured on a terminal unless NO_COLOR is set), "
        "json (one object a line), or auto = text on a terminal, else json "
        "(default STREAMQ_LOG_FORMAT, auto)",
    )
    p.add_argument(
        "--loop",
        default=os.environ.get("STREAMQ_LOOP", "auto"),
        choices=LOOPS,
        help="event loop: uvloop (pip install 'streamq[uvloop]'; ~15-20%% less worker CPU "
        "per job), asyncio, or auto = uvloop when installed (default STREAMQ_LOOP, auto)",
    )
    p.add_argument(
        "--processes",
        type=_processes,
        default=None,
        metavar="N",
        help="run N worker processes under a supervisor that forwards signals and restarts "
        "a process that dies (default STREAMQ_PROCESSES, 1 = no supervisor)",
    )
    return p


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line arguments of the worker process, with the environment's defaults
    (``STREAMQ_PROCESSES``, ``STREAMQ_LOG_FORMAT``) filled in; a bad value exits 2 naming
    the flag or the variable."""
    p = build_parser()
    args = p.parse_args(argv)
    if args.processes is None:
        raw = os.environ.get("STREAMQ_PROCESSES", "").strip()
        try:
            args.processes = _processes(raw) if raw else 1
        except argparse.ArgumentTypeError as exc:
            p.error(f"STREAMQ_PROCESSES {exc}")
    if args.log_format is None:
        raw = os.environ.get("STREAMQ_LOG_FORMAT", "").strip().lower() or "auto"
        if raw not in LOG_FORMATS:
            p.error(f"STREAMQ_LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}, got {raw!r}")
        args.log_format = raw
    return args


def child_args(args: argparse.Namespace) -> list[str]:
    """The arguments of one supervised worker: every option of ``args`` but
    ``--processes``, rebuilt from the parser's own actions so a new flag is carried too."""
    out: list[str] = []
    for action in build_parser()._actions:
        if action.dest in ("help", "processes"):
            continue
        value = getattr(args, action.dest)
        if not action.option_strings:
            out.append(str(value))
            continue
        flag = max(action.option_strings, key=len)  # the long spelling
        if action.nargs == 0:  # store_true
            if value:
                out.append(flag)
        elif isinstance(value, list):  # append
            for item in value:
                out += [flag, str(item)]
        elif value is not None:
            out += [flag, str(value)]
    return out


def loop_runner(choice: str) -> Callable[[Coroutine[Any, Any, Any]], Any]:
    """``asyncio.run`` or ``uvloop.run`` for ``--loop`` (returns what the coroutine
    returns); SystemExit naming what is missing when uvloop is asked for by name and not
    installed."""
    if choice not in LOOPS:
        raise SystemExit(f"error: --loop must be one of {', '.join(LOOPS)}, not {choice!r}")
    if choice == "asyncio":
        return asyncio.run
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise SystemExit(
                "error: --loop uvloop needs the uvloop package: pip install 'streamq[uvloop]'"
            ) from None
        return asyncio.run
    return uvloop.run


async def _run(worker: Worker, burst: bool, supervisor_pid: int | None) -> None:
    loop = asyncio.get_running_loop()
    signals = {"n": 0}

    def on_signal(sig: signal.Signals) -> None:
        signals["n"] += 1
        log_event("signal", signal=sig.name, action="stop" if signals["n"] == 1 else "hurry")
        worker.stop(hurry=signals["n"] > 1)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    watch = None
    if supervisor_pid is not None:
        watch = asyncio.create_task(_watch_supervisor(worker, supervisor_pid))
    try:
        await worker.run(burst=burst)
    finally:
        if watch is not None:
            watch.cancel()


async def _watch_supervisor(worker: Worker, pid: int) -> None:
    """Stop (gracefully) once the supervisor that started us is gone: killed outright, it
    cannot forward a signal, and an orphan would run on unsupervised."""
    while not worker.stopping:
        if os.getppid() != pid:
            log_event("supervisor_gone", logging.WARNING, supervisor_pid=pid)
            worker.stop()
            return
        await asyncio.sleep(1.0)


def _supervisor_pid() -> int | None:
    raw = os.environ.get(SUPERVISOR_PID_ENV, "")
    return int(raw) if raw.isdigit() else None


def main(argv: Sequence[str] | None = None) -> int:
    """Process entry point; returns the exit code."""
    args = parse_args(argv)
    try:
        settings = Settings.from_env()
        if args.concurrency is not None and args.concurrency < 1:
            raise SystemExit("error: --concurrency must be >= 1")
        configure_logging(args.log_level or settings.log_level, args.log_format)
        run = loop_runner(args.loop)
        if args.processes > 1:
            # Settings and the loop are checked here, once; the app is imported only in the
            # children (its import-time side effects stay out of the supervisor).
            return Supervisor(child_args(args), args.processes).run()
        app = load_app(args.app)
        queues = args.queue or app.queues
        if not queues:
            raise SystemExit("error: no queue given (use --queue Q)")
        worker = Worker(app, queues, settings=settings, concurrency=args.concurrency)
        run(_run(worker, args.burst, _supervisor_pid()))
    except StreamQError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except SystemExit as exc:
        if not isinstance(exc.code, str):
            raise
        # A usage or configuration error (bad app, loop, concurrency): exit 2, which also
        # tells a supervisor that restarting this process cannot help.
        print(exc.code, file=sys.stderr)
        return EXIT_CONFIG
    _leave_abandoned_threads()
    return 0


def _leave_abandoned_threads() -> None:
    """Exit now if sync handlers still run past the grace period.

    Their jobs were handed back (another worker runs them), but a thread cannot be
    cancelled, and the interpreter would join it at exit: a hung sync handler would keep
    the process alive forever, a slow one past any supervisor's patience.
    """
    left = [t for t in threading.enumerate() if t.name.startswith(JOB_THREAD) and t.is_alive()]
    if not left:
        return
    log_event(
        "abandoned_threads",
        logging.WARNING,
        count=len(left),
        detail="sync handlers still running after their jobs were handed back; not waiting",
    )
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
