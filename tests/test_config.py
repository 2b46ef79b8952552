"""Settings from the environment: every variable config.py reads, what a bad value does (a
ConfigError naming the variable, never echoing a secret), URL assembly, TLS mapping, and
``.env.example`` kept in step with the code."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import redis
from redis.connection import SSLConnection, parse_url

import streamq.config
from streamq import ConfigError, RedisSettings, Settings
from streamq.connection import async_client, sync_client

ROOT = Path(__file__).resolve().parent.parent
CONFIG_SOURCE = Path(streamq.config.__file__).read_text()
ENV_EXAMPLE = ROOT / ".env.example"
_NAME = re.compile(r"^(?:STREAMQ|REDIS)_[A-Z0-9_]+$")


def variables_read_by_config() -> set[str]:
    """Names passed to ``env.get(...)`` or the ``_int``/``_float``/... readers."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(CONFIG_SOURCE)):
        if isinstance(node, ast.Call):
            for arg in node.args:
                if (
                    isinstance(arg, ast.Constant)
                    and isinstance(arg.value, str)
                    and _NAME.match(arg.value)
                ):
                    names.add(arg.value)
    return names


VARIABLES = variables_read_by_config()

# A bad value for every variable (several for some). Free-form ones are listed apart, with
# the reason they have none; the completeness test below makes a new variable pick a side.
BAD_VALUES: dict[str, list[str]] = {
    "REDIS_URL": ["http://db:6379/0", "redis://db:port/0", "localhost:6379"],
    "REDIS_HOST": ["redis://db:6379", "db host", "user@db"],
    "REDIS_PORT": ["six", "0", "70000", "-1"],
    "REDIS_DB": ["one", "-1"],
    "REDIS_TLS": ["maybe", "2"],
    "REDIS_TLS_CA_FILE": ["/nonexistent/ca.pem"],
    "REDIS_TLS_CERT_FILE": ["/nonexistent/cert.pem"],
    "REDIS_TLS_KEY_FILE": ["/nonexistent/key.pem"],
    "REDIS_SOCKET_TIMEOUT": ["soon", "0", "nan", "inf"],
    "REDIS_CONNECT_TIMEOUT": ["later", "-1"],
    "STREAMQ_CLUSTER": ["maybe", "2"],
    "STREAMQ_PREFIX": ["a{b}", "a:b", "a b"],
    "STREAMQ_CONCURRENCY": ["many", "0", "1.5"],
    "STREAMQ_MAX_RETRIES": ["1000000000000000000000000000000", "three", "-1"],
    "STREAMQ_BACKOFF_TYPE": ["linear"],
    "STREAMQ_BACKOFF_DELAY": ["99999999999999", "5s", "-5"],
    "STREAMQ_BACKOFF_FACTOR": ["x", "0.5"],
    "STREAMQ_BACKOFF_JITTER": ["some", "-0.1", "1.5"],
    "STREAMQ_JOB_TIMEOUT": ["1m", "-1", "99999999999999"],
    "STREAMQ_LEASE": ["long", "50"],
    "STREAMQ_MAX_STALLS": ["x", "-2"],
    "STREAMQ_SHUTDOWN_GRACE": ["x", "-1"],
    "STREAMQ_KEEP_COMPLETED": ["all", "-1"],
    "STREAMQ_KEEP_FAILED": ["all", "-1"],
    "STREAMQ_COMPLETED_MAX_AGE": ["1d", "-1"],
    "STREAMQ_FAILED_MAX_AGE": ["1d", "-1"],
    "STREAMQ_MAX_PAYLOAD_BYTES": ["1MB", "0"],
    "STREAMQ_EVENTS_MAXLEN": ["x", "10"],
    "STREAMQ_LOG_LEVEL": ["verbose"],
}
FREE_FORM = {
    "REDIS_USERNAME": "any ACL user name; the server judges it",
    "REDIS_PASSWORD": "any string; the server judges it",
}


def test_config_reads_the_documented_variables() -> None:
    assert len(VARIABLES) >= 30
    assert {"REDIS_URL", "REDIS_PASSWORD", "STREAMQ_CONCURRENCY", "STREAMQ_BACKOFF_DELAY"} <= (
        VARIABLES
    )


def test_every_variable_has_a_bad_value_test_or_a_reason_it_has_none() -> None:
    assert set(BAD_VALUES) | set(FREE_FORM) == VARIABLES
    assert not set(BAD_VALUES) & set(FREE_FORM)


@pytest.mark.parametrize(
    ("name", "value"),
    [(n, v) for n, vs in sorted(BAD_VALUES.items()) for v in vs],
)
def test_a_bad_value_raises_config_error_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({name: value})
    message = str(info.value)
    assert name in message
    # Anything that may be a URL is never echoed (it could carry a password).
    if name in ("REDIS_URL", "REDIS_HOST"):
        assert value not in message


@pytest.mark.parametrize("name", sorted(FREE_FORM))
def test_free_form_variables_accept_any_text(name: str) -> None:
    rs = RedisSettings.from_env({name: "odd value with spaces & symbols:{}"})
    assert getattr(rs, name.removeprefix("REDIS_").lower()) == "odd value with spaces & symbols:{}"


def test_empty_values_mean_unset() -> None:
    assert Settings.from_env({n: "" for n in VARIABLES}) == Settings.from_env({})


def test_env_defaults_are_the_dataclass_defaults_and_the_spec_defaults() -> None:
    s = Settings.from_env({})
    assert s == Settings()
    assert (s.concurrency, s.max_retries, s.keep_completed, s.keep_failed) == (5, 3, 100, 500)
    assert (s.backoff_type, s.backoff_delay_ms, s.backoff_factor) == ("exponential", 5000, 5.0)


def test_values_are_parsed() -> None:
    env = {
        "STREAMQ_PREFIX": "dist",
        "STREAMQ_CONCURRENCY": "12",
        "STREAMQ_MAX_RETRIES": "0",
        "STREAMQ_BACKOFF_TYPE": "FIXED",
        "STREAMQ_BACKOFF_DELAY": " 250 ",
        "STREAMQ_BACKOFF_JITTER": "0.2",
        "STREAMQ_LOG_LEVEL": "Debug",
        "REDIS_TLS": "no",
        "REDIS_SOCKET_TIMEOUT": "2.5",
    }
    s = Settings.from_env(env)
    assert (s.prefix, s.concurrency, s.max_retries) == ("dist", 12, 0)
    assert (s.backoff_type, s.backoff_delay_ms, s.backoff_jitter) == ("fixed", 250, 0.2)
    assert s.log_level == "debug"
    assert s.redis.tls is False and s.redis.socket_timeout == 2.5


@pytest.mark.parametrize("value", ["1", "true", "YES", "on"])
def test_boolean_spellings(value: str) -> None:
    assert RedisSettings.from_env({"REDIS_TLS": value}).tls is True


# ---------------------------------------------------------------------------- URLs


def test_host_port_db_user_password_assemble_into_a_url() -> None:
    rs = RedisSettings.from_env(
        {
            "REDIS_HOST": "db.internal",
            "REDIS_PORT": "6380",
            "REDIS_DB": "2",
            "REDIS_USERNAME": "app",
            "REDIS_PASSWORD": "p@ss:w/rd#1",
        }
    )
    assert rs.to_url() == "redis://app:p%40ss%3Aw%2Frd%231@db.internal:6380/2"
    parsed = parse_url(rs.to_url())
    assert parsed["username"] == "app" and parsed["password"] == "p@ss:w/rd#1"
    assert (parsed["host"], parsed["port"], parsed["db"]) == ("db.internal", 6380, 2)
    assert RedisSettings.from_env({"REDIS_PASSWORD": "x"}).to_url() == (
        "redis://:x@127.0.0.1:6379/0"
    )
    assert RedisSettings.from_env({}).to_url() == "redis://127.0.0.1:6379/0"


def test_redis_url_wins_over_the_separate_variables() -> None:
    rs = RedisSettings.from_env(
        {"REDIS_URL": "redis://u:pw@cache:7000/4", "REDIS_HOST": "other", "REDIS_PORT": "1"}
    )
    assert rs.to_url() == "redis://u:pw@cache:7000/4"
    assert rs.describe() == "redis://cache:7000/4"


def test_describe_and_repr_never_show_credentials() -> None:
    for rs in (
        RedisSettings.from_env({"REDIS_URL": "rediss://admin:Top-Secret-1@cache:7000/4"}),
        RedisSettings.from_env({"REDIS_PASSWORD": "Top-Secret-1", "REDIS_USERNAME": "admin"}),
    ):
        for text in (rs.describe(), repr(rs), str(rs), repr(Settings(redis=rs))):
            assert "Top-Secret-1" not in text
    url = RedisSettings.from_env({"REDIS_URL": "rediss://admin:Top-Secret-1@cache:7000/4"})
    assert url.describe() == "rediss://cache:7000/4"


def test_a_bad_url_error_never_echoes_the_password() -> None:
    for url in ("http://:Top-Secret-1@db/0", "redis://:Top-Secret-1@db:port/0"):
        with pytest.raises(ConfigError) as info:
            RedisSettings.from_env({"REDIS_URL": url})
        assert "Top-Secret-1" not in str(info.value)


# ---------------------------------------------------------------------------- TLS


@pytest.fixture
def tls_files(tmp_path: Path) -> dict[str, str]:
    files = {}
    for var in ("REDIS_TLS_CA_FILE", "REDIS_TLS_CERT_FILE", "REDIS_TLS_KEY_FILE"):
        path = tmp_path / f"{var.lower()}.pem"
        path.write_text("-----BEGIN PLACEHOLDER-----\n")
        files[var] = str(path)
    return files


def test_tls_options_map_to_client_kwargs(tls_files: dict[str, str]) -> None:
    rs = RedisSettings.from_env(
        {"REDIS_HOST": "cache", "REDIS_TLS": "true", "REDIS_SOCKET_TIMEOUT": "3", **tls_files}
    )
    assert rs.to_url().startswith("rediss://cache:6379")
    kw = rs.client_kwargs()
    assert kw["ssl_ca_certs"] == tls_files["REDIS_TLS_CA_FILE"]
    assert kw["ssl_certfile"] == tls_files["REDIS_TLS_CERT_FILE"]
    assert kw["ssl_keyfile"] == tls_files["REDIS_TLS_KEY_FILE"]
    assert (kw["socket_timeout"], kw["socket_connect_timeout"]) == (3.0, 5.0)
    # ...and reach a TLS connection class (the client connects lazily: nothing is dialled).
    for client in (sync_client(rs), async_client(rs)):
        pool = client.connection_pool
        assert pool.connection_class.__name__ == "SSLConnection"
        assert pool.connection_kwargs["ssl_ca_certs"] == tls_files["REDIS_TLS_CA_FILE"]
        assert pool.connection_kwargs["ssl_certfile"] == tls_files["REDIS_TLS_CERT_FILE"]
    sync = sync_client(rs).connection_pool.make_connection()
    assert isinstance(sync, SSLConnection)


def test_tls_true_upgrades_a_plain_redis_url() -> None:
    rs = RedisSettings.from_env({"REDIS_URL": "redis://:pw@cache:6379/0", "REDIS_TLS": "1"})
    assert rs.to_url() == "rediss://:pw@cache:6379/0"
    assert rs.use_tls
    assert sync_client(rs).connection_pool.connection_class is SSLConnection


def test_a_rediss_url_is_tls_without_redis_tls(tls_files: dict[str, str]) -> None:
    rs = RedisSettings.from_env(
        {"REDIS_URL": "rediss://cache:6380/0", "REDIS_TLS_CA_FILE": tls_files["REDIS_TLS_CA_FILE"]}
    )
    assert rs.use_tls
    assert rs.client_kwargs()["ssl_ca_certs"] == tls_files["REDIS_TLS_CA_FILE"]


def test_tls_files_without_tls_are_a_config_error(tls_files: dict[str, str]) -> None:
    # Without this, redis-py fails on the first command with a TypeError.
    with pytest.raises(ConfigError, match=r"REDIS_TLS_CA_FILE.*REDIS_TLS=true"):
        RedisSettings.from_env({"REDIS_TLS_CA_FILE": tls_files["REDIS_TLS_CA_FILE"]})


def test_plain_connections_get_no_tls_kwargs() -> None:
    kw = RedisSettings.from_env({}).client_kwargs()
    assert not any(k.startswith("ssl") for k in kw)
    client = sync_client(RedisSettings.from_env({}))
    assert client.connection_pool.connection_class is redis.Connection


# ---------------------------------------------------------------------------- .env.example


def env_example() -> dict[str, str]:
    values: dict[str, str] = {}
    lines = ENV_EXAMPLE.read_text().splitlines()
    for i, line in enumerate(lines):
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        assert sep, f".env.example line {i + 1} is not NAME=value: {line!r}"
        assert name not in values, f"{name} listed twice"
        assert lines[i - 1].startswith("# ") and len(lines[i - 1]) > 4, (
            f"{name} has no one-line comment above it"
        )
        values[name] = value
    return values


def test_env_example_lists_every_variable_config_reads() -> None:
    listed = env_example()
    assert set(listed) >= VARIABLES, sorted(VARIABLES - set(listed))


def test_env_example_lists_nothing_the_code_does_not_read() -> None:
    package = Path(streamq.config.__file__).parent
    code = "\n".join(p.read_text() for p in package.rglob("*.py"))
    for name in env_example():
        assert f'"{name}"' in code or f"'{name}'" in code, f"{name} is read nowhere"


def test_env_example_shows_the_real_defaults() -> None:
    listed = {k: v for k, v in env_example().items() if k in VARIABLES}
    assert Settings.from_env(listed) == Settings.from_env({})
