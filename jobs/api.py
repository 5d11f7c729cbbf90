"""The library entry point: everything ``ghl-migrate run`` does, callable from Python.

::

    import anyio
    from engine import RunConfig
    from jobs.api import run_job

    result = anyio.run(run_job, RunConfig(job_files=("onboarding.json",), report="out.csv"))
    print(result.summary.counts)
"""

from __future__ import annotations

import anyio

from engine import (
    ConfigError,
    Observer,
    RunConfig,
    RunResult,
    TokenLookup,
    Transport,
    load_tokens,
    run,
)

from .associations import AssociationsJob
from .highlevel import DEFAULT_BASE_URL
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
) -> RunResult:
    """Run an associations job.

    Tokens come from ``tokens`` (a function of the location id), else ``tokens_file``, else
    the ``GHL_TOKEN_<LOCATION_ID>`` / ``GHL_TOKEN`` environment variables. With ``sandbox``
    the job runs against an embedded fake API on 127.0.0.1 that issues a token for every
    location it is asked about; ``base_url`` and tokens are then ignored.
    """
    if sandbox is not None:
        if config.resume and config.report and await anyio.Path(config.report).exists():
            raise ConfigError(
                f"report {config.report} came from an embedded sandbox, which starts empty "
                "every time, so it cannot be resumed; for resumable practice runs start "
                "`ghl-migrate sandbox` and pass --base-url and --tokens"
            )
        async with Sandbox(sandbox) as fake:
            kind = AssociationsJob(api=api, base_url=fake.url)
            return await run(
                kind, config, tokens=fake.issue_token, transport=transport, observer=observer
            )
    kind = AssociationsJob(api=api, base_url=base_url)
    lookup = tokens or load_tokens(tokens_file)
    return await run(kind, config, tokens=lookup, transport=transport, observer=observer)


async def rollback_job(
    plan: RollbackPlan,
    config: RunConfig,
    *,
    api: Api | str = Api.ASSOCIATIONS,
    base_url: str = DEFAULT_BASE_URL,
    tokens_file: str | None = None,
    tokens: TokenLookup | None = None,
    transport: Transport | None = None,
    observer: Observer | None = None,
) -> RunResult:
    """Carry out a rollback plan (see ``jobs.rollback.plan_rollback``): one delete per
    ``created`` row, each checked against the key it had. ``config.job_files`` should name
    the reports the plan came from (they identify the rollback in its journal)."""
    kind = AssociationsJob(api=api, base_url=base_url)
    lookup = tokens or load_tokens(tokens_file)
    return await run(
        kind, config, tokens=lookup, transport=transport, observer=observer, records=plan.records
    )
