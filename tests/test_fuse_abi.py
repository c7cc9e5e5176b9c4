"""The ctypes layouts of wafs.mount.fuse against libfuse 3's own headers, through the C compiler.

The binding needs no compiler at run time; this test builds a tiny C program against
``fuse_lowlevel.h`` (Debian's libfuse3-dev, installed by ``scripts/setup --test``) and checks
every size and offset the binding relies on.
"""

from __future__ import annotations

import ctypes
import math
import shutil
import subprocess
from pathlib import Path

import pytest

from wafs.mount import fuse

PROGRAM = r"""
#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>
#include <stdio.h>
#include <stddef.h>
#include <sys/statvfs.h>
#define SHOW(name, value) printf("%s %zu\n", name, (size_t)(value))
int main(void) {
    SHOW("stat", sizeof(struct stat));
    SHOW("stat.st_ino", offsetof(struct stat, st_ino));
    SHOW("stat.st_mode", offsetof(struct stat, st_mode));
    SHOW("stat.st_nlink", offsetof(struct stat, st_nlink));
    SHOW("stat.st_size", offsetof(struct stat, st_size));
    SHOW("stat.st_blocks", offsetof(struct stat, st_blocks));
    SHOW("stat.st_mtim", offsetof(struct stat, st_mtim));
    SHOW("file_info", sizeof(struct fuse_file_info));
    SHOW("file_info.fh", offsetof(struct fuse_file_info, fh));
    SHOW("file_info.lock_owner", offsetof(struct fuse_file_info, lock_owner));
    SHOW("entry_param", sizeof(struct fuse_entry_param));
    SHOW("entry_param.attr", offsetof(struct fuse_entry_param, attr));
    SHOW("entry_param.attr_timeout", offsetof(struct fuse_entry_param, attr_timeout));
    SHOW("entry_param.entry_timeout", offsetof(struct fuse_entry_param, entry_timeout));
    SHOW("conn_info", sizeof(struct fuse_conn_info));
    SHOW("conn_info.want", offsetof(struct fuse_conn_info, want));
    SHOW("statvfs", sizeof(struct statvfs));
    SHOW("ops", sizeof(struct fuse_lowlevel_ops));
    SHOW("ops.create", offsetof(struct fuse_lowlevel_ops, create));
    SHOW("ops.forget_multi", offsetof(struct fuse_lowlevel_ops, forget_multi));
    SHOW("ops.readdirplus", offsetof(struct fuse_lowlevel_ops, readdirplus));
    SHOW("buf", sizeof(struct fuse_buf));
    SHOW("buf.mem", offsetof(struct fuse_buf, mem));
    SHOW("buf.fd", offsetof(struct fuse_buf, fd));
    SHOW("buf.pos", offsetof(struct fuse_buf, pos));
    SHOW("bufvec", sizeof(struct fuse_bufvec));
    SHOW("bufvec.buf", offsetof(struct fuse_bufvec, buf));
    struct fuse_file_info fi = {0};
    fi.direct_io = 1; fi.keep_cache = 1; fi.noflush = 1;
    SHOW("file_info.bits", *(unsigned *)((char *)&fi + sizeof(int)));
    return 0;
}
"""


def _from_c(tmp_path: Path) -> dict[str, int]:
    compiler = shutil.which("cc") or shutil.which("gcc")
    assert compiler, "no C compiler: apt-get install gcc"
    headers = Path("/usr/include/fuse3/fuse_lowlevel.h")
    assert headers.exists(), "no libfuse 3 headers: apt-get install libfuse3-dev"
    source = tmp_path / "layout.c"
    source.write_text(PROGRAM)
    binary = tmp_path / "layout"
    command = [compiler, "-D_FILE_OFFSET_BITS=64", "-I/usr/include/fuse3", str(source), "-o", str(binary)]
    subprocess.run(command, check=True, capture_output=True, text=True)
    output = subprocess.run([str(binary)], check=True, capture_output=True, text=True).stdout
    return {name: int(value) for name, value in (line.split() for line in output.splitlines())}


def test_the_binding_matches_libfuse_headers(tmp_path: Path) -> None:
    info = fuse.FileInfo()
    info.direct_io = info.keep_cache = info.noflush = 1
    bits = int.from_bytes(bytes(info)[ctypes.sizeof(ctypes.c_int):][:4], "little")
    ours = {
        "stat": ctypes.sizeof(fuse.Stat),
        "stat.st_ino": fuse.Stat.st_ino.offset,
        "stat.st_mode": fuse.Stat.st_mode.offset,
        "stat.st_nlink": fuse.Stat.st_nlink.offset,
        "stat.st_size": fuse.Stat.st_size.offset,
        "stat.st_blocks": fuse.Stat.st_blocks.offset,
        "stat.st_mtim": fuse.Stat.st_mtim.offset,
        "file_info": ctypes.sizeof(fuse.FileInfo),
        "file_info.fh": fuse.FileInfo.fh.offset,
        "file_info.lock_owner": fuse.FileInfo.lock_owner.offset,
        "entry_param": ctypes.sizeof(fuse.EntryParam),
        "entry_param.attr": fuse.EntryParam.attr.offset,
        "entry_param.attr_timeout": fuse.EntryParam.attr_timeout.offset,
        "entry_param.entry_timeout": fuse.EntryParam.entry_timeout.offset,
        "conn_info": ctypes.sizeof(fuse.ConnInfo),
        "conn_info.want": fuse.ConnInfo.want.offset,
        "statvfs": ctypes.sizeof(fuse.StatVfs),
        "ops": ctypes.sizeof(fuse.LowLevelOps),
        "ops.create": fuse.LowLevelOps.create.offset,
        "ops.forget_multi": fuse.LowLevelOps.forget_multi.offset,
        "ops.readdirplus": fuse.LowLevelOps.readdirplus.offset,
        "buf": ctypes.sizeof(fuse.Buf),
        "buf.mem": fuse.Buf.mem.offset,
        "buf.fd": fuse.Buf.fd.offset,
        "buf.pos": fuse.Buf.pos.offset,
        "bufvec": ctypes.sizeof(fuse.BufVec),
        "bufvec.buf": fuse.BufVec.buf.offset,
        "file_info.bits": bits,
    }
    assert ours == _from_c(tmp_path)


ENTRIES = [
    (b".", fuse.Entry(fuse.Attributes(1, 0o40755, 0, 1_764_000_000_123_456_789, 2, 0, 0), 86400.0, 86400.0)),
    (b"index", fuse.Entry(fuse.Attributes(2**62 + 7, 0o100600, 1234567, 5, 1, 1000, 1000), 1.0, 0.0)),
    (b"x" * 255, fuse.Entry(fuse.Attributes(99, 0o100644, 0, 0, 1, 0, 0), 0.25, 1.5)),
    ("Ana García".encode(), fuse.Entry(fuse.Attributes(3, 0o40700, 0, 10**18, 2, 0, 0), math.inf, 1 - 1e-9)),
]


@pytest.mark.parametrize(("name", "entry"), ENTRIES, ids=["dot", "file", "long name", "directory"])
def test_listing_entries_are_packed_as_libfuse_packs_them(name: bytes, entry: fuse.Entry) -> None:
    reference = fuse._lib.fuse_add_direntry_plus
    reference.restype = ctypes.c_size_t
    reference.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p,
                          ctypes.POINTER(fuse.EntryParam), ctypes.c_int64]
    param = fuse.EntryParam()
    fuse._fill_entry(param, entry)
    size = fuse.direntplus_size(name)
    theirs = ctypes.create_string_buffer(size + 16)
    assert reference(None, theirs, size + 16, name, ctypes.byref(param), 42) == size
    ours = bytearray(size + 16)
    fuse.pack_direntplus(ours, 0, name, entry, 42)
    assert bytes(ours) == theirs.raw
