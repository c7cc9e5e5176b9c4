"""Backend faults under a real mount: data or EIO within a bound, never ENOENT or an empty listing.

While ``ls -R``, ``cat`` and ``cp -a`` run over the mount in three threads, the store is
frozen (``kill -STOP``), paused (``CLIENT PAUSE``), has its connections killed
(``CLIENT KILL``), or is killed and restarted (``kill -9``; PostgreSQL: stopped and started).
Every command run meanwhile must either give the right data or fail with nothing but
``Input/output error``, within ``COMMAND_BOUND`` seconds; afterwards the same mount must give
the right data again within ``RECOVERY_BOUND`` seconds, without remounting.

Bounds (engine ``timeout=1.0``, mount ``ttl=0.1`` so nearly every operation asks the store):
one FUSE operation fails within about the engine timeout plus redis-py's two reconnect
retries (< 2 s); a command fails at its first error or after a few failed operations, so
``COMMAND_BOUND`` is 10 s. The worst times measured are in docs/guarantees.md.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from wafs import Engine

from .mounting import mounted, sh
from .servers import RedisServer, running_redis, stop_the_run_if_missing

ENGINE_TIMEOUT = 1.0
MOUNT_TTL = 0.1
COMMAND_BOUND = 10.0
RECOVERY_BOUND = 10.0
FAULT_SECONDS = 3.0
CHAT = "chat/5491112345678@s.whatsapp.net"
DATA = {
    "session/creds": '{"me": {"id": "5491100000000@s.whatsapp.net"}}',
    "session/pre-key/1": "k1",
    "lid/99@lid": "5491112345678@s.whatsapp.net",
    f"{CHAT}/index": '{"name": "Ana"}',
    f"{CHAT}/messages": "1700000002 B2\n1700000001 A1\n",
    f"{CHAT}/message/A1/raw": '{"text": "hola, tu pedido llegó"}',
    f"{CHAT}/message/B2/raw": '{"text": "gracias ñandú"}',
    "chat/120363@g.us/index": '{"subject": "grupo"}',
}
CAT_KEY = f"{CHAT}/message/A1/raw"
WRITE_KEY = "session/pre-key/1"
ALLOWED_ERROR = "Input/output error"


@pytest.fixture(scope="module")
def private_redis(request: pytest.FixtureRequest) -> Iterator[RedisServer]:
    """A redis-server of this module only: it is frozen, paused and killed here."""
    with stop_the_run_if_missing(request), running_redis() as server:
        yield server


@pytest.fixture
def reference(tmp_path: Path) -> Path:
    """The same keys as plain files on disk: what every successful command must see."""
    root = tmp_path / "reference"
    for key, value in DATA.items():
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        (root / key).write_text(value, encoding="utf-8")
    return root


@dataclass
class Observed:
    """What the commands run during a fault gave."""

    successes: int = 0
    failures: int = 0
    slowest: float = 0.0
    problems: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, ok: bool, elapsed: float, problem: str | None) -> None:
        with self.lock:
            self.successes += ok
            self.failures += not ok
            self.slowest = max(self.slowest, elapsed)
            if problem:
                self.problems.append(problem)


class Commands:
    """``ls -R``, ``cat``, ``cp -a`` and a write over one mount, each checked against the reference."""

    def __init__(self, mnt: Path, reference: Path, scratch: Path) -> None:
        self.mnt = mnt
        self.scratch = scratch
        self.expected_ls = sh("ls -R .", cwd=reference).stdout
        self.reference = reference
        self._copies = 0
        self._lock = threading.Lock()
        self.extra: list[Callable[[], str | None]] = []

    def ls(self) -> str | None:
        result = sh("ls -R .", cwd=self.mnt, check=False)
        problem = _stderr_problem(result)
        if result.returncode == 0 and result.stdout != self.expected_ls:
            problem = f"ls -R listed {result.stdout!r}, not {self.expected_ls!r}"
        if result.returncode != 0 and not result.stderr:
            problem = "ls -R failed with no error"
        return problem or ("" if result.returncode == 0 else None)

    def cat(self) -> str | None:
        result = sh(f"cat {self.mnt}/{CAT_KEY}", check=False)
        problem = _stderr_problem(result)
        if result.returncode == 0 and result.stdout != DATA[CAT_KEY]:
            problem = f"cat gave {result.stdout!r}"
        return problem or ("" if result.returncode == 0 else None)

    def write(self) -> str | None:
        """Write a key's own value again: a commit must reach the store (reads may all be
        answered by the kernel's caches while the store is down, as they should be)."""
        result = sh(f"printf %s {DATA[WRITE_KEY]} > {self.mnt}/{WRITE_KEY}", check=False)
        return _stderr_problem(result) or ("" if result.returncode == 0 else None)

    def cp(self) -> str | None:
        with self._lock:
            self._copies += 1
            target = self.scratch / f"copy{self._copies}"
        result = sh(f"cp -a {self.mnt}/. {target}", check=False)
        problem = _stderr_problem(result)
        copied = {str(p.relative_to(target)): p.read_text(encoding="utf-8")
                  for p in target.rglob("*") if p.is_file()} if target.exists() else {}
        shutil.rmtree(target, ignore_errors=True)
        wrong = {name: text for name, text in copied.items() if DATA.get(name) != text}
        if result.returncode == 0 and set(copied) != set(DATA):
            problem = f"cp -a succeeded with {sorted(copied)}"
        if wrong:
            problem = f"cp -a copied wrong files {sorted(wrong.items())}"
        return problem or ("" if result.returncode == 0 else None)

    def all(self) -> list[Callable[[], str | None]]:
        return [self.ls, self.cat, self.cp, *self.extra]

    def recovered(self) -> float:
        """Seconds until every command gives the right data again (fails past the bound)."""
        started = time.monotonic()
        while True:
            outcomes = [command() for command in self.all()]
            if all(outcome == "" for outcome in outcomes):
                return time.monotonic() - started
            assert not any(outcomes), f"wrong result while recovering: {outcomes}"
            assert time.monotonic() - started < RECOVERY_BOUND, f"no recovery within {RECOVERY_BOUND} s"
            time.sleep(0.2)


def _stderr_problem(result: subprocess.CompletedProcess[str]) -> str | None:
    """Anything on stderr other than EIO ("No such file", "Invalid argument", ...)."""
    bad = [line for line in result.stderr.splitlines() if ALLOWED_ERROR not in line]
    return f"unexpected error output: {bad}" if bad else None


def run_during_fault(commands: Commands, fault: Callable[[], None]) -> Observed:
    """Run every command in a loop in its own thread while ``fault`` runs in this one."""
    observed = Observed()
    done = threading.Event()

    def loop(command: Callable[[], str | None]) -> None:
        while not done.is_set():
            started = time.monotonic()
            outcome = command()
            elapsed = time.monotonic() - started
            observed.record(outcome == "", elapsed, outcome or None)
            if elapsed > COMMAND_BOUND:
                observed.record(False, elapsed, f"{command.__name__} took {elapsed:.1f} s")

    threads = [threading.Thread(target=loop, args=(c,), daemon=True) for c in commands.all()]
    for thread in threads:
        thread.start()
    try:
        fault()
    finally:
        done.set()
        for thread in threads:
            thread.join(COMMAND_BOUND * 3)
    assert not any(t.is_alive() for t in threads), "a command hung past the bound"
    return observed


def check(observed: Observed, name: str, recovery: float, expect_failures: bool) -> None:
    print(f"\n{name}: {observed.successes} ok, {observed.failures} EIO, "
          f"slowest command {observed.slowest:.2f} s, recovered in {recovery:.2f} s")
    assert observed.problems == [], observed.problems
    assert observed.slowest <= COMMAND_BOUND
    if expect_failures:
        assert observed.failures > 0, "the fault was not noticed: the test did not test anything"


@pytest.fixture
def redis_mount(
    private_redis: RedisServer, reference: Path, tmp_path: Path
) -> Iterator[tuple[Engine, Commands]]:
    engine = private_redis.engine(prefix="wa:faults", timeout=ENGINE_TIMEOUT)
    try:
        engine.set_many(DATA)
        with mounted(engine, tmp_path / "mnt", ttl=MOUNT_TTL) as mnt:
            commands = Commands(mnt, reference, tmp_path)
            assert commands.recovered() < 1.0  # the mount works before the fault
            yield engine, commands
    finally:
        if private_redis.pid is None:
            private_redis.start()
        os.kill(private_redis.pid, signal.SIGCONT)
        engine.delete_prefixes(["chat", "session", "lid"])
        engine.close()


def test_redis_stopped_with_sigstop(private_redis: RedisServer, redis_mount: tuple[Engine, Commands]) -> None:
    _, commands = redis_mount
    pid = private_redis.pid
    assert pid is not None

    commands.extra = [commands.write]  # reads may all come from the kernel's caches meanwhile

    def fault() -> None:
        os.kill(pid, signal.SIGSTOP)
        try:
            time.sleep(FAULT_SECONDS)
        finally:
            os.kill(pid, signal.SIGCONT)

    observed = run_during_fault(commands, fault)
    check(observed, "kill -STOP", commands.recovered(), expect_failures=True)


def test_redis_client_pause(private_redis: RedisServer, redis_mount: tuple[Engine, Commands]) -> None:
    _, commands = redis_mount
    admin = private_redis.client()
    commands.extra = [commands.write]  # reads may all come from the kernel's caches meanwhile

    def fault() -> None:
        admin.execute_command("CLIENT", "PAUSE", int(FAULT_SECONDS * 1000), "ALL")
        time.sleep(FAULT_SECONDS)

    try:
        observed = run_during_fault(commands, fault)
    finally:
        admin.execute_command("CLIENT", "UNPAUSE")
        admin.close()
    check(observed, "CLIENT PAUSE", commands.recovered(), expect_failures=True)


def test_a_file_created_while_the_store_is_paused_ends_in_both_or_neither(
    private_redis: RedisServer, redis_mount: tuple[Engine, Commands], caplog: pytest.LogCaptureFixture
) -> None:
    """``touch`` writes nothing: its file is committed at the last close, after ``close``
    returned. When that commit fails, the name goes too: the mount never lists a file the
    store does not have."""
    engine, commands = redis_mount
    caplog.set_level(logging.ERROR, logger="wafs.mount")
    admin = private_redis.client()
    try:
        admin.execute_command("CLIENT", "PAUSE", int(FAULT_SECONDS * 1000), "ALL")
        sh(f"touch {commands.mnt}/session/new", check=False)
        deadline = time.monotonic() + COMMAND_BOUND
        while "could not write 'session/new' at its last close" not in caplog.text:
            assert time.monotonic() < deadline, "the failed commit was not logged"
            time.sleep(0.05)
    finally:
        admin.execute_command("CLIENT", "UNPAUSE")
        admin.close()
    listing = os.listdir(commands.mnt / "session")
    assert "creds" in listing and "new" not in listing
    assert engine.get("session/new") is None
    assert commands.recovered() < RECOVERY_BOUND


def test_redis_client_kill(private_redis: RedisServer, redis_mount: tuple[Engine, Commands]) -> None:
    _, commands = redis_mount
    admin = private_redis.client()
    killed = 0

    def fault() -> None:
        nonlocal killed
        deadline = time.monotonic() + FAULT_SECONDS
        while time.monotonic() < deadline:
            killed += admin.client_kill_filter(_type="normal", skipme=True)
            time.sleep(0.05)

    try:
        observed = run_during_fault(commands, fault)
    finally:
        admin.close()
    assert killed > 0
    # redis-py reconnects and retries, so killed connections may cost no error at all.
    check(observed, "CLIENT KILL", commands.recovered(), expect_failures=False)


def test_redis_killed_and_restarted(private_redis: RedisServer, redis_mount: tuple[Engine, Commands]) -> None:
    engine, commands = redis_mount

    def fault() -> None:
        private_redis.stop()  # SIGKILL
        time.sleep(FAULT_SECONDS)

    observed = run_during_fault(commands, fault)
    private_redis.start()  # empty: the bot writes its data again
    engine.set_many(DATA)
    # Until then the store truly had none of the keys, and the mount may show that state for
    # its visibility bound (the ttl) after the bot's writes: "No such file" is then the truth.
    time.sleep(3 * MOUNT_TTL)
    check(observed, "kill -9 and restart", commands.recovered(), expect_failures=True)


def test_postgres_stopped_and_started(postgres_server, reference: Path, tmp_path: Path) -> None:
    engine = postgres_server.engine(table="storage_faults", timeout=ENGINE_TIMEOUT)
    try:
        engine.set_many(DATA)
        with mounted(engine, tmp_path / "mnt", ttl=MOUNT_TTL) as mnt:
            commands = Commands(mnt, reference, tmp_path)
            assert commands.recovered() < 1.0

            def fault() -> None:
                postgres_server.stop()
                time.sleep(FAULT_SECONDS)

            try:
                observed = run_during_fault(commands, fault)
            finally:
                postgres_server.start()
            check(observed, "PostgreSQL stop and start", commands.recovered(), expect_failures=True)
    finally:
        if postgres_server.pid is None:
            postgres_server.start()
        engine.delete_prefixes(["chat", "session", "lid"])
        engine.close()
