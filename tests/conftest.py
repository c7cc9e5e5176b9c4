"""Shared fixtures: every engine kind, on real servers started for the test session."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from wafs import Engine, FileEngine, MemoryEngine

from .minimal_engine import DictEngine
from .servers import postgres_server, redis_server  # noqa: F401  (fixtures)

ENGINE_KINDS = ["file", "memory", "minimal", "redis", "postgres"]
_unique = itertools.count()


def make_engine(kind: str, request: pytest.FixtureRequest, tmp_path) -> Engine:
    """A new, empty engine of ``kind``; servers come from the session fixtures."""
    if kind == "file":
        return FileEngine(tmp_path / "store")
    if kind == "memory":
        return MemoryEngine()
    if kind == "minimal":
        return DictEngine()
    if kind == "redis":
        server = request.getfixturevalue("redis_server")
        return server.engine(prefix=f"wa:test{next(_unique)}")
    if kind == "postgres":
        server = request.getfixturevalue("postgres_server")
        return server.engine(table=f"storage_{next(_unique)}")
    raise ValueError(kind)


@pytest.fixture(params=ENGINE_KINDS)
def engine(request: pytest.FixtureRequest, tmp_path) -> Iterator[Engine]:
    """A new, empty engine of every kind in turn."""
    created = make_engine(request.param, request, tmp_path)
    try:
        yield created
    finally:
        created.close()
