"""The read helpers of tests/helpers.py against a dead mount and a failing store: they raise.

An absence check that passes against ENOTCONN or EIO proves nothing, so every helper must
fail loudly there, and only ENOENT may read as "not there".
"""

from __future__ import annotations

import errno
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from wafs import FileEngine
from wafs.errors import BackendUnavailableError

from .helpers import CHAT, SESSION, absent, cat, find, ls, wait_for, walk
from .minimal_engine import DictEngine
from .mounting import daemon_mounted, mounted, wait_exited

MISSING = "chat/nobody@s.whatsapp.net"


def every_read(mnt: Path) -> dict[str, Callable[[], object]]:
    """One call of each read helper on paths that exist, or do not, in a mount of :data:`SESSION`."""
    return {
        "ls": lambda: ls(mnt / CHAT),
        "ls expecting ENOENT": lambda: ls(mnt / CHAT, expect=errno.ENOENT),
        "cat": lambda: cat(mnt / CHAT / "index"),
        "cat expecting ENOENT": lambda: cat(mnt / CHAT / "messages", expect=errno.ENOENT),
        "find": lambda: find(mnt),
        "absent of a key": lambda: absent(mnt / CHAT / "messages"),
        "absent of a missing key": lambda: absent(mnt / MISSING),
        "walk": lambda: list(walk(mnt)),
        "wait_for an absence": lambda: wait_for("a delete", lambda: absent(mnt / CHAT / "messages"), 10.0),
    }


def assert_each_raises(calls: dict[str, Callable[[], object]], code: int) -> None:
    """Every call raises OSError with ``code`` at once (a wait does not sit out its bound)."""
    for name, call in calls.items():
        started = time.monotonic()
        with pytest.raises(OSError) as raised:
            call()
        assert raised.value.errno == code, (name, raised.value)
        assert time.monotonic() - started < 5.0, f"{name} took {time.monotonic() - started:.1f} s to fail"


def test_the_helpers_tell_enoent_from_success_on_a_live_mount(tmp_path: Path) -> None:
    engine = DictEngine()
    engine.set_many(SESSION)
    with mounted(engine, tmp_path / "mnt") as mnt:
        assert ls(mnt / CHAT) == ["index", "message", "messages"]
        assert cat(mnt / CHAT / "index") == SESSION[f"{CHAT}/index"]
        assert find(mnt) == sorted(f"./{key}" for key in SESSION)
        assert not absent(mnt / CHAT / "messages") and absent(mnt / MISSING)
        assert ls(mnt / MISSING, expect=errno.ENOENT) is None
        assert cat(mnt / MISSING / "index", expect=errno.ENOENT) is None
        with pytest.raises(FileNotFoundError):
            ls(mnt / MISSING)
        with pytest.raises(FileNotFoundError):
            cat(mnt / MISSING / "index")
        with pytest.raises(NotADirectoryError):  # ENOTDIR is not "absent" either
            absent(mnt / CHAT / "index" / "below")
        with pytest.raises(IsADirectoryError):
            cat(mnt / CHAT, expect=errno.ENOENT)


def test_every_read_helper_raises_on_a_killed_daemon(tmp_path: Path) -> None:
    """``kill -9`` of a ``wafs mount`` daemon leaves a mount answering ENOTCONN: no helper returns."""
    store = FileEngine(tmp_path / "store")
    store.set_many(SESSION)
    store.close()
    mnt = tmp_path / "mnt"
    with daemon_mounted(mnt, f"file://{tmp_path / 'store'}") as pid:
        reads = every_read(mnt)
        assert reads["cat"]() == SESSION[f"{CHAT}/index"]  # the mount works before the kill
        os.kill(pid, signal.SIGKILL)
        wait_exited(pid)
        assert_each_raises(reads, errno.ENOTCONN)
    # daemon_mounted released the stale mount (fusermount3 -u, then -u -z) within its bound


class FailingEngine(DictEngine):
    """A DictEngine whose store can be made unreachable: every read then raises."""

    broken = False

    def get(self, key: str) -> str | None:
        if self.broken:
            raise BackendUnavailableError("the store is down (test)")
        return super().get(key)

    def list(self, prefix: str = "", offset: int = 0, limit: int | None = 50) -> list[str]:
        if self.broken:
            raise BackendUnavailableError("the store is down (test)")
        return super().list(prefix, offset, limit)


def test_every_read_helper_raises_eio_when_the_store_fails(tmp_path: Path) -> None:
    engine = FailingEngine()
    engine.set_many(SESSION)
    with mounted(engine, tmp_path / "mnt", ttl=0.05, cache_bytes=0) as mnt:
        reads = every_read(mnt)
        assert reads["cat"]() == SESSION[f"{CHAT}/index"]
        engine.broken = True
        time.sleep(1.2)  # past the TTL and the kernel's attribute timeout: everything asks the store
        assert_each_raises(reads, errno.EIO)
        engine.broken = False
