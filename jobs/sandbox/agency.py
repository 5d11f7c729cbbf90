"""Agencies: companies, their sub-accounts, the app's installations and the tokens it mints.

An agency (a *company*) owns sub-accounts (locations). The Marketplace app holds one company
token per company (the *agency token*, scopes ``oauth.write``, ``oauth.readonly`` and
``locations.readonly`` by default; the first one lives ``agency_token_lifetime`` seconds,
a renewed one a day, as OAuth access tokens do) and is installed in some of the company's locations,
with the app's location scopes there. ``POST /oauth/locationToken`` with the agency token
mints a location token for one installed location: it carries the installation's scopes
and expires after ``token_lifetime`` seconds of the sandbox's clock. Every mint makes a new
token; earlier ones stay valid until they expire.

Which token a request carries decides what it may do (:func:`check_access`): the agency
token works on the agency routes only (``/oauth/...``, ``/locations/search``); location
tokens (private integration tokens, and minted ones) on the location routes, and minted
ones only within their scopes. Each token spends its own resource's rate budget: a
location's, or the company's (``company:<id>``).
"""

from __future__ import annotations

import random
import secrets
import string
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .config import SandboxConfig, SandboxStats
from .responses import ApiError
from .store import Location, Store

__all__ = [
    "AGENCY_SCOPES",
    "Agencies",
    "Audience",
    "Company",
    "Principal",
    "audience_of",
    "check_access",
    "required_scope",
]

#: what a company token may do unless told otherwise
AGENCY_SCOPES = ("oauth.write", "oauth.readonly", "locations.readonly")

_AGENCY_PREFIX = "agy-"  # company (agency) tokens
_MINTED_PREFIX = "lat-"  # location access tokens minted with an agency token
_ID_CHARS = string.ascii_letters + string.digits
_CITIES: tuple[str, ...] = ("Austin", "Boston", "Denver", "Miami", "Oakland")
_CITIES += ("Omaha", "Phoenix", "Portland", "Raleigh", "Tampa")
_TRADES = ("Dental", "Plumbing", "Realty", "Fitness", "Salon")

_DAY = 86_399.0  # seconds an OAuth access token lives (expires_in, spec)
_NOT_SUPPORTED = "This AuthClass is not yet supported"  # field: agency token, location route
_NO_SCOPE = "The token is not authorized for this scope."

Audience = Literal["location", "agency", "any"]


@dataclass(slots=True, kw_only=True)
class Company:
    """A company (agency): its token, that token's scopes, its sub-accounts in creation
    order, and the app's installations among them (location id -> scopes there)."""

    id: str
    token: str | None  # None while expired
    token_expires_at: float
    scopes: frozenset[str]
    user_id: str
    locations: list[str] = field(default_factory=list)
    installed: dict[str, frozenset[str]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class Principal:
    """Who a request's token speaks for."""

    kind: Literal["pit", "minted", "agency"]
    location_id: str | None = None
    company_id: str | None = None
    #: what it may do; None for a private integration token (every location scope)
    scopes: frozenset[str] | None = None

    @property
    def budget(self) -> str:
        """The rate-limit resource its requests spend: its location, or its company."""
        return self.location_id if self.location_id is not None else f"company:{self.company_id}"


@dataclass(frozen=True, slots=True)
class _Minted:
    location_id: str
    company_id: str
    expires_at: float
    scopes: frozenset[str]


def required_scope(method: str, path: str) -> str:
    """The scope a route needs (spec ``security`` of each route; the guide's routes are
    taken to need the official ones)."""
    write = method != "GET"
    if path.startswith("/associations/relations"):
        return "associations/relation.write" if write else "associations/relation.readonly"
    if path.startswith(("/associations", "/objects-association")):
        return "associations.write" if write else "associations.readonly"
    if path.startswith("/objects"):
        return "objects/schema.readonly"
    if path.startswith("/oauth/locationToken"):
        return "oauth.write"
    if path.startswith("/oauth/"):
        return "oauth.readonly"
    return "locations.readonly"


def audience_of(path: str) -> Audience:
    """Which tokens a route takes: agency-only (``/oauth/``), either (search), or location."""
    if path.startswith("/oauth/"):
        return "agency"
    if path.startswith("/locations/"):
        return "any"
    return "location"


def check_access(principal: Principal, audience: Audience, scope: str) -> None:
    """401 when the token is of the wrong class for the route, or lacks its scope."""
    agency = principal.kind == "agency"
    if (audience == "agency" and not agency) or (audience == "location" and agency):
        raise ApiError(401, _NOT_SUPPORTED)
    if principal.scopes is not None and scope not in principal.scopes:
        raise ApiError(401, _NO_SCOPE)


class Agencies:
    """Every company, its token, installations, and the location tokens minted for it."""

    def __init__(self, config: SandboxConfig, store: Store, stats: SandboxStats) -> None:
        self._config = config
        self._store = store
        self._stats = stats
        self.companies: dict[str, Company] = {}
        self._company_tokens: dict[str, str] = {}  # live agency token -> company id
        self._minted: dict[str, _Minted] = {}  # minted token -> what it is for

    # -- set-up (admin and tests) -------------------------------------------------------

    def add_company(
        self,
        company_id: str,
        locations: Sequence[str] = (),
        *,
        count: int = 0,
        names: Mapping[str, str] | None = None,
        not_installed: Iterable[str] = (),
        scopes: Iterable[str] = AGENCY_SCOPES,
    ) -> Company:
        """Make (or extend) a company with ``locations`` and ``count`` generated sub-accounts
        (ids and names derived from the company id, so they repeat from run to run). The app
        is installed in each, except ``not_installed``. ValueError for a location that
        belongs to another company."""
        company = self.companies.get(company_id)
        if company is None:
            token = _AGENCY_PREFIX + secrets.token_urlsafe(24)
            company = Company(
                id=company_id,
                token=token,
                token_expires_at=self._config.clock() + self._config.agency_token_lifetime,
                scopes=frozenset(scopes),
                user_id=_generated_id(random.Random(f"user:{company_id}")),
            )
            self.companies[company_id] = company
            self._company_tokens[token] = company_id
        wanted = list(locations) + self._generate(company, count)
        names = names or {}
        for location_id in wanted:
            location = self._store.location(location_id)
            if location.company_id not in (None, company_id):
                raise ValueError(f"location {location_id} belongs to company {location.company_id}")
            if location.company_id is None:
                location.company_id = company_id
                company.locations.append(location_id)
                company.installed[location_id] = frozenset(self._config.app_scopes)
            location.name = names.get(location_id) or location.name or f"Sub-account {location_id}"
        for location_id in not_installed:
            company.installed.pop(location_id, None)
        return company

    def _generate(self, company: Company, count: int) -> list[str]:
        rng = random.Random(f"locations:{company.id}:{len(company.locations)}")
        made: list[str] = []
        start = len(company.locations)
        for n in range(start, start + count):
            location_id = _generated_id(rng)
            while location_id in self._store.locations:
                location_id = _generated_id(rng)
            made.append(location_id)
            location = self._store.location(location_id)
            city, trade = _CITIES[n // len(_TRADES) % len(_CITIES)], _TRADES[n % len(_TRADES)]
            round_ = n // (len(_CITIES) * len(_TRADES))
            location.name = f"{city} {trade}" + (f" {round_ + 1}" if round_ else "")
        return made

    def install(
        self, location_id: str, *, installed: bool = True, scopes: Iterable[str] | None = None
    ) -> None:
        """Install the app in a company's location (with ``scopes``, default the app's), or
        uninstall it. KeyError for a location of no company."""
        location = self._store.locations.get(location_id)
        if location is None or location.company_id is None:
            raise KeyError(f"location {location_id} belongs to no company")
        company = self.companies[location.company_id]
        if installed:
            company.installed[location_id] = frozenset(
                self._config.app_scopes if scopes is None else scopes
            )
        else:
            company.installed.pop(location_id, None)

    def expire(self, company_id: str) -> None:
        """The company's agency token stops working (as at the end of its life)."""
        company = self.companies[company_id]
        if company.token is not None:
            self._company_tokens.pop(company.token, None)
            company.token = None

    def renew(self, company_id: str, lifetime: float = _DAY) -> str:
        """A new agency token for the company, living ``lifetime`` seconds (a day); the old
        one stops working."""
        self.expire(company_id)
        company = self.companies[company_id]
        company.token = _AGENCY_PREFIX + secrets.token_urlsafe(24)
        company.token_expires_at = self._config.clock() + lifetime
        self._company_tokens[company.token] = company_id
        return company.token

    def minted_tokens(self) -> list[str]:
        """Every location token minted so far (for tests that look for leaks)."""
        return list(self._minted)

    # -- requests ---------------------------------------------------------------------

    def principal(self, token: str) -> Principal | None:
        """Who ``token`` speaks for; None when it is unknown or expired."""
        location_id = self._store.tokens.get(token)
        if location_id is not None:
            return Principal(kind="pit", location_id=location_id)
        company_id = self._company_tokens.get(token)
        if company_id is not None:
            company = self.companies[company_id]
            if self._config.clock() >= company.token_expires_at:
                self.expire(company_id)
                return None
            return Principal(kind="agency", company_id=company_id, scopes=company.scopes)
        minted = self._minted.get(token)
        if minted is None:
            return None
        if self._config.clock() >= minted.expires_at:
            del self._minted[token]
            return None
        return Principal(kind="minted", location_id=minted.location_id, scopes=minted.scopes)

    def company_of(self, principal: Principal, company_id: str | None) -> Company:
        """The company an agency request names (default: the token's); 403 for another."""
        own = principal.company_id
        if company_id is not None and company_id != own:
            raise ApiError(403, "The token does not have access to this company.")
        assert own is not None
        return self.companies[own]

    def mint(self, company: Company, location_id: str) -> dict[str, Any]:
        """A new location token for ``location_id``, as ``POST /oauth/locationToken`` answers."""
        location = self._store.locations.get(location_id)
        if location is None or location.company_id != company.id:
            raise ApiError(403, "The token does not have access to this location.")
        scopes = company.installed.get(location_id)
        if scopes is None:
            raise ApiError(400, "The app is not installed in this location.")
        now = self._config.clock()
        if len(self._minted) > 1000 and len(self._minted) > 4 * len(self._store.locations):
            self._minted = {t: m for t, m in self._minted.items() if m.expires_at > now}
        token = _MINTED_PREFIX + secrets.token_urlsafe(24)
        lifetime = self._config.token_lifetime
        self._minted[token] = _Minted(location_id, company.id, now + lifetime, scopes)
        counts = self._stats.tokens_minted
        counts[location_id] = counts.get(location_id, 0) + 1
        return {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": round(lifetime),
            "scope": " ".join(sorted(scopes)),
            "locationId": location_id,
            "userId": company.user_id,
            "appId": self._config.app_id,
        }

    def location(self, location_id: str) -> Location:
        """A location the sandbox knows."""
        return self._store.locations[location_id]

    def locations_of(self, company: Company) -> list[Location]:
        """The company's sub-accounts, oldest first."""
        return [self._store.locations[i] for i in company.locations]


def _generated_id(rng: random.Random) -> str:
    """An id shaped like HighLevel's: 20 letters and digits."""
    return "".join(rng.choice(_ID_CHARS) for _ in range(20))
