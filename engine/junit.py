"""A JUnit XML file of a run, for CI: one ``<testcase>`` per record.

CI servers (Jenkins, GitLab, GitHub Actions through their reporters) all read the JUnit
XML that Maven's Surefire plugin writes, so a batch run can gate a pipeline and show its
failed records next to the code that caused them. Each record is a test case:
``classname`` is its location (CI tools group by it), ``name`` says what it does (the job
kind's own report fields, such as ``create property_owner``), and a record whose outcome is
not ok carries a ``<failure>`` whose ``type`` is the outcome and whose text is the error.
Where it came from and what became of it (source, outcome, the kind's fields such as the
created id) are in ``<system-out>``.

The file is written at the end of the run from the run's store, streamed in input order,
so it costs no memory per record. The counts the ``<testsuite>`` element must carry come
first, from the store's counts. It is written to a temporary file and renamed into place:
a CI job never reads half a file. Text that XML 1.0 cannot hold (control characters in a
server's message) is replaced, so the file always parses. Nothing in it can hold a token:
it is made of records and outcomes, which never do.

The shape follows the JUnit schema that Jenkins' xUnit plugin validates against
(``junit-10.xsd``; a copy is with the tests, which check every file against it).
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime

from .errors import ConfigError, StorageError, os_error_text
from .model import Outcome, Record

__all__ = ["check_junit_path", "write_junit"]

# Characters XML 1.0 does not allow, even escaped (C0 controls but tab, LF, CR; surrogates;
# U+FFFE and U+FFFF).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _text(value: object) -> str:
    return _NOT_XML.sub("\ufffd", "" if value is None else str(value))


# The escapes by hand, not xml.sax.saxutils': importing it cost
# every run ~0.8 ms of start-up CPU, and most runs write no JUnit file.
def _escape(text: str) -> str:
    """Character data: ``&``, ``<`` and ``>`` escaped."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _attr(value: object) -> str:
    """A double-quoted attribute value; tab, LF and CR kept as character references (a
    parser would turn them into spaces)."""
    text = _escape(_text(value)).replace('"', "&quot;")
    return '"' + text.replace("\n", "&#10;").replace("\r", "&#13;").replace("\t", "&#9;") + '"'


def check_junit_path(path: str, *, report: str | None = None) -> None:
    """Refuse, before anything is sent, a JUnit path that cannot be written at the end."""
    if os.path.isdir(path):
        raise ConfigError(f"--junit {path} is a folder: give a file path ({path}/junit.xml?)")
    if report is not None and os.path.abspath(path) == os.path.abspath(report):
        raise ConfigError(f"--junit {path} is the report's path: give each its own file")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ConfigError(f"--junit {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        raise ConfigError(f"--junit {path}: cannot be written (permission denied)")


def _case(
    outcome: Outcome,
    *,
    ok: frozenset[str],
    describe: Callable[[Record], str],
) -> str:
    record = outcome.record
    name = describe(record) or record.source
    shown = [f"source: {record.source}", f"outcome: {outcome.status}"]
    shown += [f"{key}: {value}" for key, value in outcome.fields.items() if value]
    if outcome.http_status is not None:
        shown.append(f"http_status: {outcome.http_status}")
    if outcome.error and outcome.status in ok:
        shown.append(f"note: {outcome.error}")
    parts = [f"    <testcase classname={_attr(record.location_id)} name={_attr(name)}>\n"]
    if outcome.status not in ok:
        message = outcome.error or outcome.status
        parts.append(
            f"      <failure type={_attr(outcome.status)} message={_attr(message)}>"
            f"{_escape(_text(message))}</failure>\n"
        )
    parts.append(f"      <system-out>{_escape(_text('; '.join(shown)))}</system-out>\n")
    parts.append("    </testcase>\n")
    return "".join(parts)


def write_junit(
    path: str,
    outcomes: Iterable[Outcome],
    *,
    suite: str,
    counts: Mapping[str, int],
    ok: frozenset[str],
    elapsed: float,
    describe: Callable[[Record], str],
) -> None:
    """Write ``outcomes`` (one per record, streamed) as JUnit XML at ``path``.

    ``counts`` are the records per outcome status (for the suite's totals), ``ok`` the
    statuses that are not failures, ``elapsed`` the run's seconds, ``describe`` a record's
    test name. Raises ``StorageError`` when the file cannot be written (``path`` is then
    left as it was)."""
    tests = sum(counts.values())
    failures = sum(n for status, n in counts.items() if status not in ok)
    time = f"{max(elapsed, 0.0):.3f}"
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    totals = f'tests="{tests}" failures="{failures}" errors="0"'
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8", newline="\n") as fh:
            fh.write('<?xml version="1.0" encoding="UTF-8"?>\n')
            fh.write(f'<testsuites name={_attr(suite)} {totals} time="{time}">\n')
            fh.write(
                f'  <testsuite name={_attr(suite)} {totals} skipped="0" time="{time}" '
                f'timestamp="{stamp}">\n'
            )
            for outcome in outcomes:
                fh.write(_case(outcome, ok=ok, describe=describe))
            fh.write("  </testsuite>\n</testsuites>\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise StorageError(
            path,
            exc,
            advice=f"the run itself is finished (see its report and summary); --junit {path} "
            f"could not be written: {os_error_text(exc)}",
        ) from exc
