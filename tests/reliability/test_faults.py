"""Surviving faults: the CLI, killed and resumed, against a sandbox that misbehaves on purpose.

Every test drives ``python -m engine run`` as a subprocess against ``python -m engine sandbox``
(another subprocess, one per test): retries use the real backoff, signals are real signals,
and SIGKILL really loses the process with requests in flight. The sandbox's admin endpoints
(``/_sandbox/state`` and ``/_sandbox/log``) are the ground truth the reports are held to.
Faults and kill moments are seeded; the assertions are invariants that hold for any order
in which concurrent requests happen to arrive.
"""

from __future__ import annotations

import csv
import json
import random
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.request import Request, urlopen

import pytest

from engine.journal import pending_intents
from jobs.sandbox import Sandbox, SandboxConfig
from tests.integration.helpers import run_against

SEED = 16  # its first 60 fault rolls hold every kind of fault at least twice
OBJECTS = ("custom_objects.property", "custom_objects.pet", "contact", "opportunity", "business")
PAIRS = [(a, b) for i, a in enumerate(OBJECTS) for b in OBJECTS[i + 1 :]]
FINAL = frozenset({"created", "exists", "conflict", "deleted", "absent", "invalid"})
FAULTS = (
    "--fail-rate", "0.1",
    "--reset-rate", "0.05",
    "--lost-response-rate", "0.1",
    "--stall-rate", "0.03", "--stall-seconds", "2",
    "--latency", "1-20",
    "--rate-limit", "20/1s", "--throttle-below", "8",
    "--seed", str(SEED),
)  # fmt: skip
FAULT_KINDS = {"reset", "fail", "stall", "latency", "lost_response"}
CLIENT = ("--timeout", "0.5")  # a stalled answer (2 s) is a timeout, then a retry


@dataclass
class Finished:
    """A CLI process that has exited."""

    rc: int
    out: str
    err: str


@dataclass
class Started:
    """A CLI process that may still be running; its output goes to files."""

    proc: subprocess.Popen[bytes]
    out_path: Path
    err_path: Path

    def wait(self, timeout: float) -> Finished:
        rc = self.proc.wait(timeout=timeout)
        return Finished(rc, self.out_path.read_text("utf-8"), self.err_path.read_text("utf-8"))


class Harness:
    """One sandbox process per test, CLI runs against it, and every byte they printed."""

    def __init__(self, folder: Path) -> None:
        self.dir = folder
        self.logs = folder / "logs"
        self.logs.mkdir()
        self.tokens_file = folder / "tokens.csv"
        self.url = ""
        self._procs: list[subprocess.Popen[bytes]] = []
        self._runs = 0

    def _spawn(self, name: str, args: list[str]) -> Started:
        out_path, err_path = self.logs / f"{name}.out", self.logs / f"{name}.err"
        with out_path.open("wb") as out, err_path.open("wb") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "engine", *args], stdout=out, stderr=err, cwd=self.dir
            )
        self._procs.append(proc)
        return Started(proc, out_path, err_path)

    def start_sandbox(self, locations: list[str], *options: str) -> None:
        """Start the sandbox with tokens for ``locations`` and wait until it listens."""
        started = self._spawn(
            "sandbox",
            ["sandbox", "--port", "0", "--locations", ",".join(locations),
             "--tokens-file", str(self.tokens_file), *options],
        )  # fmt: skip
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            text = started.err_path.read_text("utf-8")
            if match := re.search(r"sandbox listening on (http://\S+)", text):
                self.url = match.group(1)
                return
            assert started.proc.poll() is None, f"the sandbox exited: {text}"
            time.sleep(0.02)
        raise AssertionError("the sandbox did not start within 20 s")

    def admin(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """Call an admin endpoint of the sandbox (no auth, no faults)."""
        data = None if body is None else json.dumps(body).encode()
        request = Request(  # noqa: S310 - always http://127.0.0.1:PORT from the sandbox
            self.url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        with urlopen(request, timeout=10) as response:  # noqa: S310 - as above
            return json.loads(response.read())

    def tokens(self) -> list[str]:
        """The tokens the sandbox issued."""
        with self.tokens_file.open(newline="", encoding="utf-8") as fh:
            return [row["token"] for row in csv.DictReader(fh)]

    def start_run(self, job: Path, *options: str, report: Path) -> Started:
        """Start ``run JOB --base-url ... --tokens ... --report REPORT OPTIONS``."""
        self._runs += 1
        return self._spawn(
            f"run{self._runs}",
            ["run", str(job), "--base-url", self.url, "--tokens", str(self.tokens_file),
             "--report", str(report), *options],
        )  # fmt: skip

    def run(self, job: Path, *options: str, report: Path, timeout: float = 90) -> Finished:
        """Run to the end."""
        return self.start_run(job, *options, report=report).wait(timeout)

    def printed(self) -> str:
        """Everything every process printed so far, on stdout and stderr."""
        return "\n".join(p.read_text("utf-8", errors="replace") for p in self.logs.iterdir())

    def close(self) -> None:
        for proc in self._procs:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    """A harness in the test's folder; its processes are ended with the test."""
    h = Harness(tmp_path)
    yield h
    h.close()


def write_job(path: Path, locations: list[str], per_location: int) -> list[dict[str, str]]:
    """A CSV job of ``per_location`` definitions in every location; rows carry their source.

    Each definition has its own labels, so no two share an object pair *and* labels (which
    the service refuses as a duplicate pair)."""
    rows = [
        {
            "location_id": location,
            "key": f"def_{i:02d}",
            "first_object_key": PAIRS[i % len(PAIRS)][0],
            "second_object_key": PAIRS[i % len(PAIRS)][1],
            "first_object_label": f"Left {i}",
            "second_object_label": f"Right {i}",
        }
        for location in locations
        for i in range(per_location)
    ]
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return [{**row, "source": f"{path.name}:{n}"} for n, row in enumerate(rows, start=2)]


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def unsettled(report: Path, rows: list[dict[str, str]]) -> int:
    """How many records a resume must still send: no row yet, or a last row not final."""
    last: dict[str, str] = {}
    if report.exists():
        for row in read_rows(report):
            if None not in row and None not in row.values():  # skip a torn last line
                last[row["source"]] = row["outcome"]
    return sum(1 for row in rows if last.get(row["source"]) not in FINAL)


def to_send(err: str) -> int:
    """The number of records a run said it would send (its "run started" log line)."""
    match = re.search(r"run started .*\bto_send=(\d+)", err)
    assert match, err
    return int(match.group(1))


def wait_for(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def wait_for_progress(started: Started, report: Path, size: int) -> None:
    """Wait until the run has reported more than ``size`` bytes, or has ended."""
    wait_for(
        lambda: (
            started.proc.poll() is not None or (report.exists() and report.stat().st_size > size)
        ),
        timeout=30,
    )


def assert_no_token(harness: Harness, *where: Path | str) -> None:
    """No issued token in anything a process printed, nor in the given files or texts."""
    texts = [harness.printed()]
    texts += [w.read_text("utf-8") if isinstance(w, Path) else w for w in where]
    tokens = harness.tokens()
    assert tokens
    for token in tokens:
        assert all(token not in text for text in texts)


def over_created(stats: dict[str, Any]) -> list[tuple[str, str, dict[str, int]]]:
    """Every key the API created more than once more than it deleted: a duplicate was live."""
    return [
        (location, key, counts)
        for location, keys in stats["writes_by_key"].items()
        for key, counts in keys.items()
        if counts["created"] - counts["deleted"] > 1
    ]


def created_keys(stats: dict[str, Any]) -> dict[tuple[str, str], int]:
    """How many times the API created each (location, key) it created at all."""
    return {
        (location, key): counts["created"]
        for location, keys in stats["writes_by_key"].items()
        for key, counts in keys.items()
        if counts["created"]
    }


def shape(item: dict[str, Any]) -> tuple[str, str, str, str]:
    """What a definition links, with which labels."""
    return (
        item["firstObjectKey"],
        item["firstObjectLabel"],
        item["secondObjectKey"],
        item["secondObjectLabel"],
    )


@pytest.mark.timeout(180)
def test_kill9_under_every_fault_then_resume_reaches_exactly_the_desired_state(
    harness: Harness,
) -> None:
    """Under every fault and 4 kill -9s, resumes reach exactly the desired state, truly reported."""
    rng = random.Random(SEED)
    locations = [f"loc{n:02d}" for n in range(6)]
    harness.start_sandbox(locations, *FAULTS)
    pre_existing = [
        # the same key and objects as a job row: must end 'exists', untouched
        ("loc00", "def_03", PAIRS[3]),
        ("loc02", "def_07", PAIRS[7]),
        ("loc04", "def_11", PAIRS[1]),
        # the same key as a job row, other objects: must end 'conflict', untouched
        ("loc01", "def_05", ("custom_objects.pet", "business")),
        # not in the job at all: untouched
        ("loc03", "legacy_link", ("custom_objects.property", "contact")),
    ]
    seeded: dict[tuple[str, str], dict[str, Any]] = {}
    for location, key, (first, second) in pre_existing:
        seeded[location, key] = harness.admin(
            "POST",
            "/_sandbox/associations",
            {"locationId": location, "key": key, "firstObjectKey": first,
             "secondObjectKey": second, "firstObjectLabel": f"Old {key}",
             "secondObjectLabel": f"Older {key}"},
        )  # fmt: skip
    expected_outcome = {("loc00", "def_03"): "exists", ("loc02", "def_07"): "exists"}
    expected_outcome |= {("loc04", "def_11"): "exists", ("loc01", "def_05"): "conflict"}
    job = harness.dir / "job.csv"
    rows = write_job(job, locations, 15)
    report = harness.dir / "out.csv"
    journal = Path(f"{report}.journal")

    # Four runs, each killed -9 at a random moment once it has reported something.
    kills = 0
    for attempt in range(4):
        before = report.stat().st_size if report.exists() else 0
        resume = ("--resume",) if attempt else ()
        expected = unsettled(report, rows)
        started = harness.start_run(job, *CLIENT, *resume, report=report)
        wait_for_progress(started, report, before)
        time.sleep(rng.uniform(0.3, 2.0))
        if started.proc.poll() is None:
            started.proc.send_signal(signal.SIGKILL)
            kills += 1
        assert to_send(started.wait(timeout=10).err) == expected  # settled ones are not resent
    assert kills >= 3, "the runs finished before they could be killed"
    assert journal.exists()
    assert unsettled(report, rows) < len(rows), "the killed runs reported nothing"

    # Resume until every record has a final outcome ('conflict' keeps the exit code at 1).
    for _ in range(8):
        expected = unsettled(report, rows)
        finished = harness.run(job, *CLIENT, "--resume", report=report)
        assert finished.rc in (0, 1), finished.err
        assert to_send(finished.err) == expected
        if unsettled(report, rows) == 0:
            break
    else:
        pytest.fail(f"records still unsettled after 8 resumes: {finished.out}")
    assert finished.rc == 1  # the conflict is not ok, and says so
    assert "conflict" in finished.out

    state = harness.admin("GET", "/_sandbox/state")
    snapshot: dict[str, list[dict[str, Any]]] = state["snapshot"]
    stats: dict[str, Any] = state["stats"]

    # The sandbox holds exactly the desired state: what was there, plus every job row that is
    # not a conflict; what was there is untouched (same id, labels, creation time).
    desired: dict[str, dict[str, tuple[str, ...]]] = {location: {} for location in locations}
    for (location, key), item in seeded.items():
        desired[location][key] = shape(item)
    for row in rows:
        desired[row["location_id"]].setdefault(
            row["key"],
            (row["first_object_key"], row["first_object_label"],
             row["second_object_key"], row["second_object_label"]),
        )  # fmt: skip
    for location, items in snapshot.items():
        assert len({a["key"] for a in items}) == len(items), f"a key twice in {location}"
    actual = {loc: {a["key"]: shape(a) for a in items} for loc, items in snapshot.items()}
    assert actual == desired
    by_key = {(loc, a["key"]): a for loc, items in snapshot.items() for a in items}
    for place, item in seeded.items():
        assert by_key[place] == item

    # One row per input record, and each row says what the sandbox shows.
    final_rows = read_rows(report)
    assert sorted(r["source"] for r in final_rows) == sorted(r["source"] for r in rows)
    for row in final_rows:
        place = (row["location_id"], row["key"])
        assert row["outcome"] == expected_outcome.get(place, "created"), row
        assert row["association_id"] == by_key[place]["id"], row
    created = {(r["location_id"], r["key"]) for r in final_rows if r["outcome"] == "created"}
    assert {by_key[p]["id"] for p in created} == {a["id"] for a in by_key.values()} - {
        a["id"] for a in seeded.values()
    }
    assert stats["creates_applied"] == len(created)  # every create applied once, and reported
    # ...each to its own key: the job created exactly the keys it reports created, once each.
    assert over_created(stats) == []
    assert created_keys(stats) == dict.fromkeys(created, 1)
    # Some creates were settled by looking, not by a 201: their answer was lost (dropped,
    # stalled, or the process was killed), and they are still 'created', not 'exists'.
    assert any(r["outcome"] == "created" and not r["http_status"] for r in final_rows)
    # A write intent was journaled for exactly the records this job created.
    assert pending_intents(str(journal)) == {f"{loc}\x1fcreate\x1f{key}" for loc, key in created}

    # The faults really happened, and none of them led to a duplicate or a stray token.
    assert set(stats["faults_injected"]) >= FAULT_KINDS, stats
    assert stats["throttled"] > 0
    assert stats["cross_location_token_uses"] == 0
    log = harness.admin("GET", "/_sandbox/log")
    assert log
    for entry in log:
        assert entry["token_location"] in locations, entry  # every request authenticated
        assert entry["status"] not in (401, 403), entry
        if entry["location_id"] is not None:
            assert entry["token_location"] == entry["location_id"], entry
        else:  # turned away before the location was read: throttled or a fault
            assert entry["status"] == 429 or entry["faults"], entry

    assert_no_token(harness, report, journal, json.dumps(log))


def test_sigterm_stops_promptly_reports_every_record_and_resume_finishes(
    harness: Harness,
) -> None:
    """SIGTERM drains in seconds, reports every record (unsent: not_run); --resume finishes it."""
    locations = [f"loc{n:02d}" for n in range(4)]
    harness.start_sandbox(locations, "--latency", "50-150", "--rate-limit", "10/1s")
    job = harness.dir / "job.csv"
    rows = write_job(job, locations, 15)
    report = harness.dir / "out.csv"

    started = harness.start_run(job, report=report)
    assert wait_for(
        lambda: report.exists() and len(report.read_bytes().splitlines()) >= 3, timeout=30
    ), "no record finished"
    assert started.proc.poll() is None, "the run ended before it could be stopped"
    started.proc.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    stopped = started.wait(timeout=30)
    assert time.monotonic() - signalled < 10
    assert stopped.rc == 1, stopped.err
    found = read_rows(report)
    assert sorted(r["source"] for r in found) == sorted(r["source"] for r in rows)
    outcomes = [r["outcome"] for r in found]
    assert set(outcomes) == {"created", "not_run"}
    assert "not_run" in stopped.out
    assert "total" in stopped.out
    assert "stopped" in stopped.out.lower()
    state = harness.admin("GET", "/_sandbox/state")
    assert state["stats"]["creates_applied"] == outcomes.count("created")  # all drained

    resumed = harness.run(job, "--resume", report=report)
    assert resumed.rc == 0, resumed.err
    assert to_send(resumed.err) == outcomes.count("not_run")
    found = read_rows(report)
    assert len(found) == len(rows)
    assert {r["outcome"] for r in found} == {"created"}
    state = harness.admin("GET", "/_sandbox/state")
    assert state["stats"]["creates_applied"] == len(rows)
    assert over_created(state["stats"]) == []
    assert created_keys(state["stats"]) == {(r["location_id"], r["key"]): 1 for r in rows}
    assert sum(len(items) for items in state["snapshot"].values()) == len(rows)
    assert_no_token(harness, report, Path(f"{report}.journal"))


@pytest.fixture
def small_job(harness: Harness) -> Path:
    """A fault-free sandbox with one location and a three-record job for it."""
    harness.start_sandbox(["loc00"])
    job = harness.dir / "job.csv"
    write_job(job, ["loc00"], 3)
    return job


def test_resume_without_a_report_simply_runs(harness: Harness, small_job: Path) -> None:
    """--resume when no report exists yet runs the whole job."""
    report = harness.dir / "out.csv"
    finished = harness.run(small_job, "--resume", report=report)
    assert finished.rc == 0, finished.err
    assert [r["outcome"] for r in read_rows(report)] == ["created"] * 3


@dataclass
class Before:
    """What a finished run left: its report, its journal, and the sandbox's request count."""

    report: bytes
    journal: bytes
    requests: int


def first_run(harness: Harness, job: Path, report: Path) -> Before:
    assert harness.run(job, report=report).rc == 0
    return Before(
        report.read_bytes(),
        Path(f"{report}.journal").read_bytes(),
        harness.admin("GET", "/_sandbox/state")["stats"]["requests"],
    )


def assert_refused(harness: Harness, report: Path, finished: Finished, before: Before) -> None:
    """Exit 2, nothing sent, the report and journal untouched."""
    assert finished.rc == 2, finished.err
    assert harness.admin("GET", "/_sandbox/state")["stats"]["requests"] == before.requests
    assert report.read_bytes() == before.report
    assert Path(f"{report}.journal").read_bytes() == before.journal


def test_resume_refuses_the_report_of_another_job_file(harness: Harness, small_job: Path) -> None:
    """--resume with a report written for a different job file exits 2, naming the mismatch."""
    report = harness.dir / "out.csv"
    before = first_run(harness, small_job, report)
    other = harness.dir / "other.csv"
    other.write_bytes(small_job.read_bytes())
    finished = harness.run(other, "--resume", report=report)
    assert_refused(harness, report, finished, before)
    assert "different run" in finished.err
    assert "job_files" in finished.err
    assert "other.csv" in finished.err


def test_resume_refuses_a_report_made_with_another_api(harness: Harness, small_job: Path) -> None:
    """--resume with a report written under a different --api exits 2, naming the mismatch."""
    report = harness.dir / "out.csv"
    before = first_run(harness, small_job, report)
    finished = harness.run(small_job, "--resume", "--api", "objects-association", report=report)
    assert_refused(harness, report, finished, before)
    assert "different run" in finished.err
    assert "objects-association" in finished.err


def test_existing_report_is_refused_without_resume(harness: Harness, small_job: Path) -> None:
    """Without --resume an existing report is never overwritten: exit 2, pointing to --resume."""
    report = harness.dir / "out.csv"
    before = first_run(harness, small_job, report)
    finished = harness.run(small_job, report=report)
    assert_refused(harness, report, finished, before)
    assert "already exists" in finished.err
    assert "--resume" in finished.err


async def test_the_duplicate_check_sees_a_key_created_twice(tmp_path: Path) -> None:
    """A key created again while it was live is caught; created again after a delete is fine."""
    job = tmp_path / "job.csv"
    write_job(job, ["loc00"], 2)
    undo = tmp_path / "undo.csv"
    undo.write_text("location_id,action,key\nloc00,delete,def_00\n", encoding="utf-8")
    async with Sandbox(SandboxConfig()) as sandbox:
        for each in (job, undo, job):  # create, delete through the API, create again
            await run_against(sandbox, str(each))
        assert sandbox.stats.writes_by_key["loc00"]["def_00"] == {"created": 2, "deleted": 1}
        assert over_created(asdict(sandbox.stats)) == []
        # def_00 vanishes without an API delete (as a stale index or a store bug would let a
        # second create through); the next run creates it again, and the counts show it.
        location = sandbox._locations["loc00"]
        found = location.with_key("def_00")
        assert found is not None
        sandbox._store.delete(location, found)
        again = await run_against(sandbox, str(job))
        assert [o.status for o in again.outcomes] == ["created", "exists"]
        assert over_created(asdict(sandbox.stats)) == [
            ("loc00", "def_00", {"created": 3, "deleted": 1})
        ]
