"""wafs: the key-value engines of a Baileys WhatsApp bot, in Python, and a FUSE mount of any of them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import buffer_json, keys
from .engine import Engine, Kind
from .engines.file import FileEngine
from .engines.memory import MemoryEngine
from .errors import (
    BackendError,
    BackendUnavailableError,
    EnginePluginError,
    InvalidKeyError,
    InvalidValueError,
    KeyConflictError,
    MissingDependencyError,
    NoSpaceError,
    UnknownSchemeError,
    ValueTooLargeError,
    WafsError,
)
from .registry import open_engine, register_engine

if TYPE_CHECKING:
    from .engines.postgres import PostgresEngine as PostgresEngine
    from .engines.redis import RedisClient, RedisEngine
    from .mount.api import mounted as mounted

__version__ = "0.1.0"

_LAZY = {
    "RedisEngine": "wafs.engines.redis",
    "RedisClient": "wafs.engines.redis",
    "PostgresEngine": "wafs.engines.postgres",
    "mounted": "wafs.mount.api",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'wafs' has no attribute {name!r}")


# What ``from wafs import *`` brings: every name that imports without an optional dependency,
# so PostgresEngine (psycopg) and mounted (libfuse 3) are left out; ``wafs.PostgresEngine`` and
# ``wafs.mounted`` import theirs on first use.
__all__ = [
    "BackendError",
    "BackendUnavailableError",
    "Engine",
    "EnginePluginError",
    "FileEngine",
    "InvalidKeyError",
    "InvalidValueError",
    "KeyConflictError",
    "Kind",
    "MemoryEngine",
    "MissingDependencyError",
    "NoSpaceError",
    "RedisClient",
    "RedisEngine",
    "UnknownSchemeError",
    "ValueTooLargeError",
    "WafsError",
    "__version__",
    "buffer_json",
    "keys",
    "open_engine",
    "register_engine",
]
