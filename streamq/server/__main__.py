"""``python -m streamq.server``: see :mod:`streamq.server.cli`."""

from streamq.server.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
