"""Handlers run by the chaos scenarios' workers (subprocesses or in-process).

``python -m streamq.worker tests.chaos.chaos_app:app --queue Q`` (cwd = the project root).

The run ledger lives outside the Redis under test: every handler first appends one line per
run to ``<SQ_CHAOS_LEDGER>/runs-<pid>.log`` with a single ``os.write`` on an ``O_APPEND``
descriptor, so a line written survives the process being SIGKILLed the next instant, and a
process's runs are told apart from every other process's::

    <job id> <attempt> <unix time> [<redis ms> [<entry id> <job key>]]

``<redis ms>`` (``stamp`` handlers only) is the Redis server's ``TIME`` read at the start of
the run: the one clock due times are judged by; ``-`` when not read. ``<entry id>``
(``flow`` only) is the run's entry id: for a flow job, the take that admitted it (and
charged its rate limits) added that entry, so its ms part is (about) the Redis time of the
charge; ``<job key>`` is the key the run was handed (``-``: none, a plain entry).
``flow`` also appends ``<entry id> <unix time>`` to ``ends-<pid>.log`` when the run ends.

Handlers (job name: what it does with ``job.data``):

* ``work``: sleep ``data["ms"]`` ms (0 when absent), return None.
* ``echo``: return ``data`` as it came.
* ``fail``: raise ``RuntimeError`` (a poison job that always fails).
* ``hang``: sleep far past any job timeout (bounded by :data:`HANG_LIMIT_S`).
* ``exit``: ``os._exit(1)`` mid-run: the worker process dies with the job.
* ``stamp``: record the Redis time, return None.
* ``stamp_retry``: record the Redis time; fail the first attempt.
* ``flow``: record the entry id, sleep ``data["ms"]`` ms, record the end (the limits
  scenario reads starts, ends and charges from these lines).
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import redis.asyncio as aredis

from streamq.job import Job
from streamq.worker.app import App

__all__ = ["HANG_LIMIT_S", "LEDGER_ENV", "app", "record"]

LEDGER_ENV = "SQ_CHAOS_LEDGER"
HANG_LIMIT_S = 60.0  # a hung job never outlives a broken test by more than this

app = App()

_fd: dict[str, int] = {}  # ledger path -> descriptor, one per process
_clients: dict[int, aredis.Redis] = {}  # pid -> client for the Redis clock


def _append(stem: str, line: str) -> None:
    """One ``os.write`` of ``line`` to ``<ledger>/<stem>-<pid>.log`` (no-op without
    ``SQ_CHAOS_LEDGER``): a line written survives a SIGKILL the next instant."""
    directory = os.environ.get(LEDGER_ENV)
    if not directory:
        return
    path = str(Path(directory) / f"{stem}-{os.getpid()}.log")
    fd = _fd.get(path)
    if fd is None:
        fd = _fd[path] = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.write(fd, line.encode())


def record(job: Job, extra: str = "") -> None:
    """Append this run to this process's ledger file (no-op without ``SQ_CHAOS_LEDGER``)."""
    _append("runs", f"{job.id} {job.attempt} {time.time():.6f}{extra}\n")


async def _redis_ms() -> int:
    client = _clients.get(os.getpid())
    if client is None:
        client = _clients[os.getpid()] = aredis.Redis.from_url(os.environ["REDIS_URL"])
    sec, usec = await client.time()
    return int(sec) * 1000 + int(usec) // 1000


@app.handler("work")
async def work(job: Job) -> None:
    record(job)
    ms = job.data.get("ms", 0) if isinstance(job.data, dict) else 0
    if ms:
        await asyncio.sleep(ms / 1000)


@app.handler("echo")
async def echo(job: Job) -> Any:
    record(job)
    return job.data


@app.handler("fail")
async def fail(job: Job) -> None:
    record(job)
    raise RuntimeError(f"poison: always fails (attempt {job.attempt})")


@app.handler("hang")
async def hang(job: Job) -> None:
    record(job)
    await asyncio.sleep(HANG_LIMIT_S)


@app.handler("exit")
async def exit_(job: Job) -> None:
    record(job)
    os._exit(1)


@app.handler("stamp")
async def stamp(job: Job) -> None:
    record(job, f" {await _redis_ms()}")


@app.handler("stamp_retry")
async def stamp_retry(job: Job) -> Any:
    record(job, f" {await _redis_ms()}")
    if job.attempt == 1:
        raise RuntimeError("first attempt fails: the retry's due time is under test")
    return "retried"


@app.handler("flow")
async def flow(job: Job) -> None:
    record(job, f" - {job.entry_id} {job.key or '-'}")
    ms = job.data.get("ms", 0) if isinstance(job.data, dict) else 0
    if ms:
        await asyncio.sleep(ms / 1000)
    _append("ends", f"{job.entry_id} {time.time():.6f}\n")
