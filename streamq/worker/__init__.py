"""The worker: handler registry (:class:`App`), the async :class:`Worker`, and the process
entry ``python -m streamq.worker MODULE:APP --queue Q``."""

from streamq.worker.app import App
from streamq.worker.runner import Worker

__all__ = ["App", "Worker"]
