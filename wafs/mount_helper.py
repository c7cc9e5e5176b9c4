"""``mount.wafs``: the helper that ``mount -t wafs`` and an ``/etc/fstab`` line of type ``wafs`` run.

mount(8) runs ``/sbin/mount.wafs SOURCE DIR [-sfnv] [-o OPTIONS]`` ("External helpers" in
``man mount``); with ``--fstab FILE``, ``mount -a`` or systemd, SOURCE, DIR and OPTIONS come
from the fstab line. The helper turns OPTIONS into :class:`~wafs.mount.MountOptions`
(:data:`FIELDS`, the one table of them), mounts as ``wafs mount`` does and returns once the
mount answers, the daemon serving in the background. The daemon names its filesystem type
``fuse.wafs``, so ``umount DIR`` goes to the kernel directly; the daemon then commits what
is pending and exits, as after ``wafs umount DIR``. Exit statuses are mount(8)'s.
"""

from __future__ import annotations

import dataclasses
import os
import stat
from collections.abc import Callable
from typing import Any, NamedTuple

import click

from .cli import file_path, octal_umask, read_engine_file
from .errors import WafsError
from .mount.options import MountOptions
from .urls import redact

#: mount(8)'s exit statuses: a usage error (a bad option, an unreadable engine file)…
BAD_USAGE = 1
#: …a mount that failed (the store down, the directory in use)…
MOUNT_FAILURE = 32
#: …and an interrupted one.
INTERRUPTED = 8

_DEFAULTS = MountOptions()


def _mebibytes(text: str) -> int:
    return int(click.IntRange(min=0)(text)) << 20


class Field(NamedTuple):
    """A ``-o`` option that sets a :class:`MountOptions` field."""

    field: str
    #: A bare option's value for the field, or the parser of ``NAME=VALUE``'s value (raising
    #: :class:`click.BadParameter`).
    value: bool | Callable[[str], Any]
    #: How ``--help`` spells it and what it means.
    spelling: str
    meaning: str


#: The ``-o`` options that set a MountOptions field, by name; a field not given keeps its default.
FIELDS: dict[str, Field] = {
    "ro": Field("read_only", True, "ro", "refuse every change with EROFS"),
    "rw": Field("read_only", False, "rw", "writable, the default (the last of ro, rw wins)"),
    "allow_other": Field("allow_other", True, "allow_other", "let other users see the mount"),
    "umask": Field("umask", lambda text: octal_umask(text, "-o umask="), "umask=OCTAL",
                   f"umask of file (0666) and directory (0777) modes [{_DEFAULTS.umask:03o}]"),
    "ttl": Field("ttl", click.FloatRange(min=0.0), "ttl=SECONDS",
                 f"seconds a value read is trusted without a change feed [{_DEFAULTS.ttl:g}]"),
    "cache_size": Field("cache_bytes", _mebibytes, "cache_size=MIB",
                        f"MiB of values the daemon may keep [{_DEFAULTS.cache_bytes >> 20}]"),
    "spin_us": Field("spin", lambda text: int(click.IntRange(min=0)(text)) / 1e6, "spin_us=MICROSECONDS",
                     f"how long the daemon polls for the next request before it sleeps "
                     f"[{round(_DEFAULTS.spin * 1e6)}]"),
}
#: The option naming the file that holds the engine URL.
ENGINE_FILE = "engine_file"
#: Accepted and ignored: mount(8)'s and systemd's own options (mount passes some of them on),
#: and flags that change nothing here (a wafs mount is always nosuid,nodev, its files never
#: executable, its times its own).
IGNORED = frozenset({
    "defaults", "auto", "noauto", "nofail", "_netdev", "nouser", "async",
    "exec", "noexec", "suid", "nosuid", "dev", "nodev",
    "atime", "noatime", "diratime", "nodiratime", "relatime", "norelatime", "strictatime",
    "nostrictatime", "lazytime", "nolazytime",
})
IGNORED_PREFIXES = ("x-", "comment=")
#: Refused, with the reason, rather than called unknown.
REFUSED = {
    "remount": "a wafs mount cannot change its options in place: umount it and mount it again",
    **dict.fromkeys(("user", "users", "owner", "group"),
                    "mounts by users other than root are not supported: a user runs "
                    "'wafs mount DIR --engine-file PATH' instead"),
}


def parse_options(text: str, sloppy: bool = False) -> tuple[MountOptions, str | None]:
    """The MountOptions and the ``engine_file=`` path of mount's ``-o`` text (comma-separated
    ``NAME`` and ``NAME=VALUE``; a value cannot hold a comma).

    Raises :class:`click.BadParameter` for a bad value, an option of :data:`REFUSED`, and
    unknown options (naming them all), which ``sloppy`` (mount's ``-s``) ignores instead.
    """
    fields: dict[str, Any] = {}
    engine_file: str | None = None
    unknown: list[str] = []
    for option in filter(None, text.split(",")):
        name, has_value, value = option.partition("=")
        known = FIELDS.get(name)
        if name in REFUSED:
            raise click.BadParameter(f"{name}: {REFUSED[name]}", param_hint="'-o'")
        if name == ENGINE_FILE and has_value:
            engine_file = value
        elif known is not None and isinstance(known.value, bool) and not has_value:
            fields[known.field] = known.value
        elif known is not None and not isinstance(known.value, bool) and has_value:
            fields[known.field] = _parsed(known.value, name, value)
        elif option not in IGNORED and not option.startswith(IGNORED_PREFIXES):
            unknown.append(option)
    if unknown and not sloppy:
        spelled = ", ".join(field.spelling for field in FIELDS.values())
        raise click.BadParameter(
            f"unknown mount options {', '.join(unknown)} (a wafs mount takes {spelled}, "
            f"{ENGINE_FILE}=PATH, and ignores those 'mount.wafs --help' lists; -s ignores unknown ones)",
            param_hint="'-o'")
    return MountOptions(**fields), engine_file


def _parsed(parse: Callable[[str], Any], name: str, value: str) -> Any:
    try:
        return parse(value)
    except click.BadParameter as exc:
        exc.param_hint = f"'-o {name}='"
        raise


def engine_url(source: str, engine_file: str | None) -> str:
    """The URL of the engine to mount: SOURCE, or with ``engine_file`` the URL in that file
    (SOURCE then being a label, such as ``wafs:bot``: one that names no file, since mount(8)
    replaces a source naming a file in its working directory by that file's absolute path).

    Refused (:class:`click.UsageError`): a SOURCE with a password (fstab, ``ps`` and
    ``/run/mount/utab`` show it to every user), a URL both as SOURCE and in a file, an engine
    file with a password that others may read, and a relative path, file or FileEngine
    directory (mount runs in whatever directory its caller is in, systemd in ``/``).
    """
    if engine_file is None:
        if redact(source) != source:
            raise click.UsageError(
                f"the source {redact(source)} holds a password, which fstab, ps and /run/mount/utab show "
                f"to every user: put the URL in a file only root can read, and mount a label such as "
                f"wafs:bot with -o {ENGINE_FILE}=PATH")
        url = source
    else:
        if "://" in source:
            raise click.UsageError(f"the engine is either the source {redact(source)} or the URL in "
                                   f"{engine_file}, not both: with {ENGINE_FILE}=, the source is a label "
                                   "such as wafs:bot")
        url = _url_in(engine_file)
    directory = file_path(url)
    if directory is not None and not os.path.isabs(directory):
        where = f"the URL in {engine_file}" if engine_file is not None else "the source"
        raise click.UsageError(
            f"{where}, {url!r}, is neither an engine URL (redis://…, postgresql://…) nor an absolute "
            f"path (file:///var/lib/wafs/bot); with -o {ENGINE_FILE}=PATH the source is only a label")
    return url


def _url_in(engine_file: str) -> str:
    """The URL in ``engine_file``, an absolute path that only its owner can read if the URL
    holds a password."""
    hint = f"'-o {ENGINE_FILE}='"
    if not os.path.isabs(engine_file):
        raise click.BadParameter(f"{engine_file!r} is not an absolute path", param_hint=hint)
    url = read_engine_file(engine_file, param_hint=hint)
    mode = os.stat(engine_file).st_mode
    if redact(url) != url and mode & (stat.S_IRGRP | stat.S_IROTH):
        raise click.BadParameter(f"{engine_file} holds a password and others can read it (mode "
                                 f"{stat.S_IMODE(mode):04o}): chmod 600 {engine_file}", param_hint=hint)
    return url


def _epilog() -> str:
    """The options part of ``--help``, from :data:`FIELDS`, :data:`IGNORED` and :data:`REFUSED`."""
    rows = [(field.spelling, field.meaning) for field in FIELDS.values()]
    rows.append((f"{ENGINE_FILE}=PATH", "read the engine URL from this file"))
    width = max(len(spelling) for spelling, _ in rows) + 2
    lines = [f"  {spelling:<{width}}{meaning}" for spelling, meaning in rows]
    ignored = ", ".join(sorted(IGNORED)) + ", " + ", ".join(f"{prefix}*" for prefix in IGNORED_PREFIXES)
    return ("\b\nOPTIONS, comma-separated (-o):\n" + "\n".join(lines) + "\n\n"
            f"Ignored: {ignored}. Refused: {', '.join(REFUSED)}. Any other option is an error, "
            "unless -s.\n\n"
            f"Exit status, as mount(8)'s: 0 mounted, {BAD_USAGE} bad usage (an option, the source, the "
            f"engine file), {MOUNT_FAILURE} the mount failed (the store down, DIR in use), "
            f"{INTERRUPTED} interrupted.")


class _BadUsage(click.UsageError):
    exit_code = BAD_USAGE


class _MountFailed(click.ClickException):
    exit_code = MOUNT_FAILURE


class _Helper(click.Command):
    """A command that exits with mount(8)'s statuses: a usage error (click's exit 2) with 1, a
    :class:`WafsError` (the mount failed) with 32 and a one-line message."""

    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        try:
            return super().make_context(*args, **kwargs)
        except click.UsageError as exc:
            raise _BadUsage(exc.format_message(), exc.ctx) from exc

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            raise _BadUsage(exc.format_message(), exc.ctx) from exc
        except WafsError as exc:
            raise _MountFailed(str(exc)) from exc
        except KeyboardInterrupt:
            raise click.exceptions.Exit(INTERRUPTED) from None


@click.command(cls=_Helper, name="mount.wafs", epilog=_epilog(),
               context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("source")
@click.argument("directory", metavar="DIR", type=click.Path())
@click.option("-o", "option_texts", metavar="OPTIONS", multiple=True,
              help="Comma-separated mount options (below).")
@click.option("-s", "sloppy", is_flag=True, help="Ignore unknown options instead of failing.")
@click.option("-f", "fake", is_flag=True, help="Check the options and the source, mount nothing.")
@click.option("-n", "no_mtab", is_flag=True, help="Accepted (mount.wafs writes no mtab anyway).")
@click.option("-v", "verbose", is_flag=True, help="Say what was mounted.")
def main(source: str, directory: str, option_texts: tuple[str, ...], sloppy: bool, fake: bool,
         no_mtab: bool, verbose: bool) -> None:
    """Mount an engine at DIR: the helper 'mount -t wafs' and /etc/fstab run.

    SOURCE is the engine URL (redis://HOST:PORT/DB?prefix=P, postgresql://...,
    file:///ABSOLUTE/PATH or /ABSOLUTE/PATH) or, with -o engine_file=PATH, a
    label such as wafs:bot: the URL is then the first line of that file, which
    only root may read when it holds a password (one in SOURCE is refused: fstab
    is world-readable). Returns once the mount answers, the daemon serving in
    the background. 'umount DIR' unmounts: the daemon commits what is pending
    and exits ('wafs umount DIR' also waits for that and reports what it could
    not do).

    \b
        mount -t wafs 'redis://127.0.0.1:6379/0?prefix=wa:bot' /srv/wa -o ro
        # /etc/fstab:
        wafs:bot  /srv/wa  wafs  ro,nofail,_netdev,engine_file=/etc/wafs/bot.url  0 0
        mount /srv/wa; ls /srv/wa; umount /srv/wa
    """
    from .mount import mount
    from .mount.daemon import default_log_file

    options, engine_file = parse_options(",".join(option_texts), sloppy=sloppy)
    url = engine_url(source, engine_file)
    if not fake:
        # Listed under SOURCE, as the fstab line has it, so that 'mount -a' knows it is mounted.
        options = dataclasses.replace(options, fsname=source)
        mount(url, directory, options, log_file=default_log_file(directory))
    if verbose:
        done = "would mount" if fake else "mounted"
        click.echo(f"mount.wafs: {done} {redact(url)} at {directory}", err=True)
