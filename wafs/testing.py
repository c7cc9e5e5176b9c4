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
