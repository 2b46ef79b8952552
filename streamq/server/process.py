"""The embedded server process: spawn, wait until ready, stop, restart, clean up.

:class:`EmbeddedServer` writes the config (:mod:`streamq.server.conf`) into its data
directory, starts the binary (:mod:`streamq.server.binaries`) in a session of its own, waits
until *its own* process answers ``PING`` (AOF/RDB loading included; a port squatter does not
count), and stops it with ``SHUTDOWN``, escalating to SIGTERM and SIGKILL. Servers still
running when the interpreter exits are killed, so a crashed test run leaves no orphan.
"""

from __future__ import annotations

import atexit
import contextlib
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from streamq.errors import ServerError
from streamq.server.binaries import (
    find_server_binary,
    refuses_tls,
    reported_version,
    reports_valkey,
)
from streamq.server.conf import (
    HOST,
    PROFILES,
    TLS_MANAGED,
    Profile,
    TlsFiles,
    normalise_extra,
    render_config,
    write_private,
)

_PORT_CLASH = "Address already in use"
_START_ATTEMPTS = 3

# Servers started by this process and not yet stopped: killed at interpreter exit, so a
# crashed test run or a forgotten stop() leaves no orphan behind.
_LIVE: set[EmbeddedServer] = set()


def _free_port() -> int:
    """Ask the kernel for a free loopback port (it may be taken again before we bind it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


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
        if profile not in PROFILES:
            raise ValueError(f"profile must be one of {', '.join(PROFILES)}, not {profile!r}")
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
        self._extra = normalise_extra(extra_config)
        self._tls = tls.resolved() if tls is not None else None
        if self._tls is not None:
            clash = sorted({name for name, _ in self._extra} & TLS_MANAGED)
            if clash:
                raise ValueError(f"{', '.join(clash)}: managed by EmbeddedServer when tls is set")
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._info: dict[str, Any] = {}
        self._log_offset = 0

    # ----------------------------------------------------------------- properties

    @property
    def host(self) -> str:
        """The address the server listens on (always loopback)."""
        return HOST

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
        return f"{scheme}://{auth}{HOST}:{self._port}/0"

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
        return reports_valkey(self.info)

    @property
    def version(self) -> tuple[int, ...]:
        """Server version: ``valkey_version`` for Valkey, else ``redis_version``."""
        return reported_version(self.info)

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return (
            f"<EmbeddedServer {state} {HOST}:{self._port} "
            f"data_dir={str(self._data_dir)!r} auth={'yes' if self._password else 'no'}"
            f"{' tls' if self._tls is not None else ''}>"
        )

    # ----------------------------------------------------------------- config

    def render_config(self) -> str:
        """The config :meth:`start` writes: the base file's directives, then the launcher's."""
        return render_config(
            self._config_file,
            port=self._port,
            data_dir=self._data_dir,
            log_path=self.log_path,
            password=self._password,
            profile=self._profile,
            maxmemory=self._maxmemory,
            extra=self._extra,
            tls=self._tls,
        )

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
        attempt = 1
        while True:
            try:
                self._spawn_and_wait(binary)
            except ServerError as exc:
                tail = self._log_tail()
                if self._tls is not None and refuses_tls(tail):
                    raise ServerError(
                        f"{binary} was built without TLS support (it refuses tls-port):\n{tail}"
                    ) from exc
                clash = _PORT_CLASH in tail
                if not (clash and self._auto_port and attempt < _START_ATTEMPTS):
                    raise
                attempt += 1
                self._port = _free_port()
            else:
                _LIVE.add(self)
                return self

    def _spawn_and_wait(self, binary: Path) -> None:
        write_private(self.config_path, self.render_config())
        with open(self.log_path, "ab") as log:
            # The log is kept across restarts; failures show only this attempt's part.
            self._log_offset = log.tell()
            try:
                self._process = subprocess.Popen(
                    self._argv(binary),
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

    def _argv(self, binary: Path) -> list[str]:
        """The command line: the binary and its config file (subclasses may add flags)."""
        return [str(binary), str(self.config_path)]

    def _client(self, timeout: float = 2.0) -> redis.Redis:
        tls: dict[str, Any] = {}
        if self._tls is not None:
            # Verify the certificate (and that it names 127.0.0.1) before sending the password.
            tls = {"ssl": True, "ssl_ca_certs": str(self._tls.ca_file), "ssl_cert_reqs": "required"}
        return redis.Redis(
            host=HOST,
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
        assert process is not None  # every caller has checked
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
