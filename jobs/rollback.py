"""Rollback: delete exactly the definitions that earlier runs report as ``created``.

Deleting a definition in HighLevel also deletes every record-level relation that uses it,
so a rollback is exact and explains itself first:

- only rows whose latest outcome is ``created`` are undone; ``exists`` (there before the
  run), ``conflict`` and everything else are never touched;
- each delete goes by id and checks first that the id still carries the same key in the same
  location (``conflict`` otherwise), with that location's own token;
- reports of interrupted and resumed runs, and the append-only reports left by a killed
  run, are read row by row and de-duplicated (the last row for a record wins);
- the deletes go to the server the runs went to, as their journals record it (``--api`` and
  base URL), unless the caller says otherwise; reports from different servers are not mixed,
  and a report of an embedded-sandbox run is refused (that server, and all it held, is gone);
- each report is locked while it is read (and again while the rollback runs), so a rollback
  never reads a report that a run is still writing.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from engine import (
    ConfigError,
    FileLock,
    Record,
    journal_meta,
    journal_path,
    pending_intents,
    read_report,
)

from .associations import CREATED, AssociationsJob
from .highlevel import DEFAULT_BASE_URL
from .routes import Api

__all__ = ["RollbackPlan", "Server", "Unsettled", "plan_rollback"]

_NEEDED = frozenset({"source", "location_id", "action", "key", "outcome", "association_id"})


@dataclass(frozen=True, slots=True, kw_only=True)
class Unsettled:
    """A create noted in a journal (so perhaps sent) that has no final row in its report."""

    report: str
    location_id: str
    key: str

    def __str__(self) -> str:
        return f"{self.location_id}/{self.key}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Server:
    """Where a rollback sends its deletes, and what a person should be told about it."""

    api: str
    base_url: str
    #: one line each: where the choice came from, or why it differs from the journals
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class RollbackPlan:
    """The deletes a rollback would send, and what a person should know before it does."""

    records: tuple[Record, ...]
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

    @property
    def by_location(self) -> dict[str, int]:
        """How many definitions each location would lose."""
        return dict(Counter(r.location_id for r in self.records))

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


def _rows(path: str) -> list[dict[str, str]]:
    if not os.path.exists(path):
        raise ConfigError(f"report {path}: no such file")
    if os.path.isdir(path):
        raise ConfigError(f"report {path} is a folder, not a report")
    if os.path.getsize(path) == 0:
        raise ConfigError(
            f"report {path} is empty (0 bytes): it is not a run's report, or its run wrote "
            "nothing; there is nothing to roll back from it"
        )
    try:
        rows = read_report(path)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"report {path}: cannot be read ({exc})") from None
    if rows and not set(rows[0]) >= _NEEDED:
        missing = ", ".join(sorted(_NEEDED - set(rows[0])))
        raise ConfigError(f"report {path}: not a ghl-migrate run report (no {missing} column)")
    return rows


def _unsettled(path: str, settled: set[str]) -> list[Unsettled]:
    journal = journal_path(path)
    if not os.path.exists(journal):
        return []
    found = []
    for ident in sorted(pending_intents(journal, action="create") - settled):
        location_id, _, key = ident.split("\x1f", 2)  # AssociationsJob.row_ident
        found.append(Unsettled(report=path, location_id=location_id, key=key))
    return found


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

    Raises ``ConfigError`` for a report that cannot be read or is in use by a run, reports
    from different servers, and reports of embedded-sandbox runs."""
    if not reports:
        raise ConfigError("rollback needs at least one report")
    latest: dict[str, tuple[str, dict[str, str]]] = {}
    unsettled: list[Unsettled] = []
    servers: dict[tuple[str, str], str] = {}
    without_journal: list[str] = []
    fingerprints = []
    for path in reports:
        with FileLock(path, what="report", reading=True):
            rows = _rows(path)
            fingerprints.append(_fingerprint(path))
            if rows and all(r.get("action") == "delete" for r in rows):
                raise ConfigError(
                    f"report {path} holds only deletes (a rollback or delete run): rollback "
                    "undoes creates; to restore definitions, run the original job again"
                )
            name = os.path.basename(path)
            for number, row in enumerate(rows, start=1):
                if row.get("action", "create") == "create":
                    latest[AssociationsJob.row_ident(row)] = (f"{name}#{number}", row)
            settled = {
                i
                for i, (_, row) in latest.items()
                if row["outcome"] in AssociationsJob.final_statuses
            }
            unsettled += _unsettled(path, settled)
            server = _recorded_server(path)
        if server is None:
            without_journal.append(path)
        else:
            servers.setdefault(server, path)
    if len(servers) > 1:
        each = "; ".join(f"{path}: {url} (--api {api})" for (api, url), path in servers.items())
        raise ConfigError(
            f"the reports come from different servers ({each}): roll them back one server at a time"
        )
    records = []
    for source, row in latest.values():
        if row["outcome"] != CREATED:
            continue
        fields = {"action": "delete", "key": row["key"], "association_id": row["association_id"]}
        records.append(
            Record(
                source=source,
                location_id=row["location_id"],
                ident=AssociationsJob.row_ident({**fields, "location_id": row["location_id"]}),
                fields={k: v for k, v in fields.items() if v},
            )
        )
    recorded = next(iter(servers.items()), None)
    return RollbackPlan(
        records=tuple(records),
        reports=tuple(reports),
        unsettled=tuple(unsettled),
        api=None if recorded is None else recorded[0][0],
        base_url=None if recorded is None else recorded[0][1],
        recorded_in=None if recorded is None else journal_path(recorded[1]),
        without_journal=tuple(without_journal),
        fingerprints=tuple(fingerprints),
    )
