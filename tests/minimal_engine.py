"""A user-defined engine that implements only the three abstract methods, as a user would."""

from __future__ import annotations

import threading

from wafs import Engine


class DictEngine(Engine):
    """Keys in a dict; ``list`` order is not promised (so the default is exercised)."""

    def __init__(self) -> None:
        self.data: dict[str, str] = {}
        self.lock = threading.Lock()

    def get(self, key: str) -> str | None:
        return self.data.get(key)

    def set(self, key: str, value: str | None) -> None:
        with self.lock:
            if value is None:
                for existing in [k for k in self.data if k == key or k.startswith(key + "/")]:
                    del self.data[existing]
            else:
                self.data[key] = value

    def list(self, prefix: str = "", offset: int = 0, limit: int | None = 50) -> list[str]:
        with self.lock:
            keys = sorted(k for k in self.data if k.startswith(prefix))
        return keys[offset:None if limit is None else offset + limit]
