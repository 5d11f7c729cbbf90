"""The progress bar a run draws on a terminal: records done / total, rate, ETA, failures.

Its own module, apart from :mod:`engine.console`: rich's progress machinery (~2 ms of CPU to
import) loads only when a bar is drawn, not for runs whose stderr is not a terminal (CI,
Kubernetes, cron), nor for commands that draw none.
"""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from .model import Outcome

__all__ = ["ProgressBar"]


def _rate(task: Task) -> float:
    """Records per second finished by this run (not counting those resumed as done)."""
    elapsed = task.elapsed or 0.0
    done = task.completed - task.fields.get("resumed", 0)
    return done / elapsed if elapsed > 0 else 0.0


class _RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        return Text(f"{_rate(task):>7.1f}/s")


class _EtaColumn(ProgressColumn):
    """Time left at this run's average pace (bursty pacing fools a windowed speed)."""

    def render(self, task: Task) -> Text:
        rate = _rate(task)
        if task.total is None or rate <= 0:
            return Text("ETA -:--:--")
        left = int((task.total - task.completed) / rate)
        return Text(f"ETA {left // 3600}:{left // 60 % 60:02d}:{left % 60:02d}")


class ProgressBar:
    """A runner ``Observer`` drawing records done / total, rate, ETA and failures so far."""

    def __init__(self, ok_statuses: frozenset[str], *, console: Console | None = None) -> None:
        self._ok = ok_statuses
        self._failures = 0
        self._progress = Progress(
            TextColumn("[bold]records"),
            BarColumn(),
            MofNCompleteColumn(),
            _RateColumn(),
            TextColumn("[red]{task.fields[failures]} not ok"),
            TimeElapsedColumn(),
            _EtaColumn(),
            console=console or Console(stderr=True, emoji=False),
            transient=False,
        )
        self._task: TaskID | None = None

    def started(self, total: int, done: int) -> None:
        self._progress.start()
        self._task = self._progress.add_task(
            "run", total=total, completed=done, failures=0, rate=0.0
        )

    def finished(self, outcome: Outcome) -> None:
        if self._task is None:
            return
        if outcome.status not in self._ok:
            self._failures += 1
        self._progress.update(self._task, advance=1, failures=self._failures)

    def close(self) -> None:
        """Stop drawing."""
        self._progress.stop()
