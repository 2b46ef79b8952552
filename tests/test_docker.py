"""The optional testcontainers path: the core round trip against a Redis container.

Used only when asked for (``STREAMQ_TEST_DOCKER=1``) on a machine with a Docker engine and
the ``docker`` extra (testcontainers); everywhere else it is skipped with the reason. The
development and CI machines have no Docker engine: the rest of the suite starts real
servers from binaries instead (``streamq.server``)."""

from __future__ import annotations

import asyncio
import os
import shutil

import pytest

import streamq
from streamq.worker import App, Worker

pytestmark = pytest.mark.docker

if os.environ.get("STREAMQ_TEST_DOCKER") != "1":
    pytest.skip(
        "set STREAMQ_TEST_DOCKER=1 to run against a Docker container", allow_module_level=True
    )
if shutil.which("docker") is None:
    pytest.skip("no docker client on PATH", allow_module_level=True)
redis_module = pytest.importorskip("testcontainers.redis", reason="pip install '.[docker]'")


def test_enqueue_and_process_against_a_redis_container(queue_name: str) -> None:
    app = App()

    @app.handler("hello")
    async def hello(job: streamq.Job) -> str:
        return f"hello {job.data['name']}"

    with redis_module.RedisContainer("redis:7.2") as container:
        url = f"redis://{container.get_container_host_ip()}:{container.get_exposed_port(6379)}/0"
        settings = streamq.Settings(redis=streamq.RedisSettings(url=url))
        with streamq.Producer(settings=settings) as p:
            job = p.enqueue(queue_name, "hello", {"name": "docker"})
            asyncio.run(Worker(app, [queue_name], settings=settings).run(burst=True))
            done = p.get_job(queue_name, job.job_id)
            assert done is not None and done.result == "hello docker"
