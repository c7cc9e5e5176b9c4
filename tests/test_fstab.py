"""``mount -t wafs`` and ``/etc/fstab``: util-linux ``mount --fstab FILE DIR`` runs ``/sbin/mount.wafs``.

Every mount here is real: mount(8) finds the helper where it looks for one (``/sbin/mount.TYPE``),
the helper starts a real daemon, ``cat`` and ``ls`` read through the kernel, and ``umount DIR``
unmounts through the kernel. The module installs ``/sbin/mount.wafs`` as a link to this venv's
console script and removes it afterwards; it never replaces one that is not that link. Each
test's mountpoint is unmounted at its end, whatever happened, and its daemon must exit.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import sysconfig
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from wafs import FileEngine
from wafs.mount import MountError, MountOptions, daemon_pid, mounted_at
from wafs.mount.daemon import default_log_file
from wafs.mount_helper import main, parse_options

from .helpers import cat, ls, unique
from .mounting import environment, release, wafs, wait_exited
from .servers import RedisServer, require, running_redis, stop_the_run_if_missing

#: Where mount(8) looks for the helper of type ``wafs`` (``/sbin`` is ``/usr/sbin`` on Debian).
HELPER = Path("/sbin/mount.wafs")
#: The console script of the venv running the tests.
SCRIPT = Path(sysconfig.get_path("scripts")) / "mount.wafs"
SECRET = "fstab-Pa55word"


@pytest.fixture(scope="module", autouse=True)
def helper(request: pytest.FixtureRequest) -> Iterator[Path]:
    """``/sbin/mount.wafs``: a link to :data:`SCRIPT` for this module's tests, removed after them.

    One there already is used only if it is that link (and then left there); anything else
    there fails the tests, untouched. mount(8) takes ``--fstab`` from root only.
    """
    if os.geteuid() != 0:
        pytest.fail("the fstab tests run mount(8) as root (mount --fstab is root's)", pytrace=False)
    with stop_the_run_if_missing(request):
        require("mount", "mount")
        require("umount", "mount")
    assert SCRIPT.is_file(), f"{SCRIPT} is not installed: run scripts/setup --test"
    created = False
    try:
        os.symlink(SCRIPT, HELPER)
        created = True
    except FileExistsError:
        if os.path.realpath(HELPER) != os.path.realpath(SCRIPT):
            pytest.fail(f"{HELPER} is there already and is not a link to {SCRIPT}: these tests need "
                        "their own there; move it away to run them", pytrace=False)
    try:
        yield HELPER
    finally:
        if created and os.readlink(HELPER) == str(SCRIPT):
            HELPER.unlink()


@pytest.fixture
def mnt(tmp_path: Path) -> Iterator[Path]:
    """An empty directory to mount at, with a space in its name (``\\040`` in fstab).

    At the end, whatever the test left mounted there is unmounted (``umount``, then lazily)
    and its daemon must have exited."""
    path = tmp_path / "srv wa"
    path.mkdir()
    try:
        yield path
    finally:
        pid = None
        with contextlib.suppress(MountError):
            pid = daemon_pid(path)
        if mounted_at(path):
            run("umount", str(path))
        release(path)
        if pid is not None:
            wait_exited(pid)


@pytest.fixture(scope="module")
def guarded() -> Iterator[RedisServer]:
    """A redis-server that wants the password :data:`SECRET`."""
    with running_redis(arguments=["--requirepass", SECRET]) as server:
        yield server


def run(*command: str) -> subprocess.CompletedProcess[str]:
    """Run ``command`` (not checked: the tests look at the status)."""
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env=environment(),
                          check=False)


def fstab(directory: Path, source: str, mountpoint: Path, options: str) -> Path:
    """A fstab file in ``directory`` with the one line ``SOURCE MOUNTPOINT wafs OPTIONS 0 0``."""
    path = directory / "fstab"
    escaped = str(mountpoint).replace(" ", "\\040")
    path.write_text(f"# written by {__name__}\n{source}  {escaped}  wafs  {options}  0 0\n")
    return path


def mount_fstab(table: Path, mountpoint: Path) -> subprocess.CompletedProcess[str]:
    return run("mount", "--fstab", str(table), str(mountpoint))


def mounts_line(mountpoint: Path) -> list[str]:
    """The fields of ``mountpoint``'s line in /proc/mounts (source, target, type, options…)."""
    target = str(mountpoint).replace(" ", "\\040")
    lines = [line.split() for line in Path("/proc/mounts").read_text().splitlines()]
    found = [fields for fields in lines if fields[1] == target]
    assert len(found) == 1, found
    return found[0]


def utab() -> str:
    """libmount's own table of mount options (``/run/mount/utab``), world-readable."""
    try:
        return Path("/run/mount/utab").read_text()
    except FileNotFoundError:
        return ""


def processes_of(mountpoint: Path) -> list[str]:
    """The command lines of the processes that name ``mountpoint`` (the daemon would)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            line = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if str(mountpoint) in line:
                found.append(line)
    return found


def unmount(mountpoint: Path) -> None:
    """``umount DIR``, as a user types it; then the daemon has exited (bounded waits)."""
    pid = daemon_pid(mountpoint)
    unmounted = run("umount", str(mountpoint))
    assert unmounted.returncode == 0, unmounted.stderr
    assert mounted_at(mountpoint) is None
    wait_exited(pid)
    log = Path(default_log_file(str(mountpoint)))
    assert "Traceback" not in (log.read_text() if log.exists() else "")


# --- through mount(8) ---------------------------------------------------------------------------


def test_a_redis_fstab_line_mounts_read_only_and_umount_unmounts(redis_server: RedisServer, tmp_path: Path,
                                                                  mnt: Path) -> None:
    prefix = unique("wa:fstab")
    client = redis_server.client()
    try:
        client.set(f"{prefix}:session/creds", '{"me": 1}')
    finally:
        client.close()
    source = f"{redis_server.url}?prefix={prefix}"
    options = "ro,nofail,_netdev,x-systemd.automount,x-systemd.requires=redis.service"
    table = fstab(tmp_path, source, mnt, options)
    mounted = mount_fstab(table, mnt)
    assert mounted.returncode == 0, mounted.stderr
    assert mounts_line(mnt)[:3] == [source, str(mnt).replace(" ", "\\040"), "fuse.wafs"]
    assert "ro" in mounts_line(mnt)[3].split(",")
    assert ls(mnt) == ["session"]
    assert cat(mnt / "session/creds") == '{"me": 1}'
    refused = run("sh", "-c", f"echo x > '{mnt}/session/new'")
    assert refused.returncode != 0 and os.strerror(errno.EROFS) in refused.stderr
    again = run("mount", "-a", "--fstab", str(table))  # the kernel lists it under its fstab source
    assert again.returncode == 0, again.stderr
    unmount(mnt)
    assert ls(mnt) == []


def test_engine_file_keeps_the_password_out_of_proc_mounts_ps_and_utab(guarded: RedisServer, tmp_path: Path,
                                                                       mnt: Path) -> None:
    client = guarded.client()
    try:
        client.set("wa:guarded:session/creds", "secret-creds")
    finally:
        client.close()
    engine_file = tmp_path / "bot.url"
    engine_file.write_text(f"# the bot's Redis\nredis://:{SECRET}@{guarded.host}:{guarded.port}/0?prefix=wa:guarded\n")
    engine_file.chmod(0o600)
    table = fstab(tmp_path, "wafs:bot", mnt, f"ro,nofail,_netdev,engine_file={engine_file}")
    mounted = mount_fstab(table, mnt)
    assert mounted.returncode == 0, mounted.stderr
    assert cat(mnt / "session/creds") == "secret-creds"
    assert mounts_line(mnt)[:3] == ["wafs:bot", str(mnt).replace(" ", "\\040"), "fuse.wafs"]
    processes = run("ps", "-eo", "args")
    assert str(mnt) in processes.stdout  # the daemon
    for seen in (Path("/proc/mounts").read_text(), Path("/proc/self/mountinfo").read_text(), processes.stdout,
                 utab(), mounted.stdout + mounted.stderr):
        assert SECRET not in seen
    unmount(mnt)
    assert SECRET not in Path(default_log_file(str(mnt))).read_text()


def test_an_engine_file_others_can_read_is_refused(guarded: RedisServer, tmp_path: Path, mnt: Path) -> None:
    engine_file = tmp_path / "bot.url"
    engine_file.write_text(f"redis://:{SECRET}@{guarded.host}:{guarded.port}/0\n")
    engine_file.chmod(0o644)
    refused = mount_fstab(fstab(tmp_path, "wafs:bot", mnt, f"engine_file={engine_file}"), mnt)
    assert refused.returncode == 1
    assert f"chmod 600 {engine_file}" in refused.stderr and SECRET not in refused.stderr
    assert mounted_at(mnt) is None


def test_a_password_in_the_source_is_refused(guarded: RedisServer, mnt: Path) -> None:
    refused = run("mount", "-t", "wafs", f"redis://:{SECRET}@{guarded.host}:{guarded.port}/0", str(mnt))
    assert refused.returncode == 1
    assert "engine_file=PATH" in refused.stderr and "redis://:***@" in refused.stderr
    assert SECRET not in refused.stderr
    assert mounted_at(mnt) is None


def test_umask_and_ttl_reach_the_mount_and_wafs_umount_unmounts_it(tmp_path: Path, mnt: Path) -> None:
    store = FileEngine(tmp_path / "store")
    store.set("contact/1/index", "first")
    table = fstab(tmp_path, f"file://{tmp_path / 'store'}", mnt, "rw,umask=027,ttl=3600,cache_size=8")
    mounted = mount_fstab(table, mnt)
    assert mounted.returncode == 0, mounted.stderr
    assert (mnt / "contact").stat().st_mode & 0o777 == 0o750
    assert (mnt / "contact/1/index").stat().st_mode & 0o777 == 0o640
    assert cat(mnt / "contact/1/index") == "first"
    store.set("contact/1/index", "second")  # a FileEngine has no change feed: only the ttl bounds this
    time.sleep(1.5)  # past the default ttl (1 s), well within ttl=3600
    assert cat(mnt / "contact/1/index") == "first"
    pid = daemon_pid(mnt)
    wafs("umount", str(mnt))  # waits for the daemon, as for one 'wafs mount' started
    assert mounted_at(mnt) is None
    wait_exited(pid)


def test_a_writable_mount_commits_pending_writes_when_umount_unmounts(redis_server: RedisServer,
                                                                       tmp_path: Path, mnt: Path) -> None:
    prefix = unique("wa:fstab")
    engine = redis_server.engine(prefix=prefix)
    try:
        hidden = "chat/2/" + "x" * 300  # a segment too long for a file name: the mount never shows it
        engine.set_many({"chat/1/index": "one", "chat/2/index": "two", hidden: "only a cascade deletes it"})
        mounted = mount_fstab(fstab(tmp_path, f"{redis_server.url}?prefix={prefix}", mnt, "defaults"), mnt)
        assert mounted.returncode == 0, mounted.stderr
        written = run("sh", "-c", f"printf new > '{mnt}/chat/1/raw' && rm -r '{mnt}/chat/2'")
        assert written.returncode == 0, written.stderr
        unmount(mnt)  # at once: the cascade delete of chat/2 is still pending in the daemon
        assert sorted(engine.iter_keys("")) == ["chat/1/index", "chat/1/raw"]
        assert engine.get("chat/1/raw") == "new"
    finally:
        engine.close()


@pytest.mark.parametrize(("options", "said"), [
    ("ro,sync,bogus=1", "unknown mount options sync, bogus=1"),
    ("umask=9", "'9' is not an octal number"),
    ("ttl=soon", "'-o ttl='"),
    ("users", "mounts by users other than root are not supported"),
    ("remount", "umount it and mount it again"),
])
def test_a_bad_option_fails_naming_it_and_mounts_nothing(tmp_path: Path, mnt: Path, options: str,
                                                         said: str) -> None:
    (tmp_path / "store").mkdir()
    refused = mount_fstab(fstab(tmp_path, f"file://{tmp_path / 'store'}", mnt, options), mnt)
    assert refused.returncode == 1
    assert said in refused.stderr and "Traceback" not in refused.stderr
    assert mounted_at(mnt) is None and processes_of(mnt) == []


def test_a_store_that_is_down_fails_the_mount_and_leaves_nothing(tmp_path: Path, mnt: Path) -> None:
    down = "redis://127.0.0.1:1/0?timeout=0.5&prefix=wa:down"
    refused = mount_fstab(fstab(tmp_path, down, mnt, "ro,nofail,_netdev"), mnt)
    assert refused.returncode == 32
    assert "could not mount" in refused.stderr and "unavailable" in refused.stderr
    assert mounted_at(mnt) is None and processes_of(mnt) == [] and utab().count(str(mnt)) == 0
    typed = run("mount", "-t", "wafs", down, str(mnt))  # the same from the command line
    assert typed.returncode == 32 and "unavailable" in typed.stderr
    assert mounted_at(mnt) is None


# --- the helper's own rules, without mounting -----------------------------------------------------


def test_options_map_onto_mount_options_and_the_rest_keep_its_defaults() -> None:
    assert parse_options("") == (MountOptions(), None)
    options, engine_file = parse_options(
        "ro,allow_other,umask=022,ttl=2.5,cache_size=3,spin_us=0,engine_file=/etc/wafs/bot.url,nofail,"
        "_netdev,x-systemd.automount,comment=x,noatime,nosuid,nodev,noexec,defaults")
    assert options == MountOptions(read_only=True, allow_other=True, umask=0o022, ttl=2.5,
                                   cache_bytes=3 << 20, spin=0.0)
    assert engine_file == "/etc/wafs/bot.url"
    assert parse_options("ro,rw")[0].read_only is False  # the last one wins, as in mount(8)
    assert parse_options("ro,bogus,other=1", sloppy=True)[0] == MountOptions(read_only=True)


@pytest.mark.parametrize(("argv", "said"), [
    (["wafs", "/srv/wa"], "'wafs', is neither an engine URL"),
    (["relative/store", "/srv/wa"], "neither an engine URL"),
    (["file://relative", "/srv/wa"], "neither an engine URL"),
    (["redis://h/0", "/srv/wa", "-o", "engine_file=/etc/wafs/bot.url"], "not both"),
    (["wafs", "/srv/wa", "-o", "engine_file=bot.url"], "not an absolute path"),
    (["wafs", "/srv/wa", "-o", "ro=1"], "unknown mount options ro=1"),
    (["wafs"], "Missing argument 'DIR'"),
])
def test_usage_errors_exit_1_as_mount_says(argv: list[str], said: str) -> None:
    result = CliRunner().invoke(main, ["-f", *argv])
    assert result.exit_code == 1, result.output
    assert said in result.output


def test_fake_mounts_nothing_and_says_what_it_would_mount(tmp_path: Path) -> None:
    engine_file = tmp_path / "bot.url"
    engine_file.write_text("redis://:pw@localhost:6379/0?prefix=wa:bot\n")
    engine_file.chmod(0o600)
    result = CliRunner().invoke(main, ["wafs:bot", str(tmp_path), "-f", "-v", "-n",
                                       "-o", f"engine_file={engine_file}"])
    assert result.exit_code == 0, result.output
    said = f"mount.wafs: would mount redis://:***@localhost:6379/0?prefix=wa:bot at {tmp_path}\n"
    assert result.output == said
    assert mounted_at(tmp_path) is None


def test_the_reference_holds_the_help_the_installed_helper_prints() -> None:
    printed = subprocess.run([str(SCRIPT), "--help"], capture_output=True, text=True, timeout=60,
                             env={**environment(), "COLUMNS": "80"}, check=True).stdout
    reference = (Path(__file__).parents[1] / "docs" / "cli.md").read_text(encoding="utf-8")
    assert f"### `mount.wafs`\n\n```text\n$ mount.wafs --help\n{printed}```" in reference
