"""validate, plan and --junit as a user drives them: output, exit codes, files CI reads."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import xmlschema
from click.testing import CliRunner

from engine.cli import main

from ..conftest import ThreadedSandbox
from .test_cli import error_line

SCHEMA = xmlschema.XMLSchema(Path(__file__).resolve().parent.parent / "schemas" / "junit-10.xsd")
LOCATIONS = ("ve9EPM428h8vShlRW1KT", "Hx2kQm7RtY0pLw3sVb9N", "Zq4TnB8cWe1uKd6fGh2J")


def cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def api_writes(threaded: ThreadedSandbox) -> int:
    log = threaded.do(lambda: list(threaded.sandbox.log))
    return sum(1 for r in log if r.method in ("POST", "PUT", "DELETE") and r.path[:2] != "/_")


def junit(path: Path, token_file: str | None = None) -> str:
    """The JUnit file's text, after checking it against the schema Jenkins and GitLab read."""
    SCHEMA.validate(str(path))
    text = path.read_text(encoding="utf-8")
    if token_file is not None:
        for line in Path(token_file).read_text(encoding="utf-8").splitlines()[1:]:
            assert line.split(",")[1] not in text
    return text


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a connection fails the test."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("validate opened a connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)


@pytest.mark.usefixtures("no_network")
def test_validate_lists_every_problem_and_counts_per_location(samples: Path) -> None:
    """validate names file, line and field of each bad row with a fix, counts, and exits 1."""
    code, out, _ = cli("validate", str(samples / "associations.csv"))
    assert code == 1
    lines = out.splitlines()
    problems = [line for line in lines if line.startswith("associations.csv:")]
    assert [p.split(":", 2)[1] for p in problems] == ["9", "10", "11", "12", "13"]
    assert "associations.csv:9: key: is required for create: a name" in out
    assert "associations.csv:13: first_object_key: " in out
    assert "write custom_objects.property" in out
    table = {tuple(line.split()[:2]): line.split()[2:] for line in lines if "create" in line}
    assert table[("Hx2kQm7RtY0pLw3sVb9N", "create")] == ["3", "."]
    assert table[("Zq4TnB8cWe1uKd6fGh2J", "create")] == ["1", "3"]
    assert "11 records in 3 locations: 6 valid, 5 invalid" in out


@pytest.mark.usefixtures("no_network")
def test_validate_a_clean_job_exits_0(samples: Path) -> None:
    """A job with no problem validates with exit code 0 and no token anywhere."""
    code, out, _ = cli("validate", str(samples / "onboarding.json"))
    assert code == 0
    assert "12 records in 3 locations: 12 valid, 0 invalid" in out


def test_validate_an_unreadable_file_exits_2(tmp_path: Path) -> None:
    """A file that cannot be read at all exits 2 with one line naming it."""
    bad = tmp_path / "jobs.csv"
    bad.write_text("location_id;key\nloc;k\n", encoding="utf-8")
    code, _, err = cli("validate", str(bad))
    assert code == 2
    assert "semicolon-separated" in error_line(err)
    code, _, err = cli("validate", str(tmp_path / "missing.csv"))
    assert code == 2
    assert "no such file" in error_line(err)


def test_plan_run_plan_rollback_with_junit_and_exit_codes(
    threaded_sandbox: ThreadedSandbox, samples: Path, tmp_path: Path
) -> None:
    """plan exits 2 with changes and sends no write; after run it exits 0; each command's
    --junit file is valid JUnit without tokens."""
    tokens = threaded_sandbox.tokens_file(tmp_path / "tokens.csv", *LOCATIONS)
    threaded_sandbox.do(
        threaded_sandbox.sandbox.add_association,
        LOCATIONS[0],
        key="legacy_link",
        first_object_key="custom_objects.pet",
        second_object_key="business",
    )
    job = str(samples / "onboarding.json")
    server = ("--base-url", threaded_sandbox.url, "--tokens", tokens)
    code, out, _ = cli(
        "plan", job, *server, "--detailed-exitcode", "--junit", str(tmp_path / "plan.xml")
    )
    assert code == 2
    assert api_writes(threaded_sandbox) == 0
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.strip()}
    for location in LOCATIONS:
        assert rows[location] == ["4", "4"]  # create, records
    assert rows["total"] == ["12", "12"]
    assert f"{LOCATIONS[0]}: legacy_link" in out
    assert "plan: 12 to create" in out
    assert junit(tmp_path / "plan.xml", tokens).count("<testcase ") == 12

    code, _, _ = cli("run", job, *server, "--report", str(tmp_path / "run.csv"),
                     "--junit", str(tmp_path / "run.xml"))  # fmt: skip
    assert code == 0
    assert junit(tmp_path / "run.xml", tokens).count("<failure") == 0

    code, out, _ = cli("plan", job, *server, "--detailed-exitcode")
    assert code == 0
    assert "nothing to do" in out

    code, _, _ = cli("rollback", str(tmp_path / "run.csv"), "--yes", "--tokens", tokens,
                     "--junit", str(tmp_path / "undo.xml"))  # fmt: skip
    assert code == 0
    assert junit(tmp_path / "undo.xml", tokens).count('name="delete ') == 12


def test_plan_with_problems_exits_1_and_lists_them(
    threaded_sandbox: ThreadedSandbox, samples: Path, tmp_path: Path
) -> None:
    """Blocked records make plan exit 1 (with or without --detailed-exitcode) and are listed."""
    tokens = threaded_sandbox.tokens_file(tmp_path / "tokens.csv", *LOCATIONS)
    server = ("--base-url", threaded_sandbox.url, "--tokens", tokens)
    xml = tmp_path / "plan.xml"
    for extra in ((), ("--detailed-exitcode",)):
        code, out, _ = cli("plan", str(samples / "associations.csv"), *server, "--junit", str(xml),
                           *extra)  # fmt: skip
        assert code == 1
    assert "needs attention:" in out
    assert "associations.csv:6  Hx2kQm7RtY0pLw3sVb9N  boat_owner  blocked: object" in out
    assert "6 records blocked, in conflict or not looked at; 5 to create" in out
    text = junit(xml, tokens)
    assert text.count('<failure type="blocked"') == 6
    assert api_writes(threaded_sandbox) == 0


def test_run_says_how_many_labels_differ(threaded_sandbox: ThreadedSandbox, tmp_path: Path) -> None:
    """Without --update-labels, run's summary counts the definitions left with other labels."""
    tokens = threaded_sandbox.tokens_file(tmp_path / "tokens.csv", LOCATIONS[0])
    threaded_sandbox.do(
        threaded_sandbox.sandbox.add_association,
        LOCATIONS[0],
        key="pet_owner",
        first_object_key="custom_objects.pet",
        second_object_key="contact",
    )
    job = tmp_path / "jobs.csv"
    job.write_text(
        "location_id,key,first_object_key,first_object_label,second_object_key,second_object_label\n"
        f"{LOCATIONS[0]},pet_owner,custom_objects.pet,Companion,contact,Keeper\n",
        encoding="utf-8",
    )
    server = ("--base-url", threaded_sandbox.url, "--tokens", tokens)
    code, out, _ = cli("run", str(job), *server)
    assert code == 0
    assert "1 definition(s) exist with other labels than the job gives" in out
    code, out, _ = cli("plan", str(job), *server, "--update-labels", "--detailed-exitcode")
    assert code == 2
    assert "plan: 1 to update" in out
    code, out, _ = cli("run", str(job), *server, "--update-labels")
    assert code == 0
    assert "updated" in out
    assert "other labels" not in out


def test_the_relabel_sample_round_trips_as_the_readme_shows(
    threaded_sandbox: ThreadedSandbox, samples: Path, tmp_path: Path
) -> None:
    """onboarding, then relabel with --update-labels, then its rollback: the labels are back."""
    tokens = threaded_sandbox.tokens_file(tmp_path / "tokens.csv", *LOCATIONS)
    server = ("--base-url", threaded_sandbox.url, "--tokens", tokens)
    assert cli("run", str(samples / "onboarding.json"), *server)[0] == 0

    def owner_labels() -> list[tuple[str, str]]:
        snapshot = threaded_sandbox.do(threaded_sandbox.sandbox.snapshot)
        return [
            (a["firstObjectLabel"], a["secondObjectLabel"])
            for loc in LOCATIONS
            for a in snapshot[loc]
            if a["key"] == "property_owner"
        ]

    before = owner_labels()
    relabel = str(samples / "relabel.csv")
    code, out, _ = cli("plan", relabel, *server, "--update-labels", "--detailed-exitcode")
    assert (code, "plan: 2 to update" in out) == (2, True)
    report = str(tmp_path / "relabel.csv")
    assert cli("run", relabel, *server, "--update-labels", "--report", report)[0] == 0
    assert owner_labels() == [("Property", "Landlord")] * 2 + [before[2]]
    code, _, err = cli("rollback", report, "--tokens", tokens, "--yes")
    assert code == 0
    assert "restore the labels of 2 definition(s)" in err
    assert owner_labels() == before == [("Owned property", "Owner")] * 3


def test_validate_leaves_no_scratch_file_behind(tmp_path: Path) -> None:
    """The scratch store validate keeps beside the job is gone afterwards, whatever the end."""
    good = tmp_path / "jobs.csv"
    good.write_text("location_id,key,first_object_key,second_object_key\nloc1,k,contact,\n")
    broken = tmp_path / "broken.json"
    broken.write_text('[{"location_id": "loc1"},\n oops]\n', encoding="utf-8")
    assert cli("validate", str(good))[0] == 1
    assert cli("validate", str(good), str(broken))[0] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.json", "jobs.csv"]


def test_a_junit_path_that_cannot_be_written_stops_before_sending(
    threaded_sandbox: ThreadedSandbox, samples: Path, tmp_path: Path
) -> None:
    """--junit in a missing folder exits 2 with one line, before any request."""
    tokens = threaded_sandbox.tokens_file(tmp_path / "tokens.csv", *LOCATIONS)
    code, _, err = cli(
        "run", str(samples / "onboarding.json"), "--base-url", threaded_sandbox.url,
        "--tokens", tokens, "--junit", str(tmp_path / "missing" / "run.xml"),
    )  # fmt: skip
    assert code == 2
    assert "does not exist" in error_line(err)
    assert threaded_sandbox.do(lambda: len(threaded_sandbox.sandbox.log)) == 0
