"""The sandbox's agency routes: minting location tokens, listing sub-accounts, the Company
budget, scopes and expiry, as the spec (``apps/oauth.json``, ``apps/locations.json``) says."""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from jobs.sandbox import Sandbox, SandboxConfig

from .test_sandbox import FakeClock, auth, call

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def mint(
    http: aiohttp.ClientSession, sb: Sandbox, token: str, location: str, company: str = "co1"
) -> tuple[int, Any, dict[str, str]]:
    return await call(
        http,
        sb,
        "POST",
        "/oauth/locationToken",
        headers={**auth(token), **FORM},
        data=f"companyId={company}&locationId={location}",
    )


async def test_a_minted_token_works_for_its_location_only(http: aiohttp.ClientSession) -> None:
    """The agency token mints a token that reads its own location and gets 403 elsewhere."""
    async with Sandbox() as sb:
        agency = sb.add_company("co1", ["L1", "L2"])
        status, body, _ = await mint(http, sb, agency, "L1")
        assert status == 200
        assert body["locationId"] == "L1"
        assert body["token_type"] == "Bearer"
        assert body["expires_in"] == 86399
        assert "associations.write" in body["scope"].split()
        token = body["access_token"]
        assert token in sb.minted_tokens()
        status, objects, _ = await call(http, sb, "GET", "/objects/?locationId=L1", token=token)
        assert status == 200
        assert objects["objects"]
        status, refused, _ = await call(http, sb, "GET", "/objects/?locationId=L2", token=token)
        assert (status, refused["message"]) == (
            403,
            "The token does not have access to this location.",
        )
        assert sb.stats.tokens_minted == {"L1": 1}
        assert sb.log[0].token_company == "co1"
        assert sb.log[0].token_kind == "agency"
        assert sb.log[1].token_kind == "minted"
        assert sb.log[1].token_location == "L1"


async def test_minting_refuses_as_the_spec_and_the_choices_say(
    http: aiohttp.ClientSession,
) -> None:
    """Outside the company 403, app not installed 400, a JSON body or missing field 422,
    another company 403, a location token on the route 401."""
    async with Sandbox() as sb:
        agency = sb.add_company("co1", ["L1", "L2"], not_installed=["L2"])
        sb.add_company("co2", ["M1"])
        pit = sb.issue_token("Lone")
        status, body, _ = await mint(http, sb, agency, "M1")
        assert (status, body["message"]) == (
            403,
            "The token does not have access to this location.",
        )
        status, body, _ = await mint(http, sb, agency, "Lone")
        assert status == 403
        status, body, _ = await mint(http, sb, agency, "L2")
        assert (status, body["message"]) == (400, "The app is not installed in this location.")
        status, body, _ = await mint(http, sb, agency, "L1", company="co2")
        assert (status, body["message"]) == (403, "The token does not have access to this company.")
        status, body, _ = await call(
            http,
            sb,
            "POST",
            "/oauth/locationToken",
            token=agency,
            json={"companyId": "co1", "locationId": "L1"},
        )
        assert status == 422
        assert body["message"] == ["companyId must be a string", "locationId must be a string"]
        status, body, _ = await call(
            http,
            sb,
            "POST",
            "/oauth/locationToken",
            headers={**auth(agency), **FORM},
            data="companyId=co1&locationId=&extra=1",
        )
        assert (status, body["message"]) == (
            422,
            ["property extra should not exist", "locationId should not be empty"],
        )
        status, body, _ = await mint(http, sb, pit, "L1")
        assert (status, body["message"]) == (401, "This AuthClass is not yet supported")
        assert sb.stats.tokens_minted == {}


async def test_the_agency_token_works_on_agency_routes_only(http: aiohttp.ClientSession) -> None:
    """An agency token on a location's route is refused 401, as the service does."""
    async with Sandbox() as sb:
        agency = sb.add_company("co1", ["L1"])
        status, body, _ = await call(http, sb, "GET", "/objects/?locationId=L1", token=agency)
        assert (status, body["message"]) == (401, "This AuthClass is not yet supported")


async def test_minted_tokens_expire_after_their_lifetime(http: aiohttp.ClientSession) -> None:
    """A minted token answers 401 Invalid JWT once the sandbox's clock passes its lifetime."""
    clock = FakeClock()
    async with Sandbox(SandboxConfig(clock=clock, token_lifetime=60)) as sb:
        agency = sb.add_company("co1", ["L1"])
        _, body, _ = await mint(http, sb, agency, "L1")
        assert body["expires_in"] == 60
        path = "/objects/?locationId=L1"
        clock.now += 59.9
        assert (await call(http, sb, "GET", path, token=body["access_token"]))[0] == 200
        clock.now += 0.1
        status, refused, _ = await call(http, sb, "GET", path, token=body["access_token"])
        assert (status, refused["message"]) == (401, "Invalid JWT")
        _, fresh, _ = await mint(http, sb, agency, "L1")
        assert (await call(http, sb, "GET", path, token=fresh["access_token"]))[0] == 200


async def test_an_expired_agency_token_is_refused_until_renewed(
    http: aiohttp.ClientSession,
) -> None:
    """After expiry the agency token gets 401 everywhere; the renewed one works."""
    async with Sandbox() as sb:
        agency = sb.add_company("co1", ["L1"])
        sb.expire_agency_token("co1")
        status, body, _ = await mint(http, sb, agency, "L1")
        assert (status, body["message"]) == (401, "Invalid JWT")
        renewed = sb.renew_agency_token("co1")
        assert renewed != agency
        assert (await mint(http, sb, renewed, "L1"))[0] == 200
        assert (await mint(http, sb, agency, "L1"))[0] == 401


async def test_the_agency_token_lives_its_lifetime_and_a_renewed_one_as_long(
    http: aiohttp.ClientSession,
) -> None:
    """An agency token answers 401 once agency_token_lifetime has passed since it was issued;
    a renewed one lives as long as it is told (a day by default)."""
    clock = FakeClock()
    async with Sandbox(SandboxConfig(clock=clock, agency_token_lifetime=100)) as sb:
        agency = sb.add_company("co1", ["L1"])
        clock.now += 99.9
        assert (await mint(http, sb, agency, "L1"))[0] == 200
        clock.now += 0.1
        assert (await mint(http, sb, agency, "L1"))[0] == 401
        renewed = sb.renew_agency_token("co1", lifetime=50)
        clock.now += 49.9
        assert (await mint(http, sb, renewed, "L1"))[0] == 200
        clock.now += 0.1
        assert (await mint(http, sb, renewed, "L1"))[0] == 401
        renewed = sb.renew_agency_token("co1")
        clock.now += 86_000
        assert (await mint(http, sb, renewed, "L1"))[0] == 200


async def test_scopes_are_enforced_for_agency_and_minted_tokens(
    http: aiohttp.ClientSession,
) -> None:
    """Without oauth.write the agency cannot mint (401); a token minted where the app lacks
    associations.write reads but cannot create (401)."""
    async with Sandbox() as sb:
        reader = sb.add_company("co1", ["L1"], scopes=["locations.readonly"])
        status, body, _ = await mint(http, sb, reader, "L1")
        assert (status, body["message"]) == (401, "The token is not authorized for this scope.")
        agency = sb.add_company("co2", ["M1"])
        sb.install("M1", scopes=["associations.readonly", "objects/schema.readonly"])
        _, minted, _ = await mint(http, sb, agency, "M1", company="co2")
        token = minted["access_token"]
        assert minted["scope"] == "associations.readonly objects/schema.readonly"
        assert (await call(http, sb, "GET", "/objects/?locationId=M1", token=token))[0] == 200
        body = {
            "locationId": "M1",
            "key": "k",
            "firstObjectKey": "contact",
            "firstObjectLabel": "A",
            "secondObjectKey": "custom_objects.pet",
            "secondObjectLabel": "B",
        }
        status, refused, _ = await call(http, sb, "POST", "/associations/", token=token, json=body)
        assert (status, refused["message"]) == (401, "The token is not authorized for this scope.")


async def test_minting_spends_the_company_budget_with_its_headers(
    http: aiohttp.ClientSession,
) -> None:
    """Minting counts against the company's own burst limit (429 past it), not a location's."""
    async with Sandbox(SandboxConfig(rate_limit=3, rate_interval=10)) as sb:
        agency = sb.add_company("co1", ["L1", "L2"])
        remaining = []
        for _ in range(3):
            status, body, headers = await mint(http, sb, agency, "L1")
            assert status == 200
            remaining.append(headers["X-RateLimit-Remaining"])
            assert headers["X-RateLimit-Max"] == "3"
            assert headers["X-RateLimit-Interval-Milliseconds"] == "10000"
        assert remaining == ["2", "1", "0"]
        assert (await mint(http, sb, agency, "L2"))[0] == 429
        # L1's own budget is untouched by the company's minting
        token = body["access_token"]
        _, _, headers = await call(http, sb, "GET", "/objects/?locationId=L1", token=token)
        assert headers["X-RateLimit-Remaining"] == "2"


async def test_search_pages_through_the_company_until_an_empty_page(
    http: aiohttp.ClientSession,
) -> None:
    """/locations/search lists the company's sub-accounts, at most page_cap a page, then []."""
    async with Sandbox(SandboxConfig(page_cap=4)) as sb:
        agency = sb.add_company("co1", count=10)
        sb.add_company("co2", ["Other"])
        seen: list[dict[str, Any]] = []
        skip = 0
        while True:
            path = f"/locations/search?companyId=co1&skip={skip}&limit=100"
            status, body, _ = await call(http, sb, "GET", path, token=agency)
            assert status == 200
            if not body["locations"]:
                break
            assert len(body["locations"]) <= 4
            seen += body["locations"]
            skip += len(body["locations"])
        assert [s["id"] for s in seen] == [loc["id"] for loc in sb.company_locations("co1")]
        assert seen[0]["name"] == "Austin Dental"
        assert {s["companyId"] for s in seen} == {"co1"}
        status, body, _ = await call(
            http, sb, "GET", "/locations/search?companyId=co2", token=agency
        )
        assert status == 403
        status, body, _ = await call(http, sb, "GET", "/locations/search?order=up", token=agency)
        assert (status, body["message"]) == (
            422,
            ["order must be one of the following values: asc, desc"],
        )
        _, body, _ = await call(http, sb, "GET", "/locations/search", token=agency)
        assert len(body["locations"]) == 4  # limit 10 by default, under the page cap


async def test_generated_sub_accounts_repeat_from_run_to_run() -> None:
    """The same company id gives the same sub-account ids and names in every sandbox."""
    first, second = Sandbox(), Sandbox()
    first.add_company("acme", count=12)
    second.add_company("acme", count=12)
    listed = first.company_locations("acme")
    assert listed == second.company_locations("acme")
    assert all(re.fullmatch(r"[A-Za-z0-9]{20}", loc["id"]) for loc in listed)
    assert listed[11]["name"] == "Denver Plumbing"
    assert len({loc["name"] for loc in listed}) == 12


async def test_installed_locations_lists_where_the_app_is(http: aiohttp.ClientSession) -> None:
    """/oauth/installedLocations needs appId; isInstalled=true keeps the installed ones."""
    async with Sandbox() as sb:
        agency = sb.add_company("co1", ["L1", "L2", "L3"], not_installed=["L2"])
        base = "/oauth/installedLocations?companyId=co1"
        status, body, _ = await call(http, sb, "GET", f"{base}&appId=sandbox-app", token=agency)
        assert status == 200
        assert [(x["_id"], x["isInstalled"]) for x in body["locations"]] == [
            ("L1", True),
            ("L2", False),
            ("L3", True),
        ]
        assert body["count"] == 3
        path = f"{base}&appId=sandbox-app&isInstalled=true"
        _, body, _ = await call(http, sb, "GET", path, token=agency)
        assert [x["_id"] for x in body["locations"]] == ["L1", "L3"]
        status, body, _ = await call(http, sb, "GET", base, token=agency)
        assert (status, body["message"]) == (422, ["appId must be a string"])
        status, body, _ = await call(http, sb, "GET", f"{base}&appId=other", token=agency)
        assert (status, body["message"]) == (400, "App not found")


async def test_admin_routes_create_a_company_and_expire_or_renew_its_token(
    http: aiohttp.ClientSession,
) -> None:
    """POST /_sandbox/companies makes sub-accounts and answers the agency token; expire and
    renew change which token works."""
    async with Sandbox() as sb:
        async with http.post(
            sb.url + "/_sandbox/companies", json={"companyId": "co1", "count": 3}
        ) as resp:
            made = await resp.json()
        assert [x["name"] for x in made["locations"]] == [
            "Austin Dental",
            "Austin Plumbing",
            "Austin Realty",
        ]
        agency = made["token"]
        first = made["locations"][0]["id"]
        assert (await mint(http, sb, agency, first))[0] == 200
        async with http.post(sb.url + "/_sandbox/companies/co1/expire") as resp:
            assert resp.status == 200
        assert (await mint(http, sb, agency, first))[0] == 401
        async with http.post(sb.url + "/_sandbox/companies/co1/renew") as resp:
            renewed = (await resp.json())["token"]
        assert (await mint(http, sb, renewed, first))[0] == 200
        async with http.post(sb.url + "/_sandbox/companies", json={"companyId": 5}) as resp:
            assert resp.status == 400


def test_the_sandbox_command_makes_an_agency_and_writes_its_token(tmp_path: Path) -> None:
    """``sandbox --agency 3 --agency-token-file F`` writes the token (mode 600) and says so."""
    token_file = tmp_path / "agency.txt"
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine", "sandbox", "--port", "0", "--agency", "3",
         "--not-installed", "1", "--agency-token-file", str(token_file)],
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        lines = [proc.stderr.readline(), proc.stderr.readline()]
        assert "sandbox listening on http://127.0.0.1:" in lines[0]
        assert lines[1].strip() == (
            f"agency sandbox-agency: 3 sub-accounts, app sandbox-app installed in 2, its token "
            f"written to {token_file}"
        )
        token = token_file.read_text(encoding="utf-8")
        assert re.fullmatch(r"agy-[\w-]+\n", token)
        assert stat.S_IMODE(os.stat(token_file).st_mode) == 0o600
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)
        if proc.stderr is not None:
            proc.stderr.close()
