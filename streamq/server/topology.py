"""What the multi-process servers (:class:`~streamq.server.EmbeddedCluster`,
:class:`~streamq.server.EmbeddedSentinel`) share: their directory, the checks of the
arguments every one takes, waiting for a condition with a deadline, and the context
manager."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Self

import redis

from streamq.errors import ServerError
from streamq.server.conf import PROFILES, Profile

__all__ = ["Topology"]

#: Seconds between two checks of a condition being waited for.
POLL_S = 0.05


class Topology:
    """Base of a set of server processes in one directory: ``base_dir`` (a temporary
    directory removed by :meth:`stop` when ``None``), one ``password`` for the data nodes,
    the ``binary``/``prefer`` choice of executable, a persistence ``profile`` and a
    ``timeout`` for :meth:`start`. Subclasses start and stop the processes."""

    #: What the errors call it ("cluster", "sentinel setup").
    what = "topology"

    def __init__(
        self,
        base_dir: Path | str | None,
        *,
        dir_prefix: str,
        password: str | None,
        binary: Path | None,
        prefer: str | None,
        profile: Profile,
        timeout: float,
    ) -> None:
        if password == "":
            raise ValueError("password must be a non-empty string or None")
        if profile not in PROFILES:
            raise ValueError(f"profile must be one of {', '.join(PROFILES)}, not {profile!r}")
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, not {timeout}")
        self._owns_dir = base_dir is None
        self._base_dir = (
            Path(tempfile.mkdtemp(prefix=dir_prefix))
            if base_dir is None
            else Path(base_dir).expanduser().resolve()
        )
        self._password = password
        self._binary = Path(binary) if binary is not None else None
        self._prefer = prefer
        self._profile: Profile = profile
        self.timeout = timeout
        self.formation_seconds: float | None = None
        """How long the last :meth:`start` took, process spawns included."""

    @property
    def base_dir(self) -> Path:
        """The directory holding one directory per process."""
        return self._base_dir

    @property
    def password(self) -> str | None:
        """The data nodes' password, or ``None``."""
        return self._password

    def start(self) -> Self:
        """Start every process and wait until they agree; returns self."""
        raise NotImplementedError

    def stop(self) -> None:
        """Stop every process and remove ``base_dir`` if this object created it."""
        raise NotImplementedError

    def _started(self) -> bool:
        raise NotImplementedError

    def _remove_dir(self) -> None:
        if self._owns_dir:
            shutil.rmtree(self._base_dir, ignore_errors=True)

    def _converge(self, check: Callable[[], list[str]], deadline: float, what: str) -> None:
        """Poll ``check`` (the problems left) until it finds none; ServerError naming them
        past ``deadline`` (monotonic)."""
        began = time.monotonic()
        while True:
            try:
                problems = check()
            except redis.RedisError as exc:
                problems = [f"{type(exc).__name__}: {exc}"]
            if not problems:
                return
            if time.monotonic() >= deadline:
                waited = time.monotonic() - began
                raise ServerError(
                    f"{self.what} did not converge ({what}) within {waited:.1f} s: "
                    + "; ".join(problems)
                )
            time.sleep(POLL_S)

    def __enter__(self) -> Self:
        if not self._started():
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
