"""Make the README's screenshot (docs/report.png) from a real run, by hand::

    python -m tests.browser.screenshot docs/report.png

A sandbox process that throttles below the rate it advertises and fails a few requests,
twelve locations, a job with some rows that cannot work; the run is killed with SIGKILL
part way and resumed with ``--html``; headless Chromium (Debian's) takes the screenshot.
Everything stays in a temporary folder except the picture.
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
from pathlib import Path

from tests.browser.test_page_in_browser import FLAGS, chromium
from tests.reliability.test_faults import Harness, wait_for_progress
from tests.reliability.test_faults import write_job as write_fault_job

LOCATIONS = [f"{name}{i:02d}Kq2mRt7Yw0pLs3Vb9" for i, name in enumerate("abcdefghijkl")]
SANDBOX = (
    "--rate-limit", "20/2s", "--throttle-below", "15",
    "--fail-rate", "0.03", "--latency", "40-160", "--seed", "7",
)  # fmt: skip


def make(picture: Path) -> None:
    from playwright.sync_api import sync_playwright

    folder = Path(tempfile.mkdtemp(prefix="ghl-screenshot-"))
    harness = Harness(folder)
    try:
        harness.start_sandbox(LOCATIONS, *SANDBOX)
        job = folder / "onboarding.csv"
        write_fault_job(job, LOCATIONS, 150)
        with job.open("a", encoding="utf-8") as fh:  # rows that cannot work
            for location in LOCATIONS[::4]:
                fh.write(f"{location},boat_owner,custom_objects.boat,contact,Boat,Owner\n")
            fh.write(f"{LOCATIONS[1]},,custom_objects.pet,contact,,\n")
        report = folder / "out.csv"
        started = harness.start_run(job, "--no-progress", report=report)
        wait_for_progress(started, report, 60_000)
        os.kill(started.proc.pid, signal.SIGKILL)
        started.proc.wait(timeout=10)
        html = folder / "out.html"
        done = harness.run(job, "--no-progress", "--resume", "--html", str(html), report=report)
        print(done.out, done.err[-2000:], file=sys.stderr)
        with sync_playwright() as playwright:
            context = playwright.chromium.launch_persistent_context(
                str(folder / "profile"),
                executable_path=chromium(),
                headless=True,
                args=FLAGS,
                viewport={"width": 1280, "height": 900},
                device_scale_factor=1,
            )
            page = context.new_page()
            page.goto(html.as_uri())
            page.screenshot(path=str(picture), full_page=True)
            context.close()
    finally:
        harness.close()
    print(f"screenshot: {picture}; the run's files: {folder}")


if __name__ == "__main__":
    make(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/report.png"))
