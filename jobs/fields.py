"""Field checks every HighLevel job kind shares: text only, location ids, ids in URL paths.

A job file comes from a spreadsheet more often than not, and a spreadsheet's slips (a long
digit string turned into ``1.2E+19``, an id that became a number) are caught here with a
message that says what a location id looks like.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from engine import RecordError

__all__ = ["check_id", "check_kind", "location_id", "text"]

_ID_TEXT = re.compile(r"^[^\s/?#]+$")
# Ids and keys go into URL paths, where "." and ".." are not names but steps.
_DOT_SEGMENTS = frozenset({".", ".."})
# 123, 0042, -5, 1.2E+19 (a spreadsheet's rendering of a long digit string)
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
_LOCATION_ID_LOOKS = "location ids look like ve9EPM428h8vShlRW1KT, letters and digits"


def text(values: Mapping[str, Any], name: str) -> str:
    """A field as text. JSON numbers are refused: no id or key is one (a number loses its
    leading zeros), and a location id that became a number is a spreadsheet's doing."""
    value = values.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        kind = {bool: "true or false", list: "a list", dict: "an object"}.get(
            type(value), "a number"
        )
        example = f" ({_LOCATION_ID_LOOKS})" if name == "location_id" else ""
        raise RecordError(f"must be text{example}, not {kind}", field=name)
    return value.strip()


def location_id(value: str) -> str:
    """``value`` when it can be a location id; else ``RecordError`` saying why not."""
    if not value:
        raise RecordError(
            "is required: the sub-account's id, such as ve9EPM428h8vShlRW1KT",
            field="location_id",
        )
    if not _ID_TEXT.match(value):
        raise RecordError("must not contain spaces, '/', '?' or '#'", field="location_id")
    if _NUMBER.match(value):
        raise RecordError(
            f"{value!r} is a number, not a location id: {_LOCATION_ID_LOOKS}",
            field="location_id",
        )
    if value in _DOT_SEGMENTS:
        raise RecordError(f"must not be {value!r}: {_LOCATION_ID_LOOKS}", field="location_id")
    return value


def check_id(value: str, name: str) -> None:
    """An id or key that goes into a URL path: no spaces, ``/``, ``?``, ``#``, ``.``, ``..``."""
    if value and not _ID_TEXT.match(value):
        raise RecordError("must not contain spaces, '/', '?' or '#'", field=name)
    if value in _DOT_SEGMENTS:
        raise RecordError(f"must not be {value!r}", field=name)


def check_kind(values: Mapping[str, Any], kind: str) -> None:
    """A row's ``kind`` field, when it has one, must name the job's kind (a job file is one
    kind throughout: the kind is chosen per file, see :mod:`jobs.kinds`)."""
    given = text(values, "kind").lower()
    if given and given != kind:
        raise RecordError(
            f"is {given!r}, but this job file is a {kind} job (one kind per file: put "
            f"{given} rows in a file of their own)",
            field="kind",
        )
