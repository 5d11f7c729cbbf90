"""The JUnit file: valid for Jenkins and GitLab, one test case per record, failures explained."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET  # parses only files the test itself wrote
from collections.abc import Iterator
from pathlib import Path

import pytest
import xmlschema

from engine import ConfigError, Outcome, Record, StorageError
from engine.junit import check_junit_path, write_junit

SCHEMA = xmlschema.XMLSchema(Path(__file__).resolve().parent.parent / "schemas" / "junit-10.xsd")
OK = frozenset({"created", "exists"})


def outcome(n: int, status: str, error: str = "", location: str = "locA") -> Outcome:
    record = Record(
        source=f"jobs.csv:{n + 2}",
        location_id=location,
        ident=f"{location}/k{n}",
        fields={"action": "create", "key": f"k{n}"},
    )
    return Outcome(record=record, status=status, error=error, fields={"association_id": f"id{n}"})


def describe(record: Record) -> str:
    return f"{record.get('action')} {record.get('key')}"


def write(path: Path, outcomes: list[Outcome], elapsed: float = 1.5) -> ET.Element:
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o.status] = counts.get(o.status, 0) + 1
    write_junit(
        str(path),
        iter(outcomes),
        suite="ghl-migrate associations",
        counts=counts,
        ok=OK,
        elapsed=elapsed,
        describe=describe,
    )
    SCHEMA.validate(str(path))  # raises with the reason when the file is not valid
    return ET.parse(path).getroot()  # noqa: S314 - the file this test wrote


def test_one_testcase_per_record_with_location_as_classname(tmp_path: Path) -> None:
    """Each record is a test case: class name its location, name its action and key."""
    root = write(
        tmp_path / "junit.xml",
        [outcome(0, "created"), outcome(1, "exists", location="locB"), outcome(2, "failed", "x")],
    )
    cases = root.findall("./testsuite/testcase")
    assert [(c.get("classname"), c.get("name")) for c in cases] == [
        ("locA", "create k0"),
        ("locB", "create k1"),
        ("locA", "create k2"),
    ]
    suite = root.find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("time")) == ("3", "1", "1.500")


def test_a_record_not_ok_is_a_failure_carrying_its_error(tmp_path: Path) -> None:
    """A failed record's test case has a failure whose type is the outcome, text the error."""
    root = write(
        tmp_path / "junit.xml",
        [outcome(0, "created"), outcome(1, "conflict", "key 'k1' already links a ↔ b")],
    )
    ok, bad = root.findall("./testsuite/testcase")
    assert ok.find("failure") is None
    failure = bad.find("failure")
    assert failure is not None
    assert failure.get("type") == "conflict"
    assert failure.text == "key 'k1' already links a ↔ b"
    assert failure.get("message") == failure.text
    out = bad.find("system-out")
    assert out is not None
    assert out.text is not None
    assert "source: jobs.csv:3" in out.text
    assert "association_id: id1" in out.text


def test_text_xml_cannot_hold_is_replaced_so_the_file_stays_valid(tmp_path: Path) -> None:
    """Control characters and markup in a server's message still give a valid file."""
    nasty = 'HTTP 500: <html>"bad" & \x00\x1b[31mred\x0b</html>\nline two'
    root = write(tmp_path / "junit.xml", [outcome(0, "failed", nasty)])
    failure = root.find("./testsuite/testcase/failure")
    assert failure is not None
    assert failure.text == 'HTTP 500: <html>"bad" & \ufffd\ufffd[31mred\ufffd</html>\nline two'
    assert failure.get("message") == failure.text


def test_quotes_and_whitespace_in_attributes_come_back_as_they_were(tmp_path: Path) -> None:
    """Both quote kinds, markup, tab, CR and LF in a message read back unchanged from the file."""
    message = 'it\'s "x" <y> & z\tw\r\nv'
    root = write(tmp_path / "junit.xml", [outcome(0, "failed", message)])
    failure = root.find("./testsuite/testcase/failure")
    assert failure is not None
    assert failure.get("message") == message
    assert failure.text == message.replace("\r\n", "\n")  # XML reads a CR LF in text as LF


def test_an_empty_run_is_a_valid_file(tmp_path: Path) -> None:
    """No records gives a valid suite with zero tests."""
    root = write(tmp_path / "junit.xml", [], elapsed=0.0)
    suite = root.find("testsuite")
    assert suite is not None
    assert suite.get("tests") == "0"


def test_the_outcomes_are_streamed_not_collected(tmp_path: Path) -> None:
    """Each outcome is written before the next one is asked for: none are held back."""
    events: list[str] = []
    path = tmp_path / "junit.xml"

    def produce() -> Iterator[Outcome]:
        for n in range(3):
            events.append(f"read {n}")
            yield outcome(n, "created")

    def noting(record: Record) -> str:
        events.append(f"write {record.get('key')[1:]}")
        return describe(record)

    write_junit(
        str(path),
        produce(),
        suite="s",
        counts={"created": 3},
        ok=OK,
        elapsed=0.1,
        describe=noting,
    )
    assert events == ["read 0", "write 0", "read 1", "write 1", "read 2", "write 2"]
    assert len(ET.parse(path).getroot().findall("./testsuite/testcase")) == 3  # noqa: S314


def test_an_unwritable_file_is_a_storage_error_and_leaves_nothing(tmp_path: Path) -> None:
    """A JUnit file that cannot be written raises StorageError; no temporary file is left."""
    folder = tmp_path / "gone"
    with pytest.raises(StorageError, match="run itself is finished"):
        write_junit(
            str(folder / "junit.xml"),
            iter([outcome(0, "created")]),
            suite="s",
            counts={"created": 1},
            ok=OK,
            elapsed=0.1,
            describe=describe,
        )
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: str(p), "is a folder"),
        (lambda p: str(p / "nowhere" / "junit.xml"), "does not exist"),
        (lambda p: str(p / "out.csv"), "the report's path"),
    ],
)
def test_a_junit_path_that_cannot_work_is_refused_before_the_run(
    tmp_path: Path, make: object, message: str
) -> None:
    """A folder, a missing folder or the report's own path is a ConfigError up front."""
    path = make(tmp_path)  # type: ignore[operator]
    with pytest.raises(ConfigError, match=message):
        check_junit_path(path, report=str(tmp_path / "out.csv"))
