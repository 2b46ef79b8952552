"""Flow-control limits managed at run time (issue 11, points 2 and 7): the Limit model and
its validation, limits CRUD through Admin/AsyncAdmin on real servers, the reflow after a
change, the priority mode, and the flow figures of ``status()``.

Most figures are read from states written by ``_flow_support`` as the engine lays them
out (parked keys, running flow jobs: too brief under a worker to observe); the tests
under "with the engine" use real keyed enqueues and a worker.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import orjson
import pytest
import redis
from _flow_support import (
    LEVEL,
    base,
    block,
    count_rate_limited,
    hold,
    park_full,
    ready,
    run_flow_jobs,
)
from _worker_support import run_until
from _worker_support import settings as worker_settings

from streamq import AsyncProducer, Job, Producer, RedisSettings, Settings
from streamq._driver import SyncDriver
from streamq.admin import Admin, AsyncAdmin
from streamq.errors import ConfigError
from streamq.limits import MAX_PERIOD_MS, Limit, parse_duration, parse_rate
from streamq.protocol.keys import QueueKeys
from streamq.protocol.limits import decode_limit, encode_limit
from streamq.protocol.queues import queue_status
from streamq.results import FlowStatus
from streamq.worker import App, Worker


@pytest.fixture
def settings(redis_url: str) -> Settings:
    """Explicit settings: nothing from the environment (which may point at another Redis)."""
    return Settings(redis=RedisSettings(url=redis_url))


@pytest.fixture
def admin(settings: Settings) -> Iterator[Admin]:
    with Admin(settings=settings) as a:
        yield a


def stored(client: redis.Redis, queue: str) -> dict[str, Any]:
    raw = client.hgetall(f"{base(queue)}:limits")
    return {k.decode(): orjson.loads(v) for k, v in raw.items()}


# ---------------------------------------------------------------------------- the model


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"pattern": "x:conn 42", "rate": 1, "period_ms": 1000}, r"character ' ' at position 6"),
        ({"pattern": "x:é", "concurrency": 1}, "character 'é'"),
        ({"pattern": "", "concurrency": 1}, "non-empty"),
        ({"pattern": "a" * 201, "concurrency": 1}, "at most 200"),
        ({"pattern": "x:*", "rate": 5}, "a rate needs a period"),
        ({"pattern": "x:*", "period_ms": 1000}, "a rate needs a period"),
        ({"pattern": "x:*", "rate": 0, "period_ms": 1000}, "rate must be an integer from 1 to"),
        ({"pattern": "x:*", "rate": True, "period_ms": 1000}, "rate must be an integer"),
        ({"pattern": "x:*", "rate": 1, "period_ms": 0}, "more than 0 and at most 30 days"),
        (
            {"pattern": "x:*", "rate": 1, "period_ms": MAX_PERIOD_MS + 1},
            "at most 30 days",
        ),
        ({"pattern": "x:*", "concurrency": 0}, "concurrency must be an integer >= 1"),
        ({"pattern": "x:*", "concurrency": 1, "shared": True}, "not to a shared limit"),
        ({"pattern": "x:*"}, "give a rate"),
    ],
)
def test_an_invalid_limit_is_refused_naming_the_bad_part(
    kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        Limit(**kwargs)


def test_a_pattern_may_use_every_job_key_character_and_the_wildcard() -> None:
    limit = Limit("AZaz09_.:-@/+=#*", concurrency=1)
    assert limit.rule_id == "each|AZaz09_.:-@/+=#*"
    assert Limit("*", rate=1, period_ms=1, shared=True).rule_id == "shared|*"


def test_the_stored_json_follows_the_spec_and_leaves_absent_parts_out() -> None:
    both = Limit("x:*", rate=50, period_ms=900_000, concurrency=1)
    assert orjson.loads(encode_limit(both)) == {
        "pattern": "x:*",
        "shared": False,
        "rate": 50,
        "period_ms": 900_000,
        "concurrency": 1,
    }
    # No null: Lua's cjson reads null as a true value.
    assert orjson.loads(encode_limit(Limit("x:*", rate=300, period_ms=1000, shared=True))) == {
        "pattern": "x:*",
        "shared": True,
        "rate": 300,
        "period_ms": 1000,
    }
    assert decode_limit(encode_limit(both)) == both
    explicit_nulls = b'{"pattern":"t:*","rate":null,"period_ms":null,"concurrency":1}'
    assert decode_limit(explicit_nulls) == Limit("t:*", concurrency=1)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("50/15m", (50, 900.0)),
        ("10/s", (10, 1.0)),
        ("300/1h", (300, 3600.0)),
        ("5/2d", (5, 172800.0)),
        ("7/90", (7, 90.0)),
        ("1/1.5m", (1, 90.0)),
    ],
)
def test_rates_parse_in_the_n_per_period_form(text: str, expected: tuple[int, float]) -> None:
    assert parse_rate(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("50", "has no period"),
        ("fifty/15m", "not a whole number"),
        ("0/15m", ">= 1"),
        ("50/15w", "not a duration"),
        ("50/", "not a duration"),
    ],
)
def test_a_malformed_rate_says_what_form_is_expected(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_rate(text)


def test_durations_take_the_units_s_m_h_d() -> None:
    assert [parse_duration(t) for t in ("900", "15m", "2h", "1d", "m")] == [
        900.0,
        900.0,
        7200.0,
        86400.0,
        60.0,
    ]


# ---------------------------------------------------------------------------- CRUD


def test_set_limit_stores_the_rule_and_list_returns_it(
    admin: Admin, redis_client: redis.Redis, queue_name: str
) -> None:
    got = admin.set_limit(queue_name, "x:*", rate=50, per=900, concurrency=1)

    assert got == Limit("x:*", rate=50, period_ms=900_000, concurrency=1)
    assert got.period == 900.0
    assert stored(redis_client, queue_name) == {
        "each|x:*": {
            "pattern": "x:*",
            "shared": False,
            "rate": 50,
            "period_ms": 900_000,
            "concurrency": 1,
        }
    }
    assert admin.limits(queue_name) == [got]


def test_each_and_shared_rules_of_one_pattern_coexist_and_are_listed_in_order(
    admin: Admin, queue_name: str
) -> None:
    admin.set_limit(queue_name, "x:*", rate=300, per=timedelta(minutes=15), shared=True)
    admin.set_limit(queue_name, "x:*", rate=50, per=timedelta(minutes=15))
    admin.set_limit(queue_name, "refresh:*", concurrency=1)

    assert [(r.pattern, r.shared, r.rate, r.period_ms) for r in admin.limits(queue_name)] == [
        ("refresh:*", False, None, None),
        ("x:*", False, 50, 900_000),
        ("x:*", True, 300, 900_000),
    ]


def test_setting_a_limit_again_replaces_it(admin: Admin, queue_name: str) -> None:
    admin.set_limit(queue_name, "x:*", rate=50, per=900)
    admin.set_limit(queue_name, "x:*", concurrency=2)
    assert admin.limits(queue_name) == [Limit("x:*", concurrency=2)]


def test_remove_limit_says_whether_the_rule_existed(admin: Admin, queue_name: str) -> None:
    admin.set_limit(queue_name, "x:*", rate=50, per=900)
    admin.set_limit(queue_name, "x:*", rate=300, per=900, shared=True)

    assert admin.remove_limit(queue_name, "x:*", shared=True) is True
    assert admin.remove_limit(queue_name, "x:*", shared=True) is False
    assert admin.remove_limit(queue_name, "y:*") is False
    assert admin.limits(queue_name) == [Limit("x:*", rate=50, period_ms=900_000)]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rate": 50}, "a rate needs per="),
        ({"per": 900}, "per= needs a rate"),
        ({"rate": 50, "per": 0}, "more than 0 seconds"),
        ({"rate": 50, "per": timedelta(days=31)}, "between 1 ms and 30 days"),
        ({"rate": 50, "per": "15m"}, "seconds or a timedelta"),
        ({"concurrency": 1, "shared": True}, "not to a shared limit"),
        ({}, "give a rate"),
    ],
)
def test_an_invalid_limit_writes_nothing(
    admin: Admin, redis_client: redis.Redis, queue_name: str, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        admin.set_limit(queue_name, "x:*", **kwargs)
    assert stored(redis_client, queue_name) == {}


def test_a_field_that_is_not_a_rule_is_left_out_of_the_listing(
    admin: Admin, redis_client: redis.Redis, queue_name: str
) -> None:
    admin.set_limit(queue_name, "x:*", concurrency=1)
    limits = f"{base(queue_name)}:limits"
    redis_client.hset(limits, "each|bad", b"not json")
    redis_client.hset(limits, "each|y:*", orjson.dumps({"pattern": "z:*", "concurrency": 1}))

    assert admin.limits(queue_name) == [Limit("x:*", concurrency=1)]


def test_async_admin_manages_limits_the_same_way(settings: Settings, queue_name: str) -> None:
    async def scenario() -> tuple[Limit, list[Limit], bool, str]:
        async with AsyncAdmin(settings=settings) as admin:
            limit = await admin.set_limit(queue_name, "x:*", rate=5, per=1.5)
            listed = await admin.limits(queue_name)
            mode = await admin.set_flow_mode(queue_name, "weighted")
            removed = await admin.remove_limit(queue_name, "x:*")
            return limit, listed, removed, mode

    limit, listed, removed, mode = asyncio.run(scenario())
    assert limit == Limit("x:*", rate=5, period_ms=1500)
    assert listed == [limit] and removed is True and mode == "weighted"


def test_flow_mode_is_stored_and_checked(
    admin: Admin, redis_client: redis.Redis, queue_name: str
) -> None:
    assert admin.flow_status(queue_name).mode == "strict"  # the default, nothing stored

    assert admin.set_flow_mode(queue_name, "weighted") == "weighted"

    assert redis_client.hget(f"{base(queue_name)}:flow", "mode") == b"weighted"
    assert admin.flow_status(queue_name).mode == "weighted"
    with pytest.raises(ConfigError, match="strict, weighted"):
        admin.set_flow_mode(queue_name, "fair")


# ---------------------------------------------------------------------------- reflow


def ring(client: redis.Redis, queue: str) -> dict[str, float]:
    return {k.decode(): s for k, s in client.zrange(f"{base(queue)}:ring", 0, -1, withscores=True)}


def test_changing_a_limit_puts_keys_waiting_on_limits_back_in_the_ring(
    admin: Admin, redis_client: redis.Redis, queue_name: str
) -> None:
    r, q = redis_client, queue_name
    hold(r, q, "x:a", "j1", priority=0)
    hold(r, q, "x:a", "j2", priority=7)  # the key's top level is its first held member's
    hold(r, q, "x:b", "j3", priority=3)
    park_full(r, q, "x:a")
    block(r, q, "x:b", 10**13)
    block(r, q, "x:gone", 10**13)  # nothing held: a key-wide hold stays in force
    park_full(r, q, "x:idle")
    r.hset(f"{base(q)}:flow", "turn", 41)

    admin.set_limit(q, "x:*", rate=100, per=60)

    scores = ring(r, q)
    assert set(scores) == {"x:a", "x:b"}
    # Score = (9 - top level) * 2^40 + turn; turns are handed out from the flow hash.
    assert scores["x:a"] // LEVEL == 2 and scores["x:b"] // LEVEL == 6
    assert sorted(int(sc % LEVEL) for sc in scores.values()) == [42, 43]
    assert r.smembers(f"{base(q)}:full") == {b"x:idle"}
    assert r.zrange(f"{base(q)}:blocked", 0, -1) == [b"x:gone"]
    assert int(r.hget(f"{base(q)}:flow", "turn") or 0) == 43


def test_removing_a_limit_also_reflows(
    admin: Admin, redis_client: redis.Redis, queue_name: str
) -> None:
    admin.set_limit(queue_name, "t:*", concurrency=1)
    hold(redis_client, queue_name, "t:1", "j1", priority=9)
    park_full(redis_client, queue_name, "t:1")

    assert admin.remove_limit(queue_name, "t:*") is True

    assert list(ring(redis_client, queue_name)) == ["t:1"]
    assert ring(redis_client, queue_name)["t:1"] // LEVEL == 0
    assert redis_client.scard(f"{base(queue_name)}:full") == 0


# ---------------------------------------------------------------------------- figures


def test_status_reports_held_jobs_waiting_keys_busiest_keys_and_counters(
    admin: Admin, redis_client: redis.Redis, queue_name: str
) -> None:
    r, q = redis_client, queue_name
    for i in range(5):
        hold(r, q, "x:big", f"b{i}")
    for i in range(2):
        hold(r, q, "x:mid", f"m{i}")
    hold(r, q, "x:small", "s0", priority=4)
    block(r, q, "x:big", 10**13)
    park_full(r, q, "x:mid")
    ready(r, q, "x:small", 1)
    run_flow_jobs(r, q, 3)
    count_rate_limited(r, q, 17)

    (info,) = admin.status([q])

    assert info.flow == FlowStatus(
        held=8,
        keys_rate_limited=1,
        keys_at_concurrency=1,
        keys_ready=1,
        running=3,
        busiest_keys=(("x:big", 5), ("x:mid", 2), ("x:small", 1)),
        rate_limited_total=17,
        mode="strict",
    )
    assert info.held == 8
    flat = info.as_dict()
    assert (flat["held"], flat["running_flow"], flat["flow_mode"]) == (8, 3, "strict")
    assert flat["busiest_keys"][0] == {"key": "x:big", "held": 5}
    assert admin.flow_status(q) == info.flow


def test_a_queue_without_flow_structures_has_zero_figures_and_no_kstream_is_no_error(
    admin: Admin, settings: Settings, queue_name: str
) -> None:
    with Producer(settings=settings) as producer:
        producer.enqueue(queue_name, "a")

    (info,) = admin.status([queue_name])

    assert info.flow == FlowStatus()
    assert info.status.waiting == 1
    assert admin.flow_status(queue_name) == FlowStatus()


def test_busiest_keys_are_the_top_ten(
    admin: Admin, redis_client: redis.Redis, queue_name: str
) -> None:
    for n in range(1, 13):
        redis_client.zadd(f"{base(queue_name)}:held:keys", {f"k:{n}": n})

    (info,) = admin.status([queue_name])

    assert [k for k, _ in info.flow.busiest_keys] == [f"k:{n}" for n in range(12, 2, -1)]


def test_status_with_flow_figures_still_takes_two_round_trips(
    settings: Settings, redis_client: redis.Redis, queue_name: str
) -> None:
    names = [f"{queue_name}-{i}" for i in range(3)]
    with Producer(settings=settings) as producer:
        producer.enqueue(names[0], "a")
    run_flow_jobs(redis_client, names[1], 1)
    driver = SyncDriver(redis.Redis.from_url(settings.redis.to_url()), "test")
    flow = queue_status([QueueKeys(n) for n in names])
    steps, reply = 0, None
    try:
        while True:
            step = flow.send(reply)
            steps += 1
            reply = driver.run(step)
    except StopIteration as stop:
        infos = stop.value
    finally:
        driver.client.close()

    assert steps == 2
    assert [i.flow.running for i in infos] == [0, 1, 0]
    assert infos[0].status.waiting == 1


def test_held_jobs_are_listed_by_key_then_priority_then_arrival(
    admin: Admin, redis_client: redis.Redis, queue_name: str
) -> None:
    r, q = redis_client, queue_name
    hold(r, q, "x:b", "b-low")
    hold(r, q, "x:a", "a-first")
    hold(r, q, "x:b", "b-high", priority=8)
    hold(r, q, "x:a", "a-second")

    rows = admin.jobs(q, "held")

    assert [(e.job_id, e.key, e.priority) for e in rows] == [
        ("a-first", "x:a", 0),
        ("a-second", "x:a", 0),
        ("b-high", "x:b", 8),
        ("b-low", "x:b", 0),
    ]
    assert all(e.state == "held" and e.job is None for e in rows)  # no records written here
    assert [e.job_id for e in admin.jobs(q, "held", limit=2, offset=1)] == ["a-second", "b-high"]


# ---------------------------------------------------------------------------- with the engine

engine_app = App()
DONE: list[str] = []


@engine_app.handler("post")
async def post(job: Job) -> None:
    DONE.append(job.id)


def test_raising_a_limit_lets_a_key_waiting_for_its_window_run_at_once(
    redis_url: str, queue_name: str
) -> None:
    """A key parked for an hour-long window starts as soon as the limit is raised: reflow
    puts it back on the ring and wakes the worker blocked on its read."""
    DONE.clear()
    # A long lease (the reclaim pass also ends a read) and a long block: without the
    # wake-up the worker would sleep past the deadline.
    s = worker_settings(redis_url, log_level="warning", lease_ms=600_000)

    async def scenario() -> tuple[FlowStatus, FlowStatus]:
        async with AsyncAdmin(settings=s) as admin, AsyncProducer(settings=s) as producer:
            await admin.set_limit(queue_name, "x:*", rate=1, per=3600)
            for n in range(3):
                await producer.enqueue(queue_name, "post", {"n": n}, key="x:conn-1")
            worker = Worker(engine_app, [queue_name], settings=s, block_ms=60_000)
            parked: list[FlowStatus] = []

            async def raise_once_parked() -> None:
                # The first job ran; the key waits for its window (an hour away).
                while not parked:
                    got = await admin.flow_status(queue_name)
                    if len(DONE) == 1 and got.keys_rate_limited == 1:
                        parked.append(got)
                    await asyncio.sleep(0.02)
                await admin.set_limit(queue_name, "x:*", rate=100, per=3600)

            changer = asyncio.create_task(raise_once_parked())
            await run_until([worker], lambda: len(DONE) == 3, timeout=15, what="the key to drain")
            await changer
            return parked[0], await admin.flow_status(queue_name)

    parked, after = asyncio.run(scenario())

    assert (parked.held, parked.keys_rate_limited, parked.keys_ready) == (2, 1, 0)
    assert parked.busiest_keys == (("x:conn-1", 2),)
    assert parked.rate_limited_total >= 1
    assert (after.held, after.keys_rate_limited, after.running) == (0, 0, 0)
    assert len(DONE) == 3


def test_held_jobs_of_real_enqueues_are_listed_with_their_records(
    admin: Admin, settings: Settings, queue_name: str
) -> None:
    with Producer(settings=settings) as producer:
        low = producer.enqueue(queue_name, "post", key="x:a")
        high = producer.enqueue(queue_name, "post", key="x:a", priority=5)
        other = producer.enqueue(queue_name, "post", key="x:b")

    rows = admin.jobs(queue_name, "held")
    (info,) = admin.status([queue_name])

    assert [(e.job_id, e.key, e.priority) for e in rows] == [
        (high.job_id, "x:a", 5),
        (low.job_id, "x:a", 0),
        (other.job_id, "x:b", 0),
    ]
    assert all(e.job is not None and e.job.key == e.key for e in rows)
    assert (info.flow.held, info.flow.keys_ready) == (3, 2)
    assert info.flow.busiest_keys == (("x:a", 2), ("x:b", 1))


def test_a_rate_above_the_bound_is_refused_naming_it() -> None:
    from streamq.limits import MAX_RATE, Limit

    with pytest.raises(ConfigError, match="rate must be an integer from 1 to 100,000"):
        Limit("x:*", rate=MAX_RATE + 1, period_ms=1000)
    assert Limit("x:*", rate=MAX_RATE, period_ms=1000).rate == MAX_RATE
