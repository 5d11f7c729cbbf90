"""What the CLI logs: by default only warnings a person can act on, each naming the record's
location and source; with -v every request decision; never a token; never stamina's own."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from engine.cli import main
from engine.console import configure_logging
from jobs.sandbox import Sandbox, SandboxConfig
from tests.conftest import ThreadedSandbox

from .helpers import run_against

LOCATIONS = [f"loc{n}AAAAAAAAAAAAAAAAA" for n in range(4)]
#: faults on about half of all requests; seeded, and one request at a time, so every run of
#: the same job meets the same faults
FAULTS = SandboxConfig(fail_rate=0.3, reset_rate=0.15, seed=11, rate_limit=0)


@pytest.fixture
def faulty() -> Iterator[ThreadedSandbox]:
    """A sandbox answering 5xx or dropping the connection on about half of all requests."""
    server = ThreadedSandbox(FAULTS)
    yield server
    server.close()


@pytest.fixture
def job(tmp_path: Path) -> Path:
    """Six creates in each of four locations, each with its own labels."""
    path = tmp_path / "jobs.csv"
    path.write_text(
        "location_id,key,first_object_key,second_object_key,first_object_label,"
        "second_object_label\n"
        + "".join(
            f"{loc},k{i},custom_objects.property,contact,P{i},C{i}\n"
            for loc in LOCATIONS
            for i in range(6)
        ),
        encoding="utf-8",
    )
    return path


def run_cli(server: ThreadedSandbox, job: Path, tmp_path: Path, *extra: str) -> tuple[str, str]:
    """Run the job against ``server`` (one request at a time, two attempts each); return
    stdout and stderr, after checking that no token appears in either."""
    tokens = server.tokens_file(tmp_path / "tokens.csv", *LOCATIONS)
    report = tmp_path / f"out{len(list(tmp_path.glob('out*.csv')))}.csv"
    result = CliRunner().invoke(
        main,
        ["run", str(job), "--base-url", server.url, "--tokens", tokens, "--report", str(report),
         "--concurrency", "1", "--max-attempts", "2", "--timeout", "5", *extra],
    )  # fmt: skip
    assert result.exit_code in (0, 1), result.output
    secrets = [line.split(",")[1] for line in Path(tokens).read_text().splitlines()[1:]]
    for secret in secrets:
        assert secret not in result.stdout + result.stderr
    return result.stdout, result.stderr


def json_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines()]


def test_default_level_shows_only_actionable_warnings_naming_the_record(
    faulty: ThreadedSandbox, job: Path, tmp_path: Path
) -> None:
    """Retries are silent by default (no stamina line); each give-up is one warning with
    the location and source of its record."""
    _, err = run_cli(faulty, job, tmp_path)

    assert "stamina" not in err
    assert "retry" not in err
    lines = [line for line in err.splitlines() if "[info " not in line]
    assert lines  # with two attempts and these faults, some records were given up on
    for line in lines:
        assert "[warning  ] gave up after 2 attempts" in line
        assert "location=loc" in line
        assert "source=jobs.csv:" in line
        assert "reason=" in line


def test_json_logs_carry_location_and_source_keys(
    faulty: ThreadedSandbox, job: Path, tmp_path: Path
) -> None:
    """With --log-format json, every warning has ``location`` and ``source`` keys."""
    _, err = run_cli(faulty, job, tmp_path, "--log-format", "json")

    lines = json_lines(err)
    warnings = [line for line in lines if line["level"] == "warning"]
    assert warnings
    sources = {f"jobs.csv:{n}" for n in range(2, 2 + 6 * len(LOCATIONS))}
    for line in warnings:
        assert line["location"] in LOCATIONS
        assert line["source"] in sources
    assert {line["level"] for line in lines} <= {"info", "warning"}


def test_verbose_logs_every_request_decision(
    faulty: ThreadedSandbox, job: Path, tmp_path: Path
) -> None:
    """-v: each request sent (method, path), its answer (status, time) or failure, each
    retry with its wait and reason, and the job's own decisions, all naming the record."""
    _, err = run_cli(faulty, job, tmp_path, "-v", "--log-format", "json")

    lines = json_lines(err)
    about_records = [line for line in lines if line["event"] not in ("run started", "run finished")]
    for line in about_records:
        assert line["location"] in LOCATIONS, line
        assert str(line["source"]).startswith("jobs.csv:"), line
    events = {str(line["event"]) for line in about_records}
    assert {"sending", "answer", "no answer", "retry scheduled", "location read"} <= events
    sent = [line for line in about_records if line["event"] == "sending"]
    assert {(line["method"], line["path"]) for line in sent} >= {
        ("GET", "/objects/"),
        ("GET", "/associations/"),
        ("POST", "/associations/"),
    }
    answers = [line for line in about_records if line["event"] == "answer"]
    assert {line["status"] for line in answers} >= {200, 201}
    assert all(isinstance(line["ms"], int) for line in answers)
    retries = [line for line in about_records if line["event"] == "retry scheduled"]
    assert all(line["attempt"] == 2 and "wait" in line for line in retries)
    assert {str(line["reason"])[:5] for line in retries} >= {"HTTP ", "Serve"}
    assert any(str(line["event"]).startswith("gave up after 2 attempts") for line in lines)
    assert any(str(line["event"]).startswith("created") for line in lines)
    assert not any("stamina" in str(line["event"]) for line in lines)


def test_verbose_console_lines_name_method_path_location_and_source(
    faulty: ThreadedSandbox, job: Path, tmp_path: Path
) -> None:
    """-v in the console format: a request line reads with its method, path and record."""
    _, err = run_cli(faulty, job, tmp_path, "-v")

    sending = [line for line in err.splitlines() if "[debug    ] sending" in line]
    assert sending
    for line in sending:
        for key in ("method=", "path=/", "location=loc", "source=jobs.csv:"):
            assert key in line


def one_location_job(tmp_path: Path, count: int) -> str:
    path = tmp_path / "one.csv"
    path.write_text(
        "location_id,key,first_object_key,second_object_key,first_object_label,"
        "second_object_label\n"
        + "".join(
            f"{LOCATIONS[0]},k{i},custom_objects.property,contact,P{i},C{i}\n" for i in range(count)
        ),
        encoding="utf-8",
    )
    return str(path)


async def test_spent_daily_budget_is_one_warning_naming_the_location(
    sandbox_factory: Callable[..., Sandbox], tmp_path: Path
) -> None:
    """A location's spent daily budget is said once, naming the location and a record."""
    log = io.StringIO()
    configure_logging("json", stream=log)
    async with sandbox_factory(daily_limit=5) as sb:
        result = await run_against(sb, one_location_job(tmp_path, 10))
    assert result.summary.counts.get("not_run", 0) > 1
    warnings = [line for line in json_lines(log.getvalue()) if line["level"] == "warning"]
    daily = [line for line in warnings if "daily" in str(line["event"])]
    assert len(daily) == 1
    assert daily[0]["location"] == LOCATIONS[0]
    assert str(daily[0]["source"]).startswith("one.csv:")


async def test_throttled_below_the_advertised_rate_is_a_warning_naming_the_location(
    sandbox_factory: Callable[..., Sandbox], tmp_path: Path
) -> None:
    """429s below the advertised rate are warned about (pacing is lowered), with the record;
    the retries they cause are not."""
    log = io.StringIO()
    configure_logging("json", stream=log)
    async with sandbox_factory(rate_limit=10, rate_interval=0.2, throttle_below=4) as sb:
        result = await run_against(sb, one_location_job(tmp_path, 20))
        assert sb.stats.throttled > 0
    assert set(result.summary.counts) == {"created"}
    warnings = [line for line in json_lines(log.getvalue()) if line["level"] == "warning"]
    assert warnings
    for line in warnings:
        assert str(line["event"]).startswith("throttled (429) below the expected rate")
        assert line["location"] == LOCATIONS[0]
        assert str(line["source"]).startswith("one.csv:")
        assert isinstance(line["limit"], int)
        assert line["limit"] < 10
    assert len(warnings) <= sb.stats.throttled  # at most one per 429, none per retry
