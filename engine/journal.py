"""The run journal: what lets a stopped or killed run be resumed without doing work twice.

It lives beside the report (``out.csv`` → ``out.csv.journal``) and is append-only JSON Lines:

- line 1 describes the run: job kind and its settings such as API and base URL (a resumed
  run must share them), the job files' names and SHA-256 digests (a resumed run must read
  the same files, not merely files of the same names: records gone from an edited file would
  otherwise fall out of the report), whether the server was ephemeral (see
  ``RunConfig.ephemeral``), whether the run only planned (``RunConfig.plan``: its report
  says what a run would do, so it is never resumed nor rolled back, and it has no intents),
  and the shards it covers when the run was one shard of a job split between processes
  (``"shard": "2/4"``, see :mod:`engine.shard`): a resumed run must be the same shard, so
  one shard never continues another's report;
- every later line is an *intent*, written and handed to the OS before a write request is
  sent: ``{"intent": ident, "source": ..., **Write.intent}`` (what the kind needs to know
  of it later, such as the labels an update replaces);
- once the run has rewritten its report to one row per record, an *end* line says so, with
  the number of rows: ``{"end": "run", "rows": 40}``. A resumed run appends intents after it
  (and its own end line when it finishes), so the report is whole exactly when the last line
  is an end line. :mod:`engine.merge` relies on it, and writes ``{"end": "merge", ...}``.

A record that has an intent but whose change is found already in place on a later look was
changed by this job (its response was lost, or the process died), not by someone before it.
Intents are never removed, so that stays true across any number of resumes.

A partial last line is what a process killed mid-write leaves (before that request went
out), and is cut. Any other line that is not a JSON object means the file was damaged: the
journal can no longer say what the run sent, so reading it is an error naming the line.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import orjson
import structlog

from .appendlog import AppendLog
from .errors import ConfigError, StorageError, os_error_text
from .model import Record
from .shard import ShardSet

__all__ = [
    "RunJournal",
    "journal_entries",
    "journal_intents",
    "journal_meta",
    "journal_path",
    "pending_intents",
    "write_journal",
]

log = structlog.get_logger("engine")

_FORMAT = "ghl-migrate-journal/1"
_SUFFIX = ".journal"
#: meta fields that describe a run without having to match on resume
_DIGESTS, _EPHEMERAL, _PLAN = "job_sha256", "ephemeral", "plan"
#: the meta field naming the shards a report covers (absent: the whole job)
_SHARD = "shard"


def journal_path(report_path: str) -> str:
    """The journal file that belongs to ``report_path``."""
    return f"{report_path}{_SUFFIX}"


def _report_of(path: str) -> str:
    return path[: -len(_SUFFIX)] if path.endswith(_SUFFIX) else path


def _corrupted(path: str, number: int, what: str) -> ConfigError:
    line = "line 1 (the run's description)" if number == 1 else f"line {number}"
    return ConfigError(
        f"journal {path}, {line}: {what}, so it can no longer say what the run sent; restore "
        f"it from a backup, or start a new run with another --report path"
    )


def _lines(path: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each line of a journal, read as consumed (a journal can
    hold a million intents). A partial last line is skipped; any other damaged line is a
    ``ConfigError``."""
    try:
        with open(path, "rb") as fh:
            previous: bytes | None = None
            number = 0
            for line in fh:
                if previous is not None:
                    yield _parsed(path, number, previous)
                number += 1
                previous = line
            # The last line counts only when complete: a partial one is what a process
            # killed mid-write leaves, before that request went out.
            if previous is not None and previous.endswith(b"\n"):
                yield _parsed(path, number, previous)
    except OSError as exc:
        raise ConfigError(f"journal {path}: cannot be read ({os_error_text(exc)})") from None


def _parsed(path: str, number: int, line: bytes) -> tuple[int, dict[str, Any]]:
    try:
        item = orjson.loads(line)
    except orjson.JSONDecodeError:
        raise _corrupted(path, number, "not valid JSON") from None
    if not isinstance(item, dict):
        raise _corrupted(path, number, "not a JSON object")
    return number, item


def _read_meta(path: str) -> dict[str, Any] | None:
    """The run description (line 1), None when there is no complete line yet."""
    first = next(_lines(path), None)
    return None if first is None else first[1]


def _intents(path: str) -> Iterator[dict[str, Any]]:
    """Every intent after the description, in order (checking every line as it goes)."""
    for number, item in _lines(path):
        if number > 1 and isinstance(item.get("intent"), str):
            yield item


def journal_meta(path: str) -> dict[str, Any] | None:
    """The run description (first line) of the journal at ``path``; None when the file is
    missing or empty. Raises ``ConfigError`` when it is damaged or not a journal."""
    if not os.path.exists(path) or os.path.getsize(path) == 0:
        return None
    meta = _read_meta(path)
    if meta is None:
        return None  # only a partial first line: killed while starting
    if meta.get("format") != _FORMAT:
        raise ConfigError(f"{path} is not a ghl-migrate journal")
    return meta


def journal_intents(path: str, *, action: str | None = None) -> Iterator[dict[str, Any]]:
    """Every intent a journal noted (optionally of one ``action`` only), in order, read as
    consumed: ``{"intent": ident, "source": ..., **Write.intent}``."""
    for item in _intents(path):
        if action is None or item.get("action") == action:
            yield item


def journal_entries(path: str) -> Iterator[dict[str, Any]]:
    """Every line after the description (intents and end lines), in order, read as
    consumed; a damaged line is a ``ConfigError`` naming it."""
    for number, item in _lines(path):
        if number > 1:
            yield item


def write_journal(path: str, meta: Mapping[str, Any], entries: Iterable[Mapping[str, Any]]) -> None:
    """Write a whole journal at once (temporary file, fsync, rename): ``meta`` as its
    description, then ``entries``. For a journal made from others (a merge), not a run's.

    Raises ``StorageError`` when it cannot, leaving ``path`` as it was."""
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as fh:
            fh.write(orjson.dumps({"format": _FORMAT, **meta}) + b"\n")
            for entry in entries:
                fh.write(orjson.dumps(dict(entry)) + b"\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise StorageError(path, exc) from exc


def _shard_mismatch(report: str, was: object, now: object) -> str:
    if was is None:
        return (
            f"{report} belongs to a run that was not split into shards: resume it without "
            f"--shard (this run is shard {now}), or give this shard a --report of its own"
        )
    try:
        covered = ShardSet.parse(str(was))
    except ValueError:
        return f"{report} names shard {was!r}, which this release cannot read"
    if len(covered.indexes) > 1:
        missing = ", ".join(str(k) for k in covered.missing)
        return (
            f"{report} is a merge of {covered.describe()} only ({missing} missing), so it "
            "cannot be resumed: resume each shard's own report with its --shard, then merge "
            "them again"
        )
    doing = "is not split into shards" if now is None else f"is shard {now}"
    return (
        f"{report} is the report of shard {was}: resume it with --shard {was} (this run "
        f"{doing}); each shard keeps a report of its own, and `report merge` joins them"
    )


def pending_intents(path: str, *, action: str | None = None) -> set[str]:
    """The record idents a journal noted writes for (optionally of one ``action`` only)."""
    return {
        item["intent"] for item in _intents(path) if action is None or item.get("action") == action
    }


def _describe_mismatch(found: Mapping[str, Any], expected: Mapping[str, Any]) -> str:
    diffs = [
        f"{key} was {found.get(key)!r}, now {value!r}"
        for key, value in expected.items()
        if found.get(key) != value
    ]
    return "; ".join(diffs)


class RunJournal:
    """Append-only intents for one report, checked against the run that made it.

    ``meta`` is what a resumed run must share with the run it continues; ``digests`` are
    ``(file name, SHA-256 hex)`` of the job files, which must be unchanged too; ``ephemeral``
    notes that the run's server does not outlive it.
    """

    def __init__(
        self,
        path: str,
        meta: Mapping[str, Any],
        *,
        digests: Sequence[tuple[str, str]] | None = None,
        ephemeral: bool = False,
        plan: bool = False,
        sync_interval: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self._meta = {"format": _FORMAT, **meta}
        self._digests = None if digests is None else sorted(digests)
        self._ephemeral = ephemeral
        self._plan = plan
        self._log = AppendLog(path, sync_interval=sync_interval, clock=clock)

    def open(self, *, resume: bool) -> Iterator[tuple[str, dict[str, Any]]]:
        """Start a new journal, or (``resume``) check and continue an existing one.

        Returns the intents earlier processes noted, as (ident, fields), in order. They are
        read from the file as they are consumed (a journal can hold a million), so consume
        them before the first :meth:`intent`. Raises ``ConfigError`` (naming the file) when
        the journal cannot be used, damaged lines included, before or while they are read."""
        exists = os.path.exists(self.path) and os.path.getsize(self.path) > 0
        earlier: Iterator[tuple[str, dict[str, Any]]] = iter(())
        if exists:
            if not resume:
                raise ConfigError(
                    f"{self.path} exists from an earlier run: pass --resume to continue it, "
                    "or choose another --report path"
                )
            meta = _read_meta(self.path)
            # No complete line at all (killed while describing the run): nothing was sent.
            if meta is not None:
                self._check(meta)
            earlier = (
                (item["intent"], {k: v for k, v in item.items() if k != "intent"})
                for item in _intents(self.path)
            )
        self._start(resumed=exists)
        return earlier

    def _check(self, meta: Mapping[str, Any]) -> None:
        if meta.get("format") != _FORMAT:
            raise ConfigError(f"{self.path} is not a ghl-migrate journal; refusing to mix")
        if (was := meta.get(_SHARD)) != (now := self._meta.get(_SHARD)):
            raise ConfigError(_shard_mismatch(_report_of(self.path), was, now))
        if mismatch := _describe_mismatch(meta, self._meta):
            raise ConfigError(
                f"{self.path} belongs to a different run ({mismatch}); "
                "resume with the same job files and options, or choose another --report path"
            )
        self._check_digests(meta)

    def _start(self, *, resumed: bool) -> None:
        # A torn last line (killed while noting an intent, so before that request was sent)
        # is cut, so that the next intent is a line of its own.
        try:
            new = self._log.open()
        except OSError as exc:
            raise ConfigError(
                f"journal {self.path}: cannot be opened for writing ({os_error_text(exc)}); "
                + ("make it writable, then resume again" if resumed else "choose another --report")
            ) from None
        if new:
            described = {**self._meta, _EPHEMERAL: self._ephemeral}
            if self._plan:
                described[_PLAN] = True
            if self._digests is not None:
                described[_DIGESTS] = self._digests
            try:
                self._log.write(orjson.dumps(described) + b"\n")
                self._log.sync()
            except StorageError as exc:
                self._log.close()  # a failed log closes without syncing again
                raise ConfigError(f"{exc}; nothing was sent") from None

    def _check_digests(self, meta: Mapping[str, Any]) -> None:
        if self._digests is None:
            return
        earlier = meta.get(_DIGESTS)
        if not isinstance(earlier, list):
            log.warning(
                f"{self.path} was written by an earlier release that did not record the job "
                "files' contents: they cannot be checked against that run's"
            )
            return
        before = {tuple(pair) for pair in earlier if isinstance(pair, list)}
        changed = sorted({name for name, digest in self._digests if (name, digest) not in before})
        if changed:
            report = _report_of(self.path)
            raise ConfigError(
                f"job file {', '.join(changed)} changed since the run that wrote {report} "
                "started: restore the original and --resume, or start a new run with "
                f"another --report path (rollback {report} still undoes what that run created)"
            )

    def intent(self, record: Record, fields: Mapping[str, str]) -> None:
        """Note, before sending it, that a write for ``record`` is about to go out.

        Raises ``StorageError`` when it cannot be noted: the write must then not be sent."""
        # Handed to the OS before the request leaves: survives kill -9.
        self._log.write(
            orjson.dumps(
                {"intent": record.ident, "source": record.source, **fields},
                option=orjson.OPT_APPEND_NEWLINE,
            )
        )

    def ended(self, rows: int) -> None:
        """Note that the run has rewritten its report to its final ``rows`` rows (raises
        ``StorageError`` when it cannot be noted: the report then does not count as whole)."""
        self._log.write(orjson.dumps({"end": "run", "rows": rows}) + b"\n")

    def close(self) -> None:
        """Sync and close (raises ``StorageError`` when the final sync fails)."""
        self._log.close()
