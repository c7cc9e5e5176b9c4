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
import importlib
import itertools
import queue
import re
import threading
import time
import urllib.parse
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast

import redis
from redis import exceptions as rx
from redis.backoff import ExponentialBackoff
from redis.cluster import RedisCluster
from redis.retry import Retry

from ..engine import Engine, Watch
from ..errors import (
    BackendError,
    BackendUnavailableError,
    InvalidValueError,
    NoSpaceError,
    ValueTooLargeError,
    WafsError,
)
from ..urls import WAFS, query_parameters, redact, with_query

if TYPE_CHECKING:
    from .redis_feed import TOPOLOGY_POLL, RedisClusterWatch, RedisWatch, notifications_cover

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
#: The lengths of KEYS (-1: no such key) in one round trip: STRLEN is 0 for a missing key too.
_SIZES_SCRIPT = """
local sizes = {}
for i, key in ipairs(KEYS) do
  local length = redis.call('STRLEN', key)
  if length == 0 and redis.call('EXISTS', key) == 0 then length = -1 end
  sizes[i] = length
end
return sizes
"""
#: Cluster: attempts of a command after a dropped node or ``CLUSTERDOWN`` (the client refreshes
#: its slot map between them; ``MOVED``/``ASK`` redirections are followed on top of these).
CLUSTER_RETRIES = 3
#: Cluster: SCAN passes over every primary when the slot layout changes under a pass
#: (failover, resharding), and the pause before each repeat (seconds).
CLUSTER_PASSES = 4
CLUSTER_PAUSE = 0.25
#: Times a SCAN pass over one server starts again from cursor 0 when the server restarted
#: under it (a new ``run_id``), before the scan fails with BackendUnavailableError.
SCAN_RESTARTS = 3

_GLOB_SPECIAL = frozenset(b"*?[]\\")
#: The query parameters of a Redis URL and who takes them: wafs, or redis-py (passed on).
URL_PARAMETERS: dict[str, str] = {
    **dict.fromkeys(("prefix", "timeout", "notifications"), WAFS),
    **dict.fromkeys(("db", "username", "password", "client_name", "health_check_interval",
                     "socket_keepalive", "protocol", "ssl_cert_reqs", "ssl_ca_certs", "ssl_ca_path",
                     "ssl_certfile", "ssl_keyfile", "ssl_password", "ssl_check_hostname"), "redis-py"),
}
#: Redis refuses a bulk string longer than this (``proto-max-bulk-len``, 512 MiB by default).
MAX_VALUE_BYTES = 512 * 1024 * 1024
_T = TypeVar("_T")


class RedisClient(Protocol):
    """What RedisEngine calls on its client: a subset of redis-py's ``Redis`` and ``RedisCluster``.

    Keys and values are passed as ``bytes``; replies may be ``bytes`` or ``str`` (a client
    created with ``decode_responses=True``). On a client that has ``mget_nonatomic`` /
    ``mset_nonatomic`` (``RedisCluster``), those are used instead of ``mget`` / ``mset``.
    Pipelines are used for ``strlen``, ``exists``, and ``info`` with ``scan`` (see
    :func:`_scan_server`). A client that also has ``eval`` reads sizes with a script.
    """

    def get(self, name: bytes) -> bytes | str | None: ...

    def set(self, name: bytes, value: bytes, *, nx: bool = False) -> Any: ...

    def mget(self, keys: Sequence[bytes]) -> list[bytes | str | None]: ...

    def mset(self, mapping: Mapping[bytes, bytes]) -> Any: ...

    def delete(self, *names: bytes) -> Any: ...

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


def _common_prefix(names: Collection[bytes]) -> bytes:
    """The longest prefix shared by all of ``names`` (byte by byte, not by segment); not empty."""
    low, high = min(names), max(names)  # the common prefix of all is that of the extremes
    for index, (a, b) in enumerate(zip(low, high, strict=False)):  # stops at the shorter
        if a != b:
            return low[:index]
    return low


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


class _Restarted(Exception):
    """A SCAN was answered by another life of the server than the one its pass began on."""


def _scan_server(client: Any, pattern: bytes) -> Iterator[list[bytes | str]]:
    """One SCAN pass over the server of ``client`` (a ``redis.Redis``), a reply at a time, or
    :class:`_Restarted`.

    A SCAN cursor means something only to the server life that returned it, and redis-py's
    retry resends a SCAN after a reconnect, to a server that may have restarted meanwhile
    (from a dump: the same keys, another order) and answers the old cursor with a partial
    pass. So every SCAN goes in one pipeline with ``INFO server``: both replies come from the
    same connection, hence the same life, and a ``run_id`` other than the first reply's
    raises :class:`_Restarted`. Keys yielded before that may repeat in a new pass.
    """
    cursor = 0
    life = None
    while True:
        pipe = client.pipeline(transaction=False)
        pipe.info("server")
        pipe.scan(cursor, match=pattern, count=CHUNK)
        info, (cursor, replies) = pipe.execute()
        if life is None:
            life = info.get("run_id")
        elif info.get("run_id") != life:
            raise _Restarted(f"run_id {life} became {info.get('run_id')}")
        yield replies
        if int(cursor) == 0:
            return


def _read_ahead(items: Iterator[_T], depth: int = 8) -> Iterator[_T]:
    """``items``, produced by a thread of their own up to ``depth`` ahead: the server works
    on the next SCAN while the caller handles this one (1.5M keys into a mount's tree: 7.8 s
    one after the other). The producer's exception is raised here; closing this generator
    stops the producer."""
    handoff: queue.Queue[tuple[bool, Any]] = queue.Queue(depth)
    stopped = threading.Event()

    def hand(message: tuple[bool, Any]) -> bool:
        while not stopped.is_set():
            with contextlib.suppress(queue.Full):
                handoff.put(message, timeout=0.1)
                return True
        return False

    def produce() -> None:
        try:
            for item in items:
                if not hand((True, item)):
                    return
            hand((False, None))
        except BaseException as exc:
            hand((False, exc))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    threading.Thread(target=produce, name="wafs-scan", daemon=True).start()
    try:
        while True:
            more, item = handoff.get()
            if more:
                yield item
            elif item is not None:
                raise item
            else:
                return
    finally:
        stopped.set()


#: redis-py errors of a server that cannot answer now (down, timed out, loading, failing over).
_UNAVAILABLE = (rx.ConnectionError, rx.TimeoutError, rx.TryAgainError, rx.ClusterDownError, rx.ReadOnlyError,
                rx.SlotNotCoveredError)
_REFUSED = (rx.AuthenticationError, rx.AuthorizationError)
#: How Redis says a client gave no credentials at all (RESP2 ``NOAUTH``, RESP3 ``HELLO``).
_NO_CREDENTIALS = re.compile(r"NOAUTH|authentication required|HELLO must be called with the client already "
                             r"authenticated", re.IGNORECASE)


@contextlib.contextmanager
def _translated(where: str, action: str) -> Iterator[None]:
    """Turn every redis-py failure inside the block into the matching wafs error, raised from it.

    The one place this module translates redis-py's errors (the change feed lets them reach
    :meth:`RedisEngine.watch`, which calls this). ``where`` names the server, ``action`` what
    was being done. A ``RedisClusterException`` raised from a connection failure (no startup
    node answered) counts as the failure it was raised from.
    """
    try:
        yield
    except WafsError:
        raise
    except (rx.RedisError, rx.RedisClusterException) as exc:
        cause = exc.__cause__ if isinstance(exc, rx.RedisClusterException) else exc
        if isinstance(cause, _REFUSED) and _NO_CREDENTIALS.search(str(cause)):
            raise BackendError(
                f"Redis at {where} requires a password: authentication required ({action}); give it in the "
                "URL (redis://:PASSWORD@host…), best kept off the command line (--engine-file or WAFS_ENGINE)"
            ) from exc
        if isinstance(cause, _REFUSED):
            raise BackendError(f"Redis at {where} refused the credentials ({action}): {exc}") from exc
        if isinstance(cause, _UNAVAILABLE) or isinstance(exc, _UNAVAILABLE):
            raise BackendUnavailableError(f"Redis at {where} is unavailable ({action}): {exc}") from exc
        if isinstance(exc, rx.OutOfMemoryError):
            raise NoSpaceError(f"Redis at {where} is out of memory ({action}): {exc}") from exc
        raise BackendError(f"Redis at {where} failed ({action}): {exc}") from exc
    except UnicodeDecodeError as exc:  # a decode_responses=True client met bytes another client wrote
        raise InvalidValueError(
            f"Redis at {where} returned a key or value that is not UTF-8 text ({action}); "
            "a client created with decode_responses=False can read such keys"
        ) from exc


def _cluster_client(parts: urllib.parse.SplitResult, timeout: float) -> RedisCluster:
    """A ``RedisCluster`` from the startup node in ``parts`` (a ``redis://`` URL without a database)."""
    if parts.path not in ("", "/", "/0"):
        raise ValueError(f"a Redis Cluster has no database number: {parts.path!r} in a redis+cluster:// URL")
    # Unlike Redis(), RedisCluster() connects at once, to learn the slot map.
    with _translated(f"redis+cluster://{parts.hostname}:{parts.port}", "connect"):
        return RedisCluster.from_url(
            urllib.parse.urlunsplit(parts._replace(path="")),
            socket_timeout=timeout,
            socket_connect_timeout=min(CONNECT_TIMEOUT, timeout),
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), CLUSTER_RETRIES),
            decode_responses=False,
        )


class RedisEngine(Engine):
    """Keys as Redis strings ``{prefix}:{key}``. ``list`` order: by key (code point order).

    ``client`` is a redis-py ``Redis`` (or ``RedisCluster``, or anything that satisfies
    :class:`RedisClient`), created with ``decode_responses`` either way; a client made with
    ``decode_responses=True`` cannot return keys or values that are not UTF-8 and fails
    with :class:`~wafs.errors.InvalidValueError` on them. Thread-safe as far as the client is
    (redis-py clients are).

    A stored value that is not UTF-8 text raises :class:`~wafs.errors.InvalidValueError`
    (permanent: retrying cannot help). Every failure of the server surfaces as a
    :class:`~wafs.errors.BackendError`: an unreachable,
    paused, loading or timed-out server as :class:`~wafs.errors.BackendUnavailableError`,
    raised from the redis-py exception. Keys returned by :meth:`list` and
    :meth:`iter_keys` are the stored ones, even when another client wrote keys that break
    the key rules (``a//b``); consumers filter them with :func:`wafs.keys.is_valid_key`.
    """

    ordering = "key"

    def __init__(self, client: RedisClient, prefix: str = DEFAULT_PREFIX, *,
                 enable_notifications: bool = False) -> None:
        """``enable_notifications``: let :meth:`watch` turn on keyspace notifications (``Kg$xe``)."""
        if not isinstance(prefix, str):
            raise TypeError(f"prefix must be a str, not {type(prefix).__name__}")
        self.client = client
        self.prefix = prefix
        self._base = _raw(prefix) + b":"
        self._mget = getattr(client, "mget_nonatomic", None) or client.mget
        self._mset = getattr(client, "mset_nonatomic", None) or client.mset
        self._owned: redis.Redis | RedisCluster | None = None  # the client from_url made
        # Lua scripts see one node's keys only; a server may refuse scripts (ACL, renamed EVAL).
        self._scripts = hasattr(client, "eval") and not isinstance(client, RedisCluster)
        self.enable_notifications = enable_notifications

    @classmethod
    def from_url(cls, url: str) -> RedisEngine:
        """Open ``redis://[user:pass@]host:port/db?prefix=wa:default&timeout=5&notifications=enable``.

        ``rediss://`` and ``unix:///path/redis.sock?db=0`` work as redis-py parses them. Query
        parameters are those of :data:`URL_PARAMETERS`: wafs' own, and redis-py's (``db``,
        ``client_name``, ``ssl_*``…) passed on; any other is a :class:`ValueError` listing them. ``redis+cluster://[user:pass@]host:port?prefix=…``
        opens a ``RedisCluster`` from that startup node (it discovers the others; same
        ``prefix`` and ``timeout``; no database number; see docs/cluster.md). ``prefix``
        defaults to ``wa:default``, ``timeout`` (seconds per command) to 5.
        ``notifications=enable`` lets :meth:`watch` turn on the server's keyspace notifications
        (``enable_notifications=True``). The client is created here, with
        ``decode_responses=False``, and closed by :meth:`close`.
        """
        options, passed_on = query_parameters(url, URL_PARAMETERS)
        prefix = options.get("prefix", DEFAULT_PREFIX)
        try:
            timeout = float(options.get("timeout", DEFAULT_TIMEOUT))
        except ValueError:
            raise ValueError(f"timeout in {redact(url)!r} must be a number of seconds") from None
        if not timeout > 0:
            raise ValueError(f"timeout in {redact(url)!r} must be > 0")
        notifications = options.get("notifications", "")
        if notifications not in ("", "enable"):
            raise ValueError(f"notifications in {redact(url)!r} must be 'enable' (or left out)")
        client: redis.Redis | RedisCluster
        if url.partition("://")[0].lower() == "redis+cluster":
            parts = urllib.parse.urlsplit(url)._replace(scheme="redis")
            client = _cluster_client(parts._replace(query=urllib.parse.urlencode(passed_on)), timeout)
        else:
            try:
                client = redis.Redis.from_url(
                    with_query(url, passed_on),
                    socket_timeout=timeout,
                    socket_connect_timeout=min(CONNECT_TIMEOUT, timeout),
                    retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), RETRIES,
                                supported_errors=(rx.ConnectionError,)),
                    decode_responses=False,
                )
            except TypeError as exc:  # a redis-py parameter this kind of connection does not take
                raise ValueError(f"redis-py refused a parameter of {redact(url)!r}: {exc}") from None
        engine = cls(client, prefix, enable_notifications=notifications == "enable")
        engine._owned = client
        return engine

    # --- helpers -------------------------------------------------------------------------------

    def _full(self, key: str) -> bytes:
        return self._base + _raw(key)

    def _translated(self, action: str) -> contextlib.AbstractContextManager[None]:
        return _translated(_describe(self.client), action)

    @staticmethod
    def _encoded(key: str, value: str) -> bytes:
        """``value`` as UTF-8, or :class:`ValueTooLargeError` at once past Redis' 512 MiB limit
        (the server would drop the connection after reading it all, and every retry too)."""
        if len(value) > MAX_VALUE_BYTES:  # at least one byte per character: too large, not encoded
            size = len(value)
        else:
            data = value.encode("utf-8")
            if len(data) <= MAX_VALUE_BYTES:
                return data
            size = len(data)
        raise ValueTooLargeError(
            f"the value of {key!r} is {size / 2**20:.0f} MiB or more; Redis holds at most "
            f"{MAX_VALUE_BYTES // 2**20} MiB per value"
        )

    def _value(self, reply: bytes | str | None, key: str) -> str | None:
        if reply is None or isinstance(reply, str):
            return reply
        try:
            return reply.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidValueError(
                f"the value of {self.prefix}:{key} in Redis at {_describe(self.client)} is not UTF-8 text "
                f"(byte 0x{reply[exc.start]:02x} at offset {exc.start}; written by another client)"
            ) from exc

    def _scan(self, start: bytes, unique: bool = True) -> Iterator[list[bytes]]:
        """Yield each full key starting with ``start``, as bytes, streaming one SCAN pass a
        batch at a time: once each when ``unique``, else as often as SCAN returns it (no set of
        the keys seen is kept: ~120 bytes per key, which a daemon keeps as a fragmented heap).

        The pass completes against one server life: when the server restarted under it, the
        pass starts again from cursor 0 (keys already yielded are not yielded again if
        ``unique``), at most :data:`SCAN_RESTARTS` times, then :class:`BackendUnavailableError`.
        Never a partial pass.
        """
        seen: set[bytes] | None = set() if unique else None
        pattern = _glob_escape(start) + b"*"
        with self._translated(f"scan {_text(start)}*"):
            for _ in range(SCAN_RESTARTS + 1):
                batches = _read_ahead(self._scan_cluster(pattern) if isinstance(self.client, RedisCluster)
                                      else _scan_server(self.client, pattern))
                try:
                    for replies in batches:
                        if replies and not isinstance(replies[0], bytes):  # a decoding client
                            replies = [_as_bytes(reply) for reply in replies]
                        fulls = cast(list[bytes], replies)
                        if seen is None:
                            yield [full for full in fulls if full.startswith(start)]
                            continue
                        fresh = [full for full in fulls if full not in seen and full.startswith(start)]
                        before = len(seen)
                        seen.update(fresh)
                        if len(seen) - before != len(fresh):  # the reply repeats a key
                            fresh = list(dict.fromkeys(fresh))
                        yield fresh
                    return
                except _Restarted as exc:
                    restarted = exc
            raise BackendUnavailableError(
                f"Redis at {_describe(self.client)} restarted during each of {SCAN_RESTARTS + 1} SCAN passes "
                f"of {_text(start)}* ({restarted})"
            )

    def _scan_cluster(self, pattern: bytes) -> Iterator[list[bytes | str]]:
        """SCAN every primary of the cluster with its own cursor; repeat while the layout moved.

        redis-py's ``RedisCluster.scan_iter`` also visits every primary, but it never notices
        a failover or a slot moving mid-pass, when a key can leave a node not yet scanned for
        one already scanned. Here every primary's own view of its slots (migrations included)
        is read before and after the pass: when it changed, the client refreshes its slot map
        and the pass is repeated (the caller drops repeats). While a slot is migrating, the
        node it leaves is scanned before the node it goes to, so a key moving during the pass
        is met on one of them. A node that cannot be reached, or that restarted during its
        SCAN (:func:`_scan_server`), ends the pass the same way; after :data:`CLUSTER_PASSES`
        passes the error (or ``CLUSTERDOWN``) is raised.
        """
        client = self.client
        assert isinstance(client, RedisCluster)
        for attempt in range(1, CLUSTER_PASSES + 1):
            try:
                before = self._cluster_layout()
                order = sorted(client.get_primaries(), key=lambda node: (
                    not _migrates_out(before[node.name]), _migrates_in(before[node.name])))
                for node in order:
                    yield from _scan_server(client.get_redis_connection(node), pattern)
                if self._cluster_layout() == before:
                    return
            except (rx.ConnectionError, rx.TimeoutError, _Restarted):
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
        start = self._base + _common_prefix(wanted)
        doomed = (full for batch in self._scan(start, unique=False) for full in batch
                  if _under_any(full[base:], wanted))
        with self._translated("cascade delete"):
            while batch := list(itertools.islice(doomed, CHUNK)):
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
            self.client.set(self._full(key), self._encoded(key, value))

    def add(self, key: str, value: str) -> bool:
        """``SET key value NX``: atomic on the server, True when it stored the value."""
        with self._translated(f"add {key!r}"):
            return bool(self.client.set(self._full(key), self._encoded(key, value), nx=True))

    def list(self, prefix: str = "", offset: int = 0, limit: int | None = 50) -> list[str]:
        """Keys under ``prefix`` in code point order; reads the whole match set, then pages it."""
        base = len(self._base)
        keys = sorted(_text(full[base:]) for batch in self._scan(self._full(prefix)) for full in batch)
        return keys[offset:None if limit is None else offset + limit]

    # --- mixins, overridden for speed --------------------------------------------------------

    def iter_keys(self, prefix: str = "") -> Iterator[str]:
        """Stream the keys under ``prefix`` in SCAN order, each once."""
        return self._keys(prefix, unique=True)

    def scan_keys(self, prefix: str = "") -> Iterator[str]:
        """Stream the keys under ``prefix`` in SCAN order, repeated when SCAN repeats them."""
        return self._keys(prefix, unique=False)

    def _keys(self, prefix: str, unique: bool) -> Iterator[str]:
        base = len(self._base)
        for batch in self._scan(self._full(prefix), unique):
            yield from [full[base:].decode("utf-8", "surrogateescape") for full in batch]

    def get_many(self, keys: Iterable[str]) -> dict[str, str | None]:
        """MGET per chunk of 1000 keys; one value that is not UTF-8 fails the whole call."""
        keys = list(keys)
        replies: dict[str, bytes | str | None] = {}
        with self._translated(f"read {len(keys)} keys"):
            for chunk in _chunks(keys):
                replies.update(zip(chunk, self._mget([self._full(key) for key in chunk]), strict=True))
        return {key: self._value(replies[key], key) for key in keys}

    def set_many(self, items: Mapping[str, str]) -> None:
        """MSET per chunk of 1000 keys: each chunk is atomic, the whole call is not."""
        pairs = [(self._full(key), self._encoded(key, value)) for key, value in items.items()]
        with self._translated(f"write {len(pairs)} keys"):
            for chunk in _chunks(pairs):
                self._mset(dict(chunk))

    def sizes(self, keys: Iterable[str]) -> dict[str, int | None]:
        """One server-side script per 1000 keys (STRLEN, and EXISTS for the zero lengths), on a
        server that runs scripts; else STRLEN in one pipeline per 50,000 keys (a whole
        directory for ``ls -l``) and EXISTS only for the zero lengths."""
        keys = list(keys)
        with self._translated(f"size {len(keys)} keys"):
            if self._scripts:
                try:
                    return self._sizes_by_script(keys)
                except (rx.NoPermissionError, rx.NoScriptError, rx.ReadOnlyError):
                    self._scripts = False
                except rx.ResponseError as exc:
                    if "unknown command" not in str(exc).lower():
                        raise
                    self._scripts = False
            return self._sizes_by_pipeline(keys)

    def _sizes_by_script(self, keys: Sequence[str]) -> dict[str, int | None]:
        script: Any = self.client.eval  # type: ignore[attr-defined]  # present: see __init__
        sizes: dict[str, int | None] = {}
        for chunk in _chunks(keys):
            lengths = script(_SIZES_SCRIPT, len(chunk), *(self._full(key) for key in chunk))
            for key, length in zip(chunk, lengths, strict=True):
                sizes[key] = None if length < 0 else length
        return sizes

    def _sizes_by_pipeline(self, keys: Sequence[str]) -> dict[str, int | None]:
        lengths: dict[str, int | None] = {}
        for chunk in _chunks(keys, SIZES_CHUNK):
            pipe = self.client.pipeline(transaction=False)
            for key in chunk:
                pipe.strlen(self._full(key))
            lengths.update(zip(chunk, pipe.execute(), strict=True))
        zero = [key for key in keys if lengths[key] == 0]
        for chunk in _chunks(zero):
            pipe = self.client.pipeline(transaction=False)
            for key in chunk:
                pipe.exists(self._full(key))
            for key, exists in zip(chunk, pipe.execute(), strict=True):
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

        Needs ``notify-keyspace-events`` with ``K`` and ``g$xe`` (or ``A``): every event by
        which a key appears or disappears (``set``, ``del``, ``rename_from``/``rename_to``,
        ``move_from``/``move_to``, ``expired``, ``evicted``…). What no event tells (FLUSHDB,
        FLUSHALL, SWAPDB, a resync from another primary, a reconnect) is told as
        ``on_change(None, True)``, a rescan. When the server lacks some of those flags, returns
        ``None`` (callers poll) unless the engine was made with ``enable_notifications=True``:
        then ``CONFIG SET`` adds the missing ones to the server's flags.
        On a ``RedisCluster`` client, every primary is subscribed (:class:`RedisClusterWatch`)
        and every primary must have them (enabling sets them on every node, replicas too).
        Also ``None`` for clients that are neither and when ``CONFIG GET`` is refused (managed
        servers). Raises :class:`~wafs.errors.BackendError` when Redis cannot be reached.
        """
        from . import redis_feed  # the change feed is imported when first used

        if isinstance(self.client, RedisCluster):
            with self._translated("subscribe to keyspace notifications on every primary"):
                return redis_feed.watch_cluster(self.client, self._base, on_change, self.enable_notifications)
        if not isinstance(self.client, redis.Redis):
            return None
        with self._translated("subscribe to keyspace notifications"):
            return redis_feed.watch_server(self.client, self._base, on_change, self.enable_notifications)

    def close(self) -> None:
        """Close the client if :meth:`from_url` created it; a client passed in is left open."""
        if self._owned is not None:
            with self._translated("close"):
                self._owned.close()

    def __repr__(self) -> str:
        return f"RedisEngine({_describe(self.client)}, prefix={self.prefix!r})"


_FEED_NAMES = frozenset({"TOPOLOGY_POLL", "RedisClusterWatch", "RedisWatch", "notifications_cover"})


def __getattr__(name: str) -> Any:
    # The change feed's names, from the module that holds them since it moved (imported lazily:
    # it imports this module).
    if name in _FEED_NAMES:
        return getattr(importlib.import_module(f"{__package__}.redis_feed"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DEFAULT_PREFIX",
    "DEFAULT_TIMEOUT",
    "TOPOLOGY_POLL",
    "RedisClient",
    "RedisClusterWatch",
    "RedisEngine",
    "RedisWatch",
    "notifications_cover",
]
