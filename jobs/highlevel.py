"""What every HighLevel call shares: base URL rules, headers, rate headers, error text.

Facts and their sources are in the project's API notes (``shared/highlevel-api.md``).
"""

from __future__ import annotations

import ipaddress
from typing import Any
from urllib.parse import urlsplit

from engine import ConfigError, RateHint, Response, retry_after_seconds

__all__ = [
    "API_VERSION",
    "DEFAULT_BASE_URL",
    "check_base_url",
    "error_text",
    "json_body",
    "read_rate",
]

DEFAULT_BASE_URL = "https://services.leadconnectorhq.com"
#: the ``Version`` header every association route requires (401 without it)
API_VERSION = "2021-07-28"


def check_base_url(url: str) -> str:
    """The base URL without a trailing slash; refuses plain http except to loopback,
    because every request carries a bearer token."""
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ConfigError(f"--base-url {url!r}: expected http(s)://host[:port]")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise ConfigError(
            f"--base-url {url!r}: refusing to send tokens over plain http to a remote host; "
            "use https (plain http is allowed only for 127.0.0.1/localhost)"
        )
    return url.rstrip("/")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


_NO_HINT = RateHint()


def read_rate(response: Response) -> RateHint:
    """The budget the ``X-RateLimit-*`` headers (and ``Retry-After``) describe."""
    get = response.headers.get  # names are lower-case (Response's contract); once per answer
    remaining = get("x-ratelimit-remaining")
    if remaining is None and response.status != 429 and get("x-ratelimit-max") is None:
        return _NO_HINT if get("x-ratelimit-daily-remaining") is None else _daily(response)
    interval_ms = _int(get("x-ratelimit-interval-milliseconds"))
    return RateHint(
        limit=_int(get("x-ratelimit-max")),
        remaining=_int(remaining),
        interval=interval_ms / 1000 if interval_ms and interval_ms > 0 else None,
        daily_remaining=_int(get("x-ratelimit-daily-remaining")),
        retry_after=retry_after_seconds(response) if response.status == 429 else None,
    )


def _daily(response: Response) -> RateHint:
    return RateHint(daily_remaining=_int(response.headers.get("x-ratelimit-daily-remaining")))


def json_body(response: Response) -> Any:
    """The parsed body, or None when it is empty or not JSON (a proxy's HTML page)."""
    if not response.body:
        return None
    try:
        return response.json()
    except ValueError:
        return None


def error_text(response: Response) -> str:
    """``HTTP 400: message`` from a NestJS error body (message may be a list), an HTML
    page or nothing at all."""
    body = json_body(response)
    message = ""
    if isinstance(body, dict):
        raw = body.get("message") or body.get("error") or ""
        message = ", ".join(str(p) for p in raw) if isinstance(raw, list) else str(raw)
    elif response.body:
        kind = response.header("content-type") or ""
        message = "an HTML page (proxy error)" if "html" in kind else "a non-JSON body"
    else:
        message = "an empty body"
    return f"HTTP {response.status}: {message}" if message else f"HTTP {response.status}"
