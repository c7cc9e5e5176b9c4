"""The FUSE mount of an engine: ``wafs mount``."""

from .daemon import MountError, MountOptions, daemon_pid, mount, mounted_at, refresh, serve, unmount

__all__ = ["MountError", "MountOptions", "daemon_pid", "mount", "mounted_at", "refresh", "serve", "unmount"]
