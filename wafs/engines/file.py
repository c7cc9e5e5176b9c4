"""FileEngine: one file per key, the on-disk layout of the Node library (the default engine).

``chat/123@s.whatsapp.net/index`` is stored at ``{base}/chat/123_at_s.whatsapp.net/index``,
so a tree the Node library wrote is read as-is and the other way round.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from stat import S_ISREG
from collections.abc import Iterable, Iterator
from typing import NoReturn

from ..engine import Engine, Kind
from ..errors import BackendError, InvalidKeyError, KeyConflictError, NoSpaceError
from ..keys import SEPARATOR

AT_ON_DISK = "_at_"
TEMP_PREFIX = ".wafs-tmp-"
DEFAULT_BASE = ".baileys/default"


def _name_to_disk(segment: str) -> str:
    if AT_ON_DISK in segment:
        raise InvalidKeyError(f"segment {segment!r} contains {AT_ON_DISK!r}, which the file layout reserves for '@'")
    if segment.startswith(TEMP_PREFIX):
        raise InvalidKeyError(f"segment {segment!r} starts with {TEMP_PREFIX!r}, reserved for temporary files")
    return segment.replace("@", AT_ON_DISK)


def _name_from_disk(name: str) -> str | None:
    """The key segment a file name stands for, or None for names that are not keys."""
    if name.startswith(TEMP_PREFIX) or "@" in name:
        return None
    return name.replace(AT_ON_DISK, "@")


class FileEngine(Engine):
    """One file per key under ``base``. ``list`` order: newest mtime first, ties by key.

    Writes are atomic (temporary file in the same directory, fsync, ``os.replace``), so a
    crash leaves the old or the new value. Nothing outside ``base`` is ever read, written
    or deleted: keys are checked, symbolic links are neither followed nor listed.
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

    # --- paths -----------------------------------------------------------------------------

    def _path(self, key: str) -> str:
        return os.path.join(self.base, *(_name_to_disk(s) for s in key.split(SEPARATOR)))

    def _inside(self, path: str) -> str:
        """Return ``path`` if its directory resolves inside base (no symlink leads out)."""
        real_base = os.path.realpath(self.base)
        real_parent = os.path.realpath(os.path.dirname(path))
        if real_parent != real_base and not real_parent.startswith(real_base + os.sep):
            raise InvalidKeyError(f"{path!r} resolves outside the engine base {self.base!r}")
        return path

    def _fail(self, action: str, key: str, exc: OSError) -> NoReturn:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise NoSpaceError(f"cannot {action} {key!r} in {self.base}: {exc.strerror}") from exc
        raise BackendError(f"cannot {action} {key!r} in {self.base}: {exc}") from exc

    # --- the contract ----------------------------------------------------------------------

    def get(self, key: str) -> str | None:
        path = self._inside(self._path(key))
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            if exc.errno == errno.ELOOP:  # a symlink planted in base is not a key
                return None
            self._fail("read", key, exc)
        try:
            with os.fdopen(fd, "rb") as file:
                data = file.read()
        except IsADirectoryError:
            return None
        except OSError as exc:
            self._fail("read", key, exc)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BackendError(f"{path} holds bytes that are not UTF-8 text") from exc

    def set(self, key: str, value: str | None) -> None:
        if value is None:
            self._remove_tree(key)
            return
        path = self._path(key)
        data = value.encode("utf-8")
        for attempt in range(3):
            try:
                os.makedirs(os.path.dirname(path), exist_ok=True)
            except (FileExistsError, NotADirectoryError) as exc:
                raise KeyConflictError(f"cannot set {key!r}: a parent of it is a key (a file) in {self.base}") from exc
            except OSError as exc:
                self._fail("write", key, exc)
            self._inside(path)
            try:
                fd, temp = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=os.path.dirname(path))
            except FileNotFoundError as exc:
                if attempt == 2:  # a concurrent cascade kept removing the directory
                    self._fail("write", key, exc)
                continue
            except OSError as exc:
                self._fail("write", key, exc)
            self._write_atomically(key, path, fd, temp, data)
            return

    def _write_atomically(self, key: str, path: str, fd: int, temp: str, data: bytes) -> None:
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(data)
                file.flush()
                if self.fsync:
                    os.fsync(file.fileno())
            os.chmod(temp, 0o644)
            os.replace(temp, path)
        except BaseException as exc:
            try:
                os.unlink(temp)
            except FileNotFoundError:
                pass
            if isinstance(exc, IsADirectoryError):
                raise KeyConflictError(f"cannot set {key!r}: keys exist below it in {self.base}") from exc
            if isinstance(exc, OSError):
                self._fail("write", key, exc)
            raise

    def list(self, prefix: str = "", offset: int = 0, limit: int | None = 50) -> list[str]:
        dated = sorted((-mtime, key) for key, mtime in self._walk(prefix, with_mtime=True))
        end = None if limit is None else offset + limit
        return [key for _, key in dated[offset:end]]

    # --- mixins, overridden for speed --------------------------------------------------------

    def iter_keys(self, prefix: str = "") -> Iterator[str]:
        return (key for key, _ in self._walk(prefix, with_mtime=False))

    def sizes(self, keys: Iterable[str]) -> dict[str, int | None]:
        found: dict[str, int | None] = {}
        for key in keys:
            try:
                stat = os.lstat(self._inside(self._path(key)))
                found[key] = stat.st_size if S_ISREG(stat.st_mode) else None
            except (FileNotFoundError, NotADirectoryError):
                found[key] = None
            except OSError as exc:
                self._fail("stat", key, exc)
        return found

    def delete(self, key: str) -> None:
        path = self._inside(self._path(key))
        try:
            if not os.path.isdir(path) or os.path.islink(path):
                os.unlink(path)
        except (FileNotFoundError, NotADirectoryError):
            return
        except OSError as exc:
            self._fail("delete", key, exc)
        self._prune_empty_parents(path)

    def delete_many(self, keys: Iterable[str]) -> None:
        for key in keys:
            self.delete(key)

    def children(self, directory: str = "") -> dict[str, Kind]:
        path = self._path(directory) if directory else self.base
        found: dict[str, Kind] = {}
        try:
            self._inside(os.path.join(path, "x"))
            with os.scandir(path) as entries:
                for entry in entries:
                    name = _name_from_disk(entry.name)
                    if name is None or entry.is_symlink():
                        continue
                    found[name] = Kind.DIR if entry.is_dir(follow_symlinks=False) else Kind.FILE
        except (FileNotFoundError, NotADirectoryError):
            return {}
        except OSError as exc:
            self._fail("list", directory, exc)
        return found

    # --- helpers -----------------------------------------------------------------------------

    def _walk(self, prefix: str, with_mtime: bool) -> Iterator[tuple[str, int]]:
        """Yield ``(key, mtime_ns or 0)`` for every key file starting with ``prefix``."""
        complete, _, partial = prefix.rpartition(SEPARATOR)
        start = self._path(complete) if complete else self.base
        try:
            self._inside(os.path.join(start, "x"))
        except InvalidKeyError:
            return
        stack = [(start, complete.split(SEPARATOR) if complete else [], partial)]
        while stack:
            directory, parts, name_prefix = stack.pop()
            try:
                entries = list(os.scandir(directory))
            except (FileNotFoundError, NotADirectoryError):
                continue
            except OSError as exc:
                self._fail("list", SEPARATOR.join(parts) or prefix, exc)
            for entry in entries:
                name = _name_from_disk(entry.name)
                if name is None or not name.startswith(name_prefix) or entry.is_symlink():
                    continue
                if entry.is_dir(follow_symlinks=False):
                    stack.append((entry.path, parts + [name], ""))
                elif entry.is_file(follow_symlinks=False):
                    key = SEPARATOR.join(parts + [name])
                    yield key, entry.stat(follow_symlinks=False).st_mtime_ns if with_mtime else 0

    def _remove_tree(self, key: str) -> None:
        path = self._inside(self._path(key))
        try:
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.unlink(path)
        except (FileNotFoundError, NotADirectoryError):
            return
        except OSError as exc:
            self._fail("delete", key, exc)
        self._prune_empty_parents(path)

    def _prune_empty_parents(self, path: str) -> None:
        directory = os.path.dirname(path)
        while directory != self.base and directory.startswith(self.base + os.sep):
            try:
                os.rmdir(directory)
            except OSError:
                return
            directory = os.path.dirname(directory)

    def __repr__(self) -> str:
        return f"FileEngine({self.base!r})"


