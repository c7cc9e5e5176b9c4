"""copy_engine and ``wafs copy``: every pair of engine kinds, failures, and resuming an interrupted copy."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import time
from collections.abc import Mapping

import pytest
from click.testing import CliRunner

from wafs import BackendUnavailableError, Engine, FileEngine, MemoryEngine
from wafs.cli import main
from wafs.copy import copy_engine
from wafs.demo import write_demo

from .conftest import ENGINE_KINDS, make_engine
from .minimal_engine import DictEngine
from .mounting import WAFS, wafs

EXTRA = {
    "session/empty": "",
    "contact/123@s.whatsapp.net/index": '{"name": "Jöhn 📱"}\n',
    "chat/1/message/BIG/content": "x" * 300_000 + "ñ",
}


def _fill(engine: Engine) -> dict[str, str]:
    write_demo(engine, chats=3, messages=5, seed=2)
    engine.set_many(EXTRA)
    return dict(engine.items(""))


def _nbytes(data: Mapping[str, str]) -> int:
    return sum(len(value.encode("utf-8")) for value in data.values())


@pytest.mark.parametrize("dst_kind", ENGINE_KINDS)
@pytest.mark.parametrize("src_kind", ENGINE_KINDS)
def test_copy_between_every_pair_of_kinds(src_kind: str, dst_kind: str, request, tmp_path) -> None:
    src = make_engine(src_kind, request, tmp_path / "src")
    dst = make_engine(dst_kind, request, tmp_path / "dst")
    try:
        expected = _fill(src)
        report = copy_engine(src, dst, batch=7)
        assert report.ok
        assert report.keys == len(expected)
        assert report.bytes == _nbytes(expected)
        assert dict(dst.items("")) == expected
        assert dict(src.items("")) == expected
    finally:
        src.close()
        dst.close()


def test_prefix_copies_only_that_subtree(engine: Engine) -> None:
    src = MemoryEngine()
    expected = _fill(src)
    report = copy_engine(src, engine, prefix="contact/")
    under = {key: value for key, value in expected.items() if key.startswith("contact/")}
    assert under and report.keys == len(under)
    assert dict(engine.items("")) == under


def test_copy_keeps_the_newest_first_order() -> None:
    src, dst = MemoryEngine(), MemoryEngine()
    _fill(src)
    src.set("chat/1/index", "written last")
    copy_engine(src, dst, batch=4)
    assert dst.list("", 0, None) == src.list("", 0, None)
    assert dst.list("", 0, 1) == ["chat/1/index"]


def test_copy_overwrites_and_keeps_other_destination_keys() -> None:
    src, dst = MemoryEngine(), MemoryEngine()
    src.set_many({"a/1": "new", "a/2": "two"})
    dst.set_many({"a/1": "old", "b/1": "mine"})
    assert copy_engine(src, dst).keys == 2
    assert dict(dst.items("")) == {"a/1": "new", "a/2": "two", "b/1": "mine"}


def test_keys_breaking_the_rules_are_reported_not_dropped(engine: Engine) -> None:
    src = DictEngine()
    src.set_many({"chat/1/index": "i", "chat/1/messages": "m"})
    src.data.update({"chat//x": "written by another client", "chat/./y": "z"})
    report = copy_engine(src, engine, batch=2)
    assert sorted(key for key, _ in report.failed) == ["chat/./y", "chat//x"]
    assert all("key rules" in error for _, error in report.failed)
    assert report.keys == 2
    assert dict(engine.items("")) == {"chat/1/index": "i", "chat/1/messages": "m"}


class _ListsWhatItCannotRead(DictEngine):
    """A store whose listing names a key its reads cannot find (as FileEngine did with '@' names)."""

    def get(self, key: str) -> str | None:
        return None if key == "chat/2/index" else super().get(key)


def test_a_listed_key_that_cannot_be_read_is_a_failure_not_a_silent_skip() -> None:
    src = _ListsWhatItCannotRead()
    src.set_many({f"chat/{n}/index": str(n) for n in range(4)})
    dst = MemoryEngine()
    report = copy_engine(src, dst)
    assert not report.ok
    assert report.failed == [("chat/2/index", "listed, but not found when read (deleted meanwhile?)")]
    assert set(dst.iter_keys("")) == {"chat/0/index", "chat/1/index", "chat/3/index"}


def test_a_cp_a_backup_of_a_mount_restores_every_key(redis_server, tmp_path) -> None:
    """The issue's restore: cp -a MOUNT backup, then wafs copy file://backup redis://. Every name
    holds '@' in a real session; 49 of 1,001 keys were copied and the copy said it succeeded."""
    session = MemoryEngine()
    write_demo(session, chats=20, messages=10, seed=5)
    expected = dict(session.items(""))
    for key, value in expected.items():  # what cp -a of a mount writes: the keys as paths
        path = tmp_path / "backup" / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(value, encoding="utf-8")
    assert sum("@" in key for key in expected) > len(expected) / 2
    url = f"{redis_server.url}?prefix=wa:restore"
    result = CliRunner().invoke(main, ["copy", f"file://{tmp_path}/backup", url])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"copied {len(expected)} keys")
    with redis_server.engine(prefix="wa:restore") as restored:
        assert dict(restored.items("")) == expected


def test_copy_from_a_name_that_cannot_be_read_exits_1_naming_it(tmp_path) -> None:
    FileEngine(tmp_path / "src").set_many({"chat/1/index": "i", "chat/2/index": "j"})
    with open(os.path.join(os.fsencode(tmp_path), b"src/chat/1/bad\xff"), "wb") as file:
        file.write(b"not a name any key has")
    result = CliRunner().invoke(main, ["copy", f"file://{tmp_path}/src", f"file://{tmp_path}/dst"])
    assert result.exit_code == 1
    assert "'chat/1/bad\\udcff': breaks the key rules" in result.stderr
    assert "Error: 1 keys could not be copied" in result.stderr
    assert set(FileEngine(tmp_path / "dst").iter_keys("")) == {"chat/1/index", "chat/2/index"}


def test_copy_from_a_file_url_that_is_a_file_exits_1(tmp_path) -> None:
    (tmp_path / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    result = CliRunner().invoke(main, ["copy", f"file://{tmp_path}/passwd", f"file://{tmp_path}/dst"])
    assert result.exit_code == 1
    assert "is a file, not a directory" in result.stderr
    assert not (tmp_path / "dst").exists()


def test_bad_key_written_to_redis_by_another_client(redis_server, tmp_path) -> None:
    src = redis_server.engine(prefix="wa:badkeys")
    client = redis_server.client()
    try:
        src.set("chat/1/index", "ok")
        client.set("wa:badkeys:chat//1/index", b"from a careless client")
        dst = FileEngine(tmp_path / "backup")
        report = copy_engine(src, dst)
        assert report.failed and report.failed[0][0] == "chat//1/index"
        assert dict(dst.items("")) == {"chat/1/index": "ok"}
    finally:
        client.close()
        src.close()


def test_a_value_that_is_not_utf8_fails_its_key_not_its_batch(redis_server, tmp_path) -> None:
    """get_many raises for the batch; the copy reads that batch key by key and lists the bad one."""
    src = redis_server.engine(prefix="wa:badvalue")
    client = redis_server.client()
    try:
        src.set_many({f"chat/{n}/index": str(n) for n in range(5)})
        client.set("wa:badvalue:chat/2/index", b"\xff\xfe")
        dst = FileEngine(tmp_path / "backup")
        report = copy_engine(src, dst)
        assert [key for key, _ in report.failed] == ["chat/2/index"]
        assert "not UTF-8" in report.failed[0][1]
        assert dict(dst.items("")) == {f"chat/{n}/index": str(n) for n in (0, 1, 3, 4)}
    finally:
        client.close()
        src.close()


@pytest.mark.parametrize("src_kind", ["redis", "postgres", "memory"])
def test_keys_the_destination_refuses_are_reported(src_kind: str, request, tmp_path) -> None:
    # A key that is also a prefix (a and a/b) exists in these engines, not in a directory tree.
    src = make_engine(src_kind, request, tmp_path)
    dst = FileEngine(tmp_path / "files")
    try:
        src.set_many({"chat/1": "a key that is also a directory", "chat/1/index": "i", "chat/2/index": "j"})
        report = copy_engine(src, dst, batch=10)
        assert len(report.failed) == 1
        failed_key, error = report.failed[0]
        assert failed_key in ("chat/1", "chat/1/index") and "cannot write" in error
        assert report.keys == 2
        assert set(dst.list("", 0, None)) == {"chat/1", "chat/1/index", "chat/2/index"} - {failed_key}
    finally:
        src.close()


class Interrupted(Engine):
    """Passes everything to ``inner``; its set_many call number ``fail_at`` writes half its batch and dies."""

    def __init__(self, inner: Engine, fail_at: int) -> None:
        self.inner = inner
        self.fail_at = fail_at
        self.calls = 0

    def get(self, key: str) -> str | None:
        return self.inner.get(key)

    def set(self, key: str, value: str | None) -> None:
        self.inner.set(key, value)

    def list(self, prefix: str = "", offset: int = 0, limit: int | None = 50) -> list[str]:
        return self.inner.list(prefix, offset, limit)

    def set_many(self, items: Mapping[str, str]) -> None:
        self.calls += 1
        if self.calls == self.fail_at:
            self.inner.set_many(dict(list(items.items())[: len(items) // 2]))
            raise BackendUnavailableError("connection lost in the middle of a batch")
        self.inner.set_many(items)


def test_interrupted_copy_is_finished_by_running_it_again(engine: Engine) -> None:
    src = MemoryEngine()
    expected = _fill(src)
    with pytest.raises(BackendUnavailableError):
        copy_engine(src, Interrupted(engine, fail_at=4), batch=10)
    partial = dict(engine.items(""))
    assert 30 < len(partial) < len(expected)
    assert all(expected[key] == value for key, value in partial.items())

    report = copy_engine(src, engine, batch=10)
    assert report.ok and report.keys == len(expected)
    assert dict(engine.items("")) == expected
    assert sorted(engine.list("", 0, None)) == sorted(expected)


def test_progress_reports_every_batch() -> None:
    src = MemoryEngine()
    src.set_many({f"k/{n}": str(n) for n in range(23)})
    calls: list[tuple[int, int]] = []
    copy_engine(src, MemoryEngine(), batch=10, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(10, 23), (20, 23), (23, 23)]


def test_batch_must_be_positive() -> None:
    with pytest.raises(ValueError):
        copy_engine(MemoryEngine(), MemoryEngine(), batch=0)


# --- wafs copy --------------------------------------------------------------------------------


def test_cli_copy_prints_a_summary(tmp_path) -> None:
    src = FileEngine(tmp_path / "src")
    expected = _fill(src)
    result = CliRunner().invoke(main, ["copy", f"file://{tmp_path}/src", f"file://{tmp_path}/dst"])
    assert result.exit_code == 0, result.output
    mb = f"{_nbytes(expected) / 1e6:.1f} MB"
    assert result.stdout.startswith(f"copied {len(expected)} keys ({mb}) in ")
    assert result.stderr == ""  # not a terminal: no progress bar
    assert dict(FileEngine(tmp_path / "dst").items("")) == expected


def test_cli_copy_quiet_and_prefix(tmp_path) -> None:
    _fill(FileEngine(tmp_path / "src"))
    result = CliRunner().invoke(
        main, ["copy", "--quiet", "--prefix", "session/", f"file://{tmp_path}/src", f"file://{tmp_path}/dst"]
    )
    assert result.exit_code == 0 and result.output == ""
    assert {key.split("/")[0] for key in FileEngine(tmp_path / "dst").list("", 0, None)} == {"session"}


def test_cli_copy_lists_failed_keys_and_exits_1(redis_server, tmp_path) -> None:
    url = f"{redis_server.url}?prefix=wa:clifail"
    client = redis_server.client()
    try:
        client.set("wa:clifail:chat/1/index", b"ok")
        client.set("wa:clifail:chat//2", b"bad")
        result = CliRunner().invoke(main, ["copy", url, f"file://{tmp_path}/dst"])
    finally:
        client.close()
    assert result.exit_code == 1
    assert result.stdout.startswith("copied 1 keys")
    assert "'chat//2': breaks the key rules" in result.stderr
    assert "Error: 1 keys could not be copied" in result.stderr
    assert FileEngine(tmp_path / "dst").list("", 0, None) == ["chat/1/index"]


def test_cli_copy_round_trip_through_every_server(redis_server, postgres_server, tmp_path) -> None:
    src = FileEngine(tmp_path / "src")
    expected = _fill(src)
    urls = [
        f"file://{tmp_path}/src",
        f"{redis_server.url}?prefix=wa:roundtrip",
        f"{postgres_server.url}?table=roundtrip",
        f"file://{tmp_path}/back",
    ]
    for source, destination in itertools.pairwise(urls):
        assert wafs("copy", source, destination).stdout.startswith(f"copied {len(expected)} keys")
    assert dict(FileEngine(tmp_path / "back").items("")) == expected


def test_cli_copy_killed_then_run_again(tmp_path) -> None:
    src = FileEngine(tmp_path / "src", fsync=False)
    write_demo(src, chats=40, messages=100)
    expected = dict(src.items(""))
    dst = FileEngine(tmp_path / "dst")
    arguments = ["copy", "--batch", "50", f"file://{tmp_path}/src", f"file://{tmp_path}/dst"]
    process = subprocess.Popen([WAFS, *arguments], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not dst.list("", 0, 1) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.005)
    os.kill(process.pid, signal.SIGKILL)
    process.communicate()
    copied = set(dst.list("", 0, None))
    assert 0 < len(copied) < len(expected)

    wafs(*arguments)
    assert dict(dst.items("")) == expected
    leftovers = [path for path in (tmp_path / "dst").rglob(".wafs-tmp-*")]
    assert leftovers == [], "the second copy left the temp files of the killed one"
