"""The dashboard (streamq.web.dashboard) and its JSON API (streamq.web.api), through
Starlette's TestClient against a real server: the static shell, token on every endpoint,
counts, job views, DLQ retry/delete, pause/resume, workers and leases, throughput, the
security headers and the refusal of cross-site requests."""

from __future__ import annotations

import asyncio
import fnmatch
import tomllib
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson
import pytest
import redis
from _producer_support import run_burst
from _support import WEB_ENV, clear_env, redis_now_ms, wait_until
from _worker_support import run_until
from starlette.testclient import TestClient

from streamq import AsyncProducer, Producer, RedisSettings, Settings
from streamq.job import Job
from streamq.protocol.keys import GROUP, QueueKeys
from streamq.server import EmbeddedServer
from streamq.web import create_app
from streamq.worker import App, Worker

TOKEN = "dashboard-token-for-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
QUEUE = "distribution:dispatch"  # ':' in the name, as in real deployments
Q = quote(QUEUE, safe="")  # distribution%3Adispatch
DEAD_ID = "1700000000000-0"
ROOT = Path(__file__).resolve().parents[1]

#: Every API endpoint (method, path); paths use the percent-encoded queue name.
ENDPOINTS = [
    ("GET", "/api/queues"),
    ("GET", f"/api/queues/{Q}/jobs?state=waiting"),
    ("GET", f"/api/queues/{Q}/jobs/some-job"),
    ("GET", f"/api/queues/{Q}/throughput"),
    ("GET", f"/api/queues/{Q}/dlq"),
    ("POST", f"/api/queues/{Q}/dlq/{DEAD_ID}/retry"),
    ("POST", f"/api/queues/{Q}/dlq/retry-all"),
    ("DELETE", f"/api/queues/{Q}/dlq/{DEAD_ID}"),
    ("POST", f"/api/queues/{Q}/pause"),
    ("POST", f"/api/queues/{Q}/resume"),
    ("GET", f"/api/queues/{Q}/schedules"),
    ("GET", f"/api/queues/{Q}/limits"),
    ("PUT", f"/api/queues/{Q}/limits"),
    ("DELETE", f"/api/queues/{Q}/limits?pattern=x%3A%2A"),
    ("PUT", f"/api/queues/{Q}/flow-mode"),
    ("GET", "/api/jobs/some-job"),
    ("GET", "/api/workers"),
    ("GET", "/metrics"),
]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    clear_env(monkeypatch, *WEB_ENV)


@pytest.fixture
def settings(redis_url: str, queue_name: str) -> Settings:
    """The session server under a key prefix unique to this test."""
    return Settings(redis=RedisSettings(url=redis_url), prefix=queue_name)


@pytest.fixture
def keys(settings: Settings) -> QueueKeys:
    return QueueKeys(QUEUE, settings.prefix)


def make_client(settings: Settings, **kwargs: Any) -> TestClient:
    kwargs.setdefault("api_token", TOKEN)
    return TestClient(create_app(settings, producer=AsyncProducer(settings=settings), **kwargs))


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with make_client(settings) as c:
        yield c


@pytest.fixture
def producer(settings: Settings) -> Iterator[Producer]:
    with Producer(settings=settings) as p:
        yield p


def make_dead(settings: Settings, producer: Producer, n: int = 1) -> list[str]:
    """``n`` jobs named "flaky" that die at once (no handler, max_retries=0)."""
    ids = [
        producer.enqueue(QUEUE, "flaky", {"n": i, "html": "<b>x</b>"}, max_retries=0).job_id
        for i in range(n)
    ]
    run_burst(App(), [QUEUE], settings, 30, block_ms=100)
    return ids


def dlq(client: TestClient) -> dict[str, Any]:
    r = client.get(f"/api/queues/{Q}/dlq", headers=AUTH)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def queue_row(client: TestClient, queue: str = QUEUE) -> dict[str, Any]:
    r = client.get("/api/queues", headers=AUTH)
    assert r.status_code == 200, r.text
    rows = {q["queue"]: q for q in r.json()["queues"]}
    assert queue in rows, rows
    return rows[queue]


# --------------------------------------------------------------------------- shell, headers


def test_shell_loads_without_a_token_and_holds_no_queue_data(
    client: TestClient, producer: Producer
) -> None:
    producer.enqueue("secret:payroll", "pay", {"iban": "DE00-SECRET"})
    r = client.get("/")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert "secret:payroll" not in r.text and "DE00-SECRET" not in r.text
    assert '<script src="static/dashboard.js" defer></script>' in r.text
    assert "<script>" not in r.text and "style=" not in r.text  # nothing inline: CSP allows none
    js = client.get("/static/dashboard.js")
    assert js.status_code == 200 and "javascript" in js.headers["content-type"]
    assert "Authorization" in js.text and "sessionStorage" in js.text
    assert "innerHTML" not in js.text  # data goes in as text nodes only
    assert client.get("/static/dashboard.css").status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "auth"),
    [("GET", "/", False), ("GET", "/api/queues", True), ("GET", "/api/queues", False)],
    ids=["shell", "api", "api-401"],
)
def test_every_answer_forbids_framing_and_inline_code(
    client: TestClient, method: str, path: str, auth: bool
) -> None:
    r = client.request(method, path, headers=AUTH if auth else {})
    csp = r.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "default-src 'none'" in csp
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["x-content-type-options"] == "nosniff"


# --------------------------------------------------------------------------- auth, CSRF


@pytest.mark.parametrize(("method", "path"), ENDPOINTS, ids=[f"{m} {p}" for m, p in ENDPOINTS])
@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Bearer {TOKEN}-"}],
    ids=["no-token", "wrong-token", "longer-token"],
)
def test_every_api_endpoint_requires_the_token(
    client: TestClient, method: str, path: str, headers: dict[str, str]
) -> None:
    r = client.request(method, path, headers=headers)
    assert r.status_code == 401, r.text
    assert r.headers["www-authenticate"].startswith("Bearer")


def test_a_cross_site_form_post_cannot_pause_a_queue(
    client: TestClient,
    producer: Producer,
    redis_client: redis.Redis,
    keys: QueueKeys,
    figures: dict[str, Any],
) -> None:
    producer.enqueue(QUEUE, "send", {})
    # What a hostile page's <form method=post action=".../pause"> makes a browser send:
    # cookies maybe, but never an Authorization header.
    form = {
        "Content-Type": "application/x-www-form-urlencoded",
        "Origin": "https://evil.example",
        "Sec-Fetch-Site": "cross-site",
        "Sec-Fetch-Mode": "navigate",
    }
    r = client.post(f"/api/queues/{Q}/pause", headers=form, content=b"x=1")
    assert r.status_code == 401
    assert not redis_client.exists(keys.paused)
    figures["cross_site_post_status"] = r.status_code
    # A GET cannot mutate anything either.
    get = client.get(f"/api/queues/{Q}/pause", headers=AUTH)
    assert get.status_code == 405
    assert not redis_client.exists(keys.paused)
    figures["get_on_mutation_status"] = get.status_code
    figures["pause_flag_set"] = redis_client.exists(keys.paused)


def test_cross_site_mutations_are_refused_even_without_a_token(
    settings: Settings, redis_client: redis.Redis, keys: QueueKeys, figures: dict[str, Any]
) -> None:
    figures["cross_site_posts_refused"] = 0
    with make_client(settings, api_token=None, allow_no_token=True) as client:
        url = f"/api/queues/{Q}/pause"
        for headers in (
            {"Sec-Fetch-Site": "cross-site"},
            {"Sec-Fetch-Site": "same-site"},
            {"Origin": "https://evil.example"},
            {"Origin": "null"},
        ):
            r = client.post(url, headers=headers)
            assert r.status_code == 403, headers
            assert not redis_client.exists(keys.paused)
            figures["cross_site_posts_refused"] += 1
        assert client.post(url, headers={"Sec-Fetch-Site": "same-origin"}).status_code == 200
        assert redis_client.exists(keys.paused)
        assert client.post(f"/api/queues/{Q}/resume", headers={}).status_code == 200  # curl
        same_host = {"Origin": "http://testserver"}
        assert client.post(url, headers=same_host).status_code == 200


# --------------------------------------------------------------------------- counts, jobs


def test_counts_equal_producer_status(
    client: TestClient, settings: Settings, producer: Producer
) -> None:
    app = App()

    @app.handler("ok")
    def ok(job: Job) -> str:
        return "done"

    for n in range(3):
        producer.enqueue(QUEUE, "ok", {"n": n})
    producer.enqueue(QUEUE, "broken", {}, max_retries=0)
    run_burst(app, [QUEUE], settings, 30, block_ms=100)
    producer.enqueue(QUEUE, "ok", {"n": 9})
    producer.enqueue(QUEUE, "ok", {"n": 10})
    producer.enqueue(QUEUE, "ok", {"n": 11}, delay=3600)

    row = queue_row(client)
    status = producer.status(QUEUE)
    for field in (
        "waiting",
        "active",
        "delayed",
        "completed",
        "failed",
        "dead",
        "completed_total",
        "failed_total",
        "retried_total",
        "oldest_waiting_ms",
    ):
        assert row[field] == getattr(status, field), field
    assert (row["waiting"], row["delayed"], row["completed"], row["dead"]) == (2, 1, 3, 1)
    assert row["lag"] == 2 and row["paused"] is False
    assert 0 <= row["oldest_waiting_age_ms"] < 60_000


def test_jobs_by_state_and_the_full_record_with_error_and_traceback(
    client: TestClient, settings: Settings, producer: Producer
) -> None:
    app = App()

    @app.handler("explode")
    def explode(job: Job) -> None:
        raise ValueError(f"boom for {job.data['who']}")

    failed_id = producer.enqueue(QUEUE, "explode", {"who": "alice"}, max_retries=0).job_id
    run_burst(app, [QUEUE], settings, 30, block_ms=100)
    waiting_id = producer.enqueue(QUEUE, "later", {"big": "x" * 1000}).job_id

    r = client.get(f"/api/queues/{Q}/jobs", params={"state": "waiting"}, headers=AUTH)
    assert r.status_code == 200
    (row,) = r.json()["jobs"]
    assert row["id"] == waiting_id and row["name"] == "later"
    assert len(row["data_preview"]) <= 200  # listings carry a preview, not the payload

    r = client.get(f"/api/queues/{Q}/jobs?state=failed&limit=5", headers=AUTH)
    (row,) = r.json()["jobs"]
    assert row["id"] == failed_id and row["error"].startswith("ValueError: boom for alice")

    job = client.get(f"/api/queues/{Q}/jobs/{failed_id}", headers=AUTH).json()
    assert job["state"] == "failed" and job["data"] == {"who": "alice"}
    assert "boom for alice" in job["error"]
    assert "Traceback" in job["traceback"] and "raise ValueError" in job["traceback"]
    assert job["options"]["max_retries"] == 0

    assert client.get(f"/api/queues/{Q}/jobs/nope", headers=AUTH).status_code == 404
    for bad in ("state=running", "state=waiting&limit=0", "state=waiting&limit=x"):
        assert client.get(f"/api/queues/{Q}/jobs?{bad}", headers=AUTH).status_code == 400, bad
    bad_queue = quote("no spaces allowed", safe="")
    assert client.get(f"/api/queues/{bad_queue}/dlq", headers=AUTH).status_code == 400


def test_plain_colons_in_queue_names_route_too(client: TestClient, producer: Producer) -> None:
    producer.enqueue(QUEUE, "send", {})
    for path in (f"/api/queues/{QUEUE}/jobs", f"/api/queues/{Q}/jobs"):
        r = client.get(path, headers=AUTH)
        assert r.status_code == 200 and r.json()["queue"] == QUEUE
        assert len(r.json()["jobs"]) == 1


# --------------------------------------------------------------------------- DLQ


def test_dlq_retry_moves_a_job_back_to_the_queue(
    client: TestClient, settings: Settings, producer: Producer
) -> None:
    (job_id,) = make_dead(settings, producer)
    body = dlq(client)
    assert body["total"] == 1
    (entry,) = body["entries"]
    assert entry["job_id"] == job_id and entry["reason"] == "no-handler"
    assert entry["data"] == {"n": 0, "html": "<b>x</b>"}

    r = client.post(f"/api/queues/{Q}/dlq/{entry['dead_id']}/retry", headers=AUTH)
    assert r.status_code == 200, r.text
    assert r.json()["retried"]["job_id"] == job_id
    assert dlq(client)["total"] == 0
    assert queue_row(client)["waiting"] == 1
    job = producer.get_job(QUEUE, job_id)
    assert job is not None and job.state == "waiting"
    again = client.post(f"/api/queues/{Q}/dlq/{entry['dead_id']}/retry", headers=AUTH)
    assert again.status_code == 404


def test_dlq_retry_all_moves_every_entry_back(
    client: TestClient, settings: Settings, producer: Producer
) -> None:
    make_dead(settings, producer, 3)
    r = client.post(f"/api/queues/{Q}/dlq/retry-all", headers=AUTH)
    assert r.status_code == 200 and r.json()["retried"] == 3
    assert dlq(client)["total"] == 0 and queue_row(client)["waiting"] == 3


def test_dlq_delete_removes_exactly_one_entry(
    client: TestClient, settings: Settings, producer: Producer
) -> None:
    first, second = make_dead(settings, producer, 2)
    entries = {e["job_id"]: e["dead_id"] for e in dlq(client)["entries"]}
    r = client.delete(f"/api/queues/{Q}/dlq/{entries[first]}", headers=AUTH)
    assert r.status_code == 200 and r.json()["deleted"] == entries[first]
    body = dlq(client)
    assert body["total"] == 1 and [e["job_id"] for e in body["entries"]] == [second]
    assert client.delete(f"/api/queues/{Q}/dlq/{entries[first]}", headers=AUTH).status_code == 404
    assert client.delete(f"/api/queues/{Q}/dlq/not-an-id", headers=AUTH).status_code == 400
    assert dlq(client)["total"] == 1


# --------------------------------------------------------------------------- pause


def test_pause_and_resume_set_and_clear_the_flag(
    client: TestClient, producer: Producer, redis_client: redis.Redis, keys: QueueKeys
) -> None:
    producer.enqueue(QUEUE, "send", {})
    r = client.post(f"/api/queues/{Q}/pause", headers=AUTH)
    assert r.status_code == 200 and r.json() == {"queue": QUEUE, "paused": True, "changed": True}
    assert redis_client.exists(keys.paused)
    assert queue_row(client)["paused"] is True
    assert client.post(f"/api/queues/{Q}/pause", headers=AUTH).json()["changed"] is False
    r = client.post(f"/api/queues/{Q}/resume", headers=AUTH)
    assert r.status_code == 200 and r.json()["paused"] is False and r.json()["changed"] is True
    assert not redis_client.exists(keys.paused)
    assert queue_row(client)["paused"] is False


# --------------------------------------------------------------------------- workers


def test_workers_show_running_jobs_with_idle_time_against_the_lease(
    redis_url: str, queue_name: str, producer: Producer, redis_client: redis.Redis
) -> None:
    # A worker that fetched a job, then froze: its entry idles in the PEL past the lease.
    settings = Settings(redis=RedisSettings(url=redis_url), prefix=queue_name, lease_ms=300)
    keys = QueueKeys(QUEUE, queue_name)
    job_id = producer.enqueue(QUEUE, "slow", {"n": 1}).job_id
    redis_client.xreadgroup(GROUP, "frozen-worker", {keys.stream: ">"}, count=1)
    beat = {"host": "box", "pid": 42, "seen_ms": redis_now_ms(redis_client)}
    redis_client.hset(keys.workers, "frozen-worker", orjson.dumps({**beat, "concurrency": 5}))

    with make_client(settings) as client:
        body = client.get("/api/workers", headers=AUTH).json()
        assert body["lease_ms"] == 300
        (worker,) = body["workers"]
        assert (worker["name"], worker["queue"], worker["state"]) == (
            "frozen-worker",
            QUEUE,
            "alive",
        )
        assert worker["pending"] == 1 and worker["host"] == "box"
        (running,) = worker["jobs"]
        assert running["id"] == job_id and running["name"] == "slow"
        assert running["idle_ms"] >= 0 and running["lease_left_ms"] <= 300

        def expired() -> bool:
            rows = client.get("/api/workers", headers=AUTH).json()["workers"][0]["jobs"]
            return bool(rows) and rows[0]["lease"] == "expired"

        wait_until(expired, what="the frozen worker's lease to expire")
        active = client.get(f"/api/queues/{Q}/jobs?state=active", headers=AUTH).json()["jobs"]
        assert active[0]["consumer"] == "frozen-worker" and active[0]["lease_left_ms"] <= 0
        assert queue_row(client)["active"] == 1


# --------------------------------------------------------------------------- throughput


def test_throughput_is_sixty_minutes_oldest_first_by_the_redis_clock(
    client: TestClient, producer: Producer, redis_client: redis.Redis, keys: QueueKeys
) -> None:
    producer.enqueue(QUEUE, "send", {})
    sec, _ = redis_client.time()
    now = int(sec) // 60
    redis_client.hset(
        keys.throughput,
        mapping={str(now): 7, f"{now}:f": 2, str(now - 5): 3, str(now - 60): 99, "junk": 1},
    )
    r = client.get(f"/api/queues/{Q}/throughput", headers=AUTH)
    assert r.status_code == 200
    minutes = r.json()["minutes"]
    assert len(minutes) == 60
    first = minutes[0]["minute"]
    assert [m["minute"] for m in minutes] == list(range(first, first + 60))
    assert first + 59 in (now, now + 1)  # the current minute is last (it may have rolled over)
    by_minute = {m["minute"]: (m["completed"], m["failed"]) for m in minutes}
    assert by_minute[now] == (7, 2) and by_minute[now - 5] == (3, 0)
    assert sum(m["completed"] for m in minutes) == 10  # minute now-60 is out of the window
    empty = client.get("/api/queues/no-such-queue/throughput", headers=AUTH).json()
    assert sum(m["completed"] + m["failed"] for m in empty["minutes"]) == 0


# --------------------------------------------------------------------------- outage


def test_api_answers_503_without_the_password_when_redis_is_down(
    server_factory: Callable[..., EmbeddedServer], queue_name: str
) -> None:
    srv = server_factory()
    settings = Settings(redis=RedisSettings(url=srv.url, connect_timeout=1.0), prefix=queue_name)
    with make_client(settings) as client:
        assert client.get("/api/queues", headers=AUTH).status_code == 200
        srv.stop(save=False)
        r = client.get("/api/queues", headers=AUTH)
    assert r.status_code == 503
    assert "cannot reach Redis" in r.json()["error"]
    assert srv.password and srv.password not in r.text


# --------------------------------------------------------------------------- packaging


def test_dashboard_files_and_dependencies_are_declared_in_pyproject() -> None:
    """A wheel must carry the static files (create_app serves them from the package) and the
    extras must bring prometheus-client (web) and playwright (dev, the browser test)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))
    globs = project["tool"]["setuptools"]["package-data"]["streamq"]
    static = resources.files("streamq.web").joinpath("static")
    names = sorted(p.name for p in static.iterdir() if p.is_file())
    assert {"dashboard.html", "dashboard.js", "dashboard.css"} <= set(names)
    for name in names:
        assert any(fnmatch.fnmatch(f"web/static/{name}", g) for g in globs), (name, globs)
    extras = project["project"]["optional-dependencies"]
    assert any(d.replace("_", "-").startswith("prometheus-client") for d in extras["web"])
    assert any(d.startswith("playwright") for d in extras["dev"])


# --------------------------------------------------------------------------- pages, search


def get_ok(client: TestClient, path: str, **params: Any) -> dict[str, Any]:
    r = client.get(path, params=params, headers=AUTH)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def test_waiting_jobs_page_by_offset_with_the_total_and_both_neighbours(
    client: TestClient, producer: Producer
) -> None:
    ids = [producer.enqueue(QUEUE, "send", {"n": n}).job_id for n in range(7)]
    path = f"/api/queues/{Q}/jobs"
    first = get_ok(client, path, state="waiting", limit=3)
    assert [j["id"] for j in first["jobs"]] == ids[:3]  # oldest first
    assert first["page"] == {
        "offset": 0,
        "limit": 3,
        "total": 7,
        "next_offset": 3,
        "prev_offset": None,
    }
    assert first["all_time"] is None  # only completed and failed have a lifetime counter
    second = get_ok(client, path, state="waiting", limit=3, offset=3)
    assert [j["id"] for j in second["jobs"]] == ids[3:6]
    assert (second["page"]["prev_offset"], second["page"]["next_offset"]) == (0, 6)
    last = get_ok(client, path, state="waiting", limit=3, offset=6)
    assert [j["id"] for j in last["jobs"]] == ids[6:]
    assert (last["page"]["prev_offset"], last["page"]["next_offset"]) == (3, None)
    beyond = get_ok(client, path, state="waiting", limit=3, offset=50)
    assert beyond["jobs"] == [] and beyond["page"]["total"] == 7


def test_active_jobs_page_through_the_pending_entries_list(
    client: TestClient, producer: Producer, redis_client: redis.Redis, keys: QueueKeys
) -> None:
    ids = [producer.enqueue(QUEUE, "send", {"n": n}).job_id for n in range(5)]
    redis_client.xreadgroup(GROUP, "some-worker", {keys.stream: ">"}, count=5)
    body = get_ok(client, f"/api/queues/{Q}/jobs", state="active", limit=2, offset=2)
    assert [j["id"] for j in body["jobs"]] == ids[2:4]
    assert body["page"]["total"] == 5 and body["page"]["next_offset"] == 4
    assert all(j["consumer"] == "some-worker" for j in body["jobs"])


def test_completed_listing_shows_the_retained_count_beside_the_all_time_total(
    redis_url: str, queue_name: str, producer: Producer
) -> None:
    # Retention keeps the last 2 records, the counter remembers all 5.
    settings = Settings(redis=RedisSettings(url=redis_url), prefix=queue_name, keep_completed=2)
    app = App()

    @app.handler("ok")
    def ok(job: Job) -> int:
        return int(job.data["n"])

    ids = [producer.enqueue(QUEUE, "ok", {"n": n}).job_id for n in range(5)]
    # Retention runs in the worker's housekeeping loop (every second), not at each
    # completion: run until it has trimmed, not merely until the queue is drained.
    worker = Worker(app, [QUEUE], settings=settings, block_ms=100)
    with Producer(settings=settings) as own:
        asyncio.run(run_until([worker], lambda: own.status(QUEUE).completed == 2, what="retention"))
    with make_client(settings) as client:
        body = get_ok(client, f"/api/queues/{Q}/jobs", state="completed", limit=1)
        assert body["page"]["total"] == 2 and body["all_time"] == 5
        assert body["page"]["next_offset"] == 1
        second = get_ok(client, f"/api/queues/{Q}/jobs", state="completed", limit=1, offset=1)
        shown = {body["jobs"][0]["id"], second["jobs"][0]["id"]}
        assert shown <= set(ids) and len(shown) == 2
        row = queue_row(client)
        assert (row["completed"], row["completed_total"]) == (2, 5)


@pytest.mark.parametrize(
    ("path", "query", "complaint"),
    [
        (f"/api/queues/{Q}/jobs", "offset=-1", "offset must be within [0, 10000], got -1"),
        (f"/api/queues/{Q}/jobs", "offset=abc", "offset must be an integer, got 'abc'"),
        (f"/api/queues/{Q}/jobs", "offset=10001", "offset must be within [0, 10000]"),
        (f"/api/queues/{Q}/jobs", "state=completed&offset=100001", "offset must be within"),
        (f"/api/queues/{Q}/jobs", "limit=0", "limit must be within [1, 500], got 0"),
        (f"/api/queues/{Q}/jobs", "limit=501", "limit must be within [1, 500], got 501"),
        ("/api/queues", "offset=x", "offset must be an integer"),
        ("/api/queues", "limit=-5", "limit must be within"),
        ("/api/workers", "offset=1.5", "offset must be an integer"),
        (f"/api/queues/{Q}/schedules", "limit=1000", "limit must be within"),
        (f"/api/queues/{Q}/dlq", "after=nope", "after must be a dead-letter entry id"),
        (f"/api/queues/{Q}/dlq", "limit=0", "limit must be within"),
    ],
)
def test_bad_paging_parameters_are_refused_with_a_message_naming_them(
    client: TestClient, path: str, query: str, complaint: str
) -> None:
    r = client.get(f"{path}?{query}", headers=AUTH)
    assert r.status_code == 400, r.text
    assert complaint in r.json()["error"]


def test_dlq_pages_by_cursor_until_the_last_page(
    client: TestClient, settings: Settings, producer: Producer
) -> None:
    ids = make_dead(settings, producer, 5)
    seen: list[str] = []
    after = "-"
    pages = 0
    while True:
        body = get_ok(client, f"/api/queues/{Q}/dlq", limit=2, after=after)
        assert body["total"] == 5 and len(body["entries"]) <= 2
        seen += [e["job_id"] for e in body["entries"]]
        pages += 1
        if body["next_after"] is None:
            break
        assert body["next_after"] == body["entries"][-1]["dead_id"]
        after = body["next_after"]
    assert pages == 3 and seen == ids  # oldest first, each once


def test_queues_workers_and_schedules_page_with_totals(
    client: TestClient, producer: Producer, redis_client: redis.Redis, settings: Settings
) -> None:
    for queue in ("q-a", "q-b", "q-c"):
        producer.enqueue(queue, "send", {})
    body = get_ok(client, "/api/queues", limit=2)
    assert [q["queue"] for q in body["queues"]] == ["q-a", "q-b"]
    assert body["page"]["total"] == 3 and body["page"]["next_offset"] == 2
    rest = get_ok(client, "/api/queues", limit=2, offset=2)
    assert [q["queue"] for q in rest["queues"]] == ["q-c"] and rest["page"]["next_offset"] is None

    beats = QueueKeys("q-a", settings.prefix).workers
    sec, _ = redis_client.time()
    for n in range(5):
        beat = {"host": "h", "pid": n, "seen_ms": int(sec) * 1000}
        redis_client.hset(beats, f"w-{n}", orjson.dumps(beat))
    workers = get_ok(client, "/api/workers", limit=2, offset=4)
    assert [w["name"] for w in workers["workers"]] == ["w-4"]
    assert workers["page"]["total"] == 5 and workers["page"]["prev_offset"] == 2

    for n in range(3):
        producer.add_schedule(QUEUE, f"refresh-{n}", "token_refresh", {"c": n}, every=60 + n)
    first = get_ok(client, f"/api/queues/{Q}/schedules", limit=2)
    assert [s["key"] for s in first["schedules"]] == ["refresh-0", "refresh-1"]  # soonest first
    assert first["schedules"][0]["data"] == {"c": 0}
    assert first["schedules"][0]["every_ms"] == 60_000
    assert first["page"]["total"] == 3 and first["page"]["next_offset"] == 2
    last = get_ok(client, f"/api/queues/{Q}/schedules", limit=2, offset=2)
    assert [s["key"] for s in last["schedules"]] == ["refresh-2"]


def test_find_a_job_by_id_in_every_queue(client: TestClient, producer: Producer) -> None:
    producer.enqueue(QUEUE, "send", {"where": "dispatch"}, job_id="post-123")
    producer.enqueue("distribution:scheduled", "publish", {"where": "sched"}, job_id="post-123")
    producer.enqueue("distribution:scheduled", "publish", {}, job_id="other-1")
    body = get_ok(client, "/api/jobs/post-123")
    assert [(j["queue"], j["data"]["where"]) for j in body["jobs"]] == [
        ("distribution:dispatch", "dispatch"),
        ("distribution:scheduled", "sched"),
    ]
    missing = client.get("/api/jobs/no-such-job", headers=AUTH)
    assert missing.status_code == 404
    assert "no job 'no-such-job' in any queue" in missing.json()["error"]
    bad = client.get(f"/api/jobs/{quote('bad id!', safe='')}", headers=AUTH)
    assert bad.status_code == 400 and "invalid job id" in bad.json()["error"]
