"""The web app: ``create_app()`` builds a Starlette application.

Routes:

* ``GET /`` — the dashboard (:mod:`streamq.web.dashboard`): a static shell whose script
  calls the JSON API with the bearer token; ``/static/...`` its script and style.
* ``GET /api/queue/health`` (bearer token) — ``{"status": "healthy", "queues": {alias:
  {waiting, active, completed, failed, delayed}}, "workers": {alias: live workers},
  "stuck_handlers": {alias: n}, "held": {alias: n}, "flow": {alias: {held, running,
  keys_rate_limited, keys_at_concurrency, rate_limited_total}}, "timestamp": ISO-8601}``
  (``"degraded"``, still 200, while a sync handler runs past its time limit and holds a
  worker slot; held jobs wait on a limit by design and never degrade it); 500
  ``{"status": "unhealthy", "error": ...}`` when Redis cannot be read (the message never
  contains credentials nor the server's address).
* ``/api/queues...``, ``/api/jobs/{id}``, ``/api/workers`` (bearer token) — the
  dashboard's JSON API (:mod:`streamq.web.api`): status, jobs, search by id, schedules, DLQ
  retry/delete, pause/resume, workers; listings paged on the server; flow-control limits,
  priority mode and figures (:mod:`streamq.web.limits`).
* ``GET /metrics`` (bearer token) — Prometheus text format (:mod:`streamq.web.metrics`).

Every answer carries a strict Content-Security-Policy and ``X-Frame-Options: DENY``.

Everything lives on ``app.state`` (``producer``, ``admin``, ``queues``, ``api_token``...),
nothing in module globals, so several apps can live in one process; the lifespan closes the
producer and the admin. Applications add their own routes with ``routes=`` and protect them
with :func:`streamq.web.auth.require_token` (see ``examples/distribution/web.py``).

Run it with ``uvicorn streamq.web.app:create_app --factory`` (settings from the
environment: ``REDIS_URL``/``REDIS_*``, ``STREAMQ_API_TOKEN``, ``STREAMQ_HEALTH_QUEUES``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from streamq.config import Settings
from streamq.producer import AsyncProducer
from streamq.web.api import API_ROUTES
from streamq.web.auth import require_token
from streamq.web.config import WebSettings, normalise_queues
from streamq.web.dashboard import SecurityHeaders, dashboard_routes
from streamq.web.errors import safe_error, secrets_of
from streamq.web.fleet import WebAdmin
from streamq.web.limits import LIMITS_ROUTES
from streamq.web.metrics import METRICS_ROUTES

__all__ = ["create_app", "safe_error"]

log = logging.getLogger("streamq.web")

#: Seconds the health check waits for Redis before answering "unhealthy".
HEALTH_TIMEOUT_S = 5.0


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def health(request: Request) -> Response:
    """``GET /api/queue/health``: counts of every configured queue, or 500 unhealthy."""
    state = request.app.state
    queues: Mapping[str, str] = state.queues
    try:
        infos = await asyncio.wait_for(
            state.admin.status(list(queues.values())), timeout=state.health_timeout
        )
    except Exception as exc:  # any failure to read Redis is "unhealthy", never a crash
        error = safe_error(exc, state.secrets)
        log.warning("health check failed: %s", error)
        return JSONResponse(
            {"status": "unhealthy", "error": error, "timestamp": _now_iso()}, status_code=500
        )
    by_alias = dict(zip(queues, infos, strict=True))
    stuck = {alias: i.stuck_handlers for alias, i in by_alias.items()}
    # Still 200: Redis answers and jobs flow; "degraded" says some worker slots are held
    # by sync handlers past their time limit (see streamq/worker/threads.py).
    body: dict[str, Any] = {
        "status": "degraded" if any(stuck.values()) else "healthy",
        "queues": {alias: i.status.counts() for alias, i in by_alias.items()},
        "workers": {alias: i.workers for alias, i in by_alias.items()},
        "stuck_handlers": stuck,
        # Held jobs wait on a limit by design: reported, never "degraded".
        "held": {alias: i.flow.held for alias, i in by_alias.items()},
        "flow": {
            alias: {
                "held": i.flow.held,
                "running": i.flow.running,
                "keys_rate_limited": i.flow.keys_rate_limited,
                "keys_at_concurrency": i.flow.keys_at_concurrency,
                "rate_limited_total": i.flow.rate_limited_total,
            }
            for alias, i in by_alias.items()
        },
        "timestamp": _now_iso(),
    }
    return JSONResponse(body)


def create_app(
    settings: Settings | None = None,
    *,
    producer: AsyncProducer | None = None,
    queues: Mapping[str, str] | Sequence[str] | None = None,
    api_token: str | None = None,
    allow_no_token: bool | None = None,
    routes: Sequence[BaseRoute] = (),
    health_timeout: float = HEALTH_TIMEOUT_S,
) -> Starlette:
    """Build the app.

    ``settings``: engine settings (default: the environment). ``producer``: an
    :class:`~streamq.AsyncProducer` to use; the app takes it over and its lifespan closes it
    (default: one made from ``settings``). ``queues``: what the health check reports, as
    ``{alias: queue}`` or a list of queue names (default ``STREAMQ_HEALTH_QUEUES``, else the
    three distribution queues). ``api_token`` (default ``STREAMQ_API_TOKEN``) protects every
    API route and ``/metrics``; without one this raises
    :class:`~streamq.errors.ConfigError` unless ``allow_no_token`` (default
    ``STREAMQ_WEB_ALLOW_NO_TOKEN``) is true. ``routes`` are appended (protect them with
    :func:`~streamq.web.auth.require_token`).
    """
    web = WebSettings.from_env()
    engine = settings or (producer.settings if producer is not None else web.engine)
    token = api_token if api_token is not None else web.api_token
    if token is not None and not token.strip():
        token = None
    allow = web.allow_no_token if allow_no_token is None else allow_no_token
    WebSettings(token, allow).check()
    queue_map = normalise_queues(queues if queues is not None else web.queues)

    the_producer = producer if producer is not None else AsyncProducer(settings=engine)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if token is None:
            log.warning("serving the API WITHOUT authentication (no STREAMQ_API_TOKEN)")
        try:
            yield
        finally:
            try:
                await app.state.producer.close()
            finally:
                await app.state.admin.close()

    app = Starlette(
        routes=[
            Route("/api/queue/health", require_token(health), methods=["GET"]),
            *API_ROUTES,
            *LIMITS_ROUTES,
            *METRICS_ROUTES,
            *dashboard_routes(),
            *routes,
        ],
        middleware=[Middleware(SecurityHeaders)],
        lifespan=lifespan,
    )
    app.state.producer = the_producer
    app.state.admin = WebAdmin(settings=engine)
    app.state.settings = engine
    app.state.queues = queue_map
    app.state.api_token = token
    app.state.allow_no_token = allow
    app.state.health_timeout = health_timeout
    app.state.secrets = secrets_of(engine)
    return app
