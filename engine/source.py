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

import codecs
import csv
import enum
import io
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any, Protocol

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
    JSONL = "jsonl"


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


_SNIFF = 4096  # characters looked at to tell JSON from CSV when the extension does not say


def detect_format(path: str, text: str) -> InputFormat:
    """By extension (``.csv``, ``.json``, ``.jsonl``/``.ndjson``), else by the start of
    ``text``: ``[`` is JSON, ``{`` is JSON Lines when the first line is a whole object
    and JSON (a template) otherwise, anything else CSV."""
    ext = os.path.splitext(path)[1].lower()
    if ext == ".csv":
        return InputFormat.CSV
    if ext == ".json":
        return InputFormat.JSON
    if ext in {".jsonl", ".ndjson"}:
        return InputFormat.JSONL
    start = text.lstrip()
    if start[:1] == "[":
        return InputFormat.JSON
    if start[:1] == "{":
        first, newline, _ = start.partition("\n")
        try:
            whole = newline and isinstance(orjson.loads(first), dict)
        except orjson.JSONDecodeError:
            whole = False
        return InputFormat.JSONL if whole else InputFormat.JSON
    return InputFormat.CSV


_SAVE_AS_UTF8 = "save it as UTF-8 (in Excel: CSV UTF-8)"


def decode_text(data: bytes, *, final: bool = True) -> str:
    """UTF-8 text, with or without a BOM, from a file's bytes (``final=False``: only the
    start of them, which may end inside a character).

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
        return codecs.getincrementaldecoder("utf-8-sig")().decode(data, final=final)
    except UnicodeDecodeError as exc:
        raise ValueError(decode_problem(exc)) from None


def decode_problem(exc: UnicodeDecodeError) -> str:
    """What a UTF-8 decoding error means to the person who saved the file."""
    return f"not UTF-8 text ({exc.reason}): {_SAVE_AS_UTF8}"


_HEAD = 1 << 16  # bytes looked at to recognise UTF-16, workbooks and binary files


def _open_text(path: str) -> IO[str]:
    """The file as UTF-8 text (BOM or not), read lazily; what cannot be text fails here."""
    try:
        fh = open(path, "rb")  # noqa: SIM115 - handed to the caller
    except FileNotFoundError:
        raise JobFileError(path, "no such file") from None
    except IsADirectoryError:
        raise JobFileError(path, "is a directory, not a job file") from None
    except OSError as exc:
        raise JobFileError(path, f"cannot read it: {exc.strerror or exc}") from None
    try:
        head = fh.read(_HEAD)
        fh.seek(0)
        # Only the start is checked here; the rest is decoded strictly as it is read.
        decode_text(head, final=len(head) < _HEAD)
    except OSError as exc:
        fh.close()
        raise JobFileError(path, f"cannot read it: {exc.strerror or exc}") from None
    except ValueError as exc:
        fh.close()
        raise JobFileError(path, str(exc)) from None
    return io.TextIOWrapper(fh, encoding="utf-8-sig", newline="")


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


def _read_csv(path: str, text: IO[str], schema: _Schema) -> Iterator[SourceRow]:
    name = os.path.basename(path)
    # Lines end only at \r or \n (the stream is opened with newline=""): str.splitlines
    # would also split a cell at \x0b, \x0c, \x1c-\x1e, \x85, U+2028 or U+2029 (Word's line
    # break, pasted text), making rows.
    reader = csv.reader(text, strict=True)
    header: list[str] | None = None
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
            yield SourceRow(source=f"{name}:{start}", values=row, problem=problem)
    except csv.Error as exc:
        raise JobFileError(path, f"malformed CSV: {exc}", line=reader.line_num) from None
    if header is None:
        raise JobFileError(path, "empty file: expected a header row", line=1)


def _row(path: str, schema: _Schema, source: str, item: Any) -> SourceRow:
    if not isinstance(item, dict):
        return SourceRow(source=source, values={}, problem="not an object")
    keys = _canonical_keys(path, schema, list(item), line=None, where=f"key in {source}:")
    return SourceRow(source=source, values=dict(zip(keys, item.values(), strict=True)))


def _read_json(path: str, text: IO[str], schema: _Schema) -> Iterator[SourceRow]:
    """A JSON document (a list of records, or a template the kind expands) is read whole:
    large jobs belong in CSV or JSON Lines, which are streamed."""
    name = os.path.basename(path)
    try:
        document = orjson.loads(text.read())
    except orjson.JSONDecodeError as exc:
        raise JobFileError(path, f"broken JSON: {exc.msg}", line=exc.lineno) from None
    if isinstance(document, list):
        items: Iterable[Any] = document
    elif isinstance(document, dict):
        items = schema.expand(document, path)
    else:
        raise JobFileError(path, "expected a list of records or a template object")
    for index, item in enumerate(items, start=1):
        yield _row(path, schema, f"{name}#{index}", item)


def _read_jsonl(path: str, text: IO[str], schema: _Schema) -> Iterator[SourceRow]:
    """JSON Lines: one record (an object) per line; blank lines are ignored."""
    name = os.path.basename(path)
    for number, line in enumerate(text, start=1):
        if not line.strip():
            continue
        try:
            item = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise JobFileError(path, f"broken JSON: {exc.msg}", line=number) from None
        yield _row(path, schema, f"{name}:{number}", item)


_READERS = {
    InputFormat.CSV: _read_csv,
    InputFormat.JSON: _read_json,
    InputFormat.JSONL: _read_jsonl,
}


def _rows(path: str, schema: _Schema) -> tuple[Iterator[SourceRow], InputFormat]:
    text = _open_text(path)
    try:
        fmt = detect_format(path, text.read(_SNIFF))
        text.seek(0)
    except UnicodeDecodeError as exc:
        text.close()
        raise JobFileError(path, decode_problem(exc)) from None

    def rows() -> Iterator[SourceRow]:
        with text:
            try:
                yield from _READERS[fmt](path, text, schema)
            except UnicodeDecodeError as exc:
                raise JobFileError(path, decode_problem(exc)) from None
            except OSError as exc:
                raise JobFileError(path, f"cannot read it: {exc.strerror or exc}") from None

    return rows(), fmt


def read_job_file(path: str, schema: _Schema) -> tuple[list[SourceRow], InputFormat]:
    """All rows of one job file, as a list, and its detected format (for small files and
    tests; runs stream with :func:`read_job_files`). Raises ``JobFileError``."""
    rows, fmt = _rows(path, schema)
    return list(rows), fmt


def read_job_files(paths: Sequence[str], schema: _Schema) -> Iterator[SourceRow]:
    """Rows of every file, in order, read as they are consumed (memory does not grow with
    the files). Every file is opened and its start checked before the first row comes;
    a later problem raises ``JobFileError`` when it is reached, so a caller that must not
    act on a broken set of files consumes them all first (a run loads every row into its
    store before it sends anything).

    A file without a single record fails the whole set: a batch job with nothing to do is
    almost always the wrong file, the wrong sheet or a failed export.
    """
    if not paths:
        raise JobFileError("<none>", "no job file given")
    for path in paths:  # fail at once on a missing or binary file, before any row
        _open_text(path).close()
    return _read_all(paths, schema)


def _read_all(paths: Sequence[str], schema: _Schema) -> Iterator[SourceRow]:
    empty: list[tuple[str, str]] = []
    for path in paths:
        rows, fmt = _rows(path, schema)
        count = 0
        for row in rows:
            count += 1
            yield row
        if not count:
            empty.append((path, "only a header row" if fmt is InputFormat.CSV else "an empty list"))
    if len(empty) == 1:
        path, holds = empty[0]
        raise JobFileError(path, f"no records ({holds}): nothing to do")
    if empty:
        named = ", ".join(f"{path} ({holds})" for path, holds in empty)
        raise ConfigError(f"no records in {named}: nothing to do")
