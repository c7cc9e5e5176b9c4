"""The FUSE mount of an engine: ``wafs mount``, and :func:`mounted` for a ``with`` block.

The mount's modules load libfuse when first used, not when this package is imported, so the
rest of wafs works on a machine without FUSE.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .options import MountOptions

if TYPE_CHECKING:
    from .api import Mount, mounted
    from .daemon import MountError, daemon_pid, mount, mounted_at, refresh, serve, unmount

_FROM_DAEMON = {"MountError", "daemon_pid", "mount", "mounted_at", "refresh", "serve", "unmount"}
_FROM_API = {"Mount", "mounted"}


def __getattr__(name: str) -> Any:
    if name in _FROM_DAEMON:
        return getattr(importlib.import_module(".daemon", __name__), name)
    if name in _FROM_API:
        return getattr(importlib.import_module(".api", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Mount", "MountError", "MountOptions", "daemon_pid", "mount", "mounted", "mounted_at", "refresh",
           "serve", "unmount"]
