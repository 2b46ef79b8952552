"""What one worker knows of its queues' flow control, to decide when to take.

Flow jobs (a key or a priority) wait in Redis until a take (``take.lua``) admits them; a
worker takes when it has free slots and a queue may have work: after a wake-up entry (a
job was held, or a concurrency slot came back), while the last take left keys able to run,
and when the next rate window opens. Between those it blocks on its read as usual.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from streamq.protocol.keys import QueueKeys
from streamq.protocol.worker import Fetched, Taken

__all__ = ["FlowView"]


class FlowView:
    """Per queue: when to take next (monotonic seconds; ``inf``: not until woken), the
    wake-up entries read, and whether the plain stream had work (then takes share)."""

    def __init__(self, keys: Sequence[QueueKeys]) -> None:
        # At once: held jobs may be waiting from before this worker started.
        self.next: dict[str, float] = {k.queue: 0.0 for k in keys}
        self.wakeups: dict[str, list[str]] = {}
        self.top: dict[str, int] = {k.queue: -1 for k in keys}
        self.plain_busy: dict[str, bool] = {k.queue: False for k in keys}
        #: Queues that have shown flow work: an idle read's timeout re-checks them.
        self.seen: set[str] = set()
        self._lanes: dict[tuple[tuple[QueueKeys, ...], frozenset[str]], list[QueueKeys]] = {}

    def lanes(self, live: Sequence[QueueKeys], missing: set[str]) -> list[QueueKeys]:
        """What a read covers: the plain streams of ``live``, then their flow lanes (for
        wake-ups) except those ``missing`` (not created yet: a full Redis), built once per
        set of live queues."""
        at = (tuple(live), frozenset(missing))
        found = self._lanes.get(at)
        if found is None:
            flow = [k.flow_lane() for k in live if k.is_home and k.queue not in missing]
            found = self._lanes[at] = [*live, *flow]
        return found

    def later(self, queue: str, when: float) -> None:
        """Take from ``queue`` no sooner than ``when`` (monotonic seconds)."""
        self.next[queue] = when

    def due_queue(self, queue: str, now: float) -> bool:
        """Whether ``queue`` should be taken from now."""
        return self.next[queue] <= now

    def due(self, live: Sequence[QueueKeys], now: float) -> bool:
        """Whether any of ``live`` should be taken from now."""
        return any(self.next[k.queue] <= now for k in live)

    def next_in(self, live: Sequence[QueueKeys], now: float) -> float:
        """Seconds until the next take is due (``inf``: none is)."""
        return min((self.next[k.queue] - now for k in live), default=math.inf)

    def share(self, queue: str, free: int) -> int:
        """How many of ``free`` slots a take may fill: all, unless the plain stream has
        work too and no job above the default priority waits; then half, so neither
        starves the other (plain jobs are priority 0)."""
        if self.plain_busy[queue] and self.top[queue] < 1:
            return max(1, free // 2)
        return free

    def took(self, queue: str, taken: Taken, now: float) -> None:
        """Record a take's answer: take again at once while keys can run, at the next
        window opening, or when woken."""
        self.top[queue] = taken.top_priority
        if taken.fetched or taken.top_priority >= 0 or taken.opens_ms >= 0:
            self.seen.add(queue)
        if taken.top_priority >= 0:
            self.next[queue] = now
        elif taken.opens_ms >= 0:
            self.next[queue] = now + max(0, taken.opens_ms - taken.now_ms) / 1000
        else:
            self.next[queue] = math.inf

    def read(self, live: Sequence[QueueKeys], got: Sequence[Fetched], timed_out: bool) -> int:
        """Record a read and return how many of its entries (the last ones: the flow lanes
        are read after the plain streams) are wake-ups. A wake-up makes its queue due; a
        read that waited out its block re-checks the queues that have shown flow work.
        Per-job work only once this worker has seen flow work."""
        wakeups = 0
        while wakeups < len(got) and got[-1 - wakeups].wakeup:
            f = got[-1 - wakeups]
            self.wakeups.setdefault(f.queue, []).append(f.entry_id)
            self.seen.add(f.queue)
            self.next[f.queue] = 0.0
            wakeups += 1
        if self.seen:
            busy = {f.queue for f in got if not f.lane}
            for k in live:
                self.plain_busy[k.queue] = k.queue in busy
                if timed_out and k.queue in self.seen:
                    self.next[k.queue] = min(self.next[k.queue], 0.0)
        return wakeups
