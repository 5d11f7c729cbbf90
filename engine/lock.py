"""One process at a time per report: an exclusive lock held for as long as a run uses it.

Two runs appending to one report and journal each believe their own view of what is
settled; the last rewrite wins and facts of the other are lost. So a run (and a rollback,
for its own report and the reports it reads) holds ``<report>.lock`` for its whole life.

The lock is ``flock(LOCK_EX | LOCK_NB)``: a second process is refused at once rather than
queued, and the kernel releases the lock when its holder exits in any way, ``kill -9``
included, so a lock left behind by a dead process never blocks the resume that follows (the
file may stay, the lock does not). The file holds the holder's pid, host and start time,
only so that a refused process can say who holds it.

The holder removes the file when it is done. A process that opened the file just before that
removal may then lock the removed file; so after locking, the path is checked to still name
the locked file, and the attempt starts over when it does not.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
import time
from dataclasses import dataclass
from types import TracebackType

import orjson

from .errors import ConfigError, os_error_text

__all__ = ["FileLock", "LockHeld", "LockHolder", "lock_path"]

_ATTEMPTS = 20
_NOT_WRITABLE = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})


def lock_path(path: str) -> str:
    """The lock file that guards ``path``."""
    return f"{path}.lock"


@dataclass(frozen=True, slots=True, kw_only=True)
class LockHolder:
    """Who holds a lock, as its lock file says."""

    pid: int
    host: str
    started: str  #: UTC, ISO 8601

    def __str__(self) -> str:
        return f"pid {self.pid} on {self.host}, started {self.started}"


class LockHeld(ConfigError):
    """Another process holds the lock: nothing was done."""

    def __init__(self, path: str, holder: LockHolder | None, *, what: str):
        self.path = path
        self.holder = holder
        by = f"another process ({holder})" if holder else "another process"
        if holder and holder.pid == os.getpid() and holder.host == socket.gethostname():
            by = "this same process"
        super().__init__(
            f"{what} {path} is in use by {by}: two runs on one {what} would lose track of "
            "what each created; wait for it to finish (or stop it), then try again"
        )


def _holder(fd: int) -> LockHolder | None:
    try:
        item = orjson.loads(os.pread(fd, 4096, 0))
        return LockHolder(pid=int(item["pid"]), host=str(item["host"]), started=item["started"])
    except (OSError, ValueError, KeyError, TypeError):
        return None  # being written right now, or not ours


def _cannot(path: str, what: str, exc: OSError) -> ConfigError:
    folder = os.path.dirname(os.path.abspath(path))
    if exc.errno == errno.ENOENT:
        reason = f"folder {folder} does not exist; create it first"
    elif exc.errno in _NOT_WRITABLE:
        reason = f"cannot create files in folder {folder} ({os_error_text(exc)})"
    else:
        reason = f"cannot create {lock_path(path)} ({os_error_text(exc)})"
    return ConfigError(f"{what} {path}: {reason}, or choose another path")


class FileLock:
    """An exclusive lock on ``path`` (through ``path.lock``), held between ``acquire`` and
    ``release``, or as a context manager.

    ``reading`` is for a process that only reads ``path``: when its folder is not writable
    and holds no lock file, no writer can be at work there (a writer must create the lock
    file first), so the read goes ahead without a lock.
    """

    def __init__(self, path: str, *, what: str = "file", reading: bool = False) -> None:
        self.path = path
        self.what = what
        self._lock_file = lock_path(path)
        self._reading = reading
        self._fd: int | None = None
        self._owns_file = False

    def acquire(self) -> None:
        """Take the lock or raise ``LockHeld`` (someone has it) or ``ConfigError`` (the lock
        file cannot be made: missing or read-only folder, full disk)."""
        if self._fd is not None:
            raise RuntimeError(f"{self._lock_file}: acquired twice")
        for _ in range(_ATTEMPTS):
            fd, writable = self._open()
            if fd is None:
                return
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _holder(fd)
                os.close(fd)
                raise LockHeld(self.path, holder, what=self.what) from None
            except OSError as exc:
                os.close(fd)
                raise ConfigError(
                    f"{self.what} {self.path}: cannot lock {self._lock_file} ({os_error_text(exc)})"
                ) from None
            if not self._still_there(fd):
                os.close(fd)  # its holder removed it as we locked it: start over
                continue
            self._fd, self._owns_file = fd, writable
            if writable:
                self._write_holder(fd)
            return
        raise ConfigError(f"{self.what} {self.path}: {self._lock_file} keeps being replaced")

    def _open(self) -> tuple[int | None, bool]:
        flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC
        try:
            return os.open(self._lock_file, flags, 0o644), True
        except OSError as exc:
            if not (self._reading and exc.errno in _NOT_WRITABLE):
                raise _cannot(self.path, self.what, exc) from None
        try:
            return os.open(self._lock_file, os.O_RDONLY | os.O_CLOEXEC), False
        except FileNotFoundError:
            return None, False
        except OSError as exc:
            raise _cannot(self.path, self.what, exc) from None

    def _still_there(self, fd: int) -> bool:
        try:
            now = os.stat(self._lock_file)
        except FileNotFoundError:
            return False
        mine = os.fstat(fd)
        return (now.st_dev, now.st_ino) == (mine.st_dev, mine.st_ino)

    def _write_holder(self, fd: int) -> None:
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, orjson.dumps(holder) + b"\n", 0)
        except OSError as exc:
            if not self._reading:  # a run that cannot write this cannot write its report
                self.release()
                raise _cannot(self.path, self.what, exc) from None

    def release(self) -> None:
        """Remove the lock file (still holding the lock) and let go. Idempotent."""
        if self._fd is None:
            return
        if self._owns_file:  # a failure leaves the file; the lock goes with the descriptor
            with contextlib.suppress(OSError):
                os.unlink(self._lock_file)
        os.close(self._fd)
        self._fd = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock now."""
        return self._fd is not None

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
