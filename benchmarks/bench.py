"""wafs benchmark: the reference session over Redis, FileEngine and PostgreSQL mounts, side by side
with the FileEngine directory read natively and through bindfs (a C FUSE passthrough).

Usage: scripts/bench [--size tiny|small|medium|large|all] [--targets native,bindfs,file,redis,postgres]
                     [--output docs/benchmarks.md] [--op-timeout SECONDS]

It starts its own redis-server and PostgreSQL on free loopback ports, writes the demo session
into each store, measures, prints a markdown report and writes it to ``--output``. Every
mount it makes is unmounted and every server it starts is stopped, whatever happens.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import itertools
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from wafs.demo import write_demo
from wafs.engine import Engine
from wafs.engines.file import AT_ON_DISK, FileEngine
from wafs.engines.postgres import PostgresEngine
from wafs.engines.redis import RedisEngine
from wafs.mount import MountOptions, daemon_pid, mount, mounted_at, unmount

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the private servers of the tests: tests/servers.py
from tests.servers import RedisServer, running_postgres, running_redis  # noqa: E402

WORD = "pedido"
PREFIX = "wa:default"
BIG_PREFIX = "wa:big"
EMPTY_PREFIX = "wa:empty"
WIDE = "bench/wide"


@dataclasses.dataclass(frozen=True)
class Size:
    chats: int
    messages: int
    wide: int  # entries of the wide directory listed with ls -l
    big_redis: int  # keys in the Redis where one chat is removed with rm -r


SIZES = {
    "tiny": Size(3, 40, 500, 5_000),
    "small": Size(20, 250, 10_000, 1_000_000),
    "medium": Size(200, 250, 10_000, 1_000_000),
    "large": Size(2000, 250, 10_000, 1_000_000),
}
TARGETS = ("native", "bindfs", "file", "redis", "postgres")
TITLES = {
    "native": "native dir", "bindfs": "bindfs", "file": "FileEngine mount",
    "redis": "Redis mount", "postgres": "PostgreSQL mount",
}
# (row key, label, shell command; MOUNT, CHAT, DEST and WIDE are substituted)
OPERATIONS = (
    ("find", "`find -type f \\| wc -l`", "find MOUNT -type f | wc -l"),
    ("grep", f"`grep -rl {WORD}`", f"grep -rl {WORD} MOUNT | wc -l"),
    ("cp", "`cp -a chat DEST`", "cp -a MOUNT/chat DEST"),
    ("ls", "`ls -l` WIDE", "ls -l MOUNT/WIDE | wc -l"),
    ("rm_one", "`rm -r` one chat", "rm -r MOUNT/chat/CHAT"),
    ("rm_all", "`rm -r` all chats", "rm -r MOUNT/chat"),
)
PER_FILE = ("find", "grep", "cp")


@dataclasses.dataclass
class Figure:
    seconds: float | None = None  # None: failed or timed out
    note: str = ""
    calls: dict[str, int] | None = None  # Redis commands by name (Redis mount only)
    reads: int = 0  # Redis read events, about one per round trip (a pipeline is one)


@dataclasses.dataclass
class Daemon:
    keys: int
    after_mount_kib: int  # VmHWM once the first ls answered: the tree
    peak_kib: int  # VmHWM at the end: tree, value cache, buffers


@dataclasses.dataclass
class Result:
    size: str
    keys: int = 0
    files: int = 0
    figures: dict[str, dict[str, Figure]] = dataclasses.field(default_factory=dict)  # op -> target -> figure
    daemons: dict[str, Daemon] = dataclasses.field(default_factory=dict)
    empty_daemon_kib: int = 0
    big_rm: Figure = dataclasses.field(default_factory=Figure)
    big_swept: float | None = None
    big_keys: int = 0
    caches_dropped: bool = True


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


WARM = False  # --warm: leave the caches as they are


def drop_caches() -> bool:
    """Drop the page, dentry and inode caches; False when this process may not (or --warm)."""
    if WARM:
        return False
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as control:
            control.write("3\n")
        return True
    except OSError:
        return False


def timed_shell(command: str, timeout: float) -> tuple[Figure, str]:
    started = time.perf_counter()
    try:
        done = subprocess.run(["bash", "-o", "pipefail", "-c", command], capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return Figure(None, f"timeout > {timeout:.0f} s"), ""
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        return Figure(None, f"failed ({done.returncode}): {done.stderr.strip()[:120]}"), done.stdout
    return Figure(elapsed), done.stdout.strip()


def vm_kib(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} for pid {pid}")



def release(mountpoint: Path) -> None:
    """Unmount; lazily if that fails. Reaps a wafs daemon this process forked."""
    if not mounted_at(mountpoint):
        return
    try:
        pid: int | None = daemon_pid(mountpoint)
    except OSError:
        pid = None
    try:
        unmount(str(mountpoint), timeout=60)
    except Exception as exc:
        log(f"unmount of {mountpoint} failed ({exc}); detaching it lazily")
        subprocess.run(["fusermount3", "-u", "-z", str(mountpoint)], capture_output=True, timeout=60)
    if pid is not None:
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass


@contextmanager
def wafs_mount(url: str, mountpoint: Path, log_file: Path) -> Iterator[float]:
    """Mount ``url`` in the background; yields the seconds from ``mount()`` to the first ``ls``."""
    mountpoint.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    try:
        mount(url, str(mountpoint), MountOptions(), log_file=str(log_file))
        os.listdir(mountpoint)
        yield time.perf_counter() - started
    finally:
        release(mountpoint)


@contextmanager
def bindfs_mount(source: Path, mountpoint: Path) -> Iterator[float]:
    mountpoint.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    try:
        subprocess.run(["bindfs", str(source), str(mountpoint)], check=True, capture_output=True, timeout=60)
        os.listdir(mountpoint)
        yield time.perf_counter() - started
    finally:
        if mounted_at(mountpoint):
            result = subprocess.run(["fusermount3", "-u", str(mountpoint)], capture_output=True, timeout=60)
            if result.returncode != 0:
                subprocess.run(["fusermount3", "-u", "-z", str(mountpoint)], capture_output=True, timeout=60)


def fill(engine: Engine, size: Size) -> int:
    """The demo session plus the wide directory; returns the number of keys written."""
    keys = write_demo(engine, size.chats, size.messages, seed=0)
    wide = {f"{WIDE}/k{i:05d}": f'{{"entry": {i}, "note": "filler for ls -l"}}' for i in range(size.wide)}
    for start in range(0, size.wide, 1000):
        engine.set_many(dict(list(wide.items())[start:start + 1000]))
    return keys + size.wide


class MeasuredRedis:
    """The benchmark's redis-server through one patient client (big stores) that reads its counters."""

    def __init__(self, server: RedisServer) -> None:
        self.url = server.url
        self.client = server.client(timeout=600)

    def calls(self) -> dict[str, int]:
        """Calls per command since the server started (``INFO commandstats``), INFO excluded."""
        stats = self.client.info("commandstats")
        return {name.removeprefix("cmdstat_"): int(s["calls"]) for name, s in stats.items()
                if name != "cmdstat_info"}

    def reads(self) -> int:
        """Read events the server has processed: one per request or pipeline (≈ round trips)."""
        return int(self.client.info("stats")["total_reads_processed"])


def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    changed = {name: after[name] - before.get(name, 0) for name in after}
    return {name: count for name, count in sorted(changed.items()) if count}


def measure_target(target: str, root: Path, chat: str, result: Result, work: Path, timeout: float,
                   redis: MeasuredRedis | None) -> None:
    """Run every operation on ``root`` (a mount or the native directory), in order."""
    for op, _label, template in OPERATIONS:
        dest = work / "dest"
        command = (template.replace("MOUNT", shlex.quote(str(root))).replace("CHAT", shlex.quote(chat))
                   .replace("DEST", shlex.quote(str(dest))).replace("WIDE", WIDE))
        result.caches_dropped = drop_caches() and result.caches_dropped
        before, reads = (redis.calls(), redis.reads()) if redis else ({}, 0)
        figure, out = timed_shell(command, timeout)
        if redis:
            figure.reads = redis.reads() - reads - 1  # minus the INFO that read calls()
            figure.calls = delta(before, redis.calls())
        if op in ("find", "grep", "ls") and figure.seconds is not None:
            figure.note = f"{out} lines"
        if op == "find" and out.isdigit() and (target == "native" or not result.files):
            result.files = int(out)
        result.figures.setdefault(op, {})[target] = figure
        shutil.rmtree(dest, ignore_errors=True)
        log(f"{target:8} {op:6} {figure.seconds if figure.seconds is None else round(figure.seconds, 3)} s "
            f"{figure.note} {sum((figure.calls or {}).values()) if redis else ''}")


def run_size(name: str, targets: list[str], timeout: float) -> Result:
    size = SIZES[name]
    result = Result(name)
    with ExitStack() as stack:
        work = Path(tempfile.mkdtemp(prefix="wafs-bench-"))
        stack.callback(shutil.rmtree, work, ignore_errors=True)
        redis = None
        if "redis" in targets:
            redis = MeasuredRedis(stack.enter_context(running_redis(debug_command=True)))
            stack.callback(redis.client.close)
        postgres = stack.enter_context(running_postgres()) if "postgres" in targets else None

        log(f"size {name}: {size.chats} chats x {size.messages} messages, writing the stores")
        store = work / "store"
        engines: list[Engine] = []
        if any(t in targets for t in ("native", "bindfs", "file")):  # 1.5M files take a while
            engines.append(FileEngine(store, fsync=False))
        if redis:
            engines.append(RedisEngine.from_url(f"{redis.url}?prefix={PREFIX}"))
        if postgres:
            engines.append(PostgresEngine(postgres.dsn, "storage"))
        for engine in engines:
            result.keys = fill(engine, size)
        chat = sorted(engines[0].children("chat"))[0]  # the same chat in every store
        chat_on_disk = chat.replace("@", AT_ON_DISK)
        for engine in engines:
            engine.close()
        copies = {t: work / f"copy-{t}" for t in ("native", "bindfs") if t in targets}
        for copy in copies.values():
            subprocess.run(["cp", "-a", str(store), str(copy)], check=True)
        urls = {
            "file": f"file://{store}",
            "redis": f"{redis.url}?prefix={PREFIX}&timeout=60" if redis else "",
            "postgres": f"{postgres.url}?table=storage&timeout=60" if postgres else "",
        }

        for target in targets:
            log(f"size {name}: {target}")
            mountpoint = work / f"mnt-{target}"
            drop_caches()
            if target == "native":
                measure_target(target, copies["native"], chat_on_disk, result, work, timeout, None)
                continue
            before, reads = (redis.calls(), redis.reads()) if redis and target == "redis" else ({}, 0)
            opened = (bindfs_mount(copies["bindfs"], mountpoint) if target == "bindfs"
                      else wafs_mount(urls[target], mountpoint, work / f"{target}.log"))
            with opened as seconds:
                figure = Figure(seconds)
                if target == "redis" and redis:
                    figure.reads = redis.reads() - reads - 1
                    figure.calls = delta(before, redis.calls())
                result.figures.setdefault("mount", {})[target] = figure
                pid = daemon_pid(mountpoint) if target != "bindfs" else None
                after_mount = vm_kib(pid, "VmHWM") if pid else 0
                measure_target(target, mountpoint, chat_on_disk if target == "bindfs" else chat, result, work,
                               timeout, redis if target == "redis" else None)
                if pid:
                    result.daemons[target] = Daemon(result.keys, after_mount, vm_kib(pid, "VmHWM"))

        if redis:
            measure_empty_daemon(redis, result, work)
            measure_big_redis(redis, size, chat, result, work, timeout)
    return result


def measure_empty_daemon(redis: MeasuredRedis, result: Result, work: Path) -> None:
    """What a daemon costs before it holds any key: the baseline for memory per key."""
    with wafs_mount(f"{redis.url}?prefix={EMPTY_PREFIX}", work / "mnt-empty", work / "empty.log"):
        result.empty_daemon_kib = vm_kib(daemon_pid(work / "mnt-empty"), "VmHWM")


def measure_big_redis(redis: MeasuredRedis, size: Size, chat: str, result: Result, work: Path,
                      timeout: float) -> None:
    """``rm -r`` of one chat while Redis holds ``size.big_redis`` keys (session + filler)."""
    log("big Redis: session + filler")
    redis.client.flushall()
    engine = RedisEngine.from_url(f"{redis.url}?prefix={BIG_PREFIX}")
    fill(engine, size)
    engine.close()
    filler = size.big_redis - int(redis.client.dbsize())
    if filler > 0:
        redis.client.execute_command("DEBUG", "POPULATE", filler, "filler", 16)
    result.big_keys = int(redis.client.dbsize())
    mountpoint = work / "mnt-big"
    with wafs_mount(f"{redis.url}?prefix={BIG_PREFIX}&timeout=60", mountpoint, work / "big.log"):
        os.listdir(mountpoint / "chat" / chat)
        before, reads = redis.calls(), redis.reads()
        result.big_rm, _ = timed_shell(f"rm -r {shlex.quote(str(mountpoint / 'chat' / chat))}", timeout)
        result.big_rm.reads = redis.reads() - reads - 1
        started = time.perf_counter()
        pattern = glob_escape(f"{BIG_PREFIX}:chat/{chat}/") + "*"
        while any(True for _ in redis.client.scan_iter(match=pattern, count=10_000)):
            if time.perf_counter() - started > timeout:
                break
            time.sleep(0.05)
        if result.big_rm.seconds is not None:
            result.big_swept = result.big_rm.seconds + time.perf_counter() - started
        result.big_rm.calls = delta(before, redis.calls())
    log(f"big Redis ({result.big_keys} keys): rm -r one chat {result.big_rm.seconds} s, "
        f"swept {result.big_swept} s")


def glob_escape(text: str) -> str:
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in text)


# --- report ------------------------------------------------------------------------------------


def fmt(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def ratio(a: Figure | None, b: Figure | None) -> str:
    if a is None or b is None or a.seconds is None or b.seconds is None or b.seconds <= 0:
        return "—"
    return f"{a.seconds / b.seconds:.2f}×"


def calls_text(figure: Figure | None, files: int, op: str) -> str:
    if figure is None or figure.calls is None:
        return "—"
    total = sum(figure.calls.values())
    top = ", ".join(f"{name.replace('|', ' ')} {count}"
                    for name, count in sorted(figure.calls.items(), key=lambda i: -i[1])[:4])
    per_file = f", {figure.reads / files:.3f} round trips/file" if op in PER_FILE and files else ""
    return f"{figure.reads} round trips{per_file}; {total} commands ({top})" if total else "0"


def figures_table(result: Result, targets: list[str]) -> list[str]:
    size = SIZES[result.size]
    columns = [TITLES[t] for t in targets]
    lines = [
        f"| operation | {' | '.join(columns)} | Redis ÷ bindfs | Redis ÷ native | Redis round trips |",
        "|---" * (len(columns) + 4) + "|",
    ]
    labels = {"mount": "mount + first `ls`"} | {op: label.replace("WIDE", f"of {size.wide} entries")
                                                  for op, label, _ in OPERATIONS}
    for op, label in labels.items():
        row = result.figures.get(op, {})
        cells = []
        for target in targets:
            figure = row.get(target)
            if figure is None:
                cells.append("n/a")
            else:
                cells.append(fmt(figure.seconds) + (f" ({figure.note})" if figure.seconds is None else ""))
        lines.append(f"| {label} | {' | '.join(cells)} | {ratio(row.get('redis'), row.get('bindfs'))} | "
                     f"{ratio(row.get('redis'), row.get('native'))} | "
                     f"{calls_text(row.get('redis'), result.files, op)} |")
    return lines


def memory_table(result: Result) -> list[str]:
    lines = [
        "| daemon | keys held | VmHWM after mount + `ls` | VmHWM at end "
        "| tree bytes/key (after mount − empty daemon) | bytes/key at end (VmHWM ÷ keys) |",
        "|---|---|---|---|---|---|",
    ]
    for target, daemon in result.daemons.items():
        tree = ((daemon.after_mount_kib - result.empty_daemon_kib) * 1024 / daemon.keys
                if result.empty_daemon_kib else 0)
        lines.append(
            f"| {TITLES[target]} | {daemon.keys} | {daemon.after_mount_kib / 1024:.1f} MiB | "
            f"{daemon.peak_kib / 1024:.1f} MiB | {tree:.0f} | {daemon.peak_kib * 1024 / daemon.keys:.0f} |"
        )
    if result.empty_daemon_kib:
        lines.append(f"| empty daemon (Redis, 0 keys) | 0 | {result.empty_daemon_kib / 1024:.1f} MiB | | | |")
    return lines


def targets_table(result: Result) -> list[str]:
    figures = result.figures
    def no_slower(op: str) -> tuple[str, bool | None]:
        r, b = figures.get(op, {}).get("redis"), figures.get(op, {}).get("bindfs")
        if r is None or b is None or r.seconds is None or b.seconds is None:
            return "—", None
        text = f"{fmt(r.seconds)} vs bindfs {fmt(b.seconds)} ({r.seconds / b.seconds:.2f}×)"
        return text, r.seconds <= b.seconds

    rows: list[tuple[str, str, bool | None]] = []
    mount_fig = figures.get("mount", {}).get("redis")
    rows.append(("Redis mount answers first `ls` < 2 s", fmt(mount_fig.seconds) if mount_fig else "—",
                 mount_fig.seconds < 2 if mount_fig and mount_fig.seconds is not None else None))
    for op in ("find", "grep", "cp"):
        text, met = no_slower(op)
        rows.append((f"{op} over Redis mount no slower than bindfs", text, met))
    ls_fig = figures.get("ls", {}).get("redis")
    rows.append((f"`ls -l` of {SIZES[result.size].wide} entries < 1 s (Redis mount)",
                 fmt(ls_fig.seconds) if ls_fig else "—",
                 ls_fig.seconds < 1 if ls_fig and ls_fig.seconds is not None else None))
    rows.append((f"`rm -r` one chat on a {result.big_keys}-key Redis < 1 s",
                 f"{fmt(result.big_rm.seconds)} (store swept after {fmt(result.big_swept)})",
                 result.big_rm.seconds < 1 if result.big_rm.seconds is not None else None))
    daemon = result.daemons.get("redis")
    if daemon and result.empty_daemon_kib:
        tree = (daemon.after_mount_kib - result.empty_daemon_kib) * 1024 / daemon.keys
        peak = daemon.peak_kib * 1024 / daemon.keys
        rows.append(("≤ 300 bytes daemon memory per key held (Redis tree)",
                     f"{tree:.0f} B/key ({peak:.0f} B/key counting the whole peak)", tree <= 300))
    lines = ["| target (DESIGN §3) | figure | met |", "|---|---|---|"]
    for what, figure, met in rows:
        lines.append(f"| {what} | {figure} | {'—' if met is None else 'yes' if met else '**no**'} |")
    return lines


def growth_table(results: list[Result], targets: list[str]) -> list[str]:
    sizes = [r.size for r in results]
    columns = " | ".join(f"{s} ({r.keys} keys)" for s, r in zip(sizes, results, strict=True))
    lines = [f"| figure | {columns} | growth per step |", "|---" * (len(sizes) + 2) + "|"]
    for op in ["mount", *(op for op, _, _ in OPERATIONS)]:
        for target in targets:
            values = [r.figures.get(op, {}).get(target) for r in results]
            if all(v is None for v in values):
                continue
            secs = [v.seconds if v else None for v in values]
            steps = [f"{b / a:.1f}×" if a and b else "—" for a, b in itertools.pairwise(secs)]
            figures = " | ".join(fmt(s) for s in secs)
            lines.append(f"| {op} · {TITLES[target]} | {figures} | {', '.join(steps)} |")
    big = [r.big_rm.seconds for r in results]
    lines.append(f"| rm -r one chat · big Redis | {' | '.join(fmt(s) for s in big)} | |")
    return lines


def machine() -> list[str]:
    mem_kib = vm_meminfo()
    return [
        f"- CPUs (`nproc`): {os.cpu_count()}; memory: {mem_kib / 1024 / 1024:.1f} GiB; "
        f"kernel: {platform.release()}",
        f"- Python {platform.python_version()}; {tool_version(['redis-server', '--version'])}; "
        f"{tool_version([glob_postgres(), '--version'])}; {tool_version(['bindfs', '--version'])}",
    ]


def vm_meminfo() -> int:
    with open("/proc/meminfo") as meminfo:
        return int(meminfo.readline().split()[1])


def glob_postgres() -> str:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parts[4]))
    return str(found[-1]) if found else "postgres"


def tool_version(command: list[str]) -> str:
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=10)
        return result.stdout.strip().splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return f"{command[0]}: unknown version"


def report(results: list[Result], targets: list[str], command: str) -> str:
    lines = [
        "# wafs benchmarks",
        "",
        f"Generated by `{command}` on {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}.",
        "",
        *machine(),
        "",
        "Every mount uses the default `MountOptions()` (tree TTL 1 s, 64 MiB value cache). "
        + ("The page, dentry and inode caches are dropped (`echo 3 > /proc/sys/vm/drop_caches`) before "
           "every operation; the wafs daemons keep their own tree and value cache across operations."
           if all(r.caches_dropped for r in results) else
           "**Caches are warm**: the page cache is not dropped between operations (`--warm`, or no "
           "permission); the data fits in memory, so the disk is not read during the runs."),
        "Operations run in the order of the rows on the same data, so `rm -r` all chats runs after one chat "
        "was removed. The native and bindfs columns use two copies of the FileEngine directory.",
        "",
    ]
    for result in results:
        size = SIZES[result.size]
        lines += [
            f"## {result.size}: {size.chats} chats × {size.messages} messages + {size.wide}-entry directory "
            f"= {result.keys} keys, {result.files} files",
            "",
            *figures_table(result, targets),
            "",
            "Redis round trips: `total_reads_processed` delta (one read event per request or pipeline); "
            "commands: `INFO commandstats` deltas (a pipelined STRLEN per key counts as one command each). "
            "INFO itself is excluded.",
            "",
        ]
        if result.daemons:
            lines += ["### Daemon memory", "", *memory_table(result), ""]
        if "redis" in targets:
            lines += ["### Targets", "", *targets_table(result), ""]
    if len(results) > 1:
        lines += ["## Growth", "", *growth_table(results, targets), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=[*SIZES, "all"], default="medium",
                        help="session size; all = small, medium and large (large takes long)")
    parser.add_argument("--targets", default=",".join(TARGETS),
                        help=f"comma-separated subset of {','.join(TARGETS)}")
    parser.add_argument("--output", default=str(ROOT / "docs" / "benchmarks.md"), help="markdown report path")
    parser.add_argument("--warm", action="store_true", help="do not drop the page cache between operations")
    parser.add_argument("--op-timeout", type=float, default=900.0, help="seconds one operation may take")
    args = parser.parse_args(argv)
    global WARM
    WARM = args.warm
    signal.signal(signal.SIGTERM, lambda number, frame: sys.exit(128 + number))  # unmount and stop in finally
    targets = [t for t in TARGETS if t in args.targets.split(",")]
    unknown = set(args.targets.split(",")) - set(TARGETS)
    if unknown:
        parser.error(f"unknown targets: {', '.join(sorted(unknown))}")
    sizes = ["small", "medium", "large"] if args.size == "all" else [args.size]
    results = [run_size(size, targets, args.op_timeout) for size in sizes]
    arguments = argv if argv is not None else sys.argv[1:]
    command = "scripts/bench " + " ".join(shlex.quote(a) for a in arguments)
    text = report(results, targets, command.strip())
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
