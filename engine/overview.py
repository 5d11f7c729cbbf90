"""A report at a glance: counts by outcome, failures grouped by cause, the worst locations.

It reads any report, including one still being written by a running or killed process: the
report is append-only while a run goes (a resumed run appends again), so the *last* row of
each record wins, and ``iter_report`` skips a torn last line. A record is known by its
report, ``source`` and ``location_id``.

Reports can hold a million rows, so nothing holds them all. Rows stream into a scratch
SQLite database (a private temporary file that SQLite deletes on close), keyed by record,
where a later row of the same record replaces the earlier one; the counts, the groups and
their examples are then SQL aggregates. Memory holds the per-location counts (one entry per
location, as a run does) and a capped number of groups and example rows.

Failures are grouped by cause: outcome, HTTP status and a *pattern* of the message, which
keeps its first clause (up to ``; ``, after which messages add details such as what a
location has) with the record's own location id (and name), quoted values, ids and
numbers replaced, so that ``object 'custom_objects.boat' does not exist in location X``
is one cause across every location.
Nothing here knows any API: the columns a kind adds are kept in the example rows as they are.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson

from .errors import ConfigError, os_error_text
from .journal import journal_meta, journal_path
from .model import FAILED, INVALID, NOT_RUN
from .report import iter_report

__all__ = [
    "FailureGroup",
    "LocationSummary",
    "Overview",
    "RunIdentity",
    "message_pattern",
    "run_identity",
    "shown_url",
    "summarize",
]

#: outcomes that are not ok whatever the kind, for reports whose kind is not known
DEFAULT_NOT_OK = frozenset({FAILED, INVALID, NOT_RUN})
#: the report column that names a location, where a run knew it
NAME_COLUMN = "location_name"

_QUOTED = re.compile(r"""(?<!\w)'[^']*'(?!\w)|"[^"]*\"""")
# An id: 8 or more letters, digits, '_' or '-', with at least one digit and one letter.
_ID = re.compile(r"(?<![\w-])(?=[\w-]*\d)(?=[\w-]*[A-Za-z])[\w-]{8,}(?![\w-])")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_PATTERN_LENGTH = 200


def message_pattern(error: str, row: Mapping[str, str] | None = None) -> str:
    """The cause an error message states, with what varies from record to record replaced:
    its first clause, the record's location (from ``row``: ``<location_id>``), quoted
    values as ``'…'``, ids as ``<id>``, numbers as ``<n>``."""
    first = error.split("; ", 1)[0].strip()
    if row:
        # Only the location's own id and name: other columns hold everyday words too
        # (an action "create"), which must stay in the message.
        for column in (NAME_COLUMN, "location_id"):
            value = row.get(column, "")
            if len(value) >= 4 and value in first:
                first = first.replace(value, f"<{column}>")
    text = _QUOTED.sub(lambda m: f"{m[0][0]}…{m[0][0]}", first)
    text = _ID.sub("<id>", text)
    text = _NUMBER.sub("<n>", text)
    return text[:_PATTERN_LENGTH] or "(no message)"


@dataclass(frozen=True, slots=True, kw_only=True)
class FailureGroup:
    """Records that are not ok for the same cause."""

    outcome: str
    http_status: str
    pattern: str
    count: int
    #: distinct locations among them
    locations: int
    #: the first rows of the group, in report order, every column as the report has it
    examples: tuple[Mapping[str, str], ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class LocationSummary:
    """The records of one location."""

    location_id: str
    name: str
    counts: Mapping[str, int]
    total: int
    not_ok: int
    #: attempts the records took, as the report counts them
    attempts: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Overview:
    """What :func:`summarize` found in one or more reports."""

    reports: tuple[str, ...]
    #: every column seen, in the order first seen
    columns: tuple[str, ...]
    ok_statuses: frozenset[str]
    #: records (the last row of each)
    total: int
    #: rows read, earlier rows of a record included
    rows_read: int
    counts: Mapping[str, int]
    #: every location, worst first (most records not ok, then most records)
    locations: tuple[LocationSummary, ...]
    #: the largest groups of records not ok, largest first
    groups: tuple[FailureGroup, ...]
    #: groups beyond those kept, and their records
    more_groups: int = 0
    more_group_records: int = 0

    @property
    def not_ok(self) -> int:
        """Records whose outcome is not ok."""
        return sum(n for status, n in self.counts.items() if not self.is_ok(status))

    def is_ok(self, status: str) -> bool:
        """Whether ``status`` counts as ok."""
        return status in self.ok_statuses

    @property
    def outcomes(self) -> tuple[str, ...]:
        """Outcomes present: ok ones first, each by count, largest first."""
        return tuple(sorted(self.counts, key=lambda s: (not self.is_ok(s), -self.counts[s], s)))


def _ok_statuses(ok_statuses: frozenset[str] | None, seen: Iterator[str]) -> frozenset[str]:
    if ok_statuses is not None:
        return ok_statuses
    return frozenset(s for s in seen if s not in DEFAULT_NOT_OK)


class _Scratch:
    """The scratch database: one row per record, the last one read wins."""

    def __init__(self) -> None:
        # "" is a private temporary file, deleted on close: it spills to disk, not memory.
        self.db = sqlite3.connect("", isolation_level=None)
        self.db.executescript(
            """
            PRAGMA journal_mode = OFF;
            PRAGMA synchronous = OFF;
            CREATE TABLE rows (
                seq INTEGER PRIMARY KEY, k TEXT, location TEXT, name TEXT, outcome TEXT,
                status TEXT, attempts INTEGER, pattern TEXT, row BLOB
            );
            """
        )

    def load(self, batches: Iterator[list[tuple[Any, ...]]]) -> None:
        """Append every row, then drop each that a later row of its record replaces.

        Appending in file order and indexing once at the end is several times faster than
        replacing by key on insert, and the usual report (rewritten at the end of its run)
        has no superseded row at all."""
        self.db.execute("BEGIN")
        for batch in batches:
            self.db.executemany("INSERT INTO rows VALUES (?,?,?,?,?,?,?,?,?)", batch)
        self.db.execute("CREATE INDEX records ON rows (k, seq)")
        self.db.execute(
            "DELETE FROM rows WHERE k IN (SELECT k FROM rows GROUP BY k HAVING count(*) > 1) "
            "AND seq < (SELECT max(seq) FROM rows AS later WHERE later.k = rows.k)"
        )
        self.db.execute("COMMIT")

    def query(self, sql: str, *args: Any) -> sqlite3.Cursor:
        return self.db.execute(sql, args)

    def close(self) -> None:
        self.db.close()


def _rows(
    paths: Sequence[str], columns: dict[str, None], ok: frozenset[str] | None, read: list[int]
) -> Iterator[list[tuple[Any, ...]]]:
    batch: list[tuple[Any, ...]] = []
    seq = 0
    for index, path in enumerate(paths):
        try:
            for row in iter_report(path):
                seq += 1
                if len(columns) < len(row):
                    columns.update(dict.fromkeys(row))
                outcome = row.get("outcome", "")
                location = row.get("location_id", "")
                bad = outcome in DEFAULT_NOT_OK if ok is None else outcome not in ok
                batch.append(
                    (
                        seq,
                        f"{index}\x1f{row.get('source', '')}\x1f{location}",
                        location,
                        row.get(NAME_COLUMN, ""),
                        outcome,
                        row.get("http_status", ""),
                        int(row["attempts"]) if row.get("attempts", "").isdigit() else 0,
                        message_pattern(row.get("error", ""), row) if bad else None,
                        orjson.dumps(row) if bad else None,
                    )
                )
                if len(batch) >= 5000:
                    yield batch
                    batch = []
        except OSError as exc:
            raise ConfigError(f"report {path}: cannot be read ({os_error_text(exc)})") from None
        except UnicodeDecodeError:
            raise ConfigError(f"report {path}: not UTF-8, so not a report") from None
    read.append(seq)
    yield batch


def summarize(
    paths: Sequence[str],
    *,
    ok_statuses: frozenset[str] | None = None,
    groups: int = 50,
    examples: int = 20,
) -> Overview:
    """Read the reports at ``paths`` and sum them up (see the module docstring).

    ``ok_statuses`` are the outcomes that count as ok (the job kind's); when not given,
    everything but ``failed``, ``invalid`` and ``not_run`` does. ``groups`` and
    ``examples`` cap the failure groups kept and the example rows of each. Raises
    ``ConfigError`` when a report cannot be read."""
    columns: dict[str, None] = {}
    read: list[int] = []
    scratch = _Scratch()
    try:
        scratch.load(_rows(paths, columns, ok_statuses, read))
        counts = dict(
            scratch.query("SELECT outcome, count(*) FROM rows GROUP BY outcome").fetchall()
        )
        ok = _ok_statuses(ok_statuses, iter(counts))
        locations = _locations(scratch, ok)
        kept, more, more_records = _groups(scratch, groups, examples)
    finally:
        with contextlib.suppress(sqlite3.Error):
            scratch.close()
    return Overview(
        reports=tuple(paths),
        columns=tuple(columns),
        ok_statuses=ok,
        total=sum(counts.values()),
        rows_read=read[0] if read else 0,
        counts=counts,
        locations=locations,
        groups=kept,
        more_groups=more,
        more_group_records=more_records,
    )


def _locations(scratch: _Scratch, ok: frozenset[str]) -> tuple[LocationSummary, ...]:
    found: dict[str, dict[str, Any]] = {}
    for location, name, outcome, count, attempts in scratch.query(
        "SELECT location, max(name), outcome, count(*), sum(attempts) FROM rows "
        "GROUP BY location, outcome"
    ):
        entry = found.setdefault(location, {"name": "", "counts": {}, "attempts": 0})
        entry["name"] = entry["name"] or name or ""
        entry["counts"][outcome] = count
        entry["attempts"] += attempts or 0
    summaries = [
        LocationSummary(
            location_id=location,
            name=entry["name"],
            counts=entry["counts"],
            total=sum(entry["counts"].values()),
            not_ok=sum(n for s, n in entry["counts"].items() if s not in ok),
            attempts=entry["attempts"],
        )
        for location, entry in found.items()
    ]
    summaries.sort(key=lambda s: (-s.not_ok, -s.total, s.location_id))
    return tuple(summaries)


def _groups(
    scratch: _Scratch, limit: int, examples: int
) -> tuple[tuple[FailureGroup, ...], int, int]:
    scratch.query(
        "CREATE INDEX causes ON rows (pattern, outcome, status, seq) WHERE pattern IS NOT NULL"
    )
    kept: list[FailureGroup] = []
    more = more_records = 0
    for outcome, status, pattern, count, locations in scratch.query(
        "SELECT outcome, status, pattern, count(*), count(DISTINCT location) FROM rows "
        "WHERE pattern IS NOT NULL GROUP BY pattern, outcome, status "
        "ORDER BY count(*) DESC, outcome, status, pattern"
    ):  # streamed: a report whose every message differs has as many groups as rows
        if len(kept) >= limit:
            more += 1
            more_records += count
            continue
        rows = scratch.query(
            "SELECT row FROM rows WHERE pattern = ? AND outcome = ? AND status = ? "
            "ORDER BY seq LIMIT ?",
            pattern,
            outcome,
            status,
            examples,
        )
        kept.append(
            FailureGroup(
                outcome=outcome,
                http_status=status,
                pattern=pattern,
                count=count,
                locations=locations,
                examples=tuple(orjson.loads(row) for (row,) in rows),
            )
        )
    return tuple(kept), more, more_records


#: journal fields that are not settings of the kind
_NOT_SETTINGS = frozenset({"format", "kind", "job_files", "job_sha256", "ephemeral", "plan"})


def shown_url(url: str) -> str:
    """A URL without what could be secret in it (user info, query, fragment)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


@dataclass(frozen=True, slots=True, kw_only=True)
class RunIdentity:
    """Who made a report, from its journal's first line (never a token: it holds none)."""

    report: str
    kind: str = ""
    #: the kind's settings a resume must share, such as ``api`` and ``base_url``
    settings: Mapping[str, str] = field(default_factory=dict)
    #: (file name, SHA-256 hex or "") of each job file
    job_files: tuple[tuple[str, str], ...] = ()
    #: the run went to a throwaway server (an embedded sandbox)
    ephemeral: bool = False
    #: a plan: its outcomes say what a run would do, nothing was written
    plan: bool = False
    #: why the journal could not say (missing, damaged), or ""
    problem: str = ""


def run_identity(report: str) -> RunIdentity:
    """The identity of the run that wrote ``report``, from its journal; never raises."""
    try:
        meta = journal_meta(journal_path(report))
    except ConfigError as exc:
        return RunIdentity(report=report, problem=str(exc))
    if meta is None:
        return RunIdentity(report=report, problem=f"no journal ({journal_path(report)}) beside it")
    digests = {
        str(pair[0]): str(pair[1])
        for pair in meta.get("job_sha256") or []
        if isinstance(pair, list) and len(pair) == 2
    }
    return RunIdentity(
        report=report,
        kind=str(meta.get("kind", "")),
        settings={
            key: shown_url(str(value)) if key.endswith("url") else str(value)
            for key, value in meta.items()
            if key not in _NOT_SETTINGS and isinstance(value, str | int | float)
        },
        job_files=tuple((str(n), digests.get(str(n), "")) for n in meta.get("job_files") or []),
        ephemeral=meta.get("ephemeral") is True,
        plan=meta.get("plan") is True,
    )
