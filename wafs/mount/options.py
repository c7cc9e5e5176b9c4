"""What a mount is asked for: the one place its defaults live."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..chats import ChatOptions

View = Literal["raw", "chats"]
VIEWS: tuple[View, ...] = ("raw", "chats")

#: How long the kernel keeps names and attributes when a change feed tells the daemon of
#: every change (the daemon then drops exactly what changed).
FEED_KERNEL_SECONDS = 24 * 3600.0


@dataclass(frozen=True)
class MountOptions:
    """Options of ``wafs mount``.

    ``ttl``: without a change feed, how long a listing, a value and the kernel's copy of a
    name or attribute are trusted (the visibility bound of other clients' changes).
    ``cache_bytes``: the bound of the daemon's value cache. ``sweep_delay``: how long the
    cascades of an ``rm -r`` are collected before one store pass deletes them. ``view``:
    ``"raw"`` (a file per key) or ``"chats"`` (read-only transcripts and media, rendered
    with ``chat_options``: :mod:`wafs.mount.chats`). ``fsname``: the source the kernel lists
    the mount under (``/proc/mounts``, ``df``), never a secret; None for ``wafs:ENGINE``
    (``wafs:chats:ENGINE`` for the chats view). ``spin``: seconds the serving thread keeps
    asking for the next request after answering one, before it sleeps (0: never; never on a
    single CPU, where it would take the CPU from the tool sending the requests).
    """

    read_only: bool = False
    ttl: float = 1.0
    cache_bytes: int = 64 << 20
    allow_other: bool = False
    umask: int = 0o077
    debug: bool = False
    sweep_delay: float = 0.5
    view: View = "raw"
    chat_options: ChatOptions = ChatOptions()
    fsname: str | None = None
    spin: float = 100e-6

    @property
    def file_mode(self) -> int:
        return 0o666 & ~self.umask

    @property
    def dir_mode(self) -> int:
        return 0o777 & ~self.umask
