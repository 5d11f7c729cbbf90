"""The report page: escaped, offline, small for 100,000 records, and honest without a timeline."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import pytest

from engine import ConfigError, render_page, write_page
from engine.page import check_page_path
from tests.pagecheck import assert_page_matches_report, read_page

COLUMNS = ["source", "location_id", "key", "outcome", "http_status", "attempts", "error"]
OK = frozenset({"created", "exists"})


def big_report(folder: Path, records: int, locations: int, seconds: int) -> Path:
    """A report of ``records`` rows over ``locations`` with many causes, and a timeline of
    ``seconds`` busy seconds in which every location sends."""
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


@pytest.mark.parametrize(("locations", "seconds"), [(300, 600), (5000, 20)])
def test_a_page_of_100000_records_stays_under_2_mb_and_matches_its_report(
    tmp_path: Path, locations: int, seconds: int
) -> None:
    """100,000 records, 60 causes, a timeline: < 2 MB, with 300 locations over 10 minutes,
    or 5,000 locations (more than the table lists)."""
    report = big_report(tmp_path, 100_000, locations, seconds)
    out = tmp_path / "big.html"
    write_page([str(report)], str(out), ok_statuses=OK)
    size = out.stat().st_size
    assert size < 2_000_000, size
    page = read_page(out)
    assert_page_matches_report(page, report, OK)
    assert page.data["locations_total"] == locations
    assert page.data["locations_shown"] == min(locations, 2000)
    assert len(page.groups) == 50  # the largest 50 causes; the rest are counted
    assert page.data["more_groups"] > 0
    assert all(examples <= 20 for *_, examples in page.groups)
    assert page.data["timeline"]["points"] <= 301
    assert page.data["timeline"]["requests"] == 10 * locations * seconds


def test_nothing_from_a_report_can_inject_markup(tmp_path: Path) -> None:
    """Error text, ids and keys are escaped everywhere, the embedded JSON included."""
    evil = '</script><script>alert(1)</script><img src=x onerror="alert(2)">'
    report = tmp_path / "r.csv"
    with report.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow([*COLUMNS, "location_name"])
        writer.writerow(["j.csv:2", f"loc{evil}", evil, "failed", "400", "1", evil, f"N{evil}"])
    html = render_page([str(report)], ok_statuses=OK)
    assert "<img" not in html
    assert "alert(1)</script>" not in html
    page = read_page_text(tmp_path, html)
    assert len(page.scripts) == 1  # the page's own script, nothing injected
    assert page.references == []
    assert page.data["groups"][0]["pattern"].startswith("</script>")  # the JSON kept the text
    assert page.locations[0]["name"] == f"N{evil}"  # shown as text


def read_page_text(folder: Path, html: str):  # type: ignore[no-untyped-def]
    path = folder / "page.html"
    path.write_text(html, encoding="utf-8")
    return read_page(path)


def test_a_page_loads_nothing_from_anywhere(tmp_path: Path) -> None:
    """No src or href, no stylesheet or font link: the page works offline."""
    report = big_report(tmp_path, 500, 8, 30)
    html = render_page([str(report)], ok_statuses=OK)
    page = read_page_text(tmp_path, html)
    assert page.references == []
    assert "@import" not in html
    assert "url(" not in html
    assert "<svg" in html  # the charts are inline


def test_without_a_timeline_the_page_says_so_and_still_counts(tmp_path: Path) -> None:
    """An older report (no timeline, no journal): counts and causes, and a note."""
    report = big_report(tmp_path, 200, 3, 1)
    (tmp_path / "big.csv.timeline").unlink()
    html = render_page([str(report)], ok_statuses=OK)
    page = read_page_text(tmp_path, html)
    assert_page_matches_report(page, report, OK)
    assert "No timeline" in page.text
    assert "big.csv.timeline is missing" in page.text
    assert "no journal" in page.text
    assert page.data["timeline"] is None
    assert "<svg" not in html
    assert "requests" not in page.locations[0]  # no columns it cannot fill


def test_the_location_table_is_capped_worst_first(tmp_path: Path) -> None:
    """With more locations than the cap, the table keeps those with most records not ok."""
    report = big_report(tmp_path, 400, 8, 5)
    page = read_page_text(tmp_path, render_page([str(report)], ok_statuses=OK, max_locations=3))
    assert len(page.locations) == 3
    not_ok = [int(r["not_ok"]) for r in page.locations]
    assert not_ok == sorted(not_ok, reverse=True)
    assert "of 8" in page.text


def test_a_page_path_that_is_a_run_file_or_a_folder_is_refused(tmp_path: Path) -> None:
    """The page never overwrites the report, its journal or timeline, and needs a folder."""
    report = str(tmp_path / "out.csv")
    for bad in (report, f"{report}.journal", f"{report}.timeline", str(tmp_path)):
        with pytest.raises(ConfigError):
            check_page_path([report], bad)
    with pytest.raises(ConfigError, match="does not exist"):
        check_page_path([report], str(tmp_path / "nope" / "out.html"))
    check_page_path([report], str(tmp_path / "out.html"))
