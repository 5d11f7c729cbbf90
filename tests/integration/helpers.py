"""Helpers for running jobs against a sandbox from tests."""

from __future__ import annotations

from typing import Any

from engine import RunConfig, RunResult, Transport
from jobs.api import run_job
from jobs.sandbox import Sandbox


async def run_against(
    sandbox: Sandbox,
    *job_files: str,
    api: str = "associations",
    transport: Transport | None = None,
    **config: Any,
) -> RunResult:
    """Run a job against a started sandbox, with the sandbox's tokens."""
    return await run_job(
        RunConfig(job_files=tuple(job_files), **config),
        api=api,
        base_url=sandbox.url,
        tokens=sandbox.issue_token,
        transport=transport,
    )


def statuses(result: RunResult) -> list[str]:
    """Outcome statuses in input order."""
    return [o.status for o in result.outcomes]


def writes(sandbox: Sandbox, method: str = "POST") -> int:
    """How many write requests of ``method`` reached the sandbox's API routes."""
    return sum(1 for r in sandbox.log if r.method == method and not r.path.startswith("/_"))
