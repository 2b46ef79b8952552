"""Chaos scenarios where the Redis topology changes under load: a Cluster master SIGKILLed
(its replica promoted), the queue's slot migrated to another master, and a Sentinel
failover of the primary. Each ends with the exact ledger, read from the surviving nodes.

A failover may roll back what the dead node had not replicated yet: an enqueue (counted as
*lost* when it was acknowledged without ``durable_replicas``), a completion (the job runs
again: a repeat explained by the failover, like a run in a killed worker), or a delivery.
Durable enqueues (``durable_replicas=1``: WAITAOF in the same round trip) need WAITAOF,
which Valkey 8 has and Redis 7.0 (the redis7 kind here) has not: those scenarios skip
redis7 and say why.
"""

from __future__ import annotations

import random
import re
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.cluster import RedisCluster
from redis.crc import key_slot

import streamq
from streamq.admin import Admin
from streamq.config import RedisSettings
from streamq.connection import sync_client
from streamq.errors import StreamQError
from streamq.protocol.codec import new_job_id
from streamq.protocol.keys import QueueKeys
from streamq.protocol.partitions import PartitionMeta, partition_keys
from streamq.server import EmbeddedCluster, EmbeddedNode, EmbeddedSentinel, EmbeddedServer
from tests._support import wait_until
from tests.chaos._chaos_support import (
    Fleet,
    Ledger,
    LedgerCheck,
    settle,
    states,
    verify_ledger,
)

# These ran only in the report run (make chaos) after a worker died on uvloop's "handler
# is closed" on a fresh CI host (fixed in _driver.py; regression test in
# tests/cluster/test_cluster_errors.py). Back in make test: the whole file (~65 s on 2
# cores) passed 8 runs in a row, each scenario 8 of 8, in its present form.
pytestmark = [pytest.mark.chaos]

NODE_TIMEOUT_MS = 1000  # cluster-node-timeout of the slot-migration scenario's cluster
#: cluster-node-timeout of the master-kill scenarios. Their bound (issue #12) is this + 2 s,
#: and a replica is promoted about this + up to half of it (the failure reports' gossip)
#: + 0.5-1 s (Redis' election delay) after the kill: what is left for the clients is
#: about 1 s - half the timeout, so a longer timeout leaves less (at 2000 ms, none).
#: Measured on 2 cores at 1000 ms: promoted 2.1-2.5 s after the kill (the cluster healthy
#: again up to 2.9 s), the bound missed once in 12 runs; at 500 ms, 32 runs: promoted
#: 1.3-2.0 s, the workers completing again 0.01-0.47 s later, gaps 1.5-2.4 s.
KILL_NODE_TIMEOUT_MS = 500
RESUME_MARGIN_S = 2.0  # workers consume again within the failover's own time + this
#: Issue #12's bound for a Cluster master kill: consuming again within
#: cluster-node-timeout + 2 s of the kill.
RECOVERY_LIMIT_S = KILL_NODE_TIMEOUT_MS / 1000 + RESUME_MARGIN_S
PARTITIONS = 6  # the master-kill scenarios' queue: 2 partitions on each of 3 masters
LOAD_S = (1.5, 2.5)  # load before the fault
AFTER_S = 2.0  # load after the topology has settled
BACKLOG = 3000  # ~6 s of work for two workers of concurrency 8
WORKER_ENV = {"STREAMQ_LEASE": "3000", "STREAMQ_LOG_LEVEL": "warning"}
NO_WAITAOF = "durable enqueues need WAITAOF: Redis 7.0 (the redis7 kind) has none, Valkey 8 has"


class Feeder(threading.Thread):
    """Enqueues batches of short jobs until stopped (bounded in jobs and time). An id enters
    the ledger only after its enqueue returned; each accepted batch's time is kept, so a
    lost job can be placed relative to the fault. Refused batches (any streamq error: the
    node is gone, WAITAOF not confirmed) are kept apart: nobody was told they were taken."""

    def __init__(self, url: str, queue: str, ledger: Ledger, **producer: Any) -> None:
        super().__init__(daemon=True)
        self.url, self.queue, self.ledger, self.producer = url, queue, ledger, producer
        self.batch, self.period = 10, 0.02
        self.accepted_at: dict[str, float] = {}
        self.refused_ids: list[str] = []
        self.refusals: Counter[str] = Counter()
        self.refused_at: list[float] = []
        self.max_jobs, self.max_s = 30_000, 90.0
        self.error: BaseException | None = None
        self._stop_event = threading.Event()

    def run(self) -> None:
        rng = random.Random()
        deadline = time.monotonic() + self.max_s
        try:
            with streamq.Producer(self.url, retry_attempts=1, **self.producer) as producer:
                while not self._stop_event.is_set() and time.monotonic() < deadline:
                    if len(self.ledger.accepted) >= self.max_jobs:
                        break
                    specs = [
                        streamq.JobSpec("work", {"ms": rng.randint(0, 5)}, job_id=new_job_id())
                        for _ in range(self.batch)
                    ]
                    try:
                        res = producer.enqueue_many(self.queue, specs)
                    except StreamQError as exc:
                        self.refusals[type(exc).__name__] += 1
                        self.refused_at.append(time.time())
                        self.refused_ids += [s.job_id for s in specs if s.job_id]
                        self._stop_event.wait(0.05)
                        continue
                    now = time.time()
                    self.accepted_at.update((r.job_id, now) for r in res)
                    self.ledger.accept(r.job_id for r in res)
                    self._stop_event.wait(self.period)
        except BaseException as exc:  # reported by stop()
            self.error = exc

    def stop(self) -> None:
        self._stop_event.set()
        self.join(30)
        assert not self.is_alive(), "the feeder did not stop"
        if self.error is not None:
            raise AssertionError(f"the feeder died: {self.error!r}") from self.error


def _backlog(url: str, queue: str, ledger: Ledger, **producer: Any) -> dict[str, float]:
    """Jobs of 30 ms enqueued before the workers start: they keep the workers busy through
    the fault, so a pause in completions is the fault's, not an empty queue's."""
    accepted_at: dict[str, float] = {}
    with streamq.Producer(url, **producer) as p:
        for _ in range(BACKLOG // 500):
            specs = [streamq.JobSpec("work", {"ms": 30}) for _ in range(500)]
            ids = [r.job_id for r in p.enqueue_many(queue, specs)]
            accepted_at.update(dict.fromkeys(ids, time.time()))
            ledger.accept(ids)
    return accepted_at


@contextmanager
def _feeding(url: str, queue: str, ledger: Ledger, **producer: Any) -> Iterator[Feeder]:
    feeder = Feeder(url, queue, ledger, **producer)
    feeder.start()
    try:
        yield feeder
    finally:
        feeder.stop()


def _binary_kind(binary: Path) -> tuple[str, tuple[int, int]]:
    """``("redis" | "valkey", (major, minor))`` from ``binary --version``."""
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
    m = re.search(r"v=(\d+)\.(\d+)", out.stdout)
    version = (int(m[1]), int(m[2])) if m else (0, 0)
    return ("valkey" if "valkey" in out.stdout.lower() else "redis"), version


def _skip_without_waitaof(binary: Path) -> None:
    """Skip before any server starts when ``binary`` has no WAITAOF (Redis < 7.2)."""
    kind, version = _binary_kind(binary)
    if kind == "redis" and version < (7, 2):
        pytest.skip(f"{NO_WAITAOF} (this one is Redis {version[0]}.{version[1]})")


def _kind(server: EmbeddedServer) -> str:
    name = "valkey" if server.is_valkey else "redis"
    return f"{name} {'.'.join(map(str, server.version))}"


def _cluster_client(embedded: EmbeddedCluster) -> RedisCluster:
    live = next(n for n in embedded.nodes if n.running)
    return RedisCluster(host=live.host, port=live.port, password=embedded.password)


def _owner(embedded: EmbeddedCluster, queue: str) -> EmbeddedNode:
    """The master serving the queue's slot now."""
    with _cluster_client(embedded) as probe:
        port = probe.get_node_from_key(QueueKeys(queue).stream).port
    return next(n for n in embedded.nodes if n.port == port)


def _completion_gap(
    client: redis.Redis, queue: str, t_fault: float, keys: QueueKeys | None = None
) -> tuple[float, float]:
    """Unix times of the last completion recorded before ``t_fault`` and of the first after
    it, read from the completed set of ``keys`` (default: the queue's home), scored by the
    Redis clock (the same host's). A completion the failover rolled back is not there: the
    gap can only look longer."""
    k = keys or QueueKeys(queue)
    ms = t_fault * 1000
    before = client.zrevrangebyscore(k.completed, ms, "-inf", start=0, num=1, withscores=True)
    after = client.zrangebyscore(k.completed, f"({ms}", "+inf", start=0, num=1, withscores=True)
    inf = float("inf")
    return (before[0][1] / 1000 if before else -inf), (after[0][1] / 1000 if after else inf)


def _completions(client: redis.Redis, keys: QueueKeys, start: float, end: float) -> int:
    """Completions recorded in ``keys``' completed set from ``start`` to ``end`` (unix s)."""
    return int(client.zcount(keys.completed, f"{start * 1000}", f"({end * 1000}"))


def _recovery_figures(
    gap: tuple[float, float], t_fault: float, t_settled: float, limit: float
) -> dict[str, Any]:
    last, first = gap
    return {
        "recovery_completion_gap_s": round(first - last, 3),
        "recovery_limit_s": round(limit, 3),
        # The workers' own share: their first completion after the topology was seen
        # healthy again (negative: they resumed before the check saw it).
        "recovery_after_failover_s": round(first - t_settled, 3),
        "failover_s": round(t_settled - t_fault, 3),
    }


def _check(
    client: redis.Redis,
    queue: str,
    ledger: Ledger,
    fleet: Fleet,
    feeder: Feeder,
    figures: dict[str, Any],
    *,
    t_settled: float,
    meta: PartitionMeta | None = None,
    horizon: Callable[[], float] | None = None,
) -> LedgerCheck:
    """Settle, check the ledger, fill the common figures.

    A repeated run is explained by a reclaim, a lease loss, or the failover: a run that
    started before the topology settled again (``t_settled``, or later: ``horizon()``
    after the settle, the last time a node that is no longer the primary was one) may have
    had its completion (or its delivery) rolled back with the unreplicated writes of the
    node that lost the role."""
    t0 = time.monotonic()
    final = settle(client, queue, ledger.accepted, meta=meta)
    figures["settle_s"] = round(time.monotonic() - t0, 3)
    if horizon is not None:
        t_settled = max(t_settled, horizon())
    reclaimed = Counter(e.get("job_id") for e in fleet.events("reclaimed"))
    losses = fleet.lease_losses()
    rolled_back = Counter(r.job_id for r in ledger.runs() if r.wall <= t_settled)
    check = verify_ledger(
        client,
        queue,
        ledger,
        interrupted_jobs=reclaimed + losses + rolled_back,
        final_states=final,
        meta=meta,
    )
    refused = states(client, queue, feeder.refused_ids, meta)
    written = [j for j, s in refused.items() if s is not None]
    figures.update(
        check.figures(),
        refused_batches=dict(feeder.refusals),
        refused_but_written=len(written),
        refused_but_written_unfinished=sum(1 for j in written if refused[j] == "waiting"),
        reclaimed_entries=sum(reclaimed.values()),
        fenced_in_live_workers=sum(losses.values()),
        workers_alive=all(w.alive for w in fleet.procs),
        worker_exit_codes=[w.proc.poll() for w in fleet.procs],
    )
    return check


class PromotionWatch(threading.Thread):
    """From :meth:`start` (just before the kill), polls ``CLUSTER NODES`` on a surviving
    master every 10 ms: the wall times at which it first flagged the victim ``fail``
    (failure reports from a majority) and first named one of its replicas a master."""

    def __init__(self, embedded: EmbeddedCluster, victim: EmbeddedNode) -> None:
        super().__init__(daemon=True)
        self.survivor = next(n for n in embedded.masters() if n is not victim)
        self.victim, self.password = victim, embedded.password
        self.replicas = {n.node_id for n in embedded.nodes if n.master_id == victim.node_id}
        self.failed_at: float | None = None
        self.promoted_at: float | None = None
        self.error: Exception | None = None
        self._stop_event = threading.Event()

    def run(self) -> None:
        try:
            self._watch()
        except Exception as exc:  # reported by the figures (promoted_s None) and here
            self.error = exc

    def _watch(self) -> None:
        node = self.survivor
        with redis.Redis(node.host, node.port, password=self.password, socket_timeout=1) as r:
            while not self._stop_event.is_set() and self.promoted_at is None:
                try:
                    text = r.execute_command("CLUSTER", "NODES").decode()
                except redis.RedisError:
                    text = ""
                now = time.time()
                for line in text.splitlines():
                    node_id, _, flags, *_ = [*line.split(), "", "", ""]
                    if node_id == self.victim.node_id and "fail" in flags.split(","):
                        self.failed_at = self.failed_at or now
                    if node_id in self.replicas and "master" in flags.split(","):
                        self.promoted_at = now
                self._stop_event.wait(0.01)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(5)
        assert not self.is_alive(), "the promotion watch did not stop"


class MasterWatch(threading.Thread):
    """From :meth:`start` (before the fault) to :meth:`stop` (after the ledger settled),
    asks every data node of a Sentinel setup for its ``ROLE`` every 20 ms: which nodes
    were masters, and when each was last seen one.

    A failover rolls back what the dead master had not replicated, and a second one (the
    new primary missed the sentinels' pings for down-after-milliseconds, on a starved
    host) rolls back what the first new primary had not: every run before the last time a
    node other than the final primary answered ``master`` may have had its delivery or its
    completion undone (:attr:`horizon`); after it only one master is left."""

    def __init__(self, setup: EmbeddedSentinel) -> None:
        super().__init__(daemon=True)
        self.nodes = setup.servers
        self.last_master: dict[int, float] = {}
        self.masters: list[int] = []  # ports in the order they were first seen masters
        self.error: Exception | None = None
        self._stop_event = threading.Event()

    def run(self) -> None:
        clients = {n.port: redis.Redis.from_url(n.url, socket_timeout=0.2) for n in self.nodes}
        try:
            while not self._stop_event.is_set():
                for port, client in clients.items():
                    try:
                        role = client.execute_command("ROLE")[0]
                    except redis.RedisError:
                        continue  # dead or stalled: it was not seen a master now
                    if (role.decode() if isinstance(role, bytes) else role) == "master":
                        self.last_master[port] = time.time()
                        if port not in self.masters:
                            self.masters.append(port)
                self._stop_event.wait(0.02)
        except Exception as exc:  # reported by stop()
            self.error = exc
        finally:
            for client in clients.values():
                client.close()

    def stop(self) -> None:
        self._stop_event.set()
        self.join(5)
        assert not self.is_alive(), "the master watch did not stop"
        assert self.error is None, f"the master watch failed: {self.error!r}"

    def horizon(self, final_port: int) -> float:
        """The last time a node other than ``final_port`` was seen a master."""
        return max((t for p, t in self.last_master.items() if p != final_port), default=0.0)

    @property
    def failovers(self) -> int:
        """Promotions seen: masters beyond the first (a demoted one seen master again counts
        only once; it cannot happen here, where the old primary stays dead)."""
        return max(len(self.masters) - 1, 0)


def _serve_partial_coverage(embedded: EmbeddedCluster) -> None:
    """``cluster-require-full-coverage no`` on every node: the masters that are up keep
    serving their slots while a dead master's slots wait for its replica (by default the
    whole cluster refuses every command from the moment a master is flagged failed until
    its replica takes over)."""
    for node in embedded.nodes:
        with redis.Redis.from_url(node.url) as direct:
            direct.config_set("cluster-require-full-coverage", "no")


def _partition_figures(
    client: redis.Redis,
    lanes: list[QueueKeys],
    owners: dict[str, int],
    victim_port: int,
    t_kill: float,
    t_promoted: float,
) -> dict[str, Any]:
    """Per partition: its master (the victim's or another), its completions in the second
    before the kill, between the kill and the promotion, and in the second after it."""
    rows = []
    for i, lane in enumerate(lanes):
        rows.append(
            {
                "partition": i,
                "on_victim": owners[lane.stream] == victim_port,
                "before_1s": _completions(client, lane, t_kill - 1, t_kill),
                "outage": _completions(client, lane, t_kill, t_promoted),
                "after_1s": _completions(client, lane, t_promoted, t_promoted + 1),
            }
        )
    others = [r for r in rows if not r["on_victim"]]
    return {
        "partitions": rows,
        "other_partitions_completed_during_outage": sum(r["outage"] for r in others),
        "other_partitions_idle_during_outage": sum(1 for r in others if r["outage"] == 0),
    }


def _master_kill_under_load(
    embedded: EmbeddedCluster,
    ledger: Ledger,
    fleet_factory: Callable[..., Fleet],
    queue: str,
    figures: dict[str, Any],
    *,
    partitions: int = 1,
    **producer: Any,
) -> tuple[LedgerCheck, Feeder, float, PartitionMeta]:
    """A backlog, two workers and a feeder on ``queue`` (spread over ``partitions``); SIGKILL
    the master of the queue's home slot; wait for the promotion and the cluster healthy
    again; a little more load. Returns the check, the feeder, the time the failover was
    over and the queue's partitions."""
    figures["server"] = _kind(embedded.nodes[0].server)
    home = QueueKeys(queue)
    with Admin(embedded.url) as admin:
        meta = admin.set_partitions(queue, partitions) if partitions > 1 else PartitionMeta()
    lanes = partition_keys(home, meta)
    with _cluster_client(embedded) as probe:
        owners = {k.stream: probe.get_node_from_key(k.stream).port for k in lanes}
    victim = next(n for n in embedded.nodes if n.port == owners[home.stream])
    t0 = time.monotonic()
    early = _backlog(embedded.url, queue, ledger, **producer)
    figures["backlog_enqueue_s"] = round(time.monotonic() - t0, 3)
    fleet = fleet_factory(embedded.url, queue, concurrency=8, env=WORKER_ENV)
    fleet.start(), fleet.start()
    with _feeding(embedded.url, queue, ledger, **producer) as feeder:
        feeder.accepted_at.update(early)
        wait_until(lambda: len(ledger.runs()) > 200, 20, "the load to start")
        time.sleep(random.uniform(*LOAD_S))  # load before the fault
        watch = PromotionWatch(embedded, victim)
        watch.start()
        t_kill = time.time()
        embedded.kill(victim)
        embedded.wait_ok(timeout=KILL_NODE_TIMEOUT_MS / 1000 + 20)
        t_settled = time.time()
        watch.stop()
        promoted = _owner(embedded, queue)
        time.sleep(AFTER_S)  # load on the new master
    t_promoted = watch.promoted_at or t_settled
    with _cluster_client(embedded) as client:
        check = _check(
            client, queue, ledger, fleet, feeder, figures, t_settled=t_settled, meta=meta
        )
        # The recovery of the partitions that were down: the slowest of them.
        down = [k for k in lanes if owners[k.stream] == victim.port]
        gaps = [_completion_gap(client, queue, t_kill, k) for k in down]
        gap = max(gaps, key=lambda g: g[1] - g[0])
        if partitions > 1:
            figures.update(
                _partition_figures(client, lanes, owners, victim.port, t_kill, t_promoted)
            )
            live = [k for k in lanes if owners[k.stream] != victim.port]
            reclaimed = [e.get("job_id", "") for e in fleet.events("reclaimed")]
            # A job of a partition whose master stayed up was never cut off: a reclaim of
            # it means a worker lost entries delivered to it, which waited for the lease.
            # Reported, not asserted: redis-py's asyncio cluster client, retrying a pipeline
            # after a connection error to the dead master, closes every node's connections,
            # a read in flight on a live master among them (seen in 1 run of 8).
            figures["reclaimed_in_live_partitions"] = sum(
                1 for j in reclaimed if any(client.exists(k.job(j)) for k in live)
            )
        lost_age = [t_kill - feeder.accepted_at.get(j, 0.0) for j in check.lost]
        after = [t for t in feeder.accepted_at.values() if t > t_kill]
        figures.update(
            producer_first_ack_after_kill_s=round(min(after) - t_kill, 3) if after else None,
            producer_acks_after_failover=sum(1 for t in after if t > t_settled),
            producer_last_refusal_after_kill_s=round(max(feeder.refused_at) - t_kill, 3)
            if feeder.refused_at
            else None,
        )
        figures.update(
            faults=f"SIGKILL of the master of the queue's home slot ({embedded.size} nodes, "
            f"{partitions} partition(s), {len(down)} of them on it)",
            cluster_node_timeout_ms=KILL_NODE_TIMEOUT_MS,
            promoted_a_replica=promoted is not victim and not victim.running,
            **_recovery_figures(gap, t_kill, t_settled, RECOVERY_LIMIT_S),
            # The timeline: the victim flagged failed by a majority, a replica elected
            # (both outside streamq), then the workers' first completion on it.
            fail_flagged_s=_since(watch.failed_at, t_kill),
            promotion_watch_error=repr(watch.error) if watch.error else None,
            promoted_s=_since(watch.promoted_at, t_kill),
            first_completion_after_promotion_s=_since(gap[1], t_promoted),
            lost_acknowledged_s_before_kill=[round(min(lost_age), 3), round(max(lost_age), 3)]
            if lost_age
            else [],
        )
    return check, feeder, t_settled, meta


def _since(t: float | None, origin: float) -> float | None:
    return None if t is None or t in (float("inf"), float("-inf")) else round(t - origin, 3)


def test_a_cluster_master_sigkilled_under_durable_load_loses_no_acknowledged_job(
    cluster_binary: Path,
    cluster_factory: Callable[..., EmbeddedCluster],
    ledger: Ledger,
    fleet_factory: Callable[..., Fleet],
    queue_name: str,
    figures: dict[str, Any],
) -> None:
    """14. Cluster master SIGKILL under load, durable_replicas=1, a queue in 6 partitions.

    3 masters with 2 replicas each (AOF everysec; so the promoted master still has a
    replica to confirm durable writes), cluster-node-timeout 0.5 s,
    cluster-require-full-coverage no. The queue is spread over 6 partitions (2 on each
    master). Two worker processes consume it while a producer enqueues batches with
    durable=True, durable_replicas=1 (WAITAOF: the local fsync and one replica's); the
    master of the queue's home slot (and of one other partition) is SIGKILLed and a
    replica promoted. Every acknowledged job must end completed, the PEL of every
    partition empty, the partitions on the other masters must complete jobs between the
    kill and the promotion, the producer
    must enqueue again once the cluster is healthy, and the workers must complete jobs in
    the partitions that were down again within cluster-node-timeout + 2 s (last completion
    before the kill to first after it)."""
    _skip_without_waitaof(cluster_binary)
    embedded = cluster_factory(
        node_timeout_ms=KILL_NODE_TIMEOUT_MS, replicas_per_master=2, profile="default"
    )
    _serve_partial_coverage(embedded)
    check, _, _, _ = _master_kill_under_load(
        embedded,
        ledger,
        fleet_factory,
        queue_name,
        figures,
        partitions=PARTITIONS,
        durable=True,
        durable_replicas=1,
        durable_timeout=5,
    )
    check.assert_exact()
    assert figures["promoted_a_replica"]
    assert figures["workers_alive"], "a worker died during the failover"
    assert figures["producer_acks_after_failover"] > 0, "the producer did not resume"
    assert figures["refused_but_written_unfinished"] == 0
    assert figures["other_partitions_idle_during_outage"] == 0, figures["partitions"]
    assert figures["recovery_completion_gap_s"] <= RECOVERY_LIMIT_S, figures


def test_a_cluster_master_sigkilled_under_plain_load_counts_what_it_loses(
    cluster_binary: Path,
    cluster_factory: Callable[..., EmbeddedCluster],
    ledger: Ledger,
    fleet_factory: Callable[..., Fleet],
    queue_name: str,
    figures: dict[str, Any],
) -> None:
    """14b. Cluster master SIGKILL under load, no durable enqueue, a queue in 6 partitions.

    As scenario 14 on 3 masters with 1 replica each, no persistence and the default
    cluster-require-full-coverage (yes: the whole cluster refuses commands from the
    moment the master is flagged failed until its replica takes over, so the other
    partitions pause too; their completions are reported, not asserted), with plain
    enqueues: an enqueue the master acknowledged but had not replicated yet dies with it.
    The loss is counted, never hidden: every acknowledged job is completed, dead or lost,
    a lost one has no record left (nothing half-done) and was acknowledged before the
    failover ended (none after), every PEL is empty and the workers resume within the
    failover's own time (the kill to the replica promoted) + 2 s; whether that was also
    within cluster-node-timeout + 2 s (scenario 14's bound, which the issue sets for durable
    enqueues) is reported beside it: with full coverage required, the clients wait out the
    cluster's refusals too. Run on redis7, the kind that has no durable enqueue (on
    valkey8, scenario 14 runs the same fault with durable enqueues)."""
    if _binary_kind(cluster_binary)[0] == "valkey":
        pytest.skip(
            "runs on redis7, the kind without WAITAOF; valkey8 runs this fault with "
            "durable enqueues (scenario 14), and the suite's time is kept short"
        )
    embedded = cluster_factory(node_timeout_ms=KILL_NODE_TIMEOUT_MS)
    check, feeder, t_settled, meta = _master_kill_under_load(
        embedded, ledger, fleet_factory, queue_name, figures, partitions=PARTITIONS
    )
    with _cluster_client(embedded) as client:
        left = states(client, queue_name, check.lost, meta)
    accounted = check.completed + check.dead + check.cancelled + len(check.lost)
    late = [j for j in check.lost if feeder.accepted_at.get(j, 0.0) > t_settled]
    figures.update(
        lost_with_a_record_left=sum(1 for s in left.values() if s is not None),
        lost_after_the_failover=len(late),
    )
    assert accounted == check.accepted, "the ledger does not add up"
    assert figures["lost_with_a_record_left"] == 0, left
    assert not late, f"jobs acknowledged by the new master were lost: {late[:5]}"
    assert check.pel == 0 and not check.never_ran and not check.unexplained
    assert figures["promoted_a_replica"]
    assert figures["workers_alive"], "a worker died during the failover"
    assert figures["producer_acks_after_failover"] > 0, "the producer did not resume"
    assert figures["refused_but_written_unfinished"] == 0
    figures["within_cluster_node_timeout_plus_2_s"] = (
        figures["recovery_completion_gap_s"] <= RECOVERY_LIMIT_S
    )
    own_limit = figures["failover_s"] + RESUME_MARGIN_S
    figures["recovery_limit_s"] = round(own_limit, 3)
    assert figures["recovery_completion_gap_s"] <= own_limit, figures


def _migrate_slot_under_load(
    embedded: EmbeddedCluster, slot: int, source: EmbeddedNode, target: EmbeddedNode
) -> dict[str, Any]:
    """Move ``slot`` with its keys from ``source`` to ``target`` while clients use it (what
    ``redis-cli --cluster reshard`` does: IMPORTING/MIGRATING, MIGRATE in batches, then
    SETSLOT NODE on every master). Returns what it moved and how long it took."""
    password = embedded.password or ""
    moved = batches = 0
    t0 = time.monotonic()
    with (
        redis.Redis.from_url(source.url) as src,
        redis.Redis.from_url(target.url) as dst,
    ):
        dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source.node_id)
        src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target.node_id)
        # Keys keep coming while it runs (new job records go to the target by ASK).
        while keys := src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100):
            src.execute_command(
                "MIGRATE", target.host, target.port, "", 0, 5000, "AUTH", password, "KEYS", *keys
            )
            moved += len(keys)
            batches += 1
        # The target first, then the source, then the rest (redis-cli's order).
        for node in [target, source, *(m for m in embedded.masters() if m not in (source, target))]:
            with redis.Redis.from_url(node.url) as direct:
                direct.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target.node_id)
    took = time.monotonic() - t0
    embedded.wait_ok()
    return {"keys_migrated": moved, "migrate_batches": batches, "migration_s": round(took, 3)}


def test_the_queues_slot_migrated_under_load_loses_no_job(
    cluster_factory: Callable[..., EmbeddedCluster],
    ledger: Ledger,
    fleet_factory: Callable[..., Fleet],
    queue_name: str,
    figures: dict[str, Any],
) -> None:
    """15. Slot migration of the queue's slot under load.

    3 masters with 1 replica each. Two worker processes consume a queue while a producer
    enqueues batches; the queue's slot, with every key in it, is moved to another master
    (CLUSTER SETSLOT IMPORTING/MIGRATING, MIGRATE in batches of 100 keys, SETSLOT NODE:
    what `redis-cli --cluster reshard` does). Producers and workers must follow ASK during
    the move and MOVED after it; every accepted job must end completed, the PEL empty,
    and the workers must complete jobs on the new master."""
    embedded = cluster_factory(node_timeout_ms=NODE_TIMEOUT_MS)
    figures["server"] = _kind(embedded.nodes[0].server)
    slot = int(key_slot(QueueKeys(queue_name).stream.encode()))
    source = _owner(embedded, queue_name)
    target = next(n for n in embedded.masters() if n is not source)
    early = _backlog(embedded.url, queue_name, ledger)
    fleet = fleet_factory(embedded.url, queue_name, concurrency=8, env=WORKER_ENV)
    fleet.start(), fleet.start()
    with _feeding(embedded.url, queue_name, ledger) as feeder:
        feeder.accepted_at.update(early)
        wait_until(lambda: len(ledger.runs()) > 200, 20, "the load to start")
        time.sleep(random.uniform(*LOAD_S))  # load before the move
        t_move = time.time()
        figures.update(_migrate_slot_under_load(embedded, slot, source, target))
        t_done = time.time()
        runs_before = len(ledger.runs())
        time.sleep(AFTER_S)  # load on the new owner
        runs_after = len(ledger.runs()) - runs_before
    with _cluster_client(embedded) as client:
        # Nothing is rolled back by a migration: no repeat is explained by it.
        check = _check(client, queue_name, ledger, fleet, feeder, figures, t_settled=0.0)
        last, first = _completion_gap(client, queue_name, t_move)
        owner_now = _owner(embedded, queue_name)
    with redis.Redis.from_url(source.url) as src:
        left_on_source = int(src.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot))
    figures.update(
        faults=f"slot {slot} moved to another master under load",
        keys_left_on_source=left_on_source,
        runs_in_the_2_s_after_the_move=runs_after,
        move_window_s=round(t_done - t_move, 3),
        recovery_completion_gap_s=round(first - last, 3),
    )
    check.assert_exact()
    assert owner_now is target and left_on_source == 0
    assert figures["workers_alive"], "a worker died during the migration"
    assert figures["refused_but_written_unfinished"] == 0
    assert runs_after > 0, "the workers did not consume from the new master"


def test_a_sentinel_failover_under_durable_load_loses_no_acknowledged_job(
    sentinel_binary: Path,
    sentinel_factory: Callable[..., EmbeddedSentinel],
    ledger: Ledger,
    fleet_factory: Callable[..., Fleet],
    queue_name: str,
    figures: dict[str, Any],
) -> None:
    """16. Sentinel failover of the primary under load, durable_replicas=1.

    A primary with 2 replicas (AOF everysec; so the new primary still has a replica to
    confirm durable writes) and 3 sentinels (down-after 1 s). Two worker processes consume
    a queue through `redis+sentinel://` while a producer enqueues batches with
    durable=True, durable_replicas=1; the primary is SIGKILLed and the sentinels promote a
    replica. Every acknowledged job must end completed, the PEL empty, the producer must
    enqueue again after the failover, and the workers must complete jobs again within the
    failover time + 2 s (last completion before the
    kill to first after it; the failover time: the kill to every sentinel naming the new
    primary). On a starved host the sentinels may fail the new primary over again before
    its replicas attach (reported as ``failovers``): the runs it started or completed may
    then be rolled back too, so repeats of runs before the last master change are
    explained, and the time bound is the failovers' own time + 2 s."""
    _skip_without_waitaof(sentinel_binary)
    setup = sentinel_factory(replicas=2, profile="default")
    old = setup.primary()
    figures["server"] = _kind(old)
    durable = {"durable": True, "durable_replicas": 1, "durable_timeout": 5}
    early = _backlog(setup.url, queue_name, ledger, **durable)
    fleet = fleet_factory(setup.url, queue_name, concurrency=8, env=WORKER_ENV)
    fleet.start(), fleet.start()
    watch = MasterWatch(setup)
    watch.start()
    with _feeding(setup.url, queue_name, ledger, **durable) as feeder:
        feeder.accepted_at.update(early)
        wait_until(lambda: len(ledger.runs()) > 200, 20, "the load to start")
        time.sleep(random.uniform(*LOAD_S))  # load before the fault
        t_kill = time.time()
        old.kill()  # the primary found above: no look-up between the time and the signal
        new = setup.wait_failover(old.port, timeout=setup.down_after_ms / 1000 + 20)
        t_settled = t_first = time.time()
        time.sleep(AFTER_S)  # load on the new primary
        if setup.primary_port() != new.port:
            # A second failover (the new primary missed the sentinels' pings on a starved
            # host; see MasterWatch): load on the final primary too, replicas attached.
            setup.wait_ready(timeout=30)
            t_settled = time.time()
            time.sleep(AFTER_S)
    # Through the sentinels: the primary at the end, should a second failover have
    # replaced the one found above (see MasterWatch).
    with sync_client(RedisSettings(url=setup.url)) as client:
        try:
            check = _check(
                client,
                queue_name,
                ledger,
                fleet,
                feeder,
                figures,
                t_settled=t_settled,
                horizon=lambda: watch.horizon(setup.primary_port()),
            )
        finally:
            watch.stop()
        gap = _completion_gap(client, queue_name, t_kill)
        # The failover is over once one master is left: after a second one, the
        # completions on the first new primary may be rolled back, so the gap is measured
        # against the failovers' own time.
        t_over = max(t_first, watch.horizon(setup.primary_port()))
    after = [t for t in feeder.accepted_at.values() if t > t_kill]
    figures.update(
        faults="SIGKILL of the Sentinel primary (2 replicas, 3 sentinels)",
        failovers=watch.failovers,
        masters_seen=len(watch.masters),
        promoted_a_replica=new is not old and not old.running,
        producer_first_ack_after_kill_s=round(min(after) - t_kill, 3) if after else None,
        producer_acks_after_failover=sum(1 for t in after if t > t_settled),
        first_failover_s=round(t_first - t_kill, 3),
        **_recovery_figures(gap, t_kill, t_over, t_over - t_kill + RESUME_MARGIN_S),
    )
    check.assert_exact()
    assert figures["promoted_a_replica"]
    assert figures["workers_alive"], "a worker died during the failover"
    assert figures["producer_acks_after_failover"] > 0, "the producer did not resume"
    assert figures["refused_but_written_unfinished"] == 0
    assert figures["recovery_completion_gap_s"] <= figures["recovery_limit_s"]
