"""Read a report page back (stdlib html.parser) and a report CSV on its own, for comparing
them; and make a large synthetic report with its timeline."""

from __future__ import annotations

import csv
import io
import json
import random
from collections import Counter
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any


@dataclass
class Page:
    """What a report page shows, as the tests read it."""

    totals: dict[str, int] = field(default_factory=dict)
    #: one dict per row of the per-location table: its header's data-col → the cell's
    #: data-v, else its text
    locations: list[dict[str, str]] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)
    #: (outcome, status, count, example rows shown) per failure group
    groups: list[tuple[str, str, int, int]] = field(default_factory=list)
    #: data-exit of each run ("" when the run has no end)
    runs: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    #: every src/href attribute, and the tag of each element that loads something
    references: list[tuple[str, str, str]] = field(default_factory=list)
    scripts: list[str] = field(default_factory=list)
    text: str = ""


class _Reader(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.page = Page()
        self._where: list[str] = []  # "locations", "group", "runs", "totals", ...
        self._row: dict[str, str] | None = None
        self._col: str | None = None
        self._cell: list[str] = []
        self._value: str | None = None
        self._group: list[Any] | None = None
        self._in_rows = False
        self._script: list[str] | None = None
        self._script_id = ""
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        for name in ("src", "href", "srcset", "action", "data"):
            if name in a and tag != "a":
                self.page.references.append((tag, name, a[name]))
        if tag == "a" and "href" in a:
            self.page.references.append((tag, "href", a["href"]))
        if tag in {"link", "img", "iframe", "object", "embed", "use", "image", "source"}:
            self.page.references.append((tag, "tag", json.dumps(a)))
        if tag == "table" and a.get("id"):
            self._where.append(a["id"])
        elif tag == "details" and "group" in a.get("class", ""):
            self._group = [a["data-outcome"], a["data-status"], int(a["data-count"]), 0]
        elif tag == "tbody" and self._group is not None:
            self._in_rows = True
        elif tag == "tr":
            if self._where and self._where[-1] == "totals" and "data-outcome" in a:
                self.page.totals[a["data-outcome"] or "total"] = int(a["data-count"])
            elif self._where and self._where[-1] == "runs" and "data-exit" in a:
                self.page.runs.append(a.get("data-exit", ""))
            elif self._where and self._where[-1] == "locations" and "data-search" in a:
                self._row = {}
            elif self._in_rows and self._group is not None:
                self._group[3] += 1
        elif tag == "th" and self._where and self._where[-1] == "locations" and "data-col" in a:
            self.page.columns.append(a["data-col"])
        elif tag == "td" and self._row is not None:
            self._col = self.page.columns[len(self._row)]
            self._value = a.get("data-v")
            self._cell = []
        elif tag == "script":
            self._script = []
            self._script_id = a.get("id", "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "table" and self._where:
            self._where.pop()
        elif tag == "tbody":
            self._in_rows = False
        elif tag == "details" and self._group is not None:
            self.page.groups.append(tuple(self._group))  # type: ignore[arg-type]
            self._group = None
        elif tag == "tr" and self._row is not None:
            self.page.locations.append(self._row)
            self._row = None
        elif tag == "td" and self._col is not None and self._row is not None:
            text = "".join(self._cell).strip()
            self._row[self._col] = self._value if self._value is not None else text
            self._col = None
        elif tag == "script" and self._script is not None:
            body = "".join(self._script)
            if self._script_id == "report-data":
                self.page.data = json.loads(body)
            else:
                self.page.scripts.append(body)
            self._script = None

    def handle_data(self, data: str) -> None:
        if self._script is not None:
            self._script.append(data)
            return
        if self._col is not None:
            self._cell.append(data)
        self._text.append(data)


def read_page(path: Path | str) -> Page:
    """Parse a report page."""
    reader = _Reader()
    reader.feed(Path(path).read_text(encoding="utf-8"))
    reader.close()
    reader.page.text = " ".join("".join(reader._text).split())
    return reader.page


def last_rows(report: Path | str) -> dict[tuple[str, str], dict[str, str]]:
    """The last complete row of each record (source, location_id) of a CSV report, read
    with the csv module alone (not the engine's reader)."""
    text = Path(report).read_text(encoding="utf-8")
    if not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]  # a torn last line
    rows: dict[tuple[str, str], dict[str, str]] = {}
    for row in csv.DictReader(io.StringIO(text)):
        if None in row or None in row.values():
            continue
        rows[(row["source"], row["location_id"])] = row
    return rows


def expected(report: Path | str) -> tuple[Counter[str], dict[str, Counter[str]]]:
    """Counts by outcome, and by location and outcome, of a report's records."""
    rows = last_rows(report).values()
    totals = Counter(r["outcome"] for r in rows)
    by_location: dict[str, Counter[str]] = {}
    for r in rows:
        by_location.setdefault(r["location_id"], Counter())[r["outcome"]] += 1
    return totals, by_location


def assert_page_matches_report(page: Page, report: Path | str, ok: frozenset[str]) -> None:
    """The page's totals, per-location counts and failure groups agree with the CSV (the
    per-location counts of the locations the table lists)."""
    totals, by_location = expected(report)
    assert page.totals == {**totals, "total": sum(totals.values())}
    assert page.data["counts"] == dict(totals)
    shown = {}
    for row in page.locations:
        location = "" if row["location_id"] == "(no location_id)" else row["location_id"]
        counts = Counter(
            {k.split(":", 1)[1]: int(v or 0) for k, v in row.items() if k.startswith("outcome:")}
        )
        shown[location] = +counts
        assert int(row["records"]) == sum(by_location[location].values())
        assert int(row["not_ok"]) == sum(n for s, n in by_location[location].items() if s not in ok)
    assert {loc: c for loc, c in shown.items()} == {loc: +by_location[loc] for loc in shown}
    if page.data["locations_shown"] == page.data["locations_total"]:
        assert set(shown) == set(by_location)
    else:  # a capped table lists the locations with most records not ok
        assert len(shown) == page.data["locations_shown"]
        assert page.data["locations_total"] == len(by_location)
    not_ok = sum(n for s, n in totals.items() if s not in ok)
    assert sum(g[2] for g in page.groups) + page.data["more_group_records"] == not_ok
    for outcome, _status, count, examples in page.groups:
        assert outcome not in ok
        assert 0 < examples <= count


COLUMNS = ["source", "location_id", "key", "outcome", "http_status", "attempts", "error"]


def synthetic_report(folder: Path, records: int, locations: int, seconds: int) -> Path:
    """``big.csv``: a report of ``records`` rows over ``locations`` with 60 causes of failure
    (more than a page lists), invalid and not_run rows, and its timeline of ``seconds`` busy
    seconds in which every location sends 10 requests a second at its limit of 100/10s."""
    rng = random.Random(7)
    locs = [f"loc{i:04d}{rng.getrandbits(48):012x}" for i in range(locations)]
    report = folder / "big.csv"
    with report.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(COLUMNS)
        for i in range(records):
            loc = locs[i % locations]
            roll = rng.random()
            if roll < 0.9:
                row = ["created", "201", "1", ""]
            elif roll < 0.95:
                cause = rng.randrange(60)  # 60 causes: more than the page lists
                row = [
                    "failed",
                    "422",
                    "1",
                    f"cause {cause:c}x: object 'o{i}' in {loc}; detail {i}",
                ]
            elif roll < 0.98:
                row = ["invalid", "", "0", f"key: must not contain spaces, not 'k {i}'"]
            else:
                row = ["not_run", "", "0", "not sent: the run was stopped"]
            writer.writerow([f"jobs.csv:{i + 2}", loc, f"key_{i}", *row])
    with (folder / "big.csv.timeline").open("w", encoding="utf-8") as fh:
        fh.write(json.dumps({"timeline": "ghl-migrate-timeline/1", "fields": []}) + "\n")
        fh.write(json.dumps({"start": "x", "t": 1000.0, "resumed": False}) + "\n")
        for s in range(seconds):
            loc = {
                name: [10, int(s % 97 == 0), int(s % 13 == 0), 0, 0, 0, 2500, 100, 10.0]
                for name in locs
            }
            fh.write(json.dumps({"t": 1000 + s, "loc": loc}) + "\n")
        fh.write(json.dumps({"end": "y", "t": 1000.0 + seconds, "exit_code": 1}) + "\n")
    return report
