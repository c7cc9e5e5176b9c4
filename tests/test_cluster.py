"""RedisEngine on a real 3-primary, 3-replica Redis Cluster (tests/cluster.py), mounted with FUSE.

The tests that fail nodes over or move slots come last in this file: each leaves the cluster
healthy (every node back, ``cluster_state:ok``) for whatever runs after it.
"""

from __future__ import annotations

import errno
import os
import threading
import time
from pathlib import Path

import pytest
from redis.cluster import RedisCluster
from redis.crc import key_slot

from wafs.engines.redis import RedisEngine
from wafs.errors import BackendUnavailableError
from wafs.testing import EngineContract

from .cluster import RedisClusterHarness
from .helpers import absent
from .mounting import mounted, sh

SESSION = {
    "session/creds": '{"me": {"id": "5491100000000@s.whatsapp.net"}}',
    "contact/5491112345678@s.whatsapp.net/index": '{"name": "Ana"}',
    "lid/99@lid": "5491112345678@s.whatsapp.net",
    **{f"chat/{chat}@s.whatsapp.net/message/M{n}/raw": f'{{"text": "pedido {chat}-{n}"}}'
       for chat in range(8) for n in range(25)},
    **{f"chat/{chat}@s.whatsapp.net/index": f'{{"name": "chat {chat}"}}' for chat in range(8)},
}


@pytest.fixture
def engine_kind() -> str:
    """``engine``: a RedisEngine on the session's cluster, keys under ``prefix``; ``raw``: a RedisCluster."""
    return "cluster"


def stored(raw: RedisCluster, prefix: str) -> dict[str, str]:
    """Every key of ``prefix`` in the cluster, read with redis-py's own cluster-wide SCAN."""
    base = f"{prefix}:".encode()
    keys = sorted(set(raw.scan_iter(match=base + b"*", count=1000)))
    values = raw.mget_nonatomic(keys)
    return {key[len(base):].decode(): value.decode() for key, value in zip(keys, values, strict=True)}


# --- the conformance suite -----------------------------------------------------------------------


class TestClusterEngine(EngineContract):
    """Every clause of the engine contract, on the cluster."""


# --- the cluster itself --------------------------------------------------------------------------


def test_open_engine_gives_a_cluster_client(redis_cluster: RedisClusterHarness, engine: RedisEngine) -> None:
    assert isinstance(engine.client, RedisCluster)
    assert len(engine.client.get_primaries()) == 3
    assert repr(engine).startswith("RedisEngine(redis+cluster://127.0.0.1:")


def test_a_cluster_url_with_a_database_is_refused(redis_cluster: RedisClusterHarness) -> None:
    with pytest.raises(ValueError, match="no database"):
        RedisEngine.from_url(f"{redis_cluster.startup_url}/3?prefix=x")


def test_keys_spread_over_every_primary_and_the_listing_is_complete(
    engine: RedisEngine, raw: RedisCluster, prefix: str, redis_cluster: RedisClusterHarness
) -> None:
    engine.set_many(SESSION)
    owners = {redis_cluster.primary_for(f"{prefix}:{key}").port for key in SESSION}
    assert len(owners) == 3  # the layout spreads one session over the whole cluster
    listed = engine.list("", 0, None)
    assert listed == sorted(SESSION)  # every key once, nothing missed or repeated
    assert sorted(engine.iter_keys("chat/")) == sorted(key for key in SESSION if key.startswith("chat/"))
    assert stored(raw, prefix) == SESSION
    assert engine.get_many(list(SESSION)) == SESSION
    expected_sizes = {"lid/99@lid": len(SESSION["lid/99@lid"]), "missing": None}
    assert engine.sizes(["lid/99@lid", "missing"]) == expected_sizes


def test_cascades_delete_across_slots_and_stay_in_their_subtree(
    engine: RedisEngine, raw: RedisCluster, prefix: str
) -> None:
    engine.set_many(SESSION)
    engine.delete_prefixes(["chat/1@s.whatsapp.net", "chat/2@s.whatsapp.net"])
    engine.delete_many([f"chat/3@s.whatsapp.net/message/M{n}/raw" for n in range(25)])
    expected = {key: value for key, value in SESSION.items()
                if not key.startswith(("chat/1@", "chat/2@", "chat/3@s.whatsapp.net/message/"))}
    assert stored(raw, prefix) == expected
    engine.set("chat", None)
    assert set(stored(raw, prefix)) == {
        "session/creds", "contact/5491112345678@s.whatsapp.net/index", "lid/99@lid",
    }


# --- a real mount -----------------------------------------------------------------------------------


def test_mount_ls_grep_cp_rm(engine: RedisEngine, raw: RedisCluster, prefix: str, tmp_path: Path) -> None:
    engine.set_many(SESSION)
    with mounted(engine, tmp_path / "mnt") as mnt:
        assert sh(f"ls {mnt}").stdout.split() == ["chat", "contact", "lid", "session"]
        assert sh(f"ls {mnt}/chat").stdout.split() == [f"{chat}@s.whatsapp.net" for chat in range(8)]
        hits = sh(f"grep -rl 'pedido 5-' {mnt}/chat").stdout.split()
        assert sorted(hits) == sorted(f"{mnt}/chat/5@s.whatsapp.net/message/M{n}/raw" for n in range(25))
        backup = tmp_path / "backup"
        sh(f"cp -a {mnt} {backup}")
        copied = {
            str(path.relative_to(backup)): path.read_text() for path in backup.rglob("*") if path.is_file()
        }
        assert copied == SESSION
        sh(f"rm -r {mnt}/chat/4@s.whatsapp.net")
        sh(f"echo -n nuevo > {mnt}/lid/100@lid")
        assert absent(mnt / "chat/4@s.whatsapp.net")
    expected = {key: value for key, value in SESSION.items() if not key.startswith("chat/4@")}
    assert stored(raw, prefix) == {**expected, "lid/100@lid": "nuevo"}


# --- failover and resharding during a mount -----------------------------------------------------------


def _read_everything(mnt: Path, outcomes: list[str], stop: threading.Event) -> None:
    """Walk and read the mount until stopped; record ``ok``, or the errno name of each failure."""
    while not stop.is_set():
        try:
            names = os.listdir(mnt / "chat")
            if not names:
                outcomes.append("EMPTY")
                continue
            for chat in names:
                (mnt / "chat" / chat / "index").read_text()
            outcomes.append("ok")
        except OSError as exc:
            outcomes.append(errno.errorcode.get(exc.errno or 0, str(exc.errno)))
        time.sleep(0.02)


@pytest.mark.parametrize("how", ["CLUSTER FAILOVER", "kill the primary"])
def test_failover_during_a_mount(
    how: str, engine: RedisEngine, raw: RedisCluster, prefix: str, tmp_path: Path,
    redis_cluster: RedisClusterHarness,
) -> None:
    engine.set_many(SESSION)
    key = "chat/0@s.whatsapp.net/index"
    primary = redis_cluster.primary_for(f"{prefix}:{key}")
    replica = redis_cluster.replica_of(primary)
    outcomes: list[str] = []
    stop = threading.Event()
    with mounted(engine, tmp_path / "mnt") as mnt:
        assert (mnt / key).read_text() == SESSION[key]
        reader = threading.Thread(target=_read_everything, args=(mnt, outcomes, stop))
        reader.start()
        try:
            before = len(outcomes)
            if how == "CLUSTER FAILOVER":
                redis_cluster.failover(replica)
            else:
                redis_cluster.kill(primary)
                redis_cluster.wait_promoted(replica)
            during = len(outcomes) - before
            # The mount recovers by itself within a few seconds of the promotion.
            deadline = time.monotonic() + 10
            while outcomes[-3:] != ["ok"] * 3 and time.monotonic() < deadline:
                time.sleep(0.1)
        finally:
            stop.set()
            reader.join(30)
        assert redis_cluster.primary_for(f"{prefix}:{key}") is replica
        # Afterwards everything works again through the same mount: reads, listings, writes.
        assert sh(f"cat {mnt}/{key}").stdout == SESSION[key]
        assert sh(f"ls {mnt}/chat").stdout.split() == [f"{chat}@s.whatsapp.net" for chat in range(8)]
        sh(f"echo -n después > {mnt}/{key}")
        sh(f"rm -r {mnt}/chat/7@s.whatsapp.net")
        assert len(sh(f"grep -rl pedido {mnt}/chat").stdout.split()) == 7 * 25
    if how == "kill the primary":
        redis_cluster.restart(primary)
    print(f"{how}: {during} walks of the mount during the failover: {sorted(set(outcomes[before:]))}")
    assert during > 0, "no walk of the mount ran during the failover: the test did not test anything"
    assert outcomes[-3:] == ["ok"] * 3
    assert set(outcomes) <= {"ok", "EIO"}, sorted(set(outcomes))  # never ENOENT, never an empty listing
    expected = {k: v for k, v in SESSION.items() if not k.startswith("chat/7@")}
    assert stored(raw, prefix) == {**expected, key: "después"}


def _keys_in_one_slot(prefix: str, count: int) -> tuple[int, list[str]]:
    """``count`` message keys of one chat whose full Redis keys all hash to the same slot."""
    name = "chat/mig@g.us/message/M{}/raw"
    slot = key_slot(f"{prefix}:{name.format(0)}".encode())
    keys = [name.format(n) for n in range(200_000) if key_slot(f"{prefix}:{name.format(n)}".encode()) == slot]
    assert len(keys) >= count
    return slot, keys[:count]


def test_slot_migration_during_a_mount(
    engine: RedisEngine, raw: RedisCluster, prefix: str, tmp_path: Path, redis_cluster: RedisClusterHarness,
) -> None:
    slot, moving = _keys_in_one_slot(prefix, 6)
    data = {**SESSION, **{key: f"migrating {n}" for n, key in enumerate(moving)}}
    engine.set_many(data)
    source = redis_cluster.primary_for(f"{prefix}:{moving[0]}")
    target = next(node for node in redis_cluster.live_nodes() if node.role == "master" and node is not source)
    source_id, target_id = source.node_id, target.node_id
    with mounted(engine, tmp_path / "mnt") as mnt:
        chat = mnt / "chat/mig@g.us/message"
        assert sorted(os.listdir(chat)) == sorted(key.split("/")[3] for key in moving)
        target.call("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
        source.call("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
        half = [f"{prefix}:{key}" for key in moving[:3]]
        source.call("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *half)
        # Mid-migration: half the slot's keys answer from each node (ASK redirections).
        time.sleep(1.2)  # past the mount's TTL, so reads and listings go to the store
        assert sorted(os.listdir(chat)) == sorted(key.split("/")[3] for key in moving)
        for n, key in enumerate(moving):
            assert sh(f"cat {mnt}/{key}").stdout == f"migrating {n}"
        sh(f"echo -n rewritten-mid-move > {mnt}/{moving[0]}")
        rest = [name.decode() for name in source.call("CLUSTER", "GETKEYSINSLOT", slot, 100)]
        assert rest  # the slot still holds keys on the source
        source.call("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *rest)
        for node in redis_cluster.live_nodes():
            if node.role == "master":
                node.call("CLUSTER", "SETSLOT", slot, "NODE", target_id)
        assert redis_cluster.primary_for(f"{prefix}:{moving[0]}") is target
        time.sleep(1.2)
        # After it: the slot lives on the target (MOVED), and the mount still reads everything.
        assert sorted(os.listdir(chat)) == sorted(key.split("/")[3] for key in moving)
        assert sh(f"cat {mnt}/{moving[0]}").stdout == "rewritten-mid-move"
        for n, key in enumerate(moving[1:], start=1):
            assert sh(f"cat {mnt}/{key}").stdout == f"migrating {n}"
        assert len(sh(f"grep -rl migrating {mnt}/chat/mig@g.us").stdout.split()) == 5
        sh(f"rm -r {mnt}/chat/mig@g.us")
    assert stored(raw, prefix) == SESSION
    assert engine.list("", 0, None) == sorted(SESSION)


def test_an_unreachable_cluster_is_a_backend_error() -> None:
    with pytest.raises(BackendUnavailableError, match="unavailable"):
        RedisEngine.from_url("redis+cluster://127.0.0.1:1?timeout=1")
