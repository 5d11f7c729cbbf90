"""Test doubles shared by the test suites."""

from __future__ import annotations

import asyncio
import builtins
import errno
import os
import selectors
import socket
import stat
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

import anyio
import anyio.lowlevel
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from engine import Request, Response

T = TypeVar("T")


class FakeClock:
    """Deterministic time for code that takes ``clock`` and ``sleep`` callables.

    Pass ``clock.time`` (or the clock itself) and ``clock.sleep``. With ``auto=True``,
    ``sleep(d)`` advances time by ``d`` at once and yields, so waits cost no wall time.
    With ``auto=False``, ``sleep(d)`` blocks until the test calls :meth:`advance` past its
    deadline, which lets a test hold a task inside a timed wait (to cancel it, say).
    """

    def __init__(self, start: float = 0.0, *, auto: bool = True) -> None:
        self.now = start
        self.auto = auto
        self.sleeps: list[float] = []  # every requested sleep, in order
        self._moved: anyio.Event | None = None

    def time(self) -> float:
        return self.now

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        deadline = self.now + max(seconds, 0.0)
        if self.auto:
            self.now = max(self.now, deadline)
            await anyio.lowlevel.checkpoint()
            return
        if self.now >= deadline:
            await anyio.lowlevel.checkpoint()
        while self.now < deadline:
            if self._moved is None:
                self._moved = anyio.Event()
            await self._moved.wait()

    def advance(self, seconds: float) -> None:
        """Move time forward and wake manual-mode sleepers whose deadline has passed."""
        self.now += seconds
        if self._moved is not None:
            self._moved.set()
            self._moved = None


class FakeTransport:
    """A ``Transport`` that answers from a handler or a script and records every request.

    ``FakeTransport(handler)`` calls ``handler(request)`` for each request;
    ``FakeTransport([item, ...])`` answers the requests with the items in order. An item or
    handler result that is an exception is raised instead of answering. Every request the
    transport received, exactly as it received it, is in ``requests``.
    """

    def __init__(
        self,
        handler: Callable[[Request], Response | Exception] | Iterable[Response | Exception],
    ) -> None:
        self._handler: Callable[[Request], Response | Exception] | None = None
        self._script: deque[Response | Exception] = deque()
        if callable(handler):
            self._handler = handler
        else:
            self._script.extend(handler)
        self.requests: list[Request] = []
        self.closed = False

    async def send(self, request: Request) -> Response:
        self.requests.append(request)
        await anyio.lowlevel.checkpoint()
        if self._handler is not None:
            result = self._handler(request)
        elif self._script:
            result = self._script.popleft()
        else:
            raise AssertionError(f"FakeTransport: no scripted answer left for {request!r}")
        if isinstance(result, Exception):
            raise result
        return result

    async def aclose(self) -> None:
        self.closed = True


_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


class ReadOnly:
    """Read-only files and folders that bind root too, for the engine's file code.

    ``chmod`` does not stop root, and tests may run as root; so, besides removing the write
    permission for real, this fake makes ``os.open`` (which the engine uses for every file
    it writes), ``open`` for writing, ``os.unlink`` and ``os.replace`` refuse with
    ``EACCES`` what a read-only file or folder would refuse to anyone else. ``restore`` puts
    the permissions back.
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self._files: set[str] = set()
        self._folders: set[str] = set()
        self._modes: dict[str, int] = {}
        real_open, real_unlink, real_replace = os.open, os.unlink, os.replace

        def refused(path: str) -> PermissionError:
            return PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)

        def fake_open(path: Any, flags: int, mode: int = 0o777, **kw: Any) -> int:
            full = os.path.abspath(path)
            if flags & _WRITE_FLAGS:
                if full in self._files:
                    raise refused(path)
                if os.path.dirname(full) in self._folders and not os.path.exists(full):
                    raise refused(path)
            return real_open(path, flags, mode, **kw)

        def fake_unlink(path: Any, **kw: Any) -> None:
            if os.path.dirname(os.path.abspath(path)) in self._folders:
                raise refused(path)
            real_unlink(path, **kw)

        def fake_replace(src: Any, dst: Any, **kw: Any) -> None:
            for path in (src, dst):
                if os.path.dirname(os.path.abspath(path)) in self._folders:
                    raise refused(path)
            real_replace(src, dst, **kw)

        real_builtin_open = builtins.open

        def fake_builtin_open(file: Any, mode: str = "r", *args: Any, **kw: Any) -> Any:
            if isinstance(file, str | os.PathLike) and set(mode) & set("wax+"):
                full = os.path.abspath(file)
                if full in self._files or (
                    os.path.dirname(full) in self._folders and not os.path.exists(full)
                ):
                    raise refused(os.fspath(file))
            return real_builtin_open(file, mode, *args, **kw)

        monkeypatch.setattr(os, "open", fake_open)
        monkeypatch.setattr(builtins, "open", fake_builtin_open)
        monkeypatch.setattr(os, "unlink", fake_unlink)
        monkeypatch.setattr(os, "replace", fake_replace)

    def _chmod(self, path: str, mode: int) -> None:
        self._modes.setdefault(path, stat.S_IMODE(os.stat(path).st_mode))
        os.chmod(path, mode)

    def file(self, path: str | os.PathLike[str]) -> None:
        """Make a file read-only."""
        full = os.path.abspath(path)
        self._files.add(full)
        self._chmod(full, 0o444)

    def folder(self, path: str | os.PathLike[str]) -> None:
        """Make a folder read-only: nothing can be created in it or removed from it."""
        full = os.path.abspath(path)
        self._folders.add(full)
        self._chmod(full, 0o555)

    def restore(self) -> None:
        """Give back the write permissions (so that the test's folder can be cleaned up)."""
        for path, mode in self._modes.items():
            os.chmod(path, mode)
        self._files.clear()
        self._folders.clear()


class FakeResolver(AbstractResolver):
    """An aiohttp resolver that never leaves the machine: every name in ``known`` is
    127.0.0.1, every other one fails as the system's resolver fails for a name that does not
    exist (``socket.gaierror`` EAI_NONAME). Names it was asked for are in ``asked``."""

    def __init__(self, *known: str) -> None:
        self.known = set(known)
        self.asked: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.asked.append(host)
        await anyio.lowlevel.checkpoint()
        if host.rstrip(".") not in self.known:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [
            ResolveResult(
                hostname=host, host="127.0.0.1", port=port, family=socket.AF_INET, proto=0, flags=0
            )
        ]

    async def close(self) -> None:
        pass


class _InstantSelector:
    """Wraps a selector so that waiting for I/O never blocks: the loop's time jumps instead."""

    def __init__(self, inner: selectors.BaseSelector, loop: VirtualTimeLoop) -> None:
        self._inner = inner
        self._loop = loop

    def select(self, timeout: float | None = None) -> list[Any]:
        ready = self._inner.select(0)
        if not ready:
            if timeout is None:
                raise RuntimeError("VirtualTimeLoop: every task waits and no timer is set")
            self._loop.advance(timeout)
        return ready

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An asyncio loop on virtual time: whenever every task waits, time jumps to the next
    timer. Sleeps, timeouts and rate windows then cost no wall time, and concurrent tasks
    still see one consistent clock (``loop.time``), which ``FakeClock`` cannot give them.
    Only for code that does no real I/O."""

    def __init__(self) -> None:
        super().__init__()
        self._virtual_now = 0.0
        self._selector = _InstantSelector(self._selector, self)  # type: ignore[has-type]

    def time(self) -> float:
        return self._virtual_now

    def advance(self, seconds: float) -> None:
        self._virtual_now += max(seconds, 0.0)


def run_virtual(main: Callable[[], Awaitable[T]]) -> T:
    """Run ``main()`` to the end on a fresh :class:`VirtualTimeLoop`."""
    loop = VirtualTimeLoop()
    try:
        return loop.run_until_complete(main())
    finally:
        loop.close()
