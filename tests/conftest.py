"""Shared fixtures: instant retries, a sandbox on 127.0.0.1, job files in a temp folder."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import stamina
import structlog

from jobs.sandbox import Sandbox, SandboxConfig
from tests.fakes import ReadOnly


@pytest.fixture(autouse=True)
def _instant_retries() -> Iterator[None]:
    """Retries keep their attempt counts but never sleep on backoff."""
    stamina.set_testing(True, attempts=100, cap=True)
    yield
    stamina.set_testing(False)


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    """Each test starts from structlog's defaults (the CLI reconfigures it)."""
    yield
    structlog.reset_defaults()


@pytest.fixture
def sandbox_factory() -> Callable[..., Sandbox]:
    """Build a sandbox with settings; the test starts it with ``async with``."""

    def make(**settings: Any) -> Sandbox:
        return Sandbox(SandboxConfig(**settings))

    return make


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    """A running sandbox with the documented limits and no faults."""
    async with Sandbox(SandboxConfig()) as sb:
        yield sb


@pytest.fixture
def read_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[ReadOnly]:
    """Make files and folders read-only for the test, even when it runs as root."""
    fake = ReadOnly(monkeypatch)
    yield fake
    fake.restore()


@pytest.fixture
def write_job(tmp_path: Path) -> Callable[[str, str], str]:
    """Write a job file into the test's folder and return its path."""

    def write(name: str, text: str) -> str:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return str(path)

    return write


@pytest.fixture
def samples() -> Path:
    """The repository's samples folder."""
    return Path(__file__).resolve().parent.parent / "samples"


@pytest.fixture(autouse=True)
def _no_real_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tokens from the developer's environment never reach a test."""
    for name in list(os.environ):
        if name.startswith("GHL_"):
            monkeypatch.delenv(name)


class ThreadedSandbox:
    """A sandbox served from its own thread and loop, for driving the CLI in-process."""

    def __init__(self, config: SandboxConfig) -> None:
        import asyncio
        import threading

        self.sandbox = Sandbox(config)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.url = self.call(self.sandbox.start())

    def call(self, coro: Any) -> Any:
        """Run a coroutine on the sandbox's loop and wait for its result."""
        import asyncio

        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=30)

    def do(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call a plain function on the sandbox's loop (its state is not thread-safe)."""

        async def wrapped() -> Any:
            return fn(*args, **kwargs)

        return self.call(wrapped())

    def tokens_file(self, path: Path, *locations: str) -> str:
        """Write a tokens CSV (mode 600) for ``locations`` and return its path."""
        lines = ["location_id,token"]
        lines += [f"{loc},{self.do(self.sandbox.issue_token, loc)}" for loc in locations]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        path.chmod(0o600)
        return str(path)

    def close(self) -> None:
        self.call(self.sandbox.aclose())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()


@pytest.fixture
def threaded_sandbox() -> Iterator[ThreadedSandbox]:
    """A sandbox on 127.0.0.1 in a background thread (the CLI runs its own loop)."""
    server = ThreadedSandbox(SandboxConfig())
    yield server
    server.close()
