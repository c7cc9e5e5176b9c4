"""The ``wafs`` command line, through click's CliRunner and through the installed executable."""

from __future__ import annotations

import inspect
import os
import pty
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from wafs import FileEngine, __version__, cli_docs
from wafs.cli import DEFAULT_ENGINE_URL, main
from wafs.demo import demo_items

from .helpers import unique
from .mounting import WAFS, environment, wafs
from .servers import running_redis

#: Every command of the group, as ``wafs --help`` lists them.
COMMANDS = sorted(main.commands)


@pytest.fixture
def store(tmp_path, monkeypatch) -> FileEngine:
    """A FileEngine that every command in the test uses, through WAFS_ENGINE."""
    monkeypatch.setenv("WAFS_ENGINE", f"file://{tmp_path}/store")
    return FileEngine(tmp_path / "store")


def run(*args: str, input: bytes | str | None = None) -> Result:
    return CliRunner().invoke(main, list(args), input=input)


# --- help and errors --------------------------------------------------------------------------


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_an_example(command: str) -> None:
    """Man-page style, from the docstring: a one-line summary, paragraphs, indented examples."""
    docstring = main.commands[command].callback.__doc__  # type: ignore[union-attr]
    assert docstring and inspect.cleandoc(main.commands[command].help or "") == inspect.cleandoc(docstring)
    summary = docstring.strip().splitlines()[0]
    assert summary.endswith("."), summary
    result = run(command, "--help")
    assert result.exit_code == 0
    assert summary in " ".join(result.output.split())
    assert f"\n      wafs {command}" in result.output


def test_engine_option_is_shared_with_env_and_default() -> None:
    for command in ["ls", "get", "set", "rm", "demo"]:
        output = run(command, "--help").output
        assert "--engine URL" in output and "WAFS_ENGINE" in output and DEFAULT_ENGINE_URL in output


def test_unknown_scheme_lists_the_known_ones() -> None:
    result = run("ls", "--engine", "mongo://localhost/x")
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and result.output.startswith("Error: ")
    for scheme in ["file://", "memory://", "redis://", "postgresql://"]:
        assert scheme in result.output


def test_bad_engine_url_parameter_is_a_user_error() -> None:
    result = run("ls", "--engine", "redis://127.0.0.1:1/0?timeout=soon")
    assert result.exit_code == 1 and "timeout" in result.output and "Traceback" not in result.output


def test_the_documented_unix_socket_url_works(tmp_path) -> None:
    """``unix:///path/redis.sock?db=0`` was refused ("must specify one of … unix://")."""
    socket_path = tmp_path / "redis.sock"
    with running_redis(arguments=["--unixsocket", str(socket_path)]):
        for url in (f"unix://{socket_path}?db=0&prefix=wa:sock", f"unix://localhost{socket_path}?db=0&prefix=wa:sock"):
            assert run("set", "session/creds", "{}", "--engine", url).exit_code == 0, url
            result = run("ls", "--engine", url)
            assert result.exit_code == 0 and result.output == "session/creds\n", (url, result.output)


@pytest.mark.parametrize(("url", "known"), [
    ("redis://127.0.0.1:1/0?bogus=1", ["prefix, timeout, notifications (wafs)", "db,", "(redis-py)"]),
    ("redis+cluster://127.0.0.1:1?bogus=1", ["prefix, timeout, notifications (wafs)", "(redis-py)"]),
    ("postgresql://wafs@127.0.0.1:1/db?bogus=1", ["table, timeout (wafs)", "sslmode", "(libpq)"]),
    ("memory://?bogus=1", ["it takes none"]),
])
def test_an_unknown_url_parameter_is_one_line_naming_the_known_ones(url: str, known: list[str]) -> None:
    result = run("ls", "--engine", url)
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and "Traceback" not in result.output, result.output
    assert "unknown parameter 'bogus'" in result.output
    for fragment in known:
        assert fragment in result.output, (fragment, result.output)


def test_unreachable_backend_is_a_one_line_error() -> None:
    result = run("get", "session/creds", "--engine", "redis://127.0.0.1:1/0?timeout=0.5")
    assert result.exit_code == 1
    assert result.output.startswith("Error: ") and result.output.count("\n") == 1


@pytest.mark.parametrize("args", [["nope"], ["get"], ["ls", "--limit", "x"], ["ls", "--all", "--limit", "3"],
                                  ["copy", "file://a"], ["demo", "--chats", "-1"]])
def test_usage_errors_exit_2(args: list[str], store: FileEngine) -> None:
    result = run(*args)
    assert result.exit_code == 2, result.output
    assert "Usage:" in result.output


def test_bad_key_is_a_user_error(store: FileEngine) -> None:
    for args in (["set", "a//b", "v"], ["get", "../etc/passwd"], ["rm", "/abs"], ["ls", "a//"]):
        result = run(*args)
        assert result.exit_code == 1, args
        assert result.output.startswith("Error: key") or result.output.startswith("Error: prefix")
    assert store.list("", 0, None) == []


# --- get / set ----------------------------------------------------------------------------------


def test_set_then_get_round_trips_exactly(store: FileEngine) -> None:
    value = '{"name": "Jöhn 📱"}\nno newline at the end'
    assert run("set", "contact/1@s.whatsapp.net/index", value).exit_code == 0
    assert store.get("contact/1@s.whatsapp.net/index") == value
    result = run("get", "contact/1@s.whatsapp.net/index")
    assert result.exit_code == 0
    assert result.stdout_bytes == value.encode("utf-8")


def test_set_reads_stdin_when_value_is_omitted(store: FileEngine) -> None:
    data = "línea 1\nlínea 2\n".encode()
    assert run("set", "chat/1/messages", input=data).exit_code == 0
    assert store.get("chat/1/messages") == data.decode("utf-8")
    assert run("set", "chat/1/empty", input=b"").exit_code == 0
    assert store.get("chat/1/empty") == ""


def test_set_refuses_bytes_that_are_not_utf8(store: FileEngine) -> None:
    store.set("session/creds", "old")
    result = run("set", "session/creds", input=b"\x89PNG\r\n\x1a\n")
    assert result.exit_code == 1
    assert "not UTF-8" in result.output and "nothing written" in result.output
    assert store.get("session/creds") == "old"


def test_get_missing_key_exits_1(store: FileEngine) -> None:
    result = run("get", "session/creds")
    assert result.exit_code == 1
    assert result.output == "Error: no such key: session/creds\n"
    store.set("chat/1/index", "i")
    assert "wafs ls chat/1/" in run("get", "chat/1").output


def test_get_and_set_on_every_engine_kind(redis_server, postgres_server, tmp_path) -> None:
    urls = [f"file://{tmp_path}/s", f"{redis_server.url}?prefix={unique('wa:cli')}",
            f"{postgres_server.url}?table={unique('cli_')}"]
    for url in urls:
        assert run("set", "lid/1@lid", "1@s.whatsapp.net", "--engine", url).exit_code == 0
        assert run("get", "lid/1@lid", "--engine", url).stdout == "1@s.whatsapp.net"
        assert run("ls", "--engine", url).stdout == "lid/1@lid\n"
        assert run("rm", "lid", "--engine", url).stdout == "removed 1 key\n"
        assert run("get", "lid/1@lid", "--engine", url).exit_code == 1


# --- ls -----------------------------------------------------------------------------------------


def test_ls_pages_in_the_engine_order(store: FileEngine) -> None:
    store.set_many({f"contact/{n:03d}/index": "c" for n in range(60)})
    store.set("session/creds", "c")
    order = store.list("contact/", 0, None)

    first = run("ls", "contact/")
    assert first.exit_code == 0
    assert first.stdout.splitlines() == order[:50]
    assert "--offset 50" in first.stderr
    assert run("ls", "contact/", "--offset", "50").stdout.splitlines() == order[50:]
    assert run("ls", "contact/", "--offset", "50").stderr == ""
    assert run("ls", "contact/", "--limit", "5", "--offset", "2").stdout.splitlines() == order[2:7]
    everything = run("ls", "--all")
    listed = everything.stdout.splitlines()
    assert listed == store.list("", 0, None) and len(listed) == 61
    assert everything.stderr == ""


def test_ls_prefix_is_a_plain_string_prefix(store: FileEngine) -> None:
    store.set_many({"chat/1/index": "a", "chat/10/index": "b"})
    assert sorted(run("ls", "chat/1").stdout.splitlines()) == ["chat/1/index", "chat/10/index"]
    assert run("ls", "chat/1/").stdout.splitlines() == ["chat/1/index"]


def test_default_engine_is_baileys_default_in_the_current_directory(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("WAFS_ENGINE", raising=False)
    monkeypatch.chdir(tmp_path)
    assert run("set", "session/creds", "{}").exit_code == 0
    assert FileEngine(tmp_path / ".baileys" / "default").get("session/creds") == "{}"
    assert run("ls").stdout == "session/creds\n"


def test_relative_file_urls_are_made_absolute(tmp_path, monkeypatch) -> None:
    # A background process (the mount daemon) changes directory: the URL must not depend on it.
    monkeypatch.chdir(tmp_path)
    result = run("demo", "--engine", "file://rel/store", "--chats", "0", "--messages", "0")
    assert result.exit_code == 0
    assert f" to file://{tmp_path}/rel/store " in result.stdout
    assert FileEngine(tmp_path / "rel" / "store").get("session/creds")


# --- rm -----------------------------------------------------------------------------------------


def test_rm_cascades_and_counts(store: FileEngine) -> None:
    store.set_many({
        "chat/1/index": "i", "chat/1/messages": "m", "chat/1/message/A/raw": "r", "chat/10/index": "x",
    })
    result = run("rm", "chat/1")
    assert result.exit_code == 0
    assert result.stdout == "removed 3 keys\n"
    assert store.list("", 0, None) == ["chat/10/index"]


def test_rm_dry_run_lists_and_deletes_nothing(store: FileEngine) -> None:
    keys = {"chat/1/index": "i", "chat/1/message/A/raw": "r", "chat/10/index": "x"}
    store.set_many(keys)
    result = run("rm", "chat/1", "--dry-run")
    assert result.exit_code == 0
    assert result.stdout.splitlines() == ["chat/1/index", "chat/1/message/A/raw"]
    assert "would remove 2 keys" in result.stderr
    assert dict(store.items("")) == keys


STRANGE = {"chat/a\nb/index": "split", "chat/\x1b[31mred/index": "escape", "chat/plain/index": "ok"}


def _on_a_terminal(*args: str) -> str:
    """What the installed ``wafs`` writes to stdout when stdout is a terminal (a pty)."""
    controller, terminal = pty.openpty()
    try:
        done = subprocess.run([str(WAFS), *args], stdout=terminal, stderr=subprocess.PIPE, timeout=60,
                              env=environment(), check=False)
    finally:
        os.close(terminal)
    assert done.returncode == 0, done.stderr
    output = b""
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # EIO: the terminal side is closed and everything was read
            break
        if not chunk:
            break
        output += chunk
    os.close(controller)
    return output.decode().replace("\r\n", "\n")


def test_ls_quotes_control_characters_on_a_terminal_and_keeps_them_raw_when_piped(tmp_path) -> None:
    url = f"file://{tmp_path}/store"
    FileEngine(tmp_path / "store").set_many(STRANGE)
    shown = _on_a_terminal("ls", "chat/", "--engine", url).splitlines()
    assert sorted(shown) == sorted(["$'chat/a\\nb/index'", "$'chat/\\E[31mred/index'", "chat/plain/index"])
    assert "\x1b" not in "".join(shown)
    piped = wafs("ls", "chat/", "--engine", url).stdout
    expected = ["", "chat/a", "b/index", "chat/\x1b[31mred/index", "chat/plain/index"]  # a newline splits one
    assert sorted(piped.split("\n")) == sorted(expected)
    nul = wafs("ls", "-0", "chat/", "--engine", url).stdout
    assert nul.endswith("\0") and sorted(nul.split("\0")[:-1]) == sorted(STRANGE)
    assert _on_a_terminal("ls", "--null", "chat/", "--engine", url).count("\0") == 3  # raw even there
    for key in nul.split("\0")[:-1]:  # what $'…' spells is the key: bash reads it back
        spelled = subprocess.run(["bash", "-c", f"printf %s {_quoted_by_ls(url, key)}"], capture_output=True,
                                 text=True, check=True).stdout
        assert spelled == key


def _quoted_by_ls(url: str, key: str) -> str:
    return next(line for line in _on_a_terminal("ls", key, "--engine", url).splitlines())


def test_rm_accepts_the_trailing_slash_a_shell_completes(store: FileEngine) -> None:
    store.set_many({"h/lead": "1", "h/x/y": "2", "hh/z": "3"})
    result = run("rm", "h/")
    assert result.exit_code == 0 and result.output == "removed 2 keys\n"
    assert store.list("", 0, None) == ["hh/z"]
    assert run("rm", "/").exit_code == 1


def test_rm_missing_key_exits_1(store: FileEngine) -> None:
    result = run("rm", "chat/404")
    assert result.exit_code == 1 and result.output == "Error: no such key: chat/404\n"


# --- demo ---------------------------------------------------------------------------------------


def test_demo_writes_the_session_and_refuses_a_non_empty_engine(store: FileEngine) -> None:
    expected = dict(demo_items(chats=2, messages=3, seed=5))
    result = run("demo", "--chats", "2", "--messages", "3", "--seed", "5")
    assert result.exit_code == 0
    assert result.stdout.startswith(f"wrote {len(expected)} keys to ")
    assert dict(store.items("")) == expected

    again = run("demo", "--chats", "2", "--messages", "3")
    assert again.exit_code == 1 and "already holds keys" in again.output and "--force" in again.output
    store.set("session/creds", "changed")
    assert run("demo", "--chats", "2", "--messages", "3", "--seed", "5", "--force").exit_code == 0
    assert dict(store.items("")) == expected


# --- the installed executable -------------------------------------------------------------------


def test_executable_round_trip_with_stdin(tmp_path) -> None:
    url = f"file://{tmp_path}/store"
    wafs("set", "chat/1/messages", "--engine", url, input=b"1717200000 ABC\n")
    assert wafs("get", "chat/1/messages", "--engine", url).stdout == "1717200000 ABC\n"


def test_executable_reads_wafs_engine_from_the_environment(tmp_path) -> None:
    env = {"PATH": "/usr/bin:/bin", "WAFS_ENGINE": f"file://{tmp_path}/envstore"}
    wafs("set", "session/creds", "{}", env=env)
    assert FileEngine(tmp_path / "envstore").get("session/creds") == "{}"


def test_executable_refuses_non_utf8(tmp_path) -> None:
    url = f"file://{tmp_path}/store"
    done = wafs("set", "session/creds", "--engine", url, input=b"ok\xff\xfe", check=False)
    assert done.returncode == 1
    assert done.stderr == "Error: stdin is not UTF-8 text (byte 0xff at offset 2); nothing written\n"
    assert FileEngine(tmp_path / "store").list("", 0, None) == []


def test_executable_errors_are_one_line(tmp_path) -> None:
    missing = wafs("get", "session/creds", "--engine", f"file://{tmp_path}/store", check=False)
    assert missing.returncode == 1 and missing.stderr == "Error: no such key: session/creds\n"
    unknown = wafs("ls", "--engine", "ftp://host/x", check=False)
    assert unknown.returncode == 1
    assert "known: file://" in unknown.stderr and "Traceback" not in unknown.stderr
    usage = wafs("rm", check=False)
    assert usage.returncode == 2 and "Missing argument 'KEY'" in usage.stderr


def test_executable_rm_dry_run_deletes_nothing(tmp_path) -> None:
    url = f"file://{tmp_path}/store"
    wafs("demo", "--chats", "2", "--messages", "2", "--engine", url)
    before = dict(FileEngine(tmp_path / "store").items(""))
    chat = next(key for key in before if key.startswith("chat/")).split("/")[1]
    listed = wafs("rm", f"chat/{chat}", "--dry-run", "--engine", url).stdout.splitlines()
    assert len(listed) == 2 + 2 * 3 and all(key.startswith(f"chat/{chat}/") for key in listed)
    assert dict(FileEngine(tmp_path / "store").items("")) == before
    assert wafs("rm", f"chat/{chat}", "--engine", url).stdout == f"removed {len(listed)} keys\n"
    assert len(FileEngine(tmp_path / "store").list("", 0, None)) == len(before) - len(listed)


# --- version, completion, and the docs' copies of --help ------------------------------------------

ROOT = Path(__file__).resolve().parents[1]


def test_version_is_printed() -> None:
    assert wafs("--version").stdout == f"wafs, version {__version__}\n"


def test_the_bash_completion_script_completes_commands_and_options() -> None:
    script = wafs(env={**environment(), "_WAFS_COMPLETE": "bash_source"}).stdout
    assert "_wafs_completion()" in script and "complete -o nosort -F _wafs_completion wafs" in script
    # As bash runs it on a TAB: the function the script defines, with the words typed so far.
    for typed, offered in [("wafs mo", "mount"), ("wafs mount --read", "--read-only"),
                           ("wafs mount --view ", "raw chats")]:
        words = typed.split(" ")
        line = (f'eval "$(_WAFS_COMPLETE=bash_source wafs)"; COMP_WORDS=({" ".join(map(repr, words))}); '
                f'COMP_CWORD={len(words) - 1}; _wafs_completion wafs; echo "${{COMPREPLY[@]}}"')
        env = {**environment(), "PATH": f"{WAFS.parent}:{os.environ['PATH']}"}
        done = subprocess.run(["bash", "-c", line], capture_output=True, text=True, env=env, timeout=60,
                              check=True)
        assert done.stdout == f"{offered}\n", typed


def test_click_completes_a_command_name() -> None:
    env = {**environment(), "_WAFS_COMPLETE": "bash_complete", "COMP_WORDS": "wafs mo", "COMP_CWORD": "1"}
    assert wafs(env=env).stdout.splitlines() == ["plain,mount"]


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_zsh_and_fish_completion_scripts_are_produced(shell: str) -> None:
    script = wafs(env={**environment(), "_WAFS_COMPLETE": f"{shell}_source"}).stdout
    assert "_WAFS_COMPLETE" in script and f"{shell}_complete" in script


def test_the_docs_hold_every_commands_help_as_the_code_prints_it() -> None:
    """README.md has ``wafs --help``; docs/cli.md every command's, under its own heading."""
    diff = cli_docs.drift(ROOT)
    assert not diff, f"the docs' --help texts drifted from the code; run: .venv/bin/{cli_docs.FIX}\n{diff}"
    # And what the generator wrote is what the installed executable prints.
    env = {**environment(), "COLUMNS": "80"}
    reference = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    for command in COMMANDS:
        printed = wafs(command, "--help", env=env).stdout
        assert f"### `wafs {command}`\n\n```text\n$ wafs {command} --help\n{printed}```" in reference
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert f"$ wafs --help\n{wafs('--help', env=env).stdout}```" in readme


def test_the_generator_reports_drift_and_rewrites_only_its_regions(tmp_path: Path) -> None:
    for relative in cli_docs.REGIONS:
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / relative, tmp_path / relative)
    readme = tmp_path / "README.md"
    readme.write_text(readme.read_text().replace("Copy keys from one engine", "Copy keys, maybe"))
    generator = [sys.executable, "-m", "wafs.cli_docs", "--root", str(tmp_path)]
    checked = subprocess.run([*generator, "--check"], capture_output=True, text=True, timeout=60, check=False)
    assert checked.returncode == 1
    assert "-  copy     Copy keys, maybe" in checked.stdout
    assert "+  copy     Copy keys from one engine" in checked.stdout
    assert "python -m wafs.cli_docs" in checked.stderr
    subprocess.run(generator, capture_output=True, timeout=60, check=True)
    assert readme.read_text() == (ROOT / "README.md").read_text()
    assert subprocess.run([*generator, "--check"], capture_output=True, timeout=60).returncode == 0
    readme.write_text("no markers here\n")
    with pytest.raises(ValueError, match="README.md must hold the markers of region 'commands'"):
        cli_docs.generated(tmp_path)
