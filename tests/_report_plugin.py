"""Per-test figures and their JSON report, shared by the chaos suite and the durability /
security tests (loaded by ``tests/conftest.py``).

A test takes the ``figures`` fixture (a dict) and fills it with what it measured. When
``SQ_CHAOS_REPORT`` names a file, one JSON line per test is appended to it after the test
ran (passed, failed or skipped in setup): ``tests/chaos/report.py`` renders those lines
into ``docs/reliability.md``. Unset (a normal ``pytest`` run), nothing is written.
"""

from __future__ import annotations

import inspect
import json
import os
from collections.abc import Iterator
from typing import Any

import pytest

REPORT_ENV = "SQ_CHAOS_REPORT"
_FIGURES = pytest.StashKey[dict[str, Any]]()


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> dict[str, Any]:
    """What the test measured; reported even when it fails."""
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
