"""Planning a rollback from reports: what is undone, what is refused, what is flagged."""

from __future__ import annotations

import csv
from pathlib import Path

import orjson
import pytest

from engine import ConfigError
from jobs.association_rows import COLUMNS
from jobs.rollback import plan_rollback

#: the columns of a report written before sub-account names were reported: still read
OLD_COLUMNS = [c for c in COLUMNS if c != "location_name"]
HEADER = ",".join(OLD_COLUMNS) + "\n"


def write(path: Path, *rows: str) -> str:
    """A report of ``rows``, each given as its first nine cells (no previous labels)."""
    lines = []
    for row in rows:
        cells = row.split(",")
        cells[6:6] = ["", ""]  # previous_first_label, previous_second_label
        lines.append(",".join(cells) + "\n")
    path.write_text(HEADER + "".join(lines), encoding="utf-8")
    return str(path)


def test_killed_run_journal_rows_are_deduplicated_last_wins(tmp_path: Path) -> None:
    """An append-only report with several rows per record undoes each created one once."""
    report = write(
        tmp_path / "run.csv",
        "jobs.csv:2,locA,create,k1,failed,,503,5,gave up",
        "jobs.csv:3,locA,create,k2,created,id2,201,1,",
        "jobs.csv:2,locA,create,k1,created,id1,201,2,",  # the resumed run settled it
        "jobs.csv:4,locB,create,k3,exists,id3,,0,",
        "jobs.csv:5,locB,create,k4,created,id4,201,1,",
        "jobs.csv:5,locB,create,k4,created,id4,201,1,",  # written again by a rewrite
    )
    plan = plan_rollback([report])
    assert sorted((r.location_id, r.get("key"), r.get("association_id")) for r in plan.records) == [
        ("locA", "k1", "id1"),
        ("locA", "k2", "id2"),
        ("locB", "k4", "id4"),
    ]
    assert plan.by_location == {"locA": 2, "locB": 1}
    assert all(r.get("action") == "delete" for r in plan.records)


def test_the_plan_keeps_the_names_a_report_gives_its_locations(tmp_path: Path) -> None:
    """An agency run's report names its sub-accounts; the plan's records and names keep them."""
    path = tmp_path / "run.csv"
    path.write_text(
        ",".join(COLUMNS) + "\n"
        "t.json#1,locA,Austin Dental,create,k1,created,id1,,,201,1,\n"
        "t.json#2,locB,,create,k1,created,id2,,,201,1,\n",
        encoding="utf-8",
    )
    plan = plan_rollback([str(path)])
    assert [r.get("location_name") for r in plan.records] == ["Austin Dental", ""]
    assert plan.location_names == {"locA": "Austin Dental"}


def test_created_then_failed_is_not_undone(tmp_path: Path) -> None:
    """Only the last row of a record counts: exists/conflict/failed are never rolled back."""
    report = write(
        tmp_path / "run.csv",
        "a.csv:2,locA,create,k1,conflict,idX,,0,key links other objects",
        "a.csv:3,locA,create,k2,invalid,,,0,bad",
    )
    assert list(plan_rollback([report]).records) == []


def test_unsettled_intents_in_the_journal_are_counted(tmp_path: Path) -> None:
    """Creates noted in the journal without a final row are listed with location and key."""
    report = write(tmp_path / "run.csv", "jobs.csv:2,locA,create,k1,created,id1,201,1,")
    journal = tmp_path / "run.csv.journal"
    lines = [
        {"format": "ghl-migrate-journal/1", "kind": "associations"},
        {"intent": "locA\x1fcreate\x1fk1", "action": "create", "key": "k1"},
        {"intent": "locA\x1fcreate\x1fk9", "action": "create", "key": "k9"},
    ]
    journal.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))
    plan = plan_rollback([report])
    assert [(u.location_id, u.key) for u in plan.unsettled] == [("locA", "k9")]
    assert [r.get("key") for r in plan.records] == ["k1"]


def test_a_report_of_deletes_is_refused(tmp_path: Path) -> None:
    """Rolling back a rollback (only deletes) is refused with a clear message."""
    report = write(tmp_path / "undo.csv", "run.csv#1,locA,delete,k1,deleted,id1,200,1,")
    with pytest.raises(ConfigError, match="only deletes"):
        plan_rollback([report])


def test_missing_report_is_a_config_error(tmp_path: Path) -> None:
    """A report that does not exist is named in the error."""
    with pytest.raises(ConfigError, match="no such file"):
        plan_rollback([str(tmp_path / "nope.csv")])


@pytest.mark.parametrize("dropped", [None, *COLUMNS])
def test_rollback_reads_the_columns_a_run_writes(tmp_path: Path, dropped: str | None) -> None:
    """A report with the run's columns plans; without one rollback needs, it is refused by name."""
    columns = [c for c in COLUMNS if c != dropped]
    row = {
        "source": "jobs.csv:2",
        "location_id": "locA",
        "location_name": "Austin Dental",
        "action": "create",
        "key": "k1",
        "outcome": "created",
        "association_id": "id1",
        "http_status": "201",
        "attempts": "1",
    }
    path = tmp_path / "run.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerow(row)
    not_read = ("location_name", "http_status", "attempts", "error", "previous_first_label",
                "previous_second_label")  # fmt: skip
    if dropped is None or dropped in not_read:
        assert [r.get("key") for r in plan_rollback([str(path)]).records] == ["k1"]
    else:
        with pytest.raises(ConfigError, match=f"no {dropped} column"):
            plan_rollback([str(path)])


def test_a_definition_created_then_relabelled_is_deleted_not_relabelled(tmp_path: Path) -> None:
    """Rolling back a run and a later relabelling of what it created deletes the definition."""
    created = write(tmp_path / "run.csv", "jobs.csv:2,locA,create,k1,created,id1,201,1,")
    relabelled = tmp_path / "relabel.csv"
    relabelled.write_text(
        HEADER + "relabel.csv:2,locA,create,k1,updated,id1,Old,Labels,200,1,\n", encoding="utf-8"
    )
    plan = plan_rollback([created, str(relabelled)])
    assert [(r.get("action"), r.get("key")) for r in plan.records] == [("delete", "k1")]
    alone = plan_rollback([str(relabelled)])
    assert [
        (r.get("action"), r.get("first_object_label"), r.get("second_object_label"))
        for r in alone.records
    ] == [("restore", "Old", "Labels")]
