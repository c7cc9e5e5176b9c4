"""Engines by URL scheme: one table, each engine imported only when its scheme is used."""

from __future__ import annotations

import importlib

from .engine import Engine
from .errors import UnknownSchemeError

#: scheme -> "module:Class"; the class's ``from_url(url)`` opens the engine.
ENGINES: dict[str, str] = {
    "file": "wafs.engines.file:FileEngine",
    "memory": "wafs.engines.memory:MemoryEngine",
    "redis": "wafs.engines.redis:RedisEngine",
    "rediss": "wafs.engines.redis:RedisEngine",
    "unix": "wafs.engines.redis:RedisEngine",
    "redis+cluster": "wafs.engines.redis:RedisEngine",
    "postgresql": "wafs.engines.postgres:PostgresEngine",
    "postgres": "wafs.engines.postgres:PostgresEngine",
}


def engine_class(scheme: str) -> type[Engine]:
    """Import and return the engine class registered for ``scheme``."""
    try:
        target = ENGINES[scheme]
    except KeyError:
        known = ", ".join(f"{name}://" for name in ENGINES)
        raise UnknownSchemeError(f"unknown engine URL scheme {scheme + '://'!r}; known: {known}") from None
    module_name, _, class_name = target.partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    if not (isinstance(cls, type) and issubclass(cls, Engine)):
        raise TypeError(f"{target} (registered for {scheme}://) is not a wafs.Engine subclass")
    return cls


def open_engine(url: str) -> Engine:
    """Open an engine from a URL such as ``file://.baileys/default``, ``memory://``,
    ``redis://localhost:6379/0?prefix=wa:default`` or ``postgresql://user@host/db``.

    A string without ``://`` is a FileEngine directory.
    """
    scheme = url.partition("://")[0].lower() if "://" in url else "file"
    return engine_class(scheme).from_url(url)
