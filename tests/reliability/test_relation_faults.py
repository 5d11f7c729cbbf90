"""Relations under every fault: killed -9 and resumed to an exact state, then rolled back.

The same harness as ``test_faults.py`` (the CLI and the sandbox as separate processes, seeded
faults, real SIGKILLs), for the relations kind, whose creates are sent without looking
first: a lost answer or a killed process leaves a create whose fate only reading back can
tell. The sandbox's admin routes are the ground truth: the live relations, and every pair's
lifetime counts of creates and deletes through the API.
"""

from __future__ import annotations

import json
import random
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from engine.journal import pending_intents

from .test_faults import (
    CLIENT,
    FAULT_KINDS,
    FAULTS,
    SEED,
    Harness,
    assert_no_token,
    read_rows,
    to_send,
    wait_for_progress,
)

#: every fault of test_faults.py, at twice its pace (the run's length is the budget's doing)
RELATION_FAULTS = (
    *FAULTS[: FAULTS.index("--rate-limit")],
    "--rate-limit", "40/1s", "--throttle-below", "16",
    *FAULTS[FAULTS.index("--seed") :],
)  # fmt: skip
FINAL = frozenset({"created", "exists", "deleted", "absent", "invalid"})
LOCATIONS = [f"rel{n}" for n in range(4)]
#: (key, first object, second object, first record prefix, second record prefix, rows)
DEFINITIONS = (
    ("pet_owner", "contact", "custom_objects.pet", "contact-", "pet-", 10),
    ("home_owner", "custom_objects.property", "contact", "property-", "contact-", 6),
)
#: relations there a day before the job: three are job rows (exists), one is not (untouched)
BEFORE = (
    ("rel0", "pet_owner", "contact-3", "pet-3"),
    ("rel1", "home_owner", "property-4", "contact-4"),
    ("rel2", "pet_owner", "contact-7", "pet-7"),
    ("rel3", "pet_owner", "contact-20", "pet-20"),
)

Pair = tuple[str, str, str, str]  # location, association id, first record, second record


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    """A harness in the test's folder; its processes are ended with the test."""
    h = Harness(tmp_path)
    yield h
    h.close()


def unsettled(report: Path, rows: list[dict[str, str]]) -> int:
    """How many records a resume must still send: no row yet, or a last row not final."""
    last: dict[str, str] = {}
    if report.exists():
        for row in read_rows(report):
            if None not in row and None not in row.values():  # skip a torn last line
                last[row["source"]] = row["outcome"]
    return sum(1 for row in rows if last.get(row["source"]) not in FINAL)


def live(harness: Harness) -> dict[Pair, str]:
    """Every live relation in the sandbox, by pair, with its id."""
    state = harness.admin("GET", "/_sandbox/relations")
    return {
        (location, r["associationId"], r["firstRecordId"], r["secondRecordId"]): r["id"]
        for location, items in state["relations"].items()
        for r in items
    }


def writes(harness: Harness) -> dict[Pair, tuple[int, int]]:
    """Every pair the sandbox ever held: (creates, deletes) through the API."""
    state = harness.admin("GET", "/_sandbox/relations")
    return {
        (location, w["associationId"], w["firstRecordId"], w["secondRecordId"]): (
            w["created"],
            w["deleted"],
        )
        for location, items in state["writes_by_relation"].items()
        for w in items
    }


def setup(harness: Harness) -> tuple[dict[tuple[str, str], str], dict[Pair, str]]:
    """The definitions in every location, and the relations there before the job."""
    ids: dict[tuple[str, str], str] = {}
    for location in LOCATIONS:
        for key, first, second, *_ in DEFINITIONS:
            made = harness.admin(
                "POST",
                "/_sandbox/associations",
                {"locationId": location, "key": key, "firstObjectKey": first,
                 "secondObjectKey": second, "firstObjectLabel": f"{key} 1",
                 "secondObjectLabel": f"{key} 2"},
            )  # fmt: skip
            ids[location, key] = made["id"]
    yesterday = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    before: dict[Pair, str] = {}
    for location, key, first, second in BEFORE:
        made = harness.admin(
            "POST",
            "/_sandbox/relations",
            {"locationId": location, "associationId": ids[location, key],
             "firstRecordId": first, "secondRecordId": second, "createdAt": yesterday},
        )  # fmt: skip
        before[location, ids[location, key], first, second] = made["id"]
    return ids, before


def write_job(path: Path) -> list[dict[str, str]]:
    """16 relations in each location, under two definitions; rows carry their source."""
    rows = [
        {"location_id": location, "association_key": key,
         "first_record_id": f"{a}{n}", "second_record_id": f"{b}{n}"}
        for location in LOCATIONS
        for key, _, _, a, b, count in DEFINITIONS
        for n in range(1, count + 1)
    ]  # fmt: skip
    lines = ["location_id,association_key,first_record_id,second_record_id"]
    lines += [",".join(row.values()) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return [{**row, "source": f"{path.name}:{n}"} for n, row in enumerate(rows, start=2)]


def kill_and_resume(harness: Harness, job: Path, report: Path, rows: list[dict[str, str]]) -> None:
    """Four runs killed -9 at seeded moments, then resumes until every record is final."""
    rng = random.Random(SEED)
    kills = 0
    for attempt in range(4):
        before = report.stat().st_size if report.exists() else 0
        expected = unsettled(report, rows)
        resume = ("--resume",) if attempt else ()
        started = harness.start_run(job, *CLIENT, *resume, report=report)
        wait_for_progress(started, report, before)
        time.sleep(rng.uniform(0.1, 0.8))
        if started.proc.poll() is None:
            started.proc.send_signal(signal.SIGKILL)
            kills += 1
        assert to_send(started.wait(timeout=10).err) == expected  # settled ones not resent
    assert kills >= 3, "the runs finished before they could be killed"
    for _ in range(8):
        expected = unsettled(report, rows)
        finished = harness.run(job, *CLIENT, "--resume", report=report)
        assert finished.rc in (0, 1), finished.err
        assert to_send(finished.err) == expected
        if unsettled(report, rows) == 0:
            break
    else:
        pytest.fail(f"records still unsettled after 8 resumes: {finished.out}")
    assert finished.rc == 0, finished.out


@pytest.mark.timeout(180)
def test_relations_killed_and_resumed_under_faults_reach_the_exact_state(
    harness: Harness,
) -> None:
    """Faults and 4 kill -9s: resumes reach exactly the desired relations, truly attributed;
    rollback then deletes exactly the ones created."""
    harness.start_sandbox(LOCATIONS, *RELATION_FAULTS, "--records", "30")
    ids, before = setup(harness)
    job = harness.dir / "links.csv"
    rows = write_job(job)
    report = harness.dir / "out.csv"
    journal = Path(f"{report}.journal")
    kill_and_resume(harness, job, report, rows)

    # Exactly the desired relations: the job's rows plus what was there, which is untouched.
    wanted = {
        (r["location_id"], ids[r["location_id"], r["association_key"]], r["first_record_id"],
         r["second_record_id"])
        for r in rows
    }  # fmt: skip
    now = live(harness)
    assert set(now) == wanted | set(before)
    for pair, relation_id in before.items():
        assert now[pair] == relation_id

    # One row per record, each saying what the sandbox shows, and who made it.
    final = read_rows(report)
    assert sorted(r["source"] for r in final) == sorted(r["source"] for r in rows)
    created: set[Pair] = set()
    for row in final:
        pair = (row["location_id"], row["association_id"], row["first_record_id"],
                row["second_record_id"])  # fmt: skip
        assert row["association_id"] == ids[row["location_id"], row["association_key"]]
        assert row["relation_id"] == now[pair], row
        assert row["outcome"] == ("exists" if pair in before else "created"), row
        if row["outcome"] == "created":
            created.add(pair)
    # The API created exactly the pairs reported created, once each, and nothing else.
    counts = writes(harness)
    assert {p: c for p, c in counts.items() if c != (0, 0)} == dict.fromkeys(created, (1, 0))
    state = harness.admin("GET", "/_sandbox/state")
    assert state["stats"]["relation_creates_applied"] == len(created)
    # Some creates were settled by reading back (a lost answer or a kill), still created.
    assert any(r["outcome"] == "created" and not r["http_status"] for r in final)
    # Every record's create was noted in the journal before it was sent (none is read first).
    idents = {
        f"{r['location_id']}\x1fcreate\x1f{r['association_key']}\x1f{r['first_record_id']}"
        f"\x1f{r['second_record_id']}"
        for r in rows
    }
    assert pending_intents(str(journal)) == idents

    # Rollback, under the same faults: exactly the created relations go, by id.
    undo = harness.dir / "undo.csv"
    for attempt in range(4):
        resume = ("--resume",) if attempt else ()
        finished = harness._spawn(
            f"rollback{attempt}",
            ["rollback", str(report), "--tokens", str(harness.tokens_file), "--report",
             str(undo), "--yes", *CLIENT, *resume],
        ).wait(90)  # fmt: skip
        assert finished.rc in (0, 1), finished.err
        if finished.rc == 0:
            break
    assert finished.rc == 0, finished.out
    assert {r["outcome"] for r in read_rows(undo)} == {"deleted"}
    assert len(read_rows(undo)) == len(created)
    assert live(harness) == before
    counts = writes(harness)
    assert {p: c for p, c in counts.items() if c != (0, 0)} == dict.fromkeys(created, (1, 1))

    # The faults happened; no token crossed locations or leaked.
    stats = harness.admin("GET", "/_sandbox/state")["stats"]
    assert set(stats["faults_injected"]) >= FAULT_KINDS, stats
    assert stats["cross_location_token_uses"] == 0
    log = harness.admin("GET", "/_sandbox/log")
    for entry in log:
        assert entry["token_location"] in LOCATIONS, entry
        assert entry["status"] not in (401, 403), entry
        if entry["location_id"] is not None:
            assert entry["token_location"] == entry["location_id"], entry
    assert_no_token(harness, report, journal, undo, json.dumps(log))
