"""What a person sees: logging setup and the end-of-run summary (the progress bar is in
:mod:`engine.progress`).

All of it goes to stderr except the summary, which is the run's result and goes to stdout.
Rich's emoji codes are off (``emoji=False``): location names and paths are printed as they
are (``:smile:`` stays text), and loading rich's table of codes cost every run ~1.5 ms.
"""

from __future__ import annotations

import io
import logging
import sys
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, TextIO

import structlog
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:  # annotations only: a run's summary needs neither overviews nor the runner
    from .overview import Overview, RunIdentity
    from .result import Summary
    from .timeline_view import RunSpan

__all__ = ["configure_logging", "render_overview", "render_summary"]


class _Stderr(io.TextIOBase):
    """Whatever ``sys.stderr`` is at the time of writing, so that log lines go through the
    progress bar's redirection instead of tearing through the bar."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure_logging(
    fmt: str = "console", *, verbose: bool = False, stream: TextIO | None = None
) -> None:
    """structlog to stderr: readable on a terminal, one JSON object per line with ``json``.

    At the default level: the run's start and end, and warnings a person can act on, each
    naming the record's ``location`` and ``source``. ``verbose``: every request decision
    too (sent, answered, retried, given up; the job kind's own), at debug level.
    """
    out: TextIO = stream if stream is not None else _Stderr()  # type: ignore[assignment]
    renderer: structlog.typing.Processor
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty() and stream is None)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.DEBUG if verbose else logging.INFO
        ),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )


def render_summary(
    summary: Summary, *, ok_statuses: frozenset[str], console: Console | None = None
) -> None:
    """Counts per outcome, the locations with problems, time and requests, at a glance."""
    out = console or Console(highlight=False, soft_wrap=True, emoji=False)
    table = Table(title=None, show_header=True, header_style="bold", box=None, pad_edge=False)
    table.add_column("outcome")
    table.add_column("records", justify="right")
    for status, count in sorted(summary.counts.items(), key=lambda kv: (-kv[1], kv[0])):
        style = "green" if status in ok_statuses else "red"
        table.add_row(f"[{style}]{status}[/]", str(count))
    table.add_row("[bold]total[/]", f"[bold]{summary.total}[/]")
    out.print(table)
    if summary.failed_by_location:
        worst = _top(summary.failed_by_location, 5)
        more = len(summary.failed_by_location) - len(worst)
        # "123 1" would read as one number, or as a location and a count either way round.
        names = summary.location_names
        out.print(
            "not ok by location: "
            + ", ".join(
                f"{loc or 'no location_id'}{_named(names.get(loc))} "
                f"({n} record{'' if n == 1 else 's'})"
                for loc, n in worst.items()
            )
            + (f" … and {more} more location{'' if more == 1 else 's'}" if more > 0 else "")
        )
    rate = summary.processed / summary.elapsed if summary.elapsed > 0 else 0.0
    could_not = (
        f", {summary.connect_failures} could not connect" if summary.connect_failures else ""
    )
    out.print(
        f"{summary.elapsed:.1f} s, {summary.processed} records done at {rate:.1f}/s; "
        f"{summary.requests} requests sent{could_not}, {summary.retries} retried, "
        f"{summary.rate_limited} rate limited (429)"
    )
    if summary.server_errors or summary.transport_errors:
        out.print(
            f"transient failures: {summary.server_errors} server errors (5xx), "
            f"{summary.transport_errors} connection resets or timeouts"
        )
    if summary.unreachable:
        sent = "nothing was sent" if not summary.requests else "it stopped answering"
        out.print(
            f"[red]stopped: {summary.unreachable} ({sent}); records not sent are 'not_run'; "
            "check the address and the network, then --resume[/]"
        )
    elif summary.credential_refused:
        out.print(f"[red]stopped: {escape(summary.credential_refused)}[/]")
    elif summary.stopped:
        out.print("[yellow]stopped early: records not sent are 'not_run'; --resume continues[/]")
    if summary.shard:
        out.print(
            f"shard {summary.shard}: {summary.total} of the job's "
            f"{summary.total + summary.other_shards} records; the rest are other shards'"
        )
    if summary.report:
        out.print(f"report: {summary.report}")
    verdict = (
        "[green]all records ok[/]"
        if summary.exit_code == 0
        else "[red]renew the credential, then --resume[/]"
        if summary.credential_refused
        else "[red]nothing was sent[/]"
        if summary.exit_code == 2
        else "[red]some records need attention[/]"
    )
    out.print(verdict)


def _named(name: str | None) -> str:
    """`` "Name"`` to follow a location id, or nothing when its name is not known."""
    return f' "{escape(name)}"' if name else ""


def _top(counts: Mapping[str, int], n: int) -> dict[str, int]:
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n])


def _when(epoch: object) -> str:
    if not isinstance(epoch, int | float):
        return "?"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch))


def _runs_line(runs: Sequence[RunSpan]) -> str:
    if not runs:
        return "runs: not recorded (no timeline beside the report)"
    last = runs[-1]
    sent = (
        f"{sum(r.requests for r in runs)} requests sent, {sum(r.retries for r in runs)} "
        f"retried, {sum(r.throttled for r in runs)} rate limited (429)"
    )
    said = f"{len(runs)} run{'' if len(runs) == 1 else 's'} ({sent}); the last started "
    said += _when(last.began)
    if last.end is None:
        return f"{said} and has no end recorded: it is still running, or was killed"
    return f"{said}, ended {_when(last.end.get('t'))} with exit code {last.end.get('exit_code')}"


def render_overview(
    overview: Overview,
    *,
    identities: Sequence[RunIdentity] = (),
    runs: Sequence[RunSpan] = (),
    examples: int = 3,
    locations: int = 10,
    console: Console | None = None,
) -> None:
    """A report at a glance (``report show``): who made it, outcome counts, the records not
    ok grouped by cause with a few example rows, and the worst locations. Report values
    are printed as text, never as markup."""
    out = console or Console(highlight=False, soft_wrap=True, emoji=False)
    for identity in identities:
        line = Text(f"report {identity.report}: ", style="bold")
        if identity.problem:
            line.append(identity.problem)
        else:
            facts = [
                identity.kind,
                *(f"{k.replace('_', ' ')} {v}" for k, v in identity.settings.items()),
            ]
            files = ", ".join(name for name, _ in identity.job_files)
            facts.append(f"job files {files}" if files else "")
            if identity.ephemeral:
                facts.append("against the embedded sandbox")
            if identity.plan:
                facts.append("a plan (nothing was written)")
            line.append(", ".join(f for f in facts if f))
        out.print(line)
    out.print(_runs_line(runs))
    if overview.rows_read > overview.total:
        out.print(
            f"{overview.rows_read - overview.total} earlier row(s) of resumed records "
            "replaced by their last row"
        )
    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    table.add_column("outcome")
    table.add_column("records", justify="right")
    for status in overview.outcomes:
        style = "green" if overview.is_ok(status) else "red"
        table.add_row(Text(status, style=style), str(overview.counts[status]))
    table.add_row(Text("total", style="bold"), Text(str(overview.total), style="bold"))
    out.print(table)
    if not overview.groups:
        out.print(Text("all records ok" if overview.total else "no records", style="green"))
        return
    causes = len(overview.groups) + overview.more_groups
    out.print(
        Text(f"\nnot ok by cause ({causes} cause{'' if causes == 1 else 's'}):", style="bold")
    )
    for group in overview.groups:
        head = Text(f"{group.count:>7}  ")
        head.append(group.outcome, style="red")
        if group.http_status:
            head.append(f" HTTP {group.http_status}")
        head.append(f"  {group.pattern}")
        plural = "" if group.locations == 1 else "s"
        head.append(f"  ({group.locations} location{plural})", style="dim")
        out.print(head)
        for row in group.examples[:examples]:
            where = row.get("source", "")
            location = row.get("location_id", "") or "no location_id"
            out.print(Text(f"           {where}  {location}  {row.get('error', '')}", style="dim"))
    if overview.more_groups:
        out.print(
            f"  … and {overview.more_groups} more cause(s) with "
            f"{overview.more_group_records} record(s)"
        )
    worst = [loc for loc in overview.locations if loc.not_ok][:locations]
    out.print(Text("\nworst locations:", style="bold"))
    for loc in worst:
        name = f" {loc.name}" if loc.name else ""
        detail = ", ".join(f"{s} {n}" for s, n in sorted(loc.counts.items(), key=lambda kv: -kv[1]))
        out.print(
            Text(
                f"  {loc.location_id or 'no location_id'}{name}: {loc.not_ok} of {loc.total} "
                f"not ok ({detail})"
            )
        )
    more = sum(1 for loc in overview.locations if loc.not_ok) - len(worst)
    if more > 0:
        out.print(f"  … and {more} more location(s) with records not ok")
