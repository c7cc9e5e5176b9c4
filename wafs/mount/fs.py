"""The FUSE operations: a directory tree over any :class:`wafs.Engine`.

Only the engine API is used here; what a store is good at is chosen by the engine's
``listing`` attribute (see :mod:`wafs.mount.tree`). Errors are mapped to errno through
:data:`ERRNO`; anything unexpected becomes ``EIO``, never ``ENOENT``.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import logging
import math
import os
import stat
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import mfusepy

from ..engine import Engine, Watch
from ..errors import (
    BackendError,
    InvalidKeyError,
    InvalidValueError,
    KeyConflictError,
    NoSpaceError,
    WafsError,
)
from ..keys import SEPARATOR
from .sweeper import Sweeper
from .tree import UNKNOWN, VALUE_NAME, Directory, Tree, displayable

log = logging.getLogger(__name__)

#: The one table from wafs errors to errno; the first matching class wins.
ERRNO: tuple[tuple[type[Exception], int], ...] = (
    (InvalidValueError, errno.EILSEQ),
    (InvalidKeyError, errno.EINVAL),
    (KeyConflictError, errno.EEXIST),
    (NoSpaceError, errno.ENOSPC),
    (BackendError, errno.EIO),
)

FUSE_CAP_READDIRPLUS = 1 << 13  # libfuse 3's fuse_common.h

#: Files of one directory read together on the first open in it (bulk engines only).
PREFETCH_KEYS = 256
PREFETCH_BYTES = 4 << 20
UNKNOWN_SIZE_GUESS = 16 << 10


def errno_for(exc: BaseException) -> int:
    """The errno a wafs error becomes in the mount (``EIO`` for anything unknown)."""
    for cls, number in ERRNO:
        if isinstance(exc, cls):
            return number
    return errno.EIO


def _fail(number: int) -> mfusepy.FuseOSError:
    return mfusepy.FuseOSError(number)


def translated(method: Callable[..., Any]) -> Callable[..., Any]:
    """Run a FUSE operation, turning every exception into an errno through :data:`ERRNO`."""

    @functools.wraps(method)
    def operation(self: WafsOperations, *args: Any) -> Any:
        try:
            return method(self, *args)
        except mfusepy.FuseOSError:
            raise
        except WafsError as exc:
            log.warning("%s%r failed: %s", method.__name__, args[:1], exc)
            raise _fail(errno_for(exc)) from exc
        except Exception as exc:
            log.exception("%s%r failed unexpectedly", method.__name__, args[:1])
            raise _fail(errno.EIO) from exc

    return operation


class ValueCache:
    """Recently read values, at most ``max_bytes`` in all, each trusted for ``ttl`` seconds."""

    def __init__(self, max_bytes: int, ttl: float) -> None:
        self.max_bytes = max_bytes
        self.ttl = ttl
        self._items: OrderedDict[str, tuple[bytes, float]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: str) -> bytes | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            if time.monotonic() - item[1] > self.ttl:
                self._pop(key)
                return None
            self._items.move_to_end(key)
            return item[0]

    def fresh(self, key: str, now: float) -> bool:
        """True when ``get(key)`` would return a value at monotonic time ``now`` (a cheap check)."""
        item = self._items.get(key)
        return item is not None and now - item[1] <= self.ttl

    def put(self, key: str, data: bytes) -> None:
        if len(data) > self.max_bytes // 4:
            self.drop(key)
            return
        with self._lock:
            self._pop(key)
            self._items[key] = (data, time.monotonic())
            self._bytes += len(data)
            while self._bytes > self.max_bytes:
                self._pop(next(iter(self._items)))

    def drop(self, key: str) -> None:
        with self._lock:
            self._pop(key)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0

    def _pop(self, key: str) -> None:
        item = self._items.pop(key, None)
        if item is not None:
            self._bytes -= len(item[0])


class KernelSizes:
    """The file sizes the kernel was told in the last ``lifetime`` seconds, by path.

    The kernel trusts a size it was given for its attribute timeout, and reads through its
    page cache only up to that size; a read-only open may use the page cache when the value
    has that size. Entries live between one and two lifetimes. Used from the FUSE thread only.
    """

    def __init__(self, lifetime: float) -> None:
        self.lifetime = lifetime
        self._recent: dict[str, int] = {}
        self._older: dict[str, int] = {}
        self._since = time.monotonic()

    def told(self, path: str, size: int) -> None:
        self._rotate()
        self._recent[path] = size

    def get(self, path: str) -> int | None:
        self._rotate()
        size = self._recent.get(path)
        return self._older.get(path) if size is None else size

    def _rotate(self) -> None:
        now = time.monotonic()
        if now - self._since > self.lifetime:
            self._older = self._recent if now - self._since <= 2 * self.lifetime else {}
            self._recent = {}
            self._since = now


@dataclass
class Handle:
    """An open file: a snapshot of the value, and the pending write if any."""

    key: str
    data: bytes | bytearray
    writable: bool
    page_cache: bool = False  # reads may be served by the kernel's page cache (see KernelSizes)
    dirty: bool = False
    created: bool = False  # the key did not exist before this handle made it
    refused: bool = False  # a commit was refused (not UTF-8): nothing more is written
    lock: threading.Lock = field(default_factory=threading.Lock)


class WafsOperations(mfusepy.Operations):  # type: ignore[misc]  # mfusepy ships no type information
    """mfusepy operations serving ``engine`` as a directory tree."""

    use_ns = True

    def __init__(
        self,
        engine: Engine,
        *,
        read_only: bool = False,
        ttl: float = 1.0,
        cache_bytes: int = 64 << 20,
        file_mode: int = 0o600,
        dir_mode: int = 0o700,
        sweep_delay: float = 0.5,
        attr_timeout: float = 1.0,
    ) -> None:
        self.engine = engine
        self.read_only = read_only
        self.tree = Tree(engine, ttl=ttl)
        self.cache = ValueCache(cache_bytes, ttl)
        self.sweeper = Sweeper(engine, delay=sweep_delay if engine.listing == "bulk" else 0.0)
        self.file_mode = file_mode
        self.dir_mode = dir_mode
        self.uid, self.gid = os.getuid(), os.getgid()
        self.started_ns = time.time_ns()
        self._mtimes: dict[str, int] = {}
        self.kernel_sizes = KernelSizes(attr_timeout)
        self._handles: dict[int, Handle] = {}
        self._next_fh = 1
        self._handles_lock = threading.Lock()
        self._watch: Watch | None = None
        self.on_ready: Callable[[], None] = lambda: None

    def follow_changes(self) -> bool:
        """Patch the tree from the engine's change feed, if it has one; True when it does."""
        self._watch = self.engine.watch(self._changed_outside)
        if self._watch is not None and self.tree.bulk:
            self.tree.ttl = math.inf  # the feed keeps the tree current; a lost event invalidates it
        return self._watch is not None

    def _changed_outside(self, key: str | None, deleted: bool) -> None:
        if key is None:
            self.tree.invalidate()
            self.cache.clear()
            return
        self.cache.drop(key)
        if not displayable(key):
            self.tree.note_hidden(key, deleted)
        elif deleted:
            self.tree.forget(key)
        else:
            self.tree.put(key, UNKNOWN)

    # --- lifecycle ----------------------------------------------------------------------------

    def init_with_config(self, conn: Any, config: Any) -> None:
        if conn is not None and config is not None:  # libfuse 3
            # Our listings carry no attributes, so "plus" entries would only be bigger (about
            # 130 bytes more each): plain READDIR fits more names in each reply.
            conn.want &= ~FUSE_CAP_READDIRPLUS
        self.on_ready()

    def destroy(self, path: str) -> None:
        self.tree.stop()
        if self._watch is not None:
            self._watch.close()
        for handle in list(self._handles.values()):
            try:
                self._commit(handle)
            except Exception:
                log.exception("could not write %r while unmounting", handle.key)
        self.sweeper.close()

    def refresh(self) -> None:
        """Forget cached values and read the store's tree again."""
        self.cache.clear()
        self.tree.invalidate()
        self.tree.refresh()

    # --- paths --------------------------------------------------------------------------------

    @staticmethod
    def _tree_path(path: str) -> str:
        return path.lstrip("/")

    @staticmethod
    def _key_of(tree_path: str) -> str:
        """The key of a path already found in the tree (no checks needed)."""
        if tree_path.endswith(VALUE_NAME) and tree_path.endswith(SEPARATOR + VALUE_NAME):
            return tree_path[: -len(VALUE_NAME) - 1]
        return tree_path

    @staticmethod
    def _key(path: str) -> str:
        """The key a path stands for; ``dir/__value__`` is the key ``dir``."""
        parts = path.strip("/").split(SEPARATOR)
        if parts[-1] == VALUE_NAME and len(parts) > 1:
            parts.pop()
        key = SEPARATOR.join(parts)
        if not displayable(key):
            raise InvalidKeyError(f"{path!r} cannot be a key")
        return key

    def _writable(self) -> None:
        if self.read_only:
            raise _fail(errno.EROFS)

    # --- attributes ---------------------------------------------------------------------------

    def _dir_attrs(self, tree_path: str) -> dict[str, Any]:
        return {
            "st_ino": _inode(tree_path),
            "st_mode": stat.S_IFDIR | self.dir_mode,
            "st_nlink": 1,
            "st_uid": self.uid,
            "st_gid": self.gid,
            "st_size": 0,
            "st_mtime": self.started_ns,
            "st_ctime": self.started_ns,
            "st_atime": self.started_ns,
        }

    def _file_attrs(self, tree_path: str, key: str, size: int) -> dict[str, Any]:
        mtime = self._mtimes.get(key, self.started_ns)
        self.kernel_sizes.told(tree_path, size)
        return {
            "st_ino": _inode(tree_path),
            "st_mode": stat.S_IFREG | self.file_mode,
            "st_nlink": 1,
            "st_uid": self.uid,
            "st_gid": self.gid,
            "st_size": size,
            "st_blocks": (size + 511) // 512,
            "st_mtime": mtime,
            "st_ctime": mtime,
            "st_atime": mtime,
        }

    @translated
    def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
        tree_path = self._tree_path(path)
        if tree_path == "":
            return self._dir_attrs(tree_path)
        if VALUE_NAME in tree_path and VALUE_NAME in tree_path.split(SEPARATOR)[:-1]:
            raise _fail(errno.ENOENT)
        entry = self.tree.lookup(tree_path)
        if isinstance(entry, Directory):
            return self._dir_attrs(tree_path)
        key = self._key_of(tree_path)
        open_size = self._open_size(key)
        if open_size is not None:
            return self._file_attrs(tree_path, key, open_size)
        if entry is None:
            raise _fail(errno.ENOENT)
        size = self._open_size(key, page_cached=True)  # the kernel reads it up to the size it holds
        if size is None:
            size = entry if entry >= 0 else self.tree.file_size(tree_path)
        return self._file_attrs(tree_path, key, size)

    @translated
    def readdir(self, path: str, fh: int) -> list[tuple[str, dict[str, int], int]]:
        tree_path = self._tree_path(path)
        node = self.tree.listing(tree_path)
        if node is None:
            raise _fail(errno.ENOTDIR if self.tree.lookup(tree_path) is not None else errno.ENOENT)
        prefix = tree_path + SEPARATOR if tree_path else ""

        def entry(name: str, kind: int) -> tuple[str, dict[str, int], int]:
            return name, {"st_mode": kind, "st_ino": _inode(prefix + name)}, 0

        with self.tree.lock:
            names = [entry(n, stat.S_IFDIR if isinstance(e, Directory) else stat.S_IFREG)
                     for n, e in node.entries.items()]
            if node.value is not None:
                names.append(entry(VALUE_NAME, stat.S_IFREG))
        parent = tree_path.rpartition(SEPARATOR)[0]
        return [(".", {"st_mode": stat.S_IFDIR, "st_ino": _inode(tree_path)}, 0),
                ("..", {"st_mode": stat.S_IFDIR, "st_ino": _inode(parent)}, 0), *names]

    @translated
    def statfs(self, path: str) -> dict[str, int]:
        huge = 1 << 40
        return {
            "f_bsize": 4096, "f_frsize": 4096, "f_blocks": huge, "f_bfree": huge, "f_bavail": huge,
            "f_files": huge, "f_ffree": huge, "f_favail": huge, "f_namemax": 255,
        }

    # --- reading --------------------------------------------------------------------------------

    def _read_value(self, key: str, tree_path: str) -> bytes | None:
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        keys = [key]
        if self.tree.bulk:  # one round trip for the files a tree walk opens next
            budget = [PREFETCH_BYTES]
            now = time.monotonic()

            def want(other: str, size: int) -> bool:
                cost = size if size >= 0 else UNKNOWN_SIZE_GUESS
                if other == key or cost > budget[0] or self.cache.fresh(other, now):
                    return False
                budget[0] -= cost
                return True

            keys += self.tree.neighbours(tree_path, want, PREFETCH_KEYS)
        values = self.engine.get_many(keys)
        encoded = {k: None if v is None else v.encode("utf-8") for k, v in values.items()}
        for fetched, data in encoded.items():
            if data is not None:
                self.cache.put(fetched, data)
        self.tree.learn_sizes({k: None if data is None else len(data) for k, data in encoded.items()
                               if k not in self._pending_keys()})
        return encoded[key]

    def _pending_keys(self) -> set[str]:
        with self._handles_lock:
            return {h.key for h in self._handles.values() if h.dirty}

    @translated
    def open(self, path: str, flags: int) -> int:
        writable = flags & os.O_ACCMODE != os.O_RDONLY
        if writable or flags & os.O_TRUNC:
            self._writable()
        tree_path = self._tree_path(path)
        entry = self.tree.lookup(tree_path)
        if isinstance(entry, Directory):
            raise _fail(errno.EISDIR)
        key = self._key(path)
        if entry is None and self._open_size(key) is None:
            raise _fail(errno.ENOENT)
        if flags & os.O_TRUNC:
            handle = Handle(key, bytearray(), writable=True, dirty=True)
        else:
            data = self._current(key, tree_path)
            if data is None:
                self.tree.drop(key)
                raise _fail(errno.ENOENT)
            handle = Handle(key, bytearray(data) if writable else data, writable,
                            page_cache=not writable and self.kernel_sizes.get(tree_path) == len(data))
        return self._register(handle)

    def page_cached(self, fh: int) -> bool:
        """True when the kernel may read the open file ``fh`` through its page cache.

        Only read-only opens of a value whose size is the one the kernel holds: it reads a
        cached file up to that size, so any other would come back cut short or padded.
        Every other open is direct I/O, each read served from the handle's snapshot.
        """
        return self._handle(fh).page_cache

    def _current(self, key: str, tree_path: str) -> bytes | None:
        """The value as the mount shows it: an open handle's pending write, else the store's."""
        with self._handles_lock:
            pending = [h for h in self._handles.values() if h.key == key and h.dirty and not h.refused]
        if pending:
            return bytes(pending[-1].data)
        return self._read_value(key, tree_path)

    @translated
    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        return bytes(self._handle(fh).data[offset:offset + size])

    # --- writing --------------------------------------------------------------------------------

    @translated
    def create(self, path: str, mode: int, flags: int = 0) -> int:
        self._writable()
        key = self._key(path)
        self.sweeper.flush_covering(key)
        handle = Handle(key, bytearray(), writable=True, dirty=True, created=True)
        self.tree.put(key, 0)
        return self._register(handle)

    @translated
    def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
        handle = self._handle(fh)
        if not handle.writable:
            raise _fail(errno.EBADF)
        with handle.lock:
            buffer = handle.data
            assert isinstance(buffer, bytearray)
            if offset > len(buffer):
                buffer.extend(bytes(offset - len(buffer)))
            buffer[offset:offset + len(data)] = data
            handle.dirty = True
        return len(data)

    @translated
    def truncate(self, path: str, length: int, fh: int | None = None) -> int:
        self._writable()
        key = self._key(path)
        with self._handles_lock:
            open_writers = [h for h in self._handles.values() if h.key == key and h.writable]
        for handle in open_writers:
            with handle.lock:
                assert isinstance(handle.data, bytearray)  # a writable handle's pending value
                _resize(handle.data, length)
                handle.dirty = True
        if open_writers:
            return 0
        data = self._current(key, self._tree_path(path))
        if data is None:
            raise _fail(errno.ENOENT)
        resized = bytearray(data)
        _resize(resized, length)
        self._store(key, bytes(resized))
        return 0

    @translated
    def flush(self, path: str, fh: int) -> int:
        self._commit(self._handle(fh))
        return 0

    @translated
    def fsync(self, path: str, datasync: int, fh: int) -> int:
        self._commit(self._handle(fh))
        return 0

    @translated
    def release(self, path: str, fh: int) -> int:
        with self._handles_lock:
            handle = self._handles.pop(fh, None)
        if handle is not None:
            self._commit(handle)
        return 0

    def _commit(self, handle: Handle) -> None:
        with handle.lock:
            if not handle.dirty or handle.refused:
                return
            data = bytes(handle.data)
            try:
                data.decode("utf-8")
            except UnicodeDecodeError:
                handle.refused = True
                if handle.created:
                    self.tree.drop(handle.key)
                raise _fail(errno.EILSEQ) from None
            self._store(handle.key, data)
            handle.dirty = False
            handle.created = False

    def _store(self, key: str, data: bytes) -> None:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:  # truncate cut inside a character: refused, nothing stored
            raise _fail(errno.EILSEQ) from None
        self.sweeper.flush_covering(key)
        self.engine.set(key, text)
        self._mtimes[key] = time.time_ns()
        self.tree.put(key, len(data))
        self.cache.put(key, data)

    # --- namespace ------------------------------------------------------------------------------

    @translated
    def unlink(self, path: str) -> int:
        self._writable()
        entry = self.tree.lookup(self._tree_path(path))
        if entry is None:
            raise _fail(errno.ENOENT)
        if isinstance(entry, Directory):
            raise _fail(errno.EISDIR)
        key = self._key(path)
        self.engine.delete(key)
        self._forget(key)
        return 0

    def _forget(self, key: str) -> None:
        self.tree.drop(key)
        self.cache.drop(key)
        self._mtimes.pop(key, None)

    @translated
    def mkdir(self, path: str, mode: int) -> int:
        self._writable()
        key = self._key(path)
        if self.tree.lookup(self._tree_path(path)) is not None:
            raise _fail(errno.EEXIST)
        self.sweeper.flush_covering(key)
        self.tree.mkdir(key)
        return 0

    @translated
    def rmdir(self, path: str) -> int:
        self._writable()
        tree_path = self._tree_path(path)
        node = self.tree.listing(tree_path)
        if node is None:
            raise _fail(errno.ENOTDIR if self.tree.lookup(tree_path) is not None else errno.ENOENT)
        if not node.is_empty():
            raise _fail(errno.ENOTEMPTY)
        key = self._key(path)
        hidden = self.tree.hidden_under(key)
        if hidden:
            self.engine.delete_many(hidden)
        self.sweeper.add(key)
        self.tree.drop_tree(key)  # its files were unlinked one by one: none is in the value cache
        return 0

    @translated
    def rename(self, old: str, new: str) -> int:
        self._writable()
        old_entry = self.tree.lookup(self._tree_path(old))
        if old_entry is None:
            raise _fail(errno.ENOENT)
        if isinstance(old_entry, Directory):
            raise _fail(errno.EXDEV)  # mv falls back to copy and delete
        if isinstance(self.tree.lookup(self._tree_path(new)), Directory):
            raise _fail(errno.EISDIR)
        old_key, new_key = self._key(old), self._key(new)
        if old_key == new_key:
            return 0
        with self._handles_lock:
            writers = [h for h in self._handles.values() if h.key == old_key and h.dirty]
        for handle in writers:
            self._commit(handle)
        data = self._current(old_key, self._tree_path(old))
        if data is None:
            raise _fail(errno.ENOENT)
        self._store(new_key, data)
        self.engine.delete(old_key)
        self._forget(old_key)
        return 0

    @translated
    def chmod(self, path: str, mode: int) -> int:
        self._writable()
        return 0  # modes are fixed by the mount options; accepted so cp -a does not fail

    @translated
    def chown(self, path: str, uid: int, gid: int) -> int:
        self._writable()
        return 0

    @translated
    def utimens(self, path: str, times: tuple[int, int] | None = None) -> int:
        self._writable()
        return 0

    # --- handles ----------------------------------------------------------------------------------

    def _register(self, handle: Handle) -> int:
        with self._handles_lock:
            fh = self._next_fh
            self._next_fh += 1
            self._handles[fh] = handle
        return fh

    def _handle(self, fh: int) -> Handle:
        try:
            return self._handles[fh]
        except KeyError:
            raise _fail(errno.EBADF) from None

    def _open_size(self, key: str, page_cached: bool = False) -> int | None:
        """The size of the newest open file of ``key`` with a pending write (with ``page_cached``:
        read through the page cache instead)."""
        if not self._handles:
            return None
        with self._handles_lock:
            sizes = [len(h.data) for h in self._handles.values() if h.key == key and (
                h.page_cache if page_cached else h.dirty and not h.refused)]
        return sizes[-1] if sizes else None


def _inode(tree_path: str) -> int:
    """A stable inode number for a path, so a file keeps its st_ino however long it is open
    (cp checks that it did not change; libfuse's own numbers change when the kernel forgets a
    node). 62 bits of a hash: the top bit is clear (a positive signed 64-bit number) and bit 1
    is set (never 0, nor 1, the root's); a collision is likely only past billions of keys."""
    if not tree_path:
        return 1
    digest = hashlib.blake2b(tree_path.encode("utf-8", "surrogateescape"), digest_size=8).digest()
    return (int.from_bytes(digest, "big") >> 1) | 2


def _resize(buffer: bytearray, length: int) -> None:
    if length < len(buffer):
        del buffer[length:]
    else:
        buffer.extend(bytes(length - len(buffer)))
