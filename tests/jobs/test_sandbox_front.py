"""The sandbox's front answers exactly as aiohttp does: same bytes, same state, same logs.

Most tests are differential: two sandboxes built the same way get the same requests, one on
connections the front serves, the other on connections first handed to aiohttp (an admin
request goes first: admin routes are aiohttp's, and they are neither counted nor logged).
Answers are compared byte for byte, but for the ``Date`` header and what is random by design
(ids, tokens, creation times, trace ids).
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import json
import logging
import re
import time
import tracemalloc
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import asdict
from typing import Any

import pytest
from aiohttp.test_utils import make_mocked_request
from aiohttp.web_protocol import RequestHandler

import jobs.sandbox.endpoints
import jobs.sandbox.server
from jobs.sandbox import Sandbox, SandboxConfig
from jobs.sandbox.front import KEEPALIVE_TIMEOUT

HANDOVER = b"GET /_sandbox/state HTTP/1.1\r\nHost: sandbox\r\n\r\n"
SEEDED = "a1" * 12  # a definition id both sandboxes hold
Raw = Callable[[dict[str, str]], bytes]  # tokens -> one raw request


class Answer:
    """One HTTP answer as it came off the wire, with what is random by design blanked."""

    def __init__(self, head: bytes, body: bytes) -> None:
        self.head, self.body = head, body

    @property
    def status(self) -> int:
        return int(self.head.split(b" ", 2)[1])

    def normalized(self) -> tuple[bytes, bytes]:
        head = re.sub(rb"\r\nDate: [^\r]*", b"\r\nDate: -", self.head)
        body = re.sub(rb"\b[0-9a-f]{24}\b", b"<id>", self.body)
        body = re.sub(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", b"<time>", body)
        body = re.sub(
            rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", b"<uuid>", body
        )
        body = re.sub(rb"(pit|lat|agy)-[\w-]+", rb"\1-<token>", body)
        return head, body


async def read_answer(reader: asyncio.StreamReader, method: bytes = b"GET") -> Answer | None:
    """The next answer on the connection; None when it closed without one."""
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    length = re.search(rb"\r\nContent-Length: (\d+)", head)
    body = b""
    if length and method != b"HEAD":
        body = await asyncio.wait_for(reader.readexactly(int(length[1])), timeout=5)
    return Answer(head, body)


async def exchange(
    sb: Sandbox, raws: Sequence[bytes], *, handover: bool, gap: float = 0.0
) -> list[Answer | None]:
    """Send each request on one connection and read its answer (None: none came)."""
    host, port = sb.url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    answers: list[Answer | None] = []
    try:
        if handover:
            writer.write(HANDOVER)
            first = await read_answer(reader)
            assert first is not None
            assert first.status == 200
        for raw in raws:
            writer.write(raw)
            await writer.drain()
            answers.append(await read_answer(reader, raw.split(b" ", 1)[0]))
            if answers[-1] is None:
                break
            await asyncio.sleep(gap)
    finally:
        writer.close()
    return answers


async def exchange_on(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, raws: Sequence[bytes]
) -> list[Answer | None]:
    """Send each request on an open connection and read its answer."""
    answers = []
    for raw in raws:
        writer.write(raw)
        answers.append(await read_answer(reader))
    return answers


def request(
    method: str,
    target: str,
    *,
    who: str | None = "L1",
    body: Any = None,
    content_type: str = "application/json",
    extra: str = "",
    version: bool = True,
) -> Raw:
    """A raw request as aiohttp's client sends it; ``who`` names whose token to send (a
    location, "agency", or anything else, sent as is)."""

    def build(tokens: dict[str, str]) -> bytes:
        lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1", "User-Agent: front-test/1"]
        if version:
            lines.append("Version: 2021-07-28")
        if who is not None:
            lines.append(f"Authorization: Bearer {tokens.get(who, who)}")
        payload = b""
        if body is not None:
            payload = body if isinstance(body, bytes) else json.dumps(body).encode()
            lines += [f"Content-Type: {content_type}", f"Content-Length: {len(payload)}"]
        if extra:
            lines.append(extra)
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload

    return build


def create_body(key: str, location: str = "L1", **over: str) -> dict[str, str]:
    return {
        "locationId": location,
        "key": key,
        "firstObjectKey": "contact",
        "firstObjectLabel": f"{key} a",
        "secondObjectKey": "custom_objects.pet",
        "secondObjectLabel": f"{key} b",
    } | over


@pytest.fixture
async def pair() -> AsyncIterator[Callable[..., Any]]:
    """Makes two sandboxes set up alike: the front's and aiohttp's."""
    made: list[Sandbox] = []

    async def make(config: SandboxConfig) -> tuple[tuple[Sandbox, dict[str, str]], ...]:
        out = []
        for _ in range(2):
            sb = Sandbox(config)
            tokens = {loc: sb.issue_token(loc) for loc in ("L1", "L2")}
            tokens["agency"] = sb.add_company("co1", ["L1", "L2"])
            sb.add_association(
                "L1",
                key="seeded",
                first_object_key="contact",
                second_object_key="custom_objects.property",
                id=SEEDED,
            )
            await sb.start()
            made.append(sb)
            out.append((sb, tokens))
        return tuple(out)

    yield make
    for sb in made:
        await sb.aclose()


def state(sb: Sandbox) -> tuple[dict[str, Any], list[tuple[Any, ...]]]:
    """The sandbox's counters and request log, but for arrival times."""
    log = [
        (
            *(e.method, e.path, e.location_id, e.token_location, e.status, e.applied, e.faults),
            *(e.user_agent, e.token_company, e.token_kind),
        )
        for e in sb.log
    ]
    return asdict(sb.stats), log


async def same_everywhere(
    pair: Callable[..., Any],
    config: SandboxConfig,
    raws: Sequence[Raw],
    *,
    one_connection: bool = False,
) -> list[Answer | None]:
    """Send ``raws`` to the front and to aiohttp; assert the answers and the state match."""
    (front, front_tokens), (plain, plain_tokens) = await pair(config)
    results = []
    for sb, tokens, handover in ((front, front_tokens, False), (plain, plain_tokens, True)):
        built = [raw(tokens) for raw in raws]
        if one_connection:
            results.append(await exchange(sb, built, handover=handover))
        else:
            results.append([(await exchange(sb, [b], handover=handover))[0] for b in built])
    ours, theirs = results
    assert [a.normalized() if a else None for a in ours] == [
        a.normalized() if a else None for a in theirs
    ]
    assert state(front) == state(plain)
    return ours


# -- answers ----------------------------------------------------------------------------------

API_REQUESTS: list[Raw] = [
    request("GET", "/objects/?locationId=L1"),
    request("GET", "/objects?locationId=L1"),
    request("GET", "/associations/?locationId=L1&skip=0&limit=100"),
    request("GET", "/associations?locationId=L1&skip=1&limit=1"),
    request("GET", "/associations/?locationId=L1&skip=0"),
    request("GET", "/associations/?locationId=L1&skip=0&limit=100&extra=1"),
    request("GET", "/associations/?locationId=L1&locationId=L1&skip=0&limit=5"),
    request("GET", "/associations/?locationId=L1&skip=-1&limit=900"),
    request("GET", "/associations/?locationId=&skip=0&limit=5&&flag"),
    request("POST", "/associations/", body=create_body("k1")),
    request("POST", "/associations/", body=create_body("k1")),
    request("POST", "/associations", body=create_body("k2", firstObjectLabel="")),
    request("POST", "/associations/", body=create_body("k3", location="L2")),
    request("POST", "/associations/", body=b'{"locationId": "L1",'),
    request("POST", "/associations/", body=b"[1, 2]"),
    request("POST", "/associations/", body=create_body("k4"), content_type="text/plain"),
    request("POST", "/associations/", body=create_body("k4") | {"extra": "x"}),
    request(
        "POST",
        "/objects-association",
        body={"locationId": "L1", "key": "g1", "firstObjectKey": "contact"}
        | {"secondObjectKey": "opportunity", "description": "d"},
    ),
    request("GET", "/associations/key/k1?locationId=L1"),
    request("GET", "/associations/key/nope?locationId=L1"),
    request("GET", "/objects-association/key/g1?locationId=L1"),
    request("GET", "/associations/objectKey/contact?locationId=L1"),
    request("GET", "/associations/objectKey/custom_objects.pet"),
    request("GET", "/objects-association/object/contact?locationId=L1"),
    request("GET", "/objects-association?locationId=L1"),
    request("GET", f"/associations/{SEEDED}"),
    request(
        "PUT",
        f"/associations/{SEEDED}",
        body={"firstObjectLabel": "Buyer", "secondObjectLabel": "Home"},
    ),
    request("PUT", f"/associations/{SEEDED}", body={"firstObjectLabel": "Buyer"}),
    request("DELETE", "/associations/OPPORTUNITIES_CONTACTS_ASSOCIATION"),
    request("GET", "/associations/OPPORTUNITIES_CONTACTS_ASSOCIATION?locationId=L2"),
    request("GET", "/nope"),
    request("GET", "/"),
    request("GET", "/_sandbox"),
    request("PUT", "/objects/?locationId=L1"),
    request("DELETE", "/associations/key/k1"),
    request("POST", "/associations/relations/x", body={}),
    request("GET", "/objects/?locationId=L1", version=False),
    request("GET", "/objects/?locationId=L1", who="nope"),
    request("GET", "/objects/?locationId=L1", who=None),
    request("GET", "/objects/?locationId=L1", who="agency"),
    request("GET", "/objects/?locationId=L2"),
    request("GET", "/locations/search?companyId=co1&limit=1", who="agency"),
    request("GET", "/locations/search?companyId=co2", who="agency"),
    request("GET", "/oauth/installedLocations?companyId=co1&appId=sandbox-app", who="agency"),
    request("GET", "/oauth/installedLocations?companyId=co1&appId=sandbox-app"),
    request(
        "POST",
        "/oauth/locationToken",
        who="agency",
        body=b"companyId=co1&locationId=L2",
        content_type="application/x-www-form-urlencoded",
    ),
    request(
        "POST",
        "/associations/relations",
        body={
            "locationId": "L1",
            "associationId": SEEDED,
            "firstRecordId": "contact-1",
            "secondRecordId": "property-2",
        },
    ),
    request("GET", "/associations/relations/contact-1?locationId=L1&skip=0&limit=10"),
    request("GET", "/associations/relations/contact-9?locationId=L1&skip=0&limit=10"),
    request("DELETE", "/associations/relations/0123456789abcdef01234567?locationId=L1"),
    request("DELETE", f"/associations/{SEEDED}"),
    request("GET", "/objects/?locationId=L1", extra="Accept: text/html"),
]


async def test_every_api_answer_is_the_same_as_aiohttps(pair: Callable[..., Any]) -> None:
    """Successes, validation errors, auth failures, unknown routes, agency and relation routes:
    the front's bytes, counters and request log are aiohttp's."""
    config = SandboxConfig(records=3, daily_limit=1_000, retry_after=True)
    answers = await same_everywhere(pair, config, API_REQUESTS)
    statuses = {a.status for a in answers if a is not None}
    assert statuses >= {200, 201, 400, 401, 403, 404, 409, 422}


async def test_the_same_requests_on_one_connection_get_the_same_answers(
    pair: Callable[..., Any],
) -> None:
    """Keep-alive: a run of requests on one connection, the front's and aiohttp's alike."""
    config = SandboxConfig(records=3, daily_limit=1_000)
    answers = await same_everywhere(pair, config, API_REQUESTS, one_connection=True)
    assert None not in answers


async def test_rate_limits_answer_alike(pair: Callable[..., Any]) -> None:
    """429s with Retry-After and all five rate headers, daily budget included."""
    config = SandboxConfig(rate_limit=3, rate_interval=10.0, daily_limit=5, retry_after=True)
    answers = await same_everywhere(pair, config, [request("GET", "/objects/?locationId=L1")] * 6)
    assert [a.status for a in answers if a] == [200, 200, 200, 429, 429, 429]


async def test_faults_answer_alike(pair: Callable[..., Any]) -> None:
    """Seeded resets, 5xx (JSON and HTML), latency and lost responses: the same requests meet
    the same faults, and get the same answers or none."""
    config = SandboxConfig(
        rate_limit=0,
        fail_rate=0.3,
        reset_rate=0.15,
        lost_response_rate=0.3,
        latency=(1.0, 3.0),
        seed=11,
    )
    raws = [
        request("POST", "/associations/", body=create_body(f"f{i}"))
        if i % 2
        else request("GET", "/objects/?locationId=L1")
        for i in range(24)
    ]
    answers = await same_everywhere(pair, config, raws)
    assert None in answers
    assert {a.status for a in answers if a} >= {200, 201}
    assert {a.status for a in answers if a} & {500, 502, 503, 504}


# -- connections ------------------------------------------------------------------------------

NOT_PLAIN: list[bytes] = [
    b"HEAD /objects/?locationId=L1 HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /objects/?locationId=L%31 HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /objects/?locationId=L1+ HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /objects/./?locationId=L1 HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /objects/?locationId=L1 HTTP/1.0\r\nHost: x\r\n\r\n",
    b"get /objects/ HTTP/1.1\r\nHost: x\r\n\r\n",
    b"PATCH /objects/ HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /objects/ HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
    b"GET /objects/ HTTP/1.1\r\nBad Header: x\r\n\r\n",
    b"GET /objects/ HTTP/1.1\r\nX-Folded: a\r\n b\r\n\r\n",
    b"GET /objects/ HTTP/1.1\r\nX-Trailing: a \r\n\r\n",
    b"GET /objects/ HTTP/1.1\r\nConnection: close\r\n\r\n",
    b"GET /objects/ HTTP/1.1\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(130)) + b"\r\n",
    b"GET /_sandbox/nope HTTP/1.1\r\nHost: x\r\n\r\n",
    b'POST /_sandbox/tokens HTTP/1.1\r\nContent-Length: 8\r\n\r\n{"a": 1}',
    b"POST /associations/ HTTP/1.1\r\nContent-Type: application/json; charset=utf-8\r\n"
    b"Content-Length: 2\r\n\r\n{}",
    b"POST /associations/ HTTP/1.1\r\nContent-Type: Application/JSON\r\n"
    b"Content-Length: 2\r\n\r\n{}",
    b"POST /associations/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
    b"POST /associations/ HTTP/1.1\r\nContent-Length: 02\r\n\r\n{}",
    b"GET /objects/ HTTP/1.1\r\nX-Binary: \xc3\xa9\r\n\r\n",
    b"GET /objects/\x01 HTTP/1.1\r\n\r\n",
]


@pytest.mark.parametrize("raw", NOT_PLAIN, ids=lambda raw: raw.split(b"\r\n")[0].decode("latin-1"))
async def test_a_request_that_is_not_plain_gets_aiohttps_answer(
    pair: Callable[..., Any], raw: bytes
) -> None:
    """HEAD, encoded or dotted targets, HTTP/1.0, malformed or repeated headers, admin routes,
    content types with parameters, chunked bodies: after plain requests on the same connection,
    aiohttp answers them, and the requests after them too."""
    plain = request("GET", "/objects/?locationId=L1")
    answers = await same_everywhere(
        pair, SandboxConfig(), [plain, lambda _: raw, plain], one_connection=True
    )
    assert answers[0] is not None
    assert answers[0].status == 200


async def test_tls_spoken_to_the_front_is_refused_at_once(pair: Callable[..., Any]) -> None:
    """A TLS client hello gets aiohttp's 400 without waiting for the end of a head."""
    hello = bytes.fromhex("16030100c4010000c00303") + bytes(range(32))
    answers = await same_everywhere(pair, SandboxConfig(), [lambda _: hello])
    assert answers[0] is not None
    assert answers[0].status == 400


async def test_pipelined_requests_are_answered_in_order(pair: Callable[..., Any]) -> None:
    """Three requests in one write: three answers, in order, from either server."""
    (sb, tokens), _ = await pair(SandboxConfig(latency=(30.0, 30.0), rate_limit=0))
    raws = [
        request("POST", "/associations/", body=create_body("p1")),
        request("GET", "/associations/key/p1?locationId=L1"),
        request("GET", "/nope"),
    ]
    host, port = sb.url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"".join(raw(tokens) for raw in raws))
    answers = [await read_answer(reader) for _ in raws]
    writer.close()
    assert [a.status if a else None for a in answers] == [201, 200, 404]


@pytest.mark.parametrize("handover", [False, True], ids=["front", "aiohttp"])
async def test_hundreds_of_pipelined_requests_are_answered_in_order(
    pair: Callable[..., Any], handover: bool
) -> None:
    """1,000 requests in one write (more than are queued at once): 1,000 answers, in order."""
    (sb, tokens), _ = await pair(SandboxConfig(rate_limit=0))
    keys = [f"k{i}" for i in range(1000)]
    raws = [request("GET", f"/associations/key/{key}?locationId=L1")(tokens) for key in keys]
    host, port = sb.url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    if handover:
        writer.write(HANDOVER)
        await read_answer(reader)
    writer.write(b"".join(raws))
    answers = [await read_answer(reader) for _ in raws]
    writer.close()
    assert [a.status if a else None for a in answers] == [404] * len(keys)
    assert [json.loads(a.body)["message"] for a in answers if a] == ["Association not found"] * 1000
    assert [e.path for e in sb.log] == [f"/associations/key/{key}" for key in keys]


async def test_a_head_and_body_in_pieces_are_put_together(pair: Callable[..., Any]) -> None:
    """A request that arrives in several reads is handled once its head is in, its body read
    when it has arrived."""
    (sb, tokens), _ = await pair(SandboxConfig(rate_limit=0))
    raw = request("POST", "/associations/", body=create_body("split"))(tokens)
    host, port = sb.url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    head_end = raw.index(b"\r\n\r\n") + 4
    for piece in (raw[:10], raw[10:head_end], raw[head_end : head_end + 5], raw[head_end + 5 :]):
        writer.write(piece)
        await writer.drain()
        await asyncio.sleep(0.02)
    answer = await read_answer(reader)
    writer.close()
    assert answer is not None
    assert answer.status == 201
    assert sb.stats.creates_applied == 1


@pytest.mark.parametrize("handover", [False, True], ids=["front", "aiohttp"])
async def test_a_client_gone_before_its_body_is_read_changes_nothing(
    handover: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """The client leaves during a write's latency: the handler runs on, its body cannot be
    read, nothing is created, the request is logged with status 0 and the error logged, as
    aiohttp does it."""
    async with Sandbox(SandboxConfig(latency=(150.0, 150.0), rate_limit=0)) as sb:
        token = sb.issue_token("L1")
        raw = request("POST", "/associations/", body=create_body("gone"))({"L1": token})
        host, port = sb.url.removeprefix("http://").rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        if handover:
            writer.write(HANDOVER)
            await read_answer(reader)
        with caplog.at_level(logging.ERROR, logger="jobs.sandbox.server"):
            writer.write(raw)
            await writer.drain()
            await asyncio.sleep(0.05)
            writer.close()
            await asyncio.sleep(0.3)
        assert sb.stats.creates_applied == 0
        assert [(e.status, e.applied) for e in sb.log] == [(0, False)]
        errors = [r.getMessage() for r in caplog.records if r.name == "jobs.sandbox.server"]
        assert errors == ["Error handling request from 127.0.0.1"]
        assert token not in caplog.text


@pytest.mark.parametrize("accept", ["", "text/html"])
async def test_an_unexpected_error_is_answered_and_logged_as_aiohttp_does(
    pair: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    accept: str,
) -> None:
    """A handler that raises gets aiohttp's 500 page (text or HTML), the connection closed, and
    one error logged per request."""

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(jobs.sandbox.endpoints, "json_answer", boom)
    extra = f"Accept: {accept}" if accept else ""
    raws = [request("GET", "/objects/?locationId=L1", extra=extra)] * 2
    with caplog.at_level(logging.ERROR, logger="jobs.sandbox.server"):
        answers = await same_everywhere(pair, SandboxConfig(), raws, one_connection=True)
    assert answers[0] is not None
    assert answers[0].status == 500
    assert b"\r\nConnection: close\r\n" in answers[0].head
    assert answers[1] is None  # the connection was closed after the 500
    errors = [r for r in caplog.records if r.getMessage().startswith("Error handling request")]
    assert len(errors) == 2  # one per server
    assert all("RuntimeError: boom" in (r.exc_text or "") for r in errors)


@pytest.mark.parametrize("handover", [False, True], ids=["front", "aiohttp"])
async def test_stopping_answers_what_finishes_in_time_and_stops_the_rest(
    handover: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """aclose(): a write that finishes within the grace period is applied and answered; a
    stalled one is stopped after two periods (logged with status 0, nothing applied)."""
    monkeypatch.setattr(jobs.sandbox.server, "_SHUTDOWN_TIMEOUT", 0.3)
    sb = Sandbox(SandboxConfig(stall_rate=1.0, stall_seconds=30.0, rate_limit=0))
    token = sb.issue_token("L1")
    fast = Sandbox(SandboxConfig(latency=(100.0, 100.0), rate_limit=0))
    fast_token = fast.issue_token("L1")
    for server, tok, expect in ((sb, token, None), (fast, fast_token, 201)):
        await server.start()
        host, port = server.url.removeprefix("http://").rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        if handover:
            writer.write(HANDOVER)
            await read_answer(reader)
        writer.write(request("POST", "/associations/", body=create_body("late"))({"L1": tok}))
        await writer.drain()
        for _ in range(400):  # until the sandbox has the request
            if server.stats.requests:
                break
            await asyncio.sleep(0.005)
        started = time.monotonic()
        await server.aclose()
        took = time.monotonic() - started
        answer = await read_answer(reader)
        writer.close()
        assert (answer.status if answer else None) == expect
        assert [e.status for e in server.log] == [expect or 0]
        assert server.stats.creates_applied == (1 if expect else 0)
        assert took < (0.8 if expect is None else 0.25)


async def test_an_idle_connection_is_closed_after_the_keepalive_timeout() -> None:
    """As aiohttp does (after 3,630 s by default; here shortened): an idle keep-alive
    connection is closed by the server."""
    assert inspect.signature(RequestHandler).parameters["keepalive_timeout"].default == (
        KEEPALIVE_TIMEOUT
    )
    async with Sandbox(SandboxConfig(rate_limit=0)) as sb:
        assert sb._front is not None
        sb._front.keepalive_timeout = 0.1
        token = sb.issue_token("L1")
        host, port = sb.url.removeprefix("http://").rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(request("GET", "/objects/?locationId=L1")({"L1": token}))
        assert (await read_answer(reader)) is not None
        await asyncio.sleep(0.05)
        writer.write(request("GET", "/objects/?locationId=L1")({"L1": token}))
        assert (await read_answer(reader)) is not None  # not idle long enough yet
        assert await asyncio.wait_for(reader.read(), timeout=2) == b""  # closed when idle
        writer.close()


async def test_the_front_keeps_no_more_per_request_than_aiohttp(pair: Callable[..., Any]) -> None:
    """Memory: what 500 relation creates leave behind (store, indexes, request log) is no
    more through the front than through aiohttp (the method and a route's path are shared)."""
    config = SandboxConfig(records=600, rate_limit=0, daily_limit=0)
    (front, front_tokens), (plain, plain_tokens) = await pair(config)
    kept = []
    for sb, tokens, handover in ((front, front_tokens, False), (plain, plain_tokens, True)):
        host, port = sb.url.removeprefix("http://").rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        if handover:
            writer.write(HANDOVER)
            await read_answer(reader)

        def relation(number: int, tokens: dict[str, str] = tokens) -> bytes:
            body = {"locationId": "L1", "associationId": SEEDED}
            body |= {"firstRecordId": f"contact-{number}", "secondRecordId": f"property-{number}"}
            return request("POST", "/associations/relations", body=body)(tokens)

        warm_up = [relation(number) for number in range(1, 101)]  # pools, caches
        assert {a.status for a in await exchange_on(reader, writer, warm_up) if a} == {201}
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        measured = [relation(number) for number in range(101, 601)]
        assert {a.status for a in await exchange_on(reader, writer, measured) if a} == {201}
        gc.collect()
        kept.append(tracemalloc.get_traced_memory()[0] - before)
        tracemalloc.stop()
        writer.close()
    ours, theirs = kept
    assert ours <= theirs * 1.02


# -- routing ----------------------------------------------------------------------------------


async def test_the_front_resolves_routes_as_aiohttps_router() -> None:
    """Every method and many paths (static segments where variables go, trailing slashes,
    prefixes): the same route or none, with the same variables."""
    async with Sandbox() as sb:
        assert sb._front is not None
        ours = [handler for _, _, handler in sb._routes]  # registered in this order
        theirs = [route.handler for route in sb.app.router.routes()][: len(ours)]
        counterpart = {id(aiohttps): mine for aiohttps, mine in zip(theirs, ours, strict=True)}
        values = ["x", "key", "relations", "objectKey", "object", "custom_objects.pet", "a-b"]
        paths = {"/", "/objects", "/objects/", "/objects/x", "/locations/search/", "/oauth"}
        for _, path, _ in sb._routes:
            for value in values:
                filled = re.sub(r"\{\w+\}", value, path)
                paths |= {filled, filled.rstrip("/"), filled + "/", filled + "/" + value}
        for method in ("GET", "POST", "PUT", "DELETE"):
            for path in sorted(paths):
                match = await sb.app.router.resolve(make_mocked_request(method, path, app=sb.app))
                found, handler, info = sb._front.router.resolve(method, path)
                expected_found = match.http_exception is None
                assert found == expected_found, (method, path)
                if found:
                    assert dict(info) == dict(match), (method, path)
                    assert handler is counterpart[id(match.handler)], (method, path)
