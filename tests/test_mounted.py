"""``wafs.mounted``: real FUSE mounts for a ``with`` block, served by a thread of this process.

Reads and writes go through real ``ls``, ``cat``, ``grep`` and shell redirections, and through
this process's own ``open()`` (served by the same process). Every test's mountpoint is
released afterwards whatever the API did (:func:`tests.mounting.release`), but the tests
check the API's own unmount first, on ``/proc/mounts``.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import wafs
from wafs import FileEngine, MemoryEngine
from wafs.mount import MountError

from .helpers import SESSION, cat, ls, unique
from .mounting import WAIT_SECONDS, environment, release, sh

CHAT = "chat/5491112345678@s.whatsapp.net"


@pytest.fixture
def mountpoint(tmp_path: Path) -> Iterator[Path]:
    """An empty directory to mount at; whatever is left mounted there is released after the test."""
    path = tmp_path / "mnt"
    path.mkdir()
    try:
        yield path
    finally:
        release(path)


def mounts_at(path: Path) -> list[str]:
    """The lines of ``/proc/mounts`` whose mountpoint is ``path``; fails the test if the file
    cannot be read or holds no mount at all (not even ``/``)."""
    lines = Path("/proc/mounts").read_text(encoding="utf-8").splitlines()
    assert any(line.split()[1] == "/" for line in lines), f"/proc/mounts lists no root mount: {lines!r}"
    return [line for line in lines if line.split()[1] == str(path)]


def assert_unmounted(path: Path) -> None:
    assert mounts_at(path) == [], f"{path} is still mounted"
    assert os.listdir(path) == [], "the mountpoint shows something: the mount is still there"


def close_cut_off(fd: int) -> None:
    """Close a descriptor of a mount that is gone: its FLUSH fails (ENOTCONN), and it is freed."""
    with pytest.raises(OSError) as raised:
        os.close(fd)
    assert raised.value.errno == errno.ENOTCONN
    with pytest.raises(OSError) as raised:
        os.fstat(fd)
    assert raised.value.errno == errno.EBADF


def session_engine() -> MemoryEngine:
    engine = MemoryEngine()
    engine.set_many(SESSION)
    return engine


def check_reads_and_writes(mnt: wafs.mount.Mount) -> None:
    """The session is readable by ls, cat, grep and open(); writes by a shell and by open() land."""
    assert ls(mnt.path) == ["chat", "session"]
    assert cat(mnt / CHAT / "messages") == SESSION[f"{CHAT}/messages"]
    assert sh(f"grep -rl hola {mnt}").stdout.split() == [f"{mnt}/{CHAT}/message/A1/raw"]
    assert (mnt / "session" / "creds").read_text() == SESSION["session/creds"]
    (mnt / "note").mkdir()
    sh(f"echo -n 'from a shell' > {mnt}/note/shell")
    with open(mnt / "note" / "python", "w") as file:
        file.write("from this process")
    assert mnt.engine.get("note/shell") == "from a shell"
    assert mnt.engine.get("note/python") == "from this process"
    assert cat(mnt / "note" / "python") == "from this process"


def test_an_engine_object_is_mounted_for_the_block(mountpoint: Path) -> None:
    engine = session_engine()
    with wafs.mounted(engine, mountpoint) as mnt:
        assert mnt.engine is engine and mnt.path == mountpoint and os.fspath(mnt) == str(mountpoint)
        assert [line.split()[2] for line in mounts_at(mountpoint)] == ["fuse.wafs"]
        check_reads_and_writes(mnt)
    assert_unmounted(mountpoint)
    assert engine.get("note/python") == "from this process"  # an engine passed in stays open


def test_a_file_engine_url_is_opened_and_closed_by_the_mount(mountpoint: Path, tmp_path: Path) -> None:
    store = FileEngine(tmp_path / "store")
    store.set_many(SESSION)
    with wafs.mounted(f"file://{tmp_path}/store", mountpoint) as mnt:
        assert isinstance(mnt.engine, FileEngine) and mnt.engine is not store
        check_reads_and_writes(mnt)
    assert_unmounted(mountpoint)
    assert store.get("note/shell") == "from a shell"


def test_a_redis_url(mountpoint: Path, redis_server) -> None:
    prefix = unique("wa:mounted")
    client = redis_server.engine(prefix=prefix)
    client.set_many(SESSION)
    with wafs.mounted(f"{redis_server.url}?prefix={prefix}", mountpoint) as mnt:
        assert type(mnt.engine).__name__ == "RedisEngine"
        check_reads_and_writes(mnt)
        sh(f"cp -a {mnt}/{CHAT} {mnt}/chat/copy")
    assert_unmounted(mountpoint)
    assert client.get("chat/copy/messages") == SESSION[f"{CHAT}/messages"]
    client.close()


def test_a_subprocess_reads_and_writes_while_this_process_does_too(mountpoint: Path) -> None:
    """Both served by this process's FUSE thread while this process's own IO waits on it."""
    engine = MemoryEngine()
    with wafs.mounted(engine, mountpoint) as mnt:
        (mnt / "n").mkdir()
        loop = f"for i in $(seq 50); do echo -n $i > {mnt}/n/$i; cat {mnt}/n/$i > /dev/null; done"
        writer = subprocess.Popen(["bash", "-c", loop], env=environment())
        for i in range(50):
            (mnt / "own").write_text(str(i))
            assert (mnt / "own").read_text() == str(i)
        assert writer.wait(timeout=60) == 0
        assert sorted(int(name) for name in os.listdir(mnt / "n")) == list(range(1, 51))
    assert engine.get("n/50") == "50" and engine.get("own") == "49"


def test_a_file_this_process_left_open_is_committed_at_the_end(mountpoint: Path) -> None:
    """Its write()s are stored as if closed then; a Python buffer not flushed is not; the file
    is cut off from then on (ENOTCONN)."""
    engine = MemoryEngine()
    with wafs.mounted(engine, mountpoint) as mnt:
        held = open(mnt / "held", "w")  # noqa: SIM115  (left open on purpose)
        held.write("written")
        held.flush()
        held.write(" but still in Python's buffer")
        appended = os.open(mnt / "log", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        os.write(appended, b"one line\n")
    assert_unmounted(mountpoint)
    assert engine.get("held") == "written"
    assert engine.get("log") == "one line\n"
    with pytest.raises(OSError) as raised:
        os.write(appended, b"too late\n")
    assert raised.value.errno == errno.ENOTCONN
    close_cut_off(appended)
    with pytest.raises(OSError) as raised:
        held.close()
    assert raised.value.errno == errno.ENOTCONN
    assert engine.get("log") == "one line\n"


WRITER = """
import sys
file = open(sys.argv[1], "w")
file.write("first half")
file.flush()
print("wrote", flush=True)
sys.stdin.readline()
try:
    file.write(", second half")
    file.close()
except OSError as exc:
    print(exc.errno, flush=True)
else:
    print("closed", flush=True)
"""


def test_a_command_still_writing_at_the_end_is_cut_off_with_what_it_wrote_stored(mountpoint: Path) -> None:
    engine = MemoryEngine()
    with wafs.mounted(engine, mountpoint) as mnt:
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(mnt / "half")], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        assert writer.stdout is not None and writer.stdin is not None
        assert writer.stdout.readline() == "wrote\n"
        started = time.monotonic()
    assert time.monotonic() - started < WAIT_SECONDS, "the unmount waited for the writer"
    assert_unmounted(mountpoint)
    assert engine.get("half") == "first half"
    output, _ = writer.communicate(input="go on\n", timeout=60)
    assert output == f"{errno.ENOTCONN}\n"
    assert engine.get("half") == "first half"


def test_an_exception_in_the_block_propagates_and_the_mount_goes(mountpoint: Path) -> None:
    engine = MemoryEngine()
    with pytest.raises(RuntimeError, match="the script failed"):
        with wafs.mounted(engine, mountpoint) as mnt:
            (mnt / "before").write_text("stored")
            raise RuntimeError("the script failed")
    assert_unmounted(mountpoint)
    assert engine.get("before") == "stored"


def test_a_write_the_unmount_cannot_commit_is_an_error(mountpoint: Path) -> None:
    engine = MemoryEngine()
    with pytest.raises(MountError, match="bad could not be written at the unmount") as raised:
        with wafs.mounted(engine, mountpoint) as mnt:
            held = os.open(mnt / "bad", os.O_WRONLY | os.O_CREAT)
            os.write(held, b"\xff not UTF-8")
    assert "unmounted" in str(raised.value)
    assert_unmounted(mountpoint)
    assert engine.get("bad") is None
    close_cut_off(held)


def test_a_failing_unmount_does_not_hide_the_exception_of_the_block(mountpoint: Path) -> None:
    engine = MemoryEngine()
    with pytest.raises(KeyError) as raised:
        with wafs.mounted(engine, mountpoint) as mnt:
            held = os.open(mnt / "bad", os.O_WRONLY | os.O_CREAT)
            os.write(held, b"\xff")
            raise KeyError("the script's own error")
    notes = getattr(raised.value, "__notes__", [])
    assert len(notes) == 1 and "bad could not be written at the unmount" in notes[0]
    assert_unmounted(mountpoint)
    close_cut_off(held)


def test_read_only_refuses_every_change_with_erofs(mountpoint: Path) -> None:
    engine = session_engine()
    with wafs.mounted(engine, mountpoint, read_only=True) as mnt:
        assert cat(mnt / CHAT / "messages") == SESSION[f"{CHAT}/messages"]
        for attempt in (lambda: (mnt / "new").write_text("x"),
                        lambda: open(mnt / "session" / "creds", "a").close(),
                        lambda: (mnt / "dir").mkdir(),
                        lambda: (mnt / "session" / "creds").unlink()):
            with pytest.raises(OSError) as raised:
                attempt()
            assert raised.value.errno == errno.EROFS
        refused = sh(f"echo x > {mnt}/new", check=False)
        assert refused.returncode != 0 and "Read-only file system" in refused.stderr
    assert_unmounted(mountpoint)
    assert engine.get_many(sorted(engine.iter_keys(""))) == SESSION


def test_options_are_mount_options_and_refresh_reads_the_store_again(mountpoint: Path) -> None:
    engine = session_engine()
    with wafs.mounted(engine, mountpoint, ttl=3600.0, umask=0o022) as mnt:
        assert (mnt / "session" / "creds").stat().st_mode & 0o777 == 0o644
        assert ls(mnt / "session") == ["creds"]
        engine.set("session/other", "set around the mount")
        assert ls(mnt / "session") == ["creds"]  # trusted for an hour
        mnt.refresh()
        assert ls(mnt / "session") == ["creds", "other"]
        assert cat(mnt / "session" / "other") == "set around the mount"
    with pytest.raises(TypeError):
        wafs.mounted(engine, mountpoint, no_such_option=1).__enter__()
    assert_unmounted(mountpoint)


def test_unmount_inside_the_block_ends_the_mount_there(mountpoint: Path) -> None:
    with wafs.mounted(MemoryEngine(), mountpoint) as mnt:
        mnt.unmount()
        assert_unmounted(mountpoint)
        with pytest.raises(MountError, match="not mounted"):
            mnt.refresh()
    assert_unmounted(mountpoint)


def test_a_mountpoint_in_use_or_not_empty_is_refused(mountpoint: Path) -> None:
    (mountpoint / "file").write_text("x")
    with pytest.raises(MountError, match="not empty"):
        wafs.mounted(MemoryEngine(), mountpoint).__enter__()
    (mountpoint / "file").unlink()
    with wafs.mounted(MemoryEngine(), mountpoint):
        with pytest.raises(MountError, match="already mounted"):
            wafs.mounted(MemoryEngine(), mountpoint).__enter__()
    assert_unmounted(mountpoint)


def test_a_store_that_is_down_fails_the_mount_with_its_reason(mountpoint: Path) -> None:
    from .servers import _free_port

    started = time.monotonic()
    with pytest.raises(MountError, match="could not mount .* at .*mnt: .*127.0.0.1"):
        with wafs.mounted(f"redis://127.0.0.1:{_free_port()}/0?timeout=1", mountpoint):
            pytest.fail("mounted a store that is down")
    assert time.monotonic() - started < WAIT_SECONDS
    assert_unmounted(mountpoint)


class SlowEngine(MemoryEngine):
    """A MemoryEngine whose first listing waits until ``go`` is set (a store slow to answer)."""

    def __init__(self) -> None:
        super().__init__()
        self.go = threading.Event()

    def iter_keys(self, prefix: str = "") -> Iterator[str]:
        self.go.wait(WAIT_SECONDS)
        return super().iter_keys(prefix)


def test_a_mount_that_does_not_answer_in_time_fails_and_never_appears(mountpoint: Path) -> None:
    engine = SlowEngine()
    started = time.monotonic()
    with pytest.raises(MountError, match="did not answer within 0.5 s"):
        with wafs.mounted(engine, mountpoint, timeout=0.5):
            pytest.fail("the block ran")
    assert time.monotonic() - started < 3.0
    engine.go.set()  # the store answers now: the mount, given up, must not come up
    deadline = time.monotonic() + WAIT_SECONDS
    while any(thread.name.startswith("wafs-mount:") for thread in threading.enumerate()):
        assert time.monotonic() < deadline, "the abandoned mount's thread is still running"
        time.sleep(0.02)
    assert_unmounted(mountpoint)


def test_import_wafs_does_not_load_libfuse_until_mounted_is_used() -> None:
    code = ("import sys, wafs\n"
            "assert 'wafs.mount.fuse' not in sys.modules\n"
            "from wafs import *\n"
            "assert 'wafs.mount.fuse' not in sys.modules\n"
            "assert wafs.mounted is wafs.mount.mounted\n"
            "assert 'wafs.mount.fuse' in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
