"""The command line: a thin shell over the library.

``ghl-migrate`` (or ``python -m engine``) is a click group. Its commands come from job
packages through the ``ghl_migrate.cli`` entry point group, so the engine names no API.
This module holds what every command shares: option bundles, turning a ``RunConfig`` into a
run with progress and summary, and mapping errors to exit codes (0 ok, 1 some records not
ok, 2 usage or job-file errors, or a host that cannot be reached, with nothing sent).
"""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from importlib.metadata import entry_points
from typing import Any, TypeVar

import anyio
import click

from .concurrency import PROCESS_BOUND
from .console import configure_logging, render_summary
from .errors import ConfigError, StorageError
from .rates import parse_rate
from .result import Observer, RunConfig, RunResult
from .retry import RetryPolicy
from .shard import Shard

__all__ = [
    "execute",
    "html_option",
    "junit_option",
    "log_options",
    "main",
    "rate_options",
    "report_options",
    "retry_options",
    "run_config",
    "script",
    "shard_option",
    "start_run",
    "tune_gc",
    "write_run_page",
]

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")


def _rate(ctx: click.Context, param: click.Parameter, value: str) -> tuple[int, float]:
    try:
        return parse_rate(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def rate_options(f: F) -> F:
    """``--rate`` and ``--concurrency``."""
    f = click.option(
        "--concurrency",
        type=click.IntRange(1, 1000),
        default=None,
        metavar="N",
        help="Most requests in flight at once, over all locations. Default: as many as the "
        f"locations' rate limits and the server's answer times need, up to {PROCESS_BOUND}. "
        "Each location is further held to its own rate, and locations are served "
        "round-robin.",
    )(f)
    return click.option(
        "--rate",
        default="100/10s",
        show_default=True,
        callback=_rate,
        help="Starting budget per location, REQUESTS/INTERVAL (100/10s, 25/10s for trial "
        "tokens, 50/1s). The server's rate headers and 429s refine it.",
    )(f)


def retry_options(f: F) -> F:
    """``--max-attempts`` and ``--timeout``."""
    f = click.option(
        "--timeout",
        type=click.FloatRange(0.1, 600),
        default=30.0,
        show_default=True,
        help="Seconds one attempt may take (connect, send, read the answer).",
    )(f)
    return click.option(
        "--max-attempts",
        type=click.IntRange(1, 20),
        default=5,
        show_default=True,
        help="Tries per request. 429, 5xx, resets and timeouts are retried with capped "
        "exponential backoff and jitter (Retry-After honoured); other 4xx never.",
    )(f)


def run_config(job_files: Sequence[str], options: Mapping[str, Any]) -> RunConfig:
    """A ``RunConfig`` from the shared option bundles (report, rate, retry options).

    Raises ``click.UsageError`` when ``--html`` cannot be honoured: the page is built from
    the report and the files beside it, so it needs ``--report``."""
    html = options.get("html")
    if html is not None:
        if options["report"] is None:
            raise click.UsageError(
                "--html needs --report: the page is built from the report and the files "
                "beside it (--report out.csv --html out.html)"
            )
        from .page import check_page_path  # here: a run without --html never loads Jinja2

        try:
            check_page_path([options["report"]], html)
        except ConfigError as exc:
            raise click.UsageError(str(exc)) from None
    return RunConfig(
        job_files=tuple(job_files),
        report=options["report"],
        resume=options["resume"],
        concurrency=options["concurrency"],
        rate=options["rate"],
        timeout=options["timeout"],
        retry=RetryPolicy(attempts=options["max_attempts"]),
        handle_signals=True,
        junit=options.get("junit"),
        shard=options.get("shard"),
    )


def _shard(ctx: click.Context, param: click.Parameter, value: str | None) -> Shard | None:
    if value is None:
        return None
    try:
        return Shard.parse(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def shard_option(f: F) -> F:
    """``--shard K/N``."""
    return click.option(
        "--shard",
        metavar="K/N",
        callback=_shard,
        help="Do only shard K of N (K from 0 to N-1, as Kubernetes' JOB_COMPLETION_INDEX): "
        "the records of the locations whose SHA-256 modulo N is K. N processes with "
        "--shard 0/N .. N-1/N do the whole job between them, each with its own --report; "
        "'report merge' joins their reports.",
    )(f)


def html_option(f: F) -> F:
    """``--html PATH`` (written by :func:`write_run_page`)."""
    return click.option(
        "--html",
        type=click.Path(dir_okay=False),
        help="Also write a page of the run: one self-contained HTML file (works offline) "
        "with outcome totals, a per-location table, failures grouped by cause and the "
        "pacing timeline. Needs --report; 'ghl-migrate report html' rebuilds it later.",
    )(f)


def report_options(f: F) -> F:
    """``--report``, ``--resume`` and ``--html``."""
    f = html_option(f)
    f = click.option(
        "--resume",
        is_flag=True,
        help="Continue the run that wrote --report: records already settled are skipped, "
        "failed and not_run ones are tried again. Without it an existing report is never "
        "overwritten.",
    )(f)
    return click.option(
        "--report",
        type=click.Path(dir_okay=False),
        help="Per-record outcome report: .csv or .jsonl. Written as records finish, "
        "rewritten at the end to one row per record; a .journal file beside it makes "
        "--resume exact.",
    )(f)


def junit_option(f: F) -> F:
    """``--junit PATH``."""
    return click.option(
        "--junit",
        type=click.Path(dir_okay=False),
        help="Also write the outcomes as JUnit XML for CI (Jenkins, GitLab): one test case "
        "per record, its location as class name; records not ok are failures.",
    )(f)


def log_options(f: F) -> F:
    """``--log-format``, ``--verbose`` and ``--no-progress``."""
    f = click.option(
        "--no-progress", is_flag=True, help="No progress bar (it is shown only on a terminal)."
    )(f)
    f = click.option(
        "-v",
        "--verbose",
        is_flag=True,
        help="Log every request decision: each request sent and its answer, each retry "
        "with its wait and reason, and what the job decided for each record.",
    )(f)
    return click.option(
        "--log-format",
        type=click.Choice(["console", "json"]),
        default="console",
        show_default=True,
        help="Logs on stderr: readable, or one JSON object per line for machines.",
    )(f)


class _Stopped(click.ClickException):
    """One ``Error:`` line and exit code 2, without a usage hint."""

    exit_code = 2


def start_run(
    start: Callable[[Observer | None], Awaitable[T]],
    *,
    ok_statuses: frozenset[str],
    options: Mapping[str, Any],
) -> T:
    """Run ``start`` on the asyncio backend with logging (``log_options``) and a progress bar
    (records not in ``ok_statuses`` count as not ok); errors become exit code 2."""
    configure_logging(options["log_format"], verbose=options["verbose"])
    progress = not options["no_progress"] and sys.stderr.isatty()
    bar = None
    if progress:
        from .progress import ProgressBar  # rich's progress loads only to draw a bar

        bar = ProgressBar(ok_statuses)
    try:
        return anyio.run(start, bar, backend="asyncio")
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    except StorageError as exc:  # mid-run: not a usage error, but exit 2 all the same
        raise _Stopped(str(exc)) from None
    finally:
        if bar is not None:
            bar.close()


def execute(
    start: Callable[[Observer | None], Awaitable[RunResult]],
    *,
    ok_statuses: frozenset[str],
    options: Mapping[str, Any],
    notes: Callable[[RunResult], Sequence[str]] | None = None,
) -> None:
    """Run ``start`` (see :func:`start_run`), print the summary and ``notes`` (lines the
    job kind adds about the result), and exit with the run's code."""
    result = start_run(start, ok_statuses=ok_statuses, options=options)
    with result:  # its outcomes live in a scratch file until it is closed
        render_summary(result.summary, ok_statuses=ok_statuses)
        for line in notes(result) if notes is not None else ():
            click.echo(line)
    write_run_page(result.summary.report, options, ok_statuses=ok_statuses)
    sys.exit(result.summary.exit_code)


def write_run_page(
    report: str | None, options: Mapping[str, Any], *, ok_statuses: frozenset[str]
) -> None:
    """Write the page ``--html`` asks for, of the run that wrote ``report``, and say where.
    A page that cannot be written after the run is one error line and exit code 2."""
    html = options.get("html")
    if html is None or report is None or not os.path.exists(report):
        return
    from .page import write_page  # here: a run without --html never loads Jinja2 or pygal

    try:
        write_page([report], html, ok_statuses=ok_statuses)
    except (ConfigError, StorageError) as exc:
        raise _Stopped(f"the run ended, but its page was not written: {exc}") from None
    click.echo(f"page: {html}")


class _Group(click.Group):
    def _load(self) -> None:
        if getattr(self, "_loaded", False):
            return
        self._loaded = True
        for ep in entry_points(group="ghl_migrate.cli"):
            for command in ep.load():
                self.add_command(command)

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._load()
        return super().list_commands(ctx)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        self._load()
        return super().get_command(ctx, cmd_name)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ghl-migrate")
def main() -> None:
    """Batch migrations for HighLevel agencies: one change, many sub-accounts, a report
    for every record, safe to re-run and to undo.

    Exit codes: 0 every record ok, 1 some records not ok (see the report), 2 bad usage, an
    unreadable job file, or a host that cannot be reached (nothing was sent). With
    --detailed-exitcode, plan exits 0 nothing to do, 2 changes pending, 1 errors.
    """


def script() -> None:
    """The ``ghl-migrate`` program (and ``python -m engine``): :func:`main` in a process of
    its own, its garbage collector tuned for a run (:func:`tune_gc`)."""
    tune_gc()
    main()


#: container allocations between two young-generation collections (CPython's default: 700)
GC_YOUNG = 20_000


def tune_gc() -> None:
    """Let the cyclic garbage collector run about 30 times less often, for this process.

    A run keeps hundreds of requests in flight, each with its short-lived objects (aiohttp's
    request and response, futures, timers, the engine's steps). At CPython's default, a
    young collection comes every 700 allocations, while those objects are still alive: each
    is looked at, promoted, and looked at again by the older generations' collections. That
    was about a fifth of a run's CPU over 400 locations (230 ms of 1.15 s) and 6% of 15,000
    creates over 50. At 20,000 most of them are gone before a collection comes, and it
    costs 35 ms; what cyclic garbage waits longer is at most 20,000 objects. ``gc.freeze``
    first moves what the imports made (modules, classes, functions: never garbage) out of
    every collection's way. The program does it, not the library (nor ``main``, which tests
    invoke in their own process): a program that calls ``jobs.api`` owns its collector.
    """
    gc.freeze()
    gc.set_threshold(GC_YOUNG, *gc.get_threshold()[1:])
