"""The engine's error tree.

::

    EngineError
      ├─ ConfigError          bad options or an unreadable job file → exit 2, nothing sent
      │    ├─ JobFileError    names the file, line and field
      │    └─ LockHeld        another process runs on the same report (engine.lock)
      ├─ RecordError          one bad input row → reported ``invalid``, never sent
      ├─ RunStopped           the run is stopping (Ctrl-C, SIGTERM, the host cannot be
      │                       reached): the record is ``not_run``
      ├─ StorageError         the report or journal cannot be written mid-run → sending stops
      ├─ DailyLimitExhausted  the location's daily budget is spent: its records are ``not_run``
      ├─ LocationError        a location cannot be worked on: each of its records fails
      ├─ Planned              a plan reached a write: not sent; the record gets its plan
      ├─ CredentialRefused    the credential tokens are minted with was refused: sending stops
      └─ RequestError         carries .request, .attempts, .ambiguous
           ├─ MissingToken    no token for the request's location → never sent
           ├─ TransportError  reset, dropped, timed out → retryable; it may have reached
           │    │             the server, so its effect is unknown (ambiguous)
           │    ├─ AttemptTimeout
           │    └─ ConnectFailed   no connection (DNS, refused, TLS, connect timeout): the
           │                       server never saw it → retryable, not ambiguous
           └─ HTTPStatusError carries .response; retryable iff 429 or 5xx

Messages never contain tokens: requests render their headers redacted.
"""

from __future__ import annotations

import errno

from .model import Request, Response

__all__ = [
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
    "os_error_text",
]

_PLAIN = {
    errno.ENOENT: "does not exist",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EROFS: "read-only file system",
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EISDIR: "is a folder",
    errno.ENOTDIR: "a part of the path is not a folder",
}


def os_error_text(exc: OSError) -> str:
    """A short plain description of a file-system error (no path, no errno number)."""
    if exc.errno in _PLAIN:
        return _PLAIN[exc.errno]
    return exc.strerror or str(exc)


class EngineError(Exception):
    """Base of every error the engine raises on purpose."""


class ConfigError(EngineError):
    """The run cannot start: bad options, unreadable files. Nothing has been sent."""


class JobFileError(ConfigError):
    """A job file that cannot be read at all."""

    def __init__(self, path: str, message: str, *, line: int | None = None, field: str = ""):
        self.path = path
        self.line = line
        self.field = field
        where = path if line is None else f"{path}:{line}"
        if field:
            where = f"{where} (field {field!r})"
        super().__init__(f"{where}: {message}")


class RecordError(EngineError):
    """One input record is malformed; it is reported ``invalid`` and never sent."""

    def __init__(self, message: str, *, field: str = ""):
        self.field = field
        super().__init__(f"{field}: {message}" if field else message)


class RunStopped(EngineError):
    """The run is stopping; records not finished are reported ``not_run``."""


class StorageError(EngineError):
    """The report or journal could not be written while the run was going.

    The run stops sending at once (a write whose intent cannot be journaled is never sent);
    what the files hold up to that point stays consistent, so the run can be resumed.
    """

    def __init__(self, path: str, error: OSError, *, advice: str = ""):
        self.path = path
        self.error = error
        text = f"cannot write {path}: {os_error_text(error)}"
        super().__init__(f"{text}; {advice}" if advice else text)


class DailyLimitExhausted(EngineError):
    """The location's daily request budget is spent: nothing more may be sent to it today.

    Raised by the limiter before a request would be sent; the record is ``not_run``.
    """


class LocationError(EngineError):
    """A location cannot be worked on (its preparation failed): each of its records fails
    with this message, its HTTP status and attempts."""

    def __init__(self, message: str, *, http_status: int | None = None, attempts: int = 0):
        self.http_status = http_status
        self.attempts = attempts
        super().__init__(message)


class CredentialRefused(EngineError):
    """The credential that every location's token is minted with (an agency token) was
    refused: nothing more can be sent until it is renewed.

    Raised by a token provider (:mod:`engine.credentials`). The run stops sending, settles
    its report (records not sent are ``not_run``) and gives this message as the reason;
    a resume with a renewed credential finishes the job.
    """


class RequestError(EngineError):
    """A request could not be completed.

    ``attempts`` counts the tries made; ``ambiguous`` is true when one of them may have
    reached the server (a reset, a timeout or a 5xx), so its effect is unknown.
    """

    def __init__(self, message: str, *, request: Request):
        self.request = request
        self.attempts = 0
        self.ambiguous = False
        super().__init__(message)


class MissingToken(RequestError):
    """No token is configured for the request's location, so it was never sent."""


class TransportError(RequestError):
    """No answer: the connection was reset, dropped or timed out. The request may have
    reached the server, so its effect is unknown; retry."""


class AttemptTimeout(TransportError):
    """One attempt took longer than the per-attempt timeout."""


class ConnectFailed(TransportError):
    """No connection could be made (DNS lookup, refused, TLS handshake or certificate,
    connect timeout): the server never saw the request, so nothing is ambiguous about it.

    ``host`` is the host (and port, when the URL gives one); ``cause`` says why in a few
    words a person can act on, such as ``DNS lookup failed`` or ``connection refused``.
    """

    def __init__(self, message: str, *, request: Request, host: str, cause: str):
        self.host = host
        self.cause = cause
        super().__init__(message, request=request)


class HTTPStatusError(RequestError):
    """The server answered with an error status."""

    def __init__(self, message: str, *, request: Request, response: Response):
        self.response = response
        super().__init__(message, request=request)

    @property
    def status(self) -> int:
        """The HTTP status code."""
        return self.response.status
