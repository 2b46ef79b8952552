"""Helpers of the distribution tests that run in child processes: kept apart from the test
module so that a spawned child imports only what it needs (the results database)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from examples.distribution.db import ResultRow, ResultsDB


def first_use(path: str, proc: int, rounds: int, threads: int, barrier: Any, out: Any) -> None:
    """In a child process: ``threads`` threads (half of them reading first, as the demo
    does while the worker writes) record one row each into a fresh results file per round,
    all starting together (a barrier shared with the other processes)."""
    errors: list[str] = []
    dbs = [ResultsDB(Path(path) / f"round-{r}.sqlite3") for r in range(rounds)]

    def one(round_: int, thread: int) -> None:
        db = dbs[round_]  # one per process, as the worker's handlers share one
        barrier.wait(timeout=60)
        try:
            if thread % 2:
                db.rows()
            db.record(ResultRow(f"j{proc}-{thread}", 1, "dispatch", "distribution:dispatch", "ok"))
        except Exception as exc:
            errors.append(repr(exc))

    for round_ in range(rounds):
        pool = [threading.Thread(target=one, args=(round_, t)) for t in range(threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
    out.put(errors)
