"""Hand-made chats for the chats view and export tests: every edge case, in the Baileys layout."""

from __future__ import annotations

import base64
import json
import time
from collections import Counter
from typing import Any

from wafs import Engine
from wafs.keys import (
    MessageRef,
    chat_key,
    chat_messages_key,
    contact_key,
    format_messages_index,
    lid_key,
    message_key,
    parse_messages_index,
)

T0 = 1_717_200_000  # 2024-06-01 00:00:00 UTC
ME = "5491100000000@s.whatsapp.net"
ANA = "5491112345678@s.whatsapp.net"
ANA_LID = "111111111111111@lid"
JUAN = "34600111222@s.whatsapp.net"
PEDRO = "5215512345678@s.whatsapp.net"
GROUP = "120363000000000001@g.us"
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(64))
PDF = b"%PDF-1.4\n" + b"x" * 40
OPUS = b"OggS\x00\x02" + b"\x01" * 30
VCARD = "BEGIN:VCARD\nVERSION:3.0\nFN:Pedro\nEND:VCARD"


class ChatBuilder:
    """Collects the keys of chats and writes them with one ``set_many``."""

    def __init__(self) -> None:
        self.data: dict[str, str] = {}
        self.refs: dict[str, list[MessageRef]] = {}

    def message(self, cid: str, mid: str, ts: int, raw: dict[str, Any] | str | None,
                content: bytes | str | None = None, index: dict[str, Any] | None = None) -> None:
        self.refs.setdefault(cid, []).append(MessageRef(ts, mid))
        if raw is not None:
            self.data[message_key(cid, mid, "raw")] = raw if isinstance(raw, str) else json.dumps(raw)
        if content is not None:
            text = content if isinstance(content, str) else base64.b64encode(content).decode("ascii")
            self.data[message_key(cid, mid, "content")] = text
        if index is not None:
            self.data[message_key(cid, mid, "index")] = json.dumps(index)

    def write(self, engine: Engine) -> None:
        for cid, refs in self.refs.items():
            self.data[chat_messages_key(cid)] = format_messages_index(refs)
        engine.set_many(self.data)


def wam(cid: str, mid: str, ts: int, message: dict[str, Any] | None, *, from_me: bool = False,
        participant: str | None = None, push_name: str | None = None, **extra: Any) -> dict[str, Any]:
    """A WAMessage as Baileys serializes it (protobuf JSON: defaults left out)."""
    key: dict[str, Any] = {"remoteJid": cid, "id": mid}
    if from_me:
        key["fromMe"] = True
    if participant:
        key["participant"] = participant
    raw: dict[str, Any] = {"key": key, "messageTimestamp": ts}
    if push_name:
        raw["pushName"] = push_name
    if message is not None:
        raw["message"] = message
    raw.update(extra)
    return raw


def at(n: int) -> int:
    return T0 + 60 * n


def edge_case_session() -> ChatBuilder:
    """A group with every edge case, a 1:1 chat with a saved contact and one named by pushName only."""
    b = ChatBuilder()
    b.data["session/creds"] = json.dumps({"me": {"id": "5491100000000:7@s.whatsapp.net", "name": "Tienda"}})
    b.data[contact_key(ANA)] = json.dumps({"id": ANA, "lid": ANA_LID, "name": "Ana García", "notify": "Ana"})
    b.data[lid_key(ANA_LID)] = ANA
    b.data[chat_key(GROUP)] = json.dumps({"id": GROUP, "name": "Familia",
                                          "participants": [{"id": ANA}, {"id": JUAN}]})
    b.data[chat_key(ANA)] = json.dumps({"id": ANA, "name": "Ana"})
    g = GROUP
    b.message(g, "M01", at(1), wam(g, "M01", at(1), {"conversation": "Hola a todos"}, participant=ANA_LID,
                                   push_name="Anita"))
    b.message(g, "M02", at(2), wam(g, "M02", at(2), {"extendedTextMessage": {
        "text": "line one\nline two\r\nline three"}}, from_me=True))
    b.message(g, "M03", at(3), wam(g, "M03", at(3), {"extendedTextMessage": {
        "text": "Sí, dale", "contextInfo": {"stanzaId": "M01", "participant": ANA,
                                            "quotedMessage": {"conversation": "Hola a todos"}}}},
        participant=JUAN, push_name="Juancho"))
    b.message(g, "M04", at(4), wam(g, "M04", at(4), {"imageMessage": {
        "mimetype": "image/jpeg", "caption": "Mirá esto",
        "jpegThumbnail": {"type": "Buffer", "data": "AQID"}}},
        participant=ANA, push_name="Anita"), content=JPEG)
    b.message(g, "M05", at(5), wam(g, "M05", at(5), {"documentWithCaptionMessage": {"message": {
        "documentMessage": {
            "mimetype": "application/pdf", "fileName": "Presupuesto 2024/v2.pdf",
            "caption": "el presupuesto"}}}},
        participant=ANA), content=PDF)
    b.message(g, "M06", at(6), wam(g, "M06", at(6), None, participant=JUAN, push_name="Juancho",
                                   messageStubType="REVOKE"))
    b.message(g, "M07", at(7), "{not json", index={"id": "M07", "from": JUAN, "fromMe": False})
    b.message(g, "M08", at(8), None, index={"id": "M08", "from": ME, "fromMe": True})
    b.message(g, "M09", at(9), wam(g, "M09", at(9), {"newFancyMessage": {"x": 1}}, participant=JUAN,
                                   push_name="Juancho"))
    b.message(g, "M10", at(10), wam(g, "M10", at(10),
                                    {"reactionMessage": {"key": {"id": "M01"}, "text": "❤️"}},
                                    participant=JUAN))
    b.message(g, "M11", at(11), wam(g, "M11", at(11), {"conversation": "oops, wrong chat"}, from_me=True))
    b.message(g, "M12", at(12), wam(g, "M12", at(12),
                                    {"protocolMessage": {"key": {"id": "M11", "fromMe": True}}},
                                    from_me=True))
    b.message(g, "M13", at(13), wam(g, "M13", at(13), {"protocolMessage": {
        "type": 14, "key": {"id": "M01"}, "editedMessage": {"conversation": "Hola a todos!!"}}},
        participant=ANA_LID))
    b.message(g, "M14", at(14), wam(g, "M14", at(14), {"audioMessage": {
        "mimetype": "audio/ogg; codecs=opus", "ptt": True, "seconds": 3}}, from_me=True), content=OPUS)
    b.message(g, "M15", at(15), wam(g, "M15", at(15), {"stickerMessage": {"mimetype": "image/webp"}},
                                    participant=JUAN, push_name="Juancho"))
    b.message(g, "M16", at(16), wam(g, "M16", at(16), {"imageMessage": {"mimetype": "image/jpeg"}},
                                    participant=ANA), content="not base64 at all!")
    b.message(g, "M17", at(17), wam(g, "M17", at(17), None, participant=ANA, messageStubType=27,
                                    messageStubParameters=[JUAN]))
    b.message(g, "M18", at(18), wam(g, "M18", at(18), {"ephemeralMessage": {"message": {
        "extendedTextMessage": {"text": "efímero"}}}, "messageContextInfo": {}}, participant=JUAN,
        push_name="Juancho"))
    b.message(g, "M19", at(19), wam(g, "M19", at(19), {"locationMessage": {
        "degreesLatitude": -34.6037, "degreesLongitude": -58.3816}}, participant=ANA))
    b.message(g, "M20", at(20), wam(g, "M20", at(20), {"contactMessage": {
        "displayName": "Pedro", "vcard": VCARD}}, from_me=True))
    b.message(g, "M21", at(21), wam(g, "M21", at(21), {"imageMessage": {"mimetype": "image/jpeg"}},
                                    participant=JUAN), content=JPEG)

    b.message(ANA, "A1", at(30), wam(ANA, "A1", at(30), {"conversation": "Hola Ana"}, from_me=True))
    b.message(ANA, "A2", at(31), wam(ANA, "A2", at(31), {"conversation": "Hola!"}, push_name="Anita"))
    b.message(PEDRO, "P1", at(40), wam(PEDRO, "P1", at(40), {"conversation": "Buenas"}, push_name="Pedro P."))
    return b


GROUP_FOLDER = "Familia"
ANA_FOLDER = "Ana García (5491112345678)"
PEDRO_FOLDER = "Pedro P. (5215512345678)"
GROUP_TRANSCRIPT = """\
[01/06/2024, 00:01:00] Ana García: Hola a todos!! <This message was edited>
[01/06/2024, 00:02:00] You: line one
line two
line three
[01/06/2024, 00:03:00] Juancho: Sí, dale
[01/06/2024, 00:04:00] Ana García: IMG-20240601-WA0000.jpg (file attached)
Mirá esto
[01/06/2024, 00:05:00] Ana García: DOC-20240601-WA0000-Presupuesto 2024_v2.pdf (file attached)
el presupuesto
[01/06/2024, 00:06:00] Juancho: This message was deleted
[01/06/2024, 00:07:00] +34600111222: <unreadable message M07: raw is not JSON (Expecting property name \
enclosed in double quotes at line 1 column 2)>
[01/06/2024, 00:08:00] You: <unreadable message M08: raw is missing>
[01/06/2024, 00:09:00] Juancho: <unsupported message M09: newFancyMessage>
[01/06/2024, 00:11:00] You: You deleted this message
[01/06/2024, 00:14:00] You: PTT-20240601-WA0000.opus (file attached)
[01/06/2024, 00:15:00] Juancho: <Media omitted>
[01/06/2024, 00:16:00] Ana García: <media of message M16 cannot be decoded: content is not base64>
[01/06/2024, 00:17:00] Familia: Ana García added +34600111222
[01/06/2024, 00:18:00] Juancho: efímero
[01/06/2024, 00:19:00] Ana García: location: https://maps.google.com/?q=-34.6037,-58.3816
[01/06/2024, 00:20:00] You: Pedro.vcf (file attached)
[01/06/2024, 00:21:00] +34600111222: IMG-20240601-WA0001.jpg (file attached)
"""
GROUP_MEDIA = {
    "IMG-20240601-WA0000.jpg": JPEG,
    "DOC-20240601-WA0000-Presupuesto 2024_v2.pdf": PDF,
    "PTT-20240601-WA0000.opus": OPUS,
    "Pedro.vcf": VCARD.encode(),
    "IMG-20240601-WA0001.jpg": JPEG,
}


def expected_lines(engine: Engine, cid: str) -> list[tuple[str, str]]:
    """(sender, text) of every message of a demo chat, straight from the store (an independent reading)."""
    refs = list(reversed(parse_messages_index(engine.get(chat_messages_key(cid)))))
    contacts = {key.split("/")[1]: json.loads(value) for key, value in engine.items("contact/")}
    lines, counters = [], Counter[str]()
    for ref in refs:
        raw = json.loads(engine.get(message_key(cid, ref.mid, "raw")) or "")
        if raw["key"]["fromMe"]:
            sender = "You"
        else:
            sender = contacts[raw["key"].get("participant", cid)]["name"]
        message = {k: v for k, v in raw["message"].items() if k != "messageContextInfo"}
        [(kind, body)] = message.items()
        if kind == "conversation":
            text = body
        elif kind == "extendedTextMessage":
            text = body["text"]
        else:
            prefix = {"imageMessage": "IMG", "videoMessage": "VID", "stickerMessage": "STK",
                      "documentMessage": "DOC", "audioMessage": "PTT"}[kind]
            day = time.strftime("%Y%m%d", time.gmtime(ref.timestamp))
            number = counters[prefix + day]
            counters[prefix + day] += 1
            ext = {"IMG": ".jpg", "VID": ".mp4", "STK": ".webp", "PTT": ".opus"}.get(prefix, "")
            name = f"{prefix}-{day}-WA{number:04d}" + ("-" + body["fileName"] if prefix == "DOC" else ext)
            text = f"{name} (file attached)" + (f"\n{body['caption']}" if "caption" in body else "")
        lines.append((sender, text))
    return lines
