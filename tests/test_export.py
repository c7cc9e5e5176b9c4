"""``wafs export`` and wafs.chats.export: files, zips, selection, and an independent parser reading them.

The transcripts are read back with whatstk (PyPI, a maintained parser of WhatsApp's export
files, with its automatic header detection): it must find the same number of messages, the
same senders, times and texts as the store holds.
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from whatstk import WhatsAppChat

from wafs import Engine, FileEngine
from wafs.chats import ChatOptions, ChatsView
from wafs.chats.export import export_chats
from wafs.cli import main
from wafs.demo import write_demo
from wafs.keys import message_key

from .chat_fixtures import (
    GROUP,
    GROUP_FOLDER,
    GROUP_MEDIA,
    GROUP_TRANSCRIPT,
    edge_case_session,
    expected_lines,
)
from .conftest import make_engine

URL_KINDS = ["file", "redis", "postgres"]


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture(params=URL_KINDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Engine, str]:
    """An engine with the demo session, and the --engine URL that opens the same store."""
    kind = request.param
    engine = make_engine(kind, request, tmp_path)
    if kind == "file":
        url = f"file://{tmp_path / 'store'}"
    elif kind == "redis":
        url = f"{request.getfixturevalue('redis_server').url}?prefix={engine.prefix}"
    else:
        url = f"{request.getfixturevalue('postgres_server').url}?table={engine.table}"
    write_demo(engine, chats=8, messages=30, seed=4)
    yield engine, url
    engine.close()


def parsed(path: Path, hformat: str | None = None) -> list[tuple[datetime.datetime, str, str]]:
    """(time, sender, text) of every message whatstk finds in an export file (``.txt`` or ``.zip``)."""
    if hformat:
        chat = WhatsAppChat.from_source(str(path), auto_header=False, hformat=hformat)
    else:
        chat = WhatsAppChat.from_source(str(path))
    return [(row.date.to_pydatetime(), row.username, row.message) for row in chat.df.itertuples()]


def store_lines(engine: Engine, cid: str) -> list[tuple[datetime.datetime, str, str]]:
    view = ChatsView(engine, ChatOptions(timezone="UTC"))
    times = [datetime.datetime.fromtimestamp(line.timestamp, datetime.UTC).replace(tzinfo=None)
             for line in view.render(cid).lines]
    expected = expected_lines(engine, cid)
    return [(when, sender, text) for when, (sender, text) in zip(times, expected, strict=True)]


# --- an independent parser reads what we write ---------------------------------------------------


@pytest.mark.parametrize("locale", ["en_GB", "en_US"])
def test_whatstk_reads_every_exported_chat_as_the_store_holds_it(store: tuple[Engine, str], tmp_path: Path,
                                                                 locale: str) -> None:
    engine, url = store
    result = run("export", str(tmp_path / "out"), "--engine", url, "--locale", locale, "--timezone", "UTC")
    assert result.exit_code == 0, result.output
    view = ChatsView(engine)
    chats = view.chats()
    assert sorted(os.listdir(tmp_path / "out")) == [chat.folder for chat in chats]
    total = 0
    for chat in chats:
        messages = parsed(tmp_path / "out" / chat.folder / chat.transcript)
        assert messages == store_lines(engine, chat.cid)
        total += len(messages)
    assert total == 8 * 30
    assert result.output.startswith(f"exported 8 chats ({total} messages, ")


def test_whatstk_reads_the_edge_cases(engine: Engine, tmp_path: Path) -> None:
    edge_case_session().write(engine)
    view = ChatsView(engine, ChatOptions(timezone="UTC"))
    export_chats(view, tmp_path / "out")
    messages = parsed(tmp_path / "out" / GROUP_FOLDER / f"{GROUP_FOLDER}.txt")
    lines = view.render(GROUP).lines
    assert [(sender, text) for _, sender, text in messages] == [(line.sender, line.text) for line in lines]
    assert len(messages) == 18
    assert messages[1][2] == "line one\nline two\nline three"


def test_whatstk_reads_a_zip_without_media(store: tuple[Engine, str], tmp_path: Path) -> None:
    """The app's 'Without media' zip holds the transcript alone, which whatstk opens directly."""
    engine, url = store
    result = run("export", str(tmp_path), "--engine", url, "--zip", "--no-media", "--timezone", "UTC", "-q")
    assert result.exit_code == 0 and result.output == ""
    chat = next(c for c in ChatsView(engine).chats() if c.is_group)
    path = tmp_path / f"WhatsApp Chat with {chat.folder}.zip"
    assert zipfile.ZipFile(path).namelist() == [f"WhatsApp Chat with {chat.folder}.txt"]
    messages = parsed(path, hformat="[%d/%m/%Y, %H:%M:%S] %name:")
    assert [sender for _, sender, _ in messages] == [sender for _, sender, _ in store_lines(engine, chat.cid)]
    assert any(text.startswith("<Media omitted>") for _, _, text in messages)


# --- files and zips -------------------------------------------------------------------------------


def test_folders_hold_transcript_and_media_with_message_times(engine: Engine, tmp_path: Path) -> None:
    edge_case_session().write(engine)
    report = export_chats(ChatsView(engine, ChatOptions(timezone="UTC")), tmp_path / "out")
    folder = tmp_path / "out" / GROUP_FOLDER
    assert (folder / f"{GROUP_FOLDER}.txt").read_text("utf-8") == GROUP_TRANSCRIPT
    assert sorted(os.listdir(folder)) == sorted([f"{GROUP_FOLDER}.txt", *GROUP_MEDIA])
    for name, data in GROUP_MEDIA.items():
        assert (folder / name).read_bytes() == data
    assert (folder / "IMG-20240601-WA0000.jpg").stat().st_mtime == 1_717_200_240
    assert folder.stat().st_mtime == 1_717_201_260
    counts = (report.chats, report.messages, report.placeholders, report.hidden, report.media)
    assert counts == (3, 21, 4, 3, 5)
    assert not [name for name in os.listdir(folder) if name.startswith(".wafs-")]


def test_zip_is_the_apps_export(engine: Engine, tmp_path: Path) -> None:
    edge_case_session().write(engine)
    out = tmp_path / "out"
    export_chats(ChatsView(engine, ChatOptions(timezone="UTC")), out, as_zip=True)
    assert sorted(os.listdir(out)) == [
        "WhatsApp Chat with Ana García (5491112345678).zip", "WhatsApp Chat with Familia.zip",
        "WhatsApp Chat with Pedro P. (5215512345678).zip"]
    with zipfile.ZipFile(out / "WhatsApp Chat with Familia.zip") as archive:
        assert archive.namelist() == ["WhatsApp Chat with Familia.txt", *GROUP_MEDIA]
        assert archive.read("WhatsApp Chat with Familia.txt").decode() == GROUP_TRANSCRIPT
        for name, data in GROUP_MEDIA.items():
            assert archive.read(name) == data
        assert archive.getinfo("IMG-20240601-WA0000.jpg").date_time == (2024, 6, 1, 0, 4, 0)
        assert archive.testzip() is None


def test_media_bytes_are_the_stored_content(store: tuple[Engine, str], tmp_path: Path) -> None:
    engine, url = store
    assert run("export", str(tmp_path), "--engine", url, "-q").exit_code == 0
    view = ChatsView(engine)
    checked = 0
    for chat in view.chats():
        for media in view.render(chat.cid).media:
            content = engine.get(message_key(chat.cid, media.mid, "content"))
            assert (tmp_path / chat.folder / media.name).read_bytes() == base64.b64decode(content or "")
            index = json.loads(engine.get(message_key(chat.cid, media.mid, "index")) or "{}")
            assert media.size == index["size"]
            checked += 1
    assert checked > 10


def test_export_again_replaces_the_same_files(tmp_path: Path) -> None:
    engine = FileEngine(tmp_path / "store")
    edge_case_session().write(engine)
    url = f"file://{tmp_path / 'store'}"
    for _ in range(2):
        assert run("export", str(tmp_path / "out"), "--engine", url, "--timezone", "UTC", "-q").exit_code == 0
    assert (tmp_path / "out" / GROUP_FOLDER / f"{GROUP_FOLDER}.txt").read_text() == GROUP_TRANSCRIPT
    assert len(os.listdir(tmp_path / "out" / GROUP_FOLDER)) == 1 + len(GROUP_MEDIA)


# --- the command line -----------------------------------------------------------------------------


@pytest.fixture
def edge_url(tmp_path: Path) -> str:
    engine = FileEngine(tmp_path / "store")
    edge_case_session().write(engine)
    return f"file://{tmp_path / 'store'}"


@pytest.mark.parametrize("chat", ["Familia", "familia", GROUP, "5491112345678", "ana garcía",
                                  "Ana García (5491112345678)"])
def test_chat_arguments_pick_by_jid_number_or_name(edge_url: str, tmp_path: Path, chat: str) -> None:
    result = run("export", str(tmp_path / "out"), chat, "--engine", edge_url)
    assert result.exit_code == 0, result.output
    assert len(os.listdir(tmp_path / "out")) == 1
    assert result.output.startswith("exported 1 chat (")


def test_unknown_chat_is_a_user_error(edge_url: str, tmp_path: Path) -> None:
    args = ["export", str(tmp_path / "out"), "Familia", "nobody", "--engine", edge_url]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1
    assert "no chat matches 'nobody'" in result.output
    assert not (tmp_path / "out").exists()


def test_bad_time_zone_is_a_usage_error(edge_url: str, tmp_path: Path) -> None:
    args = ["export", str(tmp_path), "--engine", edge_url, "--timezone", "Mars/Base"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and "unknown time zone 'Mars/Base'" in result.output


def test_placeholders_are_reported_on_stderr(edge_url: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["export", str(tmp_path / "out"), "--engine", edge_url, "-q"])
    assert result.exit_code == 0
    assert result.stdout == ""
    assert result.stderr.startswith("4 messages could not be read or are not supported")


def test_help_shows_an_example() -> None:
    result = run("export", "--help")
    assert result.exit_code == 0 and "wafs export ./chats" in result.output and "--zip" in result.output
