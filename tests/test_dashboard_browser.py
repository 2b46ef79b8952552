"""The dashboard in a real browser: Debian's Chromium, headless, driven by Playwright, against
the app served by uvicorn on 127.0.0.1 and a real server. The page loads with the token from
the URL fragment (and follows a new one without reloading), shows the counts the API gives,
its DLQ "Retry" button puts a dead job back in the queue, where a worker completes it; an
expanded failed or completed job reads as its error, traceback and result; a job is found by
id; lists page on the server; a phone-width page never scrolls sideways. Screenshots go to
each test's ``tmp_path``.

Chromium is a machine prerequisite (``.ci/run`` installs it with apt-get); without it this
test FAILS, it never skips. Playwright's own browser download is never used."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis
import uvicorn
from _flow_support import block, hold, run_flow_jobs
from _support import WEB_ENV, clear_env, wait_until
from playwright.sync_api import Browser, ConsoleMessage, Locator, Page, sync_playwright
from playwright.sync_api import Error as PlaywrightError

from streamq import AsyncProducer, JobSpec, Producer, RedisSettings, Settings
from streamq.admin import Admin
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
    clear_env(monkeypatch, *WEB_ENV)


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


def shot(page: Page, where: Path, name: str) -> Path:
    path = where / f"dashboard-{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def count(row: Locator, name: str) -> str:
    """The number a count cell of the queue table shows (without the all-time total)."""
    return row.locator(f'td[data-count="{name}"] .n').inner_text()


def open_page(browser: Browser, width: int = 1440, height: int = 1000) -> tuple[Page, list[str]]:
    """A page in a fresh context, and the list its script errors and console warnings go to
    (a CSP violation is one)."""
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    page.set_default_timeout(STEP_MS)
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))

    def on_console(msg: ConsoleMessage) -> None:
        if msg.type in ("error", "warning"):
            problems.append(f"console {msg.type}: {msg.text} ({msg.location.get('url')})")

    page.on("console", on_console)
    return page, problems


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
    beat = {
        "host": "box-1",
        "pid": 4242,
        "seen_ms": now_ms,
        "running": 1,
        "concurrency": 5,
        "stuck_count": 1,  # a sync handler past its time limit, holding a slot
        "stuck_by_queue": {OTHER: 1},
    }
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
    tmp_path: Path,
) -> None:
    job_id = seed(settings, redis_client)
    page, problems = open_page(browser)
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
            for name in COUNTS:
                assert count(cells, name) == str(queue[name]), (queue["queue"], name)
        assert count(row, "dead") == "1"

        # The frozen worker of the other queue shows its running job, stuck past the lease.
        worker = page.locator('#workers tr[data-worker="frozen-worker"]')
        assert worker.locator(".badge").first.inner_text() == "alive"
        assert "1 / 5 1 stuck" in worker.locator("td.num").first.inner_text()
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
        shot(page, tmp_path, "dlq")

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
                const n = (name) => row.querySelector(`td[data-count="${name}"] .n`).textContent;
                return row && n("completed") === "1" && n("dead") === "0";
            }""",
            arg=QUEUE,
        )
        page.locator('#tabs button[data-state="completed"]').click()
        page.locator(f'table.jobs[data-state="completed"] tr[data-job-id="{job_id}"]').wait_for()
        path = shot(page, tmp_path, "completed")
        assert path.stat().st_size > 10_000
        assert problems == [], problems  # no CSP violation, no script error
    finally:
        page.context.close()


def test_dashboard_asks_for_the_token_and_shows_nothing_without_it(
    browser: Browser,
    base_url: str,
    settings: Settings,
    tmp_path: Path,
) -> None:
    with Producer(settings=settings) as producer:
        producer.enqueue(QUEUE, "dispatch", {"secret": "payload-not-for-strangers"})
    page, _ = open_page(browser, 1200, 700)
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
        shot(page, tmp_path, "login")

        page.fill("#token", TOKEN)
        page.click("#login-form button[type=submit]")
        page.locator(f'#queues tr[data-queue="{QUEUE}"]').wait_for()
        assert page.locator("#login").is_hidden()
        page.click("#logout")
        page.locator("#login").wait_for()
        assert page.evaluate("sessionStorage.length") == 0
    finally:
        page.context.close()


# ---------------------------------------------------------------------------- job detail

ERROR_TEXT = "platform said no: quota exceeded for post 17"


def finished_jobs(settings: Settings) -> tuple[str, str]:
    """A failed job (its handler raised, no retries left) and a completed one with a result."""
    app = App()

    @app.handler("post")
    def post(job: Job) -> dict[str, Any]:
        if job.data["fail"]:
            raise ValueError(ERROR_TEXT)
        return {"posted": job.data["post"], "url": "https://example.test/p/18"}

    with Producer(settings=settings) as producer:
        failed = producer.enqueue(QUEUE, "post", {"post": 17, "fail": True}, max_retries=0)
        done = producer.enqueue(QUEUE, "post", {"post": 18, "fail": False})
    run_burst(settings, app)
    return failed.job_id, done.job_id


def open_dashboard(page: Page, base_url: str) -> None:
    page.goto(f"{base_url}/#token={TOKEN}")
    page.locator(f'#queues tr[data-queue="{QUEUE}"]').wait_for()


def expand(page: Page, state: str, job_id: str) -> Locator:
    """Open tab ``state``, click the job's row and return its detail cell once loaded."""
    page.locator(f'#tabs button[data-state="{state}"]').click()
    page.locator(f'table.jobs[data-state="{state}"] tr[data-job-id="{job_id}"]').click()
    detail = page.locator(f'tr[data-job-id="{job_id}"] + tr.detailrow td.detail')
    detail.locator("dl.facts").wait_for()
    return detail


def assert_clean_text(text: str) -> None:
    """What a DOM node handed over as a value instead of text would show."""
    for junk in ("[object", "null", "undefined", "NaN"):
        assert junk not in text, (junk, text)


def test_an_expanded_failed_or_completed_job_reads_as_its_error_traceback_and_result(
    browser: Browser, base_url: str, settings: Settings, tmp_path: Path
) -> None:
    failed, done = finished_jobs(settings)
    page, problems = open_page(browser)
    try:
        open_dashboard(page, base_url)
        detail = expand(page, "failed", failed)
        text = detail.inner_text()
        assert_clean_text(text)
        assert ERROR_TEXT in detail.locator("pre.error").inner_text()
        traceback = detail.locator("pre.traceback").inner_text()
        assert "Traceback (most recent call last)" in traceback
        assert f"ValueError: {ERROR_TEXT}" in traceback
        assert "raise ValueError(ERROR_TEXT)" in traceback
        assert "1 (max retries 0)" in text  # attempts
        assert "failed" in text and "finished" in text and "ran " in text  # timestamps
        assert '"post": 17' in detail.locator("pre.payload").inner_text()
        shot(page, tmp_path, "failed-detail")

        detail = expand(page, "completed", done)
        text = detail.inner_text()
        assert_clean_text(text)
        result = detail.locator("pre.result").inner_text()
        assert '"posted": 18' in result and "https://example.test/p/18" in result
        assert detail.locator("pre.error").count() == 0
        assert "1 (max retries 3)" in text and "ran " in text
        assert_clean_text(page.locator("#list").inner_text())
        shot(page, tmp_path, "completed-detail")
        assert problems == [], problems
    finally:
        page.context.close()


# ---------------------------------------------------------------------------- token hash


def test_a_new_token_in_the_fragment_is_used_at_once_without_a_reload(
    browser: Browser, base_url: str, settings: Settings
) -> None:
    with Producer(settings=settings) as producer:
        producer.enqueue(QUEUE, "dispatch", {"n": 1})
    page, problems = open_page(browser)
    urls: list[str] = []
    page.on("request", lambda r: urls.append(r.url))
    try:
        page.goto(f"{base_url}/#token=not-the-token")
        page.locator("#login-error").wait_for()
        assert "refused" in page.locator("#login-error").inner_text()
        page.evaluate("window.__sameDocument = true")

        page.evaluate(f"location.hash = '#token={TOKEN}'")
        page.locator(f'#queues tr[data-queue="{QUEUE}"]').wait_for()
        assert page.locator("#login").is_hidden()
        assert page.evaluate("window.__sameDocument") is True  # no reload happened
        assert TOKEN not in page.url and "token" not in page.url  # taken out of the address bar
        assert page.evaluate("sessionStorage.getItem('streamq.token')") == TOKEN

        # And back to a wrong one: the dashboard notices that too.
        page.evaluate("location.hash = '#token=revoked-token'")
        page.locator("#login-error").wait_for()
        assert page.locator("#app").is_hidden()
        assert page.evaluate("window.__sameDocument") is True
        assert not any(TOKEN in u or "revoked-token" in u for u in urls), urls
        assert [p for p in problems if "401" not in p] == [], problems
    finally:
        page.context.close()


# ---------------------------------------------------------------------------- search


def test_a_job_is_found_by_id_in_any_queue_and_an_unknown_id_says_not_found(
    browser: Browser, base_url: str, settings: Settings
) -> None:
    failed, _ = finished_jobs(settings)
    with Producer(settings=settings) as producer:
        producer.enqueue(OTHER, "scheduled_publish", {"post": 4711}, job_id="post-4711")
    page, problems = open_page(browser)
    try:
        open_dashboard(page, base_url)
        page.fill("#search-id", "post-4711")
        page.click("#search-form button[type=submit]")
        found = page.locator(f'#search-result article.found[data-queue="{OTHER}"]')
        found.wait_for()
        text = found.inner_text()
        assert "post-4711" in text and OTHER in text and '"post": 4711' in text
        assert_clean_text(text)

        page.fill("#search-id", failed)
        page.press("#search-id", "Enter")
        found = page.locator(f'#search-result article.found[data-job-id="{failed}"]')
        found.locator("pre.traceback").wait_for()
        assert ERROR_TEXT in found.locator("pre.error").inner_text()
        assert_clean_text(found.inner_text())

        page.fill("#search-id", "no-such-job-42")
        page.click("#search-form button[type=submit]")
        missing = page.locator("#search-result p.notfound")
        missing.wait_for()
        assert "Not found" in missing.inner_text() and "no-such-job-42" in missing.inner_text()
        assert page.locator("#search-result article.found").count() == 0

        page.fill("#search-id", "bad id!")
        page.click("#search-form button[type=submit]")
        page.locator("#search-result p.error", has_text="invalid job id").wait_for()
        assert [p for p in problems if "404" not in p and "400" not in p] == [], problems
    finally:
        page.context.close()


# ---------------------------------------------------------------------------- pages


#: Between the first and last row number of a pager ("1-50 of 60", with an en dash).
DASH = "\u2013"


def test_lists_page_on_the_server_with_prev_and_next(
    browser: Browser,
    base_url: str,
    settings: Settings,
    redis_client: redis.Redis,
) -> None:
    with Producer(settings=settings) as producer:
        waiting = [
            r.job_id
            for r in producer.enqueue_many(QUEUE, [JobSpec("send", {"n": n}) for n in range(60)])
        ]
        dead = [
            r.job_id
            for r in producer.enqueue_many(
                OTHER, [JobSpec("flaky", {"n": n}, max_retries=0) for n in range(55)]
            )
        ]
    run_burst(settings, App(), OTHER)  # no handler: all 55 go to the DLQ
    beats = QueueKeys(QUEUE, settings.prefix).workers
    sec, _ = redis_client.time()
    for n in range(25):
        redis_client.hset(
            beats, f"w-{n:02}", orjson.dumps({"host": "h", "pid": n, "seen_ms": int(sec) * 1000})
        )
    page, problems = open_page(browser)
    urls: list[str] = []
    page.on("request", lambda r: urls.append(r.url))
    try:
        open_dashboard(page, base_url)
        listing = page.locator("#list")
        rows = listing.locator("table.jobs tr.job")
        listing.locator(".pager .range", has_text=f"1{DASH}50 of 60").wait_for()
        assert rows.count() == 50 and rows.first.get_attribute("data-job-id") == waiting[0]
        assert listing.locator(".pager button.prev").is_disabled()
        listing.locator(".pager button.next").click()
        listing.locator(".pager .range", has_text=f"51{DASH}60 of 60").wait_for()
        assert [r.get_attribute("data-job-id") for r in rows.all()] == waiting[50:]
        assert listing.locator(".pager button.next").is_disabled()
        assert any("state=waiting&offset=50&limit=50" in u for u in urls)  # paged by the server
        listing.locator(".pager button.prev").click()
        listing.locator(".pager .range", has_text=f"1{DASH}50 of 60").wait_for()

        page.locator(f'#queues tr[data-queue="{OTHER}"]').click()
        page.locator('#tabs button[data-state="dead"]').click()
        dlq_rows = listing.locator("table.dlq tr.job")
        listing.locator(".pager .range", has_text=f"1{DASH}50 of 55").wait_for()
        assert [r.get_attribute("data-job-id") for r in dlq_rows.all()] == dead[:50]
        listing.locator(".pager button.next").click()
        listing.locator(".pager .range", has_text=f"51{DASH}55 of 55").wait_for()
        assert [r.get_attribute("data-job-id") for r in dlq_rows.all()] == dead[50:]
        assert any("/dlq?limit=50&after=" in u and "after=-" not in u for u in urls)
        listing.locator(".pager button.prev").click()
        listing.locator(".pager .range", has_text=f"1{DASH}50 of 55").wait_for()

        workers = page.locator("#workers")
        workers.locator(".pager .range", has_text=f"1{DASH}20 of 25").wait_for()
        assert workers.locator("tr.worker").count() == 20
        workers.locator(".pager button.next").click()
        workers.locator(".pager .range", has_text=f"21{DASH}25 of 25").wait_for()
        names = [r.get_attribute("data-worker") for r in workers.locator("tr.worker").all()]
        assert names == [f"w-{n:02}" for n in range(20, 25)]

        # The failed tab of the other queue: 55 retained of 55 all time, beside each other.
        page.locator('#tabs button[data-state="failed"]').click()
        listing.locator(".summary", has_text="55 retained of 55 all time").wait_for()
        assert "(55 of 55)" in page.locator('#tabs button[data-state="failed"]').inner_text()
        assert problems == [], problems
    finally:
        page.context.close()


# ---------------------------------------------------------------------------- phone width


def test_the_page_fits_a_phone_screen_without_scrolling_sideways(
    browser: Browser,
    base_url: str,
    settings: Settings,
    redis_client: redis.Redis,
    tmp_path: Path,
) -> None:
    seed(settings, redis_client)
    failed, _ = finished_jobs(settings)
    with Producer(settings=settings) as producer:
        producer.enqueue(QUEUE, "dispatch", {"url": "https://example.test/" + "x" * 300})
    for width, height, name in ((375, 812, "phone"), (1440, 1000, "desktop")):
        page, problems = open_page(browser, width, height)
        try:
            open_dashboard(page, base_url)
            expand(page, "failed", failed).locator("pre.traceback").wait_for()
            page.fill("#search-id", failed)
            page.press("#search-id", "Enter")
            page.locator("#search-result article.found pre.traceback").wait_for()
            page.locator("#workers tr.worker").first.wait_for()
            scroll_width = page.evaluate("document.scrollingElement.scrollWidth")
            assert scroll_width <= width, (name, scroll_width)
            # Wide tables scroll inside their own box instead.
            assert page.locator("#queues").evaluate("t => t.closest('.scroll') !== null")
            shot(page, tmp_path, name)
            page.locator('#tabs button[data-state="waiting"]').click()
            page.locator('table.jobs[data-state="waiting"]').wait_for()
            assert page.evaluate("document.scrollingElement.scrollWidth") <= width
            shot(page, tmp_path, f"{name}-waiting")
            assert problems == [], problems
        finally:
            page.context.close()


def test_the_dashboard_shows_held_jobs_and_the_busiest_keys_of_a_queue(
    browser: Browser, base_url: str, settings: Settings, redis_client: redis.Redis
) -> None:
    # Flow states written as the engine lays them out (tests/_flow_support.py); the markup
    # in a key (which no enqueue accepts) checks that keys render as text.
    with Producer(settings=settings) as producer:
        producer.enqueue(QUEUE, "dispatch", {"n": 1})
    p = settings.prefix
    for i in range(3):
        hold(redis_client, QUEUE, "x:conn-<b>1</b>", f"a{i}", prefix=p)
    hold(redis_client, QUEUE, "x:conn-2", "b0", prefix=p)
    block(redis_client, QUEUE, "x:conn-<b>1</b>", 10**13, prefix=p)
    run_flow_jobs(redis_client, QUEUE, 1, prefix=p)
    page, problems = open_page(browser)
    try:
        page.goto(f"{base_url}/#token={TOKEN}")
        row = page.locator(f'#queues tr[data-queue="{QUEUE}"]')
        row.wait_for()
        assert count(row, "held") == "4"
        assert "1 key(s) waiting for a rate window" in (
            row.locator('td[data-count="held"]').get_attribute("title") or ""
        )
        page.locator("#flow").wait_for()
        assert page.locator("#flow-summary").inner_text().startswith("4 held · 1 running")
        keys = page.locator("#busiest tbody tr")
        # A key is shown as text, never as markup.
        assert keys.nth(0).locator("td").nth(0).inner_text() == "x:conn-<b>1</b>"
        assert [keys.nth(i).locator("td.num").inner_text() for i in range(2)] == ["3", "1"]
        # The held tab lists them, by key, with their key and priority.
        page.locator('#tabs button[data-state="held"]').click()
        page.locator('#list table.jobs[data-state="held"]').wait_for()
        assert page.locator('#tabs button[data-state="held"]').inner_text() == "held (4)"
        first = page.locator("#list tr.job").first
        assert first.get_attribute("data-job-id") == "b0"  # "x:conn-2" < "x:conn-<b>1</b>"
        assert "key x:conn-2 · priority 0" in first.inner_text()
        assert problems == []
    finally:
        page.context.close()


# ---------------------------------------------------------------------------- partitions


def test_a_partitioned_queue_is_one_row_with_its_jobs_per_partition_in_the_detail(
    browser: Browser, base_url: str, settings: Settings, tmp_path: Path
) -> None:
    with Admin(settings=settings) as admin:
        admin.set_partitions(QUEUE, 2)
        with Producer(settings=settings) as producer:
            for n in range(6):  # spread over home and partition 1 of 2
                producer.enqueue(QUEUE, "dispatch", {"n": -n})
        admin.set_partitions(QUEUE, 4)
        # A new producer: one that has seen 2 partitions keeps them for up to 5 s.
        with Producer(settings=settings) as producer:
            for n in range(25):
                producer.enqueue(QUEUE, "dispatch", {"n": n})
            producer.enqueue(QUEUE, "dispatch", {"n": 99}, delay=3600)
            producer.enqueue(OTHER, "scheduled_publish", {})
        (info,) = admin.status([QUEUE])
    for width, height, name in ((375, 812, "phone"), (1440, 1000, "desktop")):
        page, problems = open_page(browser, width, height)
        try:
            open_dashboard(page, base_url)
            rows = page.locator(f'#queues tr[data-queue="{QUEUE}"]')
            assert rows.count() == 1  # one row for the queue, its partitions added up
            assert count(rows, "waiting") == "31" and count(rows, "delayed") == "1"
            assert "4 partitions" in rows.locator("th").inner_text()
            rows.click()
            box = page.locator("#partitions")
            box.wait_for()
            summary = page.locator("#partitions-summary").inner_text()
            assert summary.startswith("4 partitions (+1 of earlier counts)"), summary
            parts = page.locator("#partition-counts tbody tr")
            assert [parts.nth(i).get_attribute("data-partition") for i in range(5)] == [
                "0",
                "1/2",
                "1",
                "2",
                "3",
            ]
            assert parts.nth(0).locator("th").inner_text() == "0 (home)"
            assert parts.nth(1).locator("th").inner_text() == "1 of earlier 2"
            shown = [
                int(parts.nth(i).locator('td[data-count="waiting"]').inner_text()) for i in range(5)
            ]
            assert shown == [p.waiting for p in info.partitions] and sum(shown) == 31
            delayed = [
                int(parts.nth(i).locator('td[data-count="delayed"]').inner_text()) for i in range(5)
            ]
            assert sum(delayed) == 1
            assert_clean_text(box.inner_text())
            assert_clean_text(rows.inner_text())
            # An unpartitioned queue has no breakdown.
            page.locator(f'#queues tr[data-queue="{OTHER}"]').click()
            page.locator("#detail-title", has_text=OTHER).wait_for()
            box.wait_for(state="hidden")
            page.locator(f'#queues tr[data-queue="{QUEUE}"]').click()
            box.wait_for()
            assert page.evaluate("document.scrollingElement.scrollWidth") <= width, name
            # The breakdown fits the card: no sideways scroll inside its box either.
            fits = "t => t.scrollWidth <= t.closest('.scroll').clientWidth"
            assert page.locator("#partition-counts").evaluate(fits), name
            shot(page, tmp_path, f"partitions-{name}")
            box.screenshot(path=str(tmp_path / f"dashboard-partitions-{name}-box.png"))
            assert problems == [], problems
        finally:
            page.context.close()
