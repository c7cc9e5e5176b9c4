"""The inodes the kernel holds, and what it was told about each.

The kernel names files by inode number. An inode stands for one path and, for a file, for
one version of its value: the kernel may cache its attributes and pages for as long as they
are true. A value that grows by an append keeps its inode (the old bytes are a prefix of the
new ones, so cached pages stay right). Any other change gives the path a new inode
(:meth:`InodeTable.supersede`): a process that has the old one open keeps reading the old
value, as after a rename over a file on a disk, and the next lookup of the name finds the
new one. Inode numbers are a hash of the path (the next free number when a superseded version
still holds it), so an unchanged file keeps its ``st_ino`` however often the kernel forgets
and finds it again while the daemon runs.

A tree walk makes an inode of every file, so the table keeps them as columns (one array per
field, an inode being a row) rather than as an object each: about 80 bytes per inode instead
of 240. :class:`Inode` is a view of one row, made when a request needs it and dropped after;
while any view of a row lives, every lookup of that row returns the same view, and the row is
not reused.
"""

from __future__ import annotations

import itertools
import threading
import weakref
from array import array
from collections.abc import Iterable, Iterator

from ..keys import SEPARATOR
from .fuse import ROOT_INO
from .tree import VALUE_NAME

_SUPERSEDED, _UNSURE, _REMOVED, _FILLED, _DIR, _DIGESTED, _FORGOTTEN = 1, 2, 4, 8, 16, 32, 64
_NONE = -1  # no row: no parent, no next or first child, an empty cell of the number index
_UNLINKED = -2  # in the ``previous`` column: the row is not among its parent's held names
_ROOT_ROW = 0


class _Flag:
    """A boolean kept as one bit of its inode's row of flags."""

    def __init__(self, bit: int) -> None:
        self.bit = bit

    def __get__(self, inode: Inode, owner: object = None) -> bool:
        return bool(inode.table._flags[inode.row] & self.bit)

    def __set__(self, inode: Inode, value: bool) -> None:
        flags = inode.table._flags
        flags[inode.row] = flags[inode.row] | self.bit if value else flags[inode.row] & ~self.bit


class _Column:
    """A number kept in one of the table's columns."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.column = f"_{name}"

    def __get__(self, inode: Inode, owner: object = None) -> int:
        column: array[int] = getattr(inode.table, self.column)
        return column[inode.row]

    def __set__(self, inode: Inode, value: int) -> None:
        column: array[int] = getattr(inode.table, self.column)
        column[inode.row] = value


class Inode:
    """An inode the kernel knows (``lookups`` > 0), or one kept open past its name: a view of
    its row in :class:`InodeTable`."""

    __slots__ = ("table", "row", "__weakref__")

    def __init__(self, table: InodeTable, row: int) -> None:
        self.table = table
        self.row = row

    ino = _Column()
    lookups = _Column()
    #: For a file: the size the kernel was told.
    size = _Column()
    mtime_ns = _Column()
    #: Its name was removed (unlinked, deleted by another client, renamed over): writers still
    #: holding it commit nothing, as on a disk.
    removed = _Flag(_REMOVED)
    #: The kernel may hold older attributes than these: telling it failed while a reply that
    #: makes the inode was on its way (see ``KernelCache.forget_attributes``).
    unsure = _Flag(_UNSURE)
    #: The kernel was given the pages of this version (or they are queued): not again.
    filled = _Flag(_FILLED)

    @property
    def name(self) -> str:
        return self.table._names[self.row]

    @property
    def parent(self) -> Inode | None:
        parent = self.table._parents[self.row]
        return None if parent == _NONE else self.table._view(parent)

    @parent.setter
    def parent(self, parent: Inode | None) -> None:
        self.table._reparent(self.row, _NONE if parent is None else parent.row)

    @property
    def digest(self) -> int | None:
        """For a file, the digest of the version it stands for (None: no byte of it was read
        yet, so any version may still become this inode's)."""
        table, row = self.table, self.row
        return table._digests[row] if table._flags[row] & _DIGESTED else None

    @digest.setter
    def digest(self, digest: int | None) -> None:
        table, row = self.table, self.row
        if digest is None:
            table._flags[row] &= ~_DIGESTED
        else:
            table._digests[row] = digest
            table._flags[row] |= _DIGESTED

    @property
    def data(self) -> bytes | None:
        """The bytes of its version, where the daemon keeps them (one no longer current, a chat)."""
        return self.table._data.get(self.row)

    @data.setter
    def data(self, data: bytes | None) -> None:
        if data is None:
            self.table._data.pop(self.row, None)
        else:
            self.table._data[self.row] = data

    @property
    def is_dir(self) -> bool:
        return bool(self.table._flags[self.row] & _DIR)

    @property
    def current(self) -> bool:
        """False once the name has a newer inode, or is gone: it then serves ``data`` only."""
        return not self.table._flags[self.row] & _SUPERSEDED

    def held(self, name: str) -> Inode | None:
        """The current inode of ``name`` in this directory, if the kernel holds one."""
        row = self.table._held(self.row, name)
        return None if row == _NONE else self.table._view(row)

    def held_children(self) -> list[Inode]:
        """The current inodes of the names in this directory that the kernel holds."""
        view = self.table._view
        return [view(row) for row in self.table._held_rows(self.row)]

    def first_held(self, count: int) -> Iterator[Inode]:
        """At most ``count`` of :meth:`held_children`, without copying them all."""
        return map(self.table._view, itertools.islice(self.table._held_rows(self.row), count))

    @property
    def path(self) -> str:
        """The tree path (``""`` for the root, ``dir/__value__`` for a directory's own value)."""
        return self.table._path(self.row)

    @property
    def key(self) -> str:
        path = self.path
        if self.name == VALUE_NAME and SEPARATOR in path:
            return path[: -len(VALUE_NAME) - 1]
        return path


class InodeTable:
    """Inode numbers to :class:`Inode`, with the kernel's lookup counts. Not thread-safe (the
    operations hold their lock around every call), but a row has one view whatever thread asks.

    A row is freed once the kernel forgot its inode, no view of it lives and no other row has
    it as parent (a file kept open past its directory still has a path).
    """

    def __init__(self, mtime_ns: int) -> None:
        self._ino = array("Q")
        self._lookups = array("i")
        self._size = array("q")
        self._mtime_ns = array("q")
        self._digests = array("q")
        self._parents = array("i")
        self._dependents = array("i")  # rows whose parent this row is
        self._first = array("i")  # a directory's held names: a list linked through the rows
        self._next = array("i")
        self._previous = array("i")
        self._flags = bytearray()
        self._names: list[str] = []
        self._rows = 0  # rows used so far, freed ones included; the columns have room for more
        self._data: dict[int, bytes] = {}
        self._named: dict[int, dict[str, int]] = {}  # rows of the names of a directory holding many
        self._free = array("i")
        self._unreleased: list[int] = []  # rows to free once no view of them lives
        self._unreleased_bound = _UNRELEASED_BOUND
        # The views handed out, by row; those that died are swept out once as many more were made.
        self._views: dict[int, weakref.ref[Inode]] = {}
        self._views_bound = _VIEWS_BOUND
        self._viewing = threading.Lock()
        self._index = array("i", [_NONE]) * 64  # rows by number: open addressing, linear probes
        self._indexed = 0
        root = self._new(ROOT_INO, self._cell(ROOT_INO), _NONE, "", is_dir=True)
        self.root = self._view(root)
        self.root.lookups = 1
        self.root.mtime_ns = mtime_ns

    def get(self, ino: int) -> Inode | None:
        row = self._index[self._cell(ino)]
        return None if row == _NONE else self._view(row)

    def __iter__(self) -> Iterator[Inode]:
        return iter([self._view(row) for row in self._index if row != _NONE])

    def __len__(self) -> int:
        return self._indexed

    def find(self, parent: Inode, name: str, is_dir: bool) -> Inode | None:
        """The current inode of ``name`` in ``parent``, if the kernel holds one."""
        row = self._held(parent.row, name)
        return self._view(row) if row != _NONE and bool(self._flags[row] & _DIR) == is_dir else None

    def child(self, parent: Inode, name: str, is_dir: bool, path: str | None = None) -> Inode:
        """The current inode of ``name`` in ``parent``, made when the kernel has none (a name
        that changed between file and directory gets a new inode). ``path``: its path, when
        the caller has it."""
        return self._view(self._child(parent.row, name, is_dir, path))

    def listed(self, parent: Inode, name: str, is_dir: bool, path: str, size: int,
               mtime_ns: int) -> tuple[int, int, int] | None:
        """Count one more lookup of the current inode of ``name`` in ``parent`` (at ``path``),
        for a listing that tells the kernel of it, and return its number, size and mtime.

        The inode is made when the kernel holds none; a file of which nothing was told or read
        yet takes ``size`` (and ``mtime_ns`` if it has no mtime). None, counting nothing, when a
        file's inode stands for another size than ``size`` (< 0: not known): the caller checks."""
        row = self._child(parent.row, name, is_dir, path)
        if not is_dir:
            if self._lookups[row] == 0 and not self._flags[row] & _DIGESTED:
                self._size[row] = size
                if not self._mtime_ns[row]:
                    self._mtime_ns[row] = mtime_ns
            elif self._size[row] != size and size >= 0:
                return None
        self._lookups[row] += 1
        return self._ino[row], self._size[row], self._mtime_ns[row]

    def forget(self, ino: int, count: int) -> None:
        self.forget_many([(ino, count)])

    def forget_many(self, forgets: Iterable[tuple[int, int]]) -> None:
        """The kernel dropped ``count`` lookups of each ``ino`` (an unmount: every inode)."""
        lookups = self._lookups
        for ino, count in forgets:
            cell = self._cell(ino)
            row = self._index[cell]
            if row == _NONE or ino == ROOT_INO:
                continue
            lookups[row] -= count
            if lookups[row] <= 0:
                self._unindex(cell)
                self._detach(row)
                self._flags[row] |= _FORGOTTEN
                self._release(row)

    def supersede(self, inode: Inode, data: bytes | None) -> None:
        """The name of ``inode`` has a new version, or is gone: the next lookup gets a new
        inode; this one serves ``data`` (the bytes of its version, if the daemon still has
        them) until the kernel forgets it."""
        if not inode.current:
            return
        self._flags[inode.row] |= _SUPERSEDED
        inode.data = data
        self._detach(inode.row)

    def move(self, inode: Inode, parent: Inode, name: str) -> None:
        """``inode`` was renamed over whatever ``parent`` held as ``name`` (the caller
        superseded that): it keeps its number, as the kernel moved its entry."""
        self._reparent(inode.row, parent.row)
        self._names[inode.row] = name
        self._hold(parent.row, inode.row)

    # --- rows -----------------------------------------------------------------------------------

    def _child(self, parent: int, name: str, is_dir: bool, path: str | None) -> int:
        found = self._held(parent, name)
        if found != _NONE:
            if bool(self._flags[found] & _DIR) == is_dir:
                return found
            self.supersede(self._view(found), None)
        ino = self._number(path if path is not None else _join(self._path(parent), name), is_dir)
        cell = self._cell(ino)
        while self._index[cell] != _NONE:  # a superseded version still held, or a collision
            ino = ino + 1 if ino < _INO_MASK else 2
            cell = self._cell(ino)
        row = self._new(ino, cell, parent, name, is_dir)
        self._link(parent, row)
        return row

    def _view(self, row: int) -> Inode:
        seen = self._views.get(row)
        view = None if seen is None else seen()
        if view is None:
            with self._viewing:  # one view per row, whichever thread asks first
                seen = self._views.get(row)
                view = None if seen is None else seen()
                if view is None:
                    view = Inode(self, row)
                    self._views[row] = weakref.ref(view)
                    if len(self._views) > self._views_bound:
                        self._views = {row: seen for row, seen in self._views.items() if seen() is not None}
                        self._views_bound = max(_VIEWS_BOUND, 2 * len(self._views))
        return view

    def _viewed(self, row: int) -> bool:
        seen = self._views.get(row)
        return seen is not None and seen() is not None

    def _new(self, ino: int, cell: int, parent: int, name: str, is_dir: bool) -> int:
        """A row for a new inode, put in the empty index ``cell`` of its number."""
        if len(self._unreleased) > self._unreleased_bound:
            self._release_unviewed()
        flags = _DIR if is_dir else 0
        if self._free:
            row = self._free.pop()
            self._ino[row], self._lookups[row], self._size[row], self._mtime_ns[row] = ino, 0, 0, 0
            self._parents[row], self._dependents[row], self._flags[row] = parent, 0, flags
            self._first[row] = self._next[row] = _NONE
            self._previous[row] = _UNLINKED
            self._names[row] = name
        else:
            row = self._rows
            if row == len(self._names):
                self._add_rows()
            self._rows += 1
            self._ino[row], self._parents[row], self._flags[row], self._names[row] = ino, parent, flags, name
        if parent != _NONE:
            self._dependents[parent] += 1
        self._index[cell] = row
        self._indexed += 1
        if self._indexed * 2 > len(self._index):
            self._grow_index()
        return row

    def _add_rows(self) -> None:
        """Room for :data:`_ROWS_ADDED` more rows, each as a new row starts."""
        for column, value in ((self._ino, 0), (self._lookups, 0), (self._size, 0), (self._mtime_ns, 0),
                              (self._digests, 0), (self._parents, _NONE), (self._dependents, 0),
                              (self._first, _NONE), (self._next, _NONE), (self._previous, _UNLINKED)):
            column.extend(array(column.typecode, [value]) * _ROWS_ADDED)
        self._flags.extend(bytes(_ROWS_ADDED))
        self._names.extend([""] * _ROWS_ADDED)

    def _release(self, row: int) -> None:
        """Free ``row`` if nothing needs it any more (its inode forgotten, no view, no row
        below it); then its parent, if that was all it waited for."""
        while row != _NONE and self._flags[row] & _FORGOTTEN and not self._dependents[row]:
            if self._viewed(row):
                self._unreleased.append(row)
                return
            parent = self._parents[row]
            self._data.pop(row, None)
            self._named.pop(row, None)
            self._names[row] = ""
            self._flags[row] = 0
            self._free.append(row)
            if parent != _NONE:
                self._dependents[parent] -= 1
            row = parent

    def _release_unviewed(self) -> None:
        waiting, self._unreleased = self._unreleased, []
        for row in waiting:
            self._release(row)
        # Rows whose views live on are tried again once as many more wait: O(1) per new row.
        self._unreleased_bound = max(_UNRELEASED_BOUND, 2 * len(self._unreleased))

    def _reparent(self, row: int, parent: int) -> None:
        self._detach(row)
        old = self._parents[row]
        self._parents[row] = parent
        if parent != _NONE:
            self._dependents[parent] += 1
        if old != _NONE:
            self._dependents[old] -= 1
            self._release(old)

    def _path(self, row: int) -> str:
        names, parents = self._names, self._parents
        reversed_names = []
        while row > _ROOT_ROW:
            reversed_names.append(names[row])
            row = parents[row]
        return SEPARATOR.join(reversed(reversed_names))

    # --- a directory's held names ----------------------------------------------------------------

    def _held(self, directory: int, name: str) -> int:
        named = self._named.get(directory)
        if named is not None:
            return named.get(name, _NONE)
        names, following = self._names, self._next
        row = self._first[directory]
        while row != _NONE:
            if names[row] == name:
                return row
            row = following[row]
        return _NONE

    def _held_rows(self, directory: int) -> Iterator[int]:
        following = self._next
        row = self._first[directory]
        while row != _NONE:
            after = following[row]  # read first: the caller may detach ``row``
            yield row
            row = after

    def _hold(self, directory: int, row: int) -> None:
        """``row`` is the current inode of its name in ``directory``, in place of any other."""
        held = self._held(directory, self._names[row])
        if held != _NONE:
            self._detach(held)
        self._link(directory, row)

    def _link(self, directory: int, row: int) -> None:
        """Add ``row`` to the held names of ``directory``, which has no other of its name."""
        name = self._names[row]
        first = self._first[directory]
        self._next[row], self._previous[row] = first, _NONE
        if first != _NONE:
            self._previous[first] = row
        self._first[directory] = row
        named = self._named.get(directory)
        if named is not None:
            named[name] = row
        elif (self._dependents[directory] > LISTED_CHILDREN  # no more names than rows below it
              and next(itertools.islice(self._held_rows(directory), LISTED_CHILDREN, None), _NONE) != _NONE):
            self._named[directory] = {self._names[held]: held for held in self._held_rows(directory)}

    def _detach(self, row: int) -> None:
        previous = self._previous[row]
        if previous == _UNLINKED:
            return
        directory, following = self._parents[row], self._next[row]
        if previous == _NONE:
            self._first[directory] = following
        else:
            self._next[previous] = following
        if following != _NONE:
            self._previous[following] = previous
        self._previous[row], self._next[row] = _UNLINKED, _NONE
        named = self._named.get(directory)
        if named is not None and named.get(self._names[row]) == row:
            del named[self._names[row]]

    # --- rows by number ----------------------------------------------------------------------------

    def _cell(self, ino: int) -> int:
        """The index cell that holds ``ino``'s row, or the empty one where it would go."""
        index, numbers = self._index, self._ino
        mask = len(index) - 1
        cell = ino & mask
        while (row := index[cell]) != _NONE and numbers[row] != ino:
            cell = (cell + 1) & mask
        return cell

    def _grow_index(self) -> None:
        rows = [row for row in self._index if row != _NONE]
        self._index = array("i", [_NONE]) * (len(self._index) * 2)
        for row in rows:
            self._index[self._cell(self._ino[row])] = row

    def _unindex(self, cell: int) -> None:
        """Empty ``cell``, moving back the rows whose probe passed it (no tombstones)."""
        index, numbers = self._index, self._ino
        mask = len(index) - 1
        index[cell] = _NONE
        self._indexed -= 1
        hole, cell = cell, (cell + 1) & mask
        while (row := index[cell]) != _NONE:
            home = numbers[row] & mask
            if (cell - home) & mask >= (cell - hole) & mask:
                index[hole], index[cell] = row, _NONE
                hole = cell
            cell = (cell + 1) & mask

    @staticmethod
    def _number(path: str, is_dir: bool) -> int:
        """The same number for the same path whenever it is free: ``st_ino`` stays put for as
        long as the daemon runs (Python's string hash is fixed per process)."""
        number = hash((is_dir, path)) & _INO_MASK
        return number if number > ROOT_INO else number + 2


_INO_MASK = (1 << 63) - 1
_UNRELEASED_BOUND = 64
_VIEWS_BOUND = 1024
_ROWS_ADDED = 1024
#: A directory finds the inodes of its names by walking them up to this many, then by a dict.
LISTED_CHILDREN = 8


def _join(directory: str, name: str) -> str:
    return f"{directory}{SEPARATOR}{name}" if directory else name
