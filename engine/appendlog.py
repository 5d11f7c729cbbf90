"""An append-only file that is safe to be killed while writing to it, or to run out of disk.

Each write is handed to the OS at once (one unbuffered ``write`` per line), so it survives
the process being killed; syncs to disk are grouped, at most ``sync_interval`` seconds apart,
so that power loss costs at most that much while a run of thousands of rows does not pay one
fsync each. Opening an existing file first cuts a partial last line (a process killed
mid-write), so appends start clean.

A write that fails (disk full, quota, I/O error) raises ``StorageError`` and cuts what part
of the line did reach the file, and the log writes nothing more: nothing is left in a buffer
to surface later, so the file never holds a line that its writer was told had failed.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable

from .errors import StorageError

__all__ = ["AppendLog", "drop_torn_tail"]

_BLOCK = 1 << 16


def _cut_torn_tail(fd: int) -> int:
    """Cut a partial last line of the open file ``fd``; return the size kept."""
    size = end = os.lseek(fd, 0, os.SEEK_END)
    keep = 0  # no complete line at all
    # Look back block by block: a torn line may be longer than one block.
    while end > 0:
        start = max(0, end - _BLOCK)
        cut = os.pread(fd, end - start, start).rfind(b"\n")
        if cut >= 0:
            keep = start + cut + 1
            break
        end = start
    if keep != size:
        os.ftruncate(fd, keep)
    return keep


def drop_torn_tail(path: str) -> None:
    """Cut a partial last line left by a process killed mid-write."""
    fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    try:
        _cut_torn_tail(fd)
    finally:
        os.close(fd)


class AppendLog:
    """Appends lines to ``path``: handed to the OS per write, synced to disk in groups."""

    def __init__(
        self,
        path: str,
        *,
        sync_interval: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self._sync_interval = sync_interval
        self._clock = clock
        self._fd: int | None = None
        self._size = 0
        self._last_sync = 0.0
        self._dirty = False
        self._failed: StorageError | None = None

    def open(self) -> bool:
        """Open for appending (raises ``OSError``); returns True when the file is new or
        empty."""
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o666)
        try:
            self._size = _cut_torn_tail(fd)
        except OSError:
            os.close(fd)
            raise
        self._fd = fd
        self._last_sync = self._clock()
        return self._size == 0

    def write(self, data: bytes) -> None:
        """Append ``data`` and hand it to the OS; sync to disk at most every interval.

        Raises ``StorageError`` when the file cannot take it (and from then on)."""
        fd = self._fd
        if fd is None:
            raise RuntimeError(f"{self.path}: write before open()")
        if self._failed is not None:
            raise self._failed
        try:
            written = os.write(fd, data)
            if written < len(data):  # a short write (rare): hand over the rest
                view = memoryview(data)[written:]
                while view:
                    view = view[os.write(fd, view) :]
        except OSError as exc:
            failure = self._failed = StorageError(self.path, exc)
            # A line is all or nothing: cut the part that made it (never needs space).
            with contextlib.suppress(OSError):
                os.ftruncate(fd, self._size)
            raise failure from exc
        self._size += len(data)
        self._dirty = True
        if self._clock() - self._last_sync >= self._sync_interval:
            self.sync()

    @property
    def failed(self) -> StorageError | None:
        """The error that stopped this log, if any."""
        return self._failed

    def sync(self) -> None:
        """Force what was written to disk (raises ``StorageError`` when that fails)."""
        if self._fd is not None and self._dirty and self._failed is None:
            try:
                os.fsync(self._fd)
            except OSError as exc:
                failure = self._failed = StorageError(self.path, exc)
                raise failure from exc
            self._dirty = False
            self._last_sync = self._clock()

    def close(self) -> None:
        """Sync and close; the file is closed even when the sync fails (which raises)."""
        if self._fd is None:
            return
        try:
            self.sync()
        finally:
            os.close(self._fd)
            self._fd = None
