"""The ``streamq`` command, run in-process (``streamq.cli.main``) and as a subprocess, against
real servers."""

from __future__ import annotations

import io
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
from _producer_support import run_burst
from _support import clean_environ, clear_env, closed_port, wait_until

import streamq.worker
from streamq import Producer, RedisSettings, Settings
from streamq.cli import Progress, main
from streamq.protocol.keys import QueueKeys
from streamq.server import EmbeddedServer

Run = Callable[..., tuple[int, str, str]]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's environment must not steer the command (nor reach port 6379)."""
    clear_env(monkeypatch)


@pytest.fixture
def settings(redis_url: str) -> Settings:
    return Settings(redis=RedisSettings(url=redis_url))


@pytest.fixture
def producer(settings: Settings) -> Iterator[Producer]:
    with Producer(settings=settings) as p:
        yield p


@pytest.fixture
def cli(redis_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Run:
    """``cli("status", "--json")`` -> (exit code, stdout, stderr), connected by REDIS_URL
    (a --url with the password would add its warning to every stderr)."""
    monkeypatch.setenv("REDIS_URL", redis_url)

    def run(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    return run


# ---------------------------------------------------------------------------- status


def test_status_json_matches_producer_status(cli: Run, producer: Producer, queue_name: str) -> None:
    producer.enqueue(queue_name, "a", {"n": 1})
    producer.enqueue(queue_name, "a", {"n": 2})
    producer.enqueue(queue_name, "a", delay=3600)

    code, out, _ = cli("status", queue_name, "--json")

    assert code == 0
    (row,) = orjson.loads(out)
    expected = producer.status(queue_name)
    for name in expected.__dataclass_fields__:
        assert row[name] == getattr(expected, name), name
    assert (row["lag"], row["paused"], row["workers"]) == (2, False, 0)
    code, out, _ = cli("--json", "status")  # every queue; the flag before the command
    assert code == 0 and queue_name in [r["queue"] for r in orjson.loads(out)]


def test_status_on_a_server_without_queues_exits_0_and_says_so(cli: Run, queue_name: str) -> None:
    """An empty server (here: a prefix nothing uses) is a healthy answer, not "not found"."""
    code, out, err = cli("status", "--prefix", queue_name)
    assert code == 0, err
    assert out.splitlines()[-1] == f"no queues yet under prefix {queue_name!r} (nothing enqueued)"
    assert "error" not in err
    code, out, _ = cli("status", "--prefix", queue_name, "--json")
    assert code == 0 and orjson.loads(out) == []


def test_status_prints_an_aligned_table_without_the_password(
    cli: Run, producer: Producer, server: EmbeddedServer, queue_name: str
) -> None:
    producer.enqueue(queue_name, "a")

    code, out, err = cli("status", queue_name)

    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith(f"server redis://127.0.0.1:{server.port}/0")
    header, row = lines[1], lines[2]
    assert header.split() == [
        "QUEUE",
        "WAITING",
        "ACTIVE",
        "DELAYED",
        "COMPLETED",
        "FAILED",
        "DEAD",
        "HELD",
        "LAG",
        "OLDEST",
        "WORKERS",
        "STATE",
    ]
    assert row.split()[:3] == [queue_name, "1", "0"]
    # Right-aligned numbers: each count ends where its header ends.
    end = header.index("WAITING") + len("WAITING")
    assert row[:end].endswith(" 1") and row[end] == " "
    assert server.password is not None
    assert server.password not in out + err


def test_status_runs_as_a_subprocess_with_the_url_from_the_environment(
    redis_url: str, producer: Producer, queue_name: str
) -> None:
    producer.enqueue(queue_name, "a")
    env = clean_environ()
    proc = subprocess.run(
        [sys.executable, "-m", "streamq.cli", "status", queue_name, "--json"],
        env={**env, "REDIS_URL": redis_url},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    assert orjson.loads(proc.stdout)[0]["waiting"] == 1


def test_unreachable_redis_exits_3_quickly_without_the_password(
    capsys: pytest.CaptureFixture[str],
) -> None:
    started = time.monotonic()
    code = main(["status", "--url", f"redis://:hunter2@127.0.0.1:{closed_port()}/0"])
    took = time.monotonic() - started
    out, err = capsys.readouterr()
    assert code == 3
    assert took < 10
    assert "cannot reach Redis" in err and "hunter2" not in out + err


def test_wrong_password_is_a_configuration_error(
    capsys: pytest.CaptureFixture[str], server: EmbeddedServer
) -> None:
    code = main(["status", "--url", f"redis://:wrong-secret@127.0.0.1:{server.port}/0"])
    err = capsys.readouterr().err
    assert code == 2
    assert "REDIS_PASSWORD" in err and "wrong-secret" not in err


def test_a_password_in_url_is_warned_about_never_echoed(
    capsys: pytest.CaptureFixture[str], server: EmbeddedServer
) -> None:
    """``ps`` shows any user a process's arguments: a --url with a password is still used,
    with a warning that names the safer place and never the secret."""
    assert server.password is not None and server.password in server.url
    assert main(["status", "--url", server.url]) == 0
    err = capsys.readouterr().err
    assert "--url password is visible" in err and "REDIS_URL" in err
    assert server.password not in err
    # A sentinel's own password too (the sentinel is unreachable: only the warning counts).
    main(["--url", "redis+sentinel://127.0.0.1:1/svc?sentinel_password=s3cret", "status"])
    err = capsys.readouterr().err
    assert "--url password is visible" in err and "s3cret" not in err
    # Without a password there is nothing to warn about (the server then refuses: exit 2).
    main(["status", "--url", f"redis://127.0.0.1:{server.port}/0"])
    assert "password is visible" not in capsys.readouterr().err


def test_malformed_url_and_settings_are_usage_errors(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert main(["status", "--url", "redis://:s3cret@host:notaport/0"]) == 2
    err = capsys.readouterr().err
    assert "--url is malformed" in err and "s3cret" not in err
    monkeypatch.setenv("STREAMQ_CONCURRENCY", "many")
    assert main(["status"]) == 2
    assert "STREAMQ_CONCURRENCY" in capsys.readouterr().err


def test_usage_errors_exit_2(cli: Run) -> None:
    assert cli()[0] == 2
    assert cli("frobnicate")[0] == 2
    assert cli("jobs", "q", "--state", "sleeping")[0] == 2
    assert cli("dlq", "retry", "q")[0] == 2  # neither ID nor --all


# ---------------------------------------------------------------------------- jobs


def test_enqueue_with_bad_data_json_exits_2_naming_the_flag(cli: Run, queue_name: str) -> None:
    code, _, err = cli("enqueue", queue_name, "send", "--data", "{not json")
    assert code == 2
    assert "--data" in err and "JSON" in err
    assert cli("status", queue_name, "--json")[1].count('"waiting": 0') == 1


def test_enqueue_then_list_and_show_the_job(cli: Run, queue_name: str) -> None:
    code, out, _ = cli(
        "enqueue", queue_name, "send", "--data", '{"to": "a"}', "--job-id", "mail-1", "--json"
    )
    assert code == 0
    assert orjson.loads(out) | {"entry_id": None} == {
        "job_id": "mail-1",
        "state": "waiting",
        "created": True,
        "entry_id": None,
        "due_at_ms": None,
    }
    code, out, _ = cli("enqueue", queue_name, "send", "--job-id", "mail-1")
    assert code == 0 and "already exists" in out
    code, out, _ = cli("enqueue", queue_name, "later", "--delay", "3600")
    assert code == 0 and "delayed until" in out

    code, out, _ = cli("jobs", queue_name, "--state", "waiting")
    assert code == 0
    assert out.split("\n")[0].split() == ["ID", "NAME", "ATTEMPTS", "ENTRY", "ENQUEUED"]
    assert out.split("\n")[1].split()[:2] == ["mail-1", "send"]
    code, out, _ = cli("jobs", queue_name, "--state", "delayed", "--json")
    (row,) = orjson.loads(out)
    assert row["state"] == "delayed" and row["job"]["name"] == "later"
    code, out, _ = cli("job", queue_name, "mail-1", "--json")
    assert code == 0 and orjson.loads(out)["data"] == {"to": "a"}
    code, _, err = cli("jobs", queue_name, "--state", "completed")
    assert code == 1 and "no completed jobs" in err


def test_unknown_job_exits_1(cli: Run, queue_name: str) -> None:
    code, out, err = cli("job", queue_name, "no-such-job")
    assert code == 1
    assert out == "" and "no job 'no-such-job'" in err


def test_job_without_the_queue_finds_it_in_whichever_queue_holds_it(
    cli: Run, settings: Settings, queue_name: str
) -> None:
    prefix = queue_name  # only this test's queues under it
    with Producer(settings=settings.with_changes(prefix=prefix)) as p:
        p.enqueue("orders:emails", "send", {"to": "a"}, job_id="mail-7")
        p.enqueue("later", "remind", {}, job_id="nudge-1", delay=3600)  # no stream yet
        p.enqueue("a", "x", {}, job_id="twice")
        p.enqueue("b", "x", {}, job_id="twice")

    code, out, err = cli("job", "mail-7", "--prefix", prefix, "--json")
    assert code == 0, err
    record = orjson.loads(out)
    assert (record["queue"], record["id"], record["data"]) == (
        "orders:emails",
        "mail-7",
        {"to": "a"},
    )
    code, out, _ = cli("job", "nudge-1", "--prefix", prefix)
    assert code == 0 and "later" in out and "delayed" in out
    code, out, _ = cli("job", "orders:emails", "mail-7", "--prefix", prefix)  # the old form
    assert code == 0 and "mail-7" in out

    code, out, err = cli("job", "twice", "--prefix", prefix)
    assert code == 2 and out == ""
    assert "exists in 2 queues" in err and "streamq job QUEUE twice" in err
    assert [line.split()[0] for line in err.splitlines()[1:]] == ["a", "b"]
    code, out, _ = cli("job", "b", "twice", "--prefix", prefix, "--json")
    assert code == 0 and orjson.loads(out)["queue"] == "b"

    code, out, err = cli("job", "no-such-job", "--prefix", prefix)
    assert code == 1 and out == ""
    assert f"no job 'no-such-job' in any queue under prefix {prefix!r}" in err


def test_job_shows_error_and_traceback_of_a_failed_job(
    cli: Run, producer: Producer, settings: Settings, queue_name: str
) -> None:
    app = streamq.worker.App()

    @app.handler("explode")
    def explode(job: Any) -> None:
        raise RuntimeError("the disk is on fire")

    producer.enqueue(queue_name, "explode", job_id="boom", max_retries=0)
    run_burst(app, [queue_name], settings)

    code, out, _ = cli("job", queue_name, "boom")

    assert code == 0
    assert "failed (failed)" in out
    assert "RuntimeError: the disk is on fire" in out
    assert "traceback:" in out and 'raise RuntimeError("the disk is on fire")' in out


# ---------------------------------------------------------------------------- DLQ


def test_dlq_retry_all_moves_every_entry_back_with_progress(
    cli: Run, producer: Producer, settings: Settings, queue_name: str
) -> None:
    for i in range(5):
        producer.enqueue(queue_name, "no-such-handler", {"i": i})
    run_burst(streamq.worker.App(), [queue_name], settings)
    code, out, _ = cli("dlq", "list", queue_name, "--json")
    entries = orjson.loads(out)
    assert code == 0 and len(entries) == 5
    assert {e["reason"] for e in entries} == {"no-handler"}

    code, out, err = cli("dlq", "retry", queue_name, "--all")

    assert code == 0
    assert "replayed 5 dead-letter entries" in out
    # Progress goes to stderr: a line per batch (at most one a second), then the total.
    assert err.splitlines() == ["replaying: 5/5", "replaying: 5/5 done"]
    status = producer.status(queue_name)
    assert (status.dead, status.waiting) == (0, 5)
    code, _, err = cli("dlq", "list", queue_name)
    assert code == 1 and "is empty" in err


def test_dlq_show_retry_one_and_purge(
    cli: Run, producer: Producer, settings: Settings, queue_name: str
) -> None:
    for job_id in ("d1", "d2", "d3"):
        producer.enqueue(queue_name, "no-such-handler", job_id=job_id)
    run_burst(streamq.worker.App(), [queue_name], settings)

    code, out, _ = cli("dlq", "show", queue_name, "d2", "--json")
    assert code == 0
    shown = orjson.loads(out)
    assert shown["job_id"] == "d2" and "no handler" in shown["error"]
    code, out, _ = cli("dlq", "show", queue_name, shown["dead_id"])
    assert code == 0 and "no-handler" in out
    assert cli("dlq", "show", queue_name, "nope")[0] == 1

    code, out, _ = cli("dlq", "retry", queue_name, shown["dead_id"])
    assert code == 0 and "replayed job d2" in out
    assert cli("dlq", "retry", queue_name, "d2")[0] == 1  # already replayed

    code, _, err = cli("dlq", "purge", queue_name)  # stdin is not a terminal: refuse
    assert code == 2 and "--yes" in err
    assert producer.status(queue_name).dead == 2
    code, out, _ = cli("dlq", "purge", queue_name, "--yes", "--json")
    assert code == 0 and orjson.loads(out) == {"queue": queue_name, "purged": 2}
    assert producer.status(queue_name).dead == 0


# ---------------------------------------------------------------------------- pause, schedules


def test_pause_sets_the_key_and_resume_clears_it(
    cli: Run, redis_client: redis.Redis, queue_name: str
) -> None:
    key = QueueKeys(queue_name).paused
    code, out, _ = cli("pause", queue_name)
    assert code == 0 and "paused" in out
    assert redis_client.exists(key) == 1
    code, out, _ = cli("status", queue_name, "--json")
    assert orjson.loads(out)[0]["paused"] is True
    code, out, _ = cli("resume", queue_name, "--json")
    assert code == 0 and orjson.loads(out)["changed"] is True
    assert redis_client.exists(key) == 0
    code, out, _ = cli("resume", queue_name)
    assert code == 0 and "already running" in out


def test_pausing_an_unknown_queue_warns_but_pauses(
    cli: Run, producer: Producer, redis_client: redis.Redis, queue_name: str
) -> None:
    """Operators may pause a queue before its first job, so it is paused, but a name nothing
    uses is most often a typo: stderr says so and suggests the close known names."""
    known = f"{queue_name}-emails"
    producer.enqueue(known, "send", {})
    code, out, err = cli("pause", known)
    assert code == 0 and f"{known}: paused" in out and err == ""

    typo = f"{queue_name}-emials"
    code, out, err = cli("pause", typo)
    assert code == 0 and f"{typo}: paused" in out
    assert f"warning: no queue {typo!r} is known" in err
    assert f"did you mean {known!r}" in err
    assert redis_client.exists(QueueKeys(typo).paused) == 1
    code, _, err = cli("resume", typo)
    assert code == 0 and err == ""  # resuming never needs the warning


def test_schedules_list_and_remove(cli: Run, producer: Producer, queue_name: str) -> None:
    producer.add_schedule(queue_name, "nightly", "report", {"kind": "daily"}, cron="0 3 * * *")
    producer.add_schedule(queue_name, "hourly", "refresh", every=3600)

    code, out, _ = cli("schedules", "list", queue_name, "--json")
    assert code == 0
    got = {s["key"]: s for s in orjson.loads(out)}
    assert got["nightly"]["cron"] == "0 3 * * *" and got["nightly"]["data"] == {"kind": "daily"}
    assert got["hourly"]["every_ms"] == 3_600_000
    code, out, _ = cli("schedules", "list", queue_name)
    assert "every 1h00m" in out and "cron 0 3 * * * (UTC)" in out

    assert cli("schedules", "remove", queue_name, "hourly")[0] == 0
    assert cli("schedules", "remove", queue_name, "hourly")[0] == 1
    assert [s.key for s in producer.list_schedules(queue_name)] == ["nightly"]


# ---------------------------------------------------------------------------- workers


WORKER_APP = """
import asyncio, os
from streamq.worker import App

app = App()

@app.handler("hold")
async def hold(job):
    while not os.path.exists(job.data["release"]):
        await asyncio.sleep(0.02)
    return "released"
"""


def test_workers_shows_a_running_workers_heartbeat_and_its_active_job(
    cli: Run, producer: Producer, redis_url: str, queue_name: str, tmp_path: Path
) -> None:
    (tmp_path / "holdapp.py").write_text(textwrap.dedent(WORKER_APP))
    release = tmp_path / "release"
    producer.enqueue(queue_name, "hold", {"release": str(release)}, job_id="held")
    env = clean_environ()
    env |= {"REDIS_URL": redis_url, "PYTHONPATH": str(tmp_path), "STREAMQ_LOG_LEVEL": "error"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamq.cli", "worker", "holdapp:app", "--queue", queue_name],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:

        def busy_worker() -> dict[str, Any] | None:
            code, out, _ = cli("workers", queue_name, "--json")
            rows = orjson.loads(out) if code == 0 else []
            return next((w for w in rows if w["state"] == "alive" and w["running"] == 1), None)

        worker = wait_until(busy_worker, 15, "the worker's heartbeat with one running job")
        assert (worker["pid"], worker["concurrency"], worker["host"]) == (
            proc.pid,
            5,
            socket.gethostname(),
        )
        assert worker["seen_age_ms"] < 10_000
        code, out, _ = cli("workers", queue_name)
        assert code == 0 and worker["name"] in out and "alive" in out

        code, out, _ = cli("jobs", queue_name, "--state", "active", "--json")
        (active,) = orjson.loads(out)
        assert (active["job_id"], active["consumer"]) == ("held", worker["name"])
        code, out, _ = cli("status", queue_name, "--json")
        assert orjson.loads(out)[0]["workers"] == 1
    finally:
        release.touch()
        proc.terminate()
        try:
            _, err = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise
    assert proc.returncode == 0, err.decode()
    assert producer.get_job(queue_name, "held") is not None


# ---------------------------------------------------------------------------- delegates


def test_server_and_worker_subcommands_delegate_to_their_entry_points(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["server", "--help"]) == 0
    assert "--data-dir" in capsys.readouterr().out
    assert main(["worker", "--help"]) == 0
    assert "MODULE:ATTRIBUTE" in capsys.readouterr().out
    assert main(["worker", "no_such_module_xyz:app", "--queue", "q"]) == 2
    assert "cannot import" in capsys.readouterr().err


@pytest.fixture
def isolated_bench(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory and import path where ``bench`` is whatever the test puts there."""
    root = Path(__file__).resolve().parents[1]  # holds the real bench/ package
    kept = [p for p in sys.path if p not in ("", ".") and Path(p).resolve() != root]
    monkeypatch.setattr(sys, "path", kept)
    monkeypatch.chdir(tmp_path)
    for name in [m for m in sys.modules if m == "bench" or m.startswith("bench.")]:
        monkeypatch.delitem(sys.modules, name)
    return tmp_path


def test_bench_delegates_to_python_m_bench(
    isolated_bench: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pkg = isolated_bench / "bench"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "__main__.py").write_text("import sys\nprint('bench', sys.argv[1:])\nsys.exit(7)\n")
    try:
        assert main(["bench", "--jobs", "10"]) == 7
    finally:
        for name in [m for m in sys.modules if m == "bench" or m.startswith("bench.")]:
            monkeypatch.delitem(sys.modules, name)
    assert "bench ['--jobs', '10']" in capsys.readouterr().out


def test_bench_without_the_package_says_so(
    isolated_bench: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bench"]) == 2
    assert "`bench` package" in capsys.readouterr().err


def test_progress_rewrites_one_line_on_a_terminal() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    err = Terminal()
    progress = Progress("replaying", 400, err)
    progress(200)
    progress(400)
    progress.finish(400)
    assert err.getvalue() == "\rreplaying: 200/400\rreplaying: 400/400\rreplaying: 400/400 done\n"


def test_enqueue_with_a_key_holds_the_job_for_flow_control(cli: Run, queue_name: str) -> None:
    code, out, _ = cli("enqueue", queue_name, "send", "--key", "x:conn-1", "--priority", "3")
    assert code == 0 and "held for flow control" in out
    code, out, _ = cli("jobs", queue_name, "--state", "held", "--json")
    (row,) = orjson.loads(out)
    assert row["job"]["key"] == "x:conn-1" and row["job"]["priority"] == 3
    code, _, err = cli("enqueue", queue_name, "send", "--key", "bad key")
    assert code == 2 and "invalid job key" in err


def test_partitions_are_shown_and_raised_but_never_lowered(cli: Run, queue_name: str) -> None:
    code, out, _ = cli("partitions", queue_name)
    assert code == 0 and "1 partition(s)" in out
    code, out, _ = cli("partitions", queue_name, "4", "--json")
    assert code == 0 and orjson.loads(out) == {
        "queue": queue_name,
        "partitions": 4,
        "history": [1, 4],
    }
    code, _, err = cli("partitions", queue_name, "2")
    assert code == 2 and "can only grow" in err
    for _ in range(2):  # the first enqueue of a producer goes home: enqueue in two calls
        assert cli("enqueue", queue_name, "send")[0] == 0
    code, out, _ = cli("status", queue_name)
    assert code == 0 and f"{queue_name}: 4 partitions, waiting " in out
    code, out, _ = cli("status", queue_name, "--json")
    (row,) = orjson.loads(out)
    assert row["waiting"] == 2 and len(row["partitions"]) == 4 and row["partition_count"] == 4
    assert sum(p["waiting"] for p in row["partitions"]) == 2
    assert [p["partition"] for p in row["partitions"]] == ["0", "1", "2", "3"]
    # Raised again: the partitions of the earlier count are still listed, and named.
    assert cli("partitions", queue_name, "5")[0] == 0
    code, out, _ = cli("status", queue_name)
    assert f"{queue_name}: 5 partitions (+ 1/4, 2/4, 3/4 of earlier counts), waiting " in out
