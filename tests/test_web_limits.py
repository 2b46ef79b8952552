"""Flow control in the web app (issue 11, point 7): the limits API (list, PUT, DELETE, the
priority mode), the flow figures of ``/metrics`` and of the health check, against real
servers.

The held jobs behind the figures are written by ``_flow_support`` as the
engine lays them out (parked keys and running flow jobs are too brief under a worker
to observe).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis
from _flow_support import block, count_rate_limited, hold, park_full, run_flow_jobs
from _support import WEB_ENV, clear_env
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from streamq import AsyncProducer, Producer, RedisSettings, Settings
from streamq.admin import Admin
from streamq.limits import Limit
from streamq.web import create_app

TOKEN = "limits-token-for-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
QUEUE = "distribution:dispatch"
Q = "distribution%3Adispatch"
LIMITS = f"/api/queues/{Q}/limits"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    clear_env(monkeypatch, *WEB_ENV)


@pytest.fixture
def settings(redis_url: str, queue_name: str) -> Settings:
    """The session server under a key prefix unique to this test."""
    return Settings(redis=RedisSettings(url=redis_url), prefix=queue_name)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    app = create_app(
        settings,
        producer=AsyncProducer(settings=settings),
        api_token=TOKEN,
        queues={"dispatch": QUEUE},
    )
    with TestClient(app) as c:
        yield c


@pytest.fixture
def admin(settings: Settings) -> Iterator[Admin]:
    with Admin(settings=settings) as a:
        yield a


def seed_flow(settings: Settings, r: redis.Redis) -> None:
    """A plain job (so discovery finds the queue) and flow structures as the spec says."""
    with Producer(settings=settings) as producer:
        producer.enqueue(QUEUE, "dispatch", {"n": 1})
    p = settings.prefix
    for i in range(4):
        hold(r, QUEUE, "x:conn-1", f"a{i}", prefix=p)
    hold(r, QUEUE, "x:conn-2", "b0", prefix=p)
    block(r, QUEUE, "x:conn-1", 10**13, prefix=p)
    park_full(r, QUEUE, "x:conn-2", prefix=p)
    run_flow_jobs(r, QUEUE, 2, prefix=p)
    count_rate_limited(r, QUEUE, 11, prefix=p)


# --------------------------------------------------------------------------- limits API


def test_limits_api_puts_lists_and_deletes_rules(client: TestClient, admin: Admin) -> None:
    r = client.put(LIMITS, headers=AUTH, json={"pattern": "x:*", "rate": "300/15m", "shared": True})
    assert r.status_code == 200, r.text
    assert r.json()["limit"] == {
        "pattern": "x:*",
        "shared": True,
        "rate": 300,
        "period_ms": 900_000,
        "period": 900.0,
        "concurrency": None,
    }
    body = {"pattern": "x:*", "rate": 50, "per": 900, "concurrency": 1}
    assert client.put(LIMITS, headers=AUTH, json=body).status_code == 200
    body = {"pattern": "t:*", "rate": 5, "period_ms": 1500}
    assert client.put(LIMITS, headers=AUTH, json=body).status_code == 200

    listed = client.get(LIMITS, headers=AUTH).json()
    assert listed["queue"] == QUEUE and listed["mode"] == "strict"
    assert [(x["pattern"], x["shared"]) for x in listed["limits"]] == [
        ("t:*", False),
        ("x:*", False),
        ("x:*", True),
    ]
    assert listed["flow"]["held"] == 0
    assert admin.limits(QUEUE)[0] == Limit("t:*", rate=5, period_ms=1500)

    r = client.delete(LIMITS, headers=AUTH, params={"pattern": "x:*", "shared": "true"})
    assert r.status_code == 200 and r.json()["removed"] is True
    r = client.delete(LIMITS, headers=AUTH, params={"pattern": "x:*", "shared": "true"})
    assert r.status_code == 404 and "no shared limit 'x:*'" in r.json()["error"]
    assert [x.shared for x in admin.limits(QUEUE)] == [False, False]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"rate": 5, "per": 1}, "pattern is required"),
        ({"pattern": "x y", "concurrency": 1}, "character ' '"),
        ({"pattern": "x:*", "rate": 5}, "a rate needs per="),
        ({"pattern": "x:*", "rate": "5/15w"}, "not a duration"),
        ({"pattern": "x:*", "rate": "5/m", "per": 60}, "names its period already"),
        ({"pattern": "x:*", "rate": 5, "per": 1, "period_ms": 1000}, "not both"),
        ({"pattern": "x:*", "concurrency": 1, "shared": True}, "not to a shared limit"),
        ({"pattern": "x:*", "concurrency": 1, "shared": "yes"}, "shared must be true or false"),
        ({"pattern": "x:*", "concurrency": 1, "burst": 3}, "unknown field 'burst'"),
        ({"pattern": "x:*"}, "give a rate"),
    ],
)
def test_a_bad_rule_is_a_400_naming_the_bad_part(
    client: TestClient, admin: Admin, body: dict[str, Any], message: str
) -> None:
    r = client.put(LIMITS, headers=AUTH, json=body)
    assert r.status_code == 400, r.text
    assert message in r.json()["error"]
    assert admin.limits(QUEUE) == []


def test_a_body_that_is_not_a_json_object_is_a_400(client: TestClient) -> None:
    for content in (b"not json", b"[1]", b"x" * 5000):
        r = client.put(LIMITS, headers=AUTH, content=content)
        assert r.status_code == 400
    r = client.delete(LIMITS, headers=AUTH)
    assert r.status_code == 400 and "pattern is required" in r.json()["error"]


def test_flow_mode_api_sets_the_mode(client: TestClient, admin: Admin) -> None:
    r = client.put(f"/api/queues/{Q}/flow-mode", headers=AUTH, json={"mode": "weighted"})
    assert r.status_code == 200 and r.json() == {"queue": QUEUE, "mode": "weighted"}
    assert admin.flow_status(QUEUE).mode == "weighted"
    r = client.put(f"/api/queues/{Q}/flow-mode", headers=AUTH, json={"mode": "fair"})
    assert r.status_code == 400 and "strict, weighted" in r.json()["error"]


def test_limit_changes_need_the_token_and_refuse_cross_site_requests(
    client: TestClient, admin: Admin
) -> None:
    body = {"pattern": "x:*", "concurrency": 1}
    assert client.get(LIMITS).status_code == 401
    assert client.put(LIMITS, json=body).status_code == 401
    assert client.delete(LIMITS, params={"pattern": "x:*"}).status_code == 401
    hostile = {**AUTH, "Origin": "https://evil.example"}
    assert client.put(LIMITS, headers=hostile, json=body).status_code == 403
    site = {**AUTH, "Sec-Fetch-Site": "cross-site"}
    assert (
        client.put(
            f"/api/queues/{Q}/flow-mode", headers=site, json={"mode": "weighted"}
        ).status_code
        == 403
    )
    assert admin.limits(QUEUE) == []
    assert admin.flow_status(QUEUE).mode == "strict"


def test_limits_api_lists_the_flow_figures(
    client: TestClient, settings: Settings, redis_client: redis.Redis
) -> None:
    seed_flow(settings, redis_client)

    flow = client.get(LIMITS, headers=AUTH).json()["flow"]

    assert flow == {
        "held": 5,
        "keys_rate_limited": 1,
        "keys_at_concurrency": 1,
        "keys_ready": 0,
        "running": 2,
        "busiest_keys": [{"key": "x:conn-1", "held": 4}, {"key": "x:conn-2", "held": 1}],
        "rate_limited_total": 11,
        "mode": "strict",
    }
    (row,) = client.get("/api/queues", headers=AUTH).json()["queues"]
    assert (row["held"], row["running_flow"], row["busiest_keys"][0]["key"]) == (5, 2, "x:conn-1")


# --------------------------------------------------------------------------- metrics, health


def test_metrics_expose_held_jobs_waiting_keys_and_the_rate_limited_counter(
    client: TestClient, settings: Settings, redis_client: redis.Redis
) -> None:
    seed_flow(settings, redis_client)

    r = client.get("/metrics", headers=AUTH)

    assert r.status_code == 200
    families = {f.name: f for f in text_string_to_metric_families(r.text)}
    values = {
        (s.name, s.labels.get("queue")): s.value for f in families.values() for s in f.samples
    }
    assert values[("streamq_jobs_held", QUEUE)] == 5
    assert values[("streamq_keys_rate_limited", QUEUE)] == 1
    assert values[("streamq_keys_at_concurrency", QUEUE)] == 1
    assert values[("streamq_flow_jobs_running", QUEUE)] == 2
    assert values[("streamq_jobs_rate_limited_total", QUEUE)] == 11
    assert families["streamq_jobs_rate_limited"].type == "counter"
    for name in ("streamq_jobs_held", "streamq_keys_rate_limited", "streamq_keys_at_concurrency"):
        assert families[name].type == "gauge"
    # Held jobs are not a state of streamq_jobs: its sum keeps its meaning.
    assert ("streamq_jobs", QUEUE) in values
    assert not any(s.labels.get("state") == "held" for s in families["streamq_jobs"].samples)


def test_metrics_of_a_queue_without_flow_jobs_are_zero(
    client: TestClient, settings: Settings
) -> None:
    with Producer(settings=settings) as producer:
        producer.enqueue(QUEUE, "dispatch", {"n": 1})

    text = client.get("/metrics", headers=AUTH).text

    assert f'streamq_jobs_held{{queue="{QUEUE}"}} 0.0' in text
    assert f'streamq_jobs_rate_limited_total{{queue="{QUEUE}"}} 0.0' in text


def test_health_reports_held_jobs_without_degrading(
    client: TestClient, settings: Settings, redis_client: redis.Redis
) -> None:
    seed_flow(settings, redis_client)

    r = client.get("/api/queue/health", headers=AUTH)

    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "healthy"
    assert body["held"] == {"dispatch": 5}
    assert body["flow"]["dispatch"] == {
        "held": 5,
        "running": 2,
        "keys_rate_limited": 1,
        "keys_at_concurrency": 1,
        "rate_limited_total": 11,
    }


def test_the_jobs_api_lists_held_jobs_with_their_key_and_a_total(
    client: TestClient, settings: Settings, redis_client: redis.Redis
) -> None:
    seed_flow(settings, redis_client)

    r = client.get(f"/api/queues/{Q}/jobs", headers=AUTH, params={"state": "held", "limit": 2})

    assert r.status_code == 200, r.text
    body = r.json()
    assert body["page"]["total"] == 5 and body["page"]["next_offset"] == 2
    assert [(j["id"], j["key"], j["priority"]) for j in body["jobs"]] == [
        ("a0", "x:conn-1", 0),
        ("a1", "x:conn-1", 0),
    ]
