"""Private redis-server and PostgreSQL clusters for the benchmark, on free loopback ports.

Each server lives in its own temporary directory and is stopped (and the directory removed)
by :meth:`stop`; the benchmark calls it in ``finally``.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable

HOST = "127.0.0.1"
STARTUP_SECONDS = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _wait(ready: Callable[[], bool], what: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with status {process.returncode} while starting")
        if ready():
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not answer within {STARTUP_SECONDS} s")


class Redis:
    """redis-server without persistence (DEBUG enabled, for ``DEBUG POPULATE`` filler)."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed: apt-get install redis-server")
        self.directory = tempfile.mkdtemp(prefix="wafs-bench-redis-")
        self.port = free_port()
        self.url = f"redis://{HOST}:{self.port}/0"
        with open(os.path.join(self.directory, "redis.log"), "ab") as log:
            self.process = subprocess.Popen(
                [binary, "--port", str(self.port), "--bind", HOST, "--save", "", "--appendonly", "no",
                 "--dir", self.directory, "--enable-debug-command", "yes"],
                stdout=log, stderr=subprocess.STDOUT,
            )
        self.client = self._client()
        _wait(self._answers, "redis-server", self.process)

    def _client(self):  # type: ignore[no-untyped-def]
        import redis

        return redis.Redis(host=HOST, port=self.port, socket_timeout=600)

    def _answers(self) -> bool:
        import redis

        try:
            return bool(self.client.ping())
        except redis.RedisError:
            return False

    def version(self) -> str:
        return str(self.client.info("server")["redis_version"])

    def calls(self) -> dict[str, int]:
        """Calls per command since the server started (``INFO commandstats``), INFO excluded."""
        stats = self.client.info("commandstats")
        return {name.removeprefix("cmdstat_"): int(s["calls"]) for name, s in stats.items()
                if name != "cmdstat_info"}

    def reads(self) -> int:
        """Read events the server has processed: one per request or pipeline (≈ round trips)."""
        return int(self.client.info("stats")["total_reads_processed"])

    def stop(self) -> None:
        try:
            self.client.close()
            self.process.kill()
            self.process.wait(timeout=30)
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)


class Postgres:
    """A PostgreSQL cluster with trust auth and no durability (run as ``postgres`` when root)."""

    def __init__(self) -> None:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
        if not found:
            raise RuntimeError("PostgreSQL is not installed: apt-get install postgresql")
        self.bindir = os.path.dirname(found[-1])
        self.as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        self.directory = tempfile.mkdtemp(prefix="wafs-bench-postgres-")
        self.data = os.path.join(self.directory, "data")
        self.port = free_port()
        self.dsn = f"host={HOST} port={self.port} user=postgres dbname=postgres"
        self.url = f"postgresql://postgres@{HOST}:{self.port}/postgres"
        self.process: subprocess.Popen[bytes] | None = None
        try:
            if self.as_postgres:
                shutil.chown(self.directory, "postgres", "postgres")
            self._run("initdb", "-D", self.data, "-U", "postgres", "--auth=trust", "-E", "UTF8",
                      "--locale=C", "--no-sync", "--no-instructions")
            with open(os.path.join(self.directory, "postgres.log"), "ab") as log:
                self.process = subprocess.Popen(
                    [*self.as_postgres, os.path.join(self.bindir, "postgres"), "-D", self.data,
                     "-p", str(self.port), "-c", f"listen_addresses={HOST}",
                     "-c", f"unix_socket_directories={self.directory}", "-c", "fsync=off",
                     "-c", "synchronous_commit=off", "-c", "full_page_writes=off"],
                    stdout=log, stderr=subprocess.STDOUT,
                )
            _wait(self._answers, "postgres", self.process)
        except BaseException:
            self.stop()
            raise

    def _run(self, *command: str) -> None:
        result = subprocess.run([*self.as_postgres, os.path.join(self.bindir, command[0]), *command[1:]],
                                capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise RuntimeError(f"{command[0]} failed ({result.returncode}): {result.stderr.strip()}")

    def _answers(self) -> bool:
        import psycopg

        try:
            with psycopg.connect(self.dsn, connect_timeout=2) as conn:
                conn.execute("SELECT 1")
            return True
        except psycopg.OperationalError:
            return False

    def version(self) -> str:
        import psycopg

        with psycopg.connect(self.dsn) as conn:
            row = conn.execute("SHOW server_version").fetchone()
        return str(row[0]) if row else "?"

    def stop(self) -> None:
        try:
            if self.process is not None and self.process.poll() is None:
                try:
                    self._run("pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop")
                    self.process.wait(timeout=30)
                except (RuntimeError, subprocess.TimeoutExpired):
                    self.process.kill()
                    self.process.wait()
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)
