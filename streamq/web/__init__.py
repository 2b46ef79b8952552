"""The operators' web app (Starlette): ``create_app()`` with the dashboard at ``/``, its JSON
API under ``/api``, Prometheus ``/metrics``, bearer-token auth and its settings. Needs the
``web`` extra (``pip install 'streamq[web]'``)."""

try:
    import prometheus_client  # noqa: F401 (probed: the extra's modules, before any use)
    import starlette  # noqa: F401
except ImportError as exc:  # say which extra, not just which module
    raise ModuleNotFoundError(
        f"streamq.web needs the web extra ({exc.name or 'a dependency'} is not installed): "
        "install streamq[web] (pip install 'streamq[web]')",
        name=exc.name,
    ) from exc

from streamq.web.app import create_app
from streamq.web.auth import authorized, require_token, unauthorized
from streamq.web.config import DEFAULT_HEALTH_QUEUES, WebSettings, parse_queue_map
from streamq.web.errors import safe_error
from streamq.web.fleet import WebAdmin
from streamq.web.metrics import FleetCollector

__all__ = [
    "DEFAULT_HEALTH_QUEUES",
    "FleetCollector",
    "WebAdmin",
    "WebSettings",
    "authorized",
    "create_app",
    "parse_queue_map",
    "require_token",
    "safe_error",
    "unauthorized",
]
