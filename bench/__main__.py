"""``python -m bench``: see :mod:`bench.cli`."""

from bench.cli import main

# The guard matters: multiprocessing's spawn re-imports this module in every worker child
# (as ``__mp_main__``), which must not start another benchmark.
if __name__ == "__main__":
    raise SystemExit(main())
