"""How association job files read: the columns, their aliases, templates, and one row's checks.

This is the reading half of the ``associations`` job kind (:mod:`jobs.associations`): no
I/O, no state but the location names seen and the rules a template's ``"locations"`` named
(resolved before the run, in agency mode). Every record it makes holds its fields as text,
interned: locations, object keys, labels and keys repeat over thousands of rows.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator, Mapping
from typing import Any

from engine import JobFileError, Record, RecordError

from .directory import Directory, parse_selector
from .fields import check_id, check_kind, text
from .fields import location_id as check_location_id

__all__ = [
    "ABSENT",
    "COLUMNS",
    "CONFLICT",
    "CREATE",
    "CREATED",
    "DELETE",
    "DELETED",
    "EXISTS",
    "PREVIOUS_FIRST",
    "PREVIOUS_SECOND",
    "RESTORE",
    "RESTORED",
    "UPDATE",
    "UPDATED",
    "AssociationRows",
]

CREATED, EXISTS, CONFLICT, DELETED, ABSENT = "created", "exists", "conflict", "deleted", "absent"
UPDATED, RESTORED = "updated", "restored"
#: the outcomes of a plan's pending changes (each write's ``Write.plan``)
CREATE, UPDATE, DELETE = "create", "update", "delete"
#: the action rollback gives a record that puts an updated definition's labels back
RESTORE = "restore"
PREVIOUS_FIRST, PREVIOUS_SECOND = "previous_first_label", "previous_second_label"

COLUMNS = (
    "source",
    "location_id",
    "location_name",
    "action",
    "key",
    "outcome",
    "association_id",
    "previous_first_label",
    "previous_second_label",
    "http_status",
    "attempts",
    "error",
)

_FIELDS = (
    "location_id",
    "location_name",
    "action",
    "key",
    "first_object_key",
    "second_object_key",
    "first_object_label",
    "second_object_label",
    "description",
    "association_id",
)
_ALIASES = {
    **{name: name for name in _FIELDS},
    **{re.sub(r"_(\w)", lambda m: m.group(1).upper(), name): name for name in _FIELDS},
    "associationId": "association_id",
    "id": "association_id",
    "kind": "kind",
}
_OBJECT_KEY = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)?$")
_REQUIRED = {
    "key": "a name for the definition, such as property_owner",
    "first_object_key": "contact, opportunity, business or custom_objects.<name>",
    "second_object_key": "contact, opportunity, business or custom_objects.<name>",
}


def _object_key_problem(value: str) -> str:
    """What is wrong with an object key, and the key it was probably meant to be."""
    guess = re.sub(r"[\s-]+", "_", value.strip().lower())
    hint = f": write {guess}" if _OBJECT_KEY.match(guess) else ""
    return f"must be an object key such as contact or custom_objects.property, not {value!r}{hint}"


class AssociationRows:
    """Reads association rows: canonical columns, templates, checks, idents, report fields."""

    name: str = "associations"
    columns: tuple[str, ...] = COLUMNS
    same_record: str = "same location, action and key"

    def __init__(self, *, directory: Directory | None = None) -> None:
        #: what templates' location rules ("all", ...) resolved to (agency mode)
        self.directory = directory
        #: location names seen in the job (templates, a location_name column), by id
        self.location_names: dict[str, str] = {}

    def canonical_field(self, name: str) -> str | None:
        return _ALIASES.get(name) or _ALIASES.get(name.lower())

    def expand(self, document: Mapping[str, Any], path: str) -> Iterator[Mapping[str, Any]]:
        """Fan an onboarding template ``{"locations": [...], "associations": [...]}`` out.

        ``locations`` may also be a rule (``"all"``, ``"installed"``, a filter: see
        :mod:`jobs.directory`), resolved with the agency token before the run."""
        unknown = set(document) - {"locations", "associations"}
        if unknown or not document:
            raise JobFileError(
                path,
                'expected a list of records, or a template {"locations": [...], '
                '"associations": [...]}' + (f"; unknown keys {sorted(unknown)}" if unknown else ""),
            )
        locations = self._template_locations(document.get("locations"), path)
        wanted = {
            "locations": 'location ids (or {"id": ...} objects), or "all"',
            "associations": "definitions",
        }
        kinds = {str: "text", dict: "an object", bool: "true or false", type(None): "null"}
        for name, items in wanted.items():
            value = locations if name == "locations" else document.get(name)
            if name not in document:
                raise JobFileError(path, f"{name!r} must be a list of {items}; it is missing")
            if not isinstance(value, list):
                kind = kinds.get(type(value), "a number")
                raise JobFileError(path, f"{name!r} must be a list of {items}, not {kind}")
            if not value:
                raise JobFileError(path, f"no records ({name!r} is an empty list): nothing to do")
        for location in locations:
            location_id: Any = location
            label: Any = None
            if isinstance(location, dict):
                location_id, label = location.get("id"), location.get("name")
            for definition in document["associations"]:
                if not isinstance(definition, dict):
                    yield {"location_id": location_id, "__bad__": definition}
                    continue
                row = {**definition, "locationId": location_id}
                if label:
                    row["locationName"] = label
                yield row

    def _template_locations(self, value: Any, path: str) -> Any:
        """The template's locations: its list, or what its rule resolved to."""
        selector = parse_selector(value, path) if value is not None else None
        if selector is None:
            return value
        found = self.directory.get(selector) if self.directory is not None else None
        if found is None:
            raise JobFileError(
                path,
                f'"locations": {selector} needs an agency token to list the sub-accounts: '
                "GHL_AGENCY_TOKEN or --agency-token-file, and --company-id",
                field="locations",
            )
        if not found:
            raise JobFileError(
                path,
                f'no records ("locations": {selector} matched no sub-account): nothing to do',
                field="locations",
            )
        return [{"id": a.id, "name": a.name} for a in found]

    def parse(self, source: str, values: Mapping[str, Any]) -> Record:
        if "__bad__" in values:
            raise RecordError("each template association must be an object")
        check_kind(values, self.name)
        fields = {name: text(values, name) for name in _FIELDS}
        location_id = check_location_id(fields["location_id"])
        action = fields["action"].lower() or "create"
        fields["action"] = action
        if action == "create":
            for name in ("key", "first_object_key", "second_object_key"):
                if not fields[name]:
                    raise RecordError(f"is required for create: {_REQUIRED[name]}", field=name)
            for name in ("first_object_key", "second_object_key"):
                if not _OBJECT_KEY.match(fields[name]):
                    raise RecordError(_object_key_problem(fields[name]), field=name)
        elif action == "delete":
            if not fields["key"] and not fields["association_id"]:
                raise RecordError("delete needs key or association_id", field="key")
        else:
            raise RecordError(f"must be create or delete, not {action!r}", field="action")
        for name in ("key", "association_id"):
            check_id(fields[name], name)
        if fields["location_name"]:
            self.location_names[location_id] = fields["location_name"]
        # Interned: locations, object keys, labels and keys repeat over thousands of rows
        # (a template fans each definition out to every location); one copy each is kept.
        return Record(
            source=source,
            location_id=sys.intern(location_id),
            ident=self.row_ident(fields),
            fields={k: sys.intern(v) for k, v in fields.items() if v and k != "location_id"},
        )

    def invalid_record(self, source: str, values: Mapping[str, Any]) -> Record:
        shown = {k: str(v) for k, v in values.items() if isinstance(v, str | int) and k in _FIELDS}
        return Record(
            source=source,
            location_id=shown.pop("location_id", ""),
            ident="",
            fields=shown,
        )

    @staticmethod
    def row_ident(row: Mapping[str, str]) -> str:
        action = (row.get("action") or "create").lower()
        key = row.get("key") or f"id:{row.get('association_id', '')}"
        return f"{row.get('location_id', '')}\x1f{action}\x1f{key}"

    def report_fields(self, record: Record) -> Mapping[str, str]:
        own = {"action": record.get("action") or "create", "key": record.get("key")}
        if name := record.get("location_name"):  # else a resumed row keeps the one it had
            own["location_name"] = name
        return own
