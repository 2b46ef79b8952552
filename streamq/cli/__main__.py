"""``python -m streamq.cli``: the ``streamq`` command (see :mod:`streamq.cli`)."""

import sys

from streamq.cli import main

if __name__ == "__main__":
    sys.exit(main())
