"""What every scenario shares: the run context, progress on stderr, tables, statistics,
server INFO deltas, machine facts and the JSON results. No third-party dependency."""

from __future__ import annotations

import math
import os
import platform
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import redis

import streamq
from streamq.server import EmbeddedServer, Profile

RESULTS = Path(__file__).resolve().parent / "results"


# --------------------------------------------------------------------------- context


class BenchFailure(Exception):
    """A scenario found a correctness problem (lost or duplicated job, worker error)."""


@dataclass
class Context:
    """One benchmark run: options, the main server (profile ``none``) and the results."""

    jobs: int
    workers: list[int]
    concurrency: int
    repeat: int
    quick: bool
    check: bool
    out_dir: Path
    tmp: Path
    server: EmbeddedServer | None = None
    results: dict[str, Any] = field(default_factory=dict)
    servers: list[EmbeddedServer] = field(default_factory=list)

    @property
    def url(self) -> str:
        """URL of the main server (with its password: never print it)."""
        assert self.server is not None, "the main server is not started"
        return self.server.url

    def start_server(self, profile: Profile = "none", tag: str = "main") -> EmbeddedServer:
        """A fresh password-protected server in its own directory under the run's temp dir."""
        data = self.tmp / f"server-{tag}-{secrets.token_hex(3)}"
        server = EmbeddedServer(data, password=secrets.token_urlsafe(16), profile=profile)
        server.start()
        self.servers.append(server)
        return server

    def stop_server(self, server: EmbeddedServer) -> None:
        """Stop a server started by :meth:`start_server` (without saving)."""
        server.stop(save=False)
        if server in self.servers:
            self.servers.remove(server)

    def stop_all(self) -> None:
        """Stop every server still running."""
        for server in list(self.servers):
            self.stop_server(server)

    def queue(self, tag: str) -> str:
        """A queue name used by one measurement only."""
        return f"bench-{tag}-{secrets.token_hex(4)}"


def settings_for(url: str) -> streamq.Settings:
    """Engine settings for the benchmark: the given server, log level warning."""
    return streamq.Settings(redis=streamq.RedisSettings(url=url)).with_changes(log_level="warning")


def client(url: str) -> redis.Redis:
    """A plain redis-py client (hiredis parser when installed) for INFO and bare commands."""
    return redis.Redis.from_url(url, socket_timeout=30)


# --------------------------------------------------------------------------- progress


class Progress:
    """A one-line progress display on stderr: redrawn in place on a terminal, otherwise
    one line at the start and one at the end (CI logs stay short)."""

    def __init__(self, label: str, total: int, unit: str = "jobs") -> None:
        self.label, self.total, self.unit = label, total, unit
        self.tty = sys.stderr.isatty()
        self.t0 = time.perf_counter()
        self._drawn = 0.0
        if not self.tty:
            print(f"  .. {label}: {total:,} {unit}", file=sys.stderr, flush=True)

    def update(self, done: int) -> None:
        """Show ``done`` of ``total`` (at most ten redraws a second)."""
        now = time.perf_counter()
        if not self.tty or now - self._drawn < 0.1:
            return
        self._drawn = now
        rate = done / max(now - self.t0, 1e-9)
        pct = 100.0 * done / self.total if self.total else 100.0
        line = f"  {self.label}: {done:,}/{self.total:,} {self.unit} ({pct:3.0f}%) {rate:,.0f}/s"
        sys.stderr.write("\r" + line[:110].ljust(110))
        sys.stderr.flush()

    def done(self, note: str = "") -> None:
        """Close the line."""
        took = time.perf_counter() - self.t0
        msg = f"  ok {self.label} ({took:.1f} s){' ' + note if note else ''}"
        if self.tty:
            sys.stderr.write("\r" + msg.ljust(110) + "\n")
        else:
            sys.stderr.write(msg + "\n")
        sys.stderr.flush()


def say(text: str) -> None:
    """A status line on stderr."""
    print(text, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- tables


def fmt(value: Any, digits: int = 1) -> str:
    """Numbers with thousands separators; None as a dash."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        return f"{value:,.{digits}f}"
    return str(value)


def pct(ratio: float | None) -> str:
    """A ratio as a percentage."""
    return "-" if ratio is None else f"{100 * ratio:.0f}%"


def _numeric(text: str) -> bool:
    return bool(text) and (text[0].isdigit() or (text[0] in "-+<>~" and len(text) > 1))


def table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table (GitHub-markdown compatible), numbers right-aligned."""
    cells = [[c if isinstance(c, str) else fmt(c) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, c in enumerate(row):
            widths[i] = max(widths[i], len(c))

    def line(row: Sequence[str], align: bool = True) -> str:
        out = []
        for i, c in enumerate(row):
            out.append(c.rjust(widths[i]) if align and _numeric(c) else c.ljust(widths[i]))
        return "| " + " | ".join(out) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = [line(r) for r in cells]
    return "\n".join([f"\n### {title}\n", line(list(headers), align=False), sep, *body])


def show(title: str, headers: Sequence[str], rows: list[Sequence[Any]]) -> None:
    """Print a table on stdout."""
    print(table(title, headers, rows), flush=True)


# --------------------------------------------------------------------------- statistics


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation; values must be sorted."""
    if not sorted_values:
        return math.nan
    if len(sorted_values) == 1:
        return float(sorted_values[0])
    k = (len(sorted_values) - 1) * q / 100.0
    lo = math.floor(k)
    hi = min(lo + 1, len(sorted_values) - 1)
    return float(sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo))


def summary_ms(values_s: Iterable[float]) -> dict[str, float | int]:
    """p50/p95/p99/max (and mean) in milliseconds of values given in seconds."""
    ms = sorted(v * 1000.0 for v in values_s)
    return {
        "n": len(ms),
        "p50_ms": percentile(ms, 50),
        "p95_ms": percentile(ms, 95),
        "p99_ms": percentile(ms, 99),
        "max_ms": ms[-1] if ms else math.nan,
        "mean_ms": sum(ms) / len(ms) if ms else math.nan,
    }


def ratio(value: float | None, ceiling: float | None) -> float | None:
    """value / ceiling, or None when either is unknown."""
    if value is None or not ceiling:
        return None
    return value / ceiling


# --------------------------------------------------------------------------- server facts


def redis_cpu_s(r: redis.Redis) -> float:
    """The server's CPU time so far (``used_cpu_sys + used_cpu_user``), in seconds."""
    info = r.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def used_memory(r: redis.Redis) -> int:
    """``INFO memory`` ``used_memory``, in bytes."""
    return int(r.info("memory")["used_memory"])


def server_facts(server: EmbeddedServer) -> dict[str, Any]:
    """Kind, version and binary of a running server."""
    return {
        "kind": "valkey" if server.is_valkey else "redis",
        "version": ".".join(map(str, server.version)),
        "binary": str(server.binary),
        "profile": server.profile,
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _filesystem(path: Path) -> str:
    """The file-system type holding ``path`` (from /proc/mounts), for the persistence run."""
    try:
        mounts = [ln.split() for ln in Path("/proc/mounts").read_text().splitlines()]
    except OSError:
        return "unknown"
    best, kind = "", "unknown"
    target = str(path.resolve())
    for parts in mounts:
        if len(parts) >= 3 and target.startswith(parts[1]) and len(parts[1]) > len(best):
            best, kind = parts[1], parts[2]
    return kind


def tree_facts() -> dict[str, Any]:
    """The git commit of the tree being measured, and how many engine files differ from it
    (figures from a dirty tree are not the commit's)."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "streamq"],
            cwd=root,
            capture_output=True,
            text=True,
        ).stdout.splitlines()
    except OSError:
        return {"commit": None, "engine_files_changed": None}
    return {"commit": commit or None, "engine_files_changed": len(dirty)}


def machine_facts(tmp: Path) -> dict[str, Any]:
    """nproc, CPU model, Python, redis-py/hiredis versions, temp file system."""
    try:
        import hiredis

        hiredis_version = getattr(hiredis, "__version__", "installed")
    except ImportError:
        hiredis_version = None
    return {
        "nproc": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "streamq": streamq.__version__,
        "redis_py": redis.__version__,
        "hiredis": hiredis_version,
        "worker_loop": _worker_loop(),
        "tmp_fs": _filesystem(tmp),
    }


def _worker_loop() -> str:
    """The event loop the worker children run (``--loop`` / STREAMQ_LOOP)."""
    if os.environ.get("STREAMQ_LOOP", "auto") == "asyncio":
        return "asyncio"
    try:
        import uvloop
    except ImportError:
        return "asyncio"
    return f"uvloop {uvloop.__version__}"


# --------------------------------------------------------------------------- results


def write_json(out_dir: Path, name: str, payload: Any) -> Path:
    """Write ``<out_dir>/<name>.json`` (pretty, sorted keys) and return its path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.json"
    path.write_bytes(
        orjson.dumps(payload, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS, default=str)
    )
    return path


def new_tmp() -> Path:
    """A private temp directory for servers and worker record files."""
    return Path(tempfile.mkdtemp(prefix="streamq-bench-"))
