"""Model check of the engine operations: random sequences compared with a plain dict after every step.

Keys come from a tiny alphabet (``a``, ``ab``, ``c@d``, one to three segments deep), so keys
collide, sit below each other and get swept by cascades all the time. The FileEngine cannot
hold ``a`` and ``a/b`` at once: there the model expects :class:`KeyConflictError` and no change.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from wafs import Engine, FileEngine, Kind, MemoryEngine
from wafs.errors import KeyConflictError

from .helpers import walk
from .minimal_engine import DictEngine

SEGMENTS = ["a", "ab", "c@d"]  # "a" is a prefix of "ab": cascades must stop at "/"
keys = st.lists(st.sampled_from(SEGMENTS), min_size=1, max_size=3).map("/".join)
values = st.sampled_from(["", "x", "ñandú 📱", "line\nline\n", "y" * 300])


def below(key: str, directory: str) -> bool:
    return key == directory or key.startswith(directory + "/")


class EngineModel(RuleBasedStateMachine):
    """Drives one engine; subclasses say which and whether keys may sit below other keys."""

    nested_keys = True  # False: a key and a key below it cannot both exist (FileEngine)

    def make_engine(self) -> Engine:
        raise NotImplementedError

    def __init__(self) -> None:
        super().__init__()
        self.engine = self.make_engine()
        self.model: dict[str, str] = {}  # insertion order = write order
        self.conflicts = 0

    def teardown(self) -> None:
        self.engine.close()

    # --- what the model says a write does -----------------------------------------------------

    def conflicts_with(self, key: str, model: dict[str, str]) -> bool:
        if self.nested_keys:
            return False
        parts = key.split("/")
        above = any("/".join(parts[:n]) in model for n in range(1, len(parts)))
        return above or any(existing.startswith(key + "/") for existing in model)

    def write(self, model: dict[str, str], key: str, value: str) -> None:
        model.pop(key, None)
        model[key] = value

    def expect(self, action: Callable[[], None], conflict: bool) -> None:
        if conflict:
            self.conflicts += 1
            with pytest.raises(KeyConflictError):
                action()
        else:
            action()

    # --- rules ---------------------------------------------------------------------------------

    @rule(key=keys, value=values)
    def set(self, key: str, value: str) -> None:
        conflict = self.conflicts_with(key, self.model)
        self.expect(lambda: self.engine.set(key, value), conflict)
        if not conflict:
            self.write(self.model, key, value)

    @rule(key=keys)
    def cascade(self, key: str) -> None:
        self.engine.set(key, None)
        for existing in [k for k in self.model if below(k, key)]:
            del self.model[existing]

    @rule(key=keys)
    def delete(self, key: str) -> None:
        self.engine.delete(key)
        self.model.pop(key, None)

    @rule(items=st.dictionaries(keys, values, min_size=1, max_size=4))
    def set_many(self, items: dict[str, str]) -> None:
        # written in order; the first key that cannot be written stops the batch
        after = dict(self.model)
        conflict = False
        for key, value in items.items():
            if self.conflicts_with(key, after):
                conflict = True
                break
            self.write(after, key, value)
        self.expect(lambda: self.engine.set_many(items), conflict)
        self.model = after

    @rule(chosen=st.lists(keys, max_size=4))
    def delete_many(self, chosen: list[str]) -> None:
        self.engine.delete_many(chosen)
        for key in chosen:
            self.model.pop(key, None)

    @rule(prefixes=st.lists(keys, max_size=3))
    def delete_prefixes(self, prefixes: list[str]) -> None:
        self.engine.delete_prefixes(prefixes)
        for existing in [k for k in self.model if any(below(k, prefix) for prefix in prefixes)]:
            del self.model[existing]

    @precondition(lambda self: bool(self.model))
    @rule(data=st.data())
    def read_one(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(sorted(self.model)))
        assert self.engine.get(key) == self.model[key]
        assert self.engine.size(key) == len(self.model[key].encode())

    # --- compared after every step ----------------------------------------------------------------

    @invariant()
    def same_keys_and_values(self) -> None:
        listed = self.engine.list("", 0, None)
        assert sorted(listed) == sorted(self.model)
        assert sorted(self.engine.iter_keys("")) == sorted(self.model)
        assert self.engine.get_many(list(self.model)) == self.model
        if self.engine.ordering == "newest-first" and not isinstance(self.engine, FileEngine):
            assert listed == list(reversed(self.model))  # file mtimes are too coarse to order fast writes

    @invariant()
    def same_prefix_listings(self) -> None:
        for prefix in ["a", "a/", "ab/", "c@d/a", "c", "a/a"]:
            assert sorted(self.engine.list(prefix, 0, None)) == sorted(
                k for k in self.model if k.startswith(prefix)
            )

    @invariant()
    def same_directories(self) -> None:
        for directory in ["", "a", "ab", "c@d", "a/ab", "c@d/c@d", "a/a"]:
            start = directory + "/" if directory else ""
            expected: dict[str, Kind] = {}
            for key in self.model:
                if key.startswith(start):
                    name, sep, _ = key[len(start) :].partition("/")
                    expected[name] = expected.get(name, Kind(0)) | (Kind.DIR if sep else Kind.FILE)
            assert self.engine.children(directory) == expected, directory

    @invariant()
    def absent_keys_read_as_none(self) -> None:
        for key in ["a", "ab/a", "c@d/c@d/c@d"]:
            if key not in self.model:
                assert self.engine.get(key) is None
                assert self.engine.size(key) is None


MODEL_SETTINGS = settings(
    max_examples=60,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


class FileEngineModel(EngineModel):
    nested_keys = False

    def make_engine(self) -> Engine:
        self.directory = tempfile.mkdtemp(prefix="wafs-model-")
        return FileEngine(self.directory + "/store", fsync=False)

    @invariant()
    def no_temp_files_or_empty_directories_left(self) -> None:
        store = self.directory + "/store"
        if not os.path.isdir(store):
            return  # nothing was written yet: the engine has not made its base directory
        for directory, dirs, files in walk(store):
            assert not any(name.startswith(".wafs-tmp-") for name in files)
            if directory != store:
                assert dirs or files, f"empty directory {directory} left behind"

    def teardown(self) -> None:
        super().teardown()
        shutil.rmtree(self.directory)


class MemoryEngineModel(EngineModel):
    def make_engine(self) -> Engine:
        return MemoryEngine()


class DictEngineModel(EngineModel):
    def make_engine(self) -> Engine:
        return DictEngine()


TestFileEngineModel = FileEngineModel.TestCase
TestFileEngineModel.settings = MODEL_SETTINGS
TestMemoryEngineModel = MemoryEngineModel.TestCase
TestMemoryEngineModel.settings = MODEL_SETTINGS
TestDictEngineModel = DictEngineModel.TestCase
TestDictEngineModel.settings = MODEL_SETTINGS


def test_the_file_model_meets_conflicts() -> None:
    """The alphabet is small enough that the FileEngine model really exercises KeyConflictError."""
    machine = FileEngineModel()
    try:
        machine.set("a", "x")
        machine.set("a/ab", "y")
        machine.set_many({"ab/a": "1", "ab": "2"})
        machine.cascade("a")
        machine.same_keys_and_values()
        machine.same_directories()
        assert machine.conflicts == 2
        assert machine.model == {"ab/a": "1"}
    finally:
        machine.teardown()
