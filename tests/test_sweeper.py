"""The mount's batched cascades (wafs/mount/sweeper.py) at engine level: no mount, a real Redis.

A sweep runs once, within its window; one that fails or cannot start in time is given up
loudly and never retried, so it never deletes what another client wrote after ``rm -r``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from wafs import MemoryEngine
from wafs.errors import BackendUnavailableError
from wafs.mount.sweeper import WINDOW, Sweeper, SweepGivenUpError

from .mounting import daemon_mounted, sh, wafs

DELAY = 0.5


@pytest.fixture
def engine_kind() -> str:
    return "redis"


def test_a_sweep_runs_after_its_delay_and_sweeps_hidden_keys(engine: Any, raw: Any, prefix: str) -> None:
    engine.set_many({"chat/X/message/A/raw": "r", "chat/Y/index": "y"})
    raw.set(f"{prefix}:chat/X//hidden", "a key the mount cannot show")
    sweeper = Sweeper(engine, DELAY)
    sweeper.add("chat/X/message/A")
    sweeper.add("chat/X")
    time.sleep(DELAY + 0.5)
    assert engine.list("", 0, None) == ["chat/Y/index"]
    assert sweeper.close() == []


def test_a_sweep_that_fails_in_a_paused_redis_is_given_up_and_spares_later_writes(
    redis_server: Any, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The issue's run: rm -r, Redis paused 2 s (the sweep times out), another client writes under
    the directory 3 s after rm -r. The old sweeper retried 5 s later and deleted that write."""
    engine = redis_server.engine(prefix=prefix, timeout=1.0)
    other = redis_server.engine(prefix=prefix)
    admin = redis_server.client()
    try:
        engine.set("chat/Y/index", "y")
        admin.set(f"{prefix}:chat/X//hidden", "h")
        sweeper = Sweeper(engine, DELAY)
        admin.execute_command("CLIENT", "PAUSE", "2000", "ALL")
        with caplog.at_level(logging.ERROR, logger="wafs.mount.sweeper"):
            sweeper.add("chat/X")  # rm -r returned
            time.sleep(3.0)
            other.set("chat/X/index", "written after rm -r")
            time.sleep(7.0)  # past the old 5 s retry
        assert other.get("chat/X/index") == "written after rm -r"
        assert admin.get(f"{prefix}:chat/X//hidden") == b"h"  # left, and said so
        assert "the cascade delete of chat/X was given up" in caplog.text
        with pytest.raises(SweepGivenUpError, match="chat/X was given up"):  # the next write there is told
            sweeper.flush_covering("chat/X/index")
        sweeper.flush_covering("chat/X/index")  # once
        sweeper.flush_covering("chat/Y/index")  # and nothing is said elsewhere
        given_up = sweeper.close()
        assert len(given_up) == 1 and "chat/X" in given_up[0]
    finally:
        admin.close()
        other.close()
        engine.close()


def test_a_write_that_flushes_a_failing_sweep_gets_its_error_once(redis_server: Any, prefix: str) -> None:
    engine = redis_server.engine(prefix=prefix, timeout=0.5)
    admin = redis_server.client()
    try:
        sweeper = Sweeper(engine, 30.0)  # never due by itself in this test
        sweeper.add("chat/X")
        admin.execute_command("CLIENT", "PAUSE", "1500", "ALL")
        with pytest.raises(BackendUnavailableError):
            sweeper.flush_covering("chat/X/index")
        time.sleep(1.5)
        sweeper.flush_covering("chat/X/index")  # told already, by the error itself
        assert len(sweeper.given_up) == 1
    finally:
        admin.close()
        engine.close()


class _Stalling(MemoryEngine):
    """A MemoryEngine whose first ``delete_prefixes`` blocks until ``release`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.started = threading.Event()
        self.release = threading.Event()

    def delete_prefixes(self, prefixes: Iterable[str]) -> None:
        if not self.started.is_set():
            self.started.set()
            self.release.wait(30)
        super().delete_prefixes(prefixes)


def test_a_sweep_that_cannot_start_within_its_window_is_given_up(caplog: pytest.LogCaptureFixture) -> None:
    engine = _Stalling()
    engine.set_many({"chat/A/x": "a", "chat/B/x": "b"})
    sweeper = Sweeper(engine, DELAY)
    sweeper.add("chat/A")
    assert engine.started.wait(5)  # the first sweep runs, and stalls
    sweeper.add("chat/B")  # due DELAY later, but the first sweep holds the store
    time.sleep(DELAY + WINDOW + 0.5)
    engine.set("chat/B/y", "written after its window")
    with caplog.at_level(logging.ERROR, logger="wafs.mount.sweeper"):
        engine.release.set()
        time.sleep(0.5)
    assert engine.list("chat/", 0, None) == ["chat/B/y", "chat/B/x"]
    assert "chat/B was given up: it could not start within" in caplog.text
    assert len(sweeper.close()) == 1


def test_a_write_under_a_prefix_being_swept_waits_for_the_sweep() -> None:
    engine = _Stalling()
    engine.set("chat/A/old", "a")
    sweeper = Sweeper(engine, DELAY)
    sweeper.add("chat/A")
    assert engine.started.wait(5)  # the sweep has taken chat/A, and stalls in the store

    def write() -> None:
        sweeper.flush_covering("chat/A/new")
        engine.set("chat/A/new", "written after the rmdir")

    writer = threading.Thread(target=write)
    writer.start()
    writer.join(0.5)
    engine.release.set()
    writer.join(5)
    assert engine.list("chat/", 0, None) == ["chat/A/new"]
    assert sweeper.close() == []


def test_wafs_umount_reports_a_sweep_the_daemon_gave_up(redis_server: Any, prefix: str,
                                                        tmp_path: Path) -> None:
    admin = redis_server.client()
    try:
        admin.set(f"{prefix}:chat/X/index", "x")
        admin.set(f"{prefix}:chat/Y/index", "y")
        mnt = tmp_path / "mnt"
        with daemon_mounted(mnt, f"{redis_server.url}?prefix={prefix}&timeout=0.5"):
            sh(f"rm -r {mnt}/chat/X")
            admin.set(f"{prefix}:chat/X/unseen", "written before the sweep, which would remove it")
            admin.execute_command("CLIENT", "PAUSE", "3000", "ALL")  # the sweep, due 0.5 s later, fails
            time.sleep(3.5)
            unmounted = wafs("umount", str(mnt), check=False)
            assert unmounted.returncode == 1, unmounted
            assert "the cascade delete of chat/X was given up" in unmounted.stderr
            assert admin.get(f"{prefix}:chat/X/unseen") is not None
            wafs("mount", str(mnt), "--engine", f"{redis_server.url}?prefix={prefix}")
            assert wafs("umount", str(mnt)).stderr == ""  # told once; this mount left nothing undone
    finally:
        admin.close()
