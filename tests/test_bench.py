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
    "| mount + first `ls` |",
    "| `find -type f \\| wc -l` |",
    "| `grep -rl pedido` |",
    "| `cp -a chat DEST` |",
    "| `ls -l` of 500 entries |",
    "| `rm -r` one chat |",
    "| `rm -r` all chats |",
    "| Redis mount |",
    "| empty daemon (Redis, 0 keys) |",
    "| Redis mount answers first `ls` < 2 s |",
    "| `rm -r` one chat on a 5000-key Redis < 1 s |",
    "| ≤ 300 bytes daemon memory per key held (Redis tree) |",
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
             "--targets", "native,file,redis", "--output", str(output)],
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
    assert "| native dir | FileEngine mount | Redis mount |" in header
    for row in ROWS:
        assert any(line.startswith(row) for line in report.splitlines()), f"no row {row!r} in:\n{report}"
    table = [line for line in report.splitlines() if line.startswith(("| `", "| mount"))]
    assert all("failed" not in line and "timeout" not in line for line in table), report
    assert mounted_during, "no benchmark mount was seen below TMPDIR: the check below would see nothing"
    assert _fuse_mounts_below(work) == [], "the benchmark left a FUSE mount behind"
