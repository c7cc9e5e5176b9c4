"""The change feed of :class:`~wafs.engines.redis.RedisEngine`: Redis keyspace notifications.

:meth:`RedisEngine.watch <wafs.engines.redis.RedisEngine.watch>` delegates here:
:func:`watch_server` follows one server with one subscription (:class:`RedisWatch`),
:func:`watch_cluster` every primary of a Redis Cluster with one subscription each and a
thread that follows the topology (:class:`RedisClusterWatch`). Every subscription runs on a
connection of its own. Failures propagate as redis-py exceptions: ``RedisEngine.watch``
translates them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import redis
from redis import exceptions as rx
from redis.backoff import NoBackoff
from redis.client import PubSub
from redis.cluster import RedisCluster
from redis.retry import Retry

from ..engine import Watch
from .redis import _as_bytes, _describe, _glob_escape, _layout_line, _text

log = logging.getLogger(__name__)

#: Event classes the feed needs in ``notify-keyspace-events``: keyspace channel, generic
#: (``del``, ``rename_from``/``rename_to``, ``move_from``/``move_to``, …), string, expired and
#: evicted keys. With fewer, keys would vanish unseen: the feed is not used (callers poll).
NEEDED_EVENTS = "Kg$xe"
#: Keyspace events that remove the key; every other event (``set``, ``rename_to``, ``move_to``,
#: ``append``, ``copy_to``, ``restore``, …) leaves a value under it.
_GONE_EVENTS = frozenset({b"del", b"expired", b"evicted", b"rename_from", b"move_from"})
#: Commands that empty or swap the whole database without one keyspace event.
_SILENT_COMMANDS = ("flushdb", "flushall", "swapdb")
#: Seconds between two looks at the server's counts of those commands and its replication id
#: (a full resync from a new primary, a promotion): a change makes the caller rescan.
DATASET_POLL = 1.0
#: Keyspace events that change no value (a TTL set or cleared, the key-created hint).
_QUIET_EVENTS = frozenset({b"expire", b"persist", b"new"})
#: Seconds between PINGs on the notification connection, and how long it may stay silent.
HEARTBEAT = 5.0
SILENCE = 3 * HEARTBEAT
#: Backoff between reconnect attempts of the notification connection (seconds).
RECONNECT_MIN = 0.05
RECONNECT_MAX = 2.0
#: Seconds to wait for the subscription to be confirmed, and for the thread to stop.
SUBSCRIBE_TIMEOUT = 5.0
JOIN_TIMEOUT = 5.0
#: Cluster: seconds between two comparisons of the primaries (also made at once when a
#: subscription drops).
TOPOLOGY_POLL = 1.0
#: Entries of a pool's ``connection_kwargs`` that belong to that pool, not to a new connection.
#: redis-py has no public way to copy a pool's connection options, and since 7.x it keeps
#: pool-private state among them: these names are redis-py internals, which is why setup.cfg
#: bounds redis-py to the releases they were checked against.
_POOL_ONLY = ("maint_notifications_pool_handler", "maint_notifications_config", "himport_registry",
              "orig_host_address", "orig_socket_timeout", "orig_socket_connect_timeout")


def notifications_cover(flags: str) -> bool:
    """True when ``notify-keyspace-events`` flags publish every keyspace event the feed needs
    (:data:`NEEDED_EVENTS`; ``A`` holds all but ``K``)."""
    return "K" in flags and ("A" in flags or all(flag in flags for flag in NEEDED_EVENTS[1:]))


def _dataset_marks(client: redis.Redis) -> tuple[object, ...]:
    """What changes when the server's data is replaced without keyspace events: the calls of
    :data:`_SILENT_COMMANDS` so far and the replication id. One round trip."""
    pipe = client.pipeline(transaction=False)
    pipe.info("commandstats")
    pipe.info("replication")
    stats, replication = pipe.execute()
    calls = tuple(stats.get(f"cmdstat_{name}", {}).get("calls", 0) for name in _SILENT_COMMANDS)
    return (*calls, replication.get("master_replid"))


class _FeedLost(rx.ConnectionError):
    """The notification connection went silent or its subscription was not confirmed."""


def _dedicated(pool: redis.ConnectionPool, **where: Any) -> redis.Redis:
    """A client of its own to the server of ``pool`` (or ``host``/``port`` in ``where``).

    It never retries by itself: the change feed owns its reconnects. Bytes replies.
    """
    options = {k: v for k, v in pool.connection_kwargs.items() if k not in _POOL_ONLY}
    return redis.Redis(connection_pool=redis.ConnectionPool(
        connection_class=pool.connection_class,
        **{**options, **where, "decode_responses": False, "retry": Retry(NoBackoff(), 0)},
    ))


def _notifications_on(client: redis.Redis, enable: bool) -> bool:
    """True when ``client``'s server publishes the keyspace events the feed needs.

    When they are off and ``enable`` is set, ``CONFIG SET`` adds :data:`NEEDED_EVENTS` to the
    server's flags first. False when they are off, or when ``CONFIG GET`` is refused (managed
    servers). Connection failures propagate as redis-py exceptions.
    """
    try:
        reply = client.config_get("notify-keyspace-events")
    except rx.ResponseError as exc:
        log.warning("cannot read notify-keyspace-events of %s (%s); polling instead", _describe(client), exc)
        return False
    flags = _text(_as_bytes(next(iter(reply.values()), None) or b""))
    if notifications_cover(flags):
        return True
    if not enable:
        if flags:
            log.warning("notify-keyspace-events of %s is %r, which misses events the change feed needs "
                        "(expired or evicted keys, say); polling. Set it to %r to follow changes",
                        _describe(client), flags, NEEDED_EVENTS)
        return False
    added = "".join(flag for flag in NEEDED_EVENTS if flag not in flags)
    client.config_set("notify-keyspace-events", flags + added)
    log.warning("enabled keyspace notifications on %s: notify-keyspace-events %r",
                _describe(client), flags + added)
    return True


class _Subscriber:
    """One PSUBSCRIBE to a keyspace channel on one server, read by its own thread.

    The per-connection loop that both :class:`RedisWatch` (one server) and
    :class:`RedisClusterWatch` (one per primary) run. The subscription is confirmed before the
    constructor returns. Any loss of the connection (or a redis-py reconnect, seen as a second
    subscription confirmation) calls ``on_loss()`` at once and ``on_change(None, True)`` once
    the subscription is back: events were lost and the caller rescans. So does a FLUSHDB,
    FLUSHALL or SWAPDB, or a new replication id (:func:`_dataset_marks`, every
    :data:`DATASET_POLL` s): the data changed without an event per key.
    """

    def __init__(self, client: redis.Redis, channel: bytes, on_change: Callable[[str | None, bool], None],
                 on_loss: Callable[[], None] = lambda: None) -> None:
        """``client`` is dedicated to this subscription (see :func:`_dedicated`) and closed with it."""
        self._client = client
        self._where = _describe(client)
        self._channel = channel
        self._pattern = _glob_escape(channel) + b"*"
        self._on_change = on_change
        self._on_loss = on_loss
        self._marks: tuple[object, ...] = ()
        self._stop = threading.Event()
        try:
            pubsub = self._subscribe()  # in the caller's thread: fails loudly when Redis is down
        except BaseException:
            self._release()
            raise
        self._thread = threading.Thread(target=self._run, args=(pubsub,), name="wafs-redis-watch",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Ask the thread to stop (it notices within 0.2 s); :meth:`close` waits for it."""
        self._stop.set()

    def close(self, deadline: float) -> None:
        """Stop the thread, waiting until the ``time.monotonic()`` ``deadline`` at most, and disconnect."""
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(max(0.0, deadline - time.monotonic()))
        self._release()

    @property
    def alive(self) -> bool:
        """True while the thread runs."""
        return self._thread.is_alive()

    def _release(self) -> None:
        self._client.close()
        self._client.connection_pool.disconnect()

    def _subscribe(self) -> PubSub:
        """A new PSUBSCRIBE on a fresh connection, returned once Redis confirmed it."""
        marks = _dataset_marks(self._client)  # before: a FLUSHDB from now on is noticed
        pubsub: PubSub = self._client.pubsub()
        try:
            pubsub.psubscribe(self._pattern)
            deadline = time.monotonic() + SUBSCRIBE_TIMEOUT
            while time.monotonic() < deadline:
                message = pubsub.get_message(timeout=0.1)
                if message is not None and message["type"] == "psubscribe":
                    self._marks = marks
                    return pubsub
            raise _FeedLost("the subscription was not confirmed")
        except BaseException:
            pubsub.close()
            raise

    def _run(self, pubsub: PubSub | None) -> None:
        delay = RECONNECT_MIN
        while not self._stop.is_set():
            try:
                if pubsub is None:
                    pubsub = self._subscribe()
                    self._lost()
                self._follow(pubsub)
            except (rx.RedisError, OSError) as exc:
                if pubsub is not None:
                    log.warning("keyspace notifications %s of %s lost (%s); reconnecting",
                                _text(self._channel), self._where, exc)
                    delay = RECONNECT_MIN
                    self._on_loss()
                self._stop.wait(delay)
                delay = min(delay * 2, RECONNECT_MAX)
            except Exception:
                log.exception("a change callback failed; rescanning")
                self._stop.wait(RECONNECT_MIN)
            if pubsub is not None:
                pubsub.close()
                pubsub = None

    def _lost(self) -> None:
        log.warning("keyspace notifications %s of %s are back; events may have been lost",
                    _text(self._channel), self._where)
        self._on_change(None, True)

    def _follow(self, pubsub: PubSub) -> None:
        """Deliver events until stopped; raises when the connection fails or goes silent."""
        heard = pinged = looked = time.monotonic()
        while not self._stop.is_set():
            now = time.monotonic()
            if now - pinged >= HEARTBEAT:
                pubsub.ping()
                pinged = now
            if now - looked >= DATASET_POLL:
                self._look_at_the_dataset()
                looked = now
            if now - heard > SILENCE:
                raise _FeedLost(f"no answer for {SILENCE:.0f} s")
            message = pubsub.get_message(timeout=0.2)
            if message is None:
                continue
            heard = time.monotonic()
            if message["type"] == "psubscribe":
                self._lost()  # redis-py reconnected and subscribed again by itself
            elif message["type"] == "pmessage":
                self._deliver(message["channel"], message["data"])

    def _look_at_the_dataset(self) -> None:
        marks = _dataset_marks(self._client)
        if marks != self._marks:
            self._marks = marks
            log.warning("the data of %s was replaced without keyspace events (FLUSHDB, FLUSHALL, SWAPDB or "
                        "a resync); rescanning", self._where)
            self._on_change(None, True)

    def _deliver(self, channel: bytes, event: bytes) -> None:
        if not channel.startswith(self._channel) or event in _QUIET_EVENTS:
            return
        self._on_change(_text(channel[len(self._channel):]), event in _GONE_EVENTS)


class RedisWatch(Watch):
    """Keyspace notifications of one prefix on one server (``__keyspace@{db}__:{prefix}:*``).

    A :class:`_Subscriber` on a connection of its own: see there for the loss rule.
    """

    def __init__(self, client: redis.Redis, db: int, base: bytes,
                 on_change: Callable[[str | None, bool], None]) -> None:
        channel = f"__keyspace@{db}__:".encode() + base
        self._subscriber = _Subscriber(_dedicated(client.connection_pool), channel, on_change)

    def close(self) -> None:
        """Stop the thread (waits at most :data:`JOIN_TIMEOUT` s) and drop the connection."""
        self._subscriber.close(time.monotonic() + JOIN_TIMEOUT)


def watch_server(client: redis.Redis, base: bytes, on_change: Callable[[str | None, bool], None],
                 enable: bool) -> RedisWatch | None:
    """A :class:`RedisWatch` of the keys starting with ``base`` on ``client``'s server, or ``None``
    when the server has notifications off (and ``enable`` is off, or ``CONFIG GET`` is refused).
    """
    if not _notifications_on(client, enable):
        return None
    return RedisWatch(client, client.connection_pool.connection_kwargs.get("db", 0), base, on_change)


Address = tuple[str, int]


def _node_address(field: str) -> Address | None:
    """``("host", port)`` of a ``CLUSTER NODES`` address field (``ip:port@cport[,hostname]``)."""
    host, _, port = field.partition("@")[0].rpartition(":")
    return (host, int(port)) if host and port.isdigit() and port != "0" else None


class _Topology:
    """Which nodes are primaries now, as each reachable node says of itself.

    Holds one small admin connection per node address (never the engine's client, whose slot
    map is left to redis-py). Nodes are discovered from the ``CLUSTER NODES`` replies, so a
    new primary is found even when no command of the engine has met it yet.
    """

    def __init__(self, client: RedisCluster) -> None:
        nodes = client.get_nodes()
        if not nodes:
            raise rx.ConnectionError("the cluster client knows no node")
        self._template = client.get_redis_connection(nodes[0]).connection_pool
        self.known: set[Address] = {(node.host, int(node.port)) for node in nodes}
        self._admins: dict[Address, redis.Redis] = {}

    def admin(self, address: Address) -> redis.Redis:
        """The admin connection to ``address`` (created on first use)."""
        if address not in self._admins:
            self._admins[address] = _dedicated(self._template, host=address[0], port=address[1])
        return self._admins[address]

    def dedicated(self, address: Address) -> redis.Redis:
        """A new client to ``address``, for a subscription that owns it."""
        return _dedicated(self._template, host=address[0], port=address[1])

    def primaries(self) -> dict[Address, tuple[str, ...]]:
        """``{address: its own CLUSTER NODES line}`` of every reachable node that says it is a primary.

        The own line (:func:`_layout_line`) carries the node id, role, config epoch and slots
        with migrations, so a failover, a new primary or a resharding changes the result.
        Unreachable nodes are left out; nodes other nodes mark ``fail`` are no longer asked.
        """
        layout: dict[Address, tuple[str, ...]] = {}
        mentioned: set[Address] = set()
        pending, asked = sorted(self.known), set()
        while pending:
            address = pending.pop()
            asked.add(address)
            try:
                reply = _text(_as_bytes(self.admin(address).execute_command("CLUSTER", "NODES")))
            except (rx.RedisError, OSError):
                continue
            mentioned.add(address)
            for line in reply.splitlines():
                fields = line.split()
                peer = _node_address(fields[1]) if len(fields) > 2 else None
                if peer is not None and not set(fields[2].split(",")) & {"fail", "noaddr", "handshake"}:
                    mentioned.add(peer)
                    if peer not in asked and peer not in pending:
                        pending.append(peer)
            own = _layout_line(reply)
            if own and "master" in own[1].split(","):
                layout[address] = own
        if mentioned:
            for gone in self.known - mentioned:
                self._forget(gone)
            self.known = mentioned
        return layout

    def _forget(self, address: Address) -> None:
        client = self._admins.pop(address, None)
        if client is not None:
            client.close()
            client.connection_pool.disconnect()

    def close(self) -> None:
        for address in list(self._admins):
            self._forget(address)


def watch_cluster(client: RedisCluster, base: bytes, on_change: Callable[[str | None, bool], None],
                  enable: bool) -> RedisClusterWatch | None:
    """A :class:`RedisClusterWatch` of the keys starting with ``base`` on every primary of ``client``'s
    cluster, or ``None`` when a primary lacks notifications and ``enable`` is off.

    With ``enable``, ``Kg$xe`` is added on every reachable node, replicas included, so a replica
    promoted later already publishes events.
    """
    topology = _Topology(client)
    try:
        layout = topology.primaries()
        if not layout:
            raise rx.ConnectionError("no primary of the cluster answered")
        if enable:
            for address in sorted(topology.known - set(layout)):
                try:
                    _notifications_on(topology.admin(address), True)
                except (rx.RedisError, OSError) as exc:
                    log.warning("could not enable keyspace notifications on replica %s:%s (%s)",
                                *address, exc)
        if not all(_notifications_on(topology.admin(address), enable) for address in sorted(layout)):
            topology.close()
            return None
        return RedisClusterWatch(topology, layout, base, on_change, enable)
    except BaseException:
        topology.close()
        raise


class RedisClusterWatch(Watch):
    """Keyspace notifications of one prefix on every primary of a Redis Cluster.

    One :class:`_Subscriber` per primary (``__keyspace@0__:{prefix}:*`` on a connection of its
    own), with the same events and loss rule as on one server. A topology thread compares the
    primaries (their own ``CLUSTER NODES`` lines: roles, epochs, slots) every
    :data:`TOPOLOGY_POLL` s and at once when a subscription drops; when they changed
    (failover, new primary, resharding), it subscribes to the new primaries, drops the old ones
    and then calls ``on_change(None, True)`` so the caller rescans. A primary that publishes
    no events (promoted without ``Kg$xe`` while enabling was not asked) is covered by a rescan
    every poll, with a warning.
    """

    def __init__(self, topology: _Topology, layout: dict[Address, tuple[str, ...]], base: bytes,
                 on_change: Callable[[str | None, bool], None], enable: bool) -> None:
        """Subscribe to every primary of ``layout``, each confirmed before this returns.

        Made by :func:`watch_cluster`.
        """
        self._topology = topology
        self._channel = b"__keyspace@0__:" + base
        self._on_change = on_change
        self._enable = enable
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._subscribers: dict[Address, _Subscriber] = {}
        self._silent: set[Address] = set()  # primaries without keyspace notifications
        self._layout: dict[Address, tuple[str, ...]] | None = None
        try:
            for address in sorted(layout):
                self._subscribers[address] = self._subscriber(address)
        except BaseException:
            self._close_subscribers(list(self._subscribers.values()), time.monotonic() + JOIN_TIMEOUT)
            raise
        self._layout = layout
        self._thread = threading.Thread(target=self._run, name="wafs-redis-topology", daemon=True)
        self._thread.start()

    @property
    def primaries(self) -> list[Address]:
        """The addresses of the primaries followed now."""
        with self._lock:
            return sorted(self._subscribers)

    def threads_alive(self) -> int:
        """How many of this watch's threads still run (0 after :meth:`close`)."""
        with self._lock:
            subscribers = list(self._subscribers.values())
        return sum(subscriber.alive for subscriber in subscribers) + self._thread.is_alive()

    def close(self) -> None:
        """Stop every thread (all within :data:`JOIN_TIMEOUT` s together) and drop every connection."""
        deadline = time.monotonic() + JOIN_TIMEOUT
        self._stop.set()
        self._wake.set()
        if self._thread is not threading.current_thread():
            self._thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            subscribers = list(self._subscribers.values())
            self._subscribers.clear()
        self._close_subscribers(subscribers, deadline)
        self._topology.close()

    @staticmethod
    def _close_subscribers(subscribers: Iterable[_Subscriber], deadline: float) -> None:
        subscribers = list(subscribers)
        for subscriber in subscribers:
            subscriber.stop()
        for subscriber in subscribers:
            subscriber.close(deadline)

    def _subscriber(self, address: Address) -> _Subscriber:
        return _Subscriber(self._topology.dedicated(address), self._channel, self._on_change, self._wake.set)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(TOPOLOGY_POLL)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self._check()
            except Exception:
                log.exception("following the cluster topology failed; retrying")

    def _check(self) -> None:
        """Compare the primaries with the last ones; follow a change, then ask for a rescan."""
        layout = self._topology.primaries()
        for address in sorted(self._silent & set(layout)):
            if _notifications_on(self._topology.admin(address), self._enable):
                self._silent.discard(address)
        changed = layout != self._layout
        if changed:
            self._follow(layout)
        if changed or self._silent:
            self._on_change(None, True)

    def _follow(self, layout: dict[Address, tuple[str, ...]]) -> None:
        """Subscribe to new primaries (confirmed) and drop the old ones.

        The layout is kept only when every subscription worked, so the next check tries again.
        """
        with self._lock:
            current = dict(self._subscribers)
        complete = True
        added: dict[Address, _Subscriber] = {}
        for address in sorted(set(layout) - set(current)):
            try:
                if not _notifications_on(self._topology.admin(address), self._enable):
                    log.warning("primary %s:%s publishes no keyspace notifications; rescanning every %.0f s",
                                *address, TOPOLOGY_POLL)
                    self._silent.add(address)
                added[address] = self._subscriber(address)
            except (rx.RedisError, OSError) as exc:
                log.warning("cannot subscribe to primary %s:%s yet (%s)", *address, exc)
                complete = False
        gone = [current[address] for address in set(current) - set(layout)]
        with self._lock:
            for address in set(current) - set(layout):
                del self._subscribers[address]
            self._subscribers.update(added)
        self._silent &= set(layout)
        self._close_subscribers(gone, time.monotonic() + JOIN_TIMEOUT)
        log.warning("cluster primaries changed: now %s", ", ".join(f"{h}:{p}" for h, p in sorted(layout)))
        self._layout = layout if complete else None
