"""Helpers shared by several test modules: a small session, reads through a mount, races, engine faults.

The read helpers never take a failure for an answer. :func:`ls`, :func:`cat` and :func:`find`
run the real tools and raise :class:`OSError` with the errno the tool reported (EIO, ENOTCONN,
...) whenever it fails; only ``expect=errno.ENOENT`` (or another errno the caller names)
turns exactly that errno into ``None``. :func:`absent` is True only for ENOENT. So "the key is
gone" can never pass against a dead mount or a failing store.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import overload

import pytest

from wafs import Engine
from wafs.errors import BackendUnavailableError

from .mounting import environment

CHAT = "chat/5491112345678@s.whatsapp.net"
#: A small WhatsApp session: credentials, one chat with one message, one group.
SESSION = {
    "session/creds": '{"me": {"id": "5491100000000@s.whatsapp.net"}}',
    f"{CHAT}/index": '{"name": "Ana"}',
    f"{CHAT}/messages": "1700000001 A1\n",
    f"{CHAT}/message/A1/raw": '{"text": "hola"}',
    "chat/120363@g.us/index": '{"subject": "grupo"}',
}
#: The kernel's attribute and entry timeouts the mount asks for (wafs.mount.daemon.serve).
KERNEL_TIMEOUT = 1.0
_counter = itertools.count()
#: strerror text -> errno, to read the errno back from a tool's "prog: path: message" line.
_ERRNO_OF_MESSAGE = {os.strerror(code): code for code in errno.errorcode}


def unique(stem: str) -> str:
    """``stem`` followed by a number no other call in this test session got (prefixes, tables)."""
    return f"{stem}{next(_counter)}"


def wait_for(what: str, check: Callable[[], bool], bound: float) -> float:
    """Poll ``check`` until it holds; fail past ``bound`` seconds; print and return the time taken.

    An exception raised by ``check`` fails the test at once: it is never taken for "not yet".
    """
    started = time.monotonic()
    while True:
        if check():
            elapsed = time.monotonic() - started
            print(f"visible after {elapsed * 1000:.0f} ms (bound {bound:.1f} s): {what}")
            return elapsed
        if time.monotonic() - started > bound:
            pytest.fail(f"{what}: not visible through the mount within {bound:.1f} s")
        time.sleep(0.02)


def _tool(argv: list[str], expect: int | None) -> str | None:
    """The output of a successful ``argv``; None if it failed with ``expect`` only; else OSError.

    The errno comes from the tool's own messages (``ls: cannot access 'x': Input/output error``);
    a failure whose message names no errno fails the test.
    """
    result = subprocess.run(argv, capture_output=True, encoding="utf-8", errors="surrogateescape", timeout=60,
                            env=environment(), check=False)
    if result.returncode == 0:
        return result.stdout
    command = " ".join(argv)
    codes = [_ERRNO_OF_MESSAGE.get(line.rpartition(": ")[2]) for line in result.stderr.splitlines()]
    if not codes or None in codes:
        raise AssertionError(f"{command} exited {result.returncode} without an errno: {result.stderr!r}")
    if expect is not None and set(codes) == {expect}:
        return None
    code = next(code for code in codes if code != expect)
    raise OSError(code, f"{command} failed: {result.stderr.strip()}")


@overload
def ls(path: Path) -> list[str]: ...
@overload
def ls(path: Path, expect: int) -> list[str] | None: ...


def ls(path: Path, expect: int | None = None) -> list[str] | None:
    """The names real ``ls`` prints for ``path``; raises OSError(errno) when ``ls`` fails.

    With ``expect``, a failure with exactly that errno returns ``None`` instead.
    """
    output = _tool(["ls", str(path)], expect)
    return None if output is None else output.splitlines()


@overload
def cat(path: Path) -> str: ...
@overload
def cat(path: Path, expect: int) -> str | None: ...


def cat(path: Path, expect: int | None = None) -> str | None:
    """What real ``cat`` prints for ``path``; raises OSError(errno) when ``cat`` fails.

    With ``expect``, a failure with exactly that errno returns ``None`` instead.
    """
    return _tool(["cat", str(path)], expect)


def find(mnt: Path) -> list[str]:
    """Every file below ``mnt`` as ``cd mnt && find . -type f`` names it (``./key``), sorted.

    Raises OSError(errno) when ``find`` fails anywhere: a partial walk is never returned.
    """
    output = _tool(["find", str(mnt), "-type", "f"], None)
    assert output is not None
    return sorted(f"./{os.path.relpath(line, mnt)}" for line in output.splitlines())


def absent(path: Path) -> bool:
    """True when ``path`` does not exist (``lstat`` fails with ENOENT), False when it does.

    Any other failure (EIO, ENOTCONN, ENOTDIR, ...) raises: it is not absence.
    """
    try:
        os.lstat(path)
    except FileNotFoundError:
        return True
    return False


def walk(top: Path | str) -> Iterator[tuple[str, list[str], list[str]]]:
    """``os.walk(top)`` without following links, raising where a directory cannot be read.

    (``os.walk`` alone skips such a directory, which then looks empty.)
    """

    def fail(error: OSError) -> None:
        raise error

    return os.walk(top, onerror=fail)


class Interleavings:
    """Counts how often racing calls really overlapped, so a race test can prove it raced.

    Wrap each racing call in ``with seen.running("write"):`` (or report an instant change with
    ``seen.happened("swap")``); ``seen.assert_overlapped("write", "cascade")`` then fails with
    "the test did not test anything" unless a write and a cascade were in flight at the same
    moment at least once (``("write", "write")``: two writes).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._in_flight: Counter[str] = Counter()
        self._started_during: Counter[tuple[str, str]] = Counter()

    def happened(self, kind: str) -> None:
        """Count an instant event of ``kind`` against every call in flight now."""
        with self._lock:
            for other, count in self._in_flight.items():
                if count:
                    self._started_during[kind, other] += 1

    @contextlib.contextmanager
    def running(self, kind: str) -> Iterator[None]:
        """Mark one call of ``kind`` as in flight for the duration of the block."""
        with self._lock:
            for other, count in self._in_flight.items():
                if count:
                    self._started_during[kind, other] += 1
            self._in_flight[kind] += 1
        try:
            yield
        finally:
            with self._lock:
                self._in_flight[kind] -= 1

    def overlaps(self, first: str, second: str) -> int:
        """How often a ``first`` began while a ``second`` was in flight, or the other way round."""
        with self._lock:
            if first == second:
                return self._started_during[first, first]
            return self._started_during[first, second] + self._started_during[second, first]

    def assert_overlapped(self, first: str, second: str) -> int:
        """How often a ``first`` and a ``second`` overlapped; fails if they never did."""
        count = self.overlaps(first, second)
        print(f"{first} and {second} overlapped {count} times")
        assert count > 0, f"no {first} ever overlapped a {second}: the test did not test anything"
        return count


@contextlib.contextmanager
def counting_calls(engine: Engine, *methods: str) -> Iterator[Counter[tuple[str, tuple[object, ...]]]]:
    """Count the calls of ``engine``'s ``methods`` made while the block runs, by name and arguments.

    The count includes calls from the mount's threads: ``counting_calls(engine, "scan_keys",
    "children")`` sees every time the mount reads the store's tree.
    """
    calls: Counter[tuple[str, tuple[object, ...]]] = Counter()
    lock = threading.Lock()

    def counted(name: str, original: Callable[..., object]) -> Callable[..., object]:
        def call(*args: object, **kwargs: object) -> object:
            with lock:
                calls[name, args] += 1
            return original(*args, **kwargs)

        return call

    for name in methods:
        setattr(engine, name, counted(name, getattr(engine, name)))
    try:
        yield calls
    finally:
        for name in methods:
            delattr(engine, name)


def _every_engine_call(engine: Engine) -> dict[str, Callable[[], object]]:
    """One call of each Engine method, by name, on keys under ``k/``."""
    return {
        "get": lambda: engine.get("k/1"),
        "set": lambda: engine.set("k/1", "v"),
        "cascade": lambda: engine.set("k", None),
        "list": lambda: engine.list("k/"),
        "iter_keys": lambda: list(engine.iter_keys("k/")),
        "scan_keys": lambda: list(engine.scan_keys("k/")),
        "items": lambda: list(engine.items("k/")),
        "children": lambda: engine.children("k"),
        "get_many": lambda: engine.get_many(["k/1", "k/2"]),
        "set_many": lambda: engine.set_many({"k/1": "a", "k/2": "b"}),
        "size": lambda: engine.size("k/1"),
        "sizes": lambda: engine.sizes(["k/1", "k/2"]),
        "delete": lambda: engine.delete("k/1"),
        "delete_many": lambda: engine.delete_many(["k/1", "k/2"]),
        "delete_prefixes": lambda: engine.delete_prefixes(["k", "j"]),
    }


def assert_every_call_unavailable(engine: Engine, timeout: float, cause: type[BaseException]) -> None:
    """Every call raises BackendUnavailableError from a ``cause`` within ``timeout`` + 1 s."""
    for name, call in _every_engine_call(engine).items():
        started = time.monotonic()
        with pytest.raises(BackendUnavailableError) as raised:
            call()
        elapsed = time.monotonic() - started
        assert elapsed < timeout + 1.0, f"{name} took {elapsed:.2f} s"
        assert isinstance(raised.value.__cause__, cause), name
