"""The multi-host Redis URLs: Redis Cluster and Sentinel.

Single-server URLs (``redis://``, ``rediss://``, ``unix://``) are redis-py's own and are not
parsed here. The two forms streamq adds, each with a TLS twin (``rediss+...``)::

    redis+cluster://[user:password@]host:port[,host:port...][/][?]
    redis+sentinel://[user:password@]host:port[,host:port...]/service_name[/db]
        [?sentinel_username=...&sentinel_password=...]

A cluster URL lists startup nodes (one is enough, more survive one being down); a sentinel
URL lists sentinels (default port 26379) and names the monitored primary. The user and
password are the data nodes' (the cluster's nodes, Sentinel's primary); sentinels that have
a password of their own (``requirepass`` in sentinel.conf) take ``sentinel_password`` (and
``sentinel_username`` for an ACL user). With ``rediss+`` both the data nodes and the
sentinels are reached over TLS.

Errors name the part that is wrong by position ("host 2 of 3") and never quote the URL
or any piece of it: a password with an unescaped ``/`` or ``@`` shifts every later part,
so even a "host" may be a piece of the secret.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import parse_qsl, quote, unquote

from streamq.errors import ConfigError

__all__ = [
    "CLUSTER_SCHEMES",
    "SENTINEL_SCHEMES",
    "Endpoints",
    "Mode",
    "parse_multi_host",
]

Mode = Literal["single", "cluster", "sentinel"]
"""How streamq reaches Redis: one server, a Redis Cluster, or a primary found by Sentinel."""

CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
SENTINEL_PORT = 26379
_SENTINEL_OPTIONS = ("sentinel_username", "sentinel_password")
_ENCODE_HINT = " (characters such as / ? # @ in a password must be percent-encoded)"


@dataclass(frozen=True, slots=True)
class Endpoints:
    """A parsed cluster or sentinel URL. ``repr`` never shows a password."""

    mode: Mode
    hosts: tuple[tuple[str, int], ...]
    tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    #: Sentinel only: the name sentinels monitor the primary under, and its database.
    service: str | None = None
    db: int = 0
    sentinel_username: str | None = None
    sentinel_password: str | None = field(default=None, repr=False)

    @property
    def scheme(self) -> str:
        """``redis+cluster``, ``rediss+sentinel``...: the URL scheme of these endpoints."""
        return f"{'rediss' if self.tls else 'redis'}+{self.mode}"

    def hosts_text(self) -> str:
        """``host:port,host:port`` (IPv6 addresses in brackets)."""
        return ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in self.hosts)

    def describe(self) -> str:
        """Scheme, hosts and (sentinel) service and db: for logs, never a credential."""
        tail = f"/{self.service}/{self.db}" if self.mode == "sentinel" else ""
        return f"{self.scheme}://{self.hosts_text()}{tail}"

    def to_url(self) -> str:
        """The URL these endpoints parse from, normalised (contains the passwords)."""
        auth = ""
        if self.username or self.password:
            auth = quote(self.username or "", safe="")
            if self.password:
                auth += ":" + quote(self.password, safe="")
            auth += "@"
        tail = f"/{quote(self.service or '', safe='')}/{self.db}" if self.mode == "sentinel" else ""
        query = "&".join(
            f"{name}={quote(value, safe='')}"
            for name, value in (
                ("sentinel_username", self.sentinel_username),
                ("sentinel_password", self.sentinel_password),
            )
            if value
        )
        return f"{self.scheme}://{auth}{self.hosts_text()}{tail}{'?' + query if query else ''}"


def _split_host(item: str, position: str, default_port: int) -> tuple[str, int]:
    if item.startswith("["):  # [IPv6]:port
        host, sep, rest = item[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ConfigError(f"REDIS_URL: {position} has a malformed [IPv6] address")
        port_text = rest[1:]
    else:
        host, _, port_text = item.rpartition(":") if ":" in item else (item, "", "")
    if not host:
        raise ConfigError(f"REDIS_URL: {position} has no host name{_ENCODE_HINT}")
    if any(c.isspace() or c in "/?#@[]" for c in host):
        raise ConfigError(f"REDIS_URL: {position} is not a host name{_ENCODE_HINT}")
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ConfigError(
            f"REDIS_URL: the port of {position} must be a number in 1..65535{_ENCODE_HINT}"
        )
    return host, int(port_text)


def _hosts(netloc: str, default_port: int) -> tuple[tuple[str, int], ...]:
    items = netloc.split(",")
    if items == [""]:
        raise ConfigError("REDIS_URL: no host given (expected host:port[,host:port...])")
    return tuple(
        _split_host(item.strip(), f"host {i} of {len(items)}", default_port)
        for i, item in enumerate(items, 1)
    )


def _userinfo(text: str) -> tuple[str | None, str | None]:
    user, sep, password = text.partition(":")
    return (unquote(user) or None, (unquote(password) or None) if sep else None)


def _sentinel_path(path: str) -> tuple[str, int]:
    parts = path.strip("/").split("/") if path.strip("/") else []
    if not parts:
        raise ConfigError(
            "REDIS_URL: a sentinel URL names the primary's service after the hosts: "
            "redis+sentinel://host:26379[,host:port...]/service_name[/db]"
        )
    if len(parts) > 2:
        raise ConfigError(
            "REDIS_URL: a sentinel URL's path is /service_name[/db], it has more parts"
            + _ENCODE_HINT
        )
    service = unquote(parts[0])
    if not service or any(c.isspace() for c in service):
        raise ConfigError("REDIS_URL: the sentinel service name must be non-empty, no spaces")
    db = 0
    if len(parts) == 2:
        if not parts[1].isdigit():
            raise ConfigError("REDIS_URL: the database after the service name must be a number")
        db = int(parts[1])
    return service, db


def _options(query: str, mode: Mode) -> dict[str, str]:
    allowed = _SENTINEL_OPTIONS if mode == "sentinel" else ()
    options: dict[str, str] = {}
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise ConfigError("REDIS_URL: the query string (after ?) is malformed") from None
    for name, value in pairs:
        if name not in allowed:
            supported = ", ".join(allowed) or "none"
            # The option's name is shown only when it is one we know of elsewhere: an
            # unknown "name" may be a piece of a misplaced password.
            shown = f" {name!r}" if name.isidentifier() and len(name) <= 40 else ""
            raise ConfigError(
                f"REDIS_URL: option{shown} is not supported by {mode} URLs (supported: {supported})"
            )
        options[name] = value
    return options


def parse_multi_host(url: str) -> Endpoints:
    """Parse a ``redis+cluster://`` or ``redis+sentinel://`` URL (or its ``rediss+`` twin);
    :class:`~streamq.errors.ConfigError` names the part that is wrong, quoting none of it."""
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in CLUSTER_SCHEMES + SENTINEL_SCHEMES:
        raise ConfigError(
            "REDIS_URL: expected a redis+cluster://, rediss+cluster://, redis+sentinel:// "
            "or rediss+sentinel:// URL"
        )
    mode: Mode = "cluster" if scheme in CLUSTER_SCHEMES else "sentinel"
    rest, _, _fragment = rest.partition("#")
    rest, _, query = rest.partition("?")
    netloc, slash, path = rest.partition("/")
    # The last @ ends the credentials: an unescaped @ in the password still parses.
    userinfo, at, hostpart = netloc.rpartition("@")
    username, password = _userinfo(userinfo) if at else (None, None)
    hosts = _hosts(hostpart, SENTINEL_PORT if mode == "sentinel" else 6379)
    options = _options(query, mode)
    if mode == "cluster":
        if path.strip("/") not in ("", "0"):
            raise ConfigError(
                "REDIS_URL: Redis Cluster has a single database (0): a cluster URL takes no "
                "path other than /0" + _ENCODE_HINT
            )
        return Endpoints("cluster", hosts, scheme.startswith("rediss"), username, password)
    service, db = _sentinel_path(slash + path)
    return Endpoints(
        "sentinel",
        hosts,
        scheme.startswith("rediss"),
        username,
        password,
        service=service,
        db=db,
        sentinel_username=options.get("sentinel_username") or None,
        sentinel_password=options.get("sentinel_password") or None,
    )
