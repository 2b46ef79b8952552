"""streamq reaches a primary through Sentinel by settings alone (``redis+sentinel://``), and
keeps working when the sentinels fail the primary over to its replica: the embedded setup
forms with the sentinels agreeing, a producer (sync and asyncio) enqueues through it, its
first command after a failover reaches the new primary, and the jobs written before are
there. A sentinel password is an option of the URL; without it the error says so."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis

import streamq
from streamq import RedisSettings
from streamq.admin import Admin
from streamq.errors import AuthenticationFailedError
from streamq.server import EmbeddedSentinel

Factory = Callable[..., EmbeddedSentinel]


def _pids_working_in(directory: Path) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cwd = Path(os.readlink(entry / "cwd"))
            except OSError:
                continue
            if cwd == directory or directory in cwd.parents:
                found.append(int(entry.name))
    return found


def test_the_sentinels_agree_and_producers_and_admin_reach_the_primary_through_them(
    sentinel_factory: Factory, queue_name: str, figures: dict[str, Any]
) -> None:
    setup = sentinel_factory(sentinel_password=secrets.token_urlsafe(12))
    figures["formation_seconds"] = round(setup.formation_seconds or 0, 2)
    primary, replica = setup.servers
    assert setup.primary() is primary
    settings = RedisSettings.from_env({"REDIS_URL": setup.url})
    assert settings.mode == "sentinel"
    assert settings.endpoints().hosts == tuple(setup.sentinel_addresses)
    assert setup.password not in settings.describe()

    with streamq.Producer(setup.url) as producer:
        job_id = producer.enqueue(queue_name, "noop", {"via": "sentinel"}).job_id
        job = producer.get_job(queue_name, job_id)
        assert job is not None and job.data == {"via": "sentinel"}

    async def enqueue_async() -> bool:
        async with streamq.AsyncProducer(setup.url) as producer:
            return (await producer.enqueue(queue_name, "noop", {})).created

    assert asyncio.run(enqueue_async())
    with Admin(setup.url) as admin:
        (info,) = admin.status([queue_name])
        assert info.status.waiting == 2
    # Written on the primary, copied to the replica.
    with redis.Redis.from_url(replica.url) as direct:
        assert direct.execute_command("ROLE")[0] in (b"slave", b"replica")

    without = setup.url.partition("?")[0]  # no sentinel_password
    with pytest.raises(AuthenticationFailedError, match="sentinel_password"):
        streamq.Producer(without, retry_attempts=0).enqueue(queue_name, "noop", {})

    base_dir = setup.base_dir
    assert len(_pids_working_in(base_dir)) == 5
    setup.stop()
    assert _pids_working_in(base_dir) == []


def test_a_producer_keeps_working_after_sentinel_fails_the_primary_over(
    sentinel_factory: Factory, queue_name: str, figures: dict[str, Any]
) -> None:
    setup = sentinel_factory()
    old = setup.primary()
    with streamq.Producer(setup.url) as producer:
        before = producer.enqueue(queue_name, "noop", {"n": 1}).job_id
        with redis.Redis.from_url(old.url) as direct:
            assert direct.execute_command("WAIT", 1, 5000) == 1  # the replica has it

        setup.kill_primary()
        new = setup.wait_failover(old.port, timeout=setup.down_after_ms / 1000 + 15)
        assert new is not old and new.running

        # The first command after the failover: the producer's connection to the dead
        # primary fails, and its retry asks the sentinels for the new one.
        after = producer.enqueue(queue_name, "noop", {"n": 2}).job_id
        found = [producer.get_job(queue_name, i) for i in (before, after)]
        assert [j.data if j else None for j in found] == [{"n": 1}, {"n": 2}]
    with redis.Redis.from_url(new.url) as direct:
        assert direct.execute_command("ROLE")[0] == b"master"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"replicas": 0}, "replicas must be at least 1"),
        ({"sentinels": 0}, "sentinels must be at least 1"),
        ({"service": "my service"}, "service must be a non-empty name"),
        ({"password": ""}, "passwords must be non-empty"),
        ({"down_after_ms": 10}, "down_after_ms must be at least 100"),
        ({"timeout": 0}, "timeout must be positive"),
    ],
)
def test_bad_sentinel_settings_are_refused_by_name(
    kwargs: dict[str, Any], message: str, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match=message):
        EmbeddedSentinel(tmp_path, **kwargs)
