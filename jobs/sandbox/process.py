"""Running the sandbox as a process: :func:`serve` blocks until SIGINT or SIGTERM (the CLI's)."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import os
import signal
from collections.abc import Callable, Sequence

from .config import SandboxConfig
from .server import Sandbox

__all__ = ["serve"]


def serve(
    config: SandboxConfig,
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    locations: Sequence[str] = (),
    tokens_file: str | None = None,
    ready: Callable[[str], None] | None = None,
) -> None:
    """Run a sandbox until SIGINT or SIGTERM (blocking).

    Issues tokens for ``locations`` and, if ``tokens_file`` is given, writes them there as
    CSV (header ``location_id,token``, mode 0600) before calling ``ready(url)``.
    """
    asyncio.run(
        _serve(
            config, host=host, port=port, locations=locations, tokens_file=tokens_file, ready=ready
        )
    )


async def _serve(
    config: SandboxConfig,
    *,
    host: str,
    port: int,
    locations: Sequence[str],
    tokens_file: str | None,
    ready: Callable[[str], None] | None,
) -> None:
    sandbox = Sandbox(config)
    tokens = {location: sandbox.issue_token(location) for location in locations}
    url = await sandbox.start(host, port)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    installed: list[signal.Signals] = []
    try:
        if tokens_file is not None:
            _write_tokens(tokens_file, tokens)
        for sig in (signal.SIGINT, signal.SIGTERM):
            # not possible off the main thread or on Windows: then Ctrl-C ends asyncio.run
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, stop.set)
                installed.append(sig)
        if ready is not None:
            ready(url)
        await stop.wait()
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
        await sandbox.aclose()


def _write_tokens(path: str, tokens: dict[str, str]) -> None:
    """Write ``location_id,token`` rows readable by the owner only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # O_CREAT's mode does not apply to a file that already existed
    with os.fdopen(fd, "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["location_id", "token"])
        writer.writerows(tokens.items())
