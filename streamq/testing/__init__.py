"""Test your streamq handlers against a real server: :class:`QueueTester` (enqueue, drain,
make delayed jobs due, inspect), and a pytest plugin (:mod:`streamq.testing.plugin`,
registered as the ``pytest11`` entry point ``streamq``) with the fixtures
``streamq_tester``, ``streamq_settings``, ``streamq_redis_url`` and ``streamq_server``.

This package does not import pytest; only the plugin module does.
"""

from streamq.testing.drain import DrainResult, DrainTimeoutError
from streamq.testing.tester import QueueTester

__all__ = ["DrainResult", "DrainTimeoutError", "QueueTester"]
