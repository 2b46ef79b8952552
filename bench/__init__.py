"""streamq's benchmark harness: ``python -m bench`` (``--help`` lists the options).

Every run starts its own servers through :mod:`streamq.server` (never the Redis on 6379),
prints one table per scenario, writes JSON and hand-drawn SVG plots to ``bench/results/``
and shows progress on stderr. ``python -m bench --check`` is the short CI run.

Modules: :mod:`bench.cli` (entry, options, scenario order), :mod:`bench.common` (context,
progress, tables, statistics, machine facts), :mod:`bench.workers` (worker child processes
and the exactly-once check), :mod:`bench.apps` (the no-op app), one module per family of
scenarios (:mod:`bench.enqueue`, :mod:`bench.ceiling`, :mod:`bench.e2e`,
:mod:`bench.latency`, :mod:`bench.resources`, :mod:`bench.flow`: flow control, also
``python -m bench.flow``), :mod:`bench.svg` (plots) and
:mod:`bench.summary` (targets table), :mod:`bench.peers` (the same e2e run with other
Python queues).
"""
