"""The CLI as a user drives it: samples against the embedded sandbox, errors, help."""

from __future__ import annotations

import csv
import re
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from engine.cli import main


def invoke(*args: str) -> tuple[int, str, str]:
    """Run ``ghl-migrate ARGS`` in-process; return exit code, stdout and stderr."""
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def sandbox_process(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``ghl-migrate sandbox ARGS`` as a process (a server that did start would block:
    the timeout fails the test instead of hanging it)."""
    return subprocess.run(
        [sys.executable, "-m", "engine", "sandbox", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )


def error_line(err: str) -> str:
    """The one ``Error:`` line of a usage error; fails on a traceback."""
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("Error: ")]
    assert len(lines) == 1, err
    return lines[0]


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_onboarding_sample_runs_against_the_sandbox(samples: Path, tmp_path: Path) -> None:
    """The README's first command creates every definition and exits 0."""
    report = tmp_path / "out.csv"
    code, out, _ = invoke(
        "run", str(samples / "onboarding.json"), "--sandbox", "--report", str(report)
    )
    assert code == 0
    found = rows(report)
    assert len(found) == 12
    assert {r["outcome"] for r in found} == {"created"}
    assert list(found[0]) == [
        "source", "location_id", "location_name", "action", "key", "outcome", "association_id",
        "previous_first_label", "previous_second_label", "http_status", "attempts", "error",
    ]  # fmt: skip
    assert "created" in out
    assert "12" in out
    # the lock and the scratch store are gone; the report, its journal and timeline stay
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "out.csv",
        "out.csv.journal",
        "out.csv.timeline",
    ]


def test_csv_sample_reports_bad_rows_and_exits_1(samples: Path, tmp_path: Path) -> None:
    """The CSV sample's bad rows are invalid or failed, the rest created; exit code 1."""
    report = tmp_path / "out.jsonl"
    code, out, _ = invoke(
        "run", str(samples / "associations.csv"), "--sandbox", "--report", str(report)
    )
    assert code == 1
    lines = report.read_text(encoding="utf-8").splitlines()
    text = "\n".join(lines)
    assert len(lines) == 11  # one row per non-blank data line
    assert text.count('"outcome":"invalid"') == 5
    assert "associations.csv:9" in text  # the source names file and line
    assert "key: is required for create" in text
    assert "invalid" in out


def test_json_report_matches_csv_columns(samples: Path, tmp_path: Path) -> None:
    """A .jsonl report has the same columns, in order, as the CSV one."""
    report = tmp_path / "out.jsonl"
    invoke("run", str(samples / "onboarding.json"), "--sandbox", "--report", str(report))
    first = report.read_text(encoding="utf-8").splitlines()[0]
    assert re.findall(r'"(\w+)":', first)[:12] == [
        "source", "location_id", "location_name", "action", "key", "outcome", "association_id",
        "previous_first_label", "previous_second_label", "http_status", "attempts", "error",
    ]  # fmt: skip


def test_unknown_column_stops_before_sending(write_job: Callable[[str, str], str]) -> None:
    """An unknown column exits 2 with the file, line and column named."""
    job = write_job("jobs.csv", "location_id,key,colour\nloc1,k,red\n")
    code, _, err = invoke("run", job, "--sandbox")
    assert code == 2
    assert "jobs.csv:1" in err
    assert "colour" in err


def test_broken_json_names_the_line(write_job: Callable[[str, str], str]) -> None:
    """Broken JSON exits 2 naming the file and line."""
    job = write_job("jobs.json", '[\n  {"location_id": "a",\n  oops\n]\n')
    code, _, err = invoke("run", job, "--sandbox")
    assert code == 2
    assert re.search(r"jobs\.json:3", err)


def test_existing_report_is_never_overwritten(samples: Path, tmp_path: Path) -> None:
    """Without --resume an existing report is refused with advice, and left untouched."""
    report = tmp_path / "out.csv"
    report.write_text("precious\n", encoding="utf-8")
    code, _, err = invoke(
        "run", str(samples / "onboarding.json"), "--sandbox", "--report", str(report)
    )
    assert code == 2
    assert "--resume" in err
    assert report.read_text(encoding="utf-8") == "precious\n"


def test_plain_http_to_a_remote_host_is_refused(samples: Path) -> None:
    """Tokens are never sent over plain http except to loopback."""
    code, _, err = invoke(
        "run", str(samples / "onboarding.json"), "--base-url", "http://example.com"
    )
    assert code == 2
    assert "https" in err


def test_bad_rate_is_a_usage_error(samples: Path) -> None:
    """A malformed --rate exits 2 and says what is expected."""
    code, _, err = invoke("run", str(samples / "onboarding.json"), "--sandbox", "--rate", "fast")
    assert code == 2
    assert "--rate" in err


@pytest.mark.parametrize(
    "command", [[], ["run"], ["sandbox"], ["validate"], ["plan"], ["rollback"]]
)
def test_every_command_has_help(command: list[str]) -> None:
    """--help works for the group and every command and describes every option."""
    code, out, _ = invoke(*command, "--help")
    assert code == 0
    assert "Usage:" in out
    options = re.findall(r"^\s+(--[a-z-]+)", out, flags=re.M)
    for option in options:
        block = out.split(option, 1)[1].split("\n  -", 1)[0]
        assert len(block.strip()) > 3, f"{option} has no help text"


def test_readme_shows_every_command(samples: Path) -> None:
    """The README mentions every CLI command and the first-screen commands exist."""
    readme = (samples.parent / "README.md").read_text(encoding="utf-8")
    for name in main.list_commands(None):  # type: ignore[arg-type]
        assert f"ghl-migrate {name}" in readme
    assert "ghl-migrate run samples/onboarding.json --sandbox" in readme


def test_readme_python_examples_compile(samples: Path) -> None:
    """Every Python block in the README is valid Python that imports only real names."""
    readme = (samples.parent / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    assert blocks
    for block in blocks:
        compile(block, "README.md", "exec")
        for module, names in re.findall(r"^from ([\w.]+) import (.+)$", block, flags=re.M):
            imported = __import__(module, fromlist=["_"])
            for name in names.split(","):
                assert hasattr(imported, name.strip()), f"{module}.{name.strip()}"


def test_report_without_its_journal_is_not_resumed(samples: Path, tmp_path: Path) -> None:
    """A report whose journal is gone cannot be checked, so --resume refuses it."""
    report = tmp_path / "out.csv"
    report.write_text("source,location_id,action,key,outcome\n", encoding="utf-8")
    code, _, err = invoke(
        "run", str(samples / "onboarding.json"), "--base-url", "https://example.com",
        "--report", str(report), "--resume",
    )  # fmt: skip
    assert code == 2
    assert "no journal" in err


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("jobs.csv", "location_id,key,first_object_key,second_object_key\n"),
        ("jobs.csv", "location_id,key,first_object_key,second_object_key\n\n,,,\n\n"),
        ("jobs.json", "[]"),
        ("onboarding.json", '{"locations": [], "associations": [{"key": "k"}]}'),
        ("onboarding.json", '{"locations": ["loc01"], "associations": []}'),
    ],
    ids=["header-only", "blank-lines", "empty-list", "no-locations", "no-definitions"],
)
def test_job_without_records_exits_2(
    write_job: Callable[[str, str], str], tmp_path: Path, name: str, text: str
) -> None:
    """A job with no records says so, naming the file, and exits 2 without a report (not
    0 with "all records ok")."""
    job = write_job(name, text)
    report = tmp_path / "out.csv"
    code, out, err = invoke("run", job, "--sandbox", "--report", str(report))
    assert code == 2
    assert "no records" in error_line(err)
    assert name in error_line(err)
    assert "all records ok" not in out
    assert not report.exists()


@pytest.mark.parametrize("text", ["", "location_id,token\n", "{}"])
def test_tokens_file_without_tokens_exits_2(samples: Path, tmp_path: Path, text: str) -> None:
    """An empty tokens file given with --tokens exits 2 naming it, before anything is sent."""
    tokens = tmp_path / "tokens.csv"
    tokens.write_text(text, encoding="utf-8")
    tokens.chmod(0o600)
    report = tmp_path / "out.csv"
    code, _, err = invoke(
        "run", str(samples / "onboarding.json"), "--base-url", "http://127.0.0.1:9",
        "--tokens", str(tokens), "--report", str(report),
    )  # fmt: skip
    assert code == 2
    assert "no tokens" in error_line(err)
    assert str(tokens) in error_line(err)
    assert not report.exists()


def test_summary_counts_per_location_read_unambiguously(samples: Path, tmp_path: Path) -> None:
    """The summary's per-location line says "records" next to each count, so a numeric-looking
    location id and its count cannot be read as one."""
    code, out, _ = invoke(
        "run", str(samples / "associations.csv"), "--sandbox", "--report", str(tmp_path / "r.csv")
    )
    assert code == 1
    line = next(line for line in out.splitlines() if line.startswith("not ok by location"))
    assert "Zq4TnB8cWe1uKd6fGh2J (4 records)" in line
    assert "Hx2kQm7RtY0pLw3sVb9N (1 record)" in line
    assert "no location_id (1 record)" in line


def test_sandbox_tokens_file_in_a_missing_folder_exits_2(tmp_path: Path) -> None:
    """``sandbox --tokens-file`` in a folder that does not exist exits 2 with one line."""
    proc = sandbox_process(
        "--port", "0", "--locations", "loc01", "--tokens-file", "missing/tokens.csv", cwd=tmp_path
    )
    assert proc.returncode == 2
    line = error_line(proc.stderr)
    assert "missing/tokens.csv" in line
    assert "folder" in line


def test_sandbox_tokens_file_needs_locations(tmp_path: Path) -> None:
    """``sandbox --tokens-file`` without --locations would write a file with no tokens: exit 2."""
    proc = sandbox_process("--port", "0", "--tokens-file", "tokens.csv", cwd=tmp_path)
    assert proc.returncode == 2
    assert "--locations" in error_line(proc.stderr)
    assert not (tmp_path / "tokens.csv").exists()


def test_sandbox_on_a_port_in_use_exits_2(tmp_path: Path) -> None:
    """``sandbox`` on a port already in use exits 2, naming the port and suggesting --port 0."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = sandbox_process("--port", str(port), cwd=tmp_path)
    assert proc.returncode == 2
    line = error_line(proc.stderr)
    assert f"port {port}" in line
    assert "--port 0" in line


def test_the_program_tunes_the_garbage_collector_and_main_does_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``ghl-migrate`` (the console script and ``python -m engine``) raises the young
    generation's threshold and freezes start-up objects; ``main`` alone leaves GC as is."""
    import gc
    from importlib.metadata import entry_points

    import engine.cli

    calls: list[object] = []
    monkeypatch.setattr(gc, "freeze", lambda: calls.append("freeze"))
    monkeypatch.setattr(gc, "set_threshold", lambda *t: calls.append(t))
    monkeypatch.setattr(sys, "argv", ["ghl-migrate", "--version"])
    invoke("--version")
    assert calls == []  # main, as tests invoke it
    with pytest.raises(SystemExit) as exited:
        engine.cli.script()
    assert exited.value.code == 0
    assert calls[0] == "freeze"
    assert calls[1][0] == engine.cli.GC_YOUNG  # type: ignore[index]
    (console,) = entry_points(group="console_scripts", name="ghl-migrate")
    assert console.value == "engine.cli:script"
    main_module = Path(engine.cli.__file__).with_name("__main__.py").read_text()
    assert "script()" in main_module
