"""``run`` and ``plan``: the same job files, tokens, server and pacing; ``plan`` makes only
the reads and says what ``run`` would do."""

from __future__ import annotations

import sys
from functools import partial
from typing import Any

import click

from engine import RunResult
from engine.cli import (
    execute,
    html_option,
    junit_option,
    report_options,
    run_config,
    start_run,
    write_run_page,
)

from ..api import plan_job, run_job
from ..associations import AssociationsJob
from ..console import render_plan
from ..routes import Api
from .options import (
    api_options,
    job_files_argument,
    observed,
    pop_agency,
    run_options,
    tokens_options,
    update_labels_option,
)

__all__ = ["plan_command", "run_command"]


@click.command("run")
@job_files_argument
@tokens_options
@click.option(
    "--sandbox",
    is_flag=True,
    help="Run against an embedded fake HighLevel API on 127.0.0.1 (tokens issued for "
    "the job's locations); no account needed.",
)
@api_options
@update_labels_option
@report_options
@junit_option
@run_options
def run_command(
    job_files: tuple[str, ...],
    tokens: str | None,
    sandbox: bool,
    api: str,
    base_url: str,
    update_labels: bool,
    **options: Any,
) -> None:
    """Create or delete association definitions, or relations between records, listed in
    JOB_FILES (CSV, JSON or JSON Lines).

    Each file says which: a 'kind' column (relations or associations), or a
    first_record_id column (relations). Relations use the official routes only.

    \b
    ghl-migrate run samples/onboarding.json --sandbox --report out.csv
    ghl-migrate run jobs.csv --tokens tokens.csv --report out.csv
    ghl-migrate run jobs.csv --tokens tokens.csv --shard 0/4 --report shard-0.csv
    GHL_AGENCY_TOKEN=... ghl-migrate run samples/onboarding-all.json --company-id ID
    """
    agency = None if sandbox else pop_agency(options)
    config = run_config(job_files, options)
    job = partial(
        run_job,
        config,
        api=Api(api),
        base_url=base_url,
        tokens_file=tokens,
        agency=agency,
        sandbox=_sandbox_config() if sandbox else None,
        update_labels=update_labels,
    )
    execute(
        observed(job),
        ok_statuses=AssociationsJob.ok_statuses,
        options=options,
        notes=None if update_labels else _labels_note,
    )


def _sandbox_config() -> Any:
    from ..sandbox import SandboxConfig  # imported only for --sandbox runs

    return SandboxConfig()


def _labels_note(result: RunResult) -> list[str]:
    differ = AssociationsJob.labels_differ(result)
    if not differ:
        return []
    return [
        f"{differ} definition(s) exist with other labels than the job gives; they were left "
        "as they are (the report's error column says which): --update-labels changes them"
    ]


@click.command("plan")
@job_files_argument
@tokens_options
@api_options
@update_labels_option
@click.option(
    "--report",
    type=click.Path(dir_okay=False),
    help="Per-record report of the planned outcomes (.csv or .jsonl), with the same columns "
    "as run's. A plan's report is replaced by the next plan, never resumed or rolled back.",
)
@html_option
@junit_option
@click.option(
    "--detailed-exitcode",
    is_flag=True,
    help="Exit 0 when there is nothing to do, 2 when changes are pending, 1 on errors "
    "(as terraform plan -detailed-exitcode), for CI gates.",
)
@run_options
def plan_command(
    job_files: tuple[str, ...],
    tokens: str | None,
    api: str,
    base_url: str,
    update_labels: bool,
    detailed_exitcode: bool,
    **options: Any,
) -> None:
    """Show what run would do with JOB_FILES, per location, sending no write.

    It makes the same reads as run (object schemas and definitions, paced the same way)
    and gives each record its planned outcome: create, update, delete (changes), exists,
    absent (nothing to do), conflict or blocked (with the reason). It also lists drift:
    USER_DEFINED definitions on the server that no job row mentions (never deleted).

    \b
    ghl-migrate plan jobs.csv --tokens tokens.csv
    ghl-migrate plan jobs.csv --tokens tokens.csv --report plan.csv --detailed-exitcode
    ghl-migrate plan jobs.csv --tokens tokens.csv --shard 0/4 --report plan-0.csv
    """
    agency = pop_agency(options)
    config = run_config(job_files, {**options, "resume": False})
    job = partial(
        plan_job,
        config,
        api=Api(api),
        base_url=base_url,
        tokens_file=tokens,
        agency=agency,
        update_labels=update_labels,
    )
    ok = AssociationsJob.ok_statuses | AssociationsJob.plan_statuses
    with start_run(observed(job), ok_statuses=ok, options=options) as plan:
        render_plan(plan)
        code = plan.exit_code(detailed=detailed_exitcode)
    write_run_page(config.report, options, ok_statuses=ok)
    sys.exit(code)
