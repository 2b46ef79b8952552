"""The sync Producer against real servers: enqueue, inspect, cancel, move, wait, DLQ, retries,
bad input, a full server, bad credentials and an unreachable server.

Every test names the behaviour it proves, and each would fail without the mechanism behind
it. Jobs run in an in-process worker (``run_burst`` drains the queue; ``WorkerThread`` keeps
one running while a test steers jobs). Waits poll a condition with a deadline.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
import redis
from _producer_support import (
    WorkerThread,
    commands_between,
    commandstats,
    queue_keys,
    redis_now_ms,
    run_burst,
    wait_until,
)
from _support import closed_port
from redis.connection import AbstractConnection

from streamq import (
    AuthenticationFailedError,
    Backoff,
    ConfigError,
    ConnectionFailedError,
    InvalidStateError,
    Job,
    JobNotFoundError,
    JobOptions,
    JobSpec,
    JobState,
    PayloadError,
    Producer,
    QueueFullError,
    RedisSettings,
    Settings,
    WaitTimeoutError,
)
from streamq.job import (
    EXPLICIT_RETRIES,
    EXPLICIT_TIMEOUT,
    MAX_AT_S,
    MAX_BACKOFF_MS,
    MAX_DELAY_S,
    MAX_RETRIES,
)
from streamq.protocol import jobs as job_ops
from streamq.protocol.keys import GROUP, QueueKeys
from streamq.server import EmbeddedServer
from streamq.worker import App

# ---------------------------------------------------------------------------- fixtures


@pytest.fixture
def settings(redis_url: str) -> Settings:
    return Settings(redis=RedisSettings(url=redis_url))


@pytest.fixture
def producer(settings: Settings) -> Iterator[Producer]:
    with Producer(settings=settings) as p:
        yield p


@pytest.fixture
def keys(queue_name: str) -> QueueKeys:
    return QueueKeys(queue_name)


class Recorder:
    """An App whose handlers record what ran: ``ok`` returns a result, ``boom`` raises while
    ``failing`` is set, ``gated`` waits for ``gate``."""

    def __init__(self) -> None:
        self.app = App()
        self.calls: list[tuple[str, Any, int]] = []
        self.failing = True
        self.gate = threading.Event()
        self.app.register("ok", self._ok)
        self.app.register("dispatch", self._ok)
        self.app.register("boom", self._boom)
        self.app.register("gated", self._gated)

    def _ok(self, job: Job) -> Any:
        self.calls.append((job.name, job.data, job.attempt))
        return {"echo": job.data}

    def _boom(self, job: Job) -> Any:
        self.calls.append((job.name, job.data, job.attempt))
        if self.failing:
            raise RuntimeError(f"platform refused post {job.data}")
        return "recovered"

    def _gated(self, job: Job) -> Any:
        self.calls.append((job.name, job.data, job.attempt))
        assert self.gate.wait(15), "gate never opened"
        return "passed the gate"

    def ran(self, data: Any) -> int:
        return sum(1 for _, d, _ in self.calls if d == data)


@pytest.fixture
def rec() -> Recorder:
    return Recorder()


def stream_job_ids(client: redis.Redis, keys: QueueKeys) -> list[str]:
    return [f[b"i"].decode() for _, f in client.xrange(keys.stream)]


def fake_fetch(client: redis.Redis, keys: QueueKeys, consumer: str = "fake-worker") -> str:
    """Take the next entry as a worker would (XREADGROUP), without finishing it."""
    reply = client.xreadgroup(GROUP, consumer, {keys.stream: ">"}, count=1)
    assert reply, "nothing to fetch"
    return str(reply[0][1][0][0].decode())


# ---------------------------------------------------------------------------- enqueue


def test_adding_a_dispatch_job_returns_an_id(
    producer: Producer, redis_client: redis.Redis, queue_name: str, keys: QueueKeys
) -> None:
    r = producer.enqueue(queue_name, "dispatch", {"post_id": 7, "platform": "mastodon"})

    assert isinstance(r.job_id, str) and r.job_id
    assert r.created is True
    assert r.state is JobState.WAITING
    # The stream entry carries everything a worker needs, under that id.
    [(eid, fields)] = redis_client.xrange(keys.stream)
    assert eid.decode() == r.entry_id
    assert fields[b"i"].decode() == r.job_id
    assert fields[b"n"] == b"dispatch"
    assert orjson.loads(fields[b"d"]) == {"post_id": 7, "platform": "mastodon"}
    assert fields[b"a"] == b"1"
    assert redis_client.hget(keys.job(r.job_id), "s") == b"waiting"
    # Two jobs, two ids.
    assert producer.enqueue(queue_name, "dispatch", {}).job_id != r.job_id


def test_status_reports_waiting_active_completed_failed_delayed(
    producer: Producer,
    redis_client: redis.Redis,
    settings: Settings,
    rec: Recorder,
    queue_name: str,
    keys: QueueKeys,
) -> None:
    assert producer.status(queue_name).counts() == dict.fromkeys(
        ("waiting", "active", "completed", "failed", "delayed"), 0
    )
    producer.enqueue(queue_name, "ok", "done")
    producer.enqueue(queue_name, "boom", "dies", max_retries=0)
    run_burst(rec.app, [queue_name], settings)
    producer.enqueue(queue_name, "ok", "running")
    producer.enqueue(queue_name, "ok", "waiting")
    producer.enqueue(queue_name, "ok", "later", delay=60)
    fake_fetch(redis_client, keys)  # "running" is now held by a worker

    st = producer.status(queue_name)
    assert st.counts() == {"waiting": 1, "active": 1, "completed": 1, "failed": 1, "delayed": 1}
    assert st.dead == 1
    assert st.completed_total == 1 and st.failed_total == 1
    assert st.oldest_waiting_ms is not None


def test_custom_job_id_deduplicates_without_a_second_stream_entry(
    producer: Producer, redis_client: redis.Redis, queue_name: str, keys: QueueKeys
) -> None:
    first = producer.enqueue(queue_name, "dispatch", {"v": 1}, job_id="post-42:mastodon")
    again = producer.enqueue(queue_name, "dispatch", {"v": 2}, job_id="post-42:mastodon")

    assert first.created is True and first.job_id == "post-42:mastodon"
    assert again.created is False
    assert again.job_id == "post-42:mastodon"
    assert again.state is JobState.WAITING
    assert again.entry_id is None
    assert redis_client.xlen(keys.stream) == 1
    job = producer.get_job(queue_name, "post-42:mastodon")
    assert job is not None and job.data == {"v": 1}  # the first payload stands


def test_custom_job_id_deduplicates_within_one_batch_and_against_delayed_jobs(
    producer: Producer, redis_client: redis.Redis, queue_name: str, keys: QueueKeys
) -> None:
    producer.enqueue(queue_name, "dispatch", job_id="later", delay=60)
    results = producer.enqueue_many(
        queue_name,
        [
            JobSpec("dispatch", 1, job_id="twice"),
            JobSpec("dispatch", 2, job_id="twice"),
            JobSpec("dispatch", 3, job_id="later"),
        ],
    )
    assert [r.created for r in results] == [True, False, False]
    assert results[2].state is JobState.DELAYED
    assert redis_client.xlen(keys.stream) == 1
    assert redis_client.zcard(keys.delayed) == 1


def test_a_finished_job_id_is_not_run_again(
    producer: Producer, settings: Settings, rec: Recorder, queue_name: str
) -> None:
    producer.enqueue(queue_name, "ok", "once", job_id="unique-1")
    run_burst(rec.app, [queue_name], settings)
    again = producer.enqueue(queue_name, "ok", "once", job_id="unique-1")
    run_burst(rec.app, [queue_name], settings)

    assert again.created is False and again.state is JobState.COMPLETED
    assert rec.ran("once") == 1


@pytest.mark.parametrize("delay", [30, 30.0, timedelta(seconds=30)], ids=["int", "float", "td"])
def test_delay_puts_the_job_in_the_delayed_zset_due_on_the_redis_clock(
    producer: Producer,
    redis_client: redis.Redis,
    queue_name: str,
    keys: QueueKeys,
    monkeypatch: pytest.MonkeyPatch,
    delay: Any,
) -> None:
    # This host's clock is an hour fast: a due time computed here would be an hour late.
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 3600)

    r = producer.enqueue(queue_name, "dispatch", {}, delay=delay)
    now = redis_now_ms(redis_client)

    assert r.state is JobState.DELAYED and r.created
    score = redis_client.zscore(keys.delayed, r.job_id)
    assert score is not None and int(score) == r.due_at_ms
    assert now + 30_000 - 1000 <= score <= now + 30_000
    assert redis_client.xlen(keys.stream) == 0
    job = producer.get_job(queue_name, r.job_id)
    assert job is not None and job.state is JobState.DELAYED and job.due_at_ms == r.due_at_ms


def test_at_sets_the_exact_due_time(
    producer: Producer, redis_client: redis.Redis, queue_name: str, keys: QueueKeys
) -> None:
    at = datetime.fromtimestamp(redis_now_ms(redis_client) / 1000 + 3600, tz=UTC)
    at = at.replace(microsecond=250_000)
    r = producer.enqueue(queue_name, "dispatch", {}, at=at)
    epoch = producer.enqueue(queue_name, "dispatch", {}, at=at.timestamp() + 1)

    assert r.state is JobState.DELAYED
    assert redis_client.zscore(keys.delayed, r.job_id) == int(at.timestamp() * 1000)
    assert redis_client.zscore(keys.delayed, epoch.job_id) == int(at.timestamp() * 1000) + 1000


def test_at_in_the_past_makes_the_job_ready_at_once(
    producer: Producer, redis_client: redis.Redis, queue_name: str, keys: QueueKeys
) -> None:
    r = producer.enqueue(queue_name, "dispatch", {}, at=datetime(2020, 1, 1, tzinfo=UTC))
    assert r.state is JobState.WAITING
    assert stream_job_ids(redis_client, keys) == [r.job_id]
    assert redis_client.zcard(keys.delayed) == 0


def test_enqueue_many_is_one_round_trip(
    producer: Producer,
    redis_client: redis.Redis,
    queue_name: str,
    keys: QueueKeys,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    producer.enqueue(f"{queue_name}-warm", "dispatch", {})  # connect and load the script
    redis_client.ping()
    sent: list[bytes] = []
    real_send = AbstractConnection.send_packed_command

    def counting_send(self: AbstractConnection, command: Any, check_health: bool = True) -> None:
        sent.append(command)
        real_send(self, command, check_health)

    before = commandstats(redis_client)
    monkeypatch.setattr(AbstractConnection, "send_packed_command", counting_send)
    specs = [JobSpec("dispatch", {"n": i}) for i in range(50)]
    specs += [JobSpec("dispatch", {"n": i}, delay=60) for i in range(50, 60)]
    results = producer.enqueue_many(queue_name, specs)
    monkeypatch.undo()
    ran = commands_between(before, commandstats(redis_client))

    assert len(sent) == 1  # one request written by the client...
    assert ran["evalsha"] == 1  # ...one script call on the server, writing all 60 jobs
    # A new queue: the first XADD (NOMKSTREAM) finds no stream, so the script creates the
    # stream and its group and sends that XADD again.
    assert (ran["hset"], ran["xadd"], ran["zadd"], ran["xgroup|create"]) == (60, 51, 10, 1)
    assert len(results) == 60 and all(r.created for r in results)
    assert redis_client.xlen(keys.stream) == 50
    assert redis_client.zcard(keys.delayed) == 10
    assert [r.state for r in results] == [JobState.WAITING] * 50 + [JobState.DELAYED] * 10


def test_enqueue_into_an_existing_queue_sends_one_xadd_per_job_and_no_exists_or_time(
    producer: Producer, redis_client: redis.Redis, queue_name: str
) -> None:
    producer.enqueue(queue_name, "dispatch", {})  # the queue's stream and group exist now
    before = commandstats(redis_client)
    producer.enqueue_many(queue_name, [JobSpec("dispatch", {"n": i}) for i in range(20)])
    ran = commands_between(before, commandstats(redis_client))
    assert (ran["evalsha"], ran["xadd"], ran["hset"]) == (1, 20, 20)
    # Generated ids are new by construction: no record lookup either.
    assert not {"exists", "time", "xgroup|create", "hget"} & ran.keys()

    # One custom id in the call: every job's record is looked up (dedupe, cancelled ids).
    before = commandstats(redis_client)
    specs = [JobSpec("dispatch", 0, job_id="custom")] + [JobSpec("dispatch", i) for i in range(4)]
    producer.enqueue_many(queue_name, specs)
    ran = commands_between(before, commandstats(redis_client))
    assert (ran["hget"], ran["xadd"], ran["hset"]) == (5, 5, 5)

    # Delayed jobs need the server's clock: one TIME per call, not one per job.
    before = commandstats(redis_client)
    specs = [JobSpec("dispatch", i, delay=60) for i in range(5)] + [JobSpec("dispatch", 5)]
    producer.enqueue_many(queue_name, specs)
    ran = commands_between(before, commandstats(redis_client))
    assert (ran["time"], ran["zadd"], ran["xadd"], ran["hset"]) == (1, 5, 1, 6)


@pytest.mark.parametrize("delay", [None, 60], ids=["waiting", "delayed"])
def test_the_first_job_of_a_queue_creates_its_stream_and_group_at_id_0(
    producer: Producer,
    redis_client: redis.Redis,
    queue_name: str,
    keys: QueueKeys,
    delay: int | None,
) -> None:
    assert not redis_client.exists(keys.stream)
    producer.enqueue(queue_name, "dispatch", {}, delay=delay)
    [group] = redis_client.xinfo_groups(keys.stream)
    assert group["name"] == GROUP.encode() and group["last-delivered-id"] == b"0-0"
    assert redis_client.xlen(keys.stream) == (1 if delay is None else 0)


def test_a_waiting_job_record_has_no_attempts_field_and_is_created_at_its_entry_time(
    producer: Producer, redis_client: redis.Redis, queue_name: str, keys: QueueKeys
) -> None:
    t0 = redis_now_ms(redis_client)
    r = producer.enqueue(queue_name, "dispatch", {"p": 1})
    rec = redis_client.hgetall(keys.job(r.job_id))
    assert r.entry_id is not None
    assert rec == {
        b"n": b"dispatch",
        b"d": b'{"p":1}',
        b"o": b"",
        b"s": b"waiting",
        b"c": r.entry_id.split("-")[0].encode(),
        b"x": r.entry_id.encode(),
    }
    assert t0 <= int(rec[b"c"]) <= redis_now_ms(redis_client)
    job = producer.get_job(queue_name, r.job_id)
    assert job is not None and job.attempt == 0 and job.options == JobOptions()


def test_default_options_are_stored_empty_and_custom_ones_exactly(
    producer: Producer, redis_client: redis.Redis, queue_name: str, keys: QueueKeys
) -> None:
    # One field off the defaults, and marked as given for this job (handler defaults
    # must not replace it).
    custom = JobOptions(3, Backoff.exponential(5000, 5.0), 1, EXPLICIT_TIMEOUT)
    a = producer.enqueue(queue_name, "dispatch", {})
    b = producer.enqueue(queue_name, "dispatch", {}, timeout=0.001)
    c = producer.enqueue(queue_name, "dispatch", {}, delay=60, max_retries=0)
    entries = {f[b"i"].decode(): f for _, f in redis_client.xrange(keys.stream)}

    assert entries[a.job_id][b"o"] == b"" == redis_client.hget(keys.job(a.job_id), "o")
    assert entries[b.job_id][b"o"] == custom.encode() == redis_client.hget(keys.job(b.job_id), "o")
    retries = JobOptions(max_retries=0, explicit=EXPLICIT_RETRIES)
    assert redis_client.hget(keys.job(c.job_id), "o") == retries.encode()
    got = {r.job_id: producer.get_job(queue_name, r.job_id) for r in (a, b, c)}
    assert {k: j.options for k, j in got.items() if j} == {
        a.job_id: JobOptions(),
        b.job_id: custom,
        c.job_id: JobOptions(max_retries=0),
    }
    explicit = [got[r.job_id].options.explicit for r in (a, b, c)]  # type: ignore[union-attr]
    assert explicit == [0, EXPLICIT_TIMEOUT, EXPLICIT_RETRIES]


def test_producer_defaults_from_settings_are_stored_in_full(
    settings: Settings, redis_client: redis.Redis, queue_name: str, keys: QueueKeys
) -> None:
    with Producer(settings=settings.with_changes(max_retries=1)) as p:
        r = p.enqueue(queue_name, "dispatch", {})
        job = p.get_job(queue_name, r.job_id)
    assert redis_client.hget(keys.job(r.job_id), "o") == JobOptions(max_retries=1).encode()
    assert job is not None and job.options == JobOptions(max_retries=1)


def test_a_schedule_with_default_options_keeps_their_explicit_form_in_its_definition(
    producer: Producer, redis_client: redis.Redis, queue_name: str, keys: QueueKeys
) -> None:
    # Definitions are compared as bytes: one stored before the defaults encoded as b""
    # must still equal the same schedule added now, or re-adding it would move its tick.
    tick = producer.add_schedule(queue_name, "hourly", "dispatch", {}, every=3600)
    raw_def = redis_client.hget(keys.repeat_defs, "hourly")
    assert raw_def is not None
    assert orjson.loads(raw_def)["o"] == '[3,"e",5000,5.0,0.0,0]'
    assert producer.add_schedule(queue_name, "hourly", "dispatch", {}, every=3600) == tick
    [sch] = producer.list_schedules(queue_name)
    assert sch.options == b""  # the jobs it fires carry the empty form
    custom = producer.add_schedule(queue_name, "c", "dispatch", {}, every=3600, max_retries=1)
    assert custom > 0
    by_key = {s.key: s.options for s in producer.list_schedules(queue_name)}
    assert by_key["c"] == JobOptions(max_retries=1, explicit=EXPLICIT_RETRIES).encode()


def test_a_schedule_stored_before_the_explicit_mask_keeps_its_tick_when_re_added(
    producer: Producer, redis_client: redis.Redis, queue_name: str, keys: QueueKeys
) -> None:
    # What an earlier version stored for add_schedule(..., every=3600, max_retries=1): the
    # options in the 6-item form, without the explicit mask.
    legacy = orjson.dumps(
        {
            "name": "dispatch",
            "data": "{}",
            "o": '[1,"e",5000,5.0,0.0,0]',
            "every_ms": 3_600_000,
            "cron": None,
            "tz": "UTC",
        }
    )
    redis_client.hset(keys.repeat_defs, "c", legacy)
    redis_client.zadd(keys.repeat, {"c": 4_102_444_800_000})  # its next tick (2100-01-01)
    tick = producer.add_schedule(queue_name, "c", "dispatch", {}, every=3600, max_retries=1)
    assert tick == 4_102_444_800_000  # the deploy's re-add did not move it
    stored = orjson.loads(redis_client.hget(keys.repeat_defs, "c"))  # type: ignore[arg-type]
    assert stored["o"] == JobOptions(max_retries=1, explicit=EXPLICIT_RETRIES).encode().decode()
    # A real change still takes the new first tick.
    assert producer.add_schedule(queue_name, "c", "dispatch", {}, every=60, max_retries=1) < tick


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        (JobSpec("dispatch", {"when": object()}), PayloadError),
        (JobSpec("dispatch", "x" * 2000), PayloadError),
        (JobSpec("dispatch", {}, job_id="has space"), ConfigError),
        (JobSpec("dispatch", {}, at=datetime(2030, 1, 1)), ConfigError),
        (JobSpec("", {}), ConfigError),
    ],
    ids=["unserialisable", "oversized", "bad-id", "naive-at", "no-name"],
)
def test_one_bad_job_in_a_batch_means_nothing_is_written(
    redis_url: str, redis_client: redis.Redis, queue_name: str, bad: JobSpec, error: type
) -> None:
    settings = Settings(redis=RedisSettings(url=redis_url), max_payload_bytes=1000)
    good = [JobSpec("dispatch", {"n": i}, job_id=f"good-{i}") for i in range(3)]
    with Producer(settings=settings) as producer, pytest.raises(error):
        producer.enqueue_many(queue_name, [*good[:2], bad, good[2]])
    assert queue_keys(redis_client, queue_name) == []


def test_unserialisable_payload_is_refused_and_nothing_is_written(
    producer: Producer, redis_client: redis.Redis, queue_name: str
) -> None:
    with pytest.raises(PayloadError, match="not JSON-serialisable"):
        producer.enqueue(queue_name, "dispatch", {"ids": {1, 2}}, job_id="j1")
    with pytest.raises(PayloadError):
        producer.enqueue(queue_name, "dispatch", {"big": 2**70}, job_id="j1")
    assert queue_keys(redis_client, queue_name) == []


@dataclasses.dataclass
class _Point:
    """orjson writes dataclasses as objects: a NaN field would become null too."""

    x: float


@pytest.mark.parametrize(
    "data",
    [
        float("nan"),
        {"score": float("inf")},
        [1, {"x": [-float("inf")]}],
        {float("nan"): 1},
        _Point(float("nan")),
    ],
    ids=["nan", "inf-in-dict", "neg-inf-nested", "nan-key", "dataclass-field"],
)
def test_nan_or_infinity_in_a_payload_is_refused_and_nothing_is_written(
    producer: Producer, redis_client: redis.Redis, queue_name: str, data: Any
) -> None:
    # orjson would silently write them as null.
    with pytest.raises(PayloadError, match="NaN or Infinity"):
        producer.enqueue(queue_name, "dispatch", data)
    with pytest.raises(PayloadError, match="NaN or Infinity"):
        producer.enqueue_many(queue_name, [JobSpec("dispatch", 1), JobSpec("dispatch", data)])
    assert queue_keys(redis_client, queue_name) == []
    assert producer.enqueue(queue_name, "dispatch", {"x": None, "y": 1.5}).created


def test_a_due_time_at_the_documented_maximum_reads_back(
    producer: Producer, queue_name: str
) -> None:
    r = producer.enqueue(queue_name, "dispatch", {}, at=MAX_AT_S)
    job = producer.get_job(queue_name, r.job_id)
    assert job is not None and job.due_at_ms == MAX_AT_S * 1000
    assert producer.reschedule(queue_name, r.job_id, delay=MAX_DELAY_S) > MAX_DELAY_S * 1000
    with pytest.raises(ConfigError, match="100 years"):
        producer.reschedule(queue_name, r.job_id, delay=1e300)
    job = producer.get_job(queue_name, r.job_id)
    assert job is not None and job.state == "delayed"


def test_oversized_payload_is_refused_and_nothing_is_written(
    redis_url: str, redis_client: redis.Redis, queue_name: str
) -> None:
    settings = Settings(redis=RedisSettings(url=redis_url), max_payload_bytes=100)
    with Producer(settings=settings) as producer:
        with pytest.raises(PayloadError, match="over the limit of 100 bytes"):
            producer.enqueue(queue_name, "dispatch", "x" * 99, job_id="too-big")  # 101 bytes
        assert queue_keys(redis_client, queue_name) == []
        # Exactly at the limit is fine.
        assert producer.enqueue(queue_name, "dispatch", "x" * 98, job_id="fits").created


@pytest.mark.parametrize(
    "queue",
    ["", "has space", "brace{tag}", "x" * 201, "new\nline", "é"],
    ids=["empty", "space", "braces", "too-long", "newline", "non-ascii"],
)
def test_invalid_queue_names_raise_config_error(producer: Producer, queue: str) -> None:
    with pytest.raises(ConfigError, match="invalid queue name"):
        producer.enqueue(queue, "dispatch", {})
    with pytest.raises(ConfigError):
        producer.status(queue)


@pytest.mark.parametrize(
    "job_id",
    ["", "has space", "a{b}", "x" * 201, "tab\t", "ü"],
    ids=["empty", "space", "braces", "too-long", "tab", "non-ascii"],
)
def test_invalid_job_ids_raise_config_error(
    producer: Producer, redis_client: redis.Redis, queue_name: str, job_id: str
) -> None:
    with pytest.raises(ConfigError, match="invalid job id"):
        producer.enqueue(queue_name, "dispatch", {}, job_id=job_id)
    assert queue_keys(redis_client, queue_name) == []


def test_a_naive_datetime_for_at_is_refused(
    producer: Producer, redis_client: redis.Redis, queue_name: str
) -> None:
    with pytest.raises(ConfigError, match="timezone-aware"):
        producer.enqueue(queue_name, "dispatch", {}, at=datetime(2030, 1, 1, 12, 0))
    assert queue_keys(redis_client, queue_name) == []
    r = producer.enqueue(queue_name, "dispatch", {}, delay=60)
    with pytest.raises(ConfigError, match="timezone-aware"):
        producer.reschedule(queue_name, r.job_id, at=datetime(2030, 1, 1, 12, 0))


@pytest.mark.parametrize(
    "when",
    [
        {"delay": -1},
        {"delay": float("nan")},
        {"delay": float("inf")},
        {"delay": timedelta(seconds=-5)},
        {"at": -10},
        {"at": float("nan")},
        {"delay": 10, "at": datetime(2030, 1, 1, tzinfo=UTC)},
        {"delay": 1e300},
        {"delay": 10**400},
        {"delay": MAX_DELAY_S + 1},
        {"at": 1e300},
        {"at": MAX_AT_S + 1},
        {"delay": "5"},
    ],
    ids=[
        "negative",
        "nan",
        "inf",
        "negative-td",
        "negative-at",
        "nan-at",
        "both",
        "huge-delay",
        "huge-int-delay",
        "past-max-delay",
        "huge-at",
        "past-max-at",
        "str-delay",
    ],
)
def test_impossible_timing_is_refused_and_nothing_is_written(
    producer: Producer, redis_client: redis.Redis, queue_name: str, when: dict[str, Any]
) -> None:
    with pytest.raises(ConfigError):
        producer.enqueue(queue_name, "dispatch", {}, **when)
    assert queue_keys(redis_client, queue_name) == []


@pytest.mark.parametrize(
    "options",
    [
        {"timeout": float("nan")},
        {"timeout": float("inf")},
        {"timeout": -1},
        {"timeout": "5"},
        {"max_retries": -1},
        {"max_retries": "3"},
        {"max_retries": 2.5},
        {"backoff": "fast"},
        {"max_retries": 10**30},
        {"max_retries": MAX_RETRIES + 1},
        {"timeout": 1e300},
    ],
    ids=[
        "nan",
        "inf",
        "negative",
        "str",
        "neg-retries",
        "str-retries",
        "float-retries",
        "bo",
        "huge-retries",
        "past-max-retries",
        "huge-timeout",
    ],
)
def test_bad_job_options_raise_config_error_and_nothing_is_written(
    producer: Producer, redis_client: redis.Redis, queue_name: str, options: dict[str, Any]
) -> None:
    with pytest.raises(ConfigError):
        producer.enqueue(queue_name, "dispatch", {}, **options)
    with pytest.raises(ConfigError):
        producer.enqueue_many(queue_name, [JobSpec("dispatch", 1), JobSpec("dispatch", **options)])
    assert queue_keys(redis_client, queue_name) == []


def test_job_options_travel_with_the_job(producer: Producer, queue_name: str) -> None:
    r = producer.enqueue(
        queue_name, "dispatch", {}, max_retries=7, backoff=Backoff.fixed(250), timeout=1.5
    )
    default = producer.enqueue(queue_name, "dispatch", {})
    job = producer.get_job(queue_name, r.job_id)
    plain = producer.get_job(queue_name, default.job_id)

    assert job is not None and plain is not None
    assert job.options == JobOptions(7, Backoff.fixed(250), 1500)
    assert plain.options == JobOptions(3, Backoff.exponential(5000, 5.0), 0)


# ---------------------------------------------------------------------------- get_job


def test_get_job_fields_before_and_after_processing(
    producer: Producer,
    redis_client: redis.Redis,
    settings: Settings,
    rec: Recorder,
    queue_name: str,
) -> None:
    t0 = redis_now_ms(redis_client)
    r = producer.enqueue(queue_name, "ok", {"post": 1})
    before = producer.get_job(queue_name, r.job_id)
    assert before is not None
    assert (before.queue, before.id, before.name, before.data) == (
        queue_name,
        r.job_id,
        "ok",
        {"post": 1},
    )
    assert before.state is JobState.WAITING
    assert before.attempt == 0
    assert before.result is None and before.error is None
    assert before.created_at_ms is not None and t0 <= before.created_at_ms <= t0 + 1000
    assert before.started_at_ms is None and before.finished_at_ms is None
    assert before.entry_id == r.entry_id

    run_burst(rec.app, [queue_name], settings)
    after = producer.get_job(queue_name, r.job_id)
    assert after is not None
    assert after.state is JobState.COMPLETED
    assert after.attempt == 1
    assert after.result == {"echo": {"post": 1}}
    assert after.error is None and after.traceback is None
    assert after.created_at_ms == before.created_at_ms
    assert after.started_at_ms is not None and after.finished_at_ms is not None
    assert after.finished_at_ms >= before.created_at_ms
    assert after.worker
    assert after.entry_id is None


def test_get_job_shows_a_fetched_job_as_active_with_its_worker(
    producer: Producer, redis_client: redis.Redis, queue_name: str, keys: QueueKeys
) -> None:
    r = producer.enqueue(queue_name, "dispatch", {})
    fake_fetch(redis_client, keys, consumer="host-1-abc")
    job = producer.get_job(queue_name, r.job_id)

    assert job is not None
    assert job.state is JobState.ACTIVE
    assert job.attempt == 1
    assert job.worker == "host-1-abc"
    assert job.deliveries == 1
    assert job.lease_idle_ms is not None and job.lease_idle_ms >= 0


def test_get_job_of_an_unknown_id_is_none(producer: Producer, queue_name: str) -> None:
    assert producer.get_job(queue_name, "never-enqueued") is None


# ---------------------------------------------------------------------------- cancel


def test_cancelled_delayed_job_never_runs(
    producer: Producer,
    redis_client: redis.Redis,
    settings: Settings,
    rec: Recorder,
    queue_name: str,
    keys: QueueKeys,
) -> None:
    r = producer.enqueue(queue_name, "ok", "cancelled", delay=0.2)
    producer.cancel(queue_name, r.job_id)

    assert redis_client.zscore(keys.delayed, r.job_id) is None
    job = producer.get_job(queue_name, r.job_id)
    assert job is not None and job.state is JobState.CANCELLED
    assert job.finished_at_ms is not None
    # Had it stayed in the zset, the worker would promote and run it once it is due.
    producer.enqueue(queue_name, "ok", "sentinel", delay=0.3)
    run_burst(rec.app, [queue_name], settings)
    assert rec.ran("sentinel") == 1
    assert rec.ran("cancelled") == 0


def test_cancelled_waiting_job_never_runs(
    producer: Producer,
    redis_client: redis.Redis,
    settings: Settings,
    rec: Recorder,
    queue_name: str,
    keys: QueueKeys,
) -> None:
    r = producer.enqueue(queue_name, "ok", "cancelled")
    producer.enqueue(queue_name, "ok", "sentinel")
    producer.cancel(queue_name, r.job_id)

    assert r.job_id not in stream_job_ids(redis_client, keys)
    run_burst(rec.app, [queue_name], settings)
    assert rec.ran("sentinel") == 1
    assert rec.ran("cancelled") == 0
    job = producer.get_job(queue_name, r.job_id)
    assert job is not None and job.state is JobState.CANCELLED


def test_cancel_of_a_running_job_is_refused(
    producer: Producer, redis_client: redis.Redis, queue_name: str, keys: QueueKeys
) -> None:
    r = producer.enqueue(queue_name, "dispatch", {})
    fake_fetch(redis_client, keys)
    with pytest.raises(InvalidStateError) as info:
        producer.cancel(queue_name, r.job_id)
    assert info.value.state == "active"
    assert redis_client.xlen(keys.stream) == 1  # the worker keeps its entry


def test_cancel_of_a_completed_job_raises_invalid_state(
    producer: Producer, settings: Settings, rec: Recorder, queue_name: str
) -> None:
    r = producer.enqueue(queue_name, "ok", {})
    run_burst(rec.app, [queue_name], settings)
    with pytest.raises(InvalidStateError, match="completed") as info:
        producer.cancel(queue_name, r.job_id)
    assert info.value.state == "completed"
    job = producer.get_job(queue_name, r.job_id)
    assert job is not None and job.state is JobState.COMPLETED


def test_cancel_twice_raises_invalid_state(producer: Producer, queue_name: str) -> None:
    r = producer.enqueue(queue_name, "dispatch", {}, delay=60)
    producer.cancel(queue_name, r.job_id)
    with pytest.raises(InvalidStateError) as info:
        producer.cancel(queue_name, r.job_id)
    assert info.value.state == "cancelled"


def test_cancel_of_an_unknown_job_raises_not_found(producer: Producer, queue_name: str) -> None:
    with pytest.raises(JobNotFoundError):
        producer.cancel(queue_name, "no-such-job")


# ---------------------------------------------------------------------------- reschedule


def test_reschedule_moves_the_due_score(
    producer: Producer, redis_client: redis.Redis, queue_name: str, keys: QueueKeys
) -> None:
    r = producer.enqueue(queue_name, "dispatch", {}, delay=60)

    due = producer.reschedule(queue_name, r.job_id, delay=600)
    now = redis_now_ms(redis_client)
    assert redis_client.zscore(keys.delayed, r.job_id) == due
    assert now + 600_000 - 1000 <= due <= now + 600_000

    at = datetime.fromtimestamp(now / 1000 + 7200, tz=UTC)
    due = producer.reschedule(queue_name, r.job_id, at=at)
    assert due == int(at.timestamp() * 1000)
    assert redis_client.zscore(keys.delayed, r.job_id) == due
    job = producer.get_job(queue_name, r.job_id)
    assert job is not None and job.due_at_ms == due and job.state is JobState.DELAYED
    assert redis_client.xlen(keys.stream) == 0


@pytest.mark.parametrize(
    "when",
    [{"delay": 0}, {"at": datetime(2020, 1, 1, tzinfo=UTC)}, {"at": 0}],
    ids=["delay-0", "past-datetime", "epoch-0"],
)
def test_reschedule_to_a_past_time_makes_the_job_ready_at_once(
    producer: Producer,
    redis_client: redis.Redis,
    queue_name: str,
    keys: QueueKeys,
    when: dict[str, Any],
) -> None:
    r = producer.enqueue(queue_name, "dispatch", {"x": 1}, delay=3600)
    producer.reschedule(queue_name, r.job_id, **when)

    assert redis_client.zscore(keys.delayed, r.job_id) is None
    [(_, fields)] = redis_client.xrange(keys.stream)
    assert fields[b"i"].decode() == r.job_id and fields[b"a"] == b"1"
    assert orjson.loads(fields[b"d"]) == {"x": 1}
    job = producer.get_job(queue_name, r.job_id)
    assert job is not None and job.state is JobState.WAITING and job.due_at_ms is None


def test_reschedule_refuses_waiting_unknown_and_ambiguous(
    producer: Producer, queue_name: str
) -> None:
    waiting = producer.enqueue(queue_name, "dispatch", {})
    with pytest.raises(InvalidStateError) as info:
        producer.reschedule(queue_name, waiting.job_id, delay=10)
    assert info.value.state == "waiting"
    with pytest.raises(JobNotFoundError):
        producer.reschedule(queue_name, "nope", delay=10)
    delayed = producer.enqueue(queue_name, "dispatch", {}, delay=10)
    with pytest.raises(ConfigError):
        producer.reschedule(queue_name, delayed.job_id)
    with pytest.raises(ConfigError):
        producer.reschedule(queue_name, delayed.job_id, delay=1, at=0)


# ---------------------------------------------------------------------------- wait


def test_wait_returns_an_already_finished_job_with_its_result(
    producer: Producer, settings: Settings, rec: Recorder, queue_name: str
) -> None:
    r = producer.enqueue(queue_name, "ok", [1, 2])
    run_burst(rec.app, [queue_name], settings)

    t0 = time.monotonic()
    job = producer.wait(queue_name, r.job_id, timeout=5)
    assert time.monotonic() - t0 < 1.0
    assert job.state is JobState.COMPLETED
    assert job.result == {"echo": [1, 2]}


def test_wait_sees_a_job_finish_while_waiting(
    producer: Producer,
    redis_client: redis.Redis,
    settings: Settings,
    rec: Recorder,
    queue_name: str,
) -> None:
    r = producer.enqueue(queue_name, "gated", "slow")

    def open_gate_once_the_waiter_blocks() -> None:
        # The job can only finish after wait() is parked in XREAD BLOCK on the events.
        wait_until(
            lambda: any(
                c.get("cmd") == "xread" and "b" in c.get("flags", "")
                for c in redis_client.client_list()
            ),
            what="wait() to block on the events stream",
        )
        rec.gate.set()

    opener = threading.Thread(target=open_gate_once_the_waiter_blocks, daemon=True)
    with WorkerThread(rec.app, [queue_name], settings):
        opener.start()
        try:
            job = producer.wait(queue_name, r.job_id, timeout=15)
        finally:
            rec.gate.set()
            opener.join(15)

    assert job.state is JobState.COMPLETED
    assert job.result == "passed the gate"


def test_wait_returns_even_when_the_end_event_was_lost(
    producer: Producer,
    redis_client: redis.Redis,
    queue_name: str,
    keys: QueueKeys,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The events stream is capped: under load a job's end event can be trimmed before a
    # waiter reads it. The waiter re-reads the job's state now and then instead of hanging.
    monkeypatch.setattr(job_ops, "WAIT_RECHECK_S", 0.2)
    r = producer.enqueue(queue_name, "dispatch", {})

    def finish_silently() -> None:
        wait_until(
            lambda: any(
                c.get("cmd") == "xread" and "b" in c.get("flags", "")
                for c in redis_client.client_list()
            ),
            what="wait() to block on the events stream",
        )
        redis_client.hset(keys.job(r.job_id), mapping={"s": "completed", "r": "42"})

    finisher = threading.Thread(target=finish_silently, daemon=True)
    finisher.start()
    t0 = time.monotonic()
    job = producer.wait(queue_name, r.job_id, timeout=10)
    finisher.join(5)
    assert job.state is JobState.COMPLETED and job.result == 42
    assert time.monotonic() - t0 < 3


def test_wait_raises_wait_timeout_error(producer: Producer, queue_name: str) -> None:
    r = producer.enqueue(queue_name, "dispatch", {})
    t0 = time.monotonic()
    with pytest.raises(WaitTimeoutError, match=r.job_id):
        producer.wait(queue_name, r.job_id, timeout=0.3)
    assert 0.3 <= time.monotonic() - t0 < 3.0


def test_wait_longer_than_the_socket_timeout_is_not_a_connection_error(
    redis_url: str, queue_name: str
) -> None:
    # Each blocking read must end before the socket timeout, however long the wait.
    rs = RedisSettings(url=redis_url, socket_timeout=0.3)
    with Producer(settings=Settings(redis=rs)) as producer:
        r = producer.enqueue(queue_name, "dispatch", {})
        with pytest.raises(WaitTimeoutError):
            producer.wait(queue_name, r.job_id, timeout=0.8)


def test_wait_returns_dead_and_cancelled_jobs(
    producer: Producer, settings: Settings, rec: Recorder, queue_name: str
) -> None:
    dead = producer.enqueue(queue_name, "boom", "x", max_retries=0)
    run_burst(rec.app, [queue_name], settings)
    cancelled = producer.enqueue(queue_name, "ok", {}, delay=60)
    producer.cancel(queue_name, cancelled.job_id)

    got = producer.wait(queue_name, dead.job_id, timeout=2)
    assert got.state is JobState.FAILED and got.error
    assert producer.wait(queue_name, cancelled.job_id, timeout=2).state is JobState.CANCELLED
    with pytest.raises(JobNotFoundError):
        producer.wait(queue_name, "no-such-job", timeout=1)


# ---------------------------------------------------------------------------- DLQ


def make_dead(
    producer: Producer, settings: Settings, rec: Recorder, queue: str, n: int = 1
) -> list[str]:
    ids = [
        producer.enqueue(queue, "boom", f"d{i}", max_retries=1, backoff=Backoff.fixed(10)).job_id
        for i in range(n)
    ]
    run_burst(rec.app, [queue], settings)
    return ids


def test_a_job_that_always_fails_ends_in_the_dlq_with_error_and_traceback(
    producer: Producer, settings: Settings, rec: Recorder, queue_name: str
) -> None:
    [job_id] = make_dead(producer, settings, rec, queue_name)

    assert [c[2] for c in rec.calls] == [1, 2]  # one try, one retry
    [dead] = producer.dead_letters(queue_name)
    assert dead.job_id == job_id and dead.name == "boom" and dead.data == "d0"
    assert dead.attempts == 2
    assert dead.error == "RuntimeError: platform refused post d0"
    assert "Traceback (most recent call last)" in dead.traceback
    assert "platform refused post d0" in dead.traceback
    assert dead.reason == "failed"
    job = producer.get_job(queue_name, job_id)
    assert job is not None
    assert job.state is JobState.FAILED
    assert job.attempt == 2
    assert job.error == dead.error and job.traceback == dead.traceback
    assert job.dead_reason == "failed" and job.finished_at_ms is not None
    st = producer.status(queue_name)
    assert (st.dead, st.failed, st.delayed, st.waiting) == (1, 1, 0, 0)


def test_replay_dead_moves_the_job_back_and_it_can_complete(
    producer: Producer, settings: Settings, rec: Recorder, queue_name: str
) -> None:
    [job_id] = make_dead(producer, settings, rec, queue_name)
    [dead] = producer.dead_letters(queue_name)

    assert producer.replay_dead(queue_name, dead.dead_id) is True
    assert producer.dead_letters(queue_name) == []
    job = producer.get_job(queue_name, job_id)
    assert job is not None and job.state is JobState.WAITING and job.attempt == 0
    st = producer.status(queue_name)
    assert (st.dead, st.failed, st.waiting) == (0, 0, 1)
    with pytest.raises(JobNotFoundError):
        producer.replay_dead(queue_name, dead.dead_id)  # already replayed

    rec.failing = False
    run_burst(rec.app, [queue_name], settings)
    done = producer.get_job(queue_name, job_id)
    assert done is not None and done.state is JobState.COMPLETED
    assert done.result == "recovered" and done.attempt == 1


def test_replay_all_dead_moves_every_entry_back(
    producer: Producer, settings: Settings, rec: Recorder, queue_name: str
) -> None:
    ids = make_dead(producer, settings, rec, queue_name, n=3)
    assert len(producer.dead_letters(queue_name)) == 3
    seen: list[int] = []

    assert producer.replay_all_dead(queue_name, progress=seen.append) == 3
    assert seen and seen[-1] == 3
    assert producer.dead_letters(queue_name) == []
    assert producer.replay_all_dead(queue_name) == 0

    rec.failing = False
    run_burst(rec.app, [queue_name], settings)
    for job_id in ids:
        job = producer.get_job(queue_name, job_id)
        assert job is not None and job.state is JobState.COMPLETED


def test_purge_dead_empties_the_dlq(
    producer: Producer, settings: Settings, rec: Recorder, queue_name: str
) -> None:
    make_dead(producer, settings, rec, queue_name, n=2)
    assert producer.purge_dead(queue_name) == 2
    assert producer.dead_letters(queue_name) == []
    assert producer.status(queue_name).dead == 0
    assert producer.purge_dead(queue_name) == 0


def test_replay_of_an_unknown_dead_entry_raises_not_found(
    producer: Producer, queue_name: str
) -> None:
    with pytest.raises(JobNotFoundError):
        producer.replay_dead(queue_name, "1-0")


# ---------------------------------------------------------------------------- retries


def test_default_policy_retries_after_5_25_125_seconds_on_the_redis_clock(
    producer: Producer,
    redis_client: redis.Redis,
    settings: Settings,
    rec: Recorder,
    queue_name: str,
    keys: QueueKeys,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Producer and worker both run on a host whose clock is an hour fast: due times that
    # followed it would be an hour off.
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 3600)
    job_id = producer.enqueue(queue_name, "boom", "flaky").job_id

    def record() -> tuple[bytes | None, bytes | None]:
        s, a = redis_client.hmget(keys.job(job_id), ["s", "a"])
        return s, a

    with WorkerThread(rec.app, [queue_name], settings):
        for attempt, backoff_ms in ((1, 5_000), (2, 25_000), (3, 125_000)):
            wait_until(
                lambda a=attempt: record() == (b"delayed", str(a).encode()),
                what=f"attempt {attempt} to fail and be scheduled for a retry",
            )
            score = redis_client.zscore(keys.delayed, job_id)
            now = redis_now_ms(redis_client)
            assert score is not None
            assert backoff_ms - 1000 <= score - now <= backoff_ms, (attempt, score - now)
            # Don't sit out the backoff: make the retry due now.
            producer.reschedule(queue_name, job_id, delay=0)
        wait_until(lambda: record()[0] == b"failed", what="the last attempt to fail")

    assert [c[2] for c in rec.calls] == [1, 2, 3, 4]
    job = producer.get_job(queue_name, job_id)
    assert job is not None and job.state is JobState.FAILED and job.attempt == 4
    [dead] = producer.dead_letters(queue_name)
    assert dead.attempts == 4
    assert producer.status(queue_name).retried_total == 3


def test_backoff_delay_for_exponential_default() -> None:
    assert [Backoff().delay_for(n) for n in (1, 2, 3, 4)] == [5000, 25000, 125000, 625000]
    assert Backoff.exponential(100, 2.0).delay_for(4) == 800
    # The engine's defaults are the spec's: 3 retries, 5 s, 25 s, 125 s.
    s = Settings()
    assert (s.max_retries, s.backoff_type, s.backoff_delay_ms, s.backoff_factor) == (
        3,
        "exponential",
        5000,
        5.0,
    )


def test_backoff_delay_is_capped_instead_of_overflowing() -> None:
    huge = Backoff.exponential(5000, 1000.0)
    assert huge.delay_for(2) == 5000 * 1000
    assert huge.delay_for(500) == MAX_BACKOFF_MS  # 1000**499 overflows a float
    assert Backoff.fixed(MAX_BACKOFF_MS).delay_for(1) == MAX_BACKOFF_MS
    with pytest.raises(ConfigError, match="30 days"):
        Backoff.fixed(MAX_BACKOFF_MS + 1)  # a base delay past the cap is refused, not cut


def test_backoff_delay_for_fixed() -> None:
    assert [Backoff.fixed(10).delay_for(n) for n in range(1, 6)] == [10] * 5


def test_backoff_jitter_stays_within_bounds_and_varies() -> None:
    import random

    b = Backoff.exponential(1000, 5.0, jitter=0.25)

    class Edge(random.Random):
        def __init__(self, value: float) -> None:
            super().__init__()
            self.value = value

        def random(self) -> float:
            return self.value

    assert b.delay_for(2, Edge(0.0)) == 5000
    assert b.delay_for(2, Edge(0.999999)) == 3750
    rng = random.Random(1234)
    draws = [b.delay_for(2, rng) for _ in range(500)]
    assert all(3750 <= d <= 5000 for d in draws)
    assert len(set(draws)) > 100


@pytest.mark.parametrize(
    "make",
    [
        lambda: Backoff("linear"),
        lambda: Backoff(delay_ms=-1),
        lambda: Backoff(factor=0.5),
        lambda: Backoff(jitter=1.5),
        lambda: Backoff.fixed(10, jitter=-0.1),
        lambda: Backoff(factor=float("inf")),
        lambda: Backoff(factor=float("nan")),
        lambda: Backoff(delay_ms=1.5),  # type: ignore[arg-type]
        lambda: Backoff(jitter=float("nan")),
        lambda: JobOptions(max_retries=-1),
        lambda: JobOptions(max_retries=True),
        lambda: JobOptions(timeout_ms=-5),
        lambda: JobOptions(max_retries=10**30),
        lambda: JobOptions(timeout_ms=10**30),
        lambda: Backoff(delay_ms=10**30),
    ],
)
def test_bad_backoff_or_options_raise_config_error(make: Callable[[], object]) -> None:
    with pytest.raises(ConfigError):
        make()


# ---------------------------------------------------------------------------- full server


def test_a_full_server_raises_queue_full_and_writes_nothing_half(
    server: EmbeddedServer, server_factory: Callable[..., EmbeddedServer], queue_name: str
) -> None:
    # A fresh server of the same kind as the session one (redis7 / valkey8).
    srv = server_factory(maxmemory="2mb", profile="none", binary=server.binary)
    client = redis.Redis.from_url(srv.url)
    assert client.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"
    keys = QueueKeys(queue_name)
    payload = "x" * 100_000
    with Producer(srv.url) as producer:
        refused = None
        for i in range(100):
            try:
                producer.enqueue(queue_name, "dispatch", payload, job_id=f"big-{i}")
            except QueueFullError as exc:
                refused = i
                assert "full" in str(exc)
                break
        assert refused is not None, "2 MB never filled up"
        assert refused > 0

        def written(job_id: str) -> tuple[bool, bool, bool]:
            return (
                bool(client.exists(keys.job(job_id))),
                job_id in stream_job_ids(client, keys),
                client.zscore(keys.delayed, job_id) is not None,
            )

        assert written(f"big-{refused}") == (False, False, False)
        for i in range(refused):
            assert written(f"big-{i}") == (True, True, False)
        # A delayed job and a batch are refused whole as well.
        with pytest.raises(QueueFullError):
            producer.enqueue(queue_name, "dispatch", payload, job_id="late", delay=60)
        with pytest.raises(QueueFullError):
            producer.enqueue_many(
                queue_name, [JobSpec("dispatch", payload, job_id=f"batch-{i}") for i in range(3)]
            )
        for job_id in ("late", "batch-0", "batch-1", "batch-2"):
            assert written(job_id) == (False, False, False)

        # Drain (delete the data): enqueueing works again.
        client.delete(keys.stream, *(keys.job(f"big-{i}") for i in range(refused)))
        again = producer.enqueue(queue_name, "dispatch", payload, job_id="after")
        assert again.created and written("after") == (True, True, False)
    client.close()


def test_enqueue_on_a_pooled_connection_the_server_dropped_reconnects_and_writes_once(
    producer: Producer, redis_client: redis.Redis, queue_name: str, keys: QueueKeys
) -> None:
    producer.enqueue(queue_name, "dispatch", 1)  # a connection now waits in the pool
    killed = redis_client.client_kill_filter(_type="normal", skipme=True)
    assert killed >= 1
    r = producer.enqueue(queue_name, "dispatch", 2)
    assert r.created and redis_client.xlen(keys.stream) == 2
    assert stream_job_ids(redis_client, keys)[-1] == r.job_id


def test_a_call_interrupted_mid_read_leaves_no_stale_reply_for_the_next(
    producer: Producer, redis_client: redis.Redis, queue_name: str, keys: QueueKeys
) -> None:
    producer.enqueue(queue_name, "dispatch", 0)  # the producer keeps this connection parked
    real_read = AbstractConnection.read_response
    interrupted: list[bool] = []

    def read_once_interrupted(self: AbstractConnection, *args: Any, **kwargs: Any) -> Any:
        if not interrupted:
            interrupted.append(True)
            raise KeyboardInterrupt  # after the send: the server still answers this call
        return real_read(self, *args, **kwargs)

    monkeypatch = pytest.MonkeyPatch()
    with monkeypatch.context() as m:
        m.setattr(AbstractConnection, "read_response", read_once_interrupted)
        with pytest.raises(KeyboardInterrupt):
            producer.enqueue(queue_name, "dispatch", 1, job_id="interrupted")
    r = producer.enqueue(queue_name, "dispatch", 2, job_id="next")
    entries = {f[b"i"].decode(): eid.decode() for eid, f in redis_client.xrange(keys.stream)}
    assert (r.job_id, r.created, r.entry_id) == ("next", True, entries["next"])


def test_a_lost_reply_is_retried_without_adding_the_job_twice(
    producer: Producer, redis_client: redis.Redis, queue_name: str, keys: QueueKeys
) -> None:
    producer.enqueue(queue_name, "dispatch", 0)
    real_read = AbstractConnection.read_response
    lost: list[bool] = []

    def lose_first_reply(self: AbstractConnection, *args: Any, **kwargs: Any) -> Any:
        reply = real_read(self, *args, **kwargs)  # the script ran and answered...
        if not lost:
            lost.append(True)
            raise redis.ConnectionError("connection reset")  # ...but the answer is lost
        return reply

    with pytest.MonkeyPatch.context() as m:
        m.setattr(AbstractConnection, "read_response", lose_first_reply)
        r = producer.enqueue(queue_name, "dispatch", 1)  # redis-py sends it again
    assert lost
    # The resend looked its generated id up: one entry and one record, not two jobs.
    ids = stream_job_ids(redis_client, keys)
    assert len(ids) == 2 and ids.count(r.job_id) == 1
    assert r.state is JobState.WAITING


def test_closing_a_producer_closes_every_connection_it_opened(
    settings: Settings, redis_client: redis.Redis, queue_name: str
) -> None:
    def client_ids() -> set[str]:
        return {str(c["id"]) for c in redis_client.client_list()}

    before = client_ids()
    with Producer(settings=settings) as p:
        p.enqueue(queue_name, "dispatch", 1)  # a script call: its connection stays parked
        p.status(queue_name)
        assert client_ids() - before
    wait_until(lambda: not client_ids() - before, 5, what="the connections to close")


def test_a_forked_child_enqueues_on_its_own_connection(
    producer: Producer, redis_client: redis.Redis, queue_name: str, keys: QueueKeys
) -> None:
    producer.enqueue(queue_name, "dispatch", "parent-1")  # parked before the fork
    pid = os.fork()
    if pid == 0:  # the child: exit status 0 only if its enqueue worked
        code = 1
        try:
            code = 0 if producer.enqueue(queue_name, "dispatch", "child").created else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert producer.enqueue(queue_name, "dispatch", "parent-2").created
    data = [orjson.loads(f[b"d"]) for _, f in redis_client.xrange(keys.stream)]
    assert data == ["parent-1", "child", "parent-2"]


# ---------------------------------------------------------------------------- credentials


def _leaks(exc: BaseException, secret: str) -> bool:
    text = "".join(traceback.format_exception(exc)) + repr(exc) + str(exc)
    return secret in text


@pytest.mark.parametrize("how", ["url", "fields"])
def test_a_wrong_password_raises_authentication_failed_without_echoing_it(
    server: EmbeddedServer, queue_name: str, how: str
) -> None:
    secret = "wrong-Pa55word-x9"
    if how == "url":
        rs = RedisSettings(url=f"redis://:{secret}@{server.host}:{server.port}/0")
    else:
        rs = RedisSettings(host=server.host, port=server.port, password=secret)
    t0 = time.monotonic()
    with Producer(settings=Settings(redis=rs)) as producer:
        with pytest.raises(AuthenticationFailedError) as info:
            producer.enqueue(queue_name, "dispatch", {})
        assert secret not in repr(producer)
    assert time.monotonic() - t0 < 2.0  # a wrong password is not retried
    assert not _leaks(info.value, secret)
    assert "REDIS_PASSWORD" in str(info.value)


def test_a_missing_password_raises_authentication_failed_at_once(
    server: EmbeddedServer, queue_name: str
) -> None:
    t0 = time.monotonic()
    with (
        Producer(f"redis://{server.host}:{server.port}/0") as producer,
        pytest.raises(AuthenticationFailedError),
    ):
        producer.ping()
    assert time.monotonic() - t0 < 2.0


def test_reprs_never_show_the_password() -> None:
    secret = "s3cr3t-Value-77"
    by_url = RedisSettings(url=f"redis://user:{secret}@db.example:6380/2")
    by_fields = RedisSettings(host="db.example", password=secret, username="user")
    for rs in (by_url, by_fields):
        assert secret not in repr(rs)
        assert secret not in str(rs)
        assert secret not in repr(Settings(redis=rs))
        assert secret not in rs.describe()
        with Producer(settings=Settings(redis=rs)) as producer:  # connects lazily
            assert secret not in repr(producer)
            assert "db.example" in repr(producer)
    assert "db.example:6380/2" in repr(by_url)


# ---------------------------------------------------------------------------- unreachable


@pytest.mark.parametrize("attempts", [0, 3])
def test_an_unreachable_server_raises_connection_failed_within_the_retry_budget(
    queue_name: str, attempts: int
) -> None:
    secret = "hunter2-Secret"
    port = closed_port()
    t0 = time.monotonic()
    with (
        Producer(f"redis://:{secret}@127.0.0.1:{port}/0", retry_attempts=attempts) as p,
        pytest.raises(ConnectionFailedError) as info,
    ):
        p.enqueue(queue_name, "dispatch", {})
    elapsed = time.monotonic() - t0
    # 3 retries back off 0.1 + 0.2 + 0.4 s; never the 5 s connect timeout, never forever.
    assert elapsed < 3.0
    if attempts:
        assert elapsed >= 0.5
    assert f"127.0.0.1:{port}" in str(info.value)
    assert not _leaks(info.value, secret)


@pytest.mark.parametrize(
    "every",
    [0.5, 1e300, float("nan"), float("inf"), -60, "hourly"],
    ids=["sub-second", "huge", "nan", "inf", "negative", "str"],
)
def test_a_schedule_with_an_impossible_interval_is_refused_and_nothing_is_written(
    producer: Producer, redis_client: redis.Redis, queue_name: str, every: Any
) -> None:
    with pytest.raises(ConfigError, match="every"):
        producer.add_schedule(queue_name, "bad", "dispatch", {}, every=every)
    assert queue_keys(redis_client, queue_name) == []
