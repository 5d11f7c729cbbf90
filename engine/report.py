"""The per-record report: written row by row as records finish, rewritten once at the end.

While a run is going the report is append-only: each finished record is one row, flushed to
the OS as soon as it is written (so a killed process loses nothing it reported), and synced
to disk in groups (at most ``sync_interval`` seconds apart) for power loss. When the run ends
the file is rewritten atomically (temporary file, fsync, rename) to exactly one row per input
record. A resumed run appends to it again; ``read_report`` keeps every row, the caller keeps
the last one per record.

CSV cells that a spreadsheet would run as a formula (first character ``= + - @``, tab or CR)
are prefixed with ``'``, and so are cells that start with ``'`` themselves, so that
``read_report`` can remove the prefix again without touching the value.
"""

from __future__ import annotations

import contextlib
import csv
import enum
import io
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import IO, Any

import orjson

from .appendlog import AppendLog
from .errors import ConfigError, StorageError, os_error_text

__all__ = [
    "ReportFormat",
    "ReportWriter",
    "iter_report",
    "read_report",
    "report_columns",
    "report_format",
    "write_report_atomically",
    "write_report_lines",
]

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")

Row = Mapping[str, Any]


class ReportFormat(enum.Enum):
    """Report formats, chosen by the file extension."""

    CSV = "csv"
    JSONL = "jsonl"


def report_format(path: str) -> ReportFormat:
    """``.csv`` → CSV, ``.jsonl`` → JSON Lines; anything else is a ``ConfigError``."""
    lower = path.lower()
    if lower.endswith(".csv"):
        return ReportFormat.CSV
    if lower.endswith(".jsonl"):
        return ReportFormat.JSONL
    raise ConfigError(f"report {path}: name it *.csv or *.jsonl to choose its format")


_ESCAPED_START = (*_FORMULA_START, "'")
_FIRST = frozenset(_ESCAPED_START)


def _plain(line: str) -> bool:
    """Whether a line of cells joined with commas needs no cell escaped and none quoted: no
    cell starts with a formula character or ``'``, none holds a quote or a line break (a
    comma inside a cell is found by counting). Plain ``in`` tests, each a fast scan in C:
    a regular expression doing the same takes longer than the whole row's cells."""
    return (
        line[:1] not in _FIRST
        and '"' not in line
        and "\n" not in line
        and "\r" not in line
        and ",=" not in line
        and ",+" not in line
        and ",-" not in line
        and ",@" not in line
        and ",\t" not in line
        and ",'" not in line
    )


def _uncell(text: str) -> str:
    return text[1:] if text.startswith("'") and text[1:].startswith(_ESCAPED_START) else text


class _Encoder:
    def __init__(self, fmt: ReportFormat, columns: Sequence[str]) -> None:
        self.fmt = fmt
        self.columns = tuple(columns)
        self._commas = len(self.columns) - 1
        self._buf = io.StringIO()
        # csv quotes a cell only when it holds a character of the line terminator, so the
        # writer ends lines with \r\n (a lone \r in a cell gets quoted too) and ``_line``
        # turns that final \r\n into the file's \n.
        self._csv = csv.writer(self._buf, lineterminator="\r\n")

    def header(self) -> bytes:
        if self.fmt is ReportFormat.JSONL:
            return b""
        return self._line(self.columns)

    def _line(self, cells: Iterable[str]) -> bytes:
        self._buf.seek(0)
        self._buf.truncate()
        self._csv.writerow(cells)
        return (self._buf.getvalue()[:-2] + "\n").encode()

    def encode(self, row: Row) -> bytes:
        """The line of ``row``, line end included."""
        if self.fmt is ReportFormat.JSONL:
            ordered = {c: ("" if (v := row.get(c)) is None else v) for c in self.columns}
            return orjson.dumps(ordered, option=orjson.OPT_APPEND_NEWLINE)
        cells = ["" if (v := row.get(c)) is None else str(v) for c in self.columns]
        line = ",".join(cells)
        # Most rows need neither escaping nor quoting: then the csv module (a buffer per
        # line) is skipped.
        if line.count(",") == self._commas and _plain(line):
            return (line + "\n").encode()
        for i, text in enumerate(cells):
            if text.startswith(_ESCAPED_START):
                cells[i] = "'" + text
        return self._line(cells)


class ReportWriter:
    """Appends rows to a report file, flushing each and syncing in groups."""

    def __init__(
        self,
        path: str,
        columns: Sequence[str],
        *,
        sync_interval: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self._enc = _Encoder(report_format(path), columns)
        self._log = AppendLog(path, sync_interval=sync_interval, clock=clock)
        self.rows_written = 0

    def open(self) -> None:
        """Open for appending; a new or empty file gets the header first.

        Raises ``ConfigError`` naming the file when it cannot be opened or written."""
        try:
            new = self._log.open()
        except OSError as exc:
            raise ConfigError(
                f"report {self.path}: cannot be opened for writing ({os_error_text(exc)})"
            ) from None
        if new and (header := self._enc.header()):
            try:
                self._log.write(header)
            except StorageError as exc:
                self._log.close()
                raise ConfigError(f"{exc}; nothing was sent") from None

    def encode(self, row: Row) -> bytes:
        """The line of ``row`` in this report (what :meth:`write` appends)."""
        return self._enc.encode(row)

    def write(self, row: Row) -> bytes:
        """Append one row and hand it to the OS; sync to disk at most every interval.
        Returns the line written."""
        line = self._enc.encode(row)
        self._log.write(line)
        self.rows_written += 1
        return line

    def close(self) -> None:
        """Sync and close."""
        self._log.close()


def write_report_atomically(path: str, columns: Sequence[str], rows: Iterable[Row]) -> int:
    """Replace ``path`` with exactly ``rows`` (temporary file, fsync, rename). Returns the count.

    Raises ``StorageError`` when it cannot (a full disk, say), leaving ``path`` as it was."""
    enc = _Encoder(report_format(path), columns)
    return write_report_lines(path, columns, (enc.encode(row) for row in rows))


def write_report_lines(path: str, columns: Sequence[str], lines: Iterable[bytes]) -> int:
    """Like :func:`write_report_atomically`, from rows already encoded (each a whole line,
    as :meth:`ReportWriter.encode` makes them). Returns the count."""
    header = _Encoder(report_format(path), columns).header()
    tmp = f"{path}.tmp-{os.getpid()}"
    count = 0
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
        with open(fd, "wb") as fh:
            fh.write(header)
            for line in lines:
                fh.write(line)
                count += 1
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        # The file at ``path`` is untouched: whatever it held stays the report.
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise StorageError(path, exc) from exc
    directory = os.path.dirname(os.path.abspath(path))
    try:
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return count
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return count


def read_report(path: str) -> list[dict[str, str]]:
    """Every complete row of a report, in file order, values as strings (see
    :func:`iter_report`; this one holds them all in memory)."""
    return list(iter_report(path))


def _complete_lines(fh: IO[str]) -> Iterator[str]:
    """The file's lines, except a last one that has no line end (torn by a kill)."""
    previous: str | None = None
    for line in fh:
        if previous is not None:
            yield previous
        previous = line
    if previous is not None and previous.endswith(("\n", "\r")):
        yield previous


def report_columns(path: str) -> list[str] | None:
    """The header of a CSV report (None for JSON Lines, whose rows name their columns)."""
    if report_format(path) is not ReportFormat.CSV:
        return None
    with open(path, encoding="utf-8-sig", newline="") as fh:
        return next(csv.reader(_complete_lines(fh)), None)


def iter_report(path: str) -> Iterator[dict[str, str]]:
    """Every complete row of a report, in file order, values as strings, read as consumed.

    A truncated last line (a process killed mid-write) is skipped, and so is a CSV row with
    the wrong number of cells (a torn line that a later append completed).
    """
    fmt = report_format(path)
    with open(path, encoding="utf-8-sig", newline="") as fh:
        if fmt is ReportFormat.JSONL:
            for line in _complete_lines(fh):
                if not line.strip():
                    continue
                try:
                    item = orjson.loads(line)
                except orjson.JSONDecodeError:
                    continue  # a torn line
                if isinstance(item, dict):
                    yield {k: "" if v is None else str(v) for k, v in item.items()}
            return
        for raw in csv.DictReader(_complete_lines(fh)):
            if None in raw or any(v is None for v in raw.values()):
                continue  # a row with the wrong number of cells: torn or repaired line
            yield {k: _uncell(v) for k, v in raw.items()}
