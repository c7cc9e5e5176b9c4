"""The docs' copies of the command line's ``--help``, written from the code.

``python -m wafs.cli_docs`` (from the repository's root) rewrites every generated region of
the docs; ``python -m wafs.cli_docs --check`` changes nothing and exits 1, printing a diff,
when one has drifted from the code (the test suite runs it). A region is what lies between

    <!-- BEGIN GENERATED wafs.cli_docs NAME -->
    <!-- END GENERATED wafs.cli_docs NAME -->

in a file of :data:`REGIONS`; everything outside the markers is left as written.
The commands are read from the click group, so a new command appears without a change here;
a new program is one more entry of :data:`PROGRAMS`.
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import click

from .cli import main
from .mount_helper import main as mount_helper

#: The programs documented, by the name they are run as; the first is the README's.
PROGRAMS: dict[str, click.Command] = {"wafs": main, "mount.wafs": mount_helper}
#: The width the help is wrapped at, whatever the terminal running the generator: click's on
#: any terminal of 80 columns or more (its 80-column cap, less a margin of 2).
WIDTH = 78
FIX = "python -m wafs.cli_docs"


def commands(name: str, command: click.Command) -> Iterator[tuple[list[str], click.Command]]:
    """``(["wafs", "ls"], ls)``, ...: ``command`` and every command below it, depth first, in
    the order ``--help`` lists them."""
    yield [name], command
    if isinstance(command, click.Group):
        context = click.Context(command, info_name=name)
        for child in command.list_commands(context):
            sub = command.get_command(context, child)
            if sub is not None and not sub.hidden:
                for path, found in commands(child, sub):
                    yield [name, *path], found


def help_text(path: list[str]) -> str:
    """What ``PROGRAM SUBCOMMAND... --help`` prints for ``path``, at :data:`WIDTH` columns."""
    command = PROGRAMS[path[0]]
    context = command.make_context(path[0], [], terminal_width=WIDTH, resilient_parsing=True)
    for name in path[1:]:
        assert isinstance(command, click.Group), path
        found = command.get_command(context, name)
        assert found is not None, path
        command = found
        context = command.make_context(name, [], parent=context, resilient_parsing=True)
    return command.get_help(context)


def _block(path: list[str]) -> str:
    return f"```text\n$ {' '.join(path)} --help\n{help_text(path)}\n```\n"


def top_level() -> str:
    """Region ``commands`` (README): the first program's own ``--help``, its list of commands
    (every program's is in the reference)."""
    return _block([next(iter(PROGRAMS))])


def reference() -> str:
    """Region ``reference`` (docs/cli.md): the ``--help`` of every command, each under a heading."""
    return "\n".join(f"### `{' '.join(path)}`\n\n{_block(path)}"
                     for name, program in PROGRAMS.items() for path, _ in commands(name, program))


#: The generated regions of each file, relative to the repository's root: name -> content.
REGIONS: dict[str, dict[str, Callable[[], str]]] = {
    "README.md": {"commands": top_level},
    "docs/cli.md": {"reference": reference},
}


def rewrite(text: str, name: str, content: str, where: str) -> str:
    """``text`` with region ``name`` holding ``content``; ValueError when its markers are not
    there exactly once (``where`` names the file in the message)."""
    begin = f"<!-- BEGIN GENERATED wafs.cli_docs {name} -->"
    end = f"<!-- END GENERATED wafs.cli_docs {name} -->"
    pattern = re.compile(re.escape(begin) + r"\n.*?" + re.escape(end), re.DOTALL)
    if len(pattern.findall(text)) != 1:
        raise ValueError(f"{where} must hold the markers of region {name!r} once, each on a line of its "
                         f"own:\n{begin}\n{end}")
    return pattern.sub(lambda _: f"{begin}\n{content}{end}", text)


def generated(root: Path) -> dict[Path, tuple[str, str]]:
    """Each file of :data:`REGIONS` under ``root``: ``(as it is, as it should be)``."""
    result = {}
    for relative, regions in REGIONS.items():
        path = root / relative
        current = path.read_text(encoding="utf-8")
        wanted = current
        for name, render in regions.items():
            wanted = rewrite(wanted, name, render(), relative)
        result[path] = (current, wanted)
    return result


def drift(root: Path) -> str:
    """A unified diff from the docs under ``root`` to what they should say; ``""`` when in step."""
    return "".join(
        "".join(difflib.unified_diff(current.splitlines(keepends=True), wanted.splitlines(keepends=True),
                                     f"{path} (as written)", f"{path} (from the code)"))
        for path, (current, wanted) in generated(root).items()
    )


def run(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m wafs.cli_docs",
                                     description="Write the docs' copies of the --help texts from the code.")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 with a diff on drift")
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="the repository (default: here)")
    arguments = parser.parse_args(argv)
    if arguments.check:
        diff = drift(arguments.root)
        if diff:
            sys.stdout.write(diff)
            print(f"\nthe docs' --help texts are out of date: run {FIX}", file=sys.stderr)
            return 1
        return 0
    for path, (current, wanted) in generated(arguments.root).items():
        if wanted != current:
            path.write_text(wanted, encoding="utf-8")
            print(f"rewrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(run())
