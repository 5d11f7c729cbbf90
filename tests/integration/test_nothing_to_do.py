"""Empty inputs through the library: a job or tokens file with nothing in it stops the run
with a ConfigError before any request, as the CLI does (exit 2)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from engine import ConfigError, RunConfig
from jobs.api import run_job
from jobs.sandbox import Sandbox

from .helpers import run_against

JOB = "location_id,key,first_object_key,second_object_key\nloc01,pet_owner,contact,business\n"


async def test_job_without_records_sends_nothing(
    sandbox: Sandbox, write_job: Callable[[str, str], str], tmp_path: Path
) -> None:
    """``run_job`` on a header-only job raises ConfigError naming the file; no request is
    sent and no report is written."""
    job = write_job("jobs.csv", JOB.splitlines()[0] + "\n")
    report = tmp_path / "out.csv"

    with pytest.raises(ConfigError, match="no records") as info:
        await run_against(sandbox, job, report=str(report))

    assert job in str(info.value)
    assert sandbox.log == []
    assert not report.exists()


async def test_empty_tokens_file_sends_nothing(
    sandbox: Sandbox, write_job: Callable[[str, str], str], tmp_path: Path
) -> None:
    """``run_job`` with a tokens file that holds no token raises ConfigError; nothing is sent."""
    tokens = tmp_path / "tokens.csv"
    tokens.write_text("location_id,token\n", encoding="utf-8")
    tokens.chmod(0o600)

    with pytest.raises(ConfigError, match="no tokens"):
        await run_job(
            RunConfig(job_files=(write_job("jobs.csv", JOB),)),
            base_url=sandbox.url,
            tokens_file=str(tokens),
        )

    assert sandbox.log == []
