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
from dataclasses import dataclass

from .config import SandboxConfig
from .server import Sandbox

__all__ = ["AgencySetup", "ServeError", "serve"]


@dataclass(frozen=True, slots=True, kw_only=True)
class AgencySetup:
    """A company to create at start: ``count`` sub-accounts, the app installed in all but
    the last ``not_installed``; its agency token is written to ``token_file`` (mode 0600)."""

    company_id: str
    count: int
    not_installed: int = 0
    token_file: str | None = None


class ServeError(Exception):
    """The sandbox cannot start serving; the message is one line for a person."""


def serve(
    config: SandboxConfig,
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    locations: Sequence[str] = (),
    tokens_file: str | None = None,
    agency: AgencySetup | None = None,
    ready: Callable[[str], None] | None = None,
) -> None:
    """Run a sandbox until SIGINT or SIGTERM (blocking).

    Issues tokens for ``locations`` and, if ``tokens_file`` is given, writes them there as
    CSV (header ``location_id,token``, mode 0600), and creates the ``agency`` company,
    before calling ``ready(url)``. Raises ``ServeError`` when it cannot listen on host:port
    or write the tokens files.
    """
    asyncio.run(
        _serve(
            config,
            host=host,
            port=port,
            locations=locations,
            tokens_file=tokens_file,
            agency=agency,
            ready=ready,
        )
    )


async def _serve(
    config: SandboxConfig,
    *,
    host: str,
    port: int,
    locations: Sequence[str],
    tokens_file: str | None,
    agency: AgencySetup | None,
    ready: Callable[[str], None] | None,
) -> None:
    sandbox = Sandbox(config)
    tokens = {location: sandbox.issue_token(location) for location in locations}
    agency_token = ""
    if agency is not None:
        agency_token = sandbox.add_company(agency.company_id, count=agency.count)
        made = sandbox.company_locations(agency.company_id)
        for item in made[len(made) - agency.not_installed :] if agency.not_installed else ():
            sandbox.install(item["id"], installed=False)
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
        if agency is not None and agency.token_file is not None:
            try:
                _write_private(agency.token_file, agency_token + "\n")
            except OSError as exc:
                raise ServeError(
                    _tokens_file_error(exc, agency.token_file, what="agency token file")
                ) from None
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


def _open_private(path: str) -> int:
    """A file descriptor for writing ``path`` from scratch, readable by the owner only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # O_CREAT's mode does not apply to a file that already existed
    return fd


def _write_tokens(path: str, tokens: dict[str, str]) -> None:
    """Write ``location_id,token`` rows readable by the owner only."""
    with os.fdopen(_open_private(path), "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["location_id", "token"])
        writer.writerows(tokens.items())


def _write_private(path: str, text: str) -> None:
    """Write ``text`` to a file readable by the owner only."""
    with os.fdopen(_open_private(path), "w", encoding="utf-8") as file:
        file.write(text)


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


def _tokens_file_error(exc: OSError, path: str, *, what: str = "tokens file") -> str:
    folder = os.path.dirname(path) or "."
    if isinstance(exc, FileNotFoundError):
        return f"cannot write {what} {path}: folder {folder} does not exist"
    if isinstance(exc, NotADirectoryError):
        return f"cannot write {what} {path}: {folder} is not a folder"
    if isinstance(exc, IsADirectoryError):
        return f"cannot write {what} {path}: it is a folder"
    if isinstance(exc, PermissionError):
        return f"cannot write {what} {path}: permission denied"
    return f"cannot write {what} {path}: {exc.strerror or exc}"
