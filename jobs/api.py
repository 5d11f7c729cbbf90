"""The library entry points: everything ``ghl-migrate run``, ``plan``, ``validate`` and
``rollback`` do, callable from Python.

::

    import anyio
    from engine import RunConfig
    from jobs.api import plan_job, run_job, validate_job

    checked = validate_job(("onboarding.json",), problem=print)  # offline
    config = RunConfig(job_files=("onboarding.json",), report="out.csv")
    with anyio.run(plan_job, config) as plan:
        print(plan.summary.pending, plan.drift)
    result = anyio.run(run_job, config)
    print(result.summary.counts)
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from engine import (
    ConfigError,
    FileLock,
    JobKind,
    LocationGates,
    Observer,
    Outcome,
    RunConfig,
    RunResult,
    TokenLookup,
    TokenProvider,
    load_tokens,
)
from engine.concurrency import process_bound

from .agency import AgencyCredential, AgencyTokens
from .associations import AssociationsJob
from .directory import Directory, LocationSelector, find_selectors
from .highlevel import DEFAULT_BASE_URL
from .kinds import RELATIONS, detect_kind, job_kind
from .plan import PlanResult, drift_of
from .relations import RelationsJob
from .routes import Api

# The runner (with aiohttp), offline checks, rollback plans and report overviews are imported
# by the functions that use them: a command loads only what it does (validate and report
# show send nothing, a run checks nothing offline), and start-up costs that much less.
if TYPE_CHECKING:
    from engine import CheckSummary, Overview, Transport

    from .rollback import RollbackPlan
    from .sandbox import SandboxConfig

__all__ = [
    "AgencyCredential",
    "plan_job",
    "report_ok_statuses",
    "report_overview",
    "report_page",
    "rollback_job",
    "run_job",
    "validate_job",
]

#: the outcomes each job kind counts as ok, by the name its journals record
_OK_STATUSES = {
    AssociationsJob.name: AssociationsJob.ok_statuses,
    RelationsJob.name: RelationsJob.ok_statuses,
}
#: and a plan's pending changes
_PLAN_STATUSES = {
    AssociationsJob.name: AssociationsJob.plan_statuses,
    RelationsJob.name: RelationsJob.plan_statuses,
}


async def run_job(
    config: RunConfig,
    *,
    api: Api | str = Api.ASSOCIATIONS,
    base_url: str = DEFAULT_BASE_URL,
    tokens_file: str | None = None,
    tokens: TokenLookup | TokenProvider | None = None,
    agency: AgencyCredential | None = None,
    sandbox: SandboxConfig | None = None,
    update_labels: bool = False,
    transport: Transport | None = None,
    observer: Observer | None = None,
    kind: str | None = None,
) -> RunResult:
    """Run a job: association definitions or relations, as the job files say (a ``kind``
    column or field, or a ``first_record_id`` column: see ``jobs.kinds``), unless ``kind``
    names one. Job files of different kinds, relations with ``api`` other than the official
    routes, and ``update_labels`` for relations raise ``ConfigError`` before anything is sent.

    Tokens come from ``tokens`` (a function of the location id), else ``tokens_file``, else
    the ``GHL_TOKEN_<LOCATION_ID>`` / ``GHL_TOKEN`` environment variables. With ``agency``
    (see :mod:`jobs.agency`), every location without a token of its own gets one minted
    with the agency token, and a template may say ``"locations": "all"`` (see
    :mod:`jobs.directory`); ``tokens`` may also be a whole token provider, used as it is.
    With ``sandbox`` the job runs against an embedded fake API on 127.0.0.1 that issues a
    token for every location it is asked about; ``base_url`` and tokens are then ignored.
    With ``update_labels`` a definition whose key and objects match a row but whose labels
    differ gets the row's labels (``updated``); without it, it stays as it is (``exists``).
    """
    from engine import run  # see the note on the imports

    name = _kind_name(kind, config.job_files, update_labels=update_labels)
    if sandbox is not None:
        selectors = find_selectors(config.job_files)
        if selectors:
            path, selector = selectors[0]
            raise ConfigError(
                f'{path}: "locations": {selector} lists an agency\'s sub-accounts, and the '
                "embedded sandbox has no agency: start one with ghl-migrate sandbox --agency "
                "50 --agency-token-file FILE, then run with --base-url and --agency-token-file"
            )
        # The embedded sandbox starts empty and is gone when the run ends: its report may be
        # replaced by the next sandbox run (and a resume starts over), and is never rolled
        # back. For resumable practice runs, start `ghl-migrate sandbox` and use --base-url.
        config = replace(config, ephemeral=True)
        from .sandbox import Sandbox  # only now: the sandbox is a server, not worth a start-up

        async with Sandbox(sandbox) as fake:
            chosen = job_kind(name, api=api, base_url=fake.url, update_labels=update_labels)
            return await run(
                chosen, config, tokens=fake.issue_token, transport=transport, observer=observer
            )
    prepared, provider, gates = await _prepare(
        name,
        config,
        api=api,
        base_url=base_url,
        tokens=tokens,
        tokens_file=tokens_file,
        agency=agency,
        transport=transport,
        update_labels=update_labels,
    )
    result = await run(
        prepared, config, tokens=provider, transport=transport, observer=observer, gates=gates
    )
    return _named(result, _location_names(prepared))


def _kind_name(kind: str | None, job_files: Sequence[str], *, update_labels: bool) -> str:
    """The job's kind: as given, else as its files say; ``--update-labels`` is for
    definitions only."""
    name = kind or detect_kind(job_files)
    if name == RELATIONS and update_labels:
        raise ConfigError(
            "--update-labels changes definitions' labels; relations have none (this is a "
            "relations job)"
        )
    return name


async def plan_job(
    config: RunConfig,
    *,
    api: Api | str = Api.ASSOCIATIONS,
    base_url: str = DEFAULT_BASE_URL,
    tokens_file: str | None = None,
    tokens: TokenLookup | TokenProvider | None = None,
    agency: AgencyCredential | None = None,
    update_labels: bool = False,
    transport: Transport | None = None,
    observer: Observer | None = None,
) -> PlanResult:
    """What ``run_job`` would do with the same arguments, without sending a write.

    The same reads go out, paced the same way, with the same tokens; each record gets its
    planned outcome (see ``jobs.plan``), in ``config.report`` too if given (its journal says
    it is a plan: no run resumes it and rollback refuses it). ``drift`` lists, per location,
    the USER_DEFINED definitions no row mentions. Close the result (or use ``with``)."""
    from engine import run  # see the note on the imports

    name = _kind_name(None, config.job_files, update_labels=update_labels)
    kind, provider, gates = await _prepare(
        name,
        config,
        api=api,
        base_url=base_url,
        tokens=tokens,
        tokens_file=tokens_file,
        agency=agency,
        transport=transport,
        update_labels=update_labels,
        track_drift=True,
    )
    result = await run(
        kind,
        replace(config, plan=True, resume=False),
        tokens=provider,
        transport=transport,
        observer=observer,
        gates=gates,
    )
    _named(result, _location_names(kind))
    try:
        drift = drift_of(getattr(kind, "drift", None) or {}, result)
        differ = 0 if update_labels else AssociationsJob.labels_differ(result)
    except BaseException:
        result.close()
        raise
    return PlanResult(result=result, drift=drift, labels_differ=differ)


def validate_job(job_files: Sequence[str], *, problem: Callable[[Outcome], None]) -> CheckSummary:
    """Check job files offline (no network, no token): ``problem`` is called with each
    record a run would report ``invalid``, in input order, and the summary counts records
    per location and action. Raises ``ConfigError`` when a file cannot be read."""
    # A template's location rule ("all"...) is checked, not listed: one placeholder stands
    # for its sub-accounts.
    from engine import check_job_files  # see the note on the imports

    kind = job_kind(detect_kind(job_files), directory=Directory(offline=True))
    return check_job_files(kind, job_files, by="action", problem=problem)


async def rollback_job(
    plan: RollbackPlan,
    config: RunConfig,
    *,
    api: Api | str | None = None,
    base_url: str | None = None,
    tokens_file: str | None = None,
    tokens: TokenLookup | TokenProvider | None = None,
    agency: AgencyCredential | None = None,
    transport: Transport | None = None,
    observer: Observer | None = None,
) -> RunResult:
    """Carry out a rollback plan (see ``jobs.rollback.plan_rollback``): one delete per
    ``created`` row (a definition's checked against the key it had; a relation's by id),
    one label restore per ``updated`` definition.

    The deletes go to ``api`` and ``base_url`` when given, else to the server the plan's
    journals record (``plan.server()`` says which, and why). ``config.job_files`` should name
    the reports the plan came from (they identify the rollback in its journal). The reports
    are locked while the rollback runs; one that changed since the plan was made (a run
    resumed it meanwhile) is refused: plan again. Tokens as for :func:`run_job` (``agency``
    mints them)."""
    from engine import run  # see the note on the imports

    server = plan.server(api=None if api is None else Api(api).value, base_url=base_url)
    kind = job_kind(
        plan.kind,
        api=server.api,
        base_url=server.base_url,
    )
    provider = _provider(kind.base_url, tokens, tokens_file, agency)
    with _hold_reports(plan, config.report):
        result = await run(
            kind,
            config,
            tokens=provider,
            transport=transport,
            observer=observer,
            records=plan.records,
        )
    return _named(result, plan.location_names)


async def _prepare(
    name: str,
    config: RunConfig,
    *,
    api: Api | str,
    base_url: str,
    tokens: TokenLookup | TokenProvider | None,
    tokens_file: str | None,
    agency: AgencyCredential | None,
    transport: Transport | None,
    **kind_options: Any,
) -> tuple[JobKind, TokenLookup | TokenProvider, LocationGates]:
    """The job kind ``name``, its tokens, and the budgets to pace with; templates'
    location rules (``"all"``...) listed with the agency token first, on those budgets."""
    selectors = find_selectors(config.job_files)
    directory = Directory()
    kind = job_kind(name, api=api, base_url=base_url, directory=directory, **kind_options)
    provider = _provider(kind.base_url, tokens, tokens_file, agency)
    gates = LocationGates(*config.rate)  # the listing's requests count in the run's budget
    if selectors:
        if agency is None:
            path, selector = selectors[0]
            raise ConfigError(
                f'{path}: "locations": {selector} needs an agency token to list the '
                "sub-accounts: GHL_AGENCY_TOKEN or --agency-token-file, and --company-id"
            )
        rules = [selector for _, selector in selectors]
        await _resolve(directory, rules, agency, kind.base_url, config, transport, gates)
    return kind, provider, gates


def _provider(
    base_url: str,
    tokens: TokenLookup | TokenProvider | None,
    tokens_file: str | None,
    agency: AgencyCredential | None,
) -> TokenLookup | TokenProvider:
    """Where the run's tokens come from: the caller's, a file's or the environment's, and
    with an agency credential, minted for every location that has none of those."""
    if isinstance(tokens, TokenProvider):
        return tokens
    if agency is None:
        return tokens or load_tokens(tokens_file)
    # A shared GHL_TOKEN would stand in for every location: not in agency mode.
    environ = {k: v for k, v in os.environ.items() if k != "GHL_TOKEN"}
    given = tokens or load_tokens(tokens_file, environ=environ)
    return AgencyTokens(agency, base_url=base_url, given=given)


async def _resolve(
    directory: Directory,
    selectors: list[LocationSelector],
    agency: AgencyCredential,
    base_url: str,
    config: RunConfig,
    transport: Transport | None,
    gates: LocationGates,
) -> None:
    """List the sub-accounts the templates' rules mean, before the run reads its files."""
    from engine import AiohttpTransport  # see the note on the imports

    owned = transport is None
    limit = config.concurrency or process_bound()
    used = transport or AiohttpTransport(timeout=config.timeout, limit=limit)
    try:
        await directory.resolve(
            selectors,
            credential=agency,
            base_url=base_url,
            transport=used,
            gates=gates,
            retry=config.retry,
        )
    finally:
        if owned:
            await used.aclose()


def _location_names(kind: JobKind) -> Mapping[str, str]:
    """The location names the kind saw in the job (associations keep them)."""
    names: Mapping[str, str] = getattr(kind, "location_names", {})
    return names


def _named(result: RunResult, names: Mapping[str, str]) -> RunResult:
    """The summary names the locations that need attention, where their names are known."""
    failed = result.summary.failed_by_location
    known = {loc: names[loc] for loc in failed if loc in names}
    if known:
        result.summary = replace(result.summary, location_names=known)
    return result


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


def report_ok_statuses(reports: Sequence[str]) -> frozenset[str] | None:
    """The outcomes that count as ok in ``reports``, by the job kind their journals name (a
    plan's pending changes too); None when no journal names a kind this package knows (the
    engine's default applies: everything but failed, invalid and not_run)."""
    from engine import run_identity  # see the note on the imports

    ok: set[str] = set()
    for identity in (run_identity(path) for path in reports):
        if identity.kind in _OK_STATUSES:
            ok |= _OK_STATUSES[identity.kind]
            if identity.plan:
                ok |= _PLAN_STATUSES[identity.kind]
    return frozenset(ok) if ok else None


def report_overview(reports: Sequence[str], **options: Any) -> Overview:
    """Counts, failures grouped by cause and the worst locations of ``reports`` (any
    report, also one still being written): see ``engine.overview.summarize``."""
    from engine import summarize  # see the note on the imports

    return summarize(reports, ok_statuses=report_ok_statuses(reports), **options)


def report_page(reports: Sequence[str], out: str, **options: Any) -> None:
    """Write the HTML page of ``reports`` to ``out``: see ``engine.page.render_page``."""
    from engine.page import write_page  # Jinja2 and pygal load only to draw a page

    write_page(reports, out, ok_statuses=report_ok_statuses(reports), **options)
