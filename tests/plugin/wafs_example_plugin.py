"""An engine from another package: every key in one JSON file, named by ``myscheme:///path/store.json``.

It implements only ``get``, ``set``, ``list`` and ``from_url``; the file is read on every call
and replaced whole on every write, so processes that take turns (a mount daemon, then
``wafs copy``) see each other's keys. Writers in several processes at once are not supported.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from typing import Self

from wafs import Engine


class ExampleEngine(Engine):
    """Keys in a JSON object in the file at ``path``; ``list`` is in key order."""

    ordering = "key"

    def __init__(self, path: str) -> None:
        self.path = path
        self.lock = threading.Lock()

    @classmethod
    def from_url(cls, url: str) -> Self:
        path = url.partition("://")[2]
        if not os.path.isabs(path):
            raise ValueError(f"myscheme:// needs an absolute path to a JSON file, not {path!r}")
        return cls(path)

    def _read(self) -> dict[str, str]:
        try:
            with open(self.path, encoding="utf-8") as file:
                data: dict[str, str] = json.load(file)
        except FileNotFoundError:
            return {}
        return data

    def _write(self, data: dict[str, str]) -> None:
        fd, temp = tempfile.mkstemp(dir=os.path.dirname(self.path), prefix=".store-")
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            json.dump(data, file)
        os.replace(temp, self.path)

    def get(self, key: str) -> str | None:
        with self.lock:
            return self._read().get(key)

    def set(self, key: str, value: str | None) -> None:
        with self.lock:
            data = self._read()
            if value is None:
                for existing in [k for k in data if k == key or k.startswith(key + "/")]:
                    del data[existing]
            else:
                data[key] = value
            self._write(data)

    def list(self, prefix: str = "", offset: int = 0, limit: int | None = 50) -> list[str]:
        with self.lock:
            keys = sorted(k for k in self._read() if k.startswith(prefix))
        return keys[offset:None if limit is None else offset + limit]


class NotAnEngine:
    """What a broken entry point names: a class that is not a wafs.Engine."""
