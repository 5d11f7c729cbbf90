"""Client.call: tokens per location, retries and their outcome, stopping, counters, redaction."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import anyio
import pytest
import stamina
from structlog.testing import capture_logs

from engine import (
    Client,
    ConnectFailed,
    HTTPStatusError,
    LocationGates,
    MissingToken,
    RateHint,
    Request,
    Response,
    RetryPolicy,
    RunStopped,
    TransportError,
    retry_after_seconds,
)
from tests.fakes import FakeClock, FakeTransport

TOKENS = {"loc1": "tok-one-SECRET", "loc2": "tok-two-SECRET"}
POLICY = RetryPolicy(attempts=4)


@pytest.fixture(autouse=True)
def instant_retries() -> Iterator[None]:
    """Retries without backoff; the client's own ``attempts`` still applies (capped at 10)."""
    stamina.set_testing(True, attempts=10, cap=True)
    yield
    stamina.set_testing(False)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make_client(
    transport: FakeTransport,
    clock: FakeClock,
    *,
    tokens: dict[str, str] | None = None,
    read_rate: Callable[[Response], RateHint] | None = None,
    on_unreachable: Callable[[ConnectFailed], None] | None = None,
) -> Client:
    known = TOKENS if tokens is None else tokens
    # A 429 pauses its location for the window (10 s): the fake clock makes that free.
    gates = LocationGates(100, 10.0, clock=clock.time, sleep=clock.sleep)
    return Client(
        transport=transport,
        tokens=known.get,
        gates=gates,
        read_rate=read_rate or (lambda response: RateHint()),
        policy=POLICY,
        on_unreachable=on_unreachable,
    )


def request(location_id: str = "loc1", method: str = "POST") -> Request:
    return Request(
        method=method,
        url=f"https://api.example/things?for={location_id}",
        location_id=location_id,
        headers={"Version": "2021-07-28"},
        json={"name": "x"},
    )


def answer(status: int, **headers: str) -> Response:
    return Response(status=status, headers=headers)


def reset(req: Request) -> TransportError:
    # The message names the request the way a real transport's might: through its repr.
    return TransportError(f"connection reset while sending {req!r}", request=req)


def refused(req: Request) -> ConnectFailed:
    return ConnectFailed(
        f"{req.method} {req.url}: cannot reach api.example: connection refused",
        request=req,
        host="api.example",
        cause="connection refused",
    )


# -- tokens --------------------------------------------------------------------------------------


async def test_each_location_gets_only_its_own_token(clock: FakeClock) -> None:
    """Every request carries ``Bearer <token>`` of its own location and no other token."""
    transport = FakeTransport(lambda req: answer(201))
    client = make_client(transport, clock)

    async with anyio.create_task_group() as tg:
        for location_id in ["loc1", "loc2", "loc1", "loc2", "loc2", "loc1"]:
            tg.start_soon(client.call, request(location_id))

    assert len(transport.requests) == 6
    for sent in transport.requests:
        own = TOKENS[sent.location_id]
        other = next(t for loc, t in TOKENS.items() if loc != sent.location_id)
        assert sent.headers["Authorization"] == f"Bearer {own}"
        assert not any(other in value for value in sent.headers.values())
        assert sent.headers["Version"] == "2021-07-28"  # the job's headers are kept


async def test_callers_request_is_not_signed(clock: FakeClock) -> None:
    """The token goes on the copy sent, never on the caller's request object."""
    transport = FakeTransport([answer(201)])
    client = make_client(transport, clock)
    original = request()

    await client.call(original)

    assert "Authorization" not in original.headers
    assert transport.requests[0].headers["Authorization"] == f"Bearer {TOKENS['loc1']}"


@pytest.mark.parametrize("tokens", [{}, {"loc1": ""}], ids=["absent", "empty"])
async def test_missing_token_sends_nothing(clock: FakeClock, tokens: dict[str, str]) -> None:
    """A location without a token raises MissingToken and nothing reaches the transport."""
    transport = FakeTransport(lambda req: answer(201))
    client = make_client(transport, clock, tokens=tokens)

    with pytest.raises(MissingToken, match="loc1") as info:
        await client.call(request("loc1"))

    assert transport.requests == []
    assert info.value.attempts == 0
    assert client.stats.requests == 0


# -- retries -------------------------------------------------------------------------------------


async def test_503_then_201_is_returned_as_ambiguous(clock: FakeClock) -> None:
    """A 503 then a 201 returns the 201 after two attempts, flagged ambiguous."""
    transport = FakeTransport([answer(503), answer(201)])
    client = make_client(transport, clock)

    exchange = await client.call(request())

    assert exchange.response.status == 201
    assert exchange.attempts == 2
    assert exchange.ambiguous is True
    assert len(transport.requests) == 2


async def test_reset_then_409_is_returned_as_ambiguous(clock: FakeClock) -> None:
    """A reset then a 409 returns the 409 flagged ambiguous: the first try may have landed."""
    transport = FakeTransport([reset(request()), answer(409)])
    client = make_client(transport, clock)

    exchange = await client.call(request())

    assert exchange.response.status == 409
    assert exchange.attempts == 2
    assert exchange.ambiguous is True


async def test_429_then_201_is_not_ambiguous(clock: FakeClock) -> None:
    """A 429 was refused before doing anything, so a later 201 is not ambiguous."""
    transport = FakeTransport([answer(429), answer(201)])
    client = make_client(transport, clock)

    exchange = await client.call(request())

    assert (exchange.response.status, exchange.attempts, exchange.ambiguous) == (201, 2, False)


@pytest.mark.parametrize("status", [200, 201, 204, 301, 400, 404, 409, 422])
async def test_non_retryable_answer_is_returned_at_once(clock: FakeClock, status: int) -> None:
    """A 2xx, 3xx or non-429 4xx is returned after one attempt, for the job kind to judge."""
    transport = FakeTransport(lambda req: answer(status))
    client = make_client(transport, clock)

    exchange = await client.call(request())

    assert (exchange.response.status, exchange.attempts, exchange.ambiguous) == (status, 1, False)
    assert len(transport.requests) == 1


async def test_429_forever_gives_up_after_policy_attempts(clock: FakeClock) -> None:
    """Endless 429s raise HTTPStatusError after exactly the policy's attempts."""
    transport = FakeTransport(lambda req: answer(429, **{"retry-after": "7"}))
    client = make_client(transport, clock)

    with pytest.raises(HTTPStatusError) as info:
        await client.call(request())

    assert info.value.status == 429
    assert info.value.attempts == POLICY.attempts
    assert info.value.ambiguous is False
    assert len(transport.requests) == POLICY.attempts


async def test_5xx_forever_raises_ambiguous_error(clock: FakeClock) -> None:
    """Endless 502s raise HTTPStatusError flagged ambiguous, after the policy's attempts."""
    transport = FakeTransport(lambda req: answer(502))
    client = make_client(transport, clock)

    with pytest.raises(HTTPStatusError) as info:
        await client.call(request())

    assert (info.value.status, info.value.attempts, info.value.ambiguous) == (502, 4, True)


async def test_resets_forever_raise_transport_error(clock: FakeClock) -> None:
    """Endless resets raise TransportError with the attempts made, flagged ambiguous."""
    transport = FakeTransport(reset)
    client = make_client(transport, clock)

    with pytest.raises(TransportError) as info:
        await client.call(request())

    assert (info.value.attempts, info.value.ambiguous) == (POLICY.attempts, True)
    assert len(transport.requests) == POLICY.attempts


async def test_429_pauses_only_its_own_location(clock: FakeClock) -> None:
    """A 429 holds back the retry at that location for the window; others keep their budget."""
    transport = FakeTransport([answer(429), answer(201), answer(201)])
    client = make_client(transport, clock)

    await client.call(request("loc1"))
    await client.call(request("loc2"))

    assert clock.now >= 10.0  # the retry waited out the 10 s window
    assert client.gates["loc1"].limit == 100  # one 429 is waited out, not a lower limit
    assert client.gates["loc2"].limit == 100


async def test_every_response_is_fed_to_read_rate(clock: FakeClock) -> None:
    """Each response, retried or final, goes through the kind's read_rate."""
    seen: list[int] = []

    def read_rate(response: Response) -> RateHint:
        seen.append(response.status)
        return RateHint()

    transport = FakeTransport([answer(503), reset(request()), answer(201)])
    client = make_client(transport, clock, read_rate=read_rate)

    await client.call(request())

    assert seen == [503, 201]  # a reset brings no response to read


# -- connection failures -------------------------------------------------------------------------


async def test_refused_then_409_is_not_ambiguous(clock: FakeClock) -> None:
    """A try that never connected cannot have had an effect: the later 409 is not ambiguous."""
    transport = FakeTransport([refused(request()), answer(409)])
    client = make_client(transport, clock)

    exchange = await client.call(request())

    assert (exchange.response.status, exchange.attempts, exchange.ambiguous) == (409, 2, False)
    assert (client.stats.requests, client.stats.connect_failures) == (1, 1)
    assert client.stats.by_method == {"POST": 1}


async def test_refused_every_time_from_the_start_means_unreachable(clock: FakeClock) -> None:
    """Nothing ever connected and a call used up its attempts: the client reports the host
    unreachable once, stops, and the call ends as not sent (RunStopped), not as failed."""
    told: list[ConnectFailed] = []
    transport = FakeTransport(refused)
    client = make_client(transport, clock, on_unreachable=told.append)

    with pytest.raises(RunStopped, match=r"cannot reach api\.example: connection refused"):
        await client.call(request())

    assert [(e.host, e.cause, e.attempts, e.ambiguous) for e in told] == [
        ("api.example", "connection refused", POLICY.attempts, False)
    ]
    assert client.unreachable is told[0]
    assert client.stopping is True
    assert (client.stats.requests, client.stats.connect_failures) == (0, POLICY.attempts)
    with pytest.raises(RunStopped):
        await client.call(request("loc2"))
    assert len(transport.requests) == POLICY.attempts  # nothing more was tried


async def test_a_host_that_goes_away_mid_run_is_unreachable_too(clock: FakeClock) -> None:
    """Connected before, then a whole call's attempts without any connection: unreachable."""
    told: list[ConnectFailed] = []
    transport = FakeTransport([answer(201), *[refused(request())] * POLICY.attempts])
    client = make_client(transport, clock, on_unreachable=told.append)

    await client.call(request())
    with pytest.raises(RunStopped):
        await client.call(request())

    assert len(told) == 1
    assert (client.stats.requests, client.stats.connect_failures) == (1, POLICY.attempts)


async def test_refused_while_another_request_connects_is_a_failure_not_unreachable(
    clock: FakeClock,
) -> None:
    """A call that could not connect while another request did connect fails on its own
    (ConnectFailed, not ambiguous); the run goes on."""
    told: list[ConnectFailed] = []
    other_answered = anyio.Event()

    class Flaky(FakeTransport):
        async def send(self, req: Request) -> Response:
            if req.location_id == "loc1" and len(self.requests) == 1:
                await other_answered.wait()  # loc2 connects while loc1 is between tries
            return await super().send(req)

    transport = Flaky(lambda req: refused(req) if req.location_id == "loc1" else answer(201))
    client = make_client(transport, clock, on_unreachable=told.append)

    async def other() -> None:
        await client.call(request("loc2"))
        other_answered.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(other)
        with pytest.raises(ConnectFailed) as info:
            await client.call(request("loc1"))

    assert (info.value.attempts, info.value.ambiguous) == (POLICY.attempts, False)
    assert told == []
    assert client.unreachable is None
    assert client.stopping is False


# -- stopping ------------------------------------------------------------------------------------


async def test_stop_before_call_sends_nothing(clock: FakeClock) -> None:
    """After stop(), a call raises RunStopped without sending."""
    transport = FakeTransport(lambda req: answer(201))
    client = make_client(transport, clock)

    client.stop()

    assert client.stopping is True
    with pytest.raises(RunStopped):
        await client.call(request())
    assert transport.requests == []


async def test_stop_between_attempts_sends_nothing_more(clock: FakeClock) -> None:
    """A stop() during a retried call ends it with RunStopped; no further attempt is sent."""
    client: Client

    def handler(req: Request) -> Response:
        client.stop()  # Ctrl-C arrives while the first attempt is on the wire
        return answer(503)

    transport = FakeTransport(handler)
    client = make_client(transport, clock)

    with pytest.raises(RunStopped):
        await client.call(request())

    assert len(transport.requests) == 1


# -- counters ------------------------------------------------------------------------------------


async def test_stats_count_requests_retries_and_kinds_of_failure(clock: FakeClock) -> None:
    """The stats count every request that reached the server, every retry, 429s, resets,
    5xx answers, and apart from them the attempts that could not connect."""
    transport = FakeTransport(
        [answer(429), answer(503), reset(request()), answer(201), refused(request()), answer(200)]
    )
    client = make_client(transport, clock)

    await client.call(request(method="POST"))
    await client.call(request(method="GET"))

    stats = client.stats
    assert stats.requests == 5  # the refused attempt never reached the server
    assert stats.connect_failures == 1
    assert stats.retries == 4
    assert stats.rate_limited == 1
    assert stats.server_errors == 1
    assert stats.transport_errors == 1
    assert stats.by_method == {"POST": 4, "GET": 1}


# -- redaction -----------------------------------------------------------------------------------


async def test_token_never_shows_in_reprs_or_messages(clock: FakeClock) -> None:
    """The signed request's repr/str and every error's message hide the token."""
    token = TOKENS["loc1"]
    transport = FakeTransport(reset)
    client = make_client(transport, clock)

    with pytest.raises(TransportError) as info:
        await client.call(request())

    signed = transport.requests[0]
    assert signed.headers["Authorization"] == f"Bearer {token}"  # it was really sent
    for text in (repr(signed), str(signed), str(info.value), repr(info.value)):
        assert token not in text
    assert "<redacted>" in repr(signed)


async def test_status_error_message_hides_token(clock: FakeClock) -> None:
    """An HTTPStatusError after retries names the status but not the token."""
    transport = FakeTransport(lambda req: answer(503))
    client = make_client(transport, clock)

    with pytest.raises(HTTPStatusError) as info:
        await client.call(request())

    for text in (str(info.value), repr(info.value), repr(info.value.request)):
        assert TOKENS["loc1"] not in text
    assert "503" in str(info.value)


@pytest.mark.parametrize(
    ("headers", "hint", "waited"),
    [
        ({"retry-after": "25"}, "retry-after", 25.0),  # Retry-After honoured, past the window
        ({}, "interval", 10.0),  # none: one interval of the location's window
    ],
)
async def test_429_waits_retry_after_or_one_interval(
    clock: FakeClock, headers: dict[str, str], hint: str, waited: float
) -> None:
    """After a 429 the retry goes out only after Retry-After seconds, else after one interval."""
    sent_at: list[float] = []
    script = iter([answer(429, **headers), answer(201)])

    def handler(req: Request) -> Response:
        sent_at.append(clock.time())
        return next(script)

    def read_rate(response: Response) -> RateHint:
        return RateHint(retry_after=retry_after_seconds(response))

    client = make_client(FakeTransport(handler), clock, read_rate=read_rate)
    exchange = await client.call(request())
    assert exchange.response.status == 201
    assert exchange.attempts == 2
    assert sent_at[1] - sent_at[0] >= waited, hint


async def test_a_429_that_first_tells_the_real_limit_is_not_a_warning(clock: FakeClock) -> None:
    """A 429 whose headers show the server's limit for the first time (below --rate's guess)
    lowers no ceiling, so it warns of none."""
    transport = FakeTransport([answer(429), answer(201)])

    def read_rate(response: Response) -> RateHint:
        return RateHint(limit=20, remaining=0 if response.status == 429 else 19)

    client = make_client(transport, clock, read_rate=read_rate)
    with capture_logs() as logs:
        await client.call(request("loc1"))
    assert client.gates["loc1"].limit == 20  # learned, not lowered
    assert [e for e in logs if e["log_level"] == "warning"] == []
