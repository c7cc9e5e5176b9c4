"""The demo session against the key layout of DESIGN §1 (the seed's table)."""

from __future__ import annotations

import base64
import json
import re
import time

import pytest

from wafs import Engine, MemoryEngine, buffer_json
from wafs.demo import demo_items, write_demo
from wafs.keys import parse_messages_index

CHATS, MESSAGES, SEED = 10, 12, 7

LAYOUT = {
    "creds": re.compile(r"session/creds"),
    "signal": re.compile(r"session/(?P<type>[^/]+)/(?P<id>[^/]+)"),
    "contact": re.compile(r"contact/(?P<jid>[^/]+)/index"),
    "lid": re.compile(r"lid/(?P<lid>[^/]+)"),
    "chat": re.compile(r"chat/(?P<cid>[^/]+)/index"),
    "messages": re.compile(r"chat/(?P<cid>[^/]+)/messages"),
    "message": re.compile(r"chat/(?P<cid>[^/]+)/message/(?P<mid>[^/]+)/(?P<part>index|raw|content)"),
}
USER_JID = re.compile(r"\d+@s\.whatsapp\.net")
GROUP_JID = re.compile(r"\d+-\d+@g\.us")
LID = re.compile(r"\d+@lid")
MEDIA_TYPES = {"imageMessage", "audioMessage", "documentMessage", "videoMessage", "stickerMessage"}


@pytest.fixture(scope="module")
def session() -> dict[str, str]:
    engine = MemoryEngine()
    written = write_demo(engine, chats=CHATS, messages=MESSAGES, seed=SEED)
    data = dict(engine.items(""))
    assert written == len(data)
    return data


def _kind(key: str) -> tuple[str, re.Match[str]]:
    matches = [(name, m) for name, pattern in LAYOUT.items() if (m := pattern.fullmatch(key))]
    assert len(matches) == 1, f"{key!r} matches {[name for name, _ in matches]} of the layout"
    return matches[0]


def _chats(session: dict[str, str]) -> list[str]:
    return [m["cid"] for key in session if (m := LAYOUT["chat"].fullmatch(key))]


def test_every_key_matches_one_layout_pattern(session: dict[str, str]) -> None:
    kinds = {_kind(key)[0] for key in session}
    assert kinds == set(LAYOUT)


def test_chats_are_one_to_one_and_groups(session: dict[str, str]) -> None:
    cids = _chats(session)
    assert len(cids) == CHATS
    groups = [cid for cid in cids if GROUP_JID.fullmatch(cid)]
    users = [cid for cid in cids if USER_JID.fullmatch(cid)]
    assert groups and users and len(groups) + len(users) == CHATS
    for cid in cids:
        index = json.loads(session[f"chat/{cid}/index"])
        assert index["id"] == cid
        assert index["type"] == ("group" if cid in groups else "private")
        if cid in groups:
            assert {p["id"] for p in index["participants"]} <= {
                json.loads(session[k])["id"] for k in session if LAYOUT["contact"].fullmatch(k)
            }


def test_messages_index_is_newest_first_and_names_existing_messages(session: dict[str, str]) -> None:
    for cid in _chats(session):
        refs = parse_messages_index(session[f"chat/{cid}/messages"])
        assert len(refs) == MESSAGES
        timestamps = [ref.timestamp for ref in refs]
        assert timestamps == sorted(timestamps, reverse=True)
        stored = {m["mid"] for key in session if (m := LAYOUT["message"].fullmatch(key)) and m["cid"] == cid}
        assert [ref.mid for ref in refs] and {ref.mid for ref in refs} == stored
        assert len(stored) == MESSAGES
        for ref in refs:
            for part in ("index", "raw", "content"):
                assert f"chat/{cid}/message/{ref.mid}/{part}" in session
            raw = json.loads(session[f"chat/{cid}/message/{ref.mid}/raw"])
            assert raw["messageTimestamp"] == ref.timestamp


def test_raw_is_a_wamessage_of_its_chat(session: dict[str, str]) -> None:
    for key, value in session.items():
        kind, m = _kind(key)
        if kind != "message" or m["part"] != "raw":
            continue
        raw = json.loads(value)
        assert raw["key"]["remoteJid"] == m["cid"]
        assert raw["key"]["id"] == m["mid"]
        assert isinstance(raw["key"]["fromMe"], bool)
        assert ("participant" in raw["key"]) == bool(GROUP_JID.fullmatch(m["cid"]))
        assert isinstance(raw["messageTimestamp"], int) and raw["pushName"]
        index = json.loads(session[f"chat/{m['cid']}/message/{m['mid']}/index"])
        assert index["id"] == m["mid"] and index["cid"] == m["cid"]
        assert index["timestamp"] == raw["messageTimestamp"]


def test_content_is_the_text_or_base64_media(session: dict[str, str]) -> None:
    media = texts = 0
    for key, value in session.items():
        kind, m = _kind(key)
        if kind != "message" or m["part"] != "content":
            continue
        raw = buffer_json.loads(session[f"chat/{m['cid']}/message/{m['mid']}/raw"])
        (body_type,) = set(raw["message"]) - {"messageContextInfo"}
        body = raw["message"][body_type]
        if body_type in MEDIA_TYPES:
            media += 1
            data = base64.b64decode(value, validate=True)
            assert base64.b64encode(data).decode() == value
            assert int(body["fileLength"]) == len(data)
            assert isinstance(body["mediaKey"], bytes) and len(body["mediaKey"]) == 32
        elif body_type == "conversation":
            texts += 1
            assert value == body
        else:
            assert body_type == "extendedTextMessage"
            texts += 1
            assert value == body["text"]
    assert media and texts
    assert 0.05 < media / (media + texts) < 0.35


def test_texts_are_greppable(session: dict[str, str]) -> None:
    contents = [v for k, v in session.items() if k.endswith("/content")]
    assert sum("pedido" in text for text in contents) >= 3
    assert any("order" in text or "Hi " in text for text in contents)


def test_lid_mappings_name_existing_contacts(session: dict[str, str]) -> None:
    lids = {m["lid"]: session[key] for key in session if (m := LAYOUT["lid"].fullmatch(key))}
    contacts = {m["jid"] for key in session if (m := LAYOUT["contact"].fullmatch(key))}
    assert lids and len(lids) == len(contacts)
    for lid, jid in lids.items():
        assert LID.fullmatch(lid) and USER_JID.fullmatch(jid)
        assert jid in contacts
        assert json.loads(session[f"contact/{jid}/index"])["lid"] == lid
    for cid in _chats(session):
        if USER_JID.fullmatch(cid):
            assert cid in contacts


def test_session_keys_hold_buffers(session: dict[str, str]) -> None:
    creds = buffer_json.loads(session["session/creds"])
    for name in ("noiseKey", "signedIdentityKey", "pairingEphemeralKeyPair"):
        assert isinstance(creds[name]["private"], bytes) and len(creds[name]["public"]) == 32
    assert isinstance(creds["registrationId"], int)
    assert creds["me"]["id"].endswith("@s.whatsapp.net") and creds["me"]["name"]
    types = {m["type"] for key in session if (m := LAYOUT["signal"].fullmatch(key))}
    assert {"pre-key", "session", "sender-key", "app-state-sync-key"} <= types
    pre_key = buffer_json.loads(session["session/pre-key/1"])
    assert isinstance(pre_key["private"], bytes) and isinstance(pre_key["public"], bytes)


def test_same_seed_same_session_other_seed_other_session() -> None:
    first = list(demo_items(CHATS, MESSAGES, SEED))
    assert first == list(demo_items(CHATS, MESSAGES, SEED))
    other = dict(demo_items(CHATS, MESSAGES, SEED + 1))
    assert set(other) != {key for key, _ in first}


def test_empty_sizes() -> None:
    keys = dict(demo_items(chats=0, messages=0))
    assert "session/creds" in keys and not any(key.startswith("chat/") for key in keys)
    one = dict(demo_items(chats=1, messages=0))
    assert [_kind(key)[0] for key in one if key.startswith("chat/")] == ["chat", "messages"]


def test_written_into_every_engine_kind(engine: Engine) -> None:
    expected = dict(demo_items(chats=3, messages=4, seed=1))
    assert write_demo(engine, chats=3, messages=4, seed=1) == len(expected)
    assert dict(engine.items("")) == expected


@pytest.mark.slow
def test_reference_session_size_and_speed() -> None:
    engine = MemoryEngine()
    started = time.monotonic()
    written = write_demo(engine, chats=200, messages=250)
    seconds = time.monotonic() - started
    size = sum(len(value.encode("utf-8")) for _, value in engine.items(""))
    assert 145_000 <= written <= 160_000
    assert 35e6 <= size <= 45e6
    assert seconds < 60
