"""A live view: another client writes to the Redis store while it is mounted.

Real redis-server, real FUSE mounts, real ``ls``/``cat``/``find``. Each change made by the
other client must show through the mount within the documented bound (docs/live.md):

* keyspace notifications on: event latency + the kernel's attr/entry timeout (1 s);
* notifications off: the TTL + one SCAN of the store + the kernel's timeout (1 s).

Every wait polls with a deadline and asserts the deadline was met; the measured times are
printed (``pytest -s``) and are the figures in docs/live.md.
"""

from __future__ import annotations

import errno
import hashlib
import os
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from wafs.engines.redis import RedisEngine
from wafs.mount import refresh

from .helpers import CHAT, KERNEL_TIMEOUT, SESSION, absent, cat, find, ls, wait_for
from .mounting import daemon_mounted, mounted

#: Allowance for event delivery, one SCAN of this small store, and starting the shell command.
SLACK = 0.5
#: The TTL of polling mounts in these tests, and the (long) TTL of mounts that follow the feed:
#: with notifications, a change can only show up in time through an event.
POLL_TTL = 1.0
FEED_TTL = 60.0
FEED_BOUND = KERNEL_TIMEOUT + SLACK
POLL_BOUND = POLL_TTL + KERNEL_TIMEOUT + SLACK


def set_notifications(server, flags: str) -> None:
    client = server.client()
    try:
        client.config_set("notify-keyspace-events", flags)
    finally:
        client.close()


def pubsub_clients(server) -> list[dict]:
    client = server.client()
    try:
        return client.client_list(_type="pubsub")
    finally:
        client.close()


@pytest.fixture
def notifications_off(redis_server) -> Iterator[None]:
    """The server starts with notifications off and is left that way."""
    set_notifications(redis_server, "")
    try:
        yield
    finally:
        set_notifications(redis_server, "")


def feed_engine(server, prefix: str) -> RedisEngine:
    """An engine allowed to turn keyspace notifications on (``?notifications=enable``)."""
    query = urllib.parse.urlencode({"prefix": prefix, "notifications": "enable"})
    return RedisEngine.from_url(f"{server.url}?{query}")


@pytest.fixture(params=["notifications", "polling"])
def live(request: pytest.FixtureRequest, redis_server, notifications_off, prefix: str, tmp_path: Path):
    """``(mode, mountpoint, bot engine, bound)``: a mounted session and a second client writing it."""
    mode = request.param
    bot = redis_server.engine(prefix=prefix)
    bot.set_many(SESSION)
    if mode == "notifications":
        engine, ttl, bound = feed_engine(redis_server, prefix), FEED_TTL, FEED_BOUND
    else:
        engine, ttl, bound = redis_server.engine(prefix=prefix), POLL_TTL, POLL_BOUND
    try:
        with mounted(engine, tmp_path / "mnt", ttl=ttl) as mnt:
            subscribers = [c for c in pubsub_clients(redis_server) if c.get("psub") == "1"]
            assert len(subscribers) == (1 if mode == "notifications" else 0)
            yield mode, mnt, bot, bound
    finally:
        engine.close()
        bot.close()


def test_outside_creates_overwrites_and_deletes_are_seen_within_the_bound(live) -> None:
    mode, mnt, bot, bound = live
    raw_prefix = bot.prefix.encode() + b":"
    assert cat(mnt / CHAT / "index") == SESSION[f"{CHAT}/index"]  # kernel and daemon caches warm
    assert find(mnt) == sorted(f"./{key}" for key in SESSION)
    client = bot.client

    client.set(raw_prefix + f"{CHAT}/message/B2/raw".encode(), b'{"text": "nuevo"}')
    wait_for(f"{mode}: a new file in a known directory (ls)",
             lambda: "B2" in ls(mnt / CHAT / "message"), bound)
    assert cat(mnt / CHAT / "message/B2/raw") == '{"text": "nuevo"}'

    client.set(raw_prefix + b"chat/new@s.whatsapp.net/index", b'{"name": "Beto"}')
    wait_for(f"{mode}: a new chat (find)",
             lambda: "./chat/new@s.whatsapp.net/index" in find(mnt), bound)

    longer = '{"name": "Ana María", "notify": "Ana", "verifiedName": "Ana S.A."}'
    client.set(raw_prefix + f"{CHAT}/index".encode(), longer.encode())
    wait_for(f"{mode}: an overwrite with a longer value (cat)",
             lambda: cat(mnt / CHAT / "index") == longer, bound)
    client.set(raw_prefix + f"{CHAT}/index".encode(), b"{}")
    wait_for(f"{mode}: an overwrite with a shorter value (cat)",
             lambda: cat(mnt / CHAT / "index") == "{}", bound)

    client.delete(raw_prefix + f"{CHAT}/messages".encode())
    wait_for(f"{mode}: a deleted key (ls, cat)",
             lambda: "messages" not in ls(mnt / CHAT)
             and cat(mnt / CHAT / "messages", expect=errno.ENOENT) is None, bound)
    assert sorted(ls(mnt / CHAT)) == ["index", "message"]

    bot.set(CHAT, None)  # the whole chat, by cascade, from the other client
    wait_for(f"{mode}: a chat removed by cascade (ls, find)",
             lambda: ls(mnt / "chat") == ["120363@g.us", "new@s.whatsapp.net"]
             and not any(path.startswith(f"./{CHAT}") for path in find(mnt)), bound)
    assert absent(mnt / CHAT)
    assert find(mnt) == ["./chat/120363@g.us/index", "./chat/new@s.whatsapp.net/index", "./session/creds"]


def test_feed_mount_does_not_wait_for_a_ttl(
    redis_server, notifications_off, prefix: str, tmp_path: Path
) -> None:
    """With a 60 s TTL, only the change feed can make these changes show within the bound."""
    bot = redis_server.engine(prefix=prefix)
    engine = feed_engine(redis_server, prefix)
    try:
        bot.set_many(SESSION)
        with mounted(engine, tmp_path / "mnt", ttl=FEED_TTL) as mnt:
            flags = redis_server.client().config_get("notify-keyspace-events")["notify-keyspace-events"]
            assert {"K", "g", "$"} <= set(flags)
            for round_ in range(5):
                name, value = f"R{round_}", f"round {round_}"
                path = mnt / CHAT / "message" / name / "raw"
                bot.set(f"{CHAT}/message/{name}/raw", value)
                wait_for("feed: a new file under a long TTL",
                         lambda path=path, value=value: cat(path, expect=errno.ENOENT) == value, FEED_BOUND)
                bot.set(f"{CHAT}/message/{name}/raw", None)
                wait_for("feed: its delete under a long TTL",
                         lambda path=path, name=name: name not in ls(mnt / CHAT / "message") and absent(path),
                         FEED_BOUND)
    finally:
        engine.close()
        bot.close()


def test_without_enable_the_server_config_is_left_alone(redis_server, notifications_off, prefix: str,
                                                       tmp_path: Path) -> None:
    engine = redis_server.engine(prefix=prefix)
    try:
        engine.set_many(SESSION)
        with mounted(engine, tmp_path / "mnt", ttl=POLL_TTL) as mnt:
            assert ls(mnt / "chat") == ["120363@g.us", "5491112345678@s.whatsapp.net"]
            assert [c for c in pubsub_clients(redis_server) if c.get("psub") == "1"] == []
        client = redis_server.client()
        try:
            assert client.config_get("notify-keyspace-events")["notify-keyspace-events"] == ""
        finally:
            client.close()
    finally:
        engine.close()


def test_killed_notification_connection_comes_back_and_rescans(redis_server, notifications_off, prefix: str,
                                                               tmp_path: Path) -> None:
    bot = redis_server.engine(prefix=prefix)
    engine = feed_engine(redis_server, prefix)
    raw = bot.prefix.encode() + b":"
    try:
        bot.set_many(SESSION)
        with mounted(engine, tmp_path / "mnt", ttl=FEED_TTL) as mnt:
            assert ls(mnt / "chat") == ["120363@g.us", "5491112345678@s.whatsapp.net"]
            (before,) = [c["id"] for c in pubsub_clients(redis_server)]
            # The kill and the write run back to back in the server: the write's event is lost.
            pipe = bot.client.pipeline(transaction=False)
            pipe.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
            pipe.set(raw + b"chat/while-down@s.whatsapp.net/index", b"written while down")
            killed, _ = pipe.execute()
            assert killed == 1
            wait_for("feed: a key written while the feed was down (rescan)",
                     lambda: "while-down@s.whatsapp.net" in ls(mnt / "chat"), FEED_BOUND + 1.0)
            assert cat(mnt / "chat/while-down@s.whatsapp.net/index") == "written while down"
            (after,) = [c["id"] for c in pubsub_clients(redis_server)]
            assert after != before  # a new subscription, not the old connection
            bot.set("chat/after@s.whatsapp.net/index", "after")  # and events flow again
            wait_for("feed: a key written after the reconnect",
                     lambda: "after@s.whatsapp.net" in ls(mnt / "chat"), FEED_BOUND)
    finally:
        engine.close()
        bot.close()


def test_refresh_makes_a_polling_daemon_read_the_store_again(redis_server, notifications_off, prefix: str,
                                                             tmp_path: Path) -> None:
    """``wafs.mount.refresh`` (SIGHUP to a real background daemon) beats a 60 s TTL."""
    bot = redis_server.engine(prefix=prefix)
    mnt = tmp_path / "mnt"
    url = f"{redis_server.url}?{urllib.parse.urlencode({'prefix': prefix})}"
    try:
        bot.set_many(SESSION)
        with daemon_mounted(mnt, url, "--ttl", "60") as pid:
            assert ls(mnt / "chat") == ["120363@g.us", "5491112345678@s.whatsapp.net"]
            bot.set("chat/new@s.whatsapp.net/index", "new")
            time.sleep(KERNEL_TIMEOUT + 0.2)
            assert "new@s.whatsapp.net" not in ls(mnt / "chat")  # the TTL holds the old tree
            assert refresh(str(mnt)) == pid != os.getpid()
            wait_for("refresh: a key written before wafs refresh",
                     lambda: "new@s.whatsapp.net" in ls(mnt / "chat"), SLACK + KERNEL_TIMEOUT)
    finally:
        bot.close()


class Bot(threading.Thread):
    """Keeps rewriting one value that carries its own SHA-256 and changes size on every write."""

    def __init__(self, engine: RedisEngine, key: str, repeats: int) -> None:
        super().__init__(name="bot-writer", daemon=True)
        self.engine = engine
        self.key = key
        self.repeats = repeats
        self.stop = threading.Event()
        self.writes = 0
        self.error: BaseException | None = None

    def value(self, number: int) -> str:
        body = (f"{number:08d}" + "ñandú-" * 20) * (self.repeats + number % 7 * (self.repeats // 12 + 1))
        return hashlib.sha256(body.encode()).hexdigest() + "\n" + body

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                self.engine.set(self.key, self.value(self.writes))
                self.writes += 1
                time.sleep(0.001)
        except BaseException as exc:  # noqa: BLE001  (reported by the test)
            self.error = exc


@pytest.mark.parametrize("repeats", [6000, 1], ids=["1MB", "200B"])
@pytest.mark.parametrize("mode", ["notifications", "polling"])
def test_reader_never_sees_a_torn_value_while_the_bot_writes(redis_server, notifications_off, prefix: str,
                                                             tmp_path: Path, mode: str, repeats: int) -> None:
    """Each read is one whole value: never cut at, or padded to, a size the kernel cached."""
    key = f"{CHAT}/message/BIG/raw"
    writer = redis_server.engine(prefix=prefix)
    if mode == "notifications":
        engine = feed_engine(redis_server, prefix)
    else:
        engine = redis_server.engine(prefix=prefix)
    bot = Bot(writer, key, repeats)
    try:
        writer.set(key, bot.value(0))
        with mounted(engine, tmp_path / "mnt", ttl=POLL_TTL) as mnt:
            bot.start()
            reads, seen, deadline = 0, set(), time.monotonic() + 4.0
            while time.monotonic() < deadline:
                data = (mnt / key).read_bytes()
                checksum, _, body = data.partition(b"\n")
                assert hashlib.sha256(body).hexdigest().encode() == checksum, (
                    f"torn read #{reads}: {len(data)} bytes")
                seen.add(checksum)
                reads += 1
            bot.stop.set()
            bot.join(10)
        assert bot.error is None
        print(f"{mode}: {reads} reads of a {len(data)}-byte value, {len(seen)} distinct values, "
              f"{bot.writes} writes")
        assert reads >= 10 and bot.writes >= 10
        assert len(seen) >= 2  # the reader did see the value change
    finally:
        bot.stop.set()
        bot.join(10)
        engine.close()
        writer.close()
