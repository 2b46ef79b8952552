"""Transitional: the names the worker still imports from here, re-exported from their new
homes (:mod:`~streamq.protocol.calls`, :mod:`~streamq.protocol.jobs`,
:mod:`~streamq.protocol.queues`, :mod:`~streamq.protocol.dlq`, :mod:`streamq.results`).

Import from those modules instead; this shim goes once ``streamq/worker/`` and
``protocol/worker_ops.py`` have moved over (issue 13).
"""

from __future__ import annotations

from streamq.protocol.calls import Arg, Call, Code, Flow, Step, raw
from streamq.protocol.calls import text as _s
from streamq.protocol.dlq import list_dead
from streamq.protocol.jobs import PreparedJob, get_job
from streamq.protocol.queues import status
from streamq.results import DeadEntry, EnqueueResult, QueueStatus

__all__ = [
    "Arg",
    "Call",
    "Code",
    "DeadEntry",
    "EnqueueResult",
    "Flow",
    "PreparedJob",
    "QueueStatus",
    "Step",
    "_s",
    "get_job",
    "list_dead",
    "raw",
    "status",
]
