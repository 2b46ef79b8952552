"""Settings from the environment.

Names follow the original distribution spec (``REDIS_URL`` or ``REDIS_HOST``/``REDIS_PORT``/...,
``STREAMQ_CONCURRENCY``, ``STREAMQ_MAX_RETRIES``, ``STREAMQ_BACKOFF_DELAY``...). A malformed
value raises :class:`~streamq.errors.ConfigError` naming the variable; secrets are never echoed.
``.env.example`` at the project root lists every variable.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields, replace
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from streamq._redis_url import CLUSTER_SCHEMES, SENTINEL_SCHEMES, Endpoints, Mode, parse_multi_host
from streamq.errors import ConfigError
from streamq.job import MAX_BACKOFF_MS, MAX_RETRIES, MAX_TIMEOUT_MS

__all__ = ["Endpoints", "Mode", "RedisSettings", "Settings", "check_prefix"]

_SINGLE_SCHEMES = ("redis", "rediss", "unix")
_TLS_SCHEMES = ("rediss", "rediss+cluster", "rediss+sentinel")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _int(
    env: Mapping[str, str], name: str, default: int, *, minimum: int = 0, maximum: int | None = None
) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name} must be <= {maximum}, got {value}")
    return value


def _float(
    env: Mapping[str, str],
    name: str,
    default: float,
    *,
    minimum: float = 0.0,
    maximum: float | None = None,
) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw.strip())
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if not math.isfinite(value) or value < minimum:
        raise ConfigError(f"{name} must be a finite number >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name} must be <= {maximum}, got {value}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None:
        return default
    low = raw.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ConfigError(f"{name} must be a boolean (true/false/1/0), got {raw!r}")


def _choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
    return value


def _host(env: Mapping[str, str], name: str, default: str) -> str:
    host = (env.get(name) or "").strip() or default
    if any(c.isspace() or c in "/@" for c in host):
        # Typically a URL pasted into the host variable; show none of it (it may hold a
        # password).
        raise ConfigError(f"{name} must be a host name or IP address (use REDIS_URL for URLs)")
    return host


def _file(env: Mapping[str, str], name: str) -> str | None:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return None
    path = raw.strip()
    if not os.path.isfile(path):
        raise ConfigError(f"{name} must name a readable file, got {path!r} (no such file)")
    return path


def _scheme_of(url: str) -> str:
    # Not urlsplit alone: it raises on a stray "[" (an IPv6 typo) before the scheme is known,
    # and cluster and sentinel URLs get their own, clearer, errors.
    head, sep, _ = url.partition("://")
    return head.lower() if sep and head.isascii() and head else urlsplit(url).scheme


def _defaults(cls: type[Any]) -> dict[str, Any]:
    """Each field's default as the dataclass declares it: ``from_env`` falls back to these,
    so every default is written once, on its field."""
    return {f.name: f.default for f in fields(cls) if f.default is not MISSING}


def check_prefix(prefix: str, name: str) -> str:
    """Return ``prefix`` if it can stem keys (``prefix:{queue}:...``), else raise ConfigError
    naming ``name`` (the variable or flag it came from)."""
    if not prefix or any(c in prefix for c in "{}: \t\n"):
        raise ConfigError(f"{name} must be non-empty, without braces, colons or spaces: {prefix!r}")
    return prefix


@dataclass(frozen=True)
class RedisSettings:
    """Where and how to connect to Redis. ``repr`` never shows the password.

    :attr:`mode` says how: one server (``redis://``, ``rediss://``, ``unix://`` or host and
    port), a Redis Cluster (``redis+cluster://host:port,...`` or ``cluster=True``, from
    ``STREAMQ_CLUSTER``, beside a single-server address, which then is a startup node), or
    the primary a set of sentinels names (``redis+sentinel://host:port,.../service[/db]``).
    See :mod:`streamq._redis_url` for the URL forms.
    """

    url: str | None = None
    host: str = "127.0.0.1"
    port: int = 6379
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False
    tls_ca_file: str | None = None
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    socket_timeout: float = 10.0
    connect_timeout: float = 5.0
    cluster: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> RedisSettings:
        """Read ``REDIS_URL`` or ``REDIS_HOST``/``REDIS_PORT``/``REDIS_DB``/``REDIS_USERNAME``/
        ``REDIS_PASSWORD``/``REDIS_TLS`` (+ ``REDIS_TLS_CA_FILE``, ``REDIS_TLS_CERT_FILE``,
        ``REDIS_TLS_KEY_FILE``) and ``STREAMQ_CLUSTER``."""
        env = os.environ if env is None else env
        default = _defaults(cls)
        url = env.get("REDIS_URL") or None
        if url is not None and _scheme_of(url) not in CLUSTER_SCHEMES + SENTINEL_SCHEMES:
            parts = urlsplit(url)
            if parts.scheme not in _SINGLE_SCHEMES:
                # Show only the scheme: the URL may carry a password.
                raise ConfigError(
                    f"REDIS_URL must start with redis://, rediss://, unix://, "
                    f"redis+cluster://, redis+sentinel:// (or rediss+...), "
                    f"got scheme {parts.scheme!r}"
                )
            try:
                parts.port  # noqa: B018 (validates the port)
            except ValueError:
                raise ConfigError("REDIS_URL has an invalid port") from None
        return cls(
            url=url,
            host=_host(env, "REDIS_HOST", default["host"]),
            port=_int(env, "REDIS_PORT", default["port"], minimum=1, maximum=65535),
            db=_int(env, "REDIS_DB", default["db"]),
            username=env.get("REDIS_USERNAME") or None,
            password=env.get("REDIS_PASSWORD") or None,
            tls=_bool(env, "REDIS_TLS", default["tls"]),
            tls_ca_file=_file(env, "REDIS_TLS_CA_FILE"),
            tls_cert_file=_file(env, "REDIS_TLS_CERT_FILE"),
            tls_key_file=_file(env, "REDIS_TLS_KEY_FILE"),
            socket_timeout=_float(
                env, "REDIS_SOCKET_TIMEOUT", default["socket_timeout"], minimum=0.1
            ),
            connect_timeout=_float(
                env, "REDIS_CONNECT_TIMEOUT", default["connect_timeout"], minimum=0.1
            ),
            cluster=_bool(env, "STREAMQ_CLUSTER", default["cluster"]),
        )

    def __post_init__(self) -> None:
        self._check_mode()
        files = [
            var
            for var, value in (
                ("REDIS_TLS_CA_FILE", self.tls_ca_file),
                ("REDIS_TLS_CERT_FILE", self.tls_cert_file),
                ("REDIS_TLS_KEY_FILE", self.tls_key_file),
            )
            if value
        ]
        if files and not self.use_tls:
            # redis-py would fail late, with a TypeError on the first command.
            raise ConfigError(
                f"{', '.join(files)} set but TLS is off: set REDIS_TLS=true "
                "or use a rediss:// REDIS_URL"
            )

    def _scheme(self) -> str | None:
        return None if self.url is None else _scheme_of(self.url)

    def _check_mode(self) -> None:
        """Validate a cluster or sentinel address at construction (however the settings
        were made), so a bad one never reaches redis-py, whose messages may quote it."""
        scheme = self._scheme()
        if scheme in CLUSTER_SCHEMES + SENTINEL_SCHEMES:
            assert self.url is not None
            parse_multi_host(self.url)
        if not self.cluster:
            return
        if scheme in SENTINEL_SCHEMES:
            raise ConfigError(
                "STREAMQ_CLUSTER is set but REDIS_URL is a redis+sentinel:// URL: "
                "Sentinel serves one primary, not a cluster"
            )
        if scheme == "unix":
            raise ConfigError(
                "STREAMQ_CLUSTER is set but REDIS_URL is a unix:// socket: cluster nodes are "
                "reached over TCP (use redis+cluster://host:port,...)"
            )
        db = self.db
        if scheme in _SINGLE_SCHEMES:
            path = urlsplit(self.url or "").path.strip("/")
            db = int(path) if path.isdigit() else (0 if not path else -1)
        if db != 0:
            raise ConfigError(
                "STREAMQ_CLUSTER is set but the database is not 0 (REDIS_DB or the "
                "REDIS_URL path): Redis Cluster has a single database"
            )

    @property
    def mode(self) -> Mode:
        """``"single"``, ``"cluster"`` or ``"sentinel"``: how connections are made."""
        scheme = self._scheme()
        if scheme in SENTINEL_SCHEMES:
            return "sentinel"
        if self.cluster or scheme in CLUSTER_SCHEMES:
            return "cluster"
        return "single"

    def endpoints(self) -> Endpoints:
        """The startup nodes (cluster) or sentinels (sentinel) with credentials and TLS.
        Raises ConfigError in single-server mode."""
        mode = self.mode
        if mode == "single":
            raise ConfigError("a single-server address has no cluster or sentinel endpoints")
        scheme = self._scheme()
        if self.url is not None and scheme in CLUSTER_SCHEMES + SENTINEL_SCHEMES:
            found = parse_multi_host(self.url)
            return replace(found, tls=True) if self.tls and not found.tls else found
        if self.url is not None:  # STREAMQ_CLUSTER with a redis:// or rediss:// URL
            parts = urlsplit(self.url)
            return Endpoints(
                "cluster",
                ((parts.hostname or "127.0.0.1", parts.port or 6379),),
                tls=self.use_tls,
                username=unquote(parts.username) if parts.username else None,
                password=unquote(parts.password) if parts.password else None,
            )
        return Endpoints(
            "cluster",
            ((self.host, self.port),),
            tls=self.tls,
            username=self.username,
            password=self.password,
        )

    @property
    def use_tls(self) -> bool:
        """True when connections use TLS: ``tls`` is set or the URL is ``rediss://`` (or
        ``rediss+cluster://``, ``rediss+sentinel://``)."""
        return self.tls or self._scheme() in _TLS_SCHEMES

    def to_url(self) -> str:
        """The connection URL (contains the password: never log it).

        ``tls=True`` (``REDIS_TLS``) upgrades a ``redis://`` URL to ``rediss://``: asking for
        TLS never silently connects in clear text. In cluster and sentinel modes it is a
        ``redis+cluster://`` or ``redis+sentinel://`` URL (``rediss+`` with TLS), so that
        the URL alone says how to connect (``STREAMQ_CLUSTER`` folded in)."""
        if self.mode != "single":
            scheme = self._scheme()
            if self.url and scheme in CLUSTER_SCHEMES + SENTINEL_SCHEMES:
                if self.tls and scheme.startswith("redis+"):
                    return "rediss" + self.url[len("redis") :]
                return self.url
            return self.endpoints().to_url()
        if self.url:
            if self.tls and urlsplit(self.url).scheme == "redis":
                return "rediss" + self.url[len("redis") :]
            return self.url
        scheme = "rediss" if self.tls else "redis"
        auth = ""
        if self.username or self.password:
            auth = quote(self.username or "", safe="")
            if self.password:
                auth += ":" + quote(self.password, safe="")
            auth += "@"
        return f"{scheme}://{auth}{self.host}:{self.port}/{self.db}"

    def client_kwargs(self) -> dict[str, Any]:
        """Extra keyword arguments for ``redis.Redis.from_url`` (TLS files, timeouts)."""
        kwargs: dict[str, Any] = {
            "socket_timeout": self.socket_timeout,
            "socket_connect_timeout": self.connect_timeout,
        }
        if not self.use_tls:
            return kwargs
        if self.tls_ca_file:
            kwargs["ssl_ca_certs"] = self.tls_ca_file
        if self.tls_cert_file:
            kwargs["ssl_certfile"] = self.tls_cert_file
        if self.tls_key_file:
            kwargs["ssl_keyfile"] = self.tls_key_file
        return kwargs

    def describe(self) -> str:
        """Where this points, for logs: host, port and db (every host, and the sentinel
        service, in cluster and sentinel modes), never credentials."""
        if self.mode != "single":
            return self.endpoints().describe()
        if self.url:
            parts = urlsplit(self.to_url())
            if parts.scheme == "unix":
                return f"unix://{parts.path}"
            return f"{parts.scheme}://{parts.hostname}:{parts.port or 6379}{parts.path or '/0'}"
        return f"{'rediss' if self.tls else 'redis'}://{self.host}:{self.port}/{self.db}"

    def __repr__(self) -> str:
        # Hand-written: the generated one would show a password embedded in ``url``.
        url = None if self.url is None else self.describe()
        return (
            f"RedisSettings(url={url!r}, host={self.host!r}, port={self.port}, db={self.db}, "
            f"username={self.username!r}, password={'***' if self.password else None}, "
            f"tls={self.use_tls}, tls_ca_file={self.tls_ca_file!r}, "
            f"tls_cert_file={self.tls_cert_file!r}, tls_key_file={self.tls_key_file!r}, "
            f"socket_timeout={self.socket_timeout}, connect_timeout={self.connect_timeout}"
            f"{', cluster=True' if self.cluster else ''})"
        )


@dataclass(frozen=True)
class Settings:
    """Engine settings: connection, worker defaults, job defaults and retention."""

    redis: RedisSettings = field(default_factory=RedisSettings)
    prefix: str = "sq"
    concurrency: int = 5
    max_retries: int = 3
    backoff_type: str = "exponential"
    backoff_delay_ms: int = 5000
    backoff_factor: float = 5.0
    backoff_jitter: float = 0.0
    job_timeout_ms: int = 0
    lease_ms: int = 30_000
    max_stalls: int = 1
    shutdown_grace_ms: int = 10_000
    keep_completed: int = 100
    keep_failed: int = 500
    completed_max_age_s: int = 0
    failed_max_age_s: int = 0
    max_payload_bytes: int = 512 * 1024
    events_maxlen: int = 10_000
    log_level: str = "info"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read every ``STREAMQ_*`` variable (and the ``REDIS_*`` ones)."""
        env = os.environ if env is None else env
        default = _defaults(cls)
        prefix = check_prefix(env.get("STREAMQ_PREFIX") or default["prefix"], "STREAMQ_PREFIX")
        return cls(
            redis=RedisSettings.from_env(env),
            prefix=prefix,
            concurrency=_int(env, "STREAMQ_CONCURRENCY", default["concurrency"], minimum=1),
            max_retries=_int(
                env, "STREAMQ_MAX_RETRIES", default["max_retries"], maximum=MAX_RETRIES
            ),
            backoff_type=_choice(
                env, "STREAMQ_BACKOFF_TYPE", default["backoff_type"], ("exponential", "fixed")
            ),
            backoff_delay_ms=_int(
                env, "STREAMQ_BACKOFF_DELAY", default["backoff_delay_ms"], maximum=MAX_BACKOFF_MS
            ),
            backoff_factor=_float(
                env, "STREAMQ_BACKOFF_FACTOR", default["backoff_factor"], minimum=1.0
            ),
            backoff_jitter=_float(
                env, "STREAMQ_BACKOFF_JITTER", default["backoff_jitter"], maximum=1.0
            ),
            job_timeout_ms=_int(
                env, "STREAMQ_JOB_TIMEOUT", default["job_timeout_ms"], maximum=MAX_TIMEOUT_MS
            ),
            lease_ms=_int(env, "STREAMQ_LEASE", default["lease_ms"], minimum=100),
            max_stalls=_int(env, "STREAMQ_MAX_STALLS", default["max_stalls"]),
            shutdown_grace_ms=_int(env, "STREAMQ_SHUTDOWN_GRACE", default["shutdown_grace_ms"]),
            keep_completed=_int(env, "STREAMQ_KEEP_COMPLETED", default["keep_completed"]),
            keep_failed=_int(env, "STREAMQ_KEEP_FAILED", default["keep_failed"]),
            completed_max_age_s=_int(
                env, "STREAMQ_COMPLETED_MAX_AGE", default["completed_max_age_s"]
            ),
            failed_max_age_s=_int(env, "STREAMQ_FAILED_MAX_AGE", default["failed_max_age_s"]),
            max_payload_bytes=_int(
                env, "STREAMQ_MAX_PAYLOAD_BYTES", default["max_payload_bytes"], minimum=1
            ),
            events_maxlen=_int(env, "STREAMQ_EVENTS_MAXLEN", default["events_maxlen"], minimum=100),
            log_level=_choice(
                env,
                "STREAMQ_LOG_LEVEL",
                default["log_level"],
                ("debug", "info", "warning", "error"),
            ),
        )

    @classmethod
    def resolve(cls, url: str | None = None, settings: Settings | None = None) -> Settings:
        """``settings`` (default: the environment), pointed at ``url`` when given. Only the
        address changes: timeouts and TLS files still come from the settings."""
        s = settings or cls.from_env()
        if url is not None:
            s = s.with_changes(redis=replace(s.redis, url=url))
        return s

    def with_changes(self, **changes: Any) -> Settings:
        """A copy with some fields replaced."""
        return replace(self, **changes)
