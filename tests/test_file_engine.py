"""FileEngine on a real file system: the Node layout, confinement, crashes, a full disk, threads.

The conformance suite (``wafs.testing``) covers the contract every engine shares; these tests
cover what only an engine made of files and directories can get wrong.
"""

from __future__ import annotations

import codecs
import fcntl
import hashlib
import os
import random
import re
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from wafs import FileEngine, Kind
from wafs.errors import BackendError, InvalidKeyError, InvalidValueError, KeyConflictError, NoSpaceError
from wafs.keys import is_valid_key

from .helpers import Interleavings, absent, walk

TEMP_PREFIX = ".wafs-tmp-"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def base(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def engine(base: Path) -> FileEngine:
    return FileEngine(base)


def disk(root: Path) -> dict[str, object]:
    """Everything under ``root`` without following links: relpath -> bytes, "dir" or ("link", target)."""
    found: dict[str, object] = {}
    if not root.exists():
        return found
    for directory, dirs, files in walk(root):
        for name in dirs + files:
            path = Path(directory) / name
            rel = str(path.relative_to(root))
            if path.is_symlink():
                found[rel] = ("link", os.readlink(path))
            elif path.is_dir():
                found[rel] = "dir"
            else:
                found[rel] = path.read_bytes()
    return found


def temp_files(root: Path) -> list[str]:
    return [rel for rel in disk(root) if os.path.basename(rel).startswith(TEMP_PREFIX)]


def everything(engine: FileEngine) -> set[str]:
    return set(engine.list("", 0, None))


# --- 1. The Node layout ----------------------------------------------------------------------


def test_at_sign_is_stored_as_at_on_disk_with_the_exact_bytes(engine: FileEngine, base: Path) -> None:
    value = '{"name": "Jöhn 📱"}\nline two\n'
    engine.set("chat/549@s.whatsapp.net/index", value)
    path = base / "chat" / "549_at_s.whatsapp.net" / "index"
    assert path.read_bytes() == value.encode("utf-8")
    assert disk(base) == {
        "chat": "dir",
        "chat/549_at_s.whatsapp.net": "dir",
        "chat/549_at_s.whatsapp.net/index": value.encode(),
    }
    engine.set("lid/1234@lid", "549@s.whatsapp.net")
    assert (base / "lid" / "1234_at_lid").read_bytes() == b"549@s.whatsapp.net"
    assert not any("@" in rel for rel in disk(base))


def test_a_tree_written_by_the_node_library_is_read_as_keys_with_at(engine: FileEngine, base: Path) -> None:
    files = {
        "session/creds": '{"me": {"id": "549@s.whatsapp.net"}}',
        "session/pre-key/1": "{}",
        "contact/5491112345678_at_s.whatsapp.net/index": '{"name": "Ana"}',
        "lid/98765_at_lid": "5491112345678@s.whatsapp.net",
        "chat/5491112345678_at_s.whatsapp.net/index": "{}",
        "chat/5491112345678_at_s.whatsapp.net/messages": "1700000001 B\n1700000000 A\n",
        "chat/5491112345678_at_s.whatsapp.net/message/A/raw": '{"key": {}}',
        "chat/120363_at_g.us/message/B/content": "aGVsbG8=",
    }
    for rel, text in files.items():
        path = base / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    keys = {rel.replace("_at_", "@"): text for rel, text in files.items()}
    assert everything(engine) == set(keys)
    assert set(engine.iter_keys("")) == set(keys)
    for key, text in keys.items():
        assert engine.get(key) == text
    assert engine.get_many(list(keys)) == keys
    assert engine.sizes(list(keys)) == {key: len(text.encode()) for key, text in keys.items()}
    assert engine.children("chat") == {"5491112345678@s.whatsapp.net": Kind.DIR, "120363@g.us": Kind.DIR}
    assert engine.children("chat/5491112345678@s.whatsapp.net") == {
        "index": Kind.FILE,
        "messages": Kind.FILE,
        "message": Kind.DIR,
    }
    assert set(engine.list("chat/5491112345678@s.whatsapp.net/")) == {
        key for key in keys if key.startswith("chat/5491112345678@s.whatsapp.net/")
    }
    # and our writes land where the Node library looks for them
    engine.set("chat/120363@g.us/message/B/content", "bmV3")
    assert (base / "chat/120363_at_g.us/message/B/content").read_text() == "bmV3"
    engine.set("chat/5491112345678@s.whatsapp.net", None)
    assert absent(base / "chat/5491112345678_at_s.whatsapp.net")


@pytest.mark.parametrize(
    "key",
    [
        "chat/549_at_s.whatsapp.net/index",  # the disk spelling of '@'
        "a_at_",
        ".wafs-tmp-0123abcd",  # the temp-file namespace
        "chat/.wafs-tmp-x/index",
        "chat/" + "n" * 256,  # longer than a file name can be
    ],
)
def test_keys_that_cannot_round_trip_are_refused_and_nothing_is_written(
    engine: FileEngine, base: Path, key: str
) -> None:
    engine.set("session/creds", "kept")
    before = disk(base)
    with pytest.raises(InvalidKeyError):
        engine.set(key, "v")
    with pytest.raises(InvalidKeyError):
        engine.set_many({key: "v"})
    with pytest.raises(InvalidKeyError):
        engine.add(key, "v")
    with pytest.raises(InvalidKeyError):
        engine.check_writable(key)
    with pytest.raises(InvalidKeyError):
        engine.set(key, None)
    with pytest.raises(InvalidKeyError):
        engine.get(key)
    with pytest.raises(InvalidKeyError):
        engine.delete(key)
    assert disk(base) == before
    assert everything(engine) == {"session/creds"}


def test_a_file_that_is_not_utf8_is_a_permanent_invalid_value_error(engine: FileEngine, base: Path) -> None:
    engine.set("chat/1/index", "i")
    (base / "chat/1/raw").write_bytes(b"ok \xc3(")
    with pytest.raises(InvalidValueError, match="not UTF-8") as raised:
        engine.get("chat/1/raw")
    assert not isinstance(raised.value, BackendError)
    with pytest.raises(InvalidValueError):  # the batch fails as a whole; the caller reads key by key
        engine.get_many(["chat/1/index", "chat/1/raw"])
    assert engine.get_many(["chat/1/index"]) == {"chat/1/index": "i"}
    assert engine.sizes(["chat/1/raw"]) == {"chat/1/raw": 5}
    assert (base / "chat/1/raw").read_bytes() == b"ok \xc3("


@pytest.mark.parametrize("key", ["x_at@", "chat/_at@/index"])  # x_at@ would be written x_at_at_ = x@at_
def test_keys_only_a_literal_at_name_holds_are_read_and_removed_but_never_written(
    engine: FileEngine, base: Path, key: str
) -> None:
    with pytest.raises(InvalidKeyError, match="round-trip"):
        engine.set(key, "v")
    with pytest.raises(InvalidKeyError, match="round-trip"):
        engine.check_writable(key)
    assert engine.get(key) is None
    (base / key).parent.mkdir(parents=True, exist_ok=True)
    (base / key).write_text("written by cp -a of a mount")
    assert everything(engine) == {key}
    assert engine.get(key) == "written by cp -a of a mount"
    writes = (lambda: engine.set(key, "v"), lambda: engine.add(key, "v"), lambda: engine.set_many({key: "v"}))
    for write in writes:
        with pytest.raises(InvalidKeyError, match="round-trip"):
            write()
    assert engine.get(key) == "written by cp -a of a mount"
    engine.delete(key)
    assert everything(engine) == set()


def test_at_signs_next_to_underscores_round_trip(engine: FileEngine) -> None:
    for key in ["x@at_", "a@t_", "_a@", "@", "@@", "a_at", "a_@_b"]:
        engine.set(f"k/{key}", key)
    assert everything(engine) == {f"k/{key}" for key in ["x@at_", "a@t_", "_a@", "@", "@@", "a_at", "a_@_b"]}
    for key in everything(engine):
        assert engine.get(key) == key.removeprefix("k/")


def test_temp_files_and_non_key_names_never_show_up(engine: FileEngine, base: Path) -> None:
    engine.set("chat/1/index", "i")
    (base / "chat/1/.wafs-tmp-deadbeef").write_text("half a val")
    (base / ".wafs-tmp-0000").write_text("x")
    (base / "chat/2").mkdir()
    (base / "chat/2/.wafs-tmp-only").write_text("crash leftover")
    assert everything(engine) == {"chat/1/index"}
    assert set(engine.iter_keys("")) == {"chat/1/index"}
    assert set(engine.iter_keys("chat/")) == {"chat/1/index"}
    assert engine.list("chat/1/.wafs") == []
    assert engine.children("") == {"chat": Kind.DIR}
    assert engine.children("chat") == {"1": Kind.DIR}  # chat/2 holds no key
    assert engine.children("chat/1") == {"index": Kind.FILE}
    # a cascade sweeps leftovers too
    engine.set("chat", None)
    assert disk(base) == {".wafs-tmp-0000": b"x"}
    assert everything(engine) == set()


def _cp_a_tree(base: Path, files: dict[str, str]) -> None:
    """Files at exactly these paths: what ``cp -a MOUNT backup`` writes (a literal '@' in names)."""
    for rel, text in files.items():
        (base / rel).parent.mkdir(parents=True, exist_ok=True)
        (base / rel).write_text(text, encoding="utf-8")


CP_A_TREE = {
    "session/creds": "{}",
    "chat/5491112345678@s.whatsapp.net/index": '{"name": "Ana"}',
    "chat/5491112345678@s.whatsapp.net/message/A1/raw": "{}",
    "chat/120363@g.us/index": '{"subject": "grupo"}',
    "contact/5491112345678@s.whatsapp.net/index": "{}",
    "lid/98765@lid": "5491112345678@s.whatsapp.net",
}


def test_a_cp_a_copy_of_a_mount_reads_its_literal_at_names_as_at(engine: FileEngine, base: Path) -> None:
    """The issue's backup: every name with '@' used to be skipped (49 of 1,001 keys restored)."""
    _cp_a_tree(base, CP_A_TREE)
    assert everything(engine) == set(CP_A_TREE)
    assert set(engine.iter_keys("chat/5491112345678@s.whatsapp.net/")) == {
        key for key in CP_A_TREE if key.startswith("chat/5491112345678@s.whatsapp.net/")}
    assert engine.get_many(list(CP_A_TREE)) == CP_A_TREE
    assert engine.sizes(["lid/98765@lid"]) == {"lid/98765@lid": len(CP_A_TREE["lid/98765@lid"])}
    assert engine.children("chat") == {"5491112345678@s.whatsapp.net": Kind.DIR, "120363@g.us": Kind.DIR}
    assert engine.children("lid") == {"98765@lid": Kind.FILE}


def test_writes_into_a_cp_a_copy_keep_one_file_per_key(engine: FileEngine, base: Path) -> None:
    _cp_a_tree(base, CP_A_TREE)
    engine.set("lid/98765@lid", "rewritten")  # the literal file is replaced, no _at_ twin appears
    engine.set("chat/5491112345678@s.whatsapp.net/messages", "1 A1\n")  # into the literal directory
    engine.set("lid/1@lid", "new")  # a new name: the Node spelling
    assert engine.add("chat/120363@g.us/index", "x") is False
    assert (base / "lid/98765@lid").read_text() == "rewritten" and absent(base / "lid/98765_at_lid")
    assert (base / "chat/5491112345678@s.whatsapp.net/messages").read_text() == "1 A1\n"
    assert (base / "lid/1_at_lid").read_text() == "new"
    engine.check_writable("chat/5491112345678@s.whatsapp.net/index")
    with pytest.raises(KeyConflictError):
        engine.check_writable("chat/5491112345678@s.whatsapp.net")
    with pytest.raises(KeyConflictError):
        engine.set("chat/5491112345678@s.whatsapp.net", "a key over keys below it")
    with pytest.raises(KeyConflictError):
        engine.set("lid/98765@lid/below", "a key below a file")
    engine.delete("contact/5491112345678@s.whatsapp.net/index")
    engine.set("chat/5491112345678@s.whatsapp.net", None)
    assert everything(engine) == {"session/creds", "chat/120363@g.us/index", "lid/98765@lid", "lid/1@lid"}
    assert sorted(os.listdir(base)) == ["chat", "lid", "session"]  # emptied directories pruned
    assert os.listdir(base / "chat") == ["120363@g.us"]


def test_both_spellings_of_one_name_are_one_key(engine: FileEngine, base: Path) -> None:
    """A cp -a copy restored over a Node tree: 1@lid and 1_at_lid. One key, read from _at_; a
    delete removes both, so the other never comes back as the key's value."""
    _cp_a_tree(base, {"lid/1_at_lid": "node's", "lid/1@lid": "the backup's"})
    assert engine.list("lid/", 0, None) == ["lid/1@lid"]
    assert engine.children("lid") == {"1@lid": Kind.FILE}
    assert engine.get("lid/1@lid") == "node's"
    engine.delete("lid/1@lid")
    assert engine.get("lid/1@lid") is None
    assert disk(base) == {}


def test_a_name_that_is_not_utf8_is_listed_as_a_key_that_breaks_the_rules(
    engine: FileEngine, base: Path
) -> None:
    engine.set("chat/1/index", "i")
    with open(os.path.join(os.fsencode(base), b"chat/1/bad\xff"), "wb") as file:
        file.write(b"written by some other tool")
    listed = everything(engine)
    assert "chat/1/index" in listed and len(listed) == 2
    strange = next(key for key in listed if key != "chat/1/index")
    assert not is_valid_key(strange)
    assert os.fsencode(strange) == b"chat/1/bad\xff"
    assert set(engine.children("chat/1")) == {"index", strange.rpartition("/")[2]}
    engine.set("chat/1", None)
    assert disk(base) == {}


def test_a_base_that_is_a_file_is_an_error_not_an_empty_store(tmp_path: Path) -> None:
    (tmp_path / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    engine = FileEngine(tmp_path / "passwd")
    for call in (lambda: engine.list(""), lambda: engine.get("k"), lambda: engine.children(""),
                 lambda: list(engine.iter_keys("")), lambda: engine.set("k", "v")):
        with pytest.raises(BackendError, match="is a file, not a directory"):
            call()
    assert (tmp_path / "passwd").read_text() == "root:x:0:0::/root:/bin/sh\n"


def test_the_next_write_into_a_directory_removes_temp_files_crashed_writes_left(
    engine: FileEngine, base: Path
) -> None:
    """An interrupted wafs copy leaves .wafs-tmp-* files; the next write or copy there removes
    them, except one a live write holds (locked)."""
    for directory in ("chat/1", "chat/2"):
        (base / directory).mkdir(parents=True)
        (base / directory / ".wafs-tmp-0123456789abcdef").write_text("half a value")
    live = base / "chat/1/.wafs-tmp-live"
    live.write_text("a write under way")
    with open(live) as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        engine.set("chat/1/index", "i")
        FileEngine(base).set_many({"chat/2/index": "i"})  # a copy: another engine, set_many
        assert sorted(temp_files(base)) == ["chat/1/.wafs-tmp-live"]
    assert everything(engine) == {"chat/1/index", "chat/2/index"}


# --- 2. list ---------------------------------------------------------------------------------


def test_list_is_newest_mtime_first_with_ties_by_key(engine: FileEngine, base: Path) -> None:
    mtimes = {"k/a": 1000, "k/b": 4000, "k/c": 2000, "k/d": 3000, "k/e": 2000, "x/y": 5000}
    for key in mtimes:
        engine.set(key, key)
    for key, mtime in mtimes.items():
        os.utime(base / key, (mtime, mtime))
    assert engine.list("") == ["x/y", "k/b", "k/d", "k/c", "k/e", "k/a"]
    assert engine.list("k/") == ["k/b", "k/d", "k/c", "k/e", "k/a"]
    assert engine.list("k/", 1, 2) == ["k/d", "k/c"]
    assert engine.list("k/", 4, 10) == ["k/a"]
    os.utime(base / "k/a", (9000, 9000))
    assert engine.list("k/", 0, 1) == ["k/a"]
    engine.set("k/c", "rewritten")  # a write makes it the newest (now > 9000 s after the epoch)
    assert engine.list("k/", 0, 2) == ["k/c", "k/a"]


def test_list_shows_files_only_not_empty_or_special_entries(engine: FileEngine, base: Path) -> None:
    engine.set("chat/1/index", "i")
    (base / "empty/deeper/still").mkdir(parents=True)
    (base / "chat/1/message/A").mkdir(parents=True)
    os.mkfifo(base / "chat/1/fifo")
    os.mkfifo(base / "pipe")
    assert everything(engine) == {"chat/1/index"}
    assert engine.list("empty") == []
    assert engine.children("") == {"chat": Kind.DIR}
    assert engine.children("chat/1") == {"index": Kind.FILE}
    assert engine.children("empty") == {}
    # a FIFO is not a key, and reading it must not block
    assert engine.get("pipe") is None
    assert engine.get("chat/1/fifo") is None
    assert engine.get("empty") is None
    assert engine.get("empty/deeper") is None
    assert engine.sizes(["pipe", "empty", "chat/1/index"]) == {"pipe": None, "empty": None, "chat/1/index": 1}


def test_deleting_the_last_key_prunes_its_empty_directories(engine: FileEngine, base: Path) -> None:
    engine.set("chat/1/message/A/raw", "r")
    engine.set("chat/2/index", "i")
    engine.delete("chat/1/message/A/raw")
    assert disk(base) == {"chat": "dir", "chat/2": "dir", "chat/2/index": b"i"}
    engine.set("chat/2", None)
    assert disk(base) == {}
    assert base.is_dir()  # base itself stays


def test_a_leftover_empty_directory_does_not_block_a_key_of_that_name(engine: FileEngine, base: Path) -> None:
    (base / "a/empty/dirs").mkdir(parents=True)
    (base / "a/empty/.wafs-tmp-crashed").write_text("x")
    engine.set("a", "value")
    assert engine.get("a") == "value"
    assert everything(engine) == {"a"}


# --- 3. Confinement ----------------------------------------------------------------------------


@pytest.fixture
def planted(tmp_path: Path, base: Path) -> dict[str, Path]:
    """Links inside base that point outside it, and what they point to."""
    outside = tmp_path / "outside"
    (outside / "deep").mkdir(parents=True)
    (outside / "index").write_text("outside index")
    (outside / "deep" / "raw").write_text("outside raw")
    hostname = tmp_path / "hostname-copy"
    hostname.write_text("not-a-key-host\n")
    (base / "session").mkdir(parents=True)
    (base / "contact/real").mkdir(parents=True)
    (base / "contact/real/index").write_text("real contact")
    os.symlink(outside, base / "chat")  # a directory link
    os.symlink(hostname, base / "session" / "creds")  # a file link
    os.symlink(outside, base / "contact" / "inner")  # a link deeper down
    os.symlink("../outside", base / "lid")  # a relative link
    os.symlink(base / "contact", base / "alias")  # a link that stays inside base
    return {"outside": outside, "hostname": hostname, "tmp": tmp_path}


def outside_snapshot(planted: dict[str, Path], base: Path) -> dict[str, object]:
    """Everything under tmp_path except base: where an escape would show."""
    return {
        rel: what
        for rel, what in disk(planted["tmp"]).items()
        if not (planted["tmp"] / rel).is_relative_to(base)
    }


def test_links_planted_in_base_are_neither_read_nor_listed(
    engine: FileEngine, planted: dict[str, Path]
) -> None:
    assert everything(engine) == {"contact/real/index"}
    assert set(engine.iter_keys("")) == {"contact/real/index"}
    for prefix in ["chat/", "chat", "lid/", "session/", "contact/inner/", "alias/"]:
        assert engine.list(prefix, 0, None) == [], prefix
    for key in [
        "chat/index",
        "chat/deep/raw",
        "session/creds",
        "contact/inner/index",
        "lid/index",
        "alias/real/index",
        "chat",
    ]:
        assert engine.get(key) is None, key
    assert engine.sizes(["chat/index", "session/creds", "lid/deep/raw"]) == {
        "chat/index": None,
        "session/creds": None,
        "lid/deep/raw": None,
    }
    assert engine.children("") == {"contact": Kind.DIR}
    assert engine.children("chat") == {}
    assert engine.children("session") == {}
    assert engine.children("contact") == {"real": Kind.DIR}
    assert engine.children("contact/inner") == {}


def test_writes_through_planted_links_are_refused_and_land_nowhere(
    engine: FileEngine, base: Path, planted: dict[str, Path]
) -> None:
    before = outside_snapshot(planted, base)
    for key in [
        "chat/index",
        "chat/new/index",
        "chat/deep/raw",
        "lid/1@lid",
        "contact/inner/x/index",
        "alias/real/index",
    ]:
        with pytest.raises(KeyConflictError):
            engine.set(key, "escaped")
        with pytest.raises(KeyConflictError):
            engine.set_many({key: "escaped"})
        with pytest.raises(KeyConflictError):
            engine.add(key, "escaped")
        with pytest.raises(KeyConflictError):
            engine.check_writable(key)
    assert outside_snapshot(planted, base) == before
    assert (base / "alias").is_symlink() and (base / "contact/real/index").read_text() == "real contact"


def test_writing_a_key_held_by_a_file_link_replaces_the_link_not_its_target(
    engine: FileEngine, base: Path, planted: dict[str, Path]
) -> None:
    before = outside_snapshot(planted, base)
    engine.set("session/creds", "new creds")
    assert outside_snapshot(planted, base) == before
    assert planted["hostname"].read_text() == "not-a-key-host\n"
    assert not (base / "session/creds").is_symlink()
    assert engine.get("session/creds") == "new creds"


def test_adding_a_key_held_by_a_link_replaces_the_link_and_keeps_the_outside(
    engine: FileEngine, base: Path, planted: dict[str, Path]
) -> None:
    before = outside_snapshot(planted, base)
    engine.check_writable("session/creds")
    assert engine.add("session/creds", "new creds") is True
    assert engine.add("session/creds", "again") is False
    assert outside_snapshot(planted, base) == before
    assert not (base / "session/creds").is_symlink()
    assert engine.get("session/creds") == "new creds"
    assert temp_files(base) == []


def test_deletes_and_cascades_through_planted_links_leave_the_outside_alone(
    engine: FileEngine, base: Path, planted: dict[str, Path]
) -> None:
    before = outside_snapshot(planted, base)
    engine.delete("chat/index")
    engine.delete("chat/deep/raw")
    engine.delete("contact/inner/index")
    engine.delete("lid/index")
    engine.delete_many(["chat/index", "lid/deep/raw", "alias/real/index"])
    engine.set("chat/deep", None)
    engine.set("contact/inner/deep", None)
    engine.set("lid/deep", None)
    engine.set("alias/real", None)
    assert outside_snapshot(planted, base) == before
    assert engine.get("contact/real/index") == "real contact"
    # cascades over the links themselves remove the links, never what they point to
    engine.set("chat", None)
    engine.set("session/creds", None)
    engine.delete_prefixes(["lid", "contact/inner", "alias"])
    assert outside_snapshot(planted, base) == before
    assert engine.get("contact/real/index") == "real contact"
    assert absent(base / "chat")  # neither the link nor anything in its place
    engine.set("contact", None)
    assert outside_snapshot(planted, base) == before
    assert disk(base) == {}


@pytest.mark.parametrize(
    "key", ["/etc/hostname", "../outside/index", "a/../../outside/index", "..", "chat/../../x", "/"]
)
def test_absolute_and_dot_dot_keys_are_refused(
    engine: FileEngine, base: Path, planted: dict[str, Path], key: str
) -> None:
    before = outside_snapshot(planted, base)
    inside = disk(base)
    for call in (
        lambda: engine.set(key, "x"),
        lambda: engine.set(key, None),
        lambda: engine.get(key),
        lambda: engine.delete(key),
        lambda: engine.children(key),
        lambda: engine.list(key + "/"),
        lambda: engine.delete_prefixes([key]),
        lambda: engine.set_many({key: "x"}),
    ):
        with pytest.raises(InvalidKeyError):
            call()
    assert outside_snapshot(planted, base) == before
    assert disk(base) == inside


def test_a_directory_swapped_for_a_link_while_writing_never_leads_outside(
    engine: FileEngine, base: Path, tmp_path: Path
) -> None:
    """Another thread swaps ``chat/1`` between a real directory and a link to outside."""
    outside = tmp_path / "outside"
    outside.mkdir()
    engine.set("chat/1/index", "i")
    real, aside, link = base / "chat/1", base / "chat/1.aside", base / "chat/1.link"
    os.symlink(outside, link)
    stop = threading.Event()
    errors: list[BaseException] = []
    seen = Interleavings()
    refused = 0

    def swapper() -> None:
        # the writer may recreate chat/1 at any point, so every step may fail: that is fine
        while not stop.is_set():
            for source, target in [(real, aside), (link, real), (real, link), (aside, real)]:
                if source == real and target == link and not real.is_symlink():
                    continue
                try:
                    os.rename(source, target)  # after the second step chat/1 is the link
                except OSError:
                    continue
                seen.happened("swap")

    def writer() -> None:
        nonlocal refused
        for n in range(150):
            try:
                with seen.running("engine call"):
                    engine.set(f"chat/1/message/{n}/raw", "v")
                with seen.running("engine call"):
                    engine.get(f"chat/1/message/{n}/raw")
                with seen.running("engine call"):
                    engine.set(f"chat/1/message/{n % 7}", None)
                with seen.running("engine call"):
                    engine.list("chat/1/")
            except KeyConflictError:
                refused += 1  # the link was in the way at that moment: a clear refusal
            except BaseException as exc:  # noqa: BLE001  (reported by the test)
                errors.append(exc)

    threads = [threading.Thread(target=swapper), threading.Thread(target=writer)]
    threads[0].start()
    threads[1].start()
    threads[1].join()
    stop.set()
    threads[0].join()
    assert errors == []
    assert list(outside.iterdir()) == []
    print(f"{refused} of 150 rounds refused because of the link")
    seen.assert_overlapped("swap", "engine call")  # chat/1 was swapped while the engine worked in it


STRACE_SCRIPT = textwrap.dedent(
    """
    import sys
    from wafs import FileEngine
    from wafs.errors import InvalidKeyError, KeyConflictError

    base, start, end = sys.argv[1:4]
    engine = FileEngine(base)
    # warm up every code path, so no lazy import reads files after the marker
    engine.set("warm/up@x", "x"); engine.get("warm/up@x"); engine.list(""); engine.children("warm")
    engine.sizes(["warm/up@x"]); engine.delete("warm/up@x")
    engine.set("warm/a/b", "x"); engine.set("warm", None)
    try:
        engine.set("x_at_y", "x")
    except InvalidKeyError:
        pass
    open(start, "w").close()

    normal = {"session/pre-key/1": "{}", "contact/549@s.whatsapp.net/index": "{}",
              "chat2/1@g.us/message/A/raw": "r"}
    hostile = ["chat/index", "chat/new/deep/x", "chat/deep/raw", "session/creds", "contact/inner/index",
               "contact/inner/new/x", "lid/1@lid", "alias/real/index", "/etc/passwd", "../outside/index",
               "a/../../outside/index", "chat_at_x/y", "x_at@", "chat/../../hostname-copy"]
    for key, value in normal.items():
        engine.set(key, value)
        assert engine.get(key) == value, key
    for key in hostile:
        for call in (lambda: engine.get(key), lambda: engine.set(key, "escaped"),
                     lambda: engine.delete(key), lambda: engine.sizes([key]),
                     lambda: engine.children(key), lambda: engine.list(key + "/")):
            try:
                call()
            except (InvalidKeyError, KeyConflictError):
                pass
    engine.list(""); engine.list("chat/"); engine.list("contact/inner/"); list(engine.iter_keys("alias/"))
    engine.children(""); engine.children("contact")
    for key in hostile:
        try:
            engine.set(key, None)
        except InvalidKeyError:
            pass
    engine.set("session/creds", "replaces the link")
    engine.delete_prefixes(["chat", "lid", "contact/inner", "alias", "chat2"])
    engine.set("session", None)
    open(end, "w").close()
    """
)

_AT_PATH = re.compile(r'(?:(\d+|AT_FDCWD)(?:<((?:[^>\\]|\\.)*)>)?,\s*)?"((?:[^"\\]|\\.)*)"')
_RESULT_FD = re.compile(r"= \d+<((?:[^>\\]|\\.)*)>$")


def _unescape(text: str) -> str:
    return codecs.escape_decode(text.encode("latin-1"))[0].decode("utf-8", "surrogateescape")


def test_strace_sees_no_file_syscall_outside_base(
    base: Path, planted: dict[str, Path], tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    real_base = os.path.realpath(base)
    links = {os.path.join(real_base, rel) for rel, what in disk(base).items() if isinstance(what, tuple)}
    trace = tmp_path_factory.mktemp("trace")  # the log, the script and the markers live apart
    start, end, log = trace / "start-marker", trace / "end-marker", trace / "strace.log"
    script = trace / "hostile.py"
    script.write_text(STRACE_SCRIPT)
    before = outside_snapshot(planted, base)
    run = subprocess.run(
        [
            "strace",
            "-f",
            "-y",
            "-s",
            "4096",
            "-e",
            "trace=%file",
            "-o",
            str(log),
            sys.executable,
            str(script),
            str(base),
            str(start),
            str(end),
        ],
        check=False,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert run.returncode == 0, run.stderr
    assert outside_snapshot(planted, base) == before

    lines = log.read_text(encoding="latin-1").splitlines()
    first = next(i for i, line in enumerate(lines) if "openat(" in line and f'"{start}"' in line)
    last = next(i for i, line in enumerate(lines) if "openat(" in line and f'"{end}"' in line)
    checked: dict[str, int] = {}
    problems = []
    for line in lines[first + 1 : last]:
        match = re.match(r"^\d+\s+(\w+)\((.*)$", line)
        if not match or "resumed>" in line or str(start) in line:  # the marker's own fstat
            continue
        syscall, rest = match.groups()
        pairs = _AT_PATH.findall(rest)
        if syscall in ("readlink", "readlinkat"):
            pairs = pairs[:1]  # the second string is the link's content
        for _dirfd, dir_path, raw in pairs:
            arg = _unescape(raw)
            if arg.startswith("/") or not dir_path:
                path = os.path.normpath(os.path.join(str(tmp_path), arg))
            else:
                path = os.path.normpath(os.path.join(_unescape(dir_path), arg))
            if path != real_base and not path.startswith(real_base + os.sep):
                problems.append(f"outside base: {line}")
            below = os.path.relpath(os.path.dirname(path), real_base).split(os.sep)
            through = {os.path.join(real_base, *below[: n + 1]) for n in range(len(below))} & links
            if through:
                problems.append(f"goes through a planted link {through}: {line}")
            checked[syscall] = checked.get(syscall, 0) + 1
        result = _RESULT_FD.search(line)
        if result:
            opened = _unescape(result.group(1))
            if opened != real_base and not opened.startswith(real_base + os.sep):
                problems.append(f"opened outside base: {line}")
    assert problems == []
    # the check saw the engine at work: opening, creating, renaming, removing
    assert checked.get("openat", 0) > 50
    for syscall in ("mkdirat", "renameat", "unlinkat", "newfstatat"):
        assert checked.get(syscall, 0) > 0, (syscall, checked)


# --- 4. Keys that cannot sit beside each other on disk --------------------------------------------


def test_an_add_refused_for_keys_below_leaves_no_temp_file(engine: FileEngine, base: Path) -> None:
    engine.set("chat/1/index", "i")
    with pytest.raises(KeyConflictError):
        engine.add("chat/1", "a key over keys below it")
    with pytest.raises(KeyConflictError):
        engine.add("chat/1/index/x", "a key below a file")
    assert temp_files(base) == []
    assert everything(engine) == {"chat/1/index"}


def test_add_over_a_leftover_empty_directory_stores_the_key(engine: FileEngine, base: Path) -> None:
    (base / "chat/1/index/empty").mkdir(parents=True)
    engine.check_writable("chat/1/index")
    assert engine.add("chat/1/index", "i") is True
    assert engine.get("chat/1/index") == "i"
    assert disk(base) == {"chat": "dir", "chat/1": "dir", "chat/1/index": b"i"}


ADDER = textwrap.dedent(
    """
    import sys
    from wafs import FileEngine

    engine = FileEngine(sys.argv[1])
    name = sys.argv[2]
    print("ready", flush=True)
    sys.stdin.readline()
    order = range(1000) if name == "one" else range(999, -1, -1)  # they meet in the middle
    won = [n for n in order if engine.add(f"chat/{n}@s.whatsapp.net/index", name)]
    print(" ".join(map(str, won)), flush=True)
    """
)


def test_processes_adding_the_same_keys_each_win_a_key_exactly_once(base: Path, tmp_path: Path) -> None:
    """Two processes add the same 1,000 keys at once, from both ends: every key is won by one, and
    holds its value."""
    script = tmp_path / "adder.py"
    script.write_text(ADDER)
    children = [
        subprocess.Popen([sys.executable, str(script), str(base), name], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        for name in ("one", "two")
    ]
    for child in children:
        assert child.stdout is not None and child.stdout.readline() == "ready\n"
    for child in children:
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()
    won = {}
    for child, name in zip(children, ("one", "two"), strict=True):
        out, _ = child.communicate(timeout=120)
        assert child.returncode == 0
        won[name] = {int(n) for n in out.split()}
    print(f"one won {len(won['one'])}, two won {len(won['two'])}")
    assert won["one"].isdisjoint(won["two"])
    assert won["one"] | won["two"] == set(range(1000))
    assert won["one"] and won["two"], "one process won every key: the adds never raced"
    engine = FileEngine(base)
    for name, numbers in won.items():
        for n in numbers:
            assert engine.get(f"chat/{n}@s.whatsapp.net/index") == name
    assert temp_files(base) == []


def test_a_key_below_a_file_key_is_a_conflict_and_the_file_is_kept(engine: FileEngine, base: Path) -> None:
    engine.set("a", "old")
    for key in ["a/b", "a/b/c"]:
        with pytest.raises(KeyConflictError, match="'a'"):
            engine.set(key, "x")
    assert engine.get("a") == "old"
    assert everything(engine) == {"a"}
    assert disk(base) == {"a": b"old"}


def test_a_key_over_keys_below_it_is_a_conflict_and_nothing_is_lost(engine: FileEngine, base: Path) -> None:
    engine.set("a/b", "below")
    engine.set("a/c/d", "deeper")
    with pytest.raises(KeyConflictError, match="below"):
        engine.set("a", "x")
    with pytest.raises(KeyConflictError):
        engine.set("a/c", "x")
    assert engine.get("a/b") == "below" and engine.get("a/c/d") == "deeper"
    assert engine.get("a") is None
    assert everything(engine) == {"a/b", "a/c/d"}
    assert temp_files(base) == []


# --- 5. Crash consistency ------------------------------------------------------------------------------

WRITER = textwrap.dedent(
    """
    import hashlib, sys
    from wafs import FileEngine

    base, round_no = sys.argv[1], int(sys.argv[2])
    engine = FileEngine(base)
    generation = 0
    while True:
        for n in range(20):
            fill = "AB"[generation % 2] * (2000 * (n + 1) + 137 * generation % 5000)
            body = f"key={n};round={round_no};gen={generation};{fill}"
            checksum = hashlib.sha256(body.encode()).hexdigest()
            engine.set(f"chat/{n}@s.whatsapp.net/message/M{n}/raw", body + "|" + checksum)
        if generation == 0:
            print("written", flush=True)
        generation += 1
    """
)


def check_complete(key: str, value: str | None) -> tuple[int, int]:
    assert value is not None, f"{key} is missing"
    body, sep, digest = value.rpartition("|")
    assert sep and hashlib.sha256(body.encode()).hexdigest() == digest, f"{key} is torn"
    fields = dict(part.split("=") for part in body.split(";")[:3])
    assert key == f"chat/{fields['key']}@s.whatsapp.net/message/M{fields['key']}/raw"
    fill = body.split(";")[3]
    assert fill == fill[0] * len(fill)
    return int(fields["round"]), int(fields["gen"])


def kill_9_after_first_write(script: Path, base: Path, round_no: int, pause: float) -> None:
    """Run the writer ``script`` on ``base``; once it prints ``written``, wait ``pause`` s and SIGKILL it."""
    child = subprocess.Popen(
        [sys.executable, str(script), str(base), str(round_no)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == "written\n"
        time.sleep(pause)
    finally:
        child.kill()
        child.wait()
    assert child.returncode == -9


def test_kill_9_at_random_moments_leaves_every_key_old_or_new(base: Path, tmp_path: Path) -> None:
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    engine = FileEngine(base)
    keys = {f"chat/{n}@s.whatsapp.net/message/M{n}/raw" for n in range(20)}
    rng = random.Random(8)
    generations: set[int] = set()
    inside_a_write = 0  # kills that left a temp file: they landed between its creation and its rename
    round_no = 0
    while round_no < 6 or (inside_a_write < 2 and round_no < 40):
        temp_before = set(temp_files(base))
        kill_9_after_first_write(script, base, round_no, rng.uniform(0.0, 0.4))  # every key written once
        assert everything(engine) == keys
        assert set(engine.iter_keys("chat/")) == keys
        for key in keys:
            written_round, generation = check_complete(key, engine.get(key))
            assert written_round == round_no  # this round wrote every key once before the kill
            generations.add(generation)
        inside_a_write += bool(set(temp_files(base)) - temp_before)  # (the next writer removes old ones)
        round_no += 1
    print(f"{round_no} kills, {inside_a_write} of them inside a write, key generations {sorted(generations)}")
    assert len(generations) > 1, "every kill came before a key was rewritten: the test did not test anything"
    assert inside_a_write >= 2, "kills never landed inside a write: the test did not test anything"
    # leftovers of killed writes never became keys, and a cascade sweeps them away
    engine.set("chat", None)
    assert disk(base) == {}


# --- 6. A full disk -------------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path):
    mountpoint = tmp_path / "small"
    mountpoint.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mountpoint)], check=True)
    try:
        yield mountpoint
    finally:
        if subprocess.run(["umount", str(mountpoint)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(mountpoint)], check=True)


def test_a_full_disk_is_a_clear_error_and_keeps_the_old_value(small_disk: Path) -> None:
    engine = FileEngine(small_disk / "store")
    engine.set("session/creds", "old creds")
    engine.set("chat/1/index", "i")
    with pytest.raises(NoSpaceError) as caught:
        engine.set("session/creds", "x" * 2_000_000)
    assert isinstance(caught.value, BackendError)
    message = str(caught.value)
    assert "session/creds" in message and "space" in message.lower()
    assert engine.get("session/creds") == "old creds"
    assert temp_files(small_disk) == []
    # a new key that does not fit is not there afterwards
    with pytest.raises(NoSpaceError):
        engine.set("chat/2/message/A/content", "y" * 1_500_000)
    assert engine.get("chat/2/message/A/content") is None
    assert everything(engine) == {"session/creds", "chat/1/index"}
    assert temp_files(small_disk) == []
    # the space was given back: a value that fits is written
    engine.set("session/creds", "z" * 500_000)
    assert engine.get("session/creds") == "z" * 500_000


def test_filling_the_disk_key_by_key_fails_cleanly_at_the_edge(small_disk: Path) -> None:
    engine = FileEngine(small_disk / "store")
    written = {}
    with pytest.raises(NoSpaceError):
        for n in range(1000):
            key = f"chat/{n}/message/A/raw"
            engine.set(key, f"{n:05d}" * 2000)
            written[key] = f"{n:05d}" * 2000
    assert len(written) > 10
    assert everything(engine) == set(written)
    assert all(engine.get(key) == value for key, value in written.items())
    assert temp_files(small_disk) == []


# --- 7. Threads ---------------------------------------------------------------------------------------


def run_threads(targets, seconds: float) -> list[BaseException]:
    stop = threading.Event()
    errors: list[BaseException] = []

    def loop(target) -> None:
        rng = random.Random(id(target))
        while not stop.is_set():
            try:
                target(rng)
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)
                return

    threads = [threading.Thread(target=loop, args=(target,)) for target in targets]
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join(30)
    return errors


def test_writes_racing_cascades_of_their_directory_never_fail(engine: FileEngine) -> None:
    seen = Interleavings()

    def writer(rng: random.Random) -> None:
        with seen.running("write"):
            engine.set(f"chat/1/message/{rng.randrange(30)}/raw", "payload " * rng.randrange(1, 50))

    def cascader(rng: random.Random) -> None:
        with seen.running("cascade"):
            engine.set(rng.choice(["chat/1", "chat/1/message", "chat"]), None)

    errors = run_threads([writer, writer, writer, cascader, cascader], 2.0)
    assert errors == []
    seen.assert_overlapped("write", "cascade")


def test_an_exact_delete_never_takes_a_concurrent_write_with_it(engine: FileEngine) -> None:
    """Deleting the last key of a directory prunes it; a write landing there meanwhile must survive."""
    counter = iter(range(10**9))
    seen = Interleavings()

    def writer(rng: random.Random) -> None:
        chat = rng.randrange(3)
        key = f"chat/{chat}/message/{next(counter)}/raw"
        with seen.running(f"write in chat/{chat}"):
            engine.set(key, "mine")
        assert engine.get(key) == "mine", key
        engine.delete(key)
        assert engine.get(key) is None, key

    def other(rng: random.Random) -> None:
        chat = rng.randrange(3)
        key = f"chat/{chat}/message/x/index"
        engine.set(key, "v")
        with seen.running(f"prune of chat/{chat}"):
            engine.delete(key)

    errors = run_threads([writer, writer, other, other], 2.0)
    assert errors == []
    overlaps = sum(seen.overlaps(f"write in chat/{n}", f"prune of chat/{n}") for n in range(3))
    print(f"a write and a pruning delete in the same chat overlapped {overlaps} times")
    assert overlaps > 0, "no write ever overlapped a pruning delete: the test did not test anything"


def test_mixed_concurrent_traffic_raises_nothing_unexpected(engine: FileEngine) -> None:
    seen = Interleavings()

    def value_for(key: str) -> str:
        return key + ":" + "v" * (len(key) * 10)

    def writer(rng: random.Random) -> None:
        part = rng.choice(["raw", "index"])
        key = f"chat/{rng.randrange(4)}@s.whatsapp.net/message/{rng.randrange(10)}/{part}"
        with seen.running("write"):
            engine.set(key, value_for(key))

    def batch(rng: random.Random) -> None:
        keys = [f"contact/{rng.randrange(20)}/index" for _ in range(5)]
        with seen.running("write"):
            engine.set_many({key: value_for(key) for key in keys})
        with seen.running("delete"):
            engine.delete_many(keys[:2])

    def cascader(rng: random.Random) -> None:
        with seen.running("delete"):
            engine.set(
                f"chat/{rng.randrange(4)}@s.whatsapp.net"
                + rng.choice(["", "/message", f"/message/{rng.randrange(10)}"]),
                None,
            )
        with seen.running("delete"):
            engine.delete_prefixes([f"contact/{rng.randrange(20)}", "nothing"])

    def reader(rng: random.Random) -> None:
        with seen.running("read"):
            for key in engine.list("", 0, None):
                value = engine.get(key)
                assert value is None or value == value_for(key), key
            for key, value in engine.get_many(list(engine.iter_keys("contact/"))).items():
                assert value is None or value == value_for(key)
            engine.children("")
            engine.children("chat")
            engine.sizes(list(engine.iter_keys("chat/")))

    errors = run_threads([writer, writer, batch, cascader, reader, reader], 2.5)
    assert errors == []
    for key in engine.list("", 0, None):
        assert engine.get(key) == value_for(key)
    seen.assert_overlapped("write", "delete")
    seen.assert_overlapped("read", "write")
    seen.assert_overlapped("read", "delete")


BATCH_WRITER = textwrap.dedent(
    """
    import hashlib, sys
    from wafs import FileEngine

    base, round_no = sys.argv[1], int(sys.argv[2])
    engine = FileEngine(base)
    generation = 0
    while True:
        batch = {}
        for n in range(60):
            fill = "AB"[generation % 2] * (500 * (n + 1) + 137 * generation % 5000)
            body = f"key={n};round={round_no};gen={generation};{fill}"
            checksum = hashlib.sha256(body.encode()).hexdigest()
            batch[f"chat/{n}@s.whatsapp.net/message/M{n}/raw"] = body + "|" + checksum
        engine.set_many(batch)
        if generation == 0:
            print("written", flush=True)
        generation += 1
    """
)


def test_kill_9_during_set_many_batches_leaves_every_key_old_or_new(base: Path, tmp_path: Path) -> None:
    """set_many syncs a whole group once and then renames: a kill at any point tears no key."""
    script = tmp_path / "batch_writer.py"
    script.write_text(BATCH_WRITER)
    engine = FileEngine(base)
    keys = {f"chat/{n}@s.whatsapp.net/message/M{n}/raw" for n in range(60)}
    rng = random.Random(9)
    generations: set[int] = set()
    inside_a_batch = 0  # kills that left temp files (while syncing) or a batch half renamed
    round_no = 0
    while round_no < 8 or (inside_a_batch < 2 and round_no < 40):
        temp_before = set(temp_files(base))
        kill_9_after_first_write(script, base, round_no, rng.uniform(0.0, 0.5))  # one whole batch in place
        assert set(engine.iter_keys("chat/")) == keys
        this_round = set()
        for key in keys:
            written_round, generation = check_complete(key, engine.get(key))
            assert written_round == round_no  # the first batch of this round wrote every key
            this_round.add(generation)
        generations |= this_round
        inside_a_batch += bool(set(temp_files(base)) - temp_before) or len(this_round) > 1
        round_no += 1
    print(f"{round_no} kills, {inside_a_batch} of them inside a batch, key generations {sorted(generations)}")
    assert len(generations) > 1, "every kill came right after the first batch: the test did not test anything"
    assert inside_a_batch >= 2, "kills never landed inside a batch: the test did not test anything"
    engine.set("chat", None)
    assert disk(base) == {}


def test_set_many_stops_at_a_conflict_in_its_own_batch_and_leaves_no_trace(
    engine: FileEngine, base: Path
) -> None:
    """Keys after the conflicting one are neither written nor left as temp files or directories."""
    with pytest.raises(KeyConflictError):
        engine.set_many({"a/b": "1", "c": "2", "a": "3", "d/e/f": "4"})
    assert everything(engine) == {"a/b", "c"}
    assert engine.get("a/b") == "1" and engine.get("c") == "2"
    assert absent(base / "d")
    with pytest.raises(KeyConflictError):
        engine.set_many({"x": "1", "y/z": "2", "x/y": "3", "w/v": "4"})
    assert everything(engine) == {"a/b", "c", "x", "y/z"}
    assert absent(base / "w") and temp_files(base) == []


def test_set_many_of_many_keys_spans_several_sync_groups(engine: FileEngine, base: Path) -> None:
    from wafs.engines import file

    items = {f"chat/{n % 7}/message/M{n}/raw": f"value {n}" for n in range(file._SYNC_GROUP * 2 + 5)}
    engine.set_many(items)
    assert engine.get_many(list(items)) == items
    assert temp_files(base) == []
