"""What both HighLevel job kinds do alike: say how a request failed, fail a location that
cannot be read, and read every page of a location's association definitions."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engine import (
    FAILED,
    RETRYABLE_STATUSES,
    Exchange,
    HTTPStatusError,
    LocationError,
    MissingToken,
    Outcome,
    Record,
    Request,
    RequestError,
    Send,
    Steps,
)

from .highlevel import error_text, json_body
from .routes import Routes, associations_from

__all__ = [
    "Failure",
    "answered",
    "definitions",
    "failure",
    "location_error",
    "refused",
    "require_ok",
]


@dataclass(frozen=True, slots=True)
class Failure:
    """How a request failed, ready to become a record's outcome or a location's error."""

    error: str
    http_status: int | None
    attempts: int

    def outcome(self, record: Record, fields: Mapping[str, str] | None = None) -> Outcome:
        """A ``failed`` outcome for ``record`` saying this."""
        return Outcome(
            record=record,
            status=FAILED,
            http_status=self.http_status,
            attempts=self.attempts,
            error=self.error,
            fields=dict(fields or {}),
        )


def answered(
    record: Record,
    status: str,
    answer: Exchange,
    fields: Mapping[str, str] | None = None,
    error: str = "",
) -> Outcome:
    """The outcome ``status`` of ``record``, settled by ``answer`` (its HTTP status and the
    attempts it took)."""
    return Outcome(
        record=record,
        status=status,
        http_status=answer.response.status,
        attempts=answer.attempts,
        fields=dict(fields or {}),
        error=error,
    )


def refused(record: Record, answer: Exchange, fields: Mapping[str, str] | None = None) -> Outcome:
    """``failed``, with what the server said in ``answer``."""
    return answered(record, FAILED, answer, fields, error_text(answer.response))


def failure(exc: RequestError, what: str) -> Failure:
    """What was being done and what the server said (NestJS message, HTML page...)."""
    if isinstance(exc, HTTPStatusError):
        text = error_text(exc.response)
        if exc.status in RETRYABLE_STATUSES:
            text = f"gave up after {exc.attempts} attempts, last {text}"
        return Failure(f"{what}: {text}", exc.status, exc.attempts)
    return Failure(f"{what}: {exc}", None, exc.attempts)


def location_error(location_id: str, exc: RequestError) -> LocationError:
    """Why no record of a location can be carried out, when reading it failed."""
    if isinstance(exc, MissingToken):
        return LocationError(
            f"no token for location {location_id}: add it to --tokens or set "
            f"GHL_TOKEN_{location_id}"
        )
    failed = failure(exc, f"reading location {location_id}")
    return LocationError(failed.error, http_status=failed.http_status, attempts=failed.attempts)


def require_ok(request: Request, answer: Exchange, what: str) -> None:
    """A read the job depends on must succeed (bad token, wrong location: stop here)."""
    if answer.response.status != 200:
        exc = HTTPStatusError(what, request=request, response=answer.response)
        exc.attempts = answer.attempts
        raise exc


def definitions(routes: Routes, location: str) -> Steps[list[dict[str, Any]]]:
    """Every association definition of ``location``, each once, reading page after page.

    Until an empty page: the service may return fewer than asked while more remain. A page
    with nothing new means the server ignores ``skip``: stop rather than loop. The guide's
    route set has one page.
    """
    found: dict[str, dict[str, Any]] = {}
    skip = 0
    while True:
        request = routes.list(location, skip)
        answer = yield Send(request)
        require_ok(request, answer, "listing associations")
        page = associations_from(json_body(answer.response))
        fresh = [item for item in page if _identity(item) not in found]
        for item in fresh:
            found[_identity(item)] = item
        if not routes.official or not page or not fresh:
            return list(found.values())
        skip += len(page)


def _identity(item: Mapping[str, Any]) -> str:
    # SYSTEM_DEFINED definitions carry their key as id; a missing id falls back to the key.
    return str(item.get("id") or item["key"])
