"""Real FUSE mounts and real commands for the tests; every mount is unmounted with a bounded wait.

* :func:`mounted`: serve an engine from a thread of this process.
* :func:`daemon_mounted`: a background ``wafs mount`` daemon, as a user starts it.
* :func:`release`: the one unmount loop (``fusermount3 -u``, then ``-u -z``), failing if it stays.
* :func:`sh` runs a shell command line, :func:`wafs` the installed ``wafs`` executable.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sysconfig
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from wafs import Engine
from wafs.mount import MountOptions, daemon_pid, mounted_at
from wafs.mount.daemon import serve

WAIT_SECONDS = 15.0
#: The console script installed next to the Python running the tests (the venv's ``bin``).
WAFS = Path(sysconfig.get_path("scripts")) / "wafs"


@contextlib.contextmanager
def mounted(engine: Engine, mountpoint: Path, **options: Any) -> Iterator[Path]:
    """Serve ``engine`` at ``mountpoint`` from a thread of this process; unmount on exit."""
    mountpoint.mkdir(parents=True, exist_ok=True)
    failure: list[BaseException] = []

    def run() -> None:
        try:
            serve(engine, str(mountpoint), MountOptions(**options))
        except BaseException as exc:  # noqa: BLE001  (reported to the test below)
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


@contextlib.contextmanager
def daemon_mounted(mountpoint: Path, engine_url: str, *options: str) -> Iterator[int]:
    """``wafs mount`` in the background (log next to ``mountpoint``); yields the daemon's pid.

    On exit the mount is released and the daemon must have exited, whatever the test did to it.
    """
    mountpoint.mkdir(parents=True, exist_ok=True)
    log_file = mountpoint.with_name(f"{mountpoint.name}.log")
    pid: int | None = None
    try:
        wafs("mount", str(mountpoint), "--engine", engine_url, "--log-file", str(log_file), *options)
        pid = daemon_pid(mountpoint)
        yield pid
    finally:
        release(mountpoint)
        if pid is not None:
            wait_exited(pid)


def release(mountpoint: Path) -> None:
    """Unmount whatever is mounted at ``mountpoint``, lazily if need be; fail if it stays mounted.

    Clears a live mount, a busy one and a stale one whose daemon died (``ENOTCONN``) alike,
    within :data:`WAIT_SECONDS`; does nothing when nothing is mounted there.
    """
    deadline = time.monotonic() + WAIT_SECONDS
    lazy = False
    while mounted_at(mountpoint) and time.monotonic() < deadline:
        subprocess.run(["fusermount3", "-u", *(["-z"] if lazy else []), str(mountpoint)],
                       capture_output=True, timeout=WAIT_SECONDS, check=False)
        lazy = True
        time.sleep(0.05)
    assert not mounted_at(mountpoint), f"{mountpoint} is still mounted after {WAIT_SECONDS} s"


def wait_exited(pid: int) -> None:
    """Wait until process ``pid`` is gone; fail past :data:`WAIT_SECONDS`."""
    deadline = time.monotonic() + WAIT_SECONDS
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not Path(f"/proc/{pid}").exists(), f"process {pid} did not exit within {WAIT_SECONDS} s"


def environment() -> dict[str, str]:
    """The environment commands run in: the tests' own, with a UTF-8 locale for the tools' messages."""
    return {**os.environ, "LC_ALL": "C.UTF-8"}


def sh(command: str, cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a shell command line the way a user would; ``check``: fail the test unless it exits 0."""
    result = subprocess.run(["bash", "-c", command], cwd=cwd, capture_output=True, text=True, timeout=120,
                            env=environment(), check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"{command!r} exited {result.returncode}: {result.stderr}")
    return result


def wafs(*args: str, input: bytes | None = None, env: dict[str, str] | None = None, cwd: Path | None = None,
         check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the installed ``wafs`` with ``args``; its output decoded as UTF-8.

    ``env`` replaces the whole environment (default: :func:`environment`); ``check``: fail the
    test unless it exits 0.
    """
    assert WAFS.is_file(), f"{WAFS} is not installed: run scripts/setup --test"
    done = subprocess.run([str(WAFS), *args], input=input, capture_output=True, cwd=cwd, timeout=120,
                          env=environment() if env is None else env, check=False)
    result = subprocess.CompletedProcess(done.args, done.returncode, done.stdout.decode("utf-8", "replace"),
                                         done.stderr.decode("utf-8", "replace"))
    if check and result.returncode != 0:
        raise AssertionError(f"wafs {' '.join(args)} exited {result.returncode}: {result.stderr}")
    return result
