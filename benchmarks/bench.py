"""wafs benchmark: the reference session over wafs mounts (Redis, FileEngine, PostgreSQL), read-only
and writable, side by side with the same session as a directory read natively and through bindfs
(a C FUSE passthrough), cold and warm, in interleaved rounds.

Usage: scripts/bench [--size tiny|small|medium|large|all] [--targets native,bindfs,file,redis,postgres]
                     [--modes ro,rw] [--ops find,grep,cp,ls] [--rounds N] [--count-ops grep,find]
                     [--output docs/benchmarks.md] [--raw results.jsonl] [--op-timeout SECONDS]
       scripts/bench --report-from results.jsonl [--output PATH]   # the report of a finished run

Method (that of shared/fuse-floor): each round visits every configuration in turn (the order
rotates from round to round) and for every operation drops the kernel's caches
(``echo 3 > /proc/sys/vm/drop_caches``), mounts afresh (timed to the first ``ls``), runs the
operation twice (cold, then warm: the same command again, nothing changed) and unmounts (the
daemon's exit timed). A wafs mount's ratio is to bindfs of the same mode measured in the same
round. Then, if the kernel tracepoint ``fuse:fuse_request_send`` can be read, one more fresh
mount per FUSE configuration and operation counts the requests the kernel sent, per opcode.

It starts its own redis-server (keyspace notifications enabled by the mounts:
``?notifications=enable``, so the kernel keeps names and attributes and the daemon invalidates
exactly) and PostgreSQL on free loopback ports, writes the demo session into each store,
writes every measurement to a JSON-lines file (``--raw``) and the markdown report to
``--output``. Every mount it makes is unmounted and every server it starts is stopped,
whatever happens.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import datetime
import json
import os
import platform
import re
import resource
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from wafs.demo import write_demo
from wafs.engine import Engine
from wafs.engines.file import AT_ON_DISK, FileEngine
from wafs.engines.postgres import PostgresEngine
from wafs.engines.redis import RedisEngine
from wafs.mount import daemon_pid, mounted_at, unmount

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the private servers of the tests: tests/servers.py
from tests.servers import RedisServer, running_postgres, running_redis  # noqa: E402

WORD = "pedido"
PREFIX = "wa:default"
BIG_PREFIX = "wa:big"
EMPTY_PREFIX = "wa:empty"
WIDE = "bench/wide"
REST_SECONDS = 2.0  # after a cold walk, before its memory is read: longer than wafs' QUIET_SECONDS
EXIT_WAIT = 120.0  # seconds a daemon may take to exit after its unmount before it is killed


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
ENGINES = ("file", "redis", "postgres")
MODES = ("ro", "rw")
ENGINE_TITLES = {"file": "FileEngine", "redis": "Redis", "postgres": "PostgreSQL"}
# op -> (label, timed shell command, untimed check printing the result); ROOT, DEST, WIDE substituted
OPS: dict[str, tuple[str, str, str]] = {
    "find": ("`find -type f`", "find ROOT -type f | wc -l", ""),
    "grep": (f"`grep -rl {WORD}`", f"{{ grep -rl {WORD} ROOT || [ $? -eq 1 ]; }} | wc -l", ""),
    "cp": ("`cp -a chat`", "cp -a ROOT/chat DEST", "find DEST -type f | wc -l"),
    "ls": ("`ls -l` of WIDE", "ls -l ROOT/WIDE | wc -l", ""),
}
PER_FILE = ("find", "grep", "cp")


@dataclasses.dataclass(frozen=True)
class Config:
    """One column: the native directory, bindfs, or a wafs mount of an engine, in one mode."""

    target: str  # native, bindfs or an engine
    read_only: bool = True

    @property
    def name(self) -> str:
        return "native" if self.target == "native" else f"{self.target}-{'ro' if self.read_only else 'rw'}"

    @property
    def title(self) -> str:
        if self.target == "native":
            return "native dir"
        if self.target == "bindfs":
            return "bindfs -r" if self.read_only else "bindfs"
        return f"{ENGINE_TITLES[self.target]} {'--read-only' if self.read_only else 'writable'}"

    @property
    def baseline(self) -> str:
        """The bindfs configuration this one is divided by."""
        return "bindfs-ro" if self.read_only else "bindfs-rw"


def config_named(name: str) -> Config:
    if name == "native":
        return Config("native")
    target, mode = name.rsplit("-", 1)
    return Config(target, mode == "ro")


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- the machine ---------------------------------------------------------------------------------

HZ = os.sysconf("SC_CLK_TCK")


def cpu_busy() -> float:
    """Busy CPU seconds of the whole machine so far (all cores)."""
    with open("/proc/stat", encoding="ascii") as stat:
        fields = [int(x) for x in stat.readline().split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / HZ


def proc_cpu(pid: int | None) -> float:
    if not pid:
        return 0.0
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / HZ  # utime + stime
    except OSError:
        return 0.0


def alive(pid: int) -> bool:
    """False once ``pid`` exited (a zombie waiting for its reaper counts as exited)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def wait_idle(max_wait: float, threshold: float = 0.15) -> float:
    """Wait (at most ``max_wait`` s) until other jobs leave the CPUs idle (< ``threshold`` of one
    core over 2 s); returns the busy fraction seen last."""
    started = time.monotonic()
    while True:
        before = cpu_busy()
        time.sleep(2 if max_wait > 0 else 0.2)
        busy = (cpu_busy() - before) / (2 if max_wait > 0 else 0.2)
        if busy < threshold or time.monotonic() - started >= max_wait:
            return round(busy, 2)
        log(f"machine busy ({busy:.2f} cores used by others); waiting")


def drop_caches() -> bool:
    """Drop the page, dentry and inode caches; False when this process may not."""
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w", encoding="ascii") as control:
            control.write("3\n")
        return True
    except OSError:
        return False


def vm_kib(pid: int | None, field: str) -> int:
    if not pid:
        return 0
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


# --- the stores and mounts -----------------------------------------------------------------------


class MeasuredRedis:
    """The benchmark's redis-server through one patient client (big stores) that reads its counters."""

    def __init__(self, server: RedisServer) -> None:
        self.url = server.url
        self.pid = server.pid
        self.client = server.client(timeout=600)

    def counters(self) -> tuple[int, dict[str, int]]:
        """(read events, calls per command) so far; INFO itself is left out of both."""
        reads = int(self.client.info("stats")["total_reads_processed"])
        stats = self.client.info("commandstats")
        return reads, {name.removeprefix("cmdstat_"): int(s["calls"]) for name, s in stats.items()
                       if name != "cmdstat_info"}

    def since(self, before: tuple[int, dict[str, int]]) -> dict[str, Any]:
        reads, calls = self.counters()
        changed = {name: count - before[1].get(name, 0) for name, count in calls.items()}
        return {"reads": reads - before[0] - 2,  # the two INFO of the first counters()
                "calls": {name: count for name, count in sorted(changed.items()) if count}}


@dataclasses.dataclass
class Env:
    """Where each configuration's data is, for one size."""

    size: str
    work: Path
    copies: dict[str, Path]  # native / bindfs: copies of the FileEngine directory
    urls: dict[str, str]  # engine -> URL
    chat: str
    chat_on_disk: str
    redis: MeasuredRedis | None
    max_wait: float
    timeout: float
    dest: Path  # where cp -a writes: on tmpfs when there is one, so that it measures the reads


@dataclasses.dataclass
class Mounted:
    root: Path
    pid: int | None = None  # the wafs daemon
    seconds: float | None = None  # from the mount command to the first ls answered
    exit_seconds: float | None = None  # from the unmount to the daemon's exit (wafs)


def wafs_command(*arguments: str) -> list[str]:
    return [sys.executable, "-c", "import sys; from wafs.cli import main; sys.exit(main())", *arguments]


def fusermount_off(mountpoint: Path) -> None:
    """Unmount (retrying while busy for a few seconds), lazily as a last resort."""
    for _ in range(20):
        if not mounted_at(mountpoint):
            return
        done = subprocess.run(["fusermount3", "-u", str(mountpoint)], capture_output=True, timeout=60)
        if done.returncode == 0:
            return
        time.sleep(0.25)
    log(f"unmount of {mountpoint} keeps failing; detaching it lazily")
    subprocess.run(["fusermount3", "-u", "-z", str(mountpoint)], capture_output=True, timeout=60)


def bindfs_pid(mountpoint: Path) -> int | None:
    """The bindfs process serving ``mountpoint`` (it daemonizes: found by its command line)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"bindfs") and os.fsencode(str(mountpoint)) in argv:
            return int(entry.name)
    return None


@contextmanager
def mounted(config: Config, env: Env, url: str | None = None) -> Iterator[Mounted]:
    """Mount ``config`` afresh (``url`` instead of the session's, for a wafs mount)."""
    if config.target == "native":
        yield Mounted(env.copies["native"])
        return
    mountpoint = env.work / f"mnt-{config.name}"
    mountpoint.mkdir(parents=True, exist_ok=True)
    if mounted_at(mountpoint):
        raise SystemExit(f"{mountpoint} is still mounted")
    if config.target == "bindfs":
        command = ["bindfs", *(["-r"] if config.read_only else []), str(env.copies["bindfs"]),
                   str(mountpoint)]
    else:
        command = wafs_command("mount", str(mountpoint), "--engine", url or env.urls[config.target],
                               "--log-file", str(env.work / f"{config.name}.log"),
                               *(["--read-only"] if config.read_only else []))
    result = Mounted(mountpoint)
    started = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command[:1])} failed: {done.stderr.strip()[-1000:]}")
        os.listdir(mountpoint)
        result.seconds = time.perf_counter() - started
        result.pid = bindfs_pid(mountpoint) if config.target == "bindfs" else daemon_pid(mountpoint)
        yield result
    finally:
        started = time.perf_counter()
        if config.target == "bindfs" or not mounted_at(mountpoint):
            fusermount_off(mountpoint)
        else:
            try:
                unmount(str(mountpoint), timeout=60)
            except Exception as exc:
                log(f"unmount of {mountpoint} failed ({exc}); trying again")
                fusermount_off(mountpoint)
        if result.pid and config.target != "bindfs":
            while alive(result.pid) and time.perf_counter() - started < EXIT_WAIT:
                time.sleep(0.01)
            if alive(result.pid):
                log(f"daemon {result.pid} still running {EXIT_WAIT:.0f} s after its unmount; killing it")
                os.kill(result.pid, signal.SIGKILL)
            else:
                result.exit_seconds = time.perf_counter() - started


def fill(engine: Engine, size: Size) -> int:
    """The demo session plus the wide directory; returns the number of keys written."""
    keys = write_demo(engine, size.chats, size.messages, seed=0)
    wide = {f"{WIDE}/k{i:05d}": f'{{"entry": {i}, "note": "filler for ls -l"}}' for i in range(size.wide)}
    for start in range(0, size.wide, 1000):
        engine.set_many(dict(list(wide.items())[start:start + 1000]))
    return keys + size.wide


# --- one timed operation -------------------------------------------------------------------------


def shell(command: str, timeout: float) -> tuple[float | None, str, str]:
    """(seconds or None on failure/timeout, stdout, error note) of ``command`` under bash."""
    started = time.perf_counter()
    process = subprocess.Popen(["bash", "-o", "pipefail", "-c", command], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True,
                               env={**os.environ, "LC_ALL": "C"})
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        return None, "", f"timeout > {timeout:.0f} s"
    except BaseException:  # SIGTERM, ^C: leave no command running on a mount
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        raise
    elapsed = time.perf_counter() - started
    if process.returncode != 0:
        return None, out.strip(), f"failed ({process.returncode}): {err.strip()[:200]}"
    return elapsed, out.strip(), (f"stderr: {err.strip()[:200]}" if err.strip() else "")


def run_op(op: str, root: Path, dest: Path, pid: int | None, env: Env, store: bool = False) -> dict[str, Any]:
    """Run ``op`` once on ``root``: its time, output, CPU (tool, daemon, redis-server, others) and,
    with ``store``, the Redis counters."""
    _, template, check = OPS[op]
    def fill_in(text: str) -> str:
        return (text.replace("ROOT", shlex.quote(str(root))).replace("DEST", shlex.quote(str(dest)))
                .replace("WIDE", WIDE))
    before = env.redis.counters() if env.redis and store else None
    server = env.redis.pid if env.redis else None
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    daemon, redis_cpu, busy = proc_cpu(pid), proc_cpu(server), cpu_busy()
    seconds, out, note = shell(fill_in(template), env.timeout)
    busy = cpu_busy() - busy
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    tool = after.ru_utime - children.ru_utime + after.ru_stime - children.ru_stime
    daemon, redis_cpu = proc_cpu(pid) - daemon, proc_cpu(server) - redis_cpu
    cpu = {"tool": round(tool, 2), "daemon": round(daemon, 2), "redis": round(redis_cpu, 2),
           "other": round(max(0.0, busy - tool - daemon - redis_cpu), 2)}
    run: dict[str, Any] = {"seconds": None if seconds is None else round(seconds, 4), "out": out,
                           "note": note, "cpu": cpu}
    if before is not None and env.redis:
        run["redis"] = env.redis.since(before)
    if check:
        _, run["out"], check_note = shell(fill_in(check), env.timeout)
        run["note"] = "; ".join(n for n in (note, check_note) if n)
    shutil.rmtree(dest, ignore_errors=True)
    return run


def phase(config: Config, op: str, env: Env, round_number: int) -> dict[str, Any]:
    """Drop caches, mount afresh, run ``op`` cold and warm, unmount."""
    idle = wait_idle(env.max_wait)
    dropped = drop_caches()
    record: dict[str, Any] = {"kind": "phase", "size": env.size, "round": round_number, "config": config.name,
                              "op": op, "others_before": idle, "dropped": dropped}
    where = Mounted(env.work)
    try:
        with mounted(config, env) as where:
            record["rss_mount_kib"] = vm_kib(where.pid, "VmRSS")
            for warmth in ("cold", "warm"):
                record[warmth] = run_op(op, where.root, env.dest, where.pid, env,
                                        store=config.target == "redis")
                record[f"rss_{warmth}_kib"] = vm_kib(where.pid, "VmRSS")
                if warmth == "cold" and where.pid is not None:
                    time.sleep(REST_SECONDS)  # the daemon returns what the walk freed once idle
                    record["rss_rest_kib"] = vm_kib(where.pid, "VmRSS")
            record["hwm_kib"] = vm_kib(where.pid, "VmHWM")
    except Exception as exc:  # a mount that fails is a result too; the next phase goes on
        log(f"r{round_number} {config.name} {op}: {exc}")
        for warmth in ("cold", "warm"):
            record.setdefault(warmth, {"seconds": None, "out": "", "note": f"error: {exc}"[:300],
                                       "cpu": {"tool": 0.0, "daemon": 0.0, "other": 0.0}})
    record["mount"] = where.seconds
    record["exit"] = where.exit_seconds
    record["t"] = time.strftime("%H:%M:%S")
    cold, warm = record["cold"], record["warm"]
    log(f"r{round_number} {config.name:11} {op:4}: cold {cold['seconds']} s warm {warm['seconds']} s "
        f"out {cold['out']}/{warm['out']} mount {where.seconds and round(where.seconds, 2)} s "
        f"exit {where.exit_seconds and round(where.exit_seconds, 2)} s "
        f"others {cold['cpu']['other']}/{warm['cpu']['other']} s {cold['note']} {warm['note']}".rstrip())
    return record


# --- request counts (kernel tracepoint) ----------------------------------------------------------

TRACING = Path("/sys/kernel/tracing")
EVENT = "events/fuse/fuse_request_send"


class Tracer:
    """The kernel's ``fuse:fuse_request_send`` events, counted per opcode for one connection."""

    def __init__(self) -> None:
        self.mounted_tracefs = False

    def start(self) -> bool:
        try:
            if not (TRACING / "events").exists():
                done = subprocess.run(["mount", "-t", "tracefs", "nodev", str(TRACING)], capture_output=True)
                self.mounted_tracefs = done.returncode == 0
            if not (TRACING / EVENT).exists():
                return False
            self._write("tracing_on", "0")
            self._write("buffer_size_kb", "131072")
            self._write(f"{EVENT}/enable", "1")
            self._write("trace", "")
            self._write("tracing_on", "1")
            return True
        except OSError as exc:
            log(f"no request counts: {exc}")
            return False

    def _write(self, name: str, value: str) -> None:
        (TRACING / name).write_text(value, encoding="ascii")

    def take(self, connection: int) -> dict[str, int]:
        """Requests sent to ``connection`` (the mount's st_dev) since the last take, by opcode."""
        self._write("tracing_on", "0")
        counts: collections.Counter[str] = collections.Counter()
        pattern = re.compile(r"connection (\d+) req \d+ opcode \d+ \((FUSE_\w+)\)")
        with open(TRACING / "trace", encoding="ascii", errors="replace") as trace:
            for line in trace:
                found = pattern.search(line)
                if found and int(found.group(1)) == connection:
                    counts[found.group(2).removeprefix("FUSE_")] += 1
        overrun = 0
        for cpu in (TRACING / "per_cpu").iterdir():
            for line in (cpu / "stats").read_text(encoding="ascii").splitlines():
                if line.startswith("overrun:"):
                    overrun += int(line.split()[1])
        if overrun:
            counts["_OVERRUN"] = overrun
        self._write("trace", "")
        self._write("tracing_on", "1")
        return dict(counts.most_common())

    def stop(self) -> None:
        try:
            self._write("tracing_on", "0")
            self._write(f"{EVENT}/enable", "0")
            self._write("buffer_size_kb", "1408")
            self._write("trace", "")
        except OSError:
            pass
        if self.mounted_tracefs:
            subprocess.run(["umount", str(TRACING)], capture_output=True)


def count_requests(configs: list[Config], ops: list[str], env: Env, emit: Any) -> None:
    tracer = Tracer()
    if not tracer.start():
        log("the tracepoint fuse:fuse_request_send cannot be read: no request counts")
        tracer.stop()
        return
    try:
        for config in configs:
            if config.target == "native":
                continue
            for op in ops:
                drop_caches()
                with mounted(config, env) as where:
                    connection = os.stat(where.root).st_dev
                    tracer.take(connection)  # INIT, the first ls
                    for warmth in ("cold", "warm"):
                        run = run_op(op, where.root, env.dest, None, env)
                        counts = tracer.take(connection)
                        emit({"kind": "count", "size": env.size, "config": config.name, "op": op,
                              "phase": warmth, "counts": counts, "seconds": run["seconds"],
                              "out": run["out"]})
                        log(f"count {config.name:11} {op:4} {warmth}: {sum(counts.values())} requests "
                            f"{counts}")
    finally:
        tracer.stop()


# --- a size --------------------------------------------------------------------------------------


def run_size(name: str, configs: list[Config], args: argparse.Namespace, emit: Any) -> None:
    size = SIZES[name]
    targets = {c.target for c in configs}
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
        if targets & {"native", "bindfs", "file"}:  # 1.5M files take a while
            engines.append(FileEngine(store, fsync=False))
        if redis:
            engines.append(RedisEngine.from_url(f"{redis.url}?prefix={PREFIX}"))
        if postgres:
            engines.append(PostgresEngine(postgres.dsn, "storage"))
        keys = 0
        for engine in engines:
            keys = fill(engine, size)
        chat = sorted(engines[0].children("chat"))[0]  # the same chat in every store
        for engine in engines:
            engine.close()
        copies: dict[str, Path] = {t: work / f"copy-{t}" for t in ("native", "bindfs") if t in targets}
        for copy in copies.values():
            subprocess.run(["cp", "-a", str(store), str(copy)], check=True)
        feed = "&notifications=enable"
        urls = {
            "file": f"file://{store}",
            "redis": f"{redis.url}?prefix={PREFIX}&timeout=60{feed}" if redis else "",
            "postgres": f"{postgres.url}?table=storage&timeout=60" if postgres else "",
        }
        shm = Path("/dev/shm")
        scratch = Path(tempfile.mkdtemp(prefix="wafs-bench-", dir=shm if os.access(shm, os.W_OK) else work))
        stack.callback(shutil.rmtree, scratch, ignore_errors=True)
        env = Env(name, work, copies, urls, chat, chat.replace("@", AT_ON_DISK), redis, args.max_wait,
                  args.op_timeout, scratch / "dest")
        emit({"kind": "size", "size": name, "keys": keys, "chats": size.chats, "messages": size.messages,
              "wide": size.wide, "configs": [c.name for c in configs], "ops": args.ops,
              "urls": {k: v for k, v in urls.items() if v and k in targets}})

        for round_number in range(args.rounds):
            shift = round_number % len(configs)
            for config in configs[shift:] + configs[:shift]:  # interleaved rounds
                for op in args.ops:
                    emit(phase(config, op, env, round_number))

        for config in configs:  # the daemon before it holds a key: the baseline of memory per key
            if config.target == "redis" and redis:
                with mounted(config, env, f"{redis.url}?prefix={EMPTY_PREFIX}{feed}") as where:
                    emit({"kind": "empty", "size": name, "config": config.name,
                          "rss_kib": vm_kib(where.pid, "VmRSS"), "hwm_kib": vm_kib(where.pid, "VmHWM")})
        if args.count_ops:
            count_requests(configs, args.count_ops, env, emit)
        if args.big_rm and redis:  # last: it empties the server
            emit(measure_big_redis(redis, size, chat, env))


def measure_big_redis(redis: MeasuredRedis, size: Size, chat: str, env: Env) -> dict[str, Any]:
    """``rm -r`` of one chat on a writable mount (change feed on) while Redis holds
    ``size.big_redis`` keys (the session + filler)."""
    log("big Redis: session + filler")
    redis.client.flushall()
    engine = RedisEngine.from_url(f"{redis.url}?prefix={BIG_PREFIX}")
    fill(engine, size)
    engine.close()
    filler = size.big_redis - int(redis.client.dbsize())
    if filler > 0:
        redis.client.execute_command("DEBUG", "POPULATE", filler, "filler", 16)
    record: dict[str, Any] = {"kind": "big_rm", "size": env.size, "keys": int(redis.client.dbsize())}
    url = f"{redis.url}?prefix={BIG_PREFIX}&timeout=60&notifications=enable"
    with mounted(Config("redis", read_only=False), env, url) as where:
        record["mount"] = where.seconds
        os.listdir(where.root / "chat" / chat)
        before = redis.counters()
        record["seconds"], _, record["note"] = shell(f"rm -r {shlex.quote(str(where.root / 'chat' / chat))}",
                                                     env.timeout)
        started = time.perf_counter()
        pattern = glob_escape(f"{BIG_PREFIX}:chat/{chat}/") + "*"
        while any(True for _ in redis.client.scan_iter(match=pattern, count=10_000)):
            if time.perf_counter() - started > env.timeout:
                break
            time.sleep(0.05)
        if record["seconds"] is not None:
            record["swept"] = record["seconds"] + time.perf_counter() - started
        record["redis"] = redis.since(before)
    record["exit"] = where.exit_seconds
    log(f"big Redis ({record['keys']} keys): rm -r one chat {record['seconds']} s, "
        f"swept {record.get('swept')} s")
    return record


def glob_escape(text: str) -> str:
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in text)


# --- report --------------------------------------------------------------------------------------


def fmt(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def med(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


@dataclasses.dataclass
class Summary:
    """One size's measurements, gathered from the records."""

    size: str
    keys: int
    files: int | None
    configs: list[str]
    ops: list[str]
    phases: list[dict[str, Any]]
    counts: dict[tuple[str, str, str], dict[str, int]]
    empty: dict[str, int]
    big_rm: dict[str, Any] | None
    max_other: float
    expected: dict[str, str] = dataclasses.field(default_factory=dict)  # op -> the right output
    wrong: list[str] = dataclasses.field(default_factory=list)
    noisy: list[str] = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        for op in self.ops:
            outs = [p[w]["out"] for p in self.phases if p["op"] == op for w in ("cold", "warm")
                    if p[w]["seconds"] is not None]
            native = [p["cold"]["out"] for p in self.phases if p["op"] == op and p["config"] == "native"]
            common = collections.Counter(outs).most_common(1)
            self.expected[op] = native[0] if native else common[0][0] if common else ""
        if "find" in self.expected and self.expected["find"].isdigit():
            self.files = int(self.expected["find"])
        for p in self.phases:
            for warmth in ("cold", "warm"):
                run = p[warmth]
                where = f"round {p['round']} {p['config']} {p['op']} {warmth}"
                if run["seconds"] is None:
                    self.wrong.append(f"{where}: {run['note']}")
                elif run["out"] != self.expected[p["op"]]:
                    self.wrong.append(f"{where}: printed {run['out']!r}, expected {self.expected[p['op']]!r}")
                    run["seconds"] = None
                elif run["cpu"]["other"] > self.max_other * run["seconds"]:
                    self.noisy.append(f"{where}: {run['seconds']:.2f} s, other jobs used "
                                      f"{run['cpu']['other']} CPU s")
                    run["noisy"] = True

    def seconds(self, config: str, op: str, warmth: str) -> list[float]:
        """Clean timings (others' CPU below the bound); all timings when none is clean."""
        runs = [p[warmth] for p in self.phases if p["config"] == config and p["op"] == op
                and p[warmth]["seconds"] is not None]
        clean = [r["seconds"] for r in runs if not r.get("noisy")]
        return clean or [r["seconds"] for r in runs]

    def ratios(self, config: str, baseline: str, op: str, warmth: str) -> list[float]:
        """``config`` ÷ ``baseline`` within each round (clean rounds when there are any)."""
        found: list[tuple[bool, float]] = []
        for round_number in sorted({p["round"] for p in self.phases}):
            mine = self._run(round_number, config, op, warmth)
            base = self._run(round_number, baseline, op, warmth)
            if mine and base and mine["seconds"] and base["seconds"]:
                noisy = bool(mine.get("noisy") or base.get("noisy"))
                found.append((noisy, mine["seconds"] / base["seconds"]))
        clean = [r for noisy, r in found if not noisy]
        return clean or [r for _, r in found]

    def _run(self, round_number: int, config: str, op: str, warmth: str) -> dict[str, Any] | None:
        for p in self.phases:
            if p["round"] == round_number and p["config"] == config and p["op"] == op:
                run: dict[str, Any] = p[warmth]
                return run if run["seconds"] is not None else None
        return None

    def of(self, config: str, key: str) -> list[float]:
        return [p[key] for p in self.phases if p["config"] == config and p.get(key) is not None]

    def count(self, config: str, op: str, warmth: str) -> dict[str, int] | None:
        return self.counts.get((config, op, warmth))


def ratio_text(values: list[float]) -> str:
    if not values:
        return "—"
    text = f"{statistics.median(values):.2f}×"
    return text + (f" ({', '.join(f'{v:.2f}' for v in values)})" if len(values) > 1 else "")


def timings_table(s: Summary) -> list[str]:
    configs = [config_named(c) for c in s.configs]
    lines = ["| operation | " + " | ".join(c.title for c in configs) + " |",
             "|---" * (len(configs) + 1) + "|"]
    for op in s.ops:
        for warmth in ("cold", "warm"):
            cells = []
            for c in configs:
                m = med(s.seconds(c.name, op, warmth))
                r = med(s.ratios(c.name, c.baseline, op, warmth)) if c.target != "bindfs" else None
                cells.append(fmt(m) + (f" ({r:.2f}×)" if r is not None and m is not None else ""))
            label = OPS[op][0].replace("WIDE", f"{SIZES[s.size].wide} entries")
            lines.append(f"| {label} {warmth} | " + " | ".join(cells) + " |")
    mounts = [fmt(med(s.of(c.name, "mount"))) if c.target != "native" else "n/a" for c in configs]
    exits = [fmt(med(s.of(c.name, "exit"))) if c.target in ENGINES else "n/a" for c in configs]
    lines.append("| mount → first `ls` | " + " | ".join(mounts) + " |")
    lines.append("| daemon exit after unmount | " + " | ".join(exits) + " |")
    return lines


def targets_table(s: Summary) -> list[str]:
    rows: list[tuple[str, str, bool | None]] = []

    def against(config: str, baseline: str, op: str, warmth: str, bound: float, what: str) -> None:
        values = s.ratios(config, baseline, op, warmth)
        m = med(values)
        rows.append((what, ratio_text(values), None if m is None else m <= bound))

    for engine in ENGINES:
        ro, rw = f"{engine}-ro", f"{engine}-rw"
        title = ENGINE_TITLES[engine]
        if ro in s.configs and "bindfs-ro" in s.configs:
            for op in ("find", "grep", "cp"):
                if op in s.ops:
                    against(ro, "bindfs-ro", op, "cold", 0.5,
                            f"{title} --read-only: cold `{op}` ≤ 0.5× bindfs -r")
            for op in ("find", "grep"):
                if op in s.ops:
                    against(ro, "bindfs-ro", op, "warm", 0.3,
                            f"{title} --read-only: warm `{op}` ≤ 0.3× bindfs -r")
        if ro in s.configs and "native" in s.configs:
            for op in ("find", "grep"):
                if op in s.ops:
                    against(ro, "native", op, "warm", 2.0,
                            f"{title} --read-only: warm `{op}` ≤ 2× native (stretch)")
        if rw in s.configs and "bindfs-rw" in s.configs:
            for op in ("find", "grep", "cp"):
                if op in s.ops:
                    against(rw, "bindfs-rw", op, "cold", 0.7, f"{title} writable: cold `{op}` ≤ 0.7× bindfs")
            for op in ("find", "grep"):
                if op in s.ops:
                    against(rw, "bindfs-rw", op, "warm", 0.5, f"{title} writable: warm `{op}` ≤ 0.5× bindfs")
        for config in (ro, rw):
            if config not in s.configs:
                continue
            mode = config_named(config).title
            if "ls" in s.ops:
                m = med(s.seconds(config, "ls", "cold"))
                trips = [p["cold"]["redis"]["reads"] for p in s.phases
                         if p["config"] == config and p["op"] == "ls" and "redis" in p["cold"]]
                extra = f"; {', '.join(map(str, trips))} store round trips" if trips else ""
                rows.append((f"{mode}: `ls -l` of {SIZES[s.size].wide} entries cold < 0.3 s", fmt(m) + extra,
                             None if m is None else m < 0.3))
            bound = 10.0 if s.keys > 1_000_000 else 2.0
            m = med(s.of(config, "mount"))
            rows.append((f"{mode}: mount of {s.keys} keys answers its first `ls` < {bound:.0f} s", fmt(m),
                         None if m is None else m < bound))
            exits = s.of(config, "exit")
            m = max(exits) if exits else None
            killed = sum(1 for p in s.phases if p["config"] == config and p.get("exit") is None)
            rows.append((f"{mode}: daemon gone < 5 s after the unmount", f"max {fmt(m)}"
                         + (f"; {killed} did not exit within {EXIT_WAIT:.0f} s" if killed else ""),
                         None if m is None else m < 5 and not killed))
            per_key = memory_per_key(s, config)
            if per_key:
                rows.append((f"{mode}: daemon memory ≤ 300 B per key (tree + inode table)",
                             f"{per_key[1]:.0f} B/key (tree alone {per_key[0]:.0f})", per_key[1] <= 300))
    if s.big_rm:
        b = s.big_rm
        rows.append((f"`rm -r` of one chat on a {b['keys']}-key Redis < 1 s (writable, change feed)",
                     f"{fmt(b['seconds'])} (store swept after {fmt(b.get('swept'))})",
                     None if b["seconds"] is None else b["seconds"] < 1))
    lines = ["| target (DESIGN §3) | measured (median; per round) | met |", "|---|---|---|"]
    for what, figure, met in rows:
        lines.append(f"| {what} | {figure} | {'—' if met is None else 'yes' if met else '**no**'} |")
    return lines


def memory_per_key(s: Summary, config: str) -> tuple[float, float] | None:
    """(tree, tree + inode table) bytes per key: VmRSS after mount + ls and after a cold ``find``
    (the kernel looked up every file) once the daemon is at rest, less the empty daemon's VmRSS."""
    empty, tree, full = s.empty.get(config), _rss(s, config, "rss_mount_kib"), _rss(s, config, "rss_rest_kib")
    if not empty or tree is None or not s.keys:
        return None
    return (tree - empty) * 1024 / s.keys, ((full if full is not None else tree) - empty) * 1024 / s.keys


def _rss(s: Summary, config: str, field: str) -> float | None:
    """The median of a memory field over ``config``'s phases (for the cold figures, its ``find``)."""
    return med([p[field] for p in s.phases if p["config"] == config and p.get(field)
                and (field == "rss_mount_kib" or p["op"] == "find")])


def memory_table(s: Summary) -> list[str]:
    lines = ["| daemon | keys | empty daemon VmRSS | VmRSS after mount + `ls` | after cold `find` "
             f"| {REST_SECONDS:g} s later, at rest | VmHWM at end (max) "
             "| B/key: tree | B/key: tree + inodes |",
             "|---|---|---|---|---|---|---|---|---|"]
    for config in s.configs:
        if config not in s.empty:
            continue
        hwm = max((p.get("hwm_kib", 0) for p in s.phases if p["config"] == config), default=0)
        per_key = memory_per_key(s, config) or (0.0, 0.0)
        lines.append(f"| {config_named(config).title} | {s.keys} | {mib(s.empty[config])} | "
                     f"{mib(_rss(s, config, 'rss_mount_kib'))} | {mib(_rss(s, config, 'rss_cold_kib'))} | "
                     f"{mib(_rss(s, config, 'rss_rest_kib'))} | {mib(hwm)} | "
                     f"{per_key[0]:.0f} | {per_key[1]:.0f} |")
    return lines


def mib(kib: float | None) -> str:
    return "—" if kib is None else f"{kib / 1024:.1f} MiB"


def counts_table(s: Summary) -> list[str]:
    lines = ["| mount | operation | requests per file | per opcode (per file) |", "|---|---|---|---|"]
    files = s.files or 0
    for config in s.configs:
        for op in ("find", "grep", "cp", "ls"):
            for warmth in ("cold", "warm"):
                counts = s.count(config, op, warmth)
                if counts is None:
                    continue
                per = SIZES[s.size].wide if op == "ls" else files
                total = sum(v for k, v in counts.items() if not k.startswith("_"))
                over = f" (trace overrun {counts['_OVERRUN']})" if "_OVERRUN" in counts else ""
                label = OPS[op][0].replace("WIDE", WIDE)
                if per:
                    unit = "entry" if op == "ls" else "file"
                    mix = ", ".join(f"{k} {v / per:.2f}" for k, v in counts.items()
                                    if not k.startswith("_") and v / per >= 0.005)
                    figure = f"{total / per:.2f} / {unit} ({total})"
                else:  # no `find` in this run: the number of files is not known
                    mix = ", ".join(f"{k} {v}" for k, v in counts.items() if not k.startswith("_"))
                    figure = f"{total} in all"
                lines.append(f"| {config_named(config).title} | {label} {warmth} | "
                             f"{figure}{over} | {mix or '—'} |")
    return lines


def round_trips_table(s: Summary) -> list[str]:
    lines = ["| mount | operation | round trips cold | round trips warm | commands cold (top) |",
             "|---|---|---|---|---|"]
    for config in s.configs:
        for op in s.ops:
            found = [p for p in s.phases if p["config"] == config and p["op"] == op and "redis" in p["cold"]]
            if not found:
                continue
            p = found[-1]
            top = sorted(p["cold"]["redis"]["calls"].items(), key=lambda i: -i[1])[:4]
            lines.append(f"| {config_named(config).title} | {OPS[op][0].replace('WIDE', WIDE)} | "
                         f"{', '.join(str(q['cold']['redis']['reads']) for q in found)} | "
                         f"{', '.join(str(q['warm']['redis']['reads']) for q in found)} | "
                         f"{', '.join(f'{k} {v}' for k, v in top) or '—'} |")
    return lines


def cpu_table(s: Summary) -> list[str]:
    lines = ["| mount | operation | daemon CPU s cold / warm | redis-server CPU s cold / warm "
             "| tool CPU s cold / warm |", "|---|---|---|---|---|"]
    for config in s.configs:
        if config_named(config).target == "native":
            continue
        for op in s.ops:
            found = [p for p in s.phases if p["config"] == config and p["op"] == op]
            if not found:
                continue
            def cpu(warmth: str, who: str, runs: list[dict[str, Any]] = found) -> str:
                return fmt_plain(med([p[warmth]["cpu"].get(who, 0.0) for p in runs]))
            lines.append(f"| {config_named(config).title} | {OPS[op][0].replace('WIDE', WIDE)} | "
                         f"{cpu('cold', 'daemon')} / {cpu('warm', 'daemon')} | "
                         f"{cpu('cold', 'redis')} / {cpu('warm', 'redis')} | "
                         f"{cpu('cold', 'tool')} / {cpu('warm', 'tool')} |")
    return lines


def growth_table(found: list[Summary]) -> list[str]:
    """Medians of each wafs column across sizes, and the growth from one size to the next."""
    lines = ["| figure | " + " | ".join(f"{s.size} ({s.keys} keys)" for s in found) + " | growth per step |",
             "|---" * (len(found) + 2) + "|"]
    configs = [c for c in found[0].configs if config_named(c).target in ENGINES]
    rows: list[tuple[str, list[float | None], str]] = []
    for config in configs:
        title = config_named(config).title
        rows.append((f"mount → first `ls` · {title}", [med(s.of(config, "mount")) for s in found], "s"))
        rows.append((f"daemon exit (max) · {title}",
                     [max(s.of(config, "exit"), default=None) for s in found], "s"))
        for op in found[0].ops:
            for warmth in ("cold", "warm"):
                rows.append((f"{OPS[op][0].replace('WIDE', 'wide dir')} {warmth} · {title}",
                             [med(s.seconds(config, op, warmth)) for s in found], "s"))
        rows.append((f"B/key tree + inodes · {title}",
                     [(memory_per_key(s, config) or (None, None))[1] for s in found], "B"))
    for label, values, unit in rows:
        if all(v is None for v in values):
            continue
        steps = [f"{b / a:.1f}×" if a and b else "—" for a, b in zip(values, values[1:], strict=False)]
        cells = [fmt(v) if unit == "s" else ("—" if v is None else f"{v:.0f}") for v in values]
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {', '.join(steps)} |")
    return lines


def fmt_plain(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def machine() -> list[str]:
    with open("/proc/meminfo", encoding="ascii") as meminfo:
        mem_kib = int(meminfo.readline().split()[1])
    return [
        f"- CPUs (`nproc`): {os.cpu_count()}; memory: {mem_kib / 1024 / 1024:.1f} GiB; "
        f"kernel: {platform.release()}",
        f"- Python {platform.python_version()}; {tool_version(['redis-server', '--version'])}; "
        f"{tool_version(['bindfs', '--version'])}; {tool_version(['fusermount3', '--version'])}",
    ]


def tool_version(command: list[str]) -> str:
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=10)
        return (result.stdout.strip() or result.stderr.strip()).splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return f"{command[0]}: unknown version"


def summaries(records: list[dict[str, Any]], max_other: float) -> list[Summary]:
    found = []
    for size in [r for r in records if r["kind"] == "size"]:
        mine = [r for r in records if r.get("size") == size["size"]]
        big = [r for r in mine if r["kind"] == "big_rm"]
        found.append(Summary(
            size["size"], size["keys"], None, size["configs"], size["ops"],
            [r for r in mine if r["kind"] == "phase"],
            {(r["config"], r["op"], r["phase"]): r["counts"] for r in mine if r["kind"] == "count"},
            {r["config"]: r["rss_kib"] for r in mine if r["kind"] == "empty"},
            big[-1] if big else None, max_other))
    return found


def report(records: list[dict[str, Any]], max_other: float) -> str:
    meta = next(r for r in records if r["kind"] == "meta")
    rounds = max((r["round"] + 1 for r in records if r["kind"] == "phase"), default=0)
    dropped = all(r["dropped"] for r in records if r["kind"] == "phase")
    lines = [
        f"Generated by `{meta['command']}` on {meta['started']} ({rounds} round{'s' * (rounds != 1)}).",
        "",
        *meta["machine"],
        "",
        "Each round visits every column in turn (the order rotates between rounds) and, for each "
        "operation, " + ("drops the kernel's caches (`echo 3 > /proc/sys/vm/drop_caches`), "
                         if dropped else "**could not drop the kernel's caches**, ")
        + "mounts afresh, runs the operation cold and then warm (the same command again, nothing "
        "changed) and unmounts. Cells: median seconds, and in parentheses the median of the ratio to "
        "bindfs of the same mode (`bindfs -r` for read-only columns, plain `bindfs` for writable ones) "
        "measured in the same round. `cp -a` writes to a tmpfs (`/dev/shm`). Every wafs mount runs "
        "with default options and the Redis change "
        "feed (`?notifications=enable`). The native and bindfs columns read two copies of the session "
        "written by FileEngine.",
        "",
    ]
    found = summaries(records, max_other)
    for s in found:
        size = SIZES[s.size]
        lines += [
            f"### {s.size}: {size.chats} chats × {size.messages} messages + {size.wide}-entry directory "
            f"= {s.keys} keys, {s.files} files",
            "",
            *timings_table(s),
            "",
            "#### Targets",
            "",
            *targets_table(s),
            "",
        ]
        if s.counts:
            lines += ["#### FUSE requests (kernel tracepoint `fuse:fuse_request_send`, one fresh mount each)",
                      "", *counts_table(s), ""]
        if any("redis" in p["cold"] for p in s.phases):
            lines += ["#### Redis round trips (`total_reads_processed` delta, one per request or pipeline; "
                      "one figure per round)", "", *round_trips_table(s), ""]
        if any(config_named(c).target in ENGINES for c in s.configs):
            lines += ["#### CPU seconds (median)", "", *cpu_table(s), ""]
        if s.empty:
            lines += ["#### Daemon memory", "", *memory_table(s), ""]
        if s.wrong:
            lines += ["#### Wrong outputs and failures (left out of the figures)", "",
                      *(f"- {w}" for w in s.wrong), ""]
        if s.noisy:
            lines += [f"#### Runs during which other jobs used the CPUs (> {max_other} × the wall time; "
                      "left out where a clean run of the same cell exists)", "",
                      *(f"- {n}" for n in s.noisy), ""]
    if len(found) > 1:
        lines += ["### Growth", "", *growth_table(found), ""]
    return "\n".join(lines).rstrip() + "\n"


# --- main ----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--size", choices=[*SIZES, "all"], default="medium",
                        help="session size; all = small, medium and large (large takes long)")
    parser.add_argument("--targets", default="native,bindfs,redis",
                        help=f"comma-separated subset of {','.join(TARGETS)}")
    parser.add_argument("--modes", default="ro,rw",
                        help="ro (--read-only, bindfs -r), rw (writable), or both")
    parser.add_argument("--ops", default=",".join(OPS), help=f"comma-separated subset of {','.join(OPS)}")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--count-ops", default="grep,find",
                        help="operations whose FUSE requests are counted (empty: none)")
    parser.add_argument("--no-big-rm", dest="big_rm", action="store_false",
                        help="skip rm -r of one chat on a big Redis")
    parser.add_argument("--output", default="/tmp/wafs-bench.md", help="markdown report path")
    parser.add_argument("--raw", default=None,
                        help="JSON-lines file of every measurement (default: beside --output)")
    parser.add_argument("--report-from", default=None, help="only write the report of this raw file")
    parser.add_argument("--op-timeout", type=float, default=900.0, help="seconds one operation may take")
    parser.add_argument("--max-wait", type=float, default=60.0,
                        help="seconds to wait for idle CPUs before a phase")
    parser.add_argument("--max-other", type=float, default=0.25,
                        help="a run during which other jobs used more CPU than this × its wall time is noisy")
    args = parser.parse_args(argv)
    output = Path(args.output)
    if args.report_from:
        lines = Path(args.report_from).read_text(encoding="utf-8").splitlines()
        text = report([json.loads(line) for line in lines], args.max_other)
        output.write_text(text, encoding="utf-8")
        print(text)
        return 0
    signal.signal(signal.SIGTERM, lambda number, frame: sys.exit(128 + number))  # unmount and stop in finally
    targets = args.targets.split(",")
    modes = args.modes.split(",")
    args.ops = [op for op in args.ops.split(",") if op]
    args.count_ops = [op for op in args.count_ops.split(",") if op]
    for what, given, known in (("targets", targets, TARGETS), ("modes", modes, MODES),
                               ("ops", args.ops + args.count_ops, tuple(OPS))):
        unknown = set(given) - set(known)
        if unknown:
            parser.error(f"unknown {what}: {', '.join(sorted(unknown))}")
    configs = [Config("native")] if "native" in targets else []
    configs += [Config(t, mode == "ro") for t in TARGETS if t != "native" and t in targets
                for mode in MODES if mode in modes]
    sizes = ["small", "medium", "large"] if args.size == "all" else [args.size]
    raw = Path(args.raw) if args.raw else output.with_suffix(".jsonl")
    raw.parent.mkdir(parents=True, exist_ok=True)
    given = argv if argv is not None else sys.argv[1:]
    command = "scripts/bench " + " ".join(shlex.quote(a) for a in given)
    records: list[dict[str, Any]] = []
    with raw.open("w", encoding="utf-8") as raw_file:
        def emit(record: dict[str, Any]) -> None:
            records.append(record)
            raw_file.write(json.dumps(record) + "\n")
            raw_file.flush()

        emit({"kind": "meta", "command": command.strip(), "machine": machine(),
              "started": f"{datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}"})
        for size in sizes:
            run_size(size, configs, args, emit)
    text = report(records, args.max_other)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
