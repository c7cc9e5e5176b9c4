"""Values the daemon read, each with the digest that names its version."""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass


def digest(data: bytes) -> int:
    """A version's name: equal bytes, equal digest (64 bits; the daemon's own process only)."""
    return hash(data)


@dataclass(frozen=True, slots=True)
class Value:
    """One version of a value: its bytes, their digest, and when they were read (monotonic)."""

    data: bytes
    digest: int
    read_at: float

    def fresh(self, ttl: float, now: float) -> bool:
        return math.isinf(ttl) or now - self.read_at <= ttl


class ValueCache:
    """Recently read values, at most ``max_bytes`` in all (least recently used go first).

    An entry older than ``ttl`` is no longer trusted as the store's current value, but its
    bytes still name their version: the mount keeps serving them to a file opened before a
    change (see :meth:`wafs.mount.operations.Operations.observe`).
    """

    def __init__(self, max_bytes: int, ttl: float) -> None:
        self.max_bytes = max_bytes
        self.ttl = ttl
        self._items: OrderedDict[str, Value] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: str) -> Value | None:
        """The newest version read of ``key``, fresh or not."""
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def fresh(self, key: str, now: float | None = None) -> Value | None:
        """The version of ``key`` read within ``ttl``, else None."""
        value = self.get(key)
        if value is None or not value.fresh(self.ttl, time.monotonic() if now is None else now):
            return None
        return value

    def put(self, key: str, data: bytes) -> Value:
        value = Value(data, digest(data), time.monotonic())
        with self._lock:
            self._pop(key)
            if len(data) <= self.max_bytes // 2:
                self._items[key] = value
                self._bytes += len(data)
                while self._bytes > self.max_bytes:
                    self._pop(next(iter(self._items)))
        return value

    def drop(self, key: str) -> None:
        with self._lock:
            self._pop(key)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0

    def _pop(self, key: str) -> None:
        value = self._items.pop(key, None)
        if value is not None:
            self._bytes -= len(value.data)
