"""Agency mode against the sandbox: one agency token provisions every sub-account.

Minting is paced under the company's own budget, renewed when a token expires mid-run,
fails alone for a location the agency cannot reach, stops the run cleanly when the agency
token itself is refused (and a resume finishes), and no token leaks or crosses locations.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from engine import (
    NOT_RUN,
    AiohttpTransport,
    ConfigError,
    Request,
    Response,
    RunConfig,
    read_report,
)
from jobs.agency import AgencyCredential, AgencyTokens
from jobs.api import rollback_job, run_job
from jobs.rollback import plan_rollback
from jobs.sandbox import Sandbox, SandboxConfig

from ..fakes import FakeClock
from .helpers import statuses

DEFINITIONS = [
    {"key": "pet_owner", "firstObjectKey": "custom_objects.pet", "secondObjectKey": "contact"},
    {
        "key": "property_owner",
        "firstObjectKey": "custom_objects.property",
        "secondObjectKey": "contact",
    },
    {
        "key": "pet_vet",
        "firstObjectKey": "custom_objects.pet",
        "secondObjectKey": "business",
    },
]


class Recording:
    """A real transport that records what each request carried, and may act before one."""

    def __init__(self, before: Callable[[Request], None] | None = None) -> None:
        self._inner = AiohttpTransport(timeout=10)
        self._before = before
        self.sent: list[tuple[str, str, str]] = []  # (location_id, path, bearer token)

    async def send(self, request: Request) -> Response:
        if self._before is not None:
            self._before(request)
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        path = request.url.split("//", 1)[1].split("/", 1)[1]
        self.sent.append((request.location_id, "/" + path, token))
        return await self._inner.send(request)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def __aenter__(self) -> Recording:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def mints(self) -> int:
        return sum(1 for _, path, _ in self.sent if path == "/oauth/locationToken")


def template(path: Path, locations: Any, definitions: list[dict[str, str]] = DEFINITIONS) -> str:
    path.write_bytes(orjson.dumps({"locations": locations, "associations": definitions}))
    return str(path)


def minted_for(sandbox: Sandbox) -> dict[str, str]:
    """Each minted token's location, as the sandbox issued it."""
    return {t: m.location_id for t, m in sandbox._agencies._minted.items()}


async def test_all_sub_accounts_are_provisioned_with_names_in_the_report(
    tmp_path: Path,
) -> None:
    """ "locations": "all" lists every page of the company and runs each sub-account, named."""
    async with Sandbox(SandboxConfig(page_cap=5)) as sb:
        agency = sb.add_company("co1", count=12)
        sb.add_company("co2", ["Stranger"])
        job = template(tmp_path / "t.json", "all", DEFINITIONS[:1])
        report = tmp_path / "out.csv"
        result = await run_job(
            RunConfig(job_files=(job,), report=str(report)),
            base_url=sb.url,
            agency=AgencyCredential(token=agency, company_id="co1"),
        )
        with result:
            assert statuses(result) == ["created"] * 12
        listed = sb.company_locations("co1")
        rows = read_report(str(report))
        assert [(r["location_id"], r["location_name"]) for r in rows] == [
            (loc["id"], loc["name"]) for loc in listed
        ]
        assert sb.stats.tokens_minted == {loc["id"]: 1 for loc in listed}
        assert "Stranger" not in sb.snapshot() or sb.snapshot()["Stranger"] == []


async def test_minting_is_paced_under_the_company_limit(tmp_path: Path) -> None:
    """30 mints against a company limit of 10 per 0.25 s, the limit known: no 429 at all."""
    async with Sandbox(SandboxConfig(rate_limit=10, rate_interval=0.25)) as sb:
        agency = sb.add_company("co1", count=30)
        job = template(tmp_path / "t.json", "all", DEFINITIONS[:1])
        async with Recording() as transport:
            result = await run_job(
                RunConfig(job_files=(job,), rate=(10, 0.25)),
                base_url=sb.url,
                agency=AgencyCredential(token=agency, company_id="co1"),
                transport=transport,
            )
        with result:
            assert statuses(result) == ["created"] * 30
            assert result.summary.rate_limited == 0
        assert transport.mints() == 30
        assert sb.stats.throttled == 0
        company = [entry for entry in sb.log if entry.token_kind == "agency"]
        assert len(company) == 32  # two listing pages (the second one empty) and the mints


async def test_a_token_that_expires_mid_run_is_minted_again_and_no_record_is_lost(
    tmp_path: Path,
) -> None:
    """Tokens expiring mid-run are re-minted once per location; every record is created once."""
    clock = FakeClock(1_000.0)
    config = SandboxConfig(clock=clock.time, token_lifetime=100, rate_limit=0, daily_limit=0)
    async with Sandbox(config) as sb:
        locations = ["L1", "L2", "L3"]
        agency = sb.add_company("co1", locations)
        definitions = [
            {
                "key": f"def_{n}",
                "firstObjectKey": "contact",
                "firstObjectLabel": f"Left {n}",
                "secondObjectKey": "custom_objects.pet",
                "secondObjectLabel": f"Right {n}",
            }
            for n in range(10)
        ]
        job = template(tmp_path / "t.json", locations, definitions)
        creates = 0

        def expire_midway(request: Request) -> None:
            nonlocal creates
            if request.method == "POST" and request.url.endswith("/associations/"):
                creates += 1
                if creates == 12:
                    clock.advance(150)  # every token minted so far is now expired

        credential = AgencyCredential(token=agency, company_id="co1")
        provider = AgencyTokens(credential, base_url=sb.url, clock=clock.time)
        async with Recording(before=expire_midway) as transport:
            result = await run_job(
                RunConfig(job_files=(job,), concurrency=4),
                base_url=sb.url,
                tokens=provider,
                transport=transport,
            )
        with result:
            assert statuses(result) == ["created"] * 30
        assert sb.stats.tokens_minted == dict.fromkeys(locations, 2)
        refused = [e for e in sb.log if e.status == 401]
        assert len(refused) >= 3  # each location's, and any other sent with an old token
        assert {e.token_kind for e in refused} == {None}  # expired: no longer anyone's token
        assert {
            (loc, key): counts["created"]
            for loc, keys in sb.stats.writes_by_key.items()
            for key, counts in keys.items()
        } == {(loc, f"def_{n}"): 1 for loc in locations for n in range(10)}


async def test_a_location_the_agency_cannot_reach_fails_alone(tmp_path: Path) -> None:
    """Outside the company, app not installed, a scope missing: those fail with the reason;
    the rest are created, and nothing is minted twice."""
    async with Sandbox() as sb:
        agency = sb.add_company("co1", ["L1", "L2", "NoApp", "ReadOnly"], not_installed=["NoApp"])
        sb.install("ReadOnly", scopes=["associations.readonly", "objects/schema.readonly"])
        sb.issue_token("Outsider")  # a sub-account of no company of this agency
        job = template(tmp_path / "t.json", ["L1", "Outsider", "NoApp", "ReadOnly", "L2"])
        result = await run_job(
            RunConfig(job_files=(job,)),
            base_url=sb.url,
            agency=AgencyCredential(token=agency, company_id="co1"),
        )
        with result:
            by_location: dict[str, set[tuple[str, int | None, str]]] = defaultdict(set)
            for o in result.outcomes:
                by_location[o.record.location_id].add((o.status, o.http_status, o.error))
            assert result.summary.exit_code == 1
            assert not result.summary.stopped
        assert by_location["L1"] == by_location["L2"] == {("created", 201, "")}
        mint = "minting a token for location {} with the agency token: "
        assert by_location["Outsider"] == {
            (
                "failed",
                403,
                mint.format("Outsider")
                + "HTTP 403: The token does not have access to this location.",
            )
        }
        assert by_location["NoApp"] == {
            (
                "failed",
                400,
                mint.format("NoApp") + "HTTP 400: The app is not installed in this location.",
            )
        }
        assert by_location["ReadOnly"] == {
            ("failed", 401, "HTTP 401: The token is not authorized for this scope.")
        }
        assert sb.stats.tokens_minted == {"L1": 1, "L2": 1, "ReadOnly": 1}


async def test_a_refused_agency_token_stops_the_run_and_resume_finishes(tmp_path: Path) -> None:
    """The agency token expires mid-run: one refused mint, sending stops, the rest is
    not_run with the reason (exit 2); a resume with a renewed token finishes, once each."""
    async with Sandbox() as sb:
        agency = sb.add_company("co1", count=8)
        job = template(tmp_path / "t.json", "all")
        report = tmp_path / "out.csv"

        def expire_at_fourth_mint(request: Request) -> None:
            if request.url.endswith("/oauth/locationToken"):
                expire_at_fourth_mint.mints += 1  # type: ignore[attr-defined]
                if expire_at_fourth_mint.mints == 4:  # type: ignore[attr-defined]
                    sb.expire_agency_token("co1")

        expire_at_fourth_mint.mints = 0  # type: ignore[attr-defined]
        async with Recording(before=expire_at_fourth_mint) as transport:
            result = await run_job(
                RunConfig(job_files=(job,), report=str(report), concurrency=2),
                base_url=sb.url,
                agency=AgencyCredential(token=agency, company_id="co1"),
                transport=transport,
            )
        with result:
            summary = result.summary
            found = statuses(result)
        assert summary.exit_code == 2
        assert summary.stopped
        assert "the agency token was refused (HTTP 401: Invalid JWT)" in summary.credential_refused
        assert "--resume" in summary.credential_refused
        assert transport.mints() == 4  # the refused one was never tried again
        assert len(found) == 24
        assert set(found) == {"created", NOT_RUN}
        rows = read_report(str(report))
        minted = set(sb.stats.tokens_minted)
        assert len(minted) == 3
        assert {r["location_id"] for r in rows if r["outcome"] == "created"} <= minted
        assert all(
            "the agency token was refused" in r["error"] for r in rows if r["outcome"] == NOT_RUN
        )

        renewed = sb.renew_agency_token("co1")
        again = await run_job(
            RunConfig(job_files=(job,), report=str(report), resume=True),
            base_url=sb.url,
            agency=AgencyCredential(token=renewed, company_id="co1"),
        )
        with again:
            assert statuses(again) == ["created"] * 24
            assert again.summary.processed == found.count(NOT_RUN)
        assert all(
            counts["created"] == 1
            for keys in sb.stats.writes_by_key.values()
            for counts in keys.values()
        )
        assert sum(len(keys) for keys in sb.stats.writes_by_key.values()) == 24


async def test_tokens_never_cross_locations_and_the_agency_token_stays_home(
    tmp_path: Path,
) -> None:
    """Each minted token goes only on its own location's requests; the agency token only on
    the agency's; a location in the tokens file keeps its own token and is not minted for."""
    async with Sandbox() as sb:
        agency = sb.add_company("co1", count=6)
        listed = [loc["id"] for loc in sb.company_locations("co1")]
        own = sb.issue_token(listed[2])
        job = template(tmp_path / "t.json", "all")
        async with Recording() as transport:
            result = await run_job(
                RunConfig(job_files=(job,), concurrency=8),
                base_url=sb.url,
                tokens={listed[2]: own}.get,
                agency=AgencyCredential(token=agency, company_id="co1"),
                transport=transport,
            )
        with result:
            assert statuses(result) == ["created"] * 18
        issued = minted_for(sb)
        used: dict[str, set[str]] = defaultdict(set)
        for location_id, path, token in transport.sent:
            used[token].add(location_id)
            if token == agency:
                assert location_id == "company/co1"
                assert path.startswith(("/oauth/locationToken", "/locations/search"))
            elif token == own:
                assert location_id == listed[2]
            else:
                assert location_id == issued[token]  # minted for exactly this location
        assert all(len(where) == 1 for where in used.values())
        assert listed[2] not in sb.stats.tokens_minted
        assert sb.stats.cross_location_token_uses == 0


async def test_filters_pick_sub_accounts_by_name_exclusion_and_installation(
    tmp_path: Path,
) -> None:
    """A name pattern, an exclude list and "installed" each narrow what the run touches."""
    async with Sandbox() as sb:
        agency = sb.add_company("co1", count=20)
        listed = {loc["name"]: loc["id"] for loc in sb.company_locations("co1")}
        sb.install(listed["Austin Dental"], installed=False)
        credential = AgencyCredential(token=agency, company_id="co1", app_id="sandbox-app")
        rule = {"from": "installed", "name": "*dental*", "exclude": ["Boston Dental"]}
        job = template(tmp_path / "t.json", rule, DEFINITIONS[:1])
        result = await run_job(RunConfig(job_files=(job,)), base_url=sb.url, agency=credential)
        with result:
            picked = [
                (o.record.location_id, o.record.get("location_name")) for o in result.outcomes
            ]
            assert statuses(result) == ["created", "created"]
        assert picked == [
            (listed["Denver Dental"], "Denver Dental"),
            (listed["Miami Dental"], "Miami Dental"),
        ]
        touched = {e.location_id for e in sb.log if e.token_kind == "minted"}
        assert touched == {listed["Denver Dental"], listed["Miami Dental"]}


async def test_a_rule_that_matches_nothing_stops_before_sending(tmp_path: Path) -> None:
    """A filter that keeps no sub-account is a job with nothing to do: refused, nothing sent."""
    async with Sandbox() as sb:
        agency = sb.add_company("co1", count=5)
        job = template(tmp_path / "t.json", {"name": "*Bakery*"})
        with pytest.raises(ConfigError, match="matched no sub-account"):
            await run_job(
                RunConfig(job_files=(job,)),
                base_url=sb.url,
                agency=AgencyCredential(token=agency, company_id="co1"),
            )
        assert [e.path for e in sb.log] == ["/locations/search", "/locations/search"]


async def test_installed_needs_the_app_id(tmp_path: Path) -> None:
    """ "locations": "installed" without an app id is refused before any request."""
    async with Sandbox() as sb:
        agency = sb.add_company("co1", count=2)
        job = template(tmp_path / "t.json", "installed")
        with pytest.raises(ConfigError, match="--app-id"):
            await run_job(
                RunConfig(job_files=(job,)),
                base_url=sb.url,
                agency=AgencyCredential(token=agency, company_id="co1"),
            )
        assert sb.log == []


async def test_many_requests_of_one_location_share_one_mint(tmp_path: Path) -> None:
    """A location's token is minted once, however many of its records start together."""
    async with Sandbox() as sb:
        agency = sb.add_company("co1", ["L1"])
        definitions = [
            {
                "key": f"def_{n}",
                "firstObjectKey": "contact",
                "firstObjectLabel": f"Left {n}",
                "secondObjectKey": "custom_objects.pet",
                "secondObjectLabel": f"Right {n}",
            }
            for n in range(20)
        ]
        job = template(tmp_path / "t.json", ["L1"], definitions)
        result = await run_job(
            RunConfig(job_files=(job,), concurrency=16),
            base_url=sb.url,
            agency=AgencyCredential(token=agency, company_id="co1"),
        )
        with result:
            assert statuses(result) == ["created"] * 20
        assert sb.stats.tokens_minted == {"L1": 1}


async def test_rollback_mints_its_own_tokens(tmp_path: Path) -> None:
    """An agency run is rolled back with the agency token alone; names show in the summary."""
    async with Sandbox() as sb:
        agency = sb.add_company("co1", count=3)
        credential = AgencyCredential(token=agency, company_id="co1")
        job = template(tmp_path / "t.json", "all", DEFINITIONS[:2])
        report = tmp_path / "out.csv"
        first = await run_job(
            RunConfig(job_files=(job,), report=str(report)), base_url=sb.url, agency=credential
        )
        first.close()
        plan = plan_rollback([str(report)])
        assert plan.location_names == {
            loc["id"]: loc["name"] for loc in sb.company_locations("co1")
        }
        undone = await rollback_job(plan, RunConfig(job_files=(str(report),)), agency=credential)
        with undone:
            assert statuses(undone) == ["deleted"] * 6
        assert all(items == [] for items in sb.snapshot().values())


async def test_a_relations_job_runs_on_minted_tokens(tmp_path: Path) -> None:
    """Agency mode is not the associations kind's alone: a relations job mints its tokens."""
    async with Sandbox(SandboxConfig(records=3)) as sb:
        agency = sb.add_company("co1", ["L1", "L2"])
        for location in ("L1", "L2"):
            sb.add_association(
                location,
                key="pet_owner",
                first_object_key="custom_objects.pet",
                second_object_key="contact",
            )
        job = tmp_path / "relations.csv"
        job.write_text(
            "location_id,association_key,first_record_id,second_record_id\n"
            "L1,pet_owner,pet-1,contact-1\nL2,pet_owner,pet-2,contact-2\n",
            encoding="utf-8",
        )
        result = await run_job(
            RunConfig(job_files=(str(job),)),
            base_url=sb.url,
            agency=AgencyCredential(token=agency, company_id="co1"),
        )
        with result:
            assert statuses(result) == ["created", "created"]
        assert sb.stats.tokens_minted == {"L1": 1, "L2": 1}
        assert [len(sb.relations(loc)) for loc in ("L1", "L2")] == [1, 1]
