"""What the dashboard and ``/metrics`` read besides :class:`~streamq.admin.AsyncAdmin`:
per-minute throughput, counters and histograms of every queue, finding a job by id in any
queue, and one page of schedules.

The operations live in :mod:`streamq.protocol.metrics`, :mod:`streamq.protocol.queues`
and :mod:`streamq.protocol.schedules` (the key contract of the metrics is described
there); :class:`WebAdmin` runs them on the asyncio driver of ``AsyncAdmin``. The result
types live in :mod:`streamq.results`; the names below stay importable from here.
"""

from __future__ import annotations

import re

from streamq.admin import AsyncAdmin
from streamq.protocol.dlq import delete_dead
from streamq.protocol.metrics import (
    COUNTER_FIELDS,
    THROUGHPUT_MINUTES,
    fleet_metrics,
    parse_histogram,
    read_counters,
    read_histograms,
    throughput,
)
from streamq.protocol.schedules import Schedule, schedules_page
from streamq.results import Counters, Histogram, MinuteCount, QueueMetrics

__all__ = [
    "COUNTER_FIELDS",
    "DEAD_ID_RE",
    "THROUGHPUT_MINUTES",
    "Counters",
    "Histogram",
    "MinuteCount",
    "QueueMetrics",
    "WebAdmin",
    "delete_dead",
    "fleet_metrics",
    "parse_histogram",
    "read_counters",
    "read_histograms",
    "schedules_page",
    "throughput",
]

#: What a dead-letter entry id looks like (a stream entry id).
DEAD_ID_RE = re.compile(r"^\d{1,20}-\d{1,20}$")


class WebAdmin(AsyncAdmin):
    """:class:`~streamq.admin.AsyncAdmin` plus what the web app alone needs."""

    async def throughput(self, queue: str, minutes: int = THROUGHPUT_MINUTES) -> list[MinuteCount]:
        """Per-minute completed/failed counts of ``queue`` (all its partitions), oldest
        first."""
        return await self._driver.run(
            self._routed(queue, lambda home, meta: throughput(home, minutes, meta=meta))
        )

    async def fleet_metrics(self) -> list[QueueMetrics]:
        """:class:`QueueMetrics` of every queue found under the prefix."""
        return await self._driver.run(fleet_metrics(self.settings.prefix))

    async def schedules_page(
        self, queue: str, offset: int, limit: int
    ) -> tuple[list[Schedule], int]:
        """One page of the schedules of ``queue`` and their number (see
        :func:`~streamq.protocol.schedules.schedules_page`)."""
        return await self._driver.run(schedules_page(self.keys(queue), offset, limit))
