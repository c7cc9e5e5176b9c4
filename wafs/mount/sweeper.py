"""Cascade deletes left behind by ``rmdir``, batched so one store pass serves many prefixes.

``rm -r`` removes a directory bottom-up: every ``rmdir`` leaves a cascade ``set(dir, None)``
to sweep keys the mount could not show. On a bulk engine each cascade is a pass over the
whole store (Redis SCAN), so they are collected until no ``rmdir`` came for ``delay``
seconds and run together with :meth:`~wafs.Engine.delete_prefixes`, prefixes under another
pending prefix dropped. A write under a pending prefix runs the sweep first (or waits for the
one under way), so a sweep never removes what was written after through the mount.

A sweep has a window: it starts at most :data:`WINDOW` seconds after it was due (``delay``
after the last ``rmdir``), and runs once. One that cannot start in time, or whose one run
fails (the store down, paused, timing out), is given up, never retried: a retry would delete
what other clients wrote under the prefix since. Giving up is loud: an error in the log, a
:class:`SweepGivenUpError` from the next :meth:`Sweeper.flush_covering` of a key under the
prefix (the next write there), and the list :meth:`Sweeper.close` returns at unmount.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time

from ..engine import Engine
from ..errors import BackendError
from ..keys import is_under

log = logging.getLogger(__name__)
#: Seconds a due sweep may wait to start (behind a sweep still running) before it is given up.
WINDOW = 2.0


class SweepGivenUpError(BackendError):
    """The cascade delete of a removed directory was given up: keys the mount did not show may
    remain under it (``wafs rm PREFIX`` removes them)."""


class Sweeper:
    """Runs pending cascades ``delay`` seconds after the last one was added (0: at once)."""

    def __init__(self, engine: Engine, delay: float) -> None:
        self.engine = engine
        self.delay = delay
        self._pending: set[str] = set()
        self._sweeping: list[str] = []  # the prefixes of the sweep under way
        self._lock = threading.Lock()  # guards _pending, _sweeping, _unreported and _given_up
        self._run_lock = threading.Lock()  # one sweep at a time
        self._wake = threading.Condition(self._lock)
        self._closed = False
        self._last_added = 0.0
        self._thread: threading.Thread | None = None
        self._unreported: dict[str, str] = {}  # given-up prefix -> why, until a write there is told
        self._given_up: list[str] = []  # every sweep given up, for close()

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
        """Run the pending sweep now if it would delete ``key`` (after the one under way, if that would).

        Raises the error of that sweep when it fails now (it is given up), and
        :class:`SweepGivenUpError`, once, when a sweep that would have covered ``key`` was
        given up before. Either way the caller's write is not made; retrying it proceeds.
        """
        with self._lock:
            covered = any(is_under(key, prefix) for prefix in (*self._pending, *self._sweeping))
        if covered:  # flush waits for the sweep under way, which could delete the write otherwise
            try:
                self.flush()
            except Exception:
                self._told(key)  # this caller is told by the error itself
                raise
        reasons = self._told(key)
        if reasons:
            raise SweepGivenUpError("; ".join(reasons))

    def _told(self, key: str) -> list[str]:
        """Forget the given-up sweeps covering ``key`` not told yet; return why they were given up."""
        with self._lock:
            told = [prefix for prefix in self._unreported if is_under(key, prefix)]
            return list(dict.fromkeys(self._unreported.pop(prefix) for prefix in told))

    def flush(self) -> None:
        """Run the pending sweep now, once; on failure it is given up and its error raised."""
        with self._run_lock:
            with self._lock:
                roots = self._sweeping = _outermost(self._pending)
                self._pending = set()
                late = time.monotonic() - (self._last_added + self.delay)
            if not roots:
                return
            try:
                if late > WINDOW:
                    self._give_up(roots, f"it could not start within {WINDOW:.0f} s of the last rmdir")
                    return
                try:
                    self.engine.delete_prefixes(roots)
                except Exception as exc:
                    self._give_up(roots, f"it failed ({exc})")
                    raise
            finally:
                with self._lock:
                    self._sweeping = []

    def close(self) -> list[str]:
        """Run what is pending (within its window), stop, and return every sweep given up
        since the mount started (each also logged), for the unmount to report."""
        with self._lock:
            self._closed = True
            self._wake.notify()
        with contextlib.suppress(Exception):  # given up and logged by flush
            self.flush()
        with self._lock:
            return list(self._given_up)

    @property
    def given_up(self) -> list[str]:
        """Every sweep given up so far, one message each (prefixes and why)."""
        with self._lock:
            return list(self._given_up)

    def _give_up(self, roots: list[str], why: str) -> None:
        message = (f"the cascade delete of {', '.join(roots)} was given up: {why}; keys the mount did not "
                   f"show may remain below (never retried, which would delete later writes)")
        log.error("%s", message)
        with self._lock:
            self._given_up.append(message)
            for root in roots:
                self._unreported[root] = message

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
            with contextlib.suppress(Exception):  # given up and logged by flush
                self.flush()


def _outermost(prefixes: set[str]) -> list[str]:
    """The prefixes not below another one: sorted by segments, a subtree follows its root."""
    roots: list[str] = []
    for prefix in sorted(prefixes, key=lambda p: p.split("/")):
        if not roots or not is_under(prefix, roots[-1]):
            roots.append(prefix)
    return roots
