"""Token providers: minting through the client, renewing a refused token once, and a refused
credential stopping the run with every record reported."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import stamina

from engine import (
    NOT_RUN,
    Caller,
    Client,
    CredentialRefused,
    LocationError,
    LocationGates,
    Outcome,
    RateHint,
    Record,
    Request,
    Response,
    RetryPolicy,
    RunConfig,
    Send,
    Steps,
    TokenProvider,
    run,
)
from tests.fakes import FakeClock, FakeTransport


@pytest.fixture(autouse=True)
def instant_retries() -> Iterator[None]:
    """Retries without backoff."""
    stamina.set_testing(True, attempts=10, cap=True)
    yield
    stamina.set_testing(False)


def request(location_id: str) -> Request:
    return Request(method="POST", url=f"https://api.example/{location_id}", location_id=location_id)


class Minting:
    """A provider that mints ``<location>-tok<n>`` by POSTing to the issuer's resource."""

    def __init__(self, *, renew: bool = True, refuse: set[str] | None = None) -> None:
        self.renew = renew
        self.refuse = refuse or set()
        self.asked: list[tuple[str, str | None]] = []
        self.minted: dict[str, int] = {}

    async def token(
        self, location_id: str, call: Caller, *, refused: str | None = None
    ) -> str | None:
        self.asked.append((location_id, refused))
        if location_id == "issuer":
            return "ISSUER-SECRET"
        if location_id in self.refuse:
            raise CredentialRefused("the issuer's credential was refused: renew it")
        if location_id == "nowhere":
            raise LocationError("nowhere cannot be minted for", http_status=403, attempts=1)
        if refused is not None and not self.renew:
            return None
        if refused is None and location_id in self.minted:
            return f"{location_id}-tok{self.minted[location_id]}"
        answer = await call(
            Request(method="POST", url="https://api.example/mint", location_id="issuer")
        )
        assert answer.response.status == 200
        self.minted[location_id] = self.minted.get(location_id, 0) + 1
        return f"{location_id}-tok{self.minted[location_id]}"


def make_client(transport: FakeTransport, provider: TokenProvider) -> Client:
    clock = FakeClock()
    return Client(
        transport=transport,
        tokens=provider,
        gates=LocationGates(100, 10.0, clock=clock.time, sleep=clock.sleep),
        read_rate=lambda response: RateHint(),
        policy=RetryPolicy(attempts=3),
    )


def bearer(sent: Request) -> str:
    return sent.headers["Authorization"].removeprefix("Bearer ")


async def test_a_provider_mints_through_the_client_under_its_own_budget() -> None:
    """The provider's mint goes through the client with the issuer's token, paced apart."""
    transport = FakeTransport(lambda req: Response(status=200))
    provider = Minting()
    client = make_client(transport, provider)

    await client.call(request("loc1"))

    mint, sent = transport.requests
    assert (mint.location_id, bearer(mint)) == ("issuer", "ISSUER-SECRET")
    assert (sent.location_id, bearer(sent)) == ("loc1", "loc1-tok1")
    assert set(client.gates) == {"issuer", "loc1"}  # the mint spent the issuer's budget
    assert client.stats.requests == 2


async def test_a_refused_token_is_renewed_once_and_the_request_sent_again() -> None:
    """A 401 asks the provider for a fresh token and resends once; attempts add up."""
    answers = iter([Response(status=401), Response(status=201)])
    transport = FakeTransport(
        lambda req: Response(status=200) if req.location_id == "issuer" else next(answers)
    )
    provider = Minting()
    client = make_client(transport, provider)

    exchange = await client.call(request("loc1"))

    assert (exchange.response.status, exchange.attempts) == (201, 2)
    sent = [bearer(r) for r in transport.requests if r.location_id == "loc1"]
    assert sent == ["loc1-tok1", "loc1-tok2"]
    assert ("loc1", "loc1-tok1") in provider.asked


async def test_a_token_refused_again_is_not_renewed_in_a_loop() -> None:
    """When the fresh token is refused too, the 401 is returned: two sends, never a third."""
    transport = FakeTransport(
        lambda req: Response(status=200 if req.location_id == "issuer" else 401)
    )
    client = make_client(transport, Minting())

    exchange = await client.call(request("loc1"))

    assert exchange.response.status == 401
    assert [r.location_id for r in transport.requests].count("loc1") == 2


async def test_a_provider_that_cannot_renew_leaves_the_401() -> None:
    """A provider answering None for a refused token: the 401 stands after one send."""
    transport = FakeTransport(
        lambda req: Response(status=200 if req.location_id == "issuer" else 401)
    )
    client = make_client(transport, Minting(renew=False))

    exchange = await client.call(request("loc1"))

    assert (exchange.response.status, exchange.attempts) == (401, 1)
    assert [r.location_id for r in transport.requests].count("loc1") == 1


async def test_a_plain_lookup_is_never_asked_to_renew() -> None:
    """With a lookup function, a 401 is returned as it is, after one send."""
    transport = FakeTransport(lambda req: Response(status=401))
    client = Client(
        transport=transport,
        tokens={"loc1": "tok"}.get,
        gates=LocationGates(100, 10.0),
        read_rate=lambda response: RateHint(),
    )

    exchange = await client.call(request("loc1"))

    assert (exchange.response.status, len(transport.requests)) == (401, 1)


# -- a run whose credential is refused ---------------------------------------------------------


class OnePost:
    """A minimal job kind: each record is one POST to its location."""

    name = "one-post"
    columns = ("source", "location_id", "outcome", "http_status", "attempts", "error")
    ok_statuses = frozenset({"done"})
    final_statuses = frozenset({"done"})
    same_record = "same location"
    requests_per_record = 1.0

    def identity(self) -> Mapping[str, str]:
        return {}

    def canonical_field(self, name: str) -> str | None:
        return name

    def expand(self, document: Mapping[str, Any], path: str) -> Iterator[Mapping[str, Any]]:
        raise AssertionError("no templates")

    def parse(self, source: str, values: Mapping[str, Any]) -> Record:
        return Record(source=source, location_id=values["location_id"], ident=source)

    def invalid_record(self, source: str, values: Mapping[str, Any]) -> Record:
        return self.parse(source, values)

    def row_ident(self, row: Mapping[str, str]) -> str:
        return row["source"]

    def report_fields(self, record: Record) -> Mapping[str, str]:
        return {}

    def read_rate(self, response: Response) -> RateHint:
        return RateHint()

    def prepare(self, location_id: str) -> Steps[Any]:
        return "ready"  # None would mean "preparation was cut short"
        yield  # a generator that sends nothing

    def process(self, record: Record, state: Any, *, noted: bool) -> Steps[Outcome]:
        answer = yield Send(request(record.location_id))
        return Outcome(record=record, status="done", http_status=answer.response.status)


def records(*locations: str) -> list[Record]:
    return [
        Record(source=f"job#{n}", location_id=loc, ident=f"job#{n}")
        for n, loc in enumerate(locations, 1)
    ]


async def test_a_refused_credential_stops_the_run_and_says_why(tmp_path: Path) -> None:
    """CredentialRefused stops sending; unsent records are not_run with the reason; exit 2."""
    transport = FakeTransport(lambda req: Response(status=200))
    provider = Minting(refuse={"loc2"})
    config = RunConfig(job_files=("job",), report=str(tmp_path / "out.csv"), concurrency=1)
    job = records("loc1", "loc2", "loc3", "loc3")  # fed round-robin: loc1, loc2, loc3, loc3

    with await run(OnePost(), config, tokens=provider, transport=transport, records=job) as result:
        statuses = [o.status for o in result.outcomes]
        errors = [o.error for o in result.outcomes]
        summary = result.summary

    assert statuses == ["done", NOT_RUN, NOT_RUN, NOT_RUN]
    assert all("renew it" in e for e in errors[1:])
    assert summary.stopped
    assert summary.exit_code == 2
    assert summary.credential_refused == "the issuer's credential was refused: renew it"
    assert not any(r.location_id == "loc3" for r in transport.requests)  # nothing sent after


async def test_a_location_without_a_token_fails_alone(tmp_path: Path) -> None:
    """A LocationError from the provider fails that location's records; the others go on."""
    transport = FakeTransport(lambda req: Response(status=200))
    config = RunConfig(job_files=("job",), concurrency=2)
    job = records("loc1", "nowhere", "loc2", "nowhere")

    result = await run(OnePost(), config, tokens=Minting(), transport=transport, records=job)
    with result:
        found = [(o.status, o.http_status, o.error) for o in result.outcomes]
        assert result.summary.exit_code == 1

    assert found[0][0] == found[2][0] == "done"
    assert found[1] == found[3] == ("failed", 403, "nowhere cannot be minted for")
