"""``wafs mount --view chats``: real mounts of demo sessions, read with real ls, cat, grep, tail -f.

Two stores: a FileEngine (no change feed: the daemon renders again every ``--ttl``) and Redis
with keyspace notifications (the feed). A second client, the bot, writes messages as
``wafs.demo`` lays them out (a message's ``index``, ``raw`` and ``content``, then the chat's
``messages`` index); what the mount shows is compared with a :class:`ChatsView` of the store
made afresh. Every wait has a deadline; the measured times are printed (``pytest -s``) and
are the figures in docs/chats.md ("Live view").
"""

from __future__ import annotations

import errno
import json
import os
import select
import subprocess
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from wafs import Engine, FileEngine, MemoryEngine
from wafs.chats import ChatOptions, ChatsView
from wafs.demo import write_demo
from wafs.engines.redis import RedisEngine
from wafs.keys import (
    MessageRef,
    chat_key,
    chat_messages_key,
    contact_key,
    format_messages_index,
    message_key,
    parse_messages_index,
)
from wafs.mount import MountOptions, mounted_at
from wafs.mount.chats import ChatsOperations
from wafs.mount.fuse import ROOT_INO, FuseError

from .helpers import absent, cat, ls, wait_for
from .mounting import daemon_mounted, environment, mounted, sh, wafs
from .servers import RedisServer, running_redis, stop_the_run_if_missing

UTC = ChatOptions(timezone="UTC")
#: What one check may take beyond the change itself: the daemon rendering the chat again, a
#: command starting, the machine being busy.
SLACK = 0.5
#: GNU tail -f on a FUSE mount polls (no inotify there): it looks at the file once a second.
TAIL_SECONDS = 1.0
POLL_TTL = 1.0
FEED_TTL = 60.0  # with the feed, a change can only show up in time through an event
#: The visibility bounds of each store (docs/chats.md, "Live view"). A new message: the feed's
#: event latency, or (no feed) the TTL of the look at every chat's messages index. Any other
#: change (a new chat, a renamed contact): the feed again, or the full pass, due every
#: max(TTL, 10 x one pass), plus one pass over this small store.
BOUND = {"redis": SLACK, "file": POLL_TTL + SLACK}
OTHER_BOUND = {"redis": SLACK, "file": 2 * POLL_TTL + 1.0}
#: The first bytes of each demo media kind (wafs.demo.MEDIA).
MAGIC = {".jpg": b"\xff\xd8\xff", ".opus": b"OggS", ".pdf": b"%PDF", ".mp4": b"\x00\x00\x00\x18ftyp",
         ".webp": b"RIFF"}


@dataclass
class Live:
    kind: str
    mnt: Path
    bot: Engine  # another client of the same store
    bound: float  # for a new message
    other_bound: float  # for any other change

    def view(self) -> ChatsView:
        """The chats as a fresh view of the store renders them now."""
        return ChatsView(self.bot, UTC)


def set_notifications(server: RedisServer, flags: str) -> None:
    client = server.client()
    try:
        client.config_set("notify-keyspace-events", flags)
    finally:
        client.close()


def subscribers(server: RedisServer) -> int:
    client = server.client()
    try:
        return sum(c.get("psub") == "1" for c in client.client_list(_type="pubsub"))
    finally:
        client.close()


@pytest.fixture(params=["file", "redis"])
def live(request: pytest.FixtureRequest, tmp_path: Path, prefix: str) -> Iterator[Live]:
    """A demo session mounted with ``--view chats``, and the bot writing to its store."""
    kind = request.param
    if kind == "file":
        engine: Engine = FileEngine(tmp_path / "store")
        bot: Engine = FileEngine(tmp_path / "store")
        ttl = POLL_TTL
    else:
        server = request.getfixturevalue("redis_server")
        set_notifications(server, "")
        query = urllib.parse.urlencode({"prefix": prefix, "notifications": "enable"})
        engine = RedisEngine.from_url(f"{server.url}?{query}")
        bot = server.engine(prefix=prefix)
        ttl = FEED_TTL
    # The session is written without fsync (a FileEngine syncs its disk on every batch); the
    # bot's own messages below are written as a bot writes them.
    write_demo(FileEngine(tmp_path / "store", fsync=False) if kind == "file" else bot, chats=6, messages=12,
               seed=16)
    try:
        with mounted(engine, tmp_path / "mnt", view="chats", chat_options=UTC, ttl=ttl) as mnt:
            if kind == "redis":
                assert subscribers(server) == 1  # the mount follows the feed
            yield Live(kind, mnt, bot, BOUND[kind], OTHER_BOUND[kind])
    finally:
        engine.close()
        bot.close()
        if kind == "redis":
            set_notifications(server, "")


# --- what the bot writes --------------------------------------------------------------------------


def new_mid() -> str:
    return "3EB0" + uuid.uuid4().hex[:18].upper()


def store_message(bot: Engine, cid: str, message: dict[str, object], *, from_me: bool = True,
                  text: str | None = None) -> str:
    """Store one message as Baileys (and wafs.demo) lays it out; returns its id."""
    mid = new_mid()
    index = parse_messages_index(bot.get(chat_messages_key(cid)))
    timestamp = max([int(time.time())] + [ref.timestamp + 1 for ref in index])
    key = {"remoteJid": cid, "fromMe": from_me, "id": mid}
    raw = {"key": key, "messageTimestamp": timestamp, "pushName": "Tienda", "message": message}
    bot.set_many({
        message_key(cid, mid, "index"): json.dumps({"id": mid, "cid": cid, "fromMe": from_me,
                                                   "timestamp": timestamp, "type": "text", "text": text}),
        message_key(cid, mid, "raw"): json.dumps(raw),
        message_key(cid, mid, "content"): text or "",
    })
    bot.set(chat_messages_key(cid), format_messages_index([*index, MessageRef(timestamp, mid)]))
    return mid


def say(bot: Engine, cid: str, text: str) -> str:
    return store_message(bot, cid, {"conversation": text}, text=text)


def revoke(bot: Engine, cid: str, target: str) -> str:
    """Delete message ``target`` for everyone: a later REVOKE protocol message."""
    return store_message(bot, cid, {"protocolMessage": {"key": {"remoteJid": cid, "id": target}, "type": 0}})


def transcript_path(mnt: Path, folder: str) -> Path:
    return mnt / folder / f"{folder}.txt"


# --- reading ----------------------------------------------------------------------------------------


def test_ls_shows_one_folder_per_chat_and_its_files(live: Live) -> None:
    view = live.view()
    folders = [info.folder for info in view.chats()]
    assert len(folders) == 6
    assert ls(live.mnt) == folders
    files = view.files()
    for folder in folders:
        assert ls(live.mnt / folder) == sorted(path.split("/", 1)[1] for path in files
                                               if path.startswith(folder + "/"))
    found = sh(f"cd '{live.mnt}' && find . -type f | sort").stdout.splitlines()
    assert found == sorted(f"./{path}" for path, info in files.items() if info.kind != "dir")


def test_cat_gives_the_views_bytes_and_stat_their_sizes_and_times(live: Live) -> None:
    view = live.view()
    media = 0
    for path, info in view.files().items():
        target = live.mnt / path
        stat = os.stat(target)
        assert int(stat.st_mtime) == int(info.mtime), path  # the newest message's time
        if info.kind == "dir":
            continue
        data = subprocess.run(["cat", str(target)], capture_output=True, check=True, timeout=30).stdout
        assert data == view.read(path), path
        assert stat.st_size == info.size == len(data), path
        assert stat.st_mode & 0o777 == 0o400
        if info.kind == "media":
            media += 1
            assert data.startswith(MAGIC[target.suffix]), path  # decoded from the base64 content
    assert media > 0


def test_grep_r_finds_message_text(live: Live) -> None:
    view = live.view()
    first = view.chats()[0]
    line = view.render(first.cid).lines[-1]
    needle = line.text.splitlines()[-1][:30]
    expected = sorted(f"{live.mnt}/{path}" for path, info in view.files().items()
                      if info.kind != "dir" and needle.encode() in view.read(path))
    assert f"{live.mnt}/{first.folder}/{first.transcript}" in expected
    found = sh(f"grep -rlF -- '{needle}' '{live.mnt}'").stdout.splitlines()
    assert sorted(found) == expected


def test_the_view_is_read_only(live: Live) -> None:
    folder = live.view().chats()[0].folder
    for command in [f"touch '{live.mnt}/new.txt'", f"echo x >> '{transcript_path(live.mnt, folder)}'",
                    f"rm '{transcript_path(live.mnt, folder)}'", f"mkdir '{live.mnt}/x'"]:
        result = sh(command, check=False)
        assert result.returncode != 0 and "Read-only file system" in result.stderr, (command, result.stderr)
    assert "ro" in next(line for line in Path("/proc/self/mounts").read_text().splitlines()
                        if f" {live.mnt} " in line).split()[3].split(",")


# --- live -------------------------------------------------------------------------------------------


class Tail:
    """A real ``tail -n0 -f FILE`` and what it printed so far."""

    def __init__(self, path: Path) -> None:
        self.process = subprocess.Popen(["tail", "-n0", "-f", str(path)], stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, env=environment())
        self.output = b""

    def printed(self, text: str) -> bool:
        assert self.process.stdout is not None
        while select.select([self.process.stdout], [], [], 0)[0]:
            chunk = os.read(self.process.stdout.fileno(), 65536)
            if not chunk:
                break
            self.output += chunk
        assert self.process.poll() is None, "tail exited"
        return text.encode() in self.output

    def stop(self) -> None:
        self.process.kill()
        self.process.wait(10)


def test_a_message_from_the_bot_shows_at_the_end_of_the_transcript_in_tail_f(live: Live) -> None:
    view = live.view()
    chat = view.chats()[1]
    path = transcript_path(live.mnt, chat.folder)
    before = path.read_bytes()
    ino = os.stat(path).st_ino
    tail = Tail(path)
    try:
        time.sleep(TAIL_SECONDS + 0.2)  # tail has read to the end and polls
        for round_ in range(3):
            text = f"pedido {round_} listo {uuid.uuid4().hex[:6]}"
            say(live.bot, chat.cid, text)
            wait_for(f"{live.kind}: a new message in tail -f (round {round_})",
                     lambda text=text: tail.printed(text), live.bound + TAIL_SECONDS)
    finally:
        tail.stop()
    after = live.view().read(f"{chat.folder}/{chat.transcript}")
    assert after.startswith(before)
    assert tail.output == after[len(before):]  # tail printed exactly the new lines
    assert path.read_bytes() == after
    assert os.stat(path).st_ino == ino  # it only grew: the same file
    assert os.stat(path).st_size == len(after)


def test_a_new_chat_and_a_new_message_show_within_the_bound(live: Live) -> None:
    cid = "5491177778888@s.whatsapp.net"
    assert ls(live.mnt / "Zoe Nueva (5491177778888)", expect=errno.ENOENT) is None  # a negative entry
    live.bot.set(chat_key(cid), json.dumps({"id": cid, "name": "Zoe Nueva"}))
    say(live.bot, cid, "hola, soy nueva")
    folder = "Zoe Nueva (5491177778888)"
    wait_for(f"{live.kind}: a new chat (ls)", lambda: folder in ls(live.mnt), live.other_bound)
    wait_for(f"{live.kind}: its first message (cat)",
             lambda: "hola, soy nueva" in (cat(transcript_path(live.mnt, folder), expect=errno.ENOENT) or ""),
             live.bound)
    assert cat(transcript_path(live.mnt, folder)).encode() == live.view().read(f"{folder}/{folder}.txt")


def test_a_renamed_contact_renames_the_folder_within_the_bound(live: Live) -> None:
    """Not a message: the feed's contact key event, or (no feed) the full pass, finds it."""
    view = live.view()
    chat = next(info for info in view.chats() if not info.is_group)
    number = chat.cid.split("@")[0]
    old = transcript_path(live.mnt, chat.folder)
    old_ino = os.stat(old).st_ino
    before = old.read_bytes()
    contact = json.loads(live.bot.get(contact_key(chat.cid)) or "{}")
    live.bot.set(contact_key(chat.cid), json.dumps({**contact, "name": "Renata Renombrada"}))
    folder = f"Renata Renombrada ({number})"
    # A listing read for the first time may show the change a few milliseconds before the
    # kernel has dropped the old names (docs/chats.md): wait for both.
    wait_for(f"{live.kind}: a renamed chat (ls; the old name gone)",
             lambda: folder in ls(live.mnt) and chat.folder not in ls(live.mnt) and absent(old),
             live.other_bound)
    assert absent(live.mnt / chat.folder)
    new = transcript_path(live.mnt, folder)
    assert new.read_bytes() == live.view().read(f"{folder}/{folder}.txt")
    assert new.read_bytes().replace(b"Renata Renombrada", chat.title.encode()) == before
    assert os.stat(new).st_ino != old_ino


def test_a_reader_holding_the_transcript_open_reads_one_value(live: Live) -> None:
    """A change that is not an append gives the path a new inode; an open one keeps its bytes."""
    view = live.view()
    chat = view.chats()[2]
    rendered = view.render(chat.cid)
    target = next(line for line in rendered.lines
                  if line.mid and not line.placeholder and "deleted" not in line.text)
    path = transcript_path(live.mnt, chat.folder)
    old = path.read_bytes()
    fd = os.open(path, os.O_RDONLY)
    try:
        start = os.read(fd, 40)
        ino = os.fstat(fd).st_ino
        revoke(live.bot, chat.cid, target.mid or "")
        new = live.view().read(f"{chat.folder}/{chat.transcript}")
        assert b"deleted" in new and not new.startswith(old)  # not an append
        wait_for(f"{live.kind}: a revoked message (cat)", lambda: cat(path).encode() == new, live.bound)
        rest = b""
        while chunk := os.read(fd, 7):
            rest += chunk
        assert start + rest == old  # the open file is the version it was opened at, whole
        assert os.fstat(fd).st_ino == ino != os.stat(path).st_ino  # the path is a new file
    finally:
        os.close(fd)
    assert path.read_bytes() == new

    # An append keeps the file: an open reader reads on into the new lines.
    fd = os.open(path, os.O_RDONLY)
    try:
        assert os.read(fd, len(new) + 100) == new
        say(live.bot, chat.cid, "y una cosa más")
        wait_for(f"{live.kind}: the open file grew (fstat)", lambda: os.fstat(fd).st_size > len(new),
                 live.bound)
        more = os.read(fd, 1 << 16)
    finally:
        os.close(fd)
    assert new + more == live.view().read(f"{chat.folder}/{chat.transcript}")
    assert more.endswith("You: y una cosa más\n".encode())


# --- a store that is down ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def private_redis(request: pytest.FixtureRequest) -> Iterator[RedisServer]:
    """A redis-server of this module only: it is stopped here."""
    with stop_the_run_if_missing(request), running_redis() as server:
        yield server


def test_a_store_that_is_down_gives_eio_never_enoent_and_the_view_recovers(
        private_redis: RedisServer, tmp_path: Path) -> None:
    engine = private_redis.engine(prefix="wa:chats-down", timeout=1.0)
    try:
        write_demo(engine, chats=3, messages=5, seed=2)
        folders = [info.folder for info in ChatsView(engine, UTC).chats()]
        with mounted(engine, tmp_path / "mnt", view="chats", chat_options=UTC, ttl=POLL_TTL) as mnt:
            assert ls(mnt) == folders
            transcript = transcript_path(mnt, folders[0])
            assert cat(transcript)
            private_redis.stop()
            time.sleep(POLL_TTL + 1.5)  # a pass failed, the kernel's names and attributes expired
            started = time.monotonic()
            for command in [f"ls '{mnt}'", f"ls '{mnt}/{folders[1]}'", f"cat '{transcript}'",
                            f"grep -r x '{mnt}'", f"ls -lR '{mnt}'"]:
                result = sh(command, check=False)
                assert result.returncode != 0, (command, result.stdout)
                assert "Input/output error" in result.stderr, (command, result.stderr)
                assert "No such file" not in result.stderr, (command, result.stderr)
            print(f"5 commands failed with EIO in {time.monotonic() - started:.1f} s")
            private_redis.start()
            write_demo(engine, chats=3, messages=5, seed=2)  # the restarted server is empty
            wait_for("the view after the store came back (ls)",
                     lambda: ls(mnt, expect=errno.EIO) == folders, POLL_TTL + 5.0)
            assert cat(transcript).encode() == ChatsView(engine, UTC).read(f"{folders[0]}/{folders[0]}.txt")
    finally:
        if private_redis.pid is None:
            private_redis.start()
        engine.close()


# --- the command line -------------------------------------------------------------------------------


def test_wafs_mount_view_chats_serves_the_transcripts(tmp_path: Path) -> None:
    store = tmp_path / "store"
    write_demo(FileEngine(store, fsync=False), chats=3, messages=4, seed=5)
    view = ChatsView(FileEngine(store), ChatOptions(locale="en_US", timezone="UTC"))
    mnt = tmp_path / "chats"
    with daemon_mounted(mnt, f"file://{store}", "--view", "chats", "--locale", "en_US", "--timezone", "UTC"):
        assert (mounted_at(mnt) or "").startswith("fuse")
        assert ls(mnt) == [info.folder for info in view.chats()]
        folder = view.chats()[0].folder
        assert cat(transcript_path(mnt, folder)).encode() == view.read(f"{folder}/{folder}.txt")
        assert "wafs:chats:FileEngine" in Path("/proc/self/mounts").read_text()
    refused = wafs("mount", str(tmp_path / "other"), "--engine", f"file://{store}", "--timezone", "UTC",
                   check=False)
    assert refused.returncode != 0 and "--view chats" in refused.stderr
    bad = wafs("mount", str(tmp_path / "other"), "--view", "chats", "--timezone", "Mars/Olympus", check=False)
    assert bad.returncode != 0 and "unknown time zone" in bad.stderr


def test_mount_options_choose_the_view() -> None:
    assert MountOptions().view == "raw"
    assert MountOptions(view="chats", chat_options=UTC).chat_options.timezone == "UTC"


# --- the rules, without a kernel: what the daemon tells it, in what order -------------------------


class Recorder:
    """Stands for the FUSE session: records every notification; ``known`` is what
    ``invalidate_inode`` answers (False: the kernel does not hold the inode yet)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int, object]] = []
        self.known = True

    def invalidate_inode(self, ino: int, offset: int = 0, length: int = 0) -> bool:
        self.calls.append(("inode", ino, offset))
        return self.known

    def invalidate_entry(self, parent: int, name: bytes) -> bool:
        self.calls.append(("entry", parent, name.decode()))
        return True


@dataclass
class Rules:
    engine: Engine
    ops: ChatsOperations
    kernel: Recorder

    def told(self) -> list[tuple[str, int, object]]:
        """Everything told so far (the queued notifications too), then forgotten."""
        done = threading.Event()
        self.ops.kernel.after(done.set)
        assert done.wait(5)
        calls, self.kernel.calls = self.kernel.calls, []
        return calls

    def bot_wrote(self, *keys: str) -> None:
        """The feed reports ``keys`` and the change thread does its work."""
        for key in keys:
            self.ops._changed_outside(key, False)
        self.ops._apply_pending()

    def folder(self, name: str) -> int:
        entry = self.ops.lookup(ROOT_INO, name.encode())
        assert entry.attributes is not None
        return entry.attributes.ino

    def file(self, folder: int, name: str) -> int:
        entry = self.ops.lookup(folder, name.encode())
        assert entry.attributes is not None
        return entry.attributes.ino


@pytest.fixture
def rules() -> Iterator[Rules]:
    engine = MemoryEngine()
    write_demo(engine, chats=3, messages=6, seed=7)
    ops = ChatsOperations(engine, MountOptions(view="chats", chat_options=UTC))
    ops.load()  # no start(): the test plays the change thread
    kernel = Recorder()
    ops.kernel.attach(kernel)
    try:
        yield Rules(engine, ops, kernel)
    finally:
        ops.kernel.detach()


def message_keys(engine: Engine, cid: str, mid: str) -> list[str]:
    return [message_key(cid, mid, part) for part in ("index", "raw", "content")] + [chat_messages_key(cid)]


def test_rules_a_grown_transcript_keeps_its_inode_and_only_its_attributes_are_dropped(rules: Rules) -> None:
    chat = ChatsView(rules.engine, UTC).chats()[0]
    folder = rules.folder(chat.folder)
    ino = rules.file(folder, chat.transcript)
    old = rules.ops.read(ino, 1 << 20, 0, 0)
    rules.told()
    mid = say(rules.engine, chat.cid, "hola de nuevo")
    rules.bot_wrote(*message_keys(rules.engine, chat.cid, mid))
    told = rules.told()
    assert ("inode", ino, -1) in told  # attributes only, at once
    assert ("inode", folder, -1) in told  # the folder's mtime moved; its names did not
    assert not [call for call in told if call[0] == "entry" or call[2] == 0]
    assert rules.file(folder, chat.transcript) == ino
    new = rules.ops.read(ino, 1 << 20, 0, 0)
    assert new.startswith(old) and new.endswith(b"You: hola de nuevo\n")
    assert rules.ops.getattr(ino, None)[0].size == len(new)


def test_rules_any_other_change_is_a_new_inode_and_the_old_one_keeps_its_bytes(rules: Rules) -> None:
    view = ChatsView(rules.engine, UTC)
    chat = view.chats()[1]
    target = next(line.mid for line in view.render(chat.cid).lines if line.mid)
    folder = rules.folder(chat.folder)
    ino = rules.file(folder, chat.transcript)
    old = rules.ops.read(ino, 1 << 20, 0, 0)
    rules.told()
    mid = revoke(rules.engine, chat.cid, target or "")
    rules.bot_wrote(*message_keys(rules.engine, chat.cid, mid))
    told = rules.told()
    assert ("entry", folder, chat.transcript) in told
    assert ("inode", ino, -1) not in told
    new_ino = rules.file(folder, chat.transcript)
    assert new_ino != ino
    assert rules.ops.read(ino, 1 << 20, 0, 0) == old  # the old version, whole
    assert rules.ops.read(new_ino, 1 << 20, 0, 0) == ChatsView(rules.engine, UTC).read(
        f"{chat.folder}/{chat.transcript}")


def test_rules_a_renamed_chat_drops_its_names_before_the_listing(rules: Rules) -> None:
    chat = next(info for info in ChatsView(rules.engine, UTC).chats() if not info.is_group)
    folder = rules.folder(chat.folder)
    transcript = rules.file(folder, chat.transcript)
    rules.told()
    contact = json.loads(rules.engine.get(contact_key(chat.cid)) or "{}")
    rules.engine.set(contact_key(chat.cid), json.dumps({**contact, "name": "Otro Nombre"}))
    rules.bot_wrote(contact_key(chat.cid))
    told = rules.told()
    dropped = told.index(("entry", ROOT_INO, chat.folder))
    new_name = told.index(("entry", ROOT_INO, f"Otro Nombre ({chat.cid.split('@')[0]})"))  # a negative entry
    listing = told.index(("inode", ROOT_INO, 0))
    assert dropped < listing and new_name < listing
    assert ("entry", folder, chat.transcript) in told[:listing]
    assert rules.ops.lookup(ROOT_INO, chat.folder.encode()).attributes is None
    assert rules.ops.read(transcript, 1 << 20, 0, 0)  # the old file still reads, for who holds it
    assert not rules.ops.inodes.get(folder).current  # type: ignore[union-attr]


def test_rules_a_change_the_kernel_missed_is_told_again(rules: Rules) -> None:
    chat = ChatsView(rules.engine, UTC).chats()[2]
    ino = rules.file(rules.folder(chat.folder), chat.transcript)
    rules.kernel.known = False  # the reply that makes the inode is still on its way
    mid = say(rules.engine, chat.cid, "¿llegó?")
    rules.bot_wrote(*message_keys(rules.engine, chat.cid, mid))
    inode = rules.ops.inodes.get(ino)
    assert inode is not None and inode.unsure
    rules.told()
    rules.kernel.known = True
    rules.ops._tell_unsure()
    assert ("inode", ino, -1) in rules.told()
    assert not inode.unsure and not rules.ops._unsure


def test_rules_forget_drops_what_the_daemon_kept(rules: Rules) -> None:
    view = ChatsView(rules.engine, UTC)
    chat, media = next((info, path) for info in view.chats() for path, file in view.files(info.folder).items()
                       if file.kind == "media")
    folder = rules.folder(chat.folder)
    ino = rules.file(folder, media.split("/", 1)[1])
    assert rules.ops.read(ino, 1 << 20, 0, 0) == view.read(media)
    assert rules.ops.media.get(str(ino)) is not None
    rules.ops.forget([(ino, 1)])
    assert rules.ops.inodes.get(ino) is None and rules.ops.media.get(str(ino)) is None
    with pytest.raises(FuseError) as raised:
        rules.ops.read(ino, 10, 0, 0)
    assert raised.value.errno == errno.ESTALE
