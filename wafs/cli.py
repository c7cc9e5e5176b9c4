"""The ``wafs`` command line."""

from __future__ import annotations

import functools
import os
import sys
import time
import unicodedata
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any, TypeVar, cast

import click
from click.core import ParameterSource

from . import __version__
from .chats.transcript import LOCALES
from .copy import copy_engine
from .demo import write_demo
from .engine import Engine
from .engines.file import DEFAULT_BASE
from .errors import WafsError
from .keys import SEPARATOR, check_key, is_under
from .mount.options import MountOptions
from .registry import open_engine
from .urls import redact

DEFAULT_ENGINE_URL = "file://.baileys/default"
ENGINE_ENVVAR = "WAFS_ENGINE"

F = TypeVar("F", bound=Callable[..., Any])


class WafsGroup(click.Group):
    """A click group that turns every :class:`~wafs.errors.WafsError` into a one-line user error."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except WafsError as exc:
            raise click.ClickException(str(exc)) from exc


def _absolute_file_url(ctx: click.Context, param: click.Parameter, url: str) -> str:
    """The ``--engine`` callback: :func:`_absolute`."""
    return _absolute(url)


def _absolute(url: str) -> str:
    """Resolve a relative file:// path against the directory the command runs in.

    The URL then means the same directory to a process that changes directory, such as
    the background mount daemon.
    """
    path = file_path(url)
    if path is None or os.path.isabs(path):
        return url
    return "file://" + os.path.abspath(path or DEFAULT_BASE)


def file_path(url: str) -> str | None:
    """The directory a FileEngine URL names (``file://PATH``, or a bare ``PATH``), as written:
    relative or absolute, ``""`` for ``file://``; None for a URL of another scheme."""
    scheme, sep, path = url.partition("://")
    if not sep:
        return url
    return path if scheme.lower() == "file" else None


def read_engine_file(path: str, param_hint: str = "--engine-file") -> str:
    """The engine URL in the file at ``path``: its first line that is not empty or a ``#`` comment."""
    try:
        with open(path, encoding="utf-8") as file:
            lines = [line.strip() for line in file]
    except (OSError, UnicodeDecodeError) as exc:
        raise click.BadParameter(f"cannot read {path}: {exc}", param_hint=param_hint) from None
    for line in lines:
        if line and not line.startswith("#"):
            return line
    raise click.BadParameter(f"{path} holds no engine URL", param_hint=param_hint)


def _url_or_file(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """A URL argument, or ``@PATH``: the URL in the file at PATH (as ``--engine-file`` reads it)."""
    if value.startswith("@"):
        value = read_engine_file(value[1:], param_hint=param.human_readable_name)
    return _absolute(value)


def engine_option(command: F) -> F:
    """The ``--engine URL`` option (``WAFS_ENGINE``) and ``--engine-file PATH`` every command that
    uses one engine shares.

    The command receives the URL as ``engine_url``, a file:// path made absolute. A URL in a
    file (or the environment) stays off the command line, where every user of the machine can
    read it (``ps``): the way to pass a password.
    """

    @functools.wraps(command)
    def with_engine(*args: Any, engine_file: str | None, **kwargs: Any) -> Any:
        if engine_file is not None:
            ctx = click.get_current_context()
            if ctx.get_parameter_source("engine_url") == ParameterSource.COMMANDLINE:
                raise click.UsageError("--engine and --engine-file cannot be used together")
            kwargs["engine_url"] = _absolute(read_engine_file(engine_file))
        return command(*args, **kwargs)

    with_file = click.option(
        "--engine-file",
        "engine_file",
        metavar="PATH",
        type=click.Path(dir_okay=False),
        default=None,
        help="Read the engine URL from this file (its first line), keeping a password off the command line.",
    )(with_engine)
    return cast(F, click.option(
        "--engine",
        "engine_url",
        metavar="URL",
        envvar=ENGINE_ENVVAR,
        default=DEFAULT_ENGINE_URL,
        show_default=True,
        show_envvar=True,
        callback=_absolute_file_url,
        help="Engine URL: file://PATH, memory://, redis://HOST:PORT/DB?prefix=P or postgresql://...",
    )(with_file))


def open_url(url: str) -> Engine:
    """Open the engine at ``url`` for the running command; it is closed when the command ends."""
    try:
        engine = open_engine(url)
    except WafsError:
        raise
    except ValueError as exc:  # an engine's URL parser refusing a parameter
        raise click.ClickException(f"bad engine URL {redact(url)!r}: {exc}") from exc
    return click.get_current_context().with_resource(engine)


def _keep_the_url_off_the_command_line(url: str) -> None:
    """Run this ``wafs`` again with ``url`` in ``WAFS_ENGINE`` instead of its command line, when
    that holds it with a password.

    A process keeps its command line for life, readable by every user (``ps``); the mount
    daemon lives long. Its environment is readable by its owner only. Nothing happens when
    the URL came from elsewhere (``--engine-file``, ``WAFS_ENGINE``) or holds no secret.
    """
    kept: list[str] = []
    given: list[str] = []
    arguments = iter(sys.argv[1:])
    for argument in arguments:
        if argument == "--engine":
            given.append(next(arguments, ""))
        elif argument.startswith("--engine="):
            given.append(argument.partition("=")[2])
        else:
            kept.append(argument)
    if any(redact(value) != value for value in given):
        os.execve(sys.executable, [sys.executable, "-m", "wafs", *kept], {**os.environ, ENGINE_ENVVAR: url})


def _decode(data: bytes, source: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise click.ClickException(
            f"{source} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
            "nothing written"
        ) from exc


def _raw(key: str) -> bytes:
    """The stored bytes of ``key`` (one that is not UTF-8 comes surrogate-escaped)."""
    return key.encode("utf-8", "surrogateescape")


#: Characters ``$'…'`` spells by name.
_ESCAPES = {"\n": "\\n", "\t": "\\t", "\r": "\\r", "\x1b": "\\E", "\\": "\\\\", "'": "\\'"}


def _quoted(key: str) -> str:
    """``key`` for a terminal: as is, or, when it holds a control character or bytes that are
    not UTF-8, quoted as the shell reads it back, ``$'chat/a\\nb'`` (as ls does)."""
    if not any(unicodedata.category(char) in ("Cc", "Cs") for char in key):
        return key
    spelled = []
    for char in key:
        if char in _ESCAPES:
            spelled.append(_ESCAPES[char])
        elif unicodedata.category(char) == "Cs":  # a byte that is not UTF-8 (surrogate-escaped)
            spelled.append(f"\\x{ord(char) - 0xDC00:02x}")
        elif unicodedata.category(char) == "Cc":
            spelled.append(f"\\x{ord(char):02x}" if ord(char) < 0x80 else f"\\u{ord(char):04x}")
        else:
            spelled.append(char)
    return "$'" + "".join(spelled) + "'"


def _megabytes(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


@click.group(cls=WafsGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="wafs")
def main() -> None:
    """wafs: browse and manage a Baileys bot's key-value store, or mount it as a directory tree.

    Every command that works on one store takes --engine URL, or the WAFS_ENGINE
    environment variable; the default is the directory .baileys/default, where the
    Node library keeps its session.

    \b
        wafs demo
        wafs ls chat/ --limit 5
        WAFS_ENGINE=redis://localhost:6379/0?prefix=wa:bot wafs get session/creds
    """


@main.command(name="ls")
@click.argument("prefix", default="")
@click.option("--offset", type=click.IntRange(min=0), default=0, show_default=True,
              help="Skip this many keys.")
@click.option("--limit", type=click.IntRange(min=0), default=None,
              help="Show at most this many keys  [default: 50]")
@click.option("--all", "show_all", is_flag=True, help="Show every key (no limit).")
@click.option("-0", "--null", "null", is_flag=True,
              help="End each key with NUL instead of a newline, raw (for xargs -0).")
@engine_option
def ls_command(prefix: str, offset: int, limit: int | None, show_all: bool, null: bool,
               engine_url: str) -> None:
    """List keys that start with PREFIX, one per line.

    Keys come in the engine's order (newest first for files, memory and PostgreSQL).
    PREFIX is a plain string prefix: chat/1 matches chat/1/index and chat/10/index,
    chat/1/ only the first. A note on stderr says when more keys follow the page.
    On a terminal, a key with control characters (a newline, an escape) is shown
    quoted as $'chat/a\\nb', as ls does; piped, keys are written as stored.

    \b
        wafs ls
        wafs ls chat/ --limit 10
        wafs ls contact/ --all | wc -l
        wafs ls 'chat/5491112345678@s.whatsapp.net/message/' --offset 50
    """
    if show_all and limit is not None:
        raise click.UsageError("--all and --limit cannot be used together")
    engine = open_url(engine_url)
    if show_all:
        keys = engine.list(prefix, offset, None)
        more = False
    else:
        page = 50 if limit is None else limit
        keys = engine.list(prefix, offset, page + 1)
        more = len(keys) > page
        keys = keys[:page]
    out = sys.stdout.buffer
    quote = not null and out.isatty()
    for key in keys:
        out.write((_quoted(key).encode() if quote else _raw(key)) + (b"\0" if null else b"\n"))
    out.flush()
    if more:
        click.echo(f"(more keys follow: --offset {offset + len(keys)} for the next page, "
                   "--all for every key)", err=True)


@main.command(name="get")
@click.argument("key")
@engine_option
def get_command(key: str, engine_url: str) -> None:
    """Print the value of KEY.

    The value goes to stdout exactly as stored, with no newline added. Exits 1 with
    "no such key" when KEY holds no value.

    \b
        wafs get session/creds | python -m json.tool
        wafs get 'chat/5491112345678@s.whatsapp.net/messages' | head -3
    """
    engine = open_url(engine_url)
    value = engine.get(key)
    if value is None:
        if engine.list(key + "/", 0, 1):
            raise click.ClickException(f"no such key: {key} (it is a directory of keys: wafs ls {key}/)")
        raise click.ClickException(f"no such key: {key}")
    click.echo(value.encode("utf-8"), nl=False)


@main.command(name="set")
@click.argument("key")
@click.argument("value", required=False)
@engine_option
def set_command(key: str, value: str | None, engine_url: str) -> None:
    """Store VALUE (or stdin) under KEY.

    Without VALUE, stores what stdin holds, all of it, as is. Values are UTF-8 text: other
    bytes are refused and nothing is written. An empty value is a value (an empty file), not
    a delete; use wafs rm to delete.

    \b
        wafs set contact/123@s.whatsapp.net/index '{"name": "John"}'
        wafs set session/creds < creds.json
        echo -n "" | wafs set chat/123@s.whatsapp.net/messages
    """
    check_key(key)
    if value is None:
        text = _decode(sys.stdin.buffer.read(), "stdin")
    else:
        # Arguments that are not UTF-8 reach Python as surrogate escapes; recover the bytes.
        text = _decode(value.encode("utf-8", "surrogateescape"), "VALUE")
    open_url(engine_url).set(key, text)


@main.command(name="rm")
@click.argument("key")
@click.option("--dry-run", is_flag=True, help="List the keys that would go, delete nothing.")
@engine_option
def rm_command(key: str, dry_run: bool, engine_url: str) -> None:
    """Delete KEY and every key below it.

    This is the engine's cascade, set(KEY, None): KEY and every key below KEY/ go,
    and the command says how many. KEY/ (a directory, as a shell completes it) means
    KEY. Exits 1 when there is nothing to delete.

    \b
        wafs rm 'chat/5491112345678@s.whatsapp.net' --dry-run
        wafs rm 'chat/5491112345678@s.whatsapp.net'
        wafs rm session/pre-key/7
    """
    if key.endswith(SEPARATOR) and key != SEPARATOR:
        key = key[:-1]
    check_key(key)
    engine = open_url(engine_url)
    doomed = sorted(found for found in engine.iter_keys(key) if is_under(found, key))
    if not doomed:
        raise click.ClickException(f"no such key: {key}")
    noun = "key" if len(doomed) == 1 else "keys"
    if dry_run:
        for found in doomed:
            click.echo(found)
        click.echo(f"would remove {len(doomed)} {noun} (dry run, nothing deleted)", err=True)
        return
    engine.set(key, None)
    click.echo(f"removed {len(doomed)} {noun}")


@main.command(name="copy")
@click.argument("src_url", metavar="SRC_URL", callback=_url_or_file)
@click.argument("dst_url", metavar="DST_URL", callback=_url_or_file)
@click.option("--prefix", default="", help="Copy only the keys that start with this prefix.")
@click.option("--batch", type=click.IntRange(min=1), default=500, show_default=True,
              help="Keys per read and write.")
@click.option("-q", "--quiet", is_flag=True,
              help="No progress bar and no summary; failures are still reported.")
def copy_command(src_url: str, dst_url: str, prefix: str, batch: int, quiet: bool) -> None:
    """Copy keys from one engine to another.

    Copies every key (or those under --prefix) from the engine at SRC_URL to the one
    at DST_URL, in batches. Keys already in the destination are overwritten, none is deleted there, so running
    the same copy again after an interruption finishes it. Keys that cannot be copied
    (they break the key rules, or the destination refuses them) are listed on stderr
    and the command exits 1. A progress bar shows on a terminal.

    Either URL may be given as @PATH: the URL is read from the file at PATH (its first line
    that is not empty or a # comment), which keeps a password off the command line.

    \b
        wafs copy 'redis://localhost:6379/0?prefix=wa:bot' file://backup/bot
        wafs copy file://backup/bot 'redis://localhost:6379/0?prefix=wa:bot'
        wafs copy @/etc/wafs/bot.url file://backup/bot
        wafs copy file://.baileys/default postgresql://wafs@localhost/wafs --prefix chat/
    """
    src = open_url(src_url)
    dst = open_url(dst_url)
    with ExitStack() as stack:
        bar: Any = None

        def progress(done: int, total: int) -> None:
            nonlocal bar
            if bar is None:
                bar = stack.enter_context(
                    click.progressbar(length=total, label="copying", file=sys.stderr, show_pos=True)
                )
            bar.update(done - bar.pos)

        show = not quiet and sys.stderr.isatty()
        report = copy_engine(src, dst, prefix=prefix, batch=batch, progress=progress if show else None)
    if not quiet:
        click.echo(f"copied {report.keys} keys ({_megabytes(report.bytes)}) in {report.seconds:.1f} s")
    if report.failed:
        for key, error in report.failed:
            click.echo(f"  {key!r}: {error}", err=True)
        raise click.ClickException(f"{len(report.failed)} keys could not be copied (listed above)")


@main.command(name="demo")
@click.option("--chats", type=click.IntRange(min=0), default=20, show_default=True,
              help="Chats (a fifth are groups).")
@click.option("--messages", type=click.IntRange(min=0), default=50, show_default=True,
              help="Messages per chat.")
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed, same session.")
@click.option("--force", is_flag=True, help="Write even if the engine already holds keys.")
@engine_option
def demo_command(chats: int, messages: int, seed: int, force: bool, engine_url: str) -> None:
    """Write a demo WhatsApp session into an empty engine.

    The session is realistic and deterministic (same seed, same keys and values):
    credentials and Signal keys, contacts with lid/ mappings, 1:1 and group chats, and
    per message its index, raw (WAMessage JSON) and content (text, or base64 media).
    200 chats x 250 messages is the reference benchmark session (~150k keys, ~40 MB).

    \b
        wafs demo
        wafs demo --engine memory:// --chats 2 --messages 3
        wafs demo --engine 'redis://localhost:6379/0?prefix=wa:bench' --chats 200 --messages 250
    """
    engine = open_url(engine_url)
    if not force and engine.list("", 0, 1):
        raise click.ClickException(
            f"{redact(engine_url)} already holds keys; use --force to write the demo anyway")
    started = time.monotonic()
    written = write_demo(engine, chats=chats, messages=messages, seed=seed)
    click.echo(
        f"wrote {written} keys to {redact(engine_url)} ({chats} chats x {messages} messages, seed {seed}) "
        f"in {time.monotonic() - started:.1f} s"
    )


@main.command(name="export")
@click.argument("dest", type=click.Path(file_okay=False))
@click.argument("chats", nargs=-1, metavar="[CHAT]...")
@click.option("--zip", "as_zip", is_flag=True,
              help="One 'WhatsApp Chat with NAME.zip' per chat, as the app exports.")
@click.option("--locale", type=click.Choice(LOCALES), default="en_GB", show_default=True,
              help="Date format: en_GB [31/12/2024, 23:59:59], en_US [12/31/24, 11:59:59 PM].")
@click.option("--timezone", "tz", metavar="ZONE", default=None,
              help="IANA time zone of the times, e.g. UTC  [default: this machine's]")
@click.option("--no-media", is_flag=True,
              help="Write '<Media omitted>' and no media files (the app's 'Without media').")
@click.option("-q", "--quiet", is_flag=True,
              help="No progress bar and no summary; failures are still reported.")
@engine_option
def export_command(dest: str, chats: tuple[str, ...], as_zip: bool, locale: str, tz: str | None,
                   no_media: bool, quiet: bool, engine_url: str) -> None:
    """Export chats as WhatsApp's own 'Export chat' does, into the folder DEST.

    Each chat becomes DEST/NAME/NAME.txt, one line per message
    ([31/12/2024, 23:59:59] Ana: text), with its media beside it
    (IMG-20240531-WA0000.jpg...); with --zip, DEST/WhatsApp Chat with NAME.zip.
    CHAT picks chats by JID, number or name (default: every chat). Messages that
    cannot be read are placeholder lines naming the message id; the summary counts
    them. Rules: docs/chats.md.

    \b
        wafs export ./chats
        wafs export ./chats 'Ana García' 5491112345678 --zip
        wafs export ./chats --engine 'redis://localhost:6379/0?prefix=wa:bot' --locale en_US
    """
    from .chats import ChatOptions, ChatsView
    from .chats.export import export_chats, select_chats

    try:
        options = ChatOptions(locale=locale, timezone=tz, media=not no_media)  # type: ignore[arg-type]
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--timezone") from None
    view = ChatsView(open_url(engine_url), options)
    selected = select_chats(view, chats) if chats else view.chats()
    show = not quiet and sys.stderr.isatty()
    with click.progressbar(length=len(selected), label="exporting", file=sys.stderr, show_pos=True,
                           hidden=not show) as bar:
        report = export_chats(view, dest, selected, as_zip=as_zip, progress=lambda chat: bar.update(1))
    if not quiet:
        what = "zip files" if as_zip else "folders"
        chats_noun = "chat" if report.chats == 1 else "chats"
        click.echo(f"exported {report.chats} {chats_noun} ({report.messages} messages, "
                   f"{report.media} media files, {_megabytes(report.bytes)}) as {what} in {dest} "
                   f"in {report.seconds:.1f} s")
    if report.placeholders:
        click.echo(f"{report.placeholders} messages could not be read or are not supported: "
                   "placeholder lines name them (grep '<unreadable message' or '<unsupported message')",
                   err=True)


# --- mount commands ---

_MOUNT_DEFAULTS = MountOptions()


def octal_umask(text: str, param_hint: str) -> int:
    """The umask ``text`` spells in octal (``077``); BadParameter naming ``param_hint`` otherwise."""
    try:
        return int(text, 8)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not an octal number", param_hint=param_hint) from None


@main.command(name="mount")
@click.argument("mountpoint", type=click.Path())
@engine_option
@click.option("--read-only", is_flag=True, help="Refuse every change with EROFS.")
@click.option("-f", "--foreground", is_flag=True, help="Stay in the foreground; Ctrl-C or SIGTERM unmounts.")
@click.option("--debug", is_flag=True, help="Log every FUSE operation to stderr (implies --foreground).")
@click.option("--ttl", type=click.FloatRange(min=0.0), default=_MOUNT_DEFAULTS.ttl, show_default=True,
              help="Seconds a listing or a value read from the store is trusted, without a change feed.")
@click.option("--cache-size", type=click.IntRange(min=0), default=_MOUNT_DEFAULTS.cache_bytes >> 20,
              show_default=True,
              help="MiB of values the daemon may keep.")
@click.option("--spin-us", "spin_us", type=click.IntRange(min=0), default=round(_MOUNT_DEFAULTS.spin * 1e6),
              show_default=True,
              help="Microseconds the daemon keeps polling for the next request before it sleeps (0: never).")
@click.option("--umask", default=f"{_MOUNT_DEFAULTS.umask:03o}", show_default=True,
              help="Octal umask for file (0666) and directory (0777) modes.")
@click.option("--allow-other", is_flag=True, help="Let other users see the mount (needs user_allow_other).")
@click.option("--log-file", type=click.Path(dir_okay=False), default=None,
              help="Where the background daemon logs  [default: ~/.cache/wafs/MOUNTPOINT.log]")
@click.option("--view", type=click.Choice(["raw", "chats"]), default="raw", show_default=True,
              help="raw: a file per key; chats: read-only transcripts and media, kept live.")
@click.option("--locale", type=click.Choice(LOCALES), default=None,
              help="--view chats: date format, en_GB (the default) or en_US.")
@click.option("--timezone", "tz", metavar="ZONE", default=None,
              help="--view chats: IANA time zone of the times  [default: this machine's]")
def mount_command(mountpoint: str, engine_url: str, read_only: bool, foreground: bool, debug: bool,
                  ttl: float, cache_size: int, spin_us: int, umask: str, allow_other: bool,
                  log_file: str | None, view: str, locale: str | None, tz: str | None) -> None:
    """Mount the store at MOUNTPOINT as a directory tree.

    Key chat/123@s.whatsapp.net/index becomes the file
    MOUNTPOINT/chat/123@s.whatsapp.net/index. With --view chats, each chat is
    a folder NAME/ holding NAME.txt (as 'wafs export' writes it) and its media,
    read-only, following the bot's writes (tail -f NAME/NAME.txt). Returns once
    the mount answers; the daemon keeps serving in the background until 'wafs umount'.

    \b
        wafs mount ./mnt
        wafs mount ./mnt --engine 'redis://localhost:6379/0?prefix=wa:bot' --read-only
        ls mnt/chat; grep -rl pedido mnt/chat; cp -a mnt backup
        wafs mount ./chats --view chats --timezone UTC
        tail -f './chats/Ana García (5491112345678)/Ana García (5491112345678).txt'
        wafs umount ./mnt
    """
    from .chats import ChatOptions
    from .mount import mount
    from .mount.daemon import default_log_file

    _keep_the_url_off_the_command_line(engine_url)

    mask = octal_umask(umask, "--umask")
    if view != "chats" and (locale is not None or tz is not None):
        raise click.UsageError("--locale and --timezone apply to --view chats only")
    try:
        chat_options = ChatOptions(locale=locale or "en_GB", timezone=tz)  # type: ignore[arg-type]
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--timezone") from None
    options = MountOptions(read_only=read_only or view == "chats", ttl=ttl, cache_bytes=cache_size << 20,
                           allow_other=allow_other, umask=mask, debug=debug, spin=spin_us / 1e6,
                           view="chats" if view == "chats" else "raw", chat_options=chat_options)
    if foreground or debug:
        import logging

        logging.basicConfig(level=logging.DEBUG if debug else logging.INFO, stream=sys.stderr,
                            format="%(asctime)s wafs %(levelname)s %(message)s")
    mount(engine_url, mountpoint, options, foreground=foreground or debug,
          log_file=log_file or default_log_file(mountpoint))
    if not (foreground or debug):
        click.echo(f"mounted {redact(engine_url)} at {mountpoint}; unmount with: wafs umount {mountpoint}",
                   err=True)


@main.command(name="umount")
@click.argument("mountpoint", type=click.Path())
@click.option("--lazy", is_flag=True, help="Detach now even if busy or if the daemon died.")
def umount_command(mountpoint: str, lazy: bool) -> None:
    """Unmount a wafs mount; pending writes are committed first.

    Waits for the daemon to exit. Exits 1 if it could not write a file or gave up a cascade
    delete (``rm -r`` whose sweep of hidden keys could not run in time): the message says which.

    \b
        wafs umount ./mnt
        wafs umount --lazy ./mnt      # after the daemon was killed
    """
    from .mount import unmount

    left_undone = unmount(mountpoint, lazy=lazy)
    if left_undone:
        raise click.ClickException(f"unmounted {mountpoint}, but the daemon could not finish: "
                                   + "; ".join(left_undone))


@main.command(name="refresh")
@click.argument("mountpoint", type=click.Path())
def refresh_command(mountpoint: str) -> None:
    """Make the daemon behind MOUNTPOINT read the whole store again now (as SIGHUP does).

    \b
        wafs refresh ./mnt
    """
    from .mount import refresh

    pid = refresh(mountpoint)
    click.echo(f"asked the daemon (pid {pid}) to read the store again", err=True)
