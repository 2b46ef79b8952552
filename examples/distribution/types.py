"""Typed job data of the distribution example, validated on the way in.

Each job type carries a small camelCase JSON object (the wire form the original backend
used). The dataclasses below are the Python side: ``from_dict`` validates a payload and
raises :class:`JobDataError` naming the offending field; ``to_dict`` gives the wire form.

==================  ===========================  ==================================================
job type            queue                        data
==================  ===========================  ==================================================
``dispatch``        ``distribution:dispatch``    scheduleId, postId, targetId,
                                                 requestAiAssets?, customMessage?
``retry``           ``distribution:dispatch``    as dispatch, plus failedJobId?, reason?
``scheduled_publish`` ``distribution:scheduled`` scheduleId, scheduledFor (ISO 8601 with offset)
``token_refresh``   ``distribution:token-refresh`` connectionId
==================  ===========================  ==================================================

Identifiers (scheduleId, postId, targetId, connectionId, failedJobId) are what the original
backend's TypeScript interfaces allow: integer database keys or strings.

* an integer id is 1 .. 2**53 - 1 (``Number.MAX_SAFE_INTEGER``, so a TypeScript client sends
  it exactly); booleans, floats (``1.0`` too), zero and negative numbers are refused;
* a string id is 1-200 characters from ``A-Z a-z 0-9 _ . : -``.

An id is kept in the payload as given (``1`` stays ``1``, ``"1"`` stays ``"1"``), so a
handler sees what the backend sent. Where an id becomes part of a key (job ids, schedule
keys, the SQLite columns) it is used in its text form, :func:`id_key`: ``1`` and ``"1"``
name the same schedule, connection or post.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Self, TypeAlias

__all__ = [
    "DispatchData",
    "Id",
    "JobDataError",
    "RetryData",
    "ScheduledPublishData",
    "TokenRefreshData",
    "id_key",
    "parse_time",
    "validate_id",
]

_ID_RE = re.compile(r"[A-Za-z0-9_.:\-]{1,200}")  # used with fullmatch: no "\n" after "$"
MAX_MESSAGE_CHARS = 10_000
#: The largest integer id: JavaScript's ``Number.MAX_SAFE_INTEGER``.
MAX_INT_ID = 2**53 - 1

Id: TypeAlias = str | int
"""An identifier: an integer database key or a string (see the module docstring)."""


class JobDataError(ValueError):
    """A job payload is malformed; ``field`` names the offending (camelCase) field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def validate_id(value: Any, field: str) -> Id:
    """Return ``value`` unchanged if it is a usable identifier (an integer 1 .. 2**53 - 1 or
    a string of 1-200 characters from ``A-Z a-z 0-9 _ . : -``), else raise
    :class:`JobDataError` naming ``field``."""
    if isinstance(value, bool):  # before int: True is an int to Python, not an id
        raise JobDataError(field, f"must be a string or an integer id, got {value!r}")
    if isinstance(value, int):
        if not 1 <= value <= MAX_INT_ID:
            # A huge int is not printed whole (str() refuses past 4300 digits).
            got = value if value.bit_length() <= 64 else f"an integer of {value.bit_length()} bits"
            raise JobDataError(
                field, f"an integer id must be within 1..{MAX_INT_ID} (2**53 - 1), got {got}"
            )
        return value
    if not isinstance(value, str):
        raise JobDataError(
            field, f"must be a string or an integer id, got {type(value).__name__} {value!r:.60}"
        )
    if not _ID_RE.fullmatch(value):
        raise JobDataError(
            field, f"must be 1-200 characters from A-Z a-z 0-9 _ . : -, got {value[:60]!r}"
        )
    return value


def id_key(value: Id) -> str:
    """The text form of an id, used in job ids, schedule keys and SQLite (``1`` -> ``"1"``)."""
    return str(value)


def parse_time(value: Any, field: str) -> datetime:
    """An aware datetime from a datetime or an ISO 8601 string with an offset (``Z`` ok)."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise JobDataError(
                field, f"must be an ISO 8601 date-time, got {value[:60]!r}"
            ) from None
    if not isinstance(value, datetime):
        raise JobDataError(field, f"must be an ISO 8601 date-time, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise JobDataError(field, "must include a time zone offset (e.g. 2025-01-01T09:00:00Z)")
    return value.astimezone(UTC)


def format_time(value: datetime) -> str:
    """ISO 8601 in UTC with millisecond precision and a ``Z``."""
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _mapping(raw: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise JobDataError("data", f"{what} data must be a JSON object, got {type(raw).__name__}")
    return raw


def _check_fields(
    raw: Mapping[str, Any], required: tuple[str, ...], optional: tuple[str, ...]
) -> None:
    for name in required:
        if name not in raw or raw[name] is None:
            raise JobDataError(name, "is required")
    unknown = sorted(str(k) for k in raw if k not in required and k not in optional)
    if unknown:
        raise JobDataError(unknown[0], "unknown field")


def _optional_bool(raw: Mapping[str, Any], field: str) -> bool | None:
    value = raw.get(field)
    if value is None:
        return None
    if not isinstance(value, bool):
        raise JobDataError(field, f"must be true or false, got {type(value).__name__}")
    return value


def _optional_text(
    raw: Mapping[str, Any], field: str, limit: int = MAX_MESSAGE_CHARS
) -> str | None:
    value = raw.get(field)
    if value is None:
        return None
    if not isinstance(value, str):
        raise JobDataError(field, f"must be a string, got {type(value).__name__}")
    if len(value) > limit:
        raise JobDataError(field, f"must be at most {limit} characters, got {len(value)}")
    return value


@dataclass(frozen=True, slots=True)
class DispatchData:
    """Post ``post_id`` to one platform connection (``target_id``) for schedule ``schedule_id``."""

    schedule_id: Id
    post_id: Id
    target_id: Id
    request_ai_assets: bool | None = None
    custom_message: str | None = None

    _REQUIRED = ("scheduleId", "postId", "targetId")
    _OPTIONAL = ("requestAiAssets", "customMessage")

    def __post_init__(self) -> None:
        validate_id(self.schedule_id, "scheduleId")
        validate_id(self.post_id, "postId")
        validate_id(self.target_id, "targetId")
        if self.request_ai_assets is not None and not isinstance(self.request_ai_assets, bool):
            raise JobDataError("requestAiAssets", "must be true or false")
        _optional_text({"customMessage": self.custom_message}, "customMessage")

    @classmethod
    def from_dict(cls, raw: Any) -> Self:
        """Validate a wire-form payload."""
        data = _mapping(raw, "dispatch")
        _check_fields(data, cls._REQUIRED, cls._OPTIONAL)
        return cls(
            validate_id(data["scheduleId"], "scheduleId"),
            validate_id(data["postId"], "postId"),
            validate_id(data["targetId"], "targetId"),
            _optional_bool(data, "requestAiAssets"),
            _optional_text(data, "customMessage"),
        )

    def to_dict(self) -> dict[str, Any]:
        """The wire form (optional fields only when set)."""
        out: dict[str, Any] = {
            "scheduleId": self.schedule_id,
            "postId": self.post_id,
            "targetId": self.target_id,
        }
        if self.request_ai_assets is not None:
            out["requestAiAssets"] = self.request_ai_assets
        if self.custom_message is not None:
            out["customMessage"] = self.custom_message
        return out


@dataclass(frozen=True, slots=True)
class RetryData:
    """Re-dispatch a schedule that failed: the dispatch fields plus where the failure was."""

    schedule_id: Id
    post_id: Id
    target_id: Id
    request_ai_assets: bool | None = None
    custom_message: str | None = None
    failed_job_id: Id | None = None
    reason: str | None = None

    _REQUIRED = ("scheduleId", "postId", "targetId")
    _OPTIONAL = ("requestAiAssets", "customMessage", "failedJobId", "reason")

    def __post_init__(self) -> None:
        self.dispatch()  # validates the shared fields
        if self.failed_job_id is not None:
            validate_id(self.failed_job_id, "failedJobId")
        _optional_text({"reason": self.reason}, "reason", 2000)

    @classmethod
    def from_dict(cls, raw: Any) -> Self:
        """Validate a wire-form payload."""
        data = _mapping(raw, "retry")
        _check_fields(data, cls._REQUIRED, cls._OPTIONAL)
        failed = data.get("failedJobId")
        return cls(
            validate_id(data["scheduleId"], "scheduleId"),
            validate_id(data["postId"], "postId"),
            validate_id(data["targetId"], "targetId"),
            _optional_bool(data, "requestAiAssets"),
            _optional_text(data, "customMessage"),
            None if failed is None else validate_id(failed, "failedJobId"),
            _optional_text(data, "reason", 2000),
        )

    def dispatch(self) -> DispatchData:
        """The dispatch this retry repeats."""
        return DispatchData(
            self.schedule_id,
            self.post_id,
            self.target_id,
            self.request_ai_assets,
            self.custom_message,
        )

    def to_dict(self) -> dict[str, Any]:
        """The wire form (optional fields only when set)."""
        out = self.dispatch().to_dict()
        if self.failed_job_id is not None:
            out["failedJobId"] = self.failed_job_id
        if self.reason is not None:
            out["reason"] = self.reason
        return out


@dataclass(frozen=True, slots=True)
class ScheduledPublishData:
    """Publish schedule ``schedule_id`` at ``scheduled_for`` (an aware datetime, kept in UTC)."""

    schedule_id: Id
    scheduled_for: datetime

    _REQUIRED = ("scheduleId", "scheduledFor")

    def __post_init__(self) -> None:
        validate_id(self.schedule_id, "scheduleId")
        object.__setattr__(self, "scheduled_for", parse_time(self.scheduled_for, "scheduledFor"))

    @classmethod
    def from_dict(cls, raw: Any) -> Self:
        """Validate a wire-form payload."""
        data = _mapping(raw, "scheduled_publish")
        _check_fields(data, cls._REQUIRED, ())
        return cls(
            validate_id(data["scheduleId"], "scheduleId"),
            parse_time(data["scheduledFor"], "scheduledFor"),
        )

    def to_dict(self) -> dict[str, Any]:
        """The wire form (``scheduledFor`` as ISO 8601 UTC)."""
        return {"scheduleId": self.schedule_id, "scheduledFor": format_time(self.scheduled_for)}


@dataclass(frozen=True, slots=True)
class TokenRefreshData:
    """Refresh the OAuth token of platform connection ``connection_id``."""

    connection_id: Id

    def __post_init__(self) -> None:
        validate_id(self.connection_id, "connectionId")

    @classmethod
    def from_dict(cls, raw: Any) -> Self:
        """Validate a wire-form payload."""
        data = _mapping(raw, "token_refresh")
        _check_fields(data, ("connectionId",), ())
        return cls(validate_id(data["connectionId"], "connectionId"))

    def to_dict(self) -> dict[str, Any]:
        """The wire form."""
        return {"connectionId": self.connection_id}
