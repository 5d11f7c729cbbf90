"""The one HTTP seam: how AiohttpTransport maps aiohttp's answers and failures to ours."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import ssl
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from importlib.metadata import version
from types import SimpleNamespace

import aiohttp
import anyio
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from aioresponses import aioresponses

from engine import AttemptTimeout, ConnectFailed, Request, TransportError
from engine.transport import AiohttpTransport, user_agent
from jobs.sandbox import Sandbox, SandboxConfig
from tests.fakes import FakeResolver

URL = "https://api.example.test/associations/"


class _ClientResponse(aiohttp.ClientResponse):
    """aioresponses 0.7.x builds responses without aiohttp 3.14's new ``stream_writer``
    argument (pnuckowski/aioresponses#289); supply a finished one."""

    def __init__(self, method: str, url: object, **kwargs: object) -> None:
        kwargs.setdefault("stream_writer", SimpleNamespace(output_size=0))
        super().__init__(method, url, **kwargs)  # type: ignore[arg-type]


def request(**overrides: object) -> Request:
    base: dict[str, object] = {
        "method": "POST",
        "url": URL,
        "location_id": "loc1",
        "headers": {"Authorization": "Bearer sekret-token", "Version": "2021-07-28"},
        "json": {"key": "k"},
    }
    return Request(**{**base, **overrides})  # type: ignore[arg-type]


@pytest.fixture
async def transport() -> AsyncIterator[AiohttpTransport]:
    """A transport closed after the test."""
    t = AiohttpTransport(timeout=2)
    yield t
    await t.aclose()


async def test_answer_is_read_into_our_response(transport: AiohttpTransport) -> None:
    """Status, lower-cased headers and the whole body come back in a frozen Response."""
    with aioresponses() as mocked:
        mocked.post(
            URL,
            status=201,
            payload={"id": "a1"},
            headers={"X-RateLimit-Max": "100"},
            response_class=_ClientResponse,
        )
        response = await transport.send(request())
    assert response.status == 201
    assert response.json() == {"id": "a1"}
    assert response.header("X-RateLimit-Max") == "100"
    assert "x-ratelimit-max" in response.headers


async def test_json_body_params_and_headers_are_sent(transport: AiohttpTransport) -> None:
    """The JSON body, query parameters and headers go out as given, with a content type."""
    with aioresponses() as mocked:
        mocked.get(re.compile(r".*/associations/\?.*"), body=b"{}", response_class=_ClientResponse)
        mocked.post(URL, status=201, body=b"{}", response_class=_ClientResponse)
        await transport.send(request(method="GET", json=None, params={"locationId": "loc1"}))
        await transport.send(request())
        calls = list(mocked.requests.items())
    (get_key, _), (_, post_calls) = calls
    assert get_key[0] == "GET"
    assert get_key[1].query["locationId"] == "loc1"
    post = post_calls[0].kwargs
    assert orjson.loads(post["data"]) == {"key": "k"}
    assert post["headers"]["Content-Type"] == "application/json"
    assert post["headers"]["Version"] == "2021-07-28"


@pytest.mark.parametrize(
    "failure",
    [
        aiohttp.ClientConnectionError("connection refused"),
        aiohttp.ServerDisconnectedError(),
        aiohttp.ClientPayloadError("truncated"),
    ],
)
async def test_connection_failures_become_transport_errors(
    transport: AiohttpTransport, failure: Exception
) -> None:
    """aiohttp's connection errors are translated to TransportError, never leaking tokens."""
    with aioresponses() as mocked:
        mocked.post(URL, exception=failure)
        with pytest.raises(TransportError) as caught:
            await transport.send(request())
    assert caught.value.__cause__ is failure
    assert not isinstance(caught.value, ConnectFailed)  # it may have reached the server
    assert "sekret-token" not in str(caught.value)
    assert "sekret-token" not in repr(caught.value.request)


async def test_timeout_becomes_attempt_timeout(transport: AiohttpTransport) -> None:
    """A timeout is an AttemptTimeout (a retryable TransportError)."""
    with aioresponses() as mocked:
        mocked.post(URL, timeout=True)
        with pytest.raises(AttemptTimeout):
            await transport.send(request())


async def test_a_real_server_that_hangs_times_out_and_one_that_drops_resets() -> None:
    """Against a real server on 127.0.0.1: a stall past the timeout and a dropped connection."""

    async def stall(_: web.Request) -> web.Response:
        import asyncio

        await asyncio.sleep(5)
        return web.Response()

    async def drop(req: web.Request) -> web.Response:
        assert req.transport is not None
        req.transport.abort()
        return web.Response()

    app = web.Application()
    app.router.add_get("/stall", stall)
    app.router.add_get("/drop", drop)
    async with TestServer(app, host="127.0.0.1", port=0) as server:
        base = str(server.make_url("")).rstrip("/")
        async with AiohttpTransport(timeout=0.2) as t:
            with pytest.raises(AttemptTimeout):
                await t.send(request(method="GET", url=f"{base}/stall", json=None))
            with pytest.raises(TransportError):
                await t.send(request(method="GET", url=f"{base}/drop", json=None))


def free_port() -> int:
    """A port on 127.0.0.1 where nothing listens (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_nothing_listening_is_a_connect_failure() -> None:
    """A refused connection is ConnectFailed naming host, port and cause; no token shown."""
    port = free_port()
    async with AiohttpTransport(timeout=2) as t:
        with pytest.raises(ConnectFailed) as caught:
            await t.send(request(url=f"http://127.0.0.1:{port}/associations/"))
    assert caught.value.host == f"127.0.0.1:{port}"
    assert caught.value.cause == "connection refused"
    assert "sekret-token" not in str(caught.value)


async def test_a_name_that_does_not_resolve_is_a_dns_failure() -> None:
    """A DNS failure is ConnectFailed with the name (no port in the URL, none shown)."""
    resolver = FakeResolver()
    async with AiohttpTransport(timeout=2, resolver=resolver) as t:
        with pytest.raises(ConnectFailed) as caught:
            await t.send(request(url="https://ghl-test.invalid/associations/"))
    assert resolver.asked == ["ghl-test.invalid"]
    assert caught.value.host == "ghl-test.invalid"
    assert caught.value.cause.startswith("DNS lookup failed (")
    assert "cannot reach ghl-test.invalid: DNS lookup failed" in str(caught.value)


async def test_https_to_a_plain_http_port_is_a_tls_failure() -> None:
    """TLS spoken to a plain-HTTP server fails the handshake: ConnectFailed, nothing sent."""
    seen: list[str] = []

    async def handler(req: web.Request) -> web.Response:
        seen.append(req.path)
        return web.Response()

    app = web.Application()
    app.router.add_post("/associations/", handler)
    async with (
        TestServer(app, host="127.0.0.1", port=0) as server,
        AiohttpTransport(timeout=2) as t,
    ):
        with pytest.raises(ConnectFailed) as caught:
            await t.send(request(url=f"https://127.0.0.1:{server.port}/associations/"))
    assert caught.value.cause.startswith("TLS handshake failed (")
    assert seen == []


async def test_a_certificate_error_says_so() -> None:
    """A certificate that fails verification is ConnectFailed saying why it failed."""
    failure = ssl.SSLCertVerificationError(1, "certificate verify failed")
    failure.verify_message = "self-signed certificate"
    key = SimpleNamespace(host="api.example.test", port=443, ssl=True)
    with aioresponses() as mocked:
        mocked.post(URL, exception=aiohttp.ClientConnectorCertificateError(key, failure))  # type: ignore[arg-type]
        async with AiohttpTransport(timeout=2) as t:
            with pytest.raises(ConnectFailed) as caught:
                await t.send(request())
    assert caught.value.host == "api.example.test"
    assert caught.value.cause == "TLS certificate verification failed (self-signed certificate)"


@pytest.fixture
def full_backlog() -> Iterator[int]:
    """A port on 127.0.0.1 whose listen queue is full, so new connects hang (SYN dropped)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port: int = server.getsockname()[1]
    fillers = []
    for _ in range(8):
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):  # in progress: it will never finish
            filler.connect(("127.0.0.1", port))
        fillers.append(filler)
    yield port
    for sock in (*fillers, server):
        sock.close()


async def test_a_connect_that_hangs_is_a_connect_failure_not_a_timeout(full_backlog: int) -> None:
    """A connect that outlasts connect_timeout is ConnectFailed, within that time."""
    async with AiohttpTransport(timeout=5, connect_timeout=0.2) as t:
        with pytest.raises(ConnectFailed) as caught:
            with anyio.fail_after(3):
                await t.send(request(url=f"http://127.0.0.1:{full_backlog}/associations/"))
    assert caught.value.cause == "timed out connecting (after 0.2 s)"


async def test_a_dropped_delete_is_sent_once_and_reported(transport: AiohttpTransport) -> None:
    """A DELETE whose answer is lost is sent once and raised, never silently resent:
    aiohttp's own resend would hide that the first one was applied (and answer 404)."""
    async with Sandbox(SandboxConfig(lost_response_rate=1.0, seed=1, records=1)) as sb:
        token = sb.issue_token("L1")
        made = sb.add_association(
            "L1", key="k", first_object_key="contact", second_object_key="business",
            first_object_label="A", second_object_label="B",
        )  # fmt: skip
        relation = sb.add_relation("L1", made["id"], "contact-1", "business-1")
        headers = {"Authorization": f"Bearer {token}", "Version": "2021-07-28"}
        params = {"locationId": "L1"}
        # A read first, so the DELETE goes over a kept-alive connection (reads are never lost).
        read = request(method="GET", url=f"{sb.url}/objects/", json=None, headers=headers)
        assert (await transport.send(replace(read, params=params))).status == 200
        delete = replace(
            read, method="DELETE", url=f"{sb.url}/associations/relations/{relation['id']}"
        )
        with pytest.raises(TransportError):
            await transport.send(replace(delete, params=params))
        assert [e.method for e in sb.log] == ["GET", "DELETE"]
        assert sb.relations("L1") == []


async def test_every_request_names_the_tool_its_version_and_the_process() -> None:
    """User-Agent ``ghl-migrate/VERSION (pid PID)``: a server's log tells processes apart."""
    async with Sandbox() as sb, AiohttpTransport(timeout=5) as transport:
        token = sb.issue_token("loc1")
        await transport.send(
            request(
                method="GET",
                url=f"{sb.url}/associations/",
                params={"locationId": "loc1", "skip": "0", "limit": "10"},
                headers={"Authorization": f"Bearer {token}", "Version": "2021-07-28"},
                json=None,
            )
        )
    expected = f"ghl-migrate/{version('ghl-migrate')} (pid {os.getpid()})"
    assert user_agent() == expected
    assert [entry.user_agent for entry in sb.log] == [expected]


async def test_a_cookie_set_by_one_answer_is_never_sent_again() -> None:
    """The transport keeps no cookies: one location's answer cannot attach its cookie to
    the requests of other locations (each request carries its own token and nothing else)."""
    cookies: list[str | None] = []

    async def handler(req: web.Request) -> web.Response:
        cookies.append(req.headers.get("Cookie"))
        resp = web.json_response({"ok": True})
        resp.set_cookie("session", "from-loc1", path="/")
        return resp

    app = web.Application()
    app.router.add_post("/associations/", handler)
    resolver = FakeResolver("api.cookies.test")
    async with (
        TestServer(app, host="127.0.0.1", port=0) as server,
        AiohttpTransport(timeout=2, resolver=resolver) as t,
    ):
        url = f"http://api.cookies.test:{server.port}/associations/"
        first = await t.send(request(url=url))
        await t.send(request(url=url, location_id="loc2"))
    assert "session=from-loc1" in first.headers["set-cookie"]  # the server did set one
    assert cookies == [None, None]
