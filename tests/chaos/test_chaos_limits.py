"""Chaos scenario for flow control: per-key rate limits and concurrency under a worker
SIGKILL storm, checked from the outside ledger (starts, ends, charges), not from Redis."""

from __future__ import annotations

import bisect
import os
import random
import re
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis

import streamq
from streamq.admin import Admin
from streamq.protocol.keys import GROUP, QueueKeys
from streamq.server import EmbeddedServer
from tests._report_plugin import REPORT_ENV
from tests._support import wait_until
from tests.chaos._chaos_support import (
    Fleet,
    Ledger,
    Run,
    pending_count,
    settle,
    verify_ledger,
)

pytestmark = pytest.mark.chaos

KEYS = 200
WORKERS = 4
WORKER_CONCURRENCY = 16
LEASE_MS = 1000
FEED_S = 20.0
TICK_S = 0.05
#: Per key: (jobs fed per s, shortest and longest job ms). Hot keys are fed above their
#: rate (their jobs wait on rate windows), slow keys' long jobs wait on slots; the rest,
#: fed below their limits, mostly run at once.
COLD = (1.5, 5, 60)
FEED: dict[str, tuple[float, int, int]] = {
    **{f"k:{i}": (7.0, 5, 60) for i in range(10)},
    "k:7": (5.0, 5, 60),  # its tighter rule (4/s) would leave a long backlog at 7/s
    **{f"k:{i}": (4.0, 400, 900) for i in (10, 11, 13, 14)},
    "k:12": (2.0, 200, 500),  # one at a time
}
#: The window-opening-to-start latency the engine must keep (p99), ms.
LATENCY_P99_MS = 50.0
#: How often the engine's sliding log is copied (s): well under the shortest period.
SAMPLE_S = 0.1
#: A window opening this soon after a SIGKILL counts as "after a kill" in the lateness
#: split (ms): a worker's read blocks up to 1 s, plus slack.
AFTER_KILL_MS = 1500


@dataclass(frozen=True)
class Rule:
    """One limit as stored in the queue's ``limits`` hash."""

    pattern: str
    shared: bool = False
    rate: int | None = None
    period_ms: int | None = None
    concurrency: int | None = None

    @property
    def field(self) -> str:
        return f"{'shared' if self.shared else 'each'}|{self.pattern}"

    def matches(self, key: str) -> bool:
        # A glob where only '*' is special, as take.lua reads it.
        rx = ".*".join(re.escape(part) for part in self.pattern.split("*"))
        return re.fullmatch(rx, key) is not None

    def label(self) -> str:
        parts = [self.field]
        if self.rate is not None:
            parts.append(f"{self.rate}/{self.period_ms}ms")
        if self.concurrency is not None:
            parts.append(f"conc {self.concurrency}")
        return " ".join(parts)


RULES = (
    Rule("k:*", rate=5, period_ms=1000, concurrency=2),  # every key
    Rule("k:7", rate=2, period_ms=500, concurrency=1),  # a hot key, tighter on both
    Rule("k:12", concurrency=1),  # a slow key, one at a time
    Rule("k:42", rate=3, period_ms=2000),  # a cold key with a long window
    Rule("k:19*", shared=True, rate=12, period_ms=1000),  # k:19, k:190-199 share a budget
)


def set_limits(url: str, queue: str, rules: Sequence[Rule]) -> None:
    """Declare the rules through the operator API (validated, as an operator would)."""
    with Admin(url) as admin:
        for r in rules:
            per = r.period_ms / 1000 if r.period_ms is not None else None
            admin.set_limit(
                queue, r.pattern, rate=r.rate, per=per, concurrency=r.concurrency, shared=r.shared
            )


# ---------------------------------------------------------------------------- the engine's log


@dataclass(frozen=True)
class Charge:
    """One member of the engine's sliding log (``rlog``): a job start charged to a bucket
    at the take's Redis time."""

    rule: str  # the rule's field: each|<pattern> or shared|<pattern>
    bucket: str  # the key (each) or "*" (shared)
    ms: int
    job_id: str


def parse_charge(raw: bytes) -> Charge:
    """``e\\0<pattern>\\0<key>\\0<ms>\\0<id>`` or ``s\\0<pattern>\\0<ms>\\0<id>`` (take.lua)."""
    parts = raw.decode().split("\0")
    if parts[0] == "e":
        _, pattern, key, ms, job_id = parts
        return Charge(f"each|{pattern}", key, int(ms), job_id)
    _, pattern, ms, job_id = parts
    return Charge(f"shared|{pattern}", "*", int(ms), job_id)


class RlogSampler:
    """Copies the engine's sliding log every ``interval`` s from a thread. A member stays in
    it for at least its rule's period (take.lua prunes only members older than that), so
    sampling more often than the shortest period sees every charge."""

    def __init__(self, url: str, key: str, interval: float) -> None:
        self.members: set[bytes] = set()
        self.samples = 0
        self.longest_gap_s = 0.0
        self._client = redis.Redis.from_url(url)
        self._key = key
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rlog-sampler", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        last = time.monotonic()
        while not self._stop.is_set():
            self.members.update(self._client.zrange(self._key, 0, -1))
            now = time.monotonic()
            self.longest_gap_s = max(self.longest_gap_s, now - last)
            last = now
            self.samples += 1
            self._stop.wait(self._interval)

    def stop(self) -> list[Charge]:
        """Stop sampling; every charge seen."""
        self._stop.set()
        self._thread.join(10)
        self._client.close()
        return sorted((parse_charge(m) for m in self.members), key=lambda c: c.ms)


# ---------------------------------------------------------------------------- the ledger's view


@dataclass
class Start:
    """One flow run from the outside ledger: its start and end (wall s, the worker's clock;
    a killed run ends at its kill), the ms part of its entry id (the Redis time of the
    XADD in the take that admitted it), and its exact charge from the engine's log."""

    run: Run
    key: str
    entry_ms: int
    end: float | None
    killed: bool
    charge_ms: int | None = None

    @property
    def start(self) -> float:
        return self.run.wall

    @property
    def start_ms(self) -> float:
        return self.run.wall * 1000


def flow_starts(
    ledger: Ledger, key_of: dict[str, str], kill_wall: dict[int, float], charges: list[Charge]
) -> tuple[list[Start], int]:
    """Every recorded flow run, matched to its charge (the job's latest one at or before its
    entry's ms: a take charges first, then adds the entry), and how many runs have no end
    with no kill to explain it."""
    ends = ledger.ends()
    charged: dict[str, list[int]] = defaultdict(list)
    for c in charges:
        charged[c.job_id].append(c.ms)
    out: list[Start] = []
    unexplained = 0
    for r in ledger.runs():
        if r.entry_id is None:
            continue
        end = ends.get(r.entry_id)
        killed = end is None and r.pid in kill_wall
        if end is None and not killed:
            unexplained += 1
        if killed:
            end = kill_wall[r.pid]  # the process died then: the run ended no later
        entry_ms = int(r.entry_id.split("-", 1)[0])
        s = Start(r, key_of[r.job_id], entry_ms, end, killed)
        earlier = [ms for ms in charged.get(r.job_id, ()) if ms <= entry_ms]
        s.charge_ms = max(earlier) if earlier else None
        out.append(s)
    return out, unexplained


@dataclass
class RateCheck:
    """Sliding windows over one clock: ``rate`` + 1 starts within ``period_ms`` is a
    violation (the engine's window is (t - period, t])."""

    windows: int = 0
    violations: list[dict[str, Any]] = field(default_factory=list)
    min_margin_ms: float | None = None  # min over i of t[i + rate] - t[i] - period

    def add(self, rule: Rule, bucket: str, times: Sequence[float], ids: Sequence[str]) -> None:
        assert rule.rate is not None and rule.period_ms is not None
        n = rule.rate
        for i in range(len(times) - n):
            self.windows += 1
            margin = times[i + n] - times[i] - rule.period_ms
            if self.min_margin_ms is None or margin < self.min_margin_ms:
                self.min_margin_ms = margin
            if margin < 0:
                self.violations.append(
                    {
                        "rule": rule.field,
                        "bucket": bucket,
                        "first_ms": int(times[i]),
                        "span_ms": round(times[i + n] - times[i], 3),
                        "starts": n + 1,
                        "over_by_ms": round(-margin, 3),
                        "jobs": list(ids[i : i + n + 1]),
                    }
                )

    def figures(self) -> dict[str, Any]:
        return {
            "windows": self.windows,
            "violations": len(self.violations),
            "max_over_by_ms": max((v["over_by_ms"] for v in self.violations), default=0),
            "min_margin_ms": round(self.min_margin_ms or 0.0, 3),
        }


def check_engine_log(charges: list[Charge], rules: Sequence[Rule]) -> RateCheck:
    """The rate limits over every charge the engine logged (its own clock, exact)."""
    by_field = {r.field: r for r in rules}
    groups: dict[tuple[str, str], list[Charge]] = defaultdict(list)
    for c in charges:
        groups[(c.rule, c.bucket)].append(c)
    out = RateCheck()
    for (rule_field, bucket), cs in sorted(groups.items()):
        cs.sort(key=lambda c: c.ms)
        out.add(by_field[rule_field], bucket, [c.ms for c in cs], [c.job_id for c in cs])
    return out


def buckets(rule: Rule, starts: Iterable[Start]) -> dict[str, list[Start]]:
    """The rate buckets of ``rule``: one per matching key (each) or one for all (shared)."""
    out: dict[str, list[Start]] = defaultdict(list)
    for s in starts:
        if rule.matches(s.key):
            out["*" if rule.shared else s.key].append(s)
    return out


def check_ledger(
    starts: list[Start], rules: Sequence[Rule], clock: Callable[[Start], float]
) -> RateCheck:
    """The rate limits over the outside ledger's starts, timed by ``clock``."""
    out = RateCheck()
    for rule in rules:
        if rule.rate is None:
            continue
        for name, ss in sorted(buckets(rule, starts).items()):
            ss = sorted(ss, key=clock)
            out.add(rule, name, [clock(s) for s in ss], [s.run.job_id for s in ss])
    return out


@dataclass
class ConcurrencyCheck:
    """Per key, the most runs at once, and every moment above the key's K: a violation
    when none of the runs then was killed or fenced."""

    max_seen: dict[str, int] = field(default_factory=dict)
    violations: list[dict[str, Any]] = field(default_factory=list)
    over_with_killed: int = 0
    over_with_fenced: int = 0


def check_concurrency(
    starts: list[Start], rules: Sequence[Rule], fenced: set[str]
) -> ConcurrencyCheck:
    """Runs at once per key, from the ledger's start and end times."""
    out = ConcurrencyCheck()
    by_key: dict[str, list[Start]] = defaultdict(list)
    for s in starts:
        by_key[s.key].append(s)
    for key, ss in by_key.items():
        limits = [r.concurrency for r in rules if r.concurrency is not None and r.matches(key)]
        if not limits:
            continue
        k = min(limits)
        # Ends sort before starts at the same instant: a slot freed, then taken.
        events = sorted(
            [(s.start, 1, i) for i, s in enumerate(ss)]
            + [(s.end if s.end is not None else float("inf"), 0, i) for i, s in enumerate(ss)]
        )
        running: set[int] = set()
        peak = 0
        for t, is_start, i in events:
            if not is_start:
                running.discard(i)
                continue
            running.add(i)
            peak = max(peak, len(running))
            if len(running) <= k:
                continue
            now = [ss[j] for j in running]
            if any(s.killed for s in now):
                out.over_with_killed += 1
            elif any(s.run.job_id in fenced for s in now):
                out.over_with_fenced += 1
            else:
                out.violations.append(
                    {
                        "key": key,
                        "limit": k,
                        "at": round(t, 6),
                        "running": [
                            [s.run.job_id, s.run.pid, round(s.start, 6), s.end] for s in now
                        ],
                    }
                )
        out.max_seen[key] = peak
    return out


@dataclass
class Latency:
    """Window opening -> start, for runs that waited on a rate window (ms)."""

    samples: list[float] = field(default_factory=list)
    not_held_then: int = 0  # enqueued after the window opened: no wait on it
    slot_bound: int = 0  # a slot came free for it only after its window opened
    dead_slot_bound: int = 0  # ... a killed run's slot among them (held until the lease ends)
    reruns: int = 0  # taken before by a killed worker: when it was held again is unknown
    detail: list[tuple[float, str, str, int]] = field(default_factory=list)

    def worst(self, n: int) -> list[dict[str, Any]]:
        top = sorted(self.detail, reverse=True)[:n]
        return [{"ms": round(ms, 1), "key": k, "job": j, "opened_ms": at} for ms, k, j, at in top]


def slot_intervals(
    starts: list[Start],
    charges: list[Charge],
    key_of: dict[str, str],
    finished: dict[str, int],
) -> dict[str, list[tuple[str, int, float, bool]]]:
    """Per key, when the engine held each of its slots (ms): from the charge (a take admits
    and charges at once) to the completion in Redis (the job record's ``f``: the script
    that sets it frees the slot), or the run's recorded end if later; a run that never
    ended (its worker was killed, before or after recording its start) holds it until the
    job is taken again (its lease ran out and it was held again), at most.
    (job id, start, end, dead) per slot."""
    ended: dict[tuple[str, int | None], float] = {}
    for s in starts:
        if not s.killed and s.end is not None:
            done = finished.get(s.run.job_id, 0)
            ended[(s.run.job_id, s.charge_ms)] = max(s.end * 1000, done)
    takes: dict[str, list[int]] = defaultdict(list)
    for job_id, ms in sorted({(c.job_id, c.ms) for c in charges}):
        takes[job_id].append(ms)
    out: dict[str, list[tuple[str, int, float, bool]]] = defaultdict(list)
    for job_id, mss in takes.items():
        for i, ms in enumerate(mss):
            end = ended.get((job_id, ms))
            if end is not None:
                out[key_of[job_id]].append((job_id, ms, end, False))
            else:
                until = mss[i + 1] if i + 1 < len(mss) else float("inf")
                out[key_of[job_id]].append((job_id, ms, until, True))
    return out


def window_latency(
    starts: list[Start],
    charges: list[Charge],
    rules: Sequence[Rule],
    accepted_at: dict[str, float],
    key_of: dict[str, str],
    finished: dict[str, int],
) -> Latency:
    """For each run, the moment its rate windows allowed it: for every rate rule of its key,
    the charge ``rate`` places before its own in the rule's bucket, plus ``period_ms``
    (that charge then leaves the window); the latest of them. A run waited on its window
    when that was the last thing it waited for: its job was held by then (its enqueue had
    returned), it was its job's first take, and a slot was free for it by then (the K-th
    latest end of the key's slots admitted before it, :func:`slot_intervals`). Its
    latency is its start (worker wall clock) minus that moment (Redis clock, from the
    engine's log): one host, one clock."""
    by_field = {r.field: r for r in rules}
    groups: dict[tuple[str, str], list[Charge]] = defaultdict(list)
    for c in charges:
        groups[(c.rule, c.bucket)].append(c)
    allowed: dict[tuple[str, int], int] = {}
    for (rule_field, _), cs in groups.items():
        rule = by_field[rule_field]
        assert rule.rate is not None and rule.period_ms is not None
        cs.sort(key=lambda c: c.ms)
        for i in range(rule.rate, len(cs)):
            at = cs[i - rule.rate].ms + rule.period_ms
            mark = (cs[i].job_id, cs[i].ms)
            allowed[mark] = max(allowed.get(mark, at), at)
    slots = slot_intervals(starts, charges, key_of, finished)
    first_take = {}
    for c in charges:
        first_take[c.job_id] = min(first_take.get(c.job_id, c.ms), c.ms)
    out = Latency()
    for s in starts:
        at = allowed.get((s.run.job_id, s.charge_ms)) if s.charge_ms is not None else None
        if at is None or s.charge_ms is None:
            continue
        if s.charge_ms > first_take[s.run.job_id]:
            out.reruns += 1  # taken before (by a worker killed since, with or without a run)
            continue
        if accepted_at[s.run.job_id] * 1000 >= at:
            out.not_held_then += 1
            continue
        limits = [r.concurrency for r in rules if r.concurrency is not None and r.matches(s.key)]
        if limits:
            # FIFO per key: the slots admitted before this job block it until all but K - 1
            # of them are over, i.e. until the K-th latest of their ends.
            ahead = sorted(
                ((hi, dead) for _, lo, hi, dead in slots[s.key] if lo < s.charge_ms),
                reverse=True,
            )
            kk = min(limits)
            if len(ahead) >= kk and ahead[kk - 1][0] >= at:
                if any(dead for _, dead in ahead[:kk]):
                    out.dead_slot_bound += 1
                else:
                    out.slot_bound += 1
                continue
        out.samples.append(s.start_ms - at)
        out.detail.append((s.start_ms - at, s.key, s.run.job_id, at))
    return out


def finished_ms(client: redis.Redis, queue: str, ids: Sequence[str]) -> dict[str, int]:
    """Each job's completion time in Redis (its record's ``f``, ms)."""
    k = QueueKeys(queue)
    out: dict[str, int] = {}
    for i in range(0, len(ids), 2000):
        chunk = ids[i : i + 2000]
        pipe = client.pipeline(transaction=False)
        for jid in chunk:
            pipe.hget(k.job(jid), "f")
        for jid, raw in zip(chunk, pipe.execute(), strict=True):
            if raw is not None:
                out[jid] = int(raw)
    return out


def pct(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


def summary(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "p50": round(pct(values, 50), 1),
        "p99": round(pct(values, 99), 1),
        "max": round(max(values), 1),
    }


# ---------------------------------------------------------------------------- the scenario


def _key_mix(rng: random.Random) -> list[tuple[str, int]]:
    """One tick's jobs: (key, ms) pairs, each key at its rate of :data:`FEED` on average."""
    out: list[tuple[str, int]] = []
    for i in range(KEYS):
        key = f"k:{i}"
        per_s, lo, hi = FEED.get(key, COLD)
        expected = per_s * TICK_S
        n = int(expected) + (rng.random() < expected - int(expected))
        out.extend((key, rng.randint(lo, hi)) for _ in range(n))
    rng.shuffle(out)
    return out


def test_limits_hold_through_a_worker_sigkill_storm(
    srv: EmbeddedServer,
    client: redis.Redis,
    ledger: Ledger,
    fleet_factory: Callable[..., Fleet],
    queue_name: str,
    figures: dict[str, Any],
) -> None:
    """17. Flow limits under a worker SIGKILL storm.

    200 keys with limits (each `k:*`: 5 starts per 1 s and 2 at once; `k:7` also 2 per 0.5 s and
    1 at once, `k:12` 1 at once, `k:42` 3 per 2 s; `k:19*` share 12 per 1 s). Once four workers
    (concurrency 16, lease 1 s) are up, keyed jobs are fed for 20 s (~360/s: 10 hot keys at
    5-7/s, 5 keys of 0.2-0.9 s jobs at 2-4/s, the rest at 1.5/s); every 3-4 s a random worker is
    SIGKILLed and a new one started. No job may be lost. Rate: every start counts, re-runs after
    a kill included (the engine charges them again). The engine's sliding log, copied every 0.1
    s, must never hold more than `rate` charges in any window of its period (Redis clock,
    exact). The same windows over the outside ledger are reported, not asserted: over the ms of
    each run's entry id (the take's XADD, which comes up to a few ms after its charge inside the
    script) and over the workers' start times (after the take-to-start delay); they look
    exceeded by those delays, shown next to them. Concurrency: never more than K runs of a key
    at once (start to end, from the ledger) except with a killed or fenced run among them.
    Window lateness: for a job's first take, when the rate window was the last thing it waited
    for (the moment it opened: the charge `rate` places earlier in the engine's log plus the
    period, the latest over its rules; its enqueue had returned and a slot was free for it by
    then, counting the key's runs admitted before it, FIFO), its start minus that moment; p99 <=
    50 ms."""
    seed = random.randrange(2**32)
    figures["seed"] = seed
    rng = random.Random(seed)
    set_limits(srv.url, queue_name, RULES)
    figures["rules"] = [r.label() for r in RULES]
    fleet = fleet_factory(
        srv.url,
        queue_name,
        concurrency=WORKER_CONCURRENCY,
        env={
            "STREAMQ_LEASE": str(LEASE_MS),
            "STREAMQ_MAX_STALLS": "1000",
            "STREAMQ_LOG_LEVEL": "warning",
        },
    )
    k = QueueKeys(queue_name)
    sampler = RlogSampler(srv.url, k.rlog, SAMPLE_S)
    try:
        workers = [fleet.start() for _ in range(WORKERS)]
        # Feed a running fleet: a backlog made while the workers boot would be admitted in
        # one burst, every key's window then opening at the same ms a period later (that
        # burst's lateness is the cold start's, not the steady feed's this scenario is about).
        wait_until(  # each worker's heartbeat: it is up and its groups exist
            lambda: client.hlen(k.workers) >= WORKERS or not all(w.alive for w in workers),
            30,
            "the workers to start",
        )
        assert all(w.alive for w in workers)
        key_of, accepted_at, kill_wall, fed_s = _feed_and_kill(
            srv.url, queue_name, ledger, fleet, rng
        )
        final = settle(client, queue_name, ledger.accepted)
        drain_s = time.monotonic() - fed_s
    finally:
        charges = sampler.stop()
    kstream_pel = int(client.xpending(k.kstream, GROUP)["pending"])
    fenced = fleet.lease_losses()
    check = verify_ledger(
        client,
        queue_name,
        ledger,
        interrupted_pids=fleet.interrupted,
        interrupted_jobs=fenced,
        final_states=final,
    )
    starts, open_runs = flow_starts(ledger, key_of, kill_wall, charges)
    engine = check_engine_log(charges, RULES)
    by_entry = check_ledger(starts, RULES, lambda s: s.entry_ms)
    by_start = check_ledger(starts, RULES, lambda s: s.start_ms)
    conc = check_concurrency(starts, RULES, set(fenced))
    finished = finished_ms(client, queue_name, ledger.accepted)
    lat = window_latency(starts, charges, RULES, accepted_at, key_of, finished)
    matched = [s for s in starts if s.charge_ms is not None]
    charged_runs = {(c.job_id, c.ms) for c in charges}
    recorded = {(s.run.job_id, s.charge_ms) for s in matched}
    first_runs = len({s.run.job_id for s in starts})
    figures.update(
        check.figures(),
        pel_after=pending_count(client, queue_name) + kstream_pel,
        faults=f"{len(kill_wall)} worker SIGKILLs",
        keys=len(set(key_of.values())),
        feed_per_s=round(len(ledger.accepted) / FEED_S),
        drain_s=round(drain_s, 1),
        starts=len(starts),
        reruns_after_kill=len(starts) - first_runs,
        killed_mid_run=sum(s.killed for s in starts),
        runs_without_end_unexplained=open_runs,
        fenced_in_live_workers=len(fenced),
        held_after=client.zcard(k.held),
        inflight_after=len(client.hgetall(k.inflight)),
        rate_limited_counter=int(client.hget(k.stats, "rate_limited") or 0),
        engine_log_samples=sampler.samples,
        engine_log_longest_gap_s=round(sampler.longest_gap_s, 3),
        charges_logged=len(charged_runs),
        charges_without_recorded_run=len(charged_runs - recorded),
        runs_without_logged_charge=len(starts) - len(matched),
        runs_handed_another_key=sum(s.run.key != s.key for s in starts),
        rate_engine_log=engine.figures(),
        rate_ledger_entry_ms=by_entry.figures(),
        rate_ledger_worker_start=by_start.figures(),
        entry_ms_after_charge_ms=summary([s.entry_ms - s.charge_ms for s in matched]),
        charge_to_start_ms=summary([s.start_ms - s.charge_ms for s in matched]),
        end_to_completion_ms=summary(
            [finished[s.run.job_id] - s.end * 1000 for s in starts if not s.killed and s.end]
        ),
        concurrency_max_seen=max(conc.max_seen.values(), default=0),
        concurrency_max_seen_k1_keys={
            key: n
            for key, n in conc.max_seen.items()
            if any(r.concurrency == 1 and r.matches(key) for r in RULES)
        },
        concurrency_violations=len(conc.violations),
        concurrency_over_k_with_killed_run=conc.over_with_killed,
        concurrency_over_k_with_fenced_run=conc.over_with_fenced,
        window_lateness_ms=summary(lat.samples),
        window_lateness_excluded={
            "enqueued_after_opening": lat.not_held_then,
            "slot_bound": lat.slot_bound,
            "killed_slot_bound": lat.dead_slot_bound,
            "reruns": lat.reruns,
        },
    )
    for name, found in (
        ("engine_log", engine),
        ("ledger_entry_ms", by_entry),
        ("ledger_worker_start", by_start),
    ):
        if found.violations:
            worst = sorted(found.violations, key=lambda v: -v["over_by_ms"])
            if name != "engine_log":  # apparent only (see the docstring): the worst one
                worst = [{k: v for k, v in worst[0].items() if k != "jobs"}]
            figures[f"rate_violations_{name}_worst"] = worst[:3]
    # Split by whether the window opened shortly after a kill (the tail comes from there).
    kills_ms = sorted(t * 1000 for t in kill_wall.values())

    def after_kill(at: float) -> bool:
        i = bisect.bisect_right(kills_ms, at)
        return i > 0 and at - kills_ms[i - 1] <= AFTER_KILL_MS

    figures["window_lateness_ms_after_kill"] = summary(
        [ms for ms, _, _, at in lat.detail if after_kill(at)]
    )
    figures["window_lateness_ms_steady"] = summary(
        [ms for ms, _, _, at in lat.detail if not after_kill(at)]
    )
    worst = lat.worst(3)
    for w in worst:  # a late start right after a kill points at the kill
        before = [
            w["opened_ms"] / 1000 - t for t in kill_wall.values() if t * 1000 <= w["opened_ms"]
        ]
        w["s_after_last_kill"] = round(min(before), 2) if before else None
    figures["window_lateness_worst"] = worst
    unmatched = [s for s in starts if s.charge_ms is None]
    if unmatched:  # what the engine's log holds of those jobs, to tell a miss from a bug
        by_job: dict[str, list[list[Any]]] = defaultdict(list)
        for c in charges:
            by_job[c.job_id].append([c.rule, c.ms])
        figures["runs_without_logged_charge_first"] = [
            {
                "job": s.run.job_id,
                "key": s.key,
                "attempt": s.run.attempt,
                "entry": s.run.entry_id,
                "pid": s.run.pid,
                "killed": s.killed,
                "handed_key": s.run.key,
                "charges_of_job": by_job.get(s.run.job_id, []),
                "other_runs": [
                    [o.run.entry_id, o.run.pid]
                    for o in starts
                    if o.run.job_id == s.run.job_id and o is not s
                ],
            }
            for s in unmatched[:5]
        ]
    if conc.violations:
        figures["concurrency_violations_first"] = conc.violations[:5]
    check.assert_exact()
    assert check.completed == len(ledger.accepted)
    assert kstream_pel == 0 and figures["held_after"] == 0 and figures["inflight_after"] == 0
    assert len(kill_wall) >= 4, "the storm was too short to prove anything"
    assert figures["killed_mid_run"] > 0, "no kill hit a running flow job"
    assert figures["runs_handed_another_key"] == 0  # "-": delivered as a plain job
    assert sampler.longest_gap_s * 1000 < min(r.period_ms or 10**9 for r in RULES)
    assert not engine.violations, f"rate exceeded: {engine.violations[:3]}"
    assert not conc.violations, f"concurrency exceeded: {conc.violations[:3]}"
    assert len(lat.samples) >= 100, "too few jobs waited on a window to measure"
    p99 = pct(lat.samples, 99)
    if os.environ.get(REPORT_ENV):
        # The report run (make chaos, a quiet host) holds the figures the docs quote. In
        # `make test` the two below are figures only: the latency is wall time on a shared
        # host (p99 went over 50 ms at load average 3+), and a charge the 0.1 s sampler of
        # the rate log did not see (1 start in ~7,000, in 2 of ~20 runs, cause not found yet)
        # leaves the rate check blind to that one start rather than proving a violation.
        assert figures["runs_without_logged_charge"] == 0
        assert p99 <= LATENCY_P99_MS, f"window opening to start p99 {p99:.1f} ms"


def _feed_and_kill(
    url: str, queue: str, ledger: Ledger, fleet: Fleet, rng: random.Random
) -> tuple[dict[str, str], dict[str, float], dict[int, float], float]:
    """Feed :func:`_key_mix` every tick for :data:`FEED_S` and SIGKILL a random worker
    (then start a new one) every 3-4 s. Returns each job's key and enqueue wall time,
    each killed pid's kill wall time, and the monotonic time the feed ended."""
    key_of: dict[str, str] = {}
    accepted_at: dict[str, float] = {}
    kill_wall: dict[int, float] = {}
    t0 = time.monotonic()
    next_kill = t0 + rng.uniform(3, 4)
    ticks = 0
    with streamq.Producer(url) as producer:
        while time.monotonic() - t0 < FEED_S:
            mix = _key_mix(rng)
            if mix:
                specs = [streamq.JobSpec("flow", {"ms": ms}, key=key) for key, ms in mix]
                res = producer.enqueue_many(queue, specs)
                now = time.time()
                ids = [r.job_id for r in res]
                ledger.accept(ids)
                for jid, (key, _) in zip(ids, mix, strict=True):
                    key_of[jid] = key
                    accepted_at[jid] = now
            if time.monotonic() >= next_kill:
                victim = fleet.kill_random(rng)
                kill_wall[victim.pid] = time.time()
                fleet.start()
                next_kill = time.monotonic() + rng.uniform(3, 4)
            ticks += 1
            time.sleep(max(0.0, t0 + ticks * TICK_S - time.monotonic()))  # feed pacing
    return key_of, accepted_at, kill_wall, time.monotonic()
