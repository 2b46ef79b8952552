"""The protocol layer: key schema, Lua scripts, codec and operations. Pure, no I/O.

Every Redis operation streamq sends is built here, one module per subject, in the
vocabulary of :mod:`~streamq.protocol.calls` (``Call``, ``Flow``, ``raw``):
:mod:`~streamq.protocol.jobs`, :mod:`~streamq.protocol.queues`,
:mod:`~streamq.protocol.dlq`, :mod:`~streamq.protocol.metrics`,
:mod:`~streamq.protocol.schedules`, :mod:`~streamq.protocol.worker` (the worker's) and
:mod:`~streamq.protocol.testing` (the test harness's).
"""
