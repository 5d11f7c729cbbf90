"""From job files (or records given by a caller) to a sealed :class:`~engine.store.RunStore`.

Each row is parsed by the job kind as it is read and goes straight to the store, so memory
does not grow with the job. A row that does not parse is kept as an ``invalid`` record with
the reason; a row that repeats an earlier row's record is marked ``invalid`` when the store
is sealed. Nothing is sent while this runs: a file that turns out to be unreadable halfway
raises ``JobFileError`` before the run starts.

With a shard (:mod:`engine.shard`), the records of other shards' locations are read and
checked like any other (a broken file is broken for every shard) but are simply not this
run's: they never reach the store, the report or the journal. Duplicates are decided within
the shard, which loses nothing, since a record's ident includes its location.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from .errors import RecordError
from .job import JobKind
from .model import INVALID, Outcome, Record
from .shard import Shard
from .source import SourceRow, read_job_files
from .store import RunStore

__all__ = ["load_job_files", "load_records", "parse_row"]


def parse_row(kind: JobKind, row: SourceRow) -> tuple[Record, str]:
    """The record of ``row`` and, when it is invalid, why (else ``""``)."""
    if row.problem:
        return kind.invalid_record(row.source, row.values), row.problem
    try:
        return kind.parse(row.source, row.values), ""
    except RecordError as exc:
        return kind.invalid_record(row.source, row.values), str(exc)


def load_job_files(
    store: RunStore, kind: JobKind, paths: Sequence[str], *, shard: Shard | None = None
) -> int:
    """Parse every row of ``paths`` into ``store`` and seal it; with ``shard``, only the
    records of its locations. Returns how many records were left to other shards."""
    others = 0
    for row in read_job_files(paths, kind):
        record, problem = parse_row(kind, row)
        if shard is not None and not shard.owns(record.location_id):
            others += 1
        elif problem:
            store.add(record, Outcome(record=record, status=INVALID, error=problem))
        else:
            store.add(record)
    store.seal(kind.same_record)
    return others


def load_records(
    store: RunStore, kind: JobKind, records: Iterable[Record], *, shard: Shard | None = None
) -> int:
    """Put records a caller built (a rollback plan, say) into ``store`` and seal it; with
    ``shard``, only those of its locations. Returns how many were left to other shards."""
    others = 0
    for record in records:
        if shard is not None and not shard.owns(record.location_id):
            others += 1
        else:
            store.add(record)
    store.seal(kind.same_record)
    return others
