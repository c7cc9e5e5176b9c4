"""The daemon's picture of the store: a tree of directories and file sizes, kept current.

Keys become paths; directories are implied by keys. Two ways to learn the tree, chosen by
the engine's :attr:`~wafs.Engine.listing`:

* ``"bulk"`` (Redis, PostgreSQL, memory, user engines): one :meth:`~wafs.Engine.scan_keys`
  pass over the whole store builds the tree. Once it is older than ``ttl`` (or ten times
  the last rebuild, on a store that takes long to read) a background thread rebuilds it
  while accesses are served from the current one; past twice that age, or after a failed
  rebuild, accesses wait for the store (and fail with it). A change feed patches the
  tree instead, sets ``ttl`` to infinity and calls :meth:`Tree.invalidate` when it loses
  events.
* ``"directory"`` (FileEngine): each directory is listed with :meth:`~wafs.Engine.children`
  when first needed and again once older than ``ttl``.

Mutations made through the mount are applied to the tree at once. A mutation made while a
listing is being read is also replayed on the new listing, so a rebuild never undoes it.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from ..engine import Engine, Kind
from ..errors import BackendUnavailableError
from ..keys import SEPARATOR, is_under, is_valid_key

log = logging.getLogger(__name__)

#: The listed name under which a directory shows the value of the key with its own name
#: (possible in Redis, PostgreSQL and memory, where ``a`` and ``a/b`` can both exist).
VALUE_NAME = "__value__"
NAME_MAX = 255
UNKNOWN = -1
#: A bulk tree is rebuilt at most once per this many times the duration of its last rebuild, so
#: a store whose SCAN takes longer than ``ttl`` is not rescanned back to back.
RESCAN_FACTOR = 10
#: Unknown sizes read in one call when one is needed (``ls -l``, ``find -size``): those of the
#: whole directory, and of the directories after it up to this many.
SIZE_BATCH = 1000
#: After a rebuild failed because the store is unavailable, accesses that need the store fail
#: at once for this long instead of each waiting out the client's retries in turn (the mount
#: answers one request at a time: a `cp -a` of a dead store would otherwise take seconds per file).
UNAVAILABLE_HOLD = 0.5
#: How often the background thread checks whether a bulk tree is due for a rebuild.
POLL_SECONDS = 0.1


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector: a tree build makes hundreds of thousands of
    objects, none in a cycle, and each collection they trigger would walk them all again."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class Directory(dict[str, "Directory | int"]):
    """A directory: maps a name to a sub-``Directory`` or to a file size (-1: unknown).

    The dict itself rather than an object holding one: a tree has a directory per message,
    and this saves 40 bytes each. It compares and hashes by identity, like an object (an
    empty one is still false: test ``is None``)."""

    __slots__ = ("value", "loaded", "local")
    __eq__ = object.__eq__
    __ne__ = object.__ne__
    __hash__ = object.__hash__  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.value: int | None = None  # size of the key named like this directory, if any
        self.loaded = 0.0  # monotonic time the listing was read; 0: never
        self.local = False  # made by mkdir or emptied through the mount: kept with no keys

    def is_empty(self) -> bool:
        return len(self) == 0 and self.value is None


_NOT_NAMES = frozenset(["", ".", "..", VALUE_NAME])


def displayable(key: str) -> bool:
    """True when a key can be shown as a path: valid, no reserved name, no overlong segment."""
    return _displayable_parts(key, key.split(SEPARATOR))


def _displayable_parts(key: str, parts: list[str]) -> bool:
    # The key rules of wafs.keys plus the mount's own, in one pass (this runs once per key
    # of the store on every rebuild of the tree).
    if "\0" in key or not _NOT_NAMES.isdisjoint(parts):
        return False
    if key.isascii():
        return len(key) <= NAME_MAX or all(len(part) <= NAME_MAX for part in parts)
    return is_valid_key(key) and all(len(part.encode("utf-8")) <= NAME_MAX for part in parts)


@dataclass(frozen=True)
class _Change:
    kind: str  # "put", "size" (learned, None: gone), "drop", "drop_tree", "mkdir", "forget"
    path: str
    size: int | None = UNKNOWN

    def within(self, directory: str) -> bool:
        return directory == "" or self.path == directory or self.path.startswith(directory + SEPARATOR)


def _from(entries: Directory, start: str | None,
          inclusive: bool) -> Iterable[tuple[str, Directory | int]]:
    """The entries from ``start`` on, in listing order (all of them when it is not there)."""
    items = iter(entries.items())
    if start is None or start not in entries:
        return items
    for name, entry in items:
        if name == start:
            return itertools.chain([(name, entry)], items) if inclusive else items
    return items


def _before(entries: Directory, start: str) -> Iterable[tuple[str, Directory | int]]:
    """The entries before ``start``, nearest first (none when it is not there)."""
    names = reversed(entries)
    for name in names:
        if name == start:
            return ((name, entries[name]) for name in names)
    return ()


def _set_entry_size(parent: Directory, name: str, size: int | None, create: bool = False) -> None:
    """Set the size of file ``name`` in ``parent`` (None: remove it; a directory's own value)."""
    entry = parent.get(name)
    if isinstance(entry, Directory):
        entry.value = size
    elif size is None:
        parent.pop(name, None)
    elif entry is not None or create:
        parent[name] = size


_MISSING = Directory()  # not looked up yet


class Tree:
    """Thread-safe tree of the store. Paths here are keys: ``""`` is the root."""

    def __init__(self, engine: Engine, ttl: float = 1.0) -> None:
        self.engine = engine
        self.bulk = engine.listing == "bulk"
        self.ttl = ttl
        self.lock = threading.RLock()
        self._load_lock = threading.Lock()
        self._sizes_lock = threading.Lock()
        self.root = Directory()
        self.hidden: set[str] = set()  # keys that cannot be shown, as the store holds them
        self._journal: list[_Change] | None = None
        self._local_dirs: set[str] = set()  # made by mkdir or emptied through the mount
        self._held: set[str] = set()  # files created through the mount, not yet in the store
        self._rescan_seconds = 0.0  # how long the last whole-store rebuild took
        self._scan_failed = False  # the last rebuild failed: do not serve the old tree
        self._unavailable: tuple[float, BackendUnavailableError] | None = None  # when, and why
        self._stopped = threading.Event()
        self._dir_changed: dict[str, int] = {}  # directory -> wall time its names last changed
        self._rebuilt_ns = 0  # wall time the last whole-store read replaced an older tree
        #: Called (outside the tree's locks) once a listing replaced what the tree held: the
        #: whole tree (``""`` after a whole-store read) or one directory whose names changed.
        self.on_listed: Callable[[str], None] = lambda path: None
        self.on_hidden: Callable[[str], None] = lambda key: log.warning(
            "key %r cannot be shown as a path; it is hidden (rm -r of its parent still removes it)", key
        )

    # --- freshness -------------------------------------------------------------------------

    def changed_ns(self, directory: str) -> int:
        """When the names in ``directory`` last changed, as far as the daemon knows (wall ns).

        A bulk tree read again from the store may differ anywhere: every directory counts as
        changed then, so the kernel lists it again."""
        return max(self._dir_changed.get(directory, 0), self._rebuilt_ns)

    def _names_changed(self, path: str) -> None:
        self._dir_changed[path.rpartition(SEPARATOR)[0]] = time.time_ns()

    def invalidate(self) -> None:
        """Forget every listing: the next access reads the store again."""
        with self.lock:
            self.root.loaded = 0.0
            for directory in self._walk_dirs(self.root):
                directory.loaded = 0.0

    def _stale(self, directory: Directory, factor: float = 1.0) -> bool:
        ttl = max(self.ttl, RESCAN_FACTOR * self._rescan_seconds) if self.bulk else self.ttl
        return directory.loaded == 0.0 or (
            not math.isinf(ttl) and time.monotonic() - directory.loaded > factor * ttl
        )

    def refresh(self) -> None:
        """Read the store again, however fresh the tree is.

        Bulk engines: the whole store, at once, from a read that starts after this call.
        Directory engines: every listing is forgotten, so each is read on its next access.
        """
        if self.bulk:
            self._rescan(force=True)
        else:
            self.invalidate()

    def _ensure(self, path: str) -> Directory | None:
        """The directory at ``path`` with a fresh listing, or None if there is none."""
        if self.bulk:
            if self._scan_failed or self._stale(self.root, factor=2.0):
                self._fail_while_unavailable()
                self._rescan()  # no tree, or one too old to serve: wait for the store (or EIO)
            with self.lock:
                return self._find_dir(path)
        parts = path.split(SEPARATOR) if path else []
        current = ""
        for depth in range(len(parts) + 1):
            with self.lock:
                node = self._find_dir(current)
                stale = node is not None and self._stale(node)
            if node is None:
                return None
            if stale:
                self._list_directory(current)
            if depth < len(parts):
                current = f"{current}{SEPARATOR}{parts[depth]}" if current else parts[depth]
        with self.lock:
            return self._find_dir(path)

    # --- reading the store -------------------------------------------------------------------

    def _begin_listing(self) -> float:
        with self.lock:
            if self._journal is None:
                self._journal = []
        return time.monotonic()

    def _end_listing(self, directory: str) -> list[_Change]:
        with self.lock:
            journal, self._journal = self._journal or [], None
        return [change for change in journal if change.within(directory)]

    def start_polling(self) -> None:
        """Rebuild a bulk tree in the background whenever it is due (stops with :meth:`stop`)."""

        def poll() -> None:
            while not self._stopped.wait(POLL_SECONDS):
                if not self._stale(self.root):
                    continue
                try:
                    self._rescan()
                except Exception as exc:  # the next access rescans in the foreground: EIO
                    log.warning("reading the store's tree failed: %s", exc)

        if self.bulk:
            threading.Thread(target=poll, name="wafs-rescan", daemon=True).start()

    def stop(self) -> None:
        self._stopped.set()

    def _fail_while_unavailable(self) -> None:
        """Raise the last rebuild's failure again if the store was unavailable just now."""
        failure = self._unavailable
        if failure is not None and time.monotonic() - failure[0] < UNAVAILABLE_HOLD:
            raise BackendUnavailableError(str(failure[1])) from failure[1]

    def _rescan(self, force: bool = False) -> None:
        if self._read_all(force):
            self.on_listed("")

    def _read_all(self, force: bool) -> bool:
        """Read the whole store into a new tree; False when another thread just did."""
        with self._load_lock:
            if not force and not self._scan_failed and not self._stale(self.root):
                return False  # another thread rebuilt it while this one waited
            started = self._begin_listing()
            try:
                with _collector_paused():
                    keys = iter(self.engine.scan_keys(""))
                    # The wait for the store's first answer (a store coming back, a reconnect)
                    # is not what a rebuild costs: counted, it kept the tree 10x that long.
                    first = next(keys, None)
                    answered = time.monotonic()
                    new_root, hidden = self._build(itertools.chain([] if first is None else [first], keys))
            except BaseException as exc:
                self._end_listing("")
                self._scan_failed = True
                if isinstance(exc, BackendUnavailableError):
                    self._unavailable = (time.monotonic(), exc)
                raise
            self._scan_failed = False
            self._unavailable = None
            with self.lock:  # the journal ends here: no change can fall between it and the swap
                for change in self._end_listing(""):
                    self._apply(new_root, change)
                for path in self._local_dirs:
                    self._make_dirs(new_root, path, local=True)
                for key in self._held:
                    if self._find_file(new_root, key) is None:
                        self._apply(new_root, _Change("put", key, 0))
                new_root.loaded = started
                if self.root.loaded:
                    self._rebuilt_ns = time.time_ns()
                self.root = new_root
                self._rescan_seconds = time.monotonic() - answered
                self._note_hidden(hidden)
        return True

    def _build(self, keys: Iterable[str]) -> tuple[Directory, list[str]]:
        root = Directory()
        names: dict[str, str] = {}  # one string object per distinct name, to save memory
        hidden = []
        for key in keys:
            parts = key.split(SEPARATOR)
            if not _displayable_parts(key, parts):
                hidden.append(key)
                continue
            *parents, leaf = parts
            node = root
            for name in parents:
                child = node.get(name)
                if not isinstance(child, Directory):
                    name = names.setdefault(name, name)
                    replaced = Directory()
                    if child is not None:
                        replaced.value = child
                    node[name] = child = replaced
                node = child
            existing = node.get(leaf)
            if isinstance(existing, Directory):
                existing.value = UNKNOWN
            else:
                node[names.setdefault(leaf, leaf)] = UNKNOWN
        return root, hidden

    def _list_directory(self, path: str) -> None:
        if self._read_directory(path):
            self.on_listed(path)

    def _read_directory(self, path: str) -> bool:
        """List one directory of the store again; True when its names changed."""
        with self._load_lock:
            with self.lock:
                node = self._find_dir(path)
                if node is None or not self._stale(node):
                    return False
            started = self._begin_listing()
            try:
                children = self.engine.children(path)
                files = [self._join(path, n) for n, kind in children.items() if kind & Kind.FILE]
                sizes = self.engine.sizes([k for k in files if displayable(k)]) if files else {}
            except BaseException:
                self._end_listing(path)
                raise
            with self.lock:
                replay = self._end_listing(path)
                node = self._find_dir(path)
                if node is None:
                    return False
                old = dict(node)
                node.clear()
                node.value = None
                hidden = []
                for name, kind in children.items():
                    key = self._join(path, name)
                    if not displayable(key):
                        hidden.append(key)
                        continue
                    if kind & Kind.DIR:
                        previous = old.get(name)
                        child = previous if isinstance(previous, Directory) else Directory()
                        node[name] = child
                        if kind & Kind.FILE:
                            child.value = sizes.get(key) or 0
                    else:
                        size = sizes.get(key)
                        if size is not None:
                            node[name] = size
                for name, previous in old.items():
                    if isinstance(previous, Directory) and name not in node and (
                        previous.local or self._holds_local_dir(self._join(path, name))
                    ):
                        node[name] = previous
                for change in replay:
                    self._apply(self.root, change)
                for key in self._held:
                    if _Change("put", key).within(path) and self._find_file(self.root, key) is None:
                        self._apply(self.root, _Change("put", key, 0))
                changed = node.keys() != old.keys()
                if changed:
                    self._dir_changed[path] = now = time.time_ns()
                    for name, previous in old.items():  # gone, with all below: if they come
                        if isinstance(previous, Directory) and name not in node:  # back,
                            self._mark_subtree(self._join(path, name), previous, now)  # list anew
                node.loaded = started
                self._note_hidden(hidden)
        return changed

    def _mark_subtree(self, path: str, directory: Directory, now: int) -> None:
        self._dir_changed[path] = now
        for name, entry in directory.items():
            if isinstance(entry, Directory):
                self._mark_subtree(self._join(path, name), entry, now)

    def _holds_local_dir(self, path: str) -> bool:
        # A directory with no keys left on disk stays while a mkdir-made directory is below it.
        below = path + SEPARATOR
        return any(local.startswith(below) for local in self._local_dirs)

    def _note_hidden(self, keys: Iterable[str]) -> None:
        for key in keys:
            if key not in self.hidden:
                self.hidden.add(key)
                self.on_hidden(key)

    # --- lookups -------------------------------------------------------------------------------

    def lookup(self, path: str) -> Directory | int | None:
        """What ``path`` is: a Directory, a file size (-1 unknown), or None (no such path)."""
        if path == "":
            return self._ensure("")
        parent_path, _, name = path.rpartition(SEPARATOR)
        parent = self._ensure(parent_path)
        if parent is None:
            return None
        with self.lock:
            if name == VALUE_NAME:
                return parent.value
            return parent.get(name)

    def listing(self, path: str) -> Directory | None:
        """The directory at ``path``, freshly listed, or None when there is none."""
        return self._ensure(path)

    def neighbours(self, path: str, want: Callable[[str, int], bool], limit: int,
                   whole_directory: bool = False) -> list[str]:
        """Up to ``limit`` keys of files from ``path`` on, in listing order, for one batched call.

        ``path`` itself and the files after it in its directory come first (with
        ``whole_directory``, every file of its directory), then those of the directories after
        it in its parent (a tree walk such as ``grep -r`` or ``cp -a`` opens them next): every
        message is a directory of its own, so one directory alone is a poor batch. With
        ``whole_directory``, a batch with room left takes the directories before it too,
        nearest first (``ls -R`` and ``rsync`` walk in name order, not in listing order).
        ``want(key, size)`` picks the files.
        """
        parent_path, _, own_name = path.rpartition(SEPARATOR)
        found: list[str] = []
        with self.lock:
            parent = self._find_dir(parent_path)
            if parent is None:
                return found
            start = None if whole_directory else own_name
            self._collect(parent_path, parent, want, found, limit, start=start)
            if not parent_path:
                return found
            grand_path, _, parent_name = parent_path.rpartition(SEPARATOR)
            grand = self._find_dir(grand_path)
            if grand is None:
                return found
            siblings = _from(grand, parent_name, inclusive=False)
            if whole_directory:
                siblings = itertools.chain(siblings, _before(grand, parent_name))
            for name, entry in siblings:
                if len(found) >= limit:
                    break
                if isinstance(entry, Directory):
                    self._collect(self._join(grand_path, name), entry, want, found, limit)
        return found

    def _collect(self, path: str, directory: Directory, want: Callable[[str, int], bool],
                 found: list[str], limit: int, start: str | None = None) -> None:
        if directory.value is not None and path and want(path, directory.value):
            found.append(path)
        for name, entry in _from(directory, start, inclusive=True):
            if len(found) >= limit:
                return
            if not isinstance(entry, Directory):
                key = self._join(path, name)
                if want(key, entry):
                    found.append(key)

    def file_size(self, path: str) -> int:
        """The size of the file at ``path``; unknown sizes nearby are read in the same batch."""
        with self._sizes_lock:  # one batch at a time: threads asking for the same directory wait
            found = self.lookup_cached(path)
            if isinstance(found, int) and found >= 0:
                return found
            with self.lock:
                parent = self._find_dir(path.rpartition(SEPARATOR)[0])
                directory_size = len(parent) + 1 if parent is not None else 0
            # ls -l stats in name order, not listing order: the whole directory in one batch
            unknown = self.neighbours(path, lambda key, size: size == UNKNOWN,
                                      max(SIZE_BATCH, directory_size), whole_directory=True)
            if not unknown:
                return 0
            self._record_sizes(self.engine.sizes(unknown))
            found = self.lookup_cached(path)
        return found if isinstance(found, int) and found >= 0 else 0

    def _record_sizes(self, sizes: dict[str, int | None]) -> None:
        """Sizes just read from the store (None: the key is gone, unless it is being created
        through the mount); a rebuild meanwhile keeps them."""
        with self.lock:
            journal = self._journal
            parents: dict[str, Directory | None] = {}
            for key, size in sizes.items():
                if size is None and key in self._held:
                    continue
                parent_path, _, name = key.rpartition(SEPARATOR)
                parent = parents.get(parent_path, _MISSING)
                if parent is _MISSING:
                    parent = parents[parent_path] = self._find_dir(parent_path)
                if parent is not None:
                    _set_entry_size(parent, name, size)
                if journal is not None:
                    journal.append(_Change("size", key, size))

    def learn_sizes(self, sizes: dict[str, int | None]) -> None:
        """Record sizes seen in values just read (a ``None`` drops the key)."""
        with self.lock:
            self._record_sizes({key: size for key, size in sizes.items()
                                if size is None or self._find_file(self.root, key) != size})

    def lookup_cached(self, path: str) -> Directory | int | None:
        """Like :meth:`lookup` with no store access (the caller holds fresh data)."""
        with self.lock:
            parent_path, _, name = path.rpartition(SEPARATOR)
            parent = self._find_dir(parent_path)
            if parent is None:
                return None
            return parent.value if name == VALUE_NAME else parent.get(name)

    def cached_directory(self, path: str) -> Directory | None:
        """The directory at ``path`` as the tree holds it now, with no store access."""
        with self.lock:
            return self._find_dir(path)

    def hidden_under(self, directory: str) -> list[str]:
        with self.lock:
            return [key for key in self.hidden if key.startswith(directory + SEPARATOR)]

    # --- changes made through the mount ----------------------------------------------------------

    def put(self, key: str, size: int) -> None:
        self._change(_Change("put", key, size))

    def drop(self, key: str) -> None:
        self._change(_Change("drop", key))

    def drop_tree(self, key: str) -> None:
        with self.lock:
            self.hidden = {k for k in self.hidden if not is_under(k, key)}
            self._local_dirs = {d for d in self._local_dirs if not is_under(d, key)}
        self._change(_Change("drop_tree", key))

    def forget(self, key: str) -> None:
        """Another client deleted ``key``: drop it, and the directories it leaves empty."""
        self._change(_Change("forget", key))

    def note_hidden(self, key: str, deleted: bool) -> None:
        """Another client wrote or deleted a key that cannot be shown."""
        with self.lock:
            if deleted:
                self.hidden.discard(key)
            else:
                self._note_hidden([key])

    def hold(self, key: str) -> None:
        """``key`` is being created through the mount: keep it in every new listing until
        :meth:`release` (the store has it only once its first write is committed)."""
        with self.lock:
            self._held.add(key)

    def release(self, key: str) -> None:
        with self.lock:
            self._held.discard(key)

    def mkdir(self, key: str) -> None:
        with self.lock:
            self._local_dirs.add(key)
        self._change(_Change("mkdir", key))

    def _change(self, change: _Change) -> None:
        with self.lock:
            if change.kind != "size":
                self._names_changed(change.path)
            emptied = self._apply(self.root, change)
            if emptied:  # kept by the next rebuilds too, until rmdir
                self._make_dirs(self.root, emptied, local=True)
                self._local_dirs.add(emptied)
            if self._journal is not None:
                self._journal.append(change)

    def _apply(self, root: Directory, change: _Change) -> str | None:
        """Apply ``change`` to the tree at ``root``; the path of a directory a drop left empty
        (or found missing: a rebuild that read the store after the delete was just swapped in)."""
        if change.kind == "put":
            self._set_size(change.path, change.size, root, create=True)
        elif change.kind == "size":
            self._set_size(change.path, change.size, root)
        elif change.kind == "mkdir":
            self._make_dirs(root, change.path, local=True)
        elif change.kind == "forget":
            self._forget(root, change.path)
        else:
            parent_path, _, name = change.path.rpartition(SEPARATOR)
            parent = self._find_dir(parent_path, root)
            if parent is None:
                return parent_path or None
            entry = parent.get(name)
            if change.kind == "drop_tree" or not isinstance(entry, Directory):
                if entry is not None:
                    del parent[name]
            else:
                entry.value = None
                entry.local = True
                return change.path if entry.is_empty() else None
            if parent.is_empty() and parent_path:  # rm -r removes the children, then rmdir's the parent
                parent.local = True
                return parent_path
        return None

    def _forget(self, root: Directory, key: str) -> None:
        path = [root]
        names = key.split(SEPARATOR)
        for name in names[:-1]:
            child = path[-1].get(name)
            if not isinstance(child, Directory):
                return
            path.append(child)
        entry = path[-1].get(names[-1])
        if isinstance(entry, Directory):
            entry.value = None
            if not entry.is_empty() or entry.local:
                return
        if entry is not None:
            del path[-1][names[-1]]
        for depth in range(len(path) - 1, 0, -1):  # prune directories the delete left empty
            if not path[depth].is_empty() or path[depth].local:
                break
            del path[depth - 1][names[depth - 1]]

    def _set_size(self, key: str, size: int | None, root: Directory | None = None,
                  create: bool = False) -> None:
        root = self.root if root is None else root
        parent_path, _, name = key.rpartition(SEPARATOR)
        parent = self._make_dirs(root, parent_path) if create else self._find_dir(parent_path, root)
        if parent is not None:
            _set_entry_size(parent, name, size, create)

    # --- helpers ---------------------------------------------------------------------------------

    def _find_file(self, root: Directory, key: str) -> int | None:
        parent_path, _, name = key.rpartition(SEPARATOR)
        parent = self._find_dir(parent_path, root)
        if parent is None:
            return None
        entry = parent.get(name)
        return entry.value if isinstance(entry, Directory) else entry

    @staticmethod
    def _join(directory: str, name: str) -> str:
        return f"{directory}{SEPARATOR}{name}" if directory else name

    def _find_dir(self, path: str, root: Directory | None = None) -> Directory | None:
        node = self.root if root is None else root
        if path == "":
            return node
        for name in path.split(SEPARATOR):
            child = node.get(name)
            if not isinstance(child, Directory):
                return None
            node = child
        return node

    def _make_dirs(self, root: Directory, path: str, local: bool = False) -> Directory:
        node = root
        if path == "":
            return node
        for name in path.split(SEPARATOR):
            child = node.get(name)
            if not isinstance(child, Directory):
                replaced = Directory()
                if isinstance(child, int):
                    replaced.value = child
                replaced.loaded = node.loaded
                node[name] = child = replaced
            node = child
        node.local = node.local or local
        return node

    @staticmethod
    def _walk_dirs(root: Directory) -> Iterable[Directory]:
        stack = [root]
        while stack:
            node = stack.pop()
            for entry in node.values():
                if isinstance(entry, Directory):
                    yield entry
                    stack.append(entry)
