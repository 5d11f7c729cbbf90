"""Rollback: delete exactly the definitions or relations that earlier runs report ``created``.

Deleting a definition in HighLevel also deletes every record-level relation that uses it,
so a rollback is exact and explains itself first:

- only rows whose latest outcome is ``created`` are undone; ``exists`` (there before the
  run), ``conflict`` and everything else are never touched;
- a definition's delete goes by id and checks first that the id still carries the same key
  in the same location (``conflict`` otherwise); a relation's goes by its relation id (ids
  are never reused); each with that location's own token;
- the reports' kind comes from their journals (or, without one, their columns); reports of
  different kinds are not mixed;
- reports of interrupted and resumed runs, and the append-only reports left by a killed
  run, are read row by row and de-duplicated (the last row for a record wins) through a
  scratch SQLite file, so planning a million-row rollback holds no row in memory;
- the deletes go to the server the runs went to, as their journals record it (``--api`` and
  base URL), unless the caller says otherwise; reports from different servers are not mixed,
  and a report of an embedded-sandbox run is refused (that server, and all it held, is gone);
- each report is locked while it is read (and again while the rollback runs), so a rollback
  never reads a report that a run is still writing.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import tempfile
import weakref
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType

import orjson

from engine import (
    ConfigError,
    FileLock,
    Record,
    iter_intents,
    iter_report,
    journal_meta,
    journal_path,
)

from .associations import AssociationsJob
from .highlevel import DEFAULT_BASE_URL
from .kinds import ASSOCIATIONS, RELATIONS
from .relations import RelationsJob
from .routes import Api

__all__ = ["PlannedDeletes", "RollbackPlan", "Server", "Unsettled", "plan_rollback"]

CREATED = "created"
_NEEDED = {
    ASSOCIATIONS: frozenset(
        {"source", "location_id", "action", "key", "outcome", "association_id"}
    ),
    RELATIONS: frozenset(
        {"source", "location_id", "action", "association_key", "association_id",
         "first_record_id", "second_record_id", "outcome", "relation_id"}
    ),
}  # fmt: skip
_KINDS: dict[str, type[AssociationsJob] | type[RelationsJob]] = {
    ASSOCIATIONS: AssociationsJob,
    RELATIONS: RelationsJob,
}
#: what a rollback deletes, for messages
NOUNS = {ASSOCIATIONS: "definition", RELATIONS: "relation"}


@dataclass(frozen=True, slots=True, kw_only=True)
class Unsettled:
    """A create noted in a journal (so perhaps sent) that has no final row in its report."""

    report: str
    location_id: str
    #: the key (definitions), or the association key and the two records (relations)
    key: str

    def __str__(self) -> str:
        return f"{self.location_id}/{self.key}"


class _Latest:
    """The last row of each record over the reports read, in a scratch SQLite file.

    A killed and resumed run's report has several rows per record; a million-row report
    would not fit in memory as dicts, so the rows go to disk, keyed by record ident: a later
    row replaces an earlier one and keeps its place (first appearance order).
    """

    def __init__(self, near: str) -> None:
        folder = os.path.dirname(os.path.abspath(near))
        try:
            fd, path = tempfile.mkstemp(prefix=".ghl-rollback-", suffix=".sqlite", dir=folder)
        except OSError:
            fd, path = tempfile.mkstemp(prefix="ghl-rollback-", suffix=".sqlite")
        os.close(fd)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._cleanup = weakref.finalize(self, _remove, self._db, path)
        self._db.executescript(
            "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;"
            "CREATE TABLE latest (n INTEGER PRIMARY KEY, ident TEXT NOT NULL UNIQUE,"
            " loc TEXT NOT NULL, source TEXT NOT NULL, outcome TEXT NOT NULL, row BLOB NOT NULL);"
            "CREATE TABLE unsettled (n INTEGER PRIMARY KEY, report TEXT NOT NULL,"
            " ident TEXT NOT NULL UNIQUE);"
            "BEGIN;"
        )

    def put(self, ident: str, row: Mapping[str, str], source: str) -> None:
        self._db.execute(
            "INSERT INTO latest (ident, loc, source, outcome, row) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT(ident) DO UPDATE SET loc = excluded.loc, source = excluded.source,"
            " outcome = excluded.outcome, row = excluded.row",
            (ident, row["location_id"], source, row["outcome"], orjson.dumps(dict(row))),
        )

    def note_unsettled(self, report: str, idents: Iterator[str], final: frozenset[str]) -> None:
        """Keep each ident whose latest row is missing or not final (once)."""
        for ident in idents:
            found = self._db.execute(
                "SELECT outcome FROM latest WHERE ident = ?", (ident,)
            ).fetchone()
            if found is None or found[0] not in final:
                self._db.execute(
                    "INSERT OR IGNORE INTO unsettled (report, ident) VALUES (?, ?)", (report, ident)
                )

    def unsettled(self) -> list[tuple[str, str]]:
        return self._db.execute("SELECT report, ident FROM unsettled ORDER BY ident").fetchall()

    def created(self) -> Iterator[tuple[str, dict[str, str]]]:
        """(source, row) of every record whose last row is ``created``, in first order."""
        last = 0
        while True:
            chunk = self._db.execute(
                "SELECT n, source, row FROM latest WHERE n > ? AND outcome = ? ORDER BY n"
                " LIMIT 1000",
                (last, CREATED),
            ).fetchall()
            if not chunk:
                return
            for _, source, raw in chunk:
                yield source, orjson.loads(raw)
            last = chunk[-1][0]

    def count_created(self) -> int:
        (count,) = self._db.execute(
            "SELECT COUNT(*) FROM latest WHERE outcome = ?", (CREATED,)
        ).fetchone()
        return int(count)

    def created_by_location(self) -> dict[str, int]:
        return dict(
            self._db.execute(
                "SELECT loc, COUNT(*) FROM latest WHERE outcome = ? GROUP BY loc ORDER BY loc",
                (CREATED,),
            ).fetchall()
        )

    def close(self) -> None:
        self._cleanup()


def _remove(db: sqlite3.Connection, path: str) -> None:
    try:
        db.close()
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


class PlannedDeletes:
    """The deletes of a plan, read from its scratch file as they are iterated (re-iterable)."""

    def __init__(self, latest: _Latest, kind: str) -> None:
        self._latest = latest
        self._kind = kind
        self._size = latest.count_created()

    def __len__(self) -> int:
        return self._size

    def __bool__(self) -> bool:
        return self._size > 0

    def __iter__(self) -> Iterator[Record]:
        for source, row in self._latest.created():
            yield _delete_record(self._kind, source, row)

    def __repr__(self) -> str:
        return f"<{self._size} planned deletes>"


def _delete_record(kind: str, source: str, row: Mapping[str, str]) -> Record:
    """The delete that undoes a ``created`` report row."""
    if kind == RELATIONS:
        names = ("association_key", "association_id", "first_record_id", "second_record_id")
        fields = {"action": "delete", "relation_id": row.get("relation_id", "")}
        fields |= {name: row.get(name, "") for name in names}
    else:
        fields = {"action": "delete", "key": row["key"], "association_id": row["association_id"]}
    kept = {k: v for k, v in fields.items() if v}
    ident = _KINDS[kind].row_ident({**kept, "location_id": row["location_id"]})
    return Record(source=source, location_id=row["location_id"], ident=ident, fields=kept)


@dataclass(frozen=True, slots=True, kw_only=True)
class Server:
    """Where a rollback sends its deletes, and what a person should be told about it."""

    api: str
    base_url: str
    #: one line each: where the choice came from, or why it differs from the journals
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class RollbackPlan:
    """The deletes a rollback would send, and what a person should know before it does.

    Its deletes live in a scratch file until :meth:`close` (or the end of a ``with``)."""

    #: ``associations`` or ``relations``: what the reports' runs created
    kind: str
    records: PlannedDeletes
    reports: tuple[str, ...]
    #: creates noted in a journal that never got a final report row (their ids are unknown)
    unsettled: tuple[Unsettled, ...] = ()
    #: ``--api`` and base URL that the reports' journals record (None: no journal says)
    api: str | None = None
    base_url: str | None = None
    #: the journal the server was read from, and the reports that have no journal
    recorded_in: str | None = None
    without_journal: tuple[str, ...] = ()
    #: (size, modification time in ns) of each report when it was read
    fingerprints: tuple[tuple[int, int], ...] = ()
    _latest: _Latest | None = field(default=None, repr=False)

    @property
    def noun(self) -> str:
        """What each delete removes: ``definition`` or ``relation``."""
        return NOUNS[self.kind]

    @property
    def by_location(self) -> dict[str, int]:
        """How many definitions (or relations) each location would lose."""
        return {} if self._latest is None else self._latest.created_by_location()

    def close(self) -> None:
        """Delete the plan's scratch file."""
        if self._latest is not None:
            self._latest.close()

    def __enter__(self) -> RollbackPlan:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def check_unchanged(self) -> None:
        """Raise ``ConfigError`` when a report changed since the plan was made."""
        for path, seen in zip(self.reports, self.fingerprints, strict=False):
            if _fingerprint(path) != seen:
                raise ConfigError(
                    f"report {path} changed since the rollback was planned (a run wrote to "
                    "it meanwhile): plan the rollback again"
                )

    def server(self, *, api: str | None = None, base_url: str | None = None) -> Server:
        """Where the deletes go: ``api`` and ``base_url`` when given, else what the journals
        recorded, else the defaults. ``notes`` says which, and any difference."""
        notes: list[str] = []
        chosen_api = api or self.api or Api.ASSOCIATIONS.value
        chosen_url = (base_url or self.base_url or DEFAULT_BASE_URL).rstrip("/")
        if self.base_url is None:
            reports = ", ".join(self.without_journal)
            advice = "" if base_url else "; pass --base-url and --api if the run used others"
            notes.append(
                f"no journal beside {reports}, so the server its run used is unknown: rolling "
                f"back against {chosen_url} (--api {chosen_api}){advice}"
            )
            return Server(api=chosen_api, base_url=chosen_url, notes=tuple(notes))
        if self.without_journal:
            notes.append(
                f"no journal beside {', '.join(self.without_journal)}: assuming it came from "
                f"the same server as the others"
            )
        overridden = [
            f"--{name} {given}, not {recorded} as recorded in {self.recorded_in}"
            for name, given, recorded in (
                ("base-url", chosen_url, self.base_url.rstrip("/")),
                ("api", chosen_api, self.api),
            )
            if given != recorded
        ]
        if overridden:
            notes.append(f"using {'; '.join(overridden)}")
        else:
            notes.append(
                f"rolling back against {chosen_url} (--api {chosen_api}), as recorded in "
                f"{self.recorded_in}"
            )
        return Server(api=chosen_api, base_url=chosen_url, notes=tuple(notes))


def _fingerprint(path: str) -> tuple[int, int]:
    try:
        stat = os.stat(path)
    except OSError:
        return (-1, -1)
    return (stat.st_size, stat.st_mtime_ns)


def _check_file(path: str) -> None:
    if not os.path.exists(path):
        raise ConfigError(f"report {path}: no such file")
    if os.path.isdir(path):
        raise ConfigError(f"report {path} is a folder, not a report")
    if os.path.getsize(path) == 0:
        raise ConfigError(
            f"report {path} is empty (0 bytes): it is not a run's report, or its run wrote "
            "nothing; there is nothing to roll back from it"
        )


def _rows(path: str, kind: str) -> Iterator[dict[str, str]]:
    """The report's rows as they are read; the first is checked for the kind's columns."""
    try:
        for number, row in enumerate(iter_report(path)):
            if number == 0 and not set(row) >= _NEEDED[kind]:
                missing = ", ".join(sorted(_NEEDED[kind] - set(row)))
                raise ConfigError(
                    f"report {path}: not a ghl-migrate run report (no {missing} column; "
                    f"checked as a report of {kind})"
                )
            yield row
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"report {path}: cannot be read ({exc})") from None


def _kind_of_report(path: str, meta: Mapping[str, object] | None) -> str:
    """What the report's run created: its journal says; without one, its columns do."""
    if meta is not None and meta.get("kind") in _KINDS:
        return str(meta["kind"])
    try:
        first = next(iter_report(path), None)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"report {path}: cannot be read ({exc})") from None
    return RELATIONS if first is not None and "relation_id" in first else ASSOCIATIONS


def _describe(ident: str) -> tuple[str, str]:
    """(location, what) of a record ident, for the unsettled list."""
    location, _, rest = ident.partition("\x1f")
    parts = rest.split("\x1f")[1:]  # after the action
    if len(parts) == 3:  # relations: association, first, second
        return location, f"{parts[0]} {parts[1]} → {parts[2]}"
    return location, "/".join(parts)


def _recorded_server(path: str) -> tuple[str, str] | None:
    """(api, base URL) that the run which wrote ``path`` used, from its journal."""
    meta = journal_meta(journal_path(path))
    if meta is None:
        return None
    if meta.get("ephemeral") is True:
        raise ConfigError(
            f"report {path} came from an embedded-sandbox run (run --sandbox): that sandbox is "
            "gone with everything it held, so nothing real was created and there is nothing "
            "to roll back"
        )
    return (str(meta.get("api", Api.ASSOCIATIONS.value)), str(meta.get("base_url", "")))


def plan_rollback(reports: Sequence[str]) -> RollbackPlan:
    """Read ``reports`` and list the deletes that undo their ``created`` rows.

    Rows are streamed through a scratch file (the last row of each record wins), so memory
    does not grow with the reports. Raises ``ConfigError`` for a report that cannot be read
    or is in use by a run, reports of different kinds or from different servers, and
    reports of embedded-sandbox runs."""
    if not reports:
        raise ConfigError("rollback needs at least one report")
    for path in reports:
        _check_file(path)
    latest = _Latest(reports[0])
    try:
        return _plan(reports, latest)
    except BaseException:
        latest.close()
        raise


def _plan(reports: Sequence[str], latest: _Latest) -> RollbackPlan:
    servers: dict[tuple[str, str], str] = {}
    kinds: dict[str, str] = {}
    without_journal: list[str] = []
    fingerprints = []
    for path in reports:
        with FileLock(path, what="report", reading=True):
            fingerprints.append(_fingerprint(path))
            server = _recorded_server(path)
            kind = _kind_of_report(path, journal_meta(journal_path(path)))
            kinds.setdefault(kind, path)
            job = _KINDS[kind]
            name = os.path.basename(path)
            rows = deletes = 0
            for number, row in enumerate(_rows(path, kind), start=1):
                rows += 1
                if row.get("action", "create") == "create":
                    latest.put(job.row_ident(row), row, f"{name}#{number}")
                else:
                    deletes += 1
            if rows and deletes == rows:
                raise ConfigError(
                    f"report {path} holds only deletes (a rollback or delete run): rollback "
                    f"undoes creates; to restore {NOUNS[kind]}s, run the original job again"
                )
            journal = journal_path(path)
            if os.path.exists(journal):
                intents = iter_intents(journal, action="create")
                latest.note_unsettled(path, intents, job.final_statuses)
        if server is None:
            without_journal.append(path)
        else:
            servers.setdefault(server, path)
    if len(kinds) > 1:
        each = "; ".join(f"{path}: {kind}" for kind, path in kinds.items())
        raise ConfigError(
            f"the reports are of different kinds ({each}): roll each kind back separately"
        )
    if len(servers) > 1:
        each = "; ".join(f"{path}: {url} (--api {api})" for (api, url), path in servers.items())
        raise ConfigError(
            f"the reports come from different servers ({each}): roll them back one server at a time"
        )
    kind = next(iter(kinds))
    unsettled = []
    for report, ident in latest.unsettled():
        location, what = _describe(ident)
        unsettled.append(Unsettled(report=report, location_id=location, key=what))
    recorded = next(iter(servers.items()), None)
    return RollbackPlan(
        kind=kind,
        records=PlannedDeletes(latest, kind),
        reports=tuple(reports),
        unsettled=tuple(unsettled),
        api=None if recorded is None else recorded[0][0],
        base_url=None if recorded is None else recorded[0][1],
        recorded_in=None if recorded is None else journal_path(recorded[1]),
        without_journal=tuple(without_journal),
        fingerprints=tuple(fingerprints),
        _latest=latest,
    )
