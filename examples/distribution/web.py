"""The distribution backend's web app: streamq's generic app plus the admin dispatch route.

* everything of :func:`streamq.web.create_app` (``GET /api/queue/health``...);
* ``POST /api/admin/distribution/dispatch`` (bearer token) with
  ``{"postId": 1, "connectionIds": [1, 2, 3]}`` (ids are integer database keys or strings,
  see :mod:`~examples.distribution.types`; each is kept in the job data as sent) and
  optionally ``scheduleId``, ``requestAiAssets``, ``customMessage``: one ``dispatch`` job
  per connection, all validated before any is queued, in one round trip. Each job's
  flow-control key is derived from its connection (``<platform>:<connection id>``,
  :func:`~examples.distribution.limits.dispatch_key`), never taken from the body, so a
  caller cannot step around the platform limits. Answers 202 with the job ids and keys;
  400 for a body that is not a JSON object, 422 naming the bad field, 413 for a body over
  1 MiB, 503 when Redis cannot be reached.

Run with ``uvicorn examples.distribution.web:create_distribution_app --factory`` or
``uvicorn examples.distribution.web:app`` (built on first access, from the environment).
"""

from __future__ import annotations

import secrets
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from examples.distribution.limits import dispatch_key
from examples.distribution.service import DISPATCH_QUEUE, QUEUES, AsyncQueueService
from examples.distribution.types import DispatchData, JobDataError, id_key, validate_id
from streamq import AsyncProducer, Backoff, Settings, StreamQError
from streamq.web import create_app, require_token, safe_error
from streamq.web.api import cross_site

__all__ = ["DISPATCH_PATH", "create_distribution_app"]

DISPATCH_PATH = "/api/admin/distribution/dispatch"
MAX_BODY_BYTES = 1024 * 1024
MAX_CONNECTIONS = 500
_BODY_FIELDS = {"postId", "connectionIds", "scheduleId", "requestAiAssets", "customMessage"}


def _problem(status: int, message: str, field: str | None = None) -> JSONResponse:
    body: dict[str, Any] = {"error": message}
    if field is not None:
        body["field"] = field
    return JSONResponse(body, status_code=status)


def parse_dispatch_body(body: Any) -> list[DispatchData]:
    """The dispatch jobs a request body asks for; :class:`JobDataError` names a bad field."""
    if not isinstance(body, dict):
        raise JobDataError("body", "must be a JSON object")
    unknown = sorted(set(body) - _BODY_FIELDS)
    if unknown:
        raise JobDataError(unknown[0], "unknown field")
    if body.get("postId") is None:
        raise JobDataError("postId", "is required")
    post_id = validate_id(body["postId"], "postId")
    connections = body.get("connectionIds")
    if connections is None:
        raise JobDataError("connectionIds", "is required")
    if not isinstance(connections, list) or not connections:
        raise JobDataError("connectionIds", "must be a non-empty list of connection ids")
    if len(connections) > MAX_CONNECTIONS:
        raise JobDataError("connectionIds", f"at most {MAX_CONNECTIONS} per request")
    ids = [validate_id(c, f"connectionIds[{i}]") for i, c in enumerate(connections)]
    if len({id_key(c) for c in ids}) != len(ids):  # 7 and "7" are one connection
        raise JobDataError("connectionIds", "must not repeat a connection")
    schedule_id = body.get("scheduleId")
    if schedule_id is None:
        schedule_id = f"adhoc-{secrets.token_hex(8)}"
    schedule_id = validate_id(schedule_id, "scheduleId")
    extra = {k: body[k] for k in ("requestAiAssets", "customMessage") if k in body}
    return [
        DispatchData.from_dict(
            {"scheduleId": schedule_id, "postId": post_id, "targetId": target, **extra}
        )
        for target in ids
    ]


@require_token
async def dispatch(request: Request) -> Response:
    """``POST /api/admin/distribution/dispatch``."""
    if cross_site(request):  # a hostile page's form, even when the app runs without a token
        return _problem(403, "cross-site request refused")
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > MAX_BODY_BYTES:
        return _problem(413, f"body larger than {MAX_BODY_BYTES} bytes")
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        return _problem(413, f"body larger than {MAX_BODY_BYTES} bytes")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return _problem(400, "body must be JSON: {postId, connectionIds}")
    if not isinstance(body, dict):
        return _problem(400, "body must be a JSON object: {postId, connectionIds}")
    try:
        jobs = parse_dispatch_body(body)
    except JobDataError as exc:
        return _problem(422, str(exc), exc.field)
    service: AsyncQueueService = request.app.state.distribution
    try:
        results = await service.add_dispatch_jobs(jobs)
    except StreamQError as exc:
        return _problem(503, safe_error(exc, request.app.state.secrets))
    return JSONResponse(
        {
            "queue": DISPATCH_QUEUE,
            "postId": jobs[0].post_id,
            "scheduleId": jobs[0].schedule_id,
            "jobIds": [r.job_id for r in results],
            "jobs": [
                {
                    "connectionId": d.target_id,
                    "jobId": r.job_id,
                    "key": dispatch_key(d.target_id),
                    "state": str(r.state),
                }
                for d, r in zip(jobs, results, strict=True)
            ],
        },
        status_code=202,
    )


def create_distribution_app(
    settings: Settings | None = None,
    *,
    producer: AsyncProducer | None = None,
    backoff: Backoff | None = None,
    api_token: str | None = None,
    allow_no_token: bool | None = None,
) -> Starlette:
    """The generic app (health of the three distribution queues by default) with the admin
    dispatch route. ``backoff`` overrides the dispatch jobs' retry backoff (default
    ``DISTRIBUTION_BACKOFF_MS``/``_FACTOR``, else 5 s x 5)."""
    app = create_app(
        settings,
        producer=producer,
        queues=dict(QUEUES),
        api_token=api_token,
        allow_no_token=allow_no_token,
        routes=[Route(DISPATCH_PATH, dispatch, methods=["POST"])],
    )
    # Shares the app's producer; the app's lifespan closes it.
    app.state.distribution = AsyncQueueService(app.state.producer, backoff=backoff)
    return app


def __getattr__(name: str) -> Any:
    """``uvicorn examples.distribution.web:app``: build the app on first access (so that
    importing this module has no side effects and needs no settings)."""
    if name == "app":
        built = create_distribution_app()
        globals()["app"] = built
        return built
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
