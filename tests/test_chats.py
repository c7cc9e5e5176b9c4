"""The chats view (wafs.chats) over every engine kind: transcripts, media, names, cost, live changes."""

from __future__ import annotations

import base64
import json
import os
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

import pytest

from wafs import BackendUnavailableError, Engine, FileEngine, MemoryEngine
from wafs.chats import ChatOptions, ChatsView
from wafs.chats.names import NAME_MAX, ZIP_WRAPPER
from wafs.demo import demo_items, write_demo
from wafs.engine import Kind
from wafs.engines.redis import RedisEngine
from wafs.keys import (
    MessageRef,
    chat_key,
    chat_messages_key,
    format_messages_index,
    message_key,
    parse_messages_index,
)

from .chat_fixtures import (
    ANA,
    ANA_FOLDER,
    GROUP,
    GROUP_FOLDER,
    GROUP_MEDIA,
    GROUP_TRANSCRIPT,
    PEDRO_FOLDER,
    ChatBuilder,
    at,
    edge_case_session,
    expected_lines,
    wam,
)

UTC = ChatOptions(timezone="UTC")


def view_of(engine: Engine, options: ChatOptions = UTC) -> ChatsView:
    return ChatsView(engine, options)


def transcript(view: ChatsView, folder: str) -> str:
    return view.read(f"{folder}/{folder}.txt").decode("utf-8")


# --- hand-made edge cases, on every engine ------------------------------------------------------


def test_edge_cases_render_as_the_app_exports(engine: Engine) -> None:
    edge_case_session().write(engine)
    view = view_of(engine)
    assert [chat.folder for chat in view.chats()] == [ANA_FOLDER, GROUP_FOLDER, PEDRO_FOLDER]
    assert transcript(view, GROUP_FOLDER) == GROUP_TRANSCRIPT
    assert transcript(view, ANA_FOLDER) == (
        "[01/06/2024, 00:30:00] You: Hola Ana\n[01/06/2024, 00:31:00] Ana García: Hola!\n")
    assert transcript(view, PEDRO_FOLDER) == "[01/06/2024, 00:40:00] Pedro P.: Buenas\n"
    files = view.files(GROUP_FOLDER)
    assert {path for path, info in files.items() if info.kind == "media"} == {
        f"{GROUP_FOLDER}/{name}" for name in GROUP_MEDIA}
    for name, data in GROUP_MEDIA.items():
        assert view.read(f"{GROUP_FOLDER}/{name}") == data
        assert files[f"{GROUP_FOLDER}/{name}"].size == len(data)
    assert files[f"{GROUP_FOLDER}/IMG-20240601-WA0000.jpg"].mtime == at(4)
    assert files[GROUP_FOLDER].kind == "dir" and files[GROUP_FOLDER].mtime == at(21)
    stats = view.render(GROUP).stats
    assert (stats.messages, stats.placeholders, stats.hidden, stats.media) == (18, 4, 3, 5)


def test_every_stored_message_is_a_line_or_counted_hidden(engine: Engine) -> None:
    """Nothing is skipped silently: lines + hidden = the messages in the index."""
    b = edge_case_session()
    b.write(engine)
    view = view_of(engine)
    for cid, refs in b.refs.items():
        stats = view.render(cid).stats
        assert stats.messages + stats.hidden == len(refs)


def test_without_media_and_us_locale(engine: Engine) -> None:
    edge_case_session().write(engine)
    view = view_of(engine, ChatOptions(locale="en_US", timezone="America/New_York", media=False))
    text = transcript(view, GROUP_FOLDER)
    assert text.startswith("[5/31/24, 8:01:00 PM] Ana García: Hola a todos!! <This message was edited>\n")
    assert "[5/31/24, 8:04:00 PM] Ana García: <Media omitted>\nMirá esto\n" in text
    assert "(file attached)" not in text
    assert [info.kind for info in view.files(GROUP_FOLDER).values()] == ["dir", "transcript"]


def test_sender_of_unreadable_message_without_index_is_the_chat(engine: Engine) -> None:
    b = ChatBuilder()
    b.data[chat_key(GROUP)] = json.dumps({"subject": "Oficina"})
    b.message(GROUP, "X1", at(1), None)
    b.message(GROUP, "X2", at(2), "[1, 2]")
    b.message(GROUP, "X3", at(3), wam(GROUP, "X3", at(3), {}))
    b.write(engine)
    assert transcript(view_of(engine), "Oficina") == (
        "[01/06/2024, 00:01:00] Oficina: <unreadable message X1: raw is missing>\n"
        "[01/06/2024, 00:02:00] Oficina: "
        "<unreadable message X2: raw is a JSON list, not a WAMessage object>\n"
        "[01/06/2024, 00:03:00] Oficina: <unreadable message X3: raw holds no message and no stub type>\n")


def test_broken_messages_index_lines_are_shown(engine: Engine) -> None:
    engine.set_many({
        chat_key(GROUP): json.dumps({"subject": "Oficina"}),
        chat_messages_key(GROUP): f"{at(2)} B\nnot a line\n{at(1)} A\n",
        message_key(GROUP, "A", "raw"): json.dumps(
            wam(GROUP, "A", at(1), {"conversation": "uno"}, from_me=True)),
        message_key(GROUP, "B", "raw"): json.dumps(
            wam(GROUP, "B", at(2), {"conversation": "dos"}, from_me=True)),
    })
    assert transcript(view_of(engine), "Oficina") == (
        "[01/06/2024, 00:01:00] Oficina: "
        "<unreadable: line 2 of the messages index is not '<timestamp> <id>': 'not a line'>\n"
        "[01/06/2024, 00:01:00] You: uno\n"
        "[01/06/2024, 00:02:00] You: dos\n")


@pytest.mark.parametrize("kind", ["file", "redis"])
def test_value_that_is_not_utf8_is_a_placeholder(kind: str, request: pytest.FixtureRequest, tmp_path) -> None:
    """Bytes another client wrote that are not UTF-8: that one message is a placeholder, the rest renders."""
    if kind == "file":
        engine: Engine = FileEngine(tmp_path / "store")
    else:
        engine = request.getfixturevalue("redis_server").engine(prefix="wa:utf8")
    try:
        edge_case_session().write(engine)
        key = message_key(GROUP, "M03", "raw")
        if isinstance(engine, FileEngine):
            path = os.path.join(str(tmp_path / "store"), key.replace("@", "_at_"))
            with open(path, "wb") as out:
                out.write(b'{"message": {"conversation": "\xff\xfe"}}')
        else:
            assert isinstance(engine, RedisEngine)
            engine.client.set(f"wa:utf8:{key}".encode(), b'{"message": {"conversation": "\xff\xfe"}}')
        text = transcript(view_of(engine), GROUP_FOLDER)
        expected = GROUP_TRANSCRIPT.split("\n")
        assert text.split("\n")[:4] == expected[:4]
        assert text.split("\n")[4].startswith("[01/06/2024, 00:03:00] Familia: <unreadable message M03: "
                                              "raw cannot be read (")
        assert "not UTF-8" in text.split("\n")[4]
        assert text.split("\n")[5:] == expected[5:]
    finally:
        engine.set("chat", None)
        engine.close()


def test_lone_surrogates_and_control_characters_in_names(engine: Engine) -> None:
    b = ChatBuilder()
    b.data[chat_key(GROUP)] = json.dumps({"subject": "AC/DC\x07 fans\n.."})
    b.message(GROUP, "S1", at(1), '{"key": {"participant": "1@s.whatsapp.net"},'
              ' "pushName": "Bad\\nName\\ud800", "message": {"conversation": "x\\udfff"}}')
    b.write(engine)
    view = view_of(engine)
    [chat] = view.chats()
    assert chat.folder == "AC_DC fans .."
    assert transcript(view, chat.folder) == "[01/06/2024, 00:01:00] Bad Name\ufffd: x\ufffd\n"


# --- names --------------------------------------------------------------------------------------


def test_names_unique_sanitized_and_bounded(engine: Engine) -> None:
    long = "ñ" * 300
    subjects = {
        "111@g.us": "Familia", "222@g.us": "familia", "333@g.us": "Fútbol",
        "444@g.us": long, "555@g.us": long, "666@g.us": "", "777@g.us": "Oficina/Ventas",
    }
    b = ChatBuilder()
    for cid, subject in subjects.items():
        b.data[chat_key(cid)] = json.dumps({"subject": subject})
        b.message(cid, "X", at(1), wam(cid, "X", at(1), {"conversation": "hi"}, from_me=True))
    b.data[chat_key("5491199999999@s.whatsapp.net")] = json.dumps({})
    b.message("5491199999999@s.whatsapp.net", "Y", at(1), wam("5491199999999@s.whatsapp.net", "Y", at(1),
                                                              {"conversation": "hi"}))
    b.write(engine)
    view = view_of(engine)
    folders = {chat.cid: chat.folder for chat in view.chats()}
    assert folders["111@g.us"] == "Familia (111)" and folders["222@g.us"] == "familia (222)"
    assert folders["333@g.us"] == "Fútbol" and folders["666@g.us"] == "666"
    assert folders["777@g.us"] == "Oficina_Ventas"
    assert folders["5491199999999@s.whatsapp.net"] == "5491199999999"
    assert folders["444@g.us"].endswith(" (444)") and folders["555@g.us"].endswith(" (555)")
    assert len({name.casefold() for name in folders.values()}) == len(folders)
    for name in folders.values():
        assert len(f"{ZIP_WRAPPER}{name}.zip".encode()) <= NAME_MAX
    assert transcript(view, "5491199999999") == "[01/06/2024, 00:01:00] +5491199999999: hi\n"
    assert all(path.count("/") <= 1 for path in view.files())


def test_same_store_content_same_files_whatever_the_write_order() -> None:
    items = list(demo_items(chats=6, messages=15, seed=3))
    forward, backward = MemoryEngine(), MemoryEngine()
    forward.set_many(dict(items))
    backward.set_many(dict(reversed(items)))
    one, two = view_of(forward), view_of(backward)
    assert one.files() == two.files()
    assert all(one.read(path) == two.read(path) for path, info in one.files().items() if info.kind != "dir")
    again = view_of(forward)
    assert all(again.read(path) == one.read(path) for path, info in one.files().items() if info.kind != "dir")


# --- the demo session: every message is a line -------------------------------------------------


def test_demo_session_every_message_is_a_line(engine: Engine) -> None:
    write_demo(engine, chats=5, messages=25, seed=1)
    view = view_of(engine)
    for chat in view.chats():
        rendered = view.render(chat.cid)
        assert [(line.sender, line.text) for line in rendered.lines] == expected_lines(engine, chat.cid)
        assert rendered.stats.placeholders == 0 and rendered.stats.hidden == 0


# --- cost: store calls per chat do not grow with messages --------------------------------------


class CountingEngine(Engine):
    """Counts every call that reaches the wrapped engine."""

    def __init__(self, inner: Engine) -> None:
        self.inner = inner
        self.calls: Counter[str] = Counter()

    def get(self, key: str) -> str | None:
        self.calls["get"] += 1
        return self.inner.get(key)

    def set(self, key: str, value: str | None) -> None:
        self.calls["set"] += 1
        self.inner.set(key, value)

    def list(self, prefix: str = "", offset: int = 0, limit: int | None = 50) -> list[str]:
        self.calls["list"] += 1
        return self.inner.list(prefix, offset, limit)

    def get_many(self, keys: Iterable[str]) -> dict[str, str | None]:
        self.calls["get_many"] += 1
        return self.inner.get_many(keys)

    def iter_keys(self, prefix: str = "") -> Iterator[str]:
        self.calls["iter_keys"] += 1
        return self.inner.iter_keys(prefix)

    def children(self, directory: str = "") -> dict[str, Kind]:
        self.calls["children"] += 1
        return self.inner.children(directory)

    def sizes(self, keys: Iterable[str]) -> dict[str, int | None]:
        self.calls["sizes"] += 1
        return self.inner.sizes(keys)

    def total(self) -> int:
        return sum(self.calls.values())


@pytest.mark.parametrize("messages", [4, 300])
def test_store_calls_per_chat_do_not_depend_on_messages(engine: Engine, messages: int) -> None:
    write_demo(engine, chats=6, messages=messages, seed=2)
    counting = CountingEngine(engine)
    view = view_of(counting)
    chats = view.chats()
    # children + one get_many of the chat indexes and contacts (+ lids, pushNames)
    assert counting.total() <= 4
    per_chat = []
    for chat in chats:
        before = counting.total()
        view.render(chat.cid)
        per_chat.append(counting.total() - before)
    assert counting.calls["get"] == 0 and counting.calls["list"] == 0
    # messages index, raws, the group's participants' contacts, media contents: 4 at most
    assert max(per_chat) <= 4, per_chat
    before = counting.total()
    view.files()
    assert counting.total() == before  # cached


def test_a_store_that_is_down_raises_never_a_placeholder() -> None:
    class Down(MemoryEngine):
        def get_many(self, keys: Iterable[str]) -> dict[str, str | None]:
            raise BackendUnavailableError("store down")

    engine = Down()
    edge_case_session().write(engine)
    with pytest.raises(BackendUnavailableError):
        view_of(engine).chats()


# --- live: changed() ----------------------------------------------------------------------------


def append(engine: Engine, cid: str, mid: str, ts: int, raw: dict[str, Any],
           content: bytes | None = None) -> list[str]:
    """Write one new message as a bot would; return the keys written."""
    written = {message_key(cid, mid, "raw"): json.dumps(raw)}
    if content is not None:
        written[message_key(cid, mid, "content")] = base64.b64encode(content).decode()
    refs = parse_messages_index(engine.get(chat_messages_key(cid))) + [MessageRef(ts, mid)]
    written[chat_messages_key(cid)] = format_messages_index(refs)
    engine.set_many(written)
    return list(written)


def test_new_message_changes_only_its_chat_and_appends(engine: Engine) -> None:
    edge_case_session().write(engine)
    view = view_of(engine)
    before = {path: view.read(path) for path, info in view.files().items() if info.kind != "dir"}
    written = append(engine, GROUP, "N1", at(50), wam(GROUP, "N1", at(50), {"imageMessage": {
        "mimetype": "image/png", "caption": "nueva"}}, participant=ANA), content=b"\x89PNG....")
    affected = set().union(*(view.changed(key) for key in written))
    assert affected == {GROUP_FOLDER, f"{GROUP_FOLDER}/{GROUP_FOLDER}.txt"}
    after = {path: view.read(path) for path, info in view.files().items() if info.kind != "dir"}
    group = f"{GROUP_FOLDER}/{GROUP_FOLDER}.txt"
    assert after[group] == before[group] + (
        "[01/06/2024, 00:50:00] Ana García: IMG-20240601-WA0002.png (file attached)\nnueva\n").encode()
    assert after.pop(f"{GROUP_FOLDER}/IMG-20240601-WA0002.png") == b"\x89PNG...."
    assert {path: data for path, data in after.items() if path != group} == {
        path: data for path, data in before.items() if path != group}


def test_contact_rename_and_new_chat_affect_names(engine: Engine) -> None:
    edge_case_session().write(engine)
    view = view_of(engine)
    view.files()
    engine.set(f"contact/{ANA}/index", json.dumps({"id": ANA, "name": "Ana G."}))
    affected = view.changed(f"contact/{ANA}/index")
    assert "" in affected and f"{GROUP_FOLDER}/{GROUP_FOLDER}.txt" in affected
    assert f"{ANA_FOLDER}/{ANA_FOLDER}.txt" in affected
    assert "Ana G. (5491112345678)" in {chat.folder for chat in view.chats()}
    assert transcript(view, GROUP_FOLDER).startswith("[01/06/2024, 00:01:00] Ana G.: Hola")
    assert view.changed("session/pre-key/1") == frozenset()
    new = "5491133333333@s.whatsapp.net"
    append(engine, new, "Z1", at(60), wam(new, "Z1", at(60), {"conversation": "hola"}, push_name="Zoe"))
    assert view.changed(chat_messages_key(new)) == {""}
    assert "Zoe (5491133333333)" in {chat.folder for chat in view.chats()}
    engine.set(f"chat/{new}", None)
    assert "" in view.changed(f"chat/{new}")
    assert "Zoe (5491133333333)" not in {chat.folder for chat in view.chats()}


def test_read_of_unknown_paths(engine: Engine) -> None:
    edge_case_session().write(engine)
    view = view_of(engine)
    for path in ("nope", "nope/nope.txt", f"{GROUP_FOLDER}/nope.jpg", f"{GROUP_FOLDER}"):
        with pytest.raises(FileNotFoundError):
            view.read(path)


def test_polls_contacts_system_lines_and_millisecond_times(engine: Engine) -> None:
    b = ChatBuilder()
    b.data[chat_key(GROUP)] = json.dumps({"subject": "Oficina"})
    g = GROUP
    b.message(g, "P1", at(1), wam(g, "P1", at(1), {"pollCreationMessageV3": {
        "name": "¿Pizza?", "options": [{"optionName": "Sí"}, {"optionName": "No"}]}}, from_me=True))
    b.message(g, "P2", at(2), wam(g, "P2", at(2), None, participant=ANA, messageStubType="CIPHERTEXT"))
    b.message(g, "P3", at(3), wam(g, "P3", at(3), None, from_me=True, messageStubType=21,
                                  messageStubParameters=["Oficina 2"]))
    b.message(g, "P4", at(4), wam(g, "P4", at(4), {"contactsArrayMessage": {"contacts": [
        {"displayName": "Ana", "vcard": "BEGIN:VCARD\nFN:Ana\nEND:VCARD"},
        {"displayName": "Ana", "vcard": "BEGIN:VCARD\nFN:Ana 2\nEND:VCARD"}]}}, from_me=True))
    b.message(g, "P5", at(5) * 1000, wam(g, "P5", at(5), None, participant=ANA, messageStubType=32,
                                         messageStubParameters=[ANA]))
    b.message(g, "P6", at(6), wam(g, "P6", at(6), None, participant=ANA, messageStubType=29,
                                  messageStubParameters=[ANA]))
    b.message(g, "P7", at(7), {"key": {"remoteJid": g, "id": "P7", "participant": "999@lid",
                                       "participantAlt": "34600111222@s.whatsapp.net"},
                               "message": {"conversation": "por LID"}})
    b.write(engine)
    view = view_of(engine)
    assert transcript(view, "Oficina") == (
        "[01/06/2024, 00:01:00] You: POLL:\n¿Pizza?\nOPTION: Sí\nOPTION: No\n"
        "[01/06/2024, 00:02:00] +5491112345678: Waiting for this message. This may take a while.\n"
        '[01/06/2024, 00:03:00] Oficina: You changed the subject to "Oficina 2"\n'
        "[01/06/2024, 00:04:00] You: Ana.vcf (file attached)\nAna (2).vcf (file attached)\n"
        "[01/06/2024, 00:05:00] Oficina: +5491112345678 left\n"
        "[01/06/2024, 00:06:00] Oficina: <unsupported message P6: system message GROUP_PARTICIPANT_PROMOTE>\n"
        "[01/06/2024, 00:07:00] +34600111222: por LID\n")
    assert view.read("Oficina/Ana (2).vcf") == b"BEGIN:VCARD\nFN:Ana 2\nEND:VCARD"
