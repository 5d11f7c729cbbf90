"""``sandbox``: serve the fake HighLevel API (``jobs.sandbox``) until Ctrl-C, with the limits,
faults, records and agency its options ask for.

The server is imported only when the command runs: other commands never load it."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal, TypeVar

import click

from engine import parse_rate

__all__ = ["sandbox_command"]

F = TypeVar("F", bound=Callable[..., Any])


def _latency(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[float, float]:
    if not value:
        return (0.0, 0.0)
    low, _, high = value.partition("-")
    try:
        lo, hi = float(low), float(high or low)
    except ValueError:
        raise click.BadParameter("expected MIN-MAX in milliseconds, e.g. 5-50") from None
    if lo < 0 or hi < lo:
        raise click.BadParameter("expected 0 <= MIN <= MAX")
    return (lo, hi)


def _rate(value: str) -> tuple[int, float]:
    """REQUESTS/INTERVAL, or a usage error saying what is expected."""
    try:
        return parse_rate(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _rate_limit(ctx: click.Context, param: click.Parameter, value: str) -> tuple[int, float]:
    return (0, 10.0) if value in {"0", "off", "none"} else _rate(value)


def _contention(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> tuple[int, float] | None:
    return _rate(value) if value else None


def _chance(name: str, what: str) -> Callable[[F], F]:
    """An option giving the probability (0 to 1, default 0) of a fault."""
    return click.option(name, type=click.FloatRange(0.0, 1.0), default=0.0, help=what)


@click.command("sandbox")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8765,
    show_default=True,
    help="Port (0: any free one).",
)
@click.option("--locations", default="", help="Comma-separated location ids to issue tokens for.")
@click.option(
    "--tokens-file",
    type=click.Path(dir_okay=False),
    help="Write the issued tokens here as CSV location_id,token (mode 600).",
)
@click.option(
    "--rate-limit",
    default="100/10s",
    show_default=True,
    callback=_rate_limit,
    help="Burst limit per location, REQUESTS/INTERVAL; 0 for none.",
)
@click.option(
    "--daily-limit",
    type=click.IntRange(0),
    default=200_000,
    show_default=True,
    help="Requests per location per day; 0 for none.",
)
@click.option(
    "--retry-after",
    is_flag=True,
    help="Send Retry-After on 429 (the real service does not document it).",
)
@_chance("--fail-rate", "Probability of a 500/502/503/504 before doing anything.")
@_chance("--reset-rate", "Probability of dropping the connection before doing anything.")
@_chance(
    "--lost-response-rate", "Probability that a write is applied and then the connection dropped."
)
@_chance("--stall-rate", "Probability that a response hangs for --stall-seconds.")
@click.option(
    "--stall-seconds",
    type=click.FloatRange(0),
    default=60.0,
    show_default=True,
    help="How long a stalled response hangs.",
)
@click.option("--latency", callback=_latency, help="Added latency MIN-MAX in milliseconds.")
@click.option(
    "--throttle-below",
    type=click.IntRange(1),
    help="429 once a location passes N requests per window, while headers advertise --rate-limit.",
)
@click.option(
    "--window",
    type=click.Choice(["sliding", "fixed"]),
    default="sliding",
    show_default=True,
    help="How the burst window counts: the last INTERVAL seconds, or since the start of the "
    "current INTERVAL-long window.",
)
@click.option(
    "--bare-429",
    is_flag=True,
    help="429s carry Retry-After and no X-RateLimit-* headers.",
)
@click.option(
    "--no-rate-headers",
    is_flag=True,
    help="Send no X-RateLimit-Max/-Remaining/-Interval-Milliseconds headers (limits still apply).",
)
@click.option(
    "--contention",
    callback=_contention,
    help="Another client spends REQUESTS/INTERVAL of each location's budget, evenly spaced "
    "(when and for how long: the next two options).",
)
@click.option(
    "--contention-after",
    type=click.FloatRange(0),
    default=0.0,
    show_default=True,
    help="Seconds after a location's first request that the other client starts.",
)
@click.option(
    "--contention-for",
    type=click.FloatRange(0, min_open=True),
    help="Seconds the other client keeps going (default: for ever).",
)
@click.option("--seed", type=int, help="Seed for reproducible faults.")
@click.option(
    "--records",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    help="Records per object per location for relations, with ids contact-1 .. contact-N, "
    "property-1 .. property-N and so on.",
)
@click.option(
    "--relation-status",
    type=click.Choice(["201", "200"]),
    default="201",
    show_default=True,
    help="Status of a created relation (the spec says 201; 200 is seen in the field).",
)
@click.option(
    "--wrap-relation", is_flag=True, help='Answer a created relation as {"relation": {...}}.'
)
@click.option(
    "--agency",
    type=click.IntRange(0),
    default=0,
    help="Create an agency (company) with N sub-accounts, the app installed in each.",
)
@click.option(
    "--company-id",
    default="sandbox-agency",
    show_default=True,
    help="The agency's company id (with --agency).",
)
@click.option(
    "--agency-token-file",
    type=click.Path(dir_okay=False),
    help="Write the agency token here (mode 600), for GHL_AGENCY_TOKEN or --agency-token-file.",
)
@click.option(
    "--not-installed",
    type=click.IntRange(0),
    default=0,
    help="The app is not installed in the last N of the --agency sub-accounts.",
)
@click.option(
    "--token-lifetime",
    type=click.FloatRange(0.001),
    default=86_399.0,
    show_default=True,
    help="Seconds a location token minted with the agency token lives.",
)
@click.option(
    "--agency-token-lifetime",
    type=click.FloatRange(0.001),
    default=86_399.0,
    show_default=True,
    help="Seconds the agency token lives; renewed (POST /_sandbox/companies/ID/renew), "
    "it lives a day.",
)
def sandbox_command(
    host: str,
    port: int,
    locations: str,
    tokens_file: str | None,
    rate_limit: tuple[int, float],
    daily_limit: int,
    retry_after: bool,
    fail_rate: float,
    reset_rate: float,
    lost_response_rate: float,
    stall_rate: float,
    stall_seconds: float,
    latency: tuple[float, float],
    throttle_below: int | None,
    window: Literal["sliding", "fixed"],
    bare_429: bool,
    no_rate_headers: bool,
    contention: tuple[int, float] | None,
    contention_after: float,
    contention_for: float | None,
    seed: int | None,
    records: int,
    relation_status: str,
    wrap_relation: bool,
    agency: int,
    company_id: str,
    agency_token_file: str | None,
    not_installed: int,
    token_lifetime: float,
    agency_token_lifetime: float,
) -> None:
    """Serve a fake HighLevel API (both route sets, and relations) until Ctrl-C.

    \b
    ghl-migrate sandbox --port 8765 --locations locA,locB --tokens-file tokens.csv
    ghl-migrate sandbox --records 100   # contact-1 .. contact-100 and so on, for relations
    ghl-migrate sandbox --agency 50 --agency-token-file agency-token.txt
    """
    from ..sandbox import AgencySetup, SandboxConfig, ServeError, serve  # a server: when served

    config = SandboxConfig(
        rate_limit=rate_limit[0],
        rate_interval=rate_limit[1],
        daily_limit=daily_limit,
        retry_after=retry_after,
        fail_rate=fail_rate,
        reset_rate=reset_rate,
        lost_response_rate=lost_response_rate,
        stall_rate=stall_rate,
        stall_seconds=stall_seconds,
        latency=latency,
        throttle_below=throttle_below,
        advertise_limit=0 if no_rate_headers else None,
        window=window,
        bare_429=bare_429,
        contention=contention,
        contention_after=contention_after,
        contention_for=math.inf if contention_for is None else contention_for,
        seed=seed,
        records=records,
        relation_status=int(relation_status),
        wrap_relation=wrap_relation,
        token_lifetime=token_lifetime,
        agency_token_lifetime=agency_token_lifetime,
    )
    wanted = [loc.strip() for loc in locations.split(",") if loc.strip()]
    if tokens_file and not wanted:
        raise click.UsageError(
            "--tokens-file needs --locations: the sandbox issues tokens only for the "
            "locations named there (--locations locA,locB)"
        )
    if (agency_token_file or not_installed) and not agency:
        raise click.UsageError(
            "--agency-token-file and --not-installed need --agency N (the sub-accounts to make)"
        )
    if not_installed > agency:
        raise click.UsageError(f"--not-installed {not_installed} is more than --agency {agency}")
    setup = (
        AgencySetup(
            company_id=company_id,
            count=agency,
            not_installed=not_installed,
            token_file=agency_token_file,
        )
        if agency
        else None
    )

    def ready(url: str) -> None:
        click.echo(f"sandbox listening on {url}", err=True)
        if tokens_file:
            click.echo(f"tokens for {len(wanted)} locations written to {tokens_file}", err=True)
        if setup is not None:
            where = f", its token written to {agency_token_file}" if agency_token_file else ""
            click.echo(
                f"agency {company_id}: {agency} sub-accounts, app {config.app_id} installed "
                f"in {agency - not_installed}{where}",
                err=True,
            )

    try:
        serve(
            config,
            host=host,
            port=port,
            locations=wanted,
            tokens_file=tokens_file,
            agency=setup,
            ready=ready,
        )
    except ServeError as exc:
        raise click.UsageError(str(exc)) from None
