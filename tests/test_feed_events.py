"""The Redis change feed at engine level: every way a key appears or disappears, on a real server.

Each test makes one change with redis-py (as a bot or an operator would) and waits until the
feed told it: ``(key, deleted)`` for an event per key, ``(None, True)`` (rescan) for what no
event tells (FLUSHDB, FLUSHALL, SWAPDB). A private server: these tests flush and swap databases.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from wafs.engines.redis import RedisEngine
from wafs.engines.redis_feed import DATASET_POLL, NEEDED_EVENTS

from .helpers import unique
from .servers import RedisServer, running_redis

#: Seconds an event may take to arrive (expired: Redis' active expiry runs 10 times a second).
BOUND = DATASET_POLL + 2.0


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    with running_redis() as started:
        client = started.client()
        client.config_set("notify-keyspace-events", NEEDED_EVENTS)
        client.close()
        yield started


class Told:
    """What a watch told, in order, and a way to wait for one thing."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.events: list[tuple[str | None, bool]] = []

    def __call__(self, key: str | None, deleted: bool) -> None:
        with self.lock:
            self.events.append((key, deleted))

    def wait(self, event: tuple[str | None, bool], what: str) -> float:
        started = time.monotonic()
        while time.monotonic() - started < BOUND:
            with self.lock:
                if event in self.events:
                    return time.monotonic() - started
            time.sleep(0.02)
        pytest.fail(f"{what}: the feed never told {event} within {BOUND:.1f} s; it told {self.events}")


@pytest.fixture
def feed(server: RedisServer) -> Iterator[tuple[RedisEngine, Told, Any, str]]:
    """A watching engine on db 0 (a fresh prefix), what it is told, a raw client, the prefix."""
    prefix = unique("wa:feed")
    engine = server.engine(prefix=prefix)
    told = Told()
    watch = engine.watch(told)
    assert watch is not None, "the server has the flags, the feed must be used"
    raw = server.client()
    try:
        yield engine, told, raw, prefix
    finally:
        watch.close()
        raw.close()
        engine.close()


def test_set_and_del_are_told(feed: Any) -> None:
    _, told, raw, prefix = feed
    raw.set(f"{prefix}:chat/1/index", "v")
    told.wait(("chat/1/index", False), "SET")
    raw.delete(f"{prefix}:chat/1/index")
    told.wait(("chat/1/index", True), "DEL")


def test_an_expired_key_is_told_gone(feed: Any) -> None:
    _, told, raw, prefix = feed
    raw.set(f"{prefix}:session/pre-key/1", "v", px=100)
    told.wait(("session/pre-key/1", True), "expired")
    assert raw.exists(f"{prefix}:session/pre-key/1") == 0


def test_rename_tells_the_old_key_gone_and_the_new_one_set(feed: Any) -> None:
    _, told, raw, prefix = feed
    raw.set(f"{prefix}:chat/1/old", "v")
    raw.rename(f"{prefix}:chat/1/old", f"{prefix}:chat/1/new")
    told.wait(("chat/1/old", True), "rename_from")
    told.wait(("chat/1/new", False), "rename_to")


def test_move_out_of_the_database_and_into_it_are_told(feed: Any, server: RedisServer) -> None:
    _, told, raw, prefix = feed
    raw.set(f"{prefix}:chat/1/leaves", "v")
    raw.move(f"{prefix}:chat/1/leaves", 1)
    told.wait(("chat/1/leaves", True), "move_from")
    other_db = redis.Redis(host=server.host, port=server.port, db=1)
    try:
        other_db.set(f"{prefix}:chat/1/arrives", "v")
        other_db.move(f"{prefix}:chat/1/arrives", 0)
    finally:
        other_db.flushdb()
        other_db.close()
    told.wait(("chat/1/arrives", False), "move_to")


@pytest.mark.parametrize("command", ["FLUSHDB", "FLUSHALL", "SWAPDB"])
def test_what_no_keyspace_event_tells_is_a_rescan(feed: Any, command: str) -> None:
    """FLUSHDB, FLUSHALL and SWAPDB remove or replace every key without one event."""
    _, told, raw, prefix = feed
    raw.set(f"{prefix}:chat/1/index", "v")
    told.wait(("chat/1/index", False), "SET")
    arguments: dict[str, Callable[[], object]] = {
        "FLUSHDB": raw.flushdb, "FLUSHALL": raw.flushall, "SWAPDB": lambda: raw.swapdb(0, 1)}
    arguments[command]()
    try:
        elapsed = told.wait((None, True), command)
        print(f"{command}: rescan asked after {elapsed * 1000:.0f} ms")
    finally:
        if command == "SWAPDB":
            raw.swapdb(0, 1)


def test_an_evicted_key_is_told_gone(server: RedisServer, feed: Any) -> None:
    _, told, raw, prefix = feed
    used = raw.info("memory")["used_memory"]
    raw.config_set("maxmemory-policy", "allkeys-lru")
    raw.config_set("maxmemory", str(used + 2_000_000))
    try:
        for n in range(400):  # 4 MB of values into 2 MB of room
            raw.set(f"{prefix}:chat/{n}/content", "x" * 10_000)
        evicted = [n for n in range(400) if raw.exists(f"{prefix}:chat/{n}/content") == 0]
        assert evicted, "nothing was evicted: the test did not test anything"
        told.wait((f"chat/{evicted[0]}/content", True), "evicted")
        with told.lock:
            gone = {key for key, deleted in told.events if deleted}
        assert {f"chat/{n}/content" for n in evicted} <= gone
    finally:
        raw.config_set("maxmemory", "0")
        raw.flushdb()


def test_flags_that_miss_events_are_not_used_as_a_feed(server: RedisServer, caplog: Any) -> None:
    """The old advice, Kg$, misses expired and evicted keys: polling, and a warning naming the fix."""
    raw = server.client()
    engine = server.engine(prefix=unique("wa:feed"))
    try:
        raw.config_set("notify-keyspace-events", "Kg$")
        assert engine.watch(lambda key, deleted: None) is None
        assert "Kg$xe" in caplog.text
        enabling = RedisEngine(engine.client, engine.prefix, enable_notifications=True)
        watch = enabling.watch(lambda key, deleted: None)
        assert watch is not None
        watch.close()
        flags = raw.config_get("notify-keyspace-events")["notify-keyspace-events"]
        assert set(flags) >= set("Kg$xe")
    finally:
        raw.config_set("notify-keyspace-events", NEEDED_EVENTS)
        raw.close()
        engine.close()
