"""Real mounts of every engine, driven with real ls, cat, find, grep, cp, mv, rm."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from wafs import Engine, FileEngine

from .conftest import ENGINE_KINDS, make_engine
from .helpers import absent, counting_calls, wait_for
from .mounting import mounted, sh

SESSION = {
    "session/creds": '{"me": {"id": "5491100000000@s.whatsapp.net"}}',
    "session/pre-key/1": "k1",
    "contact/5491112345678@s.whatsapp.net/index": '{"name": "Ana"}',
    "lid/99@lid": "5491112345678@s.whatsapp.net",
    "chat/5491112345678@s.whatsapp.net/index": '{"name": "Ana"}',
    "chat/5491112345678@s.whatsapp.net/messages": "1700000002 B2\n1700000001 A1\n",
    "chat/5491112345678@s.whatsapp.net/message/A1/raw": '{"text": "hola, tu pedido llegó"}',
    "chat/5491112345678@s.whatsapp.net/message/B2/raw": '{"text": "gracias ñandú"}',
    "chat/120363@g.us/index": '{"subject": "grupo"}',
}
CHAT = "chat/5491112345678@s.whatsapp.net"


@pytest.fixture
def session(engine: Engine) -> Engine:
    engine.set_many(SESSION)
    return engine


@pytest.fixture
def mnt(session: Engine, tmp_path: Path):
    with mounted(session, tmp_path / "mnt") as mountpoint:
        yield mountpoint


def everything(engine: Engine) -> dict[str, str | None]:
    return engine.get_many(sorted(engine.iter_keys("")))


def test_ls_cat_find_grep(session: Engine, mnt: Path) -> None:
    assert sh(f"ls {mnt}").stdout.split() == ["chat", "contact", "lid", "session"]
    assert sh(f"ls {mnt}/chat").stdout.split() == ["120363@g.us", "5491112345678@s.whatsapp.net"]
    assert sh(f"cat {mnt}/{CHAT}/message/A1/raw").stdout == SESSION[f"{CHAT}/message/A1/raw"]
    found = sh(f"cd {mnt} && find . -type f | sort").stdout.split()
    assert found == sorted(f"./{key}" for key in SESSION)
    assert sh(f"grep -rl pedido {mnt}").stdout.split() == [f"{mnt}/{CHAT}/message/A1/raw"]


def test_ls_l_shows_utf8_byte_sizes(session: Engine, mnt: Path) -> None:
    listing = sh(f"ls -l {mnt}/{CHAT}/message/B2").stdout
    size = len(SESSION[f"{CHAT}/message/B2/raw"].encode())
    assert f" {size} " in listing
    assert os.stat(mnt / CHAT / "message/B2/raw").st_size == size
    assert oct(os.stat(mnt / CHAT / "index").st_mode & 0o777) == "0o600"
    assert oct(os.stat(mnt / CHAT).st_mode & 0o777) == "0o700"


def test_mmap_and_repeated_reads_see_the_value(session: Engine, mnt: Path) -> None:
    expected = SESSION[f"{CHAT}/index"].encode()
    # In another process: a page fault here would wait for the mount's thread, which needs our GIL.
    mapped = subprocess.run(
        [sys.executable, "-c", ("import mmap, sys; f = open(sys.argv[1], 'rb'); "
                                "sys.stdout.buffer.write(mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)[:])"),
         mnt / CHAT / "index"],
        capture_output=True, check=True, timeout=30,
    ).stdout
    assert mapped == expected
    assert [sh(f"cat {mnt}/{CHAT}/index").stdout.encode() for _ in range(3)] == [expected] * 3


def test_write_append_truncate(session: Engine, mnt: Path) -> None:
    sh(f"echo hola > {mnt}/session/new")
    assert session.get("session/new") == "hola\n"
    sh(f"echo mundo >> {mnt}/session/new")
    assert session.get("session/new") == "hola\nmundo\n"
    sh(f"truncate -s 4 {mnt}/session/new")
    assert session.get("session/new") == "hola"
    # An open that writes nothing is committed at its last close, which the kernel sends
    # without waiting: the mount has it at once, the store a moment after the command returns.
    sh(f": > {mnt}/session/new; touch {mnt}/session/empty")
    assert sh(f"cat {mnt}/session/new {mnt}/session/empty").stdout == ""
    wait_for("the truncation and the new file in the store", lambda: session.get("session/new") == ""
             and session.get("session/empty") == "", bound=2.0)


def test_overwrite_is_one_set(session: Engine, mnt: Path) -> None:
    with open(mnt / "session/creds", "w") as file:
        file.write("part one, ")
        file.flush()
        assert session.get("session/creds") == SESSION["session/creds"]  # nothing half-written
        file.write("part two")
    assert session.get("session/creds") == "part one, part two"


def test_mkdir_p_then_write_and_rmdir(session: Engine, mnt: Path) -> None:
    sh(f"mkdir -p {mnt}/chat/new@s.whatsapp.net/message")
    assert (mnt / "chat/new@s.whatsapp.net/message").is_dir()
    assert not any(key.startswith("chat/new") for key in session.iter_keys(""))  # no marker keys
    sh(f"echo x > {mnt}/chat/new@s.whatsapp.net/message/raw")
    assert session.get("chat/new@s.whatsapp.net/message/raw") == "x\n"
    result = sh(f"rmdir {mnt}/chat/new@s.whatsapp.net/message", check=False)
    assert result.returncode != 0 and "not empty" in result.stderr
    sh(f"rm {mnt}/chat/new@s.whatsapp.net/message/raw")
    sh(f"rmdir {mnt}/chat/new@s.whatsapp.net/message {mnt}/chat/new@s.whatsapp.net")
    assert absent(mnt / "chat/new@s.whatsapp.net")
    assert session.get("chat/new@s.whatsapp.net/message/raw") is None


def test_rm_deletes_exactly_one_key(session: Engine, mnt: Path) -> None:
    sh(f"rm {mnt}/{CHAT}/messages")
    assert session.get(f"{CHAT}/messages") is None
    assert session.get(f"{CHAT}/index") == SESSION[f"{CHAT}/index"]


def test_rm_r_of_a_chat_removes_its_subtree_only(session: Engine, mnt: Path) -> None:
    sh(f"rm -r {mnt}/{CHAT}")
    assert absent(mnt / CHAT)
    sh(f"sync; ls {mnt}/chat")
    remaining = set(session.iter_keys(""))
    assert remaining == {key for key in SESSION if not key.startswith(CHAT + "/")}


def test_mv_file_and_directory(session: Engine, mnt: Path) -> None:
    sh(f"mv {mnt}/session/pre-key/1 {mnt}/session/pre-key/2")
    assert session.get("session/pre-key/1") is None
    assert session.get("session/pre-key/2") == "k1"
    sh(f"mv -f {mnt}/session/pre-key/2 {mnt}/session/creds")  # overwrite
    assert session.get("session/creds") == "k1"
    sh(f"mv {mnt}/chat/120363@g.us {mnt}/chat/120364@g.us")  # EXDEV: mv copies, then deletes
    assert session.get("chat/120364@g.us/index") == SESSION["chat/120363@g.us/index"]
    assert session.get("chat/120363@g.us/index") is None


def test_editor_style_save_through_a_temp_file(session: Engine, mnt: Path) -> None:
    sh(f"cd {mnt}/session && printf new > .creds.swp && mv .creds.swp creds")
    assert session.get("session/creds") == "new"
    assert session.get("session/.creds.swp") is None


@pytest.mark.parametrize("new_file", [True, False])
def test_non_utf8_write_is_refused_and_nothing_stored(session: Engine, mnt: Path, new_file: bool) -> None:
    target = mnt / ("session/binary" if new_file else "session/creds")
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.write(fd, b"\xff\xfe not text")
    with pytest.raises(OSError) as raised:
        os.close(fd)
    assert raised.value.errno == errno.EILSEQ
    if new_file:
        assert session.get("session/binary") is None
        assert "binary" not in os.listdir(mnt / "session")
        assert absent(mnt / "session/binary")
    else:
        assert session.get("session/creds") == SESSION["session/creds"]
    assert everything(session) == {**SESSION}


def test_cp_a_backup_and_restore_round_trips(
    session: Engine, mnt: Path, tmp_path: Path, request: pytest.FixtureRequest, engine_kind: str
) -> None:
    backup = tmp_path / "backup"
    sh(f"cp -a {mnt} {backup}")
    assert (backup / CHAT / "message/A1/raw").read_text() == SESSION[f"{CHAT}/message/A1/raw"]
    restored = make_engine(engine_kind, request, tmp_path / "restored")
    try:
        with mounted(restored, tmp_path / "mnt2") as target:
            sh(f"cp -a {backup}/. {target}/")
        assert everything(restored) == SESSION
    finally:
        restored.close()


def test_paths_that_are_not_keys_are_refused(session: Engine, mnt: Path) -> None:
    with pytest.raises(OSError) as raised:
        (mnt / "session" / "__value__" / "x").write_text("v")
    assert raised.value.errno in (errno.ENOENT, errno.EINVAL)
    assert everything(session) == SESSION


def test_read_only_mount_refuses_every_change(session: Engine, tmp_path: Path) -> None:
    with mounted(session, tmp_path / "ro", read_only=True) as mnt:
        assert sh(f"cat {mnt}/lid/99@lid").stdout == SESSION["lid/99@lid"]
        for command in [f"echo x > {mnt}/lid/new", f"rm {mnt}/lid/99@lid", f"mkdir {mnt}/d",
                        f"mv {mnt}/lid/99@lid {mnt}/lid/98@lid", f"rm -r {mnt}/chat"]:
            result = sh(command, check=False)
            assert result.returncode != 0 and "Read-only file system" in result.stderr, command
    assert everything(session) == SESSION


def test_another_writer_is_seen_within_the_ttl(session: Engine, mnt: Path) -> None:
    session.set("chat/outside@s.whatsapp.net/index", "from the bot")
    session.set(f"{CHAT}/index", "changed by the bot")
    session.delete("lid/99@lid")
    time.sleep(1.5)  # the TTL (1 s) plus the kernel's attribute timeout
    assert "outside@s.whatsapp.net" in os.listdir(mnt / "chat")
    assert (mnt / CHAT / "index").read_text() == "changed by the bot"
    assert absent(mnt / "lid/99@lid")


def test_mkdir_made_directory_outlives_the_keys_of_its_parent(session: Engine, mnt: Path) -> None:
    sh(f"mkdir {mnt}/lid/drafts")
    session.delete("lid/99@lid")  # the last key of lid/: a FileEngine prunes the folder on disk
    time.sleep(1.5)  # the TTL (1 s) plus the kernel's attribute timeout
    assert "lid" in os.listdir(mnt)
    assert os.listdir(mnt / "lid") == ["drafts"]
    sh(f"rmdir {mnt}/lid/drafts {mnt}/lid")
    assert "lid" not in os.listdir(mnt)
    assert absent(mnt / "lid")


def test_a_directory_emptied_through_the_mount_stays_until_rmdir(session: Engine, tmp_path: Path) -> None:
    with mounted(session, tmp_path / "mnt", ttl=0.05) as mnt:
        sh(f"rm {mnt}/lid/99@lid")
        with counting_calls(session, "iter_keys", "scan_keys", "children") as reads:
            time.sleep(0.5)  # many TTLs: the tree is read again meanwhile or by the listing below
            assert "lid" in os.listdir(mnt)
        assert reads, "the tree was not read again after the rm: the test did not test anything"
        sh(f"rmdir {mnt}/lid")
        assert "lid" not in os.listdir(mnt)
        assert absent(mnt / "lid")


def test_rm_r_of_a_deep_tree_while_the_tree_is_read_again(session: Engine, tmp_path: Path) -> None:
    session.set_many({f"chat/c{c}/message/m{m}/raw": "x" for c in range(60) for m in range(30)})
    with mounted(session, tmp_path / "mnt", ttl=0.02) as mnt:
        os.listdir(mnt / "chat")
        with counting_calls(session, "iter_keys", "scan_keys", "children") as reads:
            sh(f"rm -r {mnt}/chat")  # rebuilds of the tree run between its unlinks and rmdirs
        print(f"the tree was read {sum(reads.values())} times during rm -r")
        again = max(reads.values(), default=0) >= 2
        assert again, "no listing was read again during rm -r: the test did not test anything"
        assert "chat" not in os.listdir(mnt)
        assert absent(mnt / "chat")
    assert not [key for key in session.iter_keys("") if key.startswith("chat/")]


# --- engines that can hold a key and keys below it -------------------------------------------

COLLIDING = [kind for kind in ENGINE_KINDS if kind != "file"]


@pytest.mark.parametrize("engine_kind", COLLIDING)
def test_key_and_directory_collision(session: Engine, mnt: Path, tmp_path: Path) -> None:
    session.set("chat/120363@g.us", "group value")
    session.set("chat/120363@g.us/index", "group index")  # both exist
    sh(f"ls {mnt}")  # let the TTL pass on the next line
    time.sleep(1.2)
    names = sh(f"ls {mnt}/chat/120363@g.us").stdout.split()
    assert names == ["__value__", "index"]
    assert sh(f"cat {mnt}/chat/120363@g.us/__value__").stdout == "group value"
    sh(f"echo -n new value > {mnt}/chat/120363@g.us/__value__")
    assert session.get("chat/120363@g.us") == "new value"
    backup = tmp_path / "b"
    sh(f"cp -a {mnt}/chat {backup}")
    assert (backup / "120363@g.us/__value__").read_text() == "new value"
    sh(f"rm {mnt}/chat/120363@g.us/__value__")
    assert session.get("chat/120363@g.us") is None
    assert session.get("chat/120363@g.us/index") == "group index"


@pytest.mark.parametrize("engine_kind", COLLIDING)
def test_hidden_keys_are_swept_by_rm_r(session: Engine, tmp_path: Path) -> None:
    long_segment = "x" * 300
    hidden = [f"{CHAT}/{long_segment}/raw", f"{CHAT}/message/__value__/raw"]
    for key in hidden:
        session.set(key, "hidden")
    with mounted(session, tmp_path / "mnt") as mnt:
        names = os.listdir(mnt / CHAT)
        assert long_segment not in names
        assert sorted(os.listdir(mnt / CHAT / "message")) == ["A1", "B2"]
        sh(f"rm -r {mnt}/{CHAT}")
    assert [key for key in session.iter_keys("") if key.startswith(CHAT)] == []


def test_file_engine_mount_shows_at_signs_not_the_disk_names(tmp_path: Path) -> None:
    engine = FileEngine(tmp_path / "store")
    engine.set(f"{CHAT}/index", "i")
    with mounted(engine, tmp_path / "mnt") as mnt:
        assert os.listdir(mnt / "chat") == ["5491112345678@s.whatsapp.net"]
        sh(f"echo v > {mnt}/chat/other@g.us")
    assert (tmp_path / "store/chat/other_at_g.us").read_text() == "v\n"


# --- a store that goes away ---------------------------------------------------------------------


def test_redis_down_gives_eio_never_enoent_and_recovers(redis_server, tmp_path: Path) -> None:
    engine = redis_server.engine(prefix="wa:down", timeout=1.0)
    try:
        engine.set_many(SESSION)
        with mounted(engine, tmp_path / "mnt") as mnt:
            assert sh(f"ls {mnt}/chat").stdout.split() == ["120363@g.us", "5491112345678@s.whatsapp.net"]
            redis_server.stop()
            time.sleep(1.5)  # past the TTL: the background rebuild has failed
            started = time.monotonic()
            for command in [f"ls {mnt}/chat", f"cat {mnt}/lid/99@lid", f"ls -R {mnt}"]:
                result = sh(command, check=False)
                assert result.returncode != 0, command
                assert "Input/output error" in result.stderr, (command, result.stderr)
                assert "No such file" not in result.stderr
            assert time.monotonic() - started < 3 * 5.0  # each within the engine's bounded timeout
            redis_server.start()
            engine.set_many(SESSION)  # the restarted server is empty: the bot writes again
            deadline = time.monotonic() + 10
            while sh(f"ls {mnt}/chat", check=False).returncode != 0 and time.monotonic() < deadline:
                time.sleep(0.2)
            assert sh(f"cat {mnt}/lid/99@lid").stdout == SESSION["lid/99@lid"]
    finally:
        if redis_server.pid is None:
            redis_server.start()
        engine.close()
