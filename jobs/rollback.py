"""Rollback: delete exactly the definitions or relations that earlier runs report ``created``,
and put back the labels of the definitions they report as ``updated``.

Deleting a definition in HighLevel also deletes every record-level relation that uses it,
so a rollback is exact and explains itself first:

- only rows whose latest outcome is ``created`` are deleted, and only rows whose latest
  outcome is ``updated`` get their previous labels back (the report's
  ``previous_first_label`` and ``previous_second_label``); ``exists`` (there before the
  run), ``conflict`` and everything else are never touched;
- an update noted in the journal (with the labels it replaces) that has no final row (the
  run was killed with it in flight) is restored too: the labels come from the journal;
- a definition's delete or restore goes by id and checks first that the id still carries
  the same key in the same location (``conflict`` otherwise); a relation's delete goes by
  its relation id (ids are never reused); each with that location's own token;
- the reports' kind comes from their journals (or, without one, their columns); reports of
  different kinds are not mixed;
- reports of interrupted and resumed runs, and the append-only reports left by a killed
  run, are read row by row and de-duplicated (the last row for a record wins) through a
  scratch SQLite file, so planning a million-row rollback holds no row in memory;
- the deletes go to the server the runs went to, as their journals record it (``--api`` and
  base URL), unless the caller says otherwise; reports from different servers are not mixed,
  a report of an embedded-sandbox run is refused (that server, and all it held, is gone),
  and so is a plan's report (``ghl-migrate plan``: it changed nothing);
- each report is locked while it is read (and again while the rollback runs), so a rollback
  never reads a report that a run is still writing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sqlite3
import tempfile
import weakref
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import orjson

from engine import (
    ConfigError,
    FileLock,
    Record,
    Shard,
    iter_report,
    journal_intents,
    journal_meta,
    journal_path,
)

from .association_rows import (
    CREATED,
    PREVIOUS_FIRST,
    PREVIOUS_SECOND,
    RESTORE,
    UPDATED,
)
from .associations import AssociationsJob
from .highlevel import DEFAULT_BASE_URL
from .kinds import ASSOCIATIONS, RELATIONS
from .relations import RelationsJob
from .routes import Api

__all__ = ["PlannedDeletes", "RollbackPlan", "Server", "Unsettled", "plan_rollback"]

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
            "CREATE TABLE restores (n INTEGER PRIMARY KEY, ident TEXT NOT NULL UNIQUE,"
            " loc TEXT NOT NULL, source TEXT NOT NULL, row BLOB NOT NULL);"
            "BEGIN;"
        )

    def put(self, ident: str, row: Mapping[str, str], source: str) -> None:
        """The record's latest row, except that a definition created by one run and
        relabelled by a later one stays ``created``: deleting it undoes both."""
        self._db.execute(
            "INSERT INTO latest (ident, loc, source, outcome, row) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT(ident) DO UPDATE SET loc = excluded.loc, source = excluded.source,"
            " outcome = excluded.outcome, row = excluded.row"
            " WHERE NOT (latest.outcome = ? AND excluded.outcome = ?)",
            (ident, row["location_id"], source, row["outcome"], orjson.dumps(dict(row)),
             CREATED, UPDATED),
        )  # fmt: skip

    def _settled(self, ident: str, final: frozenset[str]) -> bool:
        found = self._db.execute("SELECT outcome FROM latest WHERE ident = ?", (ident,)).fetchone()
        return found is not None and found[0] in final

    def note_unsettled(self, report: str, idents: Iterator[str], final: frozenset[str]) -> None:
        """Keep each ident whose latest row is missing or not final (once)."""
        for ident in idents:
            if not self._settled(ident, final):
                self._db.execute(
                    "INSERT OR IGNORE INTO unsettled (report, ident) VALUES (?, ?)", (report, ident)
                )

    def note_restore(
        self, ident: str, location: str, source: str, fields: Mapping[str, str],
        final: frozenset[str],
    ) -> None:  # fmt: skip
        """A label update noted in a journal whose record has no final row: restore it
        (the first noted wins; a no-op on the server if it was never applied)."""
        if not self._settled(ident, final):
            self._db.execute(
                "INSERT OR IGNORE INTO restores (ident, loc, source, row) VALUES (?, ?, ?, ?)",
                (ident, location, source, orjson.dumps(dict(fields))),
            )

    def unsettled(self) -> list[tuple[str, str]]:
        return self._db.execute("SELECT report, ident FROM unsettled ORDER BY ident").fetchall()

    def undone(self) -> Iterator[tuple[str, dict[str, str]]]:
        """(source, row) of every record whose last row is ``created`` or ``updated``, in
        first order, then the journal's unsettled updates (their rows hold the fields)."""
        for table, where in (("latest", "outcome IN (?, ?)"), ("restores", "? = ?")):
            args = (CREATED, UPDATED) if table == "latest" else (1, 1)
            last = 0
            while True:
                chunk = self._db.execute(
                    f"SELECT n, source, row FROM {table} WHERE n > ? AND {where} ORDER BY n"  # noqa: S608 - fixed names
                    " LIMIT 1000",
                    (last, *args),
                ).fetchall()
                if not chunk:
                    break
                for _, source, raw in chunk:
                    row = orjson.loads(raw)
                    if table == "restores":
                        row["outcome"] = RESTORE
                    yield source, row
                last = chunk[-1][0]

    def by_location(self) -> dict[str, tuple[int, int]]:
        """Per location: (deletes, restores)."""
        counts: dict[str, tuple[int, int]] = {}
        for location, outcome, count in self._db.execute(
            "SELECT loc, outcome, COUNT(*) FROM latest WHERE outcome IN (?, ?)"
            " GROUP BY loc, outcome",
            (CREATED, UPDATED),
        ).fetchall():
            deletes, restores = counts.get(location, (0, 0))
            if outcome == CREATED:
                counts[location] = (deletes + count, restores)
            else:
                counts[location] = (deletes, restores + count)
        for location, count in self._db.execute(
            "SELECT loc, COUNT(*) FROM restores GROUP BY loc"
        ).fetchall():
            deletes, restores = counts.get(location, (0, 0))
            counts[location] = (deletes, restores + count)
        return dict(sorted(counts.items()))

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

    def __init__(self, latest: _Latest, kind: str, shard: Shard | None = None) -> None:
        self._latest = latest
        self._kind = kind
        self._shard = shard
        self._counts = {
            location: counts
            for location, counts in latest.by_location().items()
            if shard is None or shard.owns(location)
        }
        #: how many of the planned records restore labels (the rest delete)
        self.restores = sum(restores for _, restores in self._counts.values())
        self._size = sum(deletes + restores for deletes, restores in self._counts.values())

    @property
    def by_location(self) -> dict[str, int]:
        """Planned records per location."""
        return {location: sum(counts) for location, counts in self._counts.items()}

    def only(self, shard: Shard) -> PlannedDeletes:
        """The planned records of ``shard``'s locations."""
        return PlannedDeletes(self._latest, self._kind, shard)

    def __len__(self) -> int:
        return self._size

    def __bool__(self) -> bool:
        return self._size > 0

    def __iter__(self) -> Iterator[Record]:
        for source, row in self._latest.undone():
            if self._shard is None or self._shard.owns(row["location_id"]):
                yield _undo_record(self._kind, source, row)

    def __repr__(self) -> str:
        return f"<{self._size} planned deletes>"


def _restore_fields(item: Mapping[str, Any], labels: Mapping[str, Any]) -> dict[str, str]:
    return {
        "action": RESTORE,
        "key": str(item.get("key", "")),
        "association_id": str(item.get("association_id", "")),
        "first_object_label": str(labels.get(PREVIOUS_FIRST, "")),
        "second_object_label": str(labels.get(PREVIOUS_SECOND, "")),
    }


def _undo_record(kind: str, source: str, row: Mapping[str, str]) -> Record:
    """The delete that undoes a ``created`` report row, or the restore of an ``updated``
    one (or of an update the journal noted)."""
    if kind == RELATIONS:
        names = ("association_key", "association_id", "first_record_id", "second_record_id")
        fields = {"action": "delete", "relation_id": row.get("relation_id", "")}
        fields |= {name: row.get(name, "") for name in names}
    elif row["outcome"] == UPDATED:
        fields = _restore_fields(row, row)
    elif row["outcome"] == RESTORE:  # from the journal: the row holds the restore already
        fields = {k: str(v) for k, v in row.items() if k not in ("outcome", "location_id")}
    else:
        fields = {"action": "delete", "key": row["key"], "association_id": row["association_id"]}
    if kind != RELATIONS:
        fields["location_name"] = row.get("location_name", "")  # agency runs name locations
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
        """How many definitions (or relations) each location would have deleted or
        relabelled."""
        return self.records.by_location

    @property
    def restores(self) -> int:
        """How many definitions would get their previous labels back (the rest are deleted)."""
        return self.records.restores

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

    def for_shard(self, shard: Shard) -> RollbackPlan:
        """The part of the plan a rollback with ``--shard`` carries out: the records and
        unsettled creates of the shard's locations (the run itself filters by
        ``RunConfig.shard``; this is what to show before it). It shares this plan's
        scratch file: close either."""
        return dataclasses.replace(
            self,
            records=self.records.only(shard),
            unsettled=tuple(u for u in self.unsettled if shard.owns(u.location_id)),
        )

    @property
    def location_names(self) -> dict[str, str]:
        """The names the reports give the locations (agency runs name them), by id."""
        return {r.location_id: n for r in self.records if (n := r.get("location_name"))}

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


def _note_restores(latest: _Latest, journal: str, final: frozenset[str]) -> None:
    """Label updates the journal noted, with the labels they replace, whose records have
    no final row: each may have been applied, so each is restored (a no-op if it was not)."""
    name = os.path.basename(journal)
    for item in journal_intents(journal, action="update"):
        if not item.get("association_id"):
            continue
        ident = str(item["intent"])
        location = ident.split("\x1f", 1)[0]  # AssociationsJob.row_ident
        fields = {**_restore_fields(item, item), "location_id": location}
        source = f"{name}: {item.get('source', '')}"
        latest.note_restore(ident, location, source, fields, final)


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
    if meta.get("plan") is True:
        raise ConfigError(
            f"report {path} is a plan's (ghl-migrate plan): it changed nothing, so there is "
            "nothing to roll back"
        )
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
                elif row.get("action") in ("delete", RESTORE):
                    deletes += 1
            if rows and deletes == rows:
                raise ConfigError(
                    f"report {path} holds only deletes (a rollback or delete run): rollback "
                    f"undoes creates; to restore {NOUNS[kind]}s, run the original job again"
                )
            journal = journal_path(path)
            if os.path.exists(journal):
                intents = (str(i["intent"]) for i in journal_intents(journal, action="create"))
                latest.note_unsettled(path, intents, job.final_statuses)
                if kind == ASSOCIATIONS:
                    _note_restores(latest, journal, job.final_statuses)
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
