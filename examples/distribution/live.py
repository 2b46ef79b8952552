"""The demo's live view: each tracked job's transitions, read from the events streams.

Every state change a worker or producer makes to a job appends to its queue's capped
``sq:{Q}:events`` stream, in the same script (one entry per batch, field = job id, value =
``retrying``, ``completed``, ``failed`` or ``cancelled``). The view reads those streams
with ``XREAD`` from a cursor taken *before* the jobs are queued, so it shows every
transition, in order, however fast: a job that fails and completes again within a
millisecond shows both, where polling the job's state would see only where it ended.
Details (the error, the retry's due time, the result) come from the job's record, read
when its event arrives.

Starting and running are not events, so the view does not show them. Every
:data:`RECHECK_S` seconds it also re-reads the records of jobs it has not seen end, so an
end whose event was trimmed from the capped stream still shows.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis

from streamq import Job, JobState
from streamq.protocol.keys import QueueKeys

__all__ = ["RECHECK_S", "LiveView", "Tracked", "describe", "result_text", "short"]

#: How often (seconds) the view re-reads the records of jobs whose end it has not seen.
RECHECK_S = 5.0
_FINAL_EVENTS = frozenset({"completed", "failed", "cancelled"})


def short(text: str, width: int) -> str:
    """``text`` on one line, cut to ``width`` characters."""
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass
class Tracked:
    """One job the demo follows: where it is, what it is about, what happened last."""

    queue: str
    job_id: str
    kind: str
    subject: str
    expect: str
    job: Job | None = None  # the record as last read
    due_ms: int | None = None  # the due time it was queued with (scheduled jobs)
    failures: int = 0  # ``retrying`` events seen
    final: bool = False  # an end event (or an end state on re-check) seen


def result_text(job: Job, due_ms: int | None = None) -> str:
    """What a completed job produced, in a few words."""
    r = job.result
    if isinstance(r, dict):
        if "externalId" in r:
            return f"published as {r['externalId']}"
        if "firedAt" in r:
            if due_ms is not None and job.started_at_ms is not None:
                return f"fired {job.started_at_ms - due_ms} ms after its due time"
            return f"fired at {r['firedAt']}"
        if "expiresAt" in r:
            return f"token valid until {r['expiresAt']}"
    return "done"


def describe(job: Job | None, now_ms: int, due_ms: int | None = None) -> str:
    """One human line about a job's current state."""
    if job is None:
        return "scheduled, not fired yet"
    state, attempt = job.state, job.attempt
    if state is JobState.WAITING:
        return "waiting" if attempt == 0 else f"waiting for attempt {attempt + 1}"
    if state is JobState.ACTIVE:
        return f"running (attempt {attempt})"
    if state is JobState.DELAYED:
        due = job.due_at_ms or now_ms
        if attempt == 0:
            at = datetime.fromtimestamp(due / 1000, tz=UTC).astimezone()
            return f"delayed until {at:%H:%M:%S} (in {max(due - now_ms, 0) / 1000:.1f} s)"
        return (
            f"attempt {attempt} failed: {short(job.error or '?', 70)} "
            f"-> retry in {max(due - now_ms, 0) / 1000:.2f} s"
        )
    if state is JobState.COMPLETED:
        tries = f"{attempt} attempts" if attempt > 1 else "1 attempt"
        return f"COMPLETED after {tries}: {result_text(job, due_ms)}"
    if state is JobState.FAILED:
        return f"DEAD after {attempt} attempts, now in the DLQ: {short(job.error or '?', 70)}"
    if state is JobState.HELD:
        return f"held by flow control (key {job.key}): waiting for its turn or its limits"
    return "CANCELLED"


class LiveView:
    """Follows tracked jobs through their queues' events streams.

    ``client`` is a sync redis-py client of the queues' server; ``get_job(queue, job_id)``
    reads a record (e.g. ``Producer.get_job``); ``say`` prints a line. Call :meth:`start`
    before queueing the jobs (it fixes the cursors), :meth:`track` for each, then
    :meth:`pump` in a loop.
    """

    def __init__(
        self,
        client: redis.Redis,
        queues: Iterable[str],
        *,
        prefix: str,
        get_job: Callable[[str, str], Job | None],
        say: Callable[[str], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.get_job = get_job
        self.say = say
        self.clock = clock
        self._queue_of = {QueueKeys(q, prefix).events: q for q in queues}
        self._cursors: dict[str, str] = {}
        self._jobs: dict[tuple[str, str], Tracked] = {}
        self.tracked: list[Tracked] = []
        self._checked = clock()

    def start(self) -> None:
        """Take each events stream's newest entry id as the cursor: transitions from now
        on are shown, however long before the first :meth:`pump` they happen."""
        for key in self._queue_of:
            newest = self.client.xrevrange(key, "+", "-", count=1)
            self._cursors[key] = _s(newest[0][0]) if newest else "0-0"

    def track(self, t: Tracked) -> None:
        """Follow ``t`` (its events may already be in the stream)."""
        self.tracked.append(t)
        self._jobs[(t.queue, t.job_id)] = t

    @property
    def settled(self) -> bool:
        """Whether every tracked job has ended."""
        return all(t.final for t in self.tracked)

    def line(self, t: Tracked, text: str) -> None:
        """Say ``text`` about ``t``, in the view's columns."""
        self.say(f"{t.kind:<17} {short(t.subject, 26):<26} {text}")

    def pump(self, block_ms: int) -> None:
        """Show the transitions that arrived since the last call, waiting up to
        ``block_ms`` for the first one (keep it below the client's socket timeout)."""
        if not self._cursors:
            raise RuntimeError("LiveView.start() must come first")
        streams: dict[Any, Any] = dict(self._cursors)
        reply: Any = self.client.xread(streams, count=1000, block=max(1, block_ms))
        for key, entries in reply or []:
            name = _s(key)
            queue = self._queue_of[name]
            for eid, fields in entries:
                self._cursors[name] = _s(eid)
                for job_id, event in fields.items():
                    t = self._jobs.get((queue, _s(job_id)))
                    if t is not None and not t.final:
                        self._show(t, _s(event))
        if self.clock() - self._checked >= RECHECK_S:
            self.recheck()

    def recheck(self) -> None:
        """Re-read the records of jobs not seen ending; show the ends found."""
        self._checked = self.clock()
        for t in self.tracked:
            if t.final:
                continue
            job = self.get_job(t.queue, t.job_id)
            if job is not None and job.state.is_final:
                t.job, t.final = job, True
                self.line(t, describe(job, int(time.time() * 1000), t.due_ms))

    def _show(self, t: Tracked, event: str) -> None:
        job = self.get_job(t.queue, t.job_id)
        t.job = job
        now_ms = int(time.time() * 1000)
        if event == "retrying":
            t.failures += 1
            error = short((job.error if job is not None else None) or "?", 70)
            # The record may already be past this failure (a quick retry): then say only
            # that it was retried; the next event tells how that went.
            pending = (
                job is not None
                and job.state is JobState.DELAYED
                and job.attempt == t.failures
                and job.due_at_ms is not None
            )
            if pending and job is not None and job.due_at_ms is not None:
                then = f"retry in {max(job.due_at_ms - now_ms, 0) / 1000:.2f} s"
            else:
                then = "retried"
            self.line(t, f"attempt {t.failures} failed: {error} -> {then}")
        elif event in _FINAL_EVENTS:
            t.final = True
            if job is not None and job.state.is_final:
                self.line(t, describe(job, now_ms, t.due_ms))
            else:  # the record is gone (retention) or changed since: the event still holds
                self.line(t, event.upper())
