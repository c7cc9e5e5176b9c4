"""RedisEngine: one Redis string per key, ``{prefix}:{key}``, the layout the Node library writes.

A session a Node bot keeps in Redis (``SET wa:default:session/creds ...``) is read as-is, and
what this engine writes is read by the Node bot. Differences from the Node original:

* ``list`` sorts the keys (code point order) before paging, so pages are deterministic and
  consecutive pages neither skip nor repeat a key; Node pages over unordered SCAN results.
* ``""`` is stored as a value; only ``None`` deletes (Node deletes on an empty string).
* Batch operations are one round trip per chunk of 1000 keys (MGET, MSET, DEL, pipelines),
  and any number of cascades share one SCAN pass.

Keys are sent as bytes. Keys read back that are not UTF-8 are decoded with
``surrogateescape``: they come back as a ``str`` that fails :func:`wafs.keys.is_valid_key`
and that :meth:`RedisEngine.delete_many` turns back into the exact stored bytes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol, TypeVar

import redis
from redis import exceptions as rx
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.cluster import RedisCluster
from redis.retry import Retry

from ..engine import Engine, Watch
from ..errors import (
    BackendError,
    BackendUnavailableError,
    NoSpaceError,
    WafsError,
)

DEFAULT_PREFIX = "wa:default"
#: Seconds a single command may take before it fails (``?timeout=`` in a URL).
DEFAULT_TIMEOUT = 5.0
#: Seconds to establish a connection (never more than the command timeout).
CONNECT_TIMEOUT = 2.0
#: Retries after a refused or dropped connection (not after a timeout), with backoff.
RETRIES = 2
#: Keys per MGET / MSET / DEL / pipeline, and the COUNT hint of each SCAN call.
CHUNK = 1000
#: Keys per STRLEN pipeline: `ls -l` of a directory this large reads its sizes in one round trip.
SIZES_CHUNK = 50_000
#: Cluster: attempts of a command after a dropped node or ``CLUSTERDOWN`` (the client refreshes
#: its slot map between them; ``MOVED``/``ASK`` redirections are followed on top of these).
CLUSTER_RETRIES = 3
#: Cluster: SCAN passes over every primary when the slot layout changes under a pass
#: (failover, resharding), and the pause before each repeat (seconds).
CLUSTER_PASSES = 4
CLUSTER_PAUSE = 0.25

_GLOB_SPECIAL = frozenset(b"*?[]\\")
_URL_OPTIONS = ("prefix", "timeout", "notifications")
_T = TypeVar("_T")


class RedisClient(Protocol):
    """What RedisEngine calls on its client: a subset of redis-py's ``Redis`` and ``RedisCluster``.

    Keys and values are passed as ``bytes``; replies may be ``bytes`` or ``str`` (a client
    created with ``decode_responses=True``). On a client that has ``mget_nonatomic`` /
    ``mset_nonatomic`` (``RedisCluster``), those are used instead of ``mget`` / ``mset``.
    """

    def get(self, name: bytes) -> bytes | str | None: ...

    def set(self, name: bytes, value: bytes) -> Any: ...

    def mget(self, keys: Sequence[bytes]) -> list[bytes | str | None]: ...

    def mset(self, mapping: Mapping[bytes, bytes]) -> Any: ...

    def delete(self, *names: bytes) -> Any: ...

    def scan_iter(self, match: bytes | None = None, count: int | None = None) -> Iterator[bytes | str]: ...

    def pipeline(self, transaction: bool = True) -> Any: ...


def _raw(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _as_bytes(reply: bytes | str) -> bytes:
    return reply if isinstance(reply, bytes) else _raw(reply)


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def _glob_escape(raw: bytes) -> bytes:
    """Escape Redis glob metacharacters so ``raw`` matches only itself in a MATCH pattern."""
    return b"".join(b"\\" + bytes([byte]) if byte in _GLOB_SPECIAL else bytes([byte]) for byte in raw)


def _chunks(items: Sequence[_T], size: int = CHUNK) -> Iterator[Sequence[_T]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _under_any(name: bytes, prefixes: set[bytes]) -> bool:
    """True when ``name`` equals one of ``prefixes`` or lies below one of them plus ``/``."""
    if name in prefixes:
        return True
    slash = name.find(b"/")
    while slash != -1:
        if name[:slash] in prefixes:
            return True
        slash = name.find(b"/", slash + 1)
    return False


def _describe(client: object) -> str:
    """Where ``client`` points, without credentials (for messages and ``repr``)."""
    options = getattr(getattr(client, "connection_pool", None), "connection_kwargs", {})
    db = options.get("db", 0)
    if "path" in options:
        return f"unix://{options['path']}?db={db}"
    if "host" in options:
        return f"redis://{options['host']}:{options.get('port', 6379)}/{db}"
    if isinstance(client, RedisCluster):
        node = client.get_default_node()
        return f"redis+cluster://{node.host}:{node.port}" if node is not None else "redis+cluster"
    return type(client).__name__


def _layout_line(reply: bytes | str) -> tuple[str, ...]:
    """A node's own line of ``CLUSTER NODES``: id, flags, primary, epoch and slots (with migrations)."""
    for line in _text(_as_bytes(reply)).splitlines():
        fields = line.split()
        if "myself" in fields[2].split(","):
            return (fields[0], fields[2], fields[3], fields[6], *fields[8:])
    return ()


def _migrates_out(line: tuple[str, ...]) -> bool:
    """True when the node of this layout line is sending a slot away (``[slot->-target]``)."""
    return any("->-" in field for field in line[4:])


def _migrates_in(line: tuple[str, ...]) -> bool:
    return any("-<-" in field for field in line[4:])


# --- the change feed: keyspace notifications ------------------------------------------------------

log = logging.getLogger("wafs.redis")

#: Event classes the feed needs in ``notify-keyspace-events``: keyspace channel, generic, string.
NEEDED_EVENTS = "Kg$"
#: Keyspace events that remove the key; every other event (``set``, ``rename_to``, ``append``,
#: ``copy_to``, ``restore``, …) leaves a value under it.
_GONE_EVENTS = frozenset({b"del", b"expired", b"evicted", b"rename_from", b"move_from"})
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
#: Connection options of the engine's pool that belong to that pool, not to a new connection.
_POOL_ONLY = ("maint_notifications_pool_handler", "maint_notifications_config", "himport_registry",
              "orig_host_address", "orig_socket_timeout", "orig_socket_connect_timeout")


def notifications_cover(flags: str) -> bool:
    """True when ``notify-keyspace-events`` flags publish keyspace events for keys and strings."""
    return "K" in flags and ("A" in flags or ("g" in flags and "$" in flags))


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
    flags = _text(_as_bytes(next(iter(reply.values()), b"")))
    if notifications_cover(flags):
        return True
    if not enable:
        return False
    added = "".join(flag for flag in NEEDED_EVENTS if flag not in flags)
    client.config_set("notify-keyspace-events", flags + added)
    log.warning("enabled keyspace notifications on %s: notify-keyspace-events %r", _describe(client), flags + added)
    return True


class _Subscriber:
    """One PSUBSCRIBE to a keyspace channel on one server, read by its own thread.

    The per-connection loop that both :class:`RedisWatch` (one server) and
    :class:`RedisClusterWatch` (one per primary) run. The subscription is confirmed before the
    constructor returns. Any loss of the connection (or a redis-py reconnect, seen as a second
    subscription confirmation) calls ``on_loss()`` at once and ``on_change(None, True)`` once
    the subscription is back: events were lost and the caller rescans.
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
        self._stop = threading.Event()
        self.reconnects = 0  # subscriptions re-established after a loss (for logs and tests)
        try:
            pubsub = self._subscribe()  # in the caller's thread: fails loudly when Redis is down
        except BaseException:
            self._release()
            raise
        self._thread = threading.Thread(target=self._run, args=(pubsub,), name="wafs-redis-watch", daemon=True)
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

    def _subscribe(self) -> redis.client.PubSub:
        """A new PSUBSCRIBE on a fresh connection, returned once Redis confirmed it."""
        pubsub = self._client.pubsub()
        try:
            pubsub.psubscribe(self._pattern)
            deadline = time.monotonic() + SUBSCRIBE_TIMEOUT
            while time.monotonic() < deadline:
                message = pubsub.get_message(timeout=0.1)
                if message is not None and message["type"] == "psubscribe":
                    return pubsub
            raise _FeedLost("the subscription was not confirmed")
        except BaseException:
            pubsub.close()
            raise

    def _run(self, pubsub: redis.client.PubSub | None) -> None:
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
        self.reconnects += 1
        log.warning("keyspace notifications %s of %s are back; events may have been lost",
                    _text(self._channel), self._where)
        self._on_change(None, True)

    def _follow(self, pubsub: redis.client.PubSub) -> None:
        """Deliver events until stopped; raises when the connection fails or goes silent."""
        heard = pinged = time.monotonic()
        while not self._stop.is_set():
            now = time.monotonic()
            if now - pinged >= HEARTBEAT:
                pubsub.ping()
                pinged = now
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

    @property
    def reconnects(self) -> int:
        """Subscriptions re-established after a loss."""
        return self._subscriber.reconnects

    def close(self) -> None:
        """Stop the thread (waits at most :data:`JOIN_TIMEOUT` s) and drop the connection."""
        self._subscriber.close(time.monotonic() + JOIN_TIMEOUT)


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


def _watch_cluster(client: RedisCluster, base: bytes, on_change: Callable[[str | None, bool], None],
                   enable: bool) -> RedisClusterWatch | None:
    """A :class:`RedisClusterWatch`, or ``None`` when a primary lacks notifications and ``enable`` is off.

    With ``enable``, ``Kg$`` is added on every reachable node, replicas included, so a replica
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
                    log.warning("could not enable keyspace notifications on replica %s:%s (%s)", *address, exc)
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
    no events (promoted without ``Kg$`` while enabling was not asked) is covered by a rescan
    every poll, with a warning.
    """

    def __init__(self, topology: _Topology, layout: dict[Address, tuple[str, ...]], base: bytes,
                 on_change: Callable[[str | None, bool], None], enable: bool) -> None:
        """Subscribe to every primary of ``layout`` (confirmed before returning); see :func:`_watch_cluster`."""
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
        self.changes = 0  # topology changes followed (for logs and tests)
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
        """Subscribe to new primaries (confirmed) and drop the old; the layout is kept only when all worked."""
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
        self.changes += 1
        log.warning("cluster primaries changed: now %s", ", ".join(f"{h}:{p}" for h, p in sorted(layout)))
        self._layout = layout if complete else None


def _cluster_client(parts: urllib.parse.SplitResult, timeout: float) -> RedisCluster:
    """A ``RedisCluster`` from the startup node in ``parts`` (a ``redis://`` URL without a database)."""
    if parts.path not in ("", "/", "/0"):
        raise ValueError(f"a Redis Cluster has no database number: {parts.path!r} in a redis+cluster:// URL")
    try:  # unlike Redis(), RedisCluster() connects at once, to learn the slot map
        return RedisCluster.from_url(
            urllib.parse.urlunsplit(parts._replace(path="")),
            socket_timeout=timeout,
            socket_connect_timeout=min(CONNECT_TIMEOUT, timeout),
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), CLUSTER_RETRIES),
            decode_responses=False,
        )
    except (rx.RedisError, rx.RedisClusterException) as exc:
        raise BackendUnavailableError(
            f"Redis Cluster at redis+cluster://{parts.hostname}:{parts.port} is unavailable: {exc}"
        ) from exc


class RedisEngine(Engine):
    """Keys as Redis strings ``{prefix}:{key}``. ``list`` order: by key (code point order).

    ``client`` is a redis-py ``Redis`` (or ``RedisCluster``, or anything that satisfies
    :class:`RedisClient`), created with ``decode_responses`` either way; a client made with
    ``decode_responses=True`` cannot return keys or values that are not UTF-8 and fails
    with :class:`~wafs.errors.BackendError` on them. Thread-safe as far as the client is
    (redis-py clients are).

    Every failure surfaces as a :class:`~wafs.errors.BackendError`: an unreachable,
    paused, loading or timed-out server as :class:`~wafs.errors.BackendUnavailableError`,
    raised from the redis-py exception. Keys returned by :meth:`list` and
    :meth:`iter_keys` are the stored ones, even when another client wrote keys that break
    the key rules (``a//b``); consumers filter them with :func:`wafs.keys.is_valid_key`.
    """

    ordering = "key"

    def __init__(self, client: RedisClient, prefix: str = DEFAULT_PREFIX, *,
                 enable_notifications: bool = False) -> None:
        """``enable_notifications``: let :meth:`watch` turn on keyspace notifications (``Kg$``)."""
        if not isinstance(prefix, str):
            raise TypeError(f"prefix must be a str, not {type(prefix).__name__}")
        self.client = client
        self.prefix = prefix
        self._base = _raw(prefix) + b":"
        self._mget = getattr(client, "mget_nonatomic", None) or client.mget
        self._mset = getattr(client, "mset_nonatomic", None) or client.mset
        self._owns_client = False
        self.enable_notifications = enable_notifications

    @classmethod
    def from_url(cls, url: str) -> RedisEngine:
        """Open ``redis://[user:pass@]host:port/db?prefix=wa:default&timeout=5&notifications=enable``.

        ``rediss://`` and ``unix:///path/redis.sock?db=0`` work as redis-py parses them; every
        other query parameter goes to redis-py. ``redis+cluster://[user:pass@]host:port?prefix=…``
        opens a ``RedisCluster`` from that startup node (it discovers the others; same
        ``prefix`` and ``timeout``; no database number; see docs/cluster.md). ``prefix`` defaults to ``wa:default``,
        ``timeout`` (seconds per command) to 5. ``notifications=enable`` lets :meth:`watch` turn
        on the server's keyspace notifications (``enable_notifications=True``). The client is created here, with
        ``decode_responses=False``, and closed by :meth:`close`.
        """
        parts = urllib.parse.urlsplit(url)
        query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        options = dict(query)
        prefix = options.get("prefix", DEFAULT_PREFIX)
        try:
            timeout = float(options.get("timeout", DEFAULT_TIMEOUT))
        except ValueError:
            raise ValueError(f"timeout in {url!r} must be a number of seconds") from None
        if not timeout > 0:
            raise ValueError(f"timeout in {url!r} must be > 0")
        notifications = options.get("notifications", "")
        if notifications not in ("", "enable"):
            raise ValueError(f"notifications in {url!r} must be 'enable' (or left out)")
        rest = urllib.parse.urlencode([(name, value) for name, value in query if name not in _URL_OPTIONS])
        if parts.scheme.lower() == "redis+cluster":
            client = _cluster_client(parts._replace(scheme="redis", query=rest), timeout)
        else:
            client = redis.Redis.from_url(
                urllib.parse.urlunsplit(parts._replace(query=rest)),
                socket_timeout=timeout,
                socket_connect_timeout=min(CONNECT_TIMEOUT, timeout),
                retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), RETRIES, supported_errors=(rx.ConnectionError,)),
                decode_responses=False,
            )
        engine = cls(client, prefix, enable_notifications=notifications == "enable")
        engine._owns_client = True
        return engine

    # --- helpers -------------------------------------------------------------------------------

    def _full(self, key: str) -> bytes:
        return self._base + _raw(key)

    @contextlib.contextmanager
    def _translated(self, action: str) -> Iterator[None]:
        """Turn every redis-py failure inside the block into the matching wafs error."""
        where = _describe(self.client)
        try:
            yield
        except WafsError:
            raise
        except (rx.AuthenticationError, rx.AuthorizationError) as exc:
            raise BackendError(f"Redis at {where} refused the credentials ({action}): {exc}") from exc
        except (rx.ConnectionError, rx.TimeoutError, rx.TryAgainError, rx.ClusterDownError, rx.ReadOnlyError,
                rx.SlotNotCoveredError) as exc:
            raise BackendUnavailableError(f"Redis at {where} is unavailable ({action}): {exc}") from exc
        except rx.OutOfMemoryError as exc:
            raise NoSpaceError(f"Redis at {where} is out of memory ({action}): {exc}") from exc
        except (rx.RedisError, rx.RedisClusterException) as exc:
            raise BackendError(f"Redis at {where} failed ({action}): {exc}") from exc
        except UnicodeDecodeError as exc:
            raise BackendError(
                f"Redis at {where} returned data that is not UTF-8 ({action}); "
                "a client created with decode_responses=False can read such keys"
            ) from exc

    def _value(self, reply: bytes | str | None, key: str) -> str | None:
        if reply is None or isinstance(reply, str):
            return reply
        try:
            return reply.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BackendError(
                f"the value of {self.prefix}:{key} in Redis at {_describe(self.client)} is not UTF-8 text"
            ) from exc

    def _scan(self, start: bytes) -> Iterator[bytes]:
        """Yield each full key starting with ``start`` once, as bytes, streaming one SCAN pass."""
        seen: set[bytes] = set()
        pattern = _glob_escape(start) + b"*"
        with self._translated(f"scan {_text(start)}*"):
            replies = (self._scan_cluster(pattern) if isinstance(self.client, RedisCluster)
                       else self.client.scan_iter(match=pattern, count=CHUNK))
            for reply in replies:
                full = _as_bytes(reply)
                if full.startswith(start) and full not in seen:
                    seen.add(full)
                    yield full

    def _scan_cluster(self, pattern: bytes) -> Iterator[bytes | str]:
        """SCAN every primary of the cluster with its own cursor; repeat while the layout moved.

        redis-py's ``RedisCluster.scan_iter`` also visits every primary, but it never notices
        a failover or a slot moving mid-pass, when a key can leave a node not yet scanned for
        one already scanned. Here every primary's own view of its slots (migrations included)
        is read before and after the pass: when it changed, the client refreshes its slot map
        and the pass is repeated (the caller drops repeats). While a slot is migrating, the
        node it leaves is scanned before the node it goes to, so a key moving during the pass
        is met on one of them. A node that cannot be reached ends the pass the same way; after
        :data:`CLUSTER_PASSES` passes the error (or ``CLUSTERDOWN``) is raised.
        """
        client = self.client
        assert isinstance(client, RedisCluster)
        for attempt in range(1, CLUSTER_PASSES + 1):
            try:
                before = self._cluster_layout()
                order = sorted(client.get_primaries(),
                               key=lambda node: (not _migrates_out(before[node.name]), _migrates_in(before[node.name])))
                for node in order:
                    yield from client.get_redis_connection(node).scan_iter(match=pattern, count=CHUNK)
                if self._cluster_layout() == before:
                    return
            except (rx.ConnectionError, rx.TimeoutError):
                if attempt == CLUSTER_PASSES:
                    raise
            client.nodes_manager.initialize()
            time.sleep(CLUSTER_PAUSE * attempt)
        raise rx.ClusterDownError(f"the slot layout kept changing over {CLUSTER_PASSES} SCAN passes")

    def _cluster_layout(self) -> dict[str, tuple[str, ...]]:
        """``{node name: its own CLUSTER NODES line}`` for every primary the client knows."""
        client = self.client
        assert isinstance(client, RedisCluster)
        return {
            node.name: _layout_line(client.get_redis_connection(node).execute_command("CLUSTER", "NODES"))
            for node in client.get_primaries()
        }

    def _cascade(self, prefixes: Iterable[str]) -> None:
        wanted = {_raw(prefix) for prefix in prefixes}
        if not wanted:
            return
        base = len(self._base)
        start = self._base + os.path.commonprefix(sorted(wanted))
        doomed = (full for full in self._scan(start) if _under_any(full[base:], wanted))
        with self._translated("cascade delete"):
            while batch := [full for _, full in zip(range(CHUNK), doomed)]:
                self.client.delete(*batch)

    # --- the contract ----------------------------------------------------------------------

    def get(self, key: str) -> str | None:
        with self._translated(f"get {key!r}"):
            reply = self.client.get(self._full(key))
        return self._value(reply, key)

    def set(self, key: str, value: str | None) -> None:
        if value is None:
            self._cascade([key])
            return
        with self._translated(f"set {key!r}"):
            self.client.set(self._full(key), value.encode("utf-8"))

    def list(self, prefix: str = "", offset: int = 0, limit: int | None = 50) -> list[str]:
        """Keys under ``prefix`` in code point order; reads the whole match set, then pages it."""
        base = len(self._base)
        keys = sorted(_text(full[base:]) for full in self._scan(self._full(prefix)))
        return keys[offset:None if limit is None else offset + limit]

    # --- mixins, overridden for speed --------------------------------------------------------

    def iter_keys(self, prefix: str = "") -> Iterator[str]:
        """Stream the keys under ``prefix`` in SCAN order, each once."""
        base = len(self._base)
        return (_text(full[base:]) for full in self._scan(self._full(prefix)))

    def get_many(self, keys: Iterable[str]) -> dict[str, str | None]:
        keys = list(keys)
        replies: dict[str, bytes | str | None] = {}
        with self._translated(f"read {len(keys)} keys"):
            for chunk in _chunks(keys):
                replies.update(zip(chunk, self._mget([self._full(key) for key in chunk])))
        return {key: self._value(replies[key], key) for key in keys}

    def set_many(self, items: Mapping[str, str]) -> None:
        """MSET per chunk of 1000 keys: each chunk is atomic, the whole call is not."""
        pairs = [(self._full(key), value.encode("utf-8")) for key, value in items.items()]
        with self._translated(f"write {len(pairs)} keys"):
            for chunk in _chunks(pairs):
                self._mset(dict(chunk))

    def sizes(self, keys: Iterable[str]) -> dict[str, int | None]:
        """STRLEN in one pipeline per 50,000 keys (a whole directory for ``ls -l``); EXISTS (a
        second round trip) only for the zero lengths."""
        keys = list(keys)
        lengths: dict[str, int | None] = {}
        with self._translated(f"size {len(keys)} keys"):
            for chunk in _chunks(keys, SIZES_CHUNK):
                pipe = self.client.pipeline(transaction=False)
                for key in chunk:
                    pipe.strlen(self._full(key))
                lengths.update(zip(chunk, pipe.execute()))
            zero = [key for key in keys if lengths[key] == 0]
            for chunk in _chunks(zero):
                pipe = self.client.pipeline(transaction=False)
                for key in chunk:
                    pipe.exists(self._full(key))
                for key, exists in zip(chunk, pipe.execute()):
                    lengths[key] = 0 if exists else None
        return {key: lengths[key] for key in keys}

    def delete(self, key: str) -> None:
        with self._translated(f"delete {key!r}"):
            self.client.delete(self._full(key))

    def delete_many(self, keys: Iterable[str]) -> None:
        """DEL in chunks of exactly these keys, as listed (surrogate-escaped bytes included)."""
        fulls = []
        for key in keys:
            try:
                fulls.append(self._full(key))
            except UnicodeEncodeError:
                continue  # not a name Redis could hold: nothing to delete
        with self._translated(f"delete {len(fulls)} keys"):
            for chunk in _chunks(fulls):
                self.client.delete(*chunk)

    def delete_prefixes(self, prefixes: Iterable[str]) -> None:
        """Cascade every prefix in ONE SCAN pass (matching their longest common prefix)."""
        self._cascade(prefixes)

    def watch(self, on_change: Callable[[str | None, bool], None]) -> Watch | None:
        """Follow this prefix through Redis keyspace notifications (``__keyspace@{db}__:{prefix}:*``).

        Needs ``notify-keyspace-events`` with ``K`` and ``g$`` (or ``A``). When the server has
        them off, returns ``None`` (callers poll) unless the engine was made with
        ``enable_notifications=True``: then ``CONFIG SET`` adds ``Kg$`` to the server's flags.
        On a ``RedisCluster`` client, every primary is subscribed (:class:`RedisClusterWatch`)
        and every primary must have them (enabling sets them on every node, replicas too).
        Also ``None`` for clients that are neither and when ``CONFIG GET`` is refused (managed
        servers). Raises :class:`~wafs.errors.BackendError` when Redis cannot be reached.
        """
        if isinstance(self.client, RedisCluster):
            with self._translated("subscribe to keyspace notifications on every primary"):
                return _watch_cluster(self.client, self._base, on_change, self.enable_notifications)
        if not isinstance(self.client, redis.Redis):
            return None
        with self._translated("read notify-keyspace-events"):
            if not _notifications_on(self.client, self.enable_notifications):
                return None
            db = self.client.connection_pool.connection_kwargs.get("db", 0)
            return RedisWatch(self.client, db, self._base, on_change)

    def close(self) -> None:
        """Close the client if :meth:`from_url` created it; a client passed in is left open."""
        if self._owns_client:
            with self._translated("close"):
                self.client.close()  # type: ignore[attr-defined]

    def __repr__(self) -> str:
        return f"RedisEngine({_describe(self.client)}, prefix={self.prefix!r})"


__all__ = ["DEFAULT_PREFIX", "DEFAULT_TIMEOUT", "RedisClient", "RedisClusterWatch", "RedisEngine", "RedisWatch", "notifications_cover"]
