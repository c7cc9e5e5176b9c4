"""Hostile keys written straight into a store by another client, under a real mount.

The keys that break the key rules (``../x``, ``a//b``, NUL, invalid UTF-8, ...) or cannot be
file names (a 300-byte segment) must not be shown at all, nor as something else (``a//b``
is not ``a/b``); valid but odd keys (newline, glob characters, ``%`` and ``_``) are shown as
they are. Each hidden key is logged once, however often the tree is read, and ``rm -r`` of
the parent through the mount deletes all of them from the store, within the sweeper's
batching time (0.5 s after the last rmdir).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from wafs import Engine, MemoryEngine

from .helpers import absent
from .mounting import mounted, sh

SWEEP_BOUND = 0.5 + 2.0  # the sweeper waits 0.5 s after the last rmdir, plus the store's own time
PARENT = "p_%"  # LIKE wildcards in the directory name: the PostgreSQL cascade must escape them
LONG = "x" * 300
#: Keys below PARENT another client may write; raw bytes where a store can hold them.
HIDDEN_TEXT = [f"{PARENT}/../x", f"{PARENT}//etc/x", f"{PARENT}/a//b", f"{PARENT}/a/", f"{PARENT}/.",
               f"{PARENT}/..", f"{PARENT}/{LONG}", f"{PARENT}/{LONG}/raw", f"{PARENT}/m/__value__/raw"]
SHOWN = {f"{PARENT}/ok": "fine", f"{PARENT}/new\nline": "nl", f"{PARENT}/*": "star", f"{PARENT}/?": "q",
         f"{PARENT}/[ab]": "glob", f"{PARENT}/100%": "pct", f"{PARENT}/a_b": "us", f"{PARENT}/m/i": "m"}
#: Outside PARENT: top-level hostile keys that stay, and siblings the cascade must not touch.
TOP_HIDDEN = ["../x", "/etc/x", ".", "..", "a/"]
SIBLINGS = {"pX%/keep": "k1", "p_X/keep": "k2", "p_%x/keep": "k3"}


def hidden_keys(nul_and_bytes: bool) -> list[bytes]:
    keys = [k.encode() for k in HIDDEN_TEXT]
    if nul_and_bytes:
        keys += [f"{PARENT}/a\0b".encode(), PARENT.encode() + b"/bad\xff\xfe", PARENT.encode() + b"/\xc3"]
    return keys


class RawStore:
    """Another client's view of one store: write raw keys, list raw keys."""

    def __init__(self, write: Callable[[bytes, str], None], stored: Callable[[], set[bytes]]) -> None:
        self.write = write
        self.stored = stored


@pytest.fixture(params=["memory", "redis", "postgres"])
def store(request: pytest.FixtureRequest) -> Iterator[tuple[Engine, RawStore, list[bytes]]]:
    kind = request.param
    if kind == "memory":
        engine = MemoryEngine()
        data: dict[str, str] = engine._data  # the other client writes the dict itself

        def write(key: bytes, value: str) -> None:
            data[key.decode("utf-8", "surrogateescape")] = value

        raw = RawStore(write, lambda: {k.encode("utf-8", "surrogateescape") for k in data})
        yield engine, raw, hidden_keys(nul_and_bytes=True)
    elif kind == "redis":
        server = request.getfixturevalue("redis_server")
        prefix = request.getfixturevalue("prefix")
        engine = server.engine(prefix=prefix)
        client = server.client()
        base = prefix.encode() + b":"
        raw = RawStore(lambda key, value: client.set(base + key, value),
                       lambda: {k[len(base):] for k in client.scan_iter(match=base + b"*")})
        try:
            yield engine, raw, hidden_keys(nul_and_bytes=True)
        finally:
            client.delete(*client.scan_iter(match=base + b"*"))
            client.close()
            engine.close()
    else:
        server = request.getfixturevalue("postgres_server")
        table = request.getfixturevalue("table")
        engine = server.engine(table=table)
        engine.set("setup", "x")  # creates the table
        engine.delete("setup")
        conn = server.connect()
        # PostgreSQL text holds neither NUL nor invalid UTF-8: those cannot be written at all.
        raw = RawStore(
            lambda key, value: conn.execute(f"INSERT INTO {table} (key, data) VALUES (%s, %s)",
                                            [key.decode(), value]),
            lambda: {row[0].encode() for row in conn.execute(f"SELECT key FROM {table}")},
        )
        try:
            yield engine, raw, hidden_keys(nul_and_bytes=False)
        finally:
            conn.execute(f"DROP TABLE {table}")
            conn.close()
            engine.close()


def test_hostile_keys_are_hidden_logged_once_and_swept(
    store: tuple[Engine, RawStore, list[bytes]], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    engine, raw, hidden = store
    top_hidden = [k.encode() for k in TOP_HIDDEN]
    for key in [*hidden, *top_hidden]:
        raw.write(key, "hostile")
    for key, value in {**SHOWN, **SIBLINGS}.items():
        raw.write(key.encode(), value)
    caplog.set_level(logging.WARNING, logger="wafs.mount")
    with mounted(engine, tmp_path / "mnt", ttl=0.1) as mnt:
        for _ in range(3):  # the tree is read again after each TTL: still logged once
            names = os.listdir(mnt / PARENT)
            found = sh(f"cd {mnt} && find . -type f -print0").stdout.split("\0")
            time.sleep(0.15)
        assert sorted(names) == sorted(["ok", "new\nline", "*", "?", "[ab]", "100%", "a_b", "m"])
        assert sorted(f for f in found if f) == sorted(f"./{k}" for k in [*SHOWN, *SIBLINGS])
        assert sorted(os.listdir(mnt)) == sorted(["p_%", "pX%", "p_X", "p_%x"])
        assert os.listdir(mnt / PARENT / "m") == ["i"]
        for key, value in SHOWN.items():
            assert (mnt / key).read_text() == value
        assert absent(mnt / PARENT / "a")  # a// and a/ are not the directory a
        messages = [r.getMessage() for r in caplog.records if "cannot be shown" in r.getMessage()]
        for key in [*hidden, *top_hidden]:
            shown = repr(key.decode("utf-8", "surrogateescape"))
            assert sum(shown in m for m in messages) == 1, (key, messages)
        assert len(messages) == len(hidden) + len(top_hidden)

        sh(f"rm -r {mnt}/{PARENT}")
        deadline = time.monotonic() + SWEEP_BOUND
        while any(k.startswith(PARENT.encode() + b"/") for k in raw.stored()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert raw.stored() == {*top_hidden, *(k.encode() for k in SIBLINGS)}
        assert sorted(os.listdir(mnt)) == sorted(["pX%", "p_X", "p_%x"])
        assert absent(mnt / PARENT)
