"""The embedded cluster is a real Redis Cluster: it forms with every slot served and every
replica attached, a cluster client reads and writes through it with the password, hash tags
keep a queue's keys in one slot, a killed master's replica takes over, and nothing is left
running afterwards."""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.retry import Retry

from streamq.errors import ServerError
from streamq.server import EmbeddedCluster, EmbeddedNode
from streamq.server.cluster import SLOTS, slot_ranges


def _client(cluster: EmbeddedCluster) -> RedisCluster:
    return RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in cluster.startup_nodes],
        password=cluster.password,
        decode_responses=True,
        socket_timeout=5,
    )


def _plain(node: EmbeddedNode, **kwargs: Any) -> redis.Redis:
    # No retries: a refused password must fail at once, not after redis-py's backoff.
    return redis.Redis(
        host=node.host, port=node.port, decode_responses=True, retry=Retry(NoBackoff(), 0), **kwargs
    )


def _pids_working_in(directory: Path) -> list[int]:
    """Processes whose working directory is under ``directory`` (servers run in theirs)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = Path(os.readlink(entry / "cwd"))
        except OSError:
            continue
        if cwd == directory or directory in cwd.parents:
            found.append(int(entry.name))
    return found


def _kind(cluster: EmbeddedCluster) -> str:
    server = cluster.nodes[0].server
    return f"{'valkey' if server.is_valkey else 'redis'} {'.'.join(map(str, server.version))}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _keys_on_each_master(client: RedisCluster, prefix: str, masters: int) -> dict[str, str]:
    """One key per master (node name -> key), found by hash slot."""
    found: dict[str, str] = {}
    for i in range(1000):
        key = f"{prefix}:{i}"
        found.setdefault(client.get_node_from_key(key).name, key)
        if len(found) == masters:
            return found
    raise AssertionError(f"no key of {prefix} reached all {masters} masters")


def test_the_cluster_forms_with_three_masters_owning_every_slot_and_a_replica_each(
    cluster: EmbeddedCluster, figures: dict[str, Any]
) -> None:
    figures["formation_seconds"] = round(cluster.formation_seconds or 0, 2)
    print(f"\n{_kind(cluster)} cluster formed in {cluster.formation_seconds:.2f} s")
    masters = [n for n in cluster.nodes if n.formed_as == "master"]
    replicas = [n for n in cluster.nodes if n.formed_as == "replica"]
    assert [n.role() for n in masters] == ["master"] * 3
    assert [n.role() for n in replicas] == ["replica"] * 3
    assert sorted(r.master_id or "" for r in replicas) == sorted(m.node_id for m in masters)

    ports = {n.node_id: n.port for n in cluster.nodes}
    for node in cluster.nodes:
        with _plain(node, password=cluster.password) as client:
            info = client.execute_command("CLUSTER", "INFO")
            assert "cluster_state:ok" in info
            assert f"cluster_slots_ok:{SLOTS}" in info
            assert "cluster_known_nodes:6" in info
            # Every node serves the same map: each master's range, its replica behind it.
            owners = {}
            for first, last, master, *copies in client.execute_command("CLUSTER", "SLOTS"):
                owners[(first, last)] = (master[1], [copy[1] for copy in copies])
        assert sorted(owners) == slot_ranges(3)
        assert sorted(port for port, _ in owners.values()) == sorted(m.port for m in masters)
        for master_port, copy_ports in owners.values():
            (replica,) = (r for r in replicas if ports[r.master_id or ""] == master_port)
            assert copy_ports == [replica.port]


def test_nodes_refuse_a_client_without_the_password(cluster: EmbeddedCluster) -> None:
    with _plain(cluster.nodes[0]) as client, pytest.raises(redis.AuthenticationError):
        client.ping()


def test_a_cluster_client_with_the_password_reads_and_writes_keys_on_every_master(
    cluster: EmbeddedCluster,
) -> None:
    prefix = f"t-rw-{secrets.token_hex(3)}"
    with _client(cluster) as client:
        by_master = _keys_on_each_master(client, prefix, 3)
        for key in by_master.values():
            assert client.set(key, f"value of {key}")
        assert {client.get(k) for k in by_master.values()} == {
            f"value of {k}" for k in by_master.values()
        }
    # Each key lives on the master owning its slot, and on no other master.
    for node in cluster.masters():
        with _plain(node, password=cluster.password) as direct:
            for name, key in by_master.items():
                slot = RedisCluster.keyslot(client, key)
                count = direct.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot)
                assert count == (1 if name == f"{node.host}:{node.port}" else 0), (key, node)


def test_keys_sharing_a_hash_tag_share_a_slot_and_one_script_can_touch_them_all(
    cluster: EmbeddedCluster,
) -> None:
    queue = f"t-tag-{secrets.token_hex(3)}"
    tagged = [f"sq:{{{queue}}}:stream", f"sq:{{{queue}}}:delayed", f"sq:{{{queue}}}:job:1"]
    untagged = [f"sq:{queue}:stream", f"sq:{queue}:delayed"]
    script = "for i, k in ipairs(KEYS) do redis.call('SET', k, ARGV[1]) end return #KEYS"
    with _client(cluster) as client:
        assert len({client.keyslot(k) for k in tagged}) == 1
        assert len({client.keyslot(k) for k in untagged}) == 2
        assert client.eval(script, len(tagged), *tagged, "x") == 3
        assert client.mget(tagged) == ["x", "x", "x"]
        # Without the tag the server refuses one script over several slots.
        node = client.get_node_from_key(untagged[0])
        with (
            _plain(node, password=cluster.password) as direct,
            pytest.raises(redis.ResponseError, match="hash to the same slot"),
        ):
            direct.eval(script, len(untagged), *untagged, "x")


def test_a_formation_that_cannot_converge_in_time_says_what_and_leaves_nothing_running(
    cluster_factory: Callable[..., EmbeddedCluster], tmp_path: Path
) -> None:
    # A master turns ok only ~2 s after it started: 0.5 s cannot be enough.
    with pytest.raises(ServerError, match=r"did not converge \(cluster_state ok\).*cluster_state"):
        cluster_factory(base_dir=tmp_path / "doomed", masters=2, replicas_per_master=1, timeout=0.5)
    assert (tmp_path / "doomed" / "node-3" / "server.log").is_file()  # all four had started
    assert _pids_working_in(tmp_path / "doomed") == []


def test_stopping_the_cluster_leaves_no_process_and_no_directory_behind(
    cluster_binary: Path,
) -> None:
    embedded = EmbeddedCluster(masters=1, replicas_per_master=1, binary=cluster_binary)
    with embedded:
        base_dir = embedded.base_dir
        pids = [n.server.pid for n in embedded.nodes]
        assert sorted(_pids_working_in(base_dir)) == sorted(pids)  # the check sees them
    assert not any(_alive(pid) for pid in pids if pid is not None)
    assert not base_dir.exists()
    assert not embedded.running


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"masters": 0}, "masters must be at least 1"),
        ({"replicas_per_master": -1}, "replicas_per_master must be 0 or more"),
        ({"node_timeout_ms": 10}, "node_timeout_ms must be at least 100"),
        ({"password": ""}, "password must be a non-empty string"),
        ({"timeout": 0}, "timeout must be positive"),
    ],
)
def test_bad_cluster_settings_are_refused_by_name(
    kwargs: dict[str, Any], message: str, tmp_path: Any
) -> None:
    with pytest.raises(ValueError, match=message):
        EmbeddedCluster(tmp_path, **kwargs)


@pytest.mark.slow
def test_killing_a_master_promotes_its_replica_and_the_cluster_turns_ok_again(
    cluster_factory: Callable[..., EmbeddedCluster], figures: dict[str, Any]
) -> None:
    embedded = cluster_factory(node_timeout_ms=1000)
    victim = embedded.nodes[0]
    (heir,) = (n for n in embedded.nodes if n.master_id == victim.node_id)
    with _client(embedded) as client:
        key = next(
            f"t-fo-{i}"
            for i in range(1000)
            if client.get_node_from_key(f"t-fo-{i}").port == victim.port
        )
        client.set(key, "kept")
    with _plain(victim, password=embedded.password) as direct:
        assert direct.execute_command("WAIT", 1, 5000) == 1  # the replica has it

    killed_at = time.monotonic()
    embedded.kill(victim)
    assert not victim.running
    embedded.wait_ok(timeout=embedded.node_timeout_ms / 1000 + 10)
    took = time.monotonic() - killed_at
    figures["failover_seconds"] = round(took, 2)
    print(f"\n{_kind(embedded)}: failover after SIGKILL of a master took {took:.2f} s")

    assert heir.role() == "master"
    assert {n.port for n in embedded.masters()} == {
        n.port for n in embedded.nodes if n.formed_as == "master" and n is not victim
    } | {heir.port}
    with _client(embedded) as client:
        assert client.get_node_from_key(key).port == heir.port
        assert client.get(key) == "kept"
        assert client.set(key, "written after failover")

    assert len(_pids_working_in(embedded.base_dir)) == 5
    embedded.stop()
    assert _pids_working_in(embedded.base_dir) == []
