"""Checking job files offline: every problem a run would report ``invalid``, and what is left.

``ghl-migrate validate`` answers "is this file right?" before anyone holds a token: it reads
the job files exactly as a run does (:mod:`engine.source`, the kind's ``parse``, the same
"repeats an earlier row" rule) and sends nothing. A job can hold a million rows, so the rows
go through a scratch store (:mod:`engine.store`) as in a run: the repeat check is the
store's, and the problems come back out in input order, one at a time. What stays in memory
is one count per location and action.

A file that cannot be read at all raises ``JobFileError`` (``ConfigError``), as a run would.
The scratch store goes beside the first job file when that folder is writable (as a run's
goes beside its report: ``/tmp`` is often memory), else in the temporary folder, and is
deleted at the end.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from .job import JobKind
from .loading import load_job_files
from .model import INVALID, Outcome
from .store import RunStore

__all__ = ["CheckSummary", "check_job_files"]


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckSummary:
    """What the job files hold."""

    records: int
    invalid: int
    #: (location, value of the grouping field) -> (valid records, invalid records)
    counts: Mapping[tuple[str, str], tuple[int, int]] = field(default_factory=dict)

    @property
    def valid(self) -> int:
        """Records a run would carry out."""
        return self.records - self.invalid


def check_job_files(
    kind: JobKind,
    paths: Sequence[str],
    *,
    by: str,
    problem: Callable[[Outcome], None],
) -> CheckSummary:
    """Read ``paths`` as a run would, call ``problem`` with each ``invalid`` outcome in
    input order, and count the records per location and per value of the record field
    ``by`` (``action``, say). Sends nothing, needs no token. Raises ``JobFileError`` when a
    file cannot be read."""
    store = RunStore(_scratch(paths))
    try:
        load_job_files(store, kind, paths)
        counts: dict[tuple[str, str], tuple[int, int]] = {}
        for (location, value, status), n in store.counts_by_field(by).items():
            valid, invalid = counts.get((location, value), (0, 0))
            if status == INVALID:
                invalid += n
            else:
                valid += n
            counts[(location, value)] = (valid, invalid)
        invalid_total = 0
        for outcome in store.outcomes(INVALID):
            invalid_total += 1
            problem(outcome)
        return CheckSummary(records=len(store), invalid=invalid_total, counts=counts)
    finally:
        store.close()


def _scratch(paths: Sequence[str]) -> str | None:
    """A path for the scratch store beside the first job file, or None (a temporary file)."""
    folder = os.path.dirname(os.path.abspath(paths[0])) if paths else ""
    if not folder or not os.access(folder, os.W_OK):
        return None
    fd, path = tempfile.mkstemp(prefix=".ghl-migrate-validate-", suffix=".store", dir=folder)
    os.close(fd)
    return path
