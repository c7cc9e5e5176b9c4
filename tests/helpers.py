"""Helpers shared by several test modules: a small session, reads through a mount, engine faults."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from wafs import Engine
from wafs.errors import BackendUnavailableError

from .mounting import sh

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


def wait_for(what: str, check: Callable[[], bool], bound: float) -> float:
    """Poll ``check`` until it holds; fail past ``bound`` seconds; print and return the time taken."""
    started = time.monotonic()
    while True:
        if check():
            elapsed = time.monotonic() - started
            print(f"visible after {elapsed * 1000:.0f} ms (bound {bound:.1f} s): {what}")
            return elapsed
        if time.monotonic() - started > bound:
            pytest.fail(f"{what}: not visible through the mount within {bound:.1f} s")
        time.sleep(0.02)


def ls(path: Path) -> list[str]:
    """The names ``ls`` prints for ``path``; none when it fails."""
    result = sh(f"ls {path}", check=False)
    return result.stdout.split() if result.returncode == 0 else []


def cat(path: Path) -> str | None:
    """What ``cat`` prints for ``path``; None when it fails."""
    result = sh(f"cat {path}", check=False)
    return result.stdout if result.returncode == 0 else None


def find(mnt: Path) -> list[str]:
    """Every file below ``mnt`` as ``find`` prints it (``./key``), sorted."""
    return sorted(sh(f"cd {mnt} && find . -type f").stdout.split())


def _every_engine_call(engine: Engine) -> dict[str, Callable[[], object]]:
    """One call of each Engine method, by name, on keys under ``k/``."""
    return {
        "get": lambda: engine.get("k/1"),
        "set": lambda: engine.set("k/1", "v"),
        "cascade": lambda: engine.set("k", None),
        "list": lambda: engine.list("k/"),
        "iter_keys": lambda: list(engine.iter_keys("k/")),
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
