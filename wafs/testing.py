"""The engine conformance suite, for wafs' own engines and for yours.

Subclass :class:`EngineContract` in a pytest module and give it an ``engine`` fixture
that returns a new, empty engine::

    import pytest
    from wafs.testing import EngineContract

    class TestMyEngine(EngineContract):
        @pytest.fixture
        def engine(self):
            return MyEngine()

Every test states one clause of the contract written on :class:`wafs.Engine`, and every test
runs on every engine: where engines may differ, the class says which behaviour to expect
(:attr:`EngineContract.keys_below_keys`), so the test checks that one and can fail.
"""

from __future__ import annotations

import threading
import time
from typing import ClassVar

import pytest

from .engine import Engine, Kind
from .errors import InvalidKeyError, InvalidValueError, KeyConflictError

BAD_KEYS = ["", "/", "a//b", "/a", "a/", ".", "..", "a/./b", "a/../b", "../x", "a\0b", "\ud800"]
BAD_VALUES = [b"bytes", 1, "\udcff"]
GLOB_KEYS = ["chat/[1]/x", "chat/1*/x", "chat/1?/x", "chat/1\\/x", "chat/1%/x", "chat/1_/x", "chat/1[/x"]


def _all(engine: Engine) -> set[str]:
    return set(engine.list("", 0, None))


def _settle() -> None:
    """Let the clock move on, so write times differ even on coarse-timestamp filesystems."""
    time.sleep(0.02)


class EngineContract:
    """Contract tests; needs an ``engine`` fixture returning a new, empty engine."""

    #: Whether the engine holds a key and keys below it at once (``a`` and ``a/b``). Set it to
    #: False for an engine that refuses the second one with KeyConflictError instead (a tree of
    #: files and directories, like FileEngine): the tests then check the refusal.
    keys_below_keys: ClassVar[bool] = True
    #: Whether :meth:`~wafs.Engine.add` is atomic (every engine of wafs'). Set it to False for an
    #: engine that keeps the racy default: the race test then checks only that a winner's value
    #: is the one stored.
    atomic_add: ClassVar[bool] = True
    #: How many threads race in :meth:`test_concurrent_adders_exactly_one_wins`.
    adders: ClassVar[int] = 8

    # --- get / set -------------------------------------------------------------------------

    def test_missing_key_is_none(self, engine: Engine) -> None:
        assert engine.get("session/creds") is None

    def test_round_trip(self, engine: Engine) -> None:
        value = '{"name": "Jöhn 📱", "lines": "a\\nb"}\nsecond line\n'
        engine.set("contact/5491112345678@s.whatsapp.net/index", value)
        assert engine.get("contact/5491112345678@s.whatsapp.net/index") == value

    def test_large_value_round_trip(self, engine: Engine) -> None:
        value = "x" * 1_000_000 + "ñ"
        engine.set("chat/1/message/A/content", value)
        assert engine.get("chat/1/message/A/content") == value

    def test_empty_string_is_a_value(self, engine: Engine) -> None:
        engine.set("session/creds", "")
        assert engine.get("session/creds") == ""
        assert engine.list("session/") == ["session/creds"]
        assert engine.size("session/creds") == 0

    def test_overwrite_replaces(self, engine: Engine) -> None:
        engine.set("lid/1@lid", "first, longer value")
        engine.set("lid/1@lid", "second")
        assert engine.get("lid/1@lid") == "second"
        assert engine.list("lid/") == ["lid/1@lid"]

    # --- add ------------------------------------------------------------------------------

    def test_add_stores_only_when_absent(self, engine: Engine) -> None:
        assert engine.add("session/creds", "first") is True
        assert engine.add("session/creds", "second") is False
        assert engine.get("session/creds") == "first"
        assert engine.add("session/empty", "") is True
        assert engine.add("session/empty", "x") is False
        assert engine.get("session/empty") == ""
        engine.set("session/creds", None)
        assert engine.add("session/creds", "again") is True
        assert engine.get("session/creds") == "again"
        assert _all(engine) == {"session/creds", "session/empty"}

    def test_add_refuses_none_bad_keys_and_bad_values(self, engine: Engine) -> None:
        with pytest.raises(InvalidValueError):
            engine.add("k/a", None)  # type: ignore[arg-type]
        with pytest.raises(InvalidValueError):
            engine.add("k/a", "\udcff")
        with pytest.raises(InvalidKeyError):
            engine.add("k//a", "v")
        assert _all(engine) == set()

    def test_add_beside_keys_below(self, engine: Engine) -> None:
        """Keys below ``a`` are no value of ``a``: ``add("a")`` stores it, or is refused as ``set``."""
        engine.set("a/b", "below")
        if self.keys_below_keys:
            assert engine.add("a", "top") is True
            assert engine.get("a") == "top"
        else:
            with pytest.raises(KeyConflictError):
                engine.add("a", "top")
            assert engine.get("a") is None
            with pytest.raises(KeyConflictError):
                engine.add("a/b/c", "under a file")
        assert engine.get("a/b") == "below"

    def test_concurrent_adders_exactly_one_wins(self, engine: Engine) -> None:
        """Threads add one new key at once, each its own value, many rounds: one wins each round."""
        for round_ in range(20):
            key = f"race/{round_}"
            won = self._race_to_add(engine, key)
            assert won, f"no adder of {key} won"
            if self.atomic_add:
                assert len(won) == 1, f"{len(won)} adders of {key} were told they created it"
            assert engine.get(key) in {f"adder {number}" for number in won}

    def _race_to_add(self, engine: Engine, key: str) -> list[int]:
        """The numbers of the :attr:`adders` threads told they created ``key``, all started at once."""
        start = threading.Barrier(self.adders)
        won: list[int] = []
        errors: list[BaseException] = []

        def adder(number: int) -> None:
            try:
                start.wait()
                if engine.add(key, f"adder {number}"):
                    won.append(number)
            except BaseException as exc:  # reported below, in the test's thread
                errors.append(exc)

        threads = [threading.Thread(target=adder, args=(number,)) for number in range(self.adders)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        return won

    # --- check_writable -----------------------------------------------------------------------

    @pytest.mark.parametrize("key", BAD_KEYS)
    def test_check_writable_refuses_bad_keys(self, engine: Engine, key: str) -> None:
        with pytest.raises(InvalidKeyError):
            engine.check_writable(key)

    def test_check_writable_writes_nothing(self, engine: Engine) -> None:
        engine.set("chat/1/index", "i")
        engine.check_writable("chat/1/index")
        engine.check_writable("chat/2/message/A/raw")
        engine.check_writable("chat/1/messages")
        assert _all(engine) == {"chat/1/index"}
        assert engine.children("chat") == {"1": Kind.DIR}

    def test_check_writable_foresees_conflicts(self, engine: Engine) -> None:
        """It raises what ``set`` raises for the same key: nothing, or KeyConflictError."""
        engine.set("a/b", "below")
        engine.set("f", "file")
        for key in ["a", "f/x", "f/x/y"]:
            if self.keys_below_keys:
                engine.check_writable(key)
                engine.set(key, "v")
            else:
                with pytest.raises(KeyConflictError):
                    engine.check_writable(key)
                with pytest.raises(KeyConflictError):
                    engine.set(key, "v")
        assert engine.get("a/b") == "below"
        assert engine.get("f") == "file"

    # --- cascade -------------------------------------------------------------------------------

    def test_none_cascades_to_the_subtree_only(self, engine: Engine) -> None:
        for key in ["chat/1/index", "chat/1/messages", "chat/1/message/A/raw", "chat/10/index", "chat/1x"]:
            engine.set(key, "v")
        engine.set("chat/1", None)
        assert _all(engine) == {"chat/10/index", "chat/1x"}

    def test_none_deletes_the_key_itself(self, engine: Engine) -> None:
        engine.set("session/creds", "c")
        engine.set("session/creds", None)
        assert engine.get("session/creds") is None
        assert _all(engine) == set()

    def test_cascade_of_a_missing_key_is_a_no_op(self, engine: Engine) -> None:
        engine.set("chat/2/index", "v")
        engine.set("chat/1", None)
        assert _all(engine) == {"chat/2/index"}

    def test_cascade_leaves_glob_lookalikes(self, engine: Engine) -> None:
        for key in GLOB_KEYS + ["chat/1/index"]:
            engine.set(key, "v")
        engine.set("chat/1", None)
        assert _all(engine) == set(GLOB_KEYS)
        for key in GLOB_KEYS:
            engine.set(key.rsplit("/", 1)[0], None)
            assert engine.get(key) is None
        assert _all(engine) == set()

    def test_delete_prefixes_cascades_each(self, engine: Engine) -> None:
        for key in ["chat/1/index", "chat/2/message/A/raw", "chat/3/index", "chat/22/index"]:
            engine.set(key, "v")
        engine.delete_prefixes(["chat/1", "chat/2"])
        assert _all(engine) == {"chat/3/index", "chat/22/index"}

    # --- list ----------------------------------------------------------------------------------

    def test_list_is_a_string_prefix_match_of_keys_only(self, engine: Engine) -> None:
        for key in ["chat/1/index", "chat/10/index", "chat/2/index", "contact/1/index"]:
            engine.set(key, "v")
        assert set(engine.list("chat/1")) == {"chat/1/index", "chat/10/index"}
        assert set(engine.list("chat/1/")) == {"chat/1/index"}
        assert set(engine.list("chat/")) == {"chat/1/index", "chat/10/index", "chat/2/index"}
        assert engine.list("nothing/") == []

    def test_list_pages_neither_skip_nor_repeat(self, engine: Engine) -> None:
        keys = [f"contact/{n}/index" for n in range(23)]
        for key in keys:
            engine.set(key, "v")
        everything = engine.list("contact/", 0, None)
        assert sorted(everything) == sorted(keys)
        pages = [engine.list("contact/", offset, 5) for offset in range(0, 25, 5)]
        assert [key for page in pages for key in page] == everything
        assert engine.list("contact/", 0, 0) == []
        assert engine.list("contact/", 30, 5) == []

    def test_list_default_limit_is_50(self, engine: Engine) -> None:
        engine.set_many({f"session/pre-key/{n}": "k" for n in range(60)})
        assert len(engine.list("session/")) == 50
        assert len(engine.list("session/", 50)) == 10

    def test_list_order_is_the_documented_one(self, engine: Engine) -> None:
        for key in ["b", "a", "c"]:
            engine.set(key, "v")
            _settle()
        engine.set("b", "again")
        listed = engine.list("")
        if engine.ordering == "newest-first":
            assert listed == ["b", "c", "a"]
        elif engine.ordering == "key":
            assert listed == ["a", "b", "c"]
        else:
            assert sorted(listed) == ["a", "b", "c"]

    def test_bad_page_arguments_are_refused(self, engine: Engine) -> None:
        with pytest.raises(ValueError):
            engine.list("", -1, 5)
        with pytest.raises(ValueError):
            engine.list("", 0, -5)

    # --- key and value rules ----------------------------------------------------------------

    @pytest.mark.parametrize("key", BAD_KEYS)
    def test_bad_keys_are_refused_and_nothing_is_written(self, engine: Engine, key: str) -> None:
        engine.set("session/creds", "kept")
        with pytest.raises(InvalidKeyError):
            engine.set(key, "v")
        with pytest.raises(InvalidKeyError):
            engine.set(key, None)
        with pytest.raises(InvalidKeyError):
            engine.get(key)
        with pytest.raises(InvalidKeyError):
            engine.delete(key)
        assert _all(engine) == {"session/creds"}
        assert engine.get("session/creds") == "kept"

    @pytest.mark.parametrize("prefix", ["/", "a//", "../", "a/../", "\0"])
    def test_bad_prefixes_are_refused(self, engine: Engine, prefix: str) -> None:
        with pytest.raises(InvalidKeyError):
            engine.list(prefix)

    @pytest.mark.parametrize("value", BAD_VALUES)
    def test_bad_values_are_refused_and_the_old_value_kept(self, engine: Engine, value: object) -> None:
        engine.set("session/creds", "kept")
        with pytest.raises(InvalidValueError):
            engine.set("session/creds", value)  # type: ignore[arg-type]
        assert engine.get("session/creds") == "kept"

    def test_key_errors_are_value_errors(self) -> None:
        assert issubclass(InvalidKeyError, ValueError)
        assert issubclass(InvalidValueError, ValueError)

    def test_a_key_and_keys_below_it_coexist_or_are_refused(self, engine: Engine) -> None:
        """As :attr:`keys_below_keys` says: both are kept, or the second write changes nothing."""
        engine.set("a", "top")
        if self.keys_below_keys:
            engine.set("a/b", "below")
            assert engine.get("a") == "top"
            assert engine.get("a/b") == "below"
            assert engine.children("") == {"a": Kind.FILE | Kind.DIR}
        else:
            with pytest.raises(KeyConflictError):
                engine.set("a/b", "below")
            with pytest.raises(KeyConflictError):
                engine.set_many({"a/b": "below"})
            engine.set("a", None)
            engine.set("a/b", "below")
            with pytest.raises(KeyConflictError):
                engine.set("a", "top")
            assert _all(engine) == {"a/b"}
            assert engine.get("a/b") == "below"

    # --- mixins -----------------------------------------------------------------------------------

    def test_delete_is_exact(self, engine: Engine) -> None:
        engine.set("chat/1/index", "i")
        engine.set("chat/1/messages", "m")
        engine.delete("chat/1/index")
        engine.delete("chat/1/never")
        assert _all(engine) == {"chat/1/messages"}

    def test_delete_keeps_the_keys_below(self, engine: Engine) -> None:
        """``delete("a")`` removes ``a`` alone (where it can exist beside them), never ``a/...``."""
        engine.set("a/b", "below")
        if self.keys_below_keys:
            engine.set("a", "top")
        engine.delete("a")
        assert _all(engine) == {"a/b"}
        assert engine.get("a/b") == "below"
        assert engine.get("a") is None

    def test_delete_many(self, engine: Engine) -> None:
        engine.set_many({"k/1": "1", "k/2": "2", "k/3": "3"})
        engine.delete_many(["k/1", "k/3", "k/missing"])
        assert _all(engine) == {"k/2"}

    def test_get_many_and_sizes(self, engine: Engine) -> None:
        engine.set_many({"k/a": "ñandú", "k/b": ""})
        assert engine.get_many(["k/a", "k/b", "k/c"]) == {"k/a": "ñandú", "k/b": "", "k/c": None}
        assert engine.sizes(["k/a", "k/b", "k/c"]) == {"k/a": 7, "k/b": 0, "k/c": None}
        assert engine.size("k/a") == 7

    def test_set_many_refuses_none_and_bad_keys(self, engine: Engine) -> None:
        with pytest.raises(InvalidValueError):
            engine.set_many({"k/a": None})  # type: ignore[dict-item]
        with pytest.raises(InvalidKeyError):
            engine.set_many({"k//a": "v"})
        assert _all(engine) == set()

    def test_iter_keys_and_items(self, engine: Engine) -> None:
        engine.set_many({f"chat/1/message/{n}/raw": str(n) for n in range(7)})
        engine.set("chat/2/index", "other")
        assert sorted(engine.iter_keys("chat/1/")) == sorted(f"chat/1/message/{n}/raw" for n in range(7))
        assert dict(engine.items("chat/1/", batch=3)) == {f"chat/1/message/{n}/raw": str(n) for n in range(7)}

    def test_scan_keys_yields_every_key(self, engine: Engine) -> None:
        keys = {f"chat/1/message/{n}/raw" for n in range(1200)} | {"chat/10/index"}
        engine.set_many(dict.fromkeys(keys, "v"))
        engine.set("chats/1/index", "not under chat/")
        assert set(engine.scan_keys("chat/")) == keys
        assert set(engine.scan_keys("")) == keys | {"chats/1/index"}

    def test_children(self, engine: Engine) -> None:
        engine.set_many({"chat/1/index": "i", "chat/1/message/A/raw": "r", "chat/10/index": "x", "session/creds": "c"})
        assert engine.children("") == {"chat": Kind.DIR, "session": Kind.DIR}
        assert engine.children("chat") == {"1": Kind.DIR, "10": Kind.DIR}
        assert engine.children("chat/1") == {"index": Kind.FILE, "message": Kind.DIR}
        assert engine.children("nothing") == {}

    def test_layout_keys_with_at_signs(self, engine: Engine) -> None:
        key = "chat/5491112345678@s.whatsapp.net/message/ABC123/raw"
        engine.set(key, "{}")
        assert engine.list("chat/5491112345678@s.whatsapp.net/") == [key]
        assert engine.children("chat") == {"5491112345678@s.whatsapp.net": Kind.DIR}
