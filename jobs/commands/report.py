"""``report``: merge shards' reports (``merge``), sum reports up in the terminal (``show``), or
write a page of them to open in a browser (``html``)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import click

from engine import StorageError

from ..api import report_overview, report_page
from .options import usage_errors

# Merging and overviews are imported by the commands that use them: the CLI loads this
# module for every command (run included), and they cost start-up time.
if TYPE_CHECKING:
    from engine import MergeResult

__all__ = ["report_group"]


@click.group("report")
def report_group() -> None:
    """Work with run reports: merge shards' reports, sum reports up in the terminal, or
    write a page of them to open in a browser.

    show and html work on any report, also one still being written by a running or killed
    run.
    """


@report_group.command("merge")
@click.argument("out", type=click.Path(dir_okay=False))
@click.argument("reports", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option(
    "--partial",
    is_flag=True,
    help="Merge even when some shards' reports are missing (the merged report can then be "
    "rolled back, but not resumed).",
)
def merge_command(out: str, reports: tuple[str, ...], partial: bool) -> None:
    """Merge the reports of a job's shards (run --shard K/N) into OUT, with its journal.

    The merged report reads as one unsharded run's: rollback undoes what any shard
    created, and when every shard is there, run --resume (without --shard) continues it.
    Refused, with nothing written: reports of different jobs or splits, a shard given
    twice, a shard missing (unless --partial), a report whose run did not finish writing
    it (resume that shard first), and an OUT that is not an earlier merge.

    \b
    ghl-migrate report merge merged.csv shard-0.csv shard-1.csv shard-2.csv shard-3.csv
    ghl-migrate report merge merged.csv reports/shard-*.csv
    """
    from engine import merge_reports  # see the note on the imports

    with usage_errors():
        result = merge_reports(out, reports, partial=partial)
    _merged(result)


def _merged(result: MergeResult) -> None:
    shards = result.shards
    names = ", ".join(os.path.basename(path) for path in result.inputs)
    click.echo(f"merged {shards.describe()} ({names}): {result.rows} rows")
    if result.replaced:
        click.echo(f"(replaced the earlier merge at {result.report})")
    width = max([len("outcome"), *(len(status) for status in result.counts)])
    click.echo(f"{'outcome':<{width}}  rows")
    for status, count in sorted(result.counts.items(), key=lambda kv: (-kv[1], kv[0])):
        click.echo(f"{status:<{width}}  {count:>4}")
    click.echo(f"report: {result.report} (journal {result.journal})")
    if result.missing:
        missing = ", ".join(str(k) for k in result.missing)
        click.echo(
            f"warning: shard(s) {missing} of {shards.count} are not in it: it rolls back what "
            "the merged shards did, but cannot be resumed; merge again when they are done",
            err=True,
        )


_reports_argument = click.argument(
    "reports", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False)
)


@report_group.command("show")
@_reports_argument
@click.option(
    "--examples",
    type=click.IntRange(0),
    default=3,
    show_default=True,
    help="Example rows per cause.",
)
@click.option(
    "--causes", type=click.IntRange(1), default=10, show_default=True, help="Causes to list."
)
@click.option(
    "--locations",
    type=click.IntRange(0),
    default=10,
    show_default=True,
    help="Worst locations to list.",
)
def report_show_command(
    reports: tuple[str, ...], examples: int, causes: int, locations: int
) -> None:
    """Sum up REPORTS: counts by outcome, records not ok grouped by cause (status and
    message pattern, with example rows), and the worst locations.

    \b
    ghl-migrate report show out.csv
    ghl-migrate report show out.csv --causes 30 --examples 10
    """
    from engine import read_timeline, run_identity, timeline_path  # see the note on the imports
    from engine.console import render_overview

    with usage_errors():
        overview = report_overview(reports, groups=causes, examples=examples)
    runs = read_timeline([timeline_path(r) for r in reports], series=False).runs
    render_overview(
        overview,
        identities=[run_identity(r) for r in reports],
        runs=runs,
        examples=examples,
        locations=locations,
    )


@report_group.command("html")
@_reports_argument
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    help="The page to write. Default: the first report's path with .html for its extension.",
)
def report_html_command(reports: tuple[str, ...], output: str | None) -> None:
    """Write one self-contained HTML page of REPORTS (it works offline): the run's
    identity, outcome totals, a sortable and filterable per-location table, records not
    ok grouped by cause, and requests per second against each location's limit.

    \b
    ghl-migrate report html out.csv -o out.html
    """
    out = output or f"{reports[0].rsplit('.', 1)[0]}.html"
    try:
        with usage_errors():
            report_page(reports, out)
    except StorageError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"page: {out}")
