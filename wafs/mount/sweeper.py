"""Cascade deletes left behind by ``rmdir``, batched so one store pass serves many prefixes.

``rm -r`` removes a directory bottom-up: every ``rmdir`` leaves a cascade ``set(dir, None)``
to sweep keys the mount could not show. On a bulk engine each cascade is a pass over the
whole store (Redis SCAN), so they are collected until no ``rmdir`` came for ``delay``
seconds and run together with :meth:`~wafs.Engine.delete_prefixes`, prefixes under another
pending prefix dropped. A write
under a pending prefix runs the sweep first, so a sweep never removes what was written after.
"""

from __future__ import annotations

import logging
import threading
import time

from ..engine import Engine
from ..keys import is_under

log = logging.getLogger(__name__)
RETRY_SECONDS = 5.0


class Sweeper:
    """Runs pending cascades ``delay`` seconds after the last one was added (0: at once)."""

    def __init__(self, engine: Engine, delay: float) -> None:
        self.engine = engine
        self.delay = delay
        self._pending: set[str] = set()
        self._lock = threading.Lock()  # guards _pending
        self._run_lock = threading.Lock()  # one sweep at a time
        self._wake = threading.Condition(self._lock)
        self._closed = False
        self._last_added = 0.0
        self._thread: threading.Thread | None = None

    def add(self, prefix: str) -> None:
        if self.delay <= 0:
            self.engine.set(prefix, None)
            return
        with self._lock:
            self._last_added = time.monotonic()
            self._pending.add(prefix)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="wafs-sweeper", daemon=True)
                self._thread.start()
            self._wake.notify()

    def flush_covering(self, key: str) -> None:
        """Run the pending sweep now if it would delete ``key``."""
        with self._lock:
            covered = any(is_under(key, prefix) for prefix in self._pending)
        if covered:
            self.flush()

    def flush(self) -> None:
        with self._run_lock:
            with self._lock:
                batch, self._pending = self._pending, set()
            if not batch:
                return
            roots = _outermost(batch)
            try:
                self.engine.delete_prefixes(roots)
            except Exception:
                with self._lock:
                    self._pending |= set(roots)
                raise

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._wake.notify()
        try:
            self.flush()
        except Exception:
            log.exception("cascade deletes of %s could not run before unmounting", sorted(self._pending))

    def _loop(self) -> None:
        while True:
            with self._lock:
                while not self._pending and not self._closed:
                    self._wake.wait()
                # Let a running rm -r add all its directories: one pass for the whole rm -r.
                while not self._closed:
                    deadline = self._last_added + self.delay
                    if deadline <= time.monotonic():
                        break
                    self._wake.wait(deadline - time.monotonic())
                if self._closed:
                    return
            try:
                self.flush()
            except Exception:
                log.exception("cascade sweep failed; retrying in %.0f s", RETRY_SECONDS)
                with self._lock:
                    self._wake.wait(RETRY_SECONDS)


def _outermost(prefixes: set[str]) -> list[str]:
    """The prefixes not below another one: sorted by segments, a subtree follows its root."""
    roots: list[str] = []
    for prefix in sorted(prefixes, key=lambda p: p.split("/")):
        if not roots or not is_under(prefix, roots[-1]):
            roots.append(prefix)
    return roots
