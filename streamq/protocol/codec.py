"""JSON payloads (orjson only; never pickle) and the stream-entry format."""

from __future__ import annotations

import dataclasses
import math
import os
import time
from typing import Any, NamedTuple

import orjson

from streamq.errors import PayloadError

__all__ = ["Entry", "decode_entry", "encode_payload", "new_job_id", "new_job_ids"]

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

#: Random byte -> Crockford character of its low 5 bits (256 = 8 x 32: still uniform).
_RANDOM_CHAR = bytes(_CROCKFORD.encode()[b & 31] for b in range(256))

#: The time part of the last id: (ms, its 10 characters); it changes at most once per ms.
_last_time: tuple[int, str] = (-1, "")


def _time_chars(ms: int) -> str:
    global _last_time
    last_ms, chars = _last_time
    if ms != last_ms:
        # 10 chars = 50 bits, 2 leading zero bits, then the 48-bit ms timestamp.
        chars = "".join([_CROCKFORD[(ms >> shift) & 31] for shift in range(45, -5, -5)])
        _last_time = (ms, chars)  # one assignment: threads see an old pair or a new one
    return chars


def new_job_id() -> str:
    """A 26-character ULID-style id: 48-bit ms time + 80 random bits, sortable by creation."""
    # 16 random characters of 5 bits each: the 80 random bits, without big-int arithmetic.
    rand = os.urandom(16).translate(_RANDOM_CHAR).decode()
    return _time_chars(int(time.time() * 1000)) + rand


def new_job_ids(count: int) -> list[str]:
    """``count`` ids of :func:`new_job_id`'s form, with one ``os.urandom`` call for all
    (one system call per id was a third of preparing a batch's jobs)."""
    chars = os.urandom(16 * count).translate(_RANDOM_CHAR).decode()
    prefix = _time_chars(int(time.time() * 1000))
    return [prefix + chars[i : i + 16] for i in range(0, 16 * count, 16)]


def encode_payload(
    data: Any, max_bytes: int, *, what: str = "payload", job: str | None = None
) -> bytes:
    """Serialise ``data`` to JSON, refusing what JSON cannot carry or what is too large.
    Errors name ``what``, or "<what> of job <job>" when ``job`` (a job's name or id) is
    given: formatted only on error, as this runs for every enqueued and every finished job."""
    if data is None and max_bytes >= 4:  # a handler's usual result: nothing to encode or check
        return b"null"
    try:
        raw = orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS)
    except TypeError as exc:
        raise PayloadError(f"{_what(what, job)} is not JSON-serialisable: {exc}") from None
    if len(raw) > max_bytes:
        raise PayloadError(
            f"{_what(what, job)} is {len(raw)} bytes as JSON, over the limit of {max_bytes} "
            "bytes (STREAMQ_MAX_PAYLOAD_BYTES)"
        )
    # orjson writes NaN and +-Infinity as null, which would silently change the data. They
    # can only hide behind a null in the output, so the walk runs for those payloads alone.
    if b"null" in raw and (found := _non_finite(data, 0)) is not None:
        where = "".join(reversed(found[1:])) or "the top level"
        raise PayloadError(
            f"{_what(what, job)} holds {found[0]} at {where}: JSON has no NaN or Infinity "
            "(send null or a string instead)"
        )
    return raw


_PLAIN = (str, int, bool, type(None))


def _non_finite(value: Any, depth: int) -> list[str] | None:
    """Where ``value`` holds a NaN or infinite float: [its repr, path parts innermost
    first], or None. Paths are built only for the one found."""
    if type(value) in _PLAIN:
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else [repr(value)]
    if depth > 256:  # orjson refuses deeper nesting anyway
        return None
    if isinstance(value, dict):
        for k, v in value.items():
            if isinstance(k, float) and not math.isfinite(k):
                return [repr(k), f"[{k!r}] (the key itself)"]
            if (found := _non_finite(v, depth + 1)) is not None:
                found.append(f"[{k!r}]")
                return found
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            if (found := _non_finite(v, depth + 1)) is not None:
                found.append(f"[{i}]")
                return found
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):  # orjson writes dataclasses as objects
            if (found := _non_finite(getattr(value, f.name), depth + 1)) is not None:
                found.append(f".{f.name}")
                return found
    return None


def _what(what: str, job: str | None) -> str:
    return what if job is None else f"{what} of job {job!r}"


def decode_json(raw: bytes | str | None) -> Any:
    """Parse stored JSON; None stays None."""
    if raw is None or raw == b"" or raw == "":
        return None
    return orjson.loads(raw)


class Entry(NamedTuple):
    """A stream entry as a worker needs it: enough to run the job without another lookup.
    (A NamedTuple: built once per job, at a third of a frozen dataclass's cost.)"""

    entry_id: str
    job_id: str
    name: str
    data: bytes
    attempt: int
    options: bytes
    #: Flow control (entries of kstream): the job's key (None: none) and priority.
    key: str | None = None
    priority: int = 0


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
    return _entry_of(eid, fields)


def _entry_of(eid: str, f: dict[Any, Any]) -> Entry:
    """The general path of :func:`decode_entry`: any field order, a flow job's key ``k``
    and priority ``p`` (take.lua adds them) included."""
    try:
        job_id, name = f[b"i"].decode("utf-8"), f[b"n"].decode("utf-8")
        data, options, attempt = f[b"d"], f[b"o"], int(f[b"a"])
        key = f[b"k"].decode("utf-8") if b"k" in f else None
        priority = int(f.get(b"p", b"0"))
    except KeyError as exc:
        raise ValueError(f"missing field {exc.args[0]!r}") from None
    except (UnicodeDecodeError, ValueError, AttributeError, TypeError) as exc:
        raise ValueError(f"malformed field: {exc}") from None
    if not isinstance(data, bytes) or not isinstance(options, bytes):
        raise ValueError("payload and options must be bytes")
    if not job_id or not name or attempt < 1:
        raise ValueError("empty job id or name, or attempt < 1")
    return Entry(eid, job_id, name, data, attempt, options, key or None, priority)
