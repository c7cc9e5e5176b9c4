"""Engine URLs: the query parameters each engine knows, from one table per engine, and URLs
with their secrets hidden for messages.

An engine's table maps each parameter it accepts to who takes it: ``"wafs"`` (the engine
itself) or the client library it is passed on to (``"redis-py"``, ``"libpq"``). A parameter
in no table is refused with a one-line :class:`ValueError` that lists the known ones.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Mapping

#: Who takes a parameter the engine handles itself.
WAFS = "wafs"

_PASSWORD_IN_USERINFO = re.compile(r"^(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/?#@:]*:)(?P<secret>[^/?#@]*)@")
_SECRET_PARAMETERS = frozenset({"password", "pass", "passwd", "sslpassword", "oauth_client_secret"})


def query_parameters(url: str, table: Mapping[str, str]) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """The query parameters of ``url``: those ``table`` gives to wafs (a dict, the last value
    of a repeated name wins) and the others it knows (pairs in URL order, for the client).

    Raises :class:`ValueError` naming a parameter ``table`` lacks and listing those it has.
    """
    query = urllib.parse.urlsplit(url).query
    pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
    scheme = url.partition("://")[0]
    for name, _ in pairs:
        if name not in table:
            raise ValueError(f"unknown parameter {name!r} in a {scheme}:// URL; {known_parameters(table)}")
    ours = {name: value for name, value in pairs if table[name] == WAFS}
    return ours, [(name, value) for name, value in pairs if table[name] != WAFS]


def known_parameters(table: Mapping[str, str]) -> str:
    """``table`` as one line: "known: prefix, timeout (wafs); db, … (redis-py)"."""
    if not table:
        return "it takes none"
    owners = dict.fromkeys(table.values())
    groups = [f"{', '.join(name for name, by in table.items() if by == owner)} ({owner})" for owner in owners]
    return "known: " + "; ".join(groups)


def with_query(url: str, pairs: list[tuple[str, str]]) -> str:
    """``url`` with its query string replaced by ``pairs``; the rest of the text is kept as it is
    (``unix:///path`` keeps its ``//``, which ``urlunsplit`` would drop)."""
    head = url.split("#", 1)[0].split("?", 1)[0]
    query = urllib.parse.urlencode(pairs)
    return f"{head}?{query}" if query else head


def redact(url: str) -> str:
    """``url`` for a message or a log line: the password of its user info and the value of any
    password-like query parameter replaced by ``***``."""
    url = _PASSWORD_IN_USERINFO.sub(r"\g<head>***@", url)
    head, sep, query = url.partition("?")
    if not sep:
        return url
    query, hash_, fragment = query.partition("#")
    pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
    if not any(name.lower() in _SECRET_PARAMETERS for name, _ in pairs):
        return url
    hidden = [(name, "***" if name.lower() in _SECRET_PARAMETERS else value) for name, value in pairs]
    return f"{head}?{urllib.parse.urlencode(hidden, safe='*')}{hash_}{fragment}"


__all__ = ["WAFS", "known_parameters", "query_parameters", "redact", "with_query"]
