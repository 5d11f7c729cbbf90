"""Record-level relations: the records the sandbox knows, the relations between them.

A relation links a record of an association's first object to a record of its second
object. The real service checks both records exist, so the sandbox knows record ids per
(location, object key): ids listed one by one, and generated ranges (``prefix1`` ..
``prefixN``) that cost nothing per id, so a benchmark can seed millions.

Sized for a million relations over a thousand locations, and for 50,000 in one location
served at thousands of requests per second, every lookup is indexed:

* by number: relation ids are ObjectId-like, a random 16-hex prefix per sandbox and an
  8-hex counter, so the id is never stored and a list finds the relation by its counter;
* by (association, first record, second record): the duplicate check, one dict per
  association so that deleting a definition drops exactly its relations;
* by record id: ``GET /associations/relations/{recordId}``; a record with one relation
  holds it directly, a list only when it has several.

A :class:`Relation` outlives its deletion: it stays under its pair with the pair's write
counts (creates and deletes through the API, cascades included), and comes back to life,
with a new id, when the pair is created again. Record ids shared by several relations are
stored once.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .config import SandboxConfig, SandboxStats
from .responses import ApiError
from .store import Association, Store

__all__ = ["Relation", "RelationStore", "generated_prefix"]

_COUNTER_DIGITS = 8  # hex digits of the counter at the end of a relation id


def generated_prefix(object_key: str) -> str:
    """Prefix of an object's generated record ids: custom_objects.property → ``property-``."""
    return object_key.rpartition(".")[2] + "-"


@dataclass(slots=True, eq=False)  # identity: list.remove() must find this very relation
class Relation:
    """One pair of records under one association: alive (``number`` > 0) or deleted (0)."""

    association: Association
    first: str  # record id of the association's first object
    second: str  # record id of the association's second object
    number: int  # the id's counter while alive; 0 once deleted
    created_at: float  # time.time() of the latest create
    creates: int = 0  # lifetime: creates through the API
    deletes: int = 0  # lifetime: deletes through the API and cascades


@dataclass(slots=True)
class _Records:
    """The record ids of one object in one location."""

    ids: set[str] = field(default_factory=set)
    ranges: dict[str, int] = field(default_factory=dict)  # prefix -> N: prefix1 .. prefixN

    def __contains__(self, record_id: str) -> bool:
        if record_id in self.ids:
            return True
        for prefix, count in self.ranges.items():
            if record_id.startswith(prefix):
                digits = record_id[len(prefix) :]
                canonical = digits.isascii() and digits.isdigit() and digits[0] != "0"
                if canonical and int(digits) <= count:
                    return True
        return False

    def __len__(self) -> int:
        return len(self.ids) + sum(self.ranges.values())


@dataclass(slots=True)
class _LocationRelations:
    """One location's records and relations, indexed."""

    records: dict[str, _Records] = field(default_factory=dict)  # by object key
    pairs: dict[str, dict[tuple[str, str], Relation]] = field(default_factory=dict)
    by_record: dict[str, Relation | list[Relation]] = field(default_factory=dict)  # alive only


class RelationStore:
    """Every location's records and relations, and the global index of relations by id."""

    def __init__(
        self,
        config: SandboxConfig,
        store: Store,
        stats: SandboxStats,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self._store = store
        self._stats = stats
        self._clock = clock
        self._locations: dict[str, _LocationRelations] = {}
        self._numbered: list[Relation | None] = [None]  # by counter; 0 is never an id
        self._prefix = secrets.token_hex(8)

    # -- records -----------------------------------------------------------------------

    def add_records(
        self,
        location_id: str,
        object_key: str,
        ids: Iterable[str] = (),
        *,
        count: int = 0,
        prefix: str = "",
    ) -> int:
        """Make ``ids`` and ``prefix1`` .. ``prefix{count}`` known; answer the object's total.

        ValueError for an object the location does not have.
        """
        if object_key not in self._store.location(location_id).objects:
            raise ValueError(f"Object with key {object_key} not found")
        records = self._records(self._location(location_id), object_key)
        records.ids.update(ids)
        if count > 0:
            records.ranges[prefix] = max(count, records.ranges.get(prefix, 0))
        return len(records)

    # -- relations ---------------------------------------------------------------------

    def create(
        self, association: Association, first: str, second: str, *, seeded: bool = False
    ) -> Relation:
        """Check and store a relation; 422 for an unknown record, 400 for a duplicate.

        ``seeded`` relations (test set-up) are not counted as creates.
        """
        location = self._location(association.location_id)
        for record_id, object_key in (
            (first, association.first_object_key),
            (second, association.second_object_key),
        ):
            known = location.records.get(object_key)
            if known is None or record_id not in known:
                raise ApiError(422, f"Record with id {record_id} not found for object {object_key}")
        pairs = location.pairs.setdefault(association.id, {})
        relation = pairs.get((first, second))
        if relation is not None and relation.number:
            raise ApiError(
                400,
                "Could not create relation: duplicate relation of object Ids for given "
                f"association {association.id}",
            )
        first, second = _stored(location, first), _stored(location, second)
        if relation is None:
            relation = Relation(association, first, second, number=0, created_at=0.0)
            pairs[(first, second)] = relation
        relation.number = len(self._numbered)
        relation.created_at = self._clock()
        self._numbered.append(relation)
        _index(location.by_record, relation)
        if not seeded:
            relation.creates += 1
            self._stats.relation_creates_applied += 1
        return relation

    def find(self, relation_id: str) -> Relation | None:
        """The live relation with this id, in any location."""
        prefix, digits = relation_id[:-_COUNTER_DIGITS], relation_id[-_COUNTER_DIGITS:]
        if prefix != self._prefix or not digits.isascii():
            return None
        try:
            number = int(digits, 16)
        except ValueError:
            return None
        if f"{number:0{_COUNTER_DIGITS}x}" != digits or number >= len(self._numbered):
            return None
        return self._numbered[number]

    def delete(self, relation: Relation) -> None:
        """Delete a live relation (its pair keeps the lifetime counters)."""
        self._forget(self._location(relation.association.location_id), relation)
        self._stats.relation_deletes_applied += 1

    def drop_association(self, association: Association) -> None:
        """Cascade: delete every live relation of a definition that is being deleted."""
        location = self._locations.get(association.location_id)
        if location is None:
            return
        for relation in location.pairs.get(association.id, {}).values():
            if relation.number:
                self._forget(location, relation)
                self._stats.relation_cascade_deletes += 1

    def of_record(self, location_id: str, record_id: str) -> list[Relation]:
        """The live relations where the record is first or second, oldest first."""
        held = self._location(location_id).by_record.get(record_id)
        if held is None:
            return []
        return held if isinstance(held, list) else [held]

    def alive(self, location_id: str) -> list[Relation]:
        """A location's live relations, oldest first."""
        found = [r for r in self._pairs(location_id) if r.number]
        return sorted(found, key=lambda r: r.number)

    def lifetimes(self, location_id: str) -> list[Relation]:
        """Every pair a location ever held, alive or deleted, for their lifetime counters."""
        return list(self._pairs(location_id))

    def locations(self) -> list[str]:
        """The locations with records or relations."""
        return list(self._locations)

    def relation_id(self, relation: Relation) -> str:
        """The id of a live relation."""
        return f"{self._prefix}{relation.number:0{_COUNTER_DIGITS}x}"

    def to_json(self, relation: Relation) -> dict[str, Any]:
        """A live relation as the API answers it (the shape is a sandbox choice)."""
        association = relation.association
        created = datetime.fromtimestamp(relation.created_at, UTC)
        return {
            "id": self.relation_id(relation),
            "associationId": association.id,
            "firstRecordId": relation.first,
            "secondRecordId": relation.second,
            "firstObjectKey": association.first_object_key,
            "secondObjectKey": association.second_object_key,
            "locationId": association.location_id,
            "createdAt": created.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        }

    # -- internals ---------------------------------------------------------------------

    def _location(self, location_id: str) -> _LocationRelations:
        """A location's relations; on first use, with the configured generated records."""
        location = self._locations.get(location_id)
        if location is None:
            location = self._locations[location_id] = _LocationRelations()
            if self._config.records > 0:
                for object_key in self._store.location(location_id).objects:
                    records = self._records(location, object_key)
                    records.ranges[generated_prefix(object_key)] = self._config.records
        return location

    @staticmethod
    def _records(location: _LocationRelations, object_key: str) -> _Records:
        records = location.records.get(object_key)
        if records is None:
            records = location.records[object_key] = _Records()
        return records

    def _pairs(self, location_id: str) -> Iterator[Relation]:
        location = self._locations.get(location_id)
        if location is not None:
            for pairs in location.pairs.values():
                yield from pairs.values()

    def _forget(self, location: _LocationRelations, relation: Relation) -> None:
        _unindex(location.by_record, relation)
        self._numbered[relation.number] = None
        relation.number = 0
        relation.deletes += 1


def _stored(location: _LocationRelations, record_id: str) -> str:
    """The record id as already stored by another relation, so a shared id is kept once."""
    held = location.by_record.get(record_id)
    if held is None:
        return record_id
    other = held[0] if isinstance(held, list) else held
    return other.first if other.first == record_id else other.second


def _index(by_record: dict[str, Relation | list[Relation]], relation: Relation) -> None:
    for record_id in {relation.first, relation.second}:  # a record linked to itself: once
        held = by_record.get(record_id)
        if held is None:
            by_record[record_id] = relation
        elif isinstance(held, list):
            held.append(relation)
        else:
            by_record[record_id] = [held, relation]


def _unindex(by_record: dict[str, Relation | list[Relation]], relation: Relation) -> None:
    for record_id in {relation.first, relation.second}:
        held = by_record[record_id]
        if held is relation:
            del by_record[record_id]
        elif isinstance(held, list):
            held.remove(relation)
            if len(held) == 1:
                by_record[record_id] = held[0]
