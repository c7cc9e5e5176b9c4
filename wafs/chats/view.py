"""A chats view of any engine: one folder per chat holding its transcript and its media.

The tree :class:`ChatsView` serves (and ``wafs export`` writes)::

    Ana García (5491112345678)/Ana García (5491112345678).txt
    Ana García (5491112345678)/IMG-20240531-WA0000.jpg
    Familia/Familia.txt
    Familia/DOC-20240530-WA0000-factura-0012.pdf

Paths are ``/``-separated and relative to the view's root. Everything is read through the
engine API with ``get_many`` batches: listing the chats costs a few calls for the whole store,
rendering one chat a few calls whatever its number of messages (see :data:`RAW_BATCH`).
"""

from __future__ import annotations

import base64
import binascii
import datetime
import json
import threading
import zoneinfo
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from ..engine import Engine, Kind
from ..errors import BackendError, BackendUnavailableError, InvalidKeyError, InvalidValueError, WafsError
from ..keys import chat_key, chat_messages_key, contact_key, lid_key, message_key
from . import names as naming
from .messages import Attachment, Parsed, Unreadable, parse
from .transcript import (
    ATTACHED,
    DELETED,
    EDITED,
    LOCALES,
    MEDIA_OMITTED,
    WAITING,
    YOU_DELETED,
    Line,
    Locale,
    extension,
    local_time,
    normalize_newlines,
)

#: Raw messages read per ``get_many`` call: a chat of up to this many messages is read in one.
RAW_BATCH = 5000
#: Media contents read per ``get_many`` call (media values are large: this bounds memory).
CONTENT_BATCH = 500
#: Newest messages read for a sender's ``pushName`` when no index names a 1:1 chat.
PUSH_NAME_PROBE = 20
#: Timestamps above this are read as milliseconds (Baileys writes seconds).
MILLISECONDS = 10**11
#: Latest timestamp accepted (9999-12-31): a larger one is a broken index line.
MAX_TIMESTAMP = 253_402_300_799

FileKind = Literal["dir", "transcript", "media"]
SESSION_CREDS = "session/creds"


class ChatsError(WafsError):
    """A chats view file that cannot be produced (its media no longer decodes, say)."""


@dataclass(frozen=True)
class ChatOptions:
    """How transcripts are written.

    ``locale``: ``"en_GB"`` (``[31/12/2024, 23:59:59]``, the default) or ``"en_US"``
    (``[12/31/24, 11:59:59 PM]``). ``timezone``: an IANA name (``"UTC"``,
    ``"America/Argentina/Buenos_Aires"``); ``None`` is the machine's local time, as the phone
    writes its own. ``media``: ``False`` writes ``<Media omitted>`` and no media files (the app's
    *Without media*). ``you``: the sender name of your own messages.
    """

    locale: Locale = "en_GB"
    timezone: str | None = None
    media: bool = True
    you: str = "You"

    def __post_init__(self) -> None:
        if self.locale not in LOCALES:
            raise ValueError(f"locale must be one of {', '.join(LOCALES)}, not {self.locale!r}")
        if self.timezone is not None:
            try:
                zoneinfo.ZoneInfo(self.timezone)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
                raise ValueError(f"unknown time zone {self.timezone!r}") from exc


@dataclass(frozen=True)
class FileInfo:
    """A path of the view: its size in bytes, its mtime (the newest message it shows) and kind."""

    size: int
    mtime: float
    kind: FileKind


@dataclass(frozen=True)
class ChatInfo:
    """A chat as the view names it."""

    cid: str
    folder: str  # unique in the view; the transcript is ``folder/folder.txt``
    title: str  # the group's subject or the contact's name, as the transcript's system lines show it
    is_group: bool

    @property
    def transcript(self) -> str:
        return f"{self.folder}.txt"


@dataclass(frozen=True)
class MediaFile:
    """A media file of a chat: read from ``key`` (the message's ``content``) or held ``inline``."""

    name: str
    mid: str
    size: int
    mtime: float
    key: str | None = None
    inline: bytes | None = None


@dataclass(frozen=True)
class ChatStats:
    messages: int = 0  # transcript lines (messages), placeholders included
    placeholders: int = 0  # lines for messages that could not be read or are not supported
    hidden: int = 0  # reactions, revokes, edits, protocol messages: not lines, as in the app's export
    media: int = 0  # media files


@dataclass(frozen=True)
class RenderedChat:
    """One chat rendered: the transcript's bytes and lines, its media files, what it cost."""

    chat: ChatInfo
    transcript: bytes
    lines: tuple[Line, ...]
    media: tuple[MediaFile, ...]
    mtime: float
    stats: ChatStats
    data: Mapping[str, bytes] = field(default_factory=dict)  # media bytes by name (keep_media=True only)


def _ts(value: int) -> int:
    return value // 1000 if value > MILLISECONDS else value


def _read_index(text: str | None) -> tuple[list[tuple[int, str]], list[str]]:
    """``(timestamp, mid)`` oldest first, each mid once; and the lines that are not ``<ts> <mid>``."""
    refs: list[tuple[int, int, str]] = []
    bad: list[str] = []
    for number, line in enumerate((text or "").splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit() or _ts(int(parts[0])) > MAX_TIMESTAMP:
            bad.append(f"line {number} of the messages index is not '<timestamp> <id>': {line[:80]!r}")
            continue
        refs.append((_ts(int(parts[0])), -number, parts[1]))  # the index is newest first
    seen: set[str] = set()
    ordered = []
    for timestamp, _, mid in sorted(refs):
        if mid not in seen:
            seen.add(mid)
            ordered.append((timestamp, mid))
    return ordered, bad


def _json_object(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        return {}
    return value if isinstance(value, dict) else {}


def _user(jid: str) -> str:
    """``5491112345678:12@s.whatsapp.net`` -> ``5491112345678``."""
    return jid.split("@", 1)[0].split(":", 1)[0]


def _normal(jid: str) -> str:
    """A JID without its device part."""
    user, at, server = jid.partition("@")
    return f"{user.split(':', 1)[0]}{at}{server}"


def _is_phone(jid: str) -> bool:
    """A JID whose user part is a phone number (shown as ``+NUMBER``), not a LID, broadcast or channel."""
    return jid.endswith(("@s.whatsapp.net", "@c.us")) and _user(jid).isdigit()


def _is_group(cid: str) -> bool:
    return cid.endswith("@g.us")


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


class ChatsView:
    """Transcripts and media of every chat of ``engine``, as files; see the module docstring.

    Results are cached per chat; :meth:`changed` says which paths a store key change affects
    and drops what it made stale, :meth:`invalidate` drops everything. Safe to call from
    several threads (calls are serialized). Store failures raise
    :class:`~wafs.errors.BackendError`; a message that cannot be read becomes a placeholder line.
    """

    def __init__(self, engine: Engine, options: ChatOptions | None = None) -> None:
        self.engine = engine
        self.options = options or ChatOptions()
        self._tz = zoneinfo.ZoneInfo(self.options.timezone) if self.options.timezone else None
        self._lock = threading.RLock()
        self._chats: dict[str, ChatInfo] | None = None  # by folder
        self._by_cid: dict[str, ChatInfo] = {}
        self._name_keys: set[str] = set()  # store keys the chats' names were read from
        self._pushname_chats: set[str] = set()  # chats named from their messages' pushName
        self._me: set[str] = set()
        self._renders: dict[str, RenderedChat] = {}
        self._render_keys: dict[str, set[str]] = {}  # cid -> keys outside chat/{cid}/ it read
        self._readers: dict[str, set[str]] = {}  # key -> cids whose render read it
        self._contacts: dict[str, dict[str, Any]] = {}  # contact key -> parsed index ({} if none)
        self._lids: dict[str, str | None] = {}  # lid key -> JID

    # --- the API the mount and the export use ------------------------------------------------

    def chats(self) -> list[ChatInfo]:
        """Every chat (a ``chat/{cid}/`` directory in the store), sorted by folder name."""
        with self._lock:
            return sorted(self._load_chats().values(), key=lambda info: info.folder)

    def chat(self, folder: str) -> ChatInfo:
        """The chat whose folder is ``folder``; :class:`FileNotFoundError` if there is none."""
        with self._lock:
            info = self._load_chats().get(folder)
        if info is None:
            raise FileNotFoundError(folder)
        return info

    def files(self, folder: str | None = None) -> dict[str, FileInfo]:
        """Every path of one chat's folder (the folder itself included), or of every chat."""
        with self._lock:
            infos = [self.chat(folder)] if folder is not None else self.chats()
            found: dict[str, FileInfo] = {}
            for info in infos:
                rendered = self.render(info.cid)
                found[info.folder] = FileInfo(0, rendered.mtime, "dir")
                found[f"{info.folder}/{info.transcript}"] = FileInfo(len(rendered.transcript), rendered.mtime,
                                                                     "transcript")
                for media in rendered.media:
                    found[f"{info.folder}/{media.name}"] = FileInfo(media.size, media.mtime, "media")
            return found

    def read(self, path: str) -> bytes:
        """The bytes of the file at ``path``; :class:`FileNotFoundError` if there is none."""
        folder, _, name = path.partition("/")
        with self._lock:
            info = self.chat(folder)
            rendered = self.render(info.cid)
        if name == info.transcript:
            return rendered.transcript
        for media in rendered.media:
            if media.name == name:
                return self._media_bytes(media)
        raise FileNotFoundError(path)

    def changed(self, key: str) -> frozenset[str]:
        """Drop what a change of store ``key`` made stale; return the paths it affects.

        Paths are as :meth:`files` named them before the change: a chat's folder (its listing
        may differ), its transcript, a media file. ``""`` (the root) means the list of chats
        or their names may differ: call :meth:`chats` again. Keys the view does not read (the
        session's Signal keys) affect nothing. A message appended to a chat affects that
        chat's folder and transcript only, and the new transcript starts with the old one.
        """
        parts = key.split("/")
        with self._lock:
            cids = set(self._readers.get(key, ()))
            names_changed = key in self._name_keys
            mid: str | None = None
            if parts[0] == "chat" and len(parts) >= 2:
                cid = parts[1]
                cids.add(cid)
                renames = cid not in self._by_cid or len(parts) == 2 or parts[2:] == ["index"]
                # a chat named from its messages' pushName may be renamed by a new message
                named_by_messages = cid in self._pushname_chats and parts[2:3] in (["messages"], ["message"])
                names_changed = names_changed or renames or named_by_messages
                if len(parts) >= 4 and parts[2] == "message":
                    mid = parts[3]
            self._contacts.pop(key, None)
            self._lids.pop(key, None)
            affected: set[str] = set()
            for cid in cids:
                info = self._by_cid.get(cid)
                rendered = self._drop(cid)
                if info is None:
                    continue
                affected.update((info.folder, f"{info.folder}/{info.transcript}"))
                if rendered is not None:
                    affected.update(f"{info.folder}/{media.name}" for media in rendered.media
                                    if mid is None or media.mid == mid)
            if names_changed:
                self._chats = None
                affected.add("")
            return frozenset(affected)

    def invalidate(self) -> None:
        """Forget everything read: the next call reads the store again."""
        with self._lock:
            self._chats = None
            self._renders.clear()
            self._render_keys.clear()
            self._readers.clear()
            self._contacts.clear()
            self._lids.clear()

    def local_time(self, timestamp: float) -> datetime.datetime:
        """``timestamp`` in the view's time zone, as the transcripts write it."""
        return local_time(int(timestamp), self._tz)

    def render(self, cid: str, keep_media: bool = False) -> RenderedChat:
        """Render chat ``cid``; ``keep_media`` also returns the media bytes (``data``), uncached."""
        with self._lock:
            info = self._by_cid.get(cid) if self._chats is not None else None
            if info is None:
                self._load_chats()
                info = self._by_cid.get(cid)
            if info is None:
                raise FileNotFoundError(f"no chat {cid!r} in the store")
            cached = self._renders.get(cid)
            if cached is not None and not keep_media:
                return cached
            rendered, read_keys = self._render(info, keep_media)
            self._drop(cid)
            self._renders[cid] = replace(rendered, data={})
            self._render_keys[cid] = read_keys
            for key in read_keys:
                self._readers.setdefault(key, set()).add(cid)
            return rendered

    # --- store access ------------------------------------------------------------------------

    def _get_many(self, keys: list[str]) -> tuple[dict[str, str | None], dict[str, str]]:
        """``get_many`` that isolates the keys whose value cannot be read (not UTF-8, say).

        Returns the values and ``{key: reason}`` for the failures. A store that is down
        raises: that is never a placeholder. A failing batch is split in halves, so a bad
        key costs about log2(batch) extra calls, and only when there is one.
        """
        if not keys:
            return {}, {}
        try:
            return self.engine.get_many(keys), {}
        except BackendUnavailableError:
            raise
        except (BackendError, InvalidValueError) as exc:  # InvalidValueError: a value that is not UTF-8
            if len(keys) == 1:
                return {keys[0]: None}, {keys[0]: str(exc)}
        half = len(keys) // 2
        values, failed = self._get_many(keys[:half])
        more_values, more_failed = self._get_many(keys[half:])
        return values | more_values, failed | more_failed

    def _contacts_of(self, jids: Iterable[str], read_keys: set[str]) -> dict[str, dict[str, Any]]:
        """``{jid: contact index}`` for phone JIDs, LIDs resolved through ``lid/``; two calls at most."""
        wanted = sorted({_normal(jid) for jid in jids if "@" in jid})
        lids = [jid for jid in wanted if jid.endswith("@lid")]
        lid_keys = {}
        for lid in lids:
            try:
                lid_keys[lid] = lid_key(lid)
            except InvalidKeyError:
                continue
        missing = [key for key in lid_keys.values() if key not in self._lids]
        values, _ = self._get_many(missing)
        for key in missing:
            value = values.get(key)
            self._lids[key] = _normal(value.strip()) if value and "@" in value else None
        resolved = {
            jid: (self._lids.get(lid_keys[jid]) if jid in lid_keys else None) or jid for jid in wanted
        }
        read_keys.update(lid_keys.values())
        contact_keys = {}
        for real in set(resolved.values()):
            try:
                contact_keys[real] = contact_key(real)
            except InvalidKeyError:
                continue
        missing = [key for key in contact_keys.values() if key not in self._contacts]
        values, _ = self._get_many(missing)
        for key in missing:
            self._contacts[key] = _json_object(values.get(key))
        read_keys.update(contact_keys.values())
        found = {}
        for jid, real in resolved.items():
            contact = dict(self._contacts.get(contact_keys[real], {})) if real in contact_keys else {}
            contact["_number"] = _user(real)
            contact["_phone"] = _is_phone(real)
            found[jid] = contact
        return found

    def _media_bytes(self, media: MediaFile) -> bytes:
        if media.inline is not None:
            return media.inline
        assert media.key is not None
        value = self.engine.get(media.key)
        data = _decode(value)
        if data is None:
            raise ChatsError(f"{media.key} no longer holds base64 media")
        return data

    def _drop(self, cid: str) -> RenderedChat | None:
        for key in self._render_keys.pop(cid, ()):
            readers = self._readers.get(key)
            if readers is not None:
                readers.discard(cid)
                if not readers:
                    del self._readers[key]
        return self._renders.pop(cid, None)

    # --- names -------------------------------------------------------------------------------

    def _load_chats(self) -> dict[str, ChatInfo]:
        if self._chats is not None:
            return self._chats
        cids = sorted(name for name, kind in self.engine.children("chat").items() if kind & Kind.DIR)
        keys: dict[str, str] = {}
        for cid in cids:
            try:
                keys[cid] = chat_key(cid)
            except InvalidKeyError:
                continue
        cids = list(keys)
        name_keys: set[str] = set(keys.values()) | {SESSION_CREDS}
        values, _ = self._get_many([SESSION_CREDS, *keys.values()])
        creds = _json_object(values.get(SESSION_CREDS))
        me = creds.get("me")
        me = me if isinstance(me, dict) else {}
        self._me = {_normal(jid) for jid in (me.get("id"), me.get("lid")) if isinstance(jid, str)}
        indexes = {cid: _json_object(values.get(keys[cid])) for cid in cids}
        people = [cid for cid in cids if not _is_group(cid)]
        contacts = self._contacts_of(people, name_keys)
        wanted: dict[str, str] = {}
        titles: dict[str, str] = {}
        nameless: list[str] = []
        for cid in cids:
            index = indexes[cid]
            if _is_group(cid):
                title = _text(index.get("subject")) or _text(index.get("name")) or _user(cid)
                titles[cid] = wanted[cid] = naming.sanitize(title)
                continue
            contact = contacts.get(_normal(cid), {"_number": _user(cid), "_phone": _is_phone(cid)})
            name = (_text(contact.get("name")) or _text(index.get("name")) or _text(contact.get("notify"))
                    or _text(contact.get("verifiedName")))
            if name is None:
                nameless.append(cid)
            titles[cid] = naming.one_line(name) if name else self._number_label(contact)
            number = contact["_number"]
            wanted[cid] = naming.sanitize(f"{name} ({number})" if name else str(number))
        for cid, push_name in self._push_names(nameless).items():
            contact = contacts.get(_normal(cid), {"_number": _user(cid)})
            titles[cid] = naming.one_line(push_name)
            wanted[cid] = naming.sanitize(f"{push_name} ({contact['_number']})")
        folders = naming.unique_chat_names(wanted, {cid: naming.sanitize(_user(cid)) for cid in cids})
        chats = {folders[cid]: ChatInfo(cid, folders[cid], titles[cid], _is_group(cid)) for cid in cids}
        for cid, info in self._by_cid.items():
            if chats.get(info.folder) != info:  # renamed or gone: its render holds the old name
                self._drop(cid)
        self._chats = chats
        self._by_cid = {info.cid: info for info in chats.values()}
        self._name_keys = name_keys
        self._pushname_chats = set(nameless)
        return chats

    def _push_names(self, cids: list[str]) -> dict[str, str]:
        """The newest ``pushName`` a contact sent in each of ``cids``: two calls for all of them."""
        if not cids:
            return {}
        index_keys = {cid: chat_messages_key(cid) for cid in cids}
        values, _ = self._get_many(list(index_keys.values()))
        raw_keys: dict[str, list[str]] = {}
        for cid in cids:
            refs, _ = _read_index(values.get(index_keys[cid]))
            raw_keys[cid] = []
            for _, mid in reversed(refs[-PUSH_NAME_PROBE:]):
                try:
                    raw_keys[cid].append(message_key(cid, mid, "raw"))
                except InvalidKeyError:
                    continue
        raws, _ = self._get_many([key for keys in raw_keys.values() for key in keys])
        found = {}
        for cid, keys in raw_keys.items():
            for key in keys:
                data = _json_object(raws.get(key))
                key_field = data.get("key")
                if isinstance(key_field, dict) and key_field.get("fromMe") is True:
                    continue
                name = _text(data.get("pushName"))
                if name:
                    found[cid] = name
                    break
        return found

    def _number_label(self, contact: Mapping[str, Any]) -> str:
        return f"+{contact['_number']}" if contact.get("_phone") else str(contact["_number"])

    # --- one chat ----------------------------------------------------------------------------

    def _render(self, info: ChatInfo, keep_media: bool) -> tuple[RenderedChat, set[str]]:
        cid = info.cid
        read_keys: set[str] = set()
        index_key = chat_messages_key(cid)
        values, failed = self._get_many([index_key])
        refs, bad_lines = _read_index(values.get(index_key))
        problems = [f"the messages index cannot be read: {failed[index_key]}"] if index_key in failed else []
        problems += bad_lines

        raw_keys: dict[str, str] = {}
        unreadable: dict[str, str] = {}
        for _, mid in refs:
            try:
                raw_keys[mid] = message_key(cid, mid, "raw")
            except InvalidKeyError:
                unreadable[mid] = "its id cannot be a key"
        raws: dict[str, str | None] = {}
        raw_list = list(raw_keys.values())
        for start in range(0, len(raw_list), RAW_BATCH):
            got, bad = self._get_many(raw_list[start:start + RAW_BATCH])
            raws.update(got)
            for key, reason in bad.items():
                unreadable[key.split("/")[-2]] = f"raw cannot be read ({reason})"

        parsed: dict[str, Parsed] = {}
        for mid, key in raw_keys.items():
            if mid in unreadable:
                continue
            raw = raws.get(key)
            if raw is None:
                unreadable[mid] = "raw is missing"
                continue
            try:
                parsed[mid] = parse(raw, info.is_group, cid)
            except Unreadable as exc:
                unreadable[mid] = str(exc)
        authors = self._placeholder_authors(cid, unreadable, info.is_group)
        hidden = self._apply_revokes_and_edits(parsed)

        jids = {p.sender for p in parsed.values() if p.sender and not p.from_me}
        jids |= {a for a, _ in authors.values() if a}
        jids |= {param for p in parsed.values() if p.kind == "system" for param in p.params if "@" in param}
        if not info.is_group:
            jids.add(cid)
        contacts = self._contacts_of(jids, read_keys)

        media_data, media_problems = self._read_media(cid, parsed) if self.options.media else ({}, {})
        lines: list[Line] = []
        files: list[MediaFile] = []
        data: dict[str, bytes] = {}
        taken = {info.transcript.casefold()}
        counters: dict[tuple[str, str], int] = {}
        first_timestamp = refs[0][0] if refs else 0
        for problem in problems:
            lines.append(Line(first_timestamp, info.title, f"<unreadable: {problem}>", placeholder=True))
        for timestamp, mid in refs:
            message = parsed.get(mid)
            if message is None:
                author, from_me = authors.get(mid, (None, False))
                if from_me:
                    sender = self.options.you
                elif author and info.is_group:
                    sender = self._name(author, None, contacts)
                else:  # the other person of a 1:1 chat, or nobody known: the chat
                    sender = info.title
                reason = unreadable.get(mid, "raw is missing")
                lines.append(Line(timestamp, sender, f"<unreadable message {mid}: {reason}>", mid, True))
                continue
            if message.kind == "hidden":
                continue
            sender = self._sender(message, info, contacts)
            placeholder = False
            if message.kind == "text":
                text = normalize_newlines(message.text) + (f" {EDITED}" if message.edited else "")
            elif message.kind == "deleted":
                text = YOU_DELETED if message.from_me else DELETED
            elif message.kind == "system":
                text, placeholder = self._system_text(message, mid, contacts)
                if message.stub != "CIPHERTEXT":
                    sender = info.title
            elif message.kind == "unsupported":
                text, placeholder = f"<unsupported message {mid}: {message.what}>", True
            else:  # media
                parts = []
                moment = local_time(timestamp, self._tz)
                for attachment in message.attachments:
                    payload = attachment.inline if attachment.inline is not None else media_data.get(mid)
                    if not self.options.media:
                        parts.append(MEDIA_OMITTED)
                        continue
                    if attachment.inline is None and mid in media_problems:
                        parts.append(f"<media of message {mid} cannot be decoded: {media_problems[mid]}>")
                        placeholder = True
                        continue
                    if payload is None:
                        parts.append(MEDIA_OMITTED)
                        continue
                    name = self._media_name(attachment, moment.strftime("%Y%m%d"), counters, taken)
                    content_key = None if attachment.inline is not None else _content_key(cid, mid)
                    files.append(MediaFile(name, mid, len(payload), float(timestamp),
                                           key=content_key, inline=attachment.inline))
                    if keep_media:
                        data[name] = payload
                    parts.append(ATTACHED.format(name=name))
                if message.text:
                    parts.append(normalize_newlines(message.text))
                text = "\n".join(parts) + (f" {EDITED}" if message.edited else "")
            lines.append(Line(timestamp, sender, text, mid, placeholder))
        transcript = "".join(line.render(self._tz, self.options.locale) for line in lines).encode("utf-8")
        stats = ChatStats(len(lines), sum(line.placeholder for line in lines), hidden, len(files))
        mtime = float(refs[-1][0]) if refs else 0.0
        rendered = RenderedChat(info, transcript, tuple(lines), tuple(files), mtime, stats, data)
        return rendered, read_keys

    def _placeholder_authors(self, cid: str, unreadable: Mapping[str, str],
                             is_group: bool) -> dict[str, tuple[str | None, bool]]:
        """Who sent each unreadable message, from its ``index`` (``from``, ``fromMe``): one call."""
        keys = {}
        for mid in unreadable:
            try:
                keys[mid] = message_key(cid, mid, "index")
            except InvalidKeyError:
                continue
        values, _ = self._get_many(list(keys.values()))
        found: dict[str, tuple[str | None, bool]] = {}
        for mid, key in keys.items():
            index = _json_object(values.get(key))
            author = _text(index.get("from")) or (None if is_group else cid)
            if index:
                found[mid] = (author, index.get("fromMe") is True)
        return found

    @staticmethod
    def _apply_revokes_and_edits(parsed: dict[str, Parsed]) -> int:
        """Mark the targets of revokes as deleted and of edits as edited; return how many are hidden."""
        hidden = 0
        for message in list(parsed.values()):
            if message.kind not in ("revoke", "edit"):
                hidden += message.kind == "hidden"
                continue
            hidden += 1
            target = parsed.get(message.target or "")
            if target is None or target.kind in ("revoke", "edit", "hidden"):
                continue
            if message.kind == "revoke":
                target.kind, target.text, target.attachments = "deleted", "", []
            elif target.kind in ("text", "media"):
                target.text, target.edited = message.text, True
        for message in parsed.values():
            if message.kind in ("revoke", "edit"):
                message.kind = "hidden"
        return hidden

    def _read_media(self, cid: str, parsed: Mapping[str, Parsed]) -> tuple[dict[str, bytes], dict[str, str]]:
        """The decoded ``content`` of every media message, by mid; and why some do not decode."""
        keys = {mid: _content_key(cid, mid) for mid, message in parsed.items()
                if message.kind == "media" and any(a.inline is None for a in message.attachments)}
        data: dict[str, bytes] = {}
        problems: dict[str, str] = {}
        mids = list(keys)
        for start in range(0, len(mids), CONTENT_BATCH):
            chunk = mids[start:start + CONTENT_BATCH]
            values, failed = self._get_many([keys[mid] for mid in chunk])
            for mid in chunk:
                key = keys[mid]
                if key in failed:
                    problems[mid] = f"content cannot be read ({failed[key]})"
                    continue
                value = values.get(key)
                if not value:
                    continue  # not downloaded: <Media omitted>
                decoded = _decode(value)
                if decoded is None:
                    problems[mid] = "content is not base64"
                else:
                    data[mid] = decoded
        return data, problems

    def _media_name(self, attachment: Attachment, day: str, counters: dict[tuple[str, str], int],
                    taken: set[str]) -> str:
        if attachment.prefix == "VCF":
            return naming.unique_file_name(naming.sanitize(f"{attachment.file_name or 'contact'}.vcf"), taken)
        number = counters.get((attachment.prefix, day), 0)
        counters[(attachment.prefix, day)] = number + 1
        stem = f"{attachment.prefix}-{day}-WA{number:04d}"
        if attachment.prefix == "DOC" and attachment.file_name:
            original = naming.sanitize(attachment.file_name, "")
            if original:
                return naming.unique_file_name(f"{stem}-{original}", taken)
        return naming.unique_file_name(f"{stem}.{extension(attachment.mimetype, attachment.prefix)}", taken)

    # --- names of people ---------------------------------------------------------------------

    def _name(self, jid: str, push_name: str | None, contacts: Mapping[str, Mapping[str, Any]]) -> str:
        """A person as the transcript names them: saved name, pushName, notify, verified name, number."""
        if _normal(jid) in self._me:
            return self.options.you
        contact = contacts.get(_normal(jid), {"_number": _user(jid), "_phone": _is_phone(jid)})
        name = (_text(contact.get("name")) or _text(push_name) or _text(contact.get("notify"))
                or _text(contact.get("verifiedName")))
        return naming.one_line(name) if name else self._number_label(contact)

    def _sender(self, message: Parsed, info: ChatInfo, contacts: Mapping[str, Mapping[str, Any]]) -> str:
        if message.from_me:
            return self.options.you
        if message.sender is None:
            return info.title
        if not info.is_group:  # the other person, named as the chat is
            return info.title
        return self._name(message.sender, message.push_name, contacts)

    def _system_text(
        self, message: Parsed, mid: str, contacts: Mapping[str, Mapping[str, Any]]
    ) -> tuple[str, bool]:
        actor = self.options.you if message.from_me else (
            self._name(message.sender, None, contacts) if message.sender else "Someone")
        people = ", ".join(self._name(p, None, contacts) if "@" in p else p for p in message.params)
        first = message.params[0] if message.params else ""
        texts = {
            "CIPHERTEXT": WAITING,
            "GROUP_CREATE": f'{actor} created group "{first}"',
            "GROUP_CHANGE_SUBJECT": f'{actor} changed the subject to "{first}"',
            "GROUP_CHANGE_ICON": f"{actor} changed this group's icon",
            "GROUP_CHANGE_DESCRIPTION": f"{actor} changed the group description",
            "GROUP_PARTICIPANT_ADD": f"{actor} added {people}",
            "GROUP_PARTICIPANT_REMOVE": f"{actor} removed {people}",
            "GROUP_PARTICIPANT_INVITE": f"{people or actor} joined using this group's invite link",
            "GROUP_PARTICIPANT_LEAVE": f"{people or actor} left",
        }
        if message.stub in texts:
            return naming.one_line(texts[message.stub]), False
        return f"<unsupported message {mid}: system message {message.stub}>", True


def _content_key(cid: str, mid: str) -> str:
    return message_key(cid, mid, "content")


def _decode(value: str | None) -> bytes | None:
    """Base64 ``content`` (whitespace allowed) -> bytes; ``None`` when it is not base64."""
    if not value:
        return None
    try:
        return base64.b64decode("".join(value.split()), validate=True)
    except (binascii.Error, ValueError):
        return None
