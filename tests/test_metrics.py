"""``GET /metrics``: the Prometheus exposition of the whole fleet, read from Redis at scrape
time (streamq.web.metrics / streamq.web.fleet), checked against keys written by hand in the
workers' contract and against a real worker's counters."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
import redis
from _support import WEB_ENV, clear_env, redis_now_ms
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from streamq import AsyncProducer, Producer, RedisSettings, Settings
from streamq.admin import Admin
from streamq.protocol.keys import BUCKETS_MS, QueueKeys
from streamq.server import EmbeddedServer
from streamq.web import create_app
from streamq.web.fleet import parse_histogram
from streamq.web.metrics import JOB_STATES
from streamq.worker import App, Worker

TOKEN = "metrics-token-for-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
QUEUE = "orders:emails"  # a name with ':' like the distribution queues
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    clear_env(monkeypatch, *WEB_ENV)


@pytest.fixture
def settings(redis_url: str, queue_name: str) -> Settings:
    """The session server under a key prefix unique to this test (so discovery sees only
    this test's queues)."""
    return Settings(redis=RedisSettings(url=redis_url), prefix=queue_name)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    app = create_app(settings, producer=AsyncProducer(settings=settings), api_token=TOKEN)
    with TestClient(app) as c:
        yield c


def scrape(client: TestClient) -> tuple[Samples, dict[str, str]]:
    """GET /metrics, parsed with prometheus_client's own parser: samples by (name, labels),
    and the type of each family."""
    r = client.get("/metrics", headers=AUTH)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples: Samples = {}
    types: dict[str, str] = {}
    for family in text_string_to_metric_families(r.text):
        types[family.name] = family.type
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples, types


def sample(samples: Samples, name: str, **labels: str) -> float:
    key = (name, tuple(sorted(labels.items())))
    assert key in samples, f"{name}{labels} missing; have {sorted(k for k in samples)[:20]}..."
    return samples[key]


# --------------------------------------------------------------------------- contract keys


def test_metrics_expose_the_contract_keys_written_by_hand(
    client: TestClient, settings: Settings, redis_client: redis.Redis
) -> None:
    keys = QueueKeys(QUEUE, settings.prefix)
    with Producer(settings=settings) as producer:
        producer.enqueue(QUEUE, "send", {"n": 1})
        producer.enqueue(QUEUE, "send", {"n": 2})
        producer.enqueue(QUEUE, "send", {"n": 3}, delay=3600)
    redis_client.hset(
        keys.stats,
        mapping={"completed": 10, "failed": 4, "retried": 3, "dead": 1, "reclaimed": 2},
    )
    redis_client.hset(
        keys.histograms,
        mapping={
            "dur:1": 2,
            "dur:5": 3,
            "dur:100": 1,
            "dur:inf": 1,
            "dur:sum": "70123.5",
            "dur:count": 7,
            "late:10": 4,
            "late:sum": "20",
            "late:count": 4,
        },
    )
    redis_client.set(keys.paused, "1")
    beat = {"host": "h", "pid": 1, "seen_ms": redis_now_ms(redis_client), "running": 0}
    redis_client.hset(keys.workers, "w-1", orjson.dumps(beat))

    s, types = scrape(client)

    q = {"queue": QUEUE}
    expected_states = {"waiting": 2, "active": 0, "delayed": 1, "completed": 0, "failed": 0}
    for state, n in {**expected_states, "dead": 0}.items():
        assert sample(s, "streamq_jobs", **q, state=state) == n, state
    assert sample(s, "streamq_consumer_lag", **q) == 2
    assert 0 <= sample(s, "streamq_oldest_waiting_age_seconds", **q) < 60
    assert sample(s, "streamq_queue_paused", **q) == 1
    assert sample(s, "streamq_workers", **q) == 1
    # The stats hash's "failed" field counts failed attempts; a failed job is a "dead" one.
    counters = {
        "streamq_jobs_completed": 10,
        "streamq_jobs_failed": 1,
        "streamq_jobs_retried": 3,
        "streamq_jobs_dead": 1,
        "streamq_attempts_failed": 4,
        "streamq_jobs_reclaimed": 2,
    }
    for family, n in counters.items():
        assert types[family] == "counter"
        assert sample(s, f"{family}_total", **q) == n, family

    assert types["streamq_job_duration_seconds"] == "histogram"
    cumulative = {"0.001": 2, "0.005": 5, "0.01": 5, "0.05": 5, "0.1": 6, "60.0": 6, "+Inf": 7}
    for le, n in cumulative.items():
        assert sample(s, "streamq_job_duration_seconds_bucket", **q, le=le) == n, le
    assert sample(s, "streamq_job_duration_seconds_count", **q) == 7
    assert sample(s, "streamq_job_duration_seconds_sum", **q) == pytest.approx(70.1235)
    bounds = {le for (name, labels) in s if name.endswith("duration_seconds_bucket")
              for k, le in labels if k == "le"}  # fmt: skip
    assert len(bounds) == len(BUCKETS_MS) + 1

    assert sample(s, "streamq_delayed_lateness_seconds_bucket", **q, le="0.005") == 0
    assert sample(s, "streamq_delayed_lateness_seconds_bucket", **q, le="0.01") == 4
    assert sample(s, "streamq_delayed_lateness_seconds_bucket", **q, le="+Inf") == 4
    assert sample(s, "streamq_delayed_lateness_seconds_sum", **q) == pytest.approx(0.02)
    assert sample(s, "streamq_redis_up") == 1


def test_missing_and_malformed_contract_fields_read_as_zero(
    client: TestClient, settings: Settings, redis_client: redis.Redis
) -> None:
    keys = QueueKeys(QUEUE, settings.prefix)
    with Producer(settings=settings) as producer:
        producer.enqueue(QUEUE, "send", {})
    # (status.lua reads completed/dead/retried itself; these two only /metrics reads)
    redis_client.hset(keys.stats, mapping={"failed": "not-a-number", "dead": 5})
    redis_client.hset(keys.histograms, mapping={"dur:abc": 9, "dur:5": "x", "dur:sum": "nan"})

    s, _ = scrape(client)

    q = {"queue": QUEUE}
    assert sample(s, "streamq_jobs_completed_total", **q) == 0
    assert sample(s, "streamq_attempts_failed_total", **q) == 0
    assert sample(s, "streamq_jobs_failed_total", **q) == 5
    assert sample(s, "streamq_jobs_dead_total", **q) == 5
    assert sample(s, "streamq_jobs_reclaimed_total", **q) == 0
    assert sample(s, "streamq_job_duration_seconds_bucket", **q, le="+Inf") == 0
    assert sample(s, "streamq_job_duration_seconds_sum", **q) == 0
    assert sample(s, "streamq_delayed_lateness_seconds_count", **q) == 0
    assert sample(s, "streamq_oldest_waiting_age_seconds", **q) >= 0
    assert sample(s, "streamq_workers", **q) == 0


def test_one_scrape_sees_every_queue_of_the_fleet(client: TestClient, settings: Settings) -> None:
    names = ["distribution:dispatch", "distribution:scheduled", "other"]
    with Producer(settings=settings) as producer:
        for i, name in enumerate(names):
            for n in range(i + 1):
                producer.enqueue(name, "job", {"n": n})
    s, _ = scrape(client)
    for i, name in enumerate(names):
        assert sample(s, "streamq_jobs", queue=name, state="waiting") == i + 1


def test_metrics_count_what_a_real_worker_did(client: TestClient, settings: Settings) -> None:
    app = App()

    @app.handler("ok")
    def ok(job: Any) -> int:
        return 1

    with Producer(settings=settings) as producer:
        for n in range(3):
            producer.enqueue(QUEUE, "ok", {"n": n})
        producer.enqueue(QUEUE, "missing", {}, max_retries=0)
    asyncio.run(asyncio.wait_for(Worker(app, [QUEUE], settings=settings).run(burst=True), 30))

    s, _ = scrape(client)
    q = {"queue": QUEUE}
    assert sample(s, "streamq_jobs_completed_total", **q) == 3
    assert sample(s, "streamq_jobs_dead_total", **q) == 1
    assert sample(s, "streamq_jobs", **q, state="dead") == 1
    assert sample(s, "streamq_jobs", **q, state="completed") == 3
    assert sample(s, "streamq_jobs", **q, state="waiting") == 0


# --------------------------------------------------------------------------- partitions


def _partition_samples(s: Samples, queue: str, state: str) -> dict[str, float]:
    """``streamq_partition_jobs`` of ``queue`` in ``state``, by partition label."""
    out = {}
    for (name, labels), value in s.items():
        ls = dict(labels)
        if name == "streamq_partition_jobs" and ls["queue"] == queue and ls["state"] == state:
            out[ls["partition"]] = value
    return out


def test_a_partitioned_queue_is_one_queue_with_a_breakdown_per_partition(
    client: TestClient, settings: Settings
) -> None:
    with Admin(settings=settings) as admin:
        admin.set_partitions(QUEUE, 4)
        with Producer(settings=settings) as producer:
            for n in range(40):
                producer.enqueue(QUEUE, "send", {"n": n})
            producer.enqueue(QUEUE, "send", {}, delay=3600)
            producer.enqueue("plain", "send", {})
        (info,) = admin.status([QUEUE])

    s, types = scrape(client)

    q = {"queue": QUEUE}
    assert sample(s, "streamq_jobs", **q, state="waiting") == 40
    assert sample(s, "streamq_jobs", **q, state="delayed") == 1
    assert sample(s, "streamq_consumer_lag", **q) == 40
    assert types["streamq_partition_jobs"] == "gauge"
    assert sample(s, "streamq_queue_partitions", **q) == 4
    waiting = _partition_samples(s, QUEUE, "waiting")
    assert set(waiting) == {"0", "1", "2", "3"}
    assert waiting == {str(i): p.waiting for i, p in enumerate(info.partitions)}
    assert sum(waiting.values()) == 40 and sum(1 for n in waiting.values() if n) >= 3
    for state in JOB_STATES:  # the breakdown adds up to the queue's count
        per = _partition_samples(s, QUEUE, state)
        assert sum(per.values()) == sample(s, "streamq_jobs", **q, state=state), state
    # Bounded: 6 states a partition for the partitioned queue, none for the plain one.
    assert sum(1 for name, _ in s if name == "streamq_partition_jobs") == 4 * len(JOB_STATES)
    assert _partition_samples(s, "plain", "waiting") == {}
    assert ("streamq_queue_partitions", (("queue", "plain"),)) not in s


def test_metrics_of_unpartitioned_queues_have_no_partition_families(client: TestClient) -> None:
    r = client.get("/metrics", headers=AUTH)
    assert "streamq_partition_jobs" not in r.text and "streamq_queue_partitions" not in r.text


def test_a_raised_count_labels_the_earlier_partitions_by_their_count(
    client: TestClient, settings: Settings
) -> None:
    with Admin(settings=settings) as admin:
        admin.set_partitions(QUEUE, 2)
        with Producer(settings=settings) as producer:
            for n in range(10):
                producer.enqueue(QUEUE, "send", {"n": n})
        admin.set_partitions(QUEUE, 3)
    with Producer(settings=settings) as producer:
        for n in range(10, 20):
            producer.enqueue(QUEUE, "send", {"n": n})

    s, _ = scrape(client)

    waiting = _partition_samples(s, QUEUE, "waiting")
    # Home, partition 1 of the earlier count 2, partitions 1 and 2 of the current count 3.
    assert set(waiting) == {"0", "1/2", "1", "2"}
    assert sum(waiting.values()) == 20 == sample(s, "streamq_jobs", queue=QUEUE, state="waiting")
    assert sample(s, "streamq_queue_partitions", queue=QUEUE) == 3


def test_counters_and_histograms_of_a_partitioned_queue_add_up_its_partitions(
    client: TestClient, settings: Settings
) -> None:
    app = App()

    @app.handler("ok")
    def ok(job: Any) -> int:
        return 1

    with Admin(settings=settings) as admin:
        admin.set_partitions(QUEUE, 4)
    with Producer(settings=settings) as producer:
        for n in range(20):
            producer.enqueue(QUEUE, "ok", {"n": n})
        producer.enqueue(QUEUE, "missing", {}, max_retries=0)
    asyncio.run(asyncio.wait_for(Worker(app, [QUEUE], settings=settings).run(burst=True), 30))

    s, _ = scrape(client)
    q = {"queue": QUEUE}
    assert sample(s, "streamq_jobs_completed_total", **q) == 20
    assert sample(s, "streamq_jobs_dead_total", **q) == 1
    assert sample(s, "streamq_jobs", **q, state="completed") == 20
    assert sample(s, "streamq_job_duration_seconds_count", **q) == 20  # ran: the 20 "ok"
    assert sample(s, "streamq_job_duration_seconds_bucket", **q, le="+Inf") == 20
    done = _partition_samples(s, QUEUE, "completed")
    assert sum(done.values()) == 20 and sum(1 for n in done.values() if n) >= 3
    # The dashboard's throughput adds the partitions up too (the workers count each job in
    # its own partition).
    r = client.get(f"/api/queues/{QUEUE}/throughput", headers=AUTH)
    assert r.status_code == 200
    minutes = r.json()["minutes"]
    assert sum(m["completed"] for m in minutes) == 20
    assert sum(m["failed"] for m in minutes) == 1


# --------------------------------------------------------------------------- auth, outages


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}],
    ids=["missing", "wrong", "basic"],
)
def test_metrics_require_the_bearer_token(client: TestClient, headers: dict[str, str]) -> None:
    r = client.get("/metrics", headers=headers)
    assert r.status_code == 401
    assert "streamq_" not in r.text


def test_metrics_say_redis_is_down_instead_of_failing(
    server_factory: Callable[..., EmbeddedServer], queue_name: str
) -> None:
    srv = server_factory()
    settings = Settings(redis=RedisSettings(url=srv.url, connect_timeout=1.0), prefix=queue_name)
    with Producer(settings=settings) as producer:
        producer.enqueue(QUEUE, "send", {})
    app = create_app(settings, producer=AsyncProducer(settings=settings), api_token=TOKEN)
    with TestClient(app) as client:
        s, _ = scrape(client)
        assert sample(s, "streamq_redis_up") == 1
        assert sample(s, "streamq_jobs", queue=QUEUE, state="waiting") == 1
        srv.stop(save=False)
        r = client.get("/metrics", headers=AUTH)
    assert r.status_code == 200
    assert srv.password and srv.password not in r.text
    down = {s.name: s.value for f in text_string_to_metric_families(r.text) for s in f.samples}
    assert down["streamq_redis_up"] == 0
    assert not any(name.startswith("streamq_jobs") for name in down)


# --------------------------------------------------------------------------- parsing


def test_histogram_parsing_is_cumulative_and_tolerant() -> None:
    h = parse_histogram(
        {"dur:1": b"1", "dur:7": b"2", "dur:10": b"3", "dur:count": b"10", "late:1": b"99"},
        "dur",
    )
    bounds = [le for le, _ in h.buckets]
    assert bounds == sorted(bounds) and bounds[-1] == math.inf
    assert 7.0 in bounds  # a bound outside BUCKETS_MS still counts
    as_dict = dict(h.buckets)
    assert (as_dict[1.0], as_dict[5.0], as_dict[7.0], as_dict[10.0]) == (1, 1, 3, 6)
    assert h.count == 10 and as_dict[math.inf] == 10  # count above the buckets goes to +Inf
    assert parse_histogram({}, "late").count == 0
