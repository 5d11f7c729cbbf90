"""The sandbox serves record-level relations the way HighLevel does, over real HTTP."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from jobs.sandbox import Sandbox, SandboxConfig
from tests.jobs.test_sandbox import ROOT, FakeClock, call, read_tokens

PET = "custom_objects.pet"
RELATIONS = "/associations/relations"
DUPLICATE = "Could not create relation: duplicate relation of object Ids for given association"


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def seed(sb: Sandbox, location: str = "L1", key: str = "owner_pet") -> str:
    """A contact ↔ pet definition with contacts c1..c3 and pets pet-1..pet-3; its id."""
    created = sb.add_association(
        location, key=key, first_object_key="contact", second_object_key=PET
    )
    sb.add_records(location, "contact", ["c1", "c2", "c3"])
    sb.add_records(location, PET, count=3)
    return str(created["id"])


def body(association_id: str, first: str = "c1", second: str = "pet-1", **over: Any) -> Any:
    return {
        "locationId": "L1",
        "associationId": association_id,
        "firstRecordId": first,
        "secondRecordId": second,
    } | over


async def create(
    http: aiohttp.ClientSession, sb: Sandbox, token: str, association_id: str, first: str,
    second: str, location: str = "L1",
) -> dict[str, Any]:  # fmt: skip
    """Create a relation through the API, expecting success."""
    sent = body(association_id, first, second, locationId=location)
    status, answer, _ = await call(http, sb, "POST", RELATIONS, token=token, json=sent)
    assert status == 201, answer
    return dict(answer)


async def test_create_is_201_with_the_bare_relation(http: aiohttp.ClientSession) -> None:
    """POST /associations/relations answers 201 with the relation and rate headers; counted."""
    async with Sandbox() as sb:
        token = sb.issue_token("L1")
        association_id = seed(sb)
        status, answer, headers = await call(
            http, sb, "POST", RELATIONS, token=token, json=body(association_id)
        )
        assert status == 201
        assert re.fullmatch(r"[0-9a-f]{24}", answer["id"])
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", answer["createdAt"])
        assert answer | {"id": "", "createdAt": ""} == {
            "id": "",
            "associationId": association_id,
            "firstRecordId": "c1",
            "secondRecordId": "pet-1",
            "firstObjectKey": "contact",
            "secondObjectKey": PET,
            "locationId": "L1",
            "createdAt": "",
        }
        assert "X-RateLimit-Remaining" in headers
        assert sb.relations("L1") == [answer]
        assert sb.stats.relation_creates_applied == 1
        assert sb.relation_writes("L1") == [
            {
                "associationId": association_id,
                "firstRecordId": "c1",
                "secondRecordId": "pet-1",
                "created": 1,
                "deleted": 0,
            }
        ]
        assert (sb.log[-1].location_id, sb.log[-1].applied) == ("L1", True)


async def test_create_can_answer_200_and_wrapped(http: aiohttp.ClientSession) -> None:
    """relation_status=200 with wrap_relation answers 200 {"relation": {...}}, as seen in use."""
    async with Sandbox(SandboxConfig(relation_status=200, wrap_relation=True)) as sb:
        token = sb.issue_token("L1")
        association_id = seed(sb)
        status, answer, _ = await call(
            http, sb, "POST", RELATIONS, token=token, json=body(association_id)
        )
        assert status == 200
        assert answer == {"relation": sb.relations("L1")[0]}


async def test_create_body_problems_are_400_arrays(http: aiohttp.ClientSession) -> None:
    """Missing, non-string or empty fields and unknown properties come back as one 400 array."""
    async with Sandbox() as sb:
        token = sb.issue_token("L1")
        sent = {"locationId": "L1", "associationId": "", "firstRecordId": 5, "note": "x"}
        status, answer, _ = await call(http, sb, "POST", RELATIONS, token=token, json=sent)
        assert (status, answer) == (
            400,
            {
                "statusCode": 400,
                "message": [
                    "associationId should not be empty",
                    "firstRecordId must be a string",
                    "secondRecordId must be a string",
                    "property note should not exist",
                ],
                "error": "Bad Request",
            },
        )
        status, answer, _ = await call(http, sb, "POST", RELATIONS + "/", token=token, json=[])
        assert (status, answer["message"]) == (400, ["request body must be a JSON object"])
        assert sb.stats.relation_creates_applied == 0


async def test_location_id_in_the_query_is_422(http: aiohttp.ClientSession) -> None:
    """locationId belongs in the body only: as a query parameter it gets 422, nothing created."""
    async with Sandbox() as sb:
        token = sb.issue_token("L1")
        association_id = seed(sb)
        status, answer, _ = await call(
            http, sb, "POST", RELATIONS + "?locationId=L1", token=token, json=body(association_id)
        )
        assert (status, answer["message"]) == (422, ["property locationId should not exist"])
        assert sb.relations("L1") == []


async def test_unknown_or_foreign_association_is_404_or_403(http: aiohttp.ClientSession) -> None:
    """An unknown association is 404; another location's is 403 and counted; nothing created."""
    async with Sandbox() as sb:
        token = sb.issue_token("L1")
        seed(sb)
        foreign = seed(sb, "L2")
        status, answer, _ = await call(http, sb, "POST", RELATIONS, token=token, json=body("nope"))
        assert (status, answer["message"]) == (404, "Association not found")
        status, answer, _ = await call(http, sb, "POST", RELATIONS, token=token, json=body(foreign))
        assert (status, answer["message"]) == (
            403,
            "The token does not have access to this location.",
        )
        status, _, _ = await call(
            http, sb, "POST", RELATIONS, token=token, json=body(foreign, locationId="L2")
        )
        assert status == 403
        assert sb.stats.cross_location_token_uses == 2
        assert sb.relations("L1") == sb.relations("L2") == []


async def test_unknown_records_are_422_naming_the_id(http: aiohttp.ClientSession) -> None:
    """A record the sandbox does not know for the association's object is 422 naming it."""
    async with Sandbox() as sb:
        token = sb.issue_token("L1")
        association_id = seed(sb)
        cases = [
            ("c9", "pet-1", "Record with id c9 not found for object contact"),
            ("c1", "pet-4", f"Record with id pet-4 not found for object {PET}"),
            ("c1", "pet-01", f"Record with id pet-01 not found for object {PET}"),
            ("pet-1", "c1", "Record with id pet-1 not found for object contact"),  # sides swapped
        ]
        for first, second, message in cases:
            sent = body(association_id, first, second)
            status, answer, _ = await call(http, sb, "POST", RELATIONS, token=token, json=sent)
            assert (status, answer["message"]) == (422, message)
        assert sb.relations("L1") == []


async def test_duplicate_relation_is_400_with_the_services_text(
    http: aiohttp.ClientSession,
) -> None:
    """The same association and records again is 400 "Could not create relation: ..."."""
    async with Sandbox() as sb:
        token = sb.issue_token("L1")
        association_id = seed(sb)
        first = await create(http, sb, token, association_id, "c1", "pet-1")
        status, answer, _ = await call(
            http, sb, "POST", RELATIONS, token=token, json=body(association_id)
        )
        assert (status, answer) == (
            400,
            {
                "statusCode": 400,
                "message": f"{DUPLICATE} {association_id}",
                "error": "Bad Request",
            },
        )
        await create(http, sb, token, association_id, "c1", "pet-2")  # another pet is fine
        assert sb.relations("L1")[0]["id"] == first["id"]
        assert [x["created"] for x in sb.relation_writes("L1")] == [1, 1]


async def test_system_association_relations_are_per_location(http: aiohttp.ClientSession) -> None:
    """A SYSTEM_DEFINED id, the same in every location, links records of the token's location."""
    async with Sandbox() as sb:
        system = "OPPORTUNITIES_CONTACTS_ASSOCIATION"
        for location in ("L1", "L2"):
            token = sb.issue_token(location)
            sb.add_records(location, "opportunity", ["o1"])
            sb.add_records(location, "contact", ["c1"])
            made = await create(http, sb, token, system, "o1", "c1", location=location)
            assert (made["locationId"], made["firstObjectKey"]) == (location, "opportunity")
        assert sb.stats.cross_location_token_uses == 0
        assert len(sb.relations("L1")) == len(sb.relations("L2")) == 1


async def test_get_lists_a_records_relations_on_either_side(http: aiohttp.ClientSession) -> None:
    """GET by record id finds relations where it is first or second, filtered by associationIds."""
    async with Sandbox() as sb:
        token = sb.issue_token("L1")
        owner = seed(sb)
        vet = sb.add_association(
            "L1",
            key="vet",
            first_object_key=PET,
            second_object_key="contact",
            first_object_label="Patient",
            second_object_label="Vet",
        )["id"]
        made = [
            await create(http, sb, token, owner, "c1", "pet-1"),
            await create(http, sb, token, owner, "c2", "pet-1"),
            await create(http, sb, token, vet, "pet-1", "c3"),
            await create(http, sb, token, owner, "c1", "pet-2"),
        ]
        path = f"{RELATIONS}/pet-1?locationId=L1&skip=0&limit=10"
        status, answer, _ = await call(http, sb, "GET", path, token=token)
        assert (status, answer) == (200, {"relations": made[:3], "total": 3})
        status, answer, _ = await call(
            http, sb, "GET", path + f"&associationIds={vet}", token=token
        )
        assert answer == {"relations": [made[2]], "total": 1}
        both = f"&associationIds={vet}&associationIds={owner}"
        status, answer, _ = await call(http, sb, "GET", path + both, token=token)
        assert answer["total"] == 3
        comma = f"&associationIds={vet},{owner}"  # one id with a comma: matches nothing
        status, answer, _ = await call(http, sb, "GET", path + comma, token=token)
        assert (status, answer) == (200, {"relations": [], "total": 0})
        path = f"{RELATIONS}/c1?locationId=L1&skip=0&limit=10"
        status, answer, _ = await call(http, sb, "GET", path, token=token)
        assert answer == {"relations": [made[0], made[3]], "total": 2}
        path = f"{RELATIONS}/unknown?locationId=L1&skip=0&limit=10"
        status, answer, _ = await call(http, sb, "GET", path, token=token)
        assert (status, answer) == (200, {"relations": [], "total": 0})


async def test_get_pages_with_skip_limit_and_a_hidden_cap(http: aiohttp.ClientSession) -> None:
    """skip and limit page a record's relations; a page never holds more than page_cap."""
    async with Sandbox(SandboxConfig(page_cap=3)) as sb:
        token = sb.issue_token("L1")
        association_id = seed(sb)
        sb.add_records("L1", PET, count=8)
        made = [
            await create(http, sb, token, association_id, "c1", f"pet-{i}") for i in range(1, 9)
        ]
        pages = []
        for skip in range(0, 10, 3):
            path = f"{RELATIONS}/c1?locationId=L1&skip={skip}&limit=500"
            status, answer, _ = await call(http, sb, "GET", path, token=token)
            assert (status, answer["total"]) == (200, 8)
            pages.append([r["id"] for r in answer["relations"]])
        assert [len(p) for p in pages] == [3, 3, 2, 0]
        assert [i for page in pages for i in page] == [r["id"] for r in made]
        path = f"{RELATIONS}/c1?locationId=L1&skip=6&limit=1"
        status, answer, _ = await call(http, sb, "GET", path, token=token)
        assert [r["id"] for r in answer["relations"]] == [made[6]["id"]]


async def test_get_query_validation_is_422(http: aiohttp.ClientSession) -> None:
    """locationId, skip and limit are required; limit ≤ 500; no unknown or empty parameters."""
    async with Sandbox() as sb:
        token = sb.issue_token("L1")
        cases = {
            "?skip=0&limit=10": ["locationId must be a string"],
            "?locationId=L1&limit=10": [
                "skip must be a number conforming to the specified constraints"
            ],
            "?locationId=L1&skip=0&limit=501&x=1": [
                "property x should not exist",
                "limit must not be greater than 500",
            ],
            "?locationId=L1&skip=0&limit=5&associationIds=": [
                "each value in associationIds should not be empty"
            ],
        }
        for query, messages in cases.items():
            status, answer, _ = await call(http, sb, "GET", f"{RELATIONS}/c1{query}", token=token)
            assert (status, answer["message"]) == (422, messages)
        path = f"{RELATIONS}/c1?locationId=L2&skip=0&limit=5"
        status, _, _ = await call(http, sb, "GET", path, token=token)
        assert status == 403
        assert sb.stats.cross_location_token_uses == 1


async def test_delete_is_200_then_404(http: aiohttp.ClientSession) -> None:
    """DELETE answers {"deleted": true, ...}; again, or an id never issued, is 404."""
    async with Sandbox() as sb:
        token = sb.issue_token("L1")
        association_id = seed(sb)
        made = await create(http, sb, token, association_id, "c1", "pet-1")
        path = f"{RELATIONS}/{made['id']}?locationId=L1"
        status, answer, _ = await call(http, sb, "DELETE", path, token=token)
        assert (status, answer) == (
            200,
            {"deleted": True, "id": made["id"], "message": "Relation deleted successfully"},
        )
        status, answer, _ = await call(http, sb, "DELETE", path, token=token)
        assert (status, answer) == (
            404,
            {"statusCode": 404, "message": "Relation not found", "error": "Not Found"},
        )
        never = made["id"][:-8] + "ffffffff"
        for relation_id in (never, "x", made["id"].upper(), made["id"][:-1] + "G"):
            path = f"{RELATIONS}/{relation_id}?locationId=L1"
            status, _, _ = await call(http, sb, "DELETE", path, token=token)
            assert status == 404
        status, answer, _ = await call(http, sb, "DELETE", f"{RELATIONS}/{made['id']}", token=token)
        assert (status, answer["message"]) == (422, ["locationId must be a string"])
        assert sb.relations("L1") == []
        assert sb.stats.relation_deletes_applied == 1


async def test_delete_of_another_locations_relation_is_403(http: aiohttp.ClientSession) -> None:
    """A relation of another location cannot be deleted with this token: 403, counted, kept."""
    async with Sandbox() as sb:
        token1, token2 = sb.issue_token("L1"), sb.issue_token("L2")
        foreign = seed(sb, "L2")
        made = await create(http, sb, token2, foreign, "c1", "pet-1", location="L2")
        path = f"{RELATIONS}/{made['id']}?locationId=L1"
        status, answer, _ = await call(http, sb, "DELETE", path, token=token1)
        assert (status, answer["message"]) == (
            403,
            "The token does not have access to this location.",
        )
        assert sb.stats.cross_location_token_uses == 1
        assert (sb.log[-1].location_id, sb.log[-1].token_location) == ("L2", "L1")
        assert sb.relations("L2") == [made]


async def test_writes_by_relation_count_each_create_and_delete(http: aiohttp.ClientSession) -> None:
    """Create, delete, create again: a new id, and its writes say created 2, deleted 1."""
    async with Sandbox() as sb:
        token = sb.issue_token("L1")
        association_id = seed(sb)
        first = await create(http, sb, token, association_id, "c1", "pet-1")
        path = f"{RELATIONS}/{first['id']}?locationId=L1"
        assert (await call(http, sb, "DELETE", path, token=token))[0] == 200
        again = await create(http, sb, token, association_id, "c1", "pet-1")
        assert again["id"] != first["id"]
        assert sb.relations("L1") == [again]
        [lifetime] = sb.relation_writes("L1")
        assert (lifetime["created"], lifetime["deleted"]) == (2, 1)
        async with http.get(sb.url + "/_sandbox/relations?locationId=L1") as resp:
            state = await resp.json()
        assert state == {"relations": {"L1": [again]}, "writes_by_relation": {"L1": [lifetime]}}


@pytest.mark.parametrize("route", ["/associations/{id}", "/objects-association/{id}"])
async def test_deleting_a_definition_deletes_its_relations(
    http: aiohttp.ClientSession, route: str
) -> None:
    """Either route set's definition delete cascades to its relations, and only to its own."""
    async with Sandbox() as sb:
        token = sb.issue_token("L1")
        doomed = seed(sb)
        kept = sb.add_association(
            "L1",
            key="vet",
            first_object_key=PET,
            second_object_key="contact",
            first_object_label="Patient",
            second_object_label="Vet",
        )["id"]
        gone = [await create(http, sb, token, doomed, f"c{i}", "pet-1") for i in (1, 2)]
        stays = await create(http, sb, token, kept, "pet-1", "c1")
        status, _, _ = await call(http, sb, "DELETE", route.format(id=doomed), token=token)
        assert status == 200
        assert sb.relations("L1") == [stays]
        path = f"{RELATIONS}/pet-1?locationId=L1&skip=0&limit=10"
        assert (await call(http, sb, "GET", path, token=token))[1] == {
            "relations": [stays],
            "total": 1,
        }
        status, _, _ = await call(
            http, sb, "DELETE", f"{RELATIONS}/{gone[0]['id']}?locationId=L1", token=token
        )
        assert status == 404
        lifetimes = {x["firstRecordId"]: x for x in sb.relation_writes("L1")}
        assert [(x["created"], x["deleted"]) for x in lifetimes.values()] == [(1, 1)] * 2 + [(1, 0)]
        assert sb.stats.relation_cascade_deletes == 2
        assert sb.stats.relation_deletes_applied == 0


async def test_lost_response_applies_the_relation_write(http: aiohttp.ClientSession) -> None:
    """With every answer lost, the create and the delete are applied all the same."""
    async with Sandbox(SandboxConfig(lost_response_rate=1.0, seed=1)) as sb:
        token = sb.issue_token("L1")
        association_id = seed(sb)
        with pytest.raises(aiohttp.ClientConnectionError):
            await call(http, sb, "POST", RELATIONS, token=token, json=body(association_id))
        [made] = sb.relations("L1")
        assert (sb.log[-1].status, sb.log[-1].applied, sb.log[-1].faults) == (
            0,
            True,
            ("lost_response",),
        )
        path = f"{RELATIONS}/c1?locationId=L1&skip=0&limit=10"
        status, answer, _ = await call(http, sb, "GET", path, token=token)
        assert (status, answer["relations"]) == (200, [made])  # reads are never lost
        with pytest.raises(aiohttp.ClientConnectionError):
            await call(http, sb, "DELETE", f"{RELATIONS}/{made['id']}?locationId=L1", token=token)
        assert sb.relations("L1") == []
        assert sb.stats.relation_deletes_applied == 1
        # aiohttp resends a DELETE once on a dropped keep-alive connection: 404, lost again
        assert {e.faults for e in sb.log if e.method != "GET"} == {("lost_response",)}


async def test_relation_routes_share_the_rate_limit(http: aiohttp.ClientSession) -> None:
    """Relation requests count against the location's burst budget and get 429 past it."""
    async with Sandbox(SandboxConfig(rate_limit=2, clock=FakeClock())) as sb:
        token = sb.issue_token("L1")
        association_id = seed(sb)
        await create(http, sb, token, association_id, "c1", "pet-1")
        await call(http, sb, "GET", "/objects/?locationId=L1", token=token)
        sent = body(association_id, "c2", "pet-1")
        status, _, headers = await call(http, sb, "POST", RELATIONS, token=token, json=sent)
        assert (status, headers["X-RateLimit-Remaining"]) == (429, "0")
        assert len(sb.relations("L1")) == 1
        assert sb.stats.throttled == 1


async def test_generated_records_per_object_and_location(http: aiohttp.ClientSession) -> None:
    """records=N makes contact-1..N, property-1..N... known in every location, and no more."""
    async with Sandbox(SandboxConfig(records=5)) as sb:
        token = sb.issue_token("L7")
        association_id = sb.add_association(
            "L7",
            key="home",
            first_object_key="contact",
            second_object_key="custom_objects.property",
        )["id"]
        made = await create(http, sb, token, association_id, "contact-5", "property-1", "L7")
        assert made["secondRecordId"] == "property-1"
        for first, second in (("contact-6", "property-1"), ("contact-0", "property-1")):
            sent = body(association_id, first, second, locationId="L7")
            status, answer, _ = await call(http, sb, "POST", RELATIONS, token=token, json=sent)
            assert (status, answer["message"]) == (
                422,
                f"Record with id {first} not found for object contact",
            )
        assert sb.add_records("L7", "opportunity", ["deal"]) == 6


async def test_admin_routes_seed_records_and_relations(http: aiohttp.ClientSession) -> None:
    """/_sandbox/records and /_sandbox/relations seed in bulk, uncounted; bad bodies are 400."""
    async with Sandbox() as sb:
        association_id = sb.add_association(
            "A", key="k", first_object_key="contact", second_object_key=PET
        )["id"]
        seeds = [
            {"locationId": "A", "objectKey": "contact", "ids": ["x", "y"]},
            {"locationId": "A", "objectKey": PET, "count": 1000, "prefix": "p"},
            {"locationId": "A", "objectKey": PET, "count": 10},
        ]
        totals = []
        for sent in seeds:
            async with http.post(sb.url + "/_sandbox/records", json=sent) as resp:
                assert resp.status == 200
                totals.append((await resp.json())["records"])
        assert totals == [2, 1000, 1010]
        relation = {
            "locationId": "A",
            "associationId": association_id,
            "firstRecordId": "y",
            "secondRecordId": "p1000",
        }
        async with http.post(sb.url + "/_sandbox/relations", json=relation) as resp:
            assert resp.status == 201
            made = await resp.json()
        async with http.post(sb.url + "/_sandbox/relations", json=relation) as resp:
            assert (resp.status, (await resp.json())["message"]) == (
                400,
                f"{DUPLICATE} {association_id}",
            )
        assert sb.relations("A") == [made]
        assert sb.relation_writes("A")[0]["created"] == 0  # set-up, not an API create
        bad = {"locationId": "A", "ids": "x", "count": -1, "extra": 1}
        async with http.post(sb.url + "/_sandbox/records", json=bad) as resp:
            assert (resp.status, (await resp.json())["message"]) == (
                400,
                [
                    "objectKey must be a string",
                    "ids must be a list of record ids",
                    "count must be a whole number",
                    "property extra should not exist",
                ],
            )
        unknown = {"locationId": "A", "objectKey": "custom_objects.car", "ids": ["z"]}
        async with http.post(sb.url + "/_sandbox/records", json=unknown) as resp:
            assert (resp.status, (await resp.json())["message"]) == (
                404,
                "Object with key custom_objects.car not found",
            )
        assert sb.stats.requests == 0
        assert sb.stats.relation_creates_applied == 0


async def test_python_helpers_refuse_what_the_api_refuses() -> None:
    """add_relation raises ValueError for an unknown association, record, or a duplicate."""
    sb = Sandbox()
    association_id = seed(sb)
    sb.add_relation("L1", association_id, "c1", "pet-1")
    for args, message in (
        (("nope", "c1", "pet-1"), "no association nope in location L1"),
        ((association_id, "c1", "pet-9"), f"Record with id pet-9 not found for object {PET}"),
        ((association_id, "c1", "pet-1"), f"{DUPLICATE} {association_id}"),
    ):
        with pytest.raises(ValueError, match=re.escape(message)):
            sb.add_relation("L1", *args)
    with pytest.raises(ValueError, match=r"Object with key custom_objects\.car not found"):
        sb.add_records("L1", "custom_objects.car", ["z"])
    assert len(sb.relations("L1")) == 1


async def test_cli_sandbox_serves_generated_records_and_200s(tmp_path: Any) -> None:
    """`sandbox --records 2 --relation-status 200 --wrap-relation` serves what it says."""
    tokens_file = tmp_path / "tokens.csv"
    args = ["--port", "0", "--locations", "L1", "--tokens-file", str(tokens_file), "--records", "2"]
    args += ["--relation-status", "200", "--wrap-relation"]
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "engine", "sandbox", *args, cwd=ROOT, env=env,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        line = (await asyncio.wait_for(proc.stderr.readline(), 10)).decode()
        url = line.split("sandbox listening on ")[1].strip()
        _, rows = read_tokens(tokens_file)
        headers = {"Version": "2021-07-28", "Authorization": f"Bearer {rows[0]['token']}"}
        sent = body("BUSINESSES_CONTACTS_ASSOCIATION", "business-2", "contact-1")
        async with (
            aiohttp.ClientSession() as http,
            http.post(url + RELATIONS, json=sent, headers=headers) as resp,
        ):
            assert resp.status == 200
            assert (await resp.json())["relation"]["firstRecordId"] == "business-2"
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
