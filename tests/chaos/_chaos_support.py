"""Helpers of the chaos scenarios: the run ledger kept outside Redis, worker fleets in
subprocesses, and the exact-ledger check every scenario ends with.

The ledger has two halves, neither of them in the Redis under test:

* *accepted*: the ids whose ``enqueue`` returned, appended by the test process (one line
  each, written only after the call returned) to ``accepted.log``;
* *runs*: one line per handler run, appended by the worker processes to
  ``runs-<pid>.log`` (see :mod:`tests.chaos.chaos_app`).

:func:`verify_ledger` then demands that every accepted id is completed, dead or cancelled,
that the consumer group's PEL is empty, and that a job ran more than once only when the
process running it died, froze or handed it back mid-run.
"""

from __future__ import annotations

import contextlib
import os
import random
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from streamq.protocol.keys import GROUP
from streamq.protocol.partitions import PartitionMeta, lookup_keys, partition_keys
from tests._support import ROOT as ROOT  # re-exported: report.py reads it from here
from tests._support import child_env
from tests._worker_support import WorkerProcess, keys_of, pending_count
from tests.chaos.chaos_app import LEDGER_ENV

APP = "tests.chaos.chaos_app:app"

#: The whole chaos suite must finish within this many seconds on 2 cores; the job counts
#: and fault counts of the scenarios below are scaled to fit it (``report.py`` checks it).
SUITE_BUDGET_S = 300.0
#: No scenario may wait longer than this for its queue to settle.
SETTLE_TIMEOUT_S = 45.0

FINAL = frozenset({"completed", "failed", "cancelled"})
#: Worker settings every scenario starts from: keep every record (the ledger reads them).
BASE_ENV = {
    "STREAMQ_KEEP_COMPLETED": "1000000000",
    "STREAMQ_KEEP_FAILED": "1000000000",
    "STREAMQ_BACKOFF_TYPE": "fixed",
    "STREAMQ_BACKOFF_DELAY": "100",
    "STREAMQ_LOG_LEVEL": "info",
}


# ---------------------------------------------------------------------- ledger


@dataclass(frozen=True, slots=True)
class Run:
    """One handler run as the worker recorded it."""

    job_id: str
    attempt: int
    wall: float
    pid: int
    redis_ms: int | None = None
    entry_id: str | None = None  # ``flow`` runs: the entry the take added
    key: str | None = None  # ``flow`` runs: the job key the run was handed ("-": none)


class Ledger:
    """The accepted ids and the recorded runs of one scenario, in ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.accepted: list[str] = []
        self._runs: list[Run] = []
        self._offsets: dict[Path, int] = {}
        self._accepted_fd = os.open(
            directory / "accepted.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600
        )

    def accept(self, ids: Iterable[str]) -> None:
        """Record ids whose enqueue returned (call only after it returned)."""
        batch = list(ids)
        if batch:
            os.write(self._accepted_fd, ("\n".join(batch) + "\n").encode())
            self.accepted.extend(batch)

    def close(self) -> None:
        os.close(self._accepted_fd)

    def runs(self) -> list[Run]:
        """Every run recorded so far, by every process (files are read incrementally)."""
        for path in sorted(self.directory.glob("runs-*.log")):
            pid = int(path.stem.removeprefix("runs-"))
            offset = self._offsets.get(path, 0)
            with open(path, "rb") as fh:
                fh.seek(offset)
                chunk = fh.read()
            end = chunk.rfind(b"\n") + 1  # a line being written right now waits
            self._offsets[path] = offset + end
            for line in chunk[:end].decode().splitlines():
                parts = line.split()
                redis_ms = int(parts[3]) if len(parts) > 3 and parts[3] != "-" else None
                entry_id = parts[4] if len(parts) > 4 else None
                key = parts[5] if len(parts) > 5 else None
                run = Run(parts[0], int(parts[1]), float(parts[2]), pid, redis_ms, entry_id, key)
                self._runs.append(run)
        return list(self._runs)

    def ends(self) -> dict[str, float]:
        """Entry id -> wall time its run ended (``flow`` runs that were not killed)."""
        out: dict[str, float] = {}
        for path in sorted(self.directory.glob("ends-*.log")):
            for line in path.read_text().splitlines():
                parts = line.split()
                if len(parts) == 2:  # a line cut by a SIGKILL mid-write has fewer
                    out[parts[0]] = float(parts[1])
        return out

    def counts(self) -> Counter[str]:
        """How many times each job id ran."""
        return Counter(r.job_id for r in self.runs())


# ---------------------------------------------------------------------- worker processes


@dataclass
class Fleet:
    """Worker subprocesses of one scenario. Tracks which processes were *interrupted*
    (SIGKILLed, frozen, or died on their own): their runs may legitimately repeat."""

    url: str
    queue: str
    ledger: Ledger
    logs: Path
    concurrency: int = 8
    env: dict[str, str] = field(default_factory=dict)
    module: str = "streamq.worker"
    procs: list[WorkerProcess] = field(default_factory=list)
    interrupted: set[int] = field(default_factory=set)

    def child_env(self, **extra: str) -> dict[str, str]:
        own = {
            "REDIS_URL": self.url,
            "PYTHONUNBUFFERED": "1",
            LEDGER_ENV: str(self.ledger.directory),
        }
        return child_env(BASE_ENV, own, self.env, extra)

    def start(
        self, *, concurrency: int | None = None, burst: bool = False, **extra_env: str
    ) -> WorkerProcess:
        args = [APP, "--queue", self.queue]
        args += ["--concurrency", str(concurrency or self.concurrency)]
        if burst:
            args.append("--burst")
        log = self.logs / f"worker-{len(self.procs)}.log"
        wp = WorkerProcess(args, self.child_env(**extra_env), log, module=self.module)
        self.procs.append(wp)
        return wp

    @property
    def live(self) -> list[WorkerProcess]:
        return [w for w in self.procs if w.alive]

    def kill(self, wp: WorkerProcess) -> None:
        self.interrupted.add(wp.pid)
        wp.kill()

    def kill_random(self, rng: random.Random) -> WorkerProcess:
        victim = rng.choice(self.live)
        self.kill(victim)
        return victim

    def note_deaths(self) -> list[WorkerProcess]:
        """Processes that exited on their own since the last call (a job killed them)."""
        dead = [w for w in self.procs if not w.alive and w.pid not in self.interrupted]
        for w in dead:
            self.interrupted.add(w.pid)
        return dead

    def events(self, event: str) -> list[dict[str, Any]]:
        return [e for w in self.procs for e in w.events(event)]

    def lease_losses(self) -> Counter[str]:
        """Jobs whose live worker lost the lease mid-run, proven by its completion (or
        failure) being refused: it logs ``fenced``. The design allows those one more run
        each; a slow host (an event loop starved past the lease) makes them."""
        return Counter(e["job_id"] for e in self.events("fenced") if e.get("job_id"))

    def spurious_lease_losses(self, ledger: Ledger) -> int:
        """``lease_lost`` warnings for jobs that ran once and were never fenced: the worker
        raised the alarm about a job it went on to complete itself."""
        runs = ledger.counts()
        fenced = self.lease_losses()
        return sum(
            1
            for e in self.events("lease_lost")
            if runs[e.get("job_id", "")] == 1 and not fenced[e.get("job_id", "")]
        )

    def close(self) -> None:
        for w in self.procs:
            w.close()


# ---------------------------------------------------------------------- inspection


def states(
    client: redis.Redis, queue: str, ids: Sequence[str], meta: PartitionMeta | None = None
) -> dict[str, str | None]:
    """The ``s`` field of each job record (None: no record). With ``meta`` (a partitioned
    queue) each id is looked up wherever it may be (its partition, then home)."""
    k = keys_of(queue)
    out: dict[str, str | None] = {}
    for i in range(0, len(ids), 2000):
        chunk = ids[i : i + 2000]
        where = [lookup_keys(k, meta, j) if meta else [k] for j in chunk]
        pipe = client.pipeline(transaction=False)
        for jid, candidates in zip(chunk, where, strict=True):
            for keys in candidates:
                pipe.hget(keys.job(jid), "s")
        replies = iter(pipe.execute())
        for jid, candidates in zip(chunk, where, strict=True):
            found = [s for s in (next(replies) for _ in candidates) if s is not None]
            out[jid] = found[0].decode() if found else None
    return out


def pending_total(client: redis.Redis, queue: str, meta: PartitionMeta | None = None) -> int:
    """The consumer group's pending entries, over every partition of ``meta`` when given."""
    if meta is None:
        return pending_count(client, queue)
    total = 0
    for keys in partition_keys(keys_of(queue), meta):
        with contextlib.suppress(redis.ResponseError):  # no group yet
            total += int(client.xpending(keys.stream, GROUP)["pending"])
    return total


def settle(
    client: redis.Redis,
    queue: str,
    ids: Sequence[str],
    timeout: float = SETTLE_TIMEOUT_S,
    meta: PartitionMeta | None = None,
) -> dict[str, str | None]:
    """Wait until every id is in a final state and the PEL is empty; return the states.

    On the deadline the states are returned as they are (the ledger check then reports
    the missing ones): a scenario records its figures before it asserts."""
    unique = list(dict.fromkeys(ids))
    deadline = time.monotonic() + timeout
    pending = unique
    final: dict[str, str | None] = {}
    while True:
        now = states(client, queue, pending, meta)
        final.update(now)
        pending = [j for j, s in now.items() if s not in FINAL]
        if (
            not pending and pending_total(client, queue, meta) == 0
        ) or time.monotonic() >= deadline:
            return {j: final[j] for j in unique}
        time.sleep(0.1)


@dataclass
class LedgerCheck:
    """The exact ledger of one scenario."""

    accepted: int
    completed: int
    dead: int
    cancelled: int
    lost: list[str]
    pel: int
    duplicated: int  # (job, attempt) pairs that ran more than once
    extra_runs: int  # runs beyond the first of those pairs
    unexplained: list[str]  # ids that ran more than once without an interruption
    never_ran: list[str]  # completed, yet the worker-side ledger has no run of them
    #: The runs (pid, wall time) of the first few unexplained ids: what a failure shows.
    unexplained_runs: dict[str, list[tuple[int, float]]] = field(default_factory=dict)

    def figures(self) -> dict[str, Any]:
        return {
            "jobs": self.accepted,
            "completed": self.completed,
            "dead": self.dead,
            "cancelled": self.cancelled,
            "lost": len(self.lost),
            "pel_after": self.pel,
            "duplicated": self.duplicated,
            "duplicate_runs": self.extra_runs,
            "unexplained_duplicates": len(self.unexplained),
        }

    def assert_exact(self) -> None:
        assert not self.lost, f"{len(self.lost)} accepted jobs lost, e.g. {self.lost[:5]}"
        assert self.pel == 0, f"the PEL still holds {self.pel} entries"
        assert not self.never_ran, f"completed without a recorded run: {self.never_ran[:5]}"
        assert not self.unexplained, (
            f"{len(self.unexplained)} jobs ran twice with no worker interrupted mid-run, "
            f"e.g. (pid, wall) of their runs: {self.unexplained_runs}"
        )


def verify_ledger(
    client: redis.Redis,
    queue: str,
    ledger: Ledger,
    *,
    interrupted_pids: Iterable[int] = (),
    interrupted_jobs: Counter[str] | None = None,
    final_states: dict[str, str | None] | None = None,
    extra_ids: Iterable[str] = (),
    meta: PartitionMeta | None = None,
) -> LedgerCheck:
    """Check the exact ledger: every accepted id final, PEL empty, repeats explained.

    A repeated run of (job, attempt) is explained by a run of it in an interrupted
    process (killed, frozen or died mid-run) or by an interruption recorded for the job
    (``interrupted_jobs``: hand-backs, lease losses), one repeat per interruption.
    ``extra_ids`` are checked like accepted ones (jobs enqueued by the engine itself, such
    as schedule ticks). With ``meta`` (a partitioned queue), records and PELs are
    looked up in every partition."""
    ids = list(dict.fromkeys([*ledger.accepted, *extra_ids]))
    st = final_states if final_states is not None else states(client, queue, ids, meta)
    tally = Counter(st.get(j) for j in ids)
    lost = [j for j in ids if st.get(j) not in FINAL]
    runs = ledger.runs()
    bad_pids = set(interrupted_pids)
    allowances = interrupted_jobs or Counter()
    by_attempt: dict[tuple[str, int], list[Run]] = defaultdict(list)
    for r in runs:
        by_attempt[(r.job_id, r.attempt)].append(r)
    duplicated = extra = 0
    unexplained: list[str] = []
    for (jid, _), rs in by_attempt.items():
        repeats = len(rs) - 1
        if repeats <= 0:
            continue
        duplicated += 1
        extra += repeats
        explained = sum(1 for r in rs if r.pid in bad_pids) + allowances[jid]
        if repeats > explained:
            unexplained.append(jid)
    ran = {r.job_id for r in runs}
    never_ran = [j for j in ids if st.get(j) == "completed" and j not in ran]
    return LedgerCheck(
        accepted=len(ids),
        completed=tally["completed"],
        dead=tally["failed"],
        cancelled=tally["cancelled"],
        lost=lost,
        pel=pending_total(client, queue, meta),
        duplicated=duplicated,
        extra_runs=extra,
        unexplained=unexplained,
        never_ran=never_ran,
        unexplained_runs={
            j: [(r.pid, round(r.wall, 3)) for r in runs if r.job_id == j] for j in unexplained[:3]
        },
    )


def stats_completed(client: redis.Redis, queue: str) -> int:
    """The queue's lifetime completion counter."""
    raw = client.hget(keys_of(queue).stats, "completed")
    return int(raw) if raw is not None else 0


def first_run_after(ledger: Ledger, pid: int, wall: float) -> float | None:
    """Wall time of the first run recorded by ``pid`` at or after ``wall``."""
    times = [r.wall for r in ledger.runs() if r.pid == pid and r.wall >= wall]
    return min(times) if times else None


def rounded(values: Iterable[float], ndigits: int = 3) -> list[float]:
    return [round(v, ndigits) for v in values]
