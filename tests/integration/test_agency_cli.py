"""Agency mode from the command line: credentials, a refused agency token, and no token in
anything the tool prints or writes."""

from __future__ import annotations

import socket
from pathlib import Path

import orjson
from click.testing import CliRunner

from engine import read_report
from engine.cli import main

from ..conftest import ThreadedSandbox
from .test_cli import error_line

DEFINITION = {
    "key": "pet_owner",
    "firstObjectKey": "custom_objects.pet",
    "secondObjectKey": "contact",
}


def invoke(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def write_template(folder: Path, locations: object) -> str:
    path = folder / "onboard.json"
    path.write_bytes(orjson.dumps({"locations": locations, "associations": [DEFINITION]}))
    return str(path)


def test_all_without_an_agency_token_is_one_line_and_sends_nothing(
    threaded_sandbox: ThreadedSandbox, tmp_path: Path
) -> None:
    """ "locations": "all" without an agency token: exit 2, one line saying what to give."""
    job = write_template(tmp_path, "all")
    code, _, err = invoke("run", job, "--base-url", threaded_sandbox.url)
    assert code == 2
    assert error_line(err) == (
        f'Error: {job}: "locations": "all" needs an agency token to list the sub-accounts: '
        "GHL_AGENCY_TOKEN or --agency-token-file, and --company-id"
    )
    assert threaded_sandbox.sandbox.log == []


def test_an_agency_token_without_a_company_id_is_refused(tmp_path: Path) -> None:
    """GHL_AGENCY_TOKEN without --company-id: exit 2, naming the option and variable."""
    job = write_template(tmp_path, ["L1"])
    code, _, err = invoke("run", job, env={"GHL_AGENCY_TOKEN": "agy-SECRET"})
    assert code == 2
    assert "--company-id ID (or GHL_COMPANY_ID)" in error_line(err)
    assert "agy-SECRET" not in err


def test_the_embedded_sandbox_says_where_all_can_run(tmp_path: Path) -> None:
    """run --sandbox with "all": exit 2, pointing to the standalone sandbox's --agency."""
    code, _, err = invoke("run", write_template(tmp_path, "all"), "--sandbox")
    assert code == 2
    assert "ghl-migrate sandbox --agency" in error_line(err)


def test_a_refused_agency_token_stops_says_so_and_resume_finishes(
    threaded_sandbox: ThreadedSandbox, tmp_path: Path
) -> None:
    """The agency token refused at the first mint: exit 2, every record not_run, the summary
    says to renew it; --resume with the renewed token finishes. No token is printed."""
    sb = threaded_sandbox.sandbox
    agency = threaded_sandbox.do(sb.add_company, "co1", ["L1", "L2", "L3"])
    outsider = threaded_sandbox.do(sb.issue_token, "Outsider")
    token_file = tmp_path / "agency.txt"
    token_file.write_text(agency + "\n", encoding="utf-8")
    token_file.chmod(0o600)
    job = write_template(tmp_path, ["L1", "L2", "Outsider", "L3"])
    report = tmp_path / "out.csv"
    common = [
        "run", job, "--base-url", threaded_sandbox.url, "--agency-token-file", str(token_file),
        "--company-id", "co1", "--report", str(report), "-v", "--log-format", "json",
    ]  # fmt: skip
    threaded_sandbox.do(sb.expire_agency_token, "co1")

    code, out, err = invoke(*common)

    assert code == 2
    assert "stopped: the agency token was refused (HTTP 401: Invalid JWT)" in out
    assert "renew it (GHL_AGENCY_TOKEN or --agency-token-file)" in out
    assert "--resume" in out
    assert out.splitlines()[-1] == "renew the credential, then --resume"  # not "nothing sent"
    assert {r["outcome"] for r in read_report(str(report))} == {"not_run"}
    first = out + err

    renewed = threaded_sandbox.do(sb.renew_agency_token, "co1")
    token_file.write_text(renewed + "\n", encoding="utf-8")
    code, out, err = invoke(*common, "--resume")

    assert code == 1  # the outsider is not the agency's: it fails, alone
    rows = read_report(str(report))
    assert [(r["location_id"], r["outcome"]) for r in rows] == [
        ("L1", "created"),
        ("L2", "created"),
        ("Outsider", "failed"),
        ("L3", "created"),
    ]
    assert "HTTP 403: The token does not have access to this location." in rows[2]["error"]
    assert "not ok by location: Outsider (1 record)" in out
    minted = threaded_sandbox.do(sb.minted_tokens)
    assert len(minted) == 3
    written = report.read_text("utf-8") + Path(f"{report}.journal").read_text("utf-8")
    for secret in [agency, renewed, outsider, *minted]:
        assert secret not in first + out + err + written


def test_rollback_with_the_agency_token_names_the_sub_accounts(
    threaded_sandbox: ThreadedSandbox, tmp_path: Path
) -> None:
    """run "all", then rollback with the same agency token: the plan names each sub-account."""
    sb = threaded_sandbox.sandbox
    agency = threaded_sandbox.do(sb.add_company, "co1", count=2)
    env = {"GHL_AGENCY_TOKEN": agency, "GHL_COMPANY_ID": "co1"}
    report = tmp_path / "out.csv"
    job = write_template(tmp_path, "all")
    code, _, _ = invoke(
        "run", job, "--base-url", threaded_sandbox.url, "--report", str(report), env=env
    )
    assert code == 0

    code, out, err = invoke(
        "rollback", str(report), "--yes", "--report", str(tmp_path / "undo.csv"), env=env
    )

    assert code == 0, err
    for location in threaded_sandbox.do(sb.company_locations, "co1"):
        assert f'  {location["id"]} "{location["name"]}": 1' in err
    assert "deleted" in out
    assert all(items == [] for items in threaded_sandbox.do(sb.snapshot).values())


def test_validate_checks_a_rule_template_offline(samples: Path) -> None:
    """validate checks an "all" template's definitions without listing anything."""
    code, out, _ = invoke("validate", str(samples / "onboarding-all.json"))
    assert code == 0
    assert "<all>" in out
    assert "4 valid, 0 invalid" in out


def test_plan_lists_and_mints_with_the_agency_token(
    threaded_sandbox: ThreadedSandbox, samples: Path
) -> None:
    """plan over "all" with the agency token: every sub-account's creates, nothing written."""
    sb = threaded_sandbox.sandbox
    agency = threaded_sandbox.do(sb.add_company, "co1", count=3)
    env = {"GHL_AGENCY_TOKEN": agency, "GHL_COMPANY_ID": "co1"}
    code, out, err = invoke(
        "plan", str(samples / "onboarding-all.json"), "--base-url", threaded_sandbox.url, env=env
    )
    assert code == 0, err
    assert "12" in out
    assert threaded_sandbox.sandbox.stats.creates_applied == 0
    assert len(threaded_sandbox.do(sb.minted_tokens)) == 3


def test_listing_an_unreachable_host_is_one_line(tmp_path: Path) -> None:
    """ "all" against a host nobody listens on: exit 2, one line, no traceback."""
    with socket.socket() as probe:  # a port that was free a moment ago, and is closed now
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    job = write_template(tmp_path, "all")
    env = {"GHL_AGENCY_TOKEN": "agy-SECRET", "GHL_COMPANY_ID": "co1"}
    code, _, err = invoke(
        "run", job, "--base-url", f"http://127.0.0.1:{port}", "--max-attempts", "1", env=env
    )
    assert code == 2
    line = error_line(err)
    assert line.startswith("Error: listing the sub-accounts of company co1: cannot reach 127.0.0.1")
    assert "agy-SECRET" not in err


def test_the_readme_agency_sample_runs_and_reruns_as_exists(
    threaded_sandbox: ThreadedSandbox, samples: Path, tmp_path: Path
) -> None:
    """samples/onboarding-all.json over an agency: all created, then all exists on a re-run."""
    sb = threaded_sandbox.sandbox
    agency = threaded_sandbox.do(sb.add_company, "co1", count=5)
    env = {"GHL_AGENCY_TOKEN": agency, "GHL_COMPANY_ID": "co1"}
    job = str(samples / "onboarding-all.json")
    for name, outcome in (("first.csv", "created"), ("again.csv", "exists")):
        report = tmp_path / name
        code, out, _ = invoke(
            "run", job, "--base-url", threaded_sandbox.url, "--report", str(report), env=env
        )
        assert code == 0, out
        rows = read_report(str(report))
        assert len(rows) == 5 * 4
        assert {r["outcome"] for r in rows} == {outcome}
        assert all(r["location_name"] for r in rows)
