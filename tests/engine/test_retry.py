"""The retry hook: which failures are worth another attempt, and how long to wait first."""

from __future__ import annotations

import email.utils

import pytest

from engine import (
    AttemptTimeout,
    HTTPStatusError,
    MissingToken,
    RecordError,
    Request,
    Response,
    RunStopped,
    TransportError,
    is_retryable,
    retry_after_seconds,
)

REQUEST = Request(method="POST", url="https://api.example/things", location_id="loc1")
NOW = 1_700_000_000.0  # a fixed "current time" in seconds since the epoch


def status_error(status: int, **headers: str) -> HTTPStatusError:
    response = Response(status=status, headers={k.replace("_", "-"): v for k, v in headers.items()})
    return HTTPStatusError(f"HTTP {status}", request=REQUEST, response=response)


def http_date(timestamp: float) -> str:
    return email.utils.formatdate(timestamp, usegmt=True)


def test_transport_error_is_retried() -> None:
    """A connection failure or reset is retried with the normal backoff."""
    assert is_retryable(TransportError("reset", request=REQUEST)) is True


def test_attempt_timeout_is_retried() -> None:
    """An attempt that timed out is retried like any transport error."""
    assert is_retryable(AttemptTimeout("slow", request=REQUEST)) is True


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_server_errors_are_retried(status: int) -> None:
    """A 5xx from the server or a proxy is retried with the normal backoff."""
    assert is_retryable(status_error(status)) is True


def test_429_without_retry_after_leaves_the_wait_to_the_limiter() -> None:
    """A 429 without Retry-After is retried with no backoff: the location's limiter paces it."""
    result = is_retryable(status_error(429))
    assert result == 0.0
    assert result is not False  # 0.0 still means "retry"


def test_429_with_retry_after_waits_that_many_seconds() -> None:
    """A 429 with ``Retry-After: 7`` is retried after 7 seconds."""
    assert is_retryable(status_error(429, retry_after="7")) == 7.0


def test_retry_after_may_be_fractional_and_padded() -> None:
    """Retry-After seconds may carry spaces and a fraction."""
    assert is_retryable(status_error(429, retry_after=" 1.5 ")) == 1.5


def test_retry_after_is_capped() -> None:
    """A Retry-After longer than ``max_retry_after`` is cut down to it."""
    assert is_retryable(status_error(429, retry_after="3600"), max_retry_after=300.0) == 300.0
    assert is_retryable(status_error(429, retry_after="3600")) == 300.0  # the default cap


def test_retry_after_of_zero_still_retries() -> None:
    """``Retry-After: 0`` means retry now: a zero wait, not give up."""
    result = is_retryable(status_error(429, retry_after="0"))

    assert result is not False
    assert result == 0.0


def test_negative_retry_after_means_now() -> None:
    """A negative Retry-After is treated as no wait."""
    assert is_retryable(status_error(429, retry_after="-5")) == 0.0


def test_unparsable_retry_after_is_left_to_the_limiter() -> None:
    """A Retry-After that is neither seconds nor a date is ignored, as if absent."""
    assert is_retryable(status_error(429, retry_after="soon")) == 0.0


def test_retry_after_as_http_date() -> None:
    """Retry-After as an HTTP date gives the seconds from now until then."""
    response = Response(status=429, headers={"retry-after": http_date(NOW + 42)})

    assert retry_after_seconds(response, now=NOW) == 42.0


def test_retry_after_date_in_the_past_means_now() -> None:
    """A Retry-After date already past gives no wait."""
    response = Response(status=429, headers={"retry-after": http_date(NOW - 60)})

    assert retry_after_seconds(response, now=NOW) == 0.0


def test_hook_honours_http_date_and_its_cap() -> None:
    """The hook reads an HTTP-date Retry-After too, capped like delta-seconds."""
    far_future = status_error(429, retry_after="Fri, 31 Dec 9999 23:59:59 GMT")
    long_past = status_error(429, retry_after="Sun, 06 Nov 1994 08:49:37 GMT")

    assert is_retryable(far_future, max_retry_after=120.0) == 120.0
    assert is_retryable(long_past) == 0.0


def test_retry_after_absent_is_none() -> None:
    """No Retry-After header gives None, not zero."""
    assert retry_after_seconds(Response(status=429)) is None


def test_retry_after_on_503_is_not_used() -> None:
    """Retry-After only sets the wait for a 429; a 503 uses the normal backoff."""
    assert is_retryable(status_error(503, retry_after="7")) is True


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422])
def test_client_errors_are_not_retried(status: int) -> None:
    """A 4xx other than 429 will not change on a retry: give up at once."""
    assert is_retryable(status_error(status)) is False


@pytest.mark.parametrize(
    "exc",
    [
        ValueError("bad"),
        RuntimeError("bug"),
        RunStopped("stopping"),
        MissingToken("no token", request=REQUEST),
        RecordError("bad row"),
    ],
    ids=lambda exc: type(exc).__name__,
)
def test_other_exceptions_are_not_retried(exc: Exception) -> None:
    """Anything that is not a transport error or a retryable status stops retrying."""
    assert is_retryable(exc) is False
