"""What one stored WAMessage says, in a form the transcript can print: no store access here.

:func:`parse` reads the ``raw`` value of a message (a ``WAMessage`` as Baileys serializes it:
``proto.WebMessageInfo`` through ``JSON.stringify`` with ``BufferJSON.replacer``) and returns a
:class:`Parsed`; anything it cannot read raises :class:`Unreadable` with the reason, which the
transcript prints as a placeholder line. Protobuf's JSON leaves out fields at their default
value (``fromMe: false``, ``protocolMessage.type: REVOKE``, ``messageStubType: UNKNOWN``) and
writes enums as a name or a number: both are read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

Kind = Literal["text", "media", "deleted", "system", "hidden", "revoke", "edit", "unsupported"]

#: Wrappers whose ``message`` holds the real content (view once, disappearing messages…).
WRAPPERS = (
    "ephemeralMessage", "viewOnceMessage", "viewOnceMessageV2", "viewOnceMessageV2Extension",
    "documentWithCaptionMessage", "editedMessage", "groupMentionedMessage", "botInvokeMessage",
    "lottieStickerMessage",
)
#: Fields of a ``Message`` that ride along with the content and are not content themselves.
CARRIERS = {
    "messageContextInfo", "senderKeyDistributionMessage", "fastRatchetKeySenderKeyDistributionMessage",
}
#: Messages the app's export leaves out: they change other messages or carry no content.
HIDDEN = {
    "reactionMessage", "encReactionMessage", "pollUpdateMessage", "keepInChatMessage", "pinInChatMessage",
    "senderKeyDistributionMessage", "messageHistoryBundle", "encEventResponseMessage",
}
#: ``{kind}Message`` -> the export's file prefix.
MEDIA_PREFIX = {
    "imageMessage": "IMG", "videoMessage": "VID", "ptvMessage": "VID", "audioMessage": "AUD",
    "stickerMessage": "STK", "documentMessage": "DOC",
}
POLLS = ("pollCreationMessage", "pollCreationMessageV2", "pollCreationMessageV3", "pollCreationMessageV4")
LOCATIONS = ("locationMessage", "liveLocationMessage")

# proto.WebMessageInfo.StubType values this module names.
STUB_NAMES = {
    0: "UNKNOWN", 1: "REVOKE", 2: "CIPHERTEXT", 20: "GROUP_CREATE", 21: "GROUP_CHANGE_SUBJECT",
    22: "GROUP_CHANGE_ICON", 23: "GROUP_CHANGE_INVITE_LINK", 24: "GROUP_CHANGE_DESCRIPTION",
    25: "GROUP_CHANGE_RESTRICT", 26: "GROUP_CHANGE_ANNOUNCE", 27: "GROUP_PARTICIPANT_ADD",
    28: "GROUP_PARTICIPANT_REMOVE", 29: "GROUP_PARTICIPANT_PROMOTE", 30: "GROUP_PARTICIPANT_DEMOTE",
    31: "GROUP_PARTICIPANT_INVITE", 32: "GROUP_PARTICIPANT_LEAVE",
}
# proto.Message.ProtocolMessage.Type values this module acts on.
PROTOCOL_NAMES = {0: "REVOKE", 14: "MESSAGE_EDIT"}


class Unreadable(ValueError):
    """The stored message cannot be read; ``str(exc)`` says why."""


@dataclass(frozen=True)
class Attachment:
    """A file the message carries: media whose bytes are the message's ``content``, or a vCard."""

    prefix: str  # IMG, VID, AUD, PTT, STK, DOC, or VCF (a shared contact)
    mimetype: str
    file_name: str | None = None  # a document's own name, a contact's display name
    inline: bytes | None = None  # bytes carried in the message itself (vCards); else from ``content``


@dataclass
class Parsed:
    """One stored message, read. ``kind`` says how the transcript prints it."""

    kind: Kind
    from_me: bool = False
    sender: str | None = None  # the author's JID: the participant in groups, else the chat
    push_name: str | None = None
    text: str = ""  # the text, or the caption of media
    attachments: list[Attachment] = field(default_factory=list)
    target: str | None = None  # the message a revoke or an edit applies to
    stub: str = ""  # system messages: the stub type's name
    params: list[str] = field(default_factory=list)  # system messages: messageStubParameters
    what: str = ""  # unsupported: the message type
    edited: bool = False  # an edit replaced the text


def _enum(value: object, names: dict[int, str], default: int = 0) -> str:
    if value is None:
        value = default
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return names.get(value, str(value))
    if isinstance(value, str):
        return names.get(int(value), value) if value.isdigit() else value
    return repr(value)


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def unwrap(message: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """The content field of a ``Message`` (``"imageMessage"``…) and its body, through wrappers."""
    for _ in range(8):  # wrappers nest (ephemeral around view once), never deeply
        names = [name for name in message if name not in CARRIERS and message[name] is not None]
        if not names and "senderKeyDistributionMessage" in message:
            return "senderKeyDistributionMessage", _dict(message["senderKeyDistributionMessage"])
        if not names:
            return None, {}
        name = names[0]
        body = message[name]
        if name in WRAPPERS and isinstance(body, dict) and isinstance(body.get("message"), dict):
            message = body["message"]
            continue
        if name == "conversation":
            return name, {"text": body}
        return name, _dict(body)
    return None, {}


def text_of(message: dict[str, Any]) -> str | None:
    """The text a message shows: ``conversation``, ``extendedTextMessage.text`` or a caption."""
    name, body = unwrap(message)
    if name in ("conversation", "extendedTextMessage"):
        return _str(body.get("text")) or ""
    if name in MEDIA_PREFIX:
        return _str(body.get("caption"))
    return None


def _media(name: str, body: dict[str, Any]) -> Attachment:
    prefix = MEDIA_PREFIX[name]
    if name == "audioMessage" and body.get("ptt"):
        prefix = "PTT"
    file_name = (_str(body.get("fileName")) or _str(body.get("title"))) if name == "documentMessage" else None
    return Attachment(prefix, _str(body.get("mimetype")) or "", file_name)


def _vcard(body: dict[str, Any]) -> Attachment:
    name = _str(body.get("displayName")) or "contact"
    return Attachment("VCF", "text/vcard", name, (_str(body.get("vcard")) or "").encode("utf-8"))


def _poll(body: dict[str, Any]) -> str:
    options = [_str(_dict(option).get("optionName")) or "" for option in body.get("options") or []]
    return "\n".join(["POLL:", _str(body.get("name")) or "", *(f"OPTION: {option}" for option in options)])


def _location(body: dict[str, Any]) -> str:
    lat, lng = body.get("degreesLatitude"), body.get("degreesLongitude")
    if not isinstance(lat, (int, float)) or not isinstance(lng, (int, float)):
        raise Unreadable("a location without coordinates")
    return f"location: https://maps.google.com/?q={lat},{lng}"


def parse(raw: str, is_group: bool, chat_jid: str) -> Parsed:
    """Read the ``raw`` value of a message of chat ``chat_jid``."""
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise Unreadable(f"raw is not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except RecursionError:
        raise Unreadable("raw is JSON nested too deeply") from None
    if not isinstance(data, dict):
        raise Unreadable(f"raw is a JSON {type(data).__name__}, not a WAMessage object")
    key = _dict(data.get("key"))
    from_me = key.get("fromMe") is True
    participant = _str(key.get("participant")) or _str(data.get("participant"))
    phone = _str(key.get("participantPn")) or _str(key.get("participantAlt"))  # Baileys 6.7+ beside a LID
    if participant and participant.endswith("@lid") and phone and phone.endswith("@s.whatsapp.net"):
        participant = phone
    parsed = Parsed("text", from_me=from_me, sender=participant if is_group else chat_jid,
                    push_name=_str(data.get("pushName")))
    stub = _enum(data.get("messageStubType"), STUB_NAMES)
    message = data.get("message")
    if not isinstance(message, dict) or not message:
        if stub == "REVOKE":
            parsed.kind = "deleted"
        elif stub != "UNKNOWN":
            parsed.kind, parsed.stub = "system", stub
            parsed.params = [str(p) for p in data.get("messageStubParameters") or [] if p is not None]
        else:
            raise Unreadable("raw holds no message and no stub type")
        return parsed
    name, body = unwrap(message)
    if name is None:
        raise Unreadable("raw holds an empty message")
    if name in ("conversation", "extendedTextMessage"):
        parsed.text = _str(body.get("text")) or ""
    elif name in MEDIA_PREFIX:
        parsed.kind = "media"
        parsed.text = _str(body.get("caption")) or ""
        parsed.attachments = [_media(name, body)]
    elif name == "contactMessage":
        parsed.kind, parsed.attachments = "media", [_vcard(body)]
    elif name == "contactsArrayMessage":
        parsed.kind = "media"
        parsed.attachments = [_vcard(_dict(contact)) for contact in body.get("contacts") or []]
        if not parsed.attachments:
            raise Unreadable("a contacts message without contacts")
    elif name in POLLS:
        parsed.text = _poll(body)
    elif name in LOCATIONS:
        parsed.text = _location(body)
    elif name == "protocolMessage":
        kind = _enum(body.get("type"), PROTOCOL_NAMES)
        target = _str(_dict(body.get("key")).get("id"))
        if kind == "REVOKE" and target:
            parsed.kind, parsed.target = "revoke", target
        elif kind == "MESSAGE_EDIT" and target:
            parsed.kind, parsed.target = "edit", target
            parsed.text = text_of(_dict(body.get("editedMessage"))) or ""
        else:
            parsed.kind = "hidden"
    elif name in HIDDEN:
        parsed.kind = "hidden"
    else:
        parsed.kind, parsed.what = "unsupported", name
    return parsed
