"""The library entry point: everything ``ghl-migrate run`` does, callable from Python.

::

    import anyio
    from engine import RunConfig
    from jobs.api import run_job

    result = anyio.run(run_job, RunConfig(job_files=("onboarding.json",), report="out.csv"))
    print(result.summary.counts)
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import replace

from engine import (
    ConfigError,
    FileLock,
    Observer,
    RunConfig,
    RunResult,
    TokenLookup,
    Transport,
    load_tokens,
    run,
)

from .highlevel import DEFAULT_BASE_URL
from .kinds import detect_kind, job_kind
from .rollback import RollbackPlan
from .routes import Api
from .sandbox import Sandbox, SandboxConfig

__all__ = ["rollback_job", "run_job"]


async def run_job(
    config: RunConfig,
    *,
    api: Api | str = Api.ASSOCIATIONS,
    base_url: str = DEFAULT_BASE_URL,
    tokens_file: str | None = None,
    tokens: TokenLookup | None = None,
    sandbox: SandboxConfig | None = None,
    transport: Transport | None = None,
    observer: Observer | None = None,
    kind: str | None = None,
) -> RunResult:
    """Run a job: association definitions or relations, as the job files say (a ``kind``
    column or field, or a ``first_record_id`` column: see ``jobs.kinds``), unless ``kind``
    names one. Job files of different kinds, and relations with ``api`` other than the
    official routes, raise ``ConfigError`` before anything is sent.

    Tokens come from ``tokens`` (a function of the location id), else ``tokens_file``, else
    the ``GHL_TOKEN_<LOCATION_ID>`` / ``GHL_TOKEN`` environment variables. With ``sandbox``
    the job runs against an embedded fake API on 127.0.0.1 that issues a token for every
    location it is asked about; ``base_url`` and tokens are then ignored.
    """
    kind = kind or detect_kind(config.job_files)
    if sandbox is not None:
        # The embedded sandbox starts empty and is gone when the run ends: its report may be
        # replaced by the next sandbox run (and a resume starts over), and is never rolled
        # back. For resumable practice runs, start `ghl-migrate sandbox` and use --base-url.
        config = replace(config, ephemeral=True)
        async with Sandbox(sandbox) as fake:
            chosen = job_kind(kind, api=api, base_url=fake.url)
            return await run(
                chosen, config, tokens=fake.issue_token, transport=transport, observer=observer
            )
    chosen = job_kind(kind, api=api, base_url=base_url, report=config.report, resume=config.resume)
    lookup = tokens or load_tokens(tokens_file)
    return await run(chosen, config, tokens=lookup, transport=transport, observer=observer)


async def rollback_job(
    plan: RollbackPlan,
    config: RunConfig,
    *,
    api: Api | str | None = None,
    base_url: str | None = None,
    tokens_file: str | None = None,
    tokens: TokenLookup | None = None,
    transport: Transport | None = None,
    observer: Observer | None = None,
) -> RunResult:
    """Carry out a rollback plan (see ``jobs.rollback.plan_rollback``): one delete per
    ``created`` row (a definition's checked against the key it had; a relation's by id).

    The deletes go to ``api`` and ``base_url`` when given, else to the server the plan's
    journals record (``plan.server()`` says which, and why). ``config.job_files`` should name
    the reports the plan came from (they identify the rollback in its journal). The reports
    are locked while the rollback runs; one that changed since the plan was made (a run
    resumed it meanwhile) is refused: plan again."""
    server = plan.server(api=None if api is None else Api(api).value, base_url=base_url)
    kind = job_kind(
        plan.kind,
        api=server.api,
        base_url=server.base_url,
        report=config.report,
        resume=config.resume,
    )
    lookup = tokens or load_tokens(tokens_file)
    with _hold_reports(plan, config.report):
        return await run(
            kind,
            config,
            tokens=lookup,
            transport=transport,
            observer=observer,
            records=plan.records,
        )


def _hold_reports(plan: RollbackPlan, own_report: str | None) -> contextlib.ExitStack:
    """Lock the plan's reports (no run may write them while their rollback runs) and check
    they are still what the plan was made from."""
    if own_report is not None and any(
        os.path.abspath(own_report) == os.path.abspath(r) for r in plan.reports
    ):
        raise ConfigError(
            f"--report {own_report} is one of the reports being rolled back: give the "
            "rollback a report of its own"
        )
    held = contextlib.ExitStack()
    try:
        for path in plan.reports:
            held.enter_context(FileLock(path, what="report", reading=True))
        plan.check_unchanged()
    except BaseException:
        held.close()
        raise
    return held
