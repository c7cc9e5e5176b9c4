"""Open files of a writable mount: what each one reads, and the write it will commit.

A reader reads the value as it was when it opened (and what was appended to it since, so
``tail -f`` follows a growing file). A writer's bytes stay in its own handle until it is
committed as one ``set`` (on ``flush``, ``fsync`` or ``close``): no other open sees them
before. An open that has only truncated (``O_TRUNC``) or created the file, and written
nothing yet, is committed at its last close or ``fsync``, not at a ``flush``: a shell's
``printf x > f`` closes a descriptor before it writes, and the store must not hold the
empty value in between. An ``O_APPEND`` writer keeps only what it appends, and commits it at the end of the
value as it is at that moment, whatever the kernel thought the file's size was.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field

from .inodes import Inode
from .values import Value, digest


@dataclass(eq=False)
class Handle:
    inode: Inode
    base: Value  # the committed value this open started from (b"" after O_TRUNC)
    writable: bool
    append: bool = False  # O_APPEND: ``pending`` is what goes at the end of the value
    page_cached: bool = False  # the kernel may serve this open's reads from its page cache
    pending: bytearray | None = None  # a writer's new content (or appended bytes)
    dirty: bool = False
    written: bool = False  # written or truncated through this open (its own O_TRUNC is not)
    created: bool = False  # the key did not exist before this open made it
    refused: bool = False  # a commit was refused (not UTF-8): nothing more is written
    extended: Value | None = field(default=None)  # a newer value that extends ``base`` (appends)

    def content(self) -> bytes | bytearray:
        """What a read through this open sees."""
        if self.pending is None:
            return self.extended.data if self.extended is not None else self.base.data
        if self.append:
            return self.base.data + self.pending
        return self.pending

    def size(self) -> int:
        return len(self.content())

    def write(self, data: bytes, offset: int) -> None:
        assert self.pending is not None
        if self.append:
            self.pending += data  # the kernel's offset comes from a size that may be stale
        else:
            if offset > len(self.pending):
                self.pending.extend(bytes(offset - len(self.pending)))
            self.pending[offset:offset + len(data)] = data
        self.dirty = self.written = True

    def truncate(self, length: int, written: bool = True) -> None:
        """``written``: a truncation of this open's own (not one that came with the open)."""
        assert self.pending is not None
        if self.append:  # truncating an O_APPEND file: it is a plain write from here on
            self.pending = bytearray(self.base.data) + self.pending
            self.append = False
        if length < len(self.pending):
            del self.pending[length:]
        else:
            self.pending.extend(bytes(length - len(self.pending)))
        self.dirty = True
        self.written = self.written or written

    def follow(self, value: Value) -> None:
        """The value changed in the store; a reader keeps seeing it if it only grew."""
        old = self.extended or self.base
        if len(value.data) > len(old.data) and digest(value.data[:len(old.data)]) == old.digest:
            self.extended = value


class Handles:
    """Open files by ``fh`` number. Not thread-safe: the operations hold their lock."""

    def __init__(self) -> None:
        self._open: dict[int, Handle] = {}
        self._numbers = itertools.count(1)

    def add(self, handle: Handle) -> int:
        fh = next(self._numbers)
        self._open[fh] = handle
        return fh

    def get(self, fh: int) -> Handle | None:
        return self._open.get(fh)

    def pop(self, fh: int) -> Handle | None:
        return self._open.pop(fh, None)

    def of(self, inode: Inode) -> Iterator[Handle]:
        return (handle for handle in self._open.values() if handle.inode is inode)

    def __iter__(self) -> Iterator[Handle]:
        return iter(list(self._open.values()))
