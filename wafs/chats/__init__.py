"""Chats as WhatsApp's own *Export chat* writes them: a transcript per chat, media beside it.

``ChatsView(engine, ChatOptions())`` renders any engine (no FUSE needed): :meth:`~ChatsView.chats`
lists them, :meth:`~ChatsView.files` and :meth:`~ChatsView.read` serve the files,
:meth:`~ChatsView.changed` maps a store key change to the paths it affects.
:func:`~wafs.chats.export.export_chats` writes them to a folder or zip files. The rules are in
``docs/chats.md``.
"""

from .transcript import LOCALES, Line, Locale
from .view import ChatInfo, ChatOptions, ChatsError, ChatStats, ChatsView, FileInfo, MediaFile, RenderedChat

__all__ = [
    "LOCALES", "ChatInfo", "ChatOptions", "ChatStats", "ChatsError", "ChatsView", "FileInfo", "Line",
    "Locale", "MediaFile", "RenderedChat",
]
