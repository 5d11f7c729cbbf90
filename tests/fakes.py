"""Test doubles shared by the test suites."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable

import anyio
import anyio.lowlevel

from engine import Request, Response


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
