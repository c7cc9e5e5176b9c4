"""The mount while another client (the bot) writes the same keys, as on a local disk.

Each test runs on a Redis mount that follows keyspace notifications (long kernel timeouts,
exact invalidation) and on a FileEngine mount (no change feed: the TTL bounds what the
kernel keeps). The other client is a second engine on the same store. Real shells, real
``cat``, ``tail -f``, ``tar``, ``find``; several processes hold the same file.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pytest

from wafs import Engine, FileEngine
from wafs.engines.redis import RedisEngine

from .mounting import daemon_mounted, mounted, sh
from .servers import RedisServer

TTL = 0.5
#: How long a change by the other client may take to show: one event, or the TTL plus the
#: kernel's timeout (the same TTL) on a mount without a feed, and slack for a busy machine.
BOUND = 2 * TTL + 1.5
_prefixes = iter(range(1_000_000))


@dataclass
class Mount:
    path: Path
    engine: Engine  # the one the mount serves
    other: Engine  # another client of the same store: the bot

    def p(self, name: str) -> Path:
        return self.path / name


def _engines(kind: str, redis_server, tmp_path: Path) -> tuple[Engine, Engine]:
    if kind == "file":
        return FileEngine(tmp_path / "store"), FileEngine(tmp_path / "store")
    prefix = f"wa:conc{next(_prefixes)}:{os.getpid()}"
    query = urllib.parse.urlencode({"prefix": prefix, "notifications": "enable"})
    url = f"{redis_server.url}?{query}"
    return RedisEngine.from_url(url), RedisEngine.from_url(url)


def _mount(request: pytest.FixtureRequest, tmp_path: Path, read_only: bool) -> Iterator[Mount]:
    kind = request.param
    server = request.getfixturevalue("redis_server") if kind == "redis" else None
    engine, other = _engines(kind, server, tmp_path)
    try:
        with mounted(engine, tmp_path / "mnt", ttl=TTL, read_only=read_only) as path:
            yield Mount(path, engine, other)
    finally:
        other.close()
        engine.close()
        if server is not None:  # the server is shared: later tests expect notifications off
            admin = server.client()
            try:
                admin.config_set("notify-keyspace-events", "")
            finally:
                admin.close()


@pytest.fixture(params=["redis", "file"])
def mount(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Mount]:
    """A writable mount and the other client."""
    yield from _mount(request, tmp_path, read_only=False)


@pytest.fixture(params=["redis", "file"])
def ro_mount(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Mount]:
    """A ``--read-only`` mount and the other client."""
    yield from _mount(request, tmp_path, read_only=True)


@pytest.fixture(params=["redis"])
def feed_mount(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Mount]:
    """A writable Redis mount that follows the change feed, and the other client."""
    yield from _mount(request, tmp_path, read_only=False)


def eventually(what: str, check: Callable[[], bool], bound: float = BOUND) -> None:
    """Poll ``check`` until it holds; ENOENT counts as "not yet", any other error fails."""
    deadline = time.monotonic() + bound
    while not _holds(check):
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {bound:.1f} s")
        time.sleep(0.02)


def _holds(check: Callable[[], bool]) -> bool:
    try:
        return check()
    except FileNotFoundError:
        return False


def read(path: Path) -> bytes:
    with open(path, "rb") as file:
        return file.read()


# --- appends --------------------------------------------------------------------------------


def test_append_lands_at_the_end_of_what_the_bot_just_wrote(mount: Mount) -> None:
    mount.other.set("f", "a" * 100)
    eventually("the first value", lambda: read(mount.p("f")) == b"a" * 100)
    with open(mount.p("f"), "rb") as holder:  # another process holds it open, like tail -f
        holder.read(10)
        mount.other.set("f", "b" * 10)  # shorter than the size the kernel holds
        sh(f"echo line >> {mount.p('f')}")
    assert mount.other.get("f") == "b" * 10 + "line\n"
    mount.other.set("f", "c" * 300)  # longer
    sh(f"echo more >> {mount.p('f')}")
    assert mount.other.get("f") == "c" * 300 + "more\n"


def test_forty_concurrent_appends_keep_forty_lines(mount: Mount) -> None:
    mount.other.set("log", "first\n")
    eventually("the log", lambda: read(mount.p("log")) == b"first\n")
    sh(f"for i in $(seq 40); do echo \"line $i\" >> {mount.p('log')} & done; wait")
    value = mount.other.get("log")
    assert value is not None and "\0" not in value
    assert sorted(value.splitlines()) == sorted(["first"] + [f"line {i}" for i in range(1, 41)])
    assert read(mount.p("log")) == value.encode()


# --- one open, one value ----------------------------------------------------------------------


def _one_open_one_value(mount: Mount, old: bytes, new: bytes) -> None:
    mount.other.set("big", old.decode())
    eventually("the old value", lambda: read(mount.p("big")) == old)
    with open(mount.p("big"), "rb", buffering=0) as first:
        start = first.read(4096)
        mount.other.set("big", new.decode())
        seen: list[bytes] = []

        def second_reader_sees_new() -> bool:
            data = read(mount.p("big"))
            seen.append(data)
            return data == new

        eventually("the new value through a new open", second_reader_sees_new)
        assert all(data in (old, new) for data in seen), "an open returned bytes of two values"
        rest = first.read()
    assert start + rest == old, "the first open returned bytes of two values"
    assert os.stat(mount.p("big")).st_size == len(new)


@pytest.mark.parametrize("new_size", [1 << 20, 600 << 10, 3 << 20])
def test_an_open_reads_one_value_while_the_bot_rewrites_it(mount: Mount, new_size: int) -> None:
    _one_open_one_value(mount, b"a" * (1 << 20), b"b" * new_size)


@pytest.mark.parametrize("new_size", [1 << 20, 600 << 10])
def test_an_open_reads_one_value_on_a_read_only_mount(ro_mount: Mount, new_size: int) -> None:
    _one_open_one_value(ro_mount, b"a" * (1 << 20), b"b" * new_size)


def test_sixteen_mib_values_are_read_whole(ro_mount: Mount) -> None:
    _one_open_one_value(ro_mount, b"x" * (16 << 20), b"y" * (16 << 20))


# --- what stat, backups and followers see --------------------------------------------------------


def test_stat_and_backups_see_the_new_size_while_a_reader_holds_the_file(
    mount: Mount, tmp_path: Path
) -> None:
    mount.other.set("chat/index", "x" * 100)
    eventually("the value", lambda: read(mount.p("chat/index")) == b"x" * 100)
    with open(mount.p("chat/index"), "rb"):
        mount.other.set("chat/index", "y" * 300)
        eventually("the new size", lambda: os.stat(mount.p("chat/index")).st_size == 300)
        assert sh(f"stat -c %s {mount.p('chat/index')}").stdout.strip() == "300"
        assert sh(f"du -b {mount.p('chat/index')}").stdout.split()[0] == "300"
        backup = tmp_path / "backup"
        backup.mkdir()
        sh(f"tar -C {mount.path} -cf - chat | tar -C {backup} -xf -")
        assert read(backup / "chat/index") == b"y" * 300


def test_tail_f_follows_what_the_bot_appends(mount: Mount) -> None:
    mount.other.set("transcript", "one\n")
    eventually("the file", lambda: read(mount.p("transcript")) == b"one\n")
    tail = subprocess.Popen(["tail", "-f", "-s", "0.1", str(mount.p("transcript"))],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert tail.stdout is not None
        assert tail.stdout.readline() == "one\n"
        mount.other.set("transcript", "one\ntwo\n")
        lines: list[str] = []
        reader = _reader(tail.stdout, lines)
        eventually("the appended line in tail -f", lambda: "two\n" in lines)
        reader.join(0)
    finally:
        tail.kill()
        tail.wait(5)


def _reader(stream: IO[str], lines: list[str]) -> threading.Thread:
    """Collect the lines of ``stream`` in a thread (a blocking readline must not hang the test)."""
    thread = threading.Thread(target=lambda: lines.extend(iter(stream.readline, "")), daemon=True)
    thread.start()
    return thread


def test_find_newer_sees_what_the_bot_changed(mount: Mount, tmp_path: Path) -> None:
    mount.other.set("a", "1")
    mount.other.set("b", "1")
    eventually("both files", lambda: read(mount.p("a")) == b"1" and read(mount.p("b")) == b"1")
    time.sleep(0.05)
    reference = tmp_path / "reference"
    reference.write_text("")
    time.sleep(0.05)
    mount.other.set("a", "22")
    eventually("the change", lambda: read(mount.p("a")) == b"22")
    newer = sh(f"find {mount.path} -type f -newer {reference}").stdout.split()
    assert newer == [str(mount.p("a"))]


def _mapped(path: Path) -> str:
    """What another process reads through ``mmap`` (this one serves the mount: a page fault
    here would wait for the serving thread while holding the interpreter lock)."""
    program = (
        "import mmap, sys; f = open(sys.argv[1], 'rb'); "
        "print(mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)[:].decode())"
    )
    return subprocess.run([sys.executable, "-c", program, str(path)], capture_output=True, text=True,
                          check=True, timeout=30).stdout.rstrip("\n")


def test_mmap_reads_the_value(mount: Mount) -> None:
    mount.other.set("m", "mapped bytes")
    eventually("the value", lambda: read(mount.p("m")) == b"mapped bytes")
    assert _mapped(mount.p("m")) == "mapped bytes"


_MAPPED_READER = """
import mmap, sys
file = open(sys.argv[1], "rb")
mapped = mmap.mmap(file.fileno(), 0, prot=mmap.PROT_READ)
first = mapped[:4096]
print("mapped", flush=True)
sys.stdin.readline()
print(len(first + mapped[4096:]), (first + mapped[4096:]).count(b"x"), flush=True)
"""


def test_a_writer_opening_with_o_trunc_leaves_a_reader_its_whole_value(mount: Mount) -> None:
    """The kernel's size of the file stays the committed one while a writer truncates: a
    reader that maps it (and one that reads it) still gets every byte of what it opened."""
    value = "x" * (3 * 4096)
    mount.other.set("f", value)
    eventually("the value", lambda: read(mount.p("f")) == value.encode())
    pipe = subprocess.PIPE
    reader = subprocess.Popen([sys.executable, "-c", _MAPPED_READER, str(mount.p("f"))],
                              stdin=pipe, stdout=pipe, stderr=pipe, text=True)
    assert reader.stdin is not None and reader.stdout is not None
    try:
        assert reader.stdout.readline() == "mapped\n"
        with open(mount.p("f"), "rb") as plain_reader:
            writer = os.open(mount.p("f"), os.O_WRONLY | os.O_TRUNC)
            try:
                reader.stdin.write("go on\n")
                reader.stdin.flush()
                assert reader.stdout.readline().split() == [str(len(value))] * 2
                assert plain_reader.read() == value.encode()
                assert os.stat(mount.p("f")).st_size == len(value)  # nothing committed yet
            finally:
                os.close(writer)
    finally:
        reader.kill()
        reader.wait(10)
    eventually("the truncation in the store", lambda: mount.other.get("f") == "")


def test_mmap_on_a_read_only_mount(ro_mount: Mount) -> None:
    ro_mount.other.set("m", "mapped bytes")
    eventually("the value", lambda: read(ro_mount.p("m")) == b"mapped bytes")
    assert _mapped(ro_mount.p("m")) == "mapped bytes"


# --- pending writes ------------------------------------------------------------------------------


_WRITER = """
import sys
path = sys.argv[1]
with open(path, "wb", buffering=0) as out:
    for line in sys.stdin:
        out.write(bytes.fromhex(line.strip()))
        print("written", flush=True)
"""


def test_readers_never_see_pending_or_refused_bytes(mount: Mount) -> None:
    mount.other.set("f", "committed")
    eventually("the value", lambda: read(mount.p("f")) == b"committed")
    writer = subprocess.Popen([sys.executable, "-c", _WRITER, str(mount.p("f"))], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert writer.stdin is not None and writer.stdout is not None
    try:
        for chunk in (b"pending", b"\xff\xfe"):  # the second one is not UTF-8: refused at close
            writer.stdin.write(chunk.hex() + "\n")
            writer.stdin.flush()
            assert writer.stdout.readline() == "written\n"
            assert read(mount.p("f")) == b"committed"
            assert sh(f"cat {mount.p('f')}").stdout == "committed"
        writer.stdin.close()
        assert writer.wait(30) != 0
        assert "Invalid or incomplete multibyte" in (writer.stderr.read() if writer.stderr else "")
    finally:
        writer.kill()
        writer.wait(10)
    assert read(mount.p("f")) == b"committed"
    assert mount.other.get("f") == "committed"


def test_the_bot_never_sees_an_empty_value_while_a_shell_rewrites_or_creates_a_file(mount: Mount) -> None:
    """``printf x > f`` opens with ``O_TRUNC`` and closes a descriptor before it writes: the
    store gets the new value in one ``set``, never the empty value in between."""
    mount.other.set("creds", "v0")
    eventually("the value", lambda: read(mount.p("creds")) == b"v0")
    seen: set[str | None] = set()
    done = threading.Event()

    def bot() -> None:
        while not done.is_set():
            seen.add(mount.other.get("creds"))
            seen.add(mount.other.get("new") or "not there")

    reader = threading.Thread(target=bot)
    reader.start()
    try:
        sh(f"cd {mount.path} && for i in $(seq 1 200); do printf %s v$((i % 2)) > creds; "
           f"printf %s v2 > new; rm new; done")
    finally:
        done.set()
        reader.join()
    assert seen == {"v0", "v1", "v2", "not there"}


def test_truncating_to_empty_is_read_back_at_once(mount: Mount) -> None:
    """An open that only truncates is committed at its last close: the next command sees it."""
    for number in range(50):
        mount.p("f").write_text(f"value {number}")
        assert sh(f": > {mount.p('f')}; cat {mount.p('f')}").stdout == ""
        assert mount.other.get("f") == ""


def test_a_file_its_creator_holds_open_is_an_empty_file_to_others(mount: Mount) -> None:
    """Created and not written yet: other processes see an empty file, the store nothing yet."""
    holder = os.open(mount.p("new"), os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        result = sh(f"cd {mount.path} && cat new && stat -c %s new && ls")
        assert result.stdout.split() == ["0", "new"]
        assert mount.other.get("new") is None
    finally:
        os.close(holder)
    eventually("the empty value in the store", lambda: mount.other.get("new") == "")


def test_a_late_read_of_the_change_feed_never_hides_what_the_mount_just_wrote(feed_mount: Mount) -> None:
    """The feed's thread reads a key after an event; the mount rewrites the key meanwhile:
    that older read must not replace what the mount wrote (the feed's thread is held inside
    its reads here, so the window stays open)."""
    mount = feed_mount
    served_get = mount.engine.get
    reads = [(threading.Event(), threading.Event()) for _ in range(2)]  # (reading, let it go on)

    def get(key: str) -> str | None:
        value = served_get(key)
        if threading.current_thread().name == "wafs-redis-watch" and key == "f" and reads:
            reading, go_on = reads[0] if not reads[0][0].is_set() else reads[1]
            reading.set()
            go_on.wait(BOUND)
        return value

    (first, release_first), (second, release_second) = reads
    mount.engine.get = get  # type: ignore[method-assign]
    try:
        mount.p("f").write_text("v1")
        assert first.wait(BOUND), "the feed never read the key"
        sh(f"printf v2 > {mount.p('f')}")
        release_first.set()  # the read of v1 is recorded (or dropped); the one after v2's event waits
        assert second.wait(BOUND), "the feed never read the key again"
        assert sh(f"cat {mount.p('f')}").stdout == "v2"
    finally:
        release_first.set()
        release_second.set()
        mount.engine.get = served_get  # type: ignore[method-assign]


def test_a_file_removed_while_written_does_not_come_back(mount: Mount) -> None:
    mount.other.set("f", "old")
    eventually("the value", lambda: read(mount.p("f")) == b"old")
    with open(mount.p("f"), "w") as writer:
        writer.write("new data")
        writer.flush()
        os.unlink(mount.p("f"))
        writer.write(" and more")
    with pytest.raises(FileNotFoundError):
        os.stat(mount.p("f"))
    assert mount.other.get("f") is None
    assert "f" not in os.listdir(mount.path)


def test_a_file_renamed_while_written_keeps_all_its_data(mount: Mount) -> None:
    mount.other.set("f", "old")
    eventually("the value", lambda: read(mount.p("f")) == b"old")
    with open(mount.p("f"), "w") as writer:
        writer.write("part one, ")
        writer.flush()
        os.rename(mount.p("f"), mount.p("g"))
        writer.write("part two")
    assert mount.other.get("g") == "part one, part two"
    assert mount.other.get("f") is None
    with pytest.raises(FileNotFoundError):
        os.stat(mount.p("f"))
    assert read(mount.p("g")) == b"part one, part two"


# --- exclusive creation and renames ----------------------------------------------------------------


def test_o_excl_fails_on_a_key_another_client_just_created(mount: Mount) -> None:
    with pytest.raises(FileNotFoundError):
        os.stat(mount.p("x"))  # the kernel now holds a negative entry for x
    mount.other.set("x", "theirs")
    with pytest.raises(FileExistsError):
        os.open(mount.p("x"), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    result = sh(f"set -C; echo mine > {mount.p('x')}", check=False)
    assert result.returncode != 0
    assert mount.other.get("x") == "theirs"


_RENAME_NOREPLACE, _RENAME_EXCHANGE = 1, 2
_AT_FDCWD = -100


def _renameat2(old: Path, new: Path, flags: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.renameat2(_AT_FDCWD, os.fsencode(old), _AT_FDCWD, os.fsencode(new), flags) != 0:
        number = ctypes.get_errno()
        raise OSError(number, os.strerror(number))


def test_rename_exchange_is_refused_and_keeps_both_values(mount: Mount) -> None:
    (mount.p("a")).write_text("A")
    (mount.p("b")).write_text("B")
    with pytest.raises(OSError) as refused:
        _renameat2(mount.p("a"), mount.p("b"), _RENAME_EXCHANGE)
    assert refused.value.errno == errno.EINVAL
    assert (mount.other.get("a"), mount.other.get("b")) == ("A", "B")


def test_rename_noreplace_keeps_the_target(mount: Mount) -> None:
    (mount.p("a")).write_text("A")
    mount.other.set("b", "B")  # the kernel may not know b yet: the store decides
    with pytest.raises(FileExistsError):
        _renameat2(mount.p("a"), mount.p("b"), _RENAME_NOREPLACE)
    assert (mount.other.get("a"), mount.other.get("b")) == ("A", "B")
    _renameat2(mount.p("a"), mount.p("c"), _RENAME_NOREPLACE)
    assert (mount.other.get("a"), mount.other.get("c")) == (None, "A")


def test_a_value_that_is_not_utf8_fails_only_its_own_file(redis_server, tmp_path: Path) -> None:
    prefix = f"wa:bad{next(_prefixes)}:{os.getpid()}"
    engine = RedisEngine.from_url(f"{redis_server.url}?prefix={prefix}")
    raw = redis_server.client()
    try:
        for number in range(30):
            raw.set(f"{prefix}:chat/c/message/M{number:02d}/raw".encode(), f"text {number}".encode())
        raw.set(f"{prefix}:chat/c/message/M15/raw".encode(), b"\xff\xfe not text")
        with mounted(engine, tmp_path / "mnt") as mnt:
            found = sh(f"grep -rl text {mnt}/chat", check=False)
            assert found.returncode == 2  # grep read every file, and one of them failed
            assert sorted(Path(line).parent.name for line in found.stdout.split()) == [
                f"M{number:02d}" for number in range(30) if number != 15]
            with pytest.raises(OSError):
                read(mnt / "chat/c/message/M15/raw")
            assert read(mnt / "chat/c/message/M16/raw") == b"text 16"
    finally:
        raw.close()
        engine.close()


def test_a_name_the_file_engine_cannot_store_fails_at_open(tmp_path: Path) -> None:
    engine = FileEngine(tmp_path / "store")
    engine.set("d/k", "v")
    try:
        with mounted(engine, tmp_path / "mnt") as mnt:
            reserved = sh(f"echo data > {mnt}/x_at_y", check=False)  # _at_ is the layout's '@'
            assert reserved.returncode != 0 and "Invalid argument" in reserved.stderr
            collision = sh(f"echo data > {mnt}/d/__value__", check=False)  # key d, a directory on disk
            assert collision.returncode != 0 and "File exists" in collision.stderr
            with pytest.raises(FileNotFoundError):
                os.stat(mnt / "x_at_y")
        assert sorted(engine.iter_keys("")) == ["d/k"]
    finally:
        engine.close()


# --- pages the kernel is given ahead of its reads -------------------------------------------


_libc = ctypes.CDLL(None, use_errno=True)


def in_page_cache(path: Path) -> bool:
    """Whether the kernel holds the first page of ``path`` (``mincore``: no request is sent)."""
    with open(path, "rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_COPY) as mapped:
        start = ctypes.c_char.from_buffer(mapped)
        vector = ctypes.c_ubyte()
        address = ctypes.c_void_p(ctypes.addressof(start))
        result = _libc.mincore(address, ctypes.c_size_t(1), ctypes.byref(vector))
        del start
        assert result == 0, os.strerror(ctypes.get_errno())
        return bool(vector.value & 1)


SIBLINGS = {"m/1/index": "i" * 10, "m/1/raw": "r" * 5000, "m/1/content": "c" * 7}


def test_a_read_gives_the_kernel_the_files_next_to_it(redis_server: RedisServer, tmp_path: Path) -> None:
    """After one file of a directory was read, ``grep -r``'s next ones are in the kernel's pages
    (read-only mount, change feed): they read back while the daemon is stopped.

    The daemon runs in a process of its own: a page fault in the process serving the mount
    would wait for itself."""
    prefix = f"wa:fill{next(_prefixes)}:{os.getpid()}"
    query = urllib.parse.urlencode({"prefix": prefix, "notifications": "enable"})
    url = f"{redis_server.url}?{query}"
    other = RedisEngine.from_url(url)
    try:
        other.set_many(SIBLINGS)
        mnt = tmp_path / "mnt"
        with daemon_mounted(mnt, url, "--read-only") as pid:
            first, *rest = os.listdir(mnt / "m" / "1")  # a tree walk's order
            assert sorted([first, *rest]) == ["content", "index", "raw"]
            assert read(mnt / "m" / "1" / first) == SIBLINGS[f"m/1/{first}"].encode()
            others = [mnt / "m" / "1" / name for name in rest]
            eventually("the siblings in the kernel's pages", lambda: all(map(in_page_cache, others)))
            os.kill(pid, signal.SIGSTOP)
            try:
                done = subprocess.run(["cat", *map(str, others)], capture_output=True, timeout=5, check=False)
            finally:
                os.kill(pid, signal.SIGCONT)
            assert done.returncode == 0, done.stderr
            assert done.stdout == "".join(SIBLINGS[f"m/1/{name}"] for name in rest).encode()
    finally:
        other.close()


NEXT_DIRECTORY = {"m/2/index": "j" * 12, "m/2/raw": "s" * 3000, "m/2/content": "d" * 9}


@pytest.mark.parametrize("options", [("--read-only",), ()], ids=["read-only", "writable"])
def test_a_listing_gives_the_kernel_the_files_read_ahead(
        redis_server: RedisServer, tmp_path: Path, options: tuple[str, ...]) -> None:
    """Files whose values came with an earlier read (the read-ahead crosses directories) are in
    the kernel's pages once their directory is listed, before anything reads them."""
    prefix = f"wa:list{next(_prefixes)}:{os.getpid()}"
    query = urllib.parse.urlencode({"prefix": prefix, "notifications": "enable"})
    url = f"{redis_server.url}?{query}"
    other = RedisEngine.from_url(url)
    try:
        values = {**SIBLINGS, **NEXT_DIRECTORY}
        other.set_many(values)
        mnt = tmp_path / "mnt"
        with daemon_mounted(mnt, url, *options):
            read_first, listed_next = os.listdir(mnt / "m")  # a tree walk's order
            first = os.listdir(mnt / "m" / read_first)[0]
            assert read(mnt / "m" / read_first / first) == values[f"m/{read_first}/{first}"].encode()
            names = os.listdir(mnt / "m" / listed_next)
            assert sorted(names) == ["content", "index", "raw"]
            files = [mnt / "m" / listed_next / name for name in names]
            eventually("the listed files in the kernel's pages", lambda: all(map(in_page_cache, files)))
            for name in names:
                assert read(mnt / "m" / listed_next / name) == values[f"m/{listed_next}/{name}"].encode()
    finally:
        other.close()


def test_a_read_on_a_writable_mount_gives_the_kernel_the_files_next_to_it(feed_mount: Mount) -> None:
    """The same on a writable mount: the siblings' pages are there before they are opened
    (and their opens keep them), and read back whole. (Redis: a FileEngine reads no
    neighbours ahead.)"""
    feed_mount.other.set_many(SIBLINGS)
    directory = feed_mount.p("m/1")
    eventually("the listing", lambda: sorted(os.listdir(directory)) == ["content", "index", "raw"])
    first, *rest = os.listdir(directory)
    assert read(directory / first) == SIBLINGS[f"m/1/{first}"].encode()
    others = [directory / name for name in rest]
    eventually("the siblings in the kernel's pages", lambda: all(map(in_page_cache, others)))
    for name in rest:
        assert read(directory / name) == SIBLINGS[f"m/1/{name}"].encode()


def test_a_file_being_written_is_given_to_the_kernel_as_committed(feed_mount: Mount) -> None:
    """A sibling that a writer holds open reads, from the kernel's pages, what was committed
    (never the writer's bytes), and after its close what the writer wrote (Redis)."""
    feed_mount.other.set_many(SIBLINGS)
    directory = feed_mount.p("m/1")
    eventually("the listing", lambda: sorted(os.listdir(directory)) == ["content", "index", "raw"])
    first, *rest = os.listdir(directory)
    written = directory / rest[0]
    with open(written, "r+b") as writer:
        writer.write(b"W")
        writer.flush()
        assert read(directory / first) == SIBLINGS[f"m/1/{first}"].encode()
        others = [directory / name for name in rest]
        eventually("the siblings in the kernel's pages", lambda: all(map(in_page_cache, others)))
        assert read(written) == SIBLINGS[f"m/1/{rest[0]}"].encode()
    expected = ("W" + SIBLINGS[f"m/1/{rest[0]}"][1:]).encode()
    assert feed_mount.other.get(f"m/1/{rest[0]}") == expected.decode()
    assert read(written) == expected


def test_pages_a_writer_s_open_dropped_are_given_to_the_kernel_again(feed_mount: Mount) -> None:
    """A file's pages given ahead (with a sibling's read) are dropped when a writer opens it;
    the next read next to it gives them again, as committed (Redis)."""
    feed_mount.other.set_many(SIBLINGS)
    directory = feed_mount.p("m/1")
    eventually("the listing", lambda: sorted(os.listdir(directory)) == ["content", "index", "raw"])
    first, *rest = os.listdir(directory)
    assert read(directory / first) == SIBLINGS[f"m/1/{first}"].encode()
    written = directory / rest[0]
    eventually("the siblings in the kernel's pages", lambda: in_page_cache(written))
    with open(written, "r+b") as writer:
        writer.write(b"W")
        writer.flush()
        assert not in_page_cache(written), "the writer's open kept the pages: the test tests nothing"
        with open(directory / first, "rb") as reread:  # its pages go: the next read is a READ
            os.posix_fadvise(reread.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        assert read(directory / first) == SIBLINGS[f"m/1/{first}"].encode()
        eventually("the written file's pages again", lambda: in_page_cache(written))
        assert read(written) == SIBLINGS[f"m/1/{rest[0]}"].encode()
    assert read(written) == ("W" + SIBLINGS[f"m/1/{rest[0]}"][1:]).encode()


def _shows_the_bots_change(mount: Mount) -> None:
    mount.other.set_many(SIBLINGS)
    directory = mount.p("m/1")
    eventually("the listing", lambda: sorted(os.listdir(directory)) == ["content", "index", "raw"])
    first = os.listdir(directory)[0]
    assert read(directory / first) == SIBLINGS[f"m/1/{first}"].encode()
    mount.other.set("m/1/raw", "R" * 5000)  # same size
    eventually("the new value", lambda: read(directory / "raw") == b"R" * 5000)
    mount.other.set("m/1/content", "c" * 7 + "+")  # grown
    eventually("the grown value", lambda: read(directory / "content") == b"c" * 7 + b"+")


def test_a_file_given_to_the_kernel_ahead_shows_the_bots_change(ro_mount: Mount) -> None:
    """A sibling's pages given with its first version are dropped when the bot rewrites it."""
    _shows_the_bots_change(ro_mount)


def test_a_file_given_to_the_kernel_ahead_shows_the_bots_change_on_a_writable_mount(mount: Mount) -> None:
    """The same on a writable mount, where the next open decides whether the pages are kept."""
    _shows_the_bots_change(mount)
