"""Agency mode under every fault: one agency token, tokens expiring mid-run, kill -9, resume.

The same harness as :mod:`tests.reliability.test_faults` (the CLI and the sandbox as separate
processes), with the sandbox making an agency of sub-accounts and the run given only the
agency token: every location token is minted by the run, under faults (5xx, resets, lost
answers, stalls, throttling) on the minting requests too, and expires after a second, so
runs cross expiries; processes are killed with SIGKILL and resumed until done.
"""

from __future__ import annotations

import json
import random
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .test_faults import (
    CLIENT,
    FAULTS,
    PAIRS,
    SEED,
    Harness,
    Started,
    created_keys,
    over_created,
    read_rows,
    to_send,
    wait_for_progress,
)

COMPANY = "co1"
FINAL = frozenset({"created", "exists", "conflict", "deleted", "absent", "invalid"})
#: a minted token, wherever one might show up (the sandbox mints them as lat-...)
MINTED = re.compile(r"lat-[\w-]{16,}")


class AgencyHarness(Harness):
    """A sandbox with an agency; runs given its agency token file and company id only."""

    def __init__(self, folder: Path) -> None:
        super().__init__(folder)
        self.agency_file = folder / "agency-token.txt"

    def start_agency(self, count: int, *options: str) -> None:
        started = self._spawn(
            "sandbox",
            ["sandbox", "--port", "0", "--agency", str(count), "--company-id", COMPANY,
             "--agency-token-file", str(self.agency_file), *options],
        )  # fmt: skip
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            text = started.err_path.read_text("utf-8")
            if "agency co1:" in text and (match := re.search(r"listening on (http://\S+)", text)):
                self.url = match.group(1)
                return
            assert started.proc.poll() is None, f"the sandbox exited: {text}"
            time.sleep(0.02)
        raise AssertionError("the sandbox did not start within 20 s")

    def start_run(self, job: Path, *options: str, report: Path) -> Started:
        self._runs += 1
        return self._spawn(
            f"run{self._runs}",
            ["run", str(job), "--base-url", self.url, "--agency-token-file",
             str(self.agency_file), "--company-id", COMPANY, "--report", str(report), *options],
        )  # fmt: skip


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[AgencyHarness]:
    h = AgencyHarness(tmp_path)
    yield h
    h.close()


def unsettled(report: Path, total: int) -> int:
    """Records a resume must still send (the job's records are the report's sources)."""
    last: dict[str, str] = {}
    if report.exists():
        for row in read_rows(report):
            if None not in row and None not in row.values():
                last[row["source"]] = row["outcome"]
    return total - sum(1 for outcome in last.values() if outcome in FINAL)


@pytest.mark.timeout(120)
def test_agency_mode_under_every_fault_and_kill9_reaches_the_desired_state(
    harness: AgencyHarness,
) -> None:
    """Minting under faults, expiring tokens and 3 kill -9s: resumes create every definition
    exactly once in every sub-account; no token leaks or crosses locations."""
    rng = random.Random(SEED)
    harness.start_agency(5, *FAULTS, "--token-lifetime", "1")
    definitions = [
        {"key": f"def_{i:02d}", "firstObjectKey": first, "secondObjectKey": second,
         "firstObjectLabel": f"Left {i}", "secondObjectLabel": f"Right {i}"}
        for i, (first, second) in enumerate(PAIRS[:8])
    ]  # fmt: skip
    job = harness.dir / "onboard.json"
    job.write_text(json.dumps({"locations": "all", "associations": definitions}), "utf-8")
    total = 5 * len(definitions)
    report = harness.dir / "out.csv"

    kills = 0
    for attempt in range(3):
        before = report.stat().st_size if report.exists() else 0
        expected = unsettled(report, total)
        started = harness.start_run(
            job, *CLIENT, *(("--resume",) if attempt else ()), report=report
        )
        wait_for_progress(started, report, before)
        time.sleep(rng.uniform(0.2, 1.0))
        if started.proc.poll() is None:
            started.proc.send_signal(signal.SIGKILL)
            kills += 1
        assert to_send(started.wait(timeout=10).err) == expected
    assert kills >= 2, "the runs finished before they could be killed"

    for _ in range(8):
        expected = unsettled(report, total)
        finished = harness.run(job, *CLIENT, "--resume", report=report)
        assert finished.rc in (0, 1), finished.err
        assert to_send(finished.err) == expected
        if unsettled(report, total) == 0:
            break
    else:
        pytest.fail(f"records still unsettled after 8 resumes: {finished.out}")
    assert finished.rc == 0, finished.out

    state = harness.admin("GET", "/_sandbox/state")
    stats = state["stats"]
    company = harness.admin("POST", "/_sandbox/companies", {"companyId": COMPANY})["locations"]
    names = {loc["id"]: loc["name"] for loc in company}
    rows = read_rows(report)
    assert len(rows) == total
    assert {r["outcome"] for r in rows} == {"created"}
    assert {(r["location_id"], r["location_name"]) for r in rows} == set(names.items())
    created = {(r["location_id"], r["key"]) for r in rows}
    assert created_keys(stats) == dict.fromkeys(created, 1)  # each created once, no more
    assert over_created(stats) == []
    by_key = {(loc, a["key"]): a["id"] for loc, items in state["snapshot"].items() for a in items}
    assert {(r["location_id"], r["key"]): r["association_id"] for r in rows} == by_key
    # every location was minted for by each process that reached it, and again on expiry
    assert set(stats["tokens_minted"]) == set(names)
    assert sum(stats["tokens_minted"].values()) > len(names)
    assert stats["throttled"] > 0
    assert stats["faults_injected"]

    log = harness.admin("GET", "/_sandbox/log")
    for entry in log:
        if entry["token_kind"] == "agency":
            assert entry["token_company"] == COMPANY
            assert entry["path"] in ("/oauth/locationToken", "/locations/search"), entry
        elif entry["token_kind"] == "minted" and entry["location_id"] is not None:
            assert entry["token_location"] == entry["location_id"], entry
        else:  # refused before a location was read: an expired token, throttled, a fault
            assert entry["token_kind"] in ("minted", None), entry
    assert stats["cross_location_token_uses"] == 0
    assert any(e["status"] == 401 and e["token_kind"] is None for e in log)  # expiries met

    agency = harness.agency_file.read_text("utf-8").strip()
    written = "\n".join(
        [harness.printed(), report.read_text("utf-8"), Path(f"{report}.journal").read_text("utf-8")]
    )
    assert agency not in written
    assert not MINTED.search(written)
    assert not MINTED.search(json.dumps(log))
