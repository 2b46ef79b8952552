"""Handler apps for the worker tests.

Run in-process (``Worker(apps.app, ...)``) or in a subprocess
(``python -m streamq.worker tests.apps:app --queue Q``, cwd = the project root).

Every handler first appends one line per run to the *ledger* file named by
``SQ_TEST_LEDGER`` (when set): ``<job id> <attempt> <pid> <unix time>``. The ledger is a
plain file opened with ``O_APPEND``, so runs are counted across processes, across a worker
killed with SIGKILL and across a Redis outage. :func:`read_ledger` and :func:`runs` read it.

Handlers (job name: what it does with ``job.data``):

* ``noop`` (async) / ``sync_noop`` (sync): return ``{"echo": data}``.
* ``sleep`` (async) / ``sync_sleep`` (sync): sleep ``data["ms"]`` ms, return ``"slept"``.
* ``slow_first`` / ``sync_slow_first``: sleep ``data["ms"]`` ms on the job's first recorded
  run only; later runs return at once (tells a hand-back from a lease expiry).
* ``fail``: raise ``RuntimeError("boom <data>")``.
* ``gated`` / ``gated_fail``: wait until the file ``data["gate"]`` exists, then return /
  raise (the test decides when the job ends).
* ``exit``: ``os._exit(1)``: the worker process dies mid-job.
* ``bad_result``: return a set, which JSON cannot carry.
* ``own_timeout``: an ``asyncio.timeout(0.05)`` of the handler's own expires around a 5 s
  sleep (its TimeoutError is the handler's failure, not the job's time limit).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

from streamq.job import Job
from streamq.worker.app import App

__all__ = ["LEDGER_ENV", "app", "read_ledger", "record", "runs"]

LEDGER_ENV = "SQ_TEST_LEDGER"
GATE_LIMIT_S = 30.0  # a gated job never outlives a broken test by more than this

app = App()
#: Not an App: ``python -m streamq.worker tests.apps:not_an_app`` must refuse it.
not_an_app = object()


def record(job: Job) -> int:
    """Append this run to the ledger; return how many runs of ``job`` it now holds."""
    path = os.environ.get(LEDGER_ENV)
    if not path:
        return 1
    line = f"{job.id} {job.attempt} {os.getpid()} {time.time():.6f}\n".encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)
    return runs(path)[job.id]


def read_ledger(path: str | Path) -> list[tuple[str, int, int, float]]:
    """Every recorded run: (job id, attempt, pid, unix time), in order."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return []
    out = []
    for line in text.splitlines():
        job_id, attempt, pid, ts = line.split()
        out.append((job_id, int(attempt), int(pid), float(ts)))
    return out


def runs(path: str | Path) -> Counter[str]:
    """How many times each job id ran."""
    return Counter(job_id for job_id, *_ in read_ledger(path))


def _ms(job: Job) -> float:
    return float(job.data["ms"]) / 1000


@app.handler("noop")
async def noop(job: Job) -> Any:
    record(job)
    return {"echo": job.data}


@app.handler("sync_noop")
def sync_noop(job: Job) -> Any:
    record(job)
    return {"echo": job.data}


@app.handler("sleep")
async def sleep(job: Job) -> str:
    record(job)
    await asyncio.sleep(_ms(job))
    return "slept"


@app.handler("sync_sleep")
def sync_sleep(job: Job) -> str:
    record(job)
    time.sleep(_ms(job))
    return "slept"


@app.handler("slow_first")
async def slow_first(job: Job) -> str:
    if record(job) == 1:
        await asyncio.sleep(_ms(job))
        return "slow"
    return "fast"


@app.handler("sync_slow_first")
def sync_slow_first(job: Job) -> str:
    if record(job) == 1:
        time.sleep(_ms(job))
        return "slow"
    return "fast"


@app.handler("fail")
async def fail(job: Job) -> None:
    record(job)
    raise RuntimeError(f"boom {job.data}")


async def _gate(job: Job) -> None:
    gate = Path(job.data["gate"])
    deadline = time.monotonic() + GATE_LIMIT_S
    while not gate.exists() and time.monotonic() < deadline:
        await asyncio.sleep(0.01)


@app.handler("gated")
async def gated(job: Job) -> str:
    record(job)
    await _gate(job)
    return "opened"


@app.handler("gated_fail")
async def gated_fail(job: Job) -> None:
    record(job)
    await _gate(job)
    raise RuntimeError("failed after the gate opened")


@app.handler("exit")
def exit_(job: Job) -> None:
    record(job)
    os._exit(1)


@app.handler("bad_result")
async def bad_result(job: Job) -> Any:
    record(job)
    return {1, 2, 3}


@app.handler("own_timeout")
async def own_timeout(job: Job) -> None:
    record(job)
    async with asyncio.timeout(0.05):
        await asyncio.sleep(5)
