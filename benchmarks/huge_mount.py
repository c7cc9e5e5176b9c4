"""wafs scale benchmark: a Redis mount of 1.5M keys, from ``wafs mount`` to its first ``ls``, and
from ``wafs umount`` to the daemon's exit, with the baseline of the same work done by redis-py alone.

Usage: .venv/bin/python benchmarks/huge_mount.py [--keys 1500000] [--rounds 2]

Starts a private redis-server on a free loopback port (keyspace notifications enabled by the
mount: ``?notifications=enable``), writes ``--keys`` keys shaped like a session's messages
(``chat/{chat}@s.whatsapp.net/message/{id}/raw``, 250 per chat) with one server-side script, then
per round: drops the kernel's caches, times the ``wafs mount`` command until ``ls`` of the mount
answers, records the daemon's VmRSS, runs ``ls`` of one chat's messages, ``find | wc -l`` of
the whole tree (every inode made), and times ``wafs umount`` until the daemon's process is
gone and until the command returns. The baseline: a minimal redis-py program doing the SCAN
the mount's first read does (``SCAN MATCH prefix:* COUNT 10000`` to the end, keys decoded and
kept in a list). Prints a markdown table; everything it starts is stopped, whatever happens.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the tests' private servers: tests/servers.py

from benchmarks.bench import REST_SECONDS  # noqa: E402

WAFS = Path(sys.executable).parent / "wafs"
PREFIX = "wa:huge"
PER_CHAT = 250
FILL_CHUNK = 100_000
FILL = """
local prefix, first, count, per_chat = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
for i = first, first + count - 1 do
  local chat, message = math.floor(i / per_chat), i % per_chat
  redis.call('SET', prefix .. ':chat/549' .. (1100000000 + chat) .. '@s.whatsapp.net/message/3EB0'
              .. string.format('%08X', message) .. '/raw', '{"key":{"id":"' .. message .. '"}}')
end
return count
"""


def log(message: str) -> None:
    print(f"[huge-mount {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def vm_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise LookupError(field)


def baseline_scan(url: str) -> float:
    """Seconds a bare redis-py SCAN of every key under the prefix takes."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        started = time.perf_counter()
        keys = [key.decode() for key in client.scan_iter(match=f"{PREFIX}:*", count=10_000)]
        seconds = time.perf_counter() - started
    finally:
        client.close()
    log(f"baseline: SCAN of {len(keys)} keys in {seconds:.2f} s")
    return seconds


def one_round(url: str, mountpoint: Path, work: Path) -> dict[str, float]:
    from benchmarks.bench import alive  # a zombie waiting for its reaper counts as exited
    from wafs.mount import daemon_pid, mounted_at

    subprocess.run(["sh", "-c", "sync; echo 3 > /proc/sys/vm/drop_caches"], check=False)
    started = time.perf_counter()
    subprocess.run([str(WAFS), "mount", str(mountpoint), "--engine", f"{url}?prefix={PREFIX}&timeout=60"
                    "&notifications=enable", "--log-file", str(work / "daemon.log")], check=True,
                   capture_output=True)
    names = os.listdir(mountpoint)
    first_ls = time.perf_counter() - started
    pid = daemon_pid(mountpoint)
    result = {"first_ls": first_ls, "rss_tree_mib": vm_kib(pid, "VmRSS") / 1024}
    try:
        assert names == ["chat"], names
        chat = sorted(os.listdir(mountpoint / "chat"))[0]
        started = time.perf_counter()
        messages = os.listdir(mountpoint / "chat" / chat / "message")
        result["ls_chat"] = time.perf_counter() - started
        assert len(messages) == PER_CHAT, len(messages)
        started = time.perf_counter()
        found = subprocess.run(["sh", "-c", f"find {mountpoint} -type f | wc -l"], check=True,
                               capture_output=True, text=True).stdout.strip()
        result["find"] = time.perf_counter() - started
        result["files"] = int(found)
        time.sleep(REST_SECONDS)  # the daemon returns what the walk freed once idle
        result["rss_inodes_mib"] = vm_kib(pid, "VmRSS") / 1024
    finally:
        started = time.perf_counter()
        # The daemon's exit is timed while the command runs: the command returns only once the
        # kernel has evicted every inode of the mount (its umount system call), which no daemon
        # takes part in.
        command = subprocess.Popen([str(WAFS), "umount", str(mountpoint)], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        while alive(pid) and time.perf_counter() - started < 600:
            time.sleep(0.01)
        result["exit"] = time.perf_counter() - started
        command.wait()
        result["umount"] = time.perf_counter() - started
        if mounted_at(mountpoint):
            subprocess.run(["fusermount3", "-u", "-z", str(mountpoint)], check=False)
    log(", ".join(f"{k} {v:.2f}" for k, v in result.items()))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--keys", type=int, default=1_500_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    from tests.servers import running_redis

    with running_redis() as server, tempfile.TemporaryDirectory(prefix="wafs-huge-") as directory:
        work = Path(directory)
        mountpoint = work / "mnt"
        mountpoint.mkdir()
        client = server.client()
        log(f"writing {args.keys} keys")
        for first in range(0, args.keys, FILL_CHUNK):  # one script per chunk: within the client's timeout
            client.eval(FILL, 0, PREFIX, first, min(FILL_CHUNK, args.keys - first), PER_CHAT)
        client.close()
        baselines = [baseline_scan(server.url) for _ in range(args.rounds)]
        rounds = [one_round(server.url, mountpoint, work) for _ in range(args.rounds)]
    scan = statistics.median(baselines)

    def median(field: str) -> float:
        return statistics.median(r[field] for r in rounds)

    command = f".venv/bin/python benchmarks/huge_mount.py --keys {args.keys} --rounds {args.rounds}"
    started = time.strftime('%Y-%m-%d %H:%M %Z')
    print(f"Generated by `{command}` on {started}; medians of {args.rounds} rounds.\n")
    print("| figure | measured | target |")
    print("|---|---|---|")
    print(f"| baseline: redis-py `SCAN` of the {args.keys} keys, nothing else | {scan:.2f} s | |")
    print(f"| `wafs mount` → first `ls` answers | {median('first_ls'):.2f} s "
          f"({median('first_ls') / scan:.1f}× the bare SCAN) | < 10 s |")
    print(f"| `ls` of one chat's {PER_CHAT} messages after that | {median('ls_chat') * 1000:.0f} ms | |")
    print(f"| `find -type f` of all {int(median('files'))} files | {median('find'):.1f} s | |")
    print(f"| daemon VmRSS after mount (tree) | {median('rss_tree_mib'):.0f} MiB "
          f"({median('rss_tree_mib') * 2**20 / args.keys:.0f} B/key) | |")
    print(f"| daemon VmRSS after `find` (tree + inodes) | {median('rss_inodes_mib'):.0f} MiB "
          f"({median('rss_inodes_mib') * 2**20 / args.keys:.0f} B/key) | ≤ 300 B/key |")
    print(f"| `wafs umount` → daemon gone, all {int(median('files'))} inodes known | {median('exit'):.2f} s "
          "| < 5 s |")
    print(f"| `wafs umount` → the command returns (the kernel's unmount included) "
          f"| {median('umount'):.2f} s | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
