"""The chats view as a read-only FUSE mount (``wafs mount --view chats``), kept live.

One folder per chat holding its transcript and media, as :class:`wafs.chats.ChatsView`
renders them (``docs/chats.md``). Served like the raw mount's ``--read-only`` mode: ``open``,
``opendir`` and ``flush`` answer ``ENOSYS``, so the kernel reads by inode through its page
cache and lists through READDIRPLUS; nothing can be changed (``EROFS``, the mount is ``ro``).

**Inodes.** An inode stands for one path and, for a file, one version of its bytes (the
table of :mod:`wafs.mount.inodes`: numbers are a hash of the path, so an unchanged file keeps
its ``st_ino``; lookup counts and ``forget`` as there). A transcript's inode holds the bytes
it stands for; a media file's, their size and the message they come from (its bytes are read
from the store and kept in a bounded cache).

**Live.** Changes come from the engine's change feed (:meth:`wafs.Engine.watch`). Without
one, the daemon looks every ``ttl`` seconds at the sizes of every chat's ``messages`` index
(one ``sizes`` call for the whole store), and once per max(``ttl``, 10 x its duration) makes
a full pass: it forgets what the view read and renders again the chats the kernel holds
(names, media downloaded later, a message rewritten in place). Each store key that changed
goes through :meth:`ChatsView.changed` to the paths it affects; one thread renders those
again and tells the kernel exactly what changed:

* a transcript that only grew (a new message) keeps its inode: its attributes are dropped
  at once, the kernel sees the new size, and ``tail -f`` the new lines;
* any other change of a file gives its path a new inode and drops the kernel's entry
  (queued: see :mod:`wafs.mount.kernel`); the old inode keeps serving the bytes it stood for
  to whoever holds it open (a media file's, while they are in the cache: else ``ESTALE``);
* a file or folder that is gone is dropped the same way, and so is its folder's listing;
  chat-list changes (new, deleted or renamed chats) drop the root's listing and entries.
  Names go first: the kernel lists a directory again (from its cache otherwise) only once
  the names the new listing no longer shows are dropped. A directory listed for the first
  time while a change is on its way (a few milliseconds) may show it early.

**Times.** A transcript's and a folder's mtime is their newest message's time, a media
file's its message's time (as ``wafs export`` writes them); once the daemon saw a file or
folder change while mounted, the time it saw that change if later. The root's is when the
daemon saw the chat list change, else the mount time.

Store failures are ``EIO``, never ``ENOENT`` or an empty listing; ``ENOENT`` means the store
answered and there is no such chat or file.
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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import ParamSpec, TypeVar

from ..chats import ChatsView
from ..engine import Engine, Watch
from ..keys import chat_messages_key
from . import fuse
from .fuse import Attributes, Entry, FuseError, Opened
from .inodes import Inode, InodeTable
from .kernel import KernelCache
from .operations import FUSE_CAP_AUTO_INVAL_DATA, FUSE_CAP_WRITEBACK_CACHE, errno_for
from .options import FEED_KERNEL_SECONDS, MountOptions
from .values import ValueCache, digest

log = logging.getLogger(__name__)

#: Without a feed, a full pass renders the chats again at most once per this many times the
#: duration of the last pass (and never more often than ``ttl`` or :data:`MIN_POLL_SECONDS`).
POLL_FACTOR = 10
MIN_POLL_SECONDS = 0.1
#: Feed events arriving this close together are rendered once (a bot writes a message's
#: index, raw and content, then the chat's ``messages`` index).
COALESCE_SECONDS = 0.01
#: After a failure (the store is down), the next try waits this long, doubling up to the max.
RETRY_SECONDS, RETRY_MAX_SECONDS = 0.1, 2.0
#: A change told to the kernel while a reply that makes the inode was on its way is told
#: again this often, this many times (then on the next request on the inode).
UNSURE_SECONDS, UNSURE_TRIES = 0.05, 20
TRANSCRIPT = ("transcript",)

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class _File:
    """A file of the view as rendered now."""

    size: int
    mtime_ns: int
    data: bytes | None  # a transcript's bytes (media are read when read)
    identity: tuple[str, ...]  # TRANSCRIPT, or a media file's (message id, content key)


@dataclass(frozen=True, slots=True)
class _Folder:
    """A chat's folder as rendered now: its newest message's time and its files."""

    mtime_ns: int
    files: dict[str, _File]


def _ns(seconds: float) -> int:
    return int(seconds * 1_000_000_000)


def _name(raw: bytes) -> str | None:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _answers(method: Callable[P, R]) -> Callable[P, R]:
    """A request handler whose store errors become errno: ``FileNotFoundError`` (the store
    answered: no such chat or file) is ``ENOENT``, a store failure ``EIO``."""

    @functools.wraps(method)
    def handler(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(*args, **kwargs)
        except FuseError:
            raise
        except FileNotFoundError:
            raise FuseError(errno.ENOENT) from None
        except Exception as exc:
            log.warning("chats view: %s failed: %s", getattr(method, "__name__", "a request"), exc)
            raise FuseError(errno_for(exc)) from exc

    return handler


class ChatsOperations(fuse.Filesystem):
    """The requests of one ``--view chats`` mount of ``engine``; see the module docstring."""

    read_only = True

    def __init__(self, engine: Engine, options: MountOptions) -> None:
        self.engine = engine
        self.options = options
        self.view = ChatsView(engine, options.chat_options)
        self.kernel = KernelCache()
        self.started_ns = time.time_ns()
        self.inodes = InodeTable(self.started_ns)
        self.lock = threading.RLock()
        self.uid, self.gid = os.getuid(), os.getgid()
        self.kernel_seconds = options.ttl
        self.media = ValueCache(options.cache_bytes, math.inf)  # by str(ino): bytes of media read
        self.on_ready: Callable[[], None] = lambda: None
        self.left_undone: list[str] = []  # a read-only view leaves nothing undone at unmount
        self._identity: dict[int, tuple[str, ...]] = {}  # file inode -> what it shows
        self._listed: dict[int, frozenset[str]] = {}  # folder inode -> the names it had
        self._seen_ns: dict[str, int] = {}  # path -> when the daemon saw it change
        self._folders: frozenset[str] = frozenset()  # the chat folders, as last compared
        self._listings: dict[int, list[tuple[bytes, Entry, int]]] = {}  # listings being read
        self._unsent: list[Inode] = []  # inodes made for a listing reply, not yet counted
        self._watch: Watch | None = None
        # What the change thread has to do: paths to render again (None: everything) and
        # media paths whose bytes must be compared (their content key changed).
        self._changes = threading.Condition()
        self._pending: set[str] | None = set()
        self._verify: set[str] = set()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._unsure: list[tuple[Inode, int]] = []
        self._sizes: dict[str, int | None] = {}  # without a feed: each chat's messages index size
        #: Without a feed: how long the last full pass took (the period is ten times that), and
        #: how many passes were made.
        self.pass_seconds = 0.0
        self.passes = 0

    # --- lifecycle ------------------------------------------------------------------------------

    def follow_changes(self) -> bool:
        """Follow the engine's change feed, if it has one; True when it does (the kernel
        then keeps names and attributes for long). Without one, :meth:`start` polls."""
        self._watch = self.engine.watch(self._changed_outside)
        if self._watch is not None:
            self.kernel_seconds = FEED_KERNEL_SECONDS
        return self._watch is not None

    def load(self) -> None:
        """Read the chat list (a store that is down fails the mount here)."""
        self._folders = frozenset(info.folder for info in self.view.chats())
        if self._watch is None:
            self._sizes = self._index_sizes()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._follow, name="wafs-chats-changes", daemon=True)
        self._thread.start()

    def init(self, conn: fuse.ConnInfo) -> None:
        conn.want |= (fuse.FUSE_CAP_READDIRPLUS | FUSE_CAP_AUTO_INVAL_DATA) & conn.capable
        conn.want &= ~(fuse.FUSE_CAP_READDIRPLUS_AUTO | FUSE_CAP_WRITEBACK_CACHE)
        self.on_ready()

    def destroy(self) -> None:
        if self._watch is not None:
            self._watch.close()
        with self._changes:
            self._stopping = True
            self._changes.notify_all()
        if self._thread is not None:
            self._thread.join(5.0)
        self.kernel.detach()

    def refresh(self) -> None:
        """Forget everything read and compare every file the kernel holds (``wafs refresh``)."""
        self.view.invalidate()
        self._want(None)

    # --- what the view shows now ------------------------------------------------------------------

    def _chat_folders(self) -> list[str]:
        return [info.folder for info in self.view.chats()]

    def _folder(self, folder: str) -> _Folder:
        """The folder as the view renders it now; FileNotFoundError when there is no such chat."""
        info = self.view.chat(folder)
        rendered = self.view.render(info.cid)
        mtime = _ns(rendered.mtime)
        files = {info.transcript: _File(len(rendered.transcript), mtime, rendered.transcript, TRANSCRIPT)}
        for media in rendered.media:
            files[media.name] = _File(media.size, _ns(media.mtime), None, (media.mid, media.key or ""))
        return _Folder(mtime, files)

    def _mtime(self, path: str, message_ns: int) -> int:
        return max(message_ns or self.started_ns, self._seen_ns.get(path, 0))

    # --- inodes and attributes ------------------------------------------------------------------

    def _inode(self, ino: int) -> Inode:
        with self.lock:
            return self.kernel.in_use(self.inodes, ino)

    def _attributes(self, inode: Inode) -> Attributes:
        if inode.is_dir:
            known = inode.mtime_ns if inode.ino != fuse.ROOT_INO else 0
            mtime = known or self._mtime(inode.path, 0)
            return Attributes(inode.ino, stat.S_IFDIR | self.options.dir_mode & 0o555, 0, mtime, 2,
                              self.uid, self.gid)
        return Attributes(inode.ino, stat.S_IFREG | self.options.file_mode & 0o444, inode.size,
                          inode.mtime_ns, 1, self.uid, self.gid)

    def _entry(self, inode: Inode) -> Entry:
        # A folder listed in the root before its chat was rendered has no true mtime yet: the
        # kernel asks for it (getattr) before it uses the attributes.
        attr_seconds = 0.0 if inode.is_dir and inode.mtime_ns == 0 else self.kernel_seconds
        return Entry(self._attributes(inode), self.kernel_seconds, attr_seconds)

    def _folder_inode(self, name: str, state: _Folder | None) -> Inode:
        inode = self.inodes.child(self.inodes.root, name, is_dir=True)
        if state is not None:
            self._adopt_folder(inode, state)
        return inode

    def _adopt_folder(self, inode: Inode, state: _Folder) -> None:
        """A folder the kernel is told of for the first time takes ``state``'s time and names
        (later changes are the change thread's to tell)."""
        if inode.mtime_ns == 0:
            inode.mtime_ns = self._mtime(inode.path, state.mtime_ns)
        self._listed.setdefault(inode.ino, frozenset(state.files))

    def _file_inode(self, folder: Inode, name: str, new: _File) -> Inode:
        """The current inode of file ``name`` in ``folder``, showing ``new``."""
        inode = self.inodes.child(folder, name, is_dir=False)
        if inode.mtime_ns == 0:
            self._take(inode, new)
        elif self._update_file(inode, new, verify=None):
            inode = self.inodes.child(folder, name, is_dir=False)
            if inode.mtime_ns == 0:
                self._take(inode, new)
        return inode

    def _take(self, inode: Inode, new: _File) -> None:
        """``inode`` stands for ``new`` from now on."""
        inode.size = new.size
        inode.mtime_ns = self._mtime(inode.path, new.mtime_ns)
        inode.data = new.data
        inode.digest = None if new.data is None else digest(new.data)
        self._identity[inode.ino] = new.identity

    # --- names ----------------------------------------------------------------------------------

    @_answers
    def lookup(self, parent: int, name: bytes) -> Entry:
        directory = self._inode(parent)
        if not directory.is_dir:
            raise FuseError(errno.ENOTDIR)
        negative = Entry(None, self.options.ttl, 0.0)
        text = _name(name)
        if text is None or "/" in text:
            return negative
        if directory.ino == fuse.ROOT_INO:
            try:
                state = self._folder(text)
            except FileNotFoundError:
                return negative
            with self.lock:
                inode = self._folder_inode(text, state)
                inode.lookups += 1
                return self._entry(inode)
        if not directory.current:
            return negative  # a folder that is gone holds only what the kernel still has
        try:
            new = self._folder(directory.name).files.get(text)
        except FileNotFoundError:
            return negative
        if new is None:
            return negative
        with self.lock:
            inode = self._file_inode(directory, text, new)
            inode.lookups += 1
            return self._entry(inode)

    def forget(self, forgets: list[tuple[int, int]]) -> None:
        with self.lock:
            for ino, count in forgets:
                self.inodes.forget(ino, count)
                if self.inodes.get(ino) is None:
                    self._identity.pop(ino, None)
                    self._listed.pop(ino, None)
                    self.media.drop(str(ino))

    @_answers
    def getattr(self, ino: int, fh: int | None) -> tuple[Attributes, float]:
        inode = self._inode(ino)
        # The kernel lists a directory again from its cache unless its mtime moved: a
        # directory's attributes are read through the view (the store when the view holds
        # nothing, EIO when it is down). Their changes are the change thread's to tell, in
        # order (see _listing_changed).
        if inode.ino == fuse.ROOT_INO:
            self._chat_folders()
        elif inode.is_dir and inode.current:
            try:
                state: _Folder | None = self._folder(inode.name)
            except FileNotFoundError:
                state = None
            with self.lock:
                if inode.current and state is not None:
                    self._adopt_folder(inode, state)
        with self.lock:
            inode.unsure = False  # this reply tells the kernel the attributes as they are
            return self._attributes(inode), self.kernel_seconds

    @_answers
    def readdir(self, ino: int, offset: int) -> Iterator[tuple[bytes, Entry, int]]:
        directory = self._inode(ino)
        if not directory.is_dir:
            raise FuseError(errno.ENOTDIR)
        if offset == 0 or ino not in self._listings:
            self._listings[ino] = self._listing(directory)
        entries = self._listings[ino]
        return self._stream(ino, entries, offset)

    def _stream(self, ino: int, entries: list[tuple[bytes, Entry, int]],
                offset: int) -> Iterator[tuple[bytes, Entry, int]]:
        yield from entries[offset:]
        self._listings.pop(ino, None)

    def _listing(self, directory: Inode) -> list[tuple[bytes, Entry, int]]:
        """Every entry of ``directory``'s listing, ``.`` and ``..`` first."""
        if directory.ino == fuse.ROOT_INO:
            names: list[tuple[str, _File | None]] = [(name, None) for name in self._chat_folders()]
            state = None
        elif directory.current:
            state = self._folder(directory.name)
            names = list(state.files.items())
        else:
            names, state = [], None
        with self.lock:
            dot = Entry(self._attributes(directory), self.kernel_seconds, self.kernel_seconds)
            entries = [(b".", dot, 1), (b"..", dot, 2)]
            if state is not None and directory.current:
                self._adopt_folder(directory, state)
            for position, (name, new) in enumerate(names, start=3):
                if new is None:
                    inode = self._folder_inode(name, None)
                else:
                    inode = self._file_inode(directory, name, new)
                if inode.lookups == 0:
                    self._unsent.append(inode)
                entries.append((name.encode("utf-8"), self._entry(inode), position))
            return entries

    def readdir_sent(self, inos: list[int]) -> None:
        with self.lock:
            for ino in inos:
                inode = self.inodes.get(ino)
                if inode is not None:
                    inode.lookups += 1
            for inode in self._unsent:
                if inode.lookups == 0:
                    self.forget([(inode.ino, 0)])
            self._unsent.clear()

    def opendir(self, ino: int) -> Opened:
        raise FuseError(errno.ENOSYS)  # listings need no handle

    def open(self, ino: int, flags: int) -> Opened:
        raise FuseError(errno.ENOSYS)  # reads need no handle: the kernel stops sending OPEN

    def flush(self, ino: int, fh: int) -> None:
        raise FuseError(errno.ENOSYS)  # nothing to commit: the kernel stops sending FLUSH

    def statfs(self) -> fuse.StatVfs:
        result = fuse.StatVfs()
        result.f_bsize = result.f_frsize = 4096
        result.f_files = result.f_ffree = result.f_favail = 1 << 40
        result.f_namemax = 255
        return result

    # --- reading ----------------------------------------------------------------------------------

    @_answers
    def read(self, ino: int, size: int, offset: int, fh: int) -> bytes:
        inode = self._inode(ino)
        if inode.is_dir:
            raise FuseError(errno.EISDIR)
        data = inode.data
        if data is None:
            data = self._media_bytes(inode)
        return data[offset:offset + size]

    def _media_bytes(self, inode: Inode) -> bytes:
        cached = self.media.get(str(inode.ino))
        if cached is not None:
            return cached.data
        if not inode.current:
            raise FuseError(errno.ESTALE)  # changed in the store, and its old bytes are gone
        data = self.view.read(inode.path)
        with self.lock:
            if not inode.current:
                raise FuseError(errno.ESTALE)
            version = digest(data)
            if inode.digest is not None and inode.digest != version:
                self._supersede(inode)  # another version than the one the kernel was told
                raise FuseError(errno.ESTALE)
            if inode.digest is None and len(data) != inode.size:
                inode.size = len(data)  # nothing of it was read yet: it takes this version
                inode.mtime_ns = self._saw(inode.path)
                self._forget_attributes(inode)
            inode.digest = version
            self.media.put(str(inode.ino), data)
        return data

    # --- telling the kernel what changed ----------------------------------------------------------

    def _saw(self, path: str) -> int:
        now = time.time_ns()
        self._seen_ns[path] = now
        return now

    def _forget_attributes(self, inode: Inode) -> None:
        inode.unsure = not self.kernel.forget_attributes(inode.ino)
        if inode.unsure:  # told again shortly, by the change thread
            self._unsure.append((inode, UNSURE_TRIES))
            with self._changes:
                self._changes.notify_all()

    def _update_file(self, inode: Inode, new: _File, verify: bytes | None) -> bool:
        """Bring file ``inode`` in line with ``new`` (``verify``: the media bytes the store holds
        now); True when its path got a new inode (the next lookup makes it)."""
        old = inode.data
        if new.data is not None and old is not None:  # a transcript
            if new.data == old:  # a hidden message (a reaction, say) moves the mtime only
                mtime = self._mtime(inode.path, new.mtime_ns)
                if mtime != inode.mtime_ns:
                    inode.mtime_ns = mtime
                    self._forget_attributes(inode)
                return False
            inode.mtime_ns = max(self._saw(inode.path), new.mtime_ns)
            if new.data.startswith(old):  # it only grew: same inode, new size
                inode.data, inode.size, inode.digest = new.data, len(new.data), digest(new.data)
                self._forget_attributes(inode)
                return False
            self._supersede(inode)
            return True
        same = self._identity.get(inode.ino) == new.identity and inode.size == new.size
        if same and (verify is None or inode.digest in (None, digest(verify))):
            return False
        self._saw(inode.path)
        if inode.digest is None and new.data is None and old is None:  # no byte was read yet
            self._take(inode, new)
            self.media.drop(str(inode.ino))
            self._forget_attributes(inode)
            return False
        self._supersede(inode)
        return True

    def _supersede(self, inode: Inode) -> None:
        """The path of ``inode`` shows something else now: the next lookup gets a new inode; this
        one keeps serving its bytes (a media file's, if they are still cached)."""
        if inode.data is None and not inode.is_dir:
            cached = self.media.get(str(inode.ino))
            inode.data = None if cached is None else cached.data
        parent = inode.parent
        self.inodes.supersede(inode, inode.data)
        if parent is not None:
            self.kernel.forget_entry(parent.ino, inode.name)

    def _remove(self, inode: Inode) -> None:
        """``inode``'s path is gone (and, for a folder, everything in it); the caller tells
        the kernel its parent's listing changed."""
        self._supersede(inode)
        inode.parent = None
        for child in inode.held_children():
            self._remove(child)

    def _listing_changed(self, directory: Inode, message_ns: int = 0) -> None:
        """``directory`` shows other names: once the kernel dropped the entries queued before,
        its mtime moves and its listing is dropped. In that order: the kernel lists a directory
        again only when one of them happened, so a listing that shows the change never comes
        with a name it no longer shows."""

        def moved() -> None:
            with self.lock:
                now = self._saw(directory.path)
                if directory.ino != fuse.ROOT_INO:
                    directory.mtime_ns = max(directory.mtime_ns, message_ns, now)

        self.kernel.after(moved)
        self.kernel.forget_contents(directory.ino)

    # --- following the store ------------------------------------------------------------------

    def _changed_outside(self, key: str | None, deleted: bool) -> None:
        """From the change feed's thread: ``key`` was set or deleted (None: events were lost)."""
        if key is None:
            self.view.invalidate()
            self._want(None)
            return
        paths = self.view.changed(key)
        if paths:
            verify = key.endswith("/content")
            self._want(paths, verify={path for path in paths if "/" in path} if verify else None)

    def _want(self, paths: frozenset[str] | None, verify: set[str] | None = None) -> None:
        with self._changes:
            if paths is None or self._pending is None:
                self._pending = None
            else:
                self._pending |= paths
            if verify:
                self._verify |= verify
            self._changes.notify_all()

    def _follow(self) -> None:
        """The change thread: render again what changed, tell the kernel, retry what failed.

        Without a feed it also polls: every ``ttl`` the sizes of every chat's ``messages``
        index (one call for the whole store; a key whose size moved goes through
        :meth:`ChatsView.changed`, as a feed event would), and once per
        :meth:`_poll_period` a full pass that forgets what the view read and compares
        everything the kernel holds (names, media downloaded later, a rewritten message)."""
        polling = self._watch is None
        retry = RETRY_SECONDS
        next_check = time.monotonic() + self._check_period()
        next_pass = time.monotonic() + self._poll_period()
        while True:
            with self._changes:
                while not self._stopping and self._pending == set() and not self._unsure:
                    timeout = min(next_check, next_pass) - time.monotonic() if polling else None
                    if timeout is not None and timeout <= 0:
                        break
                    self._changes.wait(timeout)
                if self._stopping:
                    return
                idle = self._pending == set()
            now = time.monotonic()
            try:
                if idle and polling and now >= next_pass:
                    next_check, next_pass = now + self._check_period(), now + self._poll_period()
                    self._full_pass()
                elif idle and polling and now >= next_check:
                    next_check = now + self._check_period()
                    self._check_sizes()
                elif idle:  # only changes the kernel may have missed, to tell again
                    time.sleep(UNSURE_SECONDS)
                    self._tell_unsure()
                    continue
                else:
                    time.sleep(COALESCE_SECONDS)
                    self._apply_pending()
            except Exception as exc:  # the store is down: try again
                log.warning("chats view: reading the changes failed, retrying in %.1f s: %s", retry, exc)
                if polling:  # nothing read is trusted now: requests go to the store (EIO while down)
                    self.view.invalidate()
                    self._want(None)
                with self._changes:
                    self._changes.wait_for(lambda: self._stopping, retry)
                retry = min(retry * 2, RETRY_MAX_SECONDS)
                continue
            retry = RETRY_SECONDS
            self._tell_unsure()

    def _apply_pending(self) -> None:
        with self._changes:
            paths, verify = self._pending, self._verify
            self._pending, self._verify = set(), set()
        try:
            self._apply(paths, verify)
        except BaseException:
            self._want(None if paths is None else frozenset(paths), verify)
            raise

    def _full_pass(self) -> None:
        """Forget what the view read and compare everything the kernel holds with it."""
        started = time.monotonic()
        sizes = self._index_sizes()  # before: a message stored during the pass is seen next check
        self.view.invalidate()
        self._want(None)
        self._apply_pending()
        self._sizes = sizes
        self.pass_seconds = time.monotonic() - started
        self.passes += 1

    def _index_sizes(self) -> dict[str, int | None]:
        keys = [chat_messages_key(info.cid) for info in self.view.chats()]
        return self.engine.sizes(keys)

    def _check_sizes(self) -> None:
        """Without a feed: the chats whose ``messages`` index changed size since the last look."""
        sizes = self._index_sizes()
        previous, self._sizes = self._sizes, sizes
        for key, size in sizes.items():
            if key not in previous or previous[key] != size:
                paths = self.view.changed(key)
                if paths:
                    self._want(paths)
        self._apply_pending()

    def _check_period(self) -> float:
        return max(self.options.ttl, MIN_POLL_SECONDS)

    def _poll_period(self) -> float:
        return max(self.options.ttl, POLL_FACTOR * self.pass_seconds, MIN_POLL_SECONDS)

    def _tell_unsure(self) -> None:
        with self.lock:
            again = []
            for inode, tries in self._unsure:
                if inode.unsure and self.inodes.get(inode.ino) is inode:
                    inode.unsure = not self.kernel.forget_attributes(inode.ino)
                    if inode.unsure and tries > 1:
                        again.append((inode, tries - 1))
            self._unsure = again

    def _apply(self, paths: set[str] | None, verify: set[str]) -> None:
        """Compare what the kernel holds under ``paths`` (None or ``""``: everything) with what the
        view renders now, and tell the kernel the differences."""
        if paths is None or "" in paths:
            folders = frozenset(self._chat_folders())
            with self.lock:
                self._apply_root(folders)
                targets = sorted(child.name for child in self.inodes.root.held_children())
        else:
            targets = sorted({path.partition("/")[0] for path in paths})
        for folder in targets:
            with self.lock:
                inode = self.inodes.find(self.inodes.root, folder, is_dir=True)
            if inode is None:
                continue  # the kernel holds nothing of it: the next lookup renders it afresh
            try:
                state: _Folder | None = self._folder(folder)
            except FileNotFoundError:
                state = None
            media: dict[str, bytes] = {}
            if state is not None:
                for path in verify:
                    head, _, name = path.partition("/")
                    if head == folder and name in state.files and state.files[name].data is None:
                        media[name] = self.view.read(path)
            with self.lock:
                if inode.current:
                    self._apply_folder(inode, state, media)

    def _apply_root(self, folders: frozenset[str]) -> None:
        # Names first, then the listing: the kernel's notifications go out in order, so once a
        # listing shows the change, the names it no longer shows are gone too.
        root = self.inodes.root
        changed = folders != self._folders
        for child in root.held_children():
            if child.name not in folders:
                self._remove(child)
                changed = True
        if changed:
            for name in folders - self._folders:
                self.kernel.forget_entry(root.ino, name)  # a negative entry the kernel may hold
            self._listing_changed(root)
        self._folders = folders

    def _apply_folder(self, folder: Inode, state: _Folder | None, media: dict[str, bytes]) -> None:
        if state is None:
            self._remove(folder)
            self._listing_changed(self.inodes.root)
            return
        names = frozenset(state.files)
        listed = self._listed.get(folder.ino, names)
        changed = names != listed
        for child in folder.held_children():
            new = state.files.get(child.name)
            if new is None:
                self._remove(child)
                changed = True
            elif self._update_file(child, new, media.get(child.name)):
                changed = True
        self._listed[folder.ino] = names
        if changed:
            for name in names - listed:
                self.kernel.forget_entry(folder.ino, name)
            self._listing_changed(folder, state.mtime_ns)
            return
        mtime = self._mtime(folder.path, state.mtime_ns)
        if mtime != folder.mtime_ns:  # the same names, a newer message: attributes only
            folder.mtime_ns = mtime
            self._forget_attributes(folder)
