"""``make demo`` (``python -m examples.distribution.demo``) end to end, in subprocesses:
with the embedded server, with the Valkey wheel when ``redis-server`` is not on PATH, and
with ``REDIS_URL`` pointing at a server of our own."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import redis

from examples.distribution.db import ResultsDB
from streamq.server import EmbeddedServer

ROOT = Path(__file__).resolve().parents[1]
TOTALS = re.compile(
    r"totals: (\d+) completed, (\d+) retried, (\d+) dead, (\d+) cancelled, (\d+) pending"
)


def demo_env(**extra: str) -> dict[str, str]:
    """The environment without any Redis or streamq settings of the developer's own."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("REDIS_", "STREAMQ_", "DISTRIBUTION_", "DEMO_"))
    }
    env.update(extra)
    return env


def run_demo(
    data_dir: Path, duration: float, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "examples.distribution.demo",
            "--duration",
            str(duration),
            "--port",
            "0",
            "--data-dir",
            str(data_dir),
        ],
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
    # 6 dispatches (1 dies), 1 retry job, 2 scheduled publishes, 1 token refresh tick.
    assert (completed, retried, dead, cancelled, pending) == (9, 3, 1, 1, 0), out.stdout
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
    out = run_demo(data_dir, 8, demo_env())
    assert_full_run(out, data_dir)
    assert (data_dir / "redis" / "server.conf").is_file()  # the embedded server's data dir
    assert "redis: stopped, data kept in" in out.stdout
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
