"""The run journal: what lets a stopped or killed run be resumed without doing work twice.

It lives beside the report (``out.csv`` → ``out.csv.journal``) and is append-only JSON Lines:

- line 1 describes the run (job kind, its settings such as API and base URL, job files), so
  a report is never continued by a different job;
- every later line is an *intent*, written and flushed to the OS before a write request is
  sent: ``{"intent": ident, "source": ...}``.

A record that has an intent but whose change is found already in place on a later look was
changed by this job (its response was lost, or the process died), not by someone before it.
Intents are never removed, so that stays true across any number of resumes.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from .appendlog import AppendLog
from .errors import ConfigError
from .model import Record

__all__ = ["RunJournal", "journal_path", "pending_intents"]

_FORMAT = "ghl-migrate-journal/1"


def journal_path(report_path: str) -> str:
    """The journal file that belongs to ``report_path``."""
    return f"{report_path}.journal"


def _read(path: str) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """The run description and every intent of a journal; torn lines are skipped."""
    meta: dict[str, Any] | None = None
    intents: list[dict[str, Any]] = []
    with open(path, "rb") as fh:
        for number, line in enumerate(fh):
            try:
                item = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue  # a torn last line
            if not isinstance(item, dict):
                continue
            if number == 0:
                meta = item
            elif isinstance(item.get("intent"), str):
                intents.append(item)
    return meta, intents


def pending_intents(path: str, *, action: str | None = None) -> set[str]:
    """The record idents a journal noted writes for (optionally of one ``action`` only)."""
    return {
        item["intent"] for item in _read(path)[1] if action is None or item.get("action") == action
    }


def _describe_mismatch(found: Mapping[str, Any], expected: Mapping[str, Any]) -> str:
    diffs = [
        f"{key} was {found.get(key)!r}, now {value!r}"
        for key, value in expected.items()
        if found.get(key) != value
    ]
    return "; ".join(diffs)


class RunJournal:
    """Append-only intents for one report, checked against the run that made it."""

    def __init__(
        self,
        path: str,
        meta: Mapping[str, Any],
        *,
        sync_interval: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self._meta = {"format": _FORMAT, **meta}
        self._intents: set[str] = set()
        self._log = AppendLog(path, sync_interval=sync_interval, clock=clock)

    def open(self, *, resume: bool) -> None:
        """Start a new journal, or (``resume``) check and continue an existing one."""
        exists = os.path.exists(self.path) and os.path.getsize(self.path) > 0
        if exists:
            if not resume:
                raise ConfigError(
                    f"{self.path} exists from an earlier run: pass --resume to continue it, "
                    "or choose another --report path"
                )
            meta, intents = _read(self.path)
            self._intents = {item["intent"] for item in intents}
            if meta is None or meta.get("format") != _FORMAT:
                raise ConfigError(f"{self.path} is not a ghl-migrate journal; refusing to mix")
            if mismatch := _describe_mismatch(meta, self._meta):
                raise ConfigError(
                    f"{self.path} belongs to a different run ({mismatch}); "
                    "resume with the same job files and options, or choose another --report path"
                )
        # A torn last line (killed while noting an intent, so before that request was sent)
        # is cut, so that the next intent is a line of its own.
        if self._log.open():
            self._log.write(orjson.dumps(self._meta) + b"\n")
            self._log.sync()

    def intent(self, record: Record, fields: Mapping[str, str]) -> None:
        """Note, before sending it, that a write for ``record`` is about to go out."""
        # Flushed to the OS before the request leaves: survives kill -9.
        self._log.write(
            orjson.dumps({"intent": record.ident, "source": record.source, **fields}) + b"\n"
        )

    def pending(self, record: Record) -> bool:
        """Whether an earlier process noted a write for ``record`` (its effect is unknown)."""
        return record.ident in self._intents

    def sync(self) -> None:
        """Force noted intents to disk."""
        self._log.sync()

    def close(self) -> None:
        """Sync and close."""
        self._log.close()
