"""What a person sees: logging setup, a progress bar, and the end-of-run summary.

All of it goes to stderr except the summary, which is the run's result and goes to stdout.
"""

from __future__ import annotations

import io
import logging
import sys
from collections.abc import Mapping
from typing import TextIO

import structlog
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from .model import Outcome
from .runner import Summary

__all__ = ["ProgressBar", "configure_logging", "render_summary"]


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


def _rate(task: Task) -> float:
    """Records per second finished by this run (not counting those resumed as done)."""
    elapsed = task.elapsed or 0.0
    done = task.completed - task.fields.get("resumed", 0)
    return done / elapsed if elapsed > 0 else 0.0


class _RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        return Text(f"{_rate(task):>7.1f}/s")


class _EtaColumn(ProgressColumn):
    """Time left at this run's average pace (bursty pacing fools a windowed speed)."""

    def render(self, task: Task) -> Text:
        rate = _rate(task)
        if task.total is None or rate <= 0:
            return Text("ETA -:--:--")
        left = int((task.total - task.completed) / rate)
        return Text(f"ETA {left // 3600}:{left // 60 % 60:02d}:{left % 60:02d}")


class ProgressBar:
    """A runner ``Observer`` drawing records done / total, rate, ETA and failures so far."""

    def __init__(self, ok_statuses: frozenset[str], *, console: Console | None = None) -> None:
        self._ok = ok_statuses
        self._failures = 0
        self._progress = Progress(
            TextColumn("[bold]records"),
            BarColumn(),
            MofNCompleteColumn(),
            _RateColumn(),
            TextColumn("[red]{task.fields[failures]} not ok"),
            TimeElapsedColumn(),
            _EtaColumn(),
            console=console or Console(stderr=True),
            transient=False,
        )
        self._task: TaskID | None = None

    def started(self, total: int, done: int) -> None:
        self._progress.start()
        self._task = self._progress.add_task(
            "run", total=total, completed=done, failures=0, rate=0.0
        )

    def finished(self, outcome: Outcome) -> None:
        if self._task is None:
            return
        if outcome.status not in self._ok:
            self._failures += 1
        self._progress.update(self._task, advance=1, failures=self._failures)

    def close(self) -> None:
        """Stop drawing."""
        self._progress.stop()


def render_summary(
    summary: Summary, *, ok_statuses: frozenset[str], console: Console | None = None
) -> None:
    """Counts per outcome, the locations with problems, time and requests, at a glance."""
    out = console or Console(highlight=False, soft_wrap=True)
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
