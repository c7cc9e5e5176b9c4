"""A real Redis Cluster for the tests: 3 primaries and 3 replicas on loopback.

The session-scoped ``redis_cluster`` fixture starts six Debian ``redis-server`` processes
with ``--cluster-enabled yes`` (no persistence, one temporary directory each), joins them
with ``redis-cli --cluster create ... --cluster-replicas 1 --cluster-yes``, waits until every
node reports ``cluster_state:ok``, and kills every process in ``finally``. A missing program
stops the whole run with what to install, as in tests/servers.py; nothing is skipped.

API: ``.startup_url`` (``redis+cluster://127.0.0.1:PORT``), ``.client()`` (a raw
``RedisCluster``, caller closes it), ``.engine(prefix=..., timeout=...)`` (a RedisEngine from
``open_engine``), ``.nodes`` (:class:`ClusterNodeProcess`: port, pid, node id, role),
``.primary_for(full_key)``, ``.replica_of(node)``, ``.failover(replica)`` (``CLUSTER
FAILOVER``), ``.kill(node)`` + ``.wait_promoted(replica)`` + ``.restart(node)``, ``.wait_ok()``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from redis.cluster import RedisCluster
from redis.crc import key_slot

from .servers import HOST, require, stop_the_run_if_missing

#: Milliseconds without an answer before a node is considered failed (fast failover in tests).
NODE_TIMEOUT_MS = 1000
WAIT_SECONDS = 30.0


def _cluster_port() -> int:
    """A free port ``p`` <= 55535 whose cluster bus port ``p + 10000`` is free too."""
    for _ in range(200):
        with socket.socket() as sock:
            sock.bind((HOST, 0))
            port = sock.getsockname()[1]
        if port > 55535:
            port -= 10000
        try:
            for candidate in (port, port + 10000):
                with socket.socket() as probe:
                    probe.bind((HOST, candidate))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


def _wait(condition: Callable[[], bool], what: str, seconds: float = WAIT_SECONDS) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except redis.RedisError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"{what} did not happen within {seconds} s")


def _flags(nodes_line: str) -> set[str]:
    """The flags field of one ``CLUSTER NODES`` line (``myself,master``, ``slave,fail``, ...)."""
    return set(nodes_line.split()[2].split(","))


class ClusterNodeProcess:
    """One ``redis-server --cluster-enabled yes`` on ``127.0.0.1:port``, its files in ``directory``."""

    def __init__(self, binary: str, directory: str) -> None:
        self.binary = binary
        self.directory = directory
        self.port = _cluster_port()
        self.process: subprocess.Popen | None = None

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    def start(self) -> None:
        """Start the server; ``nodes.conf`` in its directory keeps its identity across restarts."""
        command = [
            self.binary, "--port", str(self.port), "--bind", HOST, "--cluster-enabled", "yes",
            "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
            "--cluster-replica-validity-factor", "0", "--save", "", "--appendonly", "no",
            "--dir", self.directory, "--daemonize", "no",
        ]
        with open(os.path.join(self.directory, "redis.log"), "ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        _wait(self._answers, f"node {self.port} start")

    def _answers(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"redis-server on port {self.port} exited; see {self.directory}/redis.log")
        return bool(self.call("PING"))

    def kill(self) -> None:
        """SIGKILL the server (no goodbye to the cluster) and wait for it to exit."""
        if self.process is None:
            return
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)
        self.process = None

    def call(self, *command: Any) -> Any:
        """Run one command on this node alone (a plain connection, no redirection)."""
        with redis.Redis(host=HOST, port=self.port, socket_timeout=5, socket_connect_timeout=2) as client:
            return client.execute_command(*command)

    def info(self, section: str) -> dict[str, Any]:
        """``INFO section`` of this node, as redis-py parses it."""
        with redis.Redis(host=HOST, port=self.port, socket_timeout=5, socket_connect_timeout=2) as client:
            return client.info(section)

    def cluster_info(self) -> dict[str, str]:
        text = self.call("CLUSTER", "INFO").decode()
        return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)

    @property
    def node_id(self) -> str:
        return self.call("CLUSTER", "MYID").decode()

    @property
    def role(self) -> str:
        """``"master"`` or ``"slave"``, as the node itself reports it."""
        return self.info("replication")["role"]


class RedisClusterHarness:
    """Six cluster nodes (3 primaries, 3 replicas) and helpers to fail them over."""

    def __init__(self, binary: str, cli: str, directory: str, size: int = 6) -> None:
        self.cli = cli
        self.directory = directory
        self.nodes = []
        for index in range(size):
            node_dir = os.path.join(directory, f"node{index}")
            os.makedirs(node_dir)
            self.nodes.append(ClusterNodeProcess(binary, node_dir))

    @property
    def startup_url(self) -> str:
        return f"redis+cluster://{self.live_nodes()[0].address}"

    def live_nodes(self) -> list[ClusterNodeProcess]:
        return [node for node in self.nodes if node.process is not None]

    def create(self) -> None:
        """Start every node and join them with ``redis-cli --cluster create``."""
        for node in self.nodes:
            node.start()
        result = subprocess.run(
            [self.cli, "--cluster", "create", *(node.address for node in self.nodes),
             "--cluster-replicas", "1", "--cluster-yes"],
            capture_output=True, text=True, timeout=60, check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed:\n{result.stdout}\n{result.stderr}")
        self.wait_ok()

    def wait_ok(self) -> None:
        """Wait until every live node reports ``cluster_state:ok`` and agrees on 3 primaries."""
        def healthy() -> bool:
            nodes = self.live_nodes()
            return all(node.cluster_info()["cluster_state"] == "ok" for node in nodes) and all(
                sum("master" in _flags(line) and not _flags(line) & {"fail", "fail?"}
                    for line in node.call("CLUSTER", "NODES").decode().splitlines()) == 3
                for node in nodes
            )

        _wait(healthy, "cluster_state:ok on every node")

    def stop(self) -> None:
        for node in self.nodes:
            node.kill()

    def client(self, **options: Any) -> RedisCluster:
        """A raw RedisCluster client on a live node (the caller closes it)."""
        return RedisCluster(host=HOST, port=self.live_nodes()[0].port, socket_timeout=5, **options)

    def engine(self, prefix: str = "wa:default", timeout: float = 5.0) -> Any:
        """A RedisEngine opened from ``redis+cluster://`` (its ``close()`` releases the client)."""
        from wafs import open_engine

        query = urllib.parse.urlencode({"prefix": prefix, "timeout": timeout})
        return open_engine(f"{self.startup_url}?{query}")

    # --- topology -------------------------------------------------------------------------------

    def by_id(self, node_id: str) -> ClusterNodeProcess:
        return next(node for node in self.nodes if node.process is not None and node.node_id == node_id)

    def primary_for(self, full_key: bytes | str) -> ClusterNodeProcess:
        """The live primary that serves the slot of ``full_key`` (a Redis key, prefix included)."""
        slot = key_slot(full_key if isinstance(full_key, bytes) else full_key.encode())
        for node in self.live_nodes():
            if node.role == "master":
                for line in node.call("CLUSTER", "NODES").decode().splitlines():
                    fields = line.split()
                    if "myself" in _flags(line):
                        for part in fields[8:]:
                            low, _, high = part.partition("-")
                            if not part.startswith("[") and int(low) <= slot <= int(high or low):
                                return node
        raise AssertionError(f"no live primary serves slot {slot}")

    def replica_of(self, primary: ClusterNodeProcess) -> ClusterNodeProcess:
        for node in self.live_nodes():
            if (node is not primary and node.role == "slave"
                    and node.info("replication").get("master_port") == primary.port):
                return node
        raise AssertionError(f"primary {primary.address} has no live replica")

    def failover(self, replica: ClusterNodeProcess) -> None:
        """``CLUSTER FAILOVER`` on ``replica`` (a coordinated switch) and wait until it is primary."""
        replica.call("CLUSTER", "FAILOVER")
        self.wait_promoted(replica)

    def kill(self, node: ClusterNodeProcess) -> None:
        node.kill()

    def wait_promoted(self, replica: ClusterNodeProcess) -> None:
        _wait(lambda: replica.role == "master", f"promotion of {replica.address}")
        self.wait_ok()

    def restart(self, node: ClusterNodeProcess) -> None:
        """Start a killed node again; it rejoins (as a replica of whoever took over) with no data."""
        for name in os.listdir(node.directory):
            if name.endswith(".rdb"):
                os.remove(os.path.join(node.directory, name))
        node.start()
        _wait(lambda: node.role == "slave" and node.info("replication").get("master_link_status") == "up",
              f"{node.address} rejoining as a replica")
        self.wait_ok()


@pytest.fixture(scope="session")
def redis_cluster(request: pytest.FixtureRequest) -> Iterator[RedisClusterHarness]:
    """A private 3-primary, 3-replica Redis Cluster for the whole test session."""
    with stop_the_run_if_missing(request):
        binary, cli = require("redis-server", "redis-server"), require("redis-cli", "redis-tools")
    with tempfile.TemporaryDirectory(prefix="wafs-cluster-", ignore_cleanup_errors=True) as directory:
        harness = RedisClusterHarness(binary, cli, directory)
        try:
            harness.create()
            yield harness
        finally:
            harness.stop()
