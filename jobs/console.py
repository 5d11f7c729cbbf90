"""What ``plan`` and ``validate`` print: tables grouped by location, with totals.

Both go to stdout (they are the command's result); logs stay on stderr. Each location is a
row, each outcome (or action) a column, so 300 sub-accounts read as one screen per 50 or so.
Past :data:`MAX_LOCATIONS` locations the rest are folded into one line of totals (the
report has every record). Records that need a person's attention (blocked, in conflict,
invalid) are listed with their source and reason, up to :data:`MAX_PROBLEMS`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

from .association_rows import CONFLICT

if TYPE_CHECKING:  # annotations only: a run loads neither offline checks nor plans
    from engine import CheckSummary, Outcome

    from .plan import PlanResult

__all__ = ["MAX_LOCATIONS", "MAX_PROBLEMS", "render_plan", "render_validation"]

MAX_LOCATIONS = 100
MAX_PROBLEMS = 20

#: column order of a plan's table: changes first, then nothing to do, then problems
_PLAN_ORDER = ("create", "update", "delete", "exists", "absent", CONFLICT, "blocked", "not_run")
_STYLE = {"create": "green", "update": "yellow", "delete": "red", CONFLICT: "red", "blocked": "red"}


def _console() -> Console:
    return Console(highlight=False, soft_wrap=True, emoji=False)  # as engine.console's


def _table(first: Iterable[str], numbers: Iterable[str]) -> Table:
    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    for name in first:
        table.add_column(name)
    for name in numbers:
        table.add_column(name, justify="right")
    return table


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def render_plan(plan: PlanResult, *, console: Console | None = None) -> None:
    """The plan per location with totals, what needs attention, drift, and the verdict."""
    out = console or _console()
    result, summary = plan.result, plan.summary
    by_location = result.counts_by_location()
    present = set(summary.counts)
    columns = [s for s in _PLAN_ORDER if s in present] + sorted(present - set(_PLAN_ORDER))
    table = _table(["location"], [*columns, "records"])

    def add(name: str, row: Mapping[str, int], style: str = "") -> None:
        cells = [str(row.get(c, 0)) if row.get(c) else "." for c in columns]
        total = str(sum(row.values()))
        if style:
            table.add_row(f"[{style}]{name}[/]", *(f"[{style}]{c}[/]" for c in [*cells, total]))
        else:
            table.add_row(name, *cells, total)

    rest: Counter[str] = Counter()
    for n, (location, row) in enumerate(by_location.items()):
        if n < MAX_LOCATIONS:
            add(location or "(no location_id)", row)
        else:
            rest.update(row)
    if rest:
        folded = len(by_location) - MAX_LOCATIONS
        add(f"… {_plural(folded, 'more location')}", rest)
    add("total", summary.counts, "bold")
    out.print("plan: what run would do; no write was sent")
    out.print(table)
    _print_problems(out, result.outcomes_with("blocked"), result.outcomes_with(CONFLICT))
    if plan.labels_differ:
        out.print(
            f"{_plural(plan.labels_differ, 'definition')} exist with other labels than the job "
            "gives; they stay as they are (--update-labels would change them)"
        )
    if plan.drift:
        out.print(
            "drift: USER_DEFINED definitions on the server that no job row mentions "
            "(listed only, never deleted):"
        )
        for location, keys in plan.drift.items():
            out.print(f"  {location}: {', '.join(keys)}")
    out.print(
        f"{summary.elapsed:.1f} s; {summary.requests} requests sent (reads only), "
        f"{summary.retries} retried, {summary.rate_limited} rate limited (429)"
    )
    if summary.unreachable:
        out.print(f"[red]stopped: {summary.unreachable}; records not looked at are 'not_run'[/]")
    elif summary.stopped:
        out.print("[yellow]stopped early: records not looked at are 'not_run'[/]")
    if summary.report:
        out.print(f"report: {summary.report}")
    counts = summary.counts
    changes = ", ".join(
        f"{counts.get(s, 0)} to {s}" for s in ("create", "update", "delete") if counts.get(s)
    )
    if summary.exit_code != 0:
        bad = summary.total - sum(counts.get(s, 0) for s in _PLAN_ORDER[:5])
        out.print(
            f"[red]{_plural(bad, 'record')} blocked, in conflict or not looked at[/]"
            + (f"; {changes}" if changes else "")
        )
    elif changes:
        out.print(f"[yellow]plan: {changes}[/]")
    else:
        out.print("[green]nothing to do[/]")


def _print_problems(out: Console, *groups: Iterable[Outcome]) -> None:
    shown = 0
    more = 0
    for outcomes in groups:
        for outcome in outcomes:
            if shown == 0:
                out.print("needs attention:")
            if shown < MAX_PROBLEMS:
                record = outcome.record
                key = record.get("key") or record.get("association_id")
                out.print(
                    f"  {record.source}  {record.location_id or '(no location_id)'}  "
                    f"{key or '-'}  {outcome.status}: {outcome.error}",
                    markup=False,
                )
                shown += 1
            else:
                more += 1
    if more:
        out.print(f"  … and {more} more (see --report)")


def render_validation(summary: CheckSummary, *, console: Console | None = None) -> None:
    """Records per location and action (valid, invalid), then the totals."""
    out = console or _console()
    table = _table(["location", "action"], ["records", "invalid"])
    grouped: dict[str, list[tuple[str, int, int]]] = {}  # locations in input order
    for (location, action), (valid, invalid) in summary.counts.items():
        grouped.setdefault(location, []).append((action, valid, invalid))
    for n, (location, actions) in enumerate(grouped.items()):
        if n == MAX_LOCATIONS:
            table.add_row(f"… {_plural(len(grouped) - n, 'more location')}", "", "", "")
            break
        for action, valid, invalid in sorted(actions):
            table.add_row(
                location or "(no location_id)", action or "-", str(valid), str(invalid or ".")
            )
    out.print(table)
    located = sum(1 for location in grouped if location)
    verdict = (
        f"{_plural(summary.records, 'record')} in {_plural(located, 'location')}: "
        f"{summary.valid} valid, {summary.invalid} invalid"
    )
    out.print(f"[red]{verdict}[/]" if summary.invalid else f"[green]{verdict}[/]")
