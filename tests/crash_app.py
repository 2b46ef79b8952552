"""An app module that fails at import with an unexpected error (not an ImportError), so
``python -m streamq.worker tests.crash_app:app`` crashes at start with exit code 1: what a
supervisor must restart with a growing backoff instead of spinning."""

from __future__ import annotations

raise RuntimeError("this app module fails at import on purpose")
