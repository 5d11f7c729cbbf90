"""A create whose label pair a definition already uses fails before sending, and says why."""

from __future__ import annotations

from collections.abc import Callable

from jobs.sandbox import Sandbox

from .helpers import run_against, statuses, writes

LOC = "locAAAAAAAAAAAAAAAAA"
HEADER = (
    "location_id,key,first_object_key,second_object_key,first_object_label,second_object_label\n"
)


async def test_derived_labels_of_a_built_in_pair_fail_before_sending(
    sandbox: Sandbox, write_job: Callable[[str, str], str]
) -> None:
    """contact ↔ business without labels is BUSINESSES_CONTACTS_ASSOCIATION's pair: no POST."""
    job = write_job(
        "jobs.csv",
        f"{HEADER}{LOC},company_contact,contact,business,,\n"
        f"{LOC},deal_contact,opportunity,contact,,\n",
    )
    result = await run_against(sandbox, job)
    assert statuses(result) == ["failed", "failed"]
    assert writes(sandbox) == 0
    first, second = (o.error for o in result.outcomes)
    assert "derived from the objects' singular labels" in first
    assert "'Contact' ↔ 'Business'" in first
    assert "BUSINESSES_CONTACTS_ASSOCIATION" in first
    assert "set first_object_label and second_object_label" in first
    assert "OPPORTUNITIES_CONTACTS_ASSOCIATION" in second
    assert result.outcomes[0].http_status is None


async def test_two_rows_on_the_same_objects_without_labels(
    sandbox: Sandbox, write_job: Callable[[str, str], str]
) -> None:
    """The second of two label-less rows on one object pair fails unsent, naming the first key."""
    job = write_job(
        "jobs.csv",
        f"{HEADER}{LOC},pet_owner,custom_objects.pet,contact,,\n"
        f"{LOC},pet_keeper,contact,custom_objects.pet,,\n"
        f"{LOC},pet_sitter,contact,custom_objects.pet,Sitter,\n",
    )
    result = await run_against(sandbox, job)
    assert statuses(result) == ["created", "failed", "created"]
    assert writes(sandbox) == 2
    error = result.outcomes[1].error
    assert "pet_owner" in error
    assert "derived from the objects' singular labels" in error
    assert "set first_object_label and second_object_label" in error
    # the same job again: each key is found first, so the created ones are 'exists'
    again = await run_against(sandbox, job)
    assert statuses(again) == ["exists", "failed", "exists"]
    assert writes(sandbox) == 2


async def test_one_derived_label_is_named_as_derived(
    sandbox: Sandbox, write_job: Callable[[str, str], str]
) -> None:
    """With one label given, the message says which one was derived, and from which object."""
    sandbox.add_association(
        LOC, key="owner", first_object_key="contact", second_object_key="custom_objects.pet",
        first_object_label="Owner",
    )  # fmt: skip
    job = write_job("jobs.csv", f"{HEADER}{LOC},keeper,custom_objects.pet,contact,,Owner\n")
    result = await run_against(sandbox, job)
    assert statuses(result) == ["failed"]
    assert writes(sandbox) == 0
    error = result.outcomes[0].error
    assert "first_object_label derived from custom_objects.pet's singular label" in error
    assert "already used by owner" in error


async def test_given_labels_already_used_fail_before_sending_naming_the_key(
    sandbox: Sandbox, write_job: Callable[[str, str], str]
) -> None:
    """Explicit labels that another key already uses for the same objects (either order) fail."""
    sandbox.add_association(
        LOC, key="owner_a", first_object_key="custom_objects.property",
        second_object_key="contact", first_object_label="Owned property",
        second_object_label="Owner",
    )  # fmt: skip
    job = write_job(
        "jobs.csv",
        f"{HEADER}{LOC},owner_b,contact,custom_objects.property,Owner,Owned property\n",
    )
    result = await run_against(sandbox, job)
    assert statuses(result) == ["failed"]
    assert writes(sandbox) == 0
    error = result.outcomes[0].error
    assert "'Owner' ↔ 'Owned property'" in error
    assert "already used by owner_a" in error
    assert "derived" not in error
    assert "choose other labels" in error


async def test_guide_routes_check_only_labels_they_send(
    sandbox: Sandbox, write_job: Callable[[str, str], str]
) -> None:
    """With the guide's routes the server picks missing labels; given ones are checked first."""
    sandbox.add_association(
        LOC, key="owner_a", first_object_key="custom_objects.pet", second_object_key="contact",
        first_object_label="Pet", second_object_label="Owner",
    )  # fmt: skip
    job = write_job(
        "jobs.csv",
        f"{HEADER}{LOC},owner_b,custom_objects.pet,contact,Pet,Owner\n"
        f"{LOC},company_contact,contact,business,,\n",
    )
    result = await run_against(sandbox, job, api="objects-association")
    assert statuses(result) == ["failed", "failed"]
    assert "already used by owner_a" in result.outcomes[0].error
    assert result.outcomes[0].http_status is None
    assert result.outcomes[1].http_status == 409  # sent: the labels were the server's to pick
    assert writes(sandbox) == 1
