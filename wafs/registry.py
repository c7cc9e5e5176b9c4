"""Engines by URL scheme: one table, each engine imported only when its scheme is used.

A scheme is looked up in three places, the first that has it winning:

1. :data:`ENGINES`, wafs' own engines (a plugin cannot take over ``redis://``);
2. the engines registered in this process with :func:`register_engine`;
3. the entry points of group :data:`ENTRY_POINT_GROUP` (``wafs.engines``) that installed
   packages declare: name = the scheme, value = ``"module:Class"``. They are read only when
   1 and 2 lack the scheme, so ``import wafs`` and the built-in engines never scan them.
"""

from __future__ import annotations

import importlib
import re
from typing import TYPE_CHECKING, cast

from .engine import Engine
from .errors import EnginePluginError, UnknownSchemeError

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

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
#: The entry-point group where other packages declare their engines.
ENTRY_POINT_GROUP = "wafs.engines"
#: A URL scheme (RFC 3986), in lower case: open_engine lowercases the scheme of every URL.
_SCHEME = re.compile(r"[a-z][a-z0-9+.-]*")

_registered: dict[str, type[Engine]] = {}


def register_engine(scheme: str, cls: type[Engine]) -> None:
    """Open URLs ``scheme://...`` with ``cls.from_url`` in this process.

    ``scheme`` is a lower-case URL scheme (a letter, then letters, digits, ``+``, ``-``,
    ``.``); a scheme of wafs' own engines (:data:`ENGINES`) is refused with
    :class:`ValueError`. ``cls`` must be an :class:`~wafs.Engine` subclass that implements
    ``from_url`` (:class:`TypeError` otherwise). Registering a scheme again replaces the
    class; a registered class wins over an entry point of the same scheme.

    Only this process (and a mount daemon it forks) sees the registration: the ``wafs``
    command finds other packages' engines through entry points.
    """
    if not isinstance(scheme, str) or not _SCHEME.fullmatch(scheme):
        raise ValueError(f"{scheme!r} is not a lower-case URL scheme (a letter, then a-z 0-9 + - .)")
    if scheme in ENGINES:
        raise ValueError(f"{scheme}:// is a scheme of wafs' own engines ({ENGINES[scheme]}); pick another")
    problem = _not_an_engine(cls)
    if problem:
        raise TypeError(f"cannot register {scheme}://: {problem}")
    _registered[scheme] = cls


def _not_an_engine(obj: object) -> str | None:
    """Why ``obj`` cannot open URLs of a scheme, or None when it can."""
    if not (isinstance(obj, type) and issubclass(obj, Engine)):
        return f"{obj!r} is not a wafs.Engine subclass"
    if obj.from_url.__func__ is Engine.from_url.__func__:  # type: ignore[attr-defined]
        return f"{obj.__module__}.{obj.__qualname__} does not implement the classmethod from_url(url)"
    return None


def _entry_points() -> dict[str, list[EntryPoint]]:
    """The installed packages' engine entry points, by scheme (lower-cased, as URLs are matched)."""
    from importlib.metadata import entry_points

    found: dict[str, list[EntryPoint]] = {}
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(entry_point.name.lower(), []).append(entry_point)
    return found


def _distribution(entry_point: EntryPoint) -> str:
    """The name of the installed package that declares ``entry_point``."""
    return entry_point.dist.name if entry_point.dist is not None else "an unknown distribution"


def _describe(entry_point: EntryPoint) -> str:
    """``entry point myscheme = pkg:Class of wafs-example-plugin``."""
    return f"entry point {entry_point.name} = {entry_point.value} of {_distribution(entry_point)}"


def _load(scheme: str, candidates: list[EntryPoint]) -> type[Engine]:
    """The engine class of the one entry point that claims ``scheme``, or EnginePluginError."""
    if len(candidates) > 1:
        named = "; ".join(_describe(entry_point) for entry_point in candidates)
        raise EnginePluginError(f"{scheme}:// is claimed by {len(candidates)} installed packages ({named}): "
                                "uninstall all but one")
    entry_point = candidates[0]
    try:
        loaded = entry_point.load()
    except Exception as exc:  # whatever the plugin's import raises
        raise EnginePluginError(f"cannot load the engine for {scheme}:// ({_describe(entry_point)}): "
                                f"{type(exc).__name__}: {exc}") from exc
    problem = _not_an_engine(loaded)
    if problem:
        raise EnginePluginError(f"the engine for {scheme}:// ({_describe(entry_point)}): {problem}")
    return cast("type[Engine]", loaded)


def engine_class(scheme: str) -> type[Engine]:
    """Import and return the engine class for ``scheme``: built in, registered, or from an entry point.

    Raises :class:`~wafs.errors.UnknownSchemeError` listing every known scheme when none
    has it, and :class:`~wafs.errors.EnginePluginError` when the entry point for it cannot
    be loaded or is not an engine.
    """
    if scheme in ENGINES:
        target = ENGINES[scheme]
        module_name, _, class_name = target.partition(":")
        cls = getattr(importlib.import_module(module_name), class_name)
        if not (isinstance(cls, type) and issubclass(cls, Engine)):
            raise TypeError(f"{target} (registered for {scheme}://) is not a wafs.Engine subclass")
        return cls
    if scheme in _registered:
        return _registered[scheme]
    plugins = _entry_points()
    if scheme in plugins:
        return _load(scheme, plugins[scheme])
    known = [f"{name}://" for name in [*ENGINES, *_registered]]
    known += [f"{name}:// (from {', '.join(_distribution(entry_point) for entry_point in found)})"
              for name, found in plugins.items() if name not in ENGINES and name not in _registered]
    raise UnknownSchemeError(f"unknown engine URL scheme {scheme + '://'!r}; known: {', '.join(known)}")


def open_engine(url: str) -> Engine:
    """Open an engine from a URL such as ``file://.baileys/default``, ``memory://``,
    ``redis://localhost:6379/0?prefix=wa:default`` or ``postgresql://user@host/db``, or of a
    scheme another package adds (:func:`engine_class`).

    A string without ``://`` is a FileEngine directory.
    """
    scheme = url.partition("://")[0].lower() if "://" in url else "file"
    return engine_class(scheme).from_url(url)
