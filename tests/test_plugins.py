"""Engines from other packages: the ``wafs.engines`` entry points and :func:`wafs.register_engine`.

The package in ``tests/plugin`` (distribution ``wafs-example-plugin``) is installed into the
test venv with pip for this module and uninstalled after, then used as a user would: by URL,
from the ``wafs`` command, through a real mount and by ``wafs copy``.
"""

from __future__ import annotations

import importlib
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Self

import pytest

import wafs
from wafs import (
    Engine,
    EnginePluginError,
    FileEngine,
    MemoryEngine,
    UnknownSchemeError,
    open_engine,
    registry,
)
from wafs.testing import EngineContract

from .helpers import SESSION, cat, ls
from .minimal_engine import DictEngine
from .mounting import daemon_mounted, sh
from .mounting import wafs as run_wafs

PLUGIN_SOURCE = Path(__file__).parent / "plugin"
DISTRIBUTION = "wafs-example-plugin"


def _pip(*args: str) -> None:
    result = subprocess.run([sys.executable, "-m", "pip", *args, "--disable-pip-version-check", "-q"],
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, f"pip {' '.join(args)} failed: {result.stderr}"


@pytest.fixture(scope="module")
def example_plugin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """``wafs-example-plugin`` installed in the venv running the tests, for this module only.

    Built from a copy of its sources (the build writes ``build/`` beside them), without build
    isolation or an index, so it installs offline.
    """
    source = tmp_path_factory.mktemp("plugin") / "source"
    leftovers = shutil.ignore_patterns("build", "*.egg-info", "__pycache__")
    shutil.copytree(PLUGIN_SOURCE, source, ignore=leftovers)
    _pip("install", "--no-build-isolation", "--no-deps", "--no-index", str(source))
    importlib.invalidate_caches()
    try:
        yield
    finally:
        _pip("uninstall", "--yes", DISTRIBUTION)
        importlib.invalidate_caches()
        sys.modules.pop("wafs_example_plugin", None)


@pytest.fixture(autouse=True)
def no_registered_engines(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test starts with no engine registered in-process, and leaves none behind."""
    monkeypatch.setattr(registry, "_registered", {})


def _distribution(site: Path, name: str, entry_points: str) -> None:
    """Make ``site`` (put on sys.path) hold an installed distribution ``name`` with these entry points."""
    info = site / f"{name.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[wafs.engines]\n{entry_points}\n")


class UrlDictEngine(DictEngine):
    """A user's in-process engine: ``dict://anything`` opens a new, empty one."""

    @classmethod
    def from_url(cls, url: str) -> Self:
        return cls()


# --- register_engine ---------------------------------------------------------------------------


def test_a_registered_engine_opens_by_url_and_is_listed() -> None:
    wafs.register_engine("dict", UrlDictEngine)
    assert type(open_engine("dict://x")) is UrlDictEngine
    assert type(open_engine("DICT://x")) is UrlDictEngine  # schemes are case-insensitive
    with pytest.raises(UnknownSchemeError, match=r"known: file://, .*postgres://, dict://$"):
        open_engine("ftp://x")


def test_registering_a_scheme_again_replaces_the_class() -> None:
    class Other(UrlDictEngine):
        pass

    wafs.register_engine("dict", UrlDictEngine)
    wafs.register_engine("dict", Other)
    assert type(open_engine("dict://x")) is Other


@pytest.mark.parametrize("scheme", ["", "Dict", "1dict", "di ct", "dict:", "dict://", "dïct", "_dict"])
def test_register_engine_refuses_a_scheme_that_is_not_a_lower_case_url_scheme(scheme: str) -> None:
    with pytest.raises(ValueError, match="lower-case URL scheme"):
        wafs.register_engine(scheme, UrlDictEngine)
    assert registry._registered == {}


@pytest.mark.parametrize("scheme", ["file", "memory", "redis", "redis+cluster", "postgresql"])
def test_register_engine_refuses_a_built_in_scheme(scheme: str) -> None:
    with pytest.raises(ValueError, match=re.escape(f"{scheme}:// is a scheme of wafs' own engines")):
        wafs.register_engine(scheme, UrlDictEngine)
    assert type(open_engine("memory://")) is MemoryEngine


def test_register_engine_refuses_what_is_not_an_engine_that_opens_urls() -> None:
    for not_an_engine in (dict, "tests.test_plugins:UrlDictEngine", UrlDictEngine()):
        with pytest.raises(TypeError, match="is not a wafs.Engine subclass"):
            wafs.register_engine("dict", not_an_engine)  # type: ignore[arg-type]
    no_from_url = r"tests\.minimal_engine\.DictEngine does not implement the classmethod from_url\(url\)"
    with pytest.raises(TypeError, match=no_from_url):
        wafs.register_engine("dict", DictEngine)
    assert registry._registered == {}


def test_the_default_from_url_says_how_to_give_an_engine_a_scheme() -> None:
    with pytest.raises(NotImplementedError) as raised:
        DictEngine.from_url("dict://x")
    message = str(raised.value)
    assert "implement the classmethod DictEngine.from_url(url)" in message
    assert "'wafs.engines'" in message and "wafs.register_engine('myscheme', Class)" in message


# --- entry points -------------------------------------------------------------------------------


def test_an_entry_point_engine_opens_by_url(example_plugin: None, tmp_path: Path) -> None:
    engine = open_engine(f"myscheme://{tmp_path}/store.json")
    assert type(engine).__module__ == "wafs_example_plugin" and type(engine).__name__ == "ExampleEngine"
    engine.set("session/creds", "{}")
    assert open_engine(f"MyScheme://{tmp_path}/store.json").get("session/creds") == "{}"


def test_the_unknown_scheme_error_lists_the_installed_plugins(example_plugin: None) -> None:
    result = run_wafs("ls", "--engine", "ftp://x", check=False)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("Error: unknown engine URL scheme 'ftp://'")
    assert "known: file://, memory://, redis://" in result.stderr
    assert f"myscheme:// (from {DISTRIBUTION})" in result.stderr


def test_a_plugin_that_fails_to_import_is_a_one_line_error_naming_it(example_plugin: None) -> None:
    result = run_wafs("ls", "--engine", "myscheme-missing://x", check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr == (
        "Error: cannot load the engine for myscheme-missing:// (entry point myscheme-missing = "
        f"wafs_example_plugin_missing:ExampleEngine of {DISTRIBUTION}): "
        "ModuleNotFoundError: No module named 'wafs_example_plugin_missing'\n"
    )
    with pytest.raises(EnginePluginError) as raised:
        open_engine("myscheme-missing://x")
    assert isinstance(raised.value.__cause__, ModuleNotFoundError)


def test_a_plugin_that_is_not_an_engine_is_a_one_line_error_naming_it(example_plugin: None) -> None:
    result = run_wafs("ls", "--engine", "myscheme-notengine://x", check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1
    assert (f"the engine for myscheme-notengine:// (entry point myscheme-notengine = "
            f"wafs_example_plugin:NotAnEngine of {DISTRIBUTION}): ") in result.stderr
    assert "NotAnEngine'> is not a wafs.Engine subclass" in result.stderr


def test_two_packages_claiming_one_scheme_are_refused_naming_both(
    example_plugin: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _distribution(tmp_path, "other-plugin", "myscheme = other_plugin:Engine")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(EnginePluginError, match="myscheme:// is claimed by 2 installed packages") as raised:
        open_engine(f"myscheme://{tmp_path}/store.json")
    assert "other-plugin" in str(raised.value) and DISTRIBUTION in str(raised.value)


def test_built_ins_win_over_entry_points_and_registered_engines_over_both(
    example_plugin: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _distribution(tmp_path, "greedy-plugin", "memory = wafs_example_plugin:ExampleEngine")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert type(open_engine("memory://")) is MemoryEngine
    with pytest.raises(UnknownSchemeError) as raised:
        open_engine("ftp://x")
    assert "greedy-plugin" not in str(raised.value)  # a shadowed entry point is not offered
    wafs.register_engine("myscheme", UrlDictEngine)
    assert type(open_engine(f"myscheme://{tmp_path}/store.json")) is UrlDictEngine


def test_import_wafs_reads_no_entry_points() -> None:
    script = "import sys, wafs\nwafs.open_engine('memory://')\nprint('importlib.metadata' in sys.modules)\n"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                            check=True)
    assert result.stdout == "False\n"


class TestExampleEngine(EngineContract):
    """The plugin's engine, opened by its URL, passes the conformance suite (``add``: the racy default)."""

    atomic_add = False

    @pytest.fixture
    def engine(self, example_plugin: None, tmp_path: Path) -> Engine:
        return open_engine(f"myscheme://{tmp_path}/store.json")


# --- the plugin from the command line ------------------------------------------------------------


def test_mount_a_plugin_engine_and_use_it_with_real_tools(example_plugin: None, tmp_path: Path) -> None:
    url = f"myscheme://{tmp_path}/store.json"
    store = open_engine(url)
    store.set_many(SESSION)
    mnt = tmp_path / "mnt"
    with daemon_mounted(mnt, url):
        assert ls(mnt) == ["chat", "session"]
        assert cat(mnt / "session" / "creds") == SESSION["session/creds"]
        sh(f"echo hola > {mnt}/session/new && rm {mnt}/chat/120363@g.us/index")
        assert cat(mnt / "session" / "new") == "hola\n"
        assert ls(mnt / "session") == ["creds", "new"]
        assert ls(mnt / "chat" / "120363@g.us") == []
    expected = {key: value for key, value in SESSION.items() if key != "chat/120363@g.us/index"}
    assert dict(store.items()) == {**expected, "session/new": "hola\n"}


def test_copy_from_a_file_engine_into_a_plugin_engine(example_plugin: None, tmp_path: Path) -> None:
    FileEngine(tmp_path / "src").set_many(SESSION)
    url = f"myscheme://{tmp_path}/copy.json"
    run_wafs("copy", f"file://{tmp_path / 'src'}", url, "--quiet")
    assert dict(open_engine(url).items()) == SESSION
    assert run_wafs("ls", "--all", "--engine", url).stdout.splitlines() == sorted(SESSION)
