"""The generic web app (streamq.web): health endpoint, bearer-token auth, configuration,
lifespan, and the unhealthy answer when Redis goes away."""

from __future__ import annotations

import ast
import hmac
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from _support import WEB_ENV, clear_env
from starlette.testclient import TestClient

import streamq.web.auth
from streamq import AsyncProducer, ConfigError, Producer, RedisSettings, Settings
from streamq.server import EmbeddedServer
from streamq.web import DEFAULT_HEALTH_QUEUES, WebSettings, create_app, parse_queue_map, safe_error

WEB_DIR = Path(__file__).resolve().parents[1] / "streamq" / "web"
TOKEN = "s3cret-token-for-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
HEALTH = "/api/queue/health"
COUNTS = {"waiting", "active", "completed", "failed", "delayed"}
# Never contacted by the tests that use it: auth and config are checked before any I/O.
UNREACHABLE = Settings(redis=RedisSettings(url="redis://127.0.0.1:1/0", connect_timeout=0.5))


@pytest.fixture
def settings(redis_url: str, queue_name: str) -> Settings:
    """Engine settings on the session server with a key prefix unique to this test."""
    return Settings(redis=RedisSettings(url=redis_url), prefix=queue_name)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    clear_env(monkeypatch, *WEB_ENV)


def make_app(settings: Settings, **kwargs: Any) -> Any:
    kwargs.setdefault("api_token", TOKEN)
    return create_app(settings, producer=AsyncProducer(settings=settings), **kwargs)


# --------------------------------------------------------------------------- health


def test_health_reports_the_five_counts_of_the_three_distribution_queues(
    settings: Settings,
) -> None:
    with Producer(settings=settings) as producer:
        producer.enqueue("distribution:dispatch", "dispatch", {"n": 1})
        producer.enqueue("distribution:dispatch", "dispatch", {"n": 2})
        producer.enqueue("distribution:scheduled", "scheduled_publish", {}, delay=3600)
    with TestClient(make_app(settings)) as client:
        r = client.get(HEALTH, headers=AUTH)
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "healthy"
    assert set(body["queues"]) == {"dispatch", "scheduled", "tokenRefresh"}
    for counts in body["queues"].values():
        assert set(counts) == COUNTS
    assert body["queues"]["dispatch"]["waiting"] == 2
    assert body["queues"]["scheduled"]["delayed"] == 1
    assert body["queues"]["tokenRefresh"] == dict.fromkeys(COUNTS, 0)
    assert body["timestamp"].endswith("Z") and "T" in body["timestamp"]


def test_health_queues_are_configurable(settings: Settings) -> None:
    with Producer(settings=settings) as producer:
        producer.enqueue("emails", "send", {})
    with TestClient(make_app(settings, queues={"mail": "emails"})) as client:
        assert client.get(HEALTH, headers=AUTH).json()["queues"] == {
            "mail": {**dict.fromkeys(COUNTS, 0), "waiting": 1}
        }
    with TestClient(make_app(settings, queues=["emails", "sms"])) as client:
        assert set(client.get(HEALTH, headers=AUTH).json()["queues"]) == {"emails", "sms"}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": "Bearer "},
        {"Authorization": TOKEN},
    ],
    ids=["missing", "wrong", "longer", "basic", "empty", "no-scheme"],
)
def test_health_refuses_requests_without_the_right_token(headers: dict[str, str]) -> None:
    with TestClient(make_app(UNREACHABLE)) as client:
        r = client.get(HEALTH, headers=headers)
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert TOKEN not in r.text


def test_tokens_are_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(streamq.web.auth.hmac, "compare_digest", spy)
    with TestClient(make_app(UNREACHABLE)) as client:
        client.get(HEALTH, headers={"Authorization": "Bearer guess"})
    assert (b"guess", TOKEN.encode()) in calls


def test_app_refuses_to_start_without_a_token_unless_told(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConfigError, match="STREAMQ_API_TOKEN"):
        create_app(UNREACHABLE)
    with pytest.raises(ConfigError, match="STREAMQ_API_TOKEN"):
        create_app(UNREACHABLE, api_token="   ")
    with TestClient(make_app(settings, api_token=None, allow_no_token=True)) as client:
        assert client.get(HEALTH).status_code == 200
    monkeypatch.setenv("STREAMQ_WEB_ALLOW_NO_TOKEN", "1")
    with TestClient(make_app(settings, api_token=None)) as client:
        assert client.get(HEALTH).status_code == 200


def test_factory_reads_everything_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, redis_url: str, queue_name: str
) -> None:
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("STREAMQ_PREFIX", queue_name)
    monkeypatch.setenv("STREAMQ_API_TOKEN", TOKEN)
    monkeypatch.setenv("STREAMQ_HEALTH_QUEUES", "jobs=work:main, other")
    with TestClient(create_app()) as client:
        assert client.get(HEALTH).status_code == 401
        r = client.get(HEALTH, headers=AUTH)
    assert r.status_code == 200
    assert set(r.json()["queues"]) == {"jobs", "other"}


def test_queue_configuration_errors_name_the_variable() -> None:
    assert parse_queue_map("a=q1,q2") == {"a": "q1", "q2": "q2"}
    for raw in ("a=", "a=bad queue", "a=q1,a=q2", " , "):
        with pytest.raises(ConfigError, match="STREAMQ_HEALTH_QUEUES"):
            parse_queue_map(raw)
    with pytest.raises(ConfigError, match="STREAMQ_WEB_ALLOW_NO_TOKEN"):
        WebSettings.from_env({"STREAMQ_WEB_ALLOW_NO_TOKEN": "maybe"})
    assert WebSettings.from_env({}).queues == DEFAULT_HEALTH_QUEUES
    assert "hide-me" not in repr(WebSettings.from_env({"STREAMQ_API_TOKEN": "hide-me"}))


def test_health_is_500_unhealthy_when_redis_goes_away_and_hides_the_password(
    server_factory: Callable[..., EmbeddedServer], queue_name: str
) -> None:
    srv = server_factory()
    assert srv.password
    settings = Settings(redis=RedisSettings(url=srv.url, connect_timeout=1.0), prefix=queue_name)
    with TestClient(make_app(settings)) as client:
        assert client.get(HEALTH, headers=AUTH).status_code == 200
        srv.stop(save=False)
        r = client.get(HEALTH, headers=AUTH)
    assert r.status_code == 500
    body = r.json()
    assert body["status"] == "unhealthy"
    assert "cannot reach Redis" in body["error"]
    assert srv.password not in r.text
    assert "queues" not in body


@pytest.mark.parametrize("shape", ["url", "url-password", "url-user-password", "fields-password"])
def test_unhealthy_answer_names_no_host_port_or_credentials_whatever_the_url_shape(
    server_factory: Callable[..., EmbeddedServer], queue_name: str, shape: str
) -> None:
    """With or without a password, in a URL or in REDIS_HOST/PORT/PASSWORD-style fields, the
    answers an HTTP client sees while Redis is down name neither where Redis lives nor how
    to log in (the password-less answer used to mask the address, the others leaked it)."""
    srv = server_factory(password=None if shape == "url" else "pw-Hidden-9")
    port = srv.port
    redis = {
        "url": RedisSettings(url=f"redis://127.0.0.1:{port}/0"),
        "url-password": RedisSettings(url=f"redis://:pw-Hidden-9@127.0.0.1:{port}/0"),
        "url-user-password": RedisSettings(url=f"redis://opsuser:pw-Hidden-9@127.0.0.1:{port}/0"),
        "fields-password": RedisSettings(host="127.0.0.1", port=port, password="pw-Hidden-9"),
    }[shape]
    settings = Settings(redis=replace(redis, connect_timeout=0.5), prefix=queue_name)
    srv.stop(save=False)
    with TestClient(make_app(settings, health_timeout=3.0)) as client:
        answers = [client.get(HEALTH, headers=AUTH), client.get("/api/queues", headers=AUTH)]
    health, api = answers
    assert health.status_code == 500 and health.json()["status"] == "unhealthy"
    assert api.status_code == 503
    for r in answers:
        assert "cannot reach Redis" in r.json()["error"], r.text
        for leak in (str(port), "127.0.0.1", "pw-Hidden-9", "opsuser", "redis://"):
            assert leak not in r.text, (shape, leak, r.text)


def test_health_answers_unhealthy_when_redis_refuses_the_password(
    server: EmbeddedServer, queue_name: str
) -> None:
    wrong = f"redis://:not-the-password@127.0.0.1:{server.port}/0"
    settings = Settings(redis=RedisSettings(url=wrong), prefix=queue_name)
    with TestClient(make_app(settings)) as client:
        r = client.get(HEALTH, headers=AUTH)
    assert r.status_code == 500
    assert "credentials" in r.json()["error"]
    assert "not-the-password" not in r.text


def test_safe_error_masks_secrets_and_hides_foreign_messages() -> None:
    assert safe_error(ConfigError("bad pw hunter2"), ["hunter2"]) == "bad pw ***"
    assert safe_error(RuntimeError("redis://:hunter2@host")) == "unexpected error (RuntimeError)"


def test_lifespan_closes_the_producer(settings: Settings) -> None:
    closed: list[bool] = []

    class Tracking(AsyncProducer):
        async def close(self) -> None:
            closed.append(True)
            await super().close()

    app = create_app(settings, producer=Tracking(settings=settings), api_token=TOKEN)
    assert app.state.producer is not None and app.state.api_token == TOKEN
    with TestClient(app) as client:
        assert client.get(HEALTH, headers=AUTH).status_code == 200
        assert closed == []
    assert closed == [True]


def test_two_apps_in_one_process_keep_their_own_state(settings: Settings) -> None:
    one = make_app(settings, queues=["a"], api_token="token-one")
    two = make_app(settings, queues=["b"], api_token="token-two")
    with TestClient(one) as c1, TestClient(two) as c2:
        assert c1.get(HEALTH, headers={"Authorization": "Bearer token-two"}).status_code == 401
        assert set(
            c1.get(HEALTH, headers={"Authorization": "Bearer token-one"}).json()["queues"]
        ) == {"a"}
        assert set(
            c2.get(HEALTH, headers={"Authorization": "Bearer token-two"}).json()["queues"]
        ) == {"b"}


def test_streamq_web_does_not_import_the_examples() -> None:
    for path in WEB_DIR.rglob("*.py"):
        tree = ast.parse(path.read_text("utf-8"))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            assert not any(n.split(".")[0] == "examples" for n in names), path
