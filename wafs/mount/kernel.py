"""Telling the kernel what changed, from a thread of its own.

Dropping an entry or cached pages makes the kernel take the directory's or the pages'
locks; a process may hold them while it waits for the daemon to answer a request, so the
serving thread must never wait for such a call. They are queued here and sent by one
thread, in order. Attributes alone can be dropped from any thread at once
(:meth:`KernelCache.forget_attributes`): the kernel takes no lock for that.
"""

from __future__ import annotations

import errno
import logging
import queue
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from .fuse import FuseError

if TYPE_CHECKING:
    from .inodes import Inode, InodeTable

log = logging.getLogger(__name__)


class Notifier(Protocol):
    def invalidate_inode(self, ino: int, offset: int = 0, length: int = 0) -> bool: ...

    def invalidate_entry(self, parent: int, name: bytes) -> bool: ...

    def store(self, ino: int, data: bytes) -> bool: ...


_Call = Callable[[], None] | None
_STOP: tuple[str, int, bytes, _Call] = ("stop", 0, b"", None)


class KernelCache:
    """The kernel's caches of one mount, as the daemon tells it to drop them."""

    def __init__(self) -> None:
        self._session: Notifier | None = None
        self._queue: queue.SimpleQueue[tuple[str, int, bytes, _Call]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def attach(self, session: Notifier) -> None:
        """Start telling ``session``'s kernel; before this, nothing is cached there yet."""
        self._session = session
        self._thread = threading.Thread(target=self._run, name="wafs-kernel-cache", daemon=True)
        self._thread.start()

    def detach(self) -> None:
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(5.0)
        self._session = None

    def forget_attributes(self, ino: int) -> bool:
        """The kernel asks for ``ino``'s attributes again before it next uses them (and,
        finding another size or mtime, drops its cached pages itself).

        False when the kernel does not hold ``ino``: if a reply that makes it is on its way,
        the kernel will hold what that reply said, and the caller must say it again once the
        kernel uses the inode."""
        session = self._session
        return session is None or session.invalidate_inode(ino, -1, 0)

    def in_use(self, inodes: InodeTable, ino: int) -> Inode:
        """The inode a request names (``ESTALE`` once forgotten). The kernel holds it now, so
        what it may have missed is told again: attributes not dropped while a reply that makes
        the inode was on its way, and the name of an inode superseded since, which it may have
        got after it was told."""
        inode = inodes.get(ino)
        if inode is None:
            raise FuseError(errno.ESTALE)
        if inode.unsure:
            inode.unsure = not self.forget_attributes(ino)
        if not inode.current and (parent := inode.parent) is not None:
            self.forget_entry(parent.ino, inode.name)
        return inode

    def forget_contents(self, ino: int) -> None:
        """The kernel lists directory ``ino`` again, or reads file ``ino``'s pages again (and
        asks for its attributes)."""
        self._queue.put(("inode", ino, b"", None))

    def forget_entry(self, parent: int, name: str) -> None:
        """The kernel looks ``name`` up in directory ``parent`` again (drops a negative entry too)."""
        self._queue.put(("entry", parent, name.encode("utf-8", "surrogateescape"), None))

    def fill_pages(self, ino: int, data: bytes, wanted: Callable[[], bool], done: Callable[[], None]) -> None:
        """Put ``data`` in the kernel's cached pages of file ``ino``, so that reading it sends no
        request, if ``wanted()`` still holds when its turn comes; then call ``done()``. (A store
        waits for the pages' locks, which a reader holds while its READ waits for the serving
        thread: only this thread may wait for them.)"""
        def fill() -> None:
            try:
                session = self._session
                if session is not None and wanted():
                    session.store(ino, data)
            finally:
                done()
        self.after(fill)

    def after(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` in the notifying thread once what was queued before went out."""
        self._queue.put(("call", 0, b"", callback))

    def wait_sent(self, timeout: float) -> bool:
        """Wait at most ``timeout`` seconds for what was queued so far to go out; False if it
        has not (a store may wait for a page lock that a reader holds)."""
        sent = threading.Event()
        self.after(sent.set)
        return sent.wait(timeout)

    def _run(self) -> None:
        while True:
            kind, ino, name, callback = self._queue.get()
            session = self._session
            if kind == "stop" or session is None:
                return
            try:
                if callback is not None:
                    callback()
                elif kind == "inode":
                    session.invalidate_inode(ino, 0, 0)
                else:
                    session.invalidate_entry(ino, name)
            except Exception:
                log.exception("could not tell the kernel that %s %d changed", kind, ino)
