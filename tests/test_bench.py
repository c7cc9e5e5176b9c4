"""The benchmark runs end to end at a tiny size and reports every row (no timing assertions)."""

from __future__ import annotations

import subprocess
import sys
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


def _mounts() -> str:
    return Path("/proc/self/mounts").read_text(encoding="utf-8")


def test_tiny_benchmark_reports_every_row(tmp_path: Path) -> None:
    output = tmp_path / "bench.md"
    fuse_before = _mounts().count("fuse")
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench.py"), "--size", "tiny",
         "--targets", "native,file,redis", "--output", str(output)],
        capture_output=True, text=True, timeout=300, cwd=ROOT, check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = output.read_text(encoding="utf-8")
    assert report.strip() == done.stdout.strip()
    header = next(line for line in report.splitlines() if line.startswith("| operation |"))
    assert "| native dir | FileEngine mount | Redis mount |" in header
    for row in ROWS:
        assert any(line.startswith(row) for line in report.splitlines()), f"no row {row!r} in:\n{report}"
    table = [line for line in report.splitlines() if line.startswith(("| `", "| mount"))]
    assert all("failed" not in line and "timeout" not in line for line in table), report
    assert _mounts().count("fuse") == fuse_before, "the benchmark left a FUSE mount behind"
