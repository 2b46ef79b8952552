"""``python -m streamq.worker ... --processes N``: one supervisor, N worker processes.

Each child is a plain ``python -m streamq.worker`` with the same arguments minus
``--processes``, started with :mod:`subprocess` from an argv list (no shell). Not
:mod:`multiprocessing`: a child is then exactly the process a single worker is (its own
interpreter, signal handling, exit codes and the ``os._exit`` for abandoned sync threads),
nothing is pickled, and the user's app is imported only in the children, never in the
supervisor.

* SIGTERM or SIGINT to the supervisor is forwarded to every child as SIGTERM (a child killed
  by it before its handler was installed dies silently instead of printing a
  KeyboardInterrupt traceback); a second signal is forwarded again, so the children skip
  the rest of their grace period, as a single worker does on a second signal.
* Children run in their own process group: a Ctrl-C on the terminal reaches only the
  supervisor, which forwards it once (the whole group getting SIGINT *and* the forwarded
  signal would count as two signals and cut the grace short). A child notices when its
  supervisor is gone (``STREAMQ_SUPERVISOR_PID``) and stops gracefully.
* A child that dies unexpectedly (non-zero exit, or killed by a signal) is restarted after
  a backoff, 0.5 s doubling to 30 s, reset once a child has lived 10 s, so a child that
  crashes at start cannot spin. A child exiting 2 (usage or configuration error) before it
  has lived that long is not restarted: no restart can mend its configuration, so the
  supervisor stops the others and exits 2. A child exiting 0 on its own (``--burst``) is
  done and not restarted.
* Exit code: 0 when every child stopped cleanly, 1 when one did not (killed during the
  shutdown, or crashed and waiting out its backoff when the stop came), 2 after a
  configuration error.

Every start, exit and restart is a structured log event (``child_started``,
``child_exited``, ``child_restart_scheduled``, ...).
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import FrameType

from streamq.worker.logs import log_event

__all__ = ["EXIT_CONFIG", "EXIT_FAILED", "SUPERVISOR_PID_ENV", "Backoff", "Supervisor"]

#: Set in each child's environment: the supervisor's pid, which the child watches.
SUPERVISOR_PID_ENV = "STREAMQ_SUPERVISOR_PID"
#: Exit code of a child (and then of the supervisor) for a usage or configuration error.
EXIT_CONFIG = 2
#: Exit code of the supervisor when a child failed to stop cleanly.
EXIT_FAILED = 1

_FORWARD = (signal.SIGTERM, signal.SIGINT)
_POLL_S = 1.0  # longest sleep between checks; SIGCHLD and signals wake it earlier


@dataclass(frozen=True)
class Backoff:
    """Delay before restarting a child: ``initial`` doubling to ``maximum``, back to
    ``initial`` once a child has lived ``stable_s``."""

    initial: float = 0.5
    maximum: float = 30.0
    stable_s: float = 10.0

    def next(self, previous: float | None, lived_s: float) -> float:
        """The delay after a child that lived ``lived_s`` died; ``previous`` is the delay
        used before its start (None for a first start)."""
        if previous is None or lived_s >= self.stable_s:
            return self.initial
        return min(previous * 2, self.maximum)


@dataclass
class _Slot:
    """One of the N places a child runs in."""

    index: int
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0  # monotonic time of the last start
    delay: float | None = None  # the backoff delay that preceded the current start
    restart_at: float | None = None  # monotonic time of a scheduled restart
    restarts: int = 0
    clean: bool = True  # how its last child ended (a slot never started counts as clean)


def _describe(code: int) -> tuple[int | None, str | None]:
    """(exit code, signal name) of a Popen return code."""
    if code >= 0:
        return code, None
    try:
        return None, signal.Signals(-code).name
    except ValueError:
        return None, f"signal {-code}"


class Supervisor:
    """Runs ``processes`` children of ``python -m streamq.worker *child_args``.

    :meth:`run` blocks until they have all stopped and returns the exit code. It installs
    signal handlers, so it must run in the main thread.
    """

    def __init__(
        self,
        child_args: Sequence[str],
        processes: int,
        *,
        env: Mapping[str, str] | None = None,
        backoff: Backoff | None = None,
        executable: str = sys.executable,
    ) -> None:
        if processes < 1:
            raise ValueError(f"processes must be >= 1, got {processes}")
        self.argv = [executable, "-m", "streamq.worker", *child_args]
        base = dict(os.environ if env is None else env)
        # A child must never supervise in turn (STREAMQ_PROCESSES=N is inherited).
        base["STREAMQ_PROCESSES"] = "1"
        base[SUPERVISOR_PID_ENV] = str(os.getpid())
        self.env = base
        self.backoff = backoff or Backoff()
        self.slots = [_Slot(i) for i in range(processes)]
        self._signals: list[int] = []
        self._received = 0
        self._stopping = False
        self._gave_up = False

    # ------------------------------------------------------------------ main loop

    def run(self) -> int:
        """Start the children, supervise them until they have all stopped; the exit code."""
        rfd, wfd = os.pipe()
        os.set_blocking(rfd, False)
        os.set_blocking(wfd, False)
        old_wakeup = signal.set_wakeup_fd(wfd, warn_on_full_buffer=False)
        old = {s: signal.signal(s, self._on_signal) for s in _FORWARD}
        # A Python handler for SIGCHLD, so a child's exit writes to the wakeup fd.
        old[signal.SIGCHLD] = signal.signal(signal.SIGCHLD, lambda *_: None)
        try:
            log_event("supervisor_started", processes=len(self.slots), pid=os.getpid())
            for slot in self.slots:
                self._start(slot)
            while True:
                self._forward_signals()
                self._reap()
                if self._done():
                    break
                self._start_due()
                self._sleep(rfd)
            code = self._exit_code()
            log_event("supervisor_stopped", exit_code=code)
            return code
        finally:
            signal.set_wakeup_fd(old_wakeup)
            for s, handler in old.items():
                signal.signal(s, handler)
            os.close(rfd)
            os.close(wfd)
            self._terminate_leftovers()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._signals.append(signum)  # acted on by the main loop, never inside the handler

    def _sleep(self, rfd: int) -> None:
        timeout = _POLL_S
        due = [s.restart_at for s in self.slots if s.restart_at is not None]
        if due:
            timeout = max(0.0, min(timeout, min(due) - time.monotonic()))
        with contextlib.suppress(InterruptedError):
            select.select([rfd], [], [], timeout)
        with contextlib.suppress(BlockingIOError):
            while os.read(rfd, 512):
                pass

    def _done(self) -> bool:
        if any(s.proc is not None for s in self.slots):
            return False
        # Nothing running: done once stopping, or when every child exited 0 on its own.
        return self._stopping or all(s.restart_at is None for s in self.slots)

    def _exit_code(self) -> int:
        if self._gave_up:
            return EXIT_CONFIG
        # A slot whose last child crashed (even if it waited out its backoff when the stop
        # came) did not stop cleanly.
        return 0 if all(s.clean for s in self.slots) else EXIT_FAILED

    # ------------------------------------------------------------------ children

    def _start(self, slot: _Slot) -> None:
        slot.restart_at = None
        try:
            proc = subprocess.Popen(
                self.argv,
                env=self.env,
                stdin=subprocess.DEVNULL,
                process_group=0,  # Ctrl-C reaches the supervisor only; it forwards
            )
        except OSError as exc:  # e.g. EAGAIN (process limit): retried like a crash
            log_event(
                "child_start_failed", logging.ERROR, index=slot.index, error=f"{exc.strerror}"
            )
            slot.clean = False
            self._schedule_restart(slot, lived_s=0.0)
            return
        slot.proc = proc
        slot.started = time.monotonic()
        log_event("child_started", index=slot.index, pid=proc.pid, restarts=slot.restarts)

    def _start_due(self) -> None:
        if self._stopping:
            return
        now = time.monotonic()
        for slot in self.slots:
            if slot.proc is None and slot.restart_at is not None and slot.restart_at <= now:
                slot.restarts += 1
                self._start(slot)

    def _reap(self) -> None:
        for slot in self.slots:
            proc = slot.proc
            if proc is None or proc.poll() is None:
                continue
            slot.proc = None
            code = proc.returncode
            lived = time.monotonic() - slot.started
            # A child SIGTERMed by our forward before it could install its handler held
            # no job yet (handlers go in before the first fetch): that is a clean stop.
            clean = code == 0 or (self._stopping and code == -signal.SIGTERM)
            exit_code, sig = _describe(code)
            log_event(
                "child_exited",
                logging.INFO if clean else logging.WARNING,
                index=slot.index,
                pid=proc.pid,
                exit_code=exit_code,
                signal=sig,
                clean=clean,
                uptime_s=round(lived, 3),
            )
            slot.clean = clean
            if clean or self._stopping:
                continue
            if code == EXIT_CONFIG and lived < self.backoff.stable_s:
                self._give_up(slot)
            else:
                self._schedule_restart(slot, lived)

    def _schedule_restart(self, slot: _Slot, lived_s: float) -> None:
        slot.delay = self.backoff.next(slot.delay, lived_s)
        slot.restart_at = time.monotonic() + slot.delay
        log_event(
            "child_restart_scheduled",
            logging.WARNING,
            index=slot.index,
            in_s=slot.delay,
            restarts=slot.restarts,
        )

    def _give_up(self, slot: _Slot) -> None:
        log_event(
            "supervisor_giving_up",
            logging.ERROR,
            index=slot.index,
            reason="a child exited with a usage or configuration error; a restart "
            "cannot mend it: stopping the others",
        )
        self._gave_up = True
        self._begin_stop()
        self._send_all(signal.SIGTERM)

    # ------------------------------------------------------------------ signals

    def _forward_signals(self) -> None:
        while self._signals:
            signum = self._signals.pop(0)
            self._received += 1
            action = "stop" if self._received == 1 else "hurry"
            sent = self._send_all(signal.SIGTERM)
            log_event(
                "signal", signal=signal.Signals(signum).name, action=action, forwarded_to=sent
            )
            self._begin_stop()

    def _begin_stop(self) -> None:
        self._stopping = True
        for slot in self.slots:
            slot.restart_at = None  # a child waiting out its backoff is not started again

    def _send_all(self, sig: int) -> int:
        sent = 0
        for slot in self.slots:
            if slot.proc is not None and slot.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    slot.proc.send_signal(sig)  # Popen checks it is not reaped already
                    sent += 1
        return sent

    def _terminate_leftovers(self) -> None:
        # Only on an unexpected error in the loop above: children must not outlive us
        # unsupervised (they would also notice, through STREAMQ_SUPERVISOR_PID).
        self._send_all(signal.SIGTERM)
