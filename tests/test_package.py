"""Package-level checks: what ``import wafs`` offers, and the contract Engine enforces on subclasses."""

from __future__ import annotations

import importlib
import inspect
import logging
import pkgutil
import subprocess
import sys
from collections.abc import Iterator

import pytest

import wafs
from wafs import Engine, MemoryEngine, registry


def test_import_star_works_without_optional_dependencies() -> None:
    # sys.modules[name] = None makes ``import name`` fail, as when the package is not installed.
    script = (
        "import sys\n"
        "sys.modules['psycopg'] = None\n"
        "from wafs import *\n"
        "import wafs\n"
        "missing = [name for name in wafs.__all__ if name not in globals()]\n"
        "assert not missing, missing\n"
        "try:\n"
        "    wafs.PostgresEngine\n"
        "except wafs.MissingDependencyError as exc:\n"
        "    print(exc)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "pip install 'wafs[postgres]'" in result.stdout


def test_every_public_name_resolves() -> None:
    for name in wafs.__all__:
        assert getattr(wafs, name) is not None
    assert wafs.PostgresEngine.__name__ == "PostgresEngine"  # lazy, and psycopg is installed here


def test_every_module_logs_under_its_own_name() -> None:
    for info in pkgutil.walk_packages(wafs.__path__, "wafs."):
        logger = getattr(importlib.import_module(info.name), "log", None)
        if isinstance(logger, logging.Logger):
            assert logger.name == info.name


class _ShortPages(MemoryEngine):
    """An engine whose ``list`` pages by 2 unless told otherwise."""

    def list(self, prefix: str = "", offset: int = 0, limit: int | None = 2) -> list[str]:
        return super().list(prefix, offset, limit)


class _NoUrl(Engine):
    def get(self, key: str) -> str | None:
        return None

    def set(self, key: str, value: str | None) -> None:
        pass

    def list(self, prefix: str = "", offset: int = 0, limit: int | None = 50) -> list[str]:
        return []


def test_list_keeps_the_subclass_defaults() -> None:
    engine = _ShortPages()
    engine.set_many({f"k/{n}": "v" for n in range(5)})
    assert inspect.signature(_ShortPages.list).parameters["limit"].default == 2
    assert engine.list() == ["k/4", "k/3"]
    assert engine.list("k/", 1) == ["k/3", "k/2"]
    assert engine.list(prefix="k/", offset=3) == ["k/1", "k/0"]
    assert len(engine.list(limit=None)) == 5


def test_list_checks_still_apply_with_keywords() -> None:
    engine = _ShortPages()
    with pytest.raises(wafs.InvalidKeyError):
        engine.list(prefix="a//")
    with pytest.raises(ValueError, match="offset"):
        engine.list(offset=-1)
    with pytest.raises(ValueError, match="limit"):
        engine.list("", 0, -1)
    with pytest.raises(TypeError):
        engine.list("", 0, 1, 2)  # too many arguments, as for the method itself


def test_a_list_without_the_three_parameters_is_refused_at_class_creation() -> None:
    with pytest.raises(TypeError, match="3 arguments after self"):
        class _Short(MemoryEngine):
            def list(self, prefix: str = "") -> list[str]:  # type: ignore[override]
                return []
    with pytest.raises(TypeError, match="1 arguments after self"):
        class _Unnamed(MemoryEngine):
            def iter_keys(self, *args: str) -> Iterator[str]:  # type: ignore[override]
                return iter([])


def test_from_url_defaults_to_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(registry.ENGINES, "nourl", f"{__name__}:_NoUrl")
    with pytest.raises(NotImplementedError, match=r"implement the classmethod _NoUrl\.from_url\(url\)"):
        wafs.open_engine("nourl://x")


def test_the_registry_refuses_a_class_that_is_not_an_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(registry.ENGINES, "notanengine", "collections:OrderedDict")
    with pytest.raises(TypeError, match="not a wafs.Engine subclass"):
        wafs.open_engine("notanengine://x")
