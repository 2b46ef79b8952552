"""A worker process whose own clock is off: ``python -m tests.chaos.skewed_worker`` takes
the arguments of ``python -m streamq.worker`` and reads the skew in seconds from
``SQ_CHAOS_CLOCK_SKEW_S``. ``time.time`` and ``time.time_ns`` are patched before the
engine is imported, so every wall-clock read in the process is skewed; the monotonic
clock (asyncio's timers) is not, as on a real host whose wall clock is wrong."""

from __future__ import annotations

import os
import sys
import time

SKEW_ENV = "SQ_CHAOS_CLOCK_SKEW_S"


def main() -> int:
    skew = float(os.environ[SKEW_ENV])
    real_time, real_time_ns = time.time, time.time_ns
    time.time = lambda: real_time() + skew
    time.time_ns = lambda: real_time_ns() + int(skew * 1e9)

    from streamq.worker.__main__ import main as worker_main

    return worker_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
