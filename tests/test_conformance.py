"""The one contract suite, run against every engine kind of conftest (the cluster: tests/test_cluster.py)."""

from __future__ import annotations

import pytest

from wafs.testing import EngineContract

from .conftest import ENGINE_KINDS


class TestEveryEngine(EngineContract):
    """The engines that hold a key and keys below it at once, with an atomic ``add``."""

    @pytest.fixture(params=[kind for kind in ENGINE_KINDS if kind not in ("file", "minimal")])
    def engine_kind(self, request: pytest.FixtureRequest) -> str:
        return request.param


class TestMinimalEngine(EngineContract):
    """A user's engine with only get, set and list: every mixin is the default (``add`` racy)."""

    atomic_add = False

    @pytest.fixture
    def engine_kind(self) -> str:
        return "minimal"


class TestFileEngine(EngineContract):
    """A directory tree: ``a`` is a file or a directory, so ``a/b`` beside ``a`` is refused."""

    keys_below_keys = False

    @pytest.fixture
    def engine_kind(self) -> str:
        return "file"
