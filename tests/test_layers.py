"""The layers of shared/DESIGN.md, at the level of calls: every Redis operation (a script
call, a raw command, a flow of them) is built in ``streamq/protocol/`` and sent by the
drivers; the public API, CLI and web layers only build protocol operations and run them.

The check parses every module under ``streamq/`` with :mod:`ast` and names the file:line of
each offence: a call to ``raw(...)`` or ``Call(...)``, ``execute_command``/``evalsha``/
``pipeline``, or a redis-py client command method (``client.xadd(...)``,
``pipe.hget(...)``...), anywhere but the protocol layer and the I/O shells below it.
"""

from __future__ import annotations

import ast
import asyncio
import builtins
import logging
import subprocess
import threading
from datetime import datetime
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "streamq"

#: Where Redis operations may be built or sent: the protocol layer and the I/O shells.
ALLOWED = (
    "streamq/protocol/",
    "streamq/_driver.py",
    "streamq/connection.py",
    # The embedded-server launcher talks to the server it started, as its admin (PING while
    # it loads, INFO, SHUTDOWN): the bottom layer of DESIGN.md, like connection.py.
    "streamq/server/",
)

#: Names that build an operation: the protocol vocabulary.
BUILDERS = {"raw", "Call", "TolerantCall", "on_every_master"}
#: redis-py methods that send whatever they are given.
SENDERS = {"execute_command", "evalsha", "eval", "pipeline", "register_script"}


def _command_methods() -> set[str]:
    """redis-py's command methods (``xadd``, ``hgetall``...), from the client's mixins."""
    return {
        name
        for cls in redis.Redis.__mro__
        if cls.__module__.startswith("redis.commands")
        for name, member in vars(cls).items()
        if callable(member) and not name.startswith("_")
    }


def _defined_in_streamq() -> set[str]:
    """Every function and method name streamq defines (``Admin.ping``, ``jobs.move``...):
    a call by such a name cannot be told from a client command statically."""
    names: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                names.add(node.name)
    return names


#: Method names that are Redis commands for redis-py but also everyday methods elsewhere
#: (``dict.get``, ``logger.info``, ``loop.time``...) or streamq's own: left out, since an
#: AST cannot know the receiver's type. What remains (``xadd``, ``hgetall``, ``zrange``,
#: ``xreadgroup``...) means a Redis client.
AMBIGUOUS = (
    {n for t in (dict, list, set, str, bytes, tuple) for n in dir(t)}
    | set(dir(logging.Logger))
    | set(dir(asyncio.AbstractEventLoop))
    | set(dir(subprocess.Popen))
    | set(dir(threading.Event))
    | set(dir(datetime))
    | set(dir(Path))
    | set(dir(builtins))
    | _defined_in_streamq()
)
COMMAND_METHODS = _command_methods() - AMBIGUOUS


def _module_names(tree: ast.Module) -> set[str]:
    """Names bound to imported modules (``time`` in ``time.time()`` is no client)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names


def offences_in(source: str, where: str) -> list[str]:
    """``where:line: what`` for each Redis operation built or sent in ``source``."""
    tree = ast.parse(source)
    modules = _module_names(tree)
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        what = None
        if isinstance(func, ast.Name) and func.id in BUILDERS:
            what = f"{func.id}(...)"
        elif isinstance(func, ast.Attribute):
            attr = func.attr
            on_module = isinstance(func.value, ast.Name) and func.value.id in modules
            if attr in BUILDERS or attr in SENDERS:
                what = f".{attr}(...)"
            elif attr in COMMAND_METHODS and not on_module:
                what = f"redis-py command .{attr}(...)"
        if what is not None:
            found.append((node.lineno, f"{where}:{node.lineno}: {what}"))
    return [text for _, text in sorted(found)]


def offences(skip: tuple[str, ...] = ALLOWED) -> list[str]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith(skip):
            continue
        out += offences_in(path.read_text("utf-8"), rel)
    return out


def test_redis_operations_live_only_in_the_protocol_layer() -> None:
    found = offences()
    assert not found, "Redis operations outside streamq/protocol/:\n" + "\n".join(found)


def test_the_check_sees_every_kind_of_offence_and_names_file_and_line() -> None:
    source = (
        "import time\n"
        "def f(client, ops):\n"
        "    time.time()\n"  # a module function named like a command (TIME): not flagged
        "    client.xadd('s', {})\n"
        "    ops.raw('PING')\n"
        "    raw('TIME')\n"
        "    Call('enqueue')\n"
        "    client.execute_command('GET', 'k')\n"
        "    client.evalsha('sha', 0)\n"
        "    client.hgetall('h')\n"
        "    {}.get('k')\n"  # a dict's get: not flagged
    )
    assert offences_in(source, "streamq/x.py") == [
        "streamq/x.py:4: redis-py command .xadd(...)",
        "streamq/x.py:5: .raw(...)",
        "streamq/x.py:6: raw(...)",
        "streamq/x.py:7: Call(...)",
        "streamq/x.py:8: .execute_command(...)",
        "streamq/x.py:9: .evalsha(...)",
        "streamq/x.py:10: redis-py command .hgetall(...)",
    ]


def test_the_check_is_not_vacuous() -> None:
    # The command list holds what streamq sends, and the protocol layer (skipped above)
    # is full of what the check looks for: it reads the real tree, not an empty one.
    assert {"xadd", "xreadgroup", "hgetall", "zrange", "xautoclaim"} <= COMMAND_METHODS
    in_protocol = offences(skip=())
    assert sum(o.startswith("streamq/protocol/") for o in in_protocol) > 30
