"""Agency mode: one agency (Company) token provisions every sub-account.

An agency that runs hundreds of sub-accounts does not hold a token per sub-account; it holds
one OAuth token of its Marketplace app with user type *Company* (the agency token), and mints
location tokens from it on demand: ``POST /oauth/locationToken`` with ``Version:
2021-07-28``, the agency token as Bearer (scope ``oauth.write``) and a form-urlencoded body
``companyId``, ``locationId``, answered ``{"access_token", "expires_in" (about 86399 s),
"locationId", ...}`` (spec ``apps/oauth.json``). :class:`AgencyTokens` is the engine's token
provider (:mod:`engine.credentials`) for that:

- **Lazily, once per location.** A location's token is minted when its first request is
  about to be sent; concurrent requests of the location wait for that one mint and share its
  token. A token from ``--tokens`` (or ``GHL_TOKEN_<LOCATION_ID>``) wins: that location is
  not minted for, so both kinds of location mix in one run. (The shared ``GHL_TOKEN`` is
  not used in agency mode: it would stand in for every location.)
- **Paced under the Company budget.** Rate limits are per app per *resource*, a location or
  a company (``docs/oauth``): every minting and listing request spends the company's own
  100 / 10 s, apart from each location's. Those requests name ``company/<companyId>`` as
  their location, so the engine paces them with a limiter of their own (learning from the
  ``X-RateLimit-*`` headers like any other) and retries them the same way. That name cannot
  be a location id (job files refuse ``/``), so the agency token is only ever sent on the
  agency's own requests, never on a location's.
- **Renewed once when refused.** A location token refused with 401 (expired: they live a
  day) is minted again, and the request sent once more with the new one. Only a token that
  has lived at least half the life the service gave it is renewed: one refused sooner has
  not expired, it lacks a scope (say), and a new one would be refused too. So a location
  costs at most one extra mint per expiry, never a mint per request.
- **A location it cannot mint for fails alone.** 400/403/422 and the like (not in the
  company, app not installed there) raise :class:`~engine.LocationError`: that location's
  records fail with the server's reason, the others go on. An answer that names another
  location is refused as well: a token is only ever sent for the location it was minted for.
- **A refused agency token stops the run.** A 401 on minting means the agency token itself
  is refused (expired, revoked, or without ``oauth.write``): :class:`~engine.CredentialRefused`
  stops sending at once, the report is settled (what was not sent is ``not_run``) and the
  message says to renew the token and resume. It is never tried again: every later request
  for a token raises the same error without sending anything.
- **In memory only.** Minted tokens are held by this object and nowhere else: not in the
  report, the journal, logs or exceptions (requests render their headers redacted).

:class:`AgencyCredential` holds the agency token and company id (and the app id, which
``"locations": "installed"`` needs); :func:`load_agency` reads them the CLI's way: the token
from ``--agency-token-file`` or the environment (``GHL_AGENCY_TOKEN``), never from the command
line, where ``ps`` and shell history would show it.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlencode

import anyio
import structlog

from engine import (
    RETRYABLE_STATUSES,
    Caller,
    ConfigError,
    CredentialRefused,
    HTTPStatusError,
    LocationError,
    Request,
    RequestError,
    TokenLookup,
)

from .highlevel import API_VERSION, error_text, json_body

__all__ = ["AgencyCredential", "AgencyTokens", "load_agency"]

log = structlog.get_logger("jobs")

#: environment variables of agency mode
TOKEN_ENV, COMPANY_ENV, APP_ENV = "GHL_AGENCY_TOKEN", "GHL_COMPANY_ID", "GHL_APP_ID"
_RENEW_HINT = (
    f"renew it ({TOKEN_ENV} or --agency-token-file) and run the same command again with "
    "--resume to finish"
)


@dataclass(frozen=True, slots=True, kw_only=True)
class AgencyCredential:
    """An agency (Company) token of the app, the company it is for, and the app's id."""

    token: str = field(repr=False)
    company_id: str
    #: the Marketplace app's id (only ``"locations": "installed"`` needs it)
    app_id: str | None = None

    def __post_init__(self) -> None:
        if not self.token.strip():
            raise ConfigError("the agency token is empty")
        if not self.company_id.strip() or "/" in self.company_id:
            raise ConfigError(f"company id {self.company_id!r}: expected an id such as 5DP4iH6HLk")

    @property
    def resource(self) -> str:
        """The name the agency's own requests go by: their rate budget and their token."""
        return f"company/{self.company_id}"


def _read_token_file(path: str) -> str:
    try:
        with open(path, encoding="utf-8-sig") as fh:
            text = fh.read()
        mode = os.stat(path).st_mode
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(f"agency token file {path}: {reason or exc}") from None
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        log.warning("agency token file is readable by other users; chmod 600 it", path=path)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) != 1 or any(c.isspace() for c in lines[0]):
        # Never echo the content: it is, or holds, a secret.
        what = "is empty" if not lines else "must hold the token alone, on one line"
        raise ConfigError(f"agency token file {path} {what}")
    return lines[0]


def load_agency(
    token_file: str | None = None,
    *,
    company_id: str | None = None,
    app_id: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> AgencyCredential | None:
    """The agency credential from ``token_file``, else ``GHL_AGENCY_TOKEN``, with
    ``company_id`` (else ``GHL_COMPANY_ID``) and ``app_id`` (else ``GHL_APP_ID``); None
    when no agency token is given. ``ConfigError`` for a token without a company id."""
    env = os.environ if environ is None else environ
    token = _read_token_file(token_file) if token_file else env.get(TOKEN_ENV, "").strip()
    if not token:
        return None
    company = company_id or env.get(COMPANY_ENV, "").strip()
    if not company:
        raise ConfigError(
            f"an agency token needs the id of its company: --company-id ID (or {COMPANY_ENV})"
        )
    return AgencyCredential(
        token=token, company_id=company, app_id=app_id or env.get(APP_ENV, "").strip() or None
    )


def mint_request(base_url: str, credential: AgencyCredential, location_id: str) -> Request:
    """``POST /oauth/locationToken`` for one location (form-urlencoded, as the spec says)."""
    form = {"companyId": credential.company_id, "locationId": location_id}
    return Request(
        method="POST",
        url=f"{base_url}/oauth/locationToken",
        location_id=credential.resource,
        headers={
            "Version": API_VERSION,
            "Accept": "application/json",
            "Content-Type": "application/x-www-form-urlencoded",
        },
        content=urlencode(form).encode(),
    )


@dataclass(slots=True)
class _Minted:
    """One location's token, while the run holds it."""

    lock: anyio.Lock = field(default_factory=anyio.Lock)
    token: str | None = None
    minted_at: float = 0.0
    lifetime: float | None = None  # seconds the service said it lives
    renewals: int = 0
    failure: LocationError | None = None


class AgencyTokens:
    """The engine's token provider in agency mode (see the module docstring)."""

    def __init__(
        self,
        credential: AgencyCredential,
        *,
        base_url: str,
        given: TokenLookup | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._credential = credential
        self._base_url = base_url.rstrip("/")
        self._given = given
        self._clock = clock
        self._minted: dict[str, _Minted] = {}
        self._refused: CredentialRefused | None = None

    @property
    def credential(self) -> AgencyCredential:
        """The agency credential."""
        return self._credential

    async def token(
        self, location_id: str, call: Caller, *, refused: str | None = None
    ) -> str | None:
        if location_id == self._credential.resource:
            return None if refused is not None else self._credential.token
        if self._given is not None and (given := self._given(location_id)):
            return None if refused is not None else given  # the user's own: not renewed
        minted = self._minted.get(location_id)
        if minted is None:
            minted = self._minted[location_id] = _Minted()
        elif minted.token is not None and refused is None:
            return minted.token
        async with minted.lock:
            if minted.failure is not None:
                raise minted.failure
            if minted.token is not None:
                if refused != minted.token:
                    return minted.token  # minted (or renewed) while this request waited
                if not self._renewable(minted):
                    return None
                minted.renewals += 1
                log.info("token refused; minting a new one", location=location_id)
            await self._mint(location_id, minted, call)
            return minted.token

    def _renewable(self, minted: _Minted) -> bool:
        if minted.lifetime is None:
            return minted.renewals == 0
        return self._clock() - minted.minted_at >= minted.lifetime / 2

    async def _mint(self, location_id: str, minted: _Minted, call: Caller) -> None:
        if self._refused is not None:
            raise self._refused
        what = f"minting a token for location {location_id} with the agency token"
        try:
            answer = await call(mint_request(self._base_url, self._credential, location_id))
        except RequestError as exc:
            minted.failure = _location_error(what, exc)
            raise minted.failure from None
        response = answer.response
        if response.status == 401:
            self._refused = CredentialRefused(
                f"the agency token was refused ({error_text(response)}) when minting a token "
                f"for location {location_id}: it has expired or was revoked (or lacks the "
                f"oauth.write scope); {_RENEW_HINT}"
            )
            raise self._refused
        body = json_body(response)
        token = body.get("access_token") if isinstance(body, dict) else None
        named = body.get("locationId", location_id) if isinstance(body, dict) else location_id
        if response.status != 200 or not isinstance(token, str) or not token:
            reason = error_text(response) if response.status != 200 else "no access_token"
            minted.failure = LocationError(
                f"{what}: {reason}", http_status=response.status, attempts=answer.attempts
            )
            raise minted.failure
        if named != location_id:
            minted.failure = LocationError(
                f"{what}: the answer is a token for another location ({named}); not used",
                http_status=response.status,
                attempts=answer.attempts,
            )
            raise minted.failure
        lifetime = body.get("expires_in")
        minted.token = token
        minted.minted_at = self._clock()
        ok = isinstance(lifetime, int | float) and not isinstance(lifetime, bool)
        minted.lifetime = float(lifetime) if ok else None


def _location_error(what: str, exc: RequestError) -> LocationError:
    if isinstance(exc, HTTPStatusError):
        text = error_text(exc.response)
        if exc.status in RETRYABLE_STATUSES:
            text = f"gave up after {exc.attempts} attempts, last {text}"
        return LocationError(f"{what}: {text}", http_status=exc.status, attempts=exc.attempts)
    return LocationError(f"{what}: {exc}", attempts=exc.attempts)
