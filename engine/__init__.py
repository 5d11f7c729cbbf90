"""ghl-migrate's generic engine: job files, scheduling, per-location rate limits, retries,
transport, journal and report. Nothing in it knows any particular API; job kinds do.

Everything a job kind or a library user needs is importable from here. Each name is imported
from its module when first used (a module ``__getattr__``, PEP 562, as ``concurrent.futures``
does for its executors): ``from engine import Record`` loads ``engine.model`` only, and a run
never pays at start-up for the modules of what it does not do (merging reports, overviews,
checking job files offline).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

#: this release; also the package's version in its metadata (pyproject.toml reads it here)
__version__ = "0.1.0"

if TYPE_CHECKING:  # what type checkers and editors see; at run time, __getattr__ below
    from .checking import CheckSummary, check_job_files
    from .client import Client, Exchange, RunStats
    from .credentials import Caller, TokenLookup, TokenProvider
    from .errors import (
        AttemptTimeout,
        ConfigError,
        ConnectFailed,
        CredentialRefused,
        DailyLimitExhausted,
        EngineError,
        HTTPStatusError,
        JobFileError,
        LocationError,
        MissingToken,
        RecordError,
        RequestError,
        RunStopped,
        StorageError,
        TransportError,
    )
    from .gates import LocationGates
    from .job import JobKind
    from .journal import journal_intents, journal_meta, journal_path, pending_intents
    from .limiter import LocationLimiter
    from .lock import FileLock, LockHeld
    from .merge import MergeResult, merge_reports
    from .model import (
        BLOCKED,
        FAILED,
        INVALID,
        NOT_RUN,
        LocationId,
        Outcome,
        Record,
        Request,
        Response,
    )
    from .overview import Overview, RunIdentity, message_pattern, run_identity, summarize
    from .rates import RateHint, parse_rate
    from .report import iter_report, read_report
    from .result import Observer, RunConfig, RunResult, Summary
    from .retry import RETRYABLE_STATUSES, RetryPolicy, is_retryable, retry_after_seconds
    from .runner import Runner, run
    from .shard import Shard, ShardSet, shard_of
    from .steps import Planned, Send, Steps, Write
    from .timeline import AttemptRecorder, TimelineWriter, timeline_path
    from .timeline_view import TimelineView, read_timeline
    from .tokens import load_tokens
    from .transport import AiohttpTransport, Transport

#: the public names, by the module that defines them
_MODULES = {
    "checking": ("CheckSummary", "check_job_files"),
    "client": ("Client", "Exchange", "RunStats"),
    "credentials": ("Caller", "TokenLookup", "TokenProvider"),
    "errors": (
        "AttemptTimeout",
        "ConfigError",
        "ConnectFailed",
        "CredentialRefused",
        "DailyLimitExhausted",
        "EngineError",
        "HTTPStatusError",
        "JobFileError",
        "LocationError",
        "MissingToken",
        "RecordError",
        "RequestError",
        "RunStopped",
        "StorageError",
        "TransportError",
    ),
    "gates": ("LocationGates",),
    "job": ("JobKind",),
    "journal": ("journal_intents", "journal_meta", "journal_path", "pending_intents"),
    "limiter": ("LocationLimiter",),
    "lock": ("FileLock", "LockHeld"),
    "merge": ("MergeResult", "merge_reports"),
    "model": (
        "BLOCKED",
        "FAILED",
        "INVALID",
        "NOT_RUN",
        "LocationId",
        "Outcome",
        "Record",
        "Request",
        "Response",
    ),
    "overview": ("Overview", "RunIdentity", "message_pattern", "run_identity", "summarize"),
    "rates": ("RateHint", "parse_rate"),
    "report": ("iter_report", "read_report"),
    "result": ("Observer", "RunConfig", "RunResult", "Summary"),
    "retry": ("RETRYABLE_STATUSES", "RetryPolicy", "is_retryable", "retry_after_seconds"),
    "runner": ("Runner", "run"),
    "shard": ("Shard", "ShardSet", "shard_of"),
    "steps": ("Planned", "Send", "Steps", "Write"),
    "timeline": ("AttemptRecorder", "TimelineWriter", "timeline_path"),
    "timeline_view": ("TimelineView", "read_timeline"),
    "tokens": ("load_tokens",),
    "transport": ("AiohttpTransport", "Transport"),
}
_MODULE_OF = {name: module for module, names in _MODULES.items() for name in names}

__all__ = [
    "BLOCKED",
    "FAILED",
    "INVALID",
    "NOT_RUN",
    "RETRYABLE_STATUSES",
    "AiohttpTransport",
    "AttemptRecorder",
    "AttemptTimeout",
    "Caller",
    "CheckSummary",
    "Client",
    "ConfigError",
    "ConnectFailed",
    "CredentialRefused",
    "DailyLimitExhausted",
    "EngineError",
    "Exchange",
    "FileLock",
    "HTTPStatusError",
    "JobFileError",
    "JobKind",
    "LocationError",
    "LocationGates",
    "LocationId",
    "LocationLimiter",
    "LockHeld",
    "MergeResult",
    "MissingToken",
    "Observer",
    "Outcome",
    "Overview",
    "Planned",
    "RateHint",
    "Record",
    "RecordError",
    "Request",
    "RequestError",
    "Response",
    "RetryPolicy",
    "RunConfig",
    "RunIdentity",
    "RunResult",
    "RunStats",
    "RunStopped",
    "Runner",
    "Send",
    "Shard",
    "ShardSet",
    "Steps",
    "StorageError",
    "Summary",
    "TimelineView",
    "TimelineWriter",
    "TokenLookup",
    "TokenProvider",
    "Transport",
    "TransportError",
    "Write",
    "check_job_files",
    "is_retryable",
    "iter_report",
    "journal_intents",
    "journal_meta",
    "journal_path",
    "load_tokens",
    "merge_reports",
    "message_pattern",
    "parse_rate",
    "pending_intents",
    "read_report",
    "read_timeline",
    "retry_after_seconds",
    "run",
    "run_identity",
    "shard_of",
    "summarize",
    "timeline_path",
]


if not TYPE_CHECKING:  # hidden from mypy, so that a misspelt name stays an error

    def __getattr__(name: str) -> Any:
        module = _MODULE_OF.get(name)
        if module is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        # __import__, not importlib.import_module: the import statement's own path, which
        # python -X importtime reports (import_module's is not)
        value = getattr(__import__(f"{__name__}.{module}", fromlist=[name]), name)
        globals()[name] = value  # found once; later uses are plain attribute reads
        return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
