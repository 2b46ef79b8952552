"""Flow-control limits and figures of a queue: store, remove and list :class:`Limit` rules,
set the priority mode, and read what operators see (held jobs, keys waiting on a limit,
busiest keys, running flow jobs, the rate-limited counter). Pure builders and parsers; the
drivers run them.

The layout (the :class:`QueueKeys` flow properties; every key under the queue's hash tag):

* ``sq:{Q}:limits`` hash: rule id (``each|<pattern>`` / ``shared|<pattern>``) -> JSON
  ``{"pattern", "shared", "rate", "period_ms", "concurrency"}``; absent fields are left
  out (never written as ``null``, which Lua's cjson reads as a true value).
* ``sq:{Q}:flow`` hash: ``mode`` (``strict`` | ``weighted``), ``turn``, ``seq``, ``wake``.
* ``sq:{Q}:held`` zset (lex), ``sq:{Q}:held:keys`` zset (key -> held jobs), ``sq:{Q}:ring``
  zset, ``sq:{Q}:blocked`` zset, ``sq:{Q}:full`` set, ``sq:{Q}:kstream`` stream (its PEL:
  running flow jobs), counter ``rate_limited`` of ``sq:{Q}:stats``.

Changing a limit runs ``reflow.lua`` in the same pipeline, so keys parked in ``blocked`` or
``full`` under the old limits are re-checked against the new ones at the next take (and
workers waiting for work are woken).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from streamq.errors import ConfigError
from streamq.limits import Limit, check_mode, rule_id
from streamq.protocol.calls import Call, Flow, raw, score_pairs
from streamq.protocol.calls import text as _s
from streamq.protocol.keys import GROUP, QueueKeys
from streamq.results import FlowStatus, JobEntry

__all__ = [
    "BUSIEST_KEYS",
    "FLOW_READS",
    "decode_limit",
    "encode_limit",
    "flow_reads",
    "flow_status",
    "held_entry",
    "held_range",
    "kstream_groups",
    "list_limits",
    "parse_flow_reads",
    "parse_kstream_group",
    "reflow",
    "remove_limit",
    "rule_id",
    "set_limit",
    "set_mode",
]

#: How many of the busiest keys the status shows.
BUSIEST_KEYS = 10


# ---------------------------------------------------------------------------- limits


def encode_limit(limit: Limit) -> bytes:
    """The stored JSON of a rule (absent parts left out)."""
    out: dict[str, Any] = {"pattern": limit.pattern, "shared": limit.shared}
    if limit.rate is not None:
        out["rate"] = limit.rate
        out["period_ms"] = limit.period_ms
    if limit.concurrency is not None:
        out["concurrency"] = limit.concurrency
    return orjson.dumps(out)


def decode_limit(value: bytes | str) -> Limit:
    """A stored rule as a :class:`Limit`; ConfigError when it is not a valid rule."""
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise ConfigError(f"stored limit is not JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"stored limit is not a JSON object: {_s(value)!r}")
    return Limit(
        pattern=doc.get("pattern"),  # type: ignore[arg-type]  # Limit checks the types
        rate=doc.get("rate"),
        period_ms=doc.get("period_ms"),
        concurrency=doc.get("concurrency"),
        shared=doc.get("shared", False),
    )


def _order(limit: Limit) -> tuple[str, bool]:
    return limit.pattern, limit.shared


def _parse_limits(reply: Any) -> list[Limit]:
    items: Mapping[Any, Any] = reply if isinstance(reply, Mapping) else {}
    if not isinstance(reply, Mapping):
        flat = list(reply or [])
        items = dict(zip(flat[::2], flat[1::2], strict=True))
    out = []
    for field, value in items.items():
        try:
            limit = decode_limit(value)
        except ConfigError:
            continue  # not written by streamq (set_limit validates): not a rule
        if limit.rule_id == _s(field):
            out.append(limit)
    return sorted(out, key=_order)


def reflow(keys: QueueKeys) -> Call[tuple[int, int, int]]:
    """Put every key waiting in ``blocked``/``full`` back into the ring (see reflow.lua):
    (moved from full, moved from blocked, left alone for want of a held job)."""

    def parse(r: Sequence[Any]) -> tuple[int, int, int]:
        return int(r[0]), int(r[1]), int(r[2])

    return Call("reflow", keys.flow_keys(), [], parse)


def set_limit(keys: QueueKeys, limit: Limit) -> list[Call[Any]]:
    """Store ``limit`` (replacing the rule of the same pattern and kind), then reflow; one
    pipeline. The first reply is True when the rule is new."""
    store = raw("HSET", keys.limits, limit.rule_id, encode_limit(limit), parse=lambda r: int(r) > 0)
    return [store, reflow(keys)]


def remove_limit(keys: QueueKeys, pattern: str, shared: bool) -> list[Call[Any]]:
    """Delete the rule, then reflow; one pipeline. The first reply is True when it existed."""
    drop = raw("HDEL", keys.limits, rule_id(pattern, shared), parse=lambda r: int(r) > 0)
    return [drop, reflow(keys)]


def list_limits(keys: QueueKeys) -> Call[list[Limit]]:
    """Every rule of the queue, by pattern (each before shared). A field that does not
    hold a valid rule (not written by streamq) is left out."""
    return raw("HGETALL", keys.limits, parse=_parse_limits)


def set_mode(keys: QueueKeys, mode: str) -> Call[str]:
    """Set the priority mode (``strict`` or ``weighted``); returns it."""
    checked = check_mode(mode)
    return raw("HSET", keys.flow, "mode", checked, parse=lambda _r: checked)


# ---------------------------------------------------------------------------- figures


def flow_reads(keys: QueueKeys, top: int = BUSIEST_KEYS) -> list[Call[Any]]:
    """The reads behind :class:`FlowStatus`, to send in a pipeline (with others, e.g. in
    :func:`~streamq.protocol.queues.queue_status`): every one answers on missing keys. The
    running count needs one more read when the kstream exists (see
    :func:`parse_kstream_group`)."""
    return [
        raw("ZCARD", keys.held),
        raw("ZCARD", keys.blocked),
        raw("SCARD", keys.full),
        raw("ZCARD", keys.ring),
        raw("ZREVRANGE", keys.held_keys, 0, top - 1, "WITHSCORES"),
        raw("HGET", keys.stats, "rate_limited"),
        raw("HGET", keys.flow, "mode"),
        raw("EXISTS", keys.kstream, parse=lambda r: int(r) > 0),
    ]


#: How many replies :func:`flow_reads` gives.
FLOW_READS = 8


def _count(value: Any) -> int:
    try:
        return max(int(float(_s(value))), 0) if value is not None else 0
    except (TypeError, ValueError, OverflowError):
        return 0


def parse_flow_reads(replies: Sequence[Any], running: int = 0) -> FlowStatus:
    """:class:`FlowStatus` from the replies of :func:`flow_reads`, with ``running`` (the
    PEL size of the kstream, 0 when it does not exist) read apart."""
    held, blocked, full, ready, busiest, rate_limited, mode, _kstream = replies
    mode_text = _s(mode) if mode is not None else "strict"
    return FlowStatus(
        held=_count(held),
        keys_rate_limited=_count(blocked),
        keys_at_concurrency=_count(full),
        keys_ready=_count(ready),
        running=running,
        busiest_keys=tuple((_s(k), _count(n)) for k, n in score_pairs(busiest)),
        rate_limited_total=_count(rate_limited),
        mode=mode_text,
    )


def kstream_groups(keys: QueueKeys) -> Call[Any]:
    """XINFO GROUPS of the kstream (only when it exists: a missing stream is an error)."""
    return raw("XINFO", "GROUPS", keys.kstream)


def parse_kstream_group(reply: Any) -> int:
    """The pending count (running flow jobs) of the streamq group in an XINFO GROUPS reply;
    0 without the group."""
    for item in reply or []:
        rec = (
            {_s(k): v for k, v in item.items()}
            if isinstance(item, Mapping)
            else {_s(item[i]): item[i + 1] for i in range(0, len(item), 2)}
        )
        if _s(rec.get("name", b"")) == GROUP:
            return _count(rec.get("pending"))
    return 0


def held_range(keys: QueueKeys, offset: int, limit: int) -> Call[list[Any]]:
    """Held members ``offset`` .. ``offset + limit - 1`` (all scores are 0: lex order, i.e.
    by key, then highest priority, then FIFO)."""
    return raw("ZRANGE", keys.held, offset, offset + limit - 1)


def held_entry(member: Any) -> JobEntry:
    """A held member ``<key>\\0<9-priority>\\0<seq>\\0<job id>`` as a listing row."""
    parts = _s(member).split("\0")
    if len(parts) != 4:
        return JobEntry("", "held", None)
    key, inverse, _seq, job_id = parts
    priority = 9 - int(inverse) if inverse.isdigit() else None
    return JobEntry(job_id, "held", None, key=key, priority=priority)


def flow_status(keys: QueueKeys, top: int = BUSIEST_KEYS) -> Flow[FlowStatus]:
    """:class:`FlowStatus` of one queue: one pipeline, and one more read when the kstream
    exists (a missing kstream counts 0 running, not an error)."""
    replies = yield flow_reads(keys, top)
    running = 0
    if replies[-1]:
        running = parse_kstream_group((yield kstream_groups(keys)))
    return parse_flow_reads(replies, running)
