"""End to end through the library against the sandbox: each outcome, both route sets."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from engine import ConnectFailed, Request, Response, TransportError
from engine.transport import AiohttpTransport
from jobs.sandbox import Sandbox

from .helpers import run_against, statuses, writes

LOC_A, LOC_B = "locAAAAAAAAAAAAAAAAA", "locBBBBBBBBBBBBBBBBB"

TEMPLATE = """{
  "locations": ["LOC_A", {"id": "LOC_B"}],
  "associations": [
    {"key": "property_owner", "firstObjectKey": "custom_objects.property",
     "firstObjectLabel": "Owned property",
     "secondObjectKey": "contact", "secondObjectLabel": "Owner"},
    {"key": "pet_owner", "firstObjectKey": "custom_objects.pet", "secondObjectKey": "contact"}
  ]
}""".replace("LOC_A", LOC_A).replace("LOC_B", LOC_B)


async def test_template_creates_every_definition(
    sandbox: Sandbox, write_job: Callable[[str, str], str]
) -> None:
    """An onboarding template creates each definition in each location, one row per record."""
    job = write_job("onboarding.json", TEMPLATE)
    result = await run_against(sandbox, job)
    assert statuses(result) == ["created"] * 4
    assert result.summary.exit_code == 0
    snap = sandbox.snapshot()
    for loc in (LOC_A, LOC_B):
        assert [a["key"] for a in snap[loc]] == ["pet_owner", "property_owner"]
    ids = {o.fields["association_id"] for o in result.outcomes}
    assert ids == {a["id"] for loc in (LOC_A, LOC_B) for a in snap[loc]}


async def test_rerun_is_idempotent_without_posting(
    sandbox: Sandbox, write_job: Callable[[str, str], str]
) -> None:
    """A second run of the same job reports exists for every record and sends no POST."""
    job = write_job("onboarding.json", TEMPLATE)
    await run_against(sandbox, job)
    posts = writes(sandbox)
    again = await run_against(sandbox, job)
    assert statuses(again) == ["exists"] * 4
    assert writes(sandbox) == posts
    assert again.summary.exit_code == 0


async def test_labels_are_derived_from_object_schemas(
    sandbox: Sandbox, write_job: Callable[[str, str], str]
) -> None:
    """With the official routes, missing labels become the objects' singular labels."""
    job = write_job("onboarding.json", TEMPLATE)
    await run_against(sandbox, job)
    pet = next(a for a in sandbox.snapshot()[LOC_A] if a["key"] == "pet_owner")
    assert (pet["firstObjectLabel"], pet["secondObjectLabel"]) == ("Pet", "Contact")


async def test_guide_routes_create_and_rerun(
    sandbox: Sandbox, write_job: Callable[[str, str], str]
) -> None:
    """The objects-association route set creates, then reports exists on a re-run."""
    job = write_job("onboarding.json", TEMPLATE)
    first = await run_against(sandbox, job, api="objects-association")
    assert statuses(first) == ["created"] * 4
    assert all(r.path.startswith("/objects-association") for r in sandbox.log if r.method == "POST")
    again = await run_against(sandbox, job, api="objects-association")
    assert statuses(again) == ["exists"] * 4


async def test_existing_key_with_other_objects_is_a_conflict(
    sandbox: Sandbox, write_job: Callable[[str, str], str]
) -> None:
    """A key that already links other objects is reported conflict and left alone."""
    sandbox.add_association(
        LOC_A, key="pet_owner", first_object_key="custom_objects.pet", second_object_key="business"
    )
    before = sandbox.snapshot()[LOC_A]
    job = write_job(
        "jobs.csv",
        f"location_id,key,first_object_key,second_object_key\n"
        f"{LOC_A},pet_owner,custom_objects.pet,contact\n",
    )
    result = await run_against(sandbox, job)
    assert statuses(result) == ["conflict"]
    assert "not modified" in result.outcomes[0].error
    assert sandbox.snapshot()[LOC_A] == before
    assert result.summary.exit_code == 1


async def test_unknown_object_key_fails_fast_naming_available_keys(
    sandbox: Sandbox, write_job: Callable[[str, str], str]
) -> None:
    """A create naming an object the location lacks fails without a POST and lists the keys."""
    job = write_job(
        "jobs.csv",
        f"location_id,key,first_object_key,second_object_key\n"
        f"{LOC_A},boat_owner,custom_objects.boat,contact\n",
    )
    result = await run_against(sandbox, job)
    assert statuses(result) == ["failed"]
    assert "custom_objects.boat" in result.outcomes[0].error
    assert "custom_objects.property" in result.outcomes[0].error
    assert writes(sandbox) == 0


async def test_same_object_with_derived_labels_fails_fast(
    sandbox: Sandbox, write_job: Callable[[str, str], str]
) -> None:
    """contact↔contact without labels would send identical labels; it fails before sending."""
    job = write_job(
        "jobs.csv",
        f"location_id,key,first_object_key,second_object_key\n{LOC_A},referral,contact,contact\n",
    )
    result = await run_against(sandbox, job)
    assert statuses(result) == ["failed"]
    assert "first_object_label" in result.outcomes[0].error
    assert writes(sandbox) == 0


async def test_duplicate_answer_for_a_missing_key_reports_the_server_message(
    sandbox: Sandbox, write_job: Callable[[str, str], str]
) -> None:
    """A 400 'duplicate pair of labels' for a key that does not exist is failed, with the text."""
    job = write_job(
        "jobs.csv",
        "location_id,key,first_object_key,first_object_label,second_object_key,second_object_label\n"
        f"{LOC_A},owner_b,custom_objects.property,Owned property,contact,Owner\n",
    )

    def someone_else_takes_the_labels() -> None:  # after the job read the location
        sandbox.add_association(
            LOC_A, key="owner_a", first_object_key="custom_objects.property",
            second_object_key="contact", first_object_label="Owned property",
            second_object_label="Owner",
        )  # fmt: skip

    transport = _BeforeFirstWrite(someone_else_takes_the_labels)
    try:
        result = await run_against(sandbox, job, transport=transport)
    finally:
        await transport.aclose()
    assert statuses(result) == ["failed"]
    assert result.outcomes[0].http_status == 400
    assert "duplicate pair of labels" in result.outcomes[0].error


class _BeforeFirstWrite(AiohttpTransport):
    """Runs a callback just before the first write goes out."""

    def __init__(self, callback: Callable[[], None]) -> None:
        super().__init__(timeout=5)
        self._callback: Callable[[], None] | None = callback

    async def send(self, request: Request) -> Response:
        if request.method in {"POST", "DELETE"} and self._callback is not None:
            self._callback, callback = None, self._callback
            callback()
        return await super().send(request)


class _LoseFirstWrite(AiohttpTransport):
    """Delivers the first write, then pretends the connection dropped before the answer."""

    def __init__(self) -> None:
        super().__init__(timeout=5)
        self.lost = 0

    async def send(self, request: Request) -> Response:
        response = await super().send(request)
        if request.method in {"POST", "DELETE"} and not self.lost:
            self.lost += 1
            raise TransportError("connection reset (test)", request=request)
        return response


async def test_lost_response_then_already_exists_is_created(
    sandbox: Sandbox, write_job: Callable[[str, str], str]
) -> None:
    """A create whose answer was lost and whose retry sees 'already exists' is created."""
    job = write_job(
        "jobs.csv",
        f"location_id,key,first_object_key,second_object_key\n"
        f"{LOC_A},pet_owner,custom_objects.pet,contact\n",
    )
    transport = _LoseFirstWrite()
    try:
        result = await run_against(sandbox, job, transport=transport)
    finally:
        await transport.aclose()
    assert transport.lost == 1
    assert statuses(result) == ["created"]
    assert result.outcomes[0].attempts == 2
    assert result.outcomes[0].fields["association_id"] == sandbox.snapshot()[LOC_A][0]["id"]


class _SomeoneElseCreatesWhileRefused(AiohttpTransport):
    """The first write cannot connect (it never reaches the server); meanwhile another client
    creates the same definition, so the retry is answered "already exists"."""

    def __init__(self, sandbox: Sandbox) -> None:
        super().__init__(timeout=5)
        self.sandbox = sandbox
        self.refused = 0

    async def send(self, request: Request) -> Response:
        if request.method == "POST" and not self.refused:
            self.refused += 1
            self.sandbox.add_association(
                LOC_A, key="pet_owner", first_object_key="custom_objects.pet",
                second_object_key="contact",
            )  # fmt: skip
            raise ConnectFailed(
                "connection refused (test)", request=request, host="h", cause="connection refused"
            )
        return await super().send(request)


async def test_refused_then_already_exists_is_exists_not_created(
    sandbox: Sandbox, write_job: Callable[[str, str], str]
) -> None:
    """A create that could not connect had no effect, so when its retry finds the key there
    with the same objects, it was someone else's: ``exists``, which rollback leaves alone."""
    job = write_job(
        "jobs.csv",
        f"location_id,key,first_object_key,second_object_key\n"
        f"{LOC_A},pet_owner,custom_objects.pet,contact\n",
    )
    transport = _SomeoneElseCreatesWhileRefused(sandbox)
    try:
        result = await run_against(sandbox, job, transport=transport)
    finally:
        await transport.aclose()
    assert transport.refused == 1
    assert statuses(result) == ["exists"]
    assert result.outcomes[0].attempts == 2
    assert result.summary.connect_failures == 1


async def test_delete_by_key_by_id_absent_and_system_defined(
    sandbox: Sandbox, write_job: Callable[[str, str], str]
) -> None:
    """Deletes: by key and by id → deleted, gone → absent, SYSTEM_DEFINED → failed unsent."""
    a = sandbox.add_association(
        LOC_A, key="k1", first_object_key="custom_objects.pet", second_object_key="contact"
    )
    b = sandbox.add_association(
        LOC_A, key="k2", first_object_key="custom_objects.property", second_object_key="contact"
    )
    system = next(
        x for x in sandbox.associations(LOC_A) if x["associationType"] == "SYSTEM_DEFINED"
    )
    job = write_job(
        "deletes.csv",
        "location_id,action,key,association_id\n"
        f"{LOC_A},delete,k1,\n"
        f"{LOC_A},delete,,{b['id']}\n"
        f"{LOC_A},delete,never_was,\n"
        f"{LOC_A},delete,{system['key']},\n",
    )
    result = await run_against(sandbox, job)
    assert statuses(result) == ["deleted", "deleted", "absent", "failed"]
    assert "SYSTEM_DEFINED" in result.outcomes[3].error
    assert sandbox.snapshot()[LOC_A] == []
    assert writes(sandbox, "DELETE") == 2
    assert a["id"] == result.outcomes[0].fields["association_id"]


async def test_missing_token_fails_that_location_only(
    sandbox: Sandbox, write_job: Callable[[str, str], str]
) -> None:
    """A location without a token fails with a clear error; other locations go on."""
    from engine import RunConfig
    from jobs.api import run_job

    job = write_job("onboarding.json", TEMPLATE)
    result = await run_job(
        RunConfig(job_files=(job,)),
        base_url=sandbox.url,
        tokens=lambda loc: sandbox.issue_token(loc) if loc == LOC_A else None,
    )
    assert statuses(result) == ["created", "created", "failed", "failed"]
    assert f"GHL_TOKEN_{LOC_B}" in result.outcomes[2].error
    assert all(r.token_location in (None, LOC_A) for r in sandbox.log)


async def test_outcomes_are_read_from_a_scratch_file_that_close_removes(
    sandbox: Sandbox, write_job: Callable[[str, str], str], tmp_path: Path
) -> None:
    """A result reads its outcomes from the run's store beside the report until closed."""
    job = write_job("onboarding.json", TEMPLATE)
    report = tmp_path / "out.csv"

    result = await run_against(sandbox, job, report=str(report))

    assert (tmp_path / "out.csv.store").exists()
    assert [o.record.source for o in result.outcomes] == [
        f"onboarding.json#{n}" for n in (1, 2, 3, 4)
    ]
    result.close()
    assert not (tmp_path / "out.csv.store").exists()
    assert report.exists()
