"""Chaos-suite plumbing: the ``chaos`` marker and the fixtures the scenarios share.

Every scenario takes the ``figures`` fixture (a dict) and fills it with what it measured:
jobs, faults injected, lost, duplicated, recovery times... The fixture and the hook that
writes one JSON line per scenario to ``SQ_CHAOS_REPORT`` live in ``tests/_report_plugin.py``
(loaded by ``tests/conftest.py``), shared with the durability and security tests;
``tests/chaos/report.py`` renders the lines into ``docs/reliability.md``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.chaos._chaos_support import Fleet, Ledger


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "chaos: fault-injection scenario (tests/chaos; `python -m tests.chaos.report`)"
    )


# ``srv`` and ``client`` (a fresh redis7 server and a client on it) come from tests/conftest.py.


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    """The scenario's run ledger, in files outside the Redis under test."""
    led = Ledger(tmp_path / "ledger")
    yield led
    led.close()


@pytest.fixture
def fleet_factory(tmp_path: Path, ledger: Ledger) -> Iterator[Callable[..., Fleet]]:
    """``make(url, queue, **kwargs)`` -> a :class:`Fleet`; every process is reaped at the end."""
    made: list[Fleet] = []

    def make(url: str, queue: str, **kwargs: Any) -> Fleet:
        logs = tmp_path / f"fleet-{len(made)}"
        logs.mkdir()
        fleet = Fleet(url, queue, ledger, logs, **kwargs)
        made.append(fleet)
        return fleet

    yield make
    for fleet in made:
        fleet.close()


# The cluster and Sentinel factories of tests/cluster (ids redis7 and valkey8, narrowed by
# STREAMQ_TEST_SERVERS), for the failover scenarios in test_chaos_failover.py.
from tests.cluster.conftest import (  # noqa: E402, F401
    cluster_binary,
    cluster_factory,
    sentinel_binary,
    sentinel_factory,
)
