"""Running the sandbox as a process: :func:`serve` blocks until SIGINT or SIGTERM (the CLI's).

What a person gets wrong when starting it (a port in use, a host that is not this machine's,
a tokens file in a folder that does not exist) raises :class:`ServeError`, one line that
says what to do, after closing whatever had started. (The sandbox stands on its own: it
does not use the engine's errors.)
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import errno
import os
import signal
import socket
from collections.abc import Callable, Sequence

from .config import SandboxConfig
from .server import Sandbox

__all__ = ["ServeError", "serve"]


class ServeError(Exception):
    """The sandbox cannot start serving; the message is one line for a person."""


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
    CSV (header ``location_id,token``, mode 0600) before calling ``ready(url)``. Raises
    ``ServeError`` when it cannot listen on host:port or write the tokens file.
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
    try:
        url = await sandbox.start(host, port)
    except OSError as exc:
        raise ServeError(_listen_error(exc, host, port)) from None
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    installed: list[signal.Signals] = []
    try:
        if tokens_file is not None:
            try:
                _write_tokens(tokens_file, tokens)
            except OSError as exc:
                raise ServeError(_tokens_file_error(exc, tokens_file)) from None
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


def _listen_error(exc: OSError, host: str, port: int) -> str:
    where = f"{host}:{port}"
    if isinstance(exc, socket.gaierror):
        return f"cannot listen on {where}: host {host!r} is not known"
    if exc.errno == errno.EADDRINUSE:
        return (
            f"cannot listen on {where}: port {port} is already in use (another sandbox?); "
            "pass another --port, or --port 0 for any free one"
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"cannot listen on {where}: {host} is not an address of this machine"
    if exc.errno == errno.EACCES:
        return (
            f"cannot listen on {where}: port {port} needs privileges; pass a port above 1023, "
            "or --port 0 for any free one"
        )
    return f"cannot listen on {where}: {exc.strerror or exc}"


def _tokens_file_error(exc: OSError, path: str) -> str:
    folder = os.path.dirname(path) or "."
    if isinstance(exc, FileNotFoundError):
        return f"cannot write tokens file {path}: folder {folder} does not exist"
    if isinstance(exc, NotADirectoryError):
        return f"cannot write tokens file {path}: {folder} is not a folder"
    if isinstance(exc, IsADirectoryError):
        return f"cannot write tokens file {path}: it is a folder"
    if isinstance(exc, PermissionError):
        return f"cannot write tokens file {path}: permission denied"
    return f"cannot write tokens file {path}: {exc.strerror or exc}"
