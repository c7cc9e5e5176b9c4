"""Copy every key (or those under a prefix) from one engine to another, in batches.

A copy overwrites keys that already exist in the destination and deletes nothing there, so
running it again after an interruption finishes the job: keys copied the first time are
written once more with the same value, the rest are written for the first time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from .engine import Engine
from .errors import BackendUnavailableError, InvalidKeyError, NoSpaceError, WafsError
from .keys import check_key

#: Errors that stop the whole copy: retrying key by key cannot help.
FATAL_ERRORS = (BackendUnavailableError, NoSpaceError)

Progress = Callable[[int, int], None]


@dataclass
class CopyReport:
    """What a copy did: keys and UTF-8 bytes written, wall time, and the keys it could not copy."""

    keys: int = 0
    bytes: int = 0
    seconds: float = 0.0
    failed: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every key was copied."""
        return not self.failed


def _source_keys(src: Engine, prefix: str) -> list[str]:
    """The keys to copy, oldest first when the source orders by write time.

    Writing oldest first gives a newest-first destination the source's order.
    """
    if src.ordering == "newest-first":
        return src.list(prefix, 0, None)[::-1]
    return list(src.iter_keys(prefix))


def _read(src: Engine, keys: list[str], report: CopyReport) -> dict[str, str]:
    """Read a batch; on a batch error, read key by key and record the keys that fail."""
    try:
        values = src.get_many(keys)
    except FATAL_ERRORS:
        raise
    except WafsError:
        values = {}
        for key in keys:
            try:
                values[key] = src.get(key)
            except FATAL_ERRORS:
                raise
            except WafsError as exc:
                report.failed.append((key, f"cannot read: {exc}"))
    # Listed but not there when read: deleted meanwhile, or a store that lists what it cannot
    # read. Either way it was not copied, and the copy says so rather than succeed without it.
    for key, value in values.items():
        if value is None:
            report.failed.append((key, "listed, but not found when read (deleted meanwhile?)"))
    return {key: value for key, value in values.items() if value is not None}


def _write(dst: Engine, items: Mapping[str, str], report: CopyReport) -> None:
    """Write a batch; on a batch error, write key by key and record the keys that fail."""
    try:
        dst.set_many(items)
        written: Iterable[tuple[str, str]] = items.items()
    except FATAL_ERRORS:
        raise
    except WafsError:
        written = []
        for key, value in items.items():
            try:
                dst.set(key, value)
            except FATAL_ERRORS:
                raise
            except WafsError as exc:
                report.failed.append((key, f"cannot write: {exc}"))
            else:
                written.append((key, value))
    for _, value in written:
        report.keys += 1
        report.bytes += len(value.encode("utf-8"))


def copy_engine(
    src: Engine,
    dst: Engine,
    prefix: str = "",
    batch: int = 500,
    progress: Progress | None = None,
) -> CopyReport:
    """Copy every key of ``src`` that starts with ``prefix`` into ``dst``; return a report.

    Reads ``batch`` keys at a time with ``get_many`` and writes them with ``set_many`` (one
    round trip or transaction per batch in engines that can). A key that breaks the key
    rules, that one engine refuses (a key ``a`` beside ``a/b`` in a FileEngine), whose value
    cannot be read, or that was listed but is gone when read, is listed in
    :attr:`CopyReport.failed` and the copy goes on: the report is never ``ok`` with a key
    skipped. A store that is down or full stops the
    copy with its error; running the copy again completes it. ``progress(done, total)`` is
    called after every batch, ``done`` counting the keys handled so far.
    """
    if batch < 1:
        raise ValueError(f"batch must be >= 1, not {batch!r}")
    started = time.monotonic()
    report = CopyReport()
    keys = _source_keys(src, prefix)
    total = len(keys)
    for start in range(0, total, batch):
        chunk = keys[start:start + batch]
        valid = []
        for key in chunk:
            try:
                valid.append(check_key(key))
            except InvalidKeyError as exc:
                report.failed.append((key, f"breaks the key rules: {exc}"))
        if valid:
            _write(dst, _read(src, valid, report), report)
        if progress is not None:
            progress(start + len(chunk), total)
    report.seconds = time.monotonic() - started
    return report


__all__ = ["CopyReport", "copy_engine"]
