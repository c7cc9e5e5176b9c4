"""Mounting and unmounting: checks, the background daemon, and a clean exit."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path

from ..engine import Engine
from ..errors import WafsError
from ..registry import open_engine
from ..urls import redact
from .chats import ChatsOperations
from .fuse import Session
from .operations import Operations
from .options import MountOptions

#: The filesystem of each ``MountOptions.view``.
Served = Operations | ChatsOperations

log = logging.getLogger(__name__)

READY = b"ready\n"
START_TIMEOUT = 60.0
UNMOUNT_TIMEOUT = 10.0


class MountError(WafsError):
    """A mount or unmount could not be done; the message says what to do."""


def mounted_at(mountpoint: str | os.PathLike[str]) -> str | None:
    """The filesystem type mounted at ``mountpoint`` (``fuse.wafs``…), or None.

    Of several mounts stacked there, the last one listed: the one on top.
    """
    target = os.path.realpath(mountpoint)
    found = None
    with open("/proc/self/mounts", encoding="utf-8") as mounts:
        for line in mounts:
            fields = line.split()
            if len(fields) > 2 and _unescape(fields[1]) == target:
                found = fields[2]
    return found


def _unescape(field: str) -> str:
    return field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")


def _enclosing_wafs_mount(path: str) -> str | None:
    """The wafs mount that ``path`` lies inside (below its mountpoint), or None."""
    target = os.path.realpath(path)
    found = None
    with open("/proc/self/mounts", encoding="utf-8") as mounts:
        for line in mounts:
            fields = line.split()
            if len(fields) > 2 and fields[2] == "fuse.wafs":
                outer = _unescape(fields[1])
                if target.startswith(outer.rstrip("/") + "/"):
                    found = outer
    return found


def check_mountpoint(mountpoint: str) -> None:
    """Refuse a mountpoint that is missing, in use, left stale by a dead daemon, not empty, or
    inside another wafs mount, saying which."""
    try:
        os.stat(mountpoint)
    except OSError as exc:
        if exc.errno == errno.ENOTCONN:
            raise MountError(
                f"{mountpoint} is a stale mount (its daemon died): run 'wafs umount {mountpoint}' first"
            ) from exc
        raise MountError(f"cannot mount on {mountpoint}: {exc.strerror}") from exc
    if not os.path.isdir(mountpoint):
        raise MountError(f"cannot mount on {mountpoint}: not a directory")
    if mounted_at(mountpoint):
        raise MountError(f"{mountpoint} is already mounted: run 'wafs umount {mountpoint}' first")
    outer = _enclosing_wafs_mount(mountpoint)
    if outer is not None:
        raise MountError(f"cannot mount on {mountpoint}: it is inside the wafs mount at {outer}, whose "
                         "directories are keys of that store; choose a directory outside it")
    entries = sorted(os.listdir(mountpoint))
    if entries:
        raise MountError(f"cannot mount on {mountpoint}: the directory is not empty ({len(entries)} entries, "
                         f"such as {entries[0]!r}), and a mount would hide them; choose an empty directory")


def filesystem(engine: Engine, options: MountOptions) -> Served:
    """The filesystem ``options.view`` asks for: the raw key tree, or the chats view."""
    if options.view == "chats":
        return ChatsOperations(engine, options)
    return Operations(engine, options)


def serve(engine: Engine, mountpoint: str, options: MountOptions,
          on_ready: Callable[[], None] = lambda: None, refresh_on_sighup: bool = False) -> list[str]:
    """Read the engine's tree (or chat list) and serve the mount in this thread until it is
    unmounted; return what could not be done at the unmount (each also logged as an error):
    files that could not be written, cascade deletes given up.

    With ``refresh_on_sighup`` (a daemon of its own), SIGHUP reads the store again and
    SIGTERM or SIGINT unmounts."""
    if refresh_on_sighup:  # before any thread starts: every thread inherits the blocked mask
        signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
    server = Server(engine, mountpoint, options, on_ready)
    if refresh_on_sighup:
        _handle_signals(server.operations, mountpoint)
    return server.loop()


class Server:
    """One mount of ``engine`` at ``mountpoint``: the constructor reads the engine's tree (or
    chat list: a backend that is down fails the mount here) and mounts; :meth:`loop` serves.

    ``on_ready`` is called, from the serving thread, once the kernel has asked the mount to
    start (FUSE ``INIT``): requests are answered from then on."""

    def __init__(self, engine: Engine, mountpoint: str, options: MountOptions,
                 on_ready: Callable[[], None] = lambda: None) -> None:
        self.mountpoint = mountpoint
        self.spin = options.spin
        self.operations = operations = filesystem(engine, options)
        following = operations.follow_changes()
        operations.load()
        operations.start()
        operations.on_ready = on_ready
        view = "" if options.view == "raw" else f"{options.view}:"
        fsname = options.fsname or f"wafs:{view}{type(engine).__name__}"
        # libfuse splits its options at commas and unescapes backslashes.
        escaped = fsname.replace("\\", "\\\\").replace(",", "\\,")
        fuse_options = [f"fsname={escaped}", "subtype=wafs", "default_permissions", "nosuid", "nodev"]
        if operations.read_only:
            fuse_options.append("ro")
        if options.allow_other:
            fuse_options.append("allow_other")
        if options.debug:
            fuse_options.append("debug")
        mode = "change feed" if following else f"TTL {options.ttl} s"
        log.info("serving %r at %s (%s view, %s)", engine, mountpoint, options.view, mode)
        try:
            self.session = Session(operations, mountpoint, fuse_options)
        except BaseException:
            operations.destroy()  # stops the threads load() and start() began
            raise
        operations.kernel.attach(self.session)

    def loop(self) -> list[str]:
        """Serve in this thread until unmounted (or :meth:`stop`); then what :func:`serve` returns."""
        # Requests are answered one at a time, in the order the kernel sent them, in this thread;
        # change feeds, sweeps, kernel notifications and signals run in threads of their own.
        several_cpus = len(os.sched_getaffinity(0)) > 1
        self.session.loop(spin=self.spin if several_cpus else 0.0)
        return self.operations.left_undone

    def stop(self) -> None:
        """End :meth:`loop` now, from another thread, even while files are open (a plain
        unmount fails then, as busy): the mount is detached, files still open are committed
        as they stand, and whoever holds them gets ``ENOTCONN`` from then on."""
        self.session.exit()
        with contextlib.suppress(OSError):
            os.statvfs(self.mountpoint)  # a request the kernel always sends: the loop wakes and ends


_SIGNALS = {signal.SIGHUP, signal.SIGTERM, signal.SIGINT}


def _handle_signals(operations: Served, mountpoint: str) -> None:
    """SIGHUP (``wafs refresh``) reads the whole store again; SIGTERM and SIGINT unmount.

    :func:`serve` blocked these signals before it started any thread, so every thread (the
    FUSE loop too) has them blocked; this thread takes them with sigwait."""

    def wait() -> None:
        while True:
            received = signal.sigwait(_SIGNALS)
            if received != signal.SIGHUP:
                log.info("%s: unmounting %s", signal.Signals(received).name, mountpoint)
                _detach(mountpoint)
                return
            log.info("SIGHUP: reading the store again")
            try:
                operations.refresh()
            except Exception:
                log.exception("refresh failed; the next access tries again")

    threading.Thread(target=wait, name="wafs-signals", daemon=True).start()


def _detach(mountpoint: str) -> None:
    tool = shutil.which("fusermount3") or "fusermount3"
    result = subprocess.run([tool, "-u", "-z", mountpoint], capture_output=True, text=True,
                            timeout=UNMOUNT_TIMEOUT)
    if result.returncode != 0:
        log.error("could not unmount %s: %s", mountpoint, result.stderr.strip())


def mount(engine_url: str, mountpoint: str, options: MountOptions, *, foreground: bool = False,
          log_file: str | None = None) -> None:
    """Mount ``engine_url`` at ``mountpoint``; in the background unless ``foreground``.

    In the background this returns once the mount answers, or raises :class:`MountError`
    with the daemon's own error message; a daemon that neither mounts nor fails within
    :data:`START_TIMEOUT` seconds is killed, and the error quotes what it logged.
    """
    mountpoint = os.path.abspath(mountpoint)
    check_mountpoint(mountpoint)
    if shutil.which("fusermount3") is None:
        raise MountError("FUSE is not installed: apt-get install fuse3")
    _take_report(mountpoint)  # one left by an earlier daemon at this mountpoint is stale
    if foreground:
        with open_engine(engine_url) as engine, _pid_file(mountpoint):
            left_undone = serve(engine, mountpoint, options, refresh_on_sighup=True)
        if left_undone:
            raise MountError(f"unmounted {mountpoint}, but: " + "; ".join(left_undone))
        return
    log_start = _size(log_file)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the daemon
        os.close(read_end)
        _become_daemon(log_file)
        try:
            with open_engine(engine_url) as engine, _pid_file(mountpoint):
                os.chdir("/")  # after opening the engine: a relative file:// path stays right
                left_undone = serve(engine, mountpoint, options, on_ready=lambda: _say(write_end, READY),
                                    refresh_on_sighup=True)
                _write_report(mountpoint, left_undone)
        except BaseException as exc:  # tell the parent why, whatever it was
            log.exception("mount of %s failed", redact(engine_url))
            _say(write_end, f"{exc}\n".encode())
            os._exit(1)
        os._exit(0)
    os.close(write_end)
    _wait_for_daemon(read_end, pid, mountpoint, log_file, log_start)


def _say(fd: int, message: bytes) -> None:
    try:
        os.write(fd, message)
        os.close(fd)
    except OSError:
        pass


def _become_daemon(log_file: str | None) -> None:
    os.setsid()
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    if log_file:
        out = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.dup2(out, 1)
        os.dup2(out, 2)
    else:
        os.dup2(null, 1)
        os.dup2(null, 2)
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, force=True,
                        format="%(asctime)s wafs[%(process)d] %(levelname)s %(message)s")


def _wait_for_daemon(read_end: int, pid: int, mountpoint: str, log_file: str | None, log_start: int) -> None:
    """Return once the daemon said it is ready and the mount is listed, within START_TIMEOUT s.

    A daemon that failed has said why before exiting: that is the error. One that neither
    failed nor mounted in time is stopped (SIGTERM, then SIGKILL) and the error quotes what it
    wrote to ``log_file`` past ``log_start``.
    """
    deadline = time.monotonic() + START_TIMEOUT
    try:
        message = _read_line(read_end, deadline)
    finally:
        os.close(read_end)
    if message is not None and message != READY:
        os.waitpid(pid, 0)
        reason = message.decode(errors="replace").strip() or "the daemon exited without a word"
        raise MountError(f"could not mount at {mountpoint}: {reason}{_fuse_said(log_file, log_start)}")
    if message == READY:
        while time.monotonic() < deadline:
            if mounted_at(mountpoint):
                return
            time.sleep(0.01)
        what = "said it was ready, but the mount never appeared"
    else:
        what = "neither mounted nor failed"
    _stop_daemon(pid)
    if (mounted_at(mountpoint) or "").startswith("fuse"):  # stale now that its daemon is gone
        with contextlib.suppress(MountError, subprocess.SubprocessError):
            unmount(mountpoint, lazy=True)
    raise MountError(f"could not mount at {mountpoint}: the daemon {what} within {START_TIMEOUT:.0f} s "
                     f"and was killed; {_log_since(log_file, log_start)}")


def _read_line(fd: int, deadline: float) -> bytes | None:
    """What ``fd`` delivers up to a newline or end of file; None when the deadline passes first."""
    data = b""
    while not data.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
            return None
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        data += chunk
    return data


def _stop_daemon(pid: int) -> None:
    """SIGTERM ``pid`` (libfuse then unmounts), SIGKILL it after UNMOUNT_TIMEOUT s, and reap it."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + UNMOUNT_TIMEOUT
    while os.waitpid(pid, os.WNOHANG) == (0, 0):
        if time.monotonic() >= deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return
        time.sleep(0.05)


def _size(path: str | None) -> int:
    try:
        return os.path.getsize(path) if path else 0
    except OSError:
        return 0


def _fuse_said(log_file: str | None, start: int) -> str:
    """What libfuse and fusermount3 wrote to the daemon's log past byte ``start`` (their reason
    for refusing a mount: a mountpoint they will not use, a missing permission), as ``: …``."""
    if not log_file:
        return ""
    try:
        with open(log_file, "rb") as log_text:
            log_text.seek(start)
            lines = log_text.read().decode(errors="replace").splitlines()
    except OSError:
        return ""
    said = [line.strip() for line in lines if line.startswith(("fuse:", "fusermount"))]
    return "".join(f": {line}" for line in said)


def _log_since(log_file: str | None, start: int, limit: int = 2000) -> str:
    """The end of what the daemon logged to ``log_file`` past byte ``start``, for an error message."""
    if not log_file:
        return "it had no log file"
    try:
        with open(log_file, "rb") as log_text:
            log_text.seek(start)
            logged = log_text.read().decode(errors="replace").strip()
    except OSError as exc:
        return f"its log {log_file} cannot be read: {exc.strerror}"
    if not logged:
        return f"it logged nothing to {log_file}"
    return f"its log {log_file} ends with:\n{logged[-limit:]}"


def unmount(mountpoint: str, *, lazy: bool = False, timeout: float = UNMOUNT_TIMEOUT) -> list[str]:
    """Unmount a wafs mount; ``lazy`` detaches it even while busy (for a dead daemon).

    When a ``wafs mount`` daemon serves it, wait (up to ``timeout`` seconds) for that daemon to
    finish its last writes and exit, and return what it could not do (files it could not
    write, cascade deletes it gave up); ``[]`` when all was done."""
    mountpoint = os.path.abspath(mountpoint)
    kind = mounted_at(mountpoint)
    if kind is None:
        raise MountError(f"{mountpoint} is not mounted")
    if not kind.startswith("fuse"):
        raise MountError(f"{mountpoint} is a {kind} filesystem, not a wafs mount; not touching it")
    daemon = _daemon_of(mountpoint)
    tool = shutil.which("fusermount3") or "fusermount3"
    command = [tool, "-u"] + (["-z"] if lazy else []) + [mountpoint]
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        detail = result.stderr.strip()
        hint = " (busy: close what uses it, or use --lazy)" if "busy" in detail else ""
        raise MountError(f"could not unmount {mountpoint}: {detail}{hint}")
    deadline = time.monotonic() + timeout
    while mounted_at(mountpoint) and time.monotonic() < deadline:
        time.sleep(0.02)
    if mounted_at(mountpoint):
        raise MountError(f"{mountpoint} is still mounted after {timeout:.0f} s")
    if daemon is None:
        return []
    while _daemon_of(mountpoint) == daemon:
        if time.monotonic() >= deadline:
            raise MountError(f"unmounted {mountpoint}, but its daemon (pid {daemon}) is still running "
                             f"after {timeout:.0f} s; see {default_log_file(mountpoint)}")
        time.sleep(0.02)
    return _take_report(mountpoint)


def refresh(mountpoint: str | os.PathLike[str]) -> int:
    """Make the daemon serving ``mountpoint`` read its store again; returns the daemon's pid."""
    pid = daemon_pid(mountpoint)
    os.kill(pid, signal.SIGHUP)
    return pid


def daemon_pid(mountpoint: str | os.PathLike[str]) -> int:
    """The pid of the ``wafs mount`` daemon serving ``mountpoint`` (from its pid file)."""
    mountpoint = os.path.abspath(mountpoint)
    if not (mounted_at(mountpoint) or "").startswith("fuse"):
        raise MountError(f"{mountpoint} is not a wafs mount")
    pid = _daemon_of(mountpoint)
    if pid is None:
        raise MountError(f"no live wafs daemon is known for {mountpoint} (was it mounted by 'wafs mount'?)")
    return pid


def _daemon_of(mountpoint: str) -> int | None:
    """The pid in ``mountpoint``'s pid file while that process lives (zombies included)."""
    try:
        pid = int(Path(_state_file(mountpoint, ".pid")).read_text())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def _write_report(mountpoint: str, left_undone: list[str]) -> None:
    """Leave what the daemon could not do at its unmount for :func:`unmount` to report."""
    if left_undone:
        path = Path(_state_file(mountpoint, ".undone"))
        path.with_suffix(".tmp").write_text("".join(f"{line}\n" for line in left_undone))
        path.with_suffix(".tmp").replace(path)


def _take_report(mountpoint: str) -> list[str]:
    path = Path(_state_file(mountpoint, ".undone"))
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    path.unlink(missing_ok=True)
    return text.splitlines()


@contextlib.contextmanager
def _pid_file(mountpoint: str) -> Iterator[None]:
    path = Path(_state_file(mountpoint, ".pid"))
    path.write_text(f"{os.getpid()}\n")
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            if path.read_text().strip() == str(os.getpid()):
                path.unlink()


def _state_file(mountpoint: str, suffix: str) -> str:
    directory = Path.home() / ".cache" / "wafs"
    directory.mkdir(parents=True, exist_ok=True)
    # One name per mountpoint, and no two alike (/x/y and /x_y used to share one).
    name = urllib.parse.quote(os.path.abspath(mountpoint), safe="")
    if len(name) > 200:
        name = hashlib.blake2b(name.encode(), digest_size=16).hexdigest()
    return str(directory / (name + suffix))


def default_log_file(mountpoint: str) -> str:
    """Where a background daemon writes its log: ``~/.cache/wafs/<mountpoint>.log``."""
    return _state_file(mountpoint, ".log")
