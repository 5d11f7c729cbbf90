"""Summing up reports: message patterns, causes across locations, last row wins, caps."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from engine import ConfigError, message_pattern, run_identity, summarize

COLUMNS = ["source", "location_id", "key", "outcome", "http_status", "attempts", "error"]
OK = frozenset({"created", "exists"})


def write_report(path: Path, rows: list[list[str]], *, header: bool = True, tail: str = "") -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        if header:
            writer.writerow(COLUMNS)
        writer.writerows(rows)
        fh.write(tail)
    return path


@pytest.mark.parametrize(
    ("message", "pattern"),
    [
        (
            "object 'custom_objects.boat' does not exist in location Hx2kQm7RtY0pLw3sVb9N; "
            "it has: business, contact",
            "object '…' does not exist in location <id>",
        ),
        ("gave up after 5 attempts: HTTP 503", "gave up after <n> attempts: HTTP <n>"),
        (
            "repeats jobs.csv:7 (same location, action and key)",
            "repeats jobs.csv:<n> (same location, action and key)",
        ),
        ('label "Owner" is taken by 272cb445fe2df88d7771ac52', 'label "…" is taken by <id>'),
        ("can't read key_1", "can't read key_<n>"),
        ("", "(no message)"),
    ],
)
def test_a_message_pattern_leaves_out_what_varies(message: str, pattern: str) -> None:
    """Ids, numbers and quoted values are replaced; details after '; ' are dropped."""
    assert message_pattern(message) == pattern


def test_a_records_location_is_left_out_of_its_pattern_and_its_words_kept() -> None:
    """A location id without digits is known as the record's own; an action word stays."""
    row = {"location_id": "locAAAAAAAA", "action": "create", "outcome": "failed"}
    assert message_pattern("key: is required for create", row) == "key: is required for create"
    message = "no such object in location locAAAAAAAA"
    assert message_pattern(message, row) == "no such object in location <location_id>"


def test_one_cause_groups_across_locations_with_its_first_rows(tmp_path: Path) -> None:
    """The same error in three locations is one group, counting its locations and rows."""
    rows = [
        [f"j.csv:{i}", loc, f"k{i}", "failed", "", "0",
         f"object 'custom_objects.boat' does not exist in location {loc}; it has: {loc}x"]
        for i, loc in enumerate(["locAAAA1111", "locBBBB2222", "locCCCC3333", "locAAAA1111"], 2)
    ]  # fmt: skip
    rows.append(["j.csv:9", "locAAAA1111", "k9", "failed", "404", "1", "HTTP 404: not found"])
    rows.append(["j.csv:10", "locBBBB2222", "k10", "created", "201", "1", ""])
    report = write_report(tmp_path / "r.csv", rows)
    overview = summarize([str(report)], ok_statuses=OK, examples=2)
    first, second = overview.groups
    assert (first.count, first.locations, first.outcome, first.http_status) == (4, 3, "failed", "")
    assert [r["source"] for r in first.examples] == ["j.csv:2", "j.csv:3"]
    assert first.examples[0]["key"] == "k2"  # every column kept
    assert (second.count, second.http_status, second.pattern) == (1, "404", "HTTP <n>: not found")
    assert overview.counts == {"failed": 5, "created": 1}
    worst = overview.locations[0]
    assert (worst.location_id, worst.not_ok, worst.total, worst.attempts) == (
        "locAAAA1111",
        3,
        3,
        1,
    )


def test_the_last_row_of_a_record_wins_and_a_torn_line_is_skipped(tmp_path: Path) -> None:
    """An append-only report of a killed then resumed run: later rows replace earlier ones."""
    rows = [
        ["j.csv:2", "loc1", "a", "failed", "503", "5", "gave up after 5 attempts: HTTP 503"],
        ["j.csv:3", "loc1", "b", "not_run", "", "0", "not sent: the run was stopped"],
        ["j.csv:2", "loc1", "a", "created", "201", "1", ""],
    ]
    report = write_report(tmp_path / "r.csv", rows, tail="j.csv:3,loc1,b,crea")
    overview = summarize([str(report)], ok_statuses=OK)
    assert overview.counts == {"created": 1, "not_run": 1}
    assert (overview.total, overview.rows_read) == (2, 3)
    assert [g.outcome for g in overview.groups] == ["not_run"]


def test_records_of_two_reports_are_distinct(tmp_path: Path) -> None:
    """The same source in two reports (shards, or a run and its rollback) is two records."""
    row = ["j.csv:2", "loc1", "a", "created", "201", "1", ""]
    one = write_report(tmp_path / "one.csv", [row])
    two = write_report(tmp_path / "two.csv", [row])
    assert summarize([str(one), str(two)], ok_statuses=OK).total == 2


def test_groups_beyond_the_cap_are_counted_not_listed(tmp_path: Path) -> None:
    """Only the largest groups are kept; the rest are counted with their records."""
    rows = [
        ["j.csv:2", "l", "a", "failed", "400", "1", "first cause"],
        ["j.csv:3", "l", "b", "failed", "400", "1", "first cause"],
        ["j.csv:4", "l", "c", "failed", "400", "1", "second cause"],
        ["j.csv:5", "l", "d", "invalid", "", "0", "third cause"],
    ]
    overview = summarize([str(write_report(tmp_path / "r.csv", rows))], ok_statuses=OK, groups=1)
    assert [(g.pattern, g.count) for g in overview.groups] == [("first cause", 2)]
    assert (overview.more_groups, overview.more_group_records) == (2, 2)
    assert overview.not_ok == 4


def test_without_the_kinds_statuses_only_failed_invalid_and_not_run_are_not_ok(
    tmp_path: Path,
) -> None:
    """A report of an unknown kind: its own outcomes count as ok by default."""
    rows = [
        ["j.csv:2", "l", "a", "linked", "201", "1", ""],
        ["j.csv:3", "l", "b", "invalid", "", "0", "bad"],
    ]
    overview = summarize([str(write_report(tmp_path / "r.csv", rows))])
    assert overview.ok_statuses == frozenset({"linked"})
    assert overview.not_ok == 1


def test_a_json_lines_report_is_read_the_same_way(tmp_path: Path) -> None:
    """JSON Lines reports give the same counts as CSV ones."""
    path = tmp_path / "r.jsonl"
    path.write_text(
        json.dumps({"source": "j:1", "location_id": "l", "outcome": "failed", "error": "x 1"})
        + "\n"
        + json.dumps({"source": "j:2", "location_id": "l", "outcome": "created", "error": ""})
        + "\n",
        encoding="utf-8",
    )
    overview = summarize([str(path)], ok_statuses=OK)
    assert overview.counts == {"failed": 1, "created": 1}
    assert overview.groups[0].pattern == "x <n>"


def test_a_report_that_cannot_be_read_is_a_config_error(tmp_path: Path) -> None:
    """A missing report, or one that is not UTF-8, is one clear error naming it."""
    with pytest.raises(ConfigError, match=r"missing\.csv: cannot be read"):
        summarize([str(tmp_path / "missing.csv")])
    binary = tmp_path / "b.csv"
    binary.write_bytes(b"source,outcome\n\xff\xfe,x\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        summarize([str(binary)])


def test_the_identity_comes_from_the_journal_without_secrets(tmp_path: Path) -> None:
    """Kind, settings and job files from the journal's first line; a URL's user info is cut."""
    report = tmp_path / "r.csv"
    (tmp_path / "r.csv.journal").write_text(
        json.dumps(
            {
                "format": "ghl-migrate-journal/1",
                "kind": "associations",
                "api": "associations",
                "base_url": "https://user:pw@example.test/v1?key=secret",
                "job_files": ["a.csv"],
                "job_sha256": [["a.csv", "ab" * 32]],
                "ephemeral": False,
            }
        )
        + "\n",
        encoding="utf-8",
    )
    identity = run_identity(str(report))
    assert identity.kind == "associations"
    assert identity.settings == {"api": "associations", "base_url": "https://example.test/v1"}
    assert identity.job_files == (("a.csv", "ab" * 32),)
    assert run_identity(str(tmp_path / "other.csv")).problem.startswith("no journal")
