"""Values that cross layers: records, HTTP requests and responses, outcomes, summaries.

All of them are frozen, slotted dataclasses so they can be shared between tasks freely.
Nothing here knows about any particular API.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import orjson

__all__ = [
    "BLOCKED",
    "FAILED",
    "INVALID",
    "NOT_RUN",
    "LocationId",
    "Outcome",
    "Record",
    "Request",
    "Response",
]

LocationId: TypeAlias = str

#: Outcome statuses every job kind shares; kinds add their own success statuses.
FAILED = "failed"
INVALID = "invalid"
NOT_RUN = "not_run"
#: In a plan: the run would not carry the record out (an invalid row, a failed check).
BLOCKED = "blocked"

_SECRET_HEADERS = frozenset({"authorization"})


@dataclass(frozen=True, slots=True, kw_only=True)
class Record:
    """One input row, normalised by its job kind.

    ``ident`` identifies the record within a job (for duplicate detection and resume);
    ``fields`` holds the kind's normalised columns as strings.
    """

    source: str
    location_id: LocationId
    ident: str
    fields: Mapping[str, str] = field(default_factory=dict)

    def get(self, name: str) -> str:
        """The field ``name``, or ``""`` when the row did not give it."""
        return self.fields.get(name, "")


@dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    """An HTTP request for one location. The token is added by the engine at send time."""

    method: str
    url: str
    location_id: LocationId
    params: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    json: Any = None
    #: a body already encoded (a form, say; its ``Content-Type`` goes in ``headers``);
    #: sent instead of ``json``
    content: bytes | None = None

    @property
    def body(self) -> bytes | None:
        """The body to send: ``content``, else the JSON body serialised, else None."""
        if self.content is not None:
            return self.content
        return None if self.json is None else orjson.dumps(self.json)

    def with_headers(self, extra: Mapping[str, str]) -> Request:
        """A copy with ``extra`` merged into the headers."""
        # Not dataclasses.replace: it inspects the fields on every call, once per request.
        # Every field is copied (a test holds it to the dataclass's fields).
        return Request(
            method=self.method,
            url=self.url,
            location_id=self.location_id,
            params=self.params,
            headers={**self.headers, **extra},
            json=self.json,
            content=self.content,
        )

    def __repr__(self) -> str:
        shown = {
            k: ("<redacted>" if k.lower() in _SECRET_HEADERS else v)
            for k, v in self.headers.items()
        }
        return (
            f"Request(method={self.method!r}, url={self.url!r}, "
            f"location_id={self.location_id!r}, params={dict(self.params)!r}, headers={shown!r})"
        )

    __str__ = __repr__


@dataclass(frozen=True, slots=True, kw_only=True)
class Response:
    """A fully read HTTP response. Header names are lower-case."""

    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    elapsed: float = 0.0  #: seconds from send to last byte

    def json(self) -> Any:
        """The body parsed as JSON; raises ``ValueError`` when it is not JSON."""
        return orjson.loads(self.body)

    def header(self, name: str) -> str | None:
        """Header ``name`` (case-insensitive), or None."""
        return self.headers.get(name.lower())


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """What became of one record: exactly one per input record ends in the report."""

    record: Record
    status: str
    http_status: int | None = None
    attempts: int = 0
    error: str = ""
    #: kind-specific report columns (for example the created id)
    fields: Mapping[str, str] = field(default_factory=dict)
