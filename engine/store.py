"""One run's records and outcomes, on disk, so that memory does not grow with the job.

A migration of relations can hold a million records. Kept in memory as objects, each record
and its outcome cost about 1.5 KB, so the job's size would set the process's size. The run
instead streams its records into a scratch SQLite file as it reads the job files, takes them
back out location by location in small batches while it works, writes each outcome there
as it finishes, and builds the final one-row-per-record report by reading the file back in
input order. What stays in memory is per location: a cursor and a short batch.

The file is scratch, not a record of the run: the report and the journal are that (they are
append-only and survive ``kill -9``). So the file is written without a rollback journal and
without syncs, and a run that finds one left over by a killed process simply starts a new
one. Everything in it can be rebuilt from the job files, the report and the journal.

Positions are 0-based input positions. A record's ``ident`` identifies it within the job;
rows that did not parse, and rows that repeat an earlier row's ident, have none.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import tempfile
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, overload

import orjson

from .model import INVALID, NOT_RUN, Outcome, Record

__all__ = ["OutcomeView", "RunStore"]

_SCHEMA = """
CREATE TABLE records (
    pos INTEGER PRIMARY KEY,
    loc TEXT NOT NULL,
    ident TEXT,
    source TEXT NOT NULL,
    fields BLOB NOT NULL,
    status TEXT,
    http_status INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0,
    error TEXT NOT NULL DEFAULT '',
    out BLOB,
    line BLOB
);
CREATE TABLE intents (ident TEXT PRIMARY KEY, fields BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE carried (ident TEXT PRIMARY KEY, row BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE extras (n INTEGER PRIMARY KEY, row BLOB NOT NULL);
"""
_COLUMNS = "pos, loc, ident, source, fields, status, http_status, attempts, error, out"
_RECORD = "pos, loc, ident, source, fields"  # the first of _COLUMNS: all a record needs
_BATCH = 5000  # rows per executemany while loading
_COMMIT_EVERY = 1000  # outcomes per commit while running (bounds SQLite's dirty pages)
_READ = 1000  # rows per query while reading outcomes back

Row = tuple[Any, ...]


def _record(row: Row) -> Record:
    return Record(
        source=row[3], location_id=row[1], ident=row[2] or "", fields=orjson.loads(row[4])
    )


def _outcome(row: Row) -> Outcome | None:
    if row[5] is None:
        return None
    return Outcome(
        record=_record(row),
        status=row[5],
        http_status=row[6],
        attempts=row[7],
        error=row[8],
        fields=orjson.loads(row[9]) if row[9] else {},
    )


def _remove(db: sqlite3.Connection, path: str) -> None:
    try:
        db.close()
    finally:
        for name in (path, f"{path}-journal"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name)


class RunStore:
    """Records in input order with their outcomes, in a scratch SQLite file.

    ``path`` None makes a temporary file (deleted by :meth:`close`); a given path is
    replaced if it exists (a scratch file left by a killed run).
    """

    def __init__(self, path: str | None = None) -> None:
        if path is None:
            fd, path = tempfile.mkstemp(prefix="ghl-migrate-", suffix=".sqlite")
            os.close(fd)
        for leftover in (path, f"{path}-journal"):
            if os.path.exists(leftover):
                os.unlink(leftover)
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        # Deleted with the last reference even if nobody calls close() (a library caller
        # dropping its RunResult): the file can be hundreds of MB.
        self._cleanup = weakref.finalize(self, _remove, self._db, path)
        self._db.executescript(
            "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; PRAGMA temp_store=FILE;" + _SCHEMA
        )
        self._db.execute("BEGIN")
        self._pending: list[Row] = []  # records to do: the other columns keep their defaults
        self._pending_done: list[Row] = []  # records with their outcome
        self._size = 0
        self._sealed = False
        self._outcomes: list[Row] = []  # set, not yet written
        self._has_intents = False

    # -- loading ------------------------------------------------------------------------

    def add(self, record: Record, outcome: Outcome | None = None) -> int:
        """Append the next input record (with its outcome when already known, e.g.
        ``invalid``); returns its position."""
        if self._sealed:
            raise RuntimeError("records are added before seal()")
        pos = self._size
        self._size += 1
        fields = orjson.dumps(record.fields, default=dict)
        if outcome is None:
            pending = self._pending
            pending.append((pos, record.location_id, record.ident or None, record.source, fields))
        else:
            pending = self._pending_done
            pending.append(
                (pos, record.location_id, None, record.source, fields, outcome.status,
                 outcome.http_status, outcome.attempts, outcome.error,
                 orjson.dumps(outcome.fields, default=dict) if outcome.fields else None)
            )  # fmt: skip
        if len(pending) >= _BATCH:
            self._flush()
        return pos

    def _flush(self) -> None:
        if self._pending:
            self._db.executemany(
                f"INSERT INTO records ({_RECORD}) VALUES (?, ?, ?, ?, ?)", self._pending
            )
            self._pending.clear()
        if self._pending_done:
            placeholders = ", ".join("?" * 10)
            self._db.executemany(
                f"INSERT INTO records ({_COLUMNS}) VALUES ({placeholders})", self._pending_done
            )
            self._pending_done.clear()

    def seal(self, repeats: str = "the same record") -> int:
        """End loading: index the records and mark every record whose ident an earlier
        record already has as ``invalid`` ("repeats SOURCE (``repeats``)"). Returns how
        many were marked."""
        self._flush()
        db = self._db
        db.execute("CREATE INDEX by_ident ON records(ident) WHERE ident IS NOT NULL")
        db.execute("CREATE INDEX by_loc ON records(loc, pos)")
        marked = db.execute(
            "UPDATE records SET status = ?, ident = NULL,"
            " error = 'repeats ' || (SELECT r.source FROM records AS r"
            "   WHERE r.ident = records.ident ORDER BY r.pos LIMIT 1) || ?"
            " WHERE ident IS NOT NULL AND pos > (SELECT MIN(r.pos) FROM records AS r"
            "   WHERE r.ident = records.ident)",
            (INVALID, f" ({repeats})"),
        ).rowcount
        db.execute("COMMIT")
        db.execute("BEGIN")
        self._sealed = True
        return marked

    # -- what an earlier run left (resume) -------------------------------------------------

    def carry(self, ident: str, row: Mapping[str, str] | None) -> None:
        """Note the latest word of an earlier report on ``ident``: a final row to keep,
        or None when a later row said it must run again. Call in report order."""
        if row is None:
            self._db.execute("DELETE FROM carried WHERE ident = ?", (ident,))
        else:
            self._db.execute(
                "INSERT OR REPLACE INTO carried (ident, row) VALUES (?, ?)",
                (ident, orjson.dumps(dict(row))),
            )

    def carried(self) -> Iterator[tuple[tuple[int, Record] | None, dict[str, str]]]:
        """Each carried row with the record it settles, as (position, record): a record of
        this job still without an outcome, or None when there is none (the ident left the
        job, or the record already has an outcome from the job files, such as ``invalid``)."""
        self._write_outcomes()
        last = ""
        while True:
            chunk = self._db.execute(
                "SELECT ident, row FROM carried WHERE ident > ? ORDER BY ident LIMIT 1000",
                (last,),
            ).fetchall()
            if not chunk:
                return
            for ident, raw in chunk:
                found = self._db.execute(
                    f"SELECT {_RECORD} FROM records WHERE ident = ? AND status IS NULL", (ident,)
                ).fetchone()
                yield ((found[0], _record(found)) if found else None), orjson.loads(raw)
            last = chunk[-1][0]

    def has_ident(self, ident: str) -> bool:
        """Whether a record of this job has ``ident``."""
        found = self._db.execute("SELECT 1 FROM records WHERE ident = ?", (ident,)).fetchone()
        return found is not None

    def keep_extra(self, row: Mapping[str, Any]) -> None:
        """Keep a report row that belongs to no record of this job (it follows the job's
        rows in the final report), so that no fact an earlier run reported is lost."""
        self._db.execute("INSERT INTO extras (row) VALUES (?)", (orjson.dumps(dict(row)),))

    def extras(self) -> Iterator[dict[str, Any]]:
        """The rows kept with :meth:`keep_extra`, in the order they were kept."""
        for (raw,) in self._db.execute("SELECT row FROM extras ORDER BY n").fetchall():
            yield orjson.loads(raw)

    def note_intents(self, intents: Iterable[tuple[str, Mapping[str, Any]]]) -> None:
        """Remember the intents an earlier process noted, as (ident, fields) in journal
        order; the last one per ident wins (see :meth:`noted`)."""
        self._db.executemany(
            "INSERT OR REPLACE INTO intents (ident, fields) VALUES (?, ?)",
            ((ident, orjson.dumps(dict(fields))) for ident, fields in intents),
        )
        self._has_intents = self._db.execute("SELECT 1 FROM intents LIMIT 1").fetchone() is not None

    def noted(self, ident: str) -> dict[str, Any] | None:
        """The fields of the last intent an earlier process noted for ``ident``, or None."""
        if not self._has_intents or not ident:
            return None
        found = self._db.execute("SELECT fields FROM intents WHERE ident = ?", (ident,)).fetchone()
        if found is None:
            return None
        fields: dict[str, Any] = orjson.loads(found[0])
        return fields

    # -- running ---------------------------------------------------------------------------

    def locations(self) -> list[str]:
        """Locations with records still to do, in the order they first appear in the input."""
        self._write_outcomes()
        return [
            loc
            for (loc,) in self._db.execute(
                "SELECT loc FROM records WHERE status IS NULL GROUP BY loc ORDER BY MIN(pos)"
            )
        ]

    def todo_counts(self) -> dict[str, int]:
        """Records still to do per location, in the order locations first appear."""
        self._write_outcomes()
        return {
            loc: n
            for loc, n in self._db.execute(
                "SELECT loc, COUNT(*) FROM records WHERE status IS NULL GROUP BY loc"
                " ORDER BY MIN(pos)"
            )
        }

    def todo(self, location: str, after: int, limit: int) -> list[tuple[int, Record]]:
        """Up to ``limit`` records of ``location`` still to do, after position ``after``."""
        self._write_outcomes()
        rows = self._db.execute(
            f"SELECT {_RECORD} FROM records WHERE loc = ? AND pos > ? AND status IS NULL"
            " ORDER BY pos LIMIT ?",
            (location, after, limit),
        ).fetchall()
        return [(row[0], _record(row)) for row in rows]

    def set_outcome(self, pos: int, outcome: Outcome, line: bytes | None = None) -> None:
        """Record what became of the record at ``pos`` (written in batches: every read of
        outcomes, and :meth:`commit`, writes what is waiting first). ``line``: its report
        line as the run wrote it, which the final report copies instead of encoding the row
        again (:meth:`report_lines`)."""
        if len(self._outcomes) >= _COMMIT_EVERY:
            self.commit()
        self._outcomes.append(
            (
                outcome.status,
                outcome.http_status,
                outcome.attempts,
                outcome.error,
                orjson.dumps(outcome.fields, default=dict) if outcome.fields else None,
                line,
                pos,
            )
        )

    def _write_outcomes(self) -> None:
        if self._outcomes:
            self._db.executemany(
                "UPDATE records SET status = ?, http_status = ?, attempts = ?, error = ?,"
                " out = ?, line = ? WHERE pos = ?",
                self._outcomes,
            )
            self._outcomes.clear()

    def commit(self) -> None:
        """Write the outcomes waiting, and end the transaction (bounds dirty pages)."""
        self._write_outcomes()
        self._db.execute("COMMIT")
        self._db.execute("BEGIN")

    # -- the end ---------------------------------------------------------------------------

    def settle_rest(self, error: str) -> int:
        """Every record still without an outcome becomes ``not_run`` with ``error``."""
        self._write_outcomes()
        count = self._db.execute(
            "UPDATE records SET status = ?, error = ? WHERE status IS NULL", (NOT_RUN, error)
        ).rowcount
        self.commit()
        return count

    def restatus(self, old: str, new: str) -> int:
        """Every outcome ``old`` becomes ``new`` (a plan calls invalid rows ``blocked``)."""
        self._write_outcomes()
        count = self._db.execute(
            "UPDATE records SET status = ?, line = NULL WHERE status = ?", (new, old)
        ).rowcount
        self.commit()
        return count

    def __len__(self) -> int:
        return self._size

    def counts(self) -> dict[str, int]:
        """Records per outcome status (``None`` for records without one yet is left out)."""
        self._write_outcomes()
        return {
            status: n
            for status, n in self._db.execute(
                "SELECT status, COUNT(*) FROM records WHERE status IS NOT NULL GROUP BY status"
            )
        }

    def count_by_location(self, statuses: frozenset[str]) -> dict[str, int]:
        """Records per location whose outcome is *not* one of ``statuses``."""
        self._write_outcomes()
        marks = ", ".join("?" * len(statuses))
        return {
            loc: n
            for loc, n in self._db.execute(
                f"SELECT loc, COUNT(*) FROM records WHERE status IS NULL OR status NOT IN"
                f" ({marks}) GROUP BY loc ORDER BY MIN(pos)",
                tuple(statuses),
            )
        }

    def counts_by_location(self) -> dict[str, dict[str, int]]:
        """Records per outcome status, per location (in the order locations first appear)."""
        self._write_outcomes()
        found: dict[str, dict[str, int]] = {}
        for loc, status, n in self._db.execute(
            "SELECT loc, status, COUNT(*) FROM records WHERE status IS NOT NULL"
            " GROUP BY loc, status ORDER BY MIN(pos)"
        ):
            found.setdefault(loc, {})[status] = n
        return found

    def counts_by_field(self, field: str) -> dict[tuple[str, str, str | None], int]:
        """Records per (location, record ``field``, outcome status: None while it has
        none), in the order they first appear."""
        self._write_outcomes()
        return {
            (loc, value or "", status): n
            for loc, value, status, n in self._db.execute(
                "SELECT loc, json_extract(CAST(fields AS TEXT), ?), status, COUNT(*)"
                " FROM records GROUP BY 1, 2, 3 ORDER BY MIN(pos)",
                (f'$."{field}"',),
            )
        }

    def count_with(self, status: str, field: str) -> int:
        """Outcomes ``status`` whose kind-specific ``field`` is set (not empty)."""
        self._write_outcomes()
        (count,) = self._db.execute(
            "SELECT COUNT(*) FROM records WHERE status = ? AND out IS NOT NULL"
            " AND COALESCE(json_extract(CAST(out AS TEXT), ?), '') != ''",
            (status, f'$."{field}"'),
        ).fetchone()
        return int(count)

    def outcome(self, pos: int) -> Outcome | None:
        """The outcome of the record at ``pos`` (None while it has none)."""
        self._write_outcomes()
        row = self._db.execute(f"SELECT {_COLUMNS} FROM records WHERE pos = ?", (pos,)).fetchone()
        if row is None:
            raise IndexError(pos)
        return _outcome(row)

    def outcomes(self, status: str | None = None) -> Iterator[Outcome]:
        """Every outcome in input order (after :meth:`settle_rest`, one per record), or
        only those with ``status``."""
        self._write_outcomes()
        last = -1
        where = "" if status is None else " AND status = ?"
        while True:
            chunk = self._db.execute(
                f"SELECT {_COLUMNS} FROM records WHERE pos > ?{where} ORDER BY pos LIMIT 1000",
                (last,) if status is None else (last, status),
            ).fetchall()
            if not chunk:
                return
            for row in chunk:
                outcome = _outcome(row)
                if outcome is not None:
                    yield outcome
            last = chunk[-1][0]

    def report_lines(self, encode: Callable[[Outcome], bytes]) -> Iterator[bytes]:
        """The report line of every outcome, in input order: the one given to
        :meth:`set_outcome`, else ``encode(outcome)``."""
        self._write_outcomes()
        last = -1
        while True:
            chunk = self._db.execute(
                f"SELECT {_COLUMNS}, line FROM records WHERE pos > ? ORDER BY pos LIMIT {_READ}",
                (last,),
            ).fetchall()
            if not chunk:
                return
            for row in chunk:
                if row[10] is not None:
                    yield row[10]
                elif (outcome := _outcome(row)) is not None:
                    yield encode(outcome)
            last = chunk[-1][0]

    def close(self) -> None:
        """Close and delete the file (again is harmless)."""
        self._cleanup()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` ran (the outcomes cannot be read any more)."""
        return not self._cleanup.alive


class OutcomeView(Sequence[Outcome]):
    """Every outcome of a finished run, read from its store on demand (input order)."""

    def __init__(self, store: RunStore) -> None:
        self._store = store

    def __len__(self) -> int:
        return len(self._store)

    @overload
    def __getitem__(self, index: int) -> Outcome: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[Outcome]: ...

    def __getitem__(self, index: int | slice) -> Outcome | Sequence[Outcome]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        outcome = self._store.outcome(index)
        if outcome is None:
            raise LookupError(f"record {index} has no outcome yet")
        return outcome

    def __iter__(self) -> Iterator[Outcome]:
        return self._store.outcomes()

    def __repr__(self) -> str:
        return f"<{len(self)} outcomes>"
