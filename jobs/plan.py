"""What ``ghl-migrate plan`` returns: the planned outcomes, and the drift beside them.

A plan is a run with ``RunConfig.plan`` set (see :mod:`engine.runner`): it reads every
location as the run would, sends no write, and gives each record the outcome the run would
have: ``create``, ``update`` or ``delete`` (a change is pending), ``exists`` or ``absent``
(nothing to do), ``conflict`` (the key links other objects; the error says which) or
``blocked`` (the run would not carry it out: an invalid row, an object the location does
not have, no token for the location; the error says why).

Next to that, a plan lists *drift*: per location, the USER_DEFINED definitions on the server
that no row of the job mentions (by key, or by id for a delete). They are shown so a person
can see what the job does not account for; nothing ever deletes them.

Exit codes follow Terraform's ``plan -detailed-exitcode``, for CI gates: 0 nothing to do,
2 changes pending, 1 when a record is in conflict or blocked (or a read failed). Without
``--detailed-exitcode``, 0 means the plan holds no error, whether or not changes are pending.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType

from engine import RunResult, Summary

__all__ = ["PlanResult", "drift_of"]


@dataclass(frozen=True, slots=True, kw_only=True)
class PlanResult:
    """A plan's outcomes (``result``, read on demand: close it), and its drift."""

    result: RunResult
    #: location -> keys of USER_DEFINED definitions there that no job row mentions (sorted)
    drift: Mapping[str, tuple[str, ...]]
    #: records that stay ``exists`` although their labels differ (no --update-labels)
    labels_differ: int = 0

    @property
    def summary(self) -> Summary:
        """The plan's summary (``pending``: records whose outcome is a change)."""
        return self.result.summary

    def exit_code(self, *, detailed: bool = False) -> int:
        """1 when a record is blocked or in conflict; else, with ``detailed``, 2 when
        changes are pending; else 0."""
        if self.summary.exit_code != 0:
            return 1
        return 2 if detailed and self.summary.pending else 0

    def close(self) -> None:
        """Release the outcomes' scratch file."""
        self.result.close()

    def __enter__(self) -> PlanResult:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def drift_of(
    server: Mapping[str, Mapping[str, str]], result: RunResult
) -> dict[str, tuple[str, ...]]:
    """Per location, the keys in ``server`` (location -> {key: id}, as the plan read them)
    that no record of ``result`` names by key or by id. Streams the outcomes once; memory
    follows the server's definitions, not the job."""
    left = {location: dict(keys) for location, keys in server.items() if keys}
    by_id: dict[str, dict[str, str]] = {}
    for outcome in result.outcomes:
        record = outcome.record
        keys = left.get(record.location_id)
        if not keys:
            continue
        keys.pop(record.get("key"), None)
        association_id = record.get("association_id")
        if association_id:
            ids = by_id.setdefault(
                record.location_id, {i: k for k, i in server[record.location_id].items()}
            )
            keys.pop(ids.get(association_id, ""), None)
    return {location: tuple(sorted(keys)) for location, keys in left.items() if keys}
