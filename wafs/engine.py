"""The engine contract: three abstract methods, and mixins built only on them.

Like :class:`collections.abc.MutableMapping`, an engine implements ``get``, ``set`` and
``list``; everything else the CLI and the mount need comes from mixin methods whose
defaults are built on those three. Engines override the mixins for speed (one round trip
instead of many), never to change what they mean.

Key rules (:mod:`wafs.keys`) are checked here, in one place, for every engine: a subclass's
``get``/``set``/``list`` and its overrides of the key-taking mixins are wrapped when the
class is created, so a bad key or value is refused before the engine's own code runs.
"""

from __future__ import annotations

import enum
import functools
import inspect
import itertools
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, ClassVar, Literal, Self

from .errors import InvalidValueError
from .keys import SEPARATOR, check_key, check_prefix, is_valid_key

Ordering = Literal["newest-first", "key", "unspecified"]
Listing = Literal["bulk", "directory"]


class Kind(enum.IntFlag):
    """What a name in a directory is: a key (``FILE``), a prefix of keys (``DIR``), or both."""

    FILE = 1
    DIR = 2


def check_value(value: object) -> str | None:
    """Return ``value`` if it is ``None`` or a ``str`` that encodes as UTF-8."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidValueError(f"value must be a str or None, not {type(value).__name__}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidValueError("value is not valid UTF-8 text") from exc
    return value


def _check_directory(directory: str) -> str:
    return directory if directory == "" else check_key(directory)


def _check_page(offset: int, limit: int | None) -> None:
    if not isinstance(offset, int) or offset < 0:
        raise ValueError(f"offset must be an int >= 0, not {offset!r}")
    if limit is not None and (not isinstance(limit, int) or limit < 0):
        raise ValueError(f"limit must be an int >= 0 or None, not {limit!r}")


def _checks_key(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def checked(self: Engine, key: str, *args: Any, **kwargs: Any) -> Any:
        return method(self, check_key(key), *args, **kwargs)

    return checked


def _checks_keys(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def checked(self: Engine, keys: Iterable[str], *args: Any, **kwargs: Any) -> Any:
        return method(self, [check_key(key) for key in keys], *args, **kwargs)

    return checked


def _checks_set(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def checked(self: Engine, key: str, value: str | None) -> None:
        method(self, check_key(key), check_value(value))

    return checked


def _checks_add(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def checked(self: Engine, key: str, value: str) -> bool:
        if check_value(value) is None:
            raise InvalidValueError(f"add cannot delete ({key!r} maps to None); use set")
        return bool(method(self, check_key(key), value))

    return checked


def _checks_set_many(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def checked(self: Engine, items: Mapping[str, str]) -> None:
        for key, value in items.items():
            check_key(key)
            if check_value(value) is None:
                raise InvalidValueError(f"set_many cannot delete ({key!r} maps to None); use set or delete")
        method(self, items)

    return checked


def _first_parameters(method: Callable[..., Any], count: int) -> tuple[inspect.Signature, list[str]]:
    """``method``'s signature and the names of its ``count`` parameters after ``self``."""
    signature = inspect.signature(method)
    named = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    first = list(signature.parameters.values())[1:count + 1]
    names = [parameter.name for parameter in first if parameter.kind in named]
    if len(names) < count:
        raise TypeError(
            f"{method.__qualname__} must take {count} arguments after self, as Engine.{method.__name__}"
        )
    return signature, names


# The wrappers below bind the arguments with the wrapped method's own signature, so a
# subclass's defaults (``limit=100``) are the ones that apply, as inspect.signature shows.

def _checks_list(method: Callable[..., Any]) -> Callable[..., Any]:
    signature, (prefix, offset, limit) = _first_parameters(method, 3)

    @functools.wraps(method)
    def checked(*args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        _check_page(bound.arguments[offset], bound.arguments[limit])
        bound.arguments[prefix] = check_prefix(bound.arguments[prefix])
        return method(*bound.args, **bound.kwargs)

    return checked


def _checks_argument(check: Callable[[str], str]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A wrapper factory that applies ``check`` to the first argument after ``self``."""

    def wrap(method: Callable[..., Any]) -> Callable[..., Any]:
        signature, (name,) = _first_parameters(method, 1)

        @functools.wraps(method)
        def checked(*args: Any, **kwargs: Any) -> Any:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            bound.arguments[name] = check(bound.arguments[name])
            return method(*bound.args, **bound.kwargs)

        return checked

    return wrap


_CHECKS: dict[str, Callable[[Callable[..., Any]], Callable[..., Any]]] = {
    "get": _checks_key,
    "set": _checks_set,
    "add": _checks_add,
    "list": _checks_list,
    "delete": _checks_key,
    "size": _checks_key,
    "check_writable": _checks_key,
    "get_many": _checks_keys,
    "sizes": _checks_keys,
    "set_many": _checks_set_many,
    "iter_keys": _checks_argument(check_prefix),
    "items": _checks_argument(check_prefix),
    "children": _checks_argument(_check_directory),
    "delete_prefixes": _checks_keys,
}
#: The wrappers made by :func:`_wrap_checks`: a class that reuses one is not wrapped twice.
_CHECKED: weakref.WeakSet[Callable[..., Any]] = weakref.WeakSet()


def _wrap_checks(cls: type, names: Iterable[str]) -> None:
    for name in names:
        method = cls.__dict__.get(name)
        if method is None or getattr(method, "__isabstractmethod__", False) or method in _CHECKED:
            continue
        checked = _CHECKS[name](method)
        _CHECKED.add(checked)
        setattr(cls, name, checked)


class Watch(ABC):
    """A running change feed, from :meth:`Engine.watch`."""

    @abstractmethod
    def close(self) -> None:
        """Stop following changes; no callback runs after this returns."""


class Engine(ABC):
    """A key-value store of text values under ``/``-separated keys.

    Subclasses implement :meth:`get`, :meth:`set` and :meth:`list`. Engines are called
    from several threads at once by the mount and must be safe for that.
    """

    #: The order :meth:`list` returns keys in: ``"newest-first"`` (last write first, ties by
    #: key), ``"key"`` (code point order of the key) or ``"unspecified"``.
    ordering: ClassVar[Ordering] = "unspecified"
    #: How the mount learns the tree: ``"bulk"`` (one :meth:`iter_keys` pass over the whole
    #: store, then kept current) or ``"directory"`` (:meth:`children` per directory is cheap).
    listing: ClassVar[Listing] = "bulk"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _wrap_checks(cls, _CHECKS)

    @classmethod
    def from_url(cls, url: str) -> Self:
        """Open the engine named by ``url`` (``scheme://...``), as :func:`wafs.open_engine` does.

        Every engine that a URL opens overrides this classmethod: it parses ``url`` (refusing
        a parameter it does not know with :class:`ValueError`) and returns an open engine.
        The default raises :class:`NotImplementedError` saying so.
        """
        raise NotImplementedError(
            f"{cls.__qualname__} cannot be opened from a URL ({url!r}): implement the classmethod "
            f"{cls.__qualname__}.from_url(url), then give it a URL scheme: an entry point in group "
            "'wafs.engines' of your package (myscheme = 'module:Class'), or "
            "wafs.register_engine('myscheme', Class) in your program"
        )

    # --- the contract --------------------------------------------------------------------

    @abstractmethod
    def get(self, key: str) -> str | None:
        """Return the value stored under ``key``, or ``None`` when there is none.

        ``""`` is a value (an empty file), distinct from ``None``. Raises
        :class:`~wafs.errors.InvalidKeyError` for a key that breaks the key rules,
        :class:`~wafs.errors.InvalidValueError` for a stored value that is not UTF-8 text
        (written by another client: retrying cannot help) and
        :class:`~wafs.errors.BackendError` when the store fails: never ``None`` for a failure.
        """

    @abstractmethod
    def set(self, key: str, value: str | None) -> None:
        """Store ``value`` under ``key``; ``None`` deletes ``key`` and every key below ``key + "/"``.

        The cascade never touches a key that merely starts with the same characters:
        ``set("chat/1", None)`` removes ``chat/1`` and ``chat/1/index`` but not
        ``chat/10/index``. ``""`` stores an empty value. A write replaces the whole value at
        once: a reader sees the old or the new value, never a mix.
        """

    @abstractmethod
    def list(self, prefix: str = "", offset: int = 0, limit: int | None = 50) -> list[str]:
        """Return the keys that start with ``prefix`` (plain string prefix), paged.

        Keys only (a directory that merely holds keys is not listed). ``offset`` skips that
        many keys, ``limit`` caps the page (``None``: all). The order is the engine's
        :attr:`ordering`; without concurrent writes, consecutive pages neither skip nor
        repeat a key.
        """

    # --- mixins: defaults built on the three methods above ---------------------------------

    def iter_keys(self, prefix: str = "") -> Iterator[str]:
        """Yield every key that starts with ``prefix``, in no promised order (the fastest)."""
        return iter(self.list(prefix, 0, None))

    def scan_keys(self, prefix: str = "") -> Iterator[str]:
        """Yield every key that starts with ``prefix`` at least once: a key may come more than
        once. For callers that keep the keys in a structure of their own anyway (the mount's
        tree), so that the engine need not keep a set of them to drop repeats (a Redis SCAN
        repeats keys while the server resizes its tables). Default: :meth:`iter_keys`."""
        return self.iter_keys(prefix)

    def items(self, prefix: str = "", batch: int = 500) -> Iterator[tuple[str, str]]:
        """Yield ``(key, value)`` for every key under ``prefix``, reading ``batch`` keys at a time."""
        keys = self.iter_keys(prefix)
        while chunk := list(itertools.islice(keys, batch)):
            for key, value in self.get_many(chunk).items():
                if value is not None:
                    yield key, value

    def add(self, key: str, value: str) -> bool:
        """Store ``value`` under ``key`` only if ``key`` holds no value; True when it was stored.

        Engines make this atomic: of several clients adding the same key at once, exactly
        one gets True and its value is the one stored (Redis ``SET NX``, a FileEngine hard
        link, PostgreSQL ``ON CONFLICT DO NOTHING``). Keys below ``key`` do not count: only
        a value under ``key`` itself makes it False. The default, built on :meth:`get` and
        :meth:`set`, is NOT atomic: two clients can both see the key absent and both get
        True, the last write winning.
        """
        if self.get(key) is not None:
            return False
        self.set(key, value)
        return True

    def check_writable(self, key: str) -> None:  # noqa: B027 - the key rules are checked by its wrapper
        """Raise the error ``set(key, value)`` would raise for ``key`` itself, writing nothing.

        The default checks the key rules only (:class:`~wafs.errors.InvalidKeyError`);
        engines add their own refusals (FileEngine: names it cannot store, and
        :class:`~wafs.errors.KeyConflictError` where a file is in the way of a directory or
        keys are below ``key``). Store failures are not foreseen: ``set`` can still raise
        :class:`~wafs.errors.BackendError`, and a conflict can arise after this returns.
        """

    def get_many(self, keys: Iterable[str]) -> dict[str, str | None]:
        """Read many keys at once: ``{key: value or None}``, in the order given.

        All or nothing: when one value cannot be read (:class:`~wafs.errors.InvalidValueError`
        for a stored value that is not UTF-8 text, written by another client), the whole call
        raises and the caller reads the others key by key with :meth:`get`.
        """
        return {key: self.get(key) for key in keys}

    def set_many(self, items: Mapping[str, str]) -> None:
        """Store many values (no ``None``); engines make this one round trip or transaction."""
        for key, value in items.items():
            self.set(key, value)

    def size(self, key: str) -> int | None:
        """Return the length in UTF-8 bytes of the value under ``key``, or ``None``."""
        return self.sizes([key])[key]

    def sizes(self, keys: Iterable[str]) -> dict[str, int | None]:
        """Return ``{key: UTF-8 byte length or None}`` for many keys at once."""
        return {
            key: None if value is None else len(value.encode("utf-8"))
            for key, value in self.get_many(keys).items()
        }

    def delete(self, key: str) -> None:
        """Delete exactly ``key``, keeping the keys below ``key + "/"`` (unlike ``set(key, None)``).

        The default has only the cascade to work with: it saves the keys below, cascades,
        and writes them back. Engines override it with a real exact delete.
        """
        below = dict(self.items(key + SEPARATOR))
        self.set(key, None)
        self.set_many(below)

    def delete_many(self, keys: Iterable[str]) -> None:
        """Delete exactly these keys, as the engine listed them.

        Keys are not checked against the key rules: this is how keys that another client
        wrote and that break them (``a//b``) are removed by engines that can address them.
        The default can only address valid keys and skips the others (a cascade over their
        parent sweeps them). Engines still refuse to act outside their store.
        """
        for key in keys:
            if is_valid_key(key):
                self.delete(key)

    def delete_prefixes(self, prefixes: Iterable[str]) -> None:
        """Cascade-delete each prefix (as ``set(prefix, None)``), in as few passes as the engine can."""
        for prefix in prefixes:
            self.set(prefix, None)

    def children(self, directory: str = "") -> dict[str, Kind]:
        """Return the immediate names below ``directory`` (``""`` is the root) and their kind."""
        start = directory + SEPARATOR if directory else ""
        found: dict[str, Kind] = {}
        for key in self.scan_keys(start):
            name, sep, _ = key[len(start):].partition(SEPARATOR)
            found[name] = found.get(name, Kind(0)) | (Kind.DIR if sep else Kind.FILE)
        return found

    def watch(self, on_change: Callable[[str | None, bool], None]) -> Watch | None:
        """Follow changes other clients make to the store, if the store can tell.

        Calls ``on_change(key, deleted)`` from a background thread for every key set
        (``deleted`` False) or deleted (True), and ``on_change(None, True)`` whenever events
        may have been lost (a reconnect): the caller must then read the store again.
        Returns a :class:`Watch` to stop following, or ``None`` when the store has no change
        feed (the default), in which case callers poll.
        """
        return None

    def close(self) -> None:  # noqa: B027 - a no-op unless the engine holds something to release
        """Release connections and files; the engine is not used afterwards."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


_wrap_checks(Engine, _CHECKS)

__all__ = ["Engine", "Kind", "Listing", "Ordering", "Watch", "check_value"]
