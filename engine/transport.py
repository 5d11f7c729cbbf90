"""The one seam between the engine and HTTP.

``Transport`` is what the engine calls; ``AiohttpTransport`` is the only place that imports
aiohttp. It owns one ``ClientSession`` for the whole run, reads the body inside the seam and
returns our own frozen ``Response``, and translates aiohttp's exceptions into ours so that
nothing foreign escapes.
"""

from __future__ import annotations

import time
from types import TracebackType
from typing import Protocol

import aiohttp

from .errors import AttemptTimeout, TransportError
from .model import Request, Response

__all__ = ["AiohttpTransport", "Transport"]


class Transport(Protocol):
    """Sends one request and returns the whole response, or raises ``TransportError``."""

    async def send(self, request: Request) -> Response: ...

    async def aclose(self) -> None: ...


class AiohttpTransport:
    """A ``Transport`` over one shared ``aiohttp.ClientSession``.

    ``timeout`` is the per-attempt budget in seconds (connect + send + read the body).
    ``limit`` caps open connections overall.
    """

    def __init__(self, *, timeout: float = 30.0, limit: int = 100) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._limit = limit
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        # Created lazily so that it binds to the running loop, never at import time.
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=self._limit, limit_per_host=self._limit)
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=self._timeout, raise_for_status=False
            )
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
        except TimeoutError as exc:
            raise AttemptTimeout(
                f"{request.method} {request.url}: no answer within {self._timeout.total} s",
                request=request,
            ) from exc
        except aiohttp.ClientError as exc:
            # The message never includes headers, so no token can leak through it.
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
