"""The report page: escaped, offline, small for 100,000 records, and honest without a timeline."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from engine import ConfigError
from engine.page import check_page_path, render_page, write_page
from tests.pagecheck import assert_page_matches_report, read_page, synthetic_report

COLUMNS = ["source", "location_id", "key", "outcome", "http_status", "attempts", "error"]
OK = frozenset({"created", "exists"})


@pytest.mark.parametrize(("locations", "seconds"), [(300, 600), (5000, 20)])
def test_a_page_of_100000_records_stays_under_2_mb_and_matches_its_report(
    tmp_path: Path, locations: int, seconds: int
) -> None:
    """100,000 records, 60 causes, a timeline: < 2 MB, with 300 locations over 10 minutes,
    or 5,000 locations (more than the table lists)."""
    report = synthetic_report(tmp_path, 100_000, locations, seconds)
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
    report = synthetic_report(tmp_path, 500, 8, 30)
    html = render_page([str(report)], ok_statuses=OK)
    page = read_page_text(tmp_path, html)
    assert page.references == []
    assert "@import" not in html
    assert "url(" not in html
    assert "<svg" in html  # the charts are inline


def test_without_a_timeline_the_page_says_so_and_still_counts(tmp_path: Path) -> None:
    """An older report (no timeline, no journal): counts and causes, and a note."""
    report = synthetic_report(tmp_path, 200, 3, 1)
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
    report = synthetic_report(tmp_path, 400, 8, 5)
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
