"""Transitional: the names the worker (``streamq/worker/``, ``protocol/worker.py``) still
imports from here, re-exported from their new homes (:mod:`~streamq.protocol.calls`,
:mod:`~streamq.protocol.queues`), plus the result types that were first defined here
(now in :mod:`streamq.results`).

Import from those modules instead; this shim goes once ``streamq/worker/`` and
``protocol/worker.py`` import from the new modules (issue 13).
"""

from __future__ import annotations

from streamq.protocol.calls import Arg, Call, Code, Flow, raw
from streamq.protocol.calls import text as _s
from streamq.protocol.queues import status
from streamq.results import DeadEntry, EnqueueResult, QueueStatus

__all__ = [
    "Arg",
    "Call",
    "Code",
    "DeadEntry",
    "EnqueueResult",
    "Flow",
    "QueueStatus",
    "_s",
    "raw",
    "status",
]
