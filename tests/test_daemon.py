"""The real ``wafs`` executable: background daemon, its death, stale mountpoints, exposure.

Every test runs the installed console script (``wafs`` next to the Python running the tests,
see tests/mounting.py) in subprocesses and unmounts in ``finally`` with a bounded wait.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from wafs import FileEngine
from wafs.mount import daemon_pid, mounted_at

from .mounting import release, wafs, wait_exited

KEY = "chat/5491112345678@s.whatsapp.net/index"


@pytest.fixture
def place() -> Iterator[Path]:
    """A directory every user can reach (so a refusal comes from the mount, not from /tmp/pytest-of-root)."""
    directory = Path(tempfile.mkdtemp(prefix="wafs-daemon-"))
    directory.chmod(0o755)
    (directory / "mnt").mkdir(mode=0o755)
    store = FileEngine(directory / "store")
    store.set(KEY, '{"name": "Ana"}')
    store.close()
    try:
        yield directory
    finally:
        release(directory / "mnt")
        shutil.rmtree(directory, ignore_errors=True)


def mount(place: Path, *options: str) -> subprocess.CompletedProcess[str]:
    return wafs("mount", str(place / "mnt"), "--engine", f"file://{place / 'store'}",
                "--log-file", str(place / "daemon.log"), *options)


def one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode == 1, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def test_background_daemon_serves_and_unmounts(place: Path) -> None:
    mnt = place / "mnt"
    started = mount(place)
    assert "wafs umount" in started.stderr
    pid = daemon_pid(mnt)
    assert pid != os.getpid() and Path(f"/proc/{pid}").exists()
    assert (mnt / KEY).read_text() == '{"name": "Ana"}'
    (mnt / "chat/new@g.us").write_text("written through the daemon")
    wafs("umount", str(mnt))
    wait_exited(pid)
    assert FileEngine(place / "store").get("chat/new@g.us") == "written through the daemon"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


@pytest.mark.parametrize("spin_us", ["0", "100", "200000"])
def test_a_daemon_polls_for_requests_only_while_they_come(place: Path, spin_us: str) -> None:
    mnt = place / "mnt"
    mount(place, "--spin-us", spin_us)
    pid = daemon_pid(mnt)
    try:
        for number in range(20):
            (mnt / f"chat/{number}@g.us").write_text(f"value {number}")
        listed = subprocess.run(["ls", "-R", str(mnt)], capture_output=True, text=True, check=True).stdout
        assert "19@g.us" in listed
        found = subprocess.run(["grep", "-rl", "value 7", str(mnt)], capture_output=True, text=True)
        assert found.stdout.split() == [str(mnt / "chat/7@g.us")], found
        time.sleep(0.5)  # past any spin
        before = cpu_seconds(pid)
        time.sleep(2)
        assert cpu_seconds(pid) - before < 0.2  # asleep between requests, whatever the spin
    finally:
        wafs("umount", str(mnt))
        wait_exited(pid)
    assert FileEngine(place / "store").get("chat/7@g.us") == "value 7"


@pytest.mark.parametrize("lazy", [False, True])
def test_killed_daemon_leaves_a_stale_mount_that_umount_clears(place: Path, lazy: bool) -> None:
    mnt = place / "mnt"
    mount(place)
    pid = daemon_pid(mnt)
    os.kill(pid, signal.SIGKILL)
    wait_exited(pid)
    with pytest.raises(OSError) as stale:
        os.stat(mnt)
    assert stale.value.errno == errno.ENOTCONN  # the daemon is gone, the mount is not
    refused = wafs("mount", str(mnt), "--engine", f"file://{place / 'store'}", check=False)
    one_line_error(refused, "stale", f"wafs umount {mnt}")
    wafs("umount", *(["--lazy"] if lazy else []), str(mnt))
    assert not mounted_at(mnt)
    mount(place)
    assert (mnt / KEY).read_text() == '{"name": "Ana"}'


def test_mount_errors_are_one_line(place: Path) -> None:
    store = f"file://{place / 'store'}"
    missing = wafs("mount", str(place / "missing"), "--engine", store, check=False)
    one_line_error(missing, "cannot mount on", "No such file or directory")
    a_file = place / "a-file"
    a_file.write_text("x")
    not_dir = wafs("mount", str(a_file), "--engine", store, check=False)
    one_line_error(not_dir, "cannot mount on", "not a directory")
    mount(place)
    twice = wafs("mount", str(place / "mnt"), "--engine", store, check=False)
    one_line_error(twice, "already mounted", "wafs umount")
    not_mounted = wafs("umount", str(place), check=False)
    one_line_error(not_mounted, "is not mounted")


def test_a_mountpoint_that_is_not_empty_or_inside_a_wafs_mount_is_refused_saying_why(place: Path) -> None:
    store = f"file://{place / 'store'}"
    busy = place / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("would be hidden")
    try:
        not_empty = wafs("mount", str(busy), "--engine", store, check=False)
        one_line_error(not_empty, f"cannot mount on {busy}", "not empty", "'notes.txt'", "would hide them")
        mount(place)
        os.mkdir(place / "mnt/inner")
        nested = wafs("mount", str(place / "mnt/inner"), "--engine", "memory://", check=False)
        one_line_error(nested, "cannot mount on", f"inside the wafs mount at {place / 'mnt'}")
    finally:
        release(place / "mnt/inner")
        release(busy)
    assert (busy / "notes.txt").read_text() == "would be hidden"


def test_a_mount_libfuse_refuses_says_what_libfuse_said(place: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The daemon's error used to be '[Errno 5] could not mount … (see the messages above)', the
    messages being in its log: fusermount3's reason now ends the error itself."""
    from wafs.mount import MountError, MountOptions, daemon

    class Refused:
        def __init__(self, operations: object, mountpoint: str, options: list[str]) -> None:
            said = f"fusermount3: failed to access mountpoint {mountpoint}: Permission denied\n"
            os.write(2, said.encode())
            raise OSError(errno.EIO, f"could not mount at {mountpoint} (see the messages above)")

    monkeypatch.setattr(daemon, "Session", Refused)  # inherited by the forked daemon
    with pytest.raises(MountError) as raised:
        daemon.mount("memory://", str(place / "mnt"), MountOptions(), log_file=str(place / "daemon.log"))
    message = str(raised.value)
    assert "\n" not in message
    assert message.endswith(f"fusermount3: failed to access mountpoint {place / 'mnt'}: Permission denied")
    assert not mounted_at(place / "mnt")


def test_refresh_shows_an_outside_write_at_once(place: Path) -> None:
    mnt = place / "mnt"
    mount(place, "--ttl", "3600")
    assert os.listdir(mnt / "chat") == ["5491112345678@s.whatsapp.net"]
    outside = FileEngine(place / "store")
    outside.set("chat/bot@g.us/index", "from the bot")
    outside.set(KEY, "changed by the bot")
    outside.close()
    assert "bot@g.us" not in os.listdir(mnt / "chat")  # the hour-long TTL holds the old listing
    refreshed = wafs("refresh", str(mnt))
    assert str(daemon_pid(mnt)) in refreshed.stderr
    deadline = time.monotonic() + 2.0  # SIGHUP is handled by a daemon thread
    while "bot@g.us" not in os.listdir(mnt / "chat") and time.monotonic() < deadline:
        time.sleep(0.02)
    assert sorted(os.listdir(mnt / "chat")) == ["5491112345678@s.whatsapp.net", "bot@g.us"]
    assert (mnt / "chat/bot@g.us/index").read_text() == "from the bot"


def mount_options(mnt: Path) -> list[str]:
    for line in Path("/proc/mounts").read_text().splitlines():
        fields = line.split()
        if fields[1] == str(mnt):
            return fields[3].split(",")
    raise AssertionError(f"{mnt} is not in /proc/mounts")


def test_default_mount_is_private(place: Path) -> None:
    mnt = place / "mnt"
    as_nobody = ["runuser", "-u", "nobody", "--", "ls", str(mnt)]
    control = subprocess.run(as_nobody, capture_output=True, text=True, timeout=30, check=False)
    assert control.returncode == 0, control.stderr  # the bare directory is readable by nobody
    mount(place)
    options = mount_options(mnt)
    assert "nosuid" in options and "nodev" in options
    assert "allow_other" not in options
    assert oct(os.stat(mnt / KEY).st_mode & 0o777) == "0o600"
    assert oct(os.stat(mnt / "chat").st_mode & 0o777) == "0o700"
    refused = subprocess.run(as_nobody, capture_output=True, text=True, timeout=30, check=False)
    assert refused.returncode != 0
    assert "Permission denied" in refused.stderr


def test_umask_option_widens_the_modes(place: Path) -> None:
    mnt = place / "mnt"
    mount(place, "--umask", "022")
    assert oct(os.stat(mnt / KEY).st_mode & 0o777) == "0o644"
    assert oct(os.stat(mnt / "chat").st_mode & 0o777) == "0o755"
    assert "allow_other" not in mount_options(mnt)


def test_state_files_of_two_mountpoints_never_share_a_name() -> None:
    from wafs.mount.daemon import default_log_file

    assert default_log_file("/x/y") != default_log_file("/x_y")
    assert default_log_file("/a/" + "b" * 300).endswith(".log")
