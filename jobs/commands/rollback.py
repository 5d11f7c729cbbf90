"""``rollback``: say what would be undone, per location; with ``--dry-run`` list it and stop,
else ask (or take ``--yes``) and undo it.

What it says goes to stderr, so that ``--dry-run``'s list on stdout reads as a table
(location, what, ids, source) for other tools."""

from __future__ import annotations

import sys
from functools import partial
from typing import TYPE_CHECKING, Any

import click

from engine import Record, Shard
from engine.cli import execute, junit_option, report_options, run_config

from ..api import rollback_job
from ..associations import AssociationsJob
from ..kinds import RELATIONS
from .options import (
    observed,
    pop_agency,
    rollback_api_options,
    run_options,
    tokens_options,
    usage_errors,
)

# Rollback plans are imported by the command: the CLI loads this module for every command
# (run included), and they cost start-up time.
if TYPE_CHECKING:
    from ..rollback import RollbackPlan

__all__ = ["rollback_command"]


@click.command("rollback")
@click.argument("reports", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option(
    "--dry-run", is_flag=True, help="List what would be deleted per location; send nothing."
)
@click.option(
    "-y", "--yes", is_flag=True, help="Delete without asking (needed when not on a terminal)."
)
@tokens_options
@rollback_api_options
@report_options
@junit_option
@run_options
def rollback_command(
    reports: tuple[str, ...],
    dry_run: bool,
    yes: bool,
    tokens: str | None,
    api: str | None,
    base_url: str | None,
    **options: Any,
) -> None:
    """Delete exactly the definitions or relations that REPORTS list as created, and put
    back the labels of the definitions they list as updated.

    Deleting a definition also deletes every record-level relation that uses it. Only rows
    whose outcome is 'created' (deleted) or 'updated' (previous labels restored) are undone,
    a definition after checking that its id still has the same key, a relation by its id;
    'exists' and everything else is never touched. The changes go to the server the run
    used, as its journal records it, unless --base-url or --api say otherwise.

    With --shard K/N only the locations of shard K are rolled back (N processes can undo a
    large merged report between them, each with its own --report).

    \b
    ghl-migrate rollback out.csv --dry-run
    ghl-migrate rollback out.csv --tokens tokens.csv --report rollback.csv --yes
    """
    from ..rollback import plan_rollback  # see the note on the imports

    agency = pop_agency(options)
    with usage_errors():
        plan = plan_rollback(reports)
    with plan:
        # With --shard the run leaves other shards' locations alone: show only what it does.
        shard: Shard | None = options.get("shard")
        shown = plan if shard is None else plan.for_shard(shard)
        # api and base_url are None unless given (they have no defaults): the plan then
        # takes the server its journals record.
        for note in plan.server(api=api, base_url=base_url).notes:
            click.echo(note, err=True)
        if shown.unsettled:
            click.echo(_unsettled_warning(shown), err=True)
        in_shard = "" if shard is None else f" in shard {shard}"
        if not shown.records:
            click.echo(_nothing_to_undo(shown, reports, in_shard), err=True)
            return
        what = _changes(shown)
        counts = shown.by_location
        click.echo(f"rollback would {what} in {len(counts)} location(s){in_shard}:", err=True)
        names = shown.location_names
        for location, count in sorted(counts.items()):
            named = f' "{names[location]}"' if location in names else ""
            click.echo(f"  {location}{named}: {count}", err=True)
        if dry_run:
            for record in shown.records:
                click.echo(_listed(shown.kind, record))
            return
        if not yes:
            _confirm(shown, what)
        config = run_config(reports, options)
        job = partial(
            rollback_job,
            plan,
            config,
            api=api,
            base_url=base_url,
            tokens_file=tokens,
            agency=agency,
        )
        execute(observed(job), ok_statuses=AssociationsJob.ok_statuses, options=options)


def _unsettled_warning(plan: RollbackPlan) -> str:
    shown = ", ".join(str(u) for u in plan.unsettled[:5])
    more = f" and {len(plan.unsettled) - 5} more" if len(plan.unsettled) > 5 else ""
    reports = ", ".join(sorted({u.report for u in plan.unsettled}))
    return (
        f"warning: {len(plan.unsettled)} create(s) noted in the journal of {reports} have no "
        f"final row ({shown}{more}): each may or may not exist, and rollback cannot delete "
        "them without an id. If that run's job files are unchanged, resume it (run ... "
        "--report REPORT --resume) and roll back again; otherwise check them by hand"
    )


def _nothing_to_undo(plan: RollbackPlan, reports: tuple[str, ...], in_shard: str) -> str:
    return (
        f"nothing to roll back{in_shard}: {', '.join(reports)} list(s) no {plan.noun} as "
        f"created{in_shard and ' in its locations'}"
    )


def _deletes(plan: RollbackPlan) -> int:
    return len(plan.records) - plan.restores


def _changes(plan: RollbackPlan) -> str:
    """What the plan does, e.g. 'delete 3 definition(s) and restore the labels of 1'."""
    deletes = _deletes(plan)
    changes = [f"delete {deletes} {plan.noun}(s)"] if deletes else []
    if plan.restores:
        changes.append(
            f"restore the labels of {plan.restores}" + ("" if deletes else f" {plan.noun}(s)")
        )
    return " and ".join(changes)


def _listed(kind: str, record: Record) -> str:
    """One line of ``--dry-run``'s list, tab-separated."""
    if kind == RELATIONS:
        line = (
            f"{record.get('association_key') or record.get('association_id')}\t"
            f"{record.get('first_record_id')}\t{record.get('second_record_id')}\t"
            f"{record.get('relation_id')}"
        )
    else:
        line = f"{record.get('action')}\t{record.get('key')}\t{record.get('association_id')}"
    return f"{record.location_id}\t{line}\t{record.source}"


def _confirm(plan: RollbackPlan, what: str) -> None:
    """Ask before changing anything; refuse where nobody can answer."""
    if not sys.stdin.isatty():
        raise click.UsageError(
            f"refusing to {what} without --yes: this is not an interactive terminal "
            "(use --dry-run to review first)"
        )
    if plan.kind == RELATIONS:
        question = "Delete them?"
    elif _deletes(plan):
        question = "Delete them, with every relation that uses them?"
    else:
        question = "Restore them?"
    click.confirm(question, abort=True, err=True)
