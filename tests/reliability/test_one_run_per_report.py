"""One process per report: real CLI processes racing for a report, and a kill -9 that must
not leave the report locked."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from .test_faults import Harness, read_rows, wait_for, write_job


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    """A harness in the test's folder; its processes are ended with the test."""
    h = Harness(tmp_path)
    yield h
    h.close()


def test_a_second_run_is_refused_naming_the_first_and_kill9_leaves_no_lock(
    harness: Harness,
) -> None:
    """While a run holds a report, a second run and a rollback are refused naming its pid;
    after kill -9 an immediate --resume finishes the job exactly."""
    harness.start_sandbox(["loc00"], "--latency", "20-20")
    job = harness.dir / "job.csv"
    rows = write_job(job, ["loc00"], 20)
    report = harness.dir / "out.csv"
    lock = Path(f"{report}.lock")

    first = harness.start_run(job, "--concurrency", "1", report=report)
    assert wait_for(lambda: report.exists() and len(read_rows(report)) >= 2, timeout=30)
    first.proc.send_signal(signal.SIGSTOP)  # frozen mid-run, holding the report
    try:
        holder = orjson.loads(lock.read_bytes())
        assert holder["pid"] == first.proc.pid

        second = harness.run(job, "--resume", report=report, timeout=30)
        assert second.rc == 2, second.err
        assert f"is in use by another process (pid {first.proc.pid} on " in second.err
        assert "Traceback" not in second.err
        rollback = harness._spawn("rollback", ["rollback", str(report), "--dry-run"]).wait(30)
        assert rollback.rc == 2, rollback.err
        assert f"pid {first.proc.pid}" in rollback.err
    finally:
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(timeout=10)
    assert lock.exists()  # left behind by the dead process, with nobody holding it

    resumed = harness.run(job, "--resume", report=report, timeout=60)

    assert resumed.rc == 0, resumed.err
    final = read_rows(report)
    assert sorted(r["source"] for r in final) == sorted(r["source"] for r in rows)
    assert {r["outcome"] for r in final} == {"created"}
    state = harness.admin("GET", "/_sandbox/state")
    assert state["stats"]["creates_applied"] == len(rows)  # nothing created twice
    assert not lock.exists()  # the finished run removed it
