"""Chaos-suite plumbing: the ``chaos`` marker, per-scenario figures and the JSON report.

Every scenario takes the ``figures`` fixture (a dict) and fills it with what it measured:
jobs, faults injected, lost, duplicated, recovery times... When ``SQ_CHAOS_REPORT`` names a
file, one JSON line per scenario is appended to it after the scenario ran (passed or not):
``tests/chaos/report.py`` renders those lines into ``docs/reliability.md``.
"""

from __future__ import annotations

import inspect
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from streamq.server import EmbeddedServer
from tests.chaos._chaos_support import Fleet, Ledger

REPORT_ENV = "SQ_CHAOS_REPORT"
_FIGURES = pytest.StashKey[dict[str, Any]]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "chaos: fault-injection scenario (tests/chaos; `python -m tests.chaos.report`)"
    )


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> dict[str, Any]:
    """What the scenario measured; reported even when it fails."""
    out: dict[str, Any] = {}
    request.node.stash[_FIGURES] = out
    return out


def _outcome(report: pytest.TestReport) -> str:
    if hasattr(report, "wasxfail"):
        return "xfailed" if report.skipped else "xpassed"
    return report.outcome


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Iterator[None] | Any:
    report: pytest.TestReport = yield
    path = os.environ.get(REPORT_ENV)
    failed_setup = report.when == "setup" and not report.passed
    if path and (report.when == "call" or failed_setup):
        fn = getattr(item, "function", None)
        doc = inspect.getdoc(fn) if fn is not None else None
        line = {
            "nodeid": item.nodeid,
            "name": item.name,
            "doc": doc or "",
            "outcome": _outcome(report),
            "duration_s": round(report.duration, 2),
            "figures": item.stash.get(_FIGURES, {}),
            "xfail_reason": getattr(report, "wasxfail", ""),
            "longrepr": "" if report.passed else str(report.longreprtext)[-1500:],
        }
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(line, default=str) + "\n")
    return report


@pytest.fixture
def srv(server_factory: Callable[..., EmbeddedServer]) -> EmbeddedServer:
    """A fresh redis7 server (default profile) for one scenario."""
    return server_factory()


@pytest.fixture
def client(srv: EmbeddedServer) -> Iterator[redis.Redis]:
    """A plain client on ``srv`` for inspection (bytes replies)."""
    c = redis.Redis.from_url(srv.url)
    yield c
    c.close()


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
