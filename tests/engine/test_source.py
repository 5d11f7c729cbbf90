"""Reading job files: CSV and JSON, encodings, line numbers, templates, and file-level errors."""

from __future__ import annotations

import csv
import io
import string
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import ConfigError, JobFileError
from engine.source import InputFormat, SourceRow, read_job_file, read_job_files
from jobs.associations import AssociationsJob

HEADER = "location_id,key,first_object_key,second_object_key\n"


@pytest.fixture
def schema() -> AssociationsJob:
    return AssociationsJob()


def write(path: Path, text: str, *, encoding: str = "utf-8") -> str:
    path.write_bytes(text.encode(encoding))
    return str(path)


def read(path: str, schema: AssociationsJob) -> list[SourceRow]:
    return read_job_file(path, schema)[0]


# -- CSV -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig"])
def test_csv_with_or_without_bom(tmp_path: Path, schema: AssociationsJob, encoding: str) -> None:
    """A CSV file reads the same with or without a UTF-8 byte order mark."""
    path = write(tmp_path / "jobs.csv", HEADER + "loc1,k1,contact,company\n", encoding=encoding)

    rows, fmt = read_job_file(path, schema)

    assert fmt is InputFormat.CSV
    assert [r.values for r in rows] == [
        {
            "location_id": "loc1",
            "key": "k1",
            "first_object_key": "contact",
            "second_object_key": "company",
        }
    ]


def test_blank_lines_are_ignored(tmp_path: Path, schema: AssociationsJob) -> None:
    """Blank lines, and lines of empty cells, before and between rows make no rows."""
    path = write(
        tmp_path / "jobs.csv",
        "\n" + HEADER + "\nloc1,k1,contact,company\n,,,\n\nloc2,k2,contact,company\n\n",
    )

    rows = read(path, schema)

    assert [r.values["location_id"] for r in rows] == ["loc1", "loc2"]


def test_sources_carry_file_name_and_physical_line(tmp_path: Path, schema: AssociationsJob) -> None:
    """Each row's source is ``file:line``, counting blank lines and multi-line cells."""
    path = write(
        tmp_path / "jobs.csv",
        "location_id,key,description\n"  # line 1
        "loc1,k1,one\n"  # line 2
        "\n"  # line 3
        'loc2,k2,"two\nlines"\n'  # lines 4-5
        "loc3,k3,three\n",  # line 6
    )

    rows = read(path, schema)

    assert [r.source for r in rows] == ["jobs.csv:2", "jobs.csv:4", "jobs.csv:6"]
    assert rows[1].values["description"] == "two\nlines"


def test_cell_with_unicode_line_separator_stays_one_cell(
    tmp_path: Path, schema: AssociationsJob
) -> None:
    """Only CR and LF end a CSV line: a vertical tab or U+2028 in a cell does not split the row."""
    path = write(
        tmp_path / "jobs.csv",
        "location_id,key,description\nloc1,k1,a\x0bb\nloc2,k2,c\u2028d\n",
    )

    rows = read(path, schema)

    assert [(r.source, r.values) for r in rows] == [
        ("jobs.csv:2", {"location_id": "loc1", "key": "k1", "description": "a\x0bb"}),
        ("jobs.csv:3", {"location_id": "loc2", "key": "k2", "description": "c\u2028d"}),
    ]


def test_camel_case_headers_are_canonical(tmp_path: Path, schema: AssociationsJob) -> None:
    """camelCase column names (as the API spells them) map to the kind's canonical fields."""
    path = write(
        tmp_path / "jobs.csv",
        "locationId,key,firstObjectKey,secondObjectKey,associationId\nloc1,k1,contact,company,\n",
    )

    rows = read(path, schema)

    assert rows[0].values == {
        "location_id": "loc1",
        "key": "k1",
        "first_object_key": "contact",
        "second_object_key": "company",
        "association_id": "",
    }


def test_unknown_column_names_file_line_and_field(tmp_path: Path, schema: AssociationsJob) -> None:
    """An unknown column fails the whole file, naming the file, line 1 and the column."""
    path = write(tmp_path / "jobs.csv", "location_id,colour\nloc1,red\n")

    with pytest.raises(JobFileError) as info:
        read(path, schema)

    assert (info.value.path, info.value.line, info.value.field) == (path, 1, "colour")
    assert f"{path}:1" in str(info.value)
    assert "colour" in str(info.value)


def test_column_given_twice_is_a_file_error(tmp_path: Path, schema: AssociationsJob) -> None:
    """Two columns that mean the same field (``location_id``, ``locationId``) fail the file."""
    path = write(tmp_path / "jobs.csv", "location_id,locationId\nloc1,loc2\n")

    with pytest.raises(JobFileError) as info:
        read(path, schema)

    assert info.value.field == "locationId"


@pytest.mark.parametrize("text", ["", "\n\n", "\ufeff"], ids=["empty", "blank-lines", "bom-only"])
def test_empty_file_is_a_file_error(tmp_path: Path, schema: AssociationsJob, text: str) -> None:
    """A file without a header row fails, naming the file."""
    path = write(tmp_path / "jobs.csv", text)

    with pytest.raises(JobFileError, match="empty file") as info:
        read(path, schema)

    assert info.value.path == path


def test_too_many_values_marks_the_row(tmp_path: Path, schema: AssociationsJob) -> None:
    """A row with more non-empty values than columns gets a ``problem``; others read normally."""
    path = write(
        tmp_path / "jobs.csv",
        "location_id,key\nloc1,k1,surplus\nloc2,k2,\nloc3,k3\n",
    )

    rows = read(path, schema)

    assert "3 values" in rows[0].problem
    assert rows[0].values == {"location_id": "loc1", "key": "k1"}
    assert [r.problem for r in rows[1:]] == ["", ""]  # a trailing empty cell is harmless


def test_too_few_values_leave_fields_out(tmp_path: Path, schema: AssociationsJob) -> None:
    """A short row has no value for the missing columns, and no problem of its own."""
    path = write(tmp_path / "jobs.csv", "location_id,key\nloc1\n")

    rows = read(path, schema)

    assert rows == [SourceRow(source="jobs.csv:2", values={"location_id": "loc1"})]


# -- JSON ----------------------------------------------------------------------------------------


def test_json_list_sources_are_numbered_items(tmp_path: Path, schema: AssociationsJob) -> None:
    """Items of a JSON list have sources ``file#1``, ``file#2``…, keys made canonical."""
    items = [{"locationId": "loc1", "key": "k1"}, {"location_id": "loc2", "key": "k2"}]
    path = write(tmp_path / "x.json", orjson.dumps(items).decode())

    rows, fmt = read_job_file(path, schema)

    assert fmt is InputFormat.JSON
    assert [(r.source, r.values) for r in rows] == [
        ("x.json#1", {"location_id": "loc1", "key": "k1"}),
        ("x.json#2", {"location_id": "loc2", "key": "k2"}),
    ]


def test_json_item_that_is_not_an_object_marks_the_row(
    tmp_path: Path, schema: AssociationsJob
) -> None:
    """A list item that is not an object becomes a row with a ``problem``."""
    path = write(tmp_path / "x.json", '[{"locationId": "loc1"}, "oops"]')

    rows = read(path, schema)

    assert rows[1] == SourceRow(source="x.json#2", values={}, problem="not an object")


def test_json_unknown_key_names_item_and_key(tmp_path: Path, schema: AssociationsJob) -> None:
    """An unknown key in a JSON item fails the file, naming the item and the key."""
    path = write(tmp_path / "x.json", '[{"locationId": "loc1"}, {"colour": "red"}]')

    with pytest.raises(JobFileError) as info:
        read(path, schema)

    assert info.value.field == "colour"
    assert "x.json#2" in str(info.value)


def test_broken_json_names_the_line(tmp_path: Path, schema: AssociationsJob) -> None:
    """Broken JSON fails the file with the line number of the error."""
    path = write(tmp_path / "x.json", '[\n  {"locationId": "loc1"},\n  {"locationId": }\n]\n')

    with pytest.raises(JobFileError, match="broken JSON") as info:
        read(path, schema)

    assert info.value.line == 3
    assert f"{path}:3" in str(info.value)


def test_json_scalar_document_is_a_file_error(tmp_path: Path, schema: AssociationsJob) -> None:
    """A JSON document that is neither a list nor an object fails the file."""
    path = write(tmp_path / "x.json", "42")

    with pytest.raises(JobFileError, match="expected a list"):
        read(path, schema)


def test_template_fans_out_over_locations(tmp_path: Path, schema: AssociationsJob) -> None:
    """A template gives one row per location and definition; locations are ids or ``{"id"}``."""
    template = {
        "locations": ["loc1", {"id": "loc2", "name": "Second"}],
        "associations": [
            {"key": "k1", "firstObjectKey": "contact", "secondObjectKey": "company"},
            {"key": "k2", "firstObjectKey": "contact", "secondObjectKey": "opportunity"},
        ],
    }
    path = write(tmp_path / "onboarding.json", orjson.dumps(template).decode())

    rows = read(path, schema)

    assert [(r.source, r.values["location_id"], r.values["key"]) for r in rows] == [
        ("onboarding.json#1", "loc1", "k1"),
        ("onboarding.json#2", "loc1", "k2"),
        ("onboarding.json#3", "loc2", "k1"),
        ("onboarding.json#4", "loc2", "k2"),
    ]
    assert rows[3].values["second_object_key"] == "opportunity"


def test_template_with_unknown_top_level_key_is_a_file_error(
    tmp_path: Path, schema: AssociationsJob
) -> None:
    """A template with a key besides ``locations`` and ``associations`` fails, naming it."""
    template = {"locations": ["loc1"], "associations": [], "relations": []}
    path = write(tmp_path / "onboarding.json", orjson.dumps(template).decode())

    with pytest.raises(JobFileError, match="relations"):
        read(path, schema)


def test_format_detected_from_content_without_known_extension(
    tmp_path: Path, schema: AssociationsJob
) -> None:
    """A file without a .csv/.json extension is JSON when it starts with ``[`` or ``{``."""
    json_path = write(tmp_path / "jobs.txt", '  [{"locationId": "loc1"}]')
    csv_path = write(tmp_path / "jobs.dat", "locationId\nloc1\n")

    assert read_job_file(json_path, schema)[1] is InputFormat.JSON
    assert read_job_file(csv_path, schema)[1] is InputFormat.CSV


# -- unreadable files ----------------------------------------------------------------------------


def test_non_utf8_file_is_a_file_error(tmp_path: Path, schema: AssociationsJob) -> None:
    """A file that is not UTF-8 (here Latin-1) fails, naming the file and the byte."""
    path = write(
        tmp_path / "jobs.csv", HEADER + "loc1,caf\xe9,contact,company\n", encoding="latin-1"
    )

    with pytest.raises(JobFileError, match="not UTF-8") as info:
        read(path, schema)

    assert info.value.path == path


def test_missing_file_is_a_file_error(tmp_path: Path, schema: AssociationsJob) -> None:
    """A job file that does not exist fails, naming it."""
    path = str(tmp_path / "nope.csv")

    with pytest.raises(JobFileError, match="no such file") as info:
        read(path, schema)

    assert info.value.path == path


def test_directory_is_a_file_error(tmp_path: Path, schema: AssociationsJob) -> None:
    """A directory given as a job file fails with a JobFileError, not an OSError."""
    with pytest.raises(JobFileError, match="directory"):
        read(str(tmp_path), schema)


def test_read_job_files_reads_all_in_order(tmp_path: Path, schema: AssociationsJob) -> None:
    """Rows of several files come back in file order, each with its own file in ``source``."""
    first = write(tmp_path / "a.csv", "locationId\nloc1\n")
    second = write(tmp_path / "b.json", '[{"locationId": "loc2"}]')

    rows = list(read_job_files([first, second], schema))

    assert [r.source for r in rows] == ["a.csv:2", "b.json#1"]


def test_read_job_files_fails_before_returning_anything(
    tmp_path: Path, schema: AssociationsJob
) -> None:
    """One unreadable file among several fails the whole set."""
    good = write(tmp_path / "a.csv", "locationId\nloc1\n")

    with pytest.raises(JobFileError):
        list(read_job_files([good, str(tmp_path / "missing.csv")], schema))


def test_read_job_files_without_files_is_a_file_error(schema: AssociationsJob) -> None:
    """No job file at all is an error."""
    with pytest.raises(JobFileError, match="no job file"):
        list(read_job_files([], schema))


# -- files with no records ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "text", "why"),
    [
        ("jobs.csv", HEADER, "only a header row"),
        ("jobs.csv", HEADER + "\n ,  ,\n\n", "only a header row"),
        ("jobs.json", "[]", "an empty list"),
        ("onboarding.json", '{"locations": [], "associations": [{"key": "k"}]}', "'locations'"),
        ("onboarding.json", '{"locations": ["loc1"], "associations": []}', "'associations'"),
    ],
    ids=["header-only", "header-and-blank-lines", "empty-list", "no-locations", "no-definitions"],
)
def test_job_file_without_records_is_a_file_error(
    tmp_path: Path, schema: AssociationsJob, name: str, text: str, why: str
) -> None:
    """A job file that holds no record fails, naming the file and what it holds instead."""
    path = write(tmp_path / name, text)

    with pytest.raises(JobFileError, match="no records") as info:
        list(read_job_files([path], schema))

    assert info.value.path == path
    assert why in str(info.value)


def test_every_file_without_records_is_named(tmp_path: Path, schema: AssociationsJob) -> None:
    """Among several job files, each one without records is named in one error."""
    good = write(tmp_path / "a.csv", "locationId\nloc1\n")
    header_only = write(tmp_path / "b.csv", "locationId\n")
    empty_list = write(tmp_path / "c.json", "[]")

    with pytest.raises(ConfigError, match="no records") as info:
        list(read_job_files([good, header_only, empty_list], schema))

    assert header_only in str(info.value)
    assert empty_list in str(info.value)
    assert good not in str(info.value)


# -- hints for files saved the wrong way --------------------------------------------------------


@pytest.mark.parametrize(("separator", "name"), [(";", "semicolon"), ("\t", "tab")])
def test_csv_with_another_separator_says_so(
    tmp_path: Path, schema: AssociationsJob, separator: str, name: str
) -> None:
    """A semicolon- or tab-separated file (Excel in many locales) fails with a hint to save
    it comma-separated, not with an unknown column."""
    text = HEADER.replace(",", separator) + separator.join(["loc1", "k1", "contact", "b"]) + "\n"
    path = write(tmp_path / "jobs.csv", text)

    with pytest.raises(JobFileError) as info:
        read(path, schema)

    message = str(info.value)
    assert f"{name}-separated" in message
    assert "comma" in message
    assert "unknown column" not in message
    assert info.value.line == 1


def test_excel_separator_line_says_so(tmp_path: Path, schema: AssociationsJob) -> None:
    """Excel's ``sep=;`` first line gets the same hint."""
    path = write(tmp_path / "jobs.csv", "sep=;\n" + HEADER.replace(",", ";") + "loc1;k1;a;b\n")

    with pytest.raises(JobFileError, match="semicolon-separated"):
        read(path, schema)


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be"])
def test_utf16_file_says_save_as_utf8(
    tmp_path: Path, schema: AssociationsJob, encoding: str
) -> None:
    """A UTF-16 file, with a byte order mark or without (NUL bytes), fails with a hint to save
    it as UTF-8."""
    path = write(tmp_path / "jobs.csv", HEADER + "loc1,k1,contact,company\n", encoding=encoding)

    with pytest.raises(JobFileError, match="UTF-16") as info:
        read(path, schema)

    assert "save it as UTF-8" in str(info.value)
    assert "\\x00" not in str(info.value)


def test_spreadsheet_file_says_save_as_csv(tmp_path: Path, schema: AssociationsJob) -> None:
    """An .xlsx workbook (a zip archive) given as a job file fails with a hint to save as CSV."""
    path = tmp_path / "jobs.xlsx"
    path.write_bytes(b"PK\x03\x04\x14\x00\x06\x00" + bytes(range(256)))

    with pytest.raises(JobFileError, match="spreadsheet") as info:
        read(str(path), schema)

    assert "CSV" in str(info.value)


def test_path_through_a_file_is_a_file_error(tmp_path: Path, schema: AssociationsJob) -> None:
    """A job path that cannot be opened (here: through a regular file) fails with a
    JobFileError naming it, not an OSError."""
    (tmp_path / "file").write_text("x", encoding="utf-8")
    path = str(tmp_path / "file" / "jobs.csv")

    with pytest.raises(JobFileError) as info:
        read(path, schema)

    assert info.value.path == path


# -- templates of the wrong shape ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "key", "shown"),
    [
        ({"locations": "loc1", "associations": []}, "locations", "the text 'loc1'"),
        ({"locations": {"id": "loc1"}, "associations": []}, "locations", "an object"),
        ({"locations": 5, "associations": []}, "locations", "a number"),
        ({"locations": ["loc1"], "associations": {"key": "k"}}, "associations", "an object"),
        ({"locations": ["loc1"], "associations": None}, "associations", "null"),
        ({"locations": ["loc1"]}, "associations", "missing"),
    ],
    ids=["locations-text", "locations-object", "locations-number", "associations-object",
         "associations-null", "associations-missing"],
)  # fmt: skip
def test_template_key_of_the_wrong_type_is_named(
    tmp_path: Path, schema: AssociationsJob, template: dict[str, object], key: str, shown: str
) -> None:
    """A template whose ``locations`` or ``associations`` is not a list fails, naming the key,
    what it must be and what it is."""
    path = write(tmp_path / "onboarding.json", orjson.dumps(template).decode())

    with pytest.raises(JobFileError) as info:
        read(path, schema)

    message = str(info.value)
    assert f"'{key}' must be a list" in message
    assert shown in message


# -- round trip ----------------------------------------------------------------------------------

_SAFE = string.ascii_letters + string.digits + "_-"
_ids = st.text(_SAFE, min_size=1, max_size=24)
_object_keys = st.from_regex(r"[a-z][a-z0-9_]{0,15}(\.[a-z0-9_]{1,15})?", fullmatch=True)
# Free text: anything a UTF-8 file can hold (no lone surrogates), except NUL, without the
# edge whitespace the CSV reader strips.
_text = st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=40
).map(str.strip)
_records = st.lists(
    st.fixed_dictionaries(
        {
            "location_id": _ids,
            "key": _ids,
            "first_object_key": _object_keys,
            "second_object_key": _object_keys,
            "description": _text,
        }
    ),
    min_size=1,
    max_size=8,
)
_COLUMNS = ["location_id", "key", "first_object_key", "second_object_key", "description"]


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


@settings(
    max_examples=75,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(records=_records, camel=st.booleans())
def test_round_trip_csv_and_json(
    tmp_path: Path, schema: AssociationsJob, records: list[dict[str, str]], camel: bool
) -> None:
    """Records written as CSV and as a JSON list read back with the same values, in order."""
    names = [_camel(c) for c in _COLUMNS] if camel else _COLUMNS
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(names)
    writer.writerows([[r[c] for c in _COLUMNS] for r in records])
    csv_path = tmp_path / "roundtrip.csv"
    csv_path.write_text(buf.getvalue(), encoding="utf-8", newline="")
    json_path = tmp_path / "roundtrip.json"
    items = [{n: r[c] for n, c in zip(names, _COLUMNS, strict=True)} for r in records]
    json_path.write_bytes(orjson.dumps(items))

    from_csv = read(str(csv_path), schema)
    from_json = read(str(json_path), schema)

    assert [dict(r.values) for r in from_csv] == records
    assert [dict(r.values) for r in from_json] == records
    assert [r.problem for r in from_csv + from_json] == [""] * (2 * len(records))
