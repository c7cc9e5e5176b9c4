"""Real servers for the tests: a private redis-server and a PostgreSQL cluster on loopback.

Both fixtures are session-scoped, start their server on a free 127.0.0.1 port in a temporary
directory, and stop it and remove the directory when the session ends. A missing program
stops the whole run with one message saying what to install (:func:`require`,
:func:`stop_the_run_if_missing`); nothing is skipped. The benchmark starts its servers with
the same context managers, :func:`running_redis` and :func:`running_postgres`.

``redis_server``: ``.host``, ``.port``, ``.url`` (``redis://127.0.0.1:N/0``), ``.pid``,
``.client(decode_responses=False)`` (a raw redis-py client), ``.engine(prefix=..., timeout=...)``
(a RedisEngine on its own client, from ``from_url``), ``.stop()``, ``.start()`` (same port, empty),
``.restart_from_dump()`` (``SAVE``, ``kill -9``, start again with the saved data).

``postgres_server``: ``.host``, ``.port``, ``.dsn``, ``.url``, ``.pid``, ``.connect()`` (a raw
autocommit psycopg connection), ``.engine(table=..., timeout=...)``, ``.stop()``,
``.start()`` (same port, data kept).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.parse
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pytest

HOST = "127.0.0.1"
STARTUP_SECONDS = 20.0


class MissingProgramError(RuntimeError):
    """A program the tests need is not installed; the message says which package has it."""


def _missing(program: str, package: str) -> MissingProgramError:
    return MissingProgramError(
        f"{program} is not installed: apt-get install {package} (scripts/setup --test installs "
        "everything the tests need)"
    )


def require(program: str, package: str) -> str:
    """The path of ``program`` on PATH, or MissingProgramError naming the ``package`` to install."""
    path = shutil.which(program)
    if path is None:
        raise _missing(program, package)
    return path


@contextmanager
def stop_the_run_if_missing(request: pytest.FixtureRequest) -> Iterator[None]:
    """A MissingProgramError fails the test with its one message and stops the run after it.

    (As ``-x`` does: the run ends "Interrupted: <message>" and exits non-zero.)
    """
    try:
        yield
    except MissingProgramError as missing:
        request.session.shouldstop = str(missing)
        raise pytest.fail.Exception(str(missing), pytrace=False) from None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _wait_until(ready: Any, what: str, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what} exited with status {process.returncode} while starting")
        if ready():
            return
        time.sleep(0.02)
    raise RuntimeError(f"{what} did not become ready within {STARTUP_SECONDS} s")


class RedisServer:
    """A redis-server without automatic persistence on ``127.0.0.1:port``, data in ``directory``.

    ``debug_command`` enables ``DEBUG`` (the benchmark fills the store with ``DEBUG POPULATE``);
    ``arguments`` are more ``redis-server`` options (``["--requirepass", "secret"]``).
    Nothing is saved unless a test asks (:meth:`restart_from_dump`).
    """

    def __init__(self, binary: str, directory: str, debug_command: bool = False,
                 arguments: Sequence[str] = ()) -> None:
        self.binary = binary
        self.directory = directory
        self.debug_command = debug_command
        self.arguments = list(arguments)
        self.host = HOST
        self.port = _free_port()
        self.url = f"redis://{HOST}:{self.port}/0"
        self._process: subprocess.Popen | None = None

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def start(self) -> None:
        """Start (or restart) the server on the same port: empty, or with the data of the last
        :meth:`restart_from_dump`."""
        if self._process is not None:
            return
        command = [
            self.binary, "--port", str(self.port), "--bind", HOST, "--save", "", "--appendonly", "no",
            "--dir", self.directory, "--daemonize", "no", *self.arguments,
        ]
        if self.debug_command:
            command += ["--enable-debug-command", "yes"]
        with open(os.path.join(self.directory, "redis.log"), "ab") as log:
            self._process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        probe = self.client()
        try:
            _wait_until(lambda: _answers(probe), "redis-server", self._process)
        except BaseException:
            self.stop()
            raise
        finally:
            probe.close()

    def stop(self) -> None:
        """Kill the server and wait for it to exit."""
        if self._process is None:
            return
        self._process.kill()
        self._process.wait(timeout=10)
        self._process = None

    def restart_from_dump(self) -> None:
        """``SAVE`` the data to ``dump.rdb``, ``kill -9`` the server, and start it again, which
        loads the dump: the same keys on a new server life (a new ``run_id``, new connections)."""
        client = self.client()
        try:
            client.save()
        finally:
            client.close()
        self.stop()
        self.start()

    def client(self, decode_responses: bool = False, timeout: float = 5.0) -> Any:
        """A raw redis-py client of this server (the caller closes it)."""
        import redis

        password = self.arguments[self.arguments.index("--requirepass") + 1] \
            if "--requirepass" in self.arguments else None
        return redis.Redis(
            host=HOST, port=self.port, decode_responses=decode_responses, socket_timeout=timeout,
            password=password,
        )

    def engine(self, prefix: str = "wa:default", timeout: float = 5.0, db: int = 0) -> Any:
        """A RedisEngine on its own client (``from_url``, so ``close()`` releases it)."""
        from wafs.engines.redis import RedisEngine

        query = urllib.parse.urlencode({"prefix": prefix, "timeout": timeout})
        return RedisEngine.from_url(f"redis://{HOST}:{self.port}/{db}?{query}")


def _answers(client: Any) -> bool:
    import redis

    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


class PostgresServer:
    """A PostgreSQL cluster on ``127.0.0.1:port`` with trust auth, data in ``directory``."""

    def __init__(self, bindir: str, directory: str) -> None:
        self.bindir = bindir
        self.directory = directory
        self.data = os.path.join(directory, "data")
        self.host = HOST
        self.port = _free_port()
        self.dsn = f"host={HOST} port={self.port} user=postgres dbname=postgres"
        self.url = f"postgresql://postgres@{HOST}:{self.port}/postgres"
        self._as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        self._process: subprocess.Popen | None = None

    def _run(self, *command: str) -> None:
        result = subprocess.run(
            [*self._as_postgres, os.path.join(self.bindir, command[0]), *command[1:]],
            capture_output=True, text=True, timeout=60, check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"{command[0]} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
            )

    def init(self) -> None:
        """Create the cluster (as the postgres OS user when running as root)."""
        if self._as_postgres:
            shutil.chown(self.directory, "postgres", "postgres")
        self._run("initdb", "-D", self.data, "-U", "postgres", "--auth=trust", "-E", "UTF8",
                  "--locale=C", "--no-sync", "--no-instructions")

    @property
    def pid(self) -> int | None:
        """The postmaster's process id while it runs."""
        try:
            with open(os.path.join(self.data, "postmaster.pid")) as file:
                return int(file.readline())
        except (FileNotFoundError, ValueError):
            return None

    def start(self) -> None:
        """Start (or restart) the server on the same port; the data is kept."""
        if self._process is not None:
            return
        command = [
            *self._as_postgres, os.path.join(self.bindir, "postgres"), "-D", self.data, "-p", str(self.port),
            "-c", f"listen_addresses={HOST}", "-c", f"unix_socket_directories={self.directory}",
            "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
            "-c", "max_connections=200",
        ]
        with open(os.path.join(self.directory, "postgres.log"), "ab") as log:
            self._process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait_until(self._answers, "postgres", self._process)
        except BaseException:
            self.stop()
            raise

    def _answers(self) -> bool:
        import psycopg

        try:
            with psycopg.connect(self.dsn, connect_timeout=2) as conn:
                conn.execute("SELECT 1")
            return True
        except psycopg.OperationalError:
            return False

    def stop(self) -> None:
        """Stop the server (fast shutdown: clients are disconnected, data kept) and wait for it."""
        if self._process is None:
            return
        if self._process.poll() is None and self.pid is not None:
            self._run("pg_ctl", "-D", self.data, "-m", "fast", "-w", "stop")
        try:
            self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None

    def connect(self) -> Any:
        """A raw autocommit psycopg connection (the caller closes it)."""
        import psycopg

        return psycopg.connect(self.dsn, autocommit=True)

    def engine(self, table: str = "storage", timeout: float = 5.0) -> Any:
        """A PostgresEngine on its own connection."""
        from wafs.engines.postgres import PostgresEngine

        return PostgresEngine(self.dsn, table, timeout=timeout)


def _postgres_bindir() -> str:
    """The directory of ``initdb`` and ``postgres``: on PATH, else Debian's newest version."""
    on_path = shutil.which("initdb")
    if on_path:
        return os.path.dirname(os.path.realpath(on_path))
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if not found:
        raise _missing("initdb", "postgresql")
    return os.path.dirname(found[-1])


@contextmanager
def running_redis(debug_command: bool = False, arguments: Sequence[str] = ()) -> Iterator[RedisServer]:
    """A private redis-server in a temporary directory, stopped and removed on exit."""
    binary = require("redis-server", "redis-server")
    with tempfile.TemporaryDirectory(prefix="wafs-redis-", ignore_cleanup_errors=True) as directory:
        server = RedisServer(binary, directory, debug_command, arguments)
        try:
            server.start()
            yield server
        finally:
            server.stop()


@contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    """A private PostgreSQL cluster in a temporary directory, stopped and removed on exit."""
    bindir = _postgres_bindir()
    if os.geteuid() == 0:
        require("runuser", "util-linux")  # root starts PostgreSQL as the postgres user
    with tempfile.TemporaryDirectory(prefix="wafs-postgres-", ignore_cleanup_errors=True) as directory:
        server = PostgresServer(bindir, directory)
        try:
            server.init()
            server.start()
            yield server
        finally:
            server.stop()


@pytest.fixture(scope="session")
def redis_server(request: pytest.FixtureRequest) -> Iterator[RedisServer]:
    """A private redis-server for the whole test session."""
    with stop_the_run_if_missing(request), running_redis() as server:
        yield server


@pytest.fixture(scope="session")
def postgres_server(request: pytest.FixtureRequest) -> Iterator[PostgresServer]:
    """A private PostgreSQL cluster for the whole test session."""
    with stop_the_run_if_missing(request), running_postgres() as server:
        yield server
