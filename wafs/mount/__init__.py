"""The FUSE mount of an engine: ``wafs mount``."""

from .daemon import MountError, MountOptions, mount, mounted_at, refresh, serve, unmount

__all__ = ["MountError", "MountOptions", "mount", "mounted_at", "refresh", "serve", "unmount"]
