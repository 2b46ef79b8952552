"""The dashboard in a real browser: Debian's Chromium, headless, driven by Playwright, against
the app served by uvicorn on 127.0.0.1 and a real server. The page loads with the token from
the URL fragment, shows the counts the API gives, and its DLQ "Retry" button puts a dead job
back in the queue, where a worker completes it. Screenshots go to ``artifacts/``.

Chromium is a machine prerequisite (``.ci/run`` installs it with apt-get); without it this
test FAILS, it never skips. Playwright's own browser download is never used."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis
import uvicorn
from playwright.sync_api import Browser, ConsoleMessage, Page, sync_playwright
from playwright.sync_api import Error as PlaywrightError

from streamq import AsyncProducer, Producer, RedisSettings, Settings
from streamq.job import Job
from streamq.protocol.keys import GROUP, QueueKeys
from streamq.server import EmbeddedServer
from streamq.web import create_app
from streamq.worker import App, Worker

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
TOKEN = "browser-token-for-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
QUEUE = "distribution:dispatch"
OTHER = "distribution:scheduled"
COUNTS = ("waiting", "active", "delayed", "completed", "failed", "dead", "lag", "workers")
STEP_MS = 15_000  # the longest any single UI step may take
#: The lease the dashboard judges running jobs by (the workers here keep the default): short,
#: so the frozen worker's job shows as expired within a second.
DASHBOARD_LEASE_MS = 1000


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("STREAMQ_API_TOKEN", "STREAMQ_WEB_ALLOW_NO_TOKEN", "STREAMQ_HEALTH_QUEUES"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless Debian Chromium; a clear failure (not a skip) when it cannot start."""
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} not found: the browser test needs Debian's chromium "
            "(`apt-get install -y chromium`, as .ci/run does)",
            pytrace=False,
        )
    with sync_playwright() as pw:
        try:
            chromium = pw.chromium.launch(
                executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True, timeout=30_000
            )
        except PlaywrightError as exc:
            pytest.fail(f"cannot launch {CHROMIUM}: {exc}", pytrace=False)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def settings(server: EmbeddedServer, queue_name: str) -> Settings:
    return Settings(redis=RedisSettings(url=server.url), prefix=queue_name)


@pytest.fixture
def base_url(settings: Settings) -> Iterator[str]:
    """The app served by uvicorn in a thread on 127.0.0.1 and a free port."""
    app_settings = settings.with_changes(lease_ms=DASHBOARD_LEASE_MS)
    app = create_app(app_settings, producer=AsyncProducer(settings=app_settings), api_token=TOKEN)
    config = uvicorn.Config(app, log_level="warning", lifespan="on", ws="none", http="h11")
    server = uvicorn.Server(config)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, 15, "uvicorn to start")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()
        assert not thread.is_alive(), "uvicorn did not stop"


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def run_burst(settings: Settings, app: App, queue: str = QUEUE) -> None:
    """A burst worker in its own thread (Playwright's sync API owns this one's loop)."""
    errors: list[BaseException] = []

    def target() -> None:
        worker = Worker(app, [queue], settings=settings, block_ms=100)
        try:
            asyncio.run(asyncio.wait_for(worker.run(burst=True), 30))
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(40)
    assert not thread.is_alive(), "the burst worker did not finish"
    if errors:
        raise errors[0]


def api(base_url: str, path: str) -> Any:
    r = httpx.get(f"{base_url}/api/{path}", headers=AUTH, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def shot(page: Page, name: str, kind: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"dashboard-{name}-{kind}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def seed(settings: Settings, redis_client: redis.Redis) -> str:
    """A dead "flaky" job (no handler yet), waiting and delayed jobs, a frozen worker holding
    a job of the other queue, and an hour of throughput: a dashboard with something on it."""
    with Producer(settings=settings) as producer:
        flaky = producer.enqueue(QUEUE, "flaky", {"post": 17, "html": "<b>x</b>"}, max_retries=0)
        run_burst(settings, App())  # no "flaky" handler: dead-letter reason no-handler
        for n in range(3):
            producer.enqueue(OTHER, "scheduled_publish", {"n": n})
        producer.enqueue(OTHER, "scheduled_publish", {"n": 9}, delay=3600)
    other = QueueKeys(OTHER, settings.prefix)
    redis_client.xreadgroup(GROUP, "frozen-worker", {other.stream: ">"}, count=1)
    sec, usec = redis_client.time()
    now_ms = int(sec) * 1000 + int(usec) // 1000
    beat = {"host": "box-1", "pid": 4242, "seen_ms": now_ms, "running": 1, "concurrency": 5}
    redis_client.hset(other.workers, "frozen-worker", orjson.dumps(beat))
    minute = now_ms // 60_000
    redis_client.hset(
        QueueKeys(QUEUE, settings.prefix).throughput,
        mapping={str(minute - m): (m * 7) % 23 for m in range(1, 60)} | {f"{minute - 3}:f": 4},
    )
    return flaky.job_id


def test_dashboard_retry_button_brings_a_dead_job_back_and_a_worker_completes_it(
    browser: Browser,
    base_url: str,
    settings: Settings,
    redis_client: redis.Redis,
    request: pytest.FixtureRequest,
) -> None:
    kind = request.node.callspec.id
    job_id = seed(settings, redis_client)
    problems: list[str] = []
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(STEP_MS)
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))

    def on_console(msg: ConsoleMessage) -> None:
        if msg.type in ("error", "warning"):
            problems.append(f"console {msg.type}: {msg.text} ({msg.location.get('url')})")

    page.on("console", on_console)
    try:
        # The token travels in the fragment, is kept in sessionStorage and leaves the URL.
        page.goto(f"{base_url}/#token={TOKEN}")
        row = page.locator(f'#queues tr[data-queue="{QUEUE}"]')
        row.wait_for()
        assert TOKEN not in page.url
        assert page.locator("#login").is_hidden()

        # Counts on the page are the API's.
        for queue in api(base_url, "queues")["queues"]:
            cells = page.locator(f'#queues tr[data-queue="{queue["queue"]}"]')
            for count in COUNTS:
                text = cells.locator(f'td[data-count="{count}"]').inner_text()
                assert text == str(queue[count]), (queue["queue"], count)
        assert row.locator('td[data-count="dead"]').inner_text() == "1"

        # The frozen worker of the other queue shows its running job, stuck past the lease.
        worker = page.locator('#workers tr[data-worker="frozen-worker"]')
        assert worker.locator(".badge").first.inner_text() == "alive"
        assert page.locator("#workers tr[data-job-id]").count() == 1
        wait_until(
            lambda: api(base_url, "workers")["workers"][0]["jobs"][0]["lease"] == "expired",
            10,
            "the frozen worker's lease to expire",
        )
        page.locator("#refresh").click()
        page.locator("#workers td.lease .badge.bad", has_text="expired").wait_for()
        assert "lease 1.0 s" in page.locator("#workers td.lease").inner_text()

        # The DLQ tab lists the dead job; its row expands to payload and error.
        row.click()
        page.locator('#tabs button[data-state="dead"]').click()
        dead = page.locator(f'table.dlq tr[data-job-id="{job_id}"]')
        dead.wait_for()
        assert "no-handler" in dead.inner_text()
        dead.click()
        assert '"post": 17' in page.locator("#list pre.payload").inner_text()
        assert page.locator("#chart rect.ok").count() > 10  # the hour of throughput is drawn
        shot(page, "dlq", kind)

        dead.locator("button.retry").click()
        page.locator("#message.ok").wait_for()
        assert job_id in page.locator("#message").inner_text()
        wait_until(
            lambda: api(base_url, f"queues/{QUEUE}/dlq")["total"] == 0, 10, "the DLQ to empty"
        )
        page.locator("table.dlq").wait_for(state="detached")
        assert "empty" in page.locator("#list").inner_text()

        # Now the job has a handler: a worker completes it.
        app = App()

        @app.handler("flaky")
        def flaky(job: Job) -> dict[str, Any]:
            return {"posted": job.data["post"]}

        run_burst(settings, app)
        with Producer(settings=settings) as producer:
            done = producer.get_job(QUEUE, job_id)
        assert done is not None and done.state == "completed" and done.result == {"posted": 17}

        page.locator("#refresh").click()
        page.wait_for_function(
            """q => {
                const row = document.querySelector(`#queues tr[data-queue="${q}"]`);
                return row && row.querySelector('td[data-count="completed"]').textContent === "1"
                    && row.querySelector('td[data-count="dead"]').textContent === "0";
            }""",
            arg=QUEUE,
        )
        page.locator('#tabs button[data-state="completed"]').click()
        page.locator(f'table.jobs[data-state="completed"] tr[data-job-id="{job_id}"]').wait_for()
        path = shot(page, "completed", kind)
        assert path.stat().st_size > 10_000
        assert problems == [], problems  # no CSP violation, no script error
    finally:
        context.close()


def test_dashboard_asks_for_the_token_and_shows_nothing_without_it(
    browser: Browser,
    base_url: str,
    settings: Settings,
    request: pytest.FixtureRequest,
) -> None:
    with Producer(settings=settings) as producer:
        producer.enqueue(QUEUE, "dispatch", {"secret": "payload-not-for-strangers"})
    context = browser.new_context(viewport={"width": 1200, "height": 700})
    page = context.new_page()
    page.set_default_timeout(STEP_MS)
    try:
        page.goto(base_url)
        page.locator("#login").wait_for()
        assert page.locator("#app").is_hidden()
        assert page.locator("#login-error").is_hidden()  # first visit: no complaint yet
        assert QUEUE not in page.content()

        page.fill("#token", "not-the-token")
        page.click("#login-form button[type=submit]")
        page.locator("#login-error").wait_for()
        assert "refused" in page.locator("#login-error").inner_text()
        assert QUEUE not in page.content()
        shot(page, "login", request.node.callspec.id)

        page.fill("#token", TOKEN)
        page.click("#login-form button[type=submit]")
        page.locator(f'#queues tr[data-queue="{QUEUE}"]').wait_for()
        assert page.locator("#login").is_hidden()
        page.click("#logout")
        page.locator("#login").wait_for()
        assert page.evaluate("sessionStorage.length") == 0
    finally:
        context.close()
