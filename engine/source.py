"""Reading job files: CSV or JSON, many at once, with a place name for every row.

``read_job_files`` checks every file before anything is sent: a file that cannot be read
at all (no header, broken JSON, unknown columns) raises ``JobFileError`` naming the file,
line and field. A row that is merely wrong becomes an ``invalid`` record later, with its
``source`` (``jobs.csv:12`` for CSV lines, ``onboarding.json#7`` for JSON items).
"""

from __future__ import annotations

import csv
import enum
import io
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from .errors import JobFileError

__all__ = ["InputFormat", "SourceRow", "detect_format", "read_job_file", "read_job_files"]


class InputFormat(enum.Enum):
    """The formats a job file may be in."""

    CSV = "csv"
    JSON = "json"


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceRow:
    """One input row, keys already canonical, with where it came from."""

    source: str
    values: Mapping[str, Any]
    #: a problem found while reading the row (too many values); the row becomes invalid
    problem: str = ""


class _Schema(Protocol):
    def canonical_field(self, name: str) -> str | None: ...

    def expand(self, document: Mapping[str, Any], path: str) -> Iterator[Mapping[str, Any]]: ...


def detect_format(path: str, text: str) -> InputFormat:
    """By extension, else by the first non-blank character."""
    ext = os.path.splitext(path)[1].lower()
    if ext == ".csv":
        return InputFormat.CSV
    if ext in {".json", ".jsonl"}:
        return InputFormat.JSON
    return InputFormat.JSON if text.lstrip()[:1] in {"[", "{"} else InputFormat.CSV


def _read_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8-sig", newline="") as fh:
            return fh.read()
    except FileNotFoundError:
        raise JobFileError(path, "no such file") from None
    except IsADirectoryError:
        raise JobFileError(path, "is a directory, not a job file") from None
    except UnicodeDecodeError as exc:
        raise JobFileError(path, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise JobFileError(path, exc.strerror or str(exc)) from None


def _canonical_keys(
    path: str, schema: _Schema, keys: list[str], *, line: int | None, where: str
) -> list[str]:
    result: list[str] = []
    for key in keys:
        name = schema.canonical_field(key.strip())
        if name is None:
            raise JobFileError(path, f"unknown {where} {key!r}", line=line, field=key)
        if name in result:
            raise JobFileError(path, f"{where} {key!r} given twice", line=line, field=key)
        result.append(name)
    return result


def _read_csv(path: str, text: str, schema: _Schema) -> list[SourceRow]:
    name = os.path.basename(path)
    # Lines end only at \r or \n: str.splitlines would also split a cell at \x0b, \x0c,
    # \x1c-\x1e, \x85, U+2028 or U+2029 (Word's line break, pasted text), making rows.
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header: list[str] | None = None
    rows: list[SourceRow] = []
    line = 1
    try:
        for values in reader:
            start, line = line, reader.line_num + 1
            if not values or all(not v.strip() for v in values):
                continue  # blank lines are ignored
            if header is None:
                header = _canonical_keys(path, schema, values, line=start, where="column")
                continue
            problem = ""
            if len(values) > len(header):
                extra = [v for v in values[len(header) :] if v.strip()]
                if extra:
                    problem = f"{len(values)} values but the header has {len(header)} columns"
            row = {k: v.strip() for k, v in zip(header, values, strict=False)}
            rows.append(SourceRow(source=f"{name}:{start}", values=row, problem=problem))
    except csv.Error as exc:
        raise JobFileError(path, f"malformed CSV: {exc}", line=reader.line_num) from None
    if header is None:
        raise JobFileError(path, "empty file: expected a header row", line=1)
    return rows


def _read_json(path: str, text: str, schema: _Schema) -> list[SourceRow]:
    name = os.path.basename(path)
    try:
        document = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise JobFileError(path, f"broken JSON: {exc.msg}", line=exc.lineno) from None
    if isinstance(document, list):
        items: list[Any] = document
    elif isinstance(document, dict):
        items = list(schema.expand(document, path))
    else:
        raise JobFileError(path, "expected a list of records or a template object")
    rows: list[SourceRow] = []
    for index, item in enumerate(items, start=1):
        source = f"{name}#{index}"
        if not isinstance(item, dict):
            rows.append(SourceRow(source=source, values={}, problem="not an object"))
            continue
        keys = _canonical_keys(path, schema, list(item), line=None, where=f"key in {source}:")
        rows.append(SourceRow(source=source, values=dict(zip(keys, item.values(), strict=True))))
    return rows


def read_job_file(path: str, schema: _Schema) -> tuple[list[SourceRow], InputFormat]:
    """All rows of one job file and its detected format; raises ``JobFileError``."""
    text = _read_text(path)
    fmt = detect_format(path, text)
    if fmt is InputFormat.JSON:
        return _read_json(path, text, schema), fmt
    return _read_csv(path, text, schema), fmt


def read_job_files(paths: list[str], schema: _Schema) -> list[SourceRow]:
    """Rows of every file, in order. Every file is read before anything is returned."""
    if not paths:
        raise JobFileError("<none>", "no job file given")
    rows: list[SourceRow] = []
    for path in paths:
        rows.extend(read_job_file(path, schema)[0])
    return rows
