"""Shared fixtures: every engine kind, on real servers started for the test session.

``engine`` is a new, empty engine of each kind in :data:`ENGINE_KINDS` in turn; a module or
class that tests one kind overrides ``engine_kind`` (a fixture returning ``"redis"``, say).
``prefix`` and ``table`` are the Redis key prefix and PostgreSQL table of that engine (fresh
names for a test that builds its own engines), and ``raw`` is a plain client of its server.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from wafs import Engine, FileEngine, MemoryEngine

from .cluster import redis_cluster  # noqa: F401  (fixture)
from .helpers import unique
from .minimal_engine import DictEngine
from .servers import postgres_server, redis_server  # noqa: F401  (fixtures)

#: The kinds ``engine`` runs through; ``"cluster"`` (a 6-node Redis Cluster) is asked for by name.
ENGINE_KINDS = ["file", "memory", "minimal", "redis", "postgres"]
#: The fixture that names each server-backed kind's store: its key prefix or its table.
_NAMED_BY = {"redis": "prefix", "cluster": "prefix", "postgres": "table"}


def make_engine(
    kind: str, request: pytest.FixtureRequest, directory: Path, name: str | None = None
) -> Engine:
    """A new, empty engine of ``kind``; servers come from the session fixtures.

    ``directory`` holds a FileEngine's store; ``name`` is the Redis prefix or PostgreSQL table
    (a new unique one by default, so two engines of one test never share a store).
    """
    if kind == "file":
        return FileEngine(directory / "store")
    if kind == "memory":
        return MemoryEngine()
    if kind == "minimal":
        return DictEngine()
    if kind == "redis":
        return request.getfixturevalue("redis_server").engine(prefix=name or unique("wa:test"))
    if kind == "cluster":
        return request.getfixturevalue("redis_cluster").engine(prefix=name or unique("wa:test"))
    if kind == "postgres":
        return request.getfixturevalue("postgres_server").engine(table=name or unique("storage_"))
    raise ValueError(kind)


@pytest.fixture
def prefix() -> str:
    """A Redis key prefix no other test uses (the one of ``engine`` when it is a RedisEngine)."""
    return unique("wa:test")


@pytest.fixture
def table() -> str:
    """A PostgreSQL table name no other test uses (the one of ``engine`` when it is a PostgresEngine)."""
    return unique("storage_")


@pytest.fixture(params=ENGINE_KINDS)
def engine_kind(request: pytest.FixtureRequest) -> str:
    """The kind of ``engine``: each of :data:`ENGINE_KINDS` in turn, unless overridden."""
    return request.param


@pytest.fixture
def engine(engine_kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A new, empty engine of ``engine_kind``, closed after the test."""
    named_by = _NAMED_BY.get(engine_kind)
    name = request.getfixturevalue(named_by) if named_by else None
    created = make_engine(engine_kind, request, tmp_path, name)
    try:
        yield created
    finally:
        created.close()


@pytest.fixture
def raw(engine_kind: str, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A plain client of the server behind ``engine``: redis-py, RedisCluster or psycopg (autocommit)."""
    if engine_kind == "redis":
        client = request.getfixturevalue("redis_server").client()
    elif engine_kind == "cluster":
        client = request.getfixturevalue("redis_cluster").client()
    elif engine_kind == "postgres":
        client = request.getfixturevalue("postgres_server").connect()
    else:
        raise ValueError(f"no server behind a {engine_kind} engine")
    try:
        yield client
    finally:
        client.close()
