"""``python -m streamq.server``: run one embedded server in the foreground until Ctrl-C.

It prints the server's kind, version and address (never the password: that goes to a file
readable by its owner only), and stops the server on SIGINT, SIGTERM or SIGHUP.
"""

from __future__ import annotations

import argparse
import secrets
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from streamq.errors import ServerError
from streamq.server.binaries import PREFERENCES
from streamq.server.conf import PROFILES, write_private
from streamq.server.process import EmbeddedServer


def _read_or_create_password(path: Path) -> str:
    if path.is_file():
        password = path.read_text("utf-8").strip()
        if password:
            return password
    path.parent.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(32)
    write_private(path, password + "\n")
    return password


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """Run a server in the foreground until Ctrl-C (``python -m streamq.server``)."""
    parser = argparse.ArgumentParser(
        prog="python -m streamq.server", description="Run an embedded Redis/Valkey server."
    )
    parser.add_argument("--data-dir", type=Path, help="data directory (default: a temp dir)")
    parser.add_argument("--port", type=int, default=0, help="TCP port (default: a free one)")
    parser.add_argument(
        "--password-file",
        type=Path,
        help="read the password from this file, or write a new one there "
        "(default: DATA_DIR/password)",
    )
    parser.add_argument("--prefer", choices=PREFERENCES, help="redis or valkey")
    parser.add_argument("--profile", choices=PROFILES, default="default")
    args = parser.parse_args(argv)

    owns_dir = args.data_dir is None
    data_dir: Path = args.data_dir or Path(tempfile.mkdtemp(prefix="streamq-server-"))
    password_file: Path = args.password_file or data_dir / "password"
    server = EmbeddedServer(
        data_dir,
        port=args.port,
        password=_read_or_create_password(password_file),
        prefer=args.prefer,
        profile=args.profile,
    )
    signal.signal(signal.SIGTERM, _raise_interrupt)
    # SIGINT too, explicitly: started from a non-interactive shell's background job (`&`),
    # a process inherits SIGINT ignored, and Python then leaves it ignored.
    signal.signal(signal.SIGINT, _raise_interrupt)
    # The server runs in a session of its own, so a closed terminal's SIGHUP reaches only
    # us: stop it then too, rather than leave it running.
    signal.signal(signal.SIGHUP, _raise_interrupt)
    try:
        server.start()
        kind = "valkey" if server.is_valkey else "redis"
        version = ".".join(map(str, server.version))
        print(f"{kind} {version} on redis://{server.host}:{server.port}/0", flush=True)
        print(f"password file: {password_file.resolve()}", flush=True)
        print(f"data dir: {server.data_dir}  (Ctrl-C to stop)", flush=True)
        while server.running:
            time.sleep(0.2)
        print("server exited", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    except ServerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        server.stop()
        if owns_dir:
            shutil.rmtree(data_dir, ignore_errors=True)
