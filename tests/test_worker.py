"""The worker's job path: handlers, results, logs, bounded fetching, retries, timeouts,
promotion of delayed jobs, retention, server checks and the process entry point.

In-process workers on the session servers (redis7 and valkey8) unless a test needs a
server of its own (``server_factory``) or a real process (``python -m streamq.worker``)."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from _worker_support import (
    ROOT,
    Spawner,
    await_until,
    capture_logs,
    entries,
    job_hash,
    job_keys,
    members,
    pel,
    pending_count,
    run_burst,
    run_until,
    settings,
)
from apps import app, read_ledger, runs

import streamq
from streamq.errors import ServerError
from streamq.protocol import worker as wops
from streamq.protocol.keys import GROUP, QueueKeys
from streamq.server import EmbeddedServer
from streamq.worker import maintenance
from streamq.worker.__main__ import load_app, loop_runner
from streamq.worker.checks import check_masters, check_server
from streamq.worker.runner import Worker

JOB_FIELDS = ("queue", "job_id", "name", "attempt")


@pytest.fixture
def producer(redis_url: str) -> Iterator[streamq.Producer]:
    with streamq.Producer(redis_url) as p:
        yield p


# ---------------------------------------------------------------------- happy path


def test_async_and_sync_handlers_run_and_their_results_are_stored(
    redis_url: str, producer: streamq.Producer, queue_name: str, ledger: Path
) -> None:
    a = producer.enqueue(queue_name, "noop", {"n": 1}).job_id
    s = producer.enqueue(queue_name, "sync_noop", [1, "two"]).job_id
    with capture_logs() as logs:
        run_burst(Worker(app, [queue_name], settings=settings(redis_url)))

    ja, js = producer.get_job(queue_name, a), producer.get_job(queue_name, s)
    assert ja is not None and ja.state is streamq.JobState.COMPLETED
    assert ja.result == {"echo": {"n": 1}} and ja.attempt == 1
    assert js is not None and js.state is streamq.JobState.COMPLETED
    assert js.result == {"echo": [1, "two"]}
    assert ja.finished_at_ms is not None and ja.started_at_ms is not None
    assert runs(ledger) == {a: 1, s: 1}
    status = producer.status(queue_name)
    assert (status.waiting, status.active, status.completed_total) == (0, 0, 2)
    for jid, name in ((a, "noop"), (s, "sync_noop")):
        (proc,) = logs.named("processing", job_id=jid)
        (done,) = logs.named("completed", job_id=jid)
        for e in (proc, done):
            assert (e["queue"], e["name"], e["attempt"]) == (queue_name, name, 1)
        assert isinstance(done["duration_ms"], float) and done["duration_ms"] >= 0


def test_logs_are_json_lines_with_the_job_fields(
    server_factory: Callable[..., EmbeddedServer], tmp_path: Path, queue_name: str
) -> None:
    srv = server_factory()
    with streamq.Producer(srv.url) as p:
        ok = p.enqueue(queue_name, "noop", 1).job_id
        bad = p.enqueue(
            queue_name, "fail", 2, max_retries=1, backoff=streamq.Backoff.fixed(50)
        ).job_id
    sp = Spawner(srv.url, tmp_path, tmp_path / "ledger")
    try:
        w = sp.start(queue_name, burst=True)
        assert w.wait(20) == 0
    finally:
        sp.close()
    lines = w.output().splitlines()
    assert lines and all(line.startswith("{") for line in lines), lines
    events = w.events()
    assert len(events) == len(lines)  # every line parses as JSON
    for e in events:
        assert e["ts"].endswith("Z") and e["level"] in ("debug", "info", "warning", "error")

    def one(event: str, job_id: str, attempt: int) -> dict[str, Any]:
        found = [e for e in events if e["event"] == event and e.get("job_id") == job_id]
        found = [e for e in found if e["attempt"] == attempt]
        assert len(found) == 1, (event, job_id, attempt, events)
        assert all(k in found[0] for k in JOB_FIELDS)
        assert found[0]["queue"] == queue_name
        return found[0]

    one("processing", ok, 1)
    assert one("completed", ok, 1)["duration_ms"] >= 0
    one("processing", bad, 1)
    retrying = one("retrying", bad, 1)
    assert retrying["level"] == "warning" and retrying["retry_in_ms"] == 50
    assert "boom 2" in retrying["error"] and retrying["duration_ms"] >= 0
    one("processing", bad, 2)
    assert one("failed", bad, 2)["duration_ms"] >= 0
    dead = one("dead", bad, 2)
    assert dead["level"] == "error" and dead["reason"] == "failed"
    assert dead["duration_ms"] >= 0 and dead["name"] == "fail"
    assert events[0]["event"] == "worker_started"
    assert events[-1]["event"] == "worker_stopped"


# ---------------------------------------------------------------------- bounded fetching


async def _sample(fn: Callable[[], None], stop: asyncio.Event, every: float = 0.01) -> None:
    while not stop.is_set():
        fn()
        await asyncio.sleep(every)


def test_fetching_never_holds_more_entries_than_free_slots(
    redis_url: str,
    redis_client: redis.Redis,
    producer: streamq.Producer,
    queue_name: str,
    ledger: Path,
) -> None:
    producer.enqueue_many(queue_name, [streamq.JobSpec("sleep", {"ms": 150})] * 12)
    worker = Worker(app, [queue_name], settings=settings(redis_url), concurrency=3)
    seen: list[int] = []

    async def main() -> None:
        stop = asyncio.Event()
        sampler = asyncio.create_task(
            _sample(lambda: seen.append(pending_count(redis_client, queue_name)), stop)
        )
        await asyncio.wait_for(worker.run(burst=True), 20)
        stop.set()
        await sampler

    asyncio.run(main())
    assert len(read_ledger(ledger)) == 12
    assert max(seen) <= 3, seen
    assert max(seen) == 3  # it did run at full concurrency while we watched
    assert producer.status(queue_name).completed_total == 12


def test_reclaimed_and_fetched_jobs_never_exceed_the_concurrency(
    redis_url: str,
    redis_client: redis.Redis,
    producer: streamq.Producer,
    queue_name: str,
    ledger: Path,
) -> None:
    # Two entries of a dead consumer, idle past the lease: the worker reclaims them while
    # its fetch is blocked waiting for new jobs. New jobs arriving then must wait for a
    # free slot instead of filling the slots the reclaimed jobs already took.
    producer.enqueue_many(queue_name, [streamq.JobSpec("sleep", {"ms": 600})] * 2)
    stream = QueueKeys(queue_name).stream
    redis_client.xreadgroup(GROUP, "ghost", {stream: ">"}, count=2)
    lease = 300
    time.sleep(lease / 1000)  # the ghost's entries are now past their lease
    worker = Worker(app, [queue_name], settings=settings(redis_url, lease_ms=lease), concurrency=2)
    mine: list[int] = []

    def sample() -> None:
        mine.append(sum(1 for e in pel(redis_client, queue_name) if e["consumer"] != "ghost"))

    async def main() -> None:
        stop = asyncio.Event()
        sampler = asyncio.create_task(_sample(sample, stop))
        with capture_logs() as logs:
            task = asyncio.create_task(worker.run(burst=True))
            await await_until(lambda: len(logs.named("reclaimed")) == 2, 5, what="reclaims")
            producer.enqueue_many(queue_name, [streamq.JobSpec("sleep", {"ms": 100})] * 4)
            await asyncio.wait_for(task, 20)
        stop.set()
        await sampler

    asyncio.run(main())
    assert len(read_ledger(ledger)) == 6
    assert max(mine) <= 2, mine
    assert producer.status(queue_name).completed_total == 6


# ---------------------------------------------------------------------- failures


def test_a_failing_job_is_retried_with_backoff_then_dead_with_error_and_traceback(
    redis_url: str, producer: streamq.Producer, queue_name: str, ledger: Path
) -> None:
    job_id = producer.enqueue(
        queue_name, "fail", "x", max_retries=2, backoff=streamq.Backoff.fixed(50)
    ).job_id
    with capture_logs() as logs:
        run_burst(Worker(app, [queue_name], settings=settings(redis_url)))

    recorded = [r for r in read_ledger(ledger) if r[0] == job_id]
    assert [attempt for _, attempt, _, _ in recorded] == [1, 2, 3]
    gaps = [b[3] - a[3] for a, b in itertools.pairwise(recorded)]
    assert all(g >= 0.045 for g in gaps), gaps  # the backoff was waited out each time
    job = producer.get_job(queue_name, job_id)
    assert job is not None and job.state is streamq.JobState.FAILED
    assert job.attempt == 3 and job.dead_reason == "failed"
    assert job.error == "RuntimeError: boom x"
    assert job.traceback is not None and "Traceback" in job.traceback
    assert "raise RuntimeError" in job.traceback
    (dead,) = producer.dead_letters(queue_name)
    assert (dead.job_id, dead.name, dead.data, dead.attempts) == (job_id, "fail", "x", 3)
    assert dead.error == "RuntimeError: boom x" and dead.reason == "failed"
    assert "raise RuntimeError" in dead.traceback
    status = producer.status(queue_name)
    assert (status.retried_total, status.dead, status.failed) == (2, 1, 1)
    assert [e["attempt"] for e in logs.named("retrying", job_id=job_id)] == [1, 2]
    assert [e["attempt"] for e in logs.named("dead", job_id=job_id)] == [3]


def test_a_handlers_own_timeout_is_its_failure_not_the_jobs_time_limit(
    redis_url: str, producer: streamq.Producer, queue_name: str
) -> None:
    # The handler runs in the worker's runner task: its own asyncio.timeout must cancel
    # only the handler's await, and its TimeoutError is an ordinary failure (reason
    # "failed", with the traceback), while the jobs beside it complete.
    bad = producer.enqueue(queue_name, "own_timeout", None, max_retries=0).job_id
    good = [producer.enqueue(queue_name, "noop", i).job_id for i in range(5)]
    run_burst(Worker(app, [queue_name], settings=settings(redis_url), concurrency=2))
    job = producer.get_job(queue_name, bad)
    assert job is not None and job.state is streamq.JobState.FAILED
    assert job.dead_reason == "failed"
    assert job.error is not None and job.error.startswith("TimeoutError")
    assert job.traceback is not None and "own_timeout" in job.traceback
    for job_id in good:
        done = producer.get_job(queue_name, job_id)
        assert done is not None and done.state is streamq.JobState.COMPLETED


@pytest.mark.parametrize("name", ["sleep", "sync_sleep"])
def test_a_job_over_its_timeout_fails_with_reason_timeout(
    name: str, redis_url: str, producer: streamq.Producer, queue_name: str, ledger: Path
) -> None:
    # A sync handler's thread cannot be stopped: it sleeps on in the background, so keep
    # it short enough not to outlive the test session by much.
    ms = 5000 if name == "sleep" else 3000
    job_id = producer.enqueue(queue_name, name, {"ms": ms}, timeout=0.2, max_retries=0).job_id
    t0 = time.monotonic()
    run_burst(Worker(app, [queue_name], settings=settings(redis_url)))
    assert time.monotonic() - t0 < 2.5  # the worker did not wait for the handler
    job = producer.get_job(queue_name, job_id)
    assert job is not None and job.state is streamq.JobState.FAILED
    assert job.dead_reason == "timeout"
    assert job.error is not None and "timed out after 0.2 s" in job.error
    (dead,) = producer.dead_letters(queue_name)
    assert dead.reason == "timeout"


# ---------------------------------------------------------------------- promotion


def test_a_delayed_job_runs_once_due_by_the_redis_clock(
    redis_url: str, producer: streamq.Producer, queue_name: str, ledger: Path
) -> None:
    res = producer.enqueue(queue_name, "noop", 1, delay=0.3)
    assert res.state is streamq.JobState.DELAYED
    run_burst(Worker(app, [queue_name], settings=settings(redis_url), promote_poll_ms=50))
    job = producer.get_job(queue_name, res.job_id)
    assert job is not None and job.state is streamq.JobState.COMPLETED
    assert job.created_at_ms is not None and job.finished_at_ms is not None
    assert job.finished_at_ms - job.created_at_ms >= 300  # both stamped by Redis
    assert runs(ledger)[res.job_id] == 1


@pytest.mark.parametrize("skew_s", [3600, -3600])
def test_a_worker_with_a_skewed_clock_promotes_on_time(
    skew_s: int,
    redis_url: str,
    producer: streamq.Producer,
    queue_name: str,
    ledger: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    res = producer.enqueue(queue_name, "noop", 1, delay=0.5)
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + skew_s)  # the worker's host is off
    run_burst(Worker(app, [queue_name], settings=settings(redis_url), promote_poll_ms=50), 10)
    monkeypatch.undo()
    job = producer.get_job(queue_name, res.job_id)
    assert job is not None and job.state is streamq.JobState.COMPLETED
    assert job.created_at_ms is not None and job.finished_at_ms is not None
    assert 500 <= job.finished_at_ms - job.created_at_ms < 3000


def test_two_workers_promoting_the_same_delayed_jobs_never_duplicate_one(
    redis_url: str, producer: streamq.Producer, queue_name: str, ledger: Path
) -> None:
    results = producer.enqueue_many(
        queue_name, [streamq.JobSpec("noop", i, delay=0.3) for i in range(200)]
    )
    ids = {r.job_id for r in results}
    s = settings(redis_url)

    async def main() -> None:
        workers = [
            Worker(app, [queue_name], settings=s, concurrency=10, promote_poll_ms=5)
            for _ in range(2)
        ]
        await asyncio.wait_for(asyncio.gather(*(w.run(burst=True) for w in workers)), 20)

    with capture_logs(logging.DEBUG) as logs:
        asyncio.run(main())
    assert runs(ledger) == dict.fromkeys(ids, 1)
    assert sum(e["count"] for e in logs.named("promoted")) == 200
    assert producer.status(queue_name).completed_total == 200


def test_racing_promoters_move_each_due_id_into_the_stream_exactly_once(
    redis_url: str, redis_client: redis.Redis, producer: streamq.Producer, queue_name: str
) -> None:
    # The promote script itself, hammered by 8 clients at once over the same due ids.
    results = producer.enqueue_many(
        queue_name, [streamq.JobSpec("noop", i, delay=0.05) for i in range(300)]
    )
    keys = QueueKeys(queue_name)
    time.sleep(0.1)  # let them fall due (the Redis clock decides; checked below)
    moved: list[int] = []
    start = threading.Barrier(8)

    def promoter() -> None:
        from streamq._driver import SyncDriver

        client = redis.Redis.from_url(redis_url)
        driver = SyncDriver(client, "test")
        try:
            start.wait()
            for _ in range(5):
                info = driver.run(wops.due(keys, 1000))
                moved.append(driver.run(wops.promote(keys, info.ids)) if info.ids else 0)
        finally:
            client.close()

    threads = [threading.Thread(target=promoter) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert sum(moved) == 300
    assert redis_client.xlen(keys.stream) == 300
    found = entries(redis_client, keys.stream)
    assert sorted(f[b"i"].decode() for _, f in found) == sorted(r.job_id for r in results)
    assert redis_client.zcard(keys.delayed) == 0


# ---------------------------------------------------------------------- retention


def test_retention_keeps_only_the_last_completed_and_failed_records(
    redis_url: str,
    redis_client: redis.Redis,
    producer: streamq.Producer,
    queue_name: str,
    ledger: Path,
) -> None:
    producer.enqueue_many(queue_name, [streamq.JobSpec("noop", i) for i in range(50)])
    producer.enqueue_many(
        queue_name, [streamq.JobSpec("fail", i, max_retries=0) for i in range(20)]
    )
    s = settings(redis_url, keep_completed=10, keep_failed=5)
    keys = QueueKeys(queue_name)

    def trimmed() -> bool:
        st = producer.status(queue_name)
        return (
            st.completed_total == 50
            and st.failed_total == 20
            and st.completed <= 10
            and st.failed <= 5
            and len(job_keys(redis_client, queue_name)) <= 15
        )

    asyncio.run(run_until([Worker(app, [queue_name], settings=s)], trimmed, 10, "retention"))
    st = producer.status(queue_name)
    assert (st.completed, st.failed) == (10, 5)
    kept = {k.rsplit(":", 1)[1] for k in job_keys(redis_client, queue_name)}
    completed = members(redis_client, keys.completed)
    failed = members(redis_client, keys.failed)
    assert kept == completed | failed  # every trimmed id's record is gone, none other
    assert all(job_hash(redis_client, queue_name, j)["s"] == "completed" for j in completed)
    # The DLQ itself is not retention's business: every dead job stays replayable.
    assert st.dead == 20
    assert len(read_ledger(ledger)) == 70


# ---------------------------------------------------------------------- server checks


def test_a_server_without_persistence_makes_the_worker_warn(
    server_factory: Callable[..., EmbeddedServer], queue_name: str
) -> None:
    for profile, expect in (("none", True), ("default", False)):
        srv = server_factory(profile=profile)
        with capture_logs() as logs:
            run_burst(Worker(app, [queue_name], settings=settings(srv.url)))
        warnings = [e["warning"] for e in logs.named("server_warning")]
        assert any("persistence is off" in w for w in warnings) is expect, (profile, warnings)
        assert logs.named("worker_stopped")


def test_check_server_refuses_redis_older_than_6_2() -> None:
    with pytest.raises(ServerError, match=r"Redis 6\.0\.16 is too old.*>= 6\.2"):
        check_server({"redis_version": "6.0.16"}, "3600 1")
    info = check_server(
        {"redis_version": "6.2.0", "maxmemory_policy": "noeviction", "aof_enabled": "1"},
        "3600 1",
    )
    assert info.version == (6, 2, 0) and info.warnings == ()


def test_check_server_warns_about_eviction_and_missing_aof() -> None:
    info = check_server(
        {"redis_version": "7.2.4", "valkey_version": "8.0.1", "maxmemory_policy": "allkeys-lru"},
        "3600 1",
    )
    assert info.flavour == "valkey" and info.version == (8, 0, 1)
    assert any("EVICT" in w for w in info.warnings)
    assert any("AOF is off" in w for w in info.warnings)
    unknown = check_server({"redis_version": "7.0.0", "maxmemory_policy": "noeviction"}, None)
    assert unknown.rdb_enabled is None and any("persistence is off" in w for w in unknown.warnings)


def test_check_masters_names_the_masters_each_warning_or_refusal_is_about() -> None:
    good = {"redis_version": "7.2.4", "maxmemory_policy": "noeviction", "aof_enabled": "1"}
    lru = {**good, "maxmemory_policy": "allkeys-lru"}
    info = check_masters(
        {"a:1": (good, "3600 1"), "b:2": (lru, "3600 1"), "c:3": (lru, ""), "d:4": (good, "")}
    )
    assert info.warnings == (
        "maxmemory-policy is 'allkeys-lru', not 'noeviction' on 2 of 4 masters (b:2, c:3): "
        "Redis may EVICT queued jobs under memory pressure. Set 'maxmemory-policy "
        "noeviction' (see redis.conf).",
    )
    assert info.masters == ("a:1", "b:2", "c:3", "d:4") and info.rdb_enabled is False
    no_aof = {**good, "aof_enabled": "0"}
    info = check_masters({"a:1": (good, ""), "b:2": (no_aof, ""), "c:3": (no_aof, "60 1")})
    persistence, aof = info.warnings
    assert persistence.startswith("persistence is off on 1 of 3 masters (b:2): no AOF")
    assert aof.startswith("AOF is off on 1 of 3 masters (c:3): a Redis crash")
    old = {**good, "redis_version": "6.0.16"}
    with pytest.raises(ServerError, match=r"Redis 6\.0\.16 is too old on 1 of 2 masters \(b:2\)"):
        check_masters({"a:1": (good, ""), "b:2": (old, "")})


# ---------------------------------------------------------------------- shutdown robustness


def test_the_worker_stops_even_when_a_loop_swallows_a_cancellation(
    redis_url: str, queue_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Python 3.11's asyncio.wait_for (used by redis-py to send each command) can swallow
    # a cancellation that lands as the send completes; the loop then carries on.
    real = maintenance.housekeeping_loop

    async def stubborn(w: Worker) -> None:
        try:
            await real(w)
        except asyncio.CancelledError:
            await real(w)  # as if the cancellation had been lost

    monkeypatch.setattr(maintenance, "housekeeping_loop", stubborn)
    worker = Worker(app, [queue_name], settings=settings(redis_url))
    asyncio.run(run_until([worker], lambda: worker.server is not None, 5, "startup"))


# ---------------------------------------------------------------------- process entry


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_the_worker_process_drains_the_queue_in_burst_mode_and_exits_0(
    loop: str, server_factory: Callable[..., EmbeddedServer], tmp_path: Path, queue_name: str
) -> None:
    srv = server_factory()
    with streamq.Producer(srv.url) as p:
        ids = [r.job_id for r in p.enqueue_many(queue_name, [streamq.JobSpec("noop")] * 20)]
        sp = Spawner(srv.url, tmp_path, tmp_path / "ledger")
        try:
            w = sp.start(queue_name, burst=True, extra_args=("--loop", loop))
            assert w.wait(20) == 0
        finally:
            sp.close()
        assert p.status(queue_name).completed_total == 20
    assert runs(sp.ledger) == dict.fromkeys(ids, 1)
    assert w.events("worker_started")[0]["loop"] == loop
    stopped = w.events("worker_stopped")
    assert stopped and stopped[0]["processed"] == 20


def test_the_loop_choice_is_checked_and_uvloop_by_name_must_be_installed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(SystemExit, match="--loop must be one of auto, uvloop, asyncio"):
        loop_runner("trio")
    assert loop_runner("asyncio") is asyncio.run
    monkeypatch.setitem(sys.modules, "uvloop", None)  # as if not installed
    assert loop_runner("auto") is asyncio.run
    with pytest.raises(SystemExit, match=r"pip install 'streamq\[uvloop\]'"):
        loop_runner("uvloop")


def test_the_worker_process_refuses_a_bad_app_with_a_clear_message() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "streamq.worker", "tests.apps:not_an_app", "--queue", "q"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": "/usr/bin:/bin", "REDIS_URL": "redis://127.0.0.1:1/0"},
    )
    assert proc.returncode != 0
    assert "error: 'tests.apps:not_an_app' is not a streamq.worker.App" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("tests.apps", "app must be given as MODULE:ATTRIBUTE"),
        ("tests.no_such_module:app", "cannot import 'tests.no_such_module'"),
        ("tests.apps:missing", "'tests.apps:missing' is not a streamq.worker.App"),
        ("tests.apps:", "app must be given as MODULE:ATTRIBUTE"),
    ],
)
def test_load_app_explains_what_is_wrong_with_the_spec(
    spec: str, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(ROOT))
    with pytest.raises(SystemExit) as exc:
        load_app(spec)
    assert message in str(exc.value.code)


def test_the_worker_process_reports_a_wrong_password_without_retrying_forever(
    redis_url: str, tmp_path: Path
) -> None:
    bad = redis_url.replace("://:", "://:wrong", 1)
    assert bad != redis_url
    proc = subprocess.run(
        [sys.executable, "-m", "streamq.worker", "tests.apps:app", "--queue", "q"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": "/usr/bin:/bin", "REDIS_URL": bad},
    )
    assert proc.returncode == 2
    assert "REDIS_PASSWORD" in proc.stderr
    secret = redis_url.split("://:", 1)[1].split("@", 1)[0]
    assert secret not in proc.stderr


def test_the_worker_process_notes_producer_variables_it_does_not_use() -> None:
    # STREAMQ_BACKOFF_* on a worker used to do nothing, silently.
    proc = subprocess.run(
        [sys.executable, "-m", "streamq.worker", "tests.apps:not_an_app", "--queue", "q"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        env={
            "PATH": "/usr/bin:/bin",
            "REDIS_URL": "redis://127.0.0.1:1/0",
            "STREAMQ_BACKOFF_DELAY": "1000",
            "STREAMQ_MAX_RETRIES": "7",
        },
    )
    notes = [json.loads(line) for line in proc.stderr.splitlines() if "producer_settings" in line]
    assert [n["variables"] for n in notes] == [["STREAMQ_MAX_RETRIES", "STREAMQ_BACKOFF_DELAY"]]
    assert "handlers' defaults" in notes[0]["detail"]
