"""Rollback: delete exactly the definitions that earlier runs report as ``created``, and put
back the labels of those they report as ``updated``.

Deleting a definition in HighLevel also deletes every record-level relation that uses it,
so a rollback is exact and explains itself first:

- only rows whose latest outcome is ``created`` are deleted, and only rows whose latest
  outcome is ``updated`` get their previous labels back (the report's
  ``previous_first_label`` and ``previous_second_label``); ``exists`` (there before the
  run), ``conflict`` and everything else are never touched;
- an update noted in the journal (with the labels it replaces) that has no final row (the
  run was killed with it in flight) is restored too: the labels come from the journal;
- each delete or restore goes by id and checks first that the id still carries the same key
  in the same location (``conflict`` otherwise), with that location's own token;
- reports of interrupted and resumed runs, and the append-only reports left by a killed
  run, are read row by row and de-duplicated (the last row for a record wins);
- the deletes go to the server the runs went to, as their journals record it (``--api`` and
  base URL), unless the caller says otherwise; reports from different servers are not mixed,
  a report of an embedded-sandbox run is refused (that server, and all it held, is gone),
  and so is a plan's report (``ghl-migrate plan``: it changed nothing);
- each report is locked while it is read (and again while the rollback runs), so a rollback
  never reads a report that a run is still writing.
"""

from __future__ import annotations

import dataclasses
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from engine import (
    ConfigError,
    FileLock,
    Record,
    Shard,
    journal_intents,
    journal_meta,
    journal_path,
    pending_intents,
    read_report,
)

from .associations import (
    CREATED,
    PREVIOUS_FIRST,
    PREVIOUS_SECOND,
    RESTORE,
    UPDATED,
    AssociationsJob,
)
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
        """How many definitions each location would have deleted or relabelled."""
        return dict(Counter(r.location_id for r in self.records))

    @property
    def restores(self) -> int:
        """How many definitions would get their previous labels back (the rest are deleted)."""
        return sum(1 for r in self.records if r.get("action") == RESTORE)

    def for_shard(self, shard: Shard) -> RollbackPlan:
        """The part of the plan a rollback with ``--shard`` carries out: the records and
        unsettled creates of the shard's locations (the run itself filters by
        ``RunConfig.shard``; this is what to show before it)."""
        return dataclasses.replace(
            self,
            records=tuple(r for r in self.records if shard.owns(r.location_id)),
            unsettled=tuple(u for u in self.unsettled if shard.owns(u.location_id)),
        )

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


def _restore_fields(item: Mapping[str, str], labels: Mapping[str, Any]) -> dict[str, str]:
    return {
        "action": RESTORE,
        "key": str(item.get("key", "")),
        "association_id": str(item.get("association_id", "")),
        "first_object_label": str(labels.get(PREVIOUS_FIRST, "")),
        "second_object_label": str(labels.get(PREVIOUS_SECOND, "")),
    }


def _record(source: str, location_id: str, fields: Mapping[str, str]) -> Record:
    return Record(
        source=source,
        location_id=location_id,
        ident=AssociationsJob.row_ident({**fields, "location_id": location_id}),
        fields={k: v for k, v in fields.items() if v},
    )


def _unsettled_updates(path: str, settled: set[str]) -> list[Record]:
    """Label updates the journal noted, with the labels they replace, whose records have
    no final row: each may have been applied, so each is restored (a no-op if it was not)."""
    journal = journal_path(path)
    if not os.path.exists(journal):
        return []
    found: dict[str, Record] = {}
    name = os.path.basename(journal)
    for item in journal_intents(journal, action="update"):
        ident = str(item["intent"])
        if ident in settled or not item.get("association_id"):
            continue
        location_id = ident.split("\x1f", 1)[0]  # AssociationsJob.row_ident
        source = f"{name}: {item.get('source', '')}"
        found.setdefault(ident, _record(source, location_id, _restore_fields(item, item)))
    return list(found.values())


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

    Raises ``ConfigError`` for a report that cannot be read or is in use by a run, reports
    from different servers, and reports of embedded-sandbox runs."""
    if not reports:
        raise ConfigError("rollback needs at least one report")
    latest: dict[str, tuple[str, dict[str, str]]] = {}
    unsettled: list[Unsettled] = []
    servers: dict[tuple[str, str], str] = {}
    without_journal: list[str] = []
    fingerprints = []
    restores: list[Record] = []
    for path in reports:
        with FileLock(path, what="report", reading=True):
            rows = _rows(path)
            fingerprints.append(_fingerprint(path))
            if rows and all(r.get("action") in ("delete", RESTORE) for r in rows):
                raise ConfigError(
                    f"report {path} holds only deletes (a rollback or delete run): rollback "
                    "undoes creates; to restore definitions, run the original job again"
                )
            name = os.path.basename(path)
            for number, row in enumerate(rows, start=1):
                if row.get("action", "create") == "create":
                    ident = AssociationsJob.row_ident(row)
                    earlier = latest.get(ident)
                    # Created by one run, relabelled by a later one: deleting it undoes both.
                    if earlier is None or not (
                        earlier[1]["outcome"] == CREATED and row["outcome"] == UPDATED
                    ):
                        latest[ident] = (f"{name}#{number}", row)
            settled = {
                i
                for i, (_, row) in latest.items()
                if row["outcome"] in AssociationsJob.final_statuses
            }
            unsettled += _unsettled(path, settled)
            restores += _unsettled_updates(path, settled)
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
        if row["outcome"] == CREATED:
            fields = {
                "action": "delete",
                "key": row["key"],
                "association_id": row["association_id"],
            }
        elif row["outcome"] == UPDATED:
            fields = _restore_fields(row, row)
        else:
            continue
        records.append(_record(source, row["location_id"], fields))
    records += restores
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
