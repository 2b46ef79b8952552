"""The benchmark's worker app: no-op handlers that only record what they saw.

* ``noop``: ``job.data`` is the job's sequence number (an int); it is appended to
  :data:`SEEN` so the harness can prove every job ran exactly once.
* ``stamp``: ``job.data`` is ``[seq, ref]`` with ``ref`` a wall-clock time in seconds (the
  enqueue time for pickup latency, the due time for delayed-job lateness); the handler
  appends ``seq`` to :data:`SEEN` and ``now - ref`` to :data:`DELAYS`.

Both are coroutines: a sync handler would run in the worker's thread pool, which measures
the pool, not the queue. The harness runs :class:`streamq.worker.Worker` in-process in each
child and reads the module lists afterwards. Run as a worker process instead
(``python -m streamq.worker bench.apps:app --queue Q``) with ``BENCH_RECORD_DIR`` set, and
each process writes ``<pid>.ids`` (int64) and ``<pid>.delays`` (float64) there at exit.
"""

from __future__ import annotations

import atexit
import os
import time
from array import array
from pathlib import Path

from streamq.job import Job
from streamq.worker import App

__all__ = ["DELAYS", "SEEN", "WINDOW", "app", "reset", "write_records"]

app = App(queues=["bench"])

#: Sequence numbers of the jobs this process ran, in order.
SEEN: array[int] = array("q")
#: For ``stamp`` jobs: handler start minus the reference time carried by the job, seconds.
DELAYS: array[float] = array("d")
#: Wall-clock time of the first and the last handler call in this process.
WINDOW: list[float] = []

_now = time.time


@app.handler("noop")
async def noop(job: Job) -> None:
    """Record the sequence number and return at once."""
    now = _now()
    if not WINDOW:
        WINDOW.extend((now, now))
    WINDOW[1] = now
    SEEN.append(job.data)


@app.handler("stamp")
async def stamp(job: Job) -> None:
    """Record the sequence number and how late the handler started against ``ref``."""
    now = _now()
    seq, ref = job.data
    if not WINDOW:
        WINDOW.extend((now, now))
    WINDOW[1] = now
    SEEN.append(seq)
    DELAYS.append(now - ref)


def reset() -> None:
    """Forget what was recorded (one process may serve several runs)."""
    del SEEN[:]
    del DELAYS[:]
    WINDOW.clear()


def write_records(directory: Path, stem: str) -> tuple[Path, Path]:
    """Write :data:`SEEN` and :data:`DELAYS` as raw arrays; returns both paths."""
    directory.mkdir(parents=True, exist_ok=True)
    ids, delays = directory / f"{stem}.ids", directory / f"{stem}.delays"
    with open(ids, "wb") as fh:
        SEEN.tofile(fh)
    with open(delays, "wb") as fh:
        DELAYS.tofile(fh)
    return ids, delays


def read_ids(path: Path) -> array[int]:
    """Read a ``.ids`` file written by :func:`write_records`."""
    out: array[int] = array("q")
    out.frombytes(path.read_bytes())
    return out


def read_delays(path: Path) -> array[float]:
    """Read a ``.delays`` file written by :func:`write_records`."""
    out: array[float] = array("d")
    out.frombytes(path.read_bytes())
    return out


_RECORD_DIR = os.environ.get("BENCH_RECORD_DIR")
if _RECORD_DIR:
    atexit.register(write_records, Path(_RECORD_DIR), str(os.getpid()))
