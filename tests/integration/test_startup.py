"""What the command line imports before it has work to do: CPU every run pays."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import anyio

from jobs.sandbox import Sandbox

DEFERRED = ("stamina", "tenacity", "jobs.sandbox", "aiohttp.web")


def test_start_up_leaves_the_sandbox_and_retries_for_later() -> None:
    """Loading every command imports neither the sandbox server nor the retry library: a
    run imports them when it serves a sandbox or retries, not at start-up."""
    code = (
        "import json, sys; from engine.cli import main; main.list_commands(None); "
        f"print(json.dumps(sorted(m for m in sys.modules if m.startswith({DEFERRED!r}))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert json.loads(out) == []


#: what only other commands do: a run that writes no page loads none of it
NOT_FOR_A_RUN = (
    "engine.checking",  # validate
    "engine.merge",  # report merge
    "engine.overview",  # report show
    "engine.page",  # --html, report html
    "engine.timeline_view",  # a page, report show, report merge: a run only writes one
    "jobs.rollback",  # rollback
    "jinja2",
    "pygal",
    "xml",  # a JUnit file is written without it
    "rich.progress",  # the bar, drawn only on a terminal (this run's stderr is a file)
)
#: what only sending requests needs: commands that send nothing load none of it
NOT_WITHOUT_SENDING = ("aiohttp", "engine.transport", "engine.runner")

# Runs ghl-migrate ARGS in this process the way ``python -m engine`` does, then writes the
# names of the modules it loaded to OUT (sys.exit is the CLI's normal way out).
_CLI = """\
import json, runpy, sys
out, sys.argv = sys.argv[1], ["ghl-migrate", *sys.argv[2:]]
try:
    runpy.run_module("engine", run_name="__main__", alter_sys=True)
except SystemExit:
    pass
with open(out, "w") as fh:
    json.dump(sorted(sys.modules), fh)
"""


async def _loaded(tmp_path: Path, *args: str) -> list[str]:
    """The modules ``ghl-migrate ARGS`` loaded, in a process of its own."""
    out = tmp_path / "modules.json"
    await anyio.run_process([sys.executable, "-c", _CLI, str(out), *args], check=True)
    loaded: list[str] = json.loads(out.read_text())
    return loaded


def _among(loaded: list[str], prefixes: tuple[str, ...]) -> list[str]:
    return [m for m in loaded if m in prefixes or m.startswith(tuple(f"{p}." for p in prefixes))]


async def test_each_command_loads_only_what_it_does(sandbox: Sandbox, tmp_path: Path) -> None:
    """A run loads no offline checks, merging, overviews, pages, rollback plans or progress
    bar (off a terminal); validate, report show and --help load no HTTP client (aiohttp)
    and no runner."""
    job = tmp_path / "job.csv"
    job.write_text(
        "location_id,action,key,first_object_key,first_object_label,second_object_key,"
        "second_object_label\n"
        "locA,create,pet_vet,custom_objects.pet,Patient,business,Vet\n",
        encoding="utf-8",
    )
    tokens = tmp_path / "tokens.csv"
    tokens.write_text(f"location_id,token\nlocA,{sandbox.issue_token('locA')}\n")
    report = tmp_path / "out.csv"
    run = await _loaded(
        tmp_path,
        *("run", str(job), "--tokens", str(tokens), "--base-url", sandbox.url),
        *("--report", str(report), "--junit", str(tmp_path / "junit.xml")),
    )
    assert "engine.runner" in run  # the check can see what a run loads
    assert ",created," in report.read_text()
    assert _among(run, NOT_FOR_A_RUN) == []

    for args in (["validate", str(job)], ["report", "show", str(report)], ["--help"]):
        assert _among(await _loaded(tmp_path, *args), NOT_WITHOUT_SENDING) == [], args
