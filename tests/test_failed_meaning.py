"""One meaning of "failed" everywhere: a job that ended in the failed state (and so got a
dead-letter entry). A failed attempt that will run again is a *retry*. ``QueueStatus``, the
``streamq`` command, ``/metrics`` and the health answer give the same numbers for the same
situation, produced by a real worker: one job dead-lettered after its retries, one job
waiting out a retry."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from _support import clear_env
from _worker_support import run_until
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from streamq import AsyncProducer, Backoff, Producer, RedisSettings, Settings
from streamq.admin import Admin
from streamq.cli import main
from streamq.web import create_app
from streamq.worker import App, Worker

QUEUE = "orders:emails"
TOKEN = "failed-meaning-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    clear_env(monkeypatch)


@pytest.fixture
def settings(redis_url: str, queue_name: str) -> Settings:
    return Settings(redis=RedisSettings(url=redis_url), prefix=queue_name)


@pytest.fixture
def one_failed_one_retrying(settings: Settings) -> Iterator[Settings]:
    """``dies`` fails twice (1 retry, 10 ms backoff) and ends failed; ``retries`` fails once
    and waits an hour for its retry. Three failed attempts, two retries, one failed job."""
    app = App()

    @app.handler("boom")
    def boom(job: Any) -> None:
        raise RuntimeError(f"boom {job.id}")

    with Producer(settings=settings) as p:
        p.enqueue(QUEUE, "boom", job_id="dies", max_retries=1, backoff=Backoff("fixed", 10))
        p.enqueue(
            QUEUE, "boom", job_id="retries", max_retries=3, backoff=Backoff("fixed", 3_600_000)
        )
    with Admin(settings=settings) as admin:

        def settled() -> bool:
            (info,) = admin.status([QUEUE])
            return info.status.failed_total == 1 and info.status.retried_total == 2

        worker = Worker(app, [QUEUE], settings=settings)
        asyncio.run(run_until([worker], settled, timeout=20, what="one failed, one retrying"))
    yield settings


def test_status_cli_metrics_and_health_count_failed_jobs_the_same_way(
    one_failed_one_retrying: Settings, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = one_failed_one_retrying
    with Admin(settings=settings) as admin:
        (info,) = admin.status([QUEUE])
    st = info.status
    # The engine: one failed job (retained record, lifetime count, DLQ entry), two retries.
    assert (st.failed, st.failed_total, st.dead) == (1, 1, 1)
    assert (st.retried_total, st.delayed, st.completed_total) == (2, 1, 0)

    # The CLI: the same numbers in --json and in the table.
    capsys.readouterr()
    cli = ["--url", redis_url, "--prefix", settings.prefix]
    assert main([*cli, "status", QUEUE, "--json"]) == 0
    (row,) = orjson.loads(capsys.readouterr().out)
    assert (row["failed"], row["failed_total"], row["dead"], row["retried_total"]) == (1, 1, 1, 2)
    assert main([*cli, "status", QUEUE]) == 0
    header, line = capsys.readouterr().out.splitlines()[1:3]
    cells = dict(zip(header.split(), line.split(), strict=False))
    assert (cells["FAILED"], cells["DEAD"], cells["DELAYED"]) == ("1", "1", "1")
    assert main([*cli, "jobs", QUEUE, "--state", "failed", "--json"]) == 0
    assert [j["job_id"] for j in orjson.loads(capsys.readouterr().out)] == ["dies"]

    # /metrics, then the health answer.
    app = create_app(settings, producer=AsyncProducer(settings=settings), api_token=TOKEN)
    with TestClient(app) as client:
        text = client.get("/metrics", headers=AUTH).text
    samples = {
        (s.name, s.labels.get("state")): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.labels.get("queue") == QUEUE
    }
    assert samples[("streamq_jobs", "failed")] == 1
    assert samples[("streamq_jobs", "dead")] == 1
    assert samples[("streamq_jobs_failed_total", None)] == 1  # jobs, not attempts
    assert samples[("streamq_jobs_dead_total", None)] == 1
    assert samples[("streamq_jobs_retried_total", None)] == 2
    assert samples[("streamq_attempts_failed_total", None)] == 3  # retried + failed
    help_of = {f.name: f.documentation for f in text_string_to_metric_families(text)}
    assert "retries are not counted" in help_of["streamq_jobs_failed"]

    queues = {"health": QUEUE}
    app = create_app(
        settings, producer=AsyncProducer(settings=settings), api_token=TOKEN, queues=queues
    )
    with TestClient(app) as client:
        health = client.get("/api/queue/health", headers=AUTH).json()
    assert health["queues"]["health"]["failed"] == 1
    assert health["queues"]["health"]["delayed"] == 1
