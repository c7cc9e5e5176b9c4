"""``wafs.mounted``: a mount for the length of a ``with`` block, for scripts and test suites.

::

    with wafs.mounted(wafs.MemoryEngine(), "mnt") as mnt:
        (mnt / "session" / "creds").write_text("{}")
        subprocess.run(["grep", "-r", "pedido", mnt])

How it is served, and why:

* **By a thread of the calling process**, for an engine object and for a URL alike. An
  engine built in the script (a :class:`~wafs.MemoryEngine` holding its test data, a
  subclass of the user's own) exists only in this process, so no daemon started by URL could
  serve it; one code path for both kinds of source means one behaviour. A thread also
  ties the mount's life to the block: no daemon outlives a script that dies, no pid or log
  file is left under ``~/.cache/wafs``, a failure arrives as the exception itself, and
  nothing is forked (forking a threaded process is unsafe, and a forked child would
  inherit, then close, every file the script holds open on another wafs mount: each close
  commits that file half-written).
* The script's own file IO through the mount (``open()``, ``os.listdir``, ``shutil``) is
  answered by that thread while the script's thread waits in the kernel, which it does
  without holding the GIL; commands the script runs (``ls``, ``grep``, ``cp``) are
  answered the same way. Two things must not be done from this process: ``mmap`` a file
  of the mount (a page fault holds the GIL the serving thread needs to answer it: a
  deadlock), or call C code that reads the mount without releasing the GIL. For those,
  mount in a process of its own with ``wafs mount`` (:func:`wafs.mount.mount`).

Unmounting, at the end of the block whether it ends normally or by an exception:

* a file the script, or a command it started, closed inside the block was committed by
  that close, which returned the error if the store refused it (every close of a copy of
  the descriptor commits: starting a command while a file is open for writing commits it
  as it stands then, when the command's inherited copy is closed at its ``exec``);
* a file still open for writing is committed as its writes stand (what was ``write()``-n
  to it; a Python file object's own buffer is not: flush or close your files), as if
  closed then; the mount is detached, and whoever still holds the file gets ``ENOTCONN``
  from then on. A command still writing is thus cut off rather than waited for: the block
  ends in a bounded time;
* the unmount waits for those commits and for the serving thread to end, then raises
  :class:`~wafs.mount.MountError` naming what could not be done (a file the store refused,
  a cascade delete given up). An exception raised inside the block is never hidden by one
  of the unmount: it propagates, the unmount's failure logged and added to it as a note.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..engine import Engine
from ..registry import open_engine
from ..urls import redact
from .daemon import START_TIMEOUT, UNMOUNT_TIMEOUT, MountError, Server, check_mountpoint, mounted_at
from .options import MountOptions

log = logging.getLogger(__name__)


class Mount:
    """A mount made by :func:`mounted`: ``mnt.path`` (``os.fspath(mnt)``, ``mnt / "chat"``)
    is the directory the store is mounted at; ``mnt.engine`` the engine it serves."""

    def __init__(self, engine: Engine, path: Path, options: MountOptions, *, owned: bool) -> None:
        self.engine = engine
        self.path = path
        self._owned = owned  # opened from a URL here: closed at the unmount
        self._server: Server | None = None
        self._failure: BaseException | None = None
        self._left_undone: list[str] = []
        self._abandoned = False  # the start timed out while the store was being read
        self._lock = threading.Lock()
        self._answering = threading.Event()  # set at INIT, or when serving ended
        self._thread = threading.Thread(target=self._serve, args=(options,), name=f"wafs-mount:{path}",
                                        daemon=True)
        self._unmounted = False

    def __fspath__(self) -> str:
        return str(self.path)

    __str__ = __fspath__

    def __truediv__(self, name: str | os.PathLike[str]) -> Path:
        return self.path / name

    def __repr__(self) -> str:
        return f"<Mount {self.engine!r} at {self.path}>"

    def refresh(self) -> None:
        """Read the whole store again now (as ``wafs refresh``): for changes made around the
        mount, such as ``mnt.engine.set(...)``, when the engine has no change feed."""
        if self._server is None or self._unmounted:
            raise MountError(f"{self.path} is not mounted")
        self._server.operations.refresh()

    def unmount(self) -> None:
        """Unmount, as the end of the ``with`` block does (see :mod:`wafs.mount.api`); a
        second call does nothing. Raises :class:`MountError` saying what was left undone."""
        if self._unmounted:
            return
        self._unmounted = True
        try:
            self._stop()
        finally:
            if self._owned:
                self.engine.close()

    def _serve(self, options: MountOptions) -> None:
        try:
            server = Server(self.engine, str(self.path), options, on_ready=self._answering.set)
            with self._lock:
                self._server = server
                abandoned = self._abandoned
            if abandoned:
                server.session.exit()  # the loop returns at once, unmounting
            self._left_undone = server.loop()
            if abandoned:
                server.operations.destroy()  # libfuse does not: the kernel never started the mount
        except BaseException as exc:  # noqa: BLE001  (raised to the caller by _start or unmount)
            self._failure = exc
        finally:
            with self._lock:
                self._answering.set()
                abandoned = self._abandoned
            if abandoned and self._owned:
                self.engine.close()

    def _start(self, timeout: float) -> None:
        """Serve, and return once the mount answers; else raise MountError, nothing left mounted."""
        self._thread.start()
        if not self._answering.wait(timeout):
            with self._lock:
                self._abandoned = not self._answering.is_set()
                server = self._server
            if self._abandoned:  # the thread cleans up after itself, the engine included
                self._unmounted = True
                if server is not None:  # mounted, but the kernel's INIT went unanswered
                    subprocess.run([_fusermount(), "-u", "-z", str(self.path)], capture_output=True,
                                   timeout=UNMOUNT_TIMEOUT, check=False)
                raise MountError(f"could not mount {self.engine!r} at {self.path}: "
                                 f"it did not answer within {timeout:g} s")
        reason = None
        if self._failure is not None or not self._thread.is_alive():
            self._thread.join()
            reason = str(self._failure or "serving it ended at once")
        else:
            try:
                os.stat(self.path)  # answered by the serving thread once the kernel started the mount
            except OSError as exc:
                reason = f"it does not answer: {exc.strerror}"
        if reason is not None:
            with contextlib.suppress(MountError):
                self.unmount()
            raise MountError(f"could not mount {self.engine!r} at {self.path}: {reason}") from self._failure

    def _stop(self) -> None:
        # Not "fusermount3 -u" first: running a command while this process holds a file of the
        # mount open for writing makes the command close its copy, a FLUSH that commits the file
        # and whose error nobody hears. Stopping the loop first detaches with no such close.
        tool = _fusermount()
        if self._thread.is_alive() and self._server is not None:
            self._server.stop()
        self._thread.join(UNMOUNT_TIMEOUT)
        problems = []
        if self._thread.is_alive():
            problems.append(f"the thread serving it did not stop within {UNMOUNT_TIMEOUT:g} s")
        if (mounted_at(self.path) or "").startswith("fuse"):
            subprocess.run([tool, "-u", "-z", str(self.path)], capture_output=True, timeout=UNMOUNT_TIMEOUT,
                           check=False)
            problems.append("it was still mounted, so it was detached lazily")
        if self._failure is not None:
            problems.append(f"serving it failed: {self._failure}")
        problems.extend(self._left_undone)
        if problems:
            raise MountError(f"unmounted {self.path}, but: " + "; ".join(problems)) from self._failure


def _fusermount() -> str:
    return shutil.which("fusermount3") or "fusermount3"


@contextlib.contextmanager
def mounted(source: Engine | str, path: str | os.PathLike[str], read_only: bool = False, *,
            timeout: float = START_TIMEOUT, **options: Any) -> Iterator[Mount]:
    """Mount ``source`` (an engine, or an engine URL such as ``redis://…?prefix=wa:bot``) at the
    empty directory ``path`` for the block; yields the :class:`Mount`.

    ``read_only`` and ``options`` are :class:`~wafs.mount.MountOptions` fields (``ttl``,
    ``umask``, ``view="chats"``…), with its defaults. Returns once the mount answers, within
    ``timeout`` seconds, or raises :class:`MountError` with the reason, nothing left mounted.
    At the end of the block, normally or by an exception, the mount is unmounted, its pending
    writes committed (:mod:`wafs.mount.api` says how); an engine opened from a URL is closed,
    one passed in is not.
    """
    settings = MountOptions(read_only=read_only, **options)
    where = Path(os.path.abspath(path))
    check_mountpoint(str(where))
    if shutil.which("fusermount3") is None:
        raise MountError("FUSE is not installed: apt-get install fuse3")
    if isinstance(source, Engine):
        mount = Mount(source, where, settings, owned=False)
    else:
        log.info("opening %s to mount at %s", redact(source), where)
        mount = Mount(open_engine(source), where, settings, owned=True)
    mount._start(timeout)
    try:
        yield mount
    except BaseException as exc:
        try:
            mount.unmount()
        except Exception as error:
            log.error("%s (while the block raised %r)", error, exc)
            exc.add_note(f"and then unmounting failed: {error}")
        raise
    mount.unmount()
