"""The report lock: one holder at a time, who holds it, and no stale lock after a death."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from engine import ConfigError, FileLock, LockHeld
from engine.lock import lock_path
from tests.fakes import ReadOnly


def test_a_second_holder_is_refused_naming_the_first(tmp_path: Path) -> None:
    """While one lock is held, another on the same path is refused with pid, host and time."""
    path = str(tmp_path / "out.csv")
    with FileLock(path, what="report"), pytest.raises(LockHeld) as info:
        FileLock(path, what="report").acquire()
    message = str(info.value)
    assert f"report {path} is in use by this same process" in message
    assert info.value.holder is not None
    assert info.value.holder.pid == os.getpid()
    assert info.value.holder.host == socket.gethostname()


def test_the_lock_file_names_its_holder_and_goes_with_it(tmp_path: Path) -> None:
    """The lock file holds pid, host and start time while held, and is removed on release."""
    path = str(tmp_path / "out.csv")
    lock = FileLock(path)
    lock.acquire()
    holder = orjson.loads(Path(lock_path(path)).read_bytes())
    assert holder["pid"] == os.getpid()
    assert holder["host"] == socket.gethostname()
    assert holder["started"].endswith("Z")
    lock.release()
    lock.release()  # idempotent
    assert not os.path.exists(lock_path(path))
    with FileLock(path):  # and it can be taken again
        pass


def test_a_lock_file_left_by_a_dead_process_does_not_block(tmp_path: Path) -> None:
    """A lock file whose holder died (the kernel dropped its lock) is taken over at once."""
    path = str(tmp_path / "out.csv")
    code = (
        "import os, sys\n"
        "from engine.lock import FileLock\n"
        "FileLock(sys.argv[1]).acquire()\n"
        "os._exit(0)  # dies holding it, as kill -9 would: no release, the file stays\n"
    )
    subprocess.run([sys.executable, "-c", code, path], check=True, timeout=30)
    left = orjson.loads(Path(lock_path(path)).read_bytes())
    assert left["pid"] != os.getpid()

    with FileLock(path):
        assert orjson.loads(Path(lock_path(path)).read_bytes())["pid"] == os.getpid()


def test_a_lock_file_removed_as_it_is_locked_is_not_trusted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Locking a lock file that its holder removed meanwhile starts over on a new file."""
    path = str(tmp_path / "out.csv")
    real_open = os.open
    opened: list[int] = []

    def open_then_lose_it(name: str, flags: int, mode: int = 0o777) -> int:
        fd = real_open(name, flags, mode)
        if name == lock_path(path) and not opened:
            os.unlink(name)  # the holder releases between our open and our flock
        opened.append(fd)
        return fd

    monkeypatch.setattr(os, "open", open_then_lose_it)
    with FileLock(path):
        assert len(opened) == 2  # the first file was dropped, the second one is the lock
        assert os.fstat(opened[1]).st_ino == os.stat(lock_path(path)).st_ino
        with pytest.raises(LockHeld):
            FileLock(path).acquire()


def test_a_missing_folder_is_named(tmp_path: Path) -> None:
    """A lock in a folder that does not exist is a ConfigError naming the folder."""
    path = str(tmp_path / "nope" / "out.csv")
    with pytest.raises(ConfigError, match=r"folder .*nope does not exist"):
        FileLock(path, what="report").acquire()


def test_a_reader_of_an_unwritable_folder_goes_ahead_unlocked(
    tmp_path: Path, read_only: ReadOnly
) -> None:
    """A reader in a read-only folder without a lock file reads: no writer can be there."""
    folder = tmp_path / "archive"
    folder.mkdir()
    path = str(folder / "out.csv")
    read_only.folder(folder)

    with pytest.raises(ConfigError, match="cannot create files in folder"):
        FileLock(path, what="report").acquire()
    with FileLock(path, what="report", reading=True) as lock:
        assert not lock.held
