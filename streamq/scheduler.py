"""Repeating schedules: the public home of :class:`Schedule`.

The model, its tick math and the operations on ``sq:{Q}:repeat`` live in
:mod:`streamq.protocol.schedules` (the operations parse definitions into a ``Schedule`` and
compute each following tick, so the model sits below them, in the pure layer); the names
users import (``Schedule``, ``tick_job_id``...) are re-exported here.
"""

from __future__ import annotations

from streamq.protocol.schedules import (
    Schedule,
    add_schedule,
    as_ms,
    aware,
    fire_due,
    list_schedules,
    remove_schedule,
    tick_job_id,
)

__all__ = [
    "Schedule",
    "add_schedule",
    "as_ms",
    "aware",
    "fire_due",
    "list_schedules",
    "remove_schedule",
    "tick_job_id",
]
