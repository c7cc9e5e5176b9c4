"""The store layer under faults, on real servers: scans that outlive their server, restores.

Each test puts an engine (or ``wafs copy``) through a fault a user met: a Redis restarted
from its dump in the middle of a SCAN, a PostgreSQL restarted between two pages of keys.
The rule under test: an enumeration completes against one server life or raises
BackendUnavailableError, never a partial answer.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner

from wafs import BackendUnavailableError, FileEngine
from wafs.cli import main
from wafs.engines.redis import RedisEngine

from .servers import RedisServer, running_redis

KEYS = 20_000


@pytest.fixture(scope="module")
def restartable_redis() -> Iterator[RedisServer]:
    """A private redis-server this module may kill and restart from its dump."""
    with running_redis() as server:
        yield server


@pytest.fixture(scope="module")
def many_keys(restartable_redis: RedisServer) -> set[str]:
    """20,000 keys under ``wa:scan`` in the restartable server, and a dump of them."""
    keys = {f"chat/{n}@s.whatsapp.net/index" for n in range(KEYS)}
    with restartable_redis.engine(prefix="wa:scan") as engine:
        engine.set_many(dict.fromkeys(keys, "v"))
    return keys


def _drain(keys: Iterator[str], seen: set[str]) -> str:
    """Add what ``keys`` still yields to ``seen``: "complete", or "raised" when it failed as it may."""
    try:
        seen.update(keys)
    except BackendUnavailableError as exc:
        print(f"raised: {exc}")
        return "raised"
    return "complete"


@pytest.mark.parametrize("method", ["iter_keys", "scan_keys"])
def test_iter_keys_across_a_restart_from_the_dump_restarts_or_fails(
    restartable_redis: RedisServer, many_keys: set[str], method: str
) -> None:
    """kill -9 and a restart from the dump between two SCAN calls: every key, or an error
    (``scan_keys`` may repeat keys; it may not miss one)."""
    with restartable_redis.engine(prefix="wa:scan") as engine:
        keys = getattr(engine, method)("")
        seen = {next(keys)}  # the first SCAN reply is in; its cursor belongs to this server life
        restartable_redis.restart_from_dump()
        outcome = _drain(keys, seen)
        print(f"{outcome}: {len(seen)} of {len(many_keys)} keys")
        if outcome == "complete":
            assert seen == many_keys, f"a partial scan: {len(many_keys - seen)} keys missing"
        assert len(engine.list("", 0, None)) == len(many_keys)  # and the engine works on the new life


def test_wafs_copy_across_a_restart_copies_every_key_or_exits_1(
    restartable_redis: RedisServer, many_keys: set[str], tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The copy's listing meets the restart: it copies all 20,000 keys, or fails loudly."""
    original = RedisEngine.iter_keys

    def restarting(self: RedisEngine, prefix: str = "") -> Iterator[str]:
        keys = original(self, prefix)
        yield next(keys)
        restartable_redis.restart_from_dump()
        yield from keys

    monkeypatch.setattr(RedisEngine, "iter_keys", restarting)
    result = CliRunner().invoke(main, ["copy", f"{restartable_redis.url}?prefix=wa:scan", f"file://{tmp_path}/dst"])
    copied = set(FileEngine(tmp_path / "dst").iter_keys(""))
    print(result.output, f"{len(copied)} keys copied")
    if result.exit_code == 0:
        assert copied == many_keys, f"wafs copy succeeded with {len(many_keys - copied)} keys missing"
        assert result.stdout.startswith(f"copied {len(many_keys)} keys")
    else:
        assert result.exit_code == 1
        assert "unavailable" in result.stderr


def test_postgres_iter_keys_across_a_restart_pages_on_or_fails(postgres_server: Any, table: str) -> None:
    """Keyset pages: a restart between two pages continues after the last key on the new server
    life (committed rows survive it), or raises; never a partial listing."""
    keys = {f"contact/{n}@s.whatsapp.net/index" for n in range(3500)}
    with postgres_server.engine(table=table) as engine:
        engine.set_many(dict.fromkeys(keys, "v"))
        listed = engine.iter_keys("contact/")
        seen = {next(listed)}
        postgres_server.stop()
        postgres_server.start()
        outcome = _drain(listed, seen)
        print(f"{outcome}: {len(seen)} of {len(keys)} keys")
        if outcome == "complete":
            assert seen == keys
        assert set(engine.iter_keys("contact/")) == keys
