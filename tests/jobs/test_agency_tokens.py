"""The agency token provider on its own: what it mints, when, and what it refuses to do."""

from __future__ import annotations

import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import parse_qs

import anyio
import orjson
import pytest
import stamina

from engine import (
    Client,
    ConfigError,
    CredentialRefused,
    LocationError,
    LocationGates,
    RateHint,
    Request,
    Response,
    RetryPolicy,
)
from jobs.agency import AgencyCredential, AgencyTokens, load_agency
from tests.fakes import FakeClock, FakeTransport

CREDENTIAL = AgencyCredential(token="AGENCY-SECRET", company_id="co1")
BASE = "https://api.example"


@pytest.fixture(autouse=True)
def instant_retries() -> Iterator[None]:
    """Retries without backoff."""
    stamina.set_testing(True, attempts=10, cap=True)
    yield
    stamina.set_testing(False)


def minted(location: str, n: int = 1, expires_in: float | None = 86399) -> Response:
    body: dict[str, object] = {"access_token": f"{location}-minted-{n}", "locationId": location}
    if expires_in is not None:
        body["expires_in"] = expires_in
    return Response(status=200, body=orjson.dumps(body))


def refused(status: int, message: str) -> Response:
    return Response(status=status, body=orjson.dumps({"statusCode": status, "message": message}))


def server(answer: Callable[[str, int], Response]) -> FakeTransport:
    """Answers mints with ``answer(location, how many mints of it so far)``, the rest 200."""
    counts: dict[str, int] = {}

    def handle(request: Request) -> Response:
        if request.url.endswith("/oauth/locationToken"):
            form = parse_qs((request.body or b"").decode())
            location = form["locationId"][0]
            counts[location] = counts.get(location, 0) + 1
            return answer(location, counts[location])
        return Response(status=200)

    return FakeTransport(handle)


def client(transport: FakeTransport, provider: AgencyTokens) -> Client:
    clock = FakeClock()
    return Client(
        transport=transport,
        tokens=provider,
        gates=LocationGates(100, 10.0, clock=clock.time, sleep=clock.sleep),
        read_rate=lambda response: RateHint(),
        policy=RetryPolicy(attempts=3),
    )


def mints(transport: FakeTransport) -> list[Request]:
    return [r for r in transport.requests if r.url.endswith("/oauth/locationToken")]


async def test_the_mint_request_is_the_spec_s() -> None:
    """POST /oauth/locationToken, Version header, agency bearer, form companyId/locationId."""
    transport = server(lambda loc, n: minted(loc, n))
    provider = AgencyTokens(CREDENTIAL, base_url=BASE)

    token = await provider.token("L1", client(transport, provider).call)

    assert token == "L1-minted-1"
    (sent,) = transport.requests
    assert (sent.method, sent.url) == ("POST", f"{BASE}/oauth/locationToken")
    assert sent.location_id == "company/co1"  # paced under the company's budget
    assert sent.headers["Authorization"] == "Bearer AGENCY-SECRET"
    assert sent.headers["Version"] == "2021-07-28"
    assert sent.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert parse_qs((sent.body or b"").decode()) == {"companyId": ["co1"], "locationId": ["L1"]}


async def test_concurrent_requests_of_a_location_share_one_mint() -> None:
    """Twenty requests of one location at once: one mint, one token for all."""
    transport = server(lambda loc, n: minted(loc, n))
    provider = AgencyTokens(CREDENTIAL, base_url=BASE)
    http = client(transport, provider)
    found: list[str | None] = []

    async def ask() -> None:
        found.append(await provider.token("L1", http.call))

    async with anyio.create_task_group() as tg:
        for _ in range(20):
            tg.start_soon(ask)

    assert found == ["L1-minted-1"] * 20
    assert len(mints(transport)) == 1


async def test_a_refused_agency_token_is_never_tried_again() -> None:
    """After a 401 on minting, every later location raises at once, sending nothing."""
    transport = server(lambda loc, n: refused(401, "Invalid JWT"))
    provider = AgencyTokens(CREDENTIAL, base_url=BASE)
    http = client(transport, provider)

    for location in ("L1", "L2", "L3", "L1"):
        with pytest.raises(CredentialRefused, match=r"agency token was refused \(HTTP 401"):
            await provider.token(location, http.call)

    assert len(mints(transport)) == 1


async def test_a_location_it_cannot_mint_for_fails_with_the_reason_once() -> None:
    """A 403 fails that location (cached: not asked again); others are minted."""
    transport = server(
        lambda loc, n: (
            refused(403, "The token does not have access to this location.")
            if loc == "Far"
            else minted(loc, n)
        )
    )
    provider = AgencyTokens(CREDENTIAL, base_url=BASE)
    http = client(transport, provider)

    for _ in range(2):
        with pytest.raises(LocationError) as info:
            await provider.token("Far", http.call)
        assert info.value.http_status == 403
        assert str(info.value) == (
            "minting a token for location Far with the agency token: HTTP 403: The token does "
            "not have access to this location."
        )
    assert await provider.token("Near", http.call) == "Near-minted-1"
    assert [parse_qs((r.body or b"").decode())["locationId"] for r in mints(transport)] == [
        ["Far"],
        ["Near"],
    ]


async def test_a_token_for_another_location_is_not_used() -> None:
    """An answer naming another location than asked fails the location, token unused."""
    transport = server(lambda loc, n: minted("Elsewhere", n))
    provider = AgencyTokens(CREDENTIAL, base_url=BASE)

    with pytest.raises(LocationError, match=r"a token for another location \(Elsewhere\)"):
        await provider.token("L1", client(transport, provider).call)


async def test_only_a_token_past_half_its_life_is_renewed() -> None:
    """A token refused soon after minting is not renewed (a scope is missing, say); one
    refused past half its life is, once."""
    clock = FakeClock(0.0)
    transport = server(lambda loc, n: minted(loc, n, expires_in=100))
    provider = AgencyTokens(CREDENTIAL, base_url=BASE, clock=clock.time)
    http = client(transport, provider)
    first = await provider.token("L1", http.call)

    clock.advance(10)
    assert await provider.token("L1", http.call, refused=first) is None
    clock.advance(45)
    second = await provider.token("L1", http.call, refused=first)
    assert second == "L1-minted-2"
    # another request refused with the old token meanwhile gets the new one, no new mint
    assert await provider.token("L1", http.call, refused=first) == second
    assert len(mints(transport)) == 2


async def test_without_a_lifetime_a_token_is_renewed_once() -> None:
    """When the service says nothing of the lifetime, one renewal per location at most."""
    transport = server(lambda loc, n: minted(loc, n, expires_in=None))
    provider = AgencyTokens(CREDENTIAL, base_url=BASE)
    http = client(transport, provider)
    first = await provider.token("L1", http.call)
    second = await provider.token("L1", http.call, refused=first)

    assert second == "L1-minted-2"
    assert await provider.token("L1", http.call, refused=second) is None


async def test_a_given_token_wins_and_is_never_renewed() -> None:
    """A location with a token of its own (a tokens file) is not minted for."""
    transport = server(lambda loc, n: minted(loc, n))
    provider = AgencyTokens(CREDENTIAL, base_url=BASE, given={"Mine": "pit-own"}.get)
    http = client(transport, provider)

    assert await provider.token("Mine", http.call) == "pit-own"
    assert await provider.token("Mine", http.call, refused="pit-own") is None
    assert await provider.token("company/co1", http.call) == "AGENCY-SECRET"
    assert mints(transport) == []


def test_the_credential_never_shows_its_token() -> None:
    """repr() of a credential leaves the token out."""
    assert "AGENCY-SECRET" not in repr(CREDENTIAL)
    assert "co1" in repr(CREDENTIAL)


def test_the_agency_token_comes_from_a_file_or_the_environment(tmp_path: Path) -> None:
    """The file wins over GHL_AGENCY_TOKEN; the company id is required with a token."""
    env = {"GHL_AGENCY_TOKEN": "from-env", "GHL_COMPANY_ID": "co-env", "GHL_APP_ID": "app1"}
    token_file = tmp_path / "agency.txt"
    token_file.write_text("\ufefffrom-file\n", encoding="utf-8")
    token_file.chmod(0o600)

    assert load_agency(environ={}) is None
    from_env = load_agency(environ=env)
    assert from_env == AgencyCredential(token="from-env", company_id="co-env", app_id="app1")
    from_file = load_agency(str(token_file), company_id="co-flag", environ=env)
    assert from_file == AgencyCredential(token="from-file", company_id="co-flag", app_id="app1")
    with pytest.raises(ConfigError, match="--company-id"):
        load_agency(environ={"GHL_AGENCY_TOKEN": "t"})


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("", "is empty"),
        ("\n \n", "is empty"),
        ("SECRET-1\nSECRET-2\n", "alone"),
        ("SECRET-1 SECRET-2", "alone"),
    ],
)
def test_a_token_file_that_is_not_one_token_is_refused_unseen(
    tmp_path: Path, content: str, problem: str
) -> None:
    """An empty or many-line token file is refused without echoing what it holds."""
    token_file = tmp_path / "agency.txt"
    token_file.write_text(content, encoding="utf-8")

    with pytest.raises(ConfigError, match=problem) as info:
        load_agency(str(token_file), company_id="co1", environ={})

    for word in content.split():
        assert word not in str(info.value).replace(str(token_file), "")


def test_a_token_file_others_can_read_is_warned_about(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A group- or world-readable agency token file gets a warning (chmod 600)."""
    token_file = tmp_path / "agency.txt"
    token_file.write_text("tok\n", encoding="utf-8")
    token_file.chmod(0o644)

    load_agency(str(token_file), company_id="co1", environ={})

    assert "chmod 600" in capsys.readouterr().out
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o644
