"""Write a :class:`~wafs.chats.ChatsView` to disk: a folder per chat, or a zip per chat as the app does."""

from __future__ import annotations

import os
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .names import ZIP_WRAPPER
from .view import ChatInfo, ChatsError, ChatsView, RenderedChat

#: Zip files cannot hold dates before 1980.
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


@dataclass
class ExportReport:
    """What an export wrote."""

    chats: int = 0
    messages: int = 0
    media: int = 0
    bytes: int = 0  # transcripts and media, uncompressed
    placeholders: int = 0  # messages shown as placeholder lines (unreadable or unsupported)
    hidden: int = 0  # reactions, revokes, edits and protocol messages (not lines, as in the app's export)
    seconds: float = 0.0
    paths: list[Path] = field(default_factory=list)  # the folders or zip files written


def zip_stem(chat: ChatInfo) -> str:
    """``WhatsApp Chat with NAME``: the app's name for the zip and for the transcript inside it."""
    return f"{ZIP_WRAPPER}{chat.folder}"


def select_chats(view: ChatsView, wanted: Iterable[str]) -> list[ChatInfo]:
    """The chats each of ``wanted`` names: a JID, a number, a folder name or a title (any case).

    Raises :class:`~wafs.chats.ChatsError` naming what matched no chat. Each chat appears once,
    in folder order.
    """
    chats = view.chats()
    chosen: set[str] = set()
    unknown = []
    for text in wanted:
        folded = text.casefold()
        matches = [chat.cid for chat in chats
                   if text in (chat.cid, chat.cid.split("@", 1)[0])
                   or folded in (chat.folder.casefold(), chat.title.casefold())]
        if not matches:
            unknown.append(text)
        chosen.update(matches)
    if unknown:
        raise ChatsError(f"no chat matches {', '.join(repr(u) for u in unknown)} (by JID, number or name)")
    return [chat for chat in chats if chat.cid in chosen]


def export_chats(view: ChatsView, dest: str | os.PathLike[str], chats: Sequence[ChatInfo] | None = None,
                 as_zip: bool = False, progress: Callable[[ChatInfo], None] | None = None) -> ExportReport:
    """Write ``chats`` (default: all) of ``view`` into the folder ``dest`` (created if missing).

    Per chat: ``dest/NAME/NAME.txt`` and its media, or with ``as_zip``
    ``dest/WhatsApp Chat with NAME.zip`` holding ``WhatsApp Chat with NAME.txt`` and the media.
    Files of the same names are replaced (each written whole, then renamed into place);
    other files in ``dest`` are left alone. Modification times are the messages' times.
    ``progress(chat)`` is called after each chat.
    """
    mode = 0o666 & ~_umask()  # what a plain write would give (mkstemp makes 0600)
    started = time.monotonic()
    root = Path(dest)
    root.mkdir(parents=True, exist_ok=True)
    report = ExportReport()
    for chat in view.chats() if chats is None else chats:
        rendered = view.render(chat.cid, keep_media=True)
        path = _write_zip(root, rendered, view, mode) if as_zip else _write_folder(root, rendered, mode)
        report.paths.append(path)
        report.chats += 1
        report.messages += rendered.stats.messages
        report.placeholders += rendered.stats.placeholders
        report.hidden += rendered.stats.hidden
        report.media += rendered.stats.media
        report.bytes += len(rendered.transcript) + sum(len(data) for data in rendered.data.values())
        if progress is not None:
            progress(chat)
    report.seconds = time.monotonic() - started
    return report


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _write_atomic(path: Path, data: bytes, mtime: float, mode: int) -> None:
    fd, temp = tempfile.mkstemp(prefix=".wafs-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.chmod(temp, mode)
        os.utime(temp, (mtime, mtime))
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def _write_folder(root: Path, rendered: RenderedChat, mode: int) -> Path:
    folder = root / rendered.chat.folder
    folder.mkdir(exist_ok=True)
    _write_atomic(folder / rendered.chat.transcript, rendered.transcript, rendered.mtime, mode)
    for media in rendered.media:
        _write_atomic(folder / media.name, rendered.data[media.name], media.mtime, mode)
    os.utime(folder, (rendered.mtime, rendered.mtime))
    return folder


def _zip_time(mtime: float, view: ChatsView) -> tuple[int, int, int, int, int, int]:
    moment = view.local_time(mtime).timetuple()[:6]
    return max(_ZIP_EPOCH, (moment[0], moment[1], moment[2], moment[3], moment[4], moment[5]))


def _write_zip(root: Path, rendered: RenderedChat, view: ChatsView, mode: int) -> Path:
    stem = zip_stem(rendered.chat)
    path = root / f"{stem}.zip"
    fd, temp = tempfile.mkstemp(prefix=".wafs-", dir=root)
    try:
        with os.fdopen(fd, "wb") as out, zipfile.ZipFile(out, "w") as archive:
            entry = zipfile.ZipInfo(f"{stem}.txt", _zip_time(rendered.mtime, view))
            archive.writestr(entry, rendered.transcript, compress_type=zipfile.ZIP_DEFLATED)
            for media in rendered.media:  # already compressed: stored, as the app does
                entry = zipfile.ZipInfo(media.name, _zip_time(media.mtime, view))
                archive.writestr(entry, rendered.data[media.name], compress_type=zipfile.ZIP_STORED)
        os.chmod(temp, mode)
        os.utime(temp, (rendered.mtime, rendered.mtime))
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return path
