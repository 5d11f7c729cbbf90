"""The run store: records in input order, outcomes, carry-over, and cleanup of its file."""

from __future__ import annotations

import gc
import os
from pathlib import Path

import pytest

from engine import FAILED, INVALID, NOT_RUN, Outcome, Record
from engine.feed import Feed
from engine.store import OutcomeView, RunStore


def rec(n: int, location: str = "locA", ident: str | None = None) -> Record:
    return Record(
        source=f"jobs.csv:{n + 2}",
        location_id=location,
        ident=f"{location}/k{n}" if ident is None else ident,
        fields={"key": f"k{n}"},
    )


def filled(records: list[Record], path: str | None = None) -> RunStore:
    store = RunStore(path)
    for record in records:
        store.add(record)
    store.seal("same location and key")
    return store


def test_records_come_back_with_their_fields_in_input_order() -> None:
    """A record read back from the store equals the one put in, at its input position."""
    records = [rec(n, "locA" if n % 2 else "locB") for n in range(5)]
    store = filled(records)

    assert store.todo("locA", -1, 10) == [(1, records[1]), (3, records[3])]
    assert store.todo("locB", 0, 1) == [(2, records[2])]
    assert len(store) == 5
    store.close()


def test_a_repeated_ident_is_invalid_naming_the_first_row() -> None:
    """The second and later rows with one ident become invalid, naming the first row's source."""
    store = filled([rec(0), rec(1, ident="locA/k0"), rec(2), rec(3, ident="locA/k0")])

    invalid = list(store.outcomes(INVALID))

    assert [o.record.source for o in invalid] == ["jobs.csv:3", "jobs.csv:5"]
    assert {o.error for o in invalid} == {"repeats jobs.csv:2 (same location and key)"}
    assert store.todo_counts() == {"locA": 2}
    store.close()


def test_an_outcome_known_at_load_is_not_to_do() -> None:
    """A record added with an outcome (a row that did not parse) is never handed out."""
    store = RunStore()
    bad = rec(0, ident="")
    store.add(bad, Outcome(record=bad, status=INVALID, error="key: is required"))
    store.add(rec(1))
    store.seal()

    assert store.todo_counts() == {"locA": 1}
    assert store.outcome(0) == Outcome(record=bad, status=INVALID, error="key: is required")
    store.close()


def test_records_with_and_without_outcomes_keep_input_order_across_batches() -> None:
    """Invalid rows among valid ones, over more rows than one insert batch, stay in place."""
    store = RunStore()
    records = [rec(n) for n in range(12_000)]
    for n, record in enumerate(records):
        store.add(record, Outcome(record=record, status=INVALID) if n % 7 == 0 else None)
    store.seal()

    assert [o.record.source for o in store.outcomes(INVALID)] == [
        records[n].source for n in range(0, 12_000, 7)
    ]
    todo = store.todo("locA", -1, 20_000)
    assert [pos for pos, _ in todo] == [n for n in range(12_000) if n % 7]
    assert todo[0][1] == records[1]
    store.close()


def test_settle_rest_marks_every_record_without_an_outcome() -> None:
    """At the end, records never done become not_run with the reason; done ones keep theirs."""
    records = [rec(n) for n in range(3)]
    store = filled(records)
    store.set_outcome(1, Outcome(record=records[1], status=FAILED, http_status=400, error="x"))

    assert store.settle_rest("not sent") == 2
    statuses = [o.status for o in store.outcomes()]

    assert statuses == [NOT_RUN, FAILED, NOT_RUN]
    assert store.counts() == {NOT_RUN: 2, FAILED: 1}
    assert store.count_by_location(frozenset({"created"})) == {"locA": 3}
    store.close()


def _encode(outcome: Outcome) -> bytes:
    return f"{outcome.record.source},{outcome.status}\n".encode()


def test_report_lines_copy_the_kept_line_and_encode_the_rest() -> None:
    """The final report's lines are those kept while running, else the outcome encoded."""
    records = [rec(n) for n in range(3)]
    store = filled(records)
    done = Outcome(record=records[1], status=FAILED, error="x")
    store.set_outcome(1, done, b"kept line\n")
    store.settle_rest("not sent")

    assert list(store.report_lines(_encode)) == [
        b"jobs.csv:2,not_run\n",
        b"kept line\n",
        b"jobs.csv:4,not_run\n",
    ]
    store.close()


def test_a_kept_line_survives_a_commit_but_not_a_new_status() -> None:
    """Lines are written with their outcomes in batches; restatus drops the stale line."""
    records = [rec(n) for n in range(1500)]
    store = filled(records)
    for pos, record in enumerate(records):
        store.set_outcome(pos, Outcome(record=record, status=INVALID), f"{pos}\n".encode())
    lines = list(store.report_lines(_encode))
    assert lines == [f"{pos}\n".encode() for pos in range(1500)]

    store.restatus(INVALID, "blocked")

    assert next(store.report_lines(_encode)) == b"jobs.csv:2,blocked\n"
    store.close()


def test_carried_rows_find_their_records_or_none() -> None:
    """The last word of an earlier report per ident wins; unknown idents come back as None."""
    records = [rec(0), rec(1)]
    store = filled(records)
    store.carry("locA/k0", {"outcome": "created", "n": "1"})
    store.carry("locA/k1", {"outcome": "created"})
    store.carry("locA/k1", None)  # a later row says it must run again
    store.carry("gone/k9", {"outcome": "created"})

    carried = {row.get("n", "") + row["outcome"]: found for found, row in store.carried()}

    assert carried == {"1created": (0, records[0]), "created": None}
    store.close()


def test_noted_is_the_last_intent_of_an_earlier_process() -> None:
    """Only idents an earlier process noted are noted, with their last intent's fields."""
    store = filled([rec(0), rec(1)])
    assert store.noted("locA/k0") is None
    store.note_intents(
        iter([("locA/k0", {"action": "create"}), ("locA/k0", {"action": "update", "x": "1"})])
    )

    assert store.noted("locA/k0") == {"action": "update", "x": "1"}
    assert store.noted("locA/k1") is None
    store.close()


def test_extras_keep_their_order() -> None:
    """Rows kept for the end of the report come back as kept, in order."""
    store = filled([rec(0)])
    store.keep_extra({"source": "a", "outcome": "created"})
    store.keep_extra({"source": "b", "outcome": "exists"})

    assert [row["source"] for row in store.extras()] == ["a", "b"]
    store.close()


def test_the_view_reads_outcomes_on_demand() -> None:
    """The result's view indexes, slices and iterates the store without holding outcomes."""
    records = [rec(n) for n in range(4)]
    store = filled(records)
    store.settle_rest("not sent")
    view = OutcomeView(store)

    assert len(view) == 4
    assert view[-1].record == records[3]
    assert [o.record.source for o in view[1:3]] == ["jobs.csv:3", "jobs.csv:4"]
    assert [o.record for o in view] == records
    with pytest.raises(IndexError):
        view[4]
    store.close()


def test_close_deletes_the_file_and_so_does_dropping_the_store(tmp_path: Path) -> None:
    """The scratch file is gone after close(), and after the last reference is dropped."""
    first = filled([rec(0)], str(tmp_path / "a.store"))
    first.close()
    first.close()  # again is harmless
    assert first.closed
    second = filled([rec(0)], str(tmp_path / "b.store"))
    del second
    gc.collect()

    assert os.listdir(tmp_path) == []


def test_a_leftover_file_is_replaced(tmp_path: Path) -> None:
    """A scratch file left by a killed run is started over, not read."""
    path = tmp_path / "out.csv.store"
    path.write_bytes(b"not a database at all")

    store = filled([rec(0)], str(path))

    assert store.todo_counts() == {"locA": 1}
    store.close()


def test_feed_goes_round_robin_in_small_batches() -> None:
    """The feed takes one record per location in turn, in first-appearance order."""
    records = [rec(0, "A"), rec(1, "A"), rec(2, "A"), rec(3, "B"), rec(4, "C"), rec(5, "C")]
    store = filled(records)
    feed = Feed(store, batch=2)
    assert feed.batch == 2

    order = [pos for pos, _ in feed]

    assert order == [0, 3, 4, 1, 5, 2]
    assert all(feed.exhausted(location) for location in "ABC")
    store.close()


def test_feed_batches_shrink_as_locations_grow() -> None:
    """All batches together stay within the budget: many locations read one at a time."""
    store = filled([rec(n, f"loc{n}") for n in range(100)])

    assert Feed(store, budget=1000).batch == 10
    assert Feed(store, budget=50).batch == 1
    store.close()


def test_feed_skips_records_already_settled() -> None:
    """Records with an outcome (carried over from an earlier run) are not handed out."""
    records = [rec(n) for n in range(4)]
    store = filled(records)
    store.set_outcome(1, Outcome(record=records[1], status="created"))
    store.commit()

    assert [pos for pos, _ in Feed(store, budget=3)] == [0, 2, 3]
    store.close()
