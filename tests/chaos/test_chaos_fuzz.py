"""Scenario 8: malformed input, fuzzed with hypothesis.

* stream entries as they come off the wire (random field names and values, invalid UTF-8,
  numbers where text belongs and the reverse), fed to ``decode_entry``;
* the same garbage XADDed straight into the stream of a running in-process worker: every
  entry must end in the DLQ and the worker must stay up;
* the producer API with random JSON-ish and non-JSON payloads, sizes around the limit and
  random options: success (written exactly as given) or PayloadError / ConfigError with
  nothing written.
"""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson
import pytest
import redis
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

import streamq
from streamq.errors import ConfigError, PayloadError
from streamq.protocol.codec import Entry, decode_entry
from streamq.server import EmbeddedServer
from streamq.worker.app import App
from streamq.worker.runner import Worker
from tests._worker_support import settings as _settings  # hypothesis owns "settings"
from tests.chaos._chaos_support import Ledger, keys_of, pending_count, settle, verify_ledger
from tests.chaos.chaos_app import LEDGER_ENV
from tests.chaos.chaos_app import app as chaos_app

pytestmark = pytest.mark.chaos

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    # No shrinking: a failing example against a live worker costs a timeout per step.
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    database=None,
)
ENTRY_TIMEOUT_S = 3.0  # each garbage entry must reach the DLQ within this
MAX_PAYLOAD = 2048  # a small limit keeps near-limit payloads cheap

# ---------------------------------------------------------------------- strategies

FIELDS = (b"i", b"n", b"d", b"a", b"o")
VALID = {b"i": b"job-1", b"n": b"no-such-handler", b"d": b"{}", b"a": b"1"}
VALID_OPTIONS = b'[3,"e",5000,5.0,0.0,0]'

invalid_utf8 = st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"a\x80b", b"\xf8\x88"])
json_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=4),
)
# Options that parse as JSON but are wrong in shape or type: the decoder's hard cases.
json_options = st.lists(
    st.one_of(json_scalar, st.lists(json_scalar, max_size=2), st.sampled_from(["e", "f"])),
    min_size=4,
    max_size=7,
).map(orjson.dumps)
wire_value = st.one_of(
    st.binary(max_size=16),
    invalid_utf8,
    st.integers().map(lambda i: str(i).encode()),
    st.sampled_from([b"", b"0", b"-1", b"1.5", b"1e3", b" 2 ", b"null", b"[]", b"9" * 5000]),
    json_options,
    st.text(max_size=8).map(str.encode),
)
field_name = st.one_of(st.sampled_from(FIELDS), st.binary(min_size=1, max_size=6))


@st.composite
def garbage_entries(draw: st.DrawFn) -> list[tuple[bytes, bytes]]:
    """Field/value pairs of one stream entry: a valid entry with fields dropped, replaced
    or added, or pure noise. Pairs may repeat a field name (XADD allows it)."""
    if draw(st.booleans()):
        base = {**VALID, b"o": VALID_OPTIONS}
        for name in FIELDS:
            choice = draw(st.sampled_from(["keep", "keep", "drop", "garbage"]))
            if choice == "drop":
                base.pop(name)
            elif choice == "garbage":
                base[name] = draw(wire_value)
        pairs = list(base.items())
        pairs += draw(st.lists(st.tuples(field_name, wire_value), max_size=2))
    else:
        pairs = draw(st.lists(st.tuples(field_name, wire_value), min_size=1, max_size=6))
    return pairs or [(b"x", b"y")]


def _wire_fields(pairs: list[tuple[bytes, bytes]]) -> dict[bytes, bytes]:
    return dict(pairs)  # what redis-py hands the worker: the last value of a name wins


# ---------------------------------------------------------------------- decode_entry


def test_decode_entry_on_wire_garbage_returns_an_entry_or_raises_value_error(
    figures: dict[str, Any],
) -> None:
    """8a. Fuzzed wire entries into decode_entry.

    Random stream entries as redis-py returns them (bytes names and values, as a dict or
    a flat list: valid entries with fields dropped or replaced, invalid UTF-8, numbers
    where text belongs, pure noise) must give an Entry or ValueError, nothing else."""
    outcomes: Counter[str] = Counter()

    @FUZZ
    @given(pairs=garbage_entries(), as_list=st.booleans())
    @example(pairs=[(b"i", b"x"), (b"n", b"n"), (b"d", b"1"), (b"a", b"\xff")], as_list=False)
    def decode(pairs: list[tuple[bytes, bytes]], as_list: bool) -> None:
        fields: Any = [x for pair in pairs for x in pair] if as_list else _wire_fields(pairs)
        try:
            entry = decode_entry(b"1-1", fields)
        except ValueError:
            outcomes["ValueError"] += 1
            return
        outcomes["Entry"] += 1
        assert isinstance(entry, Entry)
        assert entry.job_id and entry.name and entry.attempt >= 1

    decode()
    figures.update(faults="random wire entries", examples=sum(outcomes.values()), **outcomes)
    assert outcomes["ValueError"] and outcomes["Entry"]


def test_decode_entry_on_wrong_python_types_raises_value_error(
    figures: dict[str, Any],
) -> None:
    """8a'. Wrong Python types into decode_entry.

    decode_entry called with values of the wrong Python types (None, numbers, lists where
    bytes belong; unhashable names in a flat list) must raise ValueError, not crash."""
    outcomes: Counter[str] = Counter()
    odd = st.one_of(st.none(), st.integers(), st.floats(), st.lists(st.binary(), max_size=2))

    @FUZZ
    @given(
        fields=st.one_of(
            st.dictionaries(st.sampled_from(FIELDS), st.one_of(wire_value, odd), min_size=5),
            st.lists(st.one_of(st.sampled_from(FIELDS), wire_value, odd), max_size=10),
            odd,
        )
    )
    @example(fields={**VALID, b"a": None, b"o": b""})
    def decode(fields: Any) -> None:
        try:
            decode_entry(b"1-1", fields)
        except ValueError:
            outcomes["ValueError"] += 1
            return
        outcomes["Entry"] += 1

    figures.update(faults="wrong Python types")
    decode()
    figures.update(examples=sum(outcomes.values()), **outcomes)


# ---------------------------------------------------------------------- running worker


@contextmanager
def _worker_thread(worker: Worker) -> Iterator[threading.Thread]:
    """Run ``worker`` in its own event loop in a thread; stop it on the way out."""
    loop = asyncio.new_event_loop()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            loop.run_until_complete(worker.run())
        except BaseException as exc:
            errors.append(exc)
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield thread
    finally:
        if not loop.is_closed():
            loop.call_soon_threadsafe(worker.stop)
        thread.join(20)
        # Finalise the worker's dead tasks now: on Python 3.11 a task finalised later, in a
        # GC pass inside pytest's own ast.parse, would log a traceback whose formatting
        # re-enters the parser ("AST constructor recursion depth mismatch").
        gc.collect()
        assert not thread.is_alive(), "the worker did not stop"
        assert not errors, f"the worker crashed: {errors[0]!r}"


def test_garbage_entries_xadded_to_a_running_worker_all_end_in_the_dlq(
    srv: EmbeddedServer,
    client: redis.Redis,
    queue_name: str,
    figures: dict[str, Any],
) -> None:
    """8b. Garbage entries into a running worker.

    Fuzzed stream entries XADDed straight into the stream of a running in-process worker
    (which has no handlers): each must reach the DLQ within 3 s, as the undecodable or
    unhandled job it is, and the worker must keep running."""
    k = keys_of(queue_name)
    worker = Worker(App(), [queue_name], settings=_settings(srv.url, lease_ms=1000))
    fed: list[str] = []
    figures.update(faults="garbage stream entries", jobs=0, lost=0)
    with _worker_thread(worker) as thread:

        @FUZZ
        @given(pairs=garbage_entries())
        @example(pairs=[*VALID.items(), (b"o", b'[null,"f",1,1,0,0]')])
        def feed(pairs: list[tuple[bytes, bytes]]) -> None:
            before = client.xlen(k.dead)
            flat = [x for pair in pairs for x in pair]
            fed.append(client.execute_command("XADD", k.stream, "*", *flat).decode())
            figures["jobs"] = len(fed)
            deadline = time.monotonic() + ENTRY_TIMEOUT_S
            while client.xlen(k.dead) == before or pending_count(client, queue_name):
                if time.monotonic() >= deadline:
                    figures["lost"] += 1
                    raise AssertionError(f"entry {fed[-1]} {pairs!r} did not reach the DLQ")
                time.sleep(0.005)
            assert client.xlen(k.dead) == before + 1
            assert thread.is_alive(), "the worker died"

        try:
            client.xgroup_create(k.stream, "streamq", id="0", mkstream=True)
        except redis.ResponseError as exc:  # the worker, starting beside us, made it first
            if "BUSYGROUP" not in str(exc):
                raise
        feed()
    dead = client.xrange(k.dead)
    reasons = Counter(f.get(b"rs", b"").decode() for _, f in dead)
    figures.update(
        dlq_entries=len(dead),
        dlq_reasons=dict(reasons),
        pel_after=pending_count(client, queue_name),
        stream_after=client.xlen(k.stream),
    )
    assert len(dead) == len(fed)
    assert set(reasons) <= {"undecodable", "no-handler"}
    assert figures["pel_after"] == 0 and figures["stream_after"] == 0


# ---------------------------------------------------------------------- producer API


class _NotJson:
    pass


non_json = st.sampled_from(
    [{1, 2}, frozenset(), b"bytes", bytearray(b"x"), 1 + 2j, _NotJson(), range(3), ...]
)
json_like = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**70), 2**70),  # beyond 64 bits is not JSON-able by orjson
        st.floats(),
        st.text(max_size=20),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.text(max_size=5), st.integers(-9, 9)), inner, max_size=4),
    ),
    max_leaves=12,
)
payload = st.one_of(
    json_like,
    non_json,
    st.lists(st.one_of(json_like, non_json), max_size=3),
    st.dictionaries(st.tuples(st.integers(), st.integers()), st.none(), min_size=1, max_size=1),
    st.integers(MAX_PAYLOAD - 40, MAX_PAYLOAD + 10).map(lambda n: "x" * n),  # near the limit
    st.integers(MAX_PAYLOAD - 40, MAX_PAYLOAD + 10).map(lambda n: {"k": "é" * (n // 2)}),
)


def _mostly(common: st.SearchStrategy[Any], *rare: st.SearchStrategy[Any]) -> Any:
    """``common`` nine times out of ten, else one of ``rare``."""
    return st.integers(0, 9).flatmap(lambda i: common if i else st.one_of(*rare))


# Mostly valid names, ids and options, so most batches reach Redis and the payload decides.
spec = st.builds(
    streamq.JobSpec,
    name=_mostly(st.just("echo"), st.text(max_size=8), st.just("n" * 201)),
    data=payload,
    job_id=_mostly(st.none(), st.text(max_size=12), st.sampled_from(["a" * 201, "ok-1"])),
    delay=_mostly(st.none(), st.floats(-1, 1), st.just(float("nan"))),
    max_retries=_mostly(st.none(), st.integers(-2, 5)),
    timeout=_mostly(st.none(), st.floats(-1, 5), st.sampled_from([float("nan"), float("inf")])),
)


def _snapshot(client: redis.Redis, queue: str) -> tuple[int, int, int]:
    k = keys_of(queue)
    return client.dbsize(), client.xlen(k.stream), client.zcard(k.delayed)


def test_producer_accepts_or_refuses_cleanly_and_never_half_writes(
    srv: EmbeddedServer,
    client: redis.Redis,
    ledger: Ledger,
    queue_name: str,
    figures: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """8c. Producer API fuzz.

    Batches of 1-2 jobs with random JSON-ish and non-JSON
    payloads, sizes around the 2 KiB limit, random names, ids and options. enqueue_many
    must succeed (each job stored exactly as given) or raise PayloadError / ConfigError
    with nothing written; then a worker must bring every accepted job to an end state."""
    monkeypatch.setenv(LEDGER_ENV, str(ledger.directory))
    # Fast retries, so a failing "echo" job dies within the settle deadline.
    s = _settings(srv.url, max_payload_bytes=MAX_PAYLOAD, backoff_type="fixed", backoff_delay_ms=10)
    outcomes: Counter[str] = Counter()
    k = keys_of(queue_name)
    figures.update(faults="random payloads and options", refused=0)
    with streamq.Producer(settings=s) as producer:

        @FUZZ
        @given(specs=st.lists(spec, min_size=1, max_size=2))
        @example(specs=[streamq.JobSpec("work", None, timeout=float("nan"))])
        def enqueue(specs: list[streamq.JobSpec]) -> None:
            before = _snapshot(client, queue_name)
            try:
                results = producer.enqueue_many(queue_name, specs)
            except (PayloadError, ConfigError) as exc:
                outcomes[type(exc).__name__] += 1
                figures["refused"] = outcomes["PayloadError"] + outcomes["ConfigError"]
                assert _snapshot(client, queue_name) == before, "a refused batch wrote"
                return
            new = [r.job_id for r in results if r.created]
            outcomes["accepted"] += len(new)
            outcomes["existing"] += len(results) - len(new)
            ledger.accept(new)
            for sp, r in zip(specs, results, strict=True):
                if not r.created:
                    continue
                rec = client.hgetall(k.job(r.job_id))
                assert rec[b"n"] == sp.name.encode()
                want = orjson.dumps(sp.data, option=orjson.OPT_NON_STR_KEYS)
                assert rec[b"d"] == want

        enqueue()
    figures.update(outcomes=dict(outcomes), jobs=len(ledger.accepted))
    # Every accepted job ends: "echo" jobs complete, other names die as unhandled.
    worker = Worker(chaos_app, [queue_name], settings=_settings(srv.url, lease_ms=1000))
    with _worker_thread(worker):
        final = settle(client, queue_name, ledger.accepted, timeout=20)
    check = verify_ledger(client, queue_name, ledger, final_states=final)
    figures.update(check.figures())
    check.assert_exact()
    assert outcomes["accepted"] and outcomes["PayloadError"] and outcomes["ConfigError"]
