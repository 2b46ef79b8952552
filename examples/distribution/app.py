"""The distribution worker: handlers of the four job types.

Run it with::

    python -m streamq.worker examples.distribution.app:app \\
        --queue distribution:dispatch --queue distribution:scheduled \\
        --queue distribution:token-refresh

(the three queues are also the app's default, so ``--queue`` may be omitted). Handlers are
plain functions (the engine runs them in its thread pool): they validate the payload, call
the simulated platform (:mod:`examples.distribution.platforms`) and record every attempt in
SQLite (:mod:`examples.distribution.db`, path from ``DISTRIBUTION_DB``). A failing attempt
is recorded, then re-raised so the engine retries it with backoff or, once the retries are
spent, moves it to the dead-letter queue. A rate limit (HTTP 429) is re-raised as
:class:`streamq.RateLimited` with the platform's retry-after and ``key_wide=True``: the 429
says the connection (or the app) is over its quota, so every job of the connection's key
(:mod:`examples.distribution.limits`) waits that long, this one first, and no attempt is
used: a job is never dead-lettered for being paced. Its row is replaced by the run that
follows (same job, same attempt).
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from examples.distribution.db import ResultRow, ResultsDB, default_db_path
from examples.distribution.platforms import RateLimitedError, SimulatedPlatform
from examples.distribution.service import (
    JOB_DISPATCH,
    JOB_RETRY,
    JOB_SCHEDULED_PUBLISH,
    JOB_TOKEN_REFRESH,
    QUEUES,
)
from examples.distribution.types import (
    DispatchData,
    RetryData,
    ScheduledPublishData,
    TokenRefreshData,
    id_key,
)
from streamq import Job, RateLimited
from streamq.worker import App

__all__ = ["app", "dispatch", "retry", "scheduled_publish", "token_refresh"]

app = App(queues=list(QUEUES.values()))


@functools.cache
def _db_at(path: Path) -> ResultsDB:
    return ResultsDB(path)


def _db() -> ResultsDB:
    """The results database named by ``DISTRIBUTION_DB`` (read at each call: cheap, and an
    in-process test may point it elsewhere)."""
    return _db_at(default_db_path())


def _platform() -> SimulatedPlatform:
    return SimulatedPlatform.from_env()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _row(job: Job, status: str, started: str, **fields: Any) -> ResultRow:
    """The result row of this attempt of ``job``, which began at ``started``."""
    return ResultRow(job.id, job.attempt, job.name, job.queue, status, started_at=started, **fields)


def _error(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"


def _retry_after(exc: RateLimitedError) -> RateLimited:
    """A 429: the connection's key waits what the platform said; no attempt is used."""
    return RateLimited(str(exc), retry_after=exc.retry_after_s, key_wide=True)


def _publish(job: Job, d: DispatchData) -> dict[str, Any]:
    started = _now()
    ids = {
        "schedule_id": id_key(d.schedule_id),
        "post_id": id_key(d.post_id),
        "target_id": id_key(d.target_id),
    }
    try:
        receipt = _platform().publish(
            ids["target_id"], ids["post_id"], attempt=job.attempt, message=d.custom_message
        )
    except RateLimitedError as exc:
        _db().record(_row(job, "error", started, detail=_error(exc), **ids))
        raise _retry_after(exc) from exc
    except Exception as exc:
        _db().record(_row(job, "error", started, detail=_error(exc), **ids))
        raise
    _db().record(
        _row(
            job,
            "ok",
            started,
            platform=receipt.platform,
            external_id=receipt.external_id,
            detail=receipt.url,
            **ids,
        )
    )
    return {
        "platform": receipt.platform,
        "externalId": receipt.external_id,
        "url": receipt.url,
        "aiAssets": bool(d.request_ai_assets),
    }


@app.handler(JOB_DISPATCH)
def dispatch(job: Job) -> dict[str, Any]:
    """Post to one platform connection; the result row holds the platform's post id."""
    return _publish(job, DispatchData.from_dict(job.data))


@app.handler(JOB_RETRY)
def retry(job: Job) -> dict[str, Any]:
    """Re-dispatch a schedule that failed earlier (same platform call as ``dispatch``)."""
    r = RetryData.from_dict(job.data)
    out = _publish(job, r.dispatch())
    out["retryOf"] = r.failed_job_id
    return out


@app.handler(JOB_SCHEDULED_PUBLISH)
def scheduled_publish(job: Job) -> dict[str, Any]:
    """The schedule's time has come: record it (a real backend would now look up the
    schedule's targets and queue one dispatch each). ``scheduledFor`` is the time requested
    when the job was created; a reschedule moves the job, not the payload."""
    d = ScheduledPublishData.from_dict(job.data)
    fired = _now()
    requested = d.to_dict()["scheduledFor"]
    _db().record(
        _row(
            job,
            "ok",
            fired,
            schedule_id=id_key(d.schedule_id),
            detail=f"fired at {fired} (requested for {requested})",
        )
    )
    return {"scheduleId": d.schedule_id, "firedAt": fired, "scheduledFor": requested}


@app.handler(JOB_TOKEN_REFRESH)
def token_refresh(job: Job) -> dict[str, Any]:
    """Refresh a connection's OAuth token (repeats every 24 h per connection; one at a time
    per connection, by its key's limit)."""
    started = _now()
    d = TokenRefreshData.from_dict(job.data)
    connection = id_key(d.connection_id)
    try:
        receipt = _platform().refresh_token(connection, attempt=job.attempt)
    except RateLimitedError as exc:
        _db().record(_row(job, "error", started, detail=_error(exc), connection_id=connection))
        raise _retry_after(exc) from exc
    except Exception as exc:
        _db().record(_row(job, "error", started, detail=_error(exc), connection_id=connection))
        raise
    expires = receipt.expires_at.isoformat(timespec="seconds")
    _db().record(
        _row(
            job,
            "ok",
            started,
            connection_id=connection,
            platform=receipt.platform,
            detail=f"token valid until {expires}",
        )
    )
    return {"connectionId": d.connection_id, "platform": receipt.platform, "expiresAt": expires}
