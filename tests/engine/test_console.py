"""What a person reads at the end of a run: names and paths come out exactly as given."""

from __future__ import annotations

import pytest

from engine import Summary
from engine.console import render_summary


def test_the_summary_prints_names_and_paths_as_they_are(capsys: pytest.CaptureFixture[str]) -> None:
    """A location name or report path holding ``:smile:`` is printed as is, not as an emoji
    (rich's emoji codes are off: they are not ours, and loading them costs every run)."""
    summary = Summary(
        total=2,
        processed=2,
        counts={"created": 1, "failed": 1},
        failed_by_location={"locA": 1},
        elapsed=1.0,
        requests=2,
        retries=0,
        rate_limited=0,
        server_errors=0,
        transport_errors=0,
        stopped=False,
        exit_code=1,
        report="runs/:smile:/out.csv",
        location_names={"locA": "Café :thumbs_up: Ltd"},
    )
    render_summary(summary, ok_statuses=frozenset({"created"}))  # its own console, as run's

    text = capsys.readouterr().out
    assert 'locA "Café :thumbs_up: Ltd" (1 record)' in text
    assert "report: runs/:smile:/out.csv" in text
