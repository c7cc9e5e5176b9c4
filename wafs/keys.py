"""Key rules, shared by every engine, and builders for the Baileys key layout.

A key is a ``/``-separated UTF-8 path such as
``chat/5491112345678@s.whatsapp.net/message/ABC123/raw``. It is refused when it is empty,
has an empty segment (``a//b``, a leading or trailing ``/``), a ``.`` or ``..`` segment,
a NUL character, or does not encode as UTF-8.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .errors import InvalidKeyError

SEPARATOR = "/"


def _check_text(text: str, what: str) -> None:
    if not isinstance(text, str):
        raise InvalidKeyError(f"{what} must be a str, not {type(text).__name__}")
    if "\0" in text:
        raise InvalidKeyError(f"{what} {text!r} contains a NUL character")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidKeyError(f"{what} {text!r} is not valid UTF-8") from exc


def _check_segments(segments: Iterable[str], text: str, what: str) -> None:
    for segment in segments:
        if segment == "":
            raise InvalidKeyError(f"{what} {text!r} has an empty segment (leading, trailing or double '/')")
        if segment in (".", ".."):
            raise InvalidKeyError(f"{what} {text!r} has a {segment!r} segment")


def check_key(key: str) -> str:
    """Return ``key`` unchanged if it obeys the key rules, else raise :class:`InvalidKeyError`."""
    _check_text(key, "key")
    if key == "":
        raise InvalidKeyError("key is empty")
    _check_segments(key.split(SEPARATOR), key, "key")
    return key


def check_prefix(prefix: str) -> str:
    """Check a ``list`` prefix: ``""``, a key, a key plus ``/``, or a key plus a partial segment.

    Every complete segment (all but the last) obeys the key rules; the last, partial one may
    be anything without a NUL (``chat/1`` matches ``chat/1/index`` and ``chat/10/index``).
    """
    _check_text(prefix, "prefix")
    _check_segments(prefix.split(SEPARATOR)[:-1], prefix, "prefix")
    return prefix


def is_valid_key(key: object) -> bool:
    """True when ``key`` obeys the key rules (for filtering keys another client wrote)."""
    if not isinstance(key, str):
        return False
    try:
        check_key(key)
    except InvalidKeyError:
        return False
    return True


def is_under(key: str, directory: str) -> bool:
    """True when ``key`` is ``directory`` itself or lies below ``directory + '/'``."""
    return key == directory or key.startswith(directory + SEPARATOR)


# --- The Baileys key layout --------------------------------------------------------------


def session_key(name: str = "creds") -> str:
    """``session/creds`` or ``session/{name}``."""
    return check_key(f"session/{name}")


def signal_key(kind: str, key_id: str | int) -> str:
    """A Signal key such as ``session/pre-key/1``."""
    return check_key(f"session/{kind}/{key_id}")


def contact_key(jid: str) -> str:
    """``contact/{jid}/index``."""
    return check_key(f"contact/{jid}/index")


def lid_key(lid: str) -> str:
    """``lid/{lid}``: holds the real JID of a linked ID."""
    return check_key(f"lid/{lid}")


def chat_prefix(cid: str) -> str:
    """``chat/{cid}``: ``set(chat_prefix(cid), None)`` deletes the whole chat."""
    return check_key(f"chat/{cid}")


def chat_key(cid: str) -> str:
    """``chat/{cid}/index``."""
    return check_key(f"chat/{cid}/index")


def chat_messages_key(cid: str) -> str:
    """``chat/{cid}/messages``: the message index of a chat (see :func:`parse_messages_index`)."""
    return check_key(f"chat/{cid}/messages")


def message_key(cid: str, mid: str, part: str = "index") -> str:
    """``chat/{cid}/message/{mid}/{part}`` with part ``index``, ``raw`` or ``content``."""
    if part not in ("index", "raw", "content"):
        raise InvalidKeyError(f"message part must be index, raw or content, not {part!r}")
    return check_key(f"chat/{cid}/message/{mid}/{part}")


@dataclass(frozen=True, order=True)
class MessageRef:
    """One line of a ``chat/{cid}/messages`` index."""

    timestamp: int
    mid: str


def parse_messages_index(text: str | None) -> list[MessageRef]:
    """Parse ``{timestamp} {mid}`` lines (newest first); blank lines are ignored."""
    refs = []
    for number, line in enumerate((text or "").splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit():
            raise ValueError(f"messages index line {number} is not '<timestamp> <mid>': {line!r}")
        refs.append(MessageRef(int(parts[0]), parts[1]))
    return refs


def format_messages_index(refs: Iterable[MessageRef]) -> str:
    """Write refs as ``{timestamp} {mid}`` lines, newest first, one per message id."""
    newest: dict[str, MessageRef] = {}
    for ref in refs:
        if ref.mid not in newest or ref.timestamp > newest[ref.mid].timestamp:
            newest[ref.mid] = ref
    ordered = sorted(newest.values(), key=lambda ref: (-ref.timestamp, ref.mid))
    return "".join(f"{ref.timestamp} {ref.mid}\n" for ref in ordered)
