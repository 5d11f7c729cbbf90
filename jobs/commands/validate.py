"""``validate``: the job files checked offline, every problem named."""

from __future__ import annotations

import sys

import click

from engine import Outcome

from ..api import validate_job
from ..console import render_validation
from .options import job_files_argument, usage_errors

__all__ = ["validate_command"]


@click.command("validate")
@job_files_argument
def validate_command(job_files: tuple[str, ...]) -> None:
    """Check JOB_FILES offline (no network, no token): every problem, then the records
    per location and action.

    Each problem names the file, line (or JSON item) and field, and what to write instead.
    Exit code 0 when every record is valid, 1 when some are not, 2 when a file cannot be
    read at all.

    \b
    ghl-migrate validate samples/associations.csv
    """

    def problem(outcome: Outcome) -> None:
        click.echo(f"{outcome.record.source}: {outcome.error}")

    with usage_errors():
        summary = validate_job(job_files, problem=problem)
    render_validation(summary)
    sys.exit(1 if summary.invalid else 0)
