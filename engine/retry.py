"""When to try a request again, and how long to wait first.

``is_retryable`` is a stamina *backoff hook*: it returns ``False`` for answers that will not
change on a retry (4xx, bad input, a stopped run), ``True`` for transient failures
(connection errors, timeouts, 5xx), and for a 429 the number of seconds to wait, which
overrides the exponential backoff: ``Retry-After`` when given, else 0. A 429's retry is
paced by the location's limiter, which knows better than a blind backoff when the window
has room again (it waits the 429 out, or counts the requests that fill the window); a
backoff on top would only hold the record back after the window has room.

Retries are logged by the engine, not by stamina: ``log_retries`` replaces stamina's default
instrumentation (a raw ``stamina.retry_scheduled`` line at warning level that names neither
the location nor the record) with ``log_retry``, one debug line per scheduled retry. Lines
logged inside a record carry its ``location`` and ``source`` (the runner binds them).
"""

from __future__ import annotations

import email.utils
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import structlog

if TYPE_CHECKING:
    from stamina.instrumentation import RetryDetails

from .errors import HTTPStatusError, RequestError, TransportError
from .model import Response

__all__ = [
    "RETRYABLE_STATUSES",
    "RetryPolicy",
    "describe_failure",
    "is_retryable",
    "log_retries",
    "log_retry",
    "retry_after_seconds",
]

log = structlog.get_logger("engine")

#: Statuses worth another attempt: rate limited, or a transient server/proxy failure.
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """How hard to try one request. Times are in seconds."""

    attempts: int = 5
    wait_initial: float = 0.5
    wait_max: float = 30.0
    wait_jitter: float = 1.0
    #: longest ``Retry-After`` honoured; a longer one is capped to this
    max_retry_after: float = 300.0


def retry_after_seconds(response: Response, *, now: float | None = None) -> float | None:
    """The ``Retry-After`` header in seconds (delta-seconds or an HTTP date), or None."""
    value = response.header("retry-after")
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def is_retryable(exc: Exception, *, max_retry_after: float = 300.0) -> bool | float:
    """stamina backoff hook: False = give up, True = back off, float = wait that long."""
    if isinstance(exc, TransportError):
        return True
    if isinstance(exc, HTTPStatusError) and exc.status in RETRYABLE_STATUSES:
        if exc.status == 429:
            delay = retry_after_seconds(exc.response)
            return 0.0 if delay is None else min(delay, max_retry_after)
        return True
    return False


def describe_failure(exc: BaseException) -> str:
    """Why an attempt failed, in a few words for a log line (``HTTP 503``, ``connection
    refused``...), without the request's method and URL, which the line carries apart."""
    if isinstance(exc, HTTPStatusError):
        return f"HTTP {exc.status}"
    text = str(exc)
    if isinstance(exc, RequestError):
        prefix = f"{exc.request.method} {exc.request.url}: "
        if text.startswith(prefix):
            return text[len(prefix) :]
    return text or type(exc).__name__


def log_retry(details: RetryDetails) -> None:
    """A stamina on-retry hook: one debug line per scheduled retry, with the wait and why."""
    exc = details.caused_by
    request = exc.request if isinstance(exc, RequestError) else None
    log.debug(
        "retry scheduled",
        method=request.method if request else None,
        path=urlsplit(request.url).path if request else None,
        attempt=details.retry_num + 1,
        wait=round(details.wait_for, 3),
        reason=describe_failure(exc),
    )


def log_retries() -> None:
    """Make stamina report retries through ``log_retry`` only (process-wide; idempotent)."""
    from stamina.instrumentation import set_on_retry_hooks  # at the first retry, not start-up

    set_on_retry_hooks([log_retry])
