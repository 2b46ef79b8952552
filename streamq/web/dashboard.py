"""The dashboard: an HTML shell at ``/``, its script and style under ``/static/``, and the
security headers of every answer.

The shell holds no queue data and needs no token. Its script (``static/dashboard.js``,
plain JavaScript, no build step, no CDN) reads the token from the URL fragment
``#token=...`` (which browsers never send to the server) or from a login field, keeps it in
``sessionStorage`` (gone when the tab closes; a later ``#token=`` in the same tab replaces
it without a reload), and calls the JSON API with ``Authorization: Bearer``. A cross-site
form cannot set that header, and mutating routes are POST/PUT/DELETE only, so the actions are
not CSRF-able.

Every answer carries a strict Content-Security-Policy (scripts and styles from this origin
only, no inline code, no framing, ``connect-src 'self'``), ``X-Frame-Options: DENY``,
``X-Content-Type-Options: nosniff`` and ``Referrer-Policy: no-referrer``.
"""

from __future__ import annotations

from importlib import resources

from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["CONTENT_SECURITY_POLICY", "SECURITY_HEADERS", "SecurityHeaders", "dashboard_routes"]

#: No inline script or style, nothing from another origin, never inside a frame.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

#: Headers added to every answer of the app (an endpoint may set its own first).
SECURITY_HEADERS: tuple[tuple[str, str], ...] = (
    ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
    ("X-Frame-Options", "DENY"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
    ("Cross-Origin-Resource-Policy", "same-origin"),
)


class SecurityHeaders:
    """ASGI middleware adding :data:`SECURITY_HEADERS` to every HTTP answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on; add the headers to the response start message."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS:
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def dashboard_routes() -> list[BaseRoute]:
    """``GET /`` (the shell, read once here) and ``/static/...``."""
    html = (resources.files("streamq.web") / "static" / "dashboard.html").read_text("utf-8")

    async def page(request: Request) -> Response:
        """``GET /``: the dashboard page. Static: no queue data, no token needed."""
        return HTMLResponse(html, headers={"Cache-Control": "no-cache"})

    return [
        Route("/", page, methods=["GET"], name="dashboard"),
        Mount("/static", StaticFiles(packages=[("streamq.web", "static")]), name="static"),
    ]
