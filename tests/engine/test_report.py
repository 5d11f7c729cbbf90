"""The per-record report: row format, formula cells, torn lines, atomic rewrite, syncing."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import ConfigError
from engine.report import (
    ReportFormat,
    ReportWriter,
    read_report,
    report_format,
    write_report_atomically,
)
from tests.fakes import FakeClock

COLUMNS = ("source", "location_id", "outcome", "http_status")


def write_rows(path: Path, rows: list[dict[str, object]]) -> None:
    writer = ReportWriter(str(path), COLUMNS)
    writer.open()
    for row in rows:
        writer.write(row)
    writer.close()


# -- formats -------------------------------------------------------------------------------------


def test_csv_has_header_then_rows_in_column_order(tmp_path: Path) -> None:
    """A CSV report is the header, then one line per row with cells in column order."""
    path = tmp_path / "out.csv"

    write_rows(
        path,
        [
            {
                "outcome": "created",
                "source": "jobs.csv:2",
                "location_id": "loc1",
                "http_status": 201,
            },
            {"source": "jobs.csv:3", "location_id": "loc2", "outcome": "failed", "extra": "x"},
        ],
    )

    assert path.read_text(encoding="utf-8") == (
        "source,location_id,outcome,http_status\n"
        "jobs.csv:2,loc1,created,201\n"
        "jobs.csv:3,loc2,failed,\n"
    )


def test_jsonl_has_one_object_per_row_in_column_order(tmp_path: Path) -> None:
    """A JSONL report has no header; each line is an object with exactly the columns, in order."""
    path = tmp_path / "out.jsonl"

    write_rows(path, [{"outcome": "created", "source": "a.json#1", "http_status": None}])

    lines = path.read_bytes().splitlines()
    assert len(lines) == 1
    item = orjson.loads(lines[0])
    assert list(item) == list(COLUMNS)
    assert item == {
        "source": "a.json#1",
        "location_id": "",
        "outcome": "created",
        "http_status": "",
    }


def test_read_report_returns_string_values(tmp_path: Path) -> None:
    """read_report gives every row as strings, in file order, for CSV and JSONL alike."""
    rows: list[dict[str, object]] = [
        {"source": "s1", "location_id": "loc1", "outcome": "created", "http_status": 201},
        {"source": "s2", "location_id": "loc2", "outcome": "failed", "http_status": None},
    ]
    expected = [
        {"source": "s1", "location_id": "loc1", "outcome": "created", "http_status": "201"},
        {"source": "s2", "location_id": "loc2", "outcome": "failed", "http_status": ""},
    ]
    for name in ("out.csv", "out.jsonl"):
        write_rows(tmp_path / name, rows)

        assert read_report(str(tmp_path / name)) == expected


@pytest.mark.parametrize(
    ("path", "fmt"),
    [("out.csv", ReportFormat.CSV), ("OUT.CSV", ReportFormat.CSV), ("r.jsonl", ReportFormat.JSONL)],
)
def test_report_format_by_extension(path: str, fmt: ReportFormat) -> None:
    """The extension (any case) chooses the format."""
    assert report_format(path) is fmt


@pytest.mark.parametrize("path", ["out.json", "out.txt", "out", "out.csv.bak", "out.xlsx"])
def test_report_format_rejects_other_extensions(path: str) -> None:
    """Any other extension is a ConfigError that says how to name the report."""
    with pytest.raises(ConfigError, match=r"\*\.csv or \*\.jsonl"):
        report_format(path)


def test_writer_rejects_bad_extension_before_touching_disk(tmp_path: Path) -> None:
    """A ReportWriter for an unsupported name fails at construction and creates no file."""
    with pytest.raises(ConfigError):
        ReportWriter(str(tmp_path / "out.txt"), COLUMNS)

    assert list(tmp_path.iterdir()) == []


# -- formula neutralisation ----------------------------------------------------------------------


@pytest.mark.parametrize("value", ["=cmd|' /C calc'!A0", "+1", "-1", "@x", "\tx", "\rx"])
def test_formula_cells_are_neutralised_and_restored(tmp_path: Path, value: str) -> None:
    """A cell a spreadsheet would run gets a leading ``'`` in CSV; read_report removes it."""
    path = tmp_path / "out.csv"

    write_rows(path, [{"source": "s", "outcome": value}])

    raw = path.read_bytes().decode()
    assert f"'{value}" in raw
    assert read_report(str(path))[0]["outcome"] == value


def test_plain_cells_are_not_prefixed(tmp_path: Path) -> None:
    """Ordinary text, including text with a quote inside or a sign later on, is written as is."""
    path = tmp_path / "out.csv"

    write_rows(path, [{"source": "a-1", "location_id": "it's", "outcome": "x=y"}])

    assert path.read_text(encoding="utf-8").splitlines()[1] == "a-1,it's,x=y,"


def test_jsonl_cells_are_never_prefixed(tmp_path: Path) -> None:
    """Formula neutralisation is for CSV only: JSONL keeps values exactly."""
    path = tmp_path / "out.jsonl"

    write_rows(path, [{"source": "=cmd", "outcome": "-1"}])

    item = orjson.loads(path.read_bytes())
    assert (item["source"], item["outcome"]) == ("=cmd", "-1")


def test_cell_with_lone_carriage_return_reads_back(tmp_path: Path) -> None:
    """A cell holding a lone CR is quoted, so the report still parses and keeps the value."""
    path = tmp_path / "out.csv"

    write_rows(path, [{"source": "s1", "outcome": "line one\rline two"}, {"source": "s2"}])

    rows = read_report(str(path))
    assert [(r["source"], r["outcome"]) for r in rows] == [
        ("s1", "line one\rline two"),
        ("s2", ""),
    ]


def _reference_line(cells: list[str]) -> str:
    """A CSV line as the csv module writes it, after the formula prefix of each cell."""
    buf = io.StringIO()
    escaped = [f"'{c}" if c.startswith(("=", "+", "-", "@", "\t", "\r", "'")) else c for c in cells]
    csv.writer(buf, lineterminator="\r\n").writerow(escaped)
    return buf.getvalue()[:-2] + "\n"


_special_text = st.text(st.sampled_from("=+-@\t\r\n'\",a1 "), max_size=4)


@settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(cells=st.lists(_special_text, min_size=len(COLUMNS), max_size=len(COLUMNS)))
def test_every_cell_in_every_column_is_escaped_and_quoted_as_csv_would(
    tmp_path: Path, cells: list[str]
) -> None:
    """Any mix of formula signs, quotes, commas and line breaks, in any column (the first
    too), gives the line the csv module writes for the escaped cells."""
    path = tmp_path / "special.csv"
    path.unlink(missing_ok=True)

    write_rows(path, [dict(zip(COLUMNS, cells, strict=True))])

    assert path.read_bytes().decode().split("\n", 1)[1] == _reference_line(cells)


@pytest.mark.parametrize("value", ["'=x", "'-1", "''", "'", "'plain"])
def test_values_starting_with_a_quote_round_trip(tmp_path: Path, value: str) -> None:
    """A value that itself starts with ``'`` reads back unchanged, even before a formula sign."""
    path = tmp_path / "out.csv"

    write_rows(path, [{"source": "s", "outcome": value}])

    assert read_report(str(path))[0]["outcome"] == value


_cell_text = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"))


@settings(
    max_examples=100,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(values=st.lists(st.tuples(_cell_text, _cell_text), min_size=1, max_size=5))
def test_any_text_round_trips_through_csv(tmp_path: Path, values: list[tuple[str, str]]) -> None:
    """Whatever text the cells hold, read_report gives back exactly what was written."""
    path = tmp_path / "prop.csv"
    rows = [{"source": s, "location_id": "", "outcome": o, "http_status": ""} for s, o in values]

    write_report_atomically(str(path), COLUMNS, rows)

    assert read_report(str(path)) == rows


# -- torn lines ----------------------------------------------------------------------------------


def test_torn_last_csv_line_is_skipped_by_read_report(tmp_path: Path) -> None:
    """A partial last CSV row (no newline: the process died mid-write) is not read."""
    path = tmp_path / "out.csv"
    write_rows(path, [{"source": "s1", "outcome": "created"}])
    with path.open("a", encoding="utf-8") as fh:
        fh.write("s2,loc2,crea")

    assert [r["source"] for r in read_report(str(path))] == ["s1"]


def test_torn_last_jsonl_line_is_skipped_by_read_report(tmp_path: Path) -> None:
    """A partial last JSONL object is not read."""
    path = tmp_path / "out.jsonl"
    write_rows(path, [{"source": "s1", "outcome": "created"}])
    with path.open("a", encoding="utf-8") as fh:
        fh.write('{"source": "s2", "outc')

    assert [r["source"] for r in read_report(str(path))] == ["s1"]


@pytest.mark.parametrize("name", ["out.csv", "out.jsonl"])
def test_open_cuts_torn_line_before_appending(tmp_path: Path, name: str) -> None:
    """Reopening a report with a torn last line cuts it, so the next row starts on its own line."""
    path = tmp_path / name
    write_rows(path, [{"source": "s1", "outcome": "created"}])
    with path.open("a", encoding="utf-8") as fh:
        fh.write("s2,lo" if name.endswith(".csv") else '{"source": "s2"')

    write_rows(path, [{"source": "s3", "outcome": "deleted"}])

    text = path.read_text(encoding="utf-8")
    assert "s2" not in text
    assert text.endswith("\n")
    assert [(r["source"], r["outcome"]) for r in read_report(str(path))] == [
        ("s1", "created"),
        ("s3", "deleted"),
    ]


@pytest.mark.parametrize("torn", [(1 << 16) - 1, 1 << 16, (1 << 16) + 1, 200_000])
def test_open_keeps_rows_before_a_very_long_torn_line(tmp_path: Path, torn: int) -> None:
    """A torn last line of any length is cut on its own, never with the rows before it."""
    path = tmp_path / "out.csv"
    write_rows(path, [{"source": "s1", "outcome": "created"}])
    with path.open("a", encoding="utf-8") as fh:
        fh.write("s2,loc2,failed," + "x" * (torn - 15))

    write_rows(path, [{"source": "s3", "outcome": "deleted"}])

    assert [r["source"] for r in read_report(str(path))] == ["s1", "s3"]
    assert path.read_text(encoding="utf-8").startswith("source,location_id,")


def test_open_on_torn_header_writes_a_fresh_header(tmp_path: Path) -> None:
    """A file holding only part of its header line is started again with a whole header."""
    path = tmp_path / "out.csv"
    path.write_text("sour", encoding="utf-8")

    write_rows(path, [{"source": "s1"}])

    assert path.read_text(encoding="utf-8") == "source,location_id,outcome,http_status\ns1,,,\n"


def test_reopen_appends_without_second_header(tmp_path: Path) -> None:
    """A resumed run appends rows to an existing report without repeating the header."""
    path = tmp_path / "out.csv"
    write_rows(path, [{"source": "s1"}])

    write_rows(path, [{"source": "s1", "outcome": "created"}])

    assert path.read_text(encoding="utf-8").count("source,location_id") == 1
    assert [r["outcome"] for r in read_report(str(path))] == ["", "created"]


# -- atomic rewrite ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["out.csv", "out.jsonl"])
def test_write_report_atomically_replaces_content(tmp_path: Path, name: str) -> None:
    """The final rewrite leaves exactly the given rows (one per record) and no temporary file."""
    path = tmp_path / name
    write_rows(
        path,
        [
            {"source": "s1", "outcome": "failed"},
            {"source": "s2", "outcome": "created"},
            {"source": "s1", "outcome": "created"},  # s1 again, from a resumed run
        ],
    )

    count = write_report_atomically(
        str(path),
        COLUMNS,
        [{"source": "s1", "outcome": "created"}, {"source": "s2", "outcome": "created"}],
    )

    assert count == 2
    assert [(r["source"], r["outcome"]) for r in read_report(str(path))] == [
        ("s1", "created"),
        ("s2", "created"),
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


def test_write_report_atomically_creates_a_missing_report(tmp_path: Path) -> None:
    """The rewrite also works when no report existed yet (every record was known)."""
    path = tmp_path / "out.csv"

    assert write_report_atomically(str(path), COLUMNS, []) == 0

    assert path.read_text(encoding="utf-8") == "source,location_id,outcome,http_status\n"


# -- flushing and syncing ------------------------------------------------------------------------


def test_each_row_is_visible_as_soon_as_written(tmp_path: Path) -> None:
    """A written row is in the file before close (a killed process loses nothing reported)."""
    path = tmp_path / "out.csv"
    writer = ReportWriter(str(path), COLUMNS)
    writer.open()
    try:
        writer.write({"source": "s1", "outcome": "created"})

        assert [r["source"] for r in read_report(str(path))] == ["s1"]
        assert writer.rows_written == 1
    finally:
        writer.close()


def test_write_before_open_is_an_error(tmp_path: Path) -> None:
    """Writing to a writer that was never opened raises instead of losing the row."""
    writer = ReportWriter(str(tmp_path / "out.csv"), COLUMNS)

    with pytest.raises(RuntimeError, match="before open"):
        writer.write({"source": "s1"})


def test_writer_syncs_at_most_once_per_interval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows are fsynced in groups: at most once per ``sync_interval`` seconds, and on close."""
    synced_at: list[float] = []
    clock = FakeClock()
    monkeypatch.setattr(os, "fsync", lambda fd: synced_at.append(clock.now))
    writer = ReportWriter(str(tmp_path / "out.csv"), COLUMNS, sync_interval=1.0, clock=clock)
    writer.open()

    for now in (0.0, 0.3, 0.9, 1.0, 1.1, 1.9, 2.5, 2.6):
        clock.now = now
        writer.write({"source": f"s{now}"})
    assert synced_at == [1.0, 2.5]  # not at 1.1 or 1.9: under a second since the last sync

    clock.now = 2.7
    writer.close()
    assert synced_at == [1.0, 2.5, 2.7]  # close syncs the row written at 2.6


def test_close_without_new_rows_does_not_sync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer with nothing unsynced closes without another fsync."""
    calls: list[int] = []
    monkeypatch.setattr(os, "fsync", calls.append)
    clock = FakeClock()
    writer = ReportWriter(str(tmp_path / "out.csv"), COLUMNS, sync_interval=1.0, clock=clock)
    writer.open()
    clock.now = 5.0
    writer.write({"source": "s1"})  # synced at once: the interval has passed
    assert len(calls) == 1

    writer.close()

    assert len(calls) == 1
