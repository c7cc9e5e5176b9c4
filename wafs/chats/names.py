"""File names for people: sanitised for file systems, unique within a folder, deterministic."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping

#: Bytes a name may take (ext4, XFS, APFS, NTFS: 255).
NAME_MAX = 255
#: What the longest wrapper adds around a chat's name: ``WhatsApp Chat with NAME.zip``.
ZIP_WRAPPER = "WhatsApp Chat with "
CHAT_NAME_MAX = NAME_MAX - len(ZIP_WRAPPER.encode("utf-8")) - len(b".zip")
#: Characters that no file system takes (``/``, NUL) or that Windows and zip readers refuse.
_FORBIDDEN = set('/\\\0')


def clean_text(text: str) -> str:
    """Lone surrogates (from JSON ``"\\ud800"``) become U+FFFD, so the text always encodes as UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


def one_line(text: str) -> str:
    """A person's name on one line: control characters and line breaks become spaces, runs collapse."""
    text = clean_text(text)
    chars = [" " if unicodedata.category(ch) in ("Cc", "Zl", "Zp") else ch for ch in text]
    return " ".join("".join(chars).split())


def sanitize(name: str, fallback: str = "chat") -> str:
    """``name`` as a file name: no ``/``, ``\\``, NUL or control character, not ``.``-led, not empty."""
    name = one_line(name)
    name = "".join("_" if ch in _FORBIDDEN else ch for ch in name)
    name = name.lstrip(".").strip()
    return name or fallback


def truncate(name: str, limit: int) -> str:
    """Cut ``name`` to at most ``limit`` UTF-8 bytes at a character boundary (trailing space removed)."""
    data = name.encode("utf-8")
    if len(data) <= limit:
        return name
    return data[:limit].decode("utf-8", "ignore").rstrip()


def fit(stem: str, suffix: str, limit: int = NAME_MAX) -> str:
    """``stem + suffix`` within ``limit`` bytes, cutting the stem only (the suffix is kept whole)."""
    return truncate(stem, limit - len(suffix.encode("utf-8"))) + suffix


def split_extension(name: str) -> tuple[str, str]:
    """``("factura", ".pdf")``; a name without a dot (or only a leading one) has no extension."""
    dot = name.rfind(".")
    if dot <= 0 or len(name) - dot > 16:
        return name, ""
    return name[:dot], name[dot:]


def unique_chat_names(wanted: Mapping[str, str], ids: Mapping[str, str]) -> dict[str, str]:
    """Unique folder names for chats: ``{cid: name}`` from ``{cid: wanted name}``.

    Names are compared case-insensitively (an export unpacked on macOS or Windows). Every chat
    whose wanted name is shared gets `` (id)`` appended (``ids[cid]``, e.g. the group's number),
    so the outcome does not depend on the order chats are seen in; what still collides (long
    names cut to fit) gets `` 2``, `` 3``… in the order of the chat ids.
    """
    def group(names: Mapping[str, str]) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for cid in sorted(names):
            found.setdefault(names[cid].casefold(), []).append(cid)
        return found

    base = {cid: truncate(name, CHAT_NAME_MAX) for cid, name in wanted.items()}
    named: dict[str, str] = {}
    for cids in group(base).values():
        for cid in cids:
            named[cid] = base[cid] if len(cids) == 1 else fit(base[cid], f" ({ids[cid]})", CHAT_NAME_MAX)
    taken: set[str] = set()
    result: dict[str, str] = {}
    for cids in group(named).values():
        for number, cid in enumerate(cids, start=1):
            name = named[cid] if number == 1 else fit(named[cid], f" {number}", CHAT_NAME_MAX)
            while name.casefold() in taken:  # "X 2" may itself be a chat's own name
                number += 1
                name = fit(named[cid], f" {number}", CHAT_NAME_MAX)
            taken.add(name.casefold())
            result[cid] = name
    return result


def unique_file_name(name: str, taken: set[str]) -> str:
    """``name``, or ``name (2).ext``, ``(3)``… when a file of that name (any case) is ``taken``; adds it."""
    stem, ext = split_extension(name)
    candidate, number = fit(stem, ext), 1
    while candidate.casefold() in taken:
        number += 1
        candidate = fit(stem, f" ({number}){ext}")
    taken.add(candidate.casefold())
    return candidate


def casefolded(names: Iterable[str]) -> set[str]:
    return {name.casefold() for name in names}
