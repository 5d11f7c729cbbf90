"""What the command line imports before it has work to do: CPU every run pays."""

from __future__ import annotations

import json
import subprocess
import sys

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
