"""Subcommands handed whole to another entry point: ``server`` (:mod:`streamq.server`),
``worker`` (:mod:`streamq.worker.__main__`) and ``bench`` (``python -m bench``)."""

from __future__ import annotations

import importlib.util
import runpy
import sys
from pathlib import Path
from typing import Any

from streamq.cli.context import EXIT_OK, EXIT_USAGE

#: Subcommands handed whole to another entry point (their own --help applies).
DELEGATES = ("server", "worker", "bench")
_GLOBAL_WITH_VALUE = ("--url", "--prefix")


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
