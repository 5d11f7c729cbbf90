"""Job kind: HighLevel association definitions, created or deleted across many locations.

For each location the kind first reads what is there (every page of definitions, and the
object schemas) once, then decides each record by looking rather than by status codes:

- create: key already there with the same object keys → ``exists`` (no POST), with other
  object keys → ``conflict``; an unknown object key fails fast naming the keys that exist;
  missing labels come from the objects' singular labels; labels that another definition (or a
  create this job has in flight) already uses for the same objects fail before sending,
  naming that key and whether the labels were derived. A create answered 409/400/422 is
  settled by GET-ing the key (the service has no reliable duplicate status). A definition
  found after this job sent a create for it (a lost response, or a process killed mid-call,
  noted in the journal) is ``created``: ``exists`` means it was there before the job.
- labels: a create whose key is there with the same objects but other labels (only the
  labels the row gives are compared) stays ``exists``, its report row keeping the labels on
  the server (``previous_first_label``, ``previous_second_label``) and saying what differs.
  With ``update_labels`` the kind sends ``PUT /associations/{id}`` (official routes only)
  and reports ``updated``; its journal intent and report row keep the previous labels, so
  a resumed run still knows them, and rollback restores them (the ``restore`` action,
  which only rollback makes: it puts the previous labels back if the id still has the key).
- delete: by ``association_id`` or by ``key``; ``absent`` when already gone; SYSTEM_DEFINED
  definitions are refused without a request.

With debug logging (``-v``) each of these decisions is logged; the runner binds the record's
``location`` and ``source`` to every line.

In a plan (``RunConfig.plan``) no write is sent: a create, update or delete yields its
``Write`` and the engine raises ``Planned`` there. The kind notes the change in the
location's state as if it had been made (so later records see the key, the label pair, or
the deletion, as a run would), and reports ``create``, ``update`` (with the labels it would
change) or ``delete``. With ``track_drift``, the kind also keeps each location's
USER_DEFINED keys as read, for the plan's list of definitions no job row mentions.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog

from engine import (
    FAILED,
    INVALID,
    ConfigError,
    JobFileError,
    Outcome,
    Planned,
    RateHint,
    Record,
    RecordError,
    RequestError,
    Response,
    RunResult,
    Send,
    Steps,
    Write,
)

from .directory import Directory, parse_selector
from .fields import check_id, check_kind, text
from .fields import location_id as check_location_id
from .highlevel import DEFAULT_BASE_URL, check_base_url, error_text, json_body, read_rate
from .routes import Api, Routes, association_from
from .shared import definitions, failure, location_error, require_ok

__all__ = ["COLUMNS", "AssociationsJob", "LocationState"]

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
_LOOK_STATUSES = frozenset({400, 409, 422})


#: (object key, label, object key, label), the two sides sorted: the service refuses a second
#: definition with the same pair in either order ("duplicate pair of labels")
Pair = tuple[str, str, str, str]


def _pair(first: str, first_label: str, second: str, second_label: str) -> Pair:
    a, b = (first, first_label), (second, second_label)
    return (*a, *b) if a <= b else (*b, *a)


@dataclass(slots=True)
class LocationState:
    """What one location held when the job first looked, kept current as the job writes."""

    objects: dict[str, str] = field(default_factory=dict)  # object key -> singular label
    by_key: dict[str, dict[str, Any]] = field(default_factory=dict)
    by_id: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: label pair -> the key of the definition that has it, or of a create of it in flight
    by_pair: dict[Pair, str] = field(default_factory=dict)

    def remember(self, item: Mapping[str, Any]) -> dict[str, Any]:
        """Keep what the job consults later about a definition (read, created or updated)."""
        kept = _known(item)
        if (before := self.by_key.get(kept["key"])) is not None:
            self._unpair(before)
        self.by_key[kept["key"]] = kept
        if "id" in kept:
            self.by_id[str(kept["id"])] = kept
        if (pair := _pair_of(kept)) is not None:
            self.by_pair[pair] = kept["key"]
        return kept

    def forget(self, item: Mapping[str, Any]) -> None:
        """The definition is gone."""
        self.by_key.pop(str(item.get("key")), None)
        self.by_id.pop(str(item.get("id")), None)
        self._unpair(item)

    def claim(self, pair: Pair | None, key: str) -> None:
        """A create of ``key`` with ``pair`` is about to be sent: later rows see it taken."""
        if pair is not None:
            self.by_pair.setdefault(pair, key)

    def release(self, pair: Pair | None, key: str) -> None:
        """The create was answered: the pair stays taken only once the definition is known."""
        if pair is None or self.by_pair.get(pair) != key:
            return
        if _pair_of(self.by_key.get(key, {})) != pair:
            del self.by_pair[pair]

    def _unpair(self, item: Mapping[str, Any]) -> None:
        pair = _pair_of(item)
        if pair is not None and self.by_pair.get(pair) == item.get("key"):
            del self.by_pair[pair]


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


class AssociationsJob:
    """The ``associations`` job kind for one API route set and base URL."""

    name: str = "associations"
    columns: tuple[str, ...] = COLUMNS
    ok_statuses: frozenset[str] = frozenset({CREATED, EXISTS, UPDATED, RESTORED, DELETED, ABSENT})
    final_statuses: frozenset[str] = frozenset(
        {CREATED, EXISTS, UPDATED, RESTORED, CONFLICT, DELETED, ABSENT, INVALID}
    )
    #: the outcomes a plan gives the changes a run would make
    plan_statuses: frozenset[str] = frozenset({CREATE, UPDATE, DELETE})
    same_record: str = "same location, action and key"
    #: a create or delete is one request; the location's reads are shared by its records
    requests_per_record: float = 1.0

    def __init__(
        self,
        *,
        api: Api | str = Api.ASSOCIATIONS,
        base_url: str = DEFAULT_BASE_URL,
        update_labels: bool = False,
        track_drift: bool = False,
        directory: Directory | None = None,
    ):
        self.api = Api(api)
        self.base_url = check_base_url(base_url)
        self.routes = Routes(api=self.api, base_url=self.base_url)
        # Bound when the run starts, after logging is configured; decisions are debug lines,
        # so the check is made once rather than per record.
        self._log = structlog.get_logger("jobs").bind()
        self._verbose = self._log.is_enabled_for(logging.DEBUG)
        if update_labels and not self.routes.official:
            raise ConfigError(
                "--update-labels needs --api associations: the integration guide's routes "
                "have no way to change a definition's labels"
            )
        self.update_labels = update_labels
        #: with ``track_drift``: location -> {key: id} of its USER_DEFINED definitions, as read
        self.drift: dict[str, dict[str, str]] | None = {} if track_drift else None
        #: what templates' location rules ("all", ...) resolved to (agency mode)
        self.directory = directory
        #: location names seen in the job (templates, a location_name column), by id
        self.location_names: dict[str, str] = {}

    # -- reading job files ----------------------------------------------------------------

    def identity(self) -> Mapping[str, str]:
        return {"api": self.api.value, "base_url": self.base_url}

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

    @staticmethod
    def labels_differ(result: RunResult) -> int:
        """How many records of a run are ``exists`` with other labels than their row asks."""
        return result.count_with(EXISTS, PREVIOUS_FIRST)

    def read_rate(self, response: Response) -> RateHint:
        return read_rate(response)

    # -- carrying records out -------------------------------------------------------------

    def prepare(self, location_id: str) -> Steps[LocationState]:
        """Read the location once: its object schemas and every page of its definitions."""
        try:
            return (yield from self._load(location_id))
        except RequestError as exc:
            raise location_error(location_id, exc) from None

    def _load(self, location: str) -> Steps[LocationState]:
        state = LocationState()
        request = self.routes.objects(location)
        answer = yield Send(request)
        require_ok(request, answer, "listing objects")
        body = json_body(answer.response)
        for item in body.get("objects", []) if isinstance(body, dict) else []:
            if isinstance(item, dict) and isinstance(item.get("key"), str):
                labels = item.get("labels")
                singular = labels.get("singular") if isinstance(labels, dict) else None
                state.objects[item["key"]] = str(singular or item["key"])
        found = yield from definitions(self.routes, location)
        mine = self.drift.setdefault(location, {}) if self.drift is not None else None
        for item in found:
            state.remember(item)
            if mine is not None and item.get("associationType", "USER_DEFINED") == "USER_DEFINED":
                mine[str(item["key"])] = str(item.get("id", ""))
        if self._verbose:
            self._log.debug(
                "location read", definitions=len(state.by_key), objects=len(state.objects)
            )
        return state

    def process(
        self, record: Record, state: LocationState, *, noted: Mapping[str, Any]
    ) -> Steps[Outcome]:
        action = record.get("action")
        if action == "delete":
            return (yield from self._delete(record, state, bool(noted)))
        if action == RESTORE:
            return (yield from self._restore(record, state, noted))
        return (yield from self._create(record, state, noted))

    def _create(
        self, record: Record, state: LocationState, noted: Mapping[str, Any]
    ) -> Steps[Outcome]:
        key = record.get("key")
        first, second = record.get("first_object_key"), record.get("second_object_key")
        missing = [k for k in (first, second) if k not in state.objects]
        if missing:
            return Outcome(
                record=record,
                status=FAILED,
                error=f"object {missing[0]!r} does not exist in location {record.location_id}; "
                f"it has: {', '.join(sorted(state.objects))}",
            )
        found = state.by_key.get(key)
        if found is not None:
            return (yield from self._existing(record, found, state, noted))
        first_label = record.get("first_object_label") or state.objects[first]
        second_label = record.get("second_object_label") or state.objects[second]
        if first == second and first_label == second_label and self.routes.official:
            return Outcome(
                record=record,
                status=FAILED,
                error=f"both labels would be {first_label!r} (the service refuses that): give "
                "first_object_label and second_object_label",
            )
        # The labels this create sends (the guide's routes send only given ones) must not be
        # a pair another definition has, or is being created with: the service refuses it.
        sent = self.routes.official or bool(
            record.get("first_object_label") and record.get("second_object_label")
        )
        pair = _pair(first, first_label, second, second_label) if sent else None
        holder = state.by_pair.get(pair) if pair is not None else None
        if holder is not None and holder != key:
            return Outcome(
                record=record,
                status=FAILED,
                error=_pair_taken(record, state, first_label, second_label, holder),
            )
        body = {"locationId": record.location_id, "key": key}
        if self.routes.official:
            body |= {
                "firstObjectKey": first,
                "firstObjectLabel": first_label,
                "secondObjectKey": second,
                "secondObjectLabel": second_label,
            }
        else:
            body |= {"firstObjectKey": first, "secondObjectKey": second}
            if record.get("first_object_label"):
                body["firstObjectLabel"] = first_label
            if record.get("second_object_label"):
                body["secondObjectLabel"] = second_label
            body["description"] = record.get("description")
        write = Write(plan=CREATE, intent={"action": "create", "key": key})
        state.claim(pair, key)
        try:
            answer = yield Send(self.routes.create(record.location_id, body), write)
        except Planned:
            state.remember(body)  # later records of the plan see it, as in a run
            raise
        except RequestError as exc:
            return failure(exc, "create").outcome(record)
        finally:
            state.release(pair, key)  # remembered below with the pair, if it was created
        response = answer.response
        wrote = answer.ambiguous or bool(noted)
        if response.status in (200, 201):
            created = association_from(json_body(response)) or {}
            state.remember({**body, **created})
            if self._verbose:
                self._log.debug("created", key=key, association_id=created.get("id"))
            return Outcome(
                record=record,
                status=CREATED,
                http_status=response.status,
                attempts=answer.attempts,
                fields={"association_id": str(created.get("id", ""))},
            )
        if response.status in _LOOK_STATUSES:
            looked = yield from self._look(record, key)
            if isinstance(looked, Outcome):
                return looked
            if looked is not None:
                state.remember({"key": key, **looked})
                return self._settle(record, looked, wrote=wrote, attempts=answer.attempts)
        return Outcome(
            record=record,
            status=FAILED,
            http_status=response.status,
            attempts=answer.attempts,
            error=error_text(response),
        )

    def _look(self, record: Record, key: str) -> Steps[dict[str, Any] | Outcome | None]:
        """GET the key: the association, None when it does not exist, or a failed outcome."""
        if self._verbose:
            self._log.debug("duplicate answer is not proof: reading the key back", key=key)
        try:
            answer = yield Send(self.routes.by_key(record.location_id, key))
        except RequestError as exc:
            return failure(exc, "looking up the key").outcome(record)
        if answer.response.status == 200:
            return association_from(json_body(answer.response))
        if answer.response.status in (400, 404):
            return None  # "Association not found" comes back as either (field)
        return Outcome(
            record=record,
            status=FAILED,
            http_status=answer.response.status,
            error=f"looking up key {key!r}: {error_text(answer.response)}",
        )

    def _settle(
        self, record: Record, found: Mapping[str, Any], *, wrote: bool, attempts: int
    ) -> Outcome:
        """A definition with the record's key is there: ours, someone else's, or a clash."""
        association_id = str(found.get("id", ""))
        same = (found.get("firstObjectKey"), found.get("secondObjectKey")) == (
            record.get("first_object_key"),
            record.get("second_object_key"),
        )
        if self._verbose:
            how = "settled by reading the key back" if attempts else "key already there, no POST"
            status = CONFLICT if not same else CREATED if wrote else EXISTS
            why = " (this job's earlier write)" if same and wrote else ""
            self._log.debug(
                f"{status}: {how}{why}", key=record.get("key"), association_id=association_id
            )
        if not same:
            return Outcome(
                record=record,
                status=CONFLICT,
                attempts=attempts,
                fields={"association_id": association_id},
                error=f"key {record.get('key')!r} already links {found.get('firstObjectKey')} ↔ "
                f"{found.get('secondObjectKey')}; not modified",
            )
        return Outcome(
            record=record,
            status=CREATED if wrote else EXISTS,
            attempts=attempts,
            fields={"association_id": association_id},
        )

    def _existing(
        self,
        record: Record,
        found: Mapping[str, Any],
        state: LocationState,
        noted: Mapping[str, Any],
    ) -> Steps[Outcome]:
        """The record's key is there: ``exists`` (or ``created`` by this run), a conflict,
        or a definition whose labels differ from those the row gives."""
        updating = noted.get("action") == "update"  # an earlier process sent the update
        settled = self._settle(record, found, wrote=bool(noted) and not updating, attempts=0)
        current = found.get("labels")
        if settled.status == CONFLICT or current is None:
            return settled
        wanted = (
            record.get("first_object_label") or current[0],
            record.get("second_object_label") or current[1],
        )
        previous = (
            (str(noted.get(PREVIOUS_FIRST, "")), str(noted.get(PREVIOUS_SECOND, "")))
            if updating
            else current
        )
        association_id = str(found.get("id", ""))
        fields = {
            "association_id": association_id,
            PREVIOUS_FIRST: previous[0],
            PREVIOUS_SECOND: previous[1],
        }
        if wanted == tuple(current):
            if updating:  # applied, and its answer never reported: still this run's update
                return Outcome(record=record, status=UPDATED, fields=fields)
            return settled
        if not self.update_labels:
            return dataclasses.replace(
                settled,
                fields=fields,
                error=f"labels differ: the server has {current[0]!r} ↔ {current[1]!r}, the row "
                f"asks for {wanted[0]!r} ↔ {wanted[1]!r}; left as they are (--update-labels "
                "changes them)",
            )
        intent = {"action": "update", "key": record.get("key"), **fields}
        return (
            yield from self._relabel(
                record, found, state, wanted, intent=intent, fields=fields, done=UPDATED
            )
        )

    def _restore(
        self, record: Record, state: LocationState, noted: Mapping[str, Any]
    ) -> Steps[Outcome]:
        """Rollback of an update: put back the labels the definition had before it, if the
        id still has the key."""
        key, association_id = record.get("key"), record.get("association_id")
        wanted = (record.get("first_object_label"), record.get("second_object_label"))
        fields = {"association_id": association_id}
        found = state.by_id.get(association_id)
        if found is None:
            return Outcome(
                record=record,
                status=ABSENT,
                fields=fields,
                error="the definition is gone: no labels to restore",
            )
        if found.get("key") != key:
            return Outcome(
                record=record,
                status=CONFLICT,
                fields=fields,
                error=f"id {association_id} now has key {found.get('key')!r}, not {key!r}; "
                "labels not restored",
            )
        current = found.get("labels") or ("", "")
        fields |= {PREVIOUS_FIRST: current[0], PREVIOUS_SECOND: current[1]}
        if tuple(current) == wanted:  # as before already (an earlier, interrupted rollback)
            return Outcome(record=record, status=RESTORED, fields=fields)
        intent = {"action": RESTORE, "key": key, **fields}
        return (
            yield from self._relabel(
                record, found, state, wanted, intent=intent, fields=fields, done=RESTORED
            )
        )

    def _relabel(
        self,
        record: Record,
        found: Mapping[str, Any],
        state: LocationState,
        labels: tuple[str, str],
        *,
        intent: Mapping[str, str],
        fields: Mapping[str, str],
        done: str,
    ) -> Steps[Outcome]:
        """Send ``PUT /associations/{id}`` with ``labels``, after the checks the service
        would make; ``done`` is the outcome when it is applied."""
        key = str(found.get("key", ""))
        first, second = str(found.get("firstObjectKey")), str(found.get("secondObjectKey"))
        refused = ""
        if found.get("associationType") == "SYSTEM_DEFINED":
            refused = f"{key} is SYSTEM_DEFINED: HighLevel does not allow changing its labels"
        elif first == second and labels[0] == labels[1]:
            refused = (
                f"both labels would be {labels[0]!r} (the service refuses that): give "
                "first_object_label and second_object_label"
            )
        pair = _pair(first, labels[0], second, labels[1])
        holder = state.by_pair.get(pair)
        if not refused and holder is not None and holder != key:
            refused = (
                f"labels {labels[0]!r} ↔ {labels[1]!r} for {first} ↔ {second} are already used "
                f"by {holder} (the service refuses a duplicate pair of labels): choose other labels"
            )
        if refused:
            return Outcome(record=record, status=FAILED, fields=fields, error=refused)
        association_id = str(found.get("id", ""))
        updated = {
            **{name: found[name] for name in _KEPT if name in found},
            "firstObjectLabel": labels[0],
            "secondObjectLabel": labels[1],
        }
        write = Write(plan=UPDATE, intent=intent)
        request = self.routes.update(record.location_id, association_id, labels)
        state.claim(pair, key)
        try:
            answer = yield Send(request, write)
        except Planned:
            state.remember(updated)  # later records of the plan see the new labels
            old = found.get("labels") or ("", "")
            return Outcome(
                record=record,
                status=UPDATE,
                fields=fields,
                error=f"labels {old[0]!r} ↔ {old[1]!r} → {labels[0]!r} ↔ {labels[1]!r}",
            )
        except RequestError as exc:
            failed = failure(exc, "updating labels").outcome(record)
            return dataclasses.replace(failed, fields=fields)
        finally:
            state.release(pair, key)
        response = answer.response
        if response.status in (200, 201):
            state.remember(updated)
            if self._verbose:
                self._log.debug(f"{done}: labels now {labels[0]!r} ↔ {labels[1]!r}", key=key)
            return Outcome(
                record=record,
                status=done,
                http_status=response.status,
                attempts=answer.attempts,
                fields=fields,
            )
        return Outcome(
            record=record,
            status=FAILED,
            http_status=response.status,
            attempts=answer.attempts,
            fields=fields,
            error=f"updating labels: {error_text(response)}",
        )

    @staticmethod
    def _target(record: Record, state: LocationState) -> dict[str, Any] | Outcome | None:
        """The definition a delete aims at, None when it is gone, or a conflict when the
        id and the key given no longer belong together."""
        key, association_id = record.get("key"), record.get("association_id")
        if not association_id:
            return state.by_key.get(key)
        found = state.by_id.get(association_id)
        if found is not None and key and found.get("key") != key:
            return Outcome(
                record=record,
                status=CONFLICT,
                fields={"association_id": association_id},
                error=f"id {association_id} now has key {found.get('key')!r}, not {key!r}; "
                "not deleted",
            )
        return found

    def _delete(self, record: Record, state: LocationState, noted: bool) -> Steps[Outcome]:
        found = self._target(record, state)
        if isinstance(found, Outcome):
            return found
        if found is None:
            # Gone already: by someone else (absent), or by this job's earlier, killed attempt.
            if self._verbose:
                self._log.debug("already gone, no DELETE", key=record.get("key"))
            return Outcome(
                record=record,
                status=DELETED if noted else ABSENT,
                fields={"association_id": record.get("association_id")},
            )
        association_id = str(found.get("id", ""))
        if found.get("associationType") == "SYSTEM_DEFINED":
            return Outcome(
                record=record,
                status=FAILED,
                fields={"association_id": association_id},
                error=f"{found.get('key')} is SYSTEM_DEFINED: HighLevel does not allow deleting it",
            )
        write = Write(plan=DELETE, intent={"action": "delete", "key": str(found.get("key", ""))})
        fields = {"association_id": association_id}
        try:
            answer = yield Send(self.routes.delete(record.location_id, association_id), write)
        except Planned:
            state.forget(found)
            return Outcome(record=record, status=DELETE, fields=fields)
        except RequestError as exc:
            return failure(exc, "delete").outcome(record)
        response = answer.response
        if response.status in (200, 204):
            state.forget(found)
            return Outcome(
                record=record,
                status=DELETED,
                http_status=response.status,
                attempts=answer.attempts,
                fields=fields,
            )
        if response.status == 404:
            state.forget(found)
            wrote = answer.ambiguous or noted
            return Outcome(
                record=record,
                status=DELETED if wrote else ABSENT,
                http_status=response.status,
                attempts=answer.attempts,
                fields=fields,
            )
        return Outcome(
            record=record,
            status=FAILED,
            http_status=response.status,
            attempts=answer.attempts,
            fields=fields,
            error=error_text(response),
        )


_KEPT = ("id", "key", "firstObjectKey", "secondObjectKey")


def _pair_of(item: Mapping[str, Any]) -> Pair | None:
    """A kept definition's label pair, when its labels are known."""
    labels = item.get("labels")
    if labels is None:
        return None
    return _pair(item["firstObjectKey"], labels[0], item["secondObjectKey"], labels[1])


def _known(item: Mapping[str, Any]) -> dict[str, Any]:
    """What the job consults later about a definition, and nothing more: one is kept per
    definition (read or created) for the whole run.

    That is its id, key and object keys; ``associationType`` only when SYSTEM_DEFINED (the
    only type a delete or an update refuses); and its labels, as one (first, second) tuple,
    for the duplicate-pair check and label updates. At most five entries, so each dict
    keeps CPython's smallest table.
    """
    kept = {name: item[name] for name in _KEPT if name in item}
    for name in ("key", "firstObjectKey", "secondObjectKey"):
        if isinstance(kept.get(name), str):
            kept[name] = sys.intern(kept[name])  # the same few strings, thousands of times
    if item.get("associationType") == "SYSTEM_DEFINED":
        kept["associationType"] = "SYSTEM_DEFINED"
    first, second = kept.get("firstObjectKey"), kept.get("secondObjectKey")
    first_label, second_label = item.get("firstObjectLabel"), item.get("secondObjectLabel")
    if (
        isinstance(first, str)
        and isinstance(second, str)
        and isinstance(first_label, str)
        and isinstance(second_label, str)
    ):
        kept["labels"] = (sys.intern(first_label), sys.intern(second_label))
    return kept


def _pair_taken(
    record: Record, state: LocationState, first_label: str, second_label: str, holder: str
) -> str:
    """Why a create's label pair cannot be sent: which labels, from where, used by which key."""
    first, second = record.get("first_object_key"), record.get("second_object_key")
    derived = [
        f"{name} derived from {obj}'s singular label"
        for name, obj in (("first_object_label", first), ("second_object_label", second))
        if not record.get(name)
    ]
    if len(derived) == 2:
        origin = " (derived from the objects' singular labels)"
    elif derived:
        origin = f" ({derived[0]})"
    else:
        origin = ""
    user = f"already used by {holder}"
    if holder not in state.by_key:
        user += ", which this job is creating"
    fix = "set first_object_label and second_object_label" if derived else "choose other labels"
    return (
        f"labels {first_label!r} ↔ {second_label!r}{origin} for {first} ↔ {second} are {user} "
        f"(the service refuses a duplicate pair of labels): {fix}"
    )
