"""The live view on a real Redis Cluster: keyspace notifications from every primary.

The mounts here use a 60 s TTL, so a change made by another client can only show through the
mount in time through the change feed (``RedisClusterWatch``): one subscription per primary,
plus a topology thread that follows failovers. The measured times are printed
(``pytest -s``) and are the figures in docs/cluster.md.
"""

from __future__ import annotations

import errno
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.crc import key_slot

from wafs.engines.redis import TOPOLOGY_POLL, RedisClusterWatch, RedisEngine

from .cluster import ClusterNodeProcess, RedisClusterHarness
from .helpers import CHAT, absent, cat, find, ls, wait_for
from .mounting import mounted

#: The kernel's attribute and entry timeouts the mount asks for, plus event delivery and the shell.
FEED_BOUND = 1.5
#: A long TTL: only the feed can make a change visible within the bounds here.
FEED_TTL = 60.0
#: After a topology change: one poll of the primaries, the new subscription, a rescan, the kernel.
TOPOLOGY_BOUND = TOPOLOGY_POLL + FEED_BOUND + 1.0
SESSION = {
    "session/creds": '{"me": {"id": "5491100000000@s.whatsapp.net"}}',
    f"{CHAT}/index": '{"name": "Ana"}',
    **{f"{CHAT}/message/M{n}/raw": f'{{"text": "hola {n}"}}' for n in range(12)},
    "chat/120363@g.us/index": '{"subject": "grupo"}',
}


def set_flags(redis_cluster: RedisClusterHarness, flags: str) -> None:
    """``notify-keyspace-events`` on every live node, replicas included."""
    for node in redis_cluster.live_nodes():
        node.call("CONFIG", "SET", "notify-keyspace-events", flags)


def flags_of(node: ClusterNodeProcess) -> str:
    return node.call("CONFIG", "GET", "notify-keyspace-events")[b"notify-keyspace-events"].decode()


def subscribers(node: ClusterNodeProcess) -> int:
    """Connections subscribed to a pattern on ``node``."""
    reply = node.call("CLIENT", "LIST", "TYPE", "pubsub").decode()
    return sum(" psub=1 " in f" {line} " for line in reply.splitlines())


def primaries(redis_cluster: RedisClusterHarness) -> list[ClusterNodeProcess]:
    return [node for node in redis_cluster.live_nodes() if node.role == "master"]


def primary_and_replica(
    redis_cluster: RedisClusterHarness, full_key: str
) -> tuple[ClusterNodeProcess, ClusterNodeProcess]:
    """The primary that holds ``full_key`` and one of its replicas."""
    primary = redis_cluster.primary_for(full_key)
    return primary, redis_cluster.replica_of(primary)


def feed_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name in ("wafs-redis-watch", "wafs-redis-topology")]


@pytest.fixture
def notifications(redis_cluster: RedisClusterHarness) -> Iterator[None]:
    """``Kg$xe`` on every node for the test; off again afterwards (the other cluster tests poll)."""
    set_flags(redis_cluster, "Kg$xe")
    try:
        yield
    finally:
        set_flags(redis_cluster, "")


@pytest.fixture
def bot(redis_cluster: RedisClusterHarness, prefix: str) -> Iterator[RedisEngine]:
    """The other client: writes the session while it is mounted."""
    engine = redis_cluster.engine(prefix=prefix)
    try:
        engine.set_many(SESSION)
        yield engine
    finally:
        engine.close()


@pytest.fixture
def engine(redis_cluster: RedisClusterHarness, prefix: str, notifications: None) -> Iterator[RedisEngine]:
    """The mount's engine, allowed to enable notifications (they are on already)."""
    query = urllib.parse.urlencode({"prefix": prefix, "notifications": "enable"})
    created = RedisEngine.from_url(f"{redis_cluster.startup_url}?{query}")
    try:
        yield created
    finally:
        created.close()


def test_every_primary_is_subscribed_and_changes_show_within_the_bound(
    redis_cluster: RedisClusterHarness, engine: RedisEngine, bot: RedisEngine, prefix: str, tmp_path: Path,
) -> None:
    chat_keys = [key for key in SESSION if key.startswith(CHAT)]
    assert len({redis_cluster.primary_for(f"{prefix}:{key}").port for key in chat_keys}) == 3
    with mounted(engine, tmp_path / "mnt", ttl=FEED_TTL) as mnt:
        assert [subscribers(node) for node in primaries(redis_cluster)] == [1, 1, 1]
        assert find(mnt) == sorted(f"./{key}" for key in SESSION)
        assert cat(mnt / CHAT / "index") == SESSION[f"{CHAT}/index"]

        bot.set(f"{CHAT}/message/B2/raw", '{"text": "nuevo"}')
        wait_for("cluster feed: a new file in a known directory (ls)",
                 lambda: "B2" in ls(mnt / CHAT / "message"), FEED_BOUND)
        assert cat(mnt / CHAT / "message/B2/raw") == '{"text": "nuevo"}'
        bot.set("chat/new@s.whatsapp.net/index", '{"name": "Beto"}')
        wait_for("cluster feed: a new chat (find)", lambda: "./chat/new@s.whatsapp.net/index" in find(mnt),
                 FEED_BOUND)

        longer = '{"name": "Ana María", "notify": "Ana"}'
        bot.set(f"{CHAT}/index", longer)
        wait_for("cluster feed: an overwrite, longer (cat)", lambda: cat(mnt / CHAT / "index") == longer,
                 FEED_BOUND)
        bot.set(f"{CHAT}/index", "{}")
        wait_for("cluster feed: an overwrite, shorter (cat)", lambda: cat(mnt / CHAT / "index") == "{}",
                 FEED_BOUND)

        bot.delete(f"{CHAT}/message/M0/raw")
        wait_for("cluster feed: a deleted key (ls, cat)",
                 lambda: "M0" not in ls(mnt / CHAT / "message")
                 and cat(mnt / CHAT / "message/M0/raw", expect=errno.ENOENT) is None, FEED_BOUND)

        bot.set(CHAT, None)  # a cascade: DELs on all three primaries
        wait_for("cluster feed: a chat on three primaries removed by cascade (ls, find)",
                 lambda: ls(mnt / "chat") == ["120363@g.us", "new@s.whatsapp.net"]
                 and not any(path.startswith(f"./{CHAT}") for path in find(mnt)) and absent(mnt / CHAT),
                 FEED_BOUND)
        assert find(mnt) == ["./chat/120363@g.us/index", "./chat/new@s.whatsapp.net/index", "./session/creds"]
    assert [subscribers(node) for node in redis_cluster.live_nodes()] == [0] * 6


def test_a_killed_subscription_comes_back_and_rescans(
    redis_cluster: RedisClusterHarness, engine: RedisEngine, bot: RedisEngine, prefix: str, tmp_path: Path,
) -> None:
    key = "chat/while-down@s.whatsapp.net/index"
    owner = redis_cluster.primary_for(f"{prefix}:{key}")
    with mounted(engine, tmp_path / "mnt", ttl=FEED_TTL) as mnt:
        assert "while-down@s.whatsapp.net" not in ls(mnt / "chat")
        assert absent(mnt / key)
        # The kill and the write run back to back on the key's primary: the write's event is lost.
        killed = owner.call("CLIENT", "KILL", "TYPE", "pubsub")
        owner.call("SET", f"{prefix}:{key}", "written while down")
        assert killed == 1
        wait_for("cluster feed: a key written while one subscription was down (reconnect, rescan)",
                 lambda: "while-down@s.whatsapp.net" in ls(mnt / "chat"), TOPOLOGY_BOUND)
        assert cat(mnt / key) == "written while down"
        assert [subscribers(node) for node in primaries(redis_cluster)] == [1, 1, 1]


def test_after_a_failover_the_new_primary_is_followed(
    redis_cluster: RedisClusterHarness, engine: RedisEngine, bot: RedisEngine, prefix: str, tmp_path: Path,
) -> None:
    key = f"{CHAT}/message/F1/raw"
    old, replica = primary_and_replica(redis_cluster, f"{prefix}:{key}")
    with mounted(engine, tmp_path / "mnt", ttl=FEED_TTL) as mnt:
        assert ls(mnt / CHAT / "message") == sorted(f"M{n}" for n in range(12))
        assert subscribers(replica) == 0
        redis_cluster.failover(replica)  # CLUSTER FAILOVER; returns once every node agrees
        assert redis_cluster.primary_for(f"{prefix}:{key}") is replica
        bot.set(key, "on the new primary")  # maybe before the feed noticed: the rescan finds it
        wait_for("cluster feed: a key written to the new primary right after a failover (rescan)",
                 lambda: cat(mnt / key, expect=errno.ENOENT) == "on the new primary", TOPOLOGY_BOUND)
        wait_for("cluster feed: the new primary subscribed, the demoted one dropped",
                 lambda: subscribers(replica) == 1 and subscribers(old) == 0, TOPOLOGY_BOUND)
        assert [subscribers(node) for node in primaries(redis_cluster)] == [1, 1, 1]
        bot.set(key, "an event from the new primary")
        wait_for("cluster feed: an overwrite on the new primary (event)",
                 lambda: cat(mnt / key) == "an event from the new primary", FEED_BOUND)
        bot.set(key, None)
        wait_for("cluster feed: a delete on the new primary (event)",
                 lambda: "F1" not in ls(mnt / CHAT / "message") and absent(mnt / key), FEED_BOUND)


def test_the_watch_reports_every_primary_and_close_stops_every_thread(
    redis_cluster: RedisClusterHarness, engine: RedisEngine, bot: RedisEngine,
) -> None:
    before = feed_threads()
    events: list[tuple[str | None, bool]] = []
    watch = engine.watch(lambda key, deleted: events.append((key, deleted)))
    try:
        assert isinstance(watch, RedisClusterWatch)
        assert watch.primaries == sorted(("127.0.0.1", node.port) for node in primaries(redis_cluster))
        assert len(feed_threads()) == len(before) + 4  # one per primary, one for the topology
        assert watch.threads_alive() == 4
        bot.set(CHAT, None)
        doomed = {key for key in SESSION if key.startswith(CHAT)}
        wait_for("cluster feed: every key of a cascade reported deleted",
                 lambda: {key for key, deleted in events if deleted} >= doomed, FEED_BOUND)
        assert (None, True) not in events  # no loss, no topology change: no rescan asked
    finally:
        started = time.monotonic()
        watch.close()
        took = time.monotonic() - started
    print(f"cluster feed: close() of 4 threads took {took * 1000:.0f} ms")
    assert took < 1.0
    assert watch.threads_alive() == 0
    assert feed_threads() == before
    assert [subscribers(node) for node in redis_cluster.live_nodes()] == [0] * 6


def test_a_primary_without_notifications_means_polling_unless_enabling_is_asked(
    redis_cluster: RedisClusterHarness, prefix: str,
) -> None:
    set_flags(redis_cluster, "Kg$xe")
    primaries(redis_cluster)[1].call("CONFIG", "SET", "notify-keyspace-events", "")
    plain = redis_cluster.engine(prefix=prefix)
    query = urllib.parse.urlencode({"prefix": prefix, "notifications": "enable"})
    enabling = RedisEngine.from_url(f"{redis_cluster.startup_url}?{query}")
    try:
        assert plain.watch(lambda key, deleted: None) is None
        assert flags_of(primaries(redis_cluster)[1]) == ""  # left alone
        set_flags(redis_cluster, "")
        watch = enabling.watch(lambda key, deleted: None)
        assert isinstance(watch, RedisClusterWatch)
        watch.close()
        # Every node, replicas too: a replica promoted later already publishes events.
        for node in redis_cluster.live_nodes():
            assert set(flags_of(node)) >= set("Kg$xe")
    finally:
        set_flags(redis_cluster, "")
        plain.close()
        enabling.close()


def keys_in_one_slot(prefix: str, count: int) -> tuple[int, list[str]]:
    """``count`` message keys of one chat whose full Redis keys hash to the same slot."""
    name = "chat/mig@g.us/message/M{}/raw"
    slot = key_slot(f"{prefix}:{name.format(0)}".encode())
    keys = [name.format(n) for n in range(200_000) if key_slot(f"{prefix}:{name.format(n)}".encode()) == slot]
    return slot, keys[:count]


def test_a_slot_migration_is_followed_by_a_rescan(
    redis_cluster: RedisClusterHarness, engine: RedisEngine, bot: RedisEngine, prefix: str, tmp_path: Path,
) -> None:
    slot, moving = keys_in_one_slot(prefix, 6)
    bot.set_many({key: f"migrating {n}" for n, key in enumerate(moving)})
    source = redis_cluster.primary_for(f"{prefix}:{moving[0]}")
    target = next(node for node in primaries(redis_cluster) if node is not source)
    names = sorted(key.split("/")[3] for key in moving)
    with mounted(engine, tmp_path / "mnt", ttl=FEED_TTL) as mnt:
        chat = mnt / "chat/mig@g.us/message"
        assert sorted(ls(chat)) == names
        target.call("CLUSTER", "SETSLOT", slot, "IMPORTING", source.node_id)
        source.call("CLUSTER", "SETSLOT", slot, "MIGRATING", target.node_id)
        # MIGRATE publishes "restore" on the target and "del" on the source, in no order the
        # mount can rely on; the slot layout that changes at the end makes it rescan.
        source.call("MIGRATE", "127.0.0.1", target.port, "", 0, 5000,
                    "KEYS", *(f"{prefix}:{k}" for k in moving))
        for node in primaries(redis_cluster):
            node.call("CLUSTER", "SETSLOT", slot, "NODE", target.node_id)
        assert redis_cluster.primary_for(f"{prefix}:{moving[0]}") is target
        # Until then the chat may even be gone (ENOENT): the source's "del" events can come first.
        wait_for("cluster feed: every key of a migrated slot listed after the migration",
                 lambda: sorted(ls(chat, expect=errno.ENOENT) or []) == names, TOPOLOGY_BOUND)
        time.sleep(TOPOLOGY_POLL + 0.5)  # and still after the rescan the layout change caused
        assert sorted(ls(chat)) == names
        bot.set(moving[0], "after the move")  # events come from the slot's new owner
        wait_for("cluster feed: an overwrite in the migrated slot (event)",
                 lambda: cat(mnt / moving[0]) == "after the move", FEED_BOUND)


def _read_while_failing_over(path: Path) -> str | None:
    """``cat`` of ``path``; None while it is absent or the cluster answers EIO (a failover
    under way: the store is unavailable, which EIO says; "no such file" it must never say)."""
    try:
        return cat(path, expect=errno.ENOENT)
    except OSError as exc:
        if exc.errno != errno.EIO:
            raise
        return None


def test_after_a_killed_primary_is_replaced_the_new_primary_is_followed(
    redis_cluster: RedisClusterHarness, engine: RedisEngine, bot: RedisEngine, prefix: str, tmp_path: Path,
) -> None:
    key = f"{CHAT}/message/K1/raw"
    old, replica = primary_and_replica(redis_cluster, f"{prefix}:{key}")
    try:
        with mounted(engine, tmp_path / "mnt", ttl=FEED_TTL) as mnt:
            assert ls(mnt / CHAT / "message") == sorted(f"M{n}" for n in range(12))
            redis_cluster.kill(old)
            redis_cluster.wait_promoted(replica)
            bot.set(key, "after the kill")
            wait_for("cluster feed: a key written to the primary that replaced a killed one (rescan)",
                     lambda: _read_while_failing_over(mnt / key) == "after the kill", TOPOLOGY_BOUND)
            wait_for("cluster feed: the promoted replica subscribed", lambda: subscribers(replica) == 1,
                     TOPOLOGY_BOUND)
            bot.set(key, None)
            wait_for("cluster feed: a delete on the promoted replica (event)",
                     lambda: "K1" not in ls(mnt / CHAT / "message") and absent(mnt / key), FEED_BOUND)
    finally:
        redis_cluster.restart(old)
