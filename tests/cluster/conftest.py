"""Cluster-test plumbing: a session-wide :class:`~streamq.server.EmbeddedCluster` per server
kind that runs in cluster mode, and a factory for clusters a test may break.

* ``cluster_binary`` (session, ids ``redis7`` and ``valkey8``, narrowed by
  ``STREAMQ_TEST_SERVERS`` as in ``tests/conftest.py``): the executable of one kind, once
  it has been seen to start with ``cluster-enabled yes``. redis7 must; a valkey8 binary
  that refuses cluster mode skips only its own parameter, with the server's reason.
* ``cluster`` (session): 3 masters + 3 replicas, password-protected, shared by the tests
  that only read and write (each under keys of its own).
* ``cluster_factory``: fresh clusters (same kind, random password) for tests that kill
  nodes; every one is stopped at teardown.
* ``sentinel_binary`` (session, same ids) and ``sentinel_factory``: fresh
  :class:`~streamq.server.EmbeddedSentinel` setups (a primary, a replica, three
  sentinels; random password) of that kind, stopped at teardown.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from streamq.errors import ServerError
from streamq.server import EmbeddedCluster, EmbeddedSentinel, find_server_binary
from streamq.server.cluster import cluster_mode_refusal

_IDS = {"redis": "redis7", "valkey": "valkey8"}
_ALIASES = {"redis": "redis", "redis7": "redis", "valkey": "valkey", "valkey8": "valkey"}


def _kinds() -> list[str]:
    # tests/conftest.py rejects unknown names; here only the selection matters.
    raw = os.environ.get("STREAMQ_TEST_SERVERS", "")
    wanted = {_ALIASES.get(item.strip().lower()) for item in raw.split(",") if item.strip()}
    return [kind for kind in _IDS if not wanted or kind in wanted]


KINDS = _kinds()


@pytest.fixture(scope="session", params=KINDS, ids=[_IDS[k] for k in KINDS])
def cluster_binary(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The server binary of this parameter's kind, known to support cluster mode."""
    kind: str = request.param
    try:
        binary = find_server_binary(prefer=kind)
    except ServerError as exc:
        pytest.fail(f"no {kind} server binary for the {_IDS[kind]} cluster: {exc}", pytrace=False)
    refusal = cluster_mode_refusal(binary)
    if refusal is not None:
        if kind == "redis":
            pytest.fail(f"{binary} refuses cluster mode: {refusal}", pytrace=False)
        pytest.skip(f"{binary} does not run with cluster-enabled yes: {refusal}")
    return binary


@pytest.fixture(scope="session")
def cluster(
    cluster_binary: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[EmbeddedCluster]:
    """A password-protected 3-master, 3-replica cluster shared by the whole session."""
    embedded = EmbeddedCluster(
        tmp_path_factory.mktemp("cluster"),
        password=secrets.token_urlsafe(24),
        binary=cluster_binary,
    )
    embedded.start()
    try:
        yield embedded
    finally:
        embedded.stop()


@pytest.fixture
def cluster_factory(
    cluster_binary: Path, tmp_path: Path
) -> Iterator[Callable[..., EmbeddedCluster]]:
    """``make(**kwargs)`` -> a started :class:`EmbeddedCluster` of this kind (a random
    password and a directory under ``tmp_path`` unless given); all stopped at teardown."""
    made: list[EmbeddedCluster] = []

    def make(**kwargs: Any) -> EmbeddedCluster:
        kwargs.setdefault("password", secrets.token_urlsafe(24))
        kwargs.setdefault("binary", cluster_binary)
        base_dir = kwargs.pop("base_dir", tmp_path / f"cluster-{len(made)}")
        embedded = EmbeddedCluster(base_dir, **kwargs)
        made.append(embedded)
        return embedded.start()

    yield make
    for embedded in made:
        embedded.stop()


@pytest.fixture(scope="session", params=KINDS, ids=[_IDS[k] for k in KINDS])
def sentinel_binary(request: pytest.FixtureRequest) -> Path:
    """The server binary of this parameter's kind (it runs sentinels with --sentinel)."""
    kind: str = request.param
    try:
        return find_server_binary(prefer=kind)
    except ServerError as exc:
        pytest.fail(f"no {kind} server binary for Sentinel: {exc}", pytrace=False)


@pytest.fixture
def sentinel_factory(
    sentinel_binary: Path, tmp_path: Path
) -> Iterator[Callable[..., EmbeddedSentinel]]:
    """``make(**kwargs)`` -> a started :class:`EmbeddedSentinel` of this kind (a random
    password and a directory under ``tmp_path`` unless given); all stopped at teardown."""
    made: list[EmbeddedSentinel] = []

    def make(**kwargs: Any) -> EmbeddedSentinel:
        kwargs.setdefault("password", secrets.token_urlsafe(24))
        kwargs.setdefault("binary", sentinel_binary)
        base_dir = kwargs.pop("base_dir", tmp_path / f"sentinel-{len(made)}")
        setup = EmbeddedSentinel(base_dir, **kwargs)
        made.append(setup)
        return setup.start()

    yield make
    for setup in made:
        setup.stop()
