"""The report page in a real browser: headless Chromium (Debian's ``chromium`` package) opens
the page of a real sandbox run, which must render without a console error and without a
single network request, sort and filter its per-location table, and leave a screenshot.

Playwright drives the system's Chromium (``executable_path``), never a browser of its own
(those are downloaded, which this project does not do). Where no Chromium is installed the
test is skipped, saying so, except in CI (``CI`` set), where ``.ci/run`` installs it: there
a missing browser fails the test rather than hiding it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from jobs.api import report_page
from jobs.associations import AssociationsJob
from jobs.sandbox import Sandbox, SandboxConfig
from tests.integration.helpers import run_against
from tests.pagecheck import expected, read_page

OK = AssociationsJob.ok_statuses
LOCATIONS = [f"loc{c}{i}Kq2mRt7Yw0pLs3Vb9N"[:20] for i, c in enumerate("ABCDEFG")]
#: the flags that work here: no sandbox (root in a container), no GPU, nothing phoning home
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium() -> str:
    """The system's Chromium, or skip (fail in CI) saying why."""
    for candidate in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(candidate)
        if found:
            return found
    reason = (
        "no Chromium installed (Debian: apt-get install chromium); .ci/run installs it, "
        "so this test runs in CI"
    )
    if os.environ.get("CI"):
        pytest.fail(f"CI has no browser: {reason}")
    pytest.skip(reason)


def make_report(folder: Path) -> Path:
    """A real run over seven locations, with 429s, 5xx retries and failures."""
    rows = [
        "location_id,key,first_object_key,second_object_key,first_object_label,second_object_label"
    ]
    for n, location in enumerate(LOCATIONS):
        rows += [f"{location},k{i},custom_objects.property,contact,P{i},C{i}" for i in range(2 + n)]
        if n % 3 == 0:
            rows.append(f"{location},boat,custom_objects.boat,contact,,")
    rows.append(f"{LOCATIONS[1]},,custom_objects.pet,contact,,")
    job = folder / "jobs.csv"
    job.write_text("\n".join(rows) + "\n", encoding="utf-8")
    report = folder / "out.csv"

    async def main() -> None:
        config = SandboxConfig(
            rate_limit=10, rate_interval=0.2, throttle_below=4, fail_rate=0.1, seed=5
        )
        async with Sandbox(config) as sb:
            result = await run_against(sb, str(job), report=str(report))
            result.close()

    anyio.run(main)
    return report


@pytest.fixture
def page_file(tmp_path: Path) -> Path:
    report = make_report(tmp_path)
    out = tmp_path / "report.html"
    report_page([str(report)], str(out))
    return out


@pytest.fixture
def browser_page(tmp_path: Path, page_file: Path) -> Iterator[tuple[Any, list[str], list[str]]]:
    """A page in headless Chromium with a new empty profile; every request and every
    console error (and uncaught exception) is collected. (The report page is made first:
    Playwright's sync API runs an event loop of its own, and the sandbox run needs one.)"""
    executable = chromium()
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed")
    profile = tmp_path / "profile"
    profile.mkdir()
    requests: list[str] = []
    errors: list[str] = []
    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=executable,
            headless=True,
            args=FLAGS,
            viewport={"width": 1280, "height": 900},
        )
        try:
            context.on("request", lambda r: requests.append(r.url))
            page = context.new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            yield page, requests, errors
        finally:
            context.close()


def column(page: Any, name: str) -> list[str]:
    """The visible cells of a column of the per-location table, top to bottom."""
    return page.eval_on_selector_all(
        "#locations tbody tr:not([hidden])",
        """(rows, name) => {
            const heads = Array.from(document.querySelectorAll('#locations thead th'));
            const i = heads.findIndex(h => h.dataset.col === name);
            return rows.map(r => r.cells[i].textContent.trim());
        }""",
        name,
    )


def test_the_page_renders_offline_sorts_filters_and_leaves_a_screenshot(
    browser_page: tuple[Any, list[str], list[str]], page_file: Path, tmp_path: Path
) -> None:
    """No console error, no request but the page itself; sorting and filtering work; the
    screenshot is saved beside the page (report.png in the test's folder)."""
    page, requests, errors = browser_page
    url = page_file.as_uri()
    page.goto(url)
    page.wait_for_load_state("load")
    assert errors == []
    assert requests == [url]  # nothing fetched: no script, font, stylesheet or image
    assert page.locator(".chart svg").count() >= 2  # whole run + busiest locations

    _, by_location = expected(tmp_path / "out.csv")
    assert page.locator("#locations tbody tr").count() == len(by_location)

    # Sorting: a number column sorts largest first, then smallest first; text A to Z.
    page.click("#locations thead th[data-col=records] button")
    records = [int(v) for v in column(page, "records")]
    assert records == sorted(records, reverse=True)
    assert records[0] > records[-1]
    page.click("#locations thead th[data-col=records] button")
    assert [int(v) for v in column(page, "records")] == sorted(records)
    page.click("#locations thead th[data-col=location_id] button")
    assert column(page, "location_id") == sorted(column(page, "location_id"), key=str.lower)

    # Filtering: by text, then by trouble.
    page.fill("#filter", LOCATIONS[3][:5].lower())
    assert column(page, "location_id") == [LOCATIONS[3]]
    assert page.text_content("#shown") == "1"
    page.fill("#filter", "")
    page.select_option("#show", "notok")
    not_ok = {loc for loc, counts in by_location.items() if set(counts) - OK}
    shown = {"" if v == "(no location_id)" else v for v in column(page, "location_id")}
    assert shown == not_ok
    assert page.text_content("#shown") == str(len(not_ok))
    page.select_option("#show", "throttled")
    throttled = [int(v) for v in column(page, "throttled")]
    assert throttled
    assert all(n > 0 for n in throttled)
    page.select_option("#show", "all")

    screenshot = tmp_path / "report.png"
    page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert screenshot.stat().st_size > 20_000
    assert errors == []
    assert requests == [url]
    assert read_page(page_file).totals["total"] == sum(
        sum(c.values()) for c in by_location.values()
    )
