"""Which job kind a job file holds: chosen by the file itself, never by a flag.

A file says it with a ``kind`` column or field (``relations`` or ``associations``; its first
record's value decides, and every row must agree), or with a header that leaves no doubt:
a ``first_record_id`` (``firstRecordId``) column or key means relations. Anything else is
associations, the kind ghl-migrate began with. One run is one kind: job files of different
kinds are refused before anything is read in full or sent.

Only the start of each file is looked at (the header, the first record). A file too broken to
tell is left to the associations reader, whose errors name the file, line and field.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from typing import Any

import orjson

from engine import ConfigError
from engine.source import InputFormat, decode_text, detect_format

from .associations import AssociationsJob
from .directory import Directory
from .highlevel import DEFAULT_BASE_URL
from .relations import RelationsJob
from .routes import Api

__all__ = ["ASSOCIATIONS", "KINDS", "RELATIONS", "detect_kind", "job_kind", "kind_of_file"]

ASSOCIATIONS, RELATIONS = "associations", "relations"
KINDS = (ASSOCIATIONS, RELATIONS)
#: a column or key that only a relations job has
_RELATION_MARKS = frozenset({"first_record_id", "firstrecordid"})
_HEAD = 1 << 16  # bytes read to find a CSV header or a JSON Lines record


def _kind_of_keys(keys: Sequence[str], first: dict[str, Any] | None) -> str:
    names = {k.strip().lower(): k for k in keys if isinstance(k, str)}
    if "kind" in names and first is not None:
        given = first.get(names["kind"])
        if isinstance(given, str) and given.strip().lower() in KINDS:
            return given.strip().lower()
    return RELATIONS if _RELATION_MARKS & set(names) else ASSOCIATIONS


def _from_csv(text: str) -> str:
    rows = csv.reader(io.StringIO(text))
    header: list[str] | None = None
    try:
        for values in rows:
            if not values or all(not v.strip() for v in values):
                continue
            if header is None:
                header = values
                continue
            return _kind_of_keys(header, dict(zip(header, values, strict=False)))
    except csv.Error:
        pass
    return _kind_of_keys(header or [], None)


def _from_record(item: Any) -> str:
    if not isinstance(item, dict):
        return ASSOCIATIONS
    return _kind_of_keys(list(item), item)


def kind_of_file(path: str) -> str:
    """The kind of one job file (associations when it cannot tell; see the module doc)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(_HEAD)
            whole = len(head) < _HEAD
            text = decode_text(head, final=whole)
            fmt = detect_format(path, text)
            if fmt is InputFormat.JSON:  # read whole by the run too (large jobs are CSV/JSONL)
                document = orjson.loads(head + fh.read())
                if isinstance(document, list):
                    return _from_record(document[0] if document else None)
                return ASSOCIATIONS  # a template: only associations have one
    except (OSError, ValueError):  # unreadable, not UTF-8, broken JSON: the reader says why
        return ASSOCIATIONS
    if fmt is InputFormat.JSONL:
        for line in text.splitlines():
            if line.strip():
                try:
                    return _from_record(orjson.loads(line))
                except orjson.JSONDecodeError:
                    return ASSOCIATIONS
        return ASSOCIATIONS
    if not whole:  # the header is whole unless one line is longer than _HEAD
        text = text[: text.rfind("\n") + 1] or text
    return _from_csv(text)


def detect_kind(paths: Sequence[str]) -> str:
    """The one kind of every file in ``paths``; ``ConfigError`` when they differ."""
    found: dict[str, list[str]] = {}
    for path in paths:
        found.setdefault(kind_of_file(path), []).append(os.path.basename(path))
    if len(found) > 1:
        each = "; ".join(f"{kind}: {', '.join(names)}" for kind, names in found.items())
        raise ConfigError(
            f"the job files are of different kinds ({each}): run each kind separately"
        )
    return next(iter(found), ASSOCIATIONS)


def job_kind(
    kind: str,
    *,
    api: Api | str = Api.ASSOCIATIONS,
    base_url: str = DEFAULT_BASE_URL,
    update_labels: bool = False,
    track_drift: bool = False,
    directory: Directory | None = None,
) -> AssociationsJob | RelationsJob:
    """The job kind named ``kind`` for a route set and base URL (``ConfigError`` when the
    kind has no such routes: relations exist on the official routes only).

    ``update_labels`` and ``track_drift`` are the associations kind's (relations have no
    labels, and no route lists a location's relations, so there is no drift to show), and
    so is ``directory`` (what templates' ``"locations": "all"`` resolved to)."""
    if kind == RELATIONS:
        return RelationsJob(api=api, base_url=base_url)
    if kind == ASSOCIATIONS:
        return AssociationsJob(
            api=api,
            base_url=base_url,
            update_labels=update_labels,
            track_drift=track_drift,
            directory=directory,
        )
    raise ConfigError(f"unknown job kind {kind!r}: expected one of {', '.join(KINDS)}")
