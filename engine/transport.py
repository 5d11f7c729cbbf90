"""The one seam between the engine and HTTP.

``Transport`` is what the engine calls; ``AiohttpTransport`` is the only place that imports
aiohttp. It owns one ``ClientSession`` for the whole run, reads the body inside the seam and
returns our own frozen ``Response``, and translates aiohttp's exceptions into ours so that
nothing foreign escapes.

The translation keeps one distinction the engine depends on: a request that never reached
the server (no connection: the DNS lookup failed, the port refused, the TLS handshake or the
certificate failed, the connect timed out) is a ``ConnectFailed``; one that may have reached
it (reset or dropped after sending, timed out waiting for the answer) is a plain
``TransportError`` or ``AttemptTimeout``. Only the second makes a write's effect unknown,
and only the first, repeated, means the host cannot be reached at all. aiohttp draws the
same line: its ``ClientConnectorError`` family (DNS, SSL and certificate errors included) and
``ConnectionTimeoutError`` are raised while connecting, before anything is sent, and it
never retries them itself.

Every request says who sent it: ``User-Agent: ghl-migrate/0.1.0 (pid 4242)`` (see
:func:`user_agent`), so that a server's logs can tell the processes of a sharded run apart,
and a support request can name the tool and its version.
"""

from __future__ import annotations

import errno
import os
import time
from types import TracebackType
from typing import Protocol
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver

from . import __version__
from .errors import AttemptTimeout, ConnectFailed, TransportError
from .model import Request, Response

__all__ = ["AiohttpTransport", "Transport", "user_agent"]


def user_agent() -> str:
    """``ghl-migrate/VERSION (pid PID)``: the tool, its version and this process."""
    # A constant, not importlib.metadata: reading the installed metadata cost every run
    # ~5 ms of start-up (the module's import and a scan of the installed distributions).
    return f"ghl-migrate/{__version__} (pid {os.getpid()})"


class Transport(Protocol):
    """Sends one request and returns the whole response, or raises ``TransportError``."""

    async def send(self, request: Request) -> Response: ...

    async def aclose(self) -> None: ...


class AiohttpTransport:
    """A ``Transport`` over one shared ``aiohttp.ClientSession``.

    ``timeout`` is the per-attempt budget in seconds (connect + send + read the body), of
    which making a new connection may take at most ``connect_timeout`` (a connect that
    takes longer is a lost packet or a host that drops connections, and is retried as a
    ``ConnectFailed``). ``limit`` caps open connections overall. ``resolver`` replaces the
    system's DNS resolver (tests use one that never leaves the machine).
    """

    def __init__(
        self,
        *,
        timeout: float = 30.0,
        limit: int = 100,
        connect_timeout: float = 10.0,
        resolver: AbstractResolver | None = None,
    ) -> None:
        self._timeout = aiohttp.ClientTimeout(
            total=timeout, sock_connect=min(timeout, connect_timeout)
        )
        self._limit = limit
        self._resolver = resolver
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        # Created lazily so that it binds to the running loop, never at import time.
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self._limit, limit_per_host=self._limit, resolver=self._resolver
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=self._timeout,
                raise_for_status=False,
                headers={"User-Agent": user_agent()},  # a request's own headers win
                # No cookies: the session is shared by every location, so a cookie one
                # location's answer set would go out with the others' requests. Each
                # request carries its own token and nothing else (and skipping the jar
                # saves about 3% of a request's CPU).
                cookie_jar=aiohttp.DummyCookieJar(),
            )
            # aiohttp resends a GET, PUT or DELETE once, silently, when its kept-alive
            # connection drops: the engine would count one attempt and see only the second
            # answer (a DELETE's 404 after the first one was applied). Every resend must be
            # the engine's own, counted and marked ambiguous. No public switch exists
            # (aio-libs/aiohttp#10790); this attribute is the one aiohttp's tests use.
            self._session._retry_connection = False
        return self._session

    async def send(self, request: Request) -> Response:
        session = self._get_session()
        started = time.monotonic()
        headers = dict(request.headers)
        body = request.body
        if body is not None:
            headers.setdefault("Content-Type", "application/json")
        try:
            async with session.request(
                request.method,
                request.url,
                params=dict(request.params) or None,
                headers=headers,
                data=body,
                allow_redirects=False,
            ) as resp:
                payload = await resp.read()
                return Response(
                    status=resp.status,
                    headers={k.lower(): v for k, v in resp.headers.items()},
                    body=payload,
                    elapsed=time.monotonic() - started,
                )
        # The messages never include headers, so no token can leak through them.
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            # Before TimeoutError: a connect timeout is one too, but nothing was sent.
            host = _host(request.url)
            cause = _connect_cause(exc, self._timeout.sock_connect)
            raise ConnectFailed(
                f"{request.method} {request.url}: cannot reach {host}: {cause}",
                request=request,
                host=host,
                cause=cause,
            ) from exc
        except TimeoutError as exc:
            raise AttemptTimeout(
                f"{request.method} {request.url}: no answer within {self._timeout.total} s",
                request=request,
            ) from exc
        except aiohttp.ClientError as exc:
            raise TransportError(
                f"{request.method} {request.url}: {type(exc).__name__}: {exc}", request=request
            ) from exc

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> AiohttpTransport:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


def _connect_cause(
    exc: aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError, after: float | None
) -> str:
    """Why no connection could be made, in a few words. Most specific first: a certificate
    error is an SSL error, which is a connector error."""
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return f"timed out connecting (after {after} s)" if after else "timed out connecting"
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return f"DNS lookup failed ({_os_reason(exc.os_error)})"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        cert = exc.certificate_error
        detail = getattr(cert, "verify_message", None) or _os_reason(cert)
        return f"TLS certificate verification failed ({detail})"
    if isinstance(exc, aiohttp.ClientSSLError):
        return f"TLS handshake failed ({_os_reason(exc.os_error)})"
    if exc.os_error.errno == errno.ECONNREFUSED:
        return "connection refused"
    return f"could not connect ({_os_reason(exc.os_error)})"


def _os_reason(error: BaseException) -> str:
    """The short text of an OS, DNS or SSL error, without the errno or the C source line."""
    reason = getattr(error, "reason", None)  # ssl.SSLError: WRONG_VERSION_NUMBER, ...
    if isinstance(reason, str) and reason:
        return reason.replace("_", " ").lower()
    strerror = getattr(error, "strerror", None)
    return (
        strerror if isinstance(strerror, str) and strerror else str(error) or type(error).__name__
    )


def _host(url: str) -> str:
    """``host`` or ``host:port`` (when the URL names a port) of ``url``."""
    parts = urlsplit(url)
    host = parts.hostname or parts.netloc
    try:
        port = parts.port
    except ValueError:
        port = None
    return f"{host}:{port}" if port is not None else host
