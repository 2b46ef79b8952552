"""``GET /metrics``: the whole fleet in Prometheus text format, read from Redis at scrape time.

One scrape of the web app sees every queue under the prefix and every worker, whichever
process did the work: the workers keep their counters in Redis (``sq:{Q}:stats``,
``sq:{Q}:hist``, see :mod:`streamq.web.fleet`), and :class:`FleetCollector` turns one
snapshot of them into metric families.

==========================================  =========  =====================================
metric                                      type       meaning
==========================================  =========  =====================================
``streamq_jobs{queue,state}``               gauge      waiting, active, delayed, completed,
                                                       failed (retained records), dead (DLQ)
``streamq_consumer_lag{queue}``             gauge      entries not yet delivered to a worker
``streamq_oldest_waiting_age_seconds``      gauge      age of the oldest waiting job (0: none)
``streamq_queue_paused{queue}``             gauge      1 while paused
``streamq_workers{queue}``                  gauge      live workers (recent heartbeat)
``streamq_jobs_held{queue}``                gauge      flow jobs waiting on their key's turn
                                                       or a limit (held)
``streamq_keys_rate_limited{queue}``        gauge      keys waiting for a rate window or a
                                                       handler's key-wide back-off
``streamq_keys_at_concurrency{queue}``      gauge      keys waiting for a concurrency slot
``streamq_flow_jobs_running{queue}``        gauge      flow jobs admitted and not finished
``streamq_jobs_rate_limited_total{queue}``  counter    times a key was parked on a limit
                                                       (at a take) or a job by ``RateLimited``
``streamq_jobs_completed_total{queue}``     counter    jobs completed
``streamq_jobs_failed_total{queue}``        counter    jobs that ended failed (= to the DLQ)
``streamq_jobs_retried_total{queue}``       counter    retries scheduled
``streamq_jobs_dead_total{queue}``          counter    jobs moved to the DLQ (= failed_total)
``streamq_attempts_failed_total{queue}``    counter    failed attempts (retried + failed)
``streamq_jobs_reclaimed_total{queue}``     counter    entries taken over from a stalled worker
``streamq_job_duration_seconds{queue}``     histogram  handler run time
``streamq_delayed_lateness_seconds{queue}`` histogram  promotion time minus due time
``streamq_queue_partitions{queue}``          gauge      partitions of a partitioned queue
``streamq_partition_jobs``                  gauge      ``{queue,partition,state}``: the states
                                                       of ``streamq_jobs`` per partition of a
                                                       partitioned queue (0 = home; ``p/n``:
                                                       partition p of an earlier count n)
``streamq_redis_up``                        gauge      1 if this scrape could read Redis
``streamq_scrape_duration_seconds``         gauge      time spent reading Redis
==========================================  =========  =====================================

A partitioned queue (see :mod:`streamq.protocol.partitions`) is one ``queue`` in every
family, its counts, counters and histograms added up over its partitions; only the two
``partition`` families break it down (at most 6 series per partition, nothing for an
unpartitioned queue).

*Failed* has one meaning here as in ``streamq status`` and :class:`QueueStatus`: a job that
ended in the failed state (and so got a dead-letter entry). A failed attempt that will run
again is a *retry*. ``streamq_jobs_failed_total`` counted failed attempts in earlier
releases; that number is ``streamq_attempts_failed_total`` now (``streamq_jobs_dead_total``
stays, with the same value as ``streamq_jobs_failed_total``, for dashboards built on it).

The route needs the bearer token like the API. Prometheus::

    scrape_configs:
      - job_name: streamq
        authorization:
          type: Bearer
          credentials_file: /etc/prometheus/streamq_token   # holds STREAMQ_API_TOKEN
        static_configs:
          - targets: ["streamq-web:8000"]

When Redis cannot be read the answer is still 200, with ``streamq_redis_up 0`` and no queue
metrics, so an alert can tell "Redis down" from "web app down" (``up == 0``).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Iterator, Sequence

from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from streamq.results import Histogram, QueueMetrics
from streamq.web.auth import require_token
from streamq.web.errors import safe_error
from streamq.web.fleet import WebAdmin

__all__ = ["CONTENT_TYPE", "METRICS_ROUTES", "FleetCollector", "render"]

log = logging.getLogger("streamq.web")

#: The Prometheus text format that :func:`prometheus_client.generate_latest` writes.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: Seconds a scrape waits for Redis before answering ``streamq_redis_up 0`` (below
#: Prometheus' default scrape timeout of 10 s, so the answer arrives in time).
SCRAPE_TIMEOUT_S = 8.0

JOB_STATES = ("waiting", "active", "delayed", "completed", "failed", "dead")
#: (metric family, field of :class:`Counters`, help). The ``failed`` field of the stats hash
#: counts failed *attempts*; a job that ended failed is counted by its ``dead`` field.
_COUNTERS = (
    ("streamq_jobs_completed", "completed", "Jobs completed."),
    (
        "streamq_jobs_failed",
        "dead",
        "Jobs that ended failed (retries exhausted, timed out, stalled or not runnable) "
        "and so moved to the dead-letter queue; retries are not counted.",
    ),
    ("streamq_jobs_retried", "retried", "Retries scheduled after a failed attempt."),
    (
        "streamq_jobs_dead",
        "dead",
        "Jobs moved to the dead-letter queue (the same count as streamq_jobs_failed_total).",
    ),
    (
        "streamq_attempts_failed",
        "failed",
        "Failed attempts, retried or not (streamq_jobs_retried_total + streamq_jobs_failed_total).",
    ),
    (
        "streamq_jobs_reclaimed",
        "reclaimed",
        "Running entries taken over from a stalled or crashed worker.",
    ),
)


def _buckets(h: Histogram) -> list[tuple[str, float]]:
    """Cumulative buckets with bounds in seconds, ``+Inf`` last."""
    return [("+Inf" if math.isinf(le) else repr(le / 1000), float(n)) for le, n in h.buckets]


class FleetCollector:
    """A Prometheus collector over one snapshot of the fleet (read at scrape time).

    ``queues`` come from :meth:`WebAdmin.fleet_metrics`; ``redis_up`` False means the
    snapshot could not be read (the queue families are then empty)."""

    def __init__(
        self, queues: Sequence[QueueMetrics], *, redis_up: bool = True, scrape_s: float = 0.0
    ) -> None:
        self.queues = list(queues)
        self.redis_up = redis_up
        self.scrape_s = scrape_s

    def collect(self) -> Iterator[Metric]:
        """The metric families (prometheus_client's ``Collector`` protocol)."""
        up = GaugeMetricFamily("streamq_redis_up", "1 if this scrape could read Redis.")
        up.add_metric([], 1.0 if self.redis_up else 0.0)
        yield up
        took = GaugeMetricFamily(
            "streamq_scrape_duration_seconds", "Time this scrape spent reading Redis."
        )
        took.add_metric([], self.scrape_s)
        yield took
        yield from self._gauges()
        yield from self._partitions()
        yield from self._counters()
        yield from self._histograms()

    def _gauges(self) -> Iterator[Metric]:
        jobs = GaugeMetricFamily(
            "streamq_jobs",
            "Jobs by state: waiting, active, delayed; completed and failed (jobs that ended "
            "failed) are retained records, dead the dead-letter entries now.",
            labels=["queue", "state"],
        )
        lag = GaugeMetricFamily(
            "streamq_consumer_lag",
            "Entries of the stream not yet delivered to the consumer group.",
            labels=["queue"],
        )
        age = GaugeMetricFamily(
            "streamq_oldest_waiting_age_seconds",
            "Age of the oldest waiting job by the Redis clock (0 when none waits).",
            labels=["queue"],
        )
        paused = GaugeMetricFamily(
            "streamq_queue_paused", "1 while the queue is paused.", labels=["queue"]
        )
        live = GaugeMetricFamily(
            "streamq_workers", "Live workers (recent heartbeat) of the queue.", labels=["queue"]
        )
        stuck = GaugeMetricFamily(
            "streamq_stuck_handlers",
            "Sync handlers of live workers still running past their job's time limit; each "
            "holds a worker slot until it returns.",
            labels=["queue"],
        )
        held = GaugeMetricFamily(
            "streamq_jobs_held",
            "Flow jobs (with a key or a priority) waiting for their key's turn, a rate "
            "window, a concurrency slot or a RateLimited back-off.",
            labels=["queue"],
        )
        limited = GaugeMetricFamily(
            "streamq_keys_rate_limited",
            "Keys waiting for a rate window or a handler's key-wide RateLimited back-off.",
            labels=["queue"],
        )
        at_concurrency = GaugeMetricFamily(
            "streamq_keys_at_concurrency",
            "Keys waiting for one of their running jobs to finish (concurrency limit).",
            labels=["queue"],
        )
        running = GaugeMetricFamily(
            "streamq_flow_jobs_running",
            "Flow jobs admitted to workers and not finished.",
            labels=["queue"],
        )
        for q in self.queues:
            info, name = q.info, q.info.queue
            held.add_metric([name], float(info.flow.held))
            limited.add_metric([name], float(info.flow.keys_rate_limited))
            at_concurrency.add_metric([name], float(info.flow.keys_at_concurrency))
            running.add_metric([name], float(info.flow.running))
            stuck.add_metric([name], float(info.stuck_handlers))
            counts = info.as_dict()
            for state in JOB_STATES:
                jobs.add_metric([name, state], float(counts[state]))
            lag.add_metric([name], float(info.lag))
            age.add_metric([name], (info.oldest_waiting_age_ms or 0) / 1000)
            paused.add_metric([name], 1.0 if info.paused else 0.0)
            live.add_metric([name], float(info.workers))
        yield from (jobs, lag, age, paused, live, stuck)
        yield from (held, limited, at_concurrency, running)

    def _partitions(self) -> Iterator[Metric]:
        """The per-partition breakdown of partitioned queues (nothing at all, not even the
        families, when no queue is partitioned)."""
        parted = [q.info for q in self.queues if q.info.partitions]
        if not parted:
            return
        count = GaugeMetricFamily(
            "streamq_queue_partitions",
            "Partitions new jobs of the queue are spread over (partitioned queues only).",
            labels=["queue"],
        )
        jobs = GaugeMetricFamily(
            "streamq_partition_jobs",
            "Jobs by state in each partition of a partitioned queue (partition 0 is home; "
            "p/n is partition p of an earlier count n); they add up to streamq_jobs.",
            labels=["queue", "partition", "state"],
        )
        for info in parted:
            count.add_metric([info.queue], float(info.partition_count))
            for label, part in zip(info.labels(), info.partitions, strict=True):
                for state in JOB_STATES:
                    jobs.add_metric([info.queue, label, state], float(getattr(part, state)))
        yield count
        yield jobs

    def _counters(self) -> Iterator[Metric]:
        for metric, field, doc in _COUNTERS:
            family = CounterMetricFamily(metric, doc, labels=["queue"])
            for q in self.queues:
                family.add_metric([q.info.queue], float(getattr(q.counters, field)))
            yield family
        held_back = CounterMetricFamily(
            "streamq_jobs_rate_limited",
            "Times flow control parked a key on its rate or concurrency limit (once per "
            "take that found it over) or a handler raised RateLimited; the jobs waited, no "
            "attempt was used.",
            labels=["queue"],
        )
        for q in self.queues:
            held_back.add_metric([q.info.queue], float(q.info.flow.rate_limited_total))
        yield held_back

    def _histograms(self) -> Iterator[Metric]:
        duration = HistogramMetricFamily(
            "streamq_job_duration_seconds", "Handler run time of finished jobs.", labels=["queue"]
        )
        lateness = HistogramMetricFamily(
            "streamq_delayed_lateness_seconds",
            "How late delayed jobs and retries became ready (promotion minus due time, "
            "Redis clock).",
            labels=["queue"],
        )
        for q in self.queues:
            name = q.info.queue
            duration.add_metric([name], _buckets(q.duration), q.duration.sum_ms / 1000)
            lateness.add_metric([name], _buckets(q.lateness), q.lateness.sum_ms / 1000)
        yield duration
        yield lateness


def render(collector: FleetCollector) -> bytes:
    """The text exposition of one collector."""
    return generate_latest(collector)


async def metrics(request: Request) -> Response:
    """``GET /metrics``: read the fleet from Redis now and answer in Prometheus format."""
    admin: WebAdmin = request.app.state.admin
    started = time.perf_counter()
    try:
        queues = await asyncio.wait_for(admin.fleet_metrics(), timeout=SCRAPE_TIMEOUT_S)
        up = True
    except Exception as exc:  # a scrape must answer, with streamq_redis_up 0
        log.warning("metrics: cannot read Redis: %s", safe_error(exc, request.app.state.secrets))
        queues, up = [], False
    collector = FleetCollector(queues, redis_up=up, scrape_s=time.perf_counter() - started)
    return Response(
        render(collector), media_type=CONTENT_TYPE, headers={"Cache-Control": "no-store"}
    )


#: The metrics route, mounted by :func:`streamq.web.create_app`.
METRICS_ROUTES: list[BaseRoute] = [Route("/metrics", require_token(metrics), methods=["GET"])]
