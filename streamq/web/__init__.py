"""The operators' web app (Starlette): ``create_app()``, bearer-token auth for API routes,
and its settings. Needs the ``web`` extra (``pip install 'streamq[web]'``)."""

from streamq.web.app import create_app, safe_error
from streamq.web.auth import authorized, require_token, unauthorized
from streamq.web.config import DEFAULT_HEALTH_QUEUES, WebSettings, parse_queue_map

__all__ = [
    "DEFAULT_HEALTH_QUEUES",
    "WebSettings",
    "authorized",
    "create_app",
    "parse_queue_map",
    "require_token",
    "safe_error",
    "unauthorized",
]
