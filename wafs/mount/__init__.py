"""The FUSE mount of an engine: ``wafs mount``."""

import os
from ctypes.util import find_library

# mfusepy loads libfuse 2 whenever it is installed (bindfs pulls it in) and libfuse 3 otherwise;
# wafs runs on libfuse 3 (Debian's fuse3) on every machine. FUSE_LIBRARY_PATH/NAME still win.
if not (os.environ.get("FUSE_LIBRARY_PATH") or os.environ.get("FUSE_LIBRARY_NAME")) and find_library("fuse3"):
    os.environ["FUSE_LIBRARY_NAME"] = "fuse3"

from .daemon import MountError, MountOptions, daemon_pid, mount, mounted_at, refresh, serve, unmount  # noqa: E402

__all__ = ["MountError", "MountOptions", "daemon_pid", "mount", "mounted_at", "refresh", "serve", "unmount"]
