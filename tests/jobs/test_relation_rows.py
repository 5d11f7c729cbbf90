"""The relations kind without I/O: rows, idents, and each answer's meaning, fed by hand."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from engine import ConfigError, Exchange, Outcome, RecordError, Response, Send, Steps
from engine.source import read_job_file
from jobs.kinds import detect_kind, kind_of_file
from jobs.relations import Definitions, RelationsJob

JOB = RelationsJob(base_url="http://127.0.0.1:1")
STATE = Definitions(by_key={"pet_owner": "A1"}, ids={"A1"})


def parse(**values: str) -> Any:
    return JOB.parse("job.csv:2", {"location_id": "locA", **values})


def reply(status: int, body: Any = None, *, ambiguous: bool = False) -> Exchange:
    raw = b"" if body is None else orjson.dumps(body)
    return Exchange(response=Response(status=status, body=raw), attempts=1, ambiguous=ambiguous)


def play(steps: Steps[Outcome], *answers: Exchange) -> tuple[Outcome, list[Send]]:
    """Feed ``answers`` in order; the outcome and every request the kind made."""
    sent: list[Send] = []
    try:
        sent.append(next(steps))
        for each in answers:
            sent.append(steps.send(each))
    except StopIteration as stop:
        result: Outcome = stop.value
        return result, sent
    raise AssertionError(f"the kind wanted more than {len(answers)} answers: {sent}")


CREATE = {"association_key": "pet_owner", "first_record_id": "c1", "second_record_id": "p1"}
FOUND = {"relations": [{"id": "R9", "associationId": "A1", "firstRecordId": "c1",
                        "secondRecordId": "p1"}], "total": 1}  # fmt: skip


def test_camel_case_and_snake_case_columns_are_one_field() -> None:
    """firstRecordId and first_record_id, associationKey and key, name the same fields."""
    for name in ("firstRecordId", "first_record_id", "First_Record_Id"):
        assert JOB.canonical_field(name) == "first_record_id"
    assert JOB.canonical_field("associationKey") == JOB.canonical_field("key") == "association_key"
    assert JOB.canonical_field("relationId") == "relation_id"
    assert JOB.canonical_field("first_object_key") is None


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"first_record_id": "c1", "second_record_id": "p1"}, "association_key"),
        ({"association_key": "k", "second_record_id": "p1"}, "first_record_id"),
        ({"association_key": "k", "first_record_id": "c1"}, "second_record_id"),
        ({"action": "delete", "association_key": "k", "first_record_id": "c1"}, "relation_id"),
        ({"action": "upsert", **CREATE}, "action"),
        ({**CREATE, "first_record_id": "c 1"}, "first_record_id"),
        ({**CREATE, "relation_id": ".."}, "relation_id"),
        ({**CREATE, "kind": "associations"}, "kind"),
    ],
)
def test_bad_rows_name_their_field(values: dict[str, str], field: str) -> None:
    """A row missing what its action needs, or with a bad id, names the field."""
    with pytest.raises(RecordError) as caught:
        parse(**values)
    assert caught.value.field == field


def test_record_ids_are_not_interned_keys_are() -> None:
    """Unique record ids are not interned (the intern table would only grow); keys are."""
    import sys

    already = sys.intern("".join(["contact-", str(id(object()))]))  # an interned twin
    record = parse(**{**CREATE, "first_record_id": already.encode().decode()})
    assert record.get("association_key") is sys.intern("pet_owner")
    assert record.get("first_record_id") == already
    assert record.get("first_record_id") is not already  # parse did not intern its copy


def test_idents_match_report_rows_that_carry_resolved_ids() -> None:
    """A record's ident is found again from its report row, which adds the resolved ids."""
    record = parse(**CREATE)
    row = {"location_id": "locA", "action": "create", "association_id": "A1", **CREATE,
           "relation_id": "R9"}  # fmt: skip
    assert JOB.row_ident(row) == record.ident
    by_id = parse(action="delete", relation_id="R9")
    assert JOB.row_ident({"location_id": "locA", "action": "delete", "relation_id": "R9"}) == (
        by_id.ident
    )
    assert by_id.ident != parse(action="delete", **CREATE).ident


def test_a_created_answer_is_created_bare_or_wrapped() -> None:
    """201 bare or 200 {"relation": ...}: created with its id, one request, no read."""
    record = parse(**CREATE)
    for status, body in ((201, {"id": "R1"}), (200, {"relation": {"id": "R1"}})):
        outcome, sent = play(JOB.process(record, STATE, noted={}), reply(status, body))
        assert (outcome.status, outcome.fields["relation_id"]) == ("created", "R1")
        assert [s.request.method for s in sent] == ["POST"]
        assert sent[0].write is not None
        assert "locationId" not in sent[0].request.params
        assert sent[0].request.json["associationId"] == "A1"


@pytest.mark.parametrize(
    ("ambiguous", "noted", "expected"),
    [(False, False, "exists"), (True, False, "created"), (False, True, "created")],
)
def test_a_refused_create_is_settled_by_reading_back(
    ambiguous: bool, noted: bool, expected: str
) -> None:
    intent = {"action": "create"} if noted else {}
    """A 400 found on reading back is exists, or created when this job may have made it."""
    record = parse(**CREATE)
    refused = reply(400, {"message": "anything at all"}, ambiguous=ambiguous)
    outcome, sent = play(JOB.process(record, STATE, noted=intent), refused, reply(200, FOUND))
    assert (outcome.status, outcome.fields["relation_id"]) == (expected, "R9")
    read = sent[1].request
    assert (read.method, read.url.rsplit("/", 1)[1]) == ("GET", "c1")
    assert read.params["associationIds"] == "A1"


def test_a_refused_create_not_found_fails_with_the_servers_words() -> None:
    """Not found on any page: failed with the server's message, whatever it said."""
    record = parse(**CREATE)
    other = {"relations": [{"id": "R2", "associationId": "A1", "firstRecordId": "c1",
                            "secondRecordId": "p2"}]}  # fmt: skip
    outcome, sent = play(
        JOB.process(record, STATE, noted={"action": "create"}),
        reply(422, {"message": "Record with id p1 not found"}),
        reply(200, other),
        reply(200, {"relations": []}),
    )
    assert outcome.status == "failed"
    assert outcome.error == "HTTP 422: Record with id p1 not found"
    assert [s.request.params.get("skip") for s in sent[1:]] == ["0", "1"]


def test_an_unknown_key_fails_naming_the_keys_there() -> None:
    """A key the location does not have fails without a request, listing the keys it has."""
    outcome, sent = play(JOB.process(parse(**{**CREATE, "association_key": "x"}), STATE, noted={}))
    assert outcome.status == "failed"
    assert "'x' does not exist in location locA; it has: pet_owner" in outcome.error
    assert sent == []


@pytest.mark.parametrize(
    ("ambiguous", "noted", "expected"),
    [(False, False, "absent"), (True, False, "deleted"), (False, True, "deleted")],
)
def test_a_delete_by_id_answered_404(ambiguous: bool, noted: bool, expected: str) -> None:
    """404 on a delete is absent, or deleted when this job may have deleted it already."""
    record = parse(action="delete", relation_id="R9")
    intent = {"action": "delete"} if noted else {}
    gone = reply(404, {"message": "Relation not found"}, ambiguous=ambiguous)
    outcome, sent = play(JOB.process(record, STATE, noted=intent), gone)
    assert outcome.status == expected
    assert [s.request.method for s in sent] == ["DELETE"]
    assert sent[0].request.params == {"locationId": "locA"}


def test_a_delete_by_records_reads_the_id_then_deletes() -> None:
    """A delete given by key and records costs one read, then the DELETE of that id."""
    record = parse(action="delete", **CREATE)
    outcome, sent = play(JOB.process(record, STATE, noted={}), reply(200, FOUND), reply(200))
    assert (outcome.status, outcome.fields["relation_id"]) == ("deleted", "R9")
    assert [s.request.method for s in sent] == ["GET", "DELETE"]
    assert sent[1].request.url.endswith("/associations/relations/R9")


def test_the_guide_routes_are_refused_for_relations() -> None:
    """--api objects-association has no relation routes: a ConfigError that says so."""
    with pytest.raises(ConfigError, match="--api objects-association has no relation routes"):
        RelationsJob(api="objects-association")


def test_definitions_are_read_every_page_until_an_empty_one() -> None:
    """prepare pages on while pages come back (short or not), and stops at an empty one."""
    steps = JOB.prepare("locA")
    sent = [next(steps)]
    pages = [
        [{"id": "A1", "key": "k1"}, {"id": "A2", "key": "k2"}],
        [{"id": "A3", "key": "k3"}],
        [],
    ]
    state: Definitions | None = None
    for page in pages:
        try:
            sent.append(steps.send(reply(200, {"associations": page})))
        except StopIteration as stop:
            state = stop.value
    assert state is not None
    assert state.by_key == {"k1": "A1", "k2": "A2", "k3": "A3"}
    assert [s.request.params["skip"] for s in sent if s] == ["0", "2", "3"]


def write(path: Path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_the_file_says_its_kind(tmp_path: Path) -> None:
    """A first_record_id column or key, or a kind column, makes a relations job."""
    assert kind_of_file(write(tmp_path / "a.csv", "location_id,key,first_object_key\n")) == (
        "associations"
    )
    assert kind_of_file(write(tmp_path / "b.csv", "locationId,key,firstRecordId\nL,k,c\n")) == (
        "relations"
    )
    assert kind_of_file(write(tmp_path / "c.csv", "kind,location_id\nrelations,L\n")) == (
        "relations"
    )
    assert kind_of_file(write(tmp_path / "d.json", '[{"firstRecordId": "c1"}]')) == "relations"
    assert kind_of_file(write(tmp_path / "e.jsonl", '\n{"kind": "relations"}\n')) == "relations"
    assert kind_of_file(write(tmp_path / "f.json", '{"locations": [], "associations": []}')) == (
        "associations"
    )
    assert kind_of_file(str(tmp_path / "missing.csv")) == "associations"  # the reader says why


def test_job_files_of_two_kinds_are_refused(tmp_path: Path) -> None:
    """Files of different kinds in one run: ConfigError naming each file's kind."""
    a = write(tmp_path / "defs.csv", "location_id,key\n")
    b = write(tmp_path / "links.csv", "location_id,first_record_id\n")
    with pytest.raises(ConfigError, match=r"different kinds \(associations: defs.csv; "):
        detect_kind([a, b])


def test_a_relations_file_reads_with_its_kind_column(tmp_path: Path) -> None:
    """A kind column is accepted by the reader, and a row of another kind is invalid."""
    path = write(
        tmp_path / "j.csv",
        "kind,location_id,association_key,first_record_id,second_record_id\n"
        "relations,L,k,c1,p1\nassociations,L,k,c2,p2\n",
    )
    rows, _ = read_job_file(path, JOB)
    assert JOB.parse(rows[0].source, rows[0].values).get("first_record_id") == "c1"
    with pytest.raises(RecordError, match="this job file is a relations job"):
        JOB.parse(rows[1].source, rows[1].values)


@pytest.mark.parametrize(
    ("created_at", "expected"),
    [("2020-01-01T00:00:00.000Z", "exists"), ("2030-01-01T00:00:00.000Z", "created")],
)
def test_a_doubtful_create_found_older_than_its_first_send_is_exists(
    created_at: str, expected: str
) -> None:
    """After a lost answer, or a killed process's noted intent, a relation made before this
    job first sent its create is exists, not created (the intent keeps that first time)."""
    found = {"relations": [{**FOUND["relations"][0], "createdAt": created_at}]}
    refused = reply(400, {"message": "duplicate"})
    noted = {"action": "create", "first_sent": "1800000000"}  # 2027-01-15
    steps = JOB.process(parse(**CREATE), STATE, noted=noted)
    outcome, sent = play(steps, refused, reply(200, found))
    assert outcome.status == expected
    assert sent[0].write is not None
    assert sent[0].write.intent["first_sent"] == "1800000000"  # passed on, not now


def test_the_first_send_is_noted_with_the_create() -> None:
    """A create's journal intent says when it was first sent (whole seconds, now)."""
    import time

    before = int(time.time())
    steps = JOB.process(parse(**CREATE), STATE, noted={})
    write = next(steps).write
    assert write is not None
    assert before <= int(write.intent["first_sent"]) <= int(time.time())
