"""The progress bar: records done of the total, and how many are not ok, as they finish."""

from __future__ import annotations

import io

from rich.console import Console

from engine import Outcome, Record
from engine.progress import ProgressBar


def test_the_bar_counts_records_done_and_not_ok() -> None:
    """Each finished record advances the bar; those not ok are counted apart."""
    out = io.StringIO()
    bar = ProgressBar(frozenset({"created"}), console=Console(file=out, width=120))
    record = Record(source="jobs.csv:2", location_id="locA", ident="locA/k", fields={})
    bar.started(total=3, done=0)
    bar.finished(Outcome(record=record, status="created"))
    bar.finished(Outcome(record=record, status="failed"))
    bar.close()

    last = out.getvalue().splitlines()[-1]
    assert "2/3" in last
    assert "1 not ok" in last
