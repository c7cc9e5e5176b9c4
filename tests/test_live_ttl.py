"""The visibility bound without a change feed: FileEngine and PostgreSQL (MemoryEngine as a control).

These stores have no change feed, so the mount polls: a change another client makes shows
through the mount within the TTL + one listing of the store + the kernel's attr/entry
timeout (1 s). Real FUSE mounts with ``ttl=1.0``, real ``ls``/``cat``/``find``; the other
client is a second engine on the same directory or table (for memory, the mounted engine
object itself, written behind the daemon's back). Every wait polls with a deadline and
asserts it was met; the measured times are printed (``pytest -s``) and are the figures in
docs/live.md. Staleness is never asserted: a change may show before the TTL runs out.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from pathlib import Path

import pytest

from wafs import Engine, FileEngine, MemoryEngine

from . import helpers
from .helpers import CHAT, KERNEL_TIMEOUT, absent, cat, find, ls, wait_for
from .mounting import mounted

SESSION = {**helpers.SESSION, f"{CHAT}/message/A1/index": '{"fromMe": false}'}
TTL = 1.0
#: Allowance for one listing of this small store and for starting the shell command.
SLACK = 0.5
BOUND = TTL + KERNEL_TIMEOUT + SLACK


@pytest.fixture(params=["file", "postgres", "memory"])
def stores(
    request: pytest.FixtureRequest, tmp_path: Path, table: str
) -> Iterator[tuple[str, Engine, Engine]]:
    """``(kind, mounted engine, other client)`` over one store that holds :data:`SESSION`."""
    kind = request.param
    if kind == "file":
        mounted_engine: Engine = FileEngine(tmp_path / "store")
        other: Engine = FileEngine(tmp_path / "store")
    elif kind == "postgres":
        server = request.getfixturevalue("postgres_server")
        mounted_engine, other = server.engine(table=table), server.engine(table=table)
    else:
        mounted_engine = other = MemoryEngine()
    try:
        other.set_many(SESSION)
        yield kind, mounted_engine, other
    finally:
        mounted_engine.close()
        if other is not mounted_engine:
            other.close()


def test_changes_by_another_client_show_within_the_ttl_bound(
    stores: tuple[str, Engine, Engine], tmp_path: Path
) -> None:
    kind, engine, other = stores
    with mounted(engine, tmp_path / "mnt", ttl=TTL) as mnt:
        assert cat(mnt / CHAT / "index") == SESSION[f"{CHAT}/index"]  # kernel and daemon caches warm
        assert find(mnt) == sorted(f"./{key}" for key in SESSION)

        other.set(f"{CHAT}/message/B2/raw", '{"text": "nuevo"}')
        wait_for(f"{kind}: a new file in a known directory (ls)", lambda: "B2" in ls(mnt / CHAT / "message"),
                 BOUND)
        assert cat(mnt / CHAT / "message/B2/raw") == '{"text": "nuevo"}'

        other.set("chat/new@s.whatsapp.net/index", '{"name": "Beto"}')
        wait_for(f"{kind}: a new chat (find)", lambda: "./chat/new@s.whatsapp.net/index" in find(mnt), BOUND)

        longer = '{"name": "Ana María", "notify": "Ana", "verifiedName": "Ana S.A."}'
        other.set(f"{CHAT}/index", longer)
        wait_for(
            f"{kind}: an overwrite with a longer value (cat)", lambda: cat(mnt / CHAT / "index") == longer,
            BOUND,
        )
        other.set(f"{CHAT}/index", "{}")
        wait_for(
            f"{kind}: an overwrite with a shorter value (cat)", lambda: cat(mnt / CHAT / "index") == "{}",
            BOUND,
        )

        other.delete(f"{CHAT}/messages")
        wait_for(
            f"{kind}: a deleted key (ls, cat)",
            lambda: (
                "messages" not in ls(mnt / CHAT)
                and cat(mnt / CHAT / "messages", expect=errno.ENOENT) is None
            ),
            BOUND,
        )
        assert sorted(ls(mnt / CHAT)) == ["index", "message"]

        other.set(CHAT, None)  # the whole chat, by cascade, from the other client
        wait_for(
            f"{kind}: a chat removed by cascade (ls, find)",
            lambda: (
                ls(mnt / "chat") == ["120363@g.us", "new@s.whatsapp.net"]
                and not any(path.startswith(f"./{CHAT}") for path in find(mnt))
            ),
            BOUND,
        )
        assert absent(mnt / CHAT)
        assert find(mnt) == ["./chat/120363@g.us/index", "./chat/new@s.whatsapp.net/index", "./session/creds"]


def test_a_key_rewritten_in_a_loop_always_shows_its_latest_value_within_the_bound(
    stores: tuple[str, Engine, Engine], tmp_path: Path
) -> None:
    """Repeated rounds: each new value and each delete of the other client is seen in time."""
    kind, engine, other = stores
    with mounted(engine, tmp_path / "mnt", ttl=TTL) as mnt:
        assert ls(mnt / "chat") == ["120363@g.us", "5491112345678@s.whatsapp.net"]
        for round_ in range(3):
            name, value = f"R{round_}", f"round {round_}"
            other.set(f"{CHAT}/message/{name}/raw", value)
            wait_for(
                f"{kind}: round {round_} new key (cat)",
                lambda name=name, value=value: (
                    cat(mnt / CHAT / "message" / name / "raw", expect=errno.ENOENT) == value
                ),
                BOUND,
            )
            other.set(f"{CHAT}/message/{name}", None)
            wait_for(
                f"{kind}: round {round_} its delete (ls)",
                lambda name=name: (
                    name not in ls(mnt / CHAT / "message") and absent(mnt / CHAT / "message" / name)
                ),
                BOUND,
            )
