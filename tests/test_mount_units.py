"""The mount's bookkeeping without a mount: the inode table, the value cache, open handles."""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator

import pytest

from wafs import Engine, MemoryEngine
from wafs.mount.fuse import ROOT_INO
from wafs.mount.handles import Handle
from wafs.mount.inodes import LISTED_CHILDREN, InodeTable
from wafs.mount.kernel import KernelCache
from wafs.mount.operations import Operations
from wafs.mount.options import MountOptions
from wafs.mount.tree import Tree
from wafs.mount.values import Value, ValueCache, digest


def _value(data: bytes) -> Value:
    return Value(data, digest(data), time.monotonic())


def test_a_name_keeps_its_inode_and_its_number() -> None:
    table = InodeTable(0)
    chat = table.child(table.root, "chat", is_dir=True)
    index = table.child(chat, "index", is_dir=False)
    assert table.child(chat, "index", is_dir=False) is index
    assert table.find(chat, "index", is_dir=False) is index and index.key == "chat/index"
    number = index.ino
    index.lookups = 1
    table.forget(number, 1)
    assert table.get(number) is None and table.find(chat, "index", is_dir=False) is None
    assert table.child(chat, "index", is_dir=False).ino == number  # st_ino survives a forget


def test_a_superseded_inode_serves_its_bytes_and_the_name_gets_another_number() -> None:
    table = InodeTable(0)
    old = table.child(table.root, "f", is_dir=False)
    old.lookups = 1
    table.supersede(old, b"old bytes")
    new = table.child(table.root, "f", is_dir=False)
    assert new is not old and new.ino != old.ino
    assert not old.current and old.data == b"old bytes" and table.get(old.ino) is old
    table.forget(old.ino, 1)
    assert table.get(old.ino) is None and table.get(new.ino) is new


def test_a_name_that_becomes_a_directory_gets_a_new_inode() -> None:
    table = InodeTable(0)
    file = table.child(table.root, "a", is_dir=False)
    directory = table.child(table.root, "a", is_dir=True)
    assert directory is not file and directory.is_dir and not file.current
    assert table.find(table.root, "a", is_dir=False) is None


def test_a_renamed_inode_keeps_its_number_under_its_new_name() -> None:
    table = InodeTable(0)
    d = table.child(table.root, "d", is_dir=True)
    f = table.child(table.root, "f", is_dir=False)
    table.move(f, d, "g")
    assert table.find(d, "g", is_dir=False) is f and f.key == "d/g"
    assert table.find(table.root, "f", is_dir=False) is None


def test_a_listing_counts_one_lookup_per_entry_and_leaves_another_size_to_the_caller() -> None:
    table = InodeTable(0)
    d = table.child(table.root, "d", is_dir=True)
    told = table.listed(d, "f", False, "d/f", 5, 123)
    assert told is not None
    number, size, mtime = told
    f = table.get(number)
    assert f is not None and (f.key, f.lookups, f.size, f.mtime_ns) == ("d/f", 1, 5, 123)
    assert table.listed(d, "f", False, "d/f", 5, 456) == (number, 5, 123)  # same inode, its mtime
    f.digest = digest(b"12345")  # read: the inode stands for that version now
    assert table.listed(d, "f", False, "d/f", 9, 0) is None, "the store has another size: not told"
    assert (f.lookups, f.size) == (2, 5)
    assert table.listed(d, "f", False, "d/f", -1, 0) == (number, 5, 123)  # size not known: as told
    sub = table.listed(d, "f", True, "d/f", 0, 0)  # the name is a directory now
    assert sub is not None and sub[0] != number and not f.current
    directory = table.get(sub[0])
    assert directory is not None and directory.is_dir and directory.lookups == 1


def test_a_listed_number_that_stands_for_another_path_since_is_not_given_its_pages(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(InodeTable, "_number", staticmethod(lambda path, is_dir: 100))  # all collide
    engine = MemoryEngine()
    engine.set_many({"d/a": "the value of a", "d/b": "b"})
    with _read_only_operations(engine) as (operations, kernel):
        folder = operations.lookup(ROOT_INO, b"d").attributes
        assert folder is not None
        assert operations.readdirplus(folder.ino, 4096, 0)
        listed = dict(operations._listed[folder.ino])
        first = next(number for number, key in listed.items() if key == "d/a")
        operations.forget(list((number, 1) for number in listed))
        assert operations.inodes.get(first) is None
        b = operations.lookup(folder.ino, b"b").attributes  # the first free number now
        assert b is not None and b.ino == first
        operations._read(["d/a", "d/b"], "d/a")
        with operations.lock:
            assert operations._fill_listed(listed.items()) == 0
        assert operations.kernel.wait_sent(5) and kernel.stored == []


@pytest.mark.parametrize("names", [4, LISTED_CHILDREN, LISTED_CHILDREN + 1, 50])
def test_a_directory_holds_each_name_once_however_many_it_holds(names: int) -> None:
    table = InodeTable(0)
    d = table.child(table.root, "d", is_dir=True)
    files = [table.child(d, f"f{n}", is_dir=False) for n in range(names)]
    for inode in files:
        inode.lookups = 1
    assert [table.find(d, f"f{n}", is_dir=False) for n in range(names)] == files
    table.forget(files[0].ino, 1)  # forgotten, superseded, renamed away and over: each name once
    table.supersede(files[1], None)
    newer = table.child(d, "f1", is_dir=False)
    table.move(files[2], table.root, "moved")
    table.supersede(newer, None)  # renamed over: the caller supersedes the target first
    table.move(files[-1], d, "f1")
    kept = {inode.name: inode for inode in d.held_children()}
    assert len(kept) == len(d.held_children()), "a name held twice"
    assert "f0" not in kept and "f2" not in kept and kept["f1"] is files[-1] and not newer.current
    assert table.find(table.root, "moved", is_dir=False) is files[2]
    assert [inode.name for inode in d.first_held(2)] == [inode.name for inode in d.held_children()[:2]]


def test_the_table_finds_every_inode_it_holds_through_many_forgets_and_reused_rows() -> None:
    rng = random.Random(7)
    table = InodeTable(0)
    directories = [table.child(table.root, f"d{n}", is_dir=True) for n in range(3)]
    held: dict[int, str] = {}  # number -> path of every file inode the kernel holds
    current: dict[tuple[int, str], int] = {}  # (directory, name) -> number of the current inode
    for _ in range(5000):
        directory, name, action = rng.randrange(3), f"f{rng.randrange(40)}", rng.random()
        if action < 0.5 or not held:
            inode = table.child(directories[directory], name, is_dir=False)
            inode.lookups += 1
            held[inode.ino] = inode.path
            current[directory, name] = inode.ino
            continue
        number = rng.choice(sorted(held))
        inode = table.get(number)
        assert inode is not None and inode.path == held[number]
        place = (int(inode.path[1]), inode.name)
        if action < 0.8:
            table.forget(number, inode.lookups)
            del held[number]
        else:
            table.supersede(inode, None)
        if current.get(place) == number:
            del current[place]
    assert len(table) == 1 + len(directories) + len(held)
    for number, path in held.items():
        found = table.get(number)
        assert found is not None and found.path == path
    for directory, d in enumerate(directories):
        names = sorted(name for (where, name) in current if where == directory)
        assert sorted(inode.name for inode in d.held_children()) == names
        for name in names:
            found = table.find(d, name, is_dir=False)
            assert found is not None and found.ino == current[directory, name]


def test_an_inode_kept_past_its_directory_and_its_number_keeps_its_path() -> None:
    table = InodeTable(0)
    directory = table.child(table.root, "d", is_dir=True)
    file = table.child(directory, "f", is_dir=False)
    directory.lookups = file.lookups = 1
    table.supersede(file, b"old bytes")  # renamed over while a process holds it open
    forgotten = table.child(table.root, "g", is_dir=False)
    forgotten.lookups = 1
    table.forget(directory.ino, 1)
    table.forget(forgotten.ino, 1)
    del directory
    made = [table.child(table.root, f"x{n}", is_dir=False) for n in range(100)]  # rows freed are reused
    assert file.path == "d/f" and file.data == b"old bytes"
    assert forgotten.key == "g" and table.get(forgotten.ino) is None
    assert len({inode.ino for inode in made}) == 100


def test_rows_forgotten_while_viewed_are_reused_once_their_views_are_gone() -> None:
    table = InodeTable(0)
    rows = []
    held = None
    for number in range(2000):
        inode = table.child(table.root, f"f{number}", is_dir=False)
        inode.lookups = 1
        table.forget(inode.ino, 1)  # forgotten while this loop still holds a view of it
        rows.append(inode.row)
        held = inode
    assert held is not None and held.name == "f1999"
    assert len(table) == 1 and max(rows) < 200, "the rows of forgotten inodes were never reused"


def test_the_value_cache_stays_within_its_bound() -> None:
    cache = ValueCache(max_bytes=100, ttl=60.0)
    for number in range(10):
        cache.put(f"k{number}", bytes(30))
    held = [key for key in (f"k{n}" for n in range(10)) if cache.get(key) is not None]
    assert held == ["k7", "k8", "k9"]  # the least recently used went first
    cache.put("big", bytes(60))  # more than half the bound: not kept
    assert cache.get("big") is None
    assert cache.fresh("k9") is not None


def test_cached_values_go_stale_but_keep_naming_their_version() -> None:
    cache = ValueCache(max_bytes=1000, ttl=0.05)
    stored = cache.put("k", b"v1")
    time.sleep(0.06)
    assert cache.fresh("k") is None
    assert cache.get("k") == stored and stored.digest == digest(b"v1")


def test_an_append_handle_writes_at_the_end_whatever_the_offset() -> None:
    table = InodeTable(0)
    handle = Handle(table.child(table.root, "log", is_dir=False), _value(b"abc"), writable=True, append=True,
                    pending=bytearray())
    handle.write(b"X", 0)  # the kernel's offset from a stale size
    handle.write(b"Y", 1)
    assert handle.pending == b"XY" and handle.content() == b"abcXY"
    handle.truncate(4)
    assert not handle.append and handle.content() == b"abcX"


def test_a_reader_follows_a_value_that_only_grew() -> None:
    table = InodeTable(0)
    reader = Handle(table.child(table.root, "t", is_dir=False), _value(b"one\n"), writable=False)
    reader.follow(_value(b"two\n"))  # not a continuation: the reader keeps its value
    assert reader.content() == b"one\n"
    reader.follow(_value(b"one\ntwo\n"))
    assert reader.content() == b"one\ntwo\n"


class _CountingSizes(MemoryEngine):
    def __init__(self) -> None:
        super().__init__()
        self.size_calls = 0

    def sizes(self, keys: Iterable[str]) -> dict[str, int | None]:
        self.size_calls += 1
        return super().sizes(keys)


@pytest.mark.parametrize("order", ["listing", "reversed"])
def test_a_walk_in_either_order_reads_its_sizes_in_batches(order: str) -> None:
    engine = _CountingSizes()
    engine.set_many({f"chat/m{i:03}/raw": "x" * i for i in range(300)})
    tree = Tree(engine, ttl=60.0)
    listed = tree.listing("chat")
    assert listed is not None and len(listed) == 300
    names = list(listed)
    for name in names if order == "listing" else reversed(names):
        assert tree.file_size(f"chat/{name}/raw") == int(name[1:])
    assert engine.size_calls == 1, "300 directories of one file each: one batch"


class _ComingBack(MemoryEngine):
    """A store restarting: the next listing waits ``wait`` seconds for its first answer."""

    wait = 0.0

    def iter_keys(self, prefix: str = "") -> Iterator[str]:
        time.sleep(self.wait)
        self.wait = 0.0
        yield from super().iter_keys(prefix)


def test_a_rebuild_that_waited_for_the_store_shows_later_writes_within_the_ttl() -> None:
    engine = _ComingBack()
    engine.set("chat/A/index", "a")
    tree = Tree(engine, ttl=0.1)
    assert tree.lookup("chat/A/index") is not None
    engine.wait = 1.0
    tree.refresh()  # the wait is not the rebuild's cost: the tree is trusted for the ttl only
    engine.set("chat/B/index", "another client's")
    time.sleep(0.3)
    assert tree.lookup("chat/B/index") is not None


class _Repeating(MemoryEngine):
    """A store whose scan repeats keys, as a Redis SCAN does while the server resizes its tables."""

    def scan_keys(self, prefix: str = "") -> Iterator[str]:
        keys = list(self.iter_keys(prefix))
        yield from keys
        yield from reversed(keys)


def test_a_tree_read_from_a_scan_that_repeats_keys_holds_each_once() -> None:
    engine = _Repeating()
    engine.set_many({"chat/A/index": "a", "chat/A/message/M/raw": "r", "chat/A": "own value",
                     "x/__value__": "x"})
    hidden: list[str] = []
    tree = Tree(engine, ttl=60.0)
    tree.on_hidden = hidden.append
    tree.refresh()
    listing = tree.listing("chat/A")
    assert listing is not None
    assert sorted(listing) == ["index", "message"]
    assert listing.value is not None  # the key "chat/A" itself, shown as chat/A/__value__
    assert hidden == ["x/__value__"]  # a reserved name: hidden, and noted once


class _Kernel:
    def __init__(self) -> None:
        self.stored: list[int] = []

    def invalidate_inode(self, ino: int, offset: int = 0, length: int = 0) -> bool:
        return True

    def invalidate_entry(self, parent: int, name: bytes) -> bool:
        return True

    def store(self, ino: int, data: bytes) -> bool:
        self.stored.append(ino)
        return True


@contextlib.contextmanager
def _read_only_operations(engine: Engine) -> Iterator[tuple[Operations, _Kernel]]:
    """A read-only mount's operations over ``engine``, telling a stub kernel, until the end."""
    operations = Operations(engine, MountOptions(read_only=True))
    operations.load()
    kernel = _Kernel()
    operations.kernel.attach(kernel)
    try:
        yield operations, kernel
    finally:
        operations.kernel.detach()


def test_a_read_gives_the_kernel_the_pages_of_the_files_read_with_it() -> None:
    engine = MemoryEngine()
    engine.set_many({f"wide/k{i:03}": f"value {i}" for i in range(200)})
    with _read_only_operations(engine) as (operations, kernel):
        folder = operations.lookup(ROOT_INO, b"wide").attributes
        assert folder is not None
        numbers = {}
        for i in range(200):
            attributes = operations.lookup(folder.ino, f"k{i:03}".encode()).attributes
            assert attributes is not None
            numbers[i] = attributes.ino
        assert operations.read(numbers[0], 4096, 0, 0) == b"value 0"  # with its neighbours
        assert operations.kernel.wait_sent(5)
        assert sorted(kernel.stored) == sorted(numbers[i] for i in range(1, 200)), \
            "every file read with it, but not the one a READ waits for"


def test_waiting_for_the_kernel_notifications_is_bounded() -> None:
    cache = KernelCache()
    cache.attach(_Kernel())
    release = threading.Event()
    try:
        cache.after(lambda: release.wait(5))  # a store waiting for a page lock
        assert cache.wait_sent(0.05) is False
        release.set()
        assert cache.wait_sent(5) is True
    finally:
        release.set()
        cache.detach()


class _WrittenDuringRead(MemoryEngine):
    """A store that the mount writes to while a batch read of it is under way."""

    during_read: Callable[[], None] | None = None

    def get_many(self, keys: Iterable[str]) -> dict[str, str | None]:
        values = super().get_many(keys)
        during, self.during_read = self.during_read, None
        if during is not None:
            during()
        return values


def test_a_resync_keeps_what_the_mount_wrote_while_it_read() -> None:
    engine = _WrittenDuringRead()
    engine.set_many({"chat/A/index": "old", "chat/A/other": "x"})
    operations = Operations(engine, MountOptions())
    operations.load()
    chat = operations.lookup(ROOT_INO, b"chat").attributes
    assert chat is not None
    folder = operations.lookup(chat.ino, b"A").attributes
    assert folder is not None
    for name in (b"index", b"other"):
        assert operations.lookup(folder.ino, name).attributes is not None
    engine.during_read = lambda: operations._store("chat/A/index", "newer", b"newer")
    operations._verify_known()  # reads both keys; the write lands between its read and its record
    assert engine.during_read is None, "the resync read no batch: the test did not test anything"
    assert engine.get("chat/A/index") == "newer"
    cached = operations.cache.get("chat/A/index")
    assert cached is not None and cached.data == b"newer"
    index = operations.lookup(folder.ino, b"index").attributes
    assert index is not None and index.size == len(b"newer")


def test_a_file_s_pages_go_to_the_kernel_once_per_version_and_nothing_stays_queued() -> None:
    engine = MemoryEngine()
    engine.set_many({"d/a": "first", "d/b": "second"})
    with _read_only_operations(engine) as (operations, kernel):
        folder = operations.lookup(ROOT_INO, b"d").attributes
        assert folder is not None
        for name in (b"a", b"b"):
            operations.lookup(folder.ino, name)
        files = [operations._file_of_key("d/a"), operations._file_of_key("d/b")]
        operations._read(["d/a", "d/b"], "d/a")  # the values, as a read with its neighbours
        with operations.lock:
            assert operations._fill(files) == 2
        assert operations.kernel.wait_sent(5)
        assert sorted(kernel.stored) == sorted(file.ino for file in files)
        assert operations._filling == {}, "a sent store is still kept"
        with operations.lock:
            assert operations._fill(files) == 0  # given already
        engine.set("d/a", "first, and more")  # another client, read back: a new version
        operations._read(["d/a"], "d/a")
        current = operations._file_of_key("d/a")
        assert current is not None
        with operations.lock:
            assert operations._fill([current]) == 1
        assert operations.kernel.wait_sent(5) and len(kernel.stored) == 3
