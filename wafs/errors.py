"""The errors wafs raises.

Each engine turns the errors of its store's client (redis-py, psycopg, the operating system)
into these in one place in its module, and raises them from the original error.
"""

from __future__ import annotations


class WafsError(Exception):
    """Base class of every error wafs raises on purpose."""


class InvalidKeyError(WafsError, ValueError):
    """A key (or prefix) breaks the key rules; nothing was read or written."""


class InvalidValueError(WafsError, ValueError):
    """A value cannot be stored or read as text: permanent, retrying cannot help.

    Raised before writing a value that is not a ``str`` that encodes as UTF-8 (or that the
    store cannot hold, such as NUL in PostgreSQL ``text``): nothing was written. Raised when
    reading a stored value that is not UTF-8 text (another client wrote bytes): the stored
    value is left as it is.
    """


class ValueTooLargeError(InvalidValueError):
    """A value is larger than the store can hold (Redis: 512 MiB); nothing was written."""


class KeyConflictError(WafsError, ValueError):
    """The key cannot exist beside another one in this engine (a file where a directory must be)."""


class UnknownSchemeError(WafsError, ValueError):
    """An engine URL names a scheme no engine is registered for."""


class EnginePluginError(WafsError):
    """The engine another package declares for a URL scheme (entry point group ``wafs.engines``)
    cannot be used: it fails to import, is not an Engine, or two packages claim the scheme.

    The message names the entry point and its distribution.
    """


class MissingDependencyError(WafsError, ImportError):
    """An optional dependency an engine needs is not installed."""


class BackendError(WafsError, OSError):
    """The store failed to do what was asked. Nothing is known to have been lost."""


class BackendUnavailableError(BackendError, ConnectionError):
    """The store cannot be reached (down, timed out, refused); retry later."""


class NoSpaceError(BackendError):
    """The store is full; the old value is kept."""
