"""The flow-control part of the JSON API: the limits of a queue, its priority mode and its
flow figures. Same guards as :mod:`streamq.web.api` (bearer token on every route; the
mutating ones also refuse cross-site requests).

=====================================================  ======================================
``GET    /api/queues/{q}/limits``                      rules, mode and flow figures
``PUT    /api/queues/{q}/limits``                      add or replace a rule (JSON body)
``DELETE /api/queues/{q}/limits?pattern=x:*&shared=``  delete a rule (404 if there is none)
``PUT    /api/queues/{q}/flow-mode``                   ``{"mode": "strict"|"weighted"}``
=====================================================  ======================================

The PUT body of a rule: ``{"pattern": "x:*", "rate": 50, "per": 900, "concurrency": 1,
"shared": false}`` — ``per`` in seconds, or ``"period_ms"`` instead, or ``"rate":
"50/15m"`` alone; every part but ``pattern`` optional (at least a rate or a concurrency).
The pattern travels in the body or the query, never in the path: it may hold ``/`` and
``#``.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from streamq.errors import JobNotFoundError
from streamq.limits import check_mode, parse_rate
from streamq.web.api import _admin, _queue, api_endpoint
from streamq.web.errors import BadRequest

__all__ = ["LIMITS_ROUTES", "MAX_BODY_BYTES"]

#: The largest request body a limits route reads.
MAX_BODY_BYTES = 4096
_RULE_FIELDS = {"pattern", "rate", "per", "period_ms", "concurrency", "shared"}


async def _json_body(request: Request) -> dict[str, Any]:
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        raise BadRequest(f"body too large: at most {MAX_BODY_BYTES} bytes")
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise BadRequest("body must be a JSON object") from None
    if not isinstance(doc, dict):
        raise BadRequest("body must be a JSON object")
    return doc


def _shared(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    if value in (None, "", "0", "false"):
        return False
    if value in ("1", "true"):
        return True
    raise BadRequest(f"{where} must be true or false, got {value!r}")


def _rule(doc: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments of ``set_limit`` from a PUT body (BadRequest on what is not)."""
    unknown = sorted(set(doc) - _RULE_FIELDS)
    if unknown:
        raise BadRequest(f"unknown field {unknown[0]!r}: use {', '.join(sorted(_RULE_FIELDS))}")
    pattern = doc.get("pattern")
    if not isinstance(pattern, str):
        raise BadRequest("pattern is required (a string such as 'x:*')")
    rate, per = doc.get("rate"), doc.get("per")
    if "period_ms" in doc and doc["period_ms"] is not None:
        if per is not None:
            raise BadRequest("give per (seconds) or period_ms, not both")
        period_ms = doc["period_ms"]
        if not isinstance(period_ms, int) or isinstance(period_ms, bool):
            raise BadRequest(f"period_ms must be an integer, got {period_ms!r}")
        per = period_ms / 1000
    if isinstance(rate, str):
        if per is not None:
            raise BadRequest(f"rate {rate!r} names its period already: drop per")
        rate, per = parse_rate(rate)
    return {
        "pattern": pattern,
        "rate": rate,
        "per": per,
        "concurrency": doc.get("concurrency"),
        "shared": _shared(doc.get("shared"), "shared"),
    }


@api_endpoint()
async def list_limits(request: Request) -> Response:
    """``GET /api/queues/{q}/limits``: the rules (by pattern), the priority mode and the
    flow figures (held jobs, keys waiting, busiest keys, counters)."""
    queue = _queue(request)
    admin = _admin(request)
    rules = await admin.limits(queue)
    flow = await admin.flow_status(queue)
    return JSONResponse(
        {
            "queue": queue,
            "mode": flow.mode,
            "limits": [x.as_dict() for x in rules],
            "flow": flow.as_dict(),
        }
    )


@api_endpoint(mutating=True)
async def put_limit(request: Request) -> Response:
    """``PUT /api/queues/{q}/limits``: add or replace one rule (400 naming a bad part)."""
    queue = _queue(request)
    rule = _rule(await _json_body(request))
    pattern = rule.pop("pattern")
    limit = await _admin(request).set_limit(queue, pattern, **rule)
    return JSONResponse({"queue": queue, "limit": limit.as_dict()})


@api_endpoint(mutating=True)
async def delete_limit(request: Request) -> Response:
    """``DELETE /api/queues/{q}/limits?pattern=&shared=``: delete one rule (404 if none)."""
    queue = _queue(request)
    pattern = request.query_params.get("pattern")
    if not pattern:
        raise BadRequest("pattern is required (?pattern=x:*, percent-encoded)")
    shared = _shared(request.query_params.get("shared"), "shared")
    if not await _admin(request).remove_limit(queue, pattern, shared=shared):
        scope = "shared" if shared else "each"
        raise JobNotFoundError(f"no {scope} limit {pattern!r} in queue {queue!r}")
    return JSONResponse({"queue": queue, "pattern": pattern, "shared": shared, "removed": True})


@api_endpoint(mutating=True)
async def put_mode(request: Request) -> Response:
    """``PUT /api/queues/{q}/flow-mode``: ``{"mode": "strict"|"weighted"}``."""
    queue = _queue(request)
    doc = await _json_body(request)
    mode = await _admin(request).set_flow_mode(queue, check_mode(doc.get("mode")))
    return JSONResponse({"queue": queue, "mode": mode})


_Q = "/api/queues/{queue}"

#: The flow-control routes, mounted by :func:`streamq.web.create_app`.
LIMITS_ROUTES: list[BaseRoute] = [
    Route(f"{_Q}/limits", list_limits, methods=["GET"]),
    Route(f"{_Q}/limits", put_limit, methods=["PUT"]),
    Route(f"{_Q}/limits", delete_limit, methods=["DELETE"]),
    Route(f"{_Q}/flow-mode", put_mode, methods=["PUT"]),
]
