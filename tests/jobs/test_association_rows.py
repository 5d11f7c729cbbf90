"""Parsing association rows: ids that cannot be HighLevel ids are refused before sending."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from engine import INVALID, RecordError
from engine.loading import load_job_files
from engine.store import RunStore
from jobs.associations import AssociationsJob

CREATE = {"key": "pet_owner", "first_object_key": "contact", "second_object_key": "business"}


@pytest.fixture
def job() -> AssociationsJob:
    return AssociationsJob()


@pytest.mark.parametrize("location_id", [123, 0])
def test_json_number_location_id_must_be_text(job: AssociationsJob, location_id: int) -> None:
    """A location id given as a JSON number is refused as "must be text" (a number loses
    leading zeros and is never a HighLevel id)."""
    with pytest.raises(RecordError, match="must be text") as info:
        job.parse("x.json#1", {"location_id": location_id, **CREATE})

    assert info.value.field == "location_id"
    assert "ve9EPM428h8vShlRW1KT" in str(info.value)


@pytest.mark.parametrize("location_id", ["123", "0042", "1.2E+19", "-5", ".", ".."])
def test_location_id_that_cannot_be_an_id_is_refused(
    job: AssociationsJob, location_id: str
) -> None:
    """An all-digit or number-like location id (Excel turns long ids into 1.2E+19) and ``.``
    or ``..`` are refused with a message that shows what a location id looks like."""
    with pytest.raises(RecordError) as info:
        job.parse("x.csv:2", {"location_id": location_id, **CREATE})

    assert info.value.field == "location_id"
    assert "ve9EPM428h8vShlRW1KT" in str(info.value)


@pytest.mark.parametrize("location_id", ["loc01", "L1", "ve9EPM428h8vShlRW1KT", "a.b", "x-1"])
def test_location_ids_are_otherwise_lenient(job: AssociationsJob, location_id: str) -> None:
    """Short and test ids are accepted: only ids that cannot be real are refused."""
    assert job.parse("x.csv:2", {"location_id": location_id, **CREATE}).location_id == location_id


@pytest.mark.parametrize("name", ["key", "association_id"])
@pytest.mark.parametrize("value", [".", ".."])
def test_dot_segments_in_path_fields_are_refused(
    job: AssociationsJob, name: str, value: str
) -> None:
    """``.`` and ``..`` as a key or association id (both go into URL paths) are refused."""
    values: dict[str, Any] = {"location_id": "loc01", "action": "delete", name: value}

    with pytest.raises(RecordError, match="must not be") as info:
        job.parse("x.csv:2", values)

    assert info.value.field == name


def test_numeric_ids_in_a_csv_are_reported_invalid(tmp_path: Path, job: AssociationsJob) -> None:
    """Through the reader, an all-digit location id becomes an invalid record naming the field."""
    path = tmp_path / "jobs.csv"
    path.write_text(
        "location_id,key,first_object_key,second_object_key\n"
        "123,pet_owner,contact,business\n"
        "loc01,pet_owner,contact,business\n",
        encoding="utf-8",
    )

    store = RunStore()
    load_job_files(store, job, [str(path)])

    assert store.todo_counts() == {"loc01": 1}
    (invalid,) = store.outcomes()
    assert invalid.record.location_id == "123"
    assert invalid.status == INVALID
    assert invalid.error.startswith("location_id:")
    store.close()
