"""Pages of the dashboard's listings: the ``offset``/``limit`` query parameters, checked,
and the ``page`` object every paged answer carries.

A page answer holds ``{"offset", "limit", "total", "next_offset", "prev_offset"}``:
``total`` is how many items the listing has now (so a client can say "51-100 of 1,234"),
``next_offset`` / ``prev_offset`` are None at either end. The dead-letter queue pages by
cursor instead (stream entry ids, see :mod:`streamq.web.api`), because a stream cannot
seek by position.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from streamq.web.errors import BadRequest

__all__ = ["MAX_LIMIT", "MAX_OFFSET", "Page", "int_param", "page_json", "page_params"]

T = TypeVar("T")

#: Most rows one page holds.
MAX_LIMIT = 500
#: Largest ``offset`` accepted. Waiting and active jobs are skipped by reading (a stream and
#: its PEL cannot seek by position), so the cap bounds what one request may cost Redis.
MAX_OFFSET = 100_000


def int_param(query: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    """The integer query parameter ``name`` within ``[lo, hi]`` (``default`` when absent or
    empty); :class:`BadRequest` naming the parameter and the value otherwise."""
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{name} must be an integer, got {raw!r}") from None
    if not lo <= value <= hi:
        raise BadRequest(f"{name} must be within [{lo}, {hi}], got {value}")
    return value


@dataclass(frozen=True, slots=True)
class Page:
    """Which slice of a listing to answer: skip ``offset`` items, then at most ``limit``."""

    offset: int
    limit: int

    def slice(self, items: Sequence[T]) -> list[T]:
        """This page of a listing held in full."""
        return list(items[self.offset : self.offset + self.limit])


def page_params(
    query: Mapping[str, str], *, default_limit: int, max_offset: int = MAX_OFFSET
) -> Page:
    """``offset`` (default 0) and ``limit`` (default ``default_limit``) from the query."""
    return Page(
        offset=int_param(query, "offset", 0, 0, max_offset),
        limit=int_param(query, "limit", default_limit, 1, MAX_LIMIT),
    )


def page_json(page: Page, count: int, total: int) -> dict[str, Any]:
    """The ``page`` object of an answer holding ``count`` items of ``total``."""
    end = page.offset + count
    more = count == page.limit and end < total
    return {
        "offset": page.offset,
        "limit": page.limit,
        "total": total,
        "next_offset": end if more else None,
        "prev_offset": max(page.offset - page.limit, 0) if page.offset > 0 else None,
    }
