"""JSON payloads (orjson only; never pickle) and the stream-entry format."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

import orjson

from streamq.errors import PayloadError

__all__ = ["Entry", "decode_entry", "encode_payload", "new_job_id"]

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


#: Every 10-bit value as two Crockford characters: half the loop iterations per id.
_PAIRS = [a + b for a in _CROCKFORD for b in _CROCKFORD]


def new_job_id() -> str:
    """A 26-character ULID-style id: 48-bit ms time + 80 random bits, sortable by creation."""
    value = (int(time.time() * 1000) << 80) | int.from_bytes(os.urandom(10), "big")
    pairs = _PAIRS
    return "".join(
        [
            pairs[(value >> shift) & 1023]
            for shift in (120, 110, 100, 90, 80, 70, 60, 50, 40, 30, 20, 10, 0)
        ]
    )


def encode_payload(data: Any, max_bytes: int, *, what: str = "payload") -> bytes:
    """Serialise ``data`` to JSON, refusing what JSON cannot carry or what is too large."""
    try:
        raw = orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS)
    except TypeError as exc:
        raise PayloadError(f"{what} is not JSON-serialisable: {exc}") from None
    if len(raw) > max_bytes:
        raise PayloadError(
            f"{what} is {len(raw)} bytes as JSON, over the limit of {max_bytes} bytes "
            "(STREAMQ_MAX_PAYLOAD_BYTES)"
        )
    return raw


def decode_json(raw: bytes | str | None) -> Any:
    """Parse stored JSON; None stays None."""
    if raw is None or raw == b"" or raw == "":
        return None
    return orjson.loads(raw)


@dataclass(frozen=True, slots=True)
class Entry:
    """A stream entry as a worker needs it: enough to run the job without another lookup."""

    entry_id: str
    job_id: str
    name: str
    data: bytes
    attempt: int
    options: bytes


#: Field names of an entry in the order streamq writes them (XADD ... i n d a o).
_FIELD_ORDER = [b"i", b"n", b"d", b"a", b"o"]


def decode_entry(entry_id: bytes | str, fields: Any) -> Entry:
    """Validate a raw stream entry. Raises ``ValueError`` naming what is wrong.

    ``fields`` is the dict (or flat list) redis-py returns. Garbage XADDed by someone else
    lands here and is reported, never crashes the worker.
    """
    eid = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
    if type(fields) is list and len(fields) == 10 and fields[0::2] == _FIELD_ORDER:
        # The layout every streamq producer writes, read straight off the raw reply.
        job_id, name, data, attempt, options = fields[1::2]
        if (
            type(job_id) is bytes
            and type(name) is bytes
            and type(data) is bytes
            and type(attempt) is bytes
            and type(options) is bytes
            and job_id
            and name
        ):
            try:
                n = int(attempt)
                if n >= 1:
                    return Entry(eid, job_id.decode(), name.decode(), data, n, options)
            except (UnicodeDecodeError, ValueError):
                pass  # the general path below reports it
    if isinstance(fields, list | tuple):
        if len(fields) % 2:
            raise ValueError("odd number of fields")
        try:
            fields = dict(zip(fields[0::2], fields[1::2], strict=True))
        except TypeError as exc:  # an unhashable field name
            raise ValueError(f"malformed field names: {exc}") from None
    if not isinstance(fields, dict):
        raise ValueError("entry fields are not a mapping")
    try:
        job_id = fields[b"i"].decode("utf-8")
        name = fields[b"n"].decode("utf-8")
        data = fields[b"d"]
        attempt = int(fields[b"a"])
        options = fields[b"o"]
    except KeyError as exc:
        raise ValueError(f"missing field {exc.args[0]!r}") from None
    except (UnicodeDecodeError, ValueError, AttributeError, TypeError) as exc:
        raise ValueError(f"malformed field: {exc}") from None
    if not isinstance(data, bytes) or not isinstance(options, bytes):
        raise ValueError("payload and options must be bytes")
    if not job_id or not name or attempt < 1:
        raise ValueError("empty job id or name, or attempt < 1")
    return Entry(eid, job_id, name, data, attempt, options)
