"""Chaos scenarios where Redis misbehaves under load: killed, shut down, away for 10 s,
restarted 20 times, or full. Each ends with the exact ledger."""

from __future__ import annotations

import asyncio
import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import orjson
import pytest
import redis

import streamq
from streamq.errors import ConnectionFailedError, QueueFullError
from streamq.protocol.codec import new_job_id
from streamq.protocol.keys import QueueKeys
from streamq.server import EmbeddedServer
from tests._support import wait_until
from tests.chaos._chaos_support import (
    Fleet,
    Ledger,
    LedgerCheck,
    WorkerProcess,
    rounded,
    settle,
    states,
    stats_completed,
    verify_ledger,
)

pytestmark = pytest.mark.chaos

RECOVERY_LIMIT_S = 2.0  # workers must consume again within this long after Redis returns
CRASH_CYCLES = 3  # scenarios 2 and 3
RESTART_CYCLES = 20  # scenario 11
OUTAGE_S = 10.0  # scenario 4
PRODUCER_FAIL_LIMIT_S = 5.0  # a producer with retry_attempts=2 must give up within this


class Feeder(threading.Thread):
    """Enqueues small batches until stopped (bounded in jobs and time). An id enters the
    ledger only after its enqueue returned; ids of refused batches are kept apart."""

    def __init__(
        self, url: str, queue: str, ledger: Ledger, *, batch: int = 10, period: float = 0.02
    ) -> None:
        super().__init__(daemon=True)
        self.url, self.queue, self.ledger = url, queue, ledger
        self.batch, self.period = batch, period
        self.refused_ids: list[str] = []
        self.refusals = 0
        self.max_jobs = 50_000
        self.max_s = 90.0
        self.error: BaseException | None = None
        self._stop_event = threading.Event()

    def run(self) -> None:
        rng = random.Random()
        deadline = time.monotonic() + self.max_s
        try:
            with streamq.Producer(self.url, retry_attempts=1) as producer:
                while not self._stop_event.is_set() and time.monotonic() < deadline:
                    if len(self.ledger.accepted) >= self.max_jobs:
                        break
                    specs = [
                        streamq.JobSpec("work", {"ms": rng.randint(0, 5)}, job_id=new_job_id())
                        for _ in range(self.batch)
                    ]
                    try:
                        res = producer.enqueue_many(self.queue, specs)
                    except ConnectionFailedError:
                        self.refusals += 1
                        self.refused_ids += [s.job_id for s in specs if s.job_id]
                        self._stop_event.wait(0.05)
                        continue
                    self.ledger.accept(r.job_id for r in res)
                    self._stop_event.wait(self.period)
        except BaseException as exc:  # reported by stop()
            self.error = exc

    def stop(self) -> None:
        self._stop_event.set()
        self.join(15)
        assert not self.is_alive(), "the feeder did not stop"
        if self.error is not None:
            raise AssertionError(f"the feeder died: {self.error!r}") from self.error


def _recovery(
    client: redis.Redis, queue: str, ledger: Ledger, workers: list[WorkerProcess], t0: float
) -> tuple[float, list[float]]:
    """Seconds from ``t0`` (wall clock, Redis back) to the first completion, and to each
    worker's first run after it. Waits at most 3x the limit, then reports what it saw."""
    c0 = stats_completed(client, queue)
    first_completion: float | None = None
    firsts: dict[int, float] = {}
    deadline = time.monotonic() + 3 * RECOVERY_LIMIT_S
    while time.monotonic() < deadline:
        if first_completion is None and stats_completed(client, queue) > c0:
            first_completion = time.time() - t0
        for r in ledger.runs():
            if r.wall >= t0 and (r.pid not in firsts or r.wall < firsts[r.pid] + t0):
                firsts[r.pid] = r.wall - t0
        if first_completion is not None and all(w.pid in firsts for w in workers):
            break
        time.sleep(0.02)
    inf = float("inf")
    return (
        first_completion if first_completion is not None else inf,
        [firsts.get(w.pid, inf) for w in workers],
    )


def _finish(
    client: redis.Redis,
    queue: str,
    ledger: Ledger,
    fleet: Fleet,
    feeder: Feeder,
    figures: dict[str, Any],
) -> LedgerCheck:
    """Settle, check the ledger, fill the common figures. Repeats are allowed only for
    jobs whose entry was reclaimed or whose worker lost the lease (an outage longer than
    the lease); no worker dies in these scenarios."""
    final = settle(client, queue, ledger.accepted)
    reclaimed = Counter(e.get("job_id") for e in fleet.events("reclaimed"))
    losses = fleet.lease_losses()
    check = verify_ledger(
        client, queue, ledger, interrupted_jobs=reclaimed + losses, final_states=final
    )
    # Refused batches may have been written before the connection broke: such jobs are
    # not owed to anyone, but they must not be left half-done either.
    refused = states(client, queue, feeder.refused_ids)
    written = [j for j, s in refused.items() if s is not None]
    figures.update(
        check.figures(),
        refused_batches=feeder.refusals,
        refused_but_written=len(written),
        refused_but_written_unfinished=sum(1 for j in written if refused[j] == "waiting"),
        reclaimed_entries=sum(reclaimed.values()),
        fenced_in_live_workers=sum(losses.values()),
    )
    return check


def _restarts_under_load(
    srv: EmbeddedServer,
    client: redis.Redis,
    ledger: Ledger,
    fleet: Fleet,
    queue: str,
    figures: dict[str, Any],
    *,
    cycles: int,
    fault: Callable[[], None],
    downtime: tuple[float, float],
    gap: tuple[float, float],
) -> LedgerCheck:
    rng = random.Random(figures["seed"])
    workers = [fleet.start(), fleet.start()]
    feeder = Feeder(srv.url, queue, ledger)
    feeder.start()
    completion: list[float] = []
    per_worker: list[float] = []
    try:
        wait_until(lambda: len(ledger.runs()) > 200, 15, "the load to start")
        for _ in range(cycles):
            time.sleep(rng.uniform(*gap))  # load between faults
            fault()
            time.sleep(rng.uniform(*downtime))  # Redis is away
            srv.restart()
            t0 = time.time()
            first, firsts = _recovery(client, queue, ledger, workers, t0)
            completion.append(first)
            per_worker += firsts
        time.sleep(0.5)  # a little more load after the last fault
    finally:
        feeder.stop()
    alive = [w.alive for w in workers]
    check = _finish(client, queue, ledger, fleet, feeder, figures)
    figures.update(
        recovery_first_completion_s=rounded(completion),
        recovery_max_s=round(max([*completion, *per_worker]), 3),
        workers_alive=all(alive),
    )
    assert all(alive), "a worker died during the restarts"
    check.assert_exact()
    assert max(completion) <= RECOVERY_LIMIT_S, f"slow recovery: {completion}"
    assert max(per_worker) <= RECOVERY_LIMIT_S, f"a worker resumed late: {per_worker}"
    assert figures["refused_but_written_unfinished"] == 0
    return check


def _worker_fleet(
    fleet_factory: Callable[..., Fleet], srv: EmbeddedServer, queue: str, **env: str
) -> Fleet:
    base = {"STREAMQ_LEASE": "3000", "STREAMQ_LOG_LEVEL": "warning"}
    return fleet_factory(srv.url, queue, concurrency=8, env={**base, **env})


def test_redis_sigkill_under_load_with_strict_fsync_loses_no_acknowledged_job(
    server_factory: Callable[..., EmbeddedServer],
    ledger: Ledger,
    fleet_factory: Callable[..., Fleet],
    queue_name: str,
    figures: dict[str, Any],
) -> None:
    """2. Redis SIGKILL under load, strict profile.

    Two workers run a steady stream of short jobs while a producer enqueues batches; Redis
    (appendfsync always) is SIGKILLed 3 times and restarted on its data dir and port.
    Every job whose enqueue returned must end completed, the PEL empty."""
    figures["seed"] = random.randrange(2**32)
    srv = server_factory(profile="strict")
    client = redis.Redis.from_url(srv.url)
    try:
        fleet = _worker_fleet(fleet_factory, srv, queue_name)
        _restarts_under_load(
            srv,
            client,
            ledger,
            fleet,
            queue_name,
            figures,
            cycles=CRASH_CYCLES,
            fault=srv.kill,
            downtime=(0.2, 0.5),
            gap=(1.0, 2.0),
        )
        figures["faults"] = f"{CRASH_CYCLES} Redis SIGKILLs (strict profile)"
    finally:
        client.close()


def test_redis_shutdown_and_restart_under_load_loses_no_job(
    srv: EmbeddedServer,
    client: redis.Redis,
    ledger: Ledger,
    fleet_factory: Callable[..., Fleet],
    queue_name: str,
    figures: dict[str, Any],
) -> None:
    """3. Redis SHUTDOWN and restart under load, default profile.

    As scenario 2, but Redis (AOF everysec) is stopped cleanly with SHUTDOWN 3 times and
    restarted on the same data dir and port. Nothing acknowledged may be lost."""
    figures["seed"] = random.randrange(2**32)
    fleet = _worker_fleet(fleet_factory, srv, queue_name)
    _restarts_under_load(
        srv,
        client,
        ledger,
        fleet,
        queue_name,
        figures,
        cycles=CRASH_CYCLES,
        fault=srv.stop,
        downtime=(0.2, 0.5),
        gap=(1.0, 2.0),
    )
    figures["faults"] = f"{CRASH_CYCLES} Redis SHUTDOWN/restarts (default profile)"


def test_twenty_redis_restarts_in_a_row_workers_always_resume(
    srv: EmbeddedServer,
    client: redis.Redis,
    ledger: Ledger,
    fleet_factory: Callable[..., Fleet],
    queue_name: str,
    figures: dict[str, Any],
) -> None:
    """11. Redis restarted 20 times in a row under load.

    Redis is stopped and restarted 20 times with short pauses while two workers consume a
    steady stream of jobs. After each return every worker must run a job again within 2 s;
    no worker may end stuck; nothing acknowledged may be lost."""
    figures["seed"] = random.randrange(2**32)
    fleet = _worker_fleet(fleet_factory, srv, queue_name)
    _restarts_under_load(
        srv,
        client,
        ledger,
        fleet,
        queue_name,
        figures,
        cycles=RESTART_CYCLES,
        fault=srv.stop,
        downtime=(0.05, 0.3),
        gap=(0.2, 0.5),
    )
    figures["faults"] = f"{RESTART_CYCLES} Redis stop/restarts"


def test_redis_away_for_ten_seconds_workers_survive_and_producers_fail_fast(
    srv: EmbeddedServer,
    client: redis.Redis,
    ledger: Ledger,
    fleet_factory: Callable[..., Fleet],
    queue_name: str,
    figures: dict[str, Any],
) -> None:
    """4. Redis unreachable for 10 s.

    Under load, Redis is stopped for 10 s and restarted on the same port. Meanwhile a
    Producer and an AsyncProducer with retry_attempts=2 must raise ConnectionFailedError
    within 5 s (never hang); the workers must stay up and consume again within 2 s of
    Redis's return; nothing acknowledged may be lost."""
    fleet = _worker_fleet(fleet_factory, srv, queue_name, STREAMQ_LEASE="30000")
    workers = [fleet.start(), fleet.start()]
    feeder = Feeder(srv.url, queue_name, ledger)
    feeder.start()
    fail_times: list[float] = []
    try:
        wait_until(lambda: len(ledger.runs()) > 200, 15, "the load to start")
        srv.stop()
        t_down = time.monotonic()
        with streamq.Producer(srv.url, retry_attempts=2) as producer:
            for _ in range(3):
                t = time.monotonic()
                with pytest.raises(ConnectionFailedError):
                    producer.enqueue(queue_name, "work", {"ms": 0})
                fail_times.append(time.monotonic() - t)
                time.sleep(1.0)  # pacing inside the outage
        fail_times.append(asyncio.run(_async_enqueue_fails(srv.url, queue_name)))
        time.sleep(max(OUTAGE_S - (time.monotonic() - t_down), 0))  # the rest of the outage
        alive_during = [w.alive for w in workers]
        outage = time.monotonic() - t_down
        srv.restart()
        t0 = time.time()
        first, firsts = _recovery(client, queue_name, ledger, workers, t0)
        time.sleep(0.5)  # a little more load after the last fault
    finally:
        feeder.stop()
    check = _finish(client, queue_name, ledger, fleet, feeder, figures)
    figures.update(
        faults=f"Redis down for {outage:.1f} s",
        producer_fail_s=rounded(fail_times),
        recovery_first_completion_s=round(first, 3),
        recovery_per_worker_s=rounded(firsts),
        workers_alive=all(alive_during) and all(w.alive for w in workers),
    )
    assert all(alive_during) and all(w.alive for w in workers)
    check.assert_exact()
    assert max(fail_times) <= PRODUCER_FAIL_LIMIT_S, fail_times
    assert first <= RECOVERY_LIMIT_S and max(firsts) <= RECOVERY_LIMIT_S, (first, firsts)
    assert figures["refused_but_written_unfinished"] == 0


# Scenario 4b.
STOP_LIMIT_S = 20.0  # grace + the 10 s completion drain + a bounded hand-back, with margin


def test_workers_told_to_stop_while_redis_is_down_exit_and_lose_nothing(
    srv: EmbeddedServer,
    client: redis.Redis,
    ledger: Ledger,
    fleet_factory: Callable[..., Fleet],
    queue_name: str,
    figures: dict[str, Any],
) -> None:
    """4b. SIGTERM while Redis is down.

    Two workers (grace 300 ms, lease 3 s) are running 1-2 s jobs when Redis stops; both
    get SIGTERM (then a second one) during the outage. They must exit within 20 s, not
    wait for Redis for ever; once Redis is back a new worker finishes every job (those
    the stopped workers could not hand back are reclaimed after the lease)."""
    rng = random.Random()
    env = {"STREAMQ_SHUTDOWN_GRACE": "300", "STREAMQ_LEASE": "3000"}
    fleet = fleet_factory(srv.url, queue_name, concurrency=4, env=env)
    stopping = [fleet.start(), fleet.start()]
    with streamq.Producer(srv.url) as producer:
        specs = [streamq.JobSpec("work", {"ms": rng.randint(1000, 2000)}) for _ in range(24)]
        ledger.accept(r.job_id for r in producer.enqueue_many(queue_name, specs))
    wait_until(lambda: len({r.pid for r in ledger.runs()}) == 2, 10, "both workers to run jobs")
    srv.stop()
    t_term = time.monotonic()
    for w in stopping:
        w.signal(signal.SIGTERM)
    time.sleep(1.0)  # pacing: the second signal ("hurry") comes a second later
    for w in stopping:
        w.signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_LIMIT_S
    while any(w.alive for w in stopping) and time.monotonic() < deadline:
        time.sleep(0.05)
    stop_s = time.monotonic() - t_term
    exited = [not w.alive for w in stopping]
    codes = [w.proc.poll() for w in stopping]
    for w in stopping:
        fleet.kill(w)  # a no-op for those that exited; they all stopped mid-run
    srv.restart()
    fleet.start()
    final = settle(client, queue_name, ledger.accepted)
    check = verify_ledger(
        client, queue_name, ledger, interrupted_pids=fleet.interrupted, final_states=final
    )
    figures.update(
        check.figures(),
        faults="Redis stopped, then SIGTERM x2 to both workers",
        workers_exited=exited,
        exit_codes=codes,
        stop_s=round(stop_s, 2),
    )
    assert all(exited), f"workers still running {stop_s:.0f} s after SIGTERM"
    check.assert_exact()
    assert check.completed == len(specs)


async def _async_enqueue_fails(url: str, queue: str) -> float:
    async with streamq.AsyncProducer(url, retry_attempts=2) as producer:
        t = time.monotonic()
        with pytest.raises(ConnectionFailedError):
            await producer.enqueue(queue, "work", {"ms": 0})
        return time.monotonic() - t


# Scenario 5.
PAYLOAD_BYTES = 16 * 1024
FULL_MAX_ATTEMPTS = 2000


def test_full_redis_refuses_enqueues_drains_and_accepts_again(
    server_factory: Callable[..., EmbeddedServer],
    ledger: Ledger,
    fleet_factory: Callable[..., Fleet],
    queue_name: str,
    figures: dict[str, Any],
) -> None:
    """5. maxmemory reached under noeviction.

    Redis with maxmemory 4mb (noeviction); one slow worker (concurrency 2, 30 ms jobs);
    a producer enqueues 16 KiB jobs as fast as it can. Enqueue must raise QueueFullError
    once memory is full (writing nothing), the worker must keep draining, and enqueue
    must succeed again once the drained entries free memory; nothing acknowledged lost."""
    srv = server_factory(maxmemory="4mb")
    client = redis.Redis.from_url(srv.url)
    fleet = fleet_factory(srv.url, queue_name, concurrency=2, env={"STREAMQ_LEASE": "3000"})
    worker = fleet.start()
    worker.consumer()  # started (a worker started on a full Redis is scenario 5b)
    blob = "x" * PAYLOAD_BYTES
    refused: list[str] = []
    phases: list[int] = []  # accepted count at each refusal streak's start
    try:
        with streamq.Producer(srv.url) as producer:

            def enqueue_one() -> bool:
                jid = new_job_id()
                try:
                    producer.enqueue(queue_name, "work", {"ms": 30, "blob": blob}, job_id=jid)
                except QueueFullError:
                    refused.append(jid)
                    return False
                ledger.accept([jid])
                return True

            for _ in range(3):  # fill, get refused, wait for the drain to free memory
                for _ in range(FULL_MAX_ATTEMPTS):
                    if not enqueue_one():
                        break
                phases.append(len(ledger.accepted))
                wait_until(enqueue_one, 30, "enqueue to be accepted again", interval=0.05)
            used = client.info("memory")["used_memory"]
        final = settle(client, queue_name, ledger.accepted)
        check = verify_ledger(client, queue_name, ledger, final_states=final)
        written = [j for j, s in states(client, queue_name, refused).items() if s is not None]
        figures.update(
            check.figures(),
            faults="maxmemory 4mb reached 3 times",
            refusals=len(refused),
            refused_but_written=len(written),
            accepted_before_each_refusal=phases,
            used_memory_mb=round(used / 2**20, 2),
            worker_alive=worker.alive,
            worker_errors=[e["event"] for e in worker.events() if e.get("level") == "error"],
        )
        check.assert_exact()
        assert len(phases) == 3 and all(p < len(ledger.accepted) for p in phases)
        assert refused and not written  # a refused enqueue wrote nothing
        assert worker.alive
    finally:
        client.close()


def test_a_worker_started_on_a_full_redis_drains_it_and_keeps_running(
    server_factory: Callable[..., EmbeddedServer],
    ledger: Ledger,
    fleet_factory: Callable[..., Fleet],
    queue_name: str,
    figures: dict[str, Any],
) -> None:
    """5b. A worker started on a full Redis.

    With no worker running, 16 KiB jobs are enqueued until Redis (maxmemory 4mb,
    noeviction) refuses them; maxmemory is then lowered 256 KiB below the memory in use,
    so Redis stays full until jobs are drained. A worker started now must come up, drain
    every job, keep its maintenance loops alive (its heartbeat goes on), and enqueue must
    work again afterwards."""
    srv = server_factory(maxmemory="4mb")
    client = redis.Redis.from_url(srv.url)
    fleet = fleet_factory(srv.url, queue_name, concurrency=4, env={"STREAMQ_LEASE": "3000"})
    blob = "x" * PAYLOAD_BYTES
    k = QueueKeys(queue_name)
    try:
        with streamq.Producer(srv.url) as producer:
            for _ in range(FULL_MAX_ATTEMPTS):
                jid = new_job_id()
                try:
                    producer.enqueue(queue_name, "work", {"ms": 5, "blob": blob}, job_id=jid)
                except QueueFullError:
                    break
                ledger.accept([jid])
            used = int(client.info("memory")["used_memory"])
            client.config_set("maxmemory", str(used - 256 * 1024))
            worker = fleet.start()
            wait_until(lambda: worker.events("worker_started") or not worker.alive, 10, "the start")
            figures.update(jobs=len(ledger.accepted), worker_started=worker.alive)
            assert worker.alive, f"the worker exited {worker.proc.poll()}: {worker.output()}"
            consumer = worker.consumer()
            final = settle(client, queue_name, ledger.accepted, timeout=20)
            check = verify_ledger(client, queue_name, ledger, final_states=final)
            figures.update(check.figures(), faults="Redis full before the worker started")
            check.assert_exact()

            def seen_ms() -> int:
                raw = client.hget(k.workers, consumer)
                return int(orjson.loads(raw)["seen_ms"]) if raw else 0

            before = seen_ms()
            beat = wait_until(lambda: seen_ms() > before, 5, "the heartbeat to go on")
            figures["heartbeat_alive"] = bool(beat)
            ok = wait_until(
                lambda: _enqueued(producer, queue_name, ledger), 10, "enqueue to work again"
            )
            assert ok
    finally:
        client.close()


def _enqueued(producer: streamq.Producer, queue: str, ledger: Ledger) -> bool:
    jid = new_job_id()
    try:
        producer.enqueue(queue, "work", {"ms": 0}, job_id=jid)
    except QueueFullError:
        return False
    ledger.accept([jid])
    return True
