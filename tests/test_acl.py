"""The least-privilege ACL user shipped (commented) in redis.conf.

* Statically: every command streamq sends — from Python and from inside the Lua scripts,
  which run with the caller's ACL — is granted by name, and nothing dangerous is.
* Live, on each server kind: a server loads the shipped line (with a random password) from
  its config file, and the whole core path runs as that user — producer, worker (retries,
  DLQ, delayed job, schedule tick, pause, heartbeat, metrics), admin, CLI, web app — while
  the ACL log shows that nothing streamq sent was refused (except the one ``CONFIG GET``
  the worker tolerates). The user cannot touch keys outside ``sq:`` nor run admin commands,
  not even from a Lua script.
"""

from __future__ import annotations

import ast
import contextlib
import re
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import redis
from _producer_support import WorkerThread, run_burst, wait_until
from starlette.testclient import TestClient

from streamq import (
    AsyncProducer,
    Backoff,
    JobSpec,
    JobState,
    Producer,
    RedisSettings,
    Settings,
    StreamQError,
)
from streamq.admin import LIST_STATES, Admin
from streamq.cli import main as cli_main
from streamq.job import Job
from streamq.protocol.keys import QueueKeys
from streamq.server import EmbeddedServer
from streamq.web import create_app
from streamq.worker import App

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "streamq" / "redis.conf"
LUA = ROOT / "streamq" / "protocol" / "lua"
USER = "streamq"
TOKEN = "acl-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

#: The commented user line in redis.conf (its rules follow "user streamq").
_USER_LINE = re.compile(r"^# (user streamq .*)$", re.MULTILINE)
#: Rules Redis 7.0/7.1 do not know (the comment above the line says to drop them there).
NEWER_SERVERS_ONLY = ("+waitaof", "+client|setinfo")
#: Commands with subcommands: the ACL grants them per subcommand.
_CONTAINERS = {"xgroup", "xinfo", "script", "client", "config", "object", "memory", "acl"}
#: What redis-py sends on its own: the connection handshake and health checks.
CLIENT_HANDSHAKE = {"hello", "auth", "select", "ping", "client|setname", "client|setinfo"}
#: Denied on purpose and tolerated by the worker (it would reveal requirepass); and UNLINK,
#: sent only by the pytest plugin's namespace cleanup (streamq/protocol/testing.py) on a
#: test server, never by the engine as the least-privilege user.
TOLERATED_DENIALS = {"config|get", "unlink"}
#: Never granted to the streamq user.
FORBIDDEN = {
    "flushall",
    "flushdb",
    "keys",
    "debug",
    "config|set",
    "config|get",
    "config|rewrite",
    "script|flush",
    "script|kill",
    "shutdown",
    "acl",
    "monitor",
    "module",
    "eval",
    "eval_ro",
    "function",
    "fcall",
    "client|kill",
    "client|list",
    "migrate",
    "restore",
    "replicaof",
    "slaveof",
    "sync",
    "psync",
    "save",
    "bgsave",
    "bgrewriteaof",
    "publish",
    "subscribe",
    "psubscribe",
    "swapdb",
    "move",
    "copy",
    "rename",
}


# ---------------------------------------------------------------------------- the line


def shipped_line() -> str:
    """``user streamq ...`` as shipped (commented out) in redis.conf."""
    found = _USER_LINE.findall(CONF.read_text("utf-8"))
    assert len(found) == 1, f"redis.conf must carry exactly one '# user streamq' line: {found}"
    line: str = found[0]
    return line


def grants(line: str) -> set[str]:
    """The commands a line grants by name (``+xgroup|create`` -> ``xgroup|create``)."""
    return {tok[1:].lower() for tok in line.split() if tok.startswith("+")}


def line_for(server: EmbeddedServer, password: str) -> str:
    """The shipped line with ``password``, adapted to the server as the comment says."""
    rules = shipped_line().split()
    assert ">change-me" in rules, "the shipped line must carry the >change-me placeholder"
    rules = [f">{password}" if r == ">change-me" else r for r in rules]
    if not server.is_valkey and server.version < (7, 2):
        rules = [r for r in rules if r not in NEWER_SERVERS_ONLY]
    return " ".join(rules)


def commands_in_lua() -> set[str]:
    """Every command the Lua scripts call (``redis.call``/``pcall``), with subcommands."""
    pattern = re.compile(
        r"(?:redis\.p?call\(|pcall\(\s*redis\.call\s*,)\s*'([A-Za-z]+)'(?:\s*,\s*'([A-Za-z]+)')?"
    )
    found: set[str] = set()
    for path in sorted(LUA.rglob("*.lua")):
        text = path.read_text("utf-8")
        calls = re.findall(r"redis\.p?call\b", text)
        matches = pattern.findall(text)
        # A call with a computed command name would escape this check: refuse it.
        assert len(matches) == len(calls), f"{path.name}: a redis.call without a literal name"
        for cmd, sub in matches:
            name = cmd.lower()
            found.add(f"{name}|{sub.lower()}" if name in _CONTAINERS and sub else name)
    return found


#: Upper-case option words that open a tuple of arguments, not a command.
_OPTION_WORDS = {"block", "count", "streams", "withscores", "limit"}


def _literal_command(elts: list[ast.expr]) -> str | None:
    """``"XGROUP", "CREATE", ...`` -> ``xgroup|create``; None unless it starts with a
    command-like literal (upper-case letters)."""
    if not elts or not isinstance(elts[0], ast.Constant) or not isinstance(elts[0].value, str):
        return None
    if not re.fullmatch(r"[A-Z]+", elts[0].value):
        return None
    name = elts[0].value.lower()
    if name in _OPTION_WORDS:  # ("BLOCK", ms) spliced into an XREADGROUP: an argument
        return None
    if name in _CONTAINERS and len(elts) > 1 and isinstance(elts[1], ast.Constant):
        return f"{name}|{str(elts[1].value).lower()}"
    return name


def commands_in_python() -> set[str]:
    """Every command streamq's Python code spells out: ``raw("X", ...)``,
    ``execute_command("X", ...)``, ``on_every_master("X", ...)`` and command tuples
    ``("X", key, ...)``; plus redis-py's ``config_get``. Left out: the launcher
    (streamq/server/, it runs as the admin) and the CLI's table headers (cli.py sends
    through Admin/Producer)."""
    found: set[str] = set()
    for path in sorted((ROOT / "streamq").rglob("*.py")):
        if path.parent.name == "server" or path.name == "cli.py":
            continue
        tree = ast.parse(path.read_text("utf-8"))
        # Tuples handed to str.startswith (error codes such as "NOAUTH") are no commands.
        prefixes = {
            id(arg)
            for node in ast.walk(tree)
            if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("startswith", "endswith")
            for arg in node.args
        }
        for node in ast.walk(tree):
            cmd = None
            if isinstance(node, ast.Tuple) and id(node) not in prefixes:
                cmd = _literal_command(list(node.elts))
            elif isinstance(node, ast.IfExp):  # order = "ZRANGE" if ... else "ZREVRANGE"
                for branch in (node.body, node.orelse):
                    found.add(_literal_command([branch]) or "")
            elif isinstance(node, ast.Call):
                func = node.func
                fname = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
                if fname in ("raw", "execute_command", "on_every_master"):
                    cmd = _literal_command(list(node.args))
                elif fname == "config_get":
                    cmd = "config|get"
            if cmd is not None:
                found.add(cmd)
    return found - {""}


def test_the_line_grants_every_command_streamq_sends() -> None:
    lua, python = commands_in_lua(), commands_in_python()
    # The scan found what it must (so it cannot pass by finding nothing).
    assert {"xadd", "xautoclaim", "hincrby", "zadd", "time"} <= lua
    assert {"evalsha", "script|load", "xreadgroup", "xgroup|create", "waitaof", "info"} <= python
    granted = grants(shipped_line())
    missing = (lua | python | CLIENT_HANDSHAKE) - granted - TOLERATED_DENIALS
    assert not missing, f"redis.conf's streamq user lacks: {sorted(missing)}"
    unused = granted - lua - python - CLIENT_HANDSHAKE - {"hlen"}  # hlen: the demo's probe
    assert not unused, f"granted but never sent (least privilege): {sorted(unused)}"


def test_the_line_is_least_privilege() -> None:
    line = shipped_line()
    rules = line.split()
    assert rules[:3] == ["user", USER, "on"]
    assert [r for r in rules if r.startswith(("~", "%"))] == ["~sq:*"], "keys sq:* only"
    assert "resetchannels" in rules and not [r for r in rules if r.startswith("&")]
    for bad in ("allkeys", "allcommands", "allchannels", "nopass", "+@all"):
        assert bad not in rules
    assert not [r for r in rules if r.startswith("+@")], "grant commands by name, not category"
    first_grant = next(i for i, r in enumerate(rules) if r.startswith("+"))
    assert "-@all" in rules[:first_grant], "-@all must come before the grants"
    granted = grants(line)
    too_much = {g for g in granted if g in FORBIDDEN or g.split("|")[0] in FORBIDDEN}
    assert not too_much, f"dangerous grants: {sorted(too_much)}"
    # The recipe for Redis 7.0/7.1 in the comment names exactly what line_for() drops.
    comment = CONF.read_text("utf-8").split(f"# {line}")[0].rsplit("\n\n", 1)[-1]
    for rule in NEWER_SERVERS_ONLY:
        assert rule in comment and rule in rules


def test_both_copies_of_redis_conf_carry_the_same_line() -> None:
    top = _USER_LINE.findall((ROOT / "redis.conf").read_text("utf-8"))
    assert top == [shipped_line()]


# ---------------------------------------------------------------------------- live server


@dataclass
class AclServer:
    server: EmbeddedServer
    url: str  # as the streamq user: contains its password
    admin: redis.Redis  # the default user (requirepass), decode_responses

    def settings(self, **changes: Any) -> Settings:
        return Settings(redis=RedisSettings(url=self.url)).with_changes(**changes)

    def denials(self) -> list[dict[str, Any]]:
        """ACL LOG entries of the streamq user."""
        entries: list[dict[str, Any]] = self.admin.acl_log(count=1000)
        return [e for e in entries if e.get("username") == USER]


@pytest.fixture
def acl(
    server: EmbeddedServer, server_factory: Callable[..., EmbeddedServer], tmp_path: Path
) -> Iterator[AclServer]:
    """A fresh server of the session server's kind whose config file is the shipped
    redis.conf with the user line uncommented (random password)."""
    password = secrets.token_urlsafe(18)
    text = CONF.read_text("utf-8").replace(f"# {shipped_line()}", line_for(server, password))
    config = tmp_path / "redis-acl.conf"
    config.write_text(text, "utf-8")
    srv = server_factory(binary=server.binary, config_file=config)
    admin = redis.Redis.from_url(srv.url, decode_responses=True)
    try:
        assert admin.acl_getuser(USER)["enabled"], "the user line did not load"
        url = f"redis://{USER}:{quote(password, safe='')}@{srv.host}:{srv.port}/0"
        yield AclServer(srv, url, admin)
    finally:
        admin.close()


@contextlib.contextmanager
def explained_by_the_acl_log(acl: AclServer) -> Iterator[None]:
    """A failure of the block (often a timeout: a refused command inside a worker loop is
    not raised to the test) carries the user's ACL LOG, which names what was refused."""
    try:
        yield
    except (AssertionError, StreamQError, redis.RedisError) as exc:
        refused = sorted({(e["reason"], e["object"]) for e in acl.denials()})
        raise AssertionError(f"{exc}\nrefused to the {USER} user: {refused}") from exc


def _commandstats(admin: redis.Redis) -> dict[str, tuple[int, int]]:
    """``{command: (calls, rejected_calls)}`` from INFO commandstats (Lua's calls included)."""
    stats: dict[str, dict[str, Any]] = admin.info("commandstats")
    return {
        name.removeprefix("cmdstat_"): (int(v["calls"]), int(v.get("rejected_calls", 0)))
        for name, v in stats.items()
    }


#: What the test's own admin connection sends between the two commandstats snapshots: the
#: first INFO (counted once it returned), and the metrics checks (HGET, HLEN x2).
_ADMIN_CALLS = {"info": 1, "hget": 1, "hlen": 2}


def _app(ran: list[tuple[str, Any]]) -> App:
    app = App()

    @app.handler("ok")
    async def ok(job: Job) -> Any:
        ran.append(("ok", job.data))
        return {"echo": job.data}

    @app.handler("fail")
    async def fail(job: Job) -> None:
        ran.append(("fail", job.data))
        raise RuntimeError("always fails")

    return app


def test_the_core_path_runs_as_the_least_privilege_user(
    acl: AclServer,
    queue_name: str,
    capsys: pytest.CaptureFixture[str],
    figures: dict[str, Any],
) -> None:
    q = queue_name
    before = _commandstats(acl.admin)
    settings = acl.settings(lease_ms=2000)
    ran: list[tuple[str, Any]] = []
    app = _app(ran)
    doomed_opts = {"max_retries": 1, "backoff": Backoff.fixed(20)}
    durable = acl.server.is_valkey or acl.server.version >= (7, 2)

    with (
        explained_by_the_acl_log(acl),
        Producer(settings=settings) as p,
        Admin(settings=settings) as admin,
    ):
        # ---- producer, before any worker
        assert p.ping()
        first = p.enqueue(q, "ok", {"n": "first"}, job_id="first")
        assert not p.enqueue(q, "ok", {"n": "first"}, job_id="first").created  # dedupe
        batch = p.enqueue_many(q, [JobSpec("ok", {"n": i}) for i in range(3)])
        doomed = p.enqueue(q, "fail", {"n": "doomed"}, **doomed_opts)
        later = p.enqueue(q, "ok", {"n": "later"}, delay=0.3)
        moved = p.enqueue(q, "ok", {"n": "moved"}, delay=600)
        assert p.reschedule(q, moved.job_id, delay=1200) > 0
        p.cancel(q, moved.job_id)
        got = p.get_job(q, moved.job_id)
        assert got is not None and got.state is JobState.CANCELLED
        if durable:  # WAITAOF: Redis >= 7.2 / Valkey >= 8
            assert p.enqueue(q, "ok", {"n": "durable"}, durable=True).created
        assert p.add_schedule(
            q, "tick", "ok", {"n": "tick"}, every=3600, first_at=datetime.now(UTC)
        )
        assert [s.key for s in p.list_schedules(q)] == ["tick"]
        status = p.status(q)
        assert (status.waiting, status.delayed) == (5 + durable, 1)

        # ---- admin and CLI, before any worker
        assert q in admin.queues()
        assert {e.job_id for e in admin.jobs(q, "waiting", limit=50)} >= {first.job_id}
        assert admin.pause(q) and admin.is_paused(q)
        assert cli_main(["status", "--url", acl.url]) == 0
        assert q in capsys.readouterr().out

        # ---- a worker: paused at start, then resumed
        with WorkerThread(app, [q], settings, block_ms=100, promote_poll_ms=50) as wt:
            wait_until(lambda: wt.worker is not None and q in wt.worker.paused, what="paused")
            consumer = wt.worker.consumer if wt.worker else ""
            wait_until(
                lambda: any(w.name == consumer for w in admin.workers([q])), what="heartbeat"
            )
            assert ran == [], "a paused queue was fetched from"
            assert admin.resume(q)
            assert p.wait(q, later.job_id, timeout=10).state is JobState.COMPLETED
            dead = p.wait(q, doomed.job_id, timeout=10)
            assert dead.state is JobState.FAILED and dead.attempt == 2
            wait_until(lambda: ("ok", {"n": "tick"}) in ran, what="the schedule tick")
            wait_until(lambda: p.status(q).waiting == 0 and p.status(q).active == 0)
            workers = admin.workers([q])
            assert [w.name for w in workers] == [consumer] and workers[0].state == "alive"

        # ---- results, DLQ replay (burst workers), purge
        for r in (first, *batch):
            job = p.get_job(q, r.job_id)
            assert job is not None and job.state is JobState.COMPLETED and job.result
        entries = p.dead_letters(q)
        assert [e.job_id for e in entries] == [doomed.job_id]
        assert admin.dead_count(q) == 1
        assert p.replay_dead(q, entries[0].dead_id)
        run_burst(app, [q], settings)
        assert p.replay_all_dead(q) == 1
        run_burst(app, [q], settings)
        assert [n for n, d in ran if d == {"n": "doomed"}] == ["fail"] * 6
        assert p.purge_dead(q) == 1 and p.dead_letters(q) == []
        assert p.remove_schedule(q, "tick") and p.list_schedules(q) == []

        # ---- admin views after the run
        (info,) = admin.status([q])
        assert info.status.completed >= 6 and info.status.failed == 1 and not info.paused
        for state in LIST_STATES:
            admin.jobs(q, state, limit=10)
        job = admin.get_job(q, first.job_id)
        assert job is not None and job.state is JobState.COMPLETED

    # ---- the worker's metrics landed in Redis
    keys = QueueKeys(q)
    assert int(acl.admin.hget(keys.stats, "completed") or 0) >= 6
    assert acl.admin.hlen(keys.histograms) > 0 and acl.admin.hlen(keys.throughput) > 0

    # ---- the web app, every read route and a mutation
    web = create_app(
        settings, producer=AsyncProducer(settings=settings), queues=[q], api_token=TOKEN
    )
    with TestClient(web) as client:
        health = client.get("/api/queue/health", headers=AUTH)
        assert health.status_code == 200 and health.json()["status"] == "healthy", health.text
        assert health.json()["queues"][q]["completed"] >= 6
        for path in (
            "/api/queues",
            f"/api/queues/{q}/jobs?state=completed",
            f"/api/queues/{q}/jobs/{first.job_id}",
            f"/api/queues/{q}/throughput",
            f"/api/queues/{q}/dlq",
            "/api/workers",
            "/metrics",
        ):
            r = client.get(path, headers=AUTH)
            assert r.status_code == 200, (path, r.text)
        assert client.post(f"/api/queues/{q}/pause", headers=AUTH).status_code == 200
        assert client.post(f"/api/queues/{q}/resume", headers=AUTH).status_code == 200

    # ---- what the user sent (INFO commandstats, less the test's admin calls)
    after = _commandstats(acl.admin)
    sent = {
        name: calls - before.get(name, (0, 0))[0] - _ADMIN_CALLS.get(name, 0)
        for name, (calls, _) in after.items()
    }
    sent = {name: n for name, n in sorted(sent.items()) if n > 0}
    figures["server"] = f"{'valkey' if acl.server.is_valkey else 'redis'} " + ".".join(
        map(str, acl.server.version)
    )
    figures["jobs_run"] = len(ran)
    figures["distinct_commands_sent"] = len(sent)
    figures["commands_sent"] = sum(sent.values())
    figures["commands"] = sorted(sent)
    figures["rejected_calls"] = {
        name: rejected - before.get(name, (0, 0))[1]
        for name, (_, rejected) in sorted(after.items())
        if rejected - before.get(name, (0, 0))[1]
    }
    figures["durable_enqueue"] = "yes (WAITAOF)" if durable else "no (server lacks WAITAOF)"

    # ---- nothing streamq sent was refused, except the CONFIG GET the worker tolerates
    refused = {(e["object"], e["reason"]) for e in acl.denials()}
    figures["acl_log_denials"] = sorted(f"{reason}: {obj}" for obj, reason in refused)
    assert {obj for obj, _ in refused} <= TOLERATED_DENIALS, refused


#: What the streamq user must not do.
REFUSED: list[tuple[str, ...]] = [
    ("SET", "foo", "x"),
    ("GET", "foo"),
    ("DEL", "otherprefix:x"),
    ("EXISTS", "otherprefix:x"),
    ("XADD", "otherprefix:s", "*", "a", "1"),
    ("HSET", "app:session:1", "user", "x"),
    ("FLUSHALL",),
    ("FLUSHDB",),
    ("SCRIPT", "FLUSH"),
    ("CONFIG", "SET", "maxmemory-policy", "allkeys-lru"),
    ("CONFIG", "GET", "requirepass"),
    ("KEYS", "*"),
    ("DEBUG", "SLEEP", "0"),
    ("SHUTDOWN", "NOSAVE"),
    ("ACL", "SETUSER", USER, "+@all", "allkeys"),
    ("EVAL", "return 1", "0"),
    ("CLIENT", "KILL", "TYPE", "normal"),
    ("PUBLISH", "channel", "x"),
    ("RENAME", "sq:{q}:stream", "elsewhere"),
]


def test_the_user_cannot_touch_other_keys_nor_run_admin_commands(
    acl: AclServer, figures: dict[str, Any]
) -> None:
    acl.admin.set("foo", "bar")
    acl.admin.set("otherprefix:x", "1")
    before = acl.admin.dbsize()
    figures["server"] = f"{'valkey' if acl.server.is_valkey else 'redis'} " + ".".join(
        map(str, acl.server.version)
    )
    tried = refused_count = 0
    client = redis.Redis.from_url(acl.url)
    try:
        assert client.exists("sq:{q}:stream") == 0  # its own keys: allowed
        for command in REFUSED:
            # DEBUG is refused even before the ACL (enable-debug-command defaults to no).
            allowed = "not allowed" if command[0] == "DEBUG" else "(?i)no permissions"
            tried += 1
            with pytest.raises(redis.ResponseError, match=allowed):
                client.execute_command(*command)
            refused_count += 1
        # Scripts run with the caller's ACL: a loaded script cannot reach other keys either.
        sha = client.script_load("return redis.call('SET', KEYS[1], 'owned')")
        tried += 1
        with pytest.raises(redis.ResponseError, match=r"(?i)no permissions|NOPERM|can't run"):
            client.evalsha(sha, 1, "foo")
        refused_count += 1
        # streamq under another prefix is refused too (keys outside sq:*).
        other = Settings(redis=RedisSettings(url=acl.url), prefix="other")
        tried += 1
        with Producer(settings=other) as p, pytest.raises(redis.ResponseError, match=r"(?i)perm"):
            p.enqueue("q", "ok")
        refused_count += 1
    finally:
        client.close()
        figures["forbidden_attempts"] = tried
        figures["refused"] = refused_count
    assert acl.admin.get("foo") == "bar" and acl.admin.get("otherprefix:x") == "1"
    assert acl.admin.dbsize() == before
    figures["keys_before_after"] = [before, acl.admin.dbsize()]
    assert acl.admin.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"
    refused = {(e["reason"], e["object"]) for e in acl.denials()}
    figures["acl_log_denials"] = len(acl.denials())
    figures["acl_log_refusals"] = sorted(f"{reason}: {obj}" for reason, obj in refused)
    assert {("command", "flushall"), ("command", "config|set"), ("key", "foo")} <= refused, refused
