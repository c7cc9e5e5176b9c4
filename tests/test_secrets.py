"""No credential in any message, log line or process title; a way to pass one off the command line.

A private redis-server that requires a password. ``ps`` shows every user a process's command
line for its whole life: the mount daemon's must not hold the password, whatever form the
user gave it in.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from wafs.cli import main
from wafs.engines.postgres import PostgresEngine
from wafs.engines.redis import RedisEngine
from wafs.errors import BackendError
from wafs.mount import daemon_pid
from wafs.urls import redact

from .mounting import release, wafs
from .servers import RedisServer, running_redis

SECRET = "s3cret-Pa55"


@pytest.fixture(scope="module")
def guarded() -> Iterator[RedisServer]:
    """A redis-server with ``requirepass``."""
    with running_redis(arguments=["--requirepass", SECRET]) as server:
        yield server


def _url(server: RedisServer, password: str = SECRET, prefix: str = "wa:secret") -> str:
    return f"redis://:{password}@{server.host}:{server.port}/0?prefix={prefix}"


def _cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


@pytest.mark.parametrize("how", ["--engine", "--engine=", "--engine-file"])
def test_the_mount_daemon_keeps_no_password_in_its_command_line_or_messages(
    guarded: RedisServer, tmp_path: Path, how: str
) -> None:
    mnt, log = tmp_path / "mnt", tmp_path / "daemon.log"
    mnt.mkdir()
    url = _url(guarded)
    (tmp_path / "engine").write_text(f"# the bot's Redis\n{url}\n")
    given = {"--engine": ["--engine", url], "--engine=": [f"--engine={url}"],
             "--engine-file": ["--engine-file", str(tmp_path / "engine")]}[how]
    wafs("set", "session/creds", "{}", "--engine-file", str(tmp_path / "engine"))
    try:
        started = wafs("mount", str(mnt), *given, "--log-file", str(log))
        pid = daemon_pid(mnt)
        title = _cmdline(pid)
        print(title)
        assert SECRET not in title
        assert str(mnt) in title
        assert SECRET not in started.stderr and "mounted redis://:***@" in started.stderr
        assert (mnt / "session/creds").read_text() == "{}"
    finally:
        release(mnt)
    assert SECRET not in log.read_text()


def test_a_failed_mount_logs_and_says_no_password(tmp_path: Path) -> None:
    mnt, log = tmp_path / "mnt", tmp_path / "daemon.log"
    mnt.mkdir()
    failed = wafs("mount", str(mnt), "--engine", f"redis://:{SECRET}@127.0.0.1:1/0?timeout=0.5",
                  "--log-file", str(log), check=False)
    assert failed.returncode == 1
    assert "unavailable" in failed.stderr
    assert SECRET not in failed.stderr
    assert SECRET not in log.read_text()


def test_a_missing_password_says_authentication_required(guarded: RedisServer) -> None:
    result = CliRunner().invoke(main, ["ls", "--engine", f"redis://{guarded.host}:{guarded.port}/0"])
    assert result.exit_code == 1
    assert "authentication required" in result.output and "HELLO" not in result.output
    assert result.output.count("\n") == 1
    wrong = CliRunner().invoke(main, ["ls", "--engine", _url(guarded, password="wrong-guess")])
    assert wrong.exit_code == 1 and "refused the credentials" in wrong.output
    assert "wrong-guess" not in wrong.output


def test_engine_reprs_and_errors_show_no_password(guarded: RedisServer, tmp_path: Path) -> None:
    with RedisEngine.from_url(_url(guarded)) as engine:
        engine.set("k/1", "v")
        assert SECRET not in repr(engine)
    wrong = RedisEngine.from_url(_url(guarded, password=SECRET + "x"))
    with wrong as engine, pytest.raises(BackendError) as raised:
        engine.get("k/1")
    assert SECRET not in str(raised.value) and SECRET not in repr(engine)
    postgres = PostgresEngine.from_url(f"postgresql://wafs:{SECRET}@127.0.0.1:1/db?timeout=1")
    assert SECRET not in repr(postgres)
    with pytest.raises(BackendError) as refused:
        postgres.get("k/1")
    assert SECRET not in str(refused.value)
    bad = CliRunner().invoke(main, ["ls", "--engine", f"redis://:{SECRET}@127.0.0.1:1/0?timeout=soon"])
    assert bad.exit_code == 1 and SECRET not in bad.output and "redis://:***@127.0.0.1:1/0" in bad.output


@pytest.mark.parametrize(("url", "shown"), [
    ("redis://:pw@h:1/0?prefix=p", "redis://:***@h:1/0?prefix=p"),
    ("rediss://user:p:w@h/0", "rediss://user:***@h/0"),
    ("postgresql://wafs:pw@h/db?sslpassword=k&table=t", "postgresql://wafs:***@h/db?sslpassword=***&table=t"),
    ("redis://h:1/0?password=pw", "redis://h:1/0?password=***"),
    ("redis://h:1/0?prefix=wa:x", "redis://h:1/0?prefix=wa:x"),
    ("file:///a@b/c", "file:///a@b/c"),
])
def test_redact_hides_passwords_only(url: str, shown: str) -> None:
    assert redact(url) == shown


def test_engine_file_and_its_refusals(guarded: RedisServer, tmp_path: Path) -> None:
    engine_file = tmp_path / "engine"
    engine_file.write_text(_url(guarded, prefix="wa:file") + "\n")
    runner = CliRunner()
    assert runner.invoke(main, ["set", "k/1", "v", "--engine-file", str(engine_file)]).exit_code == 0
    listed = runner.invoke(main, ["ls", "--engine-file", str(engine_file)])
    assert listed.exit_code == 0 and listed.output == "k/1\n"
    both = runner.invoke(main, ["ls", "--engine-file", str(engine_file), "--engine", "memory://"])
    assert both.exit_code == 2 and "cannot be used together" in both.output
    missing = runner.invoke(main, ["ls", "--engine-file", str(tmp_path / "nope")])
    assert missing.exit_code == 2 and "cannot read" in missing.output
    (tmp_path / "empty").write_text("# nothing but a comment\n\n")
    empty = runner.invoke(main, ["ls", "--engine-file", str(tmp_path / "empty")])
    assert empty.exit_code == 2 and "holds no engine URL" in empty.output


def test_wafs_copy_reads_its_urls_from_files(guarded: RedisServer, tmp_path: Path) -> None:
    """``wafs copy @PATH @PATH``: the password stays in the files, off ``ps`` and the output."""
    source, target = tmp_path / "source.url", tmp_path / "target.url"
    source.write_text(f"# the bot's Redis\n{_url(guarded, prefix='wa:copy-from')}\n")
    target.write_text(_url(guarded, prefix="wa:copy-to") + "\n")
    wafs("set", "session/creds", '{"me": 1}', "--engine-file", str(source))
    copied = wafs("copy", f"@{source}", f"@{target}")
    assert "copied 1 keys" in copied.stdout and SECRET not in copied.stdout + copied.stderr
    assert wafs("get", "session/creds", "--engine-file", str(target)).stdout == '{"me": 1}'
    missing = wafs("copy", f"@{tmp_path / 'absent.url'}", f"@{target}", check=False)
    assert missing.returncode == 2 and "cannot read" in missing.stderr and "SRC_URL" in missing.stderr
