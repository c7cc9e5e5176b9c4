"""A realistic, deterministic WhatsApp bot session in the Baileys key layout, for demos and tests.

``write_demo(engine, chats, messages, seed)`` writes credentials and Signal keys, contacts
with their ``lid/`` mappings, 1:1 and group chats, and for every message its ``index``,
``raw`` (a WAMessage as Baileys serializes it, binary fields as BufferJSON) and ``content``
(the text, or the media bytes in base64). The same seed always gives the same keys and
values. ``chats=200, messages=250`` is the reference benchmark session: about 150k keys and
40 MB of values.
"""

from __future__ import annotations

import base64
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from . import buffer_json
from .engine import Engine
from .keys import (
    MessageRef,
    chat_key,
    chat_messages_key,
    contact_key,
    format_messages_index,
    lid_key,
    message_key,
    session_key,
    signal_key,
)

#: The newest message of the session is sent shortly before this instant (2024-06-01 UTC).
BASE_TIMESTAMP = 1_717_200_000
BATCH = 500
PRE_KEYS = 30
APP_STATE_NAMES = ["critical_block", "critical_unblock_low", "regular_high", "regular_low", "regular"]

FIRST_NAMES = [
    "Ana", "Lucía", "Sofía", "Valentina", "Camila", "Martina", "Julieta", "Paula", "Carmen", "Isabel",
    "Juan", "Mateo", "Santiago", "Diego", "Carlos", "Javier", "Andrés", "Tomás", "Pablo", "Miguel",
    "Emma", "Olivia", "Grace", "Chloe", "James", "Oliver", "Ethan", "Noah", "Liam", "Daniel",
]
LAST_NAMES = [
    "García", "Fernández", "González", "Rodríguez", "López", "Martínez", "Sánchez", "Pérez", "Gómez",
    "Díaz", "Romero", "Álvarez", "Torres", "Ruiz", "Herrera", "Smith", "Johnson", "Brown", "Taylor",
]
# (country code and mobile prefix, digits that follow)
PHONE_PLANS = [("54911", 8), ("346", 8), ("52155", 8), ("1415", 7), ("573", 9), ("447", 9)]
GROUP_SUBJECTS = [
    "Familia", "Fútbol los jueves", "Pedidos tienda", "Oficina", "Viaje a Bariloche", "Book club",
    "Vecinos del edificio", "Cumple de Sofi", "Project Atlas", "Asado del domingo", "Ventas zona norte",
]

SPANISH = [
    "Hola {name}, ¿cómo estás?",
    "Tu pedido #{n} ya salió, llega el {day}.",
    "¿Cuándo llega mi pedido? Lo necesito para el {day}.",
    "El pedido {n} está listo para retirar en {place}.",
    "Te confirmo el pedido: {qty} {item} a nombre de {name}.",
    "Perdón, me equivoqué en el pedido, eran {qty} {item}.",
    "Nos vemos el {day} a las {time} en {place}.",
    "Dale, perfecto 👍",
    "¿Me pasás la dirección de {place}?",
    "Gracias {name}! Muy amable 🙏",
    "Llegué, estoy en la puerta.",
    "Mañana no puedo, ¿lo pasamos al {day}?",
    "Ya hice la transferencia de ${amount}, te mando el comprobante.",
    "Buen día! ¿Tienen {item} en stock?",
    "Jajaja no puedo más 😂",
    "¿Alguien sabe a qué hora abre {place}?",
    "Cancelá el pedido {n} por favor, lo compré en otro lado.",
    "Feliz cumple {name}!! 🎉🎂",
    "Te llamo en 5 minutos.",
    "Acordate de traer {item} el {day}.",
]
ENGLISH = [
    "Hi {name}, how are you?",
    "Are we still on for {day} at {time}?",
    "Running 10 minutes late, sorry!",
    "Can you send me the invoice for order {n}?",
    "The {item} arrived, thanks!",
    "Let's meet at {place} on {day}.",
    "Sounds good 👍",
    "Happy birthday {name}! 🎉",
    "Did you see the game last night?",
    "I paid ${amount}, please confirm.",
    "Call me when you can.",
    "Do you have {qty} {item} available?",
]
ITEMS = ["empanadas", "alfajores", "cajas", "remeras", "zapatillas", "pizzas", "medialunas", "notebooks",
         "coffee beans", "t-shirts", "chairs", "tickets"]
PLACES = ["la oficina", "el centro", "Palermo", "la estación", "el café de siempre", "Main Street",
          "the airport"]
DAYS_ES = ["lunes", "martes", "miércoles", "jueves", "viernes", "sábado", "domingo"]
DAYS_EN = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
LINKS = ["https://maps.app.goo.gl/x7Qz", "https://www.mercadolibre.com.ar/p/MLA1234", "https://youtu.be/dQw4w9WgXcQ"]

# kind -> (weight, mimetype, magic bytes at the start of the media)
MEDIA = {
    "image": (6, "image/jpeg", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00"),
    "audio": (3, "audio/ogg; codecs=opus", b"OggS\x00\x02"),
    "document": (2, "application/pdf", b"%PDF-1.4\n"),
    "video": (1, "video/mp4", b"\x00\x00\x00\x18ftypmp42"),
    "sticker": (2, "image/webp", b"RIFF\x00\x00\x00\x00WEBPVP8 "),
}
KINDS = ["text", "extended"] + list(MEDIA)
KIND_WEIGHTS = [70, 16] + [weight for weight, _, _ in MEDIA.values()]


@dataclass
class Contact:
    jid: str
    lid: str
    name: str


@dataclass
class Chat:
    cid: str
    name: str
    spanish: bool
    members: list[Contact]
    refs: list[MessageRef] = field(default_factory=list)

    @property
    def is_group(self) -> bool:
        return self.cid.endswith("@g.us")


def _dumps(value: object) -> str:
    return buffer_json.dumps(value, ensure_ascii=False)


class _Session:
    """The random choices of one demo session; every value comes from ``self.rng``."""

    def __init__(self, chats: int, messages: int, seed: int) -> None:
        self.rng = random.Random(seed)
        self.messages = messages
        self.used: set[str] = set()
        self.me = Contact(self._phone() + "@s.whatsapp.net", self._lid(), "Tienda Demo")
        groups = 0 if chats < 2 else max(1, round(chats * 0.2))
        self.contacts = [self._contact() for _ in range(chats - groups + 3 * groups)]
        direct = [Chat(c.jid, c.name, self.rng.random() < 0.7, [c]) for c in self.contacts[:chats - groups]]
        self.chats = direct + [self._group() for _ in range(groups)]
        self.rng.shuffle(self.chats)

    # --- identities ----------------------------------------------------------------------

    def _unique(self, make: Callable[[], str]) -> str:
        while (value := make()) in self.used:
            pass
        self.used.add(value)
        return value

    def _phone(self) -> str:
        start, digits = self.rng.choice(PHONE_PLANS)
        return self._unique(lambda: start + "".join(self.rng.choices("0123456789", k=digits)))

    def _lid(self) -> str:
        return self._unique(lambda: str(self.rng.randrange(10**13, 10**15))) + "@lid"

    def _contact(self) -> Contact:
        name = f"{self.rng.choice(FIRST_NAMES)} {self.rng.choice(LAST_NAMES)}"
        return Contact(self._phone() + "@s.whatsapp.net", self._lid(), name)

    def _group(self) -> Chat:
        members = self.rng.sample(self.contacts, min(len(self.contacts), self.rng.randint(3, 12)))
        creator = members[0].jid.split("@")[0]
        cid = self._unique(
            lambda: f"{creator}-{BASE_TIMESTAMP - self.rng.randrange(90 * 86400, 900 * 86400)}@g.us"
        )
        return Chat(cid, self.rng.choice(GROUP_SUBJECTS), self.rng.random() < 0.7, members)

    def message_id(self, from_me: bool) -> str:
        if from_me:
            return self._unique(lambda: "3EB0" + self.rng.randbytes(9).hex().upper())
        return self._unique(lambda: self.rng.randbytes(16).hex().upper())

    # --- texts ---------------------------------------------------------------------------

    def text(self, chat: Chat) -> str:
        rng = self.rng
        template = rng.choice(SPANISH if chat.spanish else ENGLISH)
        return template.format(
            name=rng.choice(FIRST_NAMES), n=rng.randint(1000, 9999), qty=rng.randint(1, 24),
            item=rng.choice(ITEMS), place=rng.choice(PLACES),
            time=f"{rng.randint(8, 22)}:{rng.choice(['00', '30'])}",
            day=rng.choice(DAYS_ES if chat.spanish else DAYS_EN), amount=rng.randint(5, 900) * 100,
        )

    def buffer(self, low: int, high: int | None = None) -> bytes:
        return self.rng.randbytes(low if high is None else self.rng.randint(low, high))

    def key_pair(self) -> dict[str, bytes]:
        return {"private": self.buffer(32), "public": self.buffer(32)}


def _session_items(s: _Session) -> Iterator[tuple[str, str]]:
    rng, me = s.rng, s.me
    device = rng.randint(2, 40)
    creds = {
        "noiseKey": s.key_pair(),
        "pairingEphemeralKeyPair": s.key_pair(),
        "signedIdentityKey": s.key_pair(),
        "signedPreKey": {"keyPair": s.key_pair(), "signature": s.buffer(64), "keyId": 1},
        "registrationId": rng.randint(1, 16380),
        "advSecretKey": base64.b64encode(s.buffer(32)).decode("ascii"),
        "processedHistoryMessages": [],
        "nextPreKeyId": PRE_KEYS + 1,
        "firstUnuploadedPreKeyId": PRE_KEYS + 1,
        "accountSyncCounter": 1,
        "accountSettings": {"unarchiveChats": False},
        "registered": True,
        "me": {
            "id": me.jid.replace("@", f":{device}@"),
            "lid": me.lid.replace("@", f":{device}@"),
            "name": me.name,
        },
        "account": {
            "details": s.buffer(40), "accountSignatureKey": s.buffer(32),
            "accountSignature": s.buffer(64), "deviceSignature": s.buffer(64),
        },
        "signalIdentities": [{
            "identifier": {"name": me.jid.replace("@", f":{device}@"), "deviceId": 0},
            "identifierKey": s.buffer(33),
        }],
        "platform": "android",
        "routingInfo": s.buffer(24),
        "lastAccountSyncTimestamp": BASE_TIMESTAMP - 3600,
        "myAppStateKeyId": "AAAAAFxz",
    }
    yield session_key("creds"), _dumps(creds)
    for n in range(1, PRE_KEYS + 1):
        yield signal_key("pre-key", n), _dumps(s.key_pair())
    for contact in s.contacts[:10]:
        record = {
            "registrationId": rng.randint(1, 16380),
            "currentRatchet": {
                "ephemeralKeyPair": {"pubKey": s.buffer(33), "privKey": s.buffer(32)},
                "lastRemoteEphemeralKey": s.buffer(33), "previousCounter": rng.randint(0, 40),
                "rootKey": s.buffer(32),
            },
            "indexInfo": {"baseKey": s.buffer(33), "baseKeyType": 1, "closed": -1,
                          "used": BASE_TIMESTAMP * 1000, "created": BASE_TIMESTAMP * 1000,
                          "remoteIdentityKey": s.buffer(33)},
        }
        yield signal_key("session", contact.jid.split("@")[0] + ".0"), _dumps(record)
    for chat in s.chats:
        if chat.is_group:
            memory = {member.jid.replace("@", ":0@"): True for member in chat.members}
            yield signal_key("sender-key-memory", chat.cid), _dumps(memory)
            sender = chat.members[0].jid.split("@")[0]
            sender_key = [{"senderKeyId": rng.randint(1, 2**31),
                           "senderChainKey": {"iteration": 0, "seed": s.buffer(32)},
                           "senderSigningKey": {"public": s.buffer(33)}, "senderMessageKeys": []}]
            yield signal_key("sender-key", f"{chat.cid}::{sender}::0"), _dumps(sender_key)
    for n in range(3):
        key_id = f"AAAAA{n}{rng.choice('ABCDEFGH')}{rng.choice('xyzw')}"
        sync_key = {"keyData": s.buffer(32),
                    "fingerprint": {"rawId": rng.randint(1, 2**31), "currentIndex": n,
                                    "deviceIndexes": [0, 1]},
                    "timestamp": str((BASE_TIMESTAMP - 86400 * n) * 1000)}
        yield signal_key("app-state-sync-key", key_id), _dumps(sync_key)
    for name in APP_STATE_NAMES:
        version = {"version": rng.randint(1, 900), "hash": s.buffer(128), "indexValueMap": {}}
        yield signal_key("app-state-sync-version", name), _dumps(version)


def _contact_items(s: _Session) -> Iterator[tuple[str, str]]:
    for contact in s.contacts:
        first = contact.name.split()[0]
        index = {
            "id": contact.jid, "lid": contact.lid, "name": contact.name, "notify": first,
            "verifiedName": None, "imgUrl": "changed" if s.rng.random() < 0.6 else None,
            "status": s.rng.choice(["Hey there! I am using WhatsApp.", "Disponible", "En el trabajo", "🏖️"]),
        }
        yield contact_key(contact.jid), _dumps(index)
        yield lid_key(contact.lid), contact.jid


def _media(s: _Session, kind: str, timestamp: int, caption: str | None) -> tuple[dict[str, object], bytes]:
    """The ``{kind}Message`` of a WAMessage, and the media bytes it stands for."""
    _, mimetype, magic = MEDIA[kind]
    data = magic + s.buffer(120, 700)
    path = f"/v/t62.7118-24/{s.rng.randrange(10**7, 10**8)}_{s.rng.randrange(10**14, 10**15)}_n.enc"
    body: dict[str, object] = {
        "url": f"https://mmg.whatsapp.net{path}?ccb=11-4&mms3=true",
        "mimetype": mimetype, "fileSha256": s.buffer(32), "fileLength": str(len(data)),
        "mediaKey": s.buffer(32), "fileEncSha256": s.buffer(32), "directPath": path,
        "mediaKeyTimestamp": str(timestamp),
    }
    if kind in ("image", "video"):
        body.update(height=s.rng.choice([720, 1280, 1600]), width=s.rng.choice([720, 960, 1200]),
                    jpegThumbnail=s.buffer(150, 450))
    if kind in ("audio", "video"):
        body["seconds"] = s.rng.randint(2, 95)
    if kind == "audio":
        body.update(ptt=True, waveform=s.buffer(64))
    if kind == "document":
        name = f"factura-{s.rng.randint(1, 999):04d}.pdf"
        body.update(title=name, fileName=name, pageCount=s.rng.randint(1, 6))
    if kind == "sticker":
        body.update(height=512, width=512, isAnimated=False)
    if caption and kind in ("image", "video", "document"):
        body["caption"] = caption
    return body, data


def _message_items(s: _Session, chat: Chat, timestamp: int) -> Iterator[tuple[str, str]]:
    rng = s.rng
    from_me = rng.random() < 0.4
    sender = s.me if from_me else rng.choice(chat.members)
    mid = s.message_id(from_me)
    kind = rng.choices(KINDS, KIND_WEIGHTS)[0]
    text = s.text(chat)
    key: dict[str, object] = {"remoteJid": chat.cid, "fromMe": from_me, "id": mid}
    if chat.is_group:
        key["participant"] = sender.jid
    index: dict[str, object] = {
        "id": mid, "cid": chat.cid, "from": sender.jid, "fromMe": from_me, "timestamp": timestamp,
        "status": rng.choice(["delivered", "read", "read", "played"] if from_me else ["received"]),
    }
    if kind == "text":
        message: dict[str, object] = {"conversation": text}
        index.update(type="text", text=text)
        content = text
    elif kind == "extended":
        extended: dict[str, object] = {"text": text}
        if chat.refs and rng.random() < 0.6:
            quoted = rng.choice(chat.refs[-20:])
            extended["contextInfo"] = {"stanzaId": quoted.mid, "participant": rng.choice(chat.members).jid,
                                       "quotedMessage": {"conversation": s.text(chat)}}
        else:
            link = rng.choice(LINKS)
            extended.update(text=f"{text} {link}", matchedText=link, previewType=0)
        message = {"extendedTextMessage": extended}
        index.update(type="text", text=extended["text"])
        content = str(extended["text"])
    else:
        body, data = _media(s, kind, timestamp, text if rng.random() < 0.5 else None)
        message = {f"{kind}Message": body}
        index.update(type=kind, mimetype=body["mimetype"], size=len(data))
        if "caption" in body:
            index["text"] = body["caption"]
        content = base64.b64encode(data).decode("ascii")
    if rng.random() < 0.5:
        message["messageContextInfo"] = {"messageSecret": s.buffer(32)}
    raw = {"key": key, "messageTimestamp": timestamp, "pushName": sender.name.split()[0], "broadcast": False,
           "message": message}
    chat.refs.append(MessageRef(timestamp, mid))
    yield message_key(chat.cid, mid, "index"), _dumps(index)
    yield message_key(chat.cid, mid, "raw"), _dumps(raw)
    yield message_key(chat.cid, mid, "content"), content


def _chat_items(s: _Session, chat: Chat, newest: int) -> Iterator[tuple[str, str]]:
    rng = s.rng
    times = [newest] if s.messages else []
    for _ in range(s.messages - 1):
        times.append(times[-1] - 1 - int(rng.expovariate(1 / 3600)))
    for timestamp in reversed(times):
        yield from _message_items(s, chat, timestamp)
    index: dict[str, object] = {
        "id": chat.cid, "name": chat.name, "type": "group" if chat.is_group else "private",
        "conversationTimestamp": newest if s.messages else None,
        "unreadCount": rng.choice([0, 0, 0, 1, 2, 5]), "archived": rng.random() < 0.1,
        "pinned": 0, "muteEndTime": 0,
    }
    if chat.is_group:
        owner = chat.members[0]
        index.update(owner=owner.jid, participants=[
            {"id": member.jid, "admin": "superadmin" if member is owner else None} for member in chat.members
        ])
    yield chat_key(chat.cid), _dumps(index)
    yield chat_messages_key(chat.cid), format_messages_index(chat.refs)


def demo_items(chats: int = 20, messages: int = 50, seed: int = 0) -> Iterator[tuple[str, str]]:
    """Yield the ``(key, value)`` pairs of the demo session, in the order they are written.

    Chats come oldest activity first and messages oldest first, so an engine that lists
    newest first shows the latest chat and message first, as a bot's own writes would.
    """
    if chats < 0 or messages < 0:
        raise ValueError("chats and messages must be >= 0")
    s = _Session(chats, messages, seed)
    yield from _session_items(s)
    yield from _contact_items(s)
    newest = sorted(BASE_TIMESTAMP - s.rng.randrange(0, 30 * 86400) for _ in s.chats)
    for chat, last in zip(s.chats, newest, strict=True):
        yield from _chat_items(s, chat, last)


def write_demo(engine: Engine, chats: int = 20, messages: int = 50, seed: int = 0) -> int:
    """Write the demo session into ``engine`` with ``set_many`` batches; return the number of keys.

    Existing keys with the same names are overwritten, other keys are left alone.
    """
    written = 0
    pending: dict[str, str] = {}
    for key, value in demo_items(chats, messages, seed):
        pending[key] = value
        if len(pending) >= BATCH:
            engine.set_many(pending)
            written += len(pending)
            pending = {}
    if pending:
        engine.set_many(pending)
        written += len(pending)
    return written


__all__ = ["BASE_TIMESTAMP", "demo_items", "write_demo"]
