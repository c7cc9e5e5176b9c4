"""A binding to libfuse 3's low-level (inode-based) API, through ctypes.

The kernel speaks in inode numbers; this module turns each request into a call of a
:class:`Filesystem` method with Python values and sends back what it returns (or the errno
of the :class:`FuseError` it raises). It also carries the calls the daemon uses to tell the
kernel what changed (:class:`Session.invalidate_inode`, :class:`Session.invalidate_entry`)
or what it may read without asking (:class:`Session.store`).

Only ``libfuse3.so.3`` is needed at run time (Debian's ``libfuse3-3``, pulled in by
``fuse3``); no compiler, no headers. The structure layouts are those of libfuse 3.x on
64-bit Linux (``tests/test_fuse_abi.py`` checks them against the C headers).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import functools
import logging
import os
import platform
import select
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

# --- C types -----------------------------------------------------------------------------------

c_ino = ctypes.c_uint64
c_req = ctypes.c_void_p
c_off = ctypes.c_int64
c_mode = ctypes.c_uint32


class Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_int64), ("tv_nsec", ctypes.c_int64)]


_STAT_FIELDS: dict[str, list[tuple[str, Any]]] = {
    "x86_64": [
        ("st_dev", ctypes.c_uint64), ("st_ino", ctypes.c_uint64), ("st_nlink", ctypes.c_uint64),
        ("st_mode", ctypes.c_uint32), ("st_uid", ctypes.c_uint32), ("st_gid", ctypes.c_uint32),
        ("_pad0", ctypes.c_int32), ("st_rdev", ctypes.c_uint64), ("st_size", ctypes.c_int64),
        ("st_blksize", ctypes.c_int64), ("st_blocks", ctypes.c_int64),
        ("st_atim", Timespec), ("st_mtim", Timespec), ("st_ctim", Timespec),
        ("_reserved", ctypes.c_int64 * 3),
    ],
    "aarch64": [  # the generic 64-bit layout (riscv64 too)
        ("st_dev", ctypes.c_uint64), ("st_ino", ctypes.c_uint64), ("st_mode", ctypes.c_uint32),
        ("st_nlink", ctypes.c_uint32), ("st_uid", ctypes.c_uint32), ("st_gid", ctypes.c_uint32),
        ("st_rdev", ctypes.c_uint64), ("_pad1", ctypes.c_uint64), ("st_size", ctypes.c_int64),
        ("st_blksize", ctypes.c_int32), ("_pad2", ctypes.c_int32), ("st_blocks", ctypes.c_int64),
        ("st_atim", Timespec), ("st_mtim", Timespec), ("st_ctim", Timespec),
        ("_reserved", ctypes.c_uint32 * 2),
    ],
}
_MACHINE = {"amd64": "x86_64", "arm64": "aarch64", "riscv64": "aarch64"}.get(platform.machine(),
                                                                            platform.machine())
if _MACHINE not in _STAT_FIELDS:
    raise ImportError(f"wafs' FUSE binding knows the struct stat of x86_64 and aarch64, not {_MACHINE}")


class Stat(ctypes.Structure):
    _fields_ = _STAT_FIELDS[_MACHINE]


class FileInfo(ctypes.Structure):
    _fields_ = [
        ("flags", ctypes.c_int),
        ("writepage", ctypes.c_uint, 1), ("direct_io", ctypes.c_uint, 1), ("keep_cache", ctypes.c_uint, 1),
        ("flush", ctypes.c_uint, 1), ("nonseekable", ctypes.c_uint, 1), ("flock_release", ctypes.c_uint, 1),
        ("cache_readdir", ctypes.c_uint, 1), ("noflush", ctypes.c_uint, 1), ("padding", ctypes.c_uint, 24),
        ("padding2", ctypes.c_uint, 32),
        ("fh", ctypes.c_uint64), ("lock_owner", ctypes.c_uint64), ("poll_events", ctypes.c_uint32),
    ]


class EntryParam(ctypes.Structure):
    _fields_ = [("ino", c_ino), ("generation", ctypes.c_uint64), ("attr", Stat),
                ("attr_timeout", ctypes.c_double), ("entry_timeout", ctypes.c_double)]


class ConnInfo(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint) for name in (
        "proto_major", "proto_minor", "max_write", "max_read", "max_readahead", "capable", "want",
        "max_background", "congestion_threshold", "time_gran")] + [("reserved", ctypes.c_uint * 22)]


class StatVfs(ctypes.Structure):
    _fields_ = [(name, ctypes.c_ulong) for name in (
        "f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail", "f_files", "f_ffree", "f_favail",
        "f_fsid", "f_flag", "f_namemax")] + [("_spare", ctypes.c_int * 6)]


class ForgetData(ctypes.Structure):
    _fields_ = [("ino", c_ino), ("nlookup", ctypes.c_uint64)]


class Args(ctypes.Structure):
    _fields_ = [("argc", ctypes.c_int), ("argv", ctypes.POINTER(ctypes.c_char_p)),
                ("allocated", ctypes.c_int)]


P_FI = ctypes.POINTER(FileInfo)
_F = ctypes.CFUNCTYPE
_NAME = ctypes.c_char_p

#: The callbacks this binding serves, in libfuse 3's ``struct fuse_lowlevel_ops`` order; None
#: marks a slot left empty (the kernel gets ENOSYS for it).
_OPS: list[tuple[str, Any]] = [
    ("init", _F(None, ctypes.c_void_p, ctypes.POINTER(ConnInfo))),
    ("destroy", _F(None, ctypes.c_void_p)),
    ("lookup", _F(None, c_req, c_ino, _NAME)),
    ("forget", _F(None, c_req, c_ino, ctypes.c_uint64)),
    ("getattr", _F(None, c_req, c_ino, P_FI)),
    ("setattr", _F(None, c_req, c_ino, ctypes.POINTER(Stat), ctypes.c_int, P_FI)),
    ("readlink", None),
    ("mknod", None),
    ("mkdir", _F(None, c_req, c_ino, _NAME, c_mode)),
    ("unlink", _F(None, c_req, c_ino, _NAME)),
    ("rmdir", _F(None, c_req, c_ino, _NAME)),
    ("symlink", None),
    ("rename", _F(None, c_req, c_ino, _NAME, c_ino, _NAME, ctypes.c_uint)),
    ("link", None),
    ("open", _F(None, c_req, c_ino, P_FI)),
    ("read", _F(None, c_req, c_ino, ctypes.c_size_t, c_off, P_FI)),
    ("write", _F(None, c_req, c_ino, ctypes.c_void_p, ctypes.c_size_t, c_off, P_FI)),
    ("flush", _F(None, c_req, c_ino, P_FI)),
    ("release", _F(None, c_req, c_ino, P_FI)),
    ("fsync", _F(None, c_req, c_ino, ctypes.c_int, P_FI)),
    ("opendir", _F(None, c_req, c_ino, P_FI)),
    ("readdir", None),  # readdirplus serves every listing (READDIRPLUS_AUTO is turned off)
    ("releasedir", None),
    ("fsyncdir", None),
    ("statfs", _F(None, c_req, c_ino)),
    ("setxattr", None),
    ("getxattr", None),
    ("listxattr", None),
    ("removexattr", None),
    ("access", None),
    ("create", _F(None, c_req, c_ino, _NAME, c_mode, P_FI)),
    ("getlk", None),
    ("setlk", None),
    ("bmap", None),
    ("ioctl", None),
    ("poll", None),
    ("write_buf", None),
    ("retrieve_reply", None),
    ("forget_multi", _F(None, c_req, ctypes.c_size_t, ctypes.POINTER(ForgetData))),
    ("flock", None),
    ("fallocate", None),
    ("readdirplus", _F(None, c_req, c_ino, ctypes.c_size_t, c_off, P_FI)),
    ("copy_file_range", None),
    ("lseek", None),
]


class LowLevelOps(ctypes.Structure):
    _fields_ = [(name, kind if kind is not None else ctypes.c_void_p) for name, kind in _OPS]


class Buf(ctypes.Structure):
    _fields_ = [("size", ctypes.c_size_t), ("flags", ctypes.c_int), ("mem", ctypes.c_void_p),
                ("fd", ctypes.c_int), ("pos", c_off)]


class BufVec(ctypes.Structure):
    _fields_ = [("count", ctypes.c_size_t), ("idx", ctypes.c_size_t), ("off", ctypes.c_size_t),
                ("buf", Buf * 1)]


def _load() -> ctypes.CDLL:
    name = os.environ.get("WAFS_LIBFUSE") or ctypes.util.find_library("fuse3") or "libfuse3.so.3"
    try:
        lib = ctypes.CDLL(name, use_errno=True)
    except OSError as exc:
        raise ImportError(f"libfuse 3 is not installed ({exc}): apt-get install fuse3") from exc
    signatures: dict[str, tuple[Any, list[Any]]] = {
        "fuse_session_new": (ctypes.c_void_p, [ctypes.POINTER(Args), ctypes.POINTER(LowLevelOps),
                                               ctypes.c_size_t, ctypes.c_void_p]),
        "fuse_session_mount": (ctypes.c_int, [ctypes.c_void_p, ctypes.c_char_p]),
        "fuse_session_fd": (ctypes.c_int, [ctypes.c_void_p]),
        "fuse_session_receive_buf": (ctypes.c_int, [ctypes.c_void_p, ctypes.POINTER(Buf)]),
        "fuse_session_process_buf": (None, [ctypes.c_void_p, ctypes.POINTER(Buf)]),
        "fuse_session_exited": (ctypes.c_int, [ctypes.c_void_p]),
        "fuse_session_exit": (None, [ctypes.c_void_p]),
        "fuse_session_unmount": (None, [ctypes.c_void_p]),
        "fuse_session_destroy": (None, [ctypes.c_void_p]),
        "fuse_reply_err": (ctypes.c_int, [c_req, ctypes.c_int]),
        "fuse_reply_none": (None, [c_req]),
        "fuse_reply_entry": (ctypes.c_int, [c_req, ctypes.POINTER(EntryParam)]),
        "fuse_reply_create": (ctypes.c_int, [c_req, ctypes.POINTER(EntryParam), P_FI]),
        "fuse_reply_attr": (ctypes.c_int, [c_req, ctypes.POINTER(Stat), ctypes.c_double]),
        "fuse_reply_open": (ctypes.c_int, [c_req, P_FI]),
        "fuse_reply_write": (ctypes.c_int, [c_req, ctypes.c_size_t]),
        "fuse_reply_buf": (ctypes.c_int, [c_req, ctypes.c_char_p, ctypes.c_size_t]),
        "fuse_reply_statfs": (ctypes.c_int, [c_req, ctypes.POINTER(StatVfs)]),
        "fuse_lowlevel_notify_inval_inode": (ctypes.c_int, [ctypes.c_void_p, c_ino, c_off, c_off]),
        "fuse_lowlevel_notify_store": (ctypes.c_int, [ctypes.c_void_p, c_ino, c_off, ctypes.POINTER(BufVec),
                                                      ctypes.c_int]),
        "fuse_lowlevel_notify_inval_entry": (ctypes.c_int, [ctypes.c_void_p, c_ino, ctypes.c_char_p,
                                                            ctypes.c_size_t]),
    }
    for function, (restype, argtypes) in signatures.items():
        target = getattr(lib, function)
        target.restype = restype
        target.argtypes = argtypes
    return lib


_lib = _load()
_libc = ctypes.CDLL(None)
_libc.free.argtypes = [ctypes.c_void_p]
_libc.free.restype = None
_malloc_trim = getattr(_libc, "malloc_trim", None)  # glibc's; other C libraries may lack it
#: Seconds without a request after which the daemon returns the memory it freed to the system.
QUIET_SECONDS = 1


def _return_free_memory() -> None:
    if _malloc_trim is not None:
        _malloc_trim(0)

FUSE_CAP_READDIRPLUS = 1 << 13
FUSE_CAP_READDIRPLUS_AUTO = 1 << 14

SET_ATTR_MODE, SET_ATTR_UID, SET_ATTR_GID, SET_ATTR_SIZE = 1 << 0, 1 << 1, 1 << 2, 1 << 3
SET_ATTR_ATIME, SET_ATTR_MTIME, SET_ATTR_ATIME_NOW, SET_ATTR_MTIME_NOW = 1 << 4, 1 << 5, 1 << 7, 1 << 8

RENAME_NOREPLACE = 1 << 0
RENAME_EXCHANGE = 1 << 1

ROOT_INO = 1



# --- Python side -------------------------------------------------------------------------------


class FuseError(Exception):
    """Raised by a :class:`Filesystem` method: the request fails with ``errno``."""

    def __init__(self, number: int) -> None:
        super().__init__(number, os.strerror(number))
        self.errno = number


@dataclass(slots=True)
class Attributes:
    """What ``stat`` shows of an inode."""

    ino: int
    mode: int
    size: int = 0
    mtime_ns: int = 0
    nlink: int = 1
    uid: int = 0
    gid: int = 0

    def fill(self, st: Stat) -> None:
        st.st_ino, st.st_mode, st.st_nlink = self.ino, self.mode, self.nlink
        st.st_uid, st.st_gid, st.st_size = self.uid, self.gid, self.size
        st.st_blocks = (self.size + 511) // 512
        st.st_blksize = 4096
        seconds, nanoseconds = divmod(self.mtime_ns, 1_000_000_000)
        for spec in (st.st_atim, st.st_mtim, st.st_ctim):
            spec.tv_sec, spec.tv_nsec = seconds, nanoseconds


@dataclass(slots=True)
class Entry:
    """A name's inode and how long the kernel may keep the name and the attributes.

    ``attributes`` None is a negative entry: the name does not exist (kept ``entry_timeout``).
    """

    attributes: Attributes | None
    entry_timeout: float
    attr_timeout: float


@dataclass(slots=True)
class Opened:
    """How the kernel treats a file it opened: ``fh`` comes back in every request on it."""

    fh: int
    direct_io: bool = False
    keep_cache: bool = False
    noflush: bool = False


@dataclass(slots=True)
class SetAttributes:
    """The changes of a ``setattr`` request (``None``: leave as is)."""

    size: int | None
    mode: int | None
    uid: int | None
    gid: int | None
    mtime_ns: int | None


class Filesystem:
    """Request handlers; each raises :class:`FuseError` to fail, or returns the reply.

    The defaults answer ``ENOSYS`` (the kernel then stops sending ``open``/``opendir`` for
    the whole connection, which is how a filesystem says it needs no file handles).
    Handlers run one at a time, in the order the kernel sent the requests, in the thread
    that runs :meth:`Session.loop`.
    """

    def errno_for(self, exc: Exception) -> int:
        """The errno a request fails with when its handler raised ``exc`` (not a FuseError)."""
        return errno.EIO

    def init(self, conn: ConnInfo) -> None:
        """The connection is up; ``conn.want`` may be adjusted."""

    def destroy(self) -> None:
        """The filesystem is being unmounted."""

    def lookup(self, parent: int, name: bytes) -> Entry:
        raise FuseError(errno.ENOSYS)

    def forget(self, forgets: list[tuple[int, int]]) -> None:
        """The kernel dropped ``nlookup`` references to each inode."""

    def getattr(self, ino: int, fh: int | None) -> tuple[Attributes, float]:
        raise FuseError(errno.ENOSYS)

    def setattr(self, ino: int, changes: SetAttributes, fh: int | None) -> tuple[Attributes, float]:
        raise FuseError(errno.ENOSYS)

    def mkdir(self, parent: int, name: bytes, mode: int) -> Entry:
        raise FuseError(errno.ENOSYS)

    def unlink(self, parent: int, name: bytes) -> None:
        raise FuseError(errno.ENOSYS)

    def rmdir(self, parent: int, name: bytes) -> None:
        raise FuseError(errno.ENOSYS)

    def rename(self, parent: int, name: bytes, new_parent: int, new_name: bytes, flags: int) -> None:
        raise FuseError(errno.ENOSYS)

    def open(self, ino: int, flags: int) -> Opened:
        raise FuseError(errno.ENOSYS)

    def create(self, parent: int, name: bytes, mode: int, flags: int) -> tuple[Entry, Opened]:
        raise FuseError(errno.ENOSYS)

    def read(self, ino: int, size: int, offset: int, fh: int) -> bytes:
        raise FuseError(errno.ENOSYS)

    def write(self, ino: int, data: bytes, offset: int, fh: int) -> int:
        raise FuseError(errno.ENOSYS)

    def flush(self, ino: int, fh: int) -> None:
        raise FuseError(errno.ENOSYS)

    def release(self, ino: int, fh: int) -> None:
        """The last reference to an open file is gone (no reply is awaited)."""

    def fsync(self, ino: int, fh: int) -> None:
        raise FuseError(errno.ENOSYS)

    def opendir(self, ino: int) -> Opened:
        raise FuseError(errno.ENOSYS)

    def readdir(self, ino: int, offset: int) -> Iterator[tuple[bytes, Entry, int]]:
        """``(name, entry, next_offset)`` from ``offset`` on, until the reply is full."""
        raise FuseError(errno.ENOSYS)

    def readdir_sent(self, inos: list[int]) -> None:
        """These inodes went out in a listing: each counts as one lookup (``.``/``..`` do not)."""

    def readdirplus(self, ino: int, size: int, offset: int) -> bytes:
        """The READDIRPLUS reply: the entries of :meth:`readdir` from ``offset`` on, packed
        until ``size`` bytes are full (empty: the end). Filesystems override it for speed."""
        buffer = bytearray(size)
        used = 0
        sent: list[int] = []
        try:
            for name, entry, next_offset in self.readdir(ino, offset):
                needed = direntplus_size(name)
                if needed > size - used:
                    break
                pack_direntplus(buffer, used, name, entry, next_offset)
                used += needed
                if entry.attributes is not None and name not in (b".", b".."):
                    sent.append(entry.attributes.ino)
        finally:
            self.readdir_sent(sent)
        return bytes(buffer[:used])

    def statfs(self) -> StatVfs:
        raise FuseError(errno.ENOSYS)


#: ``struct fuse_direntplus`` of the kernel's protocol (``linux/fuse.h``) up to the name: a
#: ``fuse_entry_out`` (ids, timeouts, ``fuse_attr``) and a ``fuse_dirent`` header. Listings are
#: packed here rather than by ``fuse_add_direntry_plus``: one ``pack_into`` per entry instead of
#: a ``struct stat`` filled field by field and a ctypes call.
_DIRENTPLUS = struct.Struct("<QQQQII" "QQQQQQ" "IIIIIIIIII" "QQII")
_DIRENT_ALIGN = 8
_MAX_SECONDS = (1 << 64) - 1


@functools.lru_cache(maxsize=64)
def _timeout(seconds: float) -> tuple[int, int]:
    """A timeout as the protocol's whole seconds and nanoseconds (as libfuse rounds it)."""
    if not seconds > 0.0:
        return 0, 0
    whole = _MAX_SECONDS if seconds >= _MAX_SECONDS else int(seconds)
    fraction = seconds - whole
    return whole, 999_999_999 if fraction >= 0.999999999 else max(0, int(fraction * 1e9))


def direntplus_size(name: bytes) -> int:
    """The bytes one listing entry named ``name`` takes in a READDIRPLUS reply."""
    return _DIRENTPLUS.size + (len(name) + _DIRENT_ALIGN - 1) // _DIRENT_ALIGN * _DIRENT_ALIGN


def direntplus_timeouts(entry_timeout: float, attr_timeout: float) -> tuple[int, int, int, int]:
    """The timeouts of :func:`pack_direntplus_fields`, converted once for many entries."""
    entry_seconds, entry_nanoseconds = _timeout(entry_timeout)
    attr_seconds, attr_nanoseconds = _timeout(attr_timeout)
    return entry_seconds, attr_seconds, entry_nanoseconds, attr_nanoseconds


def pack_direntplus_fields(buffer: bytearray, offset: int, name: bytes, next_offset: int,
                           timeouts: tuple[int, int, int, int], ino: int, mode: int, size: int,
                           mtime_ns: int, nlink: int, uid: int, gid: int) -> None:
    """Write one READDIRPLUS entry at ``offset`` of a zeroed ``buffer`` (it must have
    :func:`direntplus_size` bytes free there); ``ino`` 0 and ``mode`` 0 make a negative entry."""
    seconds, nanoseconds = divmod(mtime_ns, 1_000_000_000)
    _DIRENTPLUS.pack_into(
        buffer, offset,
        ino, 0, *timeouts,
        ino, size, (size + 511) // 512, seconds, seconds, seconds,
        nanoseconds, nanoseconds, nanoseconds, mode, nlink, uid, gid, 0, 4096, 0,
        ino, next_offset, len(name), (mode & 0o170000) >> 12)
    start = offset + _DIRENTPLUS.size
    buffer[start:start + len(name)] = name


def pack_direntplus(buffer: bytearray, offset: int, name: bytes, entry: Entry, next_offset: int) -> None:
    """:func:`pack_direntplus_fields` of an :class:`Entry`."""
    timeouts = direntplus_timeouts(entry.entry_timeout, entry.attr_timeout)
    a = entry.attributes
    if a is None:
        pack_direntplus_fields(buffer, offset, name, next_offset, timeouts, 0, 0, 0, 0, 0, 0, 0)
    else:
        pack_direntplus_fields(buffer, offset, name, next_offset, timeouts,
                               a.ino, a.mode, a.size, a.mtime_ns, a.nlink, a.uid, a.gid)


def _fill_entry(param: EntryParam, entry: Entry) -> None:
    ctypes.memset(ctypes.byref(param), 0, ctypes.sizeof(param))
    if entry.attributes is not None:
        param.ino = entry.attributes.ino
        entry.attributes.fill(param.attr)
    param.entry_timeout = entry.entry_timeout
    param.attr_timeout = entry.attr_timeout


def _fill_open(info: FileInfo, opened: Opened) -> None:
    info.fh = opened.fh
    info.direct_io = opened.direct_io
    info.keep_cache = opened.keep_cache
    info.noflush = opened.noflush


class Session:
    """One mount: ``Session(fs, mountpoint, options)``, then :meth:`loop` until unmounted."""

    def __init__(self, fs: Filesystem, mountpoint: str, options: list[str]) -> None:
        self.fs = fs
        self.mountpoint = mountpoint
        self._ending = threading.Lock()  # exit() never touches a session being destroyed
        self._entry = EntryParam()  # reply buffers (the handlers run one at a time)
        self._stat = Stat()
        self._callbacks = self._make_callbacks()
        self._ops = LowLevelOps(**self._callbacks)
        argv = [b"wafs"] + ([b"-o", ",".join(options).encode()] if options else [])
        self._argv = (ctypes.c_char_p * len(argv))(*argv)
        args = Args(len(argv), self._argv, 0)
        self._se = _lib.fuse_session_new(ctypes.byref(args), ctypes.byref(self._ops),
                                         ctypes.sizeof(self._ops), None)
        if not self._se:
            raise OSError(errno.EINVAL, f"libfuse refused the mount options {options!r}")
        if _lib.fuse_session_mount(self._se, os.fsencode(mountpoint)) != 0:
            _lib.fuse_session_destroy(self._se)
            self._se = None
            raise OSError(errno.EIO, f"could not mount at {mountpoint} (see the messages above)")

    def loop(self, spin: float = 0.0) -> None:
        """Serve requests until the filesystem is unmounted; then release the session.

        One thread reads and answers every request, in the order the kernel sent them: a
        ``close`` is committed before the ``open`` that came after it. (libfuse's worker
        threads, two taking turns, made a cold ``find`` 20% faster, but a request waits for
        the interpreter lock before its handler runs, and that reordered them: measured, a
        ``close`` committed after the next command's ``open``.)

        After each answer the thread keeps asking for the next request for ``spin`` seconds
        (yielding the CPU between tries) before it sleeps: a tool walking the tree sends the
        next one within microseconds, and a sleeping thread is woken by an interrupt to its
        CPU, which on a VM costs more than serving the request. Idle, it costs nothing.

        Once the kernel has sent nothing for ``QUIET_SECONDS`` after some requests, the memory
        they freed goes back to the system: a tree walk reads and drops many values, and the C
        allocator keeps the holes they leave (a third of the daemon's resident memory after a
        cold ``find`` of the medium session) until asked to return them."""
        try:
            result = self._serve(spin)
            if result not in (0,) and result != -errno.ENODEV:
                log.warning("the FUSE loop ended with %s", os.strerror(-result) if result < 0 else result)
        finally:
            with self._ending:
                # No notification from here on: unmounting closes the device (its number may be
                # reused at once), and destroying commits what is still open.
                se, self._se = self._se, None
                _lib.fuse_session_unmount(se)
                _lib.fuse_session_destroy(se)

    def _serve(self, spin: float) -> int:
        se = self._se
        fd = _lib.fuse_session_fd(se)
        os.set_blocking(fd, False)
        request = Buf()  # libfuse allocates its memory at the first request
        pointer = ctypes.byref(request)
        readable = select.poll()
        readable.register(fd, select.POLLIN)
        receive, process, exited = (_lib.fuse_session_receive_buf, _lib.fuse_session_process_buf,
                                    _lib.fuse_session_exited)
        clock, pause = time.perf_counter, os.sched_yield
        spin_until = 0.0
        result = 0
        served = False  # requests were answered since the memory was last returned
        try:
            while not exited(se):
                result = receive(se, pointer)
                if result == -errno.EAGAIN:
                    if clock() < spin_until:
                        pause()
                    elif not served:
                        readable.poll()
                    elif not readable.poll(QUIET_SECONDS * 1000):
                        served = False
                        _return_free_memory()
                    continue
                if result == -errno.EINTR:
                    continue
                if result <= 0:
                    break
                process(se, pointer)
                served = True
                spin_until = clock() + spin
        finally:
            _libc.free(request.mem)
        return 0 if result > 0 or result == -errno.EAGAIN else result

    def exit(self) -> None:
        """Make :meth:`loop` return, even while files are open, once it has answered the request
        it is serving or the next one it reads (call from another thread; after the loop has
        ended this does nothing)."""
        with self._ending:
            if self._se is not None:
                _lib.fuse_session_exit(self._se)

    # --- telling the kernel what changed (from any thread but the serving one) ---------------

    def invalidate_inode(self, ino: int, offset: int = 0, length: int = 0) -> bool:
        """Drop the kernel's attributes of ``ino`` and its cached pages from ``offset`` on
        (``length`` 0: to the end; ``offset`` -1: attributes only). For a directory, its
        cached listing. False when the kernel holds no such inode (yet)."""
        se = self._se
        if se is None:
            return True
        return self._notified(_lib.fuse_lowlevel_notify_inval_inode(se, ino, offset, length), "inode", ino)

    def invalidate_entry(self, parent: int, name: bytes) -> bool:
        """Drop the kernel's entry ``name`` in directory ``parent`` (positive or negative).
        False when the kernel holds no such entry (yet)."""
        se = self._se
        if se is None:
            return True
        result = _lib.fuse_lowlevel_notify_inval_entry(se, parent, name, len(name))
        return self._notified(result, "entry", parent)

    def store(self, ino: int, data: bytes) -> bool:
        """Put ``data`` in the kernel's cached pages of file ``ino`` from offset 0, as if it had
        read them. Waits for those pages' locks. False when the kernel holds no such inode."""
        se = self._se
        if se is None:
            return True
        vector = BufVec(1, 0, 0)
        vector.buf[0].size = len(data)
        vector.buf[0].mem = ctypes.cast(ctypes.c_char_p(data), ctypes.c_void_p)
        result = _lib.fuse_lowlevel_notify_store(se, ino, 0, ctypes.byref(vector), 0)
        return self._notified(result, "pages", ino)

    @staticmethod
    def _notified(result: int, what: str, ino: int) -> bool:
        if result == -errno.ENOENT:
            return False
        # ENOTCONN/EBADF/ENODEV: unmounting, nothing is cached any more.
        if result not in (0, -errno.ENOTCONN, -errno.EBADF, -errno.ENODEV):
            log.warning("invalidating %s %d failed: %s", what, ino, os.strerror(-result))
        return True

    # --- requests ---------------------------------------------------------------------------

    def _make_callbacks(self) -> dict[str, Any]:
        fs, lib = self.fs, _lib
        entry_param, stat_buf = self._entry, self._stat

        def reply_entry(req: int, entry: Entry) -> None:
            _fill_entry(entry_param, entry)
            lib.fuse_reply_entry(req, ctypes.byref(entry_param))

        def guarded(handler: Any) -> Any:
            def callback(req: int, *args: Any) -> None:
                try:
                    handler(req, *args)
                except FuseError as exc:
                    lib.fuse_reply_err(req, exc.errno)
                except Exception as exc:
                    number = fs.errno_for(exc)
                    if number == errno.EIO:  # a store failure is logged; a bug with its traceback
                        traceback = not isinstance(exc, OSError)
                        log.warning("FUSE %s failed: %s", handler.__name__, exc, exc_info=traceback)
                    lib.fuse_reply_err(req, number)
            return callback

        def init(userdata: int, conn: Any) -> None:
            try:
                fs.init(conn.contents)
            except Exception:
                log.exception("FUSE init failed")

        def destroy(userdata: int) -> None:
            try:
                fs.destroy()
            except Exception:
                log.exception("FUSE destroy failed")

        def lookup(req: int, parent: int, name: bytes) -> None:
            reply_entry(req, fs.lookup(parent, name))

        def forget(req: int, ino: int, nlookup: int) -> None:
            try:
                fs.forget([(ino, nlookup)])
            except Exception:
                log.exception("FUSE forget failed unexpectedly")
            finally:
                lib.fuse_reply_none(req)

        def forget_multi(req: int, count: int, forgets: Any) -> None:
            try:
                # (ino, nlookup) pairs of uint64, read as one flat array: an unmount forgets every inode
                flat = ctypes.cast(forgets, ctypes.POINTER(ctypes.c_uint64 * (2 * count))).contents[:]
                fs.forget(list(zip(flat[0::2], flat[1::2], strict=True)))
            except Exception:
                log.exception("FUSE forget failed unexpectedly")
            finally:
                lib.fuse_reply_none(req)

        def reply_attr(req: int, attributes: Attributes, timeout: float) -> None:
            ctypes.memset(ctypes.byref(stat_buf), 0, ctypes.sizeof(stat_buf))
            attributes.fill(stat_buf)
            lib.fuse_reply_attr(req, ctypes.byref(stat_buf), timeout)

        def getattr(req: int, ino: int, fi: Any) -> None:
            reply_attr(req, *fs.getattr(ino, fi.contents.fh if fi else None))

        def setattr(req: int, ino: int, attr: Any, to_set: int, fi: Any) -> None:
            st = attr.contents
            mtime: int | None = None
            if to_set & SET_ATTR_MTIME_NOW:
                mtime = -1
            elif to_set & SET_ATTR_MTIME:
                mtime = st.st_mtim.tv_sec * 1_000_000_000 + st.st_mtim.tv_nsec
            changes = SetAttributes(
                size=st.st_size if to_set & SET_ATTR_SIZE else None,
                mode=st.st_mode if to_set & SET_ATTR_MODE else None,
                uid=st.st_uid if to_set & SET_ATTR_UID else None,
                gid=st.st_gid if to_set & SET_ATTR_GID else None,
                mtime_ns=mtime,
            )
            reply_attr(req, *fs.setattr(ino, changes, fi.contents.fh if fi else None))

        def mkdir(req: int, parent: int, name: bytes, mode: int) -> None:
            reply_entry(req, fs.mkdir(parent, name, mode))

        def unlink(req: int, parent: int, name: bytes) -> None:
            fs.unlink(parent, name)
            lib.fuse_reply_err(req, 0)

        def rmdir(req: int, parent: int, name: bytes) -> None:
            fs.rmdir(parent, name)
            lib.fuse_reply_err(req, 0)

        def rename(req: int, parent: int, name: bytes, new_parent: int, new_name: bytes, flags: int) -> None:
            fs.rename(parent, name, new_parent, new_name, flags)
            lib.fuse_reply_err(req, 0)

        def open(req: int, ino: int, fi: Any) -> None:
            info = fi.contents
            _fill_open(info, fs.open(ino, info.flags))
            lib.fuse_reply_open(req, fi)

        def create(req: int, parent: int, name: bytes, mode: int, fi: Any) -> None:
            info = fi.contents
            entry, opened = fs.create(parent, name, mode, info.flags)
            _fill_open(info, opened)
            _fill_entry(entry_param, entry)
            lib.fuse_reply_create(req, ctypes.byref(entry_param), fi)

        def read(req: int, ino: int, size: int, offset: int, fi: Any) -> None:
            data = fs.read(ino, size, offset, fi.contents.fh)
            lib.fuse_reply_buf(req, data, len(data))

        def write(req: int, ino: int, buf: int, size: int, offset: int, fi: Any) -> None:
            written = fs.write(ino, ctypes.string_at(buf, size), offset, fi.contents.fh)
            lib.fuse_reply_write(req, written)

        def flush(req: int, ino: int, fi: Any) -> None:
            fs.flush(ino, fi.contents.fh)
            lib.fuse_reply_err(req, 0)

        def release(req: int, ino: int, fi: Any) -> None:
            try:
                fs.release(ino, fi.contents.fh)
            except FuseError:
                pass  # close() returned long ago; flush reported the error
            except Exception:
                log.exception("FUSE release failed unexpectedly")
            finally:
                lib.fuse_reply_err(req, 0)

        def fsync(req: int, ino: int, datasync: int, fi: Any) -> None:
            fs.fsync(ino, fi.contents.fh)
            lib.fuse_reply_err(req, 0)

        def opendir(req: int, ino: int, fi: Any) -> None:
            info = fi.contents
            _fill_open(info, fs.opendir(ino))
            lib.fuse_reply_open(req, fi)

        def readdirplus(req: int, ino: int, size: int, offset: int, fi: Any) -> None:
            data = fs.readdirplus(ino, size, offset)
            lib.fuse_reply_buf(req, data, len(data))

        def statfs(req: int, ino: int) -> None:
            lib.fuse_reply_statfs(req, ctypes.byref(fs.statfs()))

        handlers = {
            "lookup": lookup, "getattr": getattr, "setattr": setattr, "mkdir": mkdir, "unlink": unlink,
            "rmdir": rmdir, "rename": rename, "open": open, "create": create, "read": read, "write": write,
            "flush": flush, "fsync": fsync, "opendir": opendir, "readdirplus": readdirplus, "statfs": statfs,
        }
        kinds = dict(_OPS)
        callbacks = {name: guarded(handler) for name, handler in handlers.items()}
        callbacks.update(init=init, destroy=destroy, forget=forget, forget_multi=forget_multi,
                         release=release)
        return {name: kinds[name](callback) for name, callback in callbacks.items()}
