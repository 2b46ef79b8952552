"""Writing one flow-control rule into a queue's ``limits`` hash, as-is.

A stop-gap for the distribution example until ``Admin.set_limit`` (which validates the rule
and re-checks the keys waiting on it) is on main; the rule's JSON is the caller's to build
(docs: the ``limits`` hash of flow control).
"""

from __future__ import annotations

from streamq.protocol.calls import Call, raw
from streamq.protocol.keys import QueueKeys

__all__ = ["put_rule"]


def put_rule(keys: QueueKeys, field: str, json_bytes: bytes) -> Call[None]:
    """``HSET limits field json``: add or replace the rule ``field`` (``each|<pattern>`` or
    ``shared|<pattern>``) of ``keys``' queue; takes effect at the next take."""
    return raw("HSET", keys.limits, field, json_bytes, parse=lambda _reply: None)
