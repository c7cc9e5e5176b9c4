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
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator

from ..keys import SEPARATOR
from .fuse import ROOT_INO
from .tree import VALUE_NAME

_SUPERSEDED, _UNSURE, _REMOVED, _FILLED = 1, 2, 4, 8


class _Flag:
    """A boolean kept as one bit of its inode's ``_flags`` (one field for them all)."""

    def __init__(self, bit: int) -> None:
        self.bit = bit

    def __get__(self, inode: Inode, owner: object = None) -> bool:
        return bool(inode._flags & self.bit)

    def __set__(self, inode: Inode, value: bool) -> None:
        inode._flags = inode._flags | self.bit if value else inode._flags & ~self.bit


class Inode:
    """An inode the kernel knows (``lookups`` > 0), or one kept open past its name. Kept small:
    a tree walk makes one per file."""

    __slots__ = ("ino", "parent", "name", "lookups", "size", "digest", "data", "mtime_ns", "children",
                 "_flags")

    def __init__(self, ino: int, parent: Inode | None, name: str, is_dir: bool) -> None:
        self.ino = ino
        self.parent = parent
        self.name = name
        self.lookups = 0
        #: For a file: the size the kernel was told, and the digest of the version it stands for
        #: (None: no byte of it was read yet, so any version may still become this inode's).
        self.size = 0
        self.digest: int | None = None
        #: The bytes of its version, where the daemon keeps them (one no longer current, a chat).
        self.data: bytes | None = None
        self.mtime_ns = 0
        #: For a directory: the current inodes of the names in it that the kernel holds, in a
        #: list while there are few (a dict of three costs twice a list of three).
        self.children: list[Inode] | dict[str, Inode] | None = [] if is_dir else None
        self._flags = 0

    @property
    def is_dir(self) -> bool:
        return self.children is not None

    def held(self, name: str) -> Inode | None:
        """The current inode of ``name`` in this directory, if the kernel holds one."""
        children = self.children
        if isinstance(children, list):
            for child in children:
                if child.name == name:
                    return child
            return None
        return None if children is None else children.get(name)

    def held_children(self) -> list[Inode]:
        """The current inodes of the names in this directory that the kernel holds."""
        children = self.children
        if isinstance(children, dict):
            return list(children.values())
        return [] if children is None else list(children)

    def first_held(self, count: int) -> Iterator[Inode]:
        """At most ``count`` of :meth:`held_children`, without copying them all."""
        children = self.children
        return itertools.islice(children.values() if isinstance(children, dict) else children or (), count)

    @property
    def current(self) -> bool:
        """False once the name has a newer inode, or is gone: it then serves ``data`` only."""
        return not self._flags & _SUPERSEDED

    #: The kernel may hold older attributes than these: telling it failed while a reply that
    #: makes the inode was on its way (see ``KernelCache.forget_attributes``).
    unsure = _Flag(_UNSURE)
    #: Its name was removed (unlinked, deleted by another client, renamed over): writers still
    #: holding it commit nothing, as on a disk.
    removed = _Flag(_REMOVED)
    #: The kernel was given the pages of this version (or they are queued): not again.
    filled = _Flag(_FILLED)

    def supersede(self, data: bytes | None) -> None:
        """No longer the name's current inode; it serves ``data`` from now on."""
        self._flags |= _SUPERSEDED
        self.data = data

    @property
    def path(self) -> str:
        """The tree path (``""`` for the root, ``dir/__value__`` for a directory's own value)."""
        names = []
        node: Inode | None = self
        while node is not None and node.ino != ROOT_INO:
            names.append(node.name)
            node = node.parent
        return SEPARATOR.join(reversed(names))

    @property
    def key(self) -> str:
        path = self.path
        if self.name == VALUE_NAME and SEPARATOR in path:
            return path[: -len(VALUE_NAME) - 1]
        return path



class InodeTable:
    """Inode numbers to :class:`Inode`, with the kernel's lookup counts. Not thread-safe:
    the operations hold their lock around every call."""

    def __init__(self, mtime_ns: int) -> None:
        self.root = Inode(ROOT_INO, None, "", is_dir=True)
        self.root.lookups = 1
        self.root.mtime_ns = mtime_ns
        self._inodes: dict[int, Inode] = {ROOT_INO: self.root}

    def get(self, ino: int) -> Inode | None:
        return self._inodes.get(ino)

    def __iter__(self) -> Iterator[Inode]:
        return iter(list(self._inodes.values()))

    def __len__(self) -> int:
        return len(self._inodes)

    def find(self, parent: Inode, name: str, is_dir: bool) -> Inode | None:
        """The current inode of ``name`` in ``parent``, if the kernel holds one."""
        found = parent.held(name)
        return found if found is not None and found.is_dir == is_dir else None

    def child(self, parent: Inode, name: str, is_dir: bool, path: str | None = None) -> Inode:
        """The current inode of ``name`` in ``parent``, made when the kernel has none (a name
        that changed between file and directory gets a new inode). ``path``: its path, when
        the caller has it."""
        found = parent.held(name)
        if found is not None:
            if found.is_dir == is_dir:
                return found
            self.supersede(found, None)
        ino = self._number(path if path is not None else _join(parent.path, name), is_dir)
        while ino in self._inodes:  # a superseded version still held, or a hash collision
            ino = ino + 1 if ino < _INO_MASK else 2
        inode = Inode(ino, parent, name, is_dir)
        self._inodes[ino] = inode
        _hold(parent, inode)
        return inode

    def forget(self, ino: int, count: int) -> None:
        self.forget_many([(ino, count)])

    def forget_many(self, forgets: Iterable[tuple[int, int]]) -> None:
        """The kernel dropped ``count`` lookups of each ``ino`` (an unmount: every inode)."""
        inodes = self._inodes
        for ino, count in forgets:
            inode = inodes.get(ino)
            if inode is None or ino == ROOT_INO:
                continue
            inode.lookups -= count
            if inode.lookups <= 0:
                del inodes[ino]
                self._detach(inode)

    def supersede(self, inode: Inode, data: bytes | None) -> None:
        """The name of ``inode`` has a new version, or is gone: the next lookup gets a new
        inode; this one serves ``data`` (the bytes of its version, if the daemon still has
        them) until the kernel forgets it."""
        if not inode.current:
            return
        inode.supersede(data)
        self._detach(inode)

    def move(self, inode: Inode, parent: Inode, name: str) -> None:
        """``inode`` was renamed over whatever ``parent`` held as ``name`` (the caller
        superseded that): it keeps its number, as the kernel moved its entry."""
        self._detach(inode)
        inode.parent, inode.name = parent, name
        _hold(parent, inode)

    @staticmethod
    def _detach(inode: Inode) -> None:
        parent = inode.parent
        if parent is None:
            return
        children = parent.children
        if isinstance(children, list):
            for position, child in enumerate(children):
                if child is inode:
                    del children[position]
                    return
        elif children is not None and children.get(inode.name) is inode:
            del children[inode.name]

    @staticmethod
    def _number(path: str, is_dir: bool) -> int:
        """The same number for the same path whenever it is free: ``st_ino`` stays put for as
        long as the daemon runs (Python's string hash is fixed per process)."""
        number = hash((is_dir, path)) & _INO_MASK
        return number if number > ROOT_INO else number + 2


#: 60 bits: a Python int of two 30-bit digits, 8 bytes less than one of 63 (one per inode).
_INO_MASK = (1 << 60) - 1
#: A directory keeps the inodes of its names in a list up to this many, then in a dict.
LISTED_CHILDREN = 8


def _hold(parent: Inode, inode: Inode) -> None:
    """``inode`` is the current inode of its name in ``parent`` (the caller detached any other)."""
    children = parent.children
    assert children is not None
    if isinstance(children, list):
        children[:] = [child for child in children if child.name != inode.name]
        if len(children) < LISTED_CHILDREN:
            children.append(inode)
            return
        children = parent.children = {child.name: child for child in children}
    children[inode.name] = inode


def _join(directory: str, name: str) -> str:
    return f"{directory}{SEPARATOR}{name}" if directory else name
