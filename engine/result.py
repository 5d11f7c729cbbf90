"""What a run is given and what it gives back: its configuration, its summary, its result.

:class:`RunConfig` is everything a run needs besides the job kind, the tokens and the
transport; :class:`Summary` is what a person wants to know at the end; :class:`RunResult`
holds both the summary and every outcome, read on demand from the run's store (a run may
have millions, so they are not held in memory); an :class:`Observer` is told about progress.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Protocol

from .model import Outcome
from .retry import RetryPolicy
from .shard import Shard
from .store import OutcomeView, RunStore

__all__ = ["Observer", "RunConfig", "RunResult", "Summary"]


@dataclass(frozen=True, slots=True, kw_only=True)
class RunConfig:
    """Everything a run needs besides the job kind, tokens and transport.

    Times are in seconds. ``rate`` is the starting budget per location (requests, interval);
    the server's headers and 429s refine it.
    """

    job_files: tuple[str, ...]
    report: str | None = None
    resume: bool = False
    #: most records in progress (so requests in flight) at once; None: as many as the
    #: locations' budgets and the answers' latency need, up to the process bound
    #: (:mod:`engine.concurrency`)
    concurrency: int | None = None
    rate: tuple[int, float] = (100, 10.0)
    timeout: float = 30.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    #: after a stop, how long in-flight work may take before it is cancelled (None: timeout + 5)
    drain_timeout: float | None = None
    #: install SIGINT/SIGTERM handlers (the CLI does; a library caller usually does not)
    handle_signals: bool = False
    #: the server lives no longer than the run (an embedded sandbox): nothing the run does
    #: outlives it, so its journal says so, a later ephemeral run may replace its report (a
    #: resume starts over), and a rollback refuses it. A real run's report is never replaced.
    ephemeral: bool = False
    #: only plan: read as the run would, send no write, report what the run would do
    plan: bool = False
    #: also write the outcomes as JUnit XML here, at the end (see ``engine.junit``)
    junit: str | None = None
    #: do only this shard of the job: the records of the locations it owns (engine.shard);
    #: the others are left to the processes running the other shards
    shard: Shard | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Summary:
    """What a person wants to know at the end of a run."""

    total: int
    #: records carried out by this run (not resumed as done, not left unsent)
    processed: int
    counts: Mapping[str, int]
    failed_by_location: Mapping[str, int]
    elapsed: float
    #: requests that reached the server (answered, or lost after connecting)
    requests: int
    retries: int
    rate_limited: int
    #: answers 500/502/503/504
    server_errors: int
    #: attempts lost after connecting: resets, dropped connections, timeouts
    transport_errors: int
    stopped: bool
    exit_code: int
    report: str | None = None
    #: attempts that never reached the server (DNS, refused, TLS); not in ``requests``
    connect_failures: int = 0
    #: why the run stopped early because the host cannot be reached ("" when it did not)
    unreachable: str = ""
    #: a plan: the outcomes say what a run would do
    plan: bool = False
    #: in a plan, the records whose outcome is a change the run would make
    pending: int = 0
    #: the shard this run did ("2/4"), and how many of the job's records other shards own
    shard: str | None = None
    other_shards: int = 0
    #: why the run stopped early because the credential tokens are minted with was
    #: refused ("" when it was not)
    credential_refused: str = ""
    #: names of locations where known (id -> name), for showing beside their ids
    location_names: Mapping[str, str] = field(default_factory=dict)


class RunResult:
    """The summary, and every outcome in input order, read on demand from the run's store.

    The outcomes are not held in memory (a run may have millions); they stay readable until
    :meth:`close` (or the end of a ``with`` block), which deletes the store's scratch file.
    """

    def __init__(self, *, summary: Summary, store: RunStore) -> None:
        self.summary = summary
        self._store = store
        self.outcomes: Sequence[Outcome] = OutcomeView(store)

    def counts_by_location(self) -> dict[str, dict[str, int]]:
        """Records per outcome status, per location (in input order of the locations)."""
        return self._store.counts_by_location()

    def outcomes_with(self, status: str) -> Iterator[Outcome]:
        """The outcomes ``status``, in input order, read on demand."""
        return self._store.outcomes(status)

    def count_with(self, status: str, field: str) -> int:
        """How many outcomes ``status`` have the kind-specific ``field`` set."""
        return self._store.count_with(status, field)

    def close(self) -> None:
        """Release the outcomes' scratch file."""
        self._store.close()

    def __enter__(self) -> RunResult:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        # Short on purpose: asyncio.run() reprs the main task's result when it restores
        # the SIGINT handler, and that must stay cheap whatever the job's size.
        return f"RunResult(<{len(self.outcomes)} outcomes>, summary={self.summary!r})"


class Observer(Protocol):
    """Progress callbacks (the CLI draws a progress bar with them)."""

    def started(self, total: int, done: int) -> None: ...

    def finished(self, outcome: Outcome) -> None: ...
