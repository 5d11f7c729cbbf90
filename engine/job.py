"""What a job kind provides to the generic engine.

A job kind knows one API: how rows look, how a record becomes requests, and what the
answers mean. The engine knows none of that; it reads files, schedules records, paces
locations, retries, journals and reports.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Protocol

from .client import Client
from .limiter import RateHint
from .model import Outcome, Record, Response

__all__ = ["JobContext", "JobKind", "Journal"]


class Journal(Protocol):
    """Where a kind notes a write *before* sending it, so a killed run can be resumed."""

    def intent(self, record: Record, fields: Mapping[str, str]) -> None:
        """Durably note that a write for ``record`` is about to be sent."""

    def pending(self, record: Record) -> bool:
        """Whether an earlier process noted a write for ``record`` and never finished it."""


class JobContext(Protocol):
    """What ``JobKind.process`` may use."""

    @property
    def client(self) -> Client: ...

    @property
    def journal(self) -> Journal: ...


class JobKind(Protocol):
    """One kind of job (for example HighLevel association definitions)."""

    #: short name, used in journals to refuse mixing jobs
    name: str
    #: report columns, in order
    columns: tuple[str, ...]
    #: outcomes that count as success (exit code 0)
    ok_statuses: frozenset[str]
    #: outcomes that a resumed run does not try again
    final_statuses: frozenset[str]

    def identity(self) -> Mapping[str, str]:
        """Settings a resumed run must share with the run it continues (API, base URL)."""
        ...

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

    def read_rate(self, response: Response) -> RateHint:
        """What a response says about its location's rate budget."""
        ...

    async def process(self, record: Record, ctx: JobContext) -> Outcome:
        """Carry out one record. Raising ``RequestError`` reports it ``failed``."""
        ...
