"""Model check of a real mount: random file-system operations against a plain dict of keys.

A hypothesis state machine drives a real FUSE mount (in this process, ``ttl=0.1``) with
write, append, truncate, unlink, mkdir, rmdir, ``rm -r`` and rename, plus writes and deletes
made straight to the engine by "another client". After every step the store must hold exactly
the model, and the mount must show exactly the model's files with the model's values.

Directories have no keys, so the model keeps two sets: ``must`` (directories implied by a
key or made by mkdir, which the mount must show) and ``may`` (also those a delete left empty:
the mount may keep showing them until its listing is read again). Names of directories and
files are disjoint, so no step makes a key that collides with a directory.

Outside changes become visible after the kernel's attribute timeout (1 s) plus the TTL; the
outside rule waits that long. It also waits for a pending ``rm -r`` sweep first: the sweep of
a removed directory runs 0.5 s after the last rmdir and would delete an outside write made below it in
between (see docs/guarantees.md).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from wafs import Engine, FileEngine, MemoryEngine

from .helpers import unique, walk
from .mounting import mounted

pytestmark = pytest.mark.slow

DIRS = ["d", "e", "d/e", "e/d", "d/e/d"]
FILES = ["f", "g", "d/f", "d/g", "e/f", "d/e/f", "d/e/g", "e/d/h", "d/e/d/f"]
TEXT = st.text(alphabet="abc xyzñ€\n", max_size=24)
TTL = 0.1
KERNEL_CACHE = 1.0  # attr_timeout / entry_timeout of the mount
SWEEP_SETTLE = 0.8  # longer than the sweeper's 0.5 s batching delay


def parent_of(path: str) -> str:
    return path.rpartition("/")[0]


def ancestors(path: str) -> list[str]:
    parts = path.split("/")
    return ["/".join(parts[:n]) for n in range(1, len(parts))]


def under(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory + "/")


class MountModel(RuleBasedStateMachine):
    """One engine, one mount, one dict."""

    make_engine: Callable[[Path], Engine]  # given a private directory

    def __init__(self) -> None:
        super().__init__()
        self.stack = contextlib.ExitStack()
        self.workdir = Path(tempfile.mkdtemp(prefix="wafs-model-"))
        self.stack.callback(shutil.rmtree, self.workdir, ignore_errors=True)
        self.engine = self.make_engine(self.workdir)
        self.stack.callback(self.engine.close)
        self.mnt = self.stack.enter_context(mounted(self.engine, self.workdir / "mnt", ttl=TTL))
        self.model: dict[str, str] = {}
        self.made: set[str] = set()  # directories made by mkdir and not removed
        self.may: set[str] = set()  # directories the mount may still show

    def teardown(self) -> None:
        self.stack.close()

    # --- the model's view of directories --------------------------------------------------

    def must(self) -> set[str]:
        implied = {d for key in self.model for d in ancestors(key)}
        return implied | {d for made in self.made for d in [*ancestors(made), made]}

    def parent_exists(self, path: str) -> bool:
        return parent_of(path) == "" or parent_of(path) in self.must()

    def _remember_dirs(self) -> None:
        self.may |= self.must()

    def p(self, path: str) -> Path:
        return self.mnt / path

    # --- writes through the mount ---------------------------------------------------------

    def _parent_missing(self, path: str, action: Callable[[], object]) -> bool:
        """Run ``action`` when the parent of ``path`` may be gone; True if it failed as it may."""
        if self.parent_exists(path):
            return False
        try:
            action()
        except FileNotFoundError:
            return True
        assert parent_of(path) in self.may, f"{path} was made in a directory that does not exist"
        return False

    @rule(path=st.sampled_from(FILES), text=TEXT)
    def write(self, path: str, text: str) -> None:
        def action() -> None:
            self.p(path).write_text(text, encoding="utf-8")

        if self._parent_missing(path, action):
            return
        if self.parent_exists(path):
            action()
        self.model[path] = text
        self._remember_dirs()

    @rule(path=st.sampled_from(FILES), text=TEXT)
    def append(self, path: str, text: str) -> None:
        def action() -> None:
            with open(self.p(path), "a", encoding="utf-8", newline="") as file:
                file.write(text)

        old = self.model.get(path, "")
        if self._parent_missing(path, action):
            return
        if self.parent_exists(path):
            action()
        self.model[path] = old + text
        self._remember_dirs()

    @precondition(lambda self: self.model)
    @rule(data=st.data(), grow=st.integers(0, 3))
    def truncate(self, data: st.DataObject, grow: int) -> None:
        path = data.draw(st.sampled_from(sorted(self.model)))
        raw = self.model[path].encode("utf-8")
        length = data.draw(st.integers(0, len(raw))) + grow
        resized = raw[:length] + bytes(max(0, length - len(raw)))
        try:
            expected: str | None = resized.decode("utf-8")
        except UnicodeDecodeError:
            expected = None  # cut inside a character: refused, nothing stored
        if expected is None:
            with pytest.raises(OSError) as refused:
                os.truncate(self.p(path), length)
            assert refused.value.errno == errno.EILSEQ
            return
        os.truncate(self.p(path), length)
        self.model[path] = expected

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def read(self, data: st.DataObject) -> None:
        path = data.draw(st.sampled_from(sorted(self.model)))
        assert self.p(path).read_text(encoding="utf-8") == self.model[path]

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def unlink(self, data: st.DataObject) -> None:
        path = data.draw(st.sampled_from(sorted(self.model)))
        os.unlink(self.p(path))
        del self.model[path]

    @rule(path=st.sampled_from(FILES))
    def unlink_missing(self, path: str) -> None:
        if path not in self.model and self.parent_exists(path):
            with pytest.raises(FileNotFoundError):
                os.unlink(self.p(path))

    @precondition(lambda self: self.model)
    @rule(data=st.data(), target_path=st.sampled_from(FILES))
    def rename(self, data: st.DataObject, target_path: str) -> None:
        source = data.draw(st.sampled_from(sorted(self.model)))
        if not self.parent_exists(target_path):
            return
        os.rename(self.p(source), self.p(target_path))
        value = self.model.pop(source)
        self.model[target_path] = value
        self._remember_dirs()

    @rule(path=st.sampled_from(DIRS))
    def mkdir(self, path: str) -> None:
        if path in self.must():
            with pytest.raises(FileExistsError):
                os.mkdir(self.p(path))
            return
        try:
            os.mkdir(self.p(path))
        except FileNotFoundError:
            assert not self.parent_exists(path)
            return
        except FileExistsError:  # emptied earlier and still shown; implied, so not kept
            assert path in self.may
            return
        assert self.parent_exists(path) or parent_of(path) in self.may
        self.made.add(path)
        self._remember_dirs()

    @rule(path=st.sampled_from(DIRS))
    def rmdir(self, path: str) -> None:
        if path not in self.must():
            return
        if any(under(key, path) for key in self.model) or any(
            under(d, path) and d != path for d in self.must()
        ):
            with pytest.raises(OSError) as failed:
                os.rmdir(self.p(path))
            assert failed.value.errno == errno.ENOTEMPTY
            return
        try:
            os.rmdir(self.p(path))
        except OSError as exc:  # only a left-over empty subdirectory may keep it
            assert exc.errno == errno.ENOTEMPTY and any(under(d, path) and d != path for d in self.may)
            return
        self._drop_dir(path)

    @rule(path=st.sampled_from(DIRS))
    def rm_r(self, path: str) -> None:
        if path not in self.must():
            return
        shutil.rmtree(self.p(path))
        self.model = {k: v for k, v in self.model.items() if not under(k, path)}
        self._drop_dir(path)

    def _drop_dir(self, path: str) -> None:
        self.made = {d for d in self.made if not under(d, path)}
        self.may = {d for d in self.may if not under(d, path)}

    # --- another client -------------------------------------------------------------------

    @rule(new_path=st.sampled_from(FILES), text=TEXT, data=st.data())
    def outside_changes(self, new_path: str, text: str, data: st.DataObject) -> None:
        time.sleep(SWEEP_SETTLE)
        if not any(under(d, new_path) for d in self.may):
            self.engine.set(new_path, text)
            self.model[new_path] = text
        if self.model:
            changed = data.draw(st.sampled_from(sorted(self.model)))
            if data.draw(st.booleans()):
                self.engine.set(changed, text + "!")
                self.model[changed] = text + "!"
            else:
                self.engine.delete(changed)
                del self.model[changed]
        self._remember_dirs()
        time.sleep(KERNEL_CACHE + TTL + 0.1)

    # --- the check ------------------------------------------------------------------------

    @invariant()
    def store_matches_model(self) -> None:
        keys = sorted(self.engine.iter_keys(""))
        assert dict(zip(keys, (self.engine.get(k) for k in keys), strict=True)) == self.model

    @invariant()
    def mount_matches_model(self) -> None:
        files: dict[str, str] = {}
        dirs: set[str] = set()
        for top, subdirs, names in walk(self.mnt):
            relative = os.path.relpath(top, self.mnt)
            prefix = "" if relative == "." else relative + "/"
            dirs |= {prefix + d for d in subdirs}
            for name in names:
                files[prefix + name] = Path(top, name).read_text(encoding="utf-8")
        assert files == self.model, (files, self.model)
        must = self.must()
        assert must <= dirs, f"missing directories {sorted(must - dirs)}"
        assert dirs <= self.may | must, f"unexpected directories {sorted(dirs - self.may - must)}"


def run_model(factory: Callable[[Path], Engine], examples: int, steps: int) -> None:
    machine = type("Model", (MountModel,), {"make_engine": staticmethod(factory)})
    run_state_machine_as_test(
        machine,
        settings=settings(max_examples=examples, stateful_step_count=steps, deadline=None,
                          suppress_health_check=list(HealthCheck), print_blob=True),
    )


def test_model_memory_engine() -> None:
    run_model(lambda workdir: MemoryEngine(), examples=8, steps=25)


def test_model_file_engine() -> None:
    run_model(lambda workdir: FileEngine(workdir / "store"), examples=8, steps=25)


def test_model_redis_engine(redis_server) -> None:
    run_model(lambda workdir: redis_server.engine(prefix=unique("wa:model"), timeout=5.0),
              examples=6, steps=25)
