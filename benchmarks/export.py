"""wafs export benchmark: the reference demo session exported by ``wafs export`` from a FileEngine and Redis.

Usage: .venv/bin/python benchmarks/export.py [--chats 200] [--messages 250] [--targets file,redis]

Writes the demo session (200 chats x 250 messages: ~150k keys) into a FileEngine directory and
into a redis-server it starts on a free loopback port in a temporary directory, then times the
command a person runs, ``wafs export DEST --engine URL -q`` (folders) and ``--zip``, as a
subprocess (Python's start-up included). Redis round trips are the server's
``total_reads_processed`` delta. Prints a markdown table; everything it starts is stopped and
its temporary directory removed, whatever happens.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from wafs.demo import write_demo
from wafs.engines.file import FileEngine
from wafs.engines.redis import RedisEngine

ROOT = Path(__file__).resolve().parent.parent
# The tests' private servers (tests/servers.py) are imported in main(), once ROOT is on the path.
sys.path.insert(0, str(ROOT))

WAFS = Path(sys.executable).parent / "wafs"
PREFIX = "wa:export"


def log(message: str) -> None:
    print(f"[export-bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def tree_size(path: Path) -> tuple[int, int]:
    files = size = 0
    for folder, _, names in os.walk(path):
        for name in names:
            files += 1
            size += os.path.getsize(os.path.join(folder, name))
    return files, size


def timed_export(url: str, dest: Path, *extra: str) -> float:
    started = time.perf_counter()
    subprocess.run([str(WAFS), "export", str(dest), "--engine", url, "-q", *extra], check=True, timeout=600)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    from tests.servers import running_redis

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chats", type=int, default=200)
    parser.add_argument("--messages", type=int, default=250)
    parser.add_argument("--targets", default="file,redis", help="comma-separated subset of file,redis")
    args = parser.parse_args(argv)
    targets = args.targets.split(",")
    rows = []
    with ExitStack() as stack:
        work = Path(tempfile.mkdtemp(prefix="wafs-export-bench-"))
        stack.callback(shutil.rmtree, work, ignore_errors=True)
        urls: dict[str, str] = {}
        reads = None
        keys = 0
        if "file" in targets:
            log("writing the FileEngine store")
            engine = FileEngine(work / "store", fsync=False)
            keys = write_demo(engine, args.chats, args.messages)
            engine.close()
            urls["file"] = f"file://{work / 'store'}"
        if "redis" in targets:
            server = stack.enter_context(running_redis())
            client = server.client(timeout=600)
            stack.callback(client.close)
            log(f"writing Redis at {server.url}")
            redis_engine = RedisEngine.from_url(f"{server.url}?prefix={PREFIX}")
            keys = write_demo(redis_engine, args.chats, args.messages)
            redis_engine.close()
            urls["redis"] = f"{server.url}?prefix={PREFIX}&timeout=60"

            def reads() -> int:
                return int(client.info("stats")["total_reads_processed"])
        for target, url in urls.items():
            for label, extra in (("folders", ()), ("--zip", ("--zip",))):
                dest = work / f"out-{target}-{label.strip('-')}"
                before = reads() if target == "redis" and reads else 0
                seconds = timed_export(url, dest, *extra)
                trips = reads() - before - 1 if target == "redis" and reads else None
                files, size = tree_size(dest)
                rows.append((target, label, seconds, files, size, trips))
                log(f"{target} {label}: {seconds:.2f} s, {files} files, {size / 1e6:.1f} MB, "
                    f"round trips {trips}")
                shutil.rmtree(dest)
    print(f"{args.chats} chats × {args.messages} messages = {keys} keys; "
          f"`wafs export DEST --engine URL -q` as a subprocess, {os.cpu_count()} CPUs, Python "
          f"{sys.version.split()[0]}\n")
    print("| store | output | seconds | files written | bytes written | Redis round trips |")
    print("|---|---|---|---|---|---|")
    for target, label, seconds, files, size, trips in rows:
        print(f"| {'FileEngine' if target == 'file' else 'Redis'} | {label} | {seconds:.2f} s | {files} | "
              f"{size / 1e6:.1f} MB | {'—' if trips is None else trips} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
