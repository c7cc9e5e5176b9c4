"""The FUSE operations: a directory tree over any :class:`wafs.Engine`, served by inode.

Only the engine API is used here. Errors map to errno through :data:`ERRNO`; anything
unexpected becomes ``EIO``, never ``ENOENT``.

The kernel caches names, attributes, listings and pages, and the daemon owns those caches:
what it told the kernel about each inode is in :mod:`wafs.mount.inodes`, and whenever it
learns of a change (its own commits, the change feed, a value read again) it tells the
kernel exactly what to drop (:mod:`wafs.mount.kernel`). Two modes:

* writable: every ``open`` gets a handle (:mod:`wafs.mount.handles`): a write is committed
  as one ``set`` on close, readers read the value they opened. A read-only open uses the
  page cache when the kernel's pages are of the current version.
* ``--read-only``: ``open`` and ``opendir`` answer ``ENOSYS``, so the kernel sends neither
  again: files are read straight by inode, through the page cache, and a file that changes
  other than by growing gets a new inode (the old one keeps serving the bytes it stood for).
"""

from __future__ import annotations

import errno
import functools
import logging
import math
import os
import stat
import threading
import time
from collections.abc import Callable, Iterable

from ..engine import Engine, Watch
from ..errors import (
    BackendError,
    BackendUnavailableError,
    InvalidKeyError,
    InvalidValueError,
    KeyConflictError,
    NoSpaceError,
    ValueTooLargeError,
    WafsError,
)
from ..keys import SEPARATOR
from . import fuse
from .fuse import Attributes, Entry, FuseError, Opened, SetAttributes
from .handles import Handle, Handles
from .inodes import Inode, InodeTable
from .kernel import KernelCache
from .options import FEED_KERNEL_SECONDS, MountOptions
from .sweeper import Sweeper
from .tree import UNKNOWN, VALUE_NAME, Directory, Tree, displayable
from .values import Value, ValueCache, digest

log = logging.getLogger(__name__)

#: The one table from wafs errors to errno; the first matching class wins.
ERRNO: tuple[tuple[type[Exception], int], ...] = (
    (ValueTooLargeError, errno.EFBIG),
    (InvalidValueError, errno.EILSEQ),
    (InvalidKeyError, errno.EINVAL),
    (KeyConflictError, errno.EEXIST),
    (NoSpaceError, errno.ENOSPC),
    (BackendError, errno.EIO),
)

FUSE_CAP_ATOMIC_O_TRUNC = 1 << 3
FUSE_CAP_AUTO_INVAL_DATA = 1 << 12
FUSE_CAP_WRITEBACK_CACHE = 1 << 16

#: Files of one directory read together on the first read in it (bulk engines only).
PREFETCH_KEYS = 256
PREFETCH_BYTES = 4 << 20
#: The kernel is given the pages of files it holds whose values the daemon has (read ahead),
#: each at most FILL_MAX_BYTES: those of a listing when it asks for the next part, and those
#: next to a file it reads, among this many: a tree walk reads them without a READ.
FILL_SIBLINGS = 64
FILL_MAX_BYTES = 64 << 10
#: Listings whose files' pages wait for the kernel's next request in the directory.
LISTED_KEPT = 64
#: How long the answer to that request waits for those pages to reach the kernel.
FILL_WAIT_SECONDS = 0.002
UNKNOWN_SIZE_GUESS = 16 << 10
_EMPTY = Value(b"", digest(b""), 0.0)


def errno_for(exc: BaseException) -> int:
    """The errno a wafs error becomes in the mount (``EIO`` for anything unknown)."""
    if isinstance(exc, FuseError):
        return exc.errno
    for cls, number in ERRNO:
        if isinstance(exc, cls):
            return number
    return errno.EIO


def _name(raw: bytes) -> str | None:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _join(directory: str, name: str) -> str:
    return f"{directory}{SEPARATOR}{name}" if directory else name


def _key_of(path: str) -> str:
    if path.endswith(SEPARATOR + VALUE_NAME):
        return path[: -len(VALUE_NAME) - 1]
    return path


class Operations(fuse.Filesystem):
    """The requests of one mount of ``engine``."""

    def __init__(self, engine: Engine, options: MountOptions) -> None:
        self.engine = engine
        self.options = options
        self.read_only = options.read_only
        self.tree = Tree(engine, ttl=options.ttl)
        self.cache = ValueCache(options.cache_bytes, options.ttl)
        self.sweeper = Sweeper(engine, delay=options.sweep_delay if engine.listing == "bulk" else 0.0)
        self.kernel = KernelCache()
        self.started_ns = time.time_ns()
        self.inodes = InodeTable(self.started_ns)
        self.handles = Handles()
        self.lock = threading.RLock()
        self.uid, self.gid = os.getuid(), os.getgid()
        self.kernel_seconds = options.ttl
        self._mtimes: dict[str, int] = {}  # keys whose value the daemon saw change: when
        self._listings: dict[int, list[tuple[str, bool]]] = {}  # directory streams being read
        self._watch: Watch | None = None
        self._listed: dict[int, list[tuple[int, str]]] = {}  # the files of a directory's last reply
        #: Files whose pages are queued for the kernel: the inode, and its latest store's token.
        self._filling: dict[int, tuple[Inode, object]] = {}
        #: Reads of keys under way for the change feed or a resync: one flag per read, set once
        #: the mount writes the key (what it wrote is newer than what the read returns).
        self._outside_reads: dict[str, list[list[bool]]] = {}
        self.on_ready: Callable[[], None] = lambda: None
        self.left_undone: list[str] = []  # what destroy() could not do: files unwritten, sweeps given up
        self.tree.on_listed = self._reconcile

    # --- lifecycle ------------------------------------------------------------------------------

    def follow_changes(self) -> bool:
        """Patch the tree from the engine's change feed, if it has one; True when it does.

        With a feed, the kernel keeps names and attributes for long and the daemon drops
        exactly what changed; without one, ``ttl`` bounds how long anything is trusted."""
        self._watch = self.engine.watch(self._changed_outside)
        if self._watch is not None and self.tree.bulk:
            self.tree.ttl = math.inf
            self.cache.ttl = math.inf
            self.kernel_seconds = FEED_KERNEL_SECONDS
        return self._watch is not None

    def load(self) -> None:
        """Read the store's tree (a store that is down fails the mount here)."""
        self.tree.refresh()

    def start(self) -> None:
        """Keep the tree current in the background (without a change feed)."""
        self.tree.start_polling()

    def errno_for(self, exc: Exception) -> int:
        return errno_for(exc)

    def init(self, conn: fuse.ConnInfo) -> None:
        conn.want |= (fuse.FUSE_CAP_READDIRPLUS | FUSE_CAP_AUTO_INVAL_DATA) & conn.capable
        # Without atomic O_TRUNC the kernel truncates with a SETATTR whose reply gives the size
        # it keeps: the committed one. With it, the kernel sets the file's size to 0 itself
        # when a writer opens, and a reader of the kernel's pages of the value meanwhile reads
        # nothing (measured: ``cp -a`` copied an empty file while a shell rewrote it).
        conn.want &= ~(fuse.FUSE_CAP_READDIRPLUS_AUTO | FUSE_CAP_WRITEBACK_CACHE | FUSE_CAP_ATOMIC_O_TRUNC)
        self.on_ready()

    def destroy(self) -> None:
        self.tree.stop()
        if self._watch is not None:
            self._watch.close()
        with self.lock:
            for handle in self.handles:
                try:
                    self._commit(handle)
                except Exception as exc:
                    log.exception("could not write %r while unmounting", handle.inode.key)
                    self.left_undone.append(f"{handle.inode.key} could not be written at the unmount: {exc}")
        self.left_undone.extend(self.sweeper.close())
        self.kernel.detach()

    def refresh(self) -> None:
        """Read the store's tree and every value the kernel holds again (``wafs refresh``)."""
        self.tree.invalidate()
        self.tree.refresh()
        self._verify_known()

    # --- inodes and attributes ------------------------------------------------------------------

    def _inode(self, ino: int) -> Inode:
        with self.lock:
            return self.kernel.in_use(self.inodes, ino)

    def _dir(self, ino: int) -> Inode:
        inode = self._inode(ino)
        if not inode.is_dir:
            raise FuseError(errno.ENOTDIR)
        if not inode.current:
            raise FuseError(errno.ENOENT)  # removed: nothing can be found or made in it
        return inode

    def _dir_attributes(self, inode: Inode, fresh: bool = False, path: str | None = None) -> Attributes:
        """A directory's attributes; its mtime is when its names last changed, so the kernel
        lists it again when that moves. ``fresh``: read its listing first if it is stale.
        ``path``: the inode's, when the caller has it."""
        if path is None:
            path = inode.path
        if fresh and not self.tree.bulk:
            self.tree.listing(path)
        mtime = max(self.started_ns, self.tree.changed_ns(path))
        return Attributes(inode.ino, stat.S_IFDIR | self.options.dir_mode, 0, mtime, 2, self.uid, self.gid)

    def _file_attributes(self, inode: Inode, size: int | None = None) -> Attributes:
        mtime = inode.mtime_ns or self._mtimes.get(inode.key, self.started_ns)
        return Attributes(inode.ino, stat.S_IFREG | self.options.file_mode,
                          inode.size if size is None else size, mtime, 1, self.uid, self.gid)

    def _attributes(self, inode: Inode) -> Attributes:
        return self._dir_attributes(inode) if inode.is_dir else self._file_attributes(inode)

    def _entry(self, inode: Inode) -> Entry:
        # A directory engine's listing is read when it is used: until then its mtime is not
        # known, so the kernel asks for it (getattr) before it trusts a cached listing.
        attr_seconds = 0.0 if inode.is_dir and not self.tree.bulk else self.kernel_seconds
        return Entry(self._attributes(inode), self.kernel_seconds, attr_seconds)

    def _file_inode(self, parent: Inode, name: str, size: int, path: str) -> Inode:
        """The current inode of file ``name`` (at ``path``), with ``size`` from the tree."""
        inode = self.inodes.child(parent, name, is_dir=False, path=path)
        if inode.lookups == 0 and inode.digest is None:
            inode.size = size
            if not inode.mtime_ns:
                inode.mtime_ns = self._mtimes.get(_key_of(path), self.started_ns)
        elif inode.size != size and size >= 0 and not self._writing(inode):
            self._verify(inode)  # the store has another size than the kernel was told
            inode = self.inodes.child(parent, name, is_dir=False, path=path)
        return inode

    def _writing(self, inode: Inode) -> bool:
        return any(handle.dirty for handle in self.handles.of(inode))

    def _being_created(self, inode: Inode) -> bool:
        """An open made this file and has not committed it yet: the store does not have it."""
        return any(handle.created for handle in self.handles.of(inode))

    def _known(self, path: str, is_dir: bool) -> Inode | None:
        """The current inode of ``path`` if the kernel holds it (and every directory above)."""
        node = self.inodes.root
        if path == "":
            return node if is_dir else None
        *parents, name = path.split(SEPARATOR)
        for part in parents:
            found = self.inodes.find(node, part, is_dir=True)
            if found is None:
                return None
            node = found
        return self.inodes.find(node, name, is_dir)

    def _file_of_key(self, key: str) -> Inode | None:
        inode = self._known(key, is_dir=False)
        if inode is None:  # the key is also a directory: its value is dir/__value__
            inode = self._known(_join(key, VALUE_NAME), is_dir=False)
        return inode

    # --- what the daemon learns about values ----------------------------------------------------

    def observe(self, key: str, data: bytes | None) -> Value | None:
        """Record that ``key`` holds ``data`` now (None: nothing) and bring the kernel's
        caches in line: a file that only grew keeps its inode (so does any change while no
        reader can hold the kernel's pages of the old version); otherwise the name gets a
        new inode and the old one keeps serving what it stood for to those who hold it."""
        with self.lock:
            old = self.cache.get(key)
            if data is None:
                self.cache.drop(key)
                value = None
            else:
                value = self.cache.put(key, data)
            inode = self._file_of_key(key)
            if inode is None:
                return value
            if value is None:
                if not self._being_created(inode):
                    self._remove(inode, old)
                return None
            if inode.digest is None:  # nothing of it was read yet: it takes this version
                if inode.size != len(value.data):
                    self._changed(inode, value)
                inode.digest = value.digest
            elif inode.digest != value.digest or inode.size != len(value.data):
                grown = len(value.data) > inode.size and digest(value.data[:inode.size]) == inode.digest
                if grown or not self._pages_held(inode):
                    self._changed(inode, value)
                else:
                    self._replace(inode, old)
            for handle in self.handles.of(inode):
                if not handle.writable:
                    handle.follow(value)
            return value

    def _changed(self, inode: Inode, value: Value) -> None:
        """``inode`` stands for ``value`` from now on; the kernel asks for its attributes
        again, and finding a new size or mtime drops its cached pages."""
        now = time.time_ns()
        inode.size, inode.digest, inode.mtime_ns = len(value.data), value.digest, now
        self._mtimes[inode.key] = now
        inode.unsure = not self.kernel.forget_attributes(inode.ino)
        self._unfill(inode)

    def _unfill(self, inode: Inode) -> None:
        """The pages given to the kernel are no longer ``inode``'s version: a store still
        queued is followed by dropping them (the attributes were dropped at once, before it)."""
        inode.filled = False
        if self._queued(inode):
            del self._filling[inode.ino]
            self.kernel.forget_contents(inode.ino)

    def _queued(self, inode: Inode) -> bool:
        queued = self._filling.get(inode.ino)
        return queued is not None and queued[0] is inode

    def _fill_siblings(self, inode: Inode) -> None:
        """Give the kernel the pages of files next to ``inode`` that it holds, whose values the
        daemon has (read ahead with this one): a tree walk then reads them with no request."""
        parent = inode.parent
        if parent is None:
            return
        self._fill(sibling for sibling in parent.first_held(FILL_SIBLINGS) if sibling is not inode)

    def _fill(self, files: Iterable[Inode]) -> int:
        """Give the kernel the pages of those of ``files`` that it holds whose values the daemon
        has and the kernel was not given yet; return how many were queued."""
        queued = 0
        for file in files:
            if (file.is_dir or file.filled or not file.lookups or not file.current
                    or file.removed or self.inodes.get(file.ino) is not file):
                continue  # a listing's inode may have been replaced since (its ino reused)
            value = self.cache.fresh(file.key)
            if (value is None or not 0 < len(value.data) <= FILL_MAX_BYTES or file.unsure
                    or file.size != len(value.data) or file.digest not in (None, value.digest)):
                continue
            file.digest = value.digest
            file.filled = True
            token = object()
            self._filling[file.ino] = (file, token)
            wanted = functools.partial(self._fills, file, value.digest)
            done = functools.partial(self._filled_out, file.ino, token)
            self.kernel.fill_pages(file.ino, value.data, wanted, done)
            queued += 1
        return queued

    def _fill_listed(self, files: Iterable[tuple[int, str]]) -> int:
        """:meth:`_fill` for the files of a listing's reply, by number and key: only those whose
        values the daemon has are looked at (a number may stand for another path since)."""
        fresh, get = self.cache.fresh, self.inodes.get
        return self._fill(inode for ino, key in files
                          if fresh(key) is not None and (inode := get(ino)) is not None and inode.key == key)

    def _fills(self, inode: Inode, version: int) -> bool:
        with self.lock:
            return (self._queued(inode) and self.inodes.get(inode.ino) is inode
                    and inode.current and inode.digest == version)

    def _filled_out(self, ino: int, token: object) -> None:
        with self.lock:
            queued = self._filling.get(ino)
            if queued is not None and queued[1] is token:  # no later store of it is queued
                del self._filling[ino]

    def _pages_held(self, inode: Inode) -> bool:
        """True when a reader may hold the kernel's pages of ``inode``'s old version.

        Without ``open`` (read-only mounts) the daemon cannot know, so it assumes so."""
        if self.read_only:
            return True
        return any(handle.page_cached for handle in self.handles.of(inode))

    def _replace(self, inode: Inode, old: Value | None) -> None:
        pinned = old.data if old is not None and old.digest == inode.digest else None
        self._mtimes[inode.key] = time.time_ns()
        self.inodes.supersede(inode, pinned)
        if inode.parent is not None:
            self.kernel.forget_entry(inode.parent.ino, inode.name)

    def _remove(self, inode: Inode, old: Value | None) -> None:
        """``inode``'s key is gone: it keeps serving its bytes to those who hold it open, and
        writers still holding it commit nothing (as on a disk)."""
        self._replace(inode, old)
        if inode.parent is not None:
            self.kernel.forget_contents(inode.parent.ino)
        inode.removed = True

    def _verify(self, inode: Inode) -> None:
        """Read ``inode``'s value again (with its neighbours, in one round trip)."""
        key = inode.key
        self._read([key], inode.path)

    def _verify_known(self) -> None:
        """Read again every value the kernel holds an inode of (after lost change events)."""
        with self.lock:
            files = [inode for inode in self.inodes if not inode.is_dir and inode.current]
            directories = [inode for inode in self.inodes if inode.is_dir]
        for start in range(0, len(files), PREFETCH_KEYS):
            self._read_outside([inode.key for inode in files[start:start + PREFETCH_KEYS]])
        for inode in directories:
            self.kernel.forget_attributes(inode.ino)
            self.kernel.forget_contents(inode.ino)

    def _read(self, keys: list[str], path: str) -> dict[str, Value | None]:
        """Read ``keys`` from the store, and the files a tree walk reads next, in one call; the
        kernel gets the pages of those next files that it holds (the walk then reads them with
        no request; not those of ``keys``, which a READ may be waiting for)."""
        wanted = keys
        if self.tree.bulk:
            budget = [PREFETCH_BYTES]
            now = time.monotonic()

            def want(other: str, size: int) -> bool:
                cost = size if size >= 0 else UNKNOWN_SIZE_GUESS
                if other in keys or cost > budget[0] or self.cache.fresh(other, now) is not None:
                    return False
                budget[0] -= cost
                return True

            keys = keys + self.tree.neighbours(path, want, PREFETCH_KEYS)
            try:
                values = self.engine.get_many(keys)
            except BackendUnavailableError:
                raise
            except WafsError:  # one bad neighbour (a value that is not UTF-8) fails only itself
                values = self.engine.get_many(wanted)
        else:
            values = self.engine.get_many(keys)
        seen: dict[str, Value | None] = {}
        sizes: dict[str, int | None] = {}
        for key, text in values.items():
            data = None if text is None else text.encode("utf-8")
            seen[key] = self.observe(key, data)
            sizes[key] = None if data is None else len(data)
        self.tree.learn_sizes(sizes)
        with self.lock:
            self._fill(inode for key in seen
                       if key not in wanted and (inode := self._file_of_key(key)) is not None)
        return seen

    def _current(self, key: str, path: str) -> Value | None:
        """The value of ``key`` in the store now (within ``ttl``)."""
        cached = self.cache.fresh(key)
        if cached is not None:
            return cached
        return self._read([key], path)[key]

    # --- names ----------------------------------------------------------------------------------

    def lookup(self, parent: int, name: bytes) -> Entry:
        directory = self._dir(parent)
        text = _name(name)
        # A name the store lacks: kept by the kernel only when a feed tells of every new one.
        negative = Entry(None, self.options.ttl if self._watch is not None else 0.0, 0.0)
        if text is None:
            return negative
        path = _join(directory.path, text)
        found = self.tree.lookup(path)
        with self.lock:
            if found is None:
                return negative
            if isinstance(found, Directory):
                inode = self.inodes.child(directory, text, is_dir=True)
            else:
                size = found if found >= 0 else self.tree.file_size(path)
                inode = self._file_inode(directory, text, size, path)
                if not self.tree.bulk or not math.isinf(self.cache.ttl):
                    self._revalidate(inode)
                    inode = self.inodes.child(directory, text, is_dir=False)
            inode.lookups += 1
            return self._entry(inode)

    def _revalidate(self, inode: Inode) -> None:
        """Without a change feed: check a file the kernel already holds against the store
        once its value is older than ``ttl``."""
        if inode.lookups and inode.digest is not None and self.cache.fresh(inode.key) is None:
            if not self._writing(inode):
                self._verify(inode)

    def forget(self, forgets: list[tuple[int, int]]) -> None:
        with self.lock:
            filling = [queued[0] for ino, _ in forgets if (queued := self._filling.get(ino)) is not None]
            self.inodes.forget_many(forgets)
            for inode in filling:
                if self.inodes.get(inode.ino) is not inode:
                    self._unfill(inode)

    def getattr(self, ino: int, fh: int | None) -> tuple[Attributes, float]:
        with self.lock:
            inode = self.inodes.get(ino)
            if inode is None:
                raise FuseError(errno.ESTALE)
            inode.unsure = False  # this reply tells the kernel the attributes as they are
            if inode.is_dir:
                return self._dir_attributes(inode, fresh=True), self.kernel_seconds
            handle = self.handles.get(fh) if fh else None
            if inode.removed and handle is None:
                raise FuseError(errno.ENOENT)  # a name the kernel kept after it was removed
            if handle is not None and handle.pending is not None:
                return self._file_attributes(inode, handle.size()), self.kernel_seconds
            if inode.current:
                self._revalidate(inode)
            return self._file_attributes(inode), self.kernel_seconds

    def readdirplus(self, ino: int, size: int, offset: int) -> bytes:
        # The common request of a cold tree walk: packed here in one pass, no object per entry
        # (the inodes are rows of the table, counted without a view of them).
        directory = self._dir(ino)
        with self.lock:  # the kernel made the inodes of its last reply before asking again
            filled = self._fill_listed(self._listed.pop(ino, ()))
        if filled:
            # The walker reads the files once it has this answer, and a page that comes after
            # its READ saves nothing. Bounded: a store may wait for a page lock that a reader
            # holds while its READ waits for this thread.
            self.kernel.wait_sent(FILL_WAIT_SECONDS)
        names = self._listings.get(ino) if offset else None
        if names is not None and offset >= len(names) + 2:  # the kernel's last request, past
            del self._listings[ino]  # the end: nothing
            return b""
        base = directory.path
        if names is None:
            node = self.tree.listing(base)
            if node is None:
                raise FuseError(errno.ENOENT)
            with self.tree.lock:
                names = [(name, isinstance(entry, Directory)) for name, entry in node.items()]
                if node.value is not None:
                    names.append((VALUE_NAME, False))
            self._listings[ino] = names
        else:
            node = self.tree.cached_directory(base)
        entries: dict[str, Directory | int] = node if node is not None else {}
        own_value = node.value if node is not None else None
        # What fits, and the sizes it needs (a store round trip: before any inode is made)
        first = max(offset, 2)
        free = size - (2 - offset) * fuse.direntplus_size(b".") if offset < 2 else size
        encoded: list[tuple[bytes, int]] = []
        unknown = None
        for name, is_dir in names[first - 2:]:
            raw = name.encode("utf-8")
            entry_size = fuse.direntplus_size(raw)
            free -= entry_size
            if free < 0:
                break
            encoded.append((raw, entry_size))
            if unknown is None and not is_dir:
                found = own_value if name == VALUE_NAME else entries.get(name)
                if found is not None and not isinstance(found, Directory) and found < 0:
                    unknown = f"{base}{SEPARATOR}{name}" if base else name
        if unknown is not None:
            self.tree.file_size(unknown)  # reads the unknown sizes of the directory at once
        seconds = self.kernel_seconds
        timeouts = fuse.direntplus_timeouts(seconds, seconds)
        dir_timeouts = fuse.direntplus_timeouts(seconds, seconds if self.tree.bulk else 0.0)
        file_mode = stat.S_IFREG | self.options.file_mode
        dir_mode = stat.S_IFDIR | self.options.dir_mode
        uid, gid, started = self.uid, self.gid, self.started_ns
        pack = fuse.pack_direntplus_fields
        buffer = bytearray(size)
        used = 0
        sent: list[int] = []
        files: list[tuple[int, str]] = []
        listed, mtimes = self.inodes.listed, self._mtimes
        with self.lock:
            try:
                if offset < 2:
                    mtime = max(started, self.tree.changed_ns(base))
                    for position in range(offset, 2):
                        dot = b"." if position == 0 else b".."
                        pack(buffer, used, dot, position + 1, timeouts,
                             directory.ino, dir_mode, 0, mtime, 2, uid, gid)
                        used += fuse.direntplus_size(dot)
                for position, (raw, entry_size) in enumerate(encoded, start=first):
                    name, is_dir = names[position - 2]
                    path = f"{base}{SEPARATOR}{name}" if base else name
                    if is_dir:
                        told = listed(directory, name, True, path, 0, 0)
                        assert told is not None
                        pack(buffer, used, raw, position + 1, dir_timeouts, told[0], dir_mode, 0,
                             max(started, self.tree.changed_ns(path)), 2, uid, gid)
                    else:
                        found = own_value if name == VALUE_NAME else entries.get(name)
                        if isinstance(found, Directory):
                            continue  # a directory now: the next listing shows it
                        file_size = found if found is not None and found >= 0 else self.tree.file_size(path)
                        key = base if name == VALUE_NAME else path
                        default_mtime = mtimes.get(key, started)
                        told = listed(directory, name, False, path, file_size, default_mtime)
                        if told is None:  # the kernel was told another size: the store decides
                            inode = self._file_inode(directory, name, file_size, path)
                            inode.lookups += 1
                            told = inode.ino, inode.size, inode.mtime_ns
                        number, told_size, mtime = told
                        pack(buffer, used, raw, position + 1, timeouts, number, file_mode,
                             told_size, mtime or default_mtime, 1, uid, gid)
                        files.append((number, key))
                    sent.append(told[0])
                    used += entry_size
            except BaseException:
                self.inodes.forget_many((number, 1) for number in sent)  # the kernel gets none of them
                raise
            self._listed[ino] = files
            if len(self._listed) > LISTED_KEPT:
                del self._listed[next(iter(self._listed))]
        return bytes(buffer[:used])

    def opendir(self, ino: int) -> Opened:
        raise FuseError(errno.ENOSYS)  # listings need no handle: the kernel caches them

    def statfs(self) -> fuse.StatVfs:
        huge = 1 << 40
        result = fuse.StatVfs()
        result.f_bsize = result.f_frsize = 4096
        result.f_blocks = result.f_bfree = result.f_bavail = huge
        result.f_files = result.f_ffree = result.f_favail = huge
        result.f_namemax = 255
        return result

    # --- reading ----------------------------------------------------------------------------------

    def open(self, ino: int, flags: int) -> Opened:
        if self.read_only:
            raise FuseError(errno.ENOSYS)  # reads need no handle: the kernel stops sending OPEN
        writable = flags & os.O_ACCMODE != os.O_RDONLY
        inode = self._inode(ino)
        if inode.is_dir:
            raise FuseError(errno.EISDIR)
        if inode.removed:
            raise FuseError(errno.ENOENT)
        key = inode.key
        if self._being_created(inode):
            base = _EMPTY  # empty until its creator commits it, as on a disk
        else:
            current = self._current(key, inode.path)
            if current is None:
                raise FuseError(errno.ENOENT)
            base = current
        with self.lock:
            if writable:  # O_TRUNC comes next, as a truncation (no atomic O_TRUNC: see init)
                handle = Handle(inode, base, writable=True, append=bool(flags & os.O_APPEND))
                handle.pending = bytearray() if handle.append else bytearray(base.data)
                inode.filled = False  # no keep_cache: the kernel drops the file's pages at this open
                return Opened(self.handles.add(handle), direct_io=True)
            same = inode.current and inode.digest in (None, base.digest) and inode.size == len(base.data)
            if same:
                inode.digest = base.digest
            else:
                inode.filled = False  # no keep_cache: the kernel drops the file's pages at this open
            handle = Handle(inode, base, writable=False, page_cached=same)
            return Opened(self.handles.add(handle), direct_io=not same, keep_cache=same, noflush=True)

    def read(self, ino: int, size: int, offset: int, fh: int) -> bytes:
        if not self.read_only:
            with self.lock:
                handle = self._handle(fh)
                self._fill_siblings(handle.inode)
                return bytes(handle.content()[offset:offset + size])
        inode = self._inode(ino)
        if inode.current:
            path = inode.path
            value = self._current(_key_of(path), path)
            data = None
            with self.lock:
                if inode.current:
                    if value is None:
                        raise FuseError(errno.ENOENT)
                    inode.digest = value.digest
                    self._fill_siblings(inode)
                    data, filling = value.data[offset:offset + size], bool(self._filling)
            if data is not None:
                if filling:  # the reader reads the next files at once: their pages go first
                    self.kernel.wait_sent(FILL_WAIT_SECONDS)
                return data
        if inode.data is None:
            raise FuseError(errno.ESTALE)  # changed in the store, and its old bytes are gone
        return inode.data[offset:offset + size]

    # --- writing ----------------------------------------------------------------------------------

    def _writable(self) -> None:
        if self.read_only:
            raise FuseError(errno.EROFS)

    def _handle(self, fh: int) -> Handle:
        handle = self.handles.get(fh)
        if handle is None:
            raise FuseError(errno.EBADF)
        return handle

    def _new_key(self, directory: Inode, raw: bytes) -> tuple[str, str]:
        """``(name, key)`` of a name being created, refused when it cannot be a key."""
        text = _name(raw)
        if text is None:
            raise FuseError(errno.EINVAL)
        path = _join(directory.path, text)
        key = _key_of(path)
        if text == VALUE_NAME and directory.ino == fuse.ROOT_INO or not displayable(key):
            raise InvalidKeyError(f"{path!r} cannot be a key")
        return text, key

    def create(self, parent: int, name: bytes, mode: int, flags: int) -> tuple[Entry, Opened]:
        self._writable()
        directory = self._dir(parent)
        text, key = self._new_key(directory, name)
        self.engine.check_writable(key)  # a name the engine cannot store fails here, not at close
        self.sweeper.flush_covering(key)
        exclusive = bool(flags & os.O_EXCL)
        if exclusive and not self.engine.add(key, ""):
            raise FuseError(errno.EEXIST)  # another client made it since the kernel looked
        with self.lock:
            if not exclusive:  # the store has it once the first write is committed
                self.tree.hold(key)
            self.tree.put(key, 0)
            inode = self.inodes.child(directory, text, is_dir=False)
            inode.size, inode.digest, inode.mtime_ns = 0, _EMPTY.digest, time.time_ns()
            inode.lookups += 1
            handle = Handle(inode, _EMPTY, writable=True, append=bool(flags & os.O_APPEND),
                            pending=bytearray(), dirty=not exclusive, created=not exclusive)
            return self._entry(inode), Opened(self.handles.add(handle), direct_io=True)

    def write(self, ino: int, data: bytes, offset: int, fh: int) -> int:
        with self.lock:
            handle = self._handle(fh)
            if not handle.writable:
                raise FuseError(errno.EBADF)
            handle.write(data, offset)
            return len(data)

    def flush(self, ino: int, fh: int) -> None:
        if self.read_only:
            raise FuseError(errno.ENOSYS)  # nothing to commit: the kernel stops sending FLUSH
        handle = self._handle(fh)
        if handle.written:  # only truncated or created: its last close commits it (handles.py)
            self._commit(handle)

    def fsync(self, ino: int, fh: int) -> None:
        self._commit(self._handle(fh))

    def release(self, ino: int, fh: int) -> None:
        with self.lock:
            handle = self.handles.pop(fh)
        if handle is None:
            return
        try:
            self._commit(handle)
        except Exception as exc:  # close() has returned: the log is all that can tell
            log.error("could not write %r at its last close: %s", handle.inode.key, exc)
            if handle.created:
                self._drop_created(handle)

    def _commit(self, handle: Handle) -> None:
        with self.lock:
            if not handle.dirty or handle.refused or handle.pending is None:
                return
            inode = handle.inode
            if inode.removed:
                handle.dirty = False  # unlinked while open: its data goes with it, as on a disk
                return
            key = inode.key
            pending = bytes(handle.pending)
            append = handle.append
        if append:
            current = self.engine.get(key)
            data = (b"" if current is None else current.encode("utf-8")) + pending
        else:
            data = pending
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            handle.refused = True
            if handle.created:
                self._drop_created(handle)
            raise FuseError(errno.EILSEQ) from None
        self._store(key, text, data)
        self.tree.release(key)
        with self.lock:
            handle.dirty = False
            handle.created = False
            if append:
                handle.base, handle.pending = self.cache.get(key) or _EMPTY, bytearray()

    def _drop_created(self, handle: Handle) -> None:
        """The file this open created never reached the store: it goes, name and all."""
        handle.created = False
        key = handle.inode.key
        self.tree.release(key)
        with self.lock:
            self._forget_key(key)
            self._remove(handle.inode, None)

    def _store(self, key: str, text: str, data: bytes) -> None:
        """Write ``key`` and record it: the tree, the cache, and the kernel's view of its inode."""
        self.sweeper.flush_covering(key)
        self._overtake(key)
        self.engine.set(key, text)
        self.tree.put(key, len(data))
        self.observe(key, data)

    def setattr(self, ino: int, changes: SetAttributes, fh: int | None) -> tuple[Attributes, float]:
        self._writable()
        inode = self._inode(ino)
        if changes.size is not None:
            if inode.is_dir:
                raise FuseError(errno.EISDIR)
            self._truncate(inode, changes.size, fh)
        return self.getattr(ino, fh)

    def _truncate(self, inode: Inode, length: int, fh: int | None) -> None:
        if inode.removed:
            raise FuseError(errno.ENOENT)
        with self.lock:
            handle = self.handles.get(fh) if fh else None
            own = handle is not None and handle.writable
            # Without a handle: another process's truncate, or the O_TRUNC of an open (the
            # kernel sends none with it), which its writer commits with what it writes.
            writers = [handle] if handle is not None and own else [
                h for h in self.handles.of(inode) if h.writable]
            for writer in writers:
                writer.truncate(length, written=own)
            if writers:
                return
        current = self._current(inode.key, inode.path)
        if current is None:
            raise FuseError(errno.ENOENT)
        data = bytearray(current.data)
        if length < len(data):
            del data[length:]
        else:
            data.extend(bytes(length - len(data)))
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError:  # cut inside a character: refused, nothing stored
            raise FuseError(errno.EILSEQ) from None
        self._store(inode.key, text, bytes(data))

    # --- namespace ----------------------------------------------------------------------------------

    def _forget_key(self, key: str) -> None:
        self.tree.release(key)
        self.tree.drop(key)
        self.cache.drop(key)
        self._mtimes.pop(key, None)

    def unlink(self, parent: int, name: bytes) -> None:
        self._writable()
        directory = self._dir(parent)
        text = _name(name)
        if text is None:
            raise FuseError(errno.ENOENT)
        path = _join(directory.path, text)
        found = self.tree.lookup(path)
        if found is None:
            raise FuseError(errno.ENOENT)
        if isinstance(found, Directory):
            raise FuseError(errno.EISDIR)
        key = _key_of(path)
        self._overtake(key)
        self.engine.delete(key)
        with self.lock:
            inode = self.inodes.find(directory, text, is_dir=False)
            if inode is not None:
                self._remove(inode, self.cache.get(key))
            self._forget_key(key)

    def mkdir(self, parent: int, name: bytes, mode: int) -> Entry:
        self._writable()
        directory = self._dir(parent)
        text, key = self._new_key(directory, name)
        if text == VALUE_NAME:
            raise InvalidKeyError(f"{VALUE_NAME!r} is reserved")
        if self.tree.lookup(_join(directory.path, text)) is not None:
            raise FuseError(errno.EEXIST)
        self.sweeper.flush_covering(key)
        self.tree.mkdir(key)
        with self.lock:
            inode = self.inodes.child(directory, text, is_dir=True)
            inode.lookups += 1
            return self._entry(inode)

    def rmdir(self, parent: int, name: bytes) -> None:
        self._writable()
        directory = self._dir(parent)
        text = _name(name)
        if text is None:
            raise FuseError(errno.ENOENT)
        path = _join(directory.path, text)
        node = self.tree.listing(path)
        if node is None:
            raise FuseError(errno.ENOTDIR if self.tree.lookup(path) is not None else errno.ENOENT)
        if not node.is_empty():
            raise FuseError(errno.ENOTEMPTY)
        hidden = self.tree.hidden_under(path)
        if hidden:
            self.engine.delete_many(hidden)
        self.sweeper.add(path)
        self.tree.drop_tree(path)  # its files were unlinked one by one: none is in the value cache
        with self.lock:
            inode = self.inodes.find(directory, text, is_dir=True)
            if inode is not None:
                self.inodes.supersede(inode, None)

    def rename(self, parent: int, name: bytes, new_parent: int, new_name: bytes, flags: int) -> None:
        self._writable()
        if flags & fuse.RENAME_EXCHANGE:
            raise FuseError(errno.EINVAL)  # no store can swap two keys at once
        source_dir, target_dir = self._dir(parent), self._dir(new_parent)
        old_text = _name(name)
        if old_text is None:
            raise FuseError(errno.ENOENT)
        old_path = _join(source_dir.path, old_text)
        found = self.tree.lookup(old_path)
        if found is None:
            raise FuseError(errno.ENOENT)
        if isinstance(found, Directory):
            raise FuseError(errno.EXDEV)  # mv falls back to copy and delete
        new_text, new_key = self._new_key(target_dir, new_name)
        new_path = _join(target_dir.path, new_text)
        target = self.tree.lookup(new_path)
        if isinstance(target, Directory):
            raise FuseError(errno.EISDIR)
        if flags & fuse.RENAME_NOREPLACE and target is not None:
            raise FuseError(errno.EEXIST)
        old_key = _key_of(old_path)
        if old_key == new_key:
            return
        self.engine.check_writable(new_key)
        with self.lock:
            moving = self.inodes.find(source_dir, old_text, is_dir=False)
            creating = moving is not None and any(h.created for h in self.handles.of(moving))
        current = self._current(old_key, old_path)
        if current is None and not creating:
            raise FuseError(errno.ENOENT)
        data = current.data if current is not None else b""
        if flags & fuse.RENAME_NOREPLACE:
            self.sweeper.flush_covering(new_key)
            self._overtake(new_key)
            if not self.engine.add(new_key, data.decode("utf-8")):
                raise FuseError(errno.EEXIST)  # the store has it, whoever wrote it
            self.tree.put(new_key, len(data))
            self.observe(new_key, data)
        else:
            self._store(new_key, data.decode("utf-8"), data)
        self._overtake(old_key)
        self.engine.delete(old_key)
        with self.lock:
            replaced = self.inodes.find(target_dir, new_text, is_dir=False)
            if replaced is not None and replaced is not moving:
                self._remove(replaced, None)
            self._forget_key(old_key)
            if moving is not None:
                self.inodes.move(moving, target_dir, new_text)

    # --- changes other clients made -------------------------------------------------------------

    def _changed_outside(self, key: str | None, deleted: bool) -> None:
        """From the change feed's thread: ``key`` was set or deleted by another client (None:
        events may have been lost, read everything again)."""
        if key is None:
            self.tree.invalidate()
            threading.Thread(target=self._resync, name="wafs-resync", daemon=True).start()
            return
        if not displayable(key):
            self.tree.note_hidden(key, deleted)
            return
        if deleted and self.engine.get(key) is not None:
            deleted = False  # another node's late "del" (a slot that moved): the key lives on
        if deleted:
            self.tree.forget(key)
            self.observe(key, None)
            self._names_vanished(key)
            return
        existed = self.tree.lookup_cached(key) is not None
        self.tree.put(key, UNKNOWN)
        with self.lock:
            known = self._file_of_key(key)
            if known is None:
                self.cache.drop(key)
                self._mtimes[key] = time.time_ns()
        if known is not None:
            self._read_outside([key])
        if not existed:
            self._names_appeared(key)

    def _read_outside(self, keys: list[str]) -> None:
        """Read ``keys`` for the change feed or a resync and record what each holds, unless the
        mount wrote it while the read was under way: what the mount wrote is newer (and the
        feed's event of it follows)."""
        flags = {key: [False] for key in keys}
        with self.lock:
            for key, flag in flags.items():
                self._outside_reads.setdefault(key, []).append(flag)
        try:
            values = self.engine.get_many(keys) if len(keys) > 1 else {keys[0]: self.engine.get(keys[0])}
        except BaseException:
            with self.lock:
                for key, flag in flags.items():
                    self._end_outside_read(key, flag)
            raise
        for key, value in values.items():
            with self.lock:
                if not self._end_outside_read(key, flags[key]):
                    self.observe(key, None if value is None else value.encode("utf-8"))

    def _end_outside_read(self, key: str, flag: list[bool]) -> bool:
        """Forget the read of ``key`` that ``flag`` marks; True when the mount wrote it meanwhile."""
        under_way = [other for other in self._outside_reads[key] if other is not flag]
        if under_way:
            self._outside_reads[key] = under_way
        else:
            del self._outside_reads[key]
        return flag[0]

    def _overtake(self, key: str) -> None:
        """The mount writes ``key`` now: the reads of it under way for the feed or a resync are older."""
        with self.lock:
            for flag in self._outside_reads.get(key, ()):
                flag[0] = True

    def _names_appeared(self, key: str) -> None:
        """Drop the negative entries and listings the kernel may hold for ``key`` and the
        directories above it."""
        path = ""
        with self.lock:
            for name in key.split(SEPARATOR):
                parent = self._known(path, is_dir=True)
                if parent is None:
                    return
                self.kernel.forget_entry(parent.ino, name)
                self.kernel.forget_contents(parent.ino)
                path = _join(path, name)

    def _names_vanished(self, key: str) -> None:
        """``key`` is gone, and with it the directories it leaves empty: drop their entries
        and the listings that showed them."""
        path = key
        with self.lock:
            while path:
                parent_path = path.rpartition(SEPARATOR)[0]
                parent = self._known(parent_path, is_dir=True)
                if parent is not None:
                    self.kernel.forget_contents(parent.ino)
                if parent_path == "" or self.tree.lookup_cached(parent_path) is not None:
                    return
                if parent is not None:  # the directory went with its last key
                    self._remove(parent, None)
                path = parent_path

    def _reconcile(self, path: str) -> None:
        """The tree's listing at ``path`` was read again (``""``: the whole store): names the
        kernel holds there that the store no longer has are dropped from the kernel."""
        recursive = self.tree.bulk
        with self.lock:
            start = self._known(path, is_dir=True)
            if start is None:
                return
            stack = [(start, path)]
            while stack:
                inode, inode_path = stack.pop()
                node = self.tree.lookup_cached(inode_path) if inode_path else self.tree.root
                if not isinstance(node, Directory):
                    continue
                for child in inode.held_children():
                    name = child.name
                    entry = node.value if name == VALUE_NAME else node.get(name)
                    if entry is None or isinstance(entry, Directory) != child.is_dir:
                        self._remove(child, None if child.is_dir else self.cache.get(child.key))
                    elif child.is_dir and recursive:
                        stack.append((child, _join(inode_path, name)))

    def _resync(self) -> None:
        try:
            self.tree.refresh()
            self._verify_known()
        except Exception as exc:  # the next access reads in the foreground: EIO if still down
            log.warning("reading the store again after lost change events failed: %s", exc)
