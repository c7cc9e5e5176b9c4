"""The FUSE mount of an engine: ``wafs mount``."""

from .daemon import MountError, daemon_pid, mount, mounted_at, refresh, serve, unmount
from .options import MountOptions

__all__ = ["MountError", "MountOptions", "daemon_pid", "mount", "mounted_at", "refresh", "serve", "unmount"]
