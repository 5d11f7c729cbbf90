"""The in-memory store: each location's token, objects and association definitions.

A location appears on first use, with a fresh token, the standard objects, the configured
custom objects and two SYSTEM_DEFINED associations. Creates and updates are refused the
way the service refuses them (unknown objects, same-object twins, reused keys, reused
label pairs).

A location indexes its definitions by what the checks and routes look up (id, key, label
pair, object key, position in creation order), so that no request scans them all: the
sandbox answers as fast with 50,000 definitions in a location as with five.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Literal, TypeAlias

from .config import SandboxConfig
from .ranked import Ranked
from .responses import ApiError

__all__ = ["Association", "Location", "Object", "Sides", "Store"]

#: a definition's two (object key, label) pairs, sorted: its identity for "duplicate pair"
Sides: TypeAlias = tuple[tuple[str, str], tuple[str, str]]

_PIT_PREFIX = "pit-"  # private integration tokens look like "pit-..."
_STANDARD_OBJECTS = (
    ("contact", "Contact", "Contacts"),
    ("opportunity", "Opportunity", "Opportunities"),
    ("business", "Business", "Businesses"),
)
_SYSTEM_ASSOCIATIONS = (
    ("OPPORTUNITIES_CONTACTS_ASSOCIATION", "opportunity", "contact"),
    ("BUSINESSES_CONTACTS_ASSOCIATION", "business", "contact"),
)
_SYSTEM_CREATED_AT = "2023-01-01T00:00:00.000Z"


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _labels_for(object_key: str) -> tuple[str, str]:
    """Singular and plural labels of a custom object: custom_objects.pet_owner → Pet Owner(s)."""
    words = object_key.rpartition(".")[2].replace("_", " ").title()
    if words.endswith("y") and words[-2:-1] not in "aeiou":
        return words, words[:-1] + "ies"
    if words.endswith(("s", "x", "ch", "sh")):
        return words, words + "es"
    return words, words + "s"


@dataclass(slots=True, kw_only=True)
class Object:
    """An object of a location, standard or custom, as ``GET /objects/`` lists it."""

    key: str
    singular: str
    plural: str
    standard: bool

    def to_json(self) -> dict[str, Any]:
        labels = {"singular": self.singular, "plural": self.plural}
        return {"key": self.key, "labels": labels, "standard": self.standard}


@dataclass(slots=True, kw_only=True)
class Association:
    """One association definition, USER_DEFINED or SYSTEM_DEFINED."""

    id: str
    location_id: str
    key: str
    first_object_key: str
    first_object_label: str
    second_object_key: str
    second_object_label: str
    association_type: Literal["USER_DEFINED", "SYSTEM_DEFINED"]
    created_at: str

    def sides(self) -> Sides:
        """The (object key, label) pairs, order-free, for the duplicate-pair check."""
        first = (self.first_object_key, self.first_object_label)
        second = (self.second_object_key, self.second_object_label)
        return (first, second) if first <= second else (second, first)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "locationId": self.location_id,
            "key": self.key,
            "firstObjectKey": self.first_object_key,
            "firstObjectLabel": self.first_object_label,
            "secondObjectKey": self.second_object_key,
            "secondObjectLabel": self.second_object_label,
            "associationType": self.association_type,
            "createdAt": self.created_at,
        }


@dataclass(slots=True, kw_only=True)
class Location:
    """One location (sub-account): its token, its objects and its indexed definitions.

    Definitions change only through :meth:`add`, :meth:`remove` and :meth:`relabel`, which
    keep every index in step; :attr:`associations` is a read-only view.
    """

    id: str
    token: str
    objects: dict[str, Object]
    name: str = ""  # the sub-account's name (agency companies name theirs)
    company_id: str | None = None  # the company (agency) it belongs to, if any
    _by_id: dict[str, Association] = field(default_factory=dict, init=False)  # creation order
    _by_key: dict[str, Association] = field(default_factory=dict, init=False)
    _by_sides: dict[Sides, Association] = field(default_factory=dict, init=False)
    _by_object: dict[str, dict[str, Association]] = field(default_factory=dict, init=False)
    _order: Ranked[Association] = field(default_factory=Ranked, init=False)

    @property
    def associations(self) -> Mapping[str, Association]:
        """Every definition by id, in creation order (SYSTEM_DEFINED first)."""
        return MappingProxyType(self._by_id)

    def with_key(self, key: str) -> Association | None:
        return self._by_key.get(key)

    def with_sides(self, sides: Sides) -> Association | None:
        return self._by_sides.get(sides)

    def with_object(self, object_key: str) -> Iterable[Association]:
        """The definitions with ``object_key`` on either side, in creation order."""
        return self._by_object.get(object_key, {}).values()

    def page(self, skip: int, size: int) -> list[Association]:
        """Definitions ``skip`` to ``skip + size - 1`` in creation order."""
        return self._order.page(skip, size)

    def add(self, association: Association) -> None:
        """Store a checked definition under every index."""
        self._by_id[association.id] = association
        self._by_key[association.key] = association
        self._by_sides[association.sides()] = association
        for object_key in (association.first_object_key, association.second_object_key):
            self._by_object.setdefault(object_key, {})[association.id] = association
        self._order.add(association.id, association)

    def remove(self, association: Association) -> None:
        """Drop a definition from every index."""
        del self._by_id[association.id]
        del self._by_key[association.key]
        del self._by_sides[association.sides()]
        for object_key in (association.first_object_key, association.second_object_key):
            self._by_object[object_key].pop(association.id, None)
        self._order.remove(association.id)

    def relabel(self, association: Association, first: str, second: str) -> None:
        """Change a definition's labels (already checked), and so its label-pair index."""
        del self._by_sides[association.sides()]
        association.first_object_label, association.second_object_label = first, second
        self._by_sides[association.sides()] = association


class Store:
    """Every location by id, which location each token is for, and who owns each id."""

    def __init__(self, config: SandboxConfig) -> None:
        self.locations: dict[str, Location] = {}
        self.tokens: dict[str, str] = {}  # token -> location id
        self.owners: dict[str, str] = {}  # USER_DEFINED association id -> location id
        self.on_delete: list[Callable[[Association], None]] = []  # e.g. the relations' cascade
        self._config = config

    def location(self, location_id: str) -> Location:
        """The location, created on first use."""
        location = self.locations.get(location_id)
        if location is not None:
            return location
        objects = {
            k: Object(key=k, singular=s, plural=p, standard=True) for k, s, p in _STANDARD_OBJECTS
        }
        for key in self._config.objects:
            singular, plural = _labels_for(key)
            objects[key] = Object(key=key, singular=singular, plural=plural, standard=False)
        token = _PIT_PREFIX + secrets.token_urlsafe(24)
        location = Location(id=location_id, token=token, objects=objects)
        for key, first, second in _SYSTEM_ASSOCIATIONS:
            system = Association(
                id=key,
                location_id=location_id,
                key=key,
                first_object_key=first,
                first_object_label=objects[first].singular,
                second_object_key=second,
                second_object_label=objects[second].singular,
                association_type="SYSTEM_DEFINED",
                created_at=_SYSTEM_CREATED_AT,
            )
            location.add(system)
        self.locations[location_id] = location
        self.tokens[token] = location_id
        return location

    def create(
        self,
        location: Location,
        *,
        key: str,
        first: tuple[str, str | None],
        second: tuple[str, str | None],
        conflict_status: int,
        association_id: str | None = None,
    ) -> Association:
        """Check and store a new USER_DEFINED definition; labels default to singular labels."""
        (first_key, first_label), (second_key, second_label) = first, second
        for object_key in (first_key, second_key):
            if object_key not in location.objects:
                raise ApiError(404, f"Object with key {object_key} not found")
        association = Association(
            id=association_id or secrets.token_hex(12),
            location_id=location.id,
            key=key,
            first_object_key=first_key,
            first_object_label=first_label or location.objects[first_key].singular,
            second_object_key=second_key,
            second_object_label=second_label or location.objects[second_key].singular,
            association_type="USER_DEFINED",
            created_at=_now_iso(),
        )
        self.check(location, association, conflict_status=conflict_status)
        location.add(association)
        self.owners[association.id] = location.id
        return association

    @staticmethod
    def check(location: Location, new: Association, *, conflict_status: int) -> None:
        """Refuse what the service refuses: same-object twins, reused keys, reused label pairs."""
        twins = new.first_object_key == new.second_object_key
        if twins and new.first_object_label == new.second_object_label:
            raise ApiError(422, "Both object labels can not be same")
        same_key = location.with_key(new.key)
        if same_key is not None and same_key.id != new.id:
            raise ApiError(conflict_status, f"association with key {new.key} already exists")
        same_sides = location.with_sides(new.sides())
        if same_sides is not None and same_sides.id != new.id:
            raise ApiError(conflict_status, "duplicate pair of labels")

    def relabel(
        self, location: Location, association: Association, first: str, second: str
    ) -> None:
        """Check and apply new labels for a USER_DEFINED definition."""
        updated = replace(association, first_object_label=first, second_object_label=second)
        self.check(location, updated, conflict_status=400)
        location.relabel(association, first, second)

    def delete(self, location: Location, association: Association) -> None:
        """Remove a definition from its location, after the ``on_delete`` hooks."""
        for hook in self.on_delete:
            hook(association)
        location.remove(association)
        self.owners.pop(association.id, None)
