"""The worker's log lines: human-readable text (coloured level on a terminal unless
``NO_COLOR``), JSON lines otherwise, chosen automatically or forced (``--log-format``,
``STREAMQ_LOG_FORMAT``); nothing formatted when the level is disabled; no secret, no raw
escape sequence from a job's data, ever on the terminal.

The automatic choice is proved on a real pseudo-terminal (``os.openpty``) with a real worker
process, pointed at a port where nothing listens so it logs ``redis_unavailable`` at once."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import IO, Any

import pytest
from _support import ROOT, child_env, closed_port

from streamq.worker.logs import (
    JsonFormatter,
    TextFormatter,
    configure_logging,
    log_event,
    logger,
    resolve_format,
    use_color,
)

ESC = "\x1b"
SECRET = "s3cret-pw-9f2c"


def record(event: str, level: int = logging.INFO, **fields: Any) -> logging.LogRecord:
    return logger.makeRecord("streamq", level, __file__, 1, event, (), None, extra={"sq": fields})


@pytest.fixture
def tty() -> Iterator[IO[str]]:
    """The slave side of a fresh pseudo-terminal, as a text stream."""
    master, slave = os.openpty()
    stream = open(slave, "w")  # noqa: SIM115 - closed below
    try:
        yield stream
    finally:
        stream.close()
        os.close(master)


@pytest.fixture
def restore_logger() -> Iterator[None]:
    handlers, level, propagate = logger.handlers[:], logger.level, logger.propagate
    yield
    logger.handlers[:] = handlers
    logger.setLevel(level)
    logger.propagate = propagate


# ---------------------------------------------------------------------- the formatters


def test_text_lines_show_time_level_pid_event_and_fields() -> None:
    line = TextFormatter().format(
        record(
            "completed",
            queue="emails",
            job_id="01ABC",
            attempt=1,
            duration_ms=0.25,
            ok=True,
            queues=["a", "b"],
            error="boom: it broke",
            signal=None,
        )
    )
    m = re.fullmatch(r"(\S+ \S+)\.\d{3} (INFO) {4}\[(\d+)\] (.*)", line)
    assert m, line
    assert time.strptime(m[1], "%Y-%m-%d %H:%M:%S") and int(m[3]) == os.getpid()
    assert m[4] == (
        'completed queue=emails job_id=01ABC attempt=1 duration_ms=0.25 ok=true queues=["a","b"] '
        'error="boom: it broke"'
    )  # a value with a space is quoted; None is left out
    assert ESC not in line


def test_text_lines_stay_one_line_and_carry_no_escape_sequence_from_job_data() -> None:
    hostile = "line1\nline2 \x1b[2J\x1b[31mred\x07"
    line = TextFormatter(color=True).format(record("failed", logging.WARNING, error=hostile))
    assert "\n" not in line
    assert "\x1b[2J" not in line and "\x07" not in line
    assert r"\u001b[2J" in line  # shown, defused


def test_colour_only_when_asked() -> None:
    plain = TextFormatter(color=False).format(record("dead", logging.ERROR, queue="q"))
    assert ESC not in plain and " ERROR " in plain
    coloured = TextFormatter(color=True).format(record("dead", logging.ERROR, queue="q"))
    assert "\x1b[31mERROR  \x1b[0m" in coloured and "\x1b[1mdead\x1b[0m" in coloured


def test_json_lines_are_unchanged_by_the_text_choice() -> None:
    obj = json.loads(JsonFormatter().format(record("completed", queue="q", signal=None)))
    assert obj["event"] == "completed" and obj["queue"] == "q" and obj["signal"] is None
    assert obj["level"] == "info" and obj["ts"].endswith("Z")


# ---------------------------------------------------------------------- the choice


def test_auto_is_text_on_a_terminal_and_json_elsewhere(tty: IO[str]) -> None:
    assert resolve_format("auto", tty) == "text"
    assert resolve_format("auto", io.StringIO()) == "json"
    assert resolve_format("json", tty) == "json"
    assert resolve_format("text", io.StringIO()) == "text"
    with pytest.raises(ValueError, match="log format must be one of auto, json, text"):
        resolve_format("xml", tty)


def test_colour_needs_a_terminal_and_no_no_color(tty: IO[str]) -> None:
    assert use_color(tty, {}) is True
    assert use_color(tty, {"NO_COLOR": "1"}) is False
    assert use_color(tty, {"NO_COLOR": ""}) is True  # no-color.org: set and non-empty
    assert use_color(io.StringIO(), {}) is False


def test_configure_logging_installs_the_chosen_formatter(restore_logger: None) -> None:
    out = io.StringIO()
    assert configure_logging("info", "auto", out) == "json"
    log_event("worker_started", consumer="c1")
    assert json.loads(out.getvalue())["consumer"] == "c1"
    out = io.StringIO()
    assert configure_logging("info", "text", out) == "text"
    log_event("worker_started", consumer="c1")
    assert "worker_started consumer=c1" in out.getvalue() and ESC not in out.getvalue()


class _Counted:
    """A field value that counts how often it is rendered."""

    def __init__(self) -> None:
        self.rendered = 0

    def __str__(self) -> str:
        self.rendered += 1
        return "counted"

    __repr__ = __str__


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_a_disabled_level_formats_nothing(fmt: str, restore_logger: None) -> None:
    out = io.StringIO()
    configure_logging("warning", fmt, out)
    value = _Counted()
    log_event("processing", value=value)  # info: below the level
    assert out.getvalue() == "" and value.rendered == 0
    log_event("failed", logging.WARNING, value=value)  # the probe works
    assert "counted" in out.getvalue() and value.rendered == 1


# ---------------------------------------------------------------------- a real process


def _env(**extra: str) -> dict[str, str]:
    url = f"redis://:{SECRET}@127.0.0.1:{closed_port()}/0"
    env = child_env(REDIS_URL=url, PYTHONUNBUFFERED="1")
    env.pop("NO_COLOR", None)
    return env | extra


def _worker_output(env: dict[str, str], *args: str, pty: bool, timeout: float = 30) -> str:
    """Start a worker with its stderr on a pseudo-terminal (or a pipe), read until it logged
    ``redis_unavailable``, SIGTERM it, and return everything it wrote."""
    argv = [sys.executable, "-m", "streamq.worker", "tests.apps:app", "--queue", "q", *args]
    if pty:
        master, slave = os.openpty()
    else:
        master, slave = os.pipe()
    proc = subprocess.Popen(
        argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave
    )
    os.close(slave)
    buf = b""
    signalled = False
    deadline = time.monotonic() + timeout
    try:
        while True:
            if not signalled and b"redis_unavailable" in buf:
                proc.send_signal(signal.SIGTERM)
                signalled = True
            if time.monotonic() > deadline:
                what = "to exit" if signalled else "to log redis_unavailable"
                raise AssertionError(f"the worker took over {timeout} s {what}:\n{buf!r}")
            ready, _, _ = select.select([master], [], [], 0.1)
            if not ready:
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the terminal's last writer is gone
                chunk = b""
            if not chunk:
                break
            buf += chunk
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        os.close(master)
    return buf.decode(errors="replace")


def test_a_worker_on_a_terminal_logs_coloured_text_without_secrets() -> None:
    out = _worker_output(_env(), pty=True)
    lines = [ln for ln in out.splitlines() if "redis_unavailable" in ln]
    assert lines and not lines[0].lstrip().startswith("{")
    assert "\x1b[33mWARNING\x1b[0m" in lines[0]
    assert "worker_stopped" in out
    assert SECRET not in out


def test_no_color_and_a_forced_format_are_obeyed_on_a_terminal() -> None:
    out = _worker_output(_env(NO_COLOR="1"), pty=True)
    assert "redis_unavailable" in out and ESC not in out
    assert not any(ln.startswith("{") for ln in out.splitlines() if ln.strip())
    out = _worker_output(_env(STREAMQ_LOG_FORMAT="json"), pty=True)
    events = [json.loads(ln) for ln in out.splitlines() if ln.startswith("{")]
    assert "redis_unavailable" in {e["event"] for e in events}


def test_a_worker_writing_to_a_pipe_logs_json_unless_text_is_asked_for() -> None:
    out = _worker_output(_env(), pty=False)
    events = [json.loads(ln) for ln in out.splitlines() if ln.startswith("{")]
    assert "redis_unavailable" in {e["event"] for e in events}
    out = _worker_output(_env(), "--log-format", "text", pty=False)
    assert "WARNING" in out and "redis_unavailable" in out
    assert ESC not in out  # text to a pipe: never coloured
    assert SECRET not in out
