"""MemoryEngine: a dict per instance, for tests and throwaway mounts."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping

from ..engine import Engine
from ..keys import SEPARATOR
from ..urls import query_parameters


class MemoryEngine(Engine):
    """Keys in a dict that lives as long as the engine. ``list`` order: newest write first."""

    ordering = "newest-first"

    def __init__(self) -> None:
        # Insertion order is write order: a write moves its key to the end.
        self._data: dict[str, str] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_url(cls, url: str) -> MemoryEngine:
        """``memory://``: a new, empty store. It takes no parameters (:class:`ValueError`)."""
        query_parameters(url, {})
        return cls()

    def get(self, key: str) -> str | None:
        return self._data.get(key)

    def set(self, key: str, value: str | None) -> None:
        with self._lock:
            if value is None:
                self._drop_under([key])
            else:
                self._data.pop(key, None)
                self._data[key] = value

    def add(self, key: str, value: str) -> bool:
        """Atomic: the check and the write happen under the engine's lock."""
        with self._lock:
            if key in self._data:
                return False
            self._data[key] = value
            return True

    def list(self, prefix: str = "", offset: int = 0, limit: int | None = 50) -> list[str]:
        with self._lock:
            newest_first = [key for key in reversed(self._data) if key.startswith(prefix)]
        return newest_first[offset:None if limit is None else offset + limit]

    def iter_keys(self, prefix: str = "") -> Iterator[str]:
        with self._lock:
            return iter([key for key in self._data if key.startswith(prefix)])

    def get_many(self, keys: Iterable[str]) -> dict[str, str | None]:
        return {key: self._data.get(key) for key in keys}

    def set_many(self, items: Mapping[str, str]) -> None:
        with self._lock:
            for key, value in items.items():
                self._data.pop(key, None)
                self._data[key] = value

    def delete(self, key: str) -> None:
        with self._lock:
            self._data.pop(key, None)

    def delete_many(self, keys: Iterable[str]) -> None:
        with self._lock:
            for key in keys:
                self._data.pop(key, None)

    def delete_prefixes(self, prefixes: Iterable[str]) -> None:
        with self._lock:
            self._drop_under(prefixes)

    def _drop_under(self, prefixes: Iterable[str]) -> None:
        prefixes = tuple(prefixes)
        starts = tuple(prefix + SEPARATOR for prefix in prefixes)
        for key in [key for key in self._data if key in prefixes or key.startswith(starts)]:
            del self._data[key]

    def __repr__(self) -> str:
        return f"MemoryEngine(<{len(self._data)} keys>)"


__all__ = ["MemoryEngine"]
