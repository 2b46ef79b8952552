"""Codec: job ids, JSON payloads (orjson only, size limits), stream entries and the compact
job-options wire form. Pure functions, no server."""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from streamq import Backoff, ConfigError, JobOptions, PayloadError
from streamq.job import decode_options
from streamq.protocol.codec import (
    _CROCKFORD,
    Entry,
    decode_entry,
    decode_json,
    encode_payload,
    new_job_id,
    new_job_ids,
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=20,
)

# ---------------------------------------------------------------------------- job ids


def _decode_time(job_id: str) -> int:
    value = 0
    for ch in job_id[:10]:
        value = value * 32 + _CROCKFORD.index(ch)
    return value  # 10 chars = 50 bits: 2 leading zero bits, then the 48-bit ms timestamp


def test_job_ids_are_26_crockford_chars_and_unique() -> None:
    ids = [new_job_id() for _ in range(5000)]
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 26 and set(i) <= set(_CROCKFORD) for i in ids)


def test_batch_job_ids_have_the_same_form_and_are_unique() -> None:
    ids = new_job_ids(5000)
    assert len(ids) == len(set(ids)) == 5000
    assert all(len(i) == 26 and set(i) <= set(_CROCKFORD) for i in ids)
    assert abs(_decode_time(ids[0]) - int(time.time() * 1000)) < 60_000
    assert new_job_ids(0) == []


def test_job_ids_sort_by_creation_time(monkeypatch: pytest.MonkeyPatch) -> None:
    ms = [1_700_000_000_000]
    monkeypatch.setattr(time, "time", lambda: (ms[0] + 0.5) / 1000)
    ids = []
    for _ in range(50):
        ids.append(new_job_id())
        ms[0] += 1
    assert ids == sorted(ids)
    assert _decode_time(ids[0]) == 1_700_000_000_000
    assert _decode_time(ids[-1]) == 1_700_000_000_049


# ---------------------------------------------------------------------------- payloads


@hsettings(database=None, max_examples=200, deadline=None)
@given(json_values)
def test_any_json_value_round_trips(value: Any) -> None:
    raw = encode_payload(value, 10**7)
    assert decode_json(raw) == value


def test_payload_keys_may_be_ints_and_output_is_compact_utf8() -> None:
    assert encode_payload({1: "a"}, 100) == b'{"1":"a"}'
    assert encode_payload({"s": "é"}, 100) == '{"s":"é"}'.encode()


@pytest.mark.parametrize(
    "value",
    [{1, 2}, object(), b"bytes", 1 + 2j, 2**64, {"nested": [{"deep": object()}]}, {(1, 2): 3}],
    ids=["set", "object", "bytes", "complex", "huge-int", "nested", "tuple-key"],
)
def test_unserialisable_payloads_raise_payload_error(value: Any) -> None:
    with pytest.raises(PayloadError, match="payload of job 'x' is not JSON-serialisable"):
        encode_payload(value, 10_000, what="payload of job 'x'")


def test_the_size_limit_counts_encoded_bytes() -> None:
    assert len(encode_payload("é" * 49, 100)) == 100  # 98 bytes + 2 quotes: at the limit
    with pytest.raises(PayloadError, match="101 bytes as JSON, over the limit of 100 bytes"):
        encode_payload("é" * 49 + "a", 100)
    with pytest.raises(PayloadError, match="STREAMQ_MAX_PAYLOAD_BYTES"):
        encode_payload(list(range(1000)), 100)


def test_decode_json_treats_empty_as_none() -> None:
    assert decode_json(None) is None
    assert decode_json(b"") is None
    assert decode_json("") is None
    assert decode_json(b"null") is None
    assert decode_json(b'{"a":[1]}') == {"a": [1]}


# ---------------------------------------------------------------------------- entries


FIELDS = {b"i": b"job-1", b"n": b"dispatch", b"d": b'{"p":1}', b"a": b"2", b"o": b"[]"}


def test_decode_entry_reads_dicts_and_flat_lists() -> None:
    want = Entry("5-1", "job-1", "dispatch", b'{"p":1}', 2, b"[]")
    assert decode_entry(b"5-1", FIELDS) == want
    flat = [x for kv in FIELDS.items() for x in kv]
    assert decode_entry("5-1", flat) == want


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({k: v for k, v in FIELDS.items() if k != b"n"}, "missing field"),
        ({**FIELDS, b"a": b"two"}, "malformed field"),
        ({**FIELDS, b"a": b"0"}, "attempt < 1"),
        ({**FIELDS, b"i": b""}, "empty job id"),
        ({**FIELDS, b"n": b"\xff\xfe"}, "malformed field"),
        ([b"i", b"x", b"n"], "odd number of fields"),
        ("garbage", "not a mapping"),
        ({**FIELDS, b"a": None}, "malformed field"),
        ({**FIELDS, b"i": 17}, "malformed field"),
        ({**FIELDS, b"d": None}, "must be bytes"),
        ({**FIELDS, b"o": [b"x"]}, "must be bytes"),
        ([[b"i"], b"x"], "malformed field names"),
    ],
    ids=[
        "missing",
        "attempt-nan",
        "attempt-0",
        "empty-id",
        "bad-utf8",
        "odd",
        "not-mapping",
        "attempt-none",
        "id-int",
        "data-none",
        "options-list",
        "unhashable-name",
    ],
)
def test_decode_entry_names_what_is_wrong(fields: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        decode_entry(b"1-0", fields)
    if isinstance(fields, dict):
        # The same entry as the raw XREADGROUP reply gives it (a flat list in wire order),
        # which takes the worker's fast path first: it must fall back to the same report.
        flat = [x for kv in fields.items() for x in kv]
        with pytest.raises(ValueError, match=message):
            decode_entry(b"1-0", flat)


def test_the_fast_path_and_the_general_path_agree() -> None:
    flat = [x for kv in FIELDS.items() for x in kv]
    assert list(FIELDS) == [b"i", b"n", b"d", b"a", b"o"]  # the fast path's layout
    assert decode_entry(b"5-1", flat) == decode_entry(b"5-1", dict(FIELDS))
    # Another order, or an extra field, is still an entry: the general path reads it.
    shuffled = flat[2:] + flat[:2]
    assert decode_entry(b"5-1", shuffled) == decode_entry(b"5-1", dict(FIELDS))
    assert decode_entry(b"5-1", [*flat, b"x", b"extra"]).job_id == "job-1"


# ---------------------------------------------------------------------------- options


@hsettings(database=None, max_examples=200, deadline=None)
@given(
    st.integers(0, 100),
    st.sampled_from(["exponential", "fixed"]),
    st.integers(0, 10**8),
    st.floats(1.0, 100.0),
    st.floats(0.0, 1.0),
    st.integers(0, 10**8),
)
def test_job_options_round_trip(
    retries: int, kind: str, delay: int, factor: float, jitter: float, timeout: int
) -> None:
    opts = JobOptions(retries, Backoff(kind, delay, factor, jitter), timeout)
    assert JobOptions.decode(opts.encode()) == opts


def test_job_options_wire_form_is_compact() -> None:
    # The 7th item says which options the enqueuer set for the job (0: none of them).
    assert JobOptions(1, Backoff.fixed(10), 250).encode() == b'[1,"f",10,1.0,0.0,250,0]'
    assert JobOptions(3, Backoff(), 1, 4).encode() == b'[3,"e",5000,5.0,0.0,1,4]'
    assert JobOptions(3, Backoff(), 1).encode_legacy() == b'[3,"e",5000,5.0,0.0,1]'


def test_library_default_options_are_the_empty_string_and_decode_back() -> None:
    assert JobOptions().encode() == b""
    assert JobOptions(3, Backoff("exponential", 5000, 5, 0), 0).encode() == b""  # 5 == 5.0
    assert JobOptions.decode(b"") == JobOptions() == JobOptions.decode("")
    assert decode_options(b"") == JobOptions()


@pytest.mark.parametrize(
    "opts",
    [
        JobOptions(max_retries=2),
        JobOptions(timeout_ms=1),
        JobOptions(backoff=Backoff.exponential(5000, 5.0, jitter=0.1)),
        JobOptions(backoff=Backoff.exponential(5001)),
        JobOptions(backoff=Backoff.fixed(5000)),
    ],
    ids=["retries", "timeout", "jitter", "delay", "fixed"],
)
def test_options_differing_from_the_defaults_in_one_field_keep_their_wire_form(
    opts: JobOptions,
) -> None:
    raw = opts.encode()
    assert raw.startswith(b"[") and decode_options(raw) == opts


@pytest.mark.parametrize(
    "raw",
    [
        b"{}",
        b"[1,2]",
        b'[3,"x",5000,5.0,0.0,0]',
        b'[-1,"e",5000,5.0,0.0,0]',
        b"not json",
        b'[null,"e",5000,5.0,0.0,0]',
        b'[3,["e"],5000,5.0,0.0,0]',
        b'[3,"e","5000",5.0,0.0,0]',
        b'[3,"e",5000,true,0.0,0]',
        b'[3,"e",5000.5,5.0,0.0,0]',
        b'[3,"e",5000,5.0,0.0,{"t":1}]',
    ],
    ids=[
        "object",
        "short",
        "bad-kind",
        "negative-retries",
        "not-json",
        "null-retries",
        "list-kind",
        "string-delay",
        "bool-factor",
        "fractional-delay",
        "object-timeout",
    ],
)
def test_malformed_job_options_raise_value_error(raw: bytes) -> None:
    # ValueError (not ConfigError): a worker treats it as an undecodable job.
    with pytest.raises(ValueError) as info:
        JobOptions.decode(raw)
    assert not isinstance(info.value, ConfigError)
    assert isinstance(info.value, ValueError | orjson.JSONDecodeError)
