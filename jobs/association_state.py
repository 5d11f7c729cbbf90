"""What the associations kind keeps of one location while its records run: the objects, every
definition (read or created) by key and by id, and which label pairs are taken.

Kept compact: a run may touch thousands of locations with many definitions each, and all of
it stays for as long as the location has records to do.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from engine import Record

__all__ = ["KEPT", "LocationState", "Pair", "pair", "pair_taken"]


#: (object key, label, object key, label), the two sides sorted: the service refuses a second
#: definition with the same pair in either order ("duplicate pair of labels")
Pair = tuple[str, str, str, str]


def pair(first: str, first_label: str, second: str, second_label: str) -> Pair:
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


#: the fields of a definition the job keeps (besides its labels and SYSTEM_DEFINED type)
KEPT = ("id", "key", "firstObjectKey", "secondObjectKey")


def _pair_of(item: Mapping[str, Any]) -> Pair | None:
    """A kept definition's label pair, when its labels are known."""
    labels = item.get("labels")
    if labels is None:
        return None
    return pair(item["firstObjectKey"], labels[0], item["secondObjectKey"], labels[1])


def _known(item: Mapping[str, Any]) -> dict[str, Any]:
    """What the job consults later about a definition, and nothing more: one is kept per
    definition (read or created) for the whole run.

    That is its id, key and object keys; ``associationType`` only when SYSTEM_DEFINED (the
    only type a delete or an update refuses); and its labels, as one (first, second) tuple,
    for the duplicate-pair check and label updates. At most five entries, so each dict
    keeps CPython's smallest table.
    """
    kept = {name: item[name] for name in KEPT if name in item}
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


def pair_taken(
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
