"""One report and one journal from the reports of a job's shards (``report merge``).

A job split with ``--shard K/N`` leaves N reports, each with its journal. Merged, they read
as the report of one unsharded run of the job: ``rollback`` undoes what any shard created,
and, when every shard is there, ``run --resume`` without ``--shard`` continues it (retrying
whatever any shard left failed or not run). So a merge checks before it writes anything:

- every report has its journal, and each journal names its shards (a report of an
  unsharded run covers the whole job: there is nothing to merge it with);
- they are shards of one job: the same job kind, options, server and job file contents
  (everything in the journals' first lines but the shard itself);
- they are shards of one split: the same N, and no shard twice (another N puts most
  locations in other shards, so two splits would overlap);
- every shard is there. Without one, the merged report still rolls back exactly what the
  given shards did, but a resume would take the missing shards' records for never sent, so
  such a merge is refused unless ``partial`` is asked for, and its journal then names the
  shards it holds, which makes ``--resume`` refuse it;
- each report is whole: its journal's last line is the end line its run wrote after
  rewriting the report (a run killed before that left an append-only report: resume that
  shard first), and the report still has the rows that line counts;
- each row belongs to its report's shard (its location hashes there).

The merged journal is the first journal's description (without the shard, unless partial,
and with ``merged_from``), every intent of every shard in shard order, and an end line
``{"end": "merge", "rows": n}``. The merged report holds every row of every shard report,
in input order: rows are k-way merged by their source (job file, then line or item),
files ranked in the order the reports first name them, so a job of one file comes out in
exactly the order of an unsharded run's report. Everything is streamed: a merge of
millions of rows holds one row per shard in memory.

``out`` is never a report of a run: an existing ``out`` is replaced only when it is an
earlier merge that no run has resumed since (its journal still ends with the merge's end
line), so merging again after a failed shard was resumed just works. Every report read is
locked for reading, and ``out`` for writing, so nothing merges a report a run is writing.
"""

from __future__ import annotations

import contextlib
import csv
import heapq
import os
import re
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any

from .errors import ConfigError, StorageError, os_error_text
from .journal import journal_entries, journal_meta, journal_path, write_journal
from .lock import FileLock
from .report import ReportFormat, iter_report, report_format, write_report_atomically
from .shard import ShardSet, shard_of
from .timeline import timeline_path
from .timeline_view import merge_timelines

__all__ = ["MergeResult", "merge_reports"]

#: journal fields that differ between the shards of one job
_OWN = frozenset({"shard", "merged_from"})
_SOURCE = re.compile(r"(.*)[:#](\d+)")


@dataclass(frozen=True, slots=True, kw_only=True)
class MergeResult:
    """What a merge wrote."""

    report: str
    journal: str
    #: the shards the merged report covers
    shards: ShardSet
    #: the merged reports, in shard order
    inputs: tuple[str, ...]
    rows: int
    #: rows per outcome
    counts: Mapping[str, int]
    #: an earlier merge at the same path was replaced
    replaced: bool = False

    @property
    def missing(self) -> tuple[int, ...]:
        """Shards of the split that the merged report does not cover."""
        return self.shards.missing


@dataclass(frozen=True, slots=True)
class _Input:
    path: str
    shards: ShardSet
    meta: Mapping[str, Any]


class _InputOrder:
    """Sort key of a report row: its job file's rank, then its line or item number.

    A file's rank is the order in which the merged reports first name it (each report is in
    input order, so they agree on it); a source that is not ``FILE:N`` or ``FILE#N`` sorts
    as item 0 of a file of its own."""

    def __init__(self) -> None:
        self._ranks: dict[str, int] = {}

    def __call__(self, row: Mapping[str, str]) -> tuple[int, int]:
        source = row.get("source", "")
        match = _SOURCE.fullmatch(source)
        name, number = (match.group(1), int(match.group(2))) if match else (source, 0)
        return self._ranks.setdefault(name, len(self._ranks)), number


def _readable(path: str) -> None:
    if not os.path.exists(path):
        raise ConfigError(f"report {path}: no such file")
    if os.path.isdir(path):
        raise ConfigError(f"report {path} is a folder, not a report")
    report_format(path)


def _describe_input(path: str) -> _Input:
    journal = journal_path(path)
    meta = journal_meta(journal)
    if meta is None:
        raise ConfigError(
            f"report {path} has no journal ({journal}) beside it, so neither its job nor its "
            "shard can be told: put the journal back"
        )
    shard = meta.get("shard")
    if shard is None:
        raise ConfigError(
            f"report {path} is not a shard's report (its run had no --shard): it covers the "
            "whole job, so there is nothing to merge it with"
        )
    try:
        shards = ShardSet.parse(str(shard))
    except ValueError as exc:
        raise ConfigError(f"journal {journal}: shard {shard!r} cannot be read ({exc})") from None
    return _Input(path, shards, meta)


def _identity(meta: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in meta.items() if k not in _OWN}


def _job_difference(first: Mapping[str, Any], other: Mapping[str, Any]) -> str:
    a, b = _identity(first), _identity(other)
    diffs = []
    for key in sorted(set(a) | set(b)):
        if a.get(key) == b.get(key):
            continue
        if key == "job_sha256":
            diffs.append("the job files' contents differ")
        else:
            diffs.append(f"{key} {a.get(key)!r} and {b.get(key)!r}")
    return "; ".join(diffs)


def _check_split(inputs: Sequence[_Input], *, partial: bool) -> ShardSet:
    """The shards the inputs cover together; ``ConfigError`` when they are not one job's
    shards of one split, or (without ``partial``) some are missing."""
    first = inputs[0]
    held: dict[int, str] = {}
    for item in inputs:
        if item.shards.count != first.shards.count:
            raise ConfigError(
                f"{first.path} is {first.shards.describe()} and {item.path} is "
                f"{item.shards.describe()}: shards of splits into different numbers overlap "
                "(most locations move with N); merge the shards of one --shard K/N split"
            )
        if difference := _job_difference(first.meta, item.meta):
            raise ConfigError(
                f"{first.path} and {item.path} are reports of different jobs ({difference}): "
                "merge the shards of one job, run with the same job files and options"
            )
        for index in sorted(item.shards.indexes):
            if index in held:
                raise ConfigError(
                    f"shard {index}/{first.shards.count} is in both {held[index]} and "
                    f"{item.path}: each shard may be merged once"
                )
            held[index] = item.path
    covered = ShardSet.of(held, first.shards.count)
    if covered.missing and not partial:
        missing = ", ".join(str(k) for k in covered.missing)
        raise ConfigError(
            f"no report given for shard(s) {missing} of {covered.count}: merge the reports of "
            f"all {covered.count} shards, or pass --partial to merge these (the merged report "
            "can then be rolled back, but not resumed)"
        )
    return covered


def _ended_rows(item: _Input) -> int:
    """The rows its run wrote at the end (checking every journal line on the way)."""
    last: Mapping[str, Any] | None = None
    for last in journal_entries(journal_path(item.path)):  # noqa: B007 - the last one counts
        pass
    rows = None if last is None else last.get("rows")
    if last is None or "end" not in last or not isinstance(rows, int):
        raise ConfigError(
            f"report {item.path} ({item.shards.describe()}) is unfinished: its run stopped "
            "before rewriting it whole (killed?); resume that shard (run ... --shard "
            f"{item.shards} --report {item.path} --resume), then merge"
        )
    return rows


def _columns(path: str) -> tuple[str, ...] | None:
    """The report's columns (a CSV header; a JSON Lines report's first row's), None when a
    JSON Lines report has no row to tell."""
    try:
        if report_format(path) is ReportFormat.CSV:
            with open(path, encoding="utf-8-sig", newline="") as fh:
                header = next(csv.reader(fh), None)
            return None if header is None else tuple(header)
        first = next(iter_report(path), None)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"report {path}: cannot be read ({_reason(exc)})") from None
    return None if first is None else tuple(first)


def _reason(exc: Exception) -> str:
    return os_error_text(exc) if isinstance(exc, OSError) else "not UTF-8"


def _rows(path: str) -> Iterator[dict[str, str]]:
    try:
        yield from iter_report(path)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"report {path}: cannot be read ({_reason(exc)})") from None


def _check_rows(item: _Input, expected: int, counts: Counter[str]) -> int:
    """Every row is of the report's shards, and there are as many as its run wrote; counts
    the rows per outcome into ``counts``, and returns how many there are."""
    count = 0
    for row in _rows(item.path):
        count += 1
        counts[row.get("outcome", "")] += 1
        location = row.get("location_id", "")
        if not item.shards.owns(location):
            owner = shard_of(location, item.shards.count)
            raise ConfigError(
                f"report {item.path} ({item.shards.describe()}) has a row of location "
                f"{location!r} ({row.get('source', '')}), which is shard {owner}'s: it is not "
                "that shard's report"
            )
    if count != expected:
        raise ConfigError(
            f"report {item.path} has {count} rows but its run wrote {expected}: it was "
            "changed after the run; restore it, or resume its shard to rewrite it"
        )
    return count


def _replaceable(out: str) -> bool:
    """Whether ``out`` may be written: it does not exist (False), or it is an earlier merge
    that no run has resumed since (True). ``ConfigError`` otherwise."""
    journal = journal_path(out)
    if not os.path.lexists(out) and not os.path.lexists(journal):
        return False
    if os.path.isdir(out):
        raise ConfigError(f"report {out} is a folder: give a file path ({out}/merged.csv?)")
    meta = journal_meta(journal) if os.path.exists(journal) else None
    last: Mapping[str, Any] | None = None
    if meta is not None and "merged_from" in meta:
        for last in journal_entries(journal):  # noqa: B007 - the last one counts
            pass
    if last is None or last.get("end") != "merge":
        raise ConfigError(
            f"report {out} already exists and is not an earlier merge left as it was (a "
            "report may be the only record of what a run created, and is never "
            "overwritten): choose another path"
        )
    return True


def _intents(inputs: Sequence[_Input]) -> Iterator[Mapping[str, Any]]:
    for item in inputs:
        for entry in journal_entries(journal_path(item.path)):
            if "end" not in entry:
                yield entry


def merge_reports(out: str, reports: Sequence[str], *, partial: bool = False) -> MergeResult:
    """Merge the reports (and journals) of a job's shards into ``out`` (and its journal).

    Raises ``ConfigError``, having written nothing, when they are not the whole, finished
    reports of one job's shards of one split (see the module docstring; ``partial`` allows
    missing shards), when ``out`` exists and is not an earlier merge, or when a report is
    in use by a run. Raises ``StorageError`` when ``out`` cannot be written (what was
    there before stays)."""
    if not reports:
        raise ConfigError("report merge needs the reports of the shards to merge")
    report_format(out)
    given: dict[str, str] = {}
    for path in reports:
        real = os.path.realpath(path)
        if real in given:
            raise ConfigError(f"report {path} is given twice ({given[real]}): give each once")
        given[real] = path
        _readable(path)
        if os.path.abspath(path) == os.path.abspath(out) or (
            os.path.exists(out) and os.path.samefile(path, out)
        ):
            raise ConfigError(f"{out} is one of the reports to merge: merge into another path")
    with contextlib.ExitStack() as locks:
        locks.enter_context(FileLock(out, what="report"))
        inputs = []
        for path in reports:
            locks.enter_context(FileLock(path, what="report", reading=True))
            inputs.append(_describe_input(path))
        inputs.sort(key=lambda item: min(item.shards.indexes))
        covered = _check_split(inputs, partial=partial)
        replaced = _replaceable(out)
        columns: tuple[str, ...] | None = None
        total = 0
        counts: Counter[str] = Counter()
        for item in inputs:
            total += _check_rows(item, _ended_rows(item), counts)
            found = _columns(item.path)
            if found is not None and columns is not None and found != columns:
                raise ConfigError(
                    f"reports {inputs[0].path} and {item.path} have different columns: they "
                    "were not written by the same release for the same job"
                )
            columns = columns or found
        _write(out, inputs, covered, columns or (), total)
        return MergeResult(
            report=out,
            journal=journal_path(out),
            shards=covered,
            inputs=tuple(item.path for item in inputs),
            rows=total,
            counts=dict(counts),
            replaced=replaced,
        )


def _write(
    out: str, inputs: Sequence[_Input], covered: ShardSet, columns: Sequence[str], rows: int
) -> None:
    meta: dict[str, Any] = _identity(inputs[0].meta)
    if covered.missing:
        meta["shard"] = str(covered)  # so that --resume refuses it
    meta["merged_from"] = [os.path.basename(item.path) for item in inputs]
    journal = journal_path(out)
    pending = f"{journal}.merging"
    try:
        # The journal is written first, under another name, and takes its place last: a
        # failure to write either leaves what was at ``out`` before (an earlier merge).
        write_journal(pending, meta, chain(_intents(inputs), [{"end": "merge", "rows": rows}]))
        merged = heapq.merge(*(_rows(item.path) for item in inputs), key=_InputOrder())
        write_report_atomically(out, columns, merged)
        try:
            os.replace(pending, journal)
        except OSError as exc:
            raise StorageError(journal, exc) from exc
        # The shards' timelines, one after another: the merged report's page shows them all.
        merge_timelines([timeline_path(item.path) for item in inputs], timeline_path(out))
    finally:
        with contextlib.suppress(OSError):
            os.unlink(pending)
