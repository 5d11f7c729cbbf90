"""What the HighLevel commands share: the options that say where the changes go
(``--api``, ``--base-url``) and with which tokens (``--tokens`` and the agency options),
``--update-labels``, and the engine's option bundles stacked the way every command that
sends requests uses them.

The engine's bundles (``engine.cli``) say how a run goes: its report, pace, retries and logs;
the ones here say which HighLevel server it talks to and as whom. A command lists its
bundles in the order its ``--help`` shows their options.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import click

from engine import ConfigError, Observer
from engine.cli import log_options, rate_options, retry_options, shard_option

from ..agency import AgencyCredential, load_agency
from ..highlevel import DEFAULT_BASE_URL
from ..routes import Api

__all__ = [
    "api_options",
    "job_files_argument",
    "observed",
    "pop_agency",
    "rollback_api_options",
    "run_options",
    "stack",
    "tokens_options",
    "update_labels_option",
    "usage_errors",
]

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")


def stack(*decorators: Callable[[F], F]) -> Callable[[F], F]:
    """The decorators as one; ``--help`` lists their options in the order given."""

    def apply(f: F) -> F:
        for decorator in reversed(decorators):
            f = decorator(f)
        return f

    return apply


#: the job files of ``run``, ``plan`` and ``validate``
job_files_argument = click.argument(
    "job_files", nargs=-1, required=True, type=click.Path(dir_okay=False)
)

#: ``--shard``, ``--rate``, ``--concurrency``, ``--max-attempts``, ``--timeout`` and the log
#: options: the tail of every command that sends requests
run_options = stack(shard_option, rate_options, retry_options, log_options)


def api_options(f: F) -> F:
    """``--api`` and ``--base-url``, with HighLevel's defaults."""
    f = click.option(
        "--base-url",
        envvar="GHL_BASE_URL",
        default=DEFAULT_BASE_URL,
        show_default=True,
        help="API root (env GHL_BASE_URL). Plain http is refused except to loopback.",
    )(f)
    return click.option(
        "--api",
        type=click.Choice([a.value for a in Api]),
        default=Api.ASSOCIATIONS.value,
        show_default=True,
        help="Route set: 'associations' (official /associations/ routes) or "
        "'objects-association' (the integration guide's routes).",
    )(f)


def rollback_api_options(f: F) -> F:
    """``--api`` and ``--base-url`` without defaults: None unless given, and then the
    server the rolled-back run's journal records is used."""
    f = click.option(
        "--base-url",
        envvar="GHL_BASE_URL",
        help="API root (env GHL_BASE_URL). Default: the one the run used, as its journal "
        f"records it; without a journal, {DEFAULT_BASE_URL}.",
    )(f)
    return click.option(
        "--api",
        type=click.Choice([a.value for a in Api]),
        help="Route set. Default: the one the run used, as its journal records it; without "
        "a journal, 'associations'.",
    )(f)


def tokens_options(f: F) -> F:
    """``--tokens``, ``--agency-token-file``, ``--company-id`` and ``--app-id`` (the last
    three read with :func:`pop_agency`)."""
    f = click.option(
        "--app-id",
        envvar="GHL_APP_ID",
        help='Your Marketplace app\'s id (env GHL_APP_ID): templates with "locations": '
        '"installed" list where it is installed.',
    )(f)
    f = click.option(
        "--company-id",
        envvar="GHL_COMPANY_ID",
        help="The agency's company id (env GHL_COMPANY_ID), with an agency token.",
    )(f)
    f = click.option(
        "--agency-token-file",
        type=click.Path(dir_okay=False),
        help="A file holding an agency (Company) token of your app, else env "
        "GHL_AGENCY_TOKEN (never on the command line): each location without a token of its "
        'own gets one minted, and templates may say "locations": "all".',
    )(f)
    return click.option(
        "--tokens",
        type=click.Path(dir_okay=False),
        help='Tokens per location: CSV location_id,token or JSON {"locId": "token"}. '
        "Else env GHL_TOKEN_<LOCATION_ID>, else env GHL_TOKEN (ignored with an agency token).",
    )(f)


def update_labels_option(f: F) -> F:
    """``--update-labels``."""
    return click.option(
        "--update-labels",
        is_flag=True,
        help="When a definition's key and objects match a row but its labels differ, give it "
        "the row's labels (PUT; official routes only). Without it such a row stays 'exists' "
        "and the summary counts it. Rollback puts the previous labels back.",
    )(f)


@contextlib.contextmanager
def usage_errors() -> Iterator[None]:
    """A ``ConfigError`` (bad usage, a file that cannot be read) becomes click's one-line
    usage error: exit code 2, no traceback."""
    try:
        yield
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None


def pop_agency(options: dict[str, Any]) -> AgencyCredential | None:
    """The agency credential from the options (popped: ``tokens_options``) and the
    environment."""
    with usage_errors():
        return load_agency(
            options.pop("agency_token_file"),
            company_id=options.pop("company_id"),
            app_id=options.pop("app_id"),
        )


def observed(job: Callable[..., Awaitable[T]]) -> Callable[[Observer | None], Awaitable[T]]:
    """``job`` (a ``jobs.api`` call with its arguments bound) as ``engine.cli.execute`` and
    ``start_run`` call it: with the progress bar, if any, as its observer."""

    async def start(observer: Observer | None) -> T:
        return await job(observer=observer)

    return start
