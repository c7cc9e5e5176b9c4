"""FileEngine: one file per key, the on-disk layout of the Node library (the default engine).

``chat/123@s.whatsapp.net/index`` is stored at ``{base}/chat/123_at_s.whatsapp.net/index``,
so a tree the Node library wrote is read as-is and the other way round.

Every file operation below ``base`` is made relative to an open directory descriptor
(``openat``, ``mkdirat``, ``renameat``, ``unlinkat``), walking one segment at a time with
``O_NOFOLLOW``: a symbolic link planted anywhere inside base is never followed, so no key —
and no race with another process swapping a directory for a link — reaches outside base.
"""

from __future__ import annotations

import errno
import fcntl
import os
import secrets
import time
from collections.abc import Iterable, Iterator
from stat import S_ISDIR, S_ISREG
from typing import NoReturn

from ..engine import Engine, Kind
from ..errors import BackendError, InvalidKeyError, KeyConflictError, NoSpaceError
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


def _name_to_disk(segment: str) -> str:
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


def _name_from_disk(name: str) -> str | None:
    """The key segment a file name stands for, or None for names that are not keys."""
    if name.startswith(TEMP_PREFIX) or "@" in name:
        return None
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # bytes that are not UTF-8 (surrogate-escaped): not a key
        return None
    return name.replace(AT_ON_DISK, "@")


def _disk_names(key: str) -> list[str]:
    return [_name_to_disk(segment) for segment in key.split(SEPARATOR)]


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        os.close(fd)


def _scan(fd: int) -> Iterator[os.DirEntry[str]]:
    with os.scandir(fd) as entries:
        return iter(list(entries))


class _Vanished(Exception):
    """A directory on the way was removed by a concurrent cascade: start the write again."""


class FileEngine(Engine):
    """One file per key under ``base``. ``list`` order: newest mtime first, ties by key.

    Writes are atomic (temporary file in the same directory, fsync, ``os.replace``), so a
    crash leaves the old or the new value. Nothing outside ``base`` is ever read, written
    or deleted: keys are checked, symbolic links are neither followed nor listed (writing a
    key whose name is held by a link replaces the link, not its target).
    """

    ordering = "newest-first"
    listing = "directory"

    def __init__(self, base: str | os.PathLike[str] = DEFAULT_BASE, *, fsync: bool = True) -> None:
        self.base = os.path.abspath(os.fspath(base))
        self.fsync = fsync

    @classmethod
    def from_url(cls, url: str) -> FileEngine:
        """``file://PATH``: everything after ``file://`` is the path (``file:///abs``, ``file://rel``)."""
        path = url.partition("://")[2] if "://" in url else url
        return cls(path or DEFAULT_BASE)

    # --- errors ----------------------------------------------------------------------------

    def _fail(self, action: str, key: str, exc: OSError) -> NoReturn:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise NoSpaceError(
                f"cannot {action} {key!r} in {self.base}: {exc.strerror} (no space left; the old value is kept)"
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
            if not create:
                return None
            raise BackendError(f"the engine base {self.base!r} is not a directory") from None
        except OSError as exc:
            self._fail("open", key, exc)
        try:
            os.makedirs(self.base, exist_ok=True)
            return os.open(self.base, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            self._fail("create the base for", key, exc)

    def _open_chain(self, names: list[str], key: str, create: bool) -> list[int] | None:
        """Descriptors of base and of each directory ``names`` leads through, base first.

        ``None`` when one is missing or not a real directory (``create=False``). With
        ``create``, missing directories are made; a file or a link in the way is a
        :class:`KeyConflictError`; a directory removed under us raises :class:`_Vanished`.
        """
        base = self._open_base(create, key)
        if base is None:
            return None
        fds = [base]
        try:
            for depth, name in enumerate(names):
                parent = fds[-1]
                if create:
                    try:
                        os.mkdir(name, 0o777, dir_fd=parent)
                    except FileExistsError:
                        pass
                    except FileNotFoundError:  # parent removed by a concurrent cascade
                        raise _Vanished() from None
                    except OSError as exc:
                        self._fail("write", key, exc)
                try:
                    fds.append(os.open(name, _DIR_FLAGS, dir_fd=parent))
                except FileNotFoundError:
                    if not create:
                        _close_all(fds)
                        return None
                    raise _Vanished() from None
                except OSError as exc:
                    if exc.errno not in (errno.ENOTDIR, errno.ELOOP):
                        self._fail("open", key, exc)
                    if not create:
                        _close_all(fds)
                        return None
                    what = SEPARATOR.join(names[: depth + 1]).replace(AT_ON_DISK, "@")
                    raise KeyConflictError(
                        f"cannot set {key!r}: {what!r} is a key (a file) or a symbolic link in {self.base}, "
                        "not a directory"
                    ) from None
        except BaseException:
            _close_all(fds)
            raise
        return fds

    def _prune(self, fds: list[int], names: list[str]) -> None:
        """Remove the directories on the way to ``names[-1]`` that are now empty, deepest first."""
        for depth in range(len(names) - 2, -1, -1):
            try:
                os.rmdir(names[depth], dir_fd=fds[depth])
            except OSError:
                return

    # --- the contract ----------------------------------------------------------------------

    def get(self, key: str) -> str | None:
        names = _disk_names(key)
        fds = self._open_chain(names[:-1], key, create=False)
        if fds is None:
            return None
        try:
            try:
                fd = os.open(names[-1], _READ_FLAGS, dir_fd=fds[-1])
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
            except OSError as exc:
                self._fail("read", key, exc)
            finally:
                os.close(fd)
        finally:
            _close_all(fds)
        try:
            return b"".join(chunks).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BackendError(
                f"the file of {key!r} in {self.base} holds bytes that are not UTF-8 text"
            ) from exc

    def set(self, key: str, value: str | None) -> None:
        if value is None:
            self._remove_tree(key)
            return
        names = _disk_names(key)
        data = value.encode("utf-8")
        for attempt in range(_ATTEMPTS):
            if attempt > 2:  # lost several races with cascades: let them finish
                time.sleep(min(0.001 * attempt, 0.02))
            try:
                fds = self._open_chain(names[:-1], key, create=True)
            except _Vanished:
                continue
            assert fds is not None
            try:
                if self._write_in(fds[-1], names[-1], key, data):
                    return
            finally:
                _close_all(fds)
        raise BackendError(
            f"cannot write {key!r} in {self.base}: its directory kept being removed concurrently"
        )

    def _write_in(self, directory: int, name: str, key: str, data: bytes) -> bool:
        """Write ``data`` atomically as ``name`` in ``directory``; False: the directory vanished, retry."""
        while True:
            temp = TEMP_PREFIX + secrets.token_hex(8)
            try:
                fd = os.open(temp, _TEMP_FLAGS, 0o666, dir_fd=directory)
                break
            except FileExistsError:
                continue
            except FileNotFoundError:
                return False
            except OSError as exc:
                self._fail("write", key, exc)
        try:
            try:
                # The lock tells a concurrent cascade this temp file belongs to a live write
                # (leave it), not to a crashed one (sweep it); it is released by the close.
                fcntl.flock(fd, fcntl.LOCK_EX)
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                if self.fsync:
                    os.fsync(fd)
                os.replace(temp, name, src_dir_fd=directory, dst_dir_fd=directory)
            finally:
                os.close(fd)
            return True
        except BaseException as exc:
            try:
                os.unlink(temp, dir_fd=directory)
            except OSError:
                pass
            if isinstance(exc, FileNotFoundError):  # a cascade swept the temp file: the write comes after it
                return False
            if isinstance(exc, IsADirectoryError):
                if not self._holds_key(directory, name):  # an empty leftover directory, not keys
                    self._rmtree_at(directory, name, key)
                    return False
                raise KeyConflictError(f"cannot set {key!r}: keys exist below it in {self.base}") from None
            if isinstance(exc, OSError):
                self._fail("write", key, exc)
            raise

    def list(self, prefix: str = "", offset: int = 0, limit: int | None = 50) -> list[str]:
        dated = sorted((-mtime, key) for key, mtime in self._walk(prefix, with_mtime=True))
        end = None if limit is None else offset + limit
        return [key for _, key in dated[offset:end]]

    # --- mixins, overridden for speed --------------------------------------------------------

    def iter_keys(self, prefix: str = "") -> Iterator[str]:
        return iter([key for key, _ in self._walk(prefix, with_mtime=False)])

    def sizes(self, keys: Iterable[str]) -> dict[str, int | None]:
        return {key: self._size(key) for key in keys}

    def _size(self, key: str) -> int | None:
        names = _disk_names(key)
        fds = self._open_chain(names[:-1], key, create=False)
        if fds is None:
            return None
        try:
            stat = os.lstat(names[-1], dir_fd=fds[-1])
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            self._fail("stat", key, exc)
        finally:
            _close_all(fds)
        return stat.st_size if S_ISREG(stat.st_mode) else None

    def delete(self, key: str) -> None:
        names = _disk_names(key)
        fds = self._open_chain(names[:-1], key, create=False)
        if fds is None:
            return
        try:
            try:
                if S_ISDIR(os.lstat(names[-1], dir_fd=fds[-1]).st_mode):
                    return  # only keys below it: an exact delete keeps them
                os.unlink(names[-1], dir_fd=fds[-1])
            except (FileNotFoundError, NotADirectoryError):
                return
            except OSError as exc:
                self._fail("delete", key, exc)
            self._prune(fds, names)
        finally:
            _close_all(fds)

    def children(self, directory: str = "") -> dict[str, Kind]:
        names = _disk_names(directory) if directory else []
        fds = self._open_chain(names, directory, create=False)
        if fds is None:
            return {}
        found: dict[str, Kind] = {}
        try:
            for entry in _scan(fds[-1]):
                name = _name_from_disk(entry.name)
                if name is None:
                    continue
                if entry.is_dir(follow_symlinks=False):
                    if self._holds_key(fds[-1], entry.name):  # leftover empty directories are not shown
                        found[name] = Kind.DIR
                elif entry.is_file(follow_symlinks=False):
                    found[name] = Kind.FILE
        except OSError as exc:
            self._fail("list", directory, exc)
        finally:
            _close_all(fds)
        return found

    # --- helpers -----------------------------------------------------------------------------

    def _walk(self, prefix: str, with_mtime: bool) -> list[tuple[str, int]]:
        """``(key, mtime_ns or 0)`` for every key file starting with ``prefix``."""
        complete, _, partial = prefix.rpartition(SEPARATOR)
        parts = complete.split(SEPARATOR) if complete else []
        try:
            fds = self._open_chain([_name_to_disk(part) for part in parts], prefix, create=False)
        except InvalidKeyError:  # a complete segment no file name can stand for: no keys there
            return []
        if fds is None:
            return []
        found: list[tuple[str, int]] = []
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
                    found.append((SEPARATOR.join(where + [name]), mtime))
        except OSError as exc:
            self._fail("list", prefix, exc)
        finally:
            for directory, *_ in stack:
                if directory != fds[-1]:
                    os.close(directory)
            _close_all(fds)
        return found

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
        names = _disk_names(key)
        fds = self._open_chain(names[:-1], key, create=False)
        if fds is None:
            return
        try:
            try:
                is_dir = S_ISDIR(os.lstat(names[-1], dir_fd=fds[-1]).st_mode)
                if not is_dir:
                    os.unlink(names[-1], dir_fd=fds[-1])
            except (FileNotFoundError, NotADirectoryError):
                return
            except OSError as exc:
                self._fail("delete", key, exc)
            if is_dir:
                self._rmtree_at(fds[-1], names[-1], key)
            self._prune(fds, names)
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
