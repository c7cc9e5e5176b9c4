"""Soak: four processes hammer one background ``wafs mount`` of Redis, each mirrored on disk.

Each worker owns a subdirectory and applies the same random operations (create, append,
truncate, rename, delete, mkdir, ``rm -r``) to it through the mount and to a reference
directory on local disk. At the end the store holds exactly the reference's files, and the
daemon's resident memory has not kept growing. ``WAFS_SOAK_SECONDS`` sets the duration
(default 45).
"""

from __future__ import annotations

import multiprocessing
import os
import random
import shutil
import string
import time
import traceback
from pathlib import Path

import pytest

from .mounting import daemon_mounted

pytestmark = pytest.mark.slow

SECONDS = float(os.environ.get("WAFS_SOAK_SECONDS", "45"))
WORKERS = 4
DIRS = ["d0", "d1", "d0/d2", "d1/d3", "d0/d2/d4"]
FILES = ["f0", "f1", "f2", "f3", "f4"]
TEXT = string.ascii_letters + string.digits + " \n"


def operate(rng: random.Random, roots: tuple[Path, Path]) -> None:
    """One random operation, applied to the mount and to the reference alike."""
    ref = roots[1]
    files = sorted(str(p.relative_to(ref)) for p in ref.rglob("*") if p.is_file())
    choice = rng.random()
    if choice < 0.35 or not files:
        path = f"{rng.choice(['', *DIRS])}/{rng.choice(FILES)}".lstrip("/")
        text = "".join(rng.choices(TEXT, k=rng.randint(0, 200)))
        mode = rng.choice(["w", "a"])
        for root in roots:
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            with open(root / path, mode, encoding="ascii") as file:
                file.write(text)
    elif choice < 0.5:
        path = rng.choice(files)
        length = rng.randint(0, (ref / path).stat().st_size)
        for root in roots:
            os.truncate(root / path, length)
    elif choice < 0.65:
        source = rng.choice(files)
        target = f"{rng.choice(['', *DIRS])}/{rng.choice(FILES)}".lstrip("/")
        for root in roots:
            (root / target).parent.mkdir(parents=True, exist_ok=True)
            os.rename(root / source, root / target)
    elif choice < 0.8:
        path = rng.choice(files)
        for root in roots:
            os.unlink(root / path)
    elif choice < 0.9:
        path = rng.choice(DIRS)
        for root in roots:
            os.makedirs(root / path, exist_ok=True)
    else:
        path = rng.choice(DIRS)
        if (ref / path).is_dir():
            for root in roots:
                shutil.rmtree(root / path)


def worker(number: int, mnt: Path, reference: Path, seconds: float) -> None:
    roots = (mnt / f"w{number}", reference / f"w{number}")
    for root in roots:
        root.mkdir()
    rng = random.Random(number)
    deadline = time.monotonic() + seconds
    operations = 0
    try:
        while time.monotonic() < deadline:
            operate(rng, roots)
            operations += 1
    except BaseException:  # noqa: BLE001  (a forked worker reports and exits, never returns into pytest)
        traceback.print_exc()
        os._exit(1)
    print(f"worker {number}: {operations} operations", flush=True)
    os._exit(0 if operations > 0 else 2)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def test_four_writers_through_one_daemon(redis_server, tmp_path: Path) -> None:
    prefix = "wa:soak"
    mnt, reference = tmp_path / "mnt", tmp_path / "reference"
    reference.mkdir()
    engine = redis_server.engine(prefix=prefix)
    try:
        with daemon_mounted(mnt, f"{redis_server.url}?prefix={prefix}") as pid:
            context = multiprocessing.get_context("fork")
            workers = [context.Process(target=worker, args=(n, mnt, reference, SECONDS))
                       for n in range(WORKERS)]
            started = time.monotonic()
            for process in workers:
                process.start()
            time.sleep(SECONDS / 3)
            rss_third = rss_kib(pid)
            for process in workers:
                process.join(SECONDS + 60)
            rss_end = rss_kib(pid)
            assert [p.exitcode for p in workers] == [0] * WORKERS, "a worker failed (see its output above)"
            print(f"\nsoak {time.monotonic() - started:.0f} s: "
                  f"daemon RSS {rss_third} KiB at 1/3, {rss_end} KiB at end")

            expected = {str(p.relative_to(reference)): p.read_text(encoding="ascii")
                        for p in reference.rglob("*") if p.is_file()}
            keys = sorted(engine.iter_keys(""))
            assert dict(zip(keys, (engine.get(k) for k in keys), strict=True)) == expected
            shown = {str(p.relative_to(mnt)) for p in mnt.rglob("*") if p.is_file()}
            assert shown == set(expected)
            assert rss_end <= 1.5 * rss_third + 20 * 1024, (rss_third, rss_end)
    finally:
        engine.delete_prefixes([f"w{n}" for n in range(WORKERS)])
        engine.close()
