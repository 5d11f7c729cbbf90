"""The sandbox behaves like the HighLevel association-definition API, faults included."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import logging
import os
import re
import signal
import stat
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.http import SERVER_SOFTWARE
from hypothesis import given, settings
from hypothesis import strategies as st

from jobs.sandbox import LoggedRequest, Sandbox, SandboxConfig
from jobs.sandbox.ranked import Ranked

ROOT = Path(__file__).resolve().parents[2]
VERSION = {"Version": "2021-07-28"}
RATE_HEADERS = (
    "X-RateLimit-Max",
    "X-RateLimit-Remaining",
    "X-RateLimit-Interval-Milliseconds",
    "X-RateLimit-Limit-Daily",
    "X-RateLimit-Daily-Remaining",
)


def auth(token: str) -> dict[str, str]:
    return {**VERSION, "Authorization": f"Bearer {token}"}


def official_body(location: str = "L1", key: str = "owner_pet", **over: str) -> dict[str, str]:
    body = {
        "locationId": location,
        "key": key,
        "firstObjectKey": "contact",
        "firstObjectLabel": "Owner",
        "secondObjectKey": "custom_objects.pet",
        "secondObjectLabel": "Pet",
    }
    return body | over


class FakeClock:
    """A clock the test moves by hand (seconds)."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def call(
    http: aiohttp.ClientSession,
    sb: Sandbox,
    method: str,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    token: str | None = None,
    **kwargs: Any,
) -> tuple[int, Any, dict[str, str]]:
    """One request; answers status, JSON body (or text) and headers."""
    sent = auth(token) if token is not None else (headers or {})
    async with http.request(method, sb.url + path, headers=sent, **kwargs) as resp:
        body: Any = (
            await resp.json() if resp.content_type == "application/json" else await resp.text()
        )
        return resp.status, body, dict(resp.headers)


async def test_missing_or_wrong_version_header_is_401() -> None:
    """Without Version: 2021-07-28 the API answers 401 "version header was not found."."""
    async with Sandbox() as sb, aiohttp.ClientSession() as http:
        token = sb.issue_token("L1")
        for headers in ({"Authorization": f"Bearer {token}"}, auth(token) | {"Version": "2021"}):
            status, body, _ = await call(
                http, sb, "GET", "/objects/?locationId=L1", headers=headers
            )
            assert status == 401
            assert body == {
                "statusCode": 401,
                "message": "version header was not found.",
                "error": "Unauthorized",
            }


async def test_missing_and_unknown_tokens_are_401(http: aiohttp.ClientSession) -> None:
    """No bearer token → 401 "Unauthorized"; a token nobody issued → 401 "Invalid JWT"."""
    async with Sandbox() as sb:
        sb.issue_token("L1")
        status, body, _ = await call(http, sb, "GET", "/objects/?locationId=L1", headers=VERSION)
        assert (status, body["message"]) == (401, "Unauthorized")
        status, body, _ = await call(http, sb, "GET", "/objects/?locationId=L1", token="pit-nope")
        assert (status, body["message"]) == (401, "Invalid JWT")


async def test_tokens_are_per_location_and_idempotent() -> None:
    """issue_token returns the same pit- token each time, and a different one per location."""
    sb = Sandbox()
    first = sb.issue_token("L1")
    assert first == sb.issue_token("L1")
    assert first.startswith("pit-")
    assert first != sb.issue_token("L2")


async def test_token_of_another_location_is_403_and_counted(http: aiohttp.ClientSession) -> None:
    """A token used for another location's data gets 403, is counted, and changes nothing."""
    async with Sandbox() as sb:
        token1 = sb.issue_token("L1")
        seeded = sb.add_association(
            "L2", key="k", first_object_key="contact", second_object_key="custom_objects.pet"
        )
        status, body, _ = await call(http, sb, "GET", "/objects/?locationId=L2", token=token1)
        assert (status, body["message"]) == (
            403,
            "The token does not have access to this location.",
        )
        status, _, _ = await call(http, sb, "DELETE", f"/associations/{seeded['id']}", token=token1)
        assert status == 403
        status, _, _ = await call(
            http, sb, "POST", "/associations/", token=token1, json=official_body("L2")
        )
        assert status == 403
        assert sb.stats.cross_location_token_uses == 3
        assert [a["key"] for a in sb.snapshot()["L2"]] == ["k"]
        assert [(e.location_id, e.token_location) for e in sb.log] == [("L2", "L1")] * 3


async def test_the_request_log_keeps_one_copy_of_what_requests_repeat(
    http: aiohttp.ClientSession,
) -> None:
    """Entries share their path, location id and User-Agent with the entries before them,
    so the log does not grow by a copy of each per request (at 1,000,000 requests that
    was about 160 bytes a request)."""
    async with Sandbox() as sb:
        token = sb.issue_token("L1")
        for n in range(2):
            body = official_body("L1", key=f"k{n}", firstObjectLabel=f"a{n}")
            status, _, _ = await call(http, sb, "POST", "/associations/", token=token, json=body)
            assert status == 201
        first, second = sb.log
        assert (first.path, first.location_id, first.user_agent) == (
            "/associations/",
            "L1",  # read from each request's JSON body
            SERVER_SOFTWARE,
        )
        assert first.path is second.path
        assert first.location_id is second.location_id
        assert first.user_agent is second.user_agent


async def test_official_create_is_201_with_the_bare_association(
    http: aiohttp.ClientSession,
) -> None:
    """POST /associations/ answers 201 with the new USER_DEFINED definition, not wrapped."""
    async with Sandbox() as sb:
        token = sb.issue_token("L1")
        status, body, headers = await call(
            http, sb, "POST", "/associations/", token=token, json=official_body()
        )
        assert status == 201
        assert re.fullmatch(r"[0-9a-f]{24}", body["id"])
        assert body | {"id": "", "createdAt": ""} == official_body() | {
            "id": "",
            "createdAt": "",
            "associationType": "USER_DEFINED",
        }
        assert all(name in headers for name in RATE_HEADERS)
        assert sb.snapshot() == {"L1": [body]}
        assert sb.stats.creates_applied == 1


async def test_official_duplicate_key_is_400(http: aiohttp.ClientSession) -> None:
    """A second create with the same key gets 400 and leaves one definition."""
    async with Sandbox() as sb:
        token = sb.issue_token("L1")
        await call(http, sb, "POST", "/associations/", token=token, json=official_body())
        again = official_body(firstObjectLabel="Keeper")
        status, body, _ = await call(http, sb, "POST", "/associations", token=token, json=again)
        assert (status, body["message"]) == (400, "association with key owner_pet already exists")
        assert len(sb.snapshot()["L1"]) == 1
        assert sb.stats.writes_by_key == {"L1": {"owner_pet": {"created": 1, "deleted": 0}}}


async def test_same_objects_and_labels_under_another_key_is_400(
    http: aiohttp.ClientSession,
) -> None:
    """The same object pair with the same labels, in either order, is "duplicate pair of labels"."""
    async with Sandbox() as sb:
        token = sb.issue_token("L1")
        await call(http, sb, "POST", "/associations/", token=token, json=official_body())
        swapped = official_body(
            key="pet_owner",
            firstObjectKey="custom_objects.pet",
            firstObjectLabel="Pet",
            secondObjectKey="contact",
            secondObjectLabel="Owner",
        )
        status, body, _ = await call(http, sb, "POST", "/associations/", token=token, json=swapped)
        assert (status, body["message"]) == (400, "duplicate pair of labels")


async def test_same_object_with_identical_labels_is_422(http: aiohttp.ClientSession) -> None:
    """contact↔contact with the same label on both sides is 422; different labels are fine."""
    async with Sandbox() as sb:
        token = sb.issue_token("L1")
        twins = official_body(
            key="cc", firstObjectKey="contact", secondObjectKey="contact", secondObjectLabel="Owner"
        )
        status, body, _ = await call(http, sb, "POST", "/associations/", token=token, json=twins)
        assert (status, body["message"]) == (422, "Both object labels can not be same")
        twins["secondObjectLabel"] = "Friend"
        status, _, _ = await call(http, sb, "POST", "/associations/", token=token, json=twins)
        assert status == 201


async def test_official_create_lists_every_body_problem(http: aiohttp.ClientSession) -> None:
    """Missing or non-string fields and unknown properties come back together as a 400 array."""
    async with Sandbox() as sb:
        token = sb.issue_token("L1")
        body = {"locationId": "L1", "key": "k", "firstObjectKey": 5, "description": "d"}
        status, answer, _ = await call(http, sb, "POST", "/associations/", token=token, json=body)
        assert status == 400
        assert answer["message"] == [
            "firstObjectKey must be a string",
            "firstObjectLabel must be a string",
            "secondObjectKey must be a string",
            "secondObjectLabel must be a string",
            "property description should not exist",
        ]
        assert answer["error"] == "Bad Request"


async def test_unknown_object_key_is_404(http: aiohttp.ClientSession) -> None:
    """Creating with an object the location does not have is 404 naming the key."""
    async with Sandbox() as sb:
        token = sb.issue_token("L1")
        body = official_body(secondObjectKey="custom_objects.car")
        status, answer, _ = await call(http, sb, "POST", "/associations/", token=token, json=body)
        assert (status, answer["message"]) == (404, "Object with key custom_objects.car not found")


async def test_guide_create_is_wrapped_201_and_duplicate_is_409(
    http: aiohttp.ClientSession,
) -> None:
    """The guide's create is 201 {"association": ...} with singular labels; a reused key 409."""
    async with Sandbox() as sb:
        token = sb.issue_token("L1")
        body = {
            "locationId": "L1",
            "key": "home",
            "firstObjectKey": "contact",
            "secondObjectKey": "custom_objects.property",
            "description": "where they live",
        }
        status, answer, _ = await call(
            http, sb, "POST", "/objects-association", token=token, json=body
        )
        assert status == 201
        created = answer["association"]
        assert (created["firstObjectLabel"], created["secondObjectLabel"]) == (
            "Contact",
            "Property",
        )
        status, answer, _ = await call(
            http, sb, "POST", "/objects-association", token=token, json=body
        )
        assert (status, answer["message"]) == (409, "association with key home already exists")
        status, answer, _ = await call(
            http, sb, "GET", "/objects-association/key/home?locationId=L1", token=token
        )
        assert (status, answer) == (200, {"association": created})
        status, answer, _ = await call(
            http, sb, "GET", "/objects-association?locationId=L1", token=token
        )
        assert [a["key"] for a in answer["associations"]][-1] == "home"


async def test_list_hides_a_page_cap_so_clients_page_until_empty(
    http: aiohttp.ClientSession,
) -> None:
    """limit=200 returns at most 50 while more remain; walking skip until empty finds them all."""
    async with Sandbox() as sb:
        token = sb.issue_token("L1")
        for i in range(120):
            sb.add_association(
                "L1",
                key=f"k{i:03}",
                first_object_key="contact",
                second_object_key="custom_objects.pet",
                first_object_label=f"Owner {i}",
            )
        seen: list[str] = []
        while True:
            path = f"/associations/?locationId=L1&skip={len(seen)}&limit=200"
            status, body, _ = await call(http, sb, "GET", path, token=token)
            assert status == 200
            assert body["total"] == 122
            assert len(body["associations"]) <= 50
            if not body["associations"]:
                break
            seen += [a["id"] for a in body["associations"]]
        assert len(seen) == len(set(seen)) == 122
        assert seen[:2] == ["OPPORTUNITIES_CONTACTS_ASSOCIATION", "BUSINESSES_CONTACTS_ASSOCIATION"]


async def test_list_query_validation_is_422(http: aiohttp.ClientSession) -> None:
    """Missing skip, a limit over 500 and unknown query parameters are 422 with array messages."""
    async with Sandbox() as sb:
        token = sb.issue_token("L1")
        status, body, _ = await call(
            http, sb, "GET", "/associations/?locationId=L1&limit=10", token=token
        )
        assert (status, body["message"]) == (
            422,
            ["skip must be a number conforming to the specified constraints"],
        )
        path = "/associations/?locationId=L1&skip=0&limit=501&extra=1"
        status, body, _ = await call(http, sb, "GET", path, token=token)
        assert (status, body["message"]) == (
            422,
            ["property extra should not exist", "limit must not be greater than 500"],
        )


async def test_system_defined_associations_cannot_be_deleted(http: aiohttp.ClientSession) -> None:
    """DELETE on a SYSTEM_DEFINED association is 400 and it stays listed."""
    async with Sandbox() as sb:
        token = sb.issue_token("L1")
        path = "/associations/OPPORTUNITIES_CONTACTS_ASSOCIATION"
        status, body, _ = await call(http, sb, "DELETE", path, token=token)
        assert (status, body["message"]) == (400, "System defined associations cannot be deleted")
        status, body, _ = await call(http, sb, "GET", path, token=token)
        assert (status, body["associationType"]) == (200, "SYSTEM_DEFINED")


async def test_delete_is_200_then_404(http: aiohttp.ClientSession) -> None:
    """Deleting answers the documented 200 body; the same delete again is 404."""
    async with Sandbox() as sb:
        token = sb.issue_token("L1")
        seeded = sb.add_association(
            "L1", key="k", first_object_key="contact", second_object_key="custom_objects.pet"
        )
        path = f"/associations/{seeded['id']}"
        status, body, _ = await call(http, sb, "DELETE", path, token=token)
        assert (status, body) == (
            200,
            {"deleted": True, "id": seeded["id"], "message": "Association deleted successfully"},
        )
        status, body, _ = await call(http, sb, "DELETE", path, token=token)
        assert (status, body) == (
            404,
            {"statusCode": 404, "message": "Association not found", "error": "Not Found"},
        )
        assert sb.snapshot() == {"L1": []}
        assert sb.stats.deletes_applied == 1


async def test_get_by_key_is_bare_or_404(http: aiohttp.ClientSession) -> None:
    """The official get-by-key answers the bare definition, or 404 "Association not found"."""
    async with Sandbox() as sb:
        token = sb.issue_token("L1")
        seeded = sb.add_association(
            "L1", key="k", first_object_key="contact", second_object_key="custom_objects.pet"
        )
        status, body, _ = await call(
            http, sb, "GET", "/associations/key/k?locationId=L1", token=token
        )
        assert (status, body) == (200, seeded)
        status, body, _ = await call(
            http, sb, "GET", "/associations/key/x?locationId=L1", token=token
        )
        assert (status, body["message"]) == (404, "Association not found")


async def test_update_changes_labels_but_not_system_ones(http: aiohttp.ClientSession) -> None:
    """PUT /associations/{id} updates the two labels; SYSTEM_DEFINED ones refuse with 400."""
    async with Sandbox() as sb:
        token = sb.issue_token("L1")
        seeded = sb.add_association(
            "L1", key="k", first_object_key="contact", second_object_key="custom_objects.pet"
        )
        labels = {"firstObjectLabel": "Owner", "secondObjectLabel": "Pet"}
        status, body, _ = await call(
            http, sb, "PUT", f"/associations/{seeded['id']}", token=token, json=labels
        )
        assert (status, body["firstObjectLabel"]) == (200, "Owner")
        path = "/associations/BUSINESSES_CONTACTS_ASSOCIATION"
        status, _, _ = await call(http, sb, "PUT", path, token=token, json=labels)
        assert status == 400
        assert sb.stats.updates_applied == 1
        # the new label pair is taken, the old one (Contact, Pet) is free again
        taken = official_body(key="k2")
        status, body, _ = await call(http, sb, "POST", "/associations/", token=token, json=taken)
        assert (status, body["message"]) == (400, "duplicate pair of labels")
        free = official_body(key="k3", firstObjectLabel="Contact")
        status, _, _ = await call(http, sb, "POST", "/associations/", token=token, json=free)
        assert status == 201


async def test_objects_lists_standard_and_custom_objects(http: aiohttp.ClientSession) -> None:
    """GET /objects/ lists contact, opportunity, business and the configured custom objects."""
    async with Sandbox(SandboxConfig(objects=("custom_objects.pet_owner",))) as sb:
        token = sb.issue_token("L1")
        status, body, _ = await call(http, sb, "GET", "/objects/?locationId=L1", token=token)
        assert status == 200
        assert [(o["key"], o["standard"]) for o in body["objects"]] == [
            ("contact", True),
            ("opportunity", True),
            ("business", True),
            ("custom_objects.pet_owner", False),
        ]
        assert body["objects"][-1]["labels"] == {"singular": "Pet Owner", "plural": "Pet Owners"}


async def test_unknown_route_is_nestjs_404(http: aiohttp.ClientSession) -> None:
    """An unknown path or method answers 404 "Cannot METHOD /path"."""
    async with Sandbox() as sb:
        token = sb.issue_token("L1")
        status, body, _ = await call(http, sb, "PATCH", "/associations/abc", token=token)
        assert (status, body["message"]) == (404, "Cannot PATCH /associations/abc")


async def test_rate_limit_answers_429_with_all_headers(http: aiohttp.ClientSession) -> None:
    """The fourth request in a 3-per-10s window is 429 with the five headers; the window slides."""
    clock = FakeClock()
    config = SandboxConfig(rate_limit=3, rate_interval=10.0, daily_limit=100, clock=clock)
    async with Sandbox(config) as sb:
        token = sb.issue_token("L1")
        other = sb.issue_token("L2")
        path = "/objects/?locationId=L1"
        remaining = []
        for _ in range(3):
            status, _, headers = await call(http, sb, "GET", path, token=token)
            assert status == 200
            remaining.append(headers["X-RateLimit-Remaining"])
            clock.now += 1
        assert remaining == ["2", "1", "0"]
        status, body, headers = await call(http, sb, "GET", path, token=token)
        assert (status, body) == (429, {"statusCode": 429, "message": "Too Many Requests"})
        assert {name: headers[name] for name in RATE_HEADERS} == {
            "X-RateLimit-Max": "3",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Interval-Milliseconds": "10000",
            "X-RateLimit-Limit-Daily": "100",
            "X-RateLimit-Daily-Remaining": "97",
        }
        assert "Retry-After" not in headers
        status, _, _ = await call(http, sb, "GET", "/objects/?locationId=L2", token=other)
        assert status == 200  # each location has its own budget
        clock.now += 7.5  # the first request (t=1000) has left the window
        status, _, _ = await call(http, sb, "GET", path, token=token)
        assert status == 200
        assert sb.stats.throttled == 1


async def test_retry_after_is_sent_when_configured(http: aiohttp.ClientSession) -> None:
    """With retry_after=True a 429 says how many seconds until a slot frees, rounded up."""
    clock = FakeClock()
    async with Sandbox(SandboxConfig(rate_limit=1, retry_after=True, clock=clock)) as sb:
        token = sb.issue_token("L1")
        await call(http, sb, "GET", "/objects/?locationId=L1", token=token)
        clock.now += 2.5
        status, _, headers = await call(http, sb, "GET", "/objects/?locationId=L1", token=token)
        assert (status, headers["Retry-After"]) == (429, "8")


async def test_throttle_below_lies_about_the_limit(http: aiohttp.ClientSession) -> None:
    """throttle_below=2 gives 429 on the third request while X-RateLimit-Max still says 100."""
    async with Sandbox(SandboxConfig(throttle_below=2, clock=FakeClock())) as sb:
        token = sb.issue_token("L1")
        statuses = []
        for _ in range(3):
            status, _, headers = await call(http, sb, "GET", "/objects/?locationId=L1", token=token)
            statuses.append(status)
        assert statuses == [200, 200, 429]
        assert (headers["X-RateLimit-Max"], headers["X-RateLimit-Remaining"]) == ("100", "98")


async def test_daily_limit_exhausted_is_429_with_zero_remaining(
    http: aiohttp.ClientSession,
) -> None:
    """Once the daily budget is spent the location gets 429 and X-RateLimit-Daily-Remaining: 0."""
    clock = FakeClock()
    async with Sandbox(SandboxConfig(daily_limit=2, clock=clock)) as sb:
        token = sb.issue_token("L1")
        for _ in range(2):
            await call(http, sb, "GET", "/objects/?locationId=L1", token=token)
            clock.now += 60  # well outside the burst window
        status, _, headers = await call(http, sb, "GET", "/objects/?locationId=L1", token=token)
        assert (status, headers["X-RateLimit-Daily-Remaining"]) == (429, "0")
        clock.now += 86_400
        status, _, _ = await call(http, sb, "GET", "/objects/?locationId=L1", token=token)
        assert status == 200


async def test_reset_fault_is_a_connection_error(http: aiohttp.ClientSession) -> None:
    """A reset drops the connection: the client gets a connection error, never a status."""
    async with Sandbox(SandboxConfig(reset_rate=1.0, seed=1)) as sb:
        token = sb.issue_token("L1")
        with pytest.raises(aiohttp.ClientConnectionError):
            await call(http, sb, "POST", "/associations/", token=token, json=official_body())
        assert sb.snapshot() == {"L1": []}
        assert sb.log[-1].status == 0
        assert sb.log[-1].faults == ("reset",)
        assert sb.stats.faults_injected["reset"] >= 1


async def test_lost_response_applies_the_change(http: aiohttp.ClientSession) -> None:
    """A lost response is a client-side connection error although the create was applied."""
    async with Sandbox(SandboxConfig(lost_response_rate=1.0, seed=1)) as sb:
        token = sb.issue_token("L1")
        with pytest.raises(aiohttp.ClientConnectionError):
            await call(http, sb, "POST", "/associations/", token=token, json=official_body())
        assert [a["key"] for a in sb.snapshot()["L1"]] == ["owner_pet"]
        assert sb.log[0] == LoggedRequest(
            method="POST",
            path="/associations/",
            location_id="L1",
            token_location="L1",
            status=0,
            applied=True,
            faults=("lost_response",),
            token_kind="pit",
        )
        status, _, _ = await call(
            http, sb, "GET", "/associations/key/owner_pet?locationId=L1", token=token
        )
        assert status == 200  # reads are never lost


async def test_fail_fault_answers_5xx_json_or_html(http: aiohttp.ClientSession) -> None:
    """Failures are 500/502/503/504, sometimes a proxy's HTML page, and change nothing."""
    async with Sandbox(SandboxConfig(fail_rate=1.0, seed=3)) as sb:
        token = sb.issue_token("L1")
        kinds = set()
        for _ in range(12):
            status, body, headers = await call(
                http, sb, "POST", "/associations/", token=token, json=official_body()
            )
            assert status in {500, 502, 503, 504}
            if isinstance(body, dict):
                assert body["statusCode"] == status
                kinds.add("json")
            else:
                assert headers["Content-Type"].startswith("text/html")
                assert body.startswith(f"<html><body><h1>{status} ")
                kinds.add("html")
        assert kinds == {"json", "html"}
        assert sb.snapshot() == {"L1": []}
        assert sb.stats.faults_injected == {"fail": 12}


async def test_stall_hangs_then_answers(http: aiohttp.ClientSession) -> None:
    """A stall outlasts a short client timeout, then answers normally to a patient client."""
    async with Sandbox(SandboxConfig(stall_rate=1.0, stall_seconds=0.2)) as sb:
        token = sb.issue_token("L1")
        with pytest.raises(asyncio.TimeoutError):
            await call(
                http, sb, "GET", "/objects/?locationId=L1", token=token,
                timeout=aiohttp.ClientTimeout(total=0.05),
            )  # fmt: skip
        status, _, _ = await call(http, sb, "GET", "/objects/?locationId=L1", token=token)
        assert status == 200
        assert sb.stats.faults_injected["stall"] == 2


async def test_seeded_faults_are_reproducible() -> None:
    """Two sandboxes with the same seed fault the same requests in the same way."""

    async def run(seed: int) -> list[tuple[int, tuple[str, ...]]]:
        config = SandboxConfig(fail_rate=0.3, reset_rate=0.2, latency=(0.0, 1.0), seed=seed)
        async with Sandbox(config) as sb, aiohttp.ClientSession() as http:
            token = sb.issue_token("L1")
            for _ in range(30):
                with contextlib.suppress(aiohttp.ClientConnectionError):
                    await call(http, sb, "GET", "/objects/?locationId=L1", token=token)
            return [(e.status, tuple(f for f in e.faults if f != "latency")) for e in sb.log]

    first = await run(7)
    assert first == await run(7)
    assert {status for status, _ in first} > {0, 200}
    assert first != await run(8)


async def test_admin_endpoints_seed_issue_and_report(http: aiohttp.ClientSession) -> None:
    """/_sandbox/ issues tokens, seeds definitions and reports state and log, uncounted."""
    async with Sandbox() as sb:
        async with http.post(sb.url + "/_sandbox/tokens", json={"locations": ["A", "B"]}) as resp:
            tokens = (await resp.json())["tokens"]
        assert tokens == {"A": sb.issue_token("A"), "B": sb.issue_token("B")}
        seed = {
            "locationId": "A",
            "key": "k",
            "firstObjectKey": "contact",
            "secondObjectKey": "custom_objects.pet",
        }
        async with http.post(sb.url + "/_sandbox/associations", json=seed) as resp:
            assert resp.status == 201
        async with http.post(sb.url + "/_sandbox/associations", json=seed) as resp:
            assert resp.status == 400
        await call(http, sb, "GET", "/objects/?locationId=A", token=tokens["A"])
        async with http.get(sb.url + "/_sandbox/state") as resp:
            state = await resp.json()
        assert [a["key"] for a in state["snapshot"]["A"]] == ["k"]
        assert state["snapshot"]["B"] == []
        assert (state["stats"]["requests"], state["log_size"]) == (1, 1)
        async with http.get(sb.url + "/_sandbox/log") as resp:
            log = await resp.json()
        assert isinstance(log[0].pop("at"), float)  # arrival time, on the sandbox's clock
        assert log == [
            {
                "method": "GET",
                "path": "/objects/",
                "location_id": "A",
                "token_location": "A",
                "status": 200,
                "applied": False,
                "faults": [],
                "user_agent": SERVER_SOFTWARE,  # aiohttp's own, as this client sent it
                "token_company": None,
                "token_kind": "pit",
            }
        ]


async def test_log_never_holds_tokens(http: aiohttp.ClientSession) -> None:
    """The request log records locations, never the bearer tokens used."""
    async with Sandbox() as sb:
        token = sb.issue_token("L1")
        await call(http, sb, "GET", "/objects/?locationId=L1", token=token)
        await call(http, sb, "GET", "/objects/?locationId=L1", token=token + "x")
        assert token not in repr(sb.log)
        assert sb.associations("L1")[0]["key"] == "OPPORTUNITIES_CONTACTS_ASSOCIATION"


def read_tokens(path: Path) -> tuple[int, list[dict[str, str]]]:
    """Permission bits and rows of a tokens CSV."""
    with path.open(newline="") as file:
        return stat.S_IMODE(path.stat().st_mode), list(csv.DictReader(file))


async def test_malformed_requests_do_not_log_tokens(caplog: pytest.LogCaptureFixture) -> None:
    """aiohttp's error log for a malformed header shows the header, with the token redacted."""
    caplog.set_level(logging.DEBUG)
    async with Sandbox() as sb:
        token = sb.issue_token("L1")
        host, port = sb.url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(
            b"GET /objects/?locationId=L1 HTTP/1.1\r\nHost: x\r\n"
            + f"Authorization: Bearer {token}\r\r\n\r\n".encode()
        )
        assert (await reader.read()).startswith(b"HTTP/1.0 400")
        writer.close()
        await writer.wait_closed()
    assert "Authorization: [redacted]" in caplog.text
    assert token not in caplog.text


async def test_serve_runs_until_sigterm(tmp_path: Path) -> None:
    """serve() writes a 0600 tokens CSV, reports its URL, answers, and exits on SIGTERM."""
    tokens_file = tmp_path / "tokens.csv"
    script = (
        "import sys; from jobs.sandbox import SandboxConfig, serve; "
        f"serve(SandboxConfig(), port=0, locations=['L1', 'L2'], tokens_file={str(tokens_file)!r}, "
        "ready=lambda url: print(url, flush=True))"
    )
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        url = (await asyncio.wait_for(proc.stdout.readline(), 10)).decode().strip()
        assert url.startswith("http://127.0.0.1:")
        mode, rows = read_tokens(tokens_file)
        assert mode == 0o600
        assert [row["location_id"] for row in rows] == ["L1", "L2"]
        async with (
            aiohttp.ClientSession() as http,
            http.get(
                url + "/objects/", params={"locationId": "L1"}, headers=auth(rows[0]["token"])
            ) as resp,
        ):
            assert resp.status == 200
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_writes_are_counted_per_key_over_the_sandbox_life(
    http: aiohttp.ClientSession,
) -> None:
    """Creates and deletes the API applied are counted per location and key, in /_sandbox/state."""
    async with Sandbox() as sb:
        token = sb.issue_token("L1")
        sb.add_association(  # seeds are not the API's writes
            "L1", key="seed", first_object_key="contact", second_object_key="custom_objects.pet"
        )
        for round_ in ("first", "again"):  # create, delete, create again
            status, created, _ = await call(
                http, sb, "POST", "/associations/", token=token, json=official_body()
            )
            assert status == 201
            if round_ == "first":
                path = f"/associations/{created['id']}"
                assert (await call(http, sb, "DELETE", path, token=token))[0] == 200
        refused = official_body(firstObjectLabel="Keeper")  # the key is live: refused, not counted
        assert (await call(http, sb, "POST", "/associations/", token=token, json=refused))[0] == 400
        async with http.get(sb.url + "/_sandbox/state") as resp:
            stats = (await resp.json())["stats"]
        assert stats["writes_by_key"] == {"L1": {"owner_pet": {"created": 2, "deleted": 1}}}
        assert (stats["creates_applied"], stats["deletes_applied"]) == (2, 1)


@pytest.mark.timeout(30)  # scanning every definition per create takes minutes at this size
async def test_a_location_with_20000_definitions_answers_every_route(
    http: aiohttp.ClientSession,
) -> None:
    """With 20,000 definitions seeded, creates, gets, pages and deletes stay correct (and quick)."""
    async with Sandbox(SandboxConfig(rate_limit=0, daily_limit=0)) as sb:
        token = sb.issue_token("L1")
        pets = ("contact", "custom_objects.pet")
        for i in range(20_000):
            first, second = pets if i % 2 else ("contact", "custom_objects.property")
            sb.add_association(
                "L1", key=f"k{i}", first_object_key=first, second_object_key=second,
                first_object_label=f"Owner {i}", second_object_label="Thing",
            )  # fmt: skip
        created = await call(
            http, sb, "POST", "/associations/", token=token, json=official_body(key="new")
        )
        assert created[0] == 201
        clash = official_body(
            key="other", firstObjectLabel="Owner 19999", secondObjectLabel="Thing"
        )
        status, body, _ = await call(http, sb, "POST", "/associations/", token=token, json=clash)
        assert (status, body["message"]) == (400, "duplicate pair of labels")
        status, body, _ = await call(
            http, sb, "GET", "/associations/key/k12345?locationId=L1", token=token
        )
        assert (status, body["firstObjectLabel"]) == (200, "Owner 12345")
        for i in range(0, 20_000, 2):  # delete every other one: holes in the creation order
            found = sb._locations["L1"].with_key(f"k{i}")
            assert found is not None
            status, _, _ = await call(http, sb, "DELETE", f"/associations/{found.id}", token=token)
            assert status == 200
        want = ["OPPORTUNITIES_CONTACTS_ASSOCIATION", "BUSINESSES_CONTACTS_ASSOCIATION"]
        want += [f"k{i}" for i in range(1, 20_000, 2)] + ["new"]
        for skip in (0, 4_990, 9_950, 10_000):
            path = f"/associations/?locationId=L1&skip={skip}&limit=50"
            status, body, _ = await call(http, sb, "GET", path, token=token)
            assert status == 200
            assert body["total"] == len(want) == 10_003
            assert [a["key"] for a in body["associations"]] == want[skip : skip + 50]
        path = "/associations/objectKey/custom_objects.pet?locationId=L1"
        status, body, _ = await call(http, sb, "GET", path, token=token)
        assert [a["key"] for a in body["associations"]] == want[2:]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 10_000)), max_size=400))
def test_ranked_pages_match_a_plain_list(steps: list[tuple[bool, int]]) -> None:
    """Ranked's pages equal slices of a plain list under any mix of adds and removes."""
    ranked: Ranked[str] = Ranked()
    plain: list[str] = []
    for n, (add, pick) in enumerate(steps):
        if add or not plain:
            ranked.add(f"i{n}", f"i{n}")
            plain.append(f"i{n}")
        else:
            gone = plain.pop(pick % len(plain))
            ranked.remove(gone)
        skip, size = pick % (len(plain) + 2), 1 + pick % 60
        assert ranked.page(skip, size) == plain[skip : skip + size]
    assert len(ranked) == len(plain)
    assert ranked.page(0, len(plain) + 1) == plain
