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
from collections.abc import Mapping
from typing import Any

import structlog

from engine import (
    FAILED,
    INVALID,
    ConfigError,
    Outcome,
    Planned,
    RateHint,
    Record,
    RequestError,
    Response,
    RunResult,
    Send,
    Steps,
    Write,
)

from .association_rows import (
    ABSENT,
    CONFLICT,
    CREATE,
    CREATED,
    DELETE,
    DELETED,
    EXISTS,
    PREVIOUS_FIRST,
    PREVIOUS_SECOND,
    RESTORE,
    RESTORED,
    UPDATE,
    UPDATED,
    AssociationRows,
)
from .association_state import KEPT, LocationState, pair_taken
from .association_state import pair as label_pair
from .directory import Directory
from .highlevel import DEFAULT_BASE_URL, check_base_url, error_text, json_body, read_rate
from .routes import Api, Routes, association_from
from .shared import answered, definitions, failure, location_error, refused, require_ok

__all__ = ["AssociationsJob", "LocationState"]

_LOOK_STATUSES = frozenset({400, 409, 422})


class AssociationsJob(AssociationRows):
    """The ``associations`` job kind for one API route set and base URL (its rows are read
    by :class:`~jobs.association_rows.AssociationRows`)."""

    ok_statuses: frozenset[str] = frozenset({CREATED, EXISTS, UPDATED, RESTORED, DELETED, ABSENT})
    final_statuses: frozenset[str] = frozenset(
        {CREATED, EXISTS, UPDATED, RESTORED, CONFLICT, DELETED, ABSENT, INVALID}
    )
    #: the outcomes a plan gives the changes a run would make
    plan_statuses: frozenset[str] = frozenset({CREATE, UPDATE, DELETE})
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
        super().__init__(directory=directory)
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

    # -- reading job files ----------------------------------------------------------------

    def identity(self) -> Mapping[str, str]:
        return {"api": self.api.value, "base_url": self.base_url}

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
        pair = label_pair(first, first_label, second, second_label) if sent else None
        holder = state.by_pair.get(pair) if pair is not None else None
        if holder is not None and holder != key:
            return Outcome(
                record=record,
                status=FAILED,
                error=pair_taken(record, state, first_label, second_label, holder),
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
            return answered(record, CREATED, answer, {"association_id": str(created.get("id", ""))})
        if response.status in _LOOK_STATUSES:
            looked = yield from self._look(record, key)
            if isinstance(looked, Outcome):
                return looked
            if looked is not None:
                state.remember({"key": key, **looked})
                return self._settle(record, looked, wrote=wrote, attempts=answer.attempts)
        return refused(record, answer)

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
        pair = label_pair(first, labels[0], second, labels[1])
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
            **{name: found[name] for name in KEPT if name in found},
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
            return answered(record, done, answer, fields)
        return answered(record, FAILED, answer, fields, f"updating labels: {error_text(response)}")

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
            return answered(record, DELETED, answer, fields)
        if response.status == 404:
            state.forget(found)
            wrote = answer.ambiguous or noted
            return answered(record, DELETED if wrote else ABSENT, answer, fields)
        return refused(record, answer, fields)
