"""Job kind: HighLevel relations (links between two records), created or deleted in bulk.

A relation links a record of an association's first object to a record of its second
(this contact ↔ this property). Agencies migrate them by the tens of thousands per
sub-account, and the API makes that hard: no bulk endpoint, no route that lists a location's
relations, and a duplicate answered with a plain 400. So this kind spends requests carefully
and decides by reading back only when an answer leaves doubt:

- per location, once: every page of association definitions, to resolve each row's
  ``association_key`` to an id (a key that does not exist fails its rows, naming the keys
  that do);
- create: one POST, no read before it. 200/201 is ``created``. A 400/409/422 (a duplicate,
  an unknown record, anything refused) is settled by reading the first record's relations
  under that association, never by the message's wording: the same pair found is
  ``exists``, or ``created`` when this job may have made it itself (the answer was lost,
  or an earlier process noted the write in the journal before it was killed); not found is
  ``failed`` with the server's message. So ``created`` always means "this job made it";
- delete: by ``relation_id`` (one DELETE), or by association and records (one read to find
  the id, then the DELETE). A 404 is ``absent``, or ``deleted`` when this job may have
  deleted it already.

A clean run costs one request per relation plus one or two list pages per location. What
the kind keeps per location is the key → id map of its definitions; record ids are never
interned (each is unique, and the intern table would only grow).
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from engine import (
    FAILED,
    INVALID,
    ConfigError,
    HTTPStatusError,
    JobFileError,
    Outcome,
    RateHint,
    Record,
    RecordError,
    RequestError,
    Response,
    Send,
    Steps,
    Write,
)

from .fields import check_id, check_kind, text
from .fields import location_id as check_location_id
from .highlevel import DEFAULT_BASE_URL, check_base_url, error_text, json_body, read_rate
from .relation_routes import RelationRoutes, relation_from, relations_from
from .routes import Api, Routes
from .shared import answered, definitions, failure, location_error, refused

__all__ = ["COLUMNS", "Definitions", "RelationsJob"]

CREATED, EXISTS, DELETED, ABSENT = "created", "exists", "deleted", "absent"

COLUMNS = (
    "source",
    "location_id",
    "action",
    "association_key",
    "association_id",
    "first_record_id",
    "second_record_id",
    "outcome",
    "relation_id",
    "http_status",
    "attempts",
    "error",
)

_FIELDS = (
    "location_id",
    "action",
    "association_key",
    "association_id",
    "first_record_id",
    "second_record_id",
    "relation_id",
)
_ALIASES = {
    **{name: name for name in _FIELDS},
    **{re.sub(r"_(\w)", lambda m: m.group(1).upper(), name): name for name in _FIELDS},
    "key": "association_key",
    "kind": "kind",
}
#: answers to a create that are settled by reading back (duplicate, unknown record, ...)
_READ_BACK = frozenset({400, 409, 422})
#: seconds a server's clock may be behind ours (see ``_made_after``)
CLOCK_SKEW = 60


@dataclass(slots=True)
class Definitions:
    """A location's association definitions: key → id, and the ids (its whole state)."""

    by_key: dict[str, str] = field(default_factory=dict)
    ids: set[str] = field(default_factory=set)

    def keys_text(self) -> str:
        return ", ".join(sorted(self.by_key)) or "none"


class RelationsJob:
    """The ``relations`` job kind against one base URL (official route set only)."""

    name: str = "relations"
    columns: tuple[str, ...] = COLUMNS
    ok_statuses: frozenset[str] = frozenset({CREATED, EXISTS, DELETED, ABSENT})
    final_statuses: frozenset[str] = frozenset({CREATED, EXISTS, DELETED, ABSENT, INVALID})
    #: what a plan reports for a pending write (``Write.plan``): a create is never read
    #: first, so a plan says ``create`` even for a relation that turns out to exist
    plan_statuses: frozenset[str] = frozenset({"create", "delete"})
    same_record: str = "same location, action, association and records, or relation id"
    #: a create or a delete by id is one request; the definitions' pages are per location
    requests_per_record: float = 1.0

    def __init__(
        self,
        *,
        api: Api | str = Api.ASSOCIATIONS,
        base_url: str = DEFAULT_BASE_URL,
    ):
        if Api(api) is not Api.ASSOCIATIONS:
            raise ConfigError(
                f"--api {Api(api).value} has no relation routes (the integration guide's "
                "routes stop at definitions): relations use the official routes, --api "
                "associations"
            )
        self.base_url = check_base_url(base_url)
        self.routes = RelationRoutes(base_url=self.base_url)
        self._definitions = Routes(api=Api.ASSOCIATIONS, base_url=self.base_url)

    # -- reading job files ----------------------------------------------------------------

    def identity(self) -> Mapping[str, str]:
        return {"api": Api.ASSOCIATIONS.value, "base_url": self.base_url}

    def canonical_field(self, name: str) -> str | None:
        return _ALIASES.get(name) or _ALIASES.get(name.lower())

    def expand(self, document: Mapping[str, Any], path: str) -> Iterator[Mapping[str, Any]]:
        raise JobFileError(
            path,
            "a relations job file is a list of records (or CSV, or JSON Lines), not an object: "
            "relations link records of one location, so there is no template to fan out",
        )

    def parse(self, source: str, values: Mapping[str, Any]) -> Record:
        check_kind(values, self.name)
        fields = {name: text(values, name) for name in _FIELDS}
        location_id = check_location_id(fields["location_id"])
        action = fields["action"].lower() or "create"
        fields["action"] = action
        association = fields["association_key"] or fields["association_id"]
        records = fields["first_record_id"] and fields["second_record_id"]
        if action == "create":
            if not association:
                raise RecordError(
                    "is required for create (or association_id)", field="association_key"
                )
            for name in ("first_record_id", "second_record_id"):
                if not fields[name]:
                    raise RecordError("is required for create", field=name)
        elif action == "delete":
            if not fields["relation_id"] and not (association and records):
                raise RecordError(
                    "delete needs relation_id, or association_key (or association_id) with "
                    "first_record_id and second_record_id",
                    field="relation_id",
                )
        else:
            raise RecordError(f"must be create or delete, not {action!r}", field="action")
        for name in _FIELDS[2:]:
            check_id(fields[name], name)
        # Locations, actions and association keys repeat over thousands of rows: interned.
        # Record and relation ids are unique per row: interning them would only grow the
        # intern table for the life of the process.
        kept = {k: v for k, v in fields.items() if v and k != "location_id"}
        for name in ("action", "association_key", "association_id"):
            if name in kept:
                kept[name] = sys.intern(kept[name])
        return Record(
            source=source,
            location_id=sys.intern(location_id),
            ident=self.row_ident(fields),
            fields=kept,
        )

    def invalid_record(self, source: str, values: Mapping[str, Any]) -> Record:
        shown = {k: str(v) for k, v in values.items() if isinstance(v, str | int) and k in _FIELDS}
        return Record(
            source=source, location_id=shown.pop("location_id", ""), ident="", fields=shown
        )

    @staticmethod
    def row_ident(row: Mapping[str, str]) -> str:
        """``location, action, association, first, second``; a delete given only by relation
        id is ``location, delete, rel:ID``. The association is its key when the row has one
        (a report row carries the resolved id as well), else ``id:ID``."""
        action = (row.get("action") or "create").lower()
        location = row.get("location_id", "")
        key, association_id = row.get("association_key", ""), row.get("association_id", "")
        association = key or (f"id:{association_id}" if association_id else "")
        first, second = row.get("first_record_id", ""), row.get("second_record_id", "")
        if action == "delete" and row.get("relation_id") and not (association and first and second):
            return f"{location}\x1fdelete\x1frel:{row['relation_id']}"
        return f"{location}\x1f{action}\x1f{association}\x1f{first}\x1f{second}"

    def report_fields(self, record: Record) -> Mapping[str, str]:
        own = {
            "action": record.get("action") or "create",
            "association_key": record.get("association_key"),
            "first_record_id": record.get("first_record_id"),
            "second_record_id": record.get("second_record_id"),
        }
        # Given ids are the record's own; else the outcome fills them (resolved, created).
        for name in ("association_id", "relation_id"):
            if record.get(name):
                own[name] = record.get(name)
        return own

    def read_rate(self, response: Response) -> RateHint:
        return read_rate(response)

    # -- carrying records out -------------------------------------------------------------

    def prepare(self, location_id: str) -> Steps[Definitions]:
        """Read every page of the location's definitions, once, for the key → id map."""
        try:
            found = yield from definitions(self._definitions, location_id)
        except RequestError as exc:
            raise location_error(location_id, exc) from None
        state = Definitions()
        for item in found:
            association_id = sys.intern(str(item.get("id", "")))
            state.by_key[sys.intern(str(item["key"]))] = association_id
            state.ids.add(association_id)
        return state

    def process(
        self, record: Record, state: Definitions, *, noted: Mapping[str, Any]
    ) -> Steps[Outcome]:
        wrote = bool(noted)  # an earlier process noted a write for it (the intent itself)
        if record.get("action") == "delete" and record.get("relation_id"):
            # By id the definition is not needed: if it is gone, so is the relation (404).
            return (yield from self._delete(record, record.get("association_id"), wrote))
        association_id = _resolve(record, state)
        if isinstance(association_id, Outcome):
            return association_id
        if record.get("action") == "delete":
            return (yield from self._delete(record, association_id, wrote))
        return (yield from self._create(record, association_id, noted))

    def _create(
        self, record: Record, association_id: str, noted: Mapping[str, Any]
    ) -> Steps[Outcome]:
        location = record.location_id
        first, second = record.get("first_record_id"), record.get("second_record_id")
        fields = {"association_id": association_id}
        # When this job first sent this create: an earlier process's, as its intent says
        # (each intent passes the first time on), else now. A relation this job made was
        # made after it.
        first_sent = _whole(noted.get("first_sent")) or int(time.time())
        intent = {
            "action": "create",
            "association_id": association_id,
            "first_sent": str(first_sent),
        }
        write = Write(plan="create", intent=intent)
        try:
            answer = yield Send(self.routes.create(location, association_id, first, second), write)
        except RequestError as exc:
            return _failed(record, exc, "create", fields)
        response = answer.response
        if response.status in (200, 201):
            made = relation_from(json_body(response)) or {}
            return answered(
                record, CREATED, answer, {**fields, "relation_id": str(made.get("id", ""))}
            )
        if response.status not in _READ_BACK:
            return refused(record, answer, fields)
        # Refused: a duplicate, an unknown record, or ours already (a lost answer, a noted
        # write). Only the relation itself can tell which.
        try:
            found = yield from self._find(location, association_id, first, second)
        except RequestError as exc:
            return _failed(
                record, exc, f"create answered {error_text(response)}; reading back", fields
            )
        if found is None:
            return refused(record, answer, fields)
        ours = (answer.ambiguous or bool(noted)) and _made_after(found, first_sent)
        return Outcome(
            record=record,
            status=CREATED if ours else EXISTS,
            attempts=answer.attempts,
            fields={**fields, "relation_id": str(found.get("id", ""))},
        )

    def _find(
        self, location: str, association_id: str, first: str, second: str
    ) -> Steps[dict[str, Any] | None]:
        """The id of the relation ``first`` → ``second`` under the association, or None:
        the first record's relations, page by page, until found or an empty page."""
        skip, seen = 0, set[str]()
        while True:
            request = self.routes.of_record(location, first, association_id, skip)
            answer = yield Send(request)
            if answer.response.status != 200:
                exc = HTTPStatusError(
                    f"listing relations of record {first}",
                    request=request,
                    response=answer.response,
                )
                exc.attempts = answer.attempts
                raise exc
            page = relations_from(json_body(answer.response))
            fresh = {str(item.get("id", "")) for item in page} - seen
            for item in page:
                if (
                    item.get("firstRecordId") == first
                    and item.get("secondRecordId") == second
                    and str(item.get("associationId", association_id)) == association_id
                ):
                    return item
            # An empty page ends it; a page with nothing new means the server ignores skip.
            if not page or not fresh:
                return None
            seen |= fresh
            skip += len(page)

    def _delete(self, record: Record, association_id: str, noted: bool) -> Steps[Outcome]:
        location = record.location_id
        fields = {"association_id": association_id} if association_id else {}
        relation_id = record.get("relation_id")
        if not relation_id:
            first, second = record.get("first_record_id"), record.get("second_record_id")
            try:
                found = yield from self._find(location, association_id, first, second)
            except RequestError as exc:
                return _failed(record, exc, "reading back", fields)
            if found is None:
                # Gone already: by someone else, or by this job's earlier, killed attempt.
                return Outcome(record=record, status=DELETED if noted else ABSENT, fields=fields)
            relation_id = str(found.get("id", ""))
        fields["relation_id"] = relation_id
        write = Write(plan="delete", intent={"action": "delete", "relation_id": relation_id})
        try:
            answer = yield Send(self.routes.delete(location, relation_id), write)
        except RequestError as exc:
            return _failed(record, exc, "delete", fields)
        response = answer.response
        if response.status in (200, 204):
            status = DELETED
        elif response.status == 404:
            status = DELETED if answer.ambiguous or noted else ABSENT
        else:
            return refused(record, answer, fields)
        return answered(record, status, answer, fields)


def _resolve(record: Record, state: Definitions) -> str | Outcome:
    """The record's association id (from its key, or as given and checked); a failed
    outcome naming the keys the location has when it has no such definition. A delete by
    relation id alone needs none: ``""``."""
    key, given = record.get("association_key"), record.get("association_id")
    if key:
        found = state.by_key.get(key)
        if found is None:
            return Outcome(
                record=record,
                status=FAILED,
                error=f"association key {key!r} does not exist in location "
                f"{record.location_id}; it has: {state.keys_text()}",
            )
        if given and given != found:
            return Outcome(
                record=record,
                status=FAILED,
                fields={"association_id": found},
                error=f"association key {key!r} is id {found} in location "
                f"{record.location_id}, not {given}",
            )
        return found
    if given and given not in state.ids:
        return Outcome(
            record=record,
            status=FAILED,
            error=f"association id {given} does not exist in location {record.location_id}; "
            f"its keys: {state.keys_text()}",
        )
    return given


def _failed(record: Record, exc: RequestError, what: str, fields: Mapping[str, str]) -> Outcome:
    return failure(exc, what).outcome(record, fields)


def _timestamp(value: Any) -> float | None:
    """Seconds since the epoch of an ISO 8601 time (``2026-11-28T22:14:18.673Z``), or None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


def _whole(value: Any) -> int | None:
    """A whole number of seconds from an intent's field, or None."""
    return int(value) if isinstance(value, str) and value.isdigit() else None


def _made_after(relation: Mapping[str, Any], first_sent: int) -> bool:
    """Whether the relation may be this job's: made after the job first sent its create,
    give or take the clocks' skew. A create is sent without looking first, so when its
    answer was lost (or an earlier process was killed with it in flight) the relation found
    may have been there all along; its ``createdAt`` tells. Without one, it counts as ours."""
    made = _timestamp(relation.get("createdAt"))
    return made is None or made >= first_sent - CLOCK_SKEW
