"""The sandbox's own HTTP/1.1 front: plain API requests are answered here, all else by aiohttp.

Why: under the many-locations benchmark (hundreds of connections, a few requests each, answers
50-150 ms late) aiohttp's server machinery was most of the sandbox's CPU: per request a parser
message, a request with its payload stream, a task, a response with its writer. A bare aiohttp
application answering the same requests with constant bodies cost 115 µs of CPU per request,
the sandbox 140, a bare asyncio protocol 50. The sandbox serves benchmark traffic on the same
small machine as the client being measured, so what it spends is taken from that client.

What: every connection starts here. A *plain* request is parsed here and given to the handler
aiohttp would have called (the same pipeline, the same endpoint), and its response is written
byte for byte as aiohttp writes it: the status line, the response's headers in order, then
``Content-Length``, ``Date`` and ``Server``. Plain means: ``GET``, ``POST``, ``PUT`` or
``DELETE``; ``HTTP/1.1``; a target of unreserved characters only (nothing to decode, no dot
segments, no empty ones); at most 100 headers, names that are tokens, values of visible ASCII
without trailing blanks, no name twice; a ``Content-Length`` of at most 1 MiB or none; a lowercase
``type/subtype`` ``Content-Type`` or none; none of ``Transfer-Encoding``, ``Expect``,
``Upgrade``, ``Connection``, ``Content-Encoding``; a path that is not an admin route's (under
``/_sandbox/``) nor a route whose handler reads a form. The first request that is not plain
hands the connection, with every byte not yet consumed, to aiohttp's own protocol for good:
malformed requests, ``HEAD``, chunked bodies, ``Expect: 100-continue``, the admin routes and
the rest get aiohttp's exact answers, from aiohttp.

Around each request, what aiohttp does is mirrored, so that a client or a test cannot tell:

* routes resolve as aiohttp's router resolves them (the most specific prefix first, then the
  order of registration); a path and method no API route takes gets ``unknown`` (the
  sandbox's 404), as aiohttp's 404 and 405 do through the sandbox's middleware;
* one request at a time per connection, in order (pipelined ones wait their turn);
* a client that goes away mid-request leaves its handler running, but the request's body can
  no longer be read (``ConnectionResetError("Connection lost")``), and nothing is written;
* an unexpected exception in a handler is logged (``Error handling request from <peer>``, to
  the logger aiohttp was given) and answered 500 (plain text, or HTML for ``Accept:
  text/html``) with ``Connection: close``, the connection then closed; a ``web.HTTPException``
  is the answer itself; a ``TimeoutError`` is answered 504;
* ``SO_KEEPALIVE`` on every connection, and an idle one is closed after aiohttp's keep-alive
  timeout (3,630 s);
* shutting down closes idle connections, gives requests in flight ``grace`` seconds, makes
  their bodies unreadable (``CancelledError``) for another ``grace`` seconds at most, then
  cancels them and closes.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
from collections import deque
from collections.abc import Callable, Coroutine, Mapping, Sequence
from http import HTTPStatus
from typing import Any, Literal, Protocol

from aiohttp import hdrs, web
from aiohttp.helpers import rfc822_formatted_time
from aiohttp.http import SERVER_SOFTWARE
from multidict import CIMultiDict, CIMultiDictProxy, MultiDict, MultiDictProxy, MultiMapping

from .responses import Answer

__all__ = ["KEEPALIVE_TIMEOUT", "ApiRequest", "Front", "Handler"]

#: aiohttp's default keep-alive timeout (``RequestHandler``), which the sandbox never changed
KEEPALIVE_TIMEOUT = 3630.0
_MAX_HEAD = 8190  # aiohttp's max_line_size and max_field_size: a longer head goes to aiohttp
_MAX_FIELDS = 100  # aiohttp refuses more than 128 header fields (max_headers)
_MAX_BODY = 1024**2  # aiohttp's client_max_size: a larger body is refused there (413)
_MAX_QUEUE = 32  # pipelined requests queued before reading pauses (aiohttp's figure)

_LINE = r"(GET|POST|PUT|DELETE) (/[A-Za-z0-9._~/-]*)(?:\?([A-Za-z0-9._~=&-]+))? HTTP/1\.1"
_NAME = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"  # a token
_VALUE = r"[\x21-\x7e](?:[\x20-\x7e\t]*[\x21-\x7e])?"  # visible ASCII, no blank at either end
_FIELD = rf"({_NAME}):[ \t]*({_VALUE})"
_REQUEST_LINE, _HEADER = re.compile(_LINE), re.compile(_FIELD)
#: a whole plain head: the request line, then header lines (ASCII, no bare CR or LF)
_HEAD = re.compile(_LINE + rf"((?:\r\n{_NAME}:[ \t]*{_VALUE})*)")
_FIELDS = re.compile(r"\r\n" + _FIELD)
_METHODS = ("GET", "POST", "PUT", "DELETE")
_METHOD_NAMES = {method: method for method in _METHODS}
_CONTROL = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # but HTAB, CR and LF
_MEDIA_TYPE = re.compile(r"[a-z0-9!#$&^_.+-]+/[a-z0-9!#$&^_.+-]+")
_CONTENT_LENGTH = re.compile(r"0|[1-9][0-9]{0,6}")
#: headers that change how aiohttp reads a request or answers it: such a request goes there
_NOT_PLAIN = frozenset(
    {"transfer-encoding", "expect", "upgrade", "connection", "content-encoding", "http2-settings"}
)
_ADMIN = "/_sandbox/"


class ApiRequest(Protocol):
    """What the sandbox's handlers read of a request: aiohttp's ``web.Request``, or a plain
    request parsed here."""

    @property
    def method(self) -> str: ...

    @property
    def path(self) -> str: ...

    @property
    def query(self) -> MultiMapping[str]: ...

    @property
    def headers(self) -> MultiMapping[str]: ...

    @property
    def match_info(self) -> Mapping[str, str]: ...

    @property
    def transport(self) -> asyncio.Transport | None: ...

    @property
    def content_type(self) -> str: ...

    async def read(self) -> bytes: ...

    async def post(self) -> MultiDictProxy[str | bytes | bytearray | web.FileField]: ...


Handler = Callable[[ApiRequest], Coroutine[Any, Any, Answer]]


class _PlainRequest:
    """A plain request, parsed: what :class:`ApiRequest` asks, and the handler it goes to.

    Like aiohttp's, it is handled as soon as its head is in; :meth:`read` waits for the body.
    """

    __slots__ = (
        "_body",
        "_complete",
        "_failure",
        "_read",
        "_waiter",
        "content_type",
        "handler",
        "headers",
        "match_info",
        "method",
        "path",
        "query",
        "transport",
    )

    def __init__(
        self,
        method: str,
        path: str,
        query: MultiDictProxy[str],
        headers: CIMultiDictProxy[str],
        content_type: str,
        transport: asyncio.Transport,
        handler: Handler,
        match_info: Mapping[str, str],
    ) -> None:
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.content_type = content_type
        self.transport: asyncio.Transport | None = transport
        self.handler = handler
        self.match_info = match_info
        self._body = b""
        self._complete = False
        self._failure: BaseException | None = None
        self._read = False
        self._waiter: asyncio.Future[None] | None = None

    async def read(self) -> bytes:
        """The body; like aiohttp's, it fails once the connection is lost (unless read before)."""
        if not self._read:
            if not self._complete and self._failure is None:
                self._waiter = asyncio.get_running_loop().create_future()
                await self._waiter
            if self._failure is not None:
                raise self._failure
            self._read = True
        return self._body

    async def post(self) -> MultiDictProxy[str | bytes | bytearray | web.FileField]:
        # Routes whose handler reads a form are never served here: see Front's routes.
        raise RuntimeError("a form body is read by aiohttp: this route is not served by the front")

    def arrived(self, body: bytes) -> None:
        """The whole body is in."""
        self._body, self._complete = body, True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def fail(self, exc: BaseException) -> None:
        """The body can no longer be read: ``exc`` is what reading raises."""
        self._failure = exc
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


class _Router:
    """The API's routes, resolved the way aiohttp's ``UrlDispatcher`` resolves them."""

    def __init__(self, routes: Sequence[tuple[str, str, Handler | None]]) -> None:
        self._index: dict[str, list[tuple[str, re.Pattern[str] | None, str, Handler | None]]] = {}
        self.paths = {path: path for _, path, _ in routes if "{" not in path}  # static ones
        for method, path, handler in routes:
            if "{" in path:
                key = path.partition("{")[0].rpartition("/")[0]
                pattern: re.Pattern[str] | None = re.compile(
                    "".join(
                        f"(?P<{part[1:-1]}>[^{{}}/]+)" if part.startswith("{") else re.escape(part)
                        for part in re.split(r"(\{[_a-zA-Z][_a-zA-Z0-9]*\})", path)
                    )
                )
            else:
                key, pattern = path, None
            self._index.setdefault(key.rstrip("/") or "/", []).append(
                (path, pattern, method, handler)
            )

    def resolve(self, method: str, path: str) -> tuple[bool, Handler | None, Mapping[str, str]]:
        """Whether a route takes ``method path``, its handler (None: served by aiohttp), and
        the path's variables."""
        index, part = self._index, path
        while part:
            for static, pattern, route_method, handler in index.get(part, ()):
                if pattern is None:
                    if static != path or route_method != method:
                        continue
                    return True, handler, {}
                found = pattern.fullmatch(path)
                if found is not None and route_method == method:
                    return True, handler, found.groupdict()
            if part == "/":
                break
            part = part.rpartition("/")[0] or "/"
        return False, None, {}


class Front:
    """Answers plain requests to the API routes; hands every other connection to aiohttp."""

    def __init__(
        self,
        routes: Sequence[tuple[str, str, Handler | None]],
        *,
        unknown: Handler,
        fallback: Callable[[], asyncio.Protocol],
        logger: logging.Logger,
        keepalive_timeout: float = KEEPALIVE_TIMEOUT,
    ) -> None:
        """``routes``: (method, path, handler) in aiohttp's order of registration, a None
        handler for a route aiohttp serves; ``unknown`` answers what no route takes;
        ``fallback`` makes aiohttp's protocol for a connection handed over; ``logger`` is
        the one aiohttp logs to."""
        self.router = _Router(routes)
        self.unknown = unknown
        self.fallback = fallback
        self.logger = logger
        self.keepalive_timeout = keepalive_timeout
        self.connections: set[_Connection] = set()

    def protocol(self) -> asyncio.Protocol:
        """A protocol for a new connection (the factory for ``loop.create_server``)."""
        return _Connection(self)

    def pre_shutdown(self) -> None:
        """Close idle connections; the others close after their request."""
        for connection in list(self.connections):
            connection.close()

    async def shutdown(self, grace: float) -> None:
        """Let requests in flight finish for ``grace`` seconds, then stop them; close all."""
        await asyncio.gather(*(c.shutdown(grace) for c in list(self.connections)))
        self.connections.clear()


class _Connection(asyncio.Protocol):
    """One connection while the front serves it."""

    def __init__(self, front: Front) -> None:
        self._front = front
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._remote: str | None = None
        self._buffer = b""
        self._receiving: tuple[_PlainRequest, int] | None = None  # a body still coming, its length
        self._queue: deque[_PlainRequest] = deque()
        self._current: _PlainRequest | None = None
        self._handling: Coroutine[Any, Any, Answer] | None = None  # the current request's
        self._awaiting: asyncio.Future[Any] | None = None  # what it waits for
        self._throw: BaseException | None = None  # for it at its next step
        self._idle_waiter: asyncio.Future[None] | None = None
        self._hand_over = False  # the next request is aiohttp's
        self._closing = False
        self._paused = False
        self._keepalive_handle: asyncio.TimerHandle | None = None
        self._next_close = 0.0

    # -- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)  # as aiohttp does
        peer = transport.get_extra_info("peername")  # for the error log, as aiohttp's remote
        if peer is not None:
            self._remote = str(peer[0]) if isinstance(peer, list | tuple) else str(peer)
        self._front.connections.add(self)
        if self._front.keepalive_timeout > 0:
            self._next_close = self._loop.time() + self._front.keepalive_timeout
            self._keepalive_handle = self._loop.call_at(self._next_close, self._keepalive)

    def data_received(self, data: bytes) -> None:
        if self._closing or self._transport is None:  # aiohttp reads nothing more either
            return
        buffer = self._buffer + data if self._buffer else data
        if self._receiving is not None:  # the rest of a body
            request, length = self._receiving
            if len(buffer) < length:
                self._buffer = buffer
                return
            self._receiving = None
            request.arrived(buffer[:length])
            buffer = buffer[length:]
        while buffer and not self._hand_over and len(self._queue) < _MAX_QUEUE:
            parsed = self._parse(buffer)
            if parsed is None:  # more to come
                break
            if parsed is False:
                self._hand_over = True
                break
            request, start, length = parsed
            self._queue.append(request)
            buffer = buffer[start:]
            if len(buffer) < length:
                self._receiving = request, length
                break
            request.arrived(buffer[:length])
            buffer = buffer[length:]
        self._buffer = buffer
        if (self._hand_over or len(self._queue) >= _MAX_QUEUE) and not self._paused:
            self._paused = True
            self._transport.pause_reading()
        if self._current is None:
            self._next()

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._front.connections.discard(self)
        if self._keepalive_handle is not None:
            self._keepalive_handle.cancel()
            self._keepalive_handle = None
        self._queue.clear()
        self._buffer, self._receiving = b"", None
        if self._current is not None:  # its handler runs on; its body is gone
            self._current.fail(exc or ConnectionResetError("Connection lost"))
            self._current.transport = None

    # -- requests ---------------------------------------------------------------------------

    def _parse(self, buffer: bytes) -> tuple[_PlainRequest, int, int] | Literal[False] | None:
        """A plain request from its head, where its body starts and its length; None while
        the head is incomplete, False for a request that is not plain (aiohttp's)."""
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            return False if _hopeless(buffer) else None
        if end > _MAX_HEAD:
            return False
        head = _HEAD.fullmatch(buffer[:end].decode("latin-1"))
        if head is None:
            return False
        method, path, query_string, fields = head.groups()
        # the log keeps both: the method's constant, and a route's own path when it is one
        method, path = _METHOD_NAMES[method], self._front.router.paths.get(path, path)
        if path.startswith(_ADMIN) or "/." in path or "//" in path:
            return False
        pairs = _FIELDS.findall(fields)
        names = {name.lower() for name, _ in pairs}
        if len(names) != len(pairs) or len(pairs) > _MAX_FIELDS or not names.isdisjoint(_NOT_PLAIN):
            return False  # a header twice, too many, or one that changes how aiohttp reads
        headers = CIMultiDictProxy(CIMultiDict(pairs))
        length = 0
        if "content-length" in names:
            given = headers[hdrs.CONTENT_LENGTH]
            if not _CONTENT_LENGTH.fullmatch(given) or int(given) > _MAX_BODY:
                return False
            length = int(given)
        content_type = "application/octet-stream"
        if "content-type" in names:
            content_type = headers[hdrs.CONTENT_TYPE]
            if not _MEDIA_TYPE.fullmatch(content_type):
                return False
        found, handler, match_info = self._front.router.resolve(method, path)
        if found and handler is None:  # a route aiohttp serves
            return False
        query: MultiDict[str] = MultiDict()
        if query_string:  # split as yarl splits a query with nothing to decode
            parts = (part.partition("=") for part in query_string.split("&") if part)
            query.extend([(name, value) for name, _, value in parts])
        assert self._transport is not None
        request = _PlainRequest(
            method,
            path,
            MultiDictProxy(query),
            headers,
            content_type,
            self._transport,
            handler if handler is not None else self._front.unknown,
            match_info,
        )
        return request, end + 4, length

    def _next(self) -> None:
        """Start the next request, or hand the connection to aiohttp when its turn comes."""
        if self._current is not None:  # one at a time
            return
        if self._queue:
            request = self._queue.popleft()
            if self._paused and not self._hand_over and len(self._queue) <= _MAX_QUEUE // 2:
                self._paused = False
                assert self._transport is not None
                self._transport.resume_reading()
                if self._buffer and self._receiving is None:  # pipelined requests not parsed
                    self._loop.call_soon(self.data_received, b"")
            self._current, self._handling = request, request.handler(request)
            self._loop.call_soon(self._step)  # at the next turn, as a task's first step
        elif self._hand_over and not self._closing and self._transport is not None:
            self._hand_off()

    def _step(self, _: object = None) -> None:
        """Run the current request's handler to its next wait, or to its answer.

        What a task does, without one: a task for every request (aiohttp makes two) cost more
        than the rest of the front's work. The handler never learns the difference: it
        awaits futures (a sleep, the body) and is cancelled through the one it awaits.
        """
        handling, request = self._handling, self._current
        assert handling is not None
        assert request is not None
        self._awaiting = None
        response: Answer | web.Response
        throw, self._throw = self._throw, None
        try:
            waiting = handling.send(None) if throw is None else handling.throw(throw)
        except StopIteration as done:
            response = done.value
        except web.HTTPException as exc:
            response = exc
        except asyncio.CancelledError:
            self._answered(None)
            return
        except TimeoutError:
            response = self._error(request, 504)
        except Exception as exc:  # answered and logged as aiohttp does
            response = self._error(request, 500, exc)
        else:
            if waiting is None:  # a bare yield (sleep(0)): go on at the next turn
                self._loop.call_soon(self._step)
            elif getattr(waiting, "_asyncio_future_blocking", None) is not None:
                waiting._asyncio_future_blocking = False  # as a task does with a future
                self._awaiting = waiting
                waiting.add_done_callback(self._step)
            else:  # as a task does: the handler gets an error where it waits
                self._throw = RuntimeError(f"the front got bad yield: {waiting!r}")
                self._loop.call_soon(self._step)
            return
        self._answered(response)

    def _answered(self, response: Answer | web.Response | None) -> None:
        """The current request is done (None: cancelled): write its answer, go on or close."""
        self._current = self._handling = None
        keep_alive = False
        if response is not None:
            if isinstance(response, Answer):
                data, keep_alive = _wire_answer(response), True
            else:
                data, keep_alive = _wire(response), response.keep_alive is not False
            transport = self._transport
            if transport is not None and not transport.is_closing():
                transport.write(data)
        if self._idle_waiter is not None and not self._idle_waiter.done():
            self._idle_waiter.set_result(None)
        if self._transport is not None:
            if self._closing or not keep_alive:
                self._transport.close()
            else:
                self._idle()
                self._next()

    def _cancel(self) -> None:
        """Cancel the current request's handler, as ``Task.cancel`` does."""
        if self._handling is None:
            return
        if self._awaiting is not None and self._awaiting.cancel():
            return  # it wakes with CancelledError from what it awaits
        self._throw = asyncio.CancelledError()  # it gets one at its next step

    def _error(
        self, request: _PlainRequest, status: int, exc: BaseException | None = None
    ) -> web.Response:
        """aiohttp's ``RequestHandler.handle_error``: log it, answer it, close after."""
        self._front.logger.exception("Error handling request from %s", self._remote, exc_info=exc)
        content_type, message = "text/plain", None
        if status == HTTPStatus.INTERNAL_SERVER_ERROR:
            error = HTTPStatus.INTERNAL_SERVER_ERROR
            title, text = f"{error.value} {error.phrase}", error.description
            if "text/html" in request.headers.get("Accept", ""):
                content_type = "text/html"
                message = (
                    f"<html><head><title>{title}</title></head><body>\n<h1>{title}</h1>"
                    f"\n{text}\n</body></html>\n"
                )
            else:
                message = f"{title}\n\n{text}"
        response = web.Response(status=status, text=message, content_type=content_type)
        response.force_close()
        return response

    # -- the connection ---------------------------------------------------------------------

    def _hand_off(self) -> None:
        """From now on aiohttp serves this connection, starting with the bytes not consumed."""
        transport = self._transport
        assert transport is not None
        self._front.connections.discard(self)
        if self._keepalive_handle is not None:
            self._keepalive_handle.cancel()
            self._keepalive_handle = None
        handler = self._front.fallback()
        transport.set_protocol(handler)
        self._transport = None  # not ours any more
        handler.connection_made(transport)
        if self._paused:
            transport.resume_reading()
        data, self._buffer = self._buffer, b""
        if data:
            handler.data_received(data)

    def _idle(self) -> None:
        """A request was answered: the keep-alive timeout starts again."""
        if self._front.keepalive_timeout > 0:
            self._next_close = self._loop.time() + self._front.keepalive_timeout
            if self._keepalive_handle is None:
                self._keepalive_handle = self._loop.call_at(self._next_close, self._keepalive)

    def _keepalive(self) -> None:
        self._keepalive_handle = None
        if self._closing or self._transport is None:
            return
        if self._loop.time() < self._next_close:
            self._keepalive_handle = self._loop.call_at(self._next_close, self._keepalive)
        elif self._current is None and not self._queue:
            self._closing = True
            self._transport.close()

    def close(self) -> None:
        """Take no more requests; close now if idle, else once the current one is answered."""
        self._closing = True
        self._queue.clear()
        if self._current is None and self._transport is not None:
            self._transport.close()

    async def shutdown(self, grace: float) -> None:
        """aiohttp's ``RequestHandler.shutdown``: wait, then stop the request, then close."""
        self.close()
        if self._keepalive_handle is not None:
            self._keepalive_handle.cancel()
            self._keepalive_handle = None
        for stage in ("finish", "stop"):
            if self._current is None:
                break
            if stage == "stop":  # its body can no longer be read
                self._current.fail(asyncio.CancelledError())
            self._idle_waiter = self._loop.create_future()
            try:
                async with asyncio.timeout(grace):
                    await asyncio.shield(self._idle_waiter)
            except (asyncio.CancelledError, TimeoutError):
                if (task := asyncio.current_task()) is not None and task.cancelling():
                    raise
        self._cancel()
        if self._transport is not None:
            self._transport.close()


def _hopeless(head: bytes) -> bool:
    """Whether the start of a head is already not plain: then aiohttp must see it at once,
    since it may answer before the head ends (a TLS handshake, a malformed line)."""
    if len(head) > _MAX_HEAD or not head.isascii() or _CONTROL.search(head):
        return True
    crlf = head.count(b"\r\n")
    if head.count(b"\n") != crlf or head.count(b"\r") != crlf + head.endswith(b"\r"):
        return True
    *lines, rest = head.decode("ascii").split("\r\n")
    if not lines:  # the request line so far
        method, space, _ = rest.partition(" ")
        return method not in _METHODS if space else not any(m.startswith(rest) for m in _METHODS)
    if _REQUEST_LINE.fullmatch(lines[0]) is None:
        return True
    return any(_HEADER.fullmatch(line) is None for line in lines[1:])


#: the reason phrases aiohttp sends (``web.Response`` without a reason)
_REASONS = {status.value: status.phrase for status in HTTPStatus}


def _wire_answer(answer: Answer) -> bytes:
    """The bytes aiohttp writes for ``answer.response()`` to an HTTP/1.1 request that may
    stay open (see :func:`_wire`): the same lines, without making the response."""
    body = answer.body
    head = f"HTTP/1.1 {answer.status} {_REASONS.get(answer.status, '')}\r\n"
    if answer.content_type is not None:
        head += f"Content-Type: {answer.content_type}\r\n"
    for name, value in answer.headers.items():
        head += f"{name}: {value}\r\n"
    head += f"Content-Length: {len(body)}\r\n"
    if body and answer.content_type is None:
        head += "Content-Type: application/octet-stream\r\n"
    head += f"Date: {rfc822_formatted_time()}\r\nServer: {SERVER_SOFTWARE}\r\n\r\n"
    return head.encode() + body


def _wire(response: web.Response) -> bytes:
    """The bytes aiohttp writes for ``response`` to an HTTP/1.1 request that may stay open.

    Only what the sandbox's handlers answer: a ``web.Response`` with a body of bytes (or
    none), not chunked, not compressed, no cookies, a status that carries a body.
    """
    if (
        response.chunked
        or response.compression
        or response.cookies
        or response.status < 200
        or response.status in (204, 304)
    ):
        raise TypeError(f"the front cannot write {response!r} as aiohttp would")
    body = response.body
    if body is None:
        body = b""
    elif not isinstance(body, bytes):
        raise TypeError(f"the front cannot write a {type(body).__name__} body")
    headers = response.headers
    lines = [f"HTTP/1.1 {response.status} {response.reason}\r\n"]
    lines += [f"{name}: {value}\r\n" for name, value in headers.items()]
    if hdrs.CONTENT_LENGTH not in headers:
        lines.append(f"Content-Length: {len(body)}\r\n")
    if body and hdrs.CONTENT_TYPE not in headers:
        lines.append("Content-Type: application/octet-stream\r\n")
    if hdrs.DATE not in headers:
        lines.append(f"Date: {rfc822_formatted_time()}\r\n")
    if hdrs.SERVER not in headers:
        lines.append(f"Server: {SERVER_SOFTWARE}\r\n")
    if hdrs.CONNECTION not in headers and response.keep_alive is False:
        lines.append("Connection: close\r\n")
    lines.append("\r\n")
    return "".join(lines).encode() + body
