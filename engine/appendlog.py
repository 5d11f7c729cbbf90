"""An append-only file that is safe to be killed while writing to it.

Each write is flushed to the OS at once, so it survives the process being killed; syncs to
disk are grouped, at most ``sync_interval`` seconds apart, so that power loss costs at most
that much while a run of thousands of rows does not pay one fsync each. Opening an existing
file first cuts a partial last line (a process killed mid-write), so appends start clean.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import IO

__all__ = ["AppendLog", "drop_torn_tail"]


def drop_torn_tail(path: str) -> None:
    """Cut a partial last line left by a process killed mid-write."""
    with open(path, "rb+") as fh:
        size = end = fh.seek(0, os.SEEK_END)
        # Look back block by block: a torn line may be longer than one block.
        while end > 0:
            start = max(0, end - (1 << 16))
            fh.seek(start)
            cut = fh.read(end - start).rfind(b"\n")
            if cut >= 0:
                keep = start + cut + 1
                break
            end = start
        else:
            keep = 0  # no complete line at all
        if keep != size:
            fh.truncate(keep)


class AppendLog:
    """Appends lines to ``path``: flushed per write, synced to disk in groups."""

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
        self._fh: IO[bytes] | None = None
        self._last_sync = 0.0
        self._dirty = False

    def open(self) -> bool:
        """Open for appending; returns True when the file is new or empty."""
        if os.path.exists(self.path):
            drop_torn_tail(self.path)
        self._fh = open(self.path, "ab")  # noqa: SIM115 - kept open for the run
        self._last_sync = self._clock()
        return self._fh.tell() == 0

    def write(self, data: bytes) -> None:
        """Append ``data`` and hand it to the OS; sync to disk at most every interval."""
        if self._fh is None:
            raise RuntimeError(f"{self.path}: write before open()")
        self._fh.write(data)
        self._fh.flush()
        self._dirty = True
        if self._clock() - self._last_sync >= self._sync_interval:
            self.sync()

    def sync(self) -> None:
        """Force what was written to disk."""
        if self._fh is not None and self._dirty:
            os.fsync(self._fh.fileno())
            self._dirty = False
            self._last_sync = self._clock()

    def close(self) -> None:
        """Sync and close."""
        if self._fh is not None:
            self.sync()
            self._fh.close()
            self._fh = None
