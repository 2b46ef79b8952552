"""Security properties that cut across the engine.

* Authentication: a ``requirepass`` server refuses clients without the password; a wrong
  password is an :class:`~streamq.AuthenticationFailedError` that names the settings
  (``REDIS_PASSWORD`` / ``REDIS_URL``) and never the secret.
* Secrets never leak: not into logs (an in-process worker and a ``python -m streamq.worker``
  subprocess at debug level, through a Redis outage), stderr, exception messages, reprs,
  the CLI's output, nor the web app's answers.
* The web app: every route that serves queue data needs the bearer token (the routes are
  enumerated from the apps, so a new route is covered without editing this file); every
  mutating route refuses a cross-site form post; it binds to loopback by default.
* No unsafe deserialisation or shell: no pickle/dill/marshal/shelve, no ``eval``/``exec``,
  no ``shell=True`` anywhere in streamq/, examples/ or bench/.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import logging
import re
import secrets
import signal
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
import yaml
from _producer_support import WorkerThread, wait_until
from _support import ROOT, child_env, clear_env
from _worker_support import APP, WorkerProcess
from apps import app as test_app
from starlette.applications import Starlette
from starlette.routing import Mount, Route
from starlette.testclient import TestClient

from streamq import (
    AsyncProducer,
    AuthenticationFailedError,
    ConfigError,
    ConnectionFailedError,
    Producer,
    RedisSettings,
    Settings,
    StreamQError,
)
from streamq.admin import Admin, AsyncAdmin
from streamq.cli import main as cli_main
from streamq.server import EmbeddedServer
from streamq.web import create_app
from streamq.web.config import WebSettings
from streamq.worker import App, Worker
from streamq.worker.logs import JsonFormatter

TOKEN = "security-test-token-" + "7" * 20
#: A closed port: nothing answers there (apps that must refuse before touching Redis).
NOWHERE = "redis://:never-used-password@127.0.0.1:1/0"


def _secret() -> str:
    """A password that cannot occur by accident in any output."""
    return f"pw{secrets.token_hex(16)}"


def _url(srv: EmbeddedServer, password: str | None, user: str = "") -> str:
    auth = f"{user}:{password}@" if password is not None else ""
    return f"redis://{auth}{srv.host}:{srv.port}/0"


def _all_text(exc: BaseException) -> str:
    """Everything an exception can show: str, repr and the formatted chain."""
    return "\n".join([str(exc), repr(exc), *traceback.format_exception(exc)])


def _expect(kind: type[BaseException], fn: Callable[..., Any], *args: Any) -> BaseException:
    """Call ``fn`` and return the ``kind`` exception it must raise."""
    with pytest.raises(kind) as caught:
        fn(*args)
    return caught.value


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    clear_env(monkeypatch)


# ---------------------------------------------------------------------------- auth


def test_a_server_with_requirepass_refuses_clients_without_a_password(
    server: EmbeddedServer, queue_name: str
) -> None:
    settings = Settings(redis=RedisSettings(url=_url(server, None)))
    with Producer(settings=settings) as producer:
        _expect(AuthenticationFailedError, producer.enqueue, queue_name, "job")
        _expect(AuthenticationFailedError, producer.status, queue_name)
    with Admin(settings=settings) as admin:
        _expect(AuthenticationFailedError, admin.status)

    async def async_paths() -> None:
        producer = AsyncProducer(settings=settings)
        try:
            with pytest.raises(AuthenticationFailedError):
                await producer.enqueue(queue_name, "job")
        finally:
            await producer.close()
        worker = Worker(App(), [queue_name], settings=settings)
        with pytest.raises(AuthenticationFailedError):  # not retried like an outage
            await asyncio.wait_for(worker.run(burst=True), 10)

    asyncio.run(async_paths())


def test_a_wrong_password_names_the_setting_and_never_the_secret(
    server: EmbeddedServer, queue_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert server.password
    wrong = _secret()
    errors: list[BaseException] = []
    for settings in (
        Settings(redis=RedisSettings(url=_url(server, wrong))),
        Settings(redis=RedisSettings(url=_url(server, wrong, user="nobody"))),
        Settings.from_env({"REDIS_PORT": str(server.port), "REDIS_PASSWORD": wrong}),
    ):
        with Producer(settings=settings) as producer:
            errors.append(_expect(AuthenticationFailedError, producer.enqueue, queue_name, "x"))
    for exc in errors:
        message = str(exc)
        assert "REDIS_PASSWORD" in message and "REDIS_URL" in message, message
        text = _all_text(exc)
        assert wrong not in text and server.password not in text
    # The CLI: exit 2 (configuration), the same message, no secret anywhere.
    assert cli_main(["status", "--url", _url(server, wrong)]) == 2
    out = capsys.readouterr()
    assert "REDIS_PASSWORD" in out.err and wrong not in out.out + out.err


# ---------------------------------------------------------------------------- logs


class _Capture(logging.Handler):
    """Every record of every logger, rendered as JSON (message, extra fields, traceback)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(JsonFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    def text(self) -> str:
        return "\n".join(self.lines)


@contextlib.contextmanager
def capture_everything() -> Iterator[_Capture]:
    """Capture the root logger at DEBUG, with streamq's logger propagating to it."""
    cap = _Capture()
    root, sq = logging.getLogger(), logging.getLogger("streamq")
    saved = (root.level, sq.level, sq.propagate, sq.handlers[:])
    root.addHandler(cap)
    root.setLevel(logging.DEBUG)
    sq.setLevel(logging.DEBUG)
    sq.propagate = True
    sq.handlers[:] = []
    try:
        yield cap
    finally:
        root.removeHandler(cap)
        root.setLevel(saved[0])
        sq.setLevel(saved[1])
        sq.propagate = saved[2]
        sq.handlers[:] = saved[3]


def _worker_env(url: str) -> dict[str, str]:
    return child_env(REDIS_URL=url, PYTHONUNBUFFERED="1")


def test_secrets_never_reach_logs_stderr_errors_or_the_cli_through_an_outage(
    server_factory: Callable[..., EmbeddedServer],
    tmp_path: Path,
    queue_name: str,
    capfd: pytest.CaptureFixture[str],
) -> None:
    secret = _secret()
    srv = server_factory(password=secret)
    url = srv.url
    assert secret in url
    settings = Settings.from_env({"REDIS_URL": url})
    q_in, q_sub = f"{queue_name}-in", f"{queue_name}-sub"
    errors: list[BaseException] = []
    cli_codes: list[int] = []
    sub = WorkerProcess(
        [APP, "--queue", q_sub, "--log-level", "debug"], _worker_env(url), tmp_path / "w.log"
    )
    try:
        with (
            capture_everything() as logs,
            Producer(settings=settings) as producer,
            WorkerThread(test_app, [q_in], settings, block_ms=100),
        ):
            sub.consumer()  # started
            for q in (q_in, q_sub):
                assert producer.wait(q, producer.enqueue(q, "noop").job_id, timeout=10).result
            cli_codes.append(cli_main(["status", "--url", url]))

            srv.stop()  # the outage: every path fails, politely
            errors.append(_expect(ConnectionFailedError, producer.enqueue, q_in, "noop"))
            with Admin(settings=settings, retry_attempts=0) as admin:
                errors.append(_expect(ConnectionFailedError, admin.status))
            errors.append(_expect(ConnectionFailedError, asyncio.run, _async_enqueue(settings)))
            cli_codes.append(cli_main(["status", "--url", url]))
            with TestClient(create_app(settings, queues=[q_in], api_token=TOKEN)) as web:
                health = web.get("/api/queue/health", headers={"Authorization": f"Bearer {TOKEN}"})
            assert health.status_code == 500 and secret not in health.text
            wait_until(
                lambda: "redis_unavailable" in logs.text() and sub.events("redis_unavailable"),
                timeout=10,
                what="both workers to log the outage",
            )

            srv.restart()
            for q in (q_in, q_sub):
                assert producer.wait(q, producer.enqueue(q, "noop").job_id, timeout=15).result
        sub.signal(signal.SIGTERM)
        assert sub.wait(15) == 0
    finally:
        sub.close()

    assert cli_codes == [0, 3]
    captured = capfd.readouterr()
    worker_output = sub.output()
    assert '"worker_started"' in worker_output and "redis_unavailable" in worker_output
    for where, text in (
        ("in-process logs", logs.text()),
        ("worker subprocess output", worker_output),
        ("stdout/stderr", captured.out + captured.err),
        *((f"exception {type(e).__name__}", _all_text(e)) for e in errors),
    ):
        assert secret not in text, f"the password leaked into the {where}"
    for exc in errors:
        assert isinstance(exc, StreamQError) and f"127.0.0.1:{srv.port}" in str(exc)


async def _async_enqueue(settings: Settings) -> None:
    producer = AsyncProducer(settings=settings, retry_attempts=0)
    try:
        await producer.enqueue("q", "noop")
    finally:
        await producer.close()


def test_a_worker_process_with_a_wrong_password_exits_2_without_the_secret(
    server: EmbeddedServer, tmp_path: Path
) -> None:
    wrong = _secret()
    sub = WorkerProcess([APP, "--queue", "q"], _worker_env(_url(server, wrong)), tmp_path / "w")
    try:
        assert sub.wait(20) == 2
    finally:
        sub.close()
    out = sub.output()
    assert "REDIS_PASSWORD" in out and wrong not in out and str(server.password) not in out


# ---------------------------------------------------------------------------- errors, reprs


def test_configuration_errors_never_echo_the_secret() -> None:
    secret = _secret()
    bad_envs = [
        {"REDIS_URL": f"http://user:{secret}@example.com:6379/0"},  # scheme
        {"REDIS_URL": f"redis://user:{secret}@example.com:port/0"},  # port
        {"REDIS_HOST": f"redis://:{secret}@example.com"},  # a URL in the host variable
        {"REDIS_URL": f"redis://:{secret}@h:1/0", "REDIS_TLS_CA_FILE": f"/nonexistent/{secret}"},
    ]
    for env in bad_envs:
        exc = _expect(ConfigError, Settings.from_env, env)
        assert secret not in _all_text(exc).replace(f"/nonexistent/{secret}", "<path>"), env


def test_cli_errors_never_echo_the_secret(capsys: pytest.CaptureFixture[str]) -> None:
    secret = _secret()
    for url, code in (
        (f"redis://:{secret}@127.0.0.1:1/0", 3),  # unreachable
        (f"redis://:{secret}@127.0.0.1:notaport/0", 2),  # malformed
        (f"mysql://root:{secret}@127.0.0.1/0", 2),  # wrong scheme
    ):
        for args in (["status"], ["--json", "status"], ["workers"], ["jobs", "q"]):
            assert cli_main([*args, "--url", url]) == code, (args, url)
            out = capsys.readouterr()
            # The --url password warning first, then the error; the secret in neither.
            assert out.err.splitlines()[-1].startswith("error: "), out.err
            assert secret not in out.out + out.err


def test_reprs_never_show_the_secret(tmp_path: Path) -> None:
    secret = _secret()
    token = f"tok{secrets.token_hex(16)}"
    settings_variants = [
        Settings(redis=RedisSettings(url=f"redis://user:{secret}@127.0.0.1:1/0")),
        Settings(redis=RedisSettings(url=f"rediss://:{secret}@127.0.0.1:1/0")),
        Settings(redis=RedisSettings(username="user", password=secret, port=1)),
        Settings.from_env({"REDIS_URL": f"redis://:{secret}@127.0.0.1:1/0"}),
        Settings.from_env({"REDIS_PASSWORD": secret, "REDIS_PORT": "1"}),
    ]
    objects: list[Any] = [EmbeddedServer(tmp_path / "srv", password=secret)]
    closers: list[Callable[[], Any]] = []
    for s in settings_variants:
        producer, admin = Producer(settings=s), Admin(settings=s)
        async_producer, async_admin = AsyncProducer(settings=s), AsyncAdmin(settings=s)
        worker = Worker(App(), ["q"], settings=s)
        closers += [producer.close, admin.close, worker._threads.close]
        objects += [s, s.redis, producer, admin, async_producer, async_admin, worker]
        objects.append(WebSettings(api_token=token, engine=s))
        objects.append(s.redis.describe())
    try:
        for obj in objects:
            for text in (repr(obj), str(obj)):
                assert secret not in text and token not in text, type(obj).__name__
    finally:
        for close in closers:
            close()


# ---------------------------------------------------------------------------- web


def _streamq_app(**kwargs: Any) -> Starlette:
    settings = Settings(redis=RedisSettings(url=NOWHERE))
    return create_app(settings, queues=["distribution:dispatch"], **kwargs)


def _distribution_app(**kwargs: Any) -> Starlette:
    from examples.distribution.web import create_distribution_app

    return create_distribution_app(Settings(redis=RedisSettings(url=NOWHERE)), **kwargs)


APPS = {"streamq": _streamq_app, "distribution": _distribution_app}
#: The only routes served without a token: the dashboard shell (a static page that holds
#: no queue data; test_dashboard.py checks that) and its static files.
PUBLIC = {"/", "/static"}
#: Values for path parameters (a new parameter fails the test until it is added here).
SAMPLES = {"queue": "distribution%3Adispatch", "job_id": "job-1", "dead_id": "1700000000000-0"}


def _routes(app: Starlette) -> list[tuple[str, str]]:
    """(method, concrete path) of every non-public route; checks the public ones."""
    out, public = [], set()
    for route in app.routes:
        if isinstance(route, Mount):
            public.add(route.path)
            continue
        assert isinstance(route, Route), route
        if route.path in PUBLIC:
            public.add(route.path)
            continue
        path = re.sub(r"\{(\w+)(?::\w+)?\}", lambda m: SAMPLES[m.group(1)], route.path)
        out += [(m, path) for m in sorted(route.methods or ()) if m != "HEAD"]
    assert public == PUBLIC, f"unexpected public routes: {public - PUBLIC}"
    return out


def _mutating(routes: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(m, p) for m, p in routes if m not in ("GET", "HEAD", "OPTIONS")]


#: What a hostile page's <form method=post action=...> makes a browser send (no
#: Authorization header; cookies, if any, are useless here).
CROSS_SITE_FORM = {
    "Origin": "https://evil.example",
    "Content-Type": "application/x-www-form-urlencoded",
}


@pytest.mark.parametrize("kind", sorted(APPS))
def test_every_route_with_queue_data_requires_the_token(kind: str, figures: dict[str, Any]) -> None:
    app = APPS[kind](api_token=TOKEN)
    refused = {"no_token": 0, "wrong_token": 0, "cross_site": 0}
    with TestClient(app) as client:
        routes = _routes(app)
        assert len(routes) >= (13 if kind == "distribution" else 12)
        assert len(_mutating(routes)) >= 5
        figures["routes_checked"] = len(routes)
        figures["mutating_routes"] = len(_mutating(routes))
        for method, path in routes:
            for headers in (
                {},
                {"Authorization": "Bearer wrong"},
                {"Authorization": f"Bearer {TOKEN}x"},
                {"Authorization": f"Basic {TOKEN}"},
            ):
                r = client.request(method, path, headers=headers)
                assert r.status_code == 401, (method, path, headers, r.status_code)
                assert TOKEN not in r.text
                refused["wrong_token" if headers else "no_token"] += 1
        for method, path in _mutating(routes):
            r = client.request(method, path, headers=CROSS_SITE_FORM, content=b"a=1")
            assert r.status_code in (401, 403), (method, path, r.status_code)
            refused["cross_site"] += 1
    figures["refused_without_token"] = refused["no_token"]
    figures["refused_with_wrong_token"] = refused["wrong_token"]
    figures["cross_site_posts_refused"] = refused["cross_site"]


def _cross_site_posts(client: TestClient, method: str, path: str) -> list[int]:
    """Status codes of cross-site posts a form can make: urlencoded, and text/plain with
    a body that happens to be valid JSON (``<input name='{"postId":"p",...' value='"}'>``)."""
    json_like = b'{"postId":"p","connectionIds":["c"],"customMessage":"="}'
    codes = []
    for content_type, body in (
        ("application/x-www-form-urlencoded", b"a=1"),
        ("text/plain", json_like),
    ):
        headers = {**CROSS_SITE_FORM, "Content-Type": content_type}
        codes.append(client.request(method, path, headers=headers, content=body).status_code)
    return codes


@pytest.mark.parametrize("kind", sorted(APPS))
def test_without_a_token_mutations_still_refuse_cross_site_posts(
    kind: str, figures: dict[str, Any]
) -> None:
    app = APPS[kind](api_token=None, allow_no_token=True)
    with TestClient(app) as client:
        routes = _mutating(_routes(app))
        assert routes
        figures["mutating_routes"] = len(routes)
        figures["cross_site_posts_refused"] = 0
        for method, path in routes:
            codes = _cross_site_posts(client, method, path)
            assert codes == [403, 403], (method, path)
            figures["cross_site_posts_refused"] += len(codes)


def test_without_a_token_the_dispatch_route_refuses_cross_site_posts(
    figures: dict[str, Any],
) -> None:
    path = "/api/admin/distribution/dispatch"
    with TestClient(_distribution_app(api_token=None, allow_no_token=True)) as client:
        codes = _cross_site_posts(client, "POST", path)
        assert codes == [403, 403]
        figures["cross_site_posts_refused"] = len(codes)
        figures["status_codes"] = codes


def test_the_web_app_binds_to_loopback_by_default() -> None:
    # uvicorn's own default, which `uvicorn streamq.web.app:create_app --factory` relies on.
    assert uvicorn.Config(app="streamq.web.app:create_app").host == "127.0.0.1"
    # The demo launches uvicorn with --host 127.0.0.1.
    demo = ast.parse((ROOT / "examples" / "distribution" / "demo.py").read_text("utf-8"))
    launches = [
        [e.value if isinstance(e, ast.Constant) else None for e in node.elts]
        for node in ast.walk(demo)
        if isinstance(node, ast.List)
        and any(isinstance(e, ast.Constant) and e.value == "uvicorn" for e in node.elts)
    ]
    assert launches, "the demo no longer launches uvicorn: update this test"
    for argv in launches:
        assert argv[argv.index("--host") + 1] == "127.0.0.1", argv
    # Documented commands: no --host other than loopback.
    docs = [ROOT / "README.md", ROOT / "Makefile", *sorted((ROOT / "docs").rglob("*.md"))]
    for path in docs:
        for host in re.findall(r"uvicorn[^\n`]*?--host[ =]([^\s`]+)", path.read_text("utf-8")):
            assert host == "127.0.0.1", f"{path.name}: uvicorn --host {host}"
    # Docker compose: 0.0.0.0 inside the container, published on the host's loopback only.
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text("utf-8"))
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port}"
    # And the runbook says so.
    runbook = (ROOT / "docs" / "runbook.md").read_text("utf-8")
    web = runbook[runbook.index("**Web app**") :].split("\n* ", 1)[0]
    assert "loopback" in web


# ---------------------------------------------------------------------------- source


#: Modules whose loading runs code from the data (or that shell out).
UNSAFE_MODULES = {"pickle", "_pickle", "cPickle", "dill", "cloudpickle", "marshal", "shelve"}
UNSAFE_MODULES |= {"jsonpickle"}
UNSAFE_CALLS = {"eval", "exec"}
SHELL_CALLS = {("os", "system"), ("os", "popen")}


def unsafe_constructs(source: str) -> list[str]:
    """What a module does that streamq forbids: unsafe imports, eval/exec, shells."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [f"import {a.name}" for a in node.names if _unsafe(a.name)]
        elif isinstance(node, ast.ImportFrom) and node.module and _unsafe(node.module):
            found.append(f"from {node.module} import ...")
        elif isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id in UNSAFE_CALLS:
                found.append(f"{func.id}(...) at line {node.lineno}")
            if (isinstance(func, ast.Name) and func.id == "__import__") or (
                isinstance(func, ast.Attribute) and func.attr == "import_module"
            ):
                names = [a.value for a in node.args if isinstance(a, ast.Constant)]
                found += [f"dynamic import of {n}" for n in names if _unsafe(str(n))]
            if (
                isinstance(func, ast.Attribute)
                and isinstance(func.value, ast.Name)
                and (func.value.id, func.attr) in SHELL_CALLS
            ):
                found.append(f"{func.value.id}.{func.attr}(...) at line {node.lineno}")
            for kw in node.keywords:
                if kw.arg == "shell" and not (
                    isinstance(kw.value, ast.Constant) and kw.value.value is False
                ):
                    found.append(f"shell= at line {node.lineno}")
    return found


def _unsafe(module: str) -> bool:
    return module.split(".")[0] in UNSAFE_MODULES


def test_the_source_checker_catches_each_forbidden_construct() -> None:
    bad = {
        "import pickle": 1,
        "import dill as d": 1,
        "from marshal import loads": 1,
        "from pickle import loads as l": 1,
        "import shelve, os": 1,
        "eval('1')": 1,
        "exec('x = 1')": 1,
        "__import__('pickle')": 1,
        "importlib.import_module('cloudpickle')": 1,
        "subprocess.run('ls', shell=True)": 1,
        "subprocess.run('ls', shell=flag)": 1,
        "os.system('ls')": 1,
    }
    for source, count in bad.items():
        assert len(unsafe_constructs(source)) == count, source
    good = "import json\nsubprocess.run(['ls'], shell=False)\nliteral_eval('1')\nx.eval()\n"
    assert unsafe_constructs(good) == []


def test_no_pickle_eval_exec_or_shell_anywhere() -> None:
    files = [
        path
        for top in ("streamq", "examples", "bench")
        for path in sorted((ROOT / top).rglob("*.py"))
        if ".venv" not in path.parts
    ]
    assert len(files) > 40  # the walk found the code
    problems = {
        str(path.relative_to(ROOT)): found
        for path in files
        if (found := unsafe_constructs(path.read_text("utf-8")))
    }
    assert not problems, problems
