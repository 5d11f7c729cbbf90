"""The invariant: every input record ends as exactly one report row, whatever fails."""

from __future__ import annotations

import csv
import tempfile
from pathlib import Path

import anyio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import RunConfig
from jobs.api import run_job
from jobs.sandbox import Sandbox, SandboxConfig

LOCATIONS = ["locAAAAAAAAAAAAAAAAA", "locBBBBBBBBBBBBBBBBB", "locCCCCCCCCCCCCCCCCC"]

rows = st.lists(
    st.tuples(
        st.sampled_from([*LOCATIONS, ""]),  # "" → invalid row
        st.sampled_from(["create", "create", "delete", "bogus"]),
        st.sampled_from(["k1", "k2", "k3", "k4", ""]),
        st.sampled_from(["custom_objects.property", "custom_objects.pet", "contact", "nope.x.y"]),
    ),
    min_size=1,
    max_size=25,
)
faults = st.fixed_dictionaries(
    {
        "fail_rate": st.sampled_from([0.0, 0.2, 0.5]),
        "reset_rate": st.sampled_from([0.0, 0.1, 0.3]),
        "lost_response_rate": st.sampled_from([0.0, 0.3]),
        "stall_rate": st.sampled_from([0.0, 0.1]),
        "seed": st.integers(0, 10_000),
    }
)


async def _run(
    job_rows: list[tuple[str, str, str, str]], fault_settings: dict[str, float], folder: Path
) -> tuple[int, list[dict[str, str]]]:
    job = folder / "jobs.csv"
    with job.open("w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(["location_id", "action", "key", "first_object_key", "second_object_key"])
        for location, action, key, first in job_rows:
            out.writerow([location, action, key, first, "contact"])
    report = folder / "out.csv"
    config = SandboxConfig(stall_seconds=0.5, **fault_settings)  # type: ignore[arg-type]
    async with Sandbox(config) as sb:
        await run_job(
            RunConfig(job_files=(str(job),), report=str(report), timeout=0.2, concurrency=4),
            base_url=sb.url,
            tokens=sb.issue_token,
        )
    with report.open(newline="", encoding="utf-8") as fh:
        return len(job_rows), list(csv.DictReader(fh))


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(job_rows=rows, fault_settings=faults)
def test_every_record_gets_exactly_one_row(
    job_rows: list[tuple[str, str, str, str]], fault_settings: dict[str, float]
) -> None:
    """Any mix of rows and injected faults gives one report row per record, in input order."""
    with tempfile.TemporaryDirectory() as folder:
        count, report = anyio.run(_run, job_rows, fault_settings, Path(folder), backend="asyncio")
    assert len(report) == count
    assert [r["source"] for r in report] == [f"jobs.csv:{i + 2}" for i in range(count)]
    assert all(r["outcome"] for r in report)
