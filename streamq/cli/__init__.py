"""The ``streamq`` command: inspect and steer queues; run a server, a worker, the web app or
the benchmark.

Connection settings come from the environment (REDIS_URL, or REDIS_HOST, REDIS_PORT,
REDIS_PASSWORD..., and STREAMQ_PREFIX) or from --url and --prefix, given before or after
the command. URLs are shown without credentials. Every read command takes --json
(machine-readable output on stdout); progress of long operations goes to stderr.

exit codes:
  0  success
  1  not found, nothing to show (an empty listing), or the operation failed
     (`streamq status` on a server without queues is an answer: it exits 0)
  2  usage or configuration error (bad flag, bad --data JSON, bad setting, refused password,
     a job id held by several queues, `streamq web` without the web extra or a token)
  3  Redis unreachable (refused, timed out, or not speaking the Redis protocol)
"""

# Layout: context.py (exit codes, Context), output.py (tables, times, JSON, progress),
# commands.py / dlq.py / schedules.py / limits.py / web.py (one function per subcommand;
# web.py imports starlette and uvicorn only when run, so the rest works without the web
# extra), parser.py,
# delegates.py (server, worker, bench), entry.py (main: parse, dispatch, map errors to
# exit codes), __main__.py (python -m streamq.cli).

from streamq.cli.context import EXIT_NOT_FOUND, EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE
from streamq.cli.context import Context as Context
from streamq.cli.delegates import DELEGATES as DELEGATES
from streamq.cli.entry import main
from streamq.cli.output import Progress as Progress
from streamq.cli.output import table as table
from streamq.cli.parser import build_parser as build_parser

__all__ = ["EXIT_NOT_FOUND", "EXIT_OK", "EXIT_UNREACHABLE", "EXIT_USAGE", "main"]
