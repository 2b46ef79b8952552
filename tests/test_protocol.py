"""The protocol layer: Lua script loader and includes, the scripts' contract (headers, codes,
keys), the key schema, pure operation builders/parsers, and EVALSHA with reload on NOSCRIPT
(``SCRIPT FLUSH`` is invisible to callers, sync and async).
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import redis
from _producer_support import queue_keys
from redis.crc import key_slot

from streamq import (
    AsyncProducer,
    InvalidStateError,
    JobNotFoundError,
    JobState,
    Producer,
    RedisSettings,
    ScriptError,
    Settings,
    WaitTimeoutError,
)
from streamq.protocol import dlq, queues, scripts
from streamq.protocol import jobs as job_ops
from streamq.protocol.calls import Call, Code
from streamq.protocol.jobs import PreparedJob
from streamq.protocol.keys import GROUP, QueueKeys
from streamq.results import DeadEntry

LUA = Path(str(resources.files("streamq.protocol").joinpath("lua")))
SCRIPT_FILES = sorted(LUA.glob("*.lua"))
LIB_FILES = sorted((LUA / "lib").glob("*.lua"))


def strip_comments(src: str) -> str:
    src = re.sub(r"--\[\[.*?\]\]", "", src, flags=re.DOTALL)
    return re.sub(r"--[^\n]*", "", src)


def header(src: str) -> str:
    m = re.match(r"\s*--\[\[(.*?)\]\]", src, flags=re.DOTALL)
    assert m, "script does not open with a --[[ ]] header"
    return m.group(1)


# ---------------------------------------------------------------------------- loader


def test_every_lua_file_is_loaded_once_by_name_with_its_sha() -> None:
    lib = scripts.load_library()
    assert lib is scripts.load_library()  # read once, then reused
    assert lib.names() == [p.stem for p in SCRIPT_FILES]
    assert {"enqueue", "cancel", "move", "replay", "status", "get_job", "peek"} <= set(lib.names())
    for s in lib:
        assert s.sha == hashlib.sha1(s.source.encode()).hexdigest()
        assert "@include" not in s.source, f"{s.name}: unresolved include"
    assert len({s.sha for s in lib}) == len(lib.names())


def test_include_lines_are_well_formed() -> None:
    # A malformed include would stay behind as a plain Lua comment, and the helper it
    # should bring in would be missing at run time.
    for path in [*SCRIPT_FILES, *LIB_FILES]:
        for line in path.read_text().splitlines():
            if "@include" in line:
                assert scripts._INCLUDE.fullmatch(line), f"{path.name}: {line!r}"
                target = scripts._INCLUDE.fullmatch(line).group(1)  # type: ignore[union-attr]
                assert (LUA / target).is_file(), f"{path.name} includes missing {target}"


def test_every_helper_a_script_calls_is_pasted_in() -> None:
    helpers: dict[str, str] = {}
    for path in LIB_FILES:
        for name in re.findall(r"local function (\w+)", path.read_text()):
            helpers[name] = path.name
        for name in re.findall(r"local (CODE_\w+)\s*=", path.read_text()):
            helpers[name] = path.name
    assert helpers, "no helpers found in lua/lib"
    lib = scripts.load_library()
    for s in lib:
        body = strip_comments(s.source)
        for name in helpers:
            if re.search(rf"\b{name}\b", body):
                assert re.search(rf"local (function )?{name}\b", s.source), (
                    f"{s.name}.lua uses {name} without including lib/{helpers[name]}"
                )


@pytest.fixture
def fake_lua(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    files: dict[str, str] = {}

    def read(path: str) -> str:
        if path not in files:
            raise FileNotFoundError(f"Lua file not found: lua/{path}")
        return files[path]

    monkeypatch.setattr(scripts, "_read", read)
    yield files


def test_include_is_pasted_in_place(fake_lua: dict[str, str]) -> None:
    fake_lua["main.lua"] = 'local a = 1\n--- @include "lib/x.lua"\nreturn f()\n'
    fake_lua["lib/x.lua"] = "local function f() return 1 end\n"
    assert scripts.resolve("main.lua") == (
        "local a = 1\nlocal function f() return 1 end\n\nreturn f()\n"
    )


def test_an_include_reached_twice_is_pasted_once(fake_lua: dict[str, str]) -> None:
    fake_lua["main.lua"] = '--- @include "lib/a.lua"\n--- @include "lib/b.lua"\nreturn 1\n'
    fake_lua["lib/a.lua"] = '--- @include "lib/t.lua"\nlocal A = now()\n'
    fake_lua["lib/b.lua"] = '--- @include "lib/t.lua"\nlocal B = now()\n'
    fake_lua["lib/t.lua"] = "local function now() return 0 end\n"
    out = scripts.resolve("main.lua")
    assert out.count("local function now()") == 1
    assert out.index("local function now()") < out.index("local A") < out.index("local B")


def test_an_include_cycle_is_an_error(fake_lua: dict[str, str]) -> None:
    fake_lua["main.lua"] = '--- @include "lib/a.lua"\n'
    fake_lua["lib/a.lua"] = '--- @include "lib/b.lua"\n'
    fake_lua["lib/b.lua"] = '--- @include "main.lua"\n'
    chain = "cycle: main.lua -> lib/a.lua -> lib/b.lua -> main.lua"
    with pytest.raises(ValueError, match=re.escape(chain)):
        scripts.resolve("main.lua")
    fake_lua["self.lua"] = '--- @include "self.lua"\n'
    with pytest.raises(ValueError, match="cycle"):
        scripts.resolve("self.lua")


def test_a_missing_include_is_an_error(fake_lua: dict[str, str]) -> None:
    fake_lua["main.lua"] = '--- @include "lib/nope.lua"\n'
    with pytest.raises(FileNotFoundError, match=re.escape("lib/nope.lua")):
        scripts.resolve("main.lua")


def test_the_real_reader_refuses_missing_files() -> None:
    with pytest.raises(FileNotFoundError):
        scripts._read("lib/does-not-exist.lua")


# ---------------------------------------------------------------------------- contract


def test_lua_codes_match_the_python_code_enum() -> None:
    text = (LUA / "lib" / "codes.lua").read_text()
    lua = {name: int(v) for name, v in re.findall(r"local CODE_(\w+)\s*=\s*(-?\d+)", text)}
    assert lua, "no codes parsed from lib/codes.lua"
    assert lua == {c.name: c.value for c in Code}
    # Every code a script returns is defined there.
    used = {m for p in SCRIPT_FILES for m in re.findall(r"\bCODE_(\w+)", p.read_text())}
    assert used <= set(lua), used - set(lua)


@pytest.mark.parametrize("path", SCRIPT_FILES, ids=lambda p: p.stem)
def test_every_script_header_documents_its_keys_and_argv(path: Path) -> None:
    src = path.read_text()
    head = header(src)
    assert head.strip().startswith(f"{path.stem}:"), "header should start with the name"
    assert "Returns" in head, "header should say what the script returns"
    body = strip_comments(src)
    for kind in ("KEYS", "ARGV"):
        if re.search(rf"\b{kind}\b", body):
            assert kind in head, f"uses {kind} but the header does not list it"
        for n in sorted(set(re.findall(rf"\b{kind}\[(\d+)\]", body))):
            assert f"{kind}[{n}]" in head, f"{kind}[{n}] is used but not documented"


_CALL = re.compile(
    r"(?:redis\.p?call\(|pcall\(redis\.call,)\s*'(\w+)'(?:\s*,\s*([^,)]+))?(?:\s*,\s*([^,)]+))?"
)
_SUBCOMMANDS = {"XGROUP", "XINFO", "OBJECT"}  # the key comes after the subcommand
_KEYLESS = {"TIME"}


@pytest.mark.parametrize("path", SCRIPT_FILES, ids=lambda p: p.stem)
def test_scripts_take_every_key_from_keys(path: Path) -> None:
    # Cluster safety: a script names no key itself; each comes in KEYS (directly, or
    # through a local bound to KEYS[...] and never concatenated).
    body = re.sub(r"=\s*\n\s*", "= ", strip_comments(path.read_text()))  # join `x =\n  y`
    key_vars: set[str] = set()
    for cmd, first, second in _CALL.findall(body):
        if cmd in _KEYLESS:
            continue
        key = (second if cmd in _SUBCOMMANDS else first).strip()
        if cmd == "XREADGROUP":  # the keys follow STREAMS
            at = re.search(r"'XREADGROUP'[^)]*'STREAMS',\s*([^,)]+)", body)
            assert at, "XREADGROUP without STREAMS"
            key = at[1].strip()
        table = re.fullmatch(r"unpack\((\w+)", key)
        if table:
            # Many keys at once (DEL of a batch): a table whose every element is stored
            # straight from KEYS.
            stores = re.findall(rf"\b{table[1]}\[[^\]]*\]\s*=\s*([^\n]+)", body)
            assert stores, f"{cmd} on {key!r}: the table is never filled"
            for rhs in stores:
                assert rhs.strip().startswith("KEYS[") and ".." not in rhs, f"{cmd}: {rhs!r}"
            continue
        field = re.fullmatch(r"F\.(\w+)", key)
        if field:
            # The flow keys: a table built by lib/flow.lua's flow_keys(off) from KEYS only.
            assert re.search(r"\bF = flow_keys\(\d+\)", body), f"{cmd} on {key!r}: F unbound"
            assert field[1] in FLOW_FIELDS, f"{cmd} on {key!r}: not a flow key"
            continue
        assert re.fullmatch(r"KEYS\[[^\]]+\]|[A-Za-z_]\w*", key), f"{cmd} on {key!r}"
        if not key.startswith("KEYS"):
            key_vars.add(key)
    for var in key_vars:
        bindings = [
            line
            for line in body.splitlines()
            if re.match(rf"\s*(local\s+)?[\w\s,]*\b{var}\b[\w\s,]*=[^=]", line)
        ]
        assert bindings, f"{var} is used as a key but never bound"
        for line in bindings:
            rhs = line.split("=", 1)[1]
            assert "KEYS[" in rhs and ".." not in rhs, f"{var} bound by {line.strip()!r}"


def _flow_fields() -> set[str]:
    """The fields of lib/flow.lua's flow_keys table, each bound straight from KEYS."""
    src = strip_comments((LUA / "lib" / "flow.lua").read_text())
    body = src[src.index("local function flow_keys") :].split("end", 1)[0]
    pairs = re.findall(r"(\w+) = KEYS\[off(?: \+ \d+)?\]", body)
    assert len(pairs) == 9 and len(pairs) == body.count("="), body
    return set(pairs)


FLOW_FIELDS = _flow_fields()


def test_flow_keys_match_the_order_python_passes() -> None:
    src = strip_comments((LUA / "lib" / "flow.lua").read_text())
    body = src[src.index("local function flow_keys") :].split("end", 1)[0]
    order = [
        name
        for name, _ in sorted(
            ((n, int(o or 0)) for n, o in re.findall(r"(\w+) = KEYS\[off(?: \+ (\d+))?\]", body)),
            key=lambda p: p[1],
        )
    ]
    k = QueueKeys("q")
    attrs = {"data": "held_data", "hkeys": "held_keys"}
    assert [getattr(k, attrs.get(n, n)) for n in order] == k.flow_keys()


def _sample_calls(keys: QueueKeys) -> dict[str, Call[Any]]:
    job = PreparedJob("j1", "n", b"{}", b"[]")
    dead = DeadEntry("1-0", "j1", "n", None, 1, "", "", "", None)
    return {
        "enqueue": job_ops.enqueue(keys, [job]),
        "get_job": job_ops.get_job(keys, "j1"),
        "status": queues.status(keys),
        "cancel": job_ops.cancel(keys, "j1", 100),
        "move": job_ops.move(keys, "j1", 0, -1),
        "replay": dlq.replay_dead(keys, dead),
    }


def test_each_call_passes_as_many_keys_as_its_script_reads() -> None:
    keys = QueueKeys("q")
    for name, call in _sample_calls(keys).items():
        assert call.script == name
        body = strip_comments((LUA / f"{name}.lua").read_text())
        highest = max(int(n) for n in re.findall(r"\bKEYS\[(\d+)\]", body))
        for off in re.findall(r"\bF = flow_keys\((\d+)\)", body):
            highest = max(highest, int(off) + 8)
        # enqueue also reads KEYS[2 + j] for each of its (here: one) jobs.
        assert len(call.keys) == highest + (1 if name == "enqueue" else 0), name


def test_every_call_keeps_to_one_cluster_slot() -> None:
    keys = QueueKeys("distribution:dispatch", "myapp")
    for name, call in _sample_calls(keys).items():
        slots = {key_slot(k.encode()) for k in call.keys}
        assert slots == {key_slot(b"distribution:dispatch")}, name


def test_key_schema_carries_the_queue_as_hash_tag() -> None:
    k = QueueKeys("distribution:scheduled")
    assert k.stream == "sq:{distribution:scheduled}:stream"
    assert k.delayed == "sq:{distribution:scheduled}:delayed"
    assert k.job("abc") == "sq:{distribution:scheduled}:job:abc"
    assert k.completed == "sq:{distribution:scheduled}:completed"
    assert k.dead == "sq:{distribution:scheduled}:dead"
    assert k.events == "sq:{distribution:scheduled}:events"
    names = [k.stream, k.delayed, k.completed, k.failed, k.dead, k.events, k.stats, k.workers]
    assert len(set(names)) == len(names)
    assert len({key_slot(n.encode()) for n in [*names, k.job("x")]}) == 1
    assert QueueKeys("q", "other").stream == "other:{q}:stream"


def test_the_prefix_setting_is_used_for_every_key(
    redis_url: str, redis_client: redis.Redis, queue_name: str
) -> None:
    settings = Settings(redis=RedisSettings(url=redis_url), prefix="distrib")
    with Producer(settings=settings) as p:
        r = p.enqueue(queue_name, "dispatch", {})
        p.enqueue(queue_name, "dispatch", {}, delay=60)
        assert p.get_job(queue_name, r.job_id) is not None
    assert queue_keys(redis_client, queue_name) == []  # nothing under the default prefix
    found = queue_keys(redis_client, queue_name, prefix="distrib")
    assert f"distrib:{{{queue_name}}}:stream" in found
    assert f"distrib:{{{queue_name}}}:delayed" in found


# ---------------------------------------------------------------------------- pure ops


def test_parse_job_derives_active_from_the_pel() -> None:
    flat = [b"n", b"dispatch", b"d", b'{"a":1}', b"s", b"waiting", b"a", b"0", b"x", b"5-0"]
    waiting = job_ops.parse_job("q", "j", flat, [])
    assert waiting.state is JobState.WAITING and waiting.attempt == 0
    active = job_ops.parse_job("q", "j", flat, [b"worker-1", 1500, 2])
    assert active.state is JobState.ACTIVE and active.attempt == 1
    assert (active.worker, active.lease_idle_ms, active.deliveries) == ("worker-1", 1500, 2)
    assert active.data == {"a": 1}


def test_unknown_script_codes_raise_script_error() -> None:
    call = job_ops.cancel(QueueKeys("q"), "j", 10)
    call.parse([Code.OK, b"cancelled"])
    with pytest.raises(JobNotFoundError):
        call.parse([Code.MISSING, b""])
    with pytest.raises(InvalidStateError) as info:
        call.parse([Code.BAD_STATE, b"completed"])
    assert info.value.state == "completed"
    with pytest.raises(ScriptError):
        call.parse([42, b""])


def test_enqueue_parse_reports_created_and_existing() -> None:
    jobs = [PreparedJob("a", "n", b"1", b"[]"), PreparedJob("b", "n", b"2", b"[]", 5000)]
    call = job_ops.enqueue(QueueKeys("q"), jobs)
    assert call.keys[3:] == [QueueKeys("q").job("a"), QueueKeys("q").job("b")]
    # One item per job: new waiting -> entry id, new delayed -> due ms, existing -> [state].
    out = call.parse([b"7-0", [b"delayed"]])
    assert (out[0].created, out[0].state, out[0].entry_id) == (True, JobState.WAITING, "7-0")
    assert out[0].due_at_ms is None
    assert (out[1].created, out[1].state, out[1].due_at_ms) == (False, JobState.DELAYED, None)
    [later] = job_ops.enqueue(QueueKeys("q"), jobs[1:]).parse([1_900_000_000_000])
    assert (later.created, later.state, later.due_at_ms) == (True, JobState.DELAYED, 1.9e12)
    assert later.entry_id is None


def test_wait_flow_blocks_on_the_events_stream_until_the_job_ends() -> None:
    keys = QueueKeys("q")
    now = [100.0]
    flow = job_ops.wait_for(keys, "j1", 10.0, lambda: now[0])
    step = next(flow)
    assert isinstance(step, Call) and step.script == "peek"
    step = flow.send(("1-0", "waiting"))
    assert step.command is not None and step.command[0] == "XREAD"
    assert step.command[3:5] == ("BLOCK", 5000)  # block (capped), never a busy poll
    assert step.command[-2:] == (keys.events, "1-0")  # from where peek looked
    now[0] = 102.0
    other = [(keys.events.encode(), [(b"2-0", {b"other": b"completed"})])]
    step = flow.send(other)  # someone else's event: keep waiting, from 2-0
    assert step.command is not None and step.command[0] == "XREAD"
    assert step.command[-1] == "2-0"
    retrying = [(keys.events.encode(), [(b"3-0", {b"j1": b"retrying"})])]
    step = flow.send(retrying)  # not an end state
    assert step.command is not None and step.command[-1] == "3-0"
    mine = [(keys.events.encode(), [(b"4-0", {b"j1": b"completed"})])]
    step = flow.send(mine)
    assert isinstance(step, Call) and step.script == "get_job"


def test_wait_flow_never_blocks_past_its_deadline() -> None:
    now = [0.0]
    flow = job_ops.wait_for(QueueKeys("q"), "j1", 2.0, lambda: now[0])
    next(flow)
    step = flow.send(("0-0", "waiting"))
    assert step.command is not None and step.command[3:5] == ("BLOCK", 2000)
    now[0] = 1.5
    step = flow.send(None)
    assert step.command is not None and step.command[3:5] == ("BLOCK", 500)


def test_wait_flow_times_out_on_its_own_clock() -> None:
    now = [0.0]
    flow = job_ops.wait_for(QueueKeys("q"), "j1", 2.0, lambda: now[0])
    next(flow)
    flow.send(("0-0", "delayed"))
    now[0] = 2.01
    with pytest.raises(WaitTimeoutError):
        flow.send(None)


def test_wait_flow_rechecks_the_state_in_case_it_missed_the_end_event() -> None:
    # The events stream is capped (MAXLEN ~): under load a job's end event can be trimmed
    # before a slow waiter reads it. Re-reading the state bounds that to a few seconds.
    keys = QueueKeys("q")
    now = [0.0]
    flow = job_ops.wait_for(keys, "j1", 60.0, lambda: now[0])
    next(flow)
    flow.send(("1-0", "waiting"))
    now[0] = job_ops.WAIT_RECHECK_S
    step = flow.send(None)  # the block ran out, nothing seen
    assert isinstance(step, Call) and step.script == "peek"
    step = flow.send(("9-0", "waiting"))  # still running: block again from the newest event
    assert step.command is not None and step.command[-1] == "9-0"
    now[0] = 2 * job_ops.WAIT_RECHECK_S
    busy = [(keys.events.encode(), [(b"10-0", {b"other": b"completed"})])]
    step = flow.send(busy)  # a busy stream never times out: re-check by the clock as well
    assert isinstance(step, Call) and step.script == "peek"
    step = flow.send(("12-0", "completed"))
    assert isinstance(step, Call) and step.script == "get_job"


# ---------------------------------------------------------------------------- server side


def test_every_script_compiles_on_the_server_with_the_expected_sha(
    redis_client: redis.Redis,
) -> None:
    for s in scripts.load_library():
        assert redis_client.script_load(s.source) == s.sha, s.name


def _dead_entries(client: redis.Redis, keys: QueueKeys, n: int) -> list[str]:
    """DLQ entries shaped as fail.lua writes them (no worker needed)."""
    for i in range(n):
        client.xadd(
            keys.dead,
            {
                "i": f"dead-{i}",
                "n": "dispatch",
                "d": "{}",
                "o": '[3,"e",5000,5.0,0.0,0]',
                "a": "4",
                "e": "boom",
                "tb": "",
                "rs": "failed",
                "f": "1",
            },
        )
    return [f"dead-{i}" for i in range(n)]


def test_script_flush_is_invisible_to_sync_callers(
    redis_url: str, redis_client: redis.Redis, queue_name: str
) -> None:
    keys = QueueKeys(queue_name)
    sha = scripts.load_library()["enqueue"].sha
    with Producer(redis_url) as p:
        p.enqueue(queue_name, "dispatch", 1)
        redis_client.script_flush()
        assert redis_client.script_exists(sha) == [False]
        r = p.enqueue(queue_name, "dispatch", 2)  # NOSCRIPT -> load -> retry, unseen
        assert r.created
        assert redis_client.script_exists(sha) == [True]
        # Single calls, flows and pipelines alike.
        redis_client.script_flush()
        assert p.status(queue_name).waiting == 2
        job = p.get_job(queue_name, r.job_id)
        assert job is not None and job.data == 2
        ids = _dead_entries(redis_client, keys, 3)
        redis_client.script_flush()
        assert p.replay_all_dead(queue_name) == 3  # one pipeline of replay calls
        stream_ids = [f[b"i"].decode() for _, f in redis_client.xrange(keys.stream)]
        assert stream_ids[-3:] == ids


def test_script_flush_is_invisible_to_async_callers(
    redis_url: str, redis_client: redis.Redis, queue_name: str
) -> None:
    keys = QueueKeys(queue_name)

    async def main() -> None:
        async with AsyncProducer(redis_url) as p:
            await p.enqueue(queue_name, "dispatch", 1)
            redis_client.script_flush()
            r = await p.enqueue(queue_name, "dispatch", 2, delay=60)
            assert r.created and r.state is JobState.DELAYED
            redis_client.script_flush()
            await p.cancel(queue_name, r.job_id)
            redis_client.script_flush()
            assert (await p.status(queue_name)).waiting == 1
            _dead_entries(redis_client, keys, 2)
            redis_client.script_flush()
            assert await p.replay_all_dead(queue_name) == 2

    asyncio.run(main())
    assert redis_client.xlen(keys.stream) == 3


def test_enqueue_creates_the_consumer_group_from_the_start(
    redis_url: str, redis_client: redis.Redis, queue_name: str
) -> None:
    # A job enqueued before any worker exists must still be delivered to the group.
    keys = QueueKeys(queue_name)
    with Producer(redis_url) as p:
        r = p.enqueue(queue_name, "dispatch", {})
    [group] = redis_client.xinfo_groups(keys.stream)
    assert group["name"] == GROUP.encode()
    got = redis_client.xreadgroup(GROUP, "c1", {keys.stream: ">"}, count=10)
    assert got[0][1][0][1][b"i"].decode() == r.job_id
