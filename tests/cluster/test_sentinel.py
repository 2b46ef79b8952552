"""streamq reaches a primary through Sentinel by settings alone (``redis+sentinel://``), and
keeps working when the sentinels fail the primary over to its replica: the embedded setup
forms with the sentinels agreeing, a producer (sync and asyncio) enqueues through it, its
first command after a failover reaches the new primary, and the jobs written before are
there. A sentinel password is an option of the URL; without it the error says so."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis

import streamq
from streamq import RedisSettings, connection
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


def test_producers_and_admin_reach_the_primary_through_the_sentinels_and_follow_a_failover(
    sentinel_factory: Factory, queue_name: str, figures: dict[str, Any]
) -> None:
    setup = sentinel_factory(sentinel_password=secrets.token_urlsafe(12))
    figures["formation_seconds"] = round(setup.formation_seconds or 0, 2)
    old, replica = setup.servers
    assert setup.primary() is old
    settings = RedisSettings.from_env({"REDIS_URL": setup.url})
    assert settings.mode == "sentinel"
    assert settings.endpoints().hosts == tuple(setup.sentinel_addresses)
    assert setup.password not in settings.describe()
    without = setup.url.partition("?")[0]  # no sentinel_password
    with pytest.raises(AuthenticationFailedError, match="sentinel_password"):
        streamq.Producer(without, retry_attempts=0).enqueue(queue_name, "noop", {})

    async def scenario() -> None:
        async with streamq.AsyncProducer(setup.url) as aproducer:
            with streamq.Producer(setup.url) as producer, Admin(setup.url) as admin:
                before = [
                    producer.enqueue(queue_name, "noop", {"n": 1}).job_id,
                    (await aproducer.enqueue(queue_name, "noop", {"n": 2})).job_id,
                ]
                assert admin.status([queue_name])[0].status.waiting == 2
                with redis.Redis.from_url(old.url) as direct:
                    assert direct.execute_command("WAIT", 1, 5000) == 1  # the replica has both

                setup.kill_primary()
                new = setup.wait_failover(old.port, timeout=setup.down_after_ms / 1000 + 15)
                assert new is replica and new.running

                # The first command after the failover: each client's connection to the dead
                # primary fails, and its retry asks the sentinels for the new one.
                after = [
                    producer.enqueue(queue_name, "noop", {"n": 3}).job_id,
                    (await aproducer.enqueue(queue_name, "noop", {"n": 4})).job_id,
                ]
                found = [producer.get_job(queue_name, i) for i in before + after]
                assert [j.data if j else None for j in found] == [{"n": n} for n in (1, 2, 3, 4)]
                assert admin.status([queue_name])[0].status.waiting == 4

    asyncio.run(scenario())
    with redis.Redis.from_url(replica.url) as direct:
        assert direct.execute_command("ROLE")[0] == b"master"

    base_dir = setup.base_dir
    assert len(_pids_working_in(base_dir)) == 4  # the killed primary is gone
    setup.stop()
    assert _pids_working_in(base_dir) == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"replicas": 0}, "replicas must be at least 1"),
        ({"sentinels": 0}, "sentinels must be at least 1"),
        ({"service": "my service"}, "service must be a non-empty name"),
        ({"password": ""}, "password must be a non-empty"),
        ({"sentinel_password": ""}, "sentinel_password must be a non-empty"),
        ({"down_after_ms": 10}, "down_after_ms must be at least 100"),
        ({"timeout": 0}, "timeout must be positive"),
    ],
)
def test_bad_sentinel_settings_are_refused_by_name(
    kwargs: dict[str, Any], message: str, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match=message):
        EmbeddedSentinel(tmp_path, **kwargs)


def test_a_client_leaves_a_primary_that_was_failed_over_while_it_stalled(
    sentinel_factory: Factory, figures: dict[str, Any]
) -> None:
    """A primary frozen past down-after-milliseconds is failed over; once it runs again it
    is still a master to the connections it kept (the sentinels demote it 8 s or more
    later), so a client would go on working there, on writes that the demotion throws
    away. :func:`streamq.connection.follow_primary` (a worker calls it every second) asks
    the sentinels and closes every connection to the old one, even one in use."""
    setup = sentinel_factory()
    old, replica = setup.servers
    settings = RedisSettings.from_env({"REDIS_URL": setup.url})

    def ours(direct: redis.Redis, cmd: str | None = None) -> int:
        """The client's connections on the old primary (every normal one but this probe's
        own and the sentinels', named ``sentinel-...``), those running ``cmd`` if given."""
        me = direct.client_id()
        return sum(
            1
            for c in direct.client_list(_type="normal")
            if int(c["id"]) != me
            and not c.get("name", "").startswith("sentinel-")
            and (cmd is None or c.get("cmd") == cmd)
        )

    async def until(predicate: Callable[[], bool], what: str) -> None:
        """Poll ``predicate`` every 20 ms without blocking the event loop (5 s at most)."""
        for _ in range(250):
            if predicate():
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"timed out waiting for {what}")

    async def scenario() -> None:
        client = connection.async_client(settings)
        try:
            port = int((await client.info("server"))["tcp_port"])
            assert port == old.port
            assert await connection.follow_primary(client) is None  # nothing moved
            assert old.pid is not None
            os.kill(old.pid, signal.SIGSTOP)
            try:
                new = setup.wait_failover(old.port, timeout=setup.down_after_ms / 1000 + 15)
            finally:
                os.kill(old.pid, signal.SIGCONT)
            assert new is replica
            # What redis-py alone does: the open connection still reaches the old node,
            # which still says it is a master.
            assert int((await client.info("server"))["tcp_port"]) == old.port
            with redis.Redis.from_url(old.url) as direct:
                assert direct.execute_command("ROLE")[0] == b"master"
                held = asyncio.ensure_future(client.blpop(["never-pushed"], timeout=3))
                # The pool hands its open connection (to the old node) to the BLPOP.
                await until(lambda: ours(direct, "blpop") == 1, "a BLPOP held on the old node")
                moved = await connection.follow_primary(client)
                assert moved == (new.host, new.port)
                await until(lambda: ours(direct) == 0, "the old primary losing them")
            assert int((await client.info("server"))["tcp_port"]) == new.port
            # The cut BLPOP is retried on the new primary (where it times out: None).
            assert await held is None
        finally:
            await client.aclose()

    asyncio.run(scenario())
    figures["primary_followed"] = True
