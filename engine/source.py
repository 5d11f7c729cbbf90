"""Reading job files: CSV or JSON, many at once, with a place name for every row.

``read_job_files`` checks every file before anything is sent: a file that cannot be read
at all (no header, broken JSON, unknown columns) or that holds no record raises
``JobFileError`` naming the file, line and field. A row that is merely wrong becomes an
``invalid`` record later, with its ``source`` (``jobs.csv:12`` for CSV lines,
``onboarding.json#7`` for JSON items).

Spreadsheet programs are the usual source of job files, and their usual slips (UTF-16,
semicolon or tab separators, the workbook itself) get a message that says how to save the
file instead of an error about its mangled first column.
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

from .errors import ConfigError, JobFileError

__all__ = [
    "InputFormat",
    "SourceRow",
    "decode_text",
    "detect_format",
    "read_job_file",
    "read_job_files",
]


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


_SAVE_AS_UTF8 = "save it as UTF-8 (in Excel: CSV UTF-8)"


def decode_text(data: bytes) -> str:
    """UTF-8 text, with or without a BOM, from a file's bytes.

    Raises ``ValueError`` saying what the bytes look like instead (UTF-16, a spreadsheet,
    another encoding) and how to save them, for the caller to prefix with the file's name.
    """
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise ValueError(f"UTF-16 text (it starts with a UTF-16 byte order mark): {_SAVE_AS_UTF8}")
    if data.startswith(b"PK\x03\x04"):
        raise ValueError("a spreadsheet or zip archive, not text: save it as CSV (UTF-8)")
    if b"\x00" in data:
        raise ValueError(f"holds NUL bytes, so it is UTF-16 or binary, not text: {_SAVE_AS_UTF8}")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"not UTF-8 text ({exc.reason} at byte {exc.start}): {_SAVE_AS_UTF8}"
        ) from None


def _read_text(path: str) -> str:
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        raise JobFileError(path, "no such file") from None
    except IsADirectoryError:
        raise JobFileError(path, "is a directory, not a job file") from None
    except OSError as exc:
        raise JobFileError(path, f"cannot read it: {exc.strerror or exc}") from None
    try:
        return decode_text(data)
    except ValueError as exc:
        raise JobFileError(path, str(exc)) from None


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


_SEPARATORS = {";": "semicolon", "\t": "tab"}


def _header(path: str, schema: _Schema, values: list[str], line: int) -> list[str]:
    """The canonical columns; a header that only makes sense split at another separator
    (Excel writes ``;`` in many locales, and ``sep=;`` first lines) gets a hint instead."""
    try:
        return _canonical_keys(path, schema, values, line=line, where="column")
    except JobFileError as exc:
        for separator, name in _SEPARATORS.items():
            if separator in exc.field:
                raise JobFileError(
                    path,
                    f"this looks {name}-separated; ghl-migrate reads comma-separated CSV: "
                    "save it as CSV (comma delimited), UTF-8",
                    line=line,
                ) from None
        raise


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
                header = _header(path, schema, values, start)
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
    """Rows of every file, in order. Every file is read before anything is returned.

    A file without a single record fails the whole set: a batch job with nothing to do is
    almost always the wrong file, the wrong sheet or a failed export.
    """
    if not paths:
        raise JobFileError("<none>", "no job file given")
    rows: list[SourceRow] = []
    empty: list[tuple[str, str]] = []
    for path in paths:
        found, fmt = read_job_file(path, schema)
        if not found:
            empty.append((path, "only a header row" if fmt is InputFormat.CSV else "an empty list"))
        rows.extend(found)
    if len(empty) == 1:
        path, holds = empty[0]
        raise JobFileError(path, f"no records ({holds}): nothing to do")
    if empty:
        named = ", ".join(f"{path} ({holds})" for path, holds in empty)
        raise ConfigError(f"no records in {named}: nothing to do")
    return rows
