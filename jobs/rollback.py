"""Rollback: delete exactly the definitions that earlier runs report as ``created``.

Deleting a definition in HighLevel also deletes every record-level relation that uses it,
so a rollback is exact and explains itself first:

- only rows whose latest outcome is ``created`` are undone; ``exists`` (there before the
  run), ``conflict`` and everything else are never touched;
- each delete goes by id and checks first that the id still carries the same key in the same
  location (``conflict`` otherwise), with that location's own token;
- reports of interrupted and resumed runs, and the append-only reports left by a killed
  run, are read row by row and de-duplicated (the last row for a record wins).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from engine import ConfigError, Record, journal_path, pending_intents, read_report

from .associations import COLUMNS, CREATED, AssociationsJob

__all__ = ["RollbackPlan", "plan_rollback"]

_NEEDED = frozenset({"source", "location_id", "action", "key", "outcome", "association_id"})


@dataclass(frozen=True, slots=True, kw_only=True)
class RollbackPlan:
    """The deletes a rollback would send, and what a person should know before it does."""

    records: tuple[Record, ...]
    reports: tuple[str, ...]
    #: creates noted in a journal that never got a report row (run --resume settles them)
    unsettled: int = 0

    @property
    def by_location(self) -> dict[str, int]:
        """How many definitions each location would lose."""
        return dict(Counter(r.location_id for r in self.records))


def _rows(path: str) -> list[dict[str, str]]:
    if not os.path.exists(path):
        raise ConfigError(f"report {path}: no such file")
    try:
        rows = read_report(path)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"report {path}: cannot be read ({exc})") from None
    if rows and not set(rows[0]) >= _NEEDED:
        missing = ", ".join(sorted(_NEEDED - set(rows[0])))
        raise ConfigError(f"report {path}: not a ghl-migrate run report (no {missing} column)")
    return rows


def _unsettled(path: str, settled: set[str]) -> int:
    journal = journal_path(path)
    if not os.path.exists(journal):
        return 0
    return len(pending_intents(journal, action="create") - settled)


def plan_rollback(reports: Sequence[str]) -> RollbackPlan:
    """Read ``reports`` and list the deletes that undo their ``created`` rows."""
    if not reports:
        raise ConfigError("rollback needs at least one report")
    latest: dict[str, tuple[str, dict[str, str]]] = {}
    unsettled = 0
    for path in reports:
        rows = _rows(path)
        if rows and all(r.get("action") == "delete" for r in rows):
            raise ConfigError(
                f"report {path} holds only deletes (a rollback or delete run): rollback undoes "
                "creates; to restore definitions, run the original job again"
            )
        name = os.path.basename(path)
        for number, row in enumerate(rows, start=1):
            if row.get("action", "create") == "create":
                latest[AssociationsJob.row_ident(row)] = (f"{name}#{number}", row)
        settled = {
            i for i, (_, row) in latest.items() if row["outcome"] in AssociationsJob.final_statuses
        }
        unsettled += _unsettled(path, settled)
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
    return RollbackPlan(records=tuple(records), reports=tuple(reports), unsettled=unsettled)


assert set(COLUMNS) >= _NEEDED  # the rollback reads what run writes
