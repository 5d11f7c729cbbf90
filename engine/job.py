"""What a job kind provides to the generic engine, and nothing more.

A job kind knows one API: how its rows look, what to read of a location before writing
there, which requests carry out a record and what the answers mean. The engine knows none of
that; it reads files, stores records, schedules them round-robin across locations, paces
each location, retries, journals writes and reports.

The dependency is one-way: the engine calls the kind, the kind never calls the engine. Its
network work is a generator of :class:`~engine.steps.Send` steps that the engine drives
(:mod:`engine.steps`), and what the engine knows that the kind needs (whether an earlier,
interrupted run noted a write for this record) comes in as an argument.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Protocol

from .model import Outcome, Record, Response
from .rates import RateHint
from .steps import Steps

__all__ = ["JobKind"]


class JobKind(Protocol):
    """One kind of job (for example HighLevel association definitions, or relations)."""

    #: short name, used in journals to refuse mixing jobs
    name: str
    #: report columns, in order
    columns: tuple[str, ...]
    #: outcomes that count as success (exit code 0)
    ok_statuses: frozenset[str]
    #: outcomes that a resumed run does not try again
    final_statuses: frozenset[str]
    #: what makes two rows one record, for "repeats ... (same location, action and key)"
    same_record: str
    #: requests one record costs on a clean run, for time estimates
    requests_per_record: float

    def identity(self) -> Mapping[str, str]:
        """Settings a resumed run must share with the run it continues (API, base URL)."""
        ...

    # -- reading job files ----------------------------------------------------------------

    def canonical_field(self, name: str) -> str | None:
        """The canonical name of an input column or key, or None when it is unknown."""
        ...

    def expand(self, document: Mapping[str, Any], path: str) -> Iterator[Mapping[str, Any]]:
        """Rows of a JSON document that is an object rather than a list (a template).

        Raises ``JobFileError`` when the document is not a shape the kind knows.
        """
        ...

    def parse(self, source: str, values: Mapping[str, Any]) -> Record:
        """A record from one row (keys already canonical); raises ``RecordError``."""
        ...

    def invalid_record(self, source: str, values: Mapping[str, Any]) -> Record:
        """A record for a row that did not parse, keeping what can be shown in the report."""
        ...

    def row_ident(self, row: Mapping[str, str]) -> str:
        """The ``Record.ident`` of a report row (to match a report back to its records)."""
        ...

    def report_fields(self, record: Record) -> Mapping[str, str]:
        """The record's own report columns (for example ``action`` and ``key``)."""
        ...

    # -- carrying records out -------------------------------------------------------------

    def read_rate(self, response: Response) -> RateHint:
        """What a response says about its location's rate budget."""
        ...

    def prepare(self, location_id: str) -> Steps[Any]:
        """Read what the kind needs of a location before its records (run once per location;
        the result is handed to :meth:`process`). Raising ``LocationError`` fails every
        record of the location with its message."""
        ...

    def process(self, record: Record, state: Any, *, noted: Mapping[str, Any]) -> Steps[Outcome]:
        """Carry out one record. ``noted``: the intent an earlier process of this run noted
        for it (the ``Write.intent`` it yielded, with ``source``), empty when none; a change
        found in place may then be its own. Only what a run has not settled is processed
        again, so a noted intent means its outcome was never reported. A ``RequestError``
        left unhandled reports the record ``failed``."""
        ...
