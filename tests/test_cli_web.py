"""``streamq web``: the web app served by uvicorn from the command line (a subprocess on an
ephemeral port, stopped with SIGTERM), its refusals, and the hint naming the ``web`` extra
when starlette or uvicorn is not installed (simulated by blocking the import in a fresh
interpreter, not by mocking streamq)."""

from __future__ import annotations

import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from _support import child_env, clear_env

from streamq import Producer, RedisSettings, Settings
from streamq.cli import main

TOKEN = "cli-web-token-for-tests"
STARTED = re.compile(r"Uvicorn running on http://127\.0\.0\.1:(\d+)")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    clear_env(monkeypatch)


def _env(**extra: str) -> dict[str, str]:
    return child_env(extra)


class Served:
    """A ``streamq web`` subprocess; stderr lines collected by a thread."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streamq.cli", *argv],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self.pump = threading.Thread(target=self._pump, daemon=True)
        self.pump.start()

    def _pump(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.put(line)

    def wait_for_port(self, timeout: float = 20.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            self.seen.append(line)
            m = STARTED.search(line)
            if m:
                return int(m.group(1))
        pytest.fail(f"streamq web did not start within {timeout} s: {''.join(self.seen)}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self.pump.join(10)  # the pipe reaches EOF once the process is gone
        if self.proc.stderr is not None:
            self.proc.stderr.close()


@pytest.fixture
def serve() -> Iterator[type[Served]]:
    made: list[Served] = []

    class Tracked(Served):
        def __init__(self, argv: list[str], env: dict[str, str]) -> None:
            super().__init__(argv, env)
            made.append(self)

    yield Tracked
    for s in made:
        s.stop()


def test_streamq_web_serves_health_with_the_token_and_stops_on_sigterm(
    serve: type[Served], redis_url: str, queue_name: str
) -> None:
    with Producer(settings=Settings(redis=RedisSettings(url=redis_url))) as p:
        p.enqueue(queue_name, "send", {})
    env = _env(STREAMQ_API_TOKEN=TOKEN, STREAMQ_HEALTH_QUEUES=f"mine={queue_name}")
    web = serve(["web", "--port", "0", "--url", redis_url], env)
    port = web.wait_for_port()
    base = f"http://127.0.0.1:{port}"

    r = httpx.get(f"{base}/api/queue/health", headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "healthy"
    assert r.json()["queues"]["mine"]["waiting"] == 1
    assert httpx.get(f"{base}/api/queue/health").status_code == 401
    assert "server" not in r.headers  # no "uvicorn" banner

    web.proc.send_signal(signal.SIGTERM)
    assert web.proc.wait(15) == 0
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{base}/api/queue/health", timeout=2)


def test_streamq_web_refuses_to_start_without_a_token(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Refused before anything is served or any connection is made (the URL is never used).
    url = "redis://127.0.0.1:1/0"
    assert main(["web", "--port", "0", "--url", url]) == 2
    err = capsys.readouterr().err
    assert "error: STREAMQ_API_TOKEN is not set" in err
    assert main(["web", "--allow-no-token", "--host", "0.0.0.0", "--url", url]) == 2
    err = capsys.readouterr().err
    assert "only on a loopback --host" in err and "'0.0.0.0'" in err
    assert main(["web", "--port", "70000"]) == 2
    assert "65535" in capsys.readouterr().err


def test_streamq_web_with_allow_no_token_serves_on_loopback(
    serve: type[Served], redis_url: str
) -> None:
    web = serve(["web", "--port", "0", "--allow-no-token", "--url", redis_url], _env())
    port = web.wait_for_port()
    r = httpx.get(f"http://127.0.0.1:{port}/api/queues")
    assert r.status_code == 200, r.text
    web.proc.send_signal(signal.SIGTERM)
    assert web.proc.wait(15) == 0


def _blocked(modules: list[str], code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter where ``modules`` cannot be imported (a None in
    sys.modules is what the import system reports as "not installed")."""
    block = "".join(f"sys.modules[{m!r}] = None\n" for m in modules)
    return subprocess.run(
        [sys.executable, "-c", f"import sys\n{block}{code}"],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("missing", ["starlette", "uvicorn"])
def test_streamq_web_without_the_web_extra_names_the_extra(missing: str) -> None:
    run = _blocked([missing], "from streamq.cli import main\nsys.exit(main(['web']))")
    assert run.returncode == 2, run.stderr
    assert f"{missing} is not installed" in run.stderr
    assert "install streamq[web]" in run.stderr
    assert "Traceback" not in run.stderr


def test_importing_streamq_web_without_starlette_names_the_extra() -> None:
    run = _blocked(["starlette"], "import streamq.web")
    assert run.returncode == 1
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("ModuleNotFoundError: streamq.web needs the web extra")
    assert "starlette is not installed" in last and "install streamq[web]" in last


def test_the_rest_of_the_cli_works_without_the_web_extra() -> None:
    run = _blocked(
        ["starlette", "uvicorn", "prometheus_client"],
        "from streamq.cli import main\nsys.exit(main(['web', '--help']) + main(['--help']))",
    )
    assert run.returncode == 0, run.stderr
    assert "streamq web" in run.stdout and "enqueue" in run.stdout
