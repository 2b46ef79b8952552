"""``streamq web``: serve the operators' web app (:func:`streamq.web.create_app`: health,
dashboard, JSON API, ``/metrics``) with uvicorn.

The token is ``STREAMQ_API_TOKEN``, as for ``uvicorn streamq.web.app:create_app --factory``;
without one the command refuses to start unless ``--allow-no-token`` (or
``STREAMQ_WEB_ALLOW_NO_TOKEN=1``) says otherwise, and even then only on a loopback address.
SIGTERM and SIGINT stop it gracefully (open requests finish, the lifespan closes the
connections); SIGTERM then exits 0, like a worker.
"""

from __future__ import annotations

import ipaddress
import signal
import sys
from types import FrameType
from typing import Any

from streamq.cli.context import EXIT_NOT_FOUND, EXIT_OK, EXIT_USAGE, Context
from streamq.errors import ConfigError

__all__ = ["MISSING_EXTRA_HINT", "cmd_web", "missing_web_extra"]

#: What to tell someone whose streamq was installed without the ``web`` extra.
MISSING_EXTRA_HINT = "install streamq[web] (pip install 'streamq[web]')"
_WEB_MODULES = ("starlette", "uvicorn", "prometheus_client")


def missing_web_extra() -> str | None:
    """The first module of the ``web`` extra that cannot be imported, or None."""
    for name in _WEB_MODULES:
        try:
            __import__(name)
        except ImportError:
            return name
    return None


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _exit_on_term(signum: int, frame: FrameType | None) -> None:
    # uvicorn catches SIGTERM itself, shuts down gracefully, restores this handler and
    # raises the signal again: end the process with 0 then, as a worker does. Before uvicorn
    # takes over (or after), the same handler ends the command at once.
    raise SystemExit(EXIT_OK)


def cmd_web(ctx: Context) -> int:
    """``streamq web [--host H] [--port P] [--allow-no-token] [--log-level L]``."""
    a = ctx.args
    missing = missing_web_extra()
    if missing is not None:
        print(
            f"error: `streamq web` needs the web extra ({missing} is not installed): "
            f"{MISSING_EXTRA_HINT}",
            file=ctx.err,
        )
        return EXIT_USAGE
    import uvicorn

    from streamq.web import create_app

    if a.allow_no_token and not _loopback(a.host):
        raise ConfigError(
            f"--allow-no-token serves the API without authentication: only on a loopback "
            f"--host (127.0.0.1, ::1, localhost), not {a.host!r}; set STREAMQ_API_TOKEN"
        )
    app = create_app(ctx.settings, allow_no_token=True if a.allow_no_token else None)
    config: Any = uvicorn.Config(
        app,
        host=a.host,
        port=a.port,
        log_level=a.log_level,
        lifespan="on",
        ws="none",  # the app has no websocket route
        server_header=False,
    )
    previous = signal.signal(signal.SIGTERM, _exit_on_term)
    try:
        uvicorn.Server(config).run()
    except SystemExit as exc:
        # Ours (SIGTERM: 0), or uvicorn's startup failure (port taken...: it logged why).
        return EXIT_OK if exc.code in (None, EXIT_OK) else EXIT_NOT_FOUND
    finally:
        signal.signal(signal.SIGTERM, previous)
        sys.stdout.flush()
    return EXIT_OK
