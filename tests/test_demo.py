"""``make demo`` (``python -m examples.distribution.demo``) end to end, in subprocesses:
with the embedded server, with the Valkey wheel when ``redis-server`` is not on PATH, with
``REDIS_URL`` pointing at a server of our own, and stopped by Ctrl-C. Also its parts: the
embedded server's data directory per server kind, and the live view."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis

from examples.distribution.db import ResultsDB
from examples.distribution.embedded import IncompatibleDataError, server_kind, start_embedded
from examples.distribution.live import RECHECK_S, LiveView, Tracked
from examples.distribution.service import DISPATCH_QUEUE
from streamq import Backoff, Job, JobState, Producer, RedisSettings, Settings
from streamq.protocol.keys import GROUP, QueueKeys
from streamq.server import EmbeddedServer, find_server_binary
from streamq.worker import App, Worker
from tests._support import ROOT, clean_environ
from tests._worker_support import run_burst

TOTALS = re.compile(
    r"totals: (\d+) completed, (\d+) retried, (\d+) dead, (\d+) cancelled, (\d+) pending"
)


def demo_env(**extra: str) -> dict[str, str]:
    """The environment without any Redis or streamq settings of the developer's own."""
    return clean_environ("DISTRIBUTION_", "DEMO_") | extra


def demo_argv(data_dir: Path, duration: float) -> list[str]:
    return [
        sys.executable,
        "-m",
        "examples.distribution.demo",
        "--duration",
        str(duration),
        "--port",
        "0",
        "--data-dir",
        str(data_dir),
    ]


def run_demo(
    data_dir: Path, duration: float, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        demo_argv(data_dir, duration),
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def assert_full_run(out: subprocess.CompletedProcess[str], data_dir: Path) -> None:
    assert out.returncode == 0, out.stdout + out.stderr
    totals = TOTALS.search(out.stdout)
    assert totals, out.stdout
    completed, retried, dead, cancelled, pending = map(int, totals.groups())
    # 6 dispatches (1 dies), a burst of 4 to one connection, 1 retry job, 2 scheduled
    # publishes, 1 token refresh tick and 1 refresh asked for at once; the 429'd dispatch
    # uses no attempt, so only the flaky and the dead one are retried.
    assert (completed, retried, dead, cancelled, pending) == (14, 2, 1, 1, 0), out.stdout
    assert "GET /api/queue/health -> 200 healthy" in out.stdout
    assert "DEAD after 4 attempts" in out.stdout
    token = (data_dir / "api.token").read_text().strip()
    assert f"token:  {token}" in out.stdout
    assert re.search(r"health: http://127\.0\.0\.1:\d+/api/queue/health", out.stdout)
    for secret in ("api.token", "redis.password"):
        assert stat.S_IMODE((data_dir / secret).stat().st_mode) == 0o600
    rows = ResultsDB(data_dir / "distribution.sqlite3").rows()
    assert sum(r.status == "ok" for r in rows) >= 9
    assert "web: stopped" in out.stdout and "worker: stopped" in out.stdout


def test_demo_runs_the_job_mix_and_prints_a_summary(tmp_path: Path) -> None:
    data_dir = tmp_path / "demo"
    (data_dir / "redis").mkdir(parents=True)  # an earlier demo's shared server directory
    out = run_demo(data_dir, 8, demo_env())
    assert_full_run(out, data_dir)
    kind = server_kind(find_server_binary())
    assert (data_dir / kind.dir_name / "server.conf").is_file()  # e.g. .data/demo/redis-7.0
    assert f"redis: stopped, data kept in {data_dir / kind.dir_name}" in out.stdout
    assert "is from an earlier demo" in out.stdout and "delete it" in out.stdout
    # The 429 waits for the platform's retry-after (1 s) without using an attempt.
    assert re.search(r"ratelimit-threads-\w+ +COMPLETED after 1 attempt:", out.stdout)
    assert "limits: 10 dispatches per platform and 2 per connection in any 3 s" in out.stdout
    # The burst: two posts start at once, the other two when the connection's window opens.
    burst = [
        float(m.group(1))
        for m in re.finditer(r"^ *([\d.]+)s  dispatch +x-burst-\w+ +COMPLETED", out.stdout, re.M)
    ]
    assert len(burst) == 4 and burst[2] - burst[0] >= 2.5, out.stdout
    # The secrets are generated once and kept: a second run would reuse them.
    assert (data_dir / "redis.password").read_text().strip()


def test_demo_uses_the_valkey_wheel_without_redis_server_on_path(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys.executable)
    data_dir = tmp_path / "demo"
    out = run_demo(data_dir, 8, demo_env(PATH=str(bin_dir)))
    assert re.search(r"redis: valkey \d+\.\d+", out.stdout), out.stdout + out.stderr
    assert_full_run(out, data_dir)
    kind = server_kind(find_server_binary("valkey"))
    assert (data_dir / kind.dir_name / "server.conf").is_file()  # e.g. .data/demo/valkey-8.1


def test_demo_uses_the_server_in_redis_url(
    server_factory: Callable[..., EmbeddedServer], tmp_path: Path
) -> None:
    srv = server_factory()
    data_dir = tmp_path / "demo"
    out = run_demo(data_dir, 0.5, demo_env(REDIS_URL=srv.url))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "redis: using REDIS_URL (redis://127.0.0.1:" in out.stdout
    assert srv.password and srv.password not in out.stdout
    assert not (data_dir / "redis").exists()
    with redis.Redis.from_url(srv.url) as client:
        assert client.exists("sq:{distribution:dispatch}:stream")
    assert TOTALS.search(out.stdout)


# --------------------------------------------------------------------------- Ctrl-C


def test_ctrl_c_stops_the_worker_before_redis_so_its_running_job_is_handed_back(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "demo"
    # The slow target runs for a minute; the worker's grace is short, so at Ctrl-C it must
    # hand that job back to the queue, which needs Redis still up.
    env = demo_env(DISTRIBUTION_SLOW_MS="60000", STREAMQ_SHUTDOWN_GRACE="300")
    # Its own process group, like a terminal's foreground job: Ctrl-C signals the group.
    demo = subprocess.Popen(
        demo_argv(data_dir, 0),
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    seen: list[str] = []
    try:
        assert demo.stdout is not None
        for line in demo.stdout:
            seen.append(line)
            # A second after the batch was queued: the slow job is surely running.
            if re.search(r"ratelimit-threads-\w+ +COMPLETED", line):
                break
        os.killpg(demo.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
        rest, _ = demo.communicate(timeout=60)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    out = "".join(seen) + rest
    assert demo.returncode == 0, out
    assert "interrupted: stopping" in out
    stopped_worker = out.index("worker: stopped, 1 running job handed back to the queue")
    assert out.index("web: stopped") < stopped_worker < out.index("redis: stopped")

    kind = server_kind(find_server_binary())
    server_dir = data_dir / kind.dir_name
    assert "Received SIGINT" not in (server_dir / "server.log").read_text()
    events = [
        json.loads(line)
        for line in (data_dir / "worker.log").read_text().splitlines()
        if line.startswith("{")
    ]
    names = [e["event"] for e in events]
    assert "hand_back_abandoned" not in names
    (stop,) = [e for e in events if e["event"] == "worker_stopped"]
    assert stop["handed_back"] == 1

    # Redis saved on the way out: the slow job (a keyed one) is held again under its key,
    # nothing is pending.
    password = (data_dir / "redis.password").read_text().strip()
    with EmbeddedServer(server_dir, password=password) as srv:
        keys = QueueKeys(DISPATCH_QUEUE, "sq")
        with redis.Redis.from_url(srv.url) as client:
            held = client.zrange(keys.held, 0, -1)
            assert [m for m in held if m.startswith(b"youtube:slow-youtube-")], held
            assert client.xpending(keys.kstream, GROUP)["pending"] == 0
            assert client.xpending(keys.stream, GROUP)["pending"] == 0


# --------------------------------------------------------------------------- the server


def test_the_demo_server_keeps_each_server_kinds_data_apart(tmp_path: Path) -> None:
    binaries = {"valkey": find_server_binary("valkey"), "redis": find_server_binary("redis")}
    dirs: dict[str, Path] = {}
    # Valkey 8 writes RDB 11, which Redis 7.0 cannot read: alternate on one base directory.
    for run, name in enumerate(["valkey", "redis", "valkey", "redis"]):
        srv, kind = start_embedded(tmp_path, "pw", binary=binaries[name])
        try:
            assert kind.name == name and srv.data_dir == tmp_path / kind.dir_name
            dirs[name] = srv.data_dir
            with redis.Redis.from_url(srv.url) as client:
                if run >= 2:  # each kind finds its own data of the run before
                    assert client.get("written-by") == name.encode()
                client.set("written-by", name)
        finally:
            srv.stop()
    assert dirs["valkey"] != dirs["redis"]
    assert re.fullmatch(r"(redis|valkey)-\d+\.\d+", dirs["redis"].name)


def test_the_embedded_server_runs_in_a_session_of_its_own(
    server_factory: Callable[..., EmbeddedServer],
) -> None:
    # A terminal's Ctrl-C goes to its foreground process group: not to the server, which
    # its starter stops when done (the demo: after the worker has handed back).
    srv = server_factory()
    assert srv.pid is not None
    assert os.getsid(srv.pid) == srv.pid != os.getsid(0)
    assert os.getpgid(srv.pid) != os.getpgrp()


def test_the_server_cli_stops_its_server_on_sighup(tmp_path: Path) -> None:
    # In its own session the server gets no SIGHUP from a closed terminal: the CLI must
    # stop it then, or it would be left running.
    cli = subprocess.Popen(
        [sys.executable, "-m", "streamq.server", "--data-dir", str(tmp_path), "--prefer", "redis"],
        cwd=ROOT,
        env=demo_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert cli.stdout is not None
        first = cli.stdout.readline()
        found = re.search(r"redis://127\.0\.0\.1:(\d+)/0", first)
        assert found, first
        port, password = int(found.group(1)), (tmp_path / "password").read_text().strip()
        with redis.Redis(port=port, password=password) as client:
            assert client.ping()
        cli.send_signal(signal.SIGHUP)
        code = cli.wait(timeout=30)
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait()
        for stream in (cli.stdout, cli.stderr):
            if stream is not None:
                stream.close()
    with redis.Redis(port=port, password=password, socket_connect_timeout=2) as client:
        try:
            left_running = bool(client.ping())
        except redis.ConnectionError:
            left_running = False
        if left_running:
            client.shutdown(nosave=True)  # the CLI left it running: do not leak it
    assert code == 0 and not left_running


def test_data_the_server_cannot_read_stops_the_demo_with_what_to_delete(tmp_path: Path) -> None:
    valkey, redis_bin = find_server_binary("valkey"), find_server_binary("redis")
    srv, _ = start_embedded(tmp_path, "pw", binary=valkey)
    srv.stop()  # SHUTDOWN SAVE: an RDB 11 file
    target = tmp_path / server_kind(redis_bin).dir_name
    shutil.copytree(srv.data_dir, target)  # as if copied in by hand
    with pytest.raises(IncompatibleDataError) as info:
        start_embedded(tmp_path, "pw", binary=redis_bin)
    message = str(info.value)
    assert "RDB format version 11" in message
    assert f"rm -rf '{target}'" in message and "STREAMQ_SERVER_BIN" in message


# --------------------------------------------------------------------------- the live view


def test_the_live_view_shows_transitions_that_happen_between_two_reads(
    redis_url: str, queue_name: str
) -> None:
    settings = Settings(redis=RedisSettings(url=redis_url), prefix=queue_name)
    app = App(queues=["live"])

    @app.handler("flip")
    def flip(job: Job) -> dict[str, Any]:
        if job.attempt == 1:
            raise RuntimeError("the first attempt fails")
        return {}

    lines: list[str] = []
    with Producer(settings=settings) as producer, redis.Redis.from_url(redis_url) as client:
        view = LiveView(
            client, ["live"], prefix=queue_name, get_job=producer.get_job, say=lines.append
        )
        view.start()
        added = producer.enqueue("live", "flip", max_retries=3, backoff=Backoff.fixed(0))
        view.track(Tracked("live", added.job_id, "flip", "subject", "fails once"))
        # Both attempts run (well under a millisecond each) before the view reads anything:
        # a poll now would see only the end.
        run_burst(Worker(app, ["live"], settings=settings, promote_poll_ms=10))
        job = producer.get_job("live", added.job_id)
        assert job is not None and job.state is JobState.COMPLETED and job.attempt == 2
        view.pump(block_ms=100)
    assert [line.split(None, 2)[2] for line in lines] == [
        "attempt 1 failed: RuntimeError: the first attempt fails -> retried",
        "COMPLETED after 2 attempts: done",
    ]
    assert view.settled


def test_the_live_view_still_shows_an_end_whose_event_was_trimmed(
    redis_url: str, queue_name: str
) -> None:
    settings = Settings(redis=RedisSettings(url=redis_url), prefix=queue_name)
    app = App(queues=["live"])
    app.handler("noop")(lambda job: None)
    lines: list[str] = []
    now = [0.0]
    with Producer(settings=settings) as producer, redis.Redis.from_url(redis_url) as client:
        view = LiveView(
            client,
            ["live"],
            prefix=queue_name,
            get_job=producer.get_job,
            say=lines.append,
            clock=lambda: now[0],
        )
        view.start()
        added = producer.enqueue("live", "noop")
        view.track(Tracked("live", added.job_id, "noop", "subject", "runs"))
        run_burst(Worker(app, ["live"], settings=settings, promote_poll_ms=10))
        client.delete(QueueKeys("live", queue_name).events)  # as if trimmed (capped stream)
        view.pump(block_ms=1)
        assert lines == [] and not view.settled
        now[0] = RECHECK_S  # the view re-reads the records it has not seen end
        view.pump(block_ms=1)
    assert [line.split(None, 2)[2] for line in lines] == ["COMPLETED after 1 attempt: done"]
    assert view.settled
