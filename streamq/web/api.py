"""The dashboard's JSON API. Every route requires ``Authorization: Bearer <token>``;
mutating routes are POST/PUT/DELETE only and also refuse cross-site requests (see
:func:`cross_site`), so a page on another site can neither read nor change anything.

===============================================================  =============================
``GET    /api/queues?offset=0&limit=500``                         status of the queues found
``GET    /api/queues/{q}/jobs?state=waiting&offset=0&limit=50``   jobs in a state (summaries)
``GET    /api/queues/{q}/jobs/{id}``                              one job: payload, error...
``GET    /api/jobs/{id}``                                         find a job in every queue
``GET    /api/queues/{q}/throughput?minutes=60``                  completed/failed per minute
``GET    /api/queues/{q}/dlq?limit=100&after=-``                  dead-letter entries, oldest
``POST   /api/queues/{q}/dlq/{dead_id}/retry``                    replay one dead-letter entry
``POST   /api/queues/{q}/dlq/retry-all``                          replay every entry
``DELETE /api/queues/{q}/dlq/{dead_id}``                          delete one entry
``POST   /api/queues/{q}/pause`` / ``.../resume``                 set / clear the paused flag
``GET    /api/queues/{q}/schedules?offset=0&limit=50``            repeating schedules
``GET    /api/workers?offset=0&limit=500``                        workers, their running jobs
===============================================================  =============================

The flow-control routes (``/api/queues/{q}/limits``, ``.../flow-mode``) live in
:mod:`streamq.web.limits`, with the same guards.

Listings are paged on the server: ``offset``/``limit`` answers carry a ``page`` object
(``offset``, ``limit``, ``total``, ``next_offset``, ``prev_offset``, see
:mod:`streamq.web.paging`); the dead-letter queue pages by cursor (``after`` = the last
entry id of the previous page; the answer's ``next_after`` is None on the last page).
A job listing also carries ``all_time``: for completed and failed, the lifetime counter
beside the retained count (retention keeps only the last N records).

Queue names may contain ``:`` (``distribution:dispatch``); clients should percent-encode the
path segment (``distribution%3Adispatch``), plain ``:`` works too. Errors are JSON
``{"error": ...}``: 400 bad input, 401 no/wrong token, 403 cross-site, 404 not found,
503 Redis unavailable (the message never contains credentials).
"""

from __future__ import annotations

import functools
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any
from urllib.parse import urlsplit

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from streamq.admin import LIST_STATES
from streamq.errors import ConfigError, JobNotFoundError, StreamQError
from streamq.job import Job
from streamq.protocol.keys import validate_job_id
from streamq.results import DeadEntry, JobEntry, QueueInfo, WorkerInfo
from streamq.scheduler import Schedule
from streamq.web.auth import authorized, unauthorized
from streamq.web.errors import BadRequest, safe_error
from streamq.web.fleet import DEAD_ID_RE, THROUGHPUT_MINUTES, WebAdmin
from streamq.web.paging import MAX_LIMIT, MAX_OFFSET, int_param, page_json, page_params

__all__ = [
    "API_ROUTES",
    "BadRequest",
    "cross_site",
    "dead_json",
    "job_json",
    "job_summary",
    "schedule_json",
]

log = logging.getLogger("streamq.web")

Endpoint = Callable[[Request], Awaitable[Response]]

#: Largest ``offset`` for waiting and active jobs, which are skipped by reading entries.
STREAM_MAX_OFFSET = 10_000
#: Running jobs listed per queue for ``GET /api/workers``.
ACTIVE_LIMIT = 500
#: Characters of payload preview in job listings (the full payload is in the job view).
PREVIEW_CHARS = 200

_NO_STORE = {"Cache-Control": "no-store"}


# ---------------------------------------------------------------------------- guards


def cross_site(request: Request) -> bool:
    """True when a browser says the request comes from another site.

    ``Sec-Fetch-Site`` (set by the browser, not by page scripts) must be ``same-origin`` or
    ``none``; a browser too old to send it is judged by ``Origin`` against ``Host`` (or
    ``X-Forwarded-Host``). Clients that are not browsers (curl, scripts) send neither and
    pass. The bearer token is the real protection; this is defence in depth that also holds
    when the app runs without a token (``STREAMQ_WEB_ALLOW_NO_TOKEN``)."""
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site.lower() not in ("same-origin", "none")
    origin = request.headers.get("origin")
    if origin is None:
        return False
    if origin == "null":
        return True
    hosts = {request.headers.get("host", ""), request.headers.get("x-forwarded-host", "")}
    return urlsplit(origin).netloc not in hosts - {""}


def _error(message: str, status: int) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=_NO_STORE)


def api_endpoint(*, mutating: bool = False) -> Callable[[Endpoint], Endpoint]:
    """Wrap an endpoint: bearer token, cross-site refusal for mutations, ``no-store``, and
    streamq errors mapped to JSON answers (400/404/503)."""

    def deco(endpoint: Endpoint) -> Endpoint:
        @functools.wraps(endpoint)
        async def guarded(request: Request) -> Response:
            if not authorized(request):
                return unauthorized()
            if mutating and cross_site(request):
                return _error("cross-site request refused", 403)
            try:
                response = await endpoint(request)
            except BadRequest as exc:
                return _error(str(exc), 400)
            except ConfigError as exc:
                return _error(str(exc), 400)
            except JobNotFoundError as exc:
                return _error(str(exc), 404)
            except Exception as exc:  # Redis unreachable, refused credentials...
                message = safe_error(exc, request.app.state.secrets)
                # streamq's own errors say what happened; anything else may be a bug here.
                log.warning(
                    "%s %s failed: %s",
                    request.method,
                    request.url.path,
                    message,
                    exc_info=not isinstance(exc, StreamQError | TimeoutError),
                )
                return _error(message, 503)
            response.headers.setdefault("Cache-Control", "no-store")
            return response

        return guarded

    return deco


def _admin(request: Request) -> WebAdmin:
    admin: WebAdmin = request.app.state.admin
    return admin


def _queue(request: Request) -> str:
    queue: str = request.path_params["queue"]
    _admin(request).keys(queue)  # ConfigError (400) on an invalid name
    return queue


def _int_param(request: Request, name: str, default: int, lo: int, hi: int) -> int:
    return int_param(request.query_params, name, default, lo, hi)


def _dead_id(request: Request) -> str:
    dead_id: str = request.path_params["dead_id"]
    if not DEAD_ID_RE.match(dead_id):
        raise BadRequest(f"not a dead-letter entry id: {dead_id!r} (like 1700000000000-0)")
    return dead_id


# ---------------------------------------------------------------------------- JSON shapes


def _preview(data: Any) -> str:
    try:
        text = orjson.dumps(data).decode()
    except TypeError:
        text = repr(data)
    return text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 1] + "…"


def _first_line(text: str | None) -> str | None:
    return text.strip().splitlines()[0] if text and text.strip() else text


def job_json(job: Job) -> dict[str, Any]:
    """A job record in full: payload (``data``), result, error and traceback included."""
    o = job.options
    return {
        "queue": job.queue,
        "id": job.id,
        "name": job.name,
        "state": str(job.state),
        "data": job.data,
        "attempt": job.attempt,
        "options": {
            "max_retries": o.max_retries,
            "backoff": asdict(o.backoff),
            "timeout_ms": o.timeout_ms,
        },
        "created_at_ms": job.created_at_ms,
        "started_at_ms": job.started_at_ms,
        "finished_at_ms": job.finished_at_ms,
        "due_at_ms": job.due_at_ms,
        "result": job.result,
        "error": job.error,
        "traceback": job.traceback,
        "dead_reason": job.dead_reason,
        "worker": job.worker,
        "entry_id": job.entry_id,
        "lease_idle_ms": job.lease_idle_ms,
        "deliveries": job.deliveries,
    }


def _lease(idle_ms: int | None, lease_ms: int) -> dict[str, Any]:
    if idle_ms is None:
        return {}
    left = lease_ms - idle_ms
    # A live worker re-claims its entries every lease/3, which resets their idle time.
    health = "expired" if left <= 0 else "late" if idle_ms >= lease_ms / 2 else "ok"
    return {"idle_ms": idle_ms, "lease_left_ms": left, "lease": health}


def job_summary(row: JobEntry, lease_ms: int) -> dict[str, Any]:
    """One row of a listing: no full payload or traceback (see :func:`job_json`)."""
    job = row.job
    out: dict[str, Any] = {
        "id": row.job_id,
        "state": row.state,
        "entry_id": row.entry_id,
        "consumer": row.consumer,
        "deliveries": row.deliveries,
        "score_ms": row.score_ms,
        "key": row.key,
        "priority": row.priority,
        "record": job is not None,
    }
    out.update(_lease(row.idle_ms, lease_ms))
    if job is not None:
        out.update(
            name=job.name,
            attempt=job.attempt,
            max_retries=job.options.max_retries,
            data_preview=_preview(job.data),
            error=_first_line(job.error),
            dead_reason=job.dead_reason,
            created_at_ms=job.created_at_ms,
            started_at_ms=job.started_at_ms,
            finished_at_ms=job.finished_at_ms,
            due_at_ms=job.due_at_ms,
            worker=job.worker,
        )
    return out


def dead_json(entry: DeadEntry) -> dict[str, Any]:
    """One dead-letter entry, payload and traceback included."""
    return asdict(entry)


def _worker_json(w: WorkerInfo) -> dict[str, Any]:
    return asdict(w)


def schedule_json(schedule: Schedule) -> dict[str, Any]:
    """One repeating schedule: its key, job name and payload, rule and next tick."""
    try:
        data: Any = orjson.loads(schedule.data)
    except orjson.JSONDecodeError:
        data = schedule.data.decode("utf-8", "replace")
    return {
        "key": schedule.key,
        "name": schedule.name,
        "data": data,
        "every_ms": schedule.every_ms,
        "cron": schedule.cron,
        "tz": schedule.tz,
        "next_tick_ms": schedule.next_tick_ms,
    }


# ---------------------------------------------------------------------------- endpoints


@api_endpoint()
async def queues(request: Request) -> Response:
    """``GET /api/queues?offset=&limit=``: :meth:`Admin.status` of one page of the queues
    found (by name), with the Redis clock and the lease the dashboard judges running jobs
    by."""
    page = page_params(request.query_params, default_limit=MAX_LIMIT)
    admin = _admin(request)
    names = await admin.queues()
    shown = page.slice(names)
    infos = await admin.status(shown) if shown else []
    now = await admin.server_time_ms()
    return JSONResponse(
        {
            "page": page_json(page, len(infos), len(names)),
            "queues": [i.as_dict() for i in infos],
            "server_time_ms": now,
            "lease_ms": admin.settings.lease_ms,
        }
    )


def _state_total(info: QueueInfo, state: str) -> int:
    """How many jobs are in ``state`` (held jobs are counted by flow control)."""
    return info.flow.held if state == "held" else int(getattr(info.status, state))


@api_endpoint()
async def jobs(request: Request) -> Response:
    """``GET /api/queues/{q}/jobs?state=&offset=&limit=``: one page of the jobs in
    ``state``, with how many there are (``page.total``, the retained records for completed
    and failed) and, for completed and failed, the lifetime counter (``all_time``)."""
    queue = _queue(request)
    state = request.query_params.get("state") or "waiting"
    if state not in LIST_STATES:
        raise BadRequest(f"state must be one of {', '.join(LIST_STATES)}, got {state!r}")
    seeks = state in ("delayed", "completed", "failed", "held")
    page = page_params(
        request.query_params,
        default_limit=50,
        max_offset=MAX_OFFSET if seeks else STREAM_MAX_OFFSET,
    )
    admin = _admin(request)
    (info,) = await admin.status([queue])
    rows = await admin.jobs(queue, state, limit=page.limit, offset=page.offset)
    st = info.status
    totals = {"completed": st.completed_total, "failed": st.failed_total}
    lease_ms = admin.settings.lease_ms
    return JSONResponse(
        {
            "queue": queue,
            "state": state,
            "lease_ms": lease_ms,
            "page": page_json(page, len(rows), _state_total(info, state)),
            "all_time": totals.get(state),
            "jobs": [job_summary(r, lease_ms) for r in rows],
        }
    )


@api_endpoint()
async def job(request: Request) -> Response:
    """``GET /api/queues/{q}/jobs/{id}``: the full record (404 if retention removed it)."""
    queue = _queue(request)
    job_id: str = request.path_params["job_id"]
    record = await _admin(request).get_job(queue, job_id)
    if record is None:
        raise JobNotFoundError(f"no job {job_id!r} in queue {queue!r}")
    return JSONResponse(job_json(record))


@api_endpoint()
async def find_job(request: Request) -> Response:
    """``GET /api/jobs/{id}``: the job's full record in every queue that holds one (400 for
    an id that no job can have, 404 when no queue has a record of it)."""
    job_id: str = validate_job_id(request.path_params["job_id"])
    found = await _admin(request).find_job(job_id)
    if not found:
        raise JobNotFoundError(
            f"no job {job_id!r} in any queue (never enqueued here, or retention removed its record)"
        )
    return JSONResponse({"id": job_id, "jobs": [job_json(j) for j in found]})


@api_endpoint()
async def queue_throughput(request: Request) -> Response:
    """``GET /api/queues/{q}/throughput``: per-minute counts, oldest first (Redis clock)."""
    queue = _queue(request)
    minutes = _int_param(request, "minutes", THROUGHPUT_MINUTES, 1, 120)
    counts = await _admin(request).throughput(queue, minutes)
    return JSONResponse({"queue": queue, "minutes": [asdict(m) for m in counts]})


@api_endpoint()
async def dlq(request: Request) -> Response:
    """``GET /api/queues/{q}/dlq?limit=&after=``: up to ``limit`` dead-letter entries,
    oldest first, after entry id ``after``; ``next_after`` is the cursor of the next page
    (None on the last one)."""
    queue = _queue(request)
    limit = _int_param(request, "limit", 100, 1, MAX_LIMIT)
    after = request.query_params.get("after") or "-"
    if after != "-" and not DEAD_ID_RE.match(after):
        raise BadRequest(f"after must be a dead-letter entry id, got {after!r}")
    admin = _admin(request)
    # One more than asked says whether there is a next page without a second round trip.
    entries = await admin.dead_letters(queue, limit=limit + 1, after=after)
    more = len(entries) > limit
    entries = entries[:limit]
    total = await admin.dead_count(queue)
    return JSONResponse(
        {
            "queue": queue,
            "total": total,
            "limit": limit,
            "after": after,
            "next_after": entries[-1].dead_id if more else None,
            "entries": [dead_json(e) for e in entries],
        }
    )


@api_endpoint(mutating=True)
async def dlq_retry(request: Request) -> Response:
    """``POST /api/queues/{q}/dlq/{dead_id}/retry``: back to the queue (404 if gone)."""
    queue, dead_id = _queue(request), _dead_id(request)
    entry = await _admin(request).replay_dead(queue, dead_id)
    log.info("dashboard: replayed dead-letter entry %s of %s", dead_id, queue)
    return JSONResponse({"queue": queue, "retried": dead_json(entry)})


@api_endpoint(mutating=True)
async def dlq_retry_all(request: Request) -> Response:
    """``POST /api/queues/{q}/dlq/retry-all``: replay every entry present now."""
    queue = _queue(request)
    moved = await _admin(request).replay_all_dead(queue)
    log.info("dashboard: replayed %d dead-letter entries of %s", moved, queue)
    return JSONResponse({"queue": queue, "retried": moved})


@api_endpoint(mutating=True)
async def dlq_delete(request: Request) -> Response:
    """``DELETE /api/queues/{q}/dlq/{dead_id}``: delete one entry (404 if not there)."""
    queue, dead_id = _queue(request), _dead_id(request)
    if not await _admin(request).delete_dead(queue, dead_id):
        raise JobNotFoundError(f"no dead-letter entry {dead_id!r} in queue {queue!r}")
    log.info("dashboard: deleted dead-letter entry %s of %s", dead_id, queue)
    return JSONResponse({"queue": queue, "deleted": dead_id})


@api_endpoint(mutating=True)
async def pause(request: Request) -> Response:
    """``POST /api/queues/{q}/pause``: workers stop fetching from the queue."""
    queue = _queue(request)
    changed = await _admin(request).pause(queue)
    return JSONResponse({"queue": queue, "paused": True, "changed": changed})


@api_endpoint(mutating=True)
async def resume(request: Request) -> Response:
    """``POST /api/queues/{q}/resume``: clear the paused flag."""
    queue = _queue(request)
    changed = await _admin(request).resume(queue)
    return JSONResponse({"queue": queue, "paused": False, "changed": changed})


@api_endpoint()
async def queue_schedules(request: Request) -> Response:
    """``GET /api/queues/{q}/schedules?offset=&limit=``: repeating schedules, soonest
    tick first."""
    queue = _queue(request)
    page = page_params(request.query_params, default_limit=50)
    found, total = await _admin(request).schedules_page(queue, page.offset, page.limit)
    return JSONResponse(
        {
            "queue": queue,
            "page": page_json(page, len(found), total),
            "schedules": [schedule_json(s) for s in found],
        }
    )


@api_endpoint()
async def workers(request: Request) -> Response:
    """``GET /api/workers?offset=&limit=``: one page of the workers (by queue and name)
    with the jobs each runs, each with its idle time (XPENDING) against the lease, so a job
    stuck in ``active`` shows at a glance."""
    page = page_params(request.query_params, default_limit=MAX_LIMIT)
    admin = _admin(request)
    every = await admin.workers()
    found = page.slice(every)
    lease_ms = admin.settings.lease_ms
    running: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for queue in sorted({w.queue for w in found}):
        for row in await admin.jobs(queue, "active", limit=ACTIVE_LIMIT):
            running[(queue, row.consumer or "")].append(job_summary(row, lease_ms))
    now = await admin.server_time_ms()
    return JSONResponse(
        {
            "server_time_ms": now,
            "lease_ms": lease_ms,
            "page": page_json(page, len(found), len(every)),
            "workers": [
                {**_worker_json(w), "jobs": running.get((w.queue, w.name), [])} for w in found
            ],
        }
    )


_Q = "/api/queues/{queue}"

#: The API routes, mounted by :func:`streamq.web.create_app`.
API_ROUTES: list[BaseRoute] = [
    Route("/api/queues", queues, methods=["GET"]),
    Route(f"{_Q}/jobs", jobs, methods=["GET"]),
    Route(f"{_Q}/jobs/{{job_id}}", job, methods=["GET"]),
    Route(f"{_Q}/throughput", queue_throughput, methods=["GET"]),
    Route(f"{_Q}/dlq", dlq, methods=["GET"]),
    Route(f"{_Q}/dlq/retry-all", dlq_retry_all, methods=["POST"]),
    Route(f"{_Q}/dlq/{{dead_id}}/retry", dlq_retry, methods=["POST"]),
    Route(f"{_Q}/dlq/{{dead_id}}", dlq_delete, methods=["DELETE"]),
    Route(f"{_Q}/pause", pause, methods=["POST"]),
    Route(f"{_Q}/resume", resume, methods=["POST"]),
    Route(f"{_Q}/schedules", queue_schedules, methods=["GET"]),
    Route("/api/jobs/{job_id}", find_job, methods=["GET"]),
    Route("/api/workers", workers, methods=["GET"]),
]
