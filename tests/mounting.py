"""Real FUSE mounts for the tests, always unmounted in ``finally`` with a bounded wait."""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from wafs import Engine
from wafs.mount import MountOptions, mounted_at
from wafs.mount.daemon import serve

WAIT_SECONDS = 15.0


@contextlib.contextmanager
def mounted(engine: Engine, mountpoint: Path, **options) -> Iterator[Path]:
    """Serve ``engine`` at ``mountpoint`` from a thread of this process; unmount on exit."""
    mountpoint.mkdir(parents=True, exist_ok=True)
    failure: list[BaseException] = []

    def run() -> None:
        try:
            serve(engine, str(mountpoint), MountOptions(**options))
        except BaseException as exc:  # reported to the test below
            failure.append(exc)

    thread = threading.Thread(target=run, name="wafs-test-mount", daemon=True)
    thread.start()
    deadline = time.monotonic() + WAIT_SECONDS
    while not mounted_at(mountpoint):
        if failure:
            raise failure[0]
        if time.monotonic() > deadline:
            pytest.fail(f"mount at {mountpoint} did not come up within {WAIT_SECONDS} s")
        time.sleep(0.01)
    try:
        yield mountpoint
    finally:
        release(mountpoint)
        thread.join(WAIT_SECONDS)
        assert not thread.is_alive(), "the FUSE thread did not stop after unmount"


def release(mountpoint: Path) -> None:
    """Unmount, lazily if it is busy; fail the test if it is still mounted after the wait."""
    deadline = time.monotonic() + WAIT_SECONDS
    lazy = False
    while mounted_at(mountpoint) and time.monotonic() < deadline:
        subprocess.run(["fusermount3", "-u", *(["-z"] if lazy else []), str(mountpoint)],
                       capture_output=True, timeout=WAIT_SECONDS)
        lazy = True
        time.sleep(0.05)
    assert not mounted_at(mountpoint), f"{mountpoint} is still mounted"


def sh(command: str, cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a shell command line the way a user would."""
    result = subprocess.run(["bash", "-c", command], cwd=cwd, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "LC_ALL": "C.UTF-8"})
    if check and result.returncode != 0:
        raise AssertionError(f"{command!r} exited {result.returncode}: {result.stderr}")
    return result
