"""FileEngine: one file per key, the on-disk layout of the Node library (the default engine).

``chat/123@s.whatsapp.net/index`` is stored at ``{base}/chat/123_at_s.whatsapp.net/index``,
so a tree the Node library wrote is read as-is and the other way round. A name with a
literal ``@`` (``cp -a`` of a mount writes ``123@s.whatsapp.net``) is read as that ``@``
too, so such a copy is a store as well; the engine itself writes ``_at_`` only.

Every file operation below ``base`` is made relative to an open directory descriptor
(``openat``, ``mkdirat``, ``renameat``, ``unlinkat``), walking one segment at a time with
``O_NOFOLLOW``: a symbolic link planted anywhere inside base is never followed, so no key —
and no race with another process swapping a directory for a link — reaches outside base.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import resource
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from stat import S_ISDIR, S_ISREG
from typing import NoReturn

from ..engine import Engine, Kind
from ..errors import BackendError, InvalidKeyError, InvalidValueError, KeyConflictError, NoSpaceError
from ..keys import SEPARATOR

AT_ON_DISK = "_at_"
TEMP_PREFIX = ".wafs-tmp-"
DEFAULT_BASE = ".baileys/default"
NAME_MAX = 255  # bytes in one file name, on every common Linux file system

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_FLAGS = (
    os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
)  # NONBLOCK: a planted FIFO never hangs a read
_TEMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_ATTEMPTS = 50  # a write retried this often lost every race against concurrent cascades
#: set_many: descriptors a group of keys synced at once may hold (each pending key's temp file
#: and each directory on the way), a quarter of the process limit.
_SYNC_GROUP = max(16, min(2048, resource.getrlimit(resource.RLIMIT_NOFILE)[0] // 4))
#: What ``FileEngine._walk`` returns (an alias: inside the class, ``list`` is the method).
_KeyTimes = list[tuple[str, int]]


def _name_to_disk(segment: str) -> str:
    """The file name the engine writes for key segment ``segment`` (``@`` as ``_at_``).

    InvalidKeyError for a segment no such name can stand for.
    """
    if AT_ON_DISK in segment:
        raise InvalidKeyError(
            f"segment {segment!r} contains {AT_ON_DISK!r}, which the file layout reserves for '@'"
        )
    if segment.startswith(TEMP_PREFIX):
        raise InvalidKeyError(
            f"segment {segment!r} starts with {TEMP_PREFIX!r}, reserved for temporary files"
        )
    name = segment.replace("@", AT_ON_DISK)
    if name.replace(AT_ON_DISK, "@") != segment:  # "x_at@" -> "x_at_at_", which reads back as "x@at_"
        raise InvalidKeyError(
            f"segment {segment!r} cannot round-trip through the '@' <-> {AT_ON_DISK!r} file names"
        )
    if len(name.encode("utf-8")) > NAME_MAX:
        raise InvalidKeyError(
            f"segment {segment!r} is longer than {NAME_MAX} bytes on disk, too long for a file name"
        )
    return name


def _names_on_disk(segment: str) -> tuple[str, ...]:
    """The file names that can hold key segment ``segment``, in the order they are read.

    The name the engine writes (:func:`_name_to_disk`), then, for a segment with ``@``, the
    segment itself: a literal ``@`` in a file name can only mean ``@``. InvalidKeyError when
    no name can hold it.
    """
    try:
        written = [_name_to_disk(segment)]
    except InvalidKeyError:
        if "@" not in segment or segment.startswith(TEMP_PREFIX) or len(segment.encode("utf-8")) > NAME_MAX:
            raise
        written = []  # "x_at@": only a literal name holds it
    return tuple(written + [segment] * ("@" in segment and segment not in written))


def _name_from_disk(name: str) -> str | None:
    """The key segment a file name holds, or None for a temp file.

    A name with a literal ``@`` holds itself; any other holds itself with each ``_at_`` read as
    ``@``. A name that is not UTF-8 comes back surrogate-escaped: a segment that breaks the key
    rules, listed so that consumers report it (``wafs copy``) or hide it (the mount).
    """
    if name.startswith(TEMP_PREFIX):
        return None
    return name if "@" in name else name.replace(AT_ON_DISK, "@")


def _segments(key: str) -> list[str]:
    """The segments of ``key``, each one some file name can hold (:func:`_names_on_disk`)."""
    segments = key.split(SEPARATOR)
    for segment in segments:
        _names_on_disk(segment)
    return segments


def _disk_names(key: str) -> list[str]:
    """The file names a write of ``key`` may create, one per segment; InvalidKeyError as
    :func:`_name_to_disk` says."""
    return [_name_to_disk(segment) for segment in key.split(SEPARATOR)]


def _in_the_way(key: str, path: list[str], base: str) -> KeyConflictError:
    """The error of writing ``key`` where ``path`` (key segments from base) is not a directory."""
    what = SEPARATOR.join(path)
    return KeyConflictError(
        f"cannot set {key!r}: {what!r} is a key (a file) or a symbolic link in {base}, not a directory"
    )


def _keys_below(key: str, base: str) -> KeyConflictError:
    """The error of writing ``key`` where a directory holding keys below it is."""
    return KeyConflictError(f"cannot set {key!r}: keys exist below it in {base}")


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        os.close(fd)


def _scan(fd: int) -> Iterator[os.DirEntry[str]]:
    with os.scandir(fd) as entries:
        return iter(list(entries))


class _Vanished(Exception):
    """A directory on the way was removed by a concurrent cascade: start the write again."""


def _load_syncfs() -> Callable[[int], int] | None:
    """``syncfs(2)`` from the C library (Linux), or None where there is none."""
    try:
        function = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int]
    function.restype = ctypes.c_int
    return function


_syncfs = _load_syncfs()


def _directories_above(key: str) -> list[str]:
    """``a``, ``a/b`` for key ``a/b/c``: the keys that would be directories on its path."""
    parts = key.split(SEPARATOR)
    return [SEPARATOR.join(parts[:depth]) for depth in range(1, len(parts))]


@dataclass
class _Temp:
    """A temp file being written: its name in its directory and its open, locked descriptor."""

    name: str
    fd: int


@dataclass
class _Pending:
    """One key of a ``set_many`` group: written to ``temp``, waiting for the sync and the rename."""

    key: str
    value: str
    where: tuple[str, ...]  # the key segments of its directory, from base
    directory: int
    name: str
    temp: _Temp


@dataclass
class _Batch:
    """The state of one ``set_many`` group; every descriptor in it is closed by ``_abandon``."""

    pending: list[_Pending] = field(default_factory=list)
    pending_keys: set[str] = field(default_factory=set)
    directories_of_pending: set[str] = field(default_factory=set)
    directories: dict[tuple[str, ...], int] = field(default_factory=dict)  # key segments -> descriptor
    names: dict[tuple[str, ...], str] = field(default_factory=dict)  # key segments -> the directory's name
    opened: list[int] = field(default_factory=list)
    sync_fds: dict[int, int] = field(default_factory=dict)  # st_dev -> a directory on it

    def clear(self) -> None:
        """Forget everything (the descriptors are closed by then)."""
        for part in (
            self.pending,
            self.pending_keys,
            self.directories_of_pending,
            self.directories,
            self.names,
            self.opened,
            self.sync_fds,
        ):
            part.clear()


class FileEngine(Engine):
    """One file per key under ``base``. ``list`` order: newest mtime first, ties by key.

    Writes are atomic (temporary file in the same directory, fsync, ``os.replace``), so a
    crash leaves the old or the new value, and at worst a temp file, which the next write
    into that directory (by this process or another) removes. Nothing outside ``base`` is
    ever read, written or deleted: keys are checked, symbolic links are neither followed nor
    listed (writing a key whose name is held by a link replaces the link, not its target).

    Each key segment is read from its ``_at_`` name first, then from its literal ``@`` name;
    a write replaces the file that holds the key (the literal one when only it exists) and
    makes new names with ``_at_``. Where one directory exists under both spellings, keys are
    read through the ``_at_`` one.
    """

    ordering = "newest-first"
    listing = "directory"

    def __init__(self, base: str | os.PathLike[str] = DEFAULT_BASE, *, fsync: bool = True) -> None:
        self.base = os.path.abspath(os.fspath(base))
        self.fsync = fsync
        self._lock = threading.Lock()  # guards _cleaned
        self._cleaned: set[tuple[int, int]] = set()  # (st_dev, st_ino) of directories swept of leftovers

    @classmethod
    def from_url(cls, url: str) -> FileEngine:
        """``file://PATH``: everything after ``file://`` is the path (``file:///abs``, ``file://rel``)."""
        path = url.partition("://")[2] if "://" in url else url
        return cls(path or DEFAULT_BASE)

    # --- errors ----------------------------------------------------------------------------

    def _fail(self, action: str, key: str, exc: OSError) -> NoReturn:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise NoSpaceError(
                f"cannot {action} {key!r} in {self.base}: {exc.strerror} "
                "(no space left; the old value is kept)"
            ) from exc
        raise BackendError(f"cannot {action} {key!r} in {self.base}: {exc}") from exc

    # --- directories, one descriptor per level ------------------------------------------------

    def _open_base(self, create: bool, key: str) -> int | None:
        try:
            return os.open(self.base, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            if not create:
                return None
        except NotADirectoryError:
            raise BackendError(f"the engine base {self.base!r} is a file, not a directory") from None
        except OSError as exc:
            self._fail("open", key, exc)
        try:
            os.makedirs(self.base, exist_ok=True)
            return os.open(self.base, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            self._fail("create the base for", key, exc)

    def _open_chain(self, segments: list[str], key: str, create: bool) -> tuple[list[int], list[str]] | None:
        """Descriptors of base and of each directory the key ``segments`` lead through, base
        first, and the file names of those directories.

        ``None`` when one is missing or not a real directory (``create=False``). With
        ``create``, missing directories are made; a file or a link in the way is a
        :class:`KeyConflictError`; a directory removed under us raises :class:`_Vanished`.
        """
        base = self._open_base(create, key)
        if base is None:
            return None
        fds, names = [base], []
        try:
            for depth in range(len(segments)):
                below = self._open_below(fds[-1], segments[: depth + 1], key, create)
                if below is None:
                    _close_all(fds)
                    return None
                fds.append(below[0])
                names.append(below[1])
        except BaseException:
            _close_all(fds)
            raise
        return fds, names

    def _open_below(self, parent: int, path: list[str], key: str, create: bool) -> tuple[int, str] | None:
        """Open the directory of key segment ``path[-1]`` in ``parent`` (``path`` leads to it from
        base), as :meth:`_open_chain` opens the last of its segments: its descriptor and name."""
        found, in_the_way = self._find_directory(parent, path[-1], key)
        if found is not None or not create:
            return found
        if in_the_way:
            raise _in_the_way(key, path, self.base)
        name = _name_to_disk(path[-1])
        try:
            os.mkdir(name, 0o777, dir_fd=parent)
        except FileExistsError:
            pass  # made meanwhile by a concurrent write
        except FileNotFoundError:  # parent removed by a concurrent cascade
            raise _Vanished() from None
        except OSError as exc:
            self._fail("write", key, exc)
        try:
            return os.open(name, _DIR_FLAGS, dir_fd=parent), name
        except FileNotFoundError:
            raise _Vanished() from None
        except OSError as exc:
            if exc.errno not in (errno.ENOTDIR, errno.ELOOP):
                self._fail("open", key, exc)
            raise _in_the_way(key, path, self.base) from None

    def _find_directory(self, parent: int, segment: str, key: str) -> tuple[tuple[int, str] | None, bool]:
        """The directory of key segment ``segment`` in ``parent`` (descriptor, name) or None, and
        whether something that is not a directory (a file, a link) holds one of its names."""
        in_the_way = False
        for name in _names_on_disk(segment):
            try:
                return (os.open(name, _DIR_FLAGS, dir_fd=parent), name), False
            except FileNotFoundError:
                continue
            except OSError as exc:
                if exc.errno not in (errno.ENOTDIR, errno.ELOOP):
                    self._fail("open", key, exc)
                in_the_way = True
        return None, in_the_way

    def _prune(self, fds: list[int], names: list[str]) -> None:
        """Remove the now empty directories ``names`` (``fds[d + 1]`` is ``names[d]`` in ``fds[d]``),
        deepest first."""
        for depth in range(len(names) - 1, -1, -1):
            try:
                os.rmdir(names[depth], dir_fd=fds[depth])
            except OSError:
                return

    # --- the contract ----------------------------------------------------------------------

    def get(self, key: str) -> str | None:
        segments = _segments(key)
        names = _names_on_disk(segments[-1])
        chain = self._open_chain(segments[:-1], key, create=False)
        if chain is None:
            return None
        fds = chain[0]
        try:
            for name in names:
                data = self._read_file(fds[-1], name, key)
                if data is not None:
                    break
            else:
                return None
        finally:
            _close_all(fds)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidValueError(
                f"the file of {key!r} in {self.base} holds bytes that are not UTF-8 text "
                f"(byte 0x{data[exc.start]:02x} at offset {exc.start})"
            ) from exc

    def _read_file(self, directory: int, name: str, key: str) -> bytes | None:
        """The content of regular file ``name`` in ``directory``; None when it is no such file."""
        try:
            fd = os.open(name, _READ_FLAGS, dir_fd=directory)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            if exc.errno == errno.ELOOP:  # a symlink planted in base is not a key
                return None
            self._fail("read", key, exc)
        try:
            if not S_ISREG(os.fstat(fd).st_mode):  # a directory, FIFO, device: not a key
                return None
            chunks = []
            while chunk := os.read(fd, 1 << 20):
                chunks.append(chunk)
            return b"".join(chunks)
        except OSError as exc:
            self._fail("read", key, exc)
        finally:
            os.close(fd)

    def set(self, key: str, value: str | None) -> None:
        if value is None:
            self._remove_tree(key)
            return
        self._write(key, value, exclusive=False)

    def add(self, key: str, value: str) -> bool:
        """Atomic and crash-safe: the value is written and synced as a temp file, which is then
        hard-linked under the key's name (``link`` fails when the name exists, so of
        concurrent adders exactly one succeeds), and the temp name removed. A crash leaves no
        key or the whole value, and at worst a temp file the next write there removes."""
        return self._write(key, value, exclusive=True)

    def _write(self, key: str, value: str, exclusive: bool) -> bool:
        """Write ``value`` under ``key`` atomically (``exclusive``: only if no key is there).

        True when written, False when ``exclusive`` found a value under ``key``.
        """
        segments = key.split(SEPARATOR)
        _disk_names(key)
        data = value.encode("utf-8")
        for attempt in range(_ATTEMPTS):
            if attempt > 2:  # lost several races with cascades: let them finish
                time.sleep(min(0.001 * attempt, 0.02))
            try:
                chain = self._open_chain(segments[:-1], key, create=True)
            except _Vanished:
                continue
            assert chain is not None
            fds = chain[0]
            try:
                self._clean_leftovers(fds[-1], key)
                name = self._target(fds[-1], segments[-1], key)
                written = self._write_in(fds[-1], name, key, data, exclusive)
            finally:
                _close_all(fds)
            if written is not None:
                return written
        raise BackendError(
            f"cannot write {key!r} in {self.base}: its directory kept being removed concurrently"
        )

    def _target(self, directory: int, segment: str, key: str) -> str:
        """The name in ``directory`` a write of key segment ``segment`` goes to.

        The ``_at_`` name, unless only the literal ``@`` name exists: a file there is replaced
        (one file per key), a directory holding keys is a :class:`KeyConflictError`.
        """
        written = _name_to_disk(segment)
        if written == segment:
            return written
        try:
            os.lstat(written, dir_fd=directory)
            return written
        except FileNotFoundError:
            pass
        except OSError as exc:
            self._fail("write", key, exc)
        try:
            mode = os.lstat(segment, dir_fd=directory).st_mode
        except FileNotFoundError:
            return written
        except OSError as exc:
            self._fail("write", key, exc)
        if S_ISREG(mode):
            return segment
        if S_ISDIR(mode) and self._holds_key(directory, segment):
            raise _keys_below(key, self.base)
        return written

    def _clean_leftovers(self, directory: int, key: str) -> None:
        """Remove the temp files that crashed writes left in ``directory`` (unlocked ones), the
        first time this engine writes there: an interrupted ``wafs copy`` is cleaned by the next."""
        stat = os.fstat(directory)
        with self._lock:
            if (stat.st_dev, stat.st_ino) in self._cleaned:
                return
            self._cleaned.add((stat.st_dev, stat.st_ino))
        try:
            for entry in _scan(directory):
                if entry.name.startswith(TEMP_PREFIX) and entry.is_file(follow_symlinks=False):
                    with contextlib.suppress(FileNotFoundError):  # gone meanwhile
                        self._sweep_temp(directory, entry.name)
        except OSError as exc:
            self._fail("write", key, exc)

    def _write_in(self, directory: int, name: str, key: str, data: bytes, exclusive: bool) -> bool | None:
        """Write ``data`` atomically as ``name`` in ``directory``, as :meth:`_write` says.

        ``None``: the directory or the temp file vanished (a concurrent cascade); retry.
        """
        temp = self._create_temp(directory, key)
        if temp is None:
            return None
        try:
            self._fill(directory, temp, key, data)
            if self.fsync:
                try:
                    os.fsync(temp.fd)
                except OSError as exc:
                    self._discard(directory, temp)
                    self._fail("write", key, exc)
            if exclusive:
                return self._link(directory, temp, name, key)
            return True if self._install(directory, temp, name, key) else None
        finally:
            os.close(temp.fd)

    def _create_temp(self, directory: int, key: str) -> _Temp | None:
        """Create and lock a new temp file in ``directory``; None: the directory vanished."""
        while True:
            name = TEMP_PREFIX + secrets.token_hex(8)
            try:
                fd = os.open(name, _TEMP_FLAGS, 0o666, dir_fd=directory)
                break
            except FileExistsError:
                continue
            except FileNotFoundError:
                return None
            except OSError as exc:
                self._fail("write", key, exc)
        # The lock tells a concurrent cascade this temp file belongs to a live write (leave
        # it), not to a crashed one (sweep it); it is released when the file is closed.
        fcntl.flock(fd, fcntl.LOCK_EX)
        return _Temp(name, fd)

    def _fill(self, directory: int, temp: _Temp, key: str, data: bytes) -> None:
        """Write all of ``data`` to ``temp``; on failure the temp file is removed (still open)."""
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(temp.fd, view) :]
        except BaseException as exc:
            self._discard(directory, temp)
            if isinstance(exc, OSError):
                self._fail("write", key, exc)
            raise

    def _install(self, directory: int, temp: _Temp, name: str, key: str) -> bool:
        """Rename ``temp`` over ``name``; False: retry the write (the temp file is gone then).

        Keys below ``name`` make it a :class:`KeyConflictError`. The caller closes ``temp.fd``.
        """
        try:
            os.replace(temp.name, name, src_dir_fd=directory, dst_dir_fd=directory)
            return True
        except BaseException as exc:
            self._discard(directory, temp)
            if isinstance(exc, FileNotFoundError):  # a cascade swept the temp file: the write comes after it
                return False
            if isinstance(exc, IsADirectoryError):
                if not self._holds_key(directory, name):  # an empty leftover directory, not keys
                    self._rmtree_at(directory, name, key)
                    return False
                raise _keys_below(key, self.base) from None
            if isinstance(exc, OSError):
                self._fail("write", key, exc)
            raise

    def _link(self, directory: int, temp: _Temp, name: str, key: str) -> bool | None:
        """Hard-link ``temp`` as ``name`` unless ``name`` exists, then drop the temp name.

        True: linked. False: a key is there. None: retry (the temp file was swept, or what held
        the name was not a key and is removed now). Keys below ``name``: :class:`KeyConflictError`.
        """
        try:
            os.link(temp.name, name, src_dir_fd=directory, dst_dir_fd=directory, follow_symlinks=False)
            return True
        except FileExistsError:
            return self._not_a_key_removed(directory, name, key)
        except FileNotFoundError:  # a cascade swept the temp file: the write comes after it
            return None
        except OSError as exc:
            self._fail("write", key, exc)
        finally:
            self._discard(directory, temp)

    def _not_a_key_removed(self, directory: int, name: str, key: str) -> bool | None:
        """What holds ``name``, for :meth:`_link`: False for a key (a regular file); None after
        removing what is not a key (a link, an empty leftover directory), or when it vanished."""
        try:
            mode = os.lstat(name, dir_fd=directory).st_mode
            if S_ISREG(mode):
                return False
            if not S_ISDIR(mode):
                os.unlink(name, dir_fd=directory)
                return None
        except FileNotFoundError:
            return None
        except OSError as exc:
            self._fail("write", key, exc)
        if self._holds_key(directory, name):
            raise _keys_below(key, self.base)
        self._rmtree_at(directory, name, key)
        return None

    def check_writable(self, key: str) -> None:
        """The file name rules (``_at_``, the temp prefix, round trip, 255 bytes), and
        :class:`KeyConflictError` when a file or link is where a directory of ``key`` must be
        or a directory holding keys is where its file must be."""
        segments = key.split(SEPARATOR)
        _disk_names(key)
        base = self._open_base(False, key)
        if base is None:
            return
        fds = [base]
        try:
            for depth in range(len(segments) - 1):
                below, in_the_way = self._find_directory(fds[-1], segments[depth], key)
                if in_the_way and below is None:
                    raise _in_the_way(key, segments[: depth + 1], self.base)
                if below is None:
                    return
                fds.append(below[0])
            name = self._target(fds[-1], segments[-1], key)
            try:
                mode = os.lstat(name, dir_fd=fds[-1]).st_mode
            except FileNotFoundError:
                return
            except OSError as exc:
                self._fail("check", key, exc)
            if S_ISDIR(mode) and self._holds_key(fds[-1], name):
                raise _keys_below(key, self.base)
        finally:
            _close_all(fds)

    @staticmethod
    def _discard(directory: int, temp: _Temp) -> None:
        """Remove the name of a temp file whose write is abandoned (its descriptor stays open)."""
        try:
            os.unlink(temp.name, dir_fd=directory)
        except OSError:
            pass

    def set_many(self, items: Mapping[str, str]) -> None:
        """Write many keys, each atomically, with one sync per group of keys instead of one per key.

        The temp files of a group (bounded by :data:`_SYNC_GROUP` descriptors) are written without
        fsync, their file system is synced once (``syncfs``), and only then is each renamed
        into place, in order: a crash leaves every key old or new, never torn. Keys are
        written in the order given; the first key that cannot be written (a conflict, a
        full disk) stops the batch with its error, the keys before it are written.
        """
        batch = _Batch()
        try:
            for key, value in items.items():
                above = _directories_above(key)
                full = len(batch.pending) + len(batch.opened) >= _SYNC_GROUP
                if full or key in batch.directories_of_pending or not batch.pending_keys.isdisjoint(above):
                    # a key and a key below it are settled on disk in order, as single writes would be
                    self._commit(batch)
                self._prepare(batch, key, value)
                batch.pending_keys.add(key)
                batch.directories_of_pending.update(above)
        except Exception:
            self._commit(batch)
            raise
        else:
            self._commit(batch)
        finally:
            self._abandon(batch)

    def _prepare(self, batch: _Batch, key: str, value: str) -> None:
        """Write ``value`` to a new temp file in the directory of ``key``, not yet synced or renamed."""
        segments = key.split(SEPARATOR)
        _disk_names(key)
        data = value.encode("utf-8")
        for attempt in range(_ATTEMPTS):
            if attempt > 2:  # lost several races with cascades: let them finish
                time.sleep(min(0.001 * attempt, 0.02))
            try:
                directory = self._batch_directory(batch, segments[:-1], key)
            except _Vanished:
                batch.directories.clear()  # stale descriptors stay in batch.opened until closed
                continue
            self._clean_leftovers(directory, key)
            name = self._target(directory, segments[-1], key)
            temp = self._create_temp(directory, key)
            if temp is None:  # removed since it was opened: open the path again
                batch.directories.clear()
                continue
            try:
                self._fill(directory, temp, key, data)
            except BaseException:
                os.close(temp.fd)
                raise
            batch.pending.append(_Pending(key, value, tuple(segments[:-1]), directory, name, temp))
            return
        raise BackendError(
            f"cannot write {key!r} in {self.base}: its directory kept being removed concurrently"
        )

    def _batch_directory(self, batch: _Batch, segments: list[str], key: str) -> int:
        """The directory the key ``segments`` lead to from base, made if missing; descriptors
        cached in ``batch``."""
        cached = len(segments)
        while cached >= 0 and tuple(segments[:cached]) not in batch.directories:
            cached -= 1
        if cached < 0:
            base = self._open_base(True, key)
            assert base is not None
            self._keep_directory(batch, (), base, "")
            cached = 0
        directory = batch.directories[tuple(segments[:cached])]
        for depth in range(cached + 1, len(segments) + 1):
            below = self._open_below(directory, segments[:depth], key, create=True)
            assert below is not None
            self._keep_directory(batch, tuple(segments[:depth]), *below)
            directory = below[0]
        return directory

    @staticmethod
    def _keep_directory(batch: _Batch, where: tuple[str, ...], fd: int, name: str) -> None:
        """Cache descriptor ``fd`` of the directory of key segments ``where`` (file name ``name``)
        in ``batch``, noting its file system."""
        batch.opened.append(fd)
        batch.directories[where] = fd
        batch.names[where] = name
        batch.sync_fds.setdefault(os.fstat(fd).st_dev, fd)

    def _commit(self, batch: _Batch) -> None:
        """Sync the pending temp files once, then rename each into place, in order.

        A key whose temp file or directory vanished meanwhile is written again on its own.
        On an error the keys after the failing one are abandoned; the batch is empty after.
        """
        done = 0
        try:
            if self.fsync and batch.pending:
                self._sync(batch)
            for item in batch.pending:
                try:
                    installed = self._install(item.directory, item.temp, item.name, item.key)
                finally:
                    os.close(item.temp.fd)
                    done += 1
                if not installed:
                    self.set(item.key, item.value)
        finally:
            del batch.pending[:done]
            self._abandon(batch)

    def _sync(self, batch: _Batch) -> None:
        """Make the data of every pending temp file durable: one ``syncfs`` per file system."""
        if _syncfs is None:
            os.sync()
            return
        for fd in batch.sync_fds.values():
            if _syncfs(fd) != 0:
                error = ctypes.get_errno()
                self._fail("sync", batch.pending[0].key, OSError(error, os.strerror(error)))

    def _abandon(self, batch: _Batch) -> None:
        """Remove the temp files still pending and the directories made for them that are empty
        now, close every descriptor, and empty ``batch``."""
        for item in batch.pending:
            self._discard(item.directory, item.temp)
            os.close(item.temp.fd)
        for item in batch.pending:
            for depth in range(len(item.where), 0, -1):
                parent = batch.directories.get(item.where[: depth - 1])
                if parent is None:
                    break
                try:
                    os.rmdir(batch.names[item.where[:depth]], dir_fd=parent)
                except OSError:
                    break
        _close_all(batch.opened)
        batch.clear()

    def list(self, prefix: str = "", offset: int = 0, limit: int | None = 50) -> list[str]:
        dated = sorted((-mtime, key) for key, mtime in self._walk(prefix, with_mtime=True))
        end = None if limit is None else offset + limit
        return [key for _, key in dated[offset:end]]

    # --- mixins, overridden for speed --------------------------------------------------------

    def iter_keys(self, prefix: str = "") -> Iterator[str]:
        return iter([key for key, _ in self._walk(prefix, with_mtime=False)])

    def sizes(self, keys: Iterable[str]) -> dict[str, int | None]:
        """One ``lstat`` per key, the directories on the way opened once for all their keys."""
        by_parent: dict[tuple[str, ...], list[tuple[str, list[str]]]] = {}
        for key in keys:
            segments = _segments(key)
            by_parent.setdefault(tuple(segments[:-1]), []).append((key, segments))
        found: dict[str, int | None] = {}
        for parent, members in by_parent.items():
            chain = self._open_chain(list(parent), members[0][0], create=False)
            if chain is None:
                found.update(dict.fromkeys((key for key, _ in members), None))
                continue
            fds = chain[0]
            try:
                for key, segments in members:
                    found[key] = self._size_in(fds[-1], _names_on_disk(segments[-1]), key)
            finally:
                _close_all(fds)
        return found

    def _size_in(self, directory: int, names: tuple[str, ...], key: str) -> int | None:
        for name in names:
            try:
                stat = os.lstat(name, dir_fd=directory)
            except (FileNotFoundError, NotADirectoryError):
                continue
            except OSError as exc:
                self._fail("stat", key, exc)
            if S_ISREG(stat.st_mode):
                return stat.st_size
        return None

    def delete(self, key: str) -> None:
        """Unlink the file of ``key`` (under every spelling it has); keys below it stay."""
        segments = _segments(key)
        names = _names_on_disk(segments[-1])
        chain = self._open_chain(segments[:-1], key, create=False)
        if chain is None:
            return
        fds, directories = chain
        try:
            for name in names:
                try:
                    if S_ISDIR(os.lstat(name, dir_fd=fds[-1]).st_mode):
                        continue  # only keys below it: an exact delete keeps them
                    os.unlink(name, dir_fd=fds[-1])
                except (FileNotFoundError, NotADirectoryError):
                    continue
                except OSError as exc:
                    self._fail("delete", key, exc)
            self._prune(fds, directories)
        finally:
            _close_all(fds)

    def children(self, directory: str = "") -> dict[str, Kind]:
        chain = self._open_chain(_segments(directory) if directory else [], directory, create=False)
        if chain is None:
            return {}
        fds = chain[0]
        found: dict[str, Kind] = {}
        try:
            for entry in _scan(fds[-1]):
                name = _name_from_disk(entry.name)
                if name is None:
                    continue
                if entry.is_dir(follow_symlinks=False):
                    if self._holds_key(fds[-1], entry.name):  # leftover empty directories are not shown
                        found[name] = found.get(name, Kind(0)) | Kind.DIR
                elif entry.is_file(follow_symlinks=False):
                    found[name] = found.get(name, Kind(0)) | Kind.FILE
        except OSError as exc:
            self._fail("list", directory, exc)
        finally:
            _close_all(fds)
        return found

    # --- helpers -----------------------------------------------------------------------------

    def _walk(self, prefix: str, with_mtime: bool) -> _KeyTimes:
        """``(key, mtime_ns or 0)`` for every key file starting with ``prefix``.

        Every regular file is a key (:func:`_name_from_disk`); one whose name is not UTF-8 is
        listed as a key that breaks the key rules, so a copy reports it instead of skipping it.
        """
        complete, _, partial = prefix.rpartition(SEPARATOR)
        parts = complete.split(SEPARATOR) if complete else []
        try:
            chain = self._open_chain(parts, prefix, create=False)
        except InvalidKeyError:  # a complete segment no file name can stand for: no keys there
            return []
        if chain is None:
            return []
        fds = chain[0]
        found: dict[str, int] = {}  # one entry per key, also when two spellings hold it
        stack: list[tuple[int, list[str], str, Iterator[os.DirEntry[str]]]] = []
        try:
            stack.append((fds[-1], parts, partial, _scan(fds[-1])))
            while stack:
                directory, where, name_prefix, entries = stack[-1]
                entry = next(entries, None)
                if entry is None:
                    stack.pop()
                    if directory != fds[-1]:
                        os.close(directory)
                    continue
                name = _name_from_disk(entry.name)
                if name is None or not name.startswith(name_prefix):
                    continue
                if entry.is_dir(follow_symlinks=False):
                    try:
                        below = os.open(entry.name, _DIR_FLAGS, dir_fd=directory)
                    except (FileNotFoundError, NotADirectoryError):  # removed or swapped meanwhile
                        continue
                    try:
                        stack.append((below, where + [name], "", _scan(below)))
                    except BaseException:
                        os.close(below)
                        raise
                elif entry.is_file(follow_symlinks=False):
                    try:
                        mtime = entry.stat(follow_symlinks=False).st_mtime_ns if with_mtime else 0
                    except FileNotFoundError:
                        continue
                    found.setdefault(SEPARATOR.join(where + [name]), mtime)
        except OSError as exc:
            self._fail("list", prefix, exc)
        finally:
            for directory, *_ in stack:
                if directory != fds[-1]:
                    os.close(directory)
            _close_all(fds)
        return list(found.items())

    def _holds_key(self, parent: int, name: str) -> bool:
        """True when directory ``name`` in ``parent`` has a key file somewhere below it."""
        try:
            top = os.open(name, _DIR_FLAGS, dir_fd=parent)
        except OSError:
            return False
        stack = [(top, _scan(top))]
        try:
            while stack:
                directory, entries = stack[-1]
                entry = next(entries, None)
                if entry is None:
                    os.close(stack.pop()[0])
                    continue
                if _name_from_disk(entry.name) is None:
                    continue
                if entry.is_file(follow_symlinks=False):
                    return True
                if entry.is_dir(follow_symlinks=False):
                    try:
                        below = os.open(entry.name, _DIR_FLAGS, dir_fd=directory)
                    except OSError:
                        continue
                    stack.append((below, _scan(below)))
            return False
        finally:
            for directory, _ in stack:
                os.close(directory)

    def _remove_tree(self, key: str) -> None:
        """The cascade: the file or directory of ``key``, under every spelling it has."""
        segments = _segments(key)
        names = _names_on_disk(segments[-1])
        chain = self._open_chain(segments[:-1], key, create=False)
        if chain is None:
            return
        fds, directories = chain
        try:
            for name in names:
                try:
                    is_dir = S_ISDIR(os.lstat(name, dir_fd=fds[-1]).st_mode)
                    if not is_dir:
                        os.unlink(name, dir_fd=fds[-1])
                except (FileNotFoundError, NotADirectoryError):
                    continue
                except OSError as exc:
                    self._fail("delete", key, exc)
                if is_dir:
                    self._rmtree_at(fds[-1], name, key)
            self._prune(fds, directories)
        finally:
            _close_all(fds)

    def _rmtree_at(self, parent: int, name: str, key: str) -> None:
        """``rm -rf`` of directory ``name`` in ``parent``, never following a link.

        Entries that vanish meanwhile are fine; a directory that a concurrent write filled
        again after it was emptied is left (that write comes after this cascade).
        """
        try:
            top = os.open(name, _DIR_FLAGS, dir_fd=parent)
        except (FileNotFoundError, NotADirectoryError):
            return
        except OSError as exc:
            self._fail("delete", key, exc)
        stack = [(parent, name, top, _scan(top))]
        try:
            while stack:
                _, _, directory, entries = stack[-1]
                entry = next(entries, None)
                if entry is None:
                    above, dir_name, done, _ = stack.pop()
                    os.close(done)
                    try:
                        os.rmdir(dir_name, dir_fd=above)
                    except OSError as exc:  # gone already, or refilled by a later write
                        if exc.errno not in (errno.ENOENT, errno.ENOTEMPTY, errno.EEXIST):
                            raise
                    continue
                try:
                    if entry.is_dir(follow_symlinks=False):
                        below = os.open(entry.name, _DIR_FLAGS, dir_fd=directory)
                        stack.append((directory, entry.name, below, _scan(below)))
                    elif entry.name.startswith(TEMP_PREFIX) and entry.is_file(follow_symlinks=False):
                        self._sweep_temp(directory, entry.name)
                    else:
                        os.unlink(entry.name, dir_fd=directory)
                except (FileNotFoundError, NotADirectoryError):
                    continue
        except OSError as exc:
            self._fail("delete", key, exc)
        finally:
            for _, _, directory, _ in stack:
                os.close(directory)

    @staticmethod
    def _sweep_temp(directory: int, name: str) -> None:
        """Remove a temp file left by a crashed write; one a live write holds locked is left to it."""
        try:
            fd = os.open(name, _READ_FLAGS, dir_fd=directory)
        except FileNotFoundError:
            raise
        except OSError:  # swapped for something that is not a plain file: just remove the name
            os.unlink(name, dir_fd=directory)
            return
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return  # its write is under way and comes after this cascade
            os.unlink(name, dir_fd=directory)
        finally:
            os.close(fd)

    def __repr__(self) -> str:
        return f"FileEngine({self.base!r})"
