"""Bearer-token authentication for the API routes.

The token lives on ``app.state.api_token`` (``None`` only when the app was explicitly allowed
to run without one). Comparison is constant-time (:func:`hmac.compare_digest` on bytes).
"""

from __future__ import annotations

import functools
import hmac
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

__all__ = ["authorized", "require_token", "unauthorized"]

Endpoint = Callable[[Request], Awaitable[Response]]


def authorized(request: Request) -> bool:
    """Whether the request carries ``Authorization: Bearer <the app's token>``."""
    expected: str | None = getattr(request.app.state, "api_token", None)
    if expected is None:
        return bool(getattr(request.app.state, "allow_no_token", False))
    header = request.headers.get("authorization", "")
    scheme, _, presented = header.partition(" ")
    if scheme.lower() != "bearer" or not presented:
        # Still spend a comparison, so a missing header costs about the same as a wrong one.
        hmac.compare_digest(expected.encode(), b"")
        return False
    return hmac.compare_digest(presented.strip().encode(), expected.encode())


def unauthorized() -> JSONResponse:
    """The 401 answer (no hint about what was wrong)."""
    return JSONResponse(
        {"error": "unauthorized: send Authorization: Bearer <STREAMQ_API_TOKEN>"},
        status_code=401,
        headers={"WWW-Authenticate": 'Bearer realm="streamq"'},
    )


def require_token(endpoint: Endpoint) -> Endpoint:
    """Decorate an async endpoint so that it answers 401 without the right bearer token."""

    @functools.wraps(endpoint)
    async def guarded(request: Request) -> Response:
        if not authorized(request):
            return unauthorized()
        return await endpoint(request)

    return guarded
