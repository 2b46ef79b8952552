"""Worker child processes for the benchmark, and the exactly-once check.

Each child (``multiprocessing`` spawn) imports :mod:`bench.apps`, says it is ready, waits
for the common start signal and runs an in-process :class:`streamq.worker.Worker`: in
*burst* mode until the queue is drained, in *serve* mode until the parent says stop. It
then writes the ids it ran (and the delays it measured) to files and reports its counters.
A child that overruns its deadline dumps the worker's state and every asyncio task's stack
to stderr, so a hang leaves evidence rather than a stuck benchmark.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing as mp
import os
import queue as queue_mod
import sys
import time
import traceback
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import BenchFailure
from streamq.worker.__main__ import loop_runner

_SPAWN = mp.get_context("spawn")


@dataclass(frozen=True)
class ChildSpec:
    """What one worker child runs."""

    url: str
    queue: str
    concurrency: int
    burst: bool
    timeout_s: float
    record_dir: Path
    index: int


@dataclass
class ChildResult:
    """What one worker child reports."""

    index: int
    processed: int
    failed: int
    first: float | None
    last: float | None
    cpu_s: float
    ids: Path
    delays: Path
    timed_out: bool


class _DropServerWarnings(logging.Filter):
    # The benchmark runs without persistence on purpose; the worker's warning about it
    # would repeat once per child.
    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != "server_warning"


def _configure_child_logging() -> None:
    from streamq.worker.logs import configure_logging, logger

    configure_logging("warning")
    for handler in logger.handlers:
        handler.addFilter(_DropServerWarnings())


def _dump(worker: Any) -> None:
    print(
        f"[bench child] deadline passed: processed={worker.processed} "
        f"executing={worker.executing} running={len(worker.running)} "
        f"stopping={worker.stopping}",
        file=sys.stderr,
        flush=True,
    )
    for task in asyncio.all_tasks():
        task.print_stack(limit=8, file=sys.stderr)
    sys.stderr.flush()


async def _run_worker(spec: ChildSpec, stop: Any) -> tuple[Any, float, bool]:
    from bench import apps
    from bench.common import settings_for
    from streamq.worker import Worker

    worker = Worker(
        apps.app, [spec.queue], settings=settings_for(spec.url), concurrency=spec.concurrency
    )
    cpu0 = time.process_time()
    task = asyncio.create_task(worker.run(burst=spec.burst))

    async def watch_stop() -> None:
        while not stop.is_set():
            await asyncio.sleep(0.05)
        worker.stop()

    watcher = None if spec.burst else asyncio.create_task(watch_stop())
    done, _ = await asyncio.wait([task], timeout=spec.timeout_s)
    timed_out = not done
    if timed_out:
        _dump(worker)
        worker.stop()
        await asyncio.wait([task], timeout=15)
    if watcher is not None:
        watcher.cancel()
    if task.done() and not task.cancelled() and task.exception() is not None:
        raise task.exception()  # type: ignore[misc]
    return worker, time.process_time() - cpu0, timed_out


def child_main(spec: ChildSpec, go: Any, stop: Any, out: Any) -> None:
    """Entry of one worker child (top-level so that spawn can import it)."""
    try:
        _configure_child_logging()
        from bench import apps

        out.put(("ready", spec.index, None))
        if not go.wait(timeout=600):  # the parent is gone or gave up: do not linger
            return
        # The event loop the worker process entry would pick (STREAMQ_LOOP, set by --loop).
        run = loop_runner(os.environ.get("STREAMQ_LOOP", "auto"))
        worker, cpu_s, timed_out = run(_run_worker(spec, stop))
        ids, delays = apps.write_records(spec.record_dir, f"child-{spec.index}")
        window = apps.WINDOW or [None, None]
        result = ChildResult(
            spec.index,
            worker.processed,
            worker.failed,
            window[0],
            window[1],
            cpu_s,
            ids,
            delays,
            timed_out,
        )
        out.put(("result", spec.index, result))
    except BaseException:
        out.put(("error", spec.index, traceback.format_exc()))


class WorkerPool:
    """W worker children for one queue. ``start()`` spawns them and waits until each is
    ready (imports done); ``go()`` releases them all at once; ``collect()`` waits for
    their results (for serve mode, after ``stop()``)."""

    def __init__(
        self,
        url: str,
        queue: str,
        processes: int,
        concurrency: int,
        *,
        burst: bool,
        timeout_s: float,
        record_dir: Path,
    ) -> None:
        self.specs = [
            ChildSpec(url, queue, concurrency, burst, timeout_s, record_dir, i)
            for i in range(processes)
        ]
        self.timeout_s = timeout_s
        self._go = _SPAWN.Event()
        self._stop = _SPAWN.Event()
        self._out: Any = _SPAWN.Queue()
        self._procs: list[Any] = []
        self.t_go = 0.0

    def start(self, ready_timeout_s: float = 60.0) -> None:
        """Spawn the children and wait until all are ready."""
        for spec in self.specs:
            p = _SPAWN.Process(
                target=child_main, args=(spec, self._go, self._stop, self._out), daemon=True
            )
            p.start()
            self._procs.append(p)
        ready = 0
        deadline = time.monotonic() + ready_timeout_s
        while ready < len(self.specs):
            kind, index, payload = self._get(deadline)
            if kind == "error":
                self.terminate()
                raise BenchFailure(f"worker child {index} failed to start:\n{payload}")
            ready += 1

    def go(self) -> float:
        """Release every child; returns the wall-clock start time."""
        self.t_go = time.time()
        self._go.set()
        return self.t_go

    def stop(self) -> None:
        """Serve mode: ask every child to stop (they finish running jobs first)."""
        self._stop.set()

    def collect(self, on_wait: Callable[[], None] | None = None) -> list[ChildResult]:
        """Wait for every child's result; ``on_wait`` runs about every 0.2 s meanwhile."""
        results: list[ChildResult] = []
        errors: list[str] = []
        deadline = time.monotonic() + self.timeout_s + 30
        while len(results) + len(errors) < len(self.specs):
            try:
                kind, index, payload = self._get(deadline, poll=0.2)
            except queue_mod.Empty:
                if on_wait is not None:
                    on_wait()
                continue
            if kind == "result":
                results.append(payload)
            elif kind == "error":
                errors.append(f"worker child {index}:\n{payload}")
        for p in self._procs:
            p.join(timeout=10)
        self.terminate()
        if errors:
            raise BenchFailure("\n".join(errors))
        late = [r.index for r in results if r.timed_out]
        if late:
            raise BenchFailure(
                f"worker children {late} did not finish within {self.timeout_s:.0f} s "
                "(their stderr shows the worker state and task stacks)"
            )
        return sorted(results, key=lambda r: r.index)

    def _get(self, deadline: float, poll: float | None = None) -> tuple[str, int, Any]:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self.terminate()
                raise BenchFailure("worker children did not answer before the deadline")
            wait = min(left, poll) if poll is not None else min(left, 0.5)
            try:
                item: tuple[str, int, Any] = self._out.get(timeout=wait)
                return item
            except queue_mod.Empty:
                dead = [p for p in self._procs if p.exitcode not in (None, 0)]
                if dead:
                    self.terminate()
                    codes = [p.exitcode for p in dead]
                    raise BenchFailure(f"worker children exited abnormally: {codes}") from None
                if poll is not None:
                    raise

    def terminate(self) -> None:
        """Kill children still alive (only ours, by process object)."""
        for p in self._procs:
            if p.is_alive():
                p.terminate()
                p.join(timeout=5)
        with contextlib.suppress(Exception):
            self._out.close()


# --------------------------------------------------------------------------- exactly once


@dataclass(frozen=True)
class CountCheck:
    """Outcome of the exactly-once check over sequence numbers 0..n-1."""

    expected: int
    seen: int
    missing: int
    duplicated: int
    foreign: int
    examples: str

    @property
    def ok(self) -> bool:
        """Every job exactly once, nothing else."""
        return self.missing == 0 and self.duplicated == 0 and self.foreign == 0


def check_exactly_once(id_files: list[Path], expected: int) -> CountCheck:
    """Count every sequence number over all children's files: each 0..expected-1 must
    appear exactly once."""
    from bench.apps import read_ids

    counts = bytearray(expected)
    seen = foreign = 0
    dups: list[int] = []
    for path in id_files:
        ids: array[int] = read_ids(path)
        seen += len(ids)
        for i in ids:
            if 0 <= i < expected:
                c = counts[i]
                if c:
                    if len(dups) < 5:
                        dups.append(i)
                    counts[i] = min(c + 1, 255)
                else:
                    counts[i] = 1
            else:
                foreign += 1
    missing_n = counts.count(0)
    duplicated = sum(1 for c in counts if c > 1)
    missing = [i for i, c in enumerate(counts) if c == 0][:5] if missing_n else []
    examples = ""
    if missing:
        examples += f" missing e.g. {missing}"
    if dups:
        examples += f" duplicated e.g. {dups}"
    return CountCheck(expected, seen, missing_n, duplicated, foreign, examples.strip())
