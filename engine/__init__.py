"""ghl-migrate's generic engine: job files, scheduling, per-location rate limits, retries,
transport, journal and report. Nothing in it knows any particular API; job kinds do.

Everything a job kind or a library user needs is importable from here.
"""

from __future__ import annotations

#: this release; also the package's version in its metadata (pyproject.toml reads it here)
__version__ = "0.1.0"

from .checking import CheckSummary, check_job_files
from .client import Client, Exchange, RunStats
from .credentials import Caller, TokenLookup, TokenProvider
from .errors import (
    AttemptTimeout,
    ConfigError,
    ConnectFailed,
    CredentialRefused,
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
from .job import JobKind
from .journal import journal_intents, journal_meta, journal_path, pending_intents
from .limiter import DailyLimitExhausted, LocationGates, LocationLimiter, RateHint, parse_rate
from .lock import FileLock, LockHeld
from .merge import MergeResult, merge_reports
from .model import BLOCKED, FAILED, INVALID, NOT_RUN, LocationId, Outcome, Record, Request, Response
from .overview import Overview, RunIdentity, message_pattern, run_identity, summarize
from .report import iter_report, read_report
from .retry import RETRYABLE_STATUSES, RetryPolicy, is_retryable, retry_after_seconds
from .runner import Observer, RunConfig, Runner, RunResult, Summary, run
from .shard import Shard, ShardSet, shard_of
from .steps import Planned, Send, Steps, Write
from .timeline import AttemptRecorder, TimelineView, TimelineWriter, read_timeline, timeline_path
from .tokens import load_tokens
from .transport import AiohttpTransport, Transport

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
