"""The benchmark runs end to end at a tiny size and reports every row (no timing assertions)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ROWS = [
    "| `find -type f` cold |",
    "| `find -type f` warm |",
    "| `grep -rl pedido` cold |",
    "| `grep -rl pedido` warm |",
    "| `cp -a chat` cold |",
    "| `cp -a chat` warm |",
    "| `ls -l` of 500 entries cold |",
    "| `ls -l` of 500 entries warm |",
    "| mount → first `ls` |",
    "| daemon exit after unmount |",
    "| Redis --read-only: cold `grep` ≤ 0.5× bindfs -r |",
    "| Redis writable: warm `find` ≤ 0.5× bindfs |",
    "| Redis --read-only: mount of 922 keys answers its first `ls` < 2 s |",
    "| Redis writable: daemon gone < 5 s after the unmount |",
    "| Redis --read-only: daemon memory ≤ 300 B per key (tree + inode table) |",
    "| `rm -r` of one chat on a 5000-key Redis < 1 s (writable, change feed) |",
    "| Redis --read-only | 922 |",
]


def _fuse_mounts_below(directory: Path) -> list[str]:
    """The FUSE mountpoints below ``directory`` (the machine may hold other sessions' mounts)."""
    points = []
    for line in Path("/proc/self/mounts").read_text(encoding="utf-8").splitlines():
        _, field, kind, *_ = line.split()
        point = re.sub(r"\\([0-7]{3})", lambda octal: chr(int(octal[1], 8)), field)  # \040 is a space
        if kind.startswith("fuse") and Path(point).is_relative_to(directory):
            points.append(point)
    return points


def test_tiny_benchmark_reports_every_row(tmp_path: Path) -> None:
    output = tmp_path / "bench.md"
    work = tmp_path / "work"  # the benchmark's temporary directories, mountpoints included
    work.mkdir()
    out, err = tmp_path / "bench.out", tmp_path / "bench.err"
    mounted_during: set[str] = set()
    with out.open("w") as stdout_file, err.open("w") as stderr_file:
        bench = subprocess.Popen(
            [sys.executable, str(ROOT / "benchmarks" / "bench.py"), "--size", "tiny",
             "--targets", "native,bindfs,file,redis", "--rounds", "1", "--max-wait", "0",
             "--output", str(output)],
            stdout=stdout_file, stderr=stderr_file, cwd=ROOT, env={**os.environ, "TMPDIR": str(work)},
        )
        deadline = time.monotonic() + 300
        try:
            while bench.poll() is None and time.monotonic() < deadline:
                mounted_during.update(_fuse_mounts_below(work))
                time.sleep(0.05)
        finally:
            bench.kill()
            bench.wait()
    stdout, stderr = out.read_text(encoding="utf-8"), err.read_text(encoding="utf-8")
    assert bench.returncode == 0, stderr[-3000:]
    report = output.read_text(encoding="utf-8")
    assert report.strip() == stdout.strip()
    header = next(line for line in report.splitlines() if line.startswith("| operation |"))
    assert header == ("| operation | native dir | bindfs -r | bindfs | FileEngine --read-only "
                      "| FileEngine writable | Redis --read-only | Redis writable |")
    for row in ROWS:
        assert any(line.startswith(row) for line in report.splitlines()), f"no row {row!r} in:\n{report}"
    assert "Wrong outputs and failures" not in report, report
    assert (tmp_path / "bench.jsonl").exists()
    assert mounted_during, "no benchmark mount was seen below TMPDIR: the check below would see nothing"
    assert _fuse_mounts_below(work) == [], "the benchmark left a FUSE mount behind"


def test_request_counts_of_a_run_without_find_are_given_in_all(tmp_path: Path) -> None:
    """Without ``find`` the run does not know how many files there are: the counts are totals."""
    output = tmp_path / "bench.md"
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench.py"), "--size", "tiny", "--targets", "redis",
         "--modes", "ro", "--ops", "grep", "--count-ops", "grep", "--rounds", "1", "--max-wait", "0",
         "--output", str(output)],
        capture_output=True, text=True, cwd=ROOT, env={**os.environ, "TMPDIR": str(tmp_path)}, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line for line in output.read_text(encoding="utf-8").splitlines()
            if line.startswith("| Redis --read-only | `grep -rl pedido` cold |")]
    assert len(rows) == 1 and " in all " in rows[0] and "READDIRPLUS" in rows[0], rows
