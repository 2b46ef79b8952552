"""The config file an embedded server runs with.

:func:`render_config` takes the packaged ``streamq/redis.conf`` (or a caller's file), drops
the directives the launcher manages, and appends its own: ``port``, ``bind``, ``dir``,
``logfile``, ``pidfile``, ``daemonize``, ``requirepass``, the persistence profile,
``maxmemory``, the TLS directives when :class:`TlsFiles` are given, and the caller's
``extra_config``. Values are quoted for redis.conf; a value with a newline is refused, so no
input can smuggle in a directive of its own.
"""

from __future__ import annotations

import importlib.resources
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from streamq.errors import ServerError

Profile = Literal["default", "strict", "none"]
"""Persistence profile: AOF ``everysec`` + RDB, AOF ``always`` + RDB, or no persistence."""

PROFILES: tuple[str, ...] = ("default", "strict", "none")
HOST = "127.0.0.1"
"""The only address an embedded server listens on."""

# Directives the launcher always sets itself; extra_config may not override them.
MANAGED = frozenset({"port", "bind", "dir", "logfile", "pidfile", "daemonize", "requirepass"})
_PERSISTENCE = frozenset({"appendonly", "appendfsync", "save"})
# Directives the launcher sets itself when it runs the server with TLS.
TLS_MANAGED = frozenset(
    {"tls-port", "tls-cert-file", "tls-key-file", "tls-ca-cert-file", "tls-auth-clients"}
)


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


def quote(value: str) -> str:
    """Quote a value for redis.conf (double quotes, backslash escapes)."""
    if "\n" in value or "\r" in value or "\0" in value:
        raise ValueError("config values must not contain newlines or NUL bytes")
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def normalise_extra(
    extra: Mapping[str, str] | Sequence[tuple[str, str]] | None,
) -> list[tuple[str, str]]:
    """``extra_config`` as ``(directive, value)`` pairs, names lower-cased; raises
    ``ValueError`` for a malformed name, a directive the launcher manages, or a value that
    cannot be quoted."""
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
        if name in MANAGED:
            raise ValueError(f"{name!r} is managed by EmbeddedServer; use its arguments")
        quote(value)  # validate early
        result.append((name, value))
    return result


def _directive(line: str) -> str | None:
    stripped = line.strip()
    if not stripped or stripped.startswith("#"):
        return None
    return stripped.split(None, 1)[0].lower()


def _default_config_text() -> str:
    return importlib.resources.files("streamq").joinpath("redis.conf").read_text("utf-8")


def render_config(
    config_file: Path | None,
    *,
    port: int,
    data_dir: Path,
    log_path: Path,
    password: str | None,
    profile: Profile,
    maxmemory: str | None,
    extra: Sequence[tuple[str, str]],
    tls: TlsFiles | None,
) -> str:
    """The base file's directives (``config_file``, else the packaged ``redis.conf``) minus
    those set here, then the launcher's own settings and ``extra`` (see the module doc)."""
    base = config_file.read_text("utf-8") if config_file is not None else _default_config_text()
    overridden = set(MANAGED) | {"appendonly", "appendfsync"}
    if tls is not None:
        overridden |= TLS_MANAGED
    if profile == "none":
        overridden |= _PERSISTENCE
    if maxmemory is not None:
        overridden.add("maxmemory")
    overridden |= {name for name, _ in extra}

    source = config_file or "streamq/redis.conf"
    lines = [f"# Generated by streamq.server from {source}; rewritten on every start."]
    for line in base.splitlines():
        name = _directive(line)
        if name is not None and name not in overridden:
            lines.append(line.strip())
    lines.append("# streamq.server settings")
    if tls is None:
        lines.append(f"port {port}")
    else:
        lines += [
            "port 0",
            f"tls-port {port}",
            f"tls-cert-file {quote(str(tls.cert_file))}",
            f"tls-key-file {quote(str(tls.key_file))}",
            f"tls-ca-cert-file {quote(str(tls.ca_file))}",
            "tls-auth-clients no",
        ]
    lines += [
        f"bind {HOST}",
        f"dir {quote(str(data_dir))}",
        f"logfile {quote(str(log_path))}",
        f"pidfile {quote(str(data_dir / 'server.pid'))}",
        "daemonize no",
    ]
    if password is not None:
        lines.append(f"requirepass {quote(password)}")
    if profile == "none":
        lines += ["appendonly no", 'save ""']
    else:
        fsync = "always" if profile == "strict" else "everysec"
        lines += ["appendonly yes", f"appendfsync {fsync}"]
    if maxmemory is not None:
        lines.append(f"maxmemory {maxmemory}")
    lines += [f"{name} {quote(value)}" for name, value in extra]
    return "\n".join(lines) + "\n"


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by the owner only (it may hold a password)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    path.chmod(0o600)
