"""Which sub-accounts an onboarding template means, when it does not list them one by one.

In agency mode a template may name its locations by a rule instead of a list::

    {"locations": "all", "associations": [...]}          every sub-account of the company
    {"locations": "installed", ...}                      those where the app is installed
    {"locations": {"from": "all", "name": "*Dental*", "exclude": ["ve9EPM428h8vShlRW1KT"]},
     ...}

``name`` is a case-insensitive glob matched against each sub-account's name; ``exclude``
lists ids (or exact names) to leave out. The rule is resolved before the run starts, with
the agency token: ``GET /locations/search?companyId=`` (scope ``locations.readonly``) or
``GET /oauth/installedLocations?companyId=&appId=&isInstalled=true`` (scope
``oauth.readonly``), page by page until a page comes back empty (the service may answer
fewer items than asked while more remain). These requests spend the company's rate budget,
paced and retried like every other.

The job file itself is read by the engine (which streams it into the run's store through
the kind's ``expand``); a :class:`Directory` holds what each rule resolved to, so that
``expand`` can fan the template out to those sub-accounts, each with its name for the report.
A resumed run lists again: a sub-account added since is tried, one removed since keeps its
settled rows at the end of the report.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import orjson
import structlog

from engine import (
    Client,
    ConfigError,
    Exchange,
    JobFileError,
    LocationGates,
    Request,
    RequestError,
    RetryPolicy,
    RunStopped,
)

from .agency import AgencyCredential
from .highlevel import API_VERSION, error_text, json_body, read_rate

if TYPE_CHECKING:  # annotations only: aiohttp loads with the runner, not with every job kind
    from engine import Transport

__all__ = ["Directory", "LocationSelector", "SubAccount", "find_selectors", "parse_selector"]

log = structlog.get_logger("jobs")

Source = Literal["all", "installed"]
_SOURCES: tuple[Source, ...] = ("all", "installed")
_KEYS = frozenset({"from", "name", "exclude"})
#: items asked per page; the service may answer fewer
PAGE_SIZE = 100
_SHAPE = (
    '\'locations\' must be a list of location ids, "all", "installed", or a filter such as '
    '{"from": "all", "name": "*Dental*", "exclude": ["locId"]}'
)
_KINDS = {bool: "true or false", type(None): "null", int: "a number", float: "a number"}


@dataclass(frozen=True, slots=True, kw_only=True)
class SubAccount:
    """A sub-account (location) as the agency sees it."""

    id: str
    name: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class LocationSelector:
    """A template's rule for its locations (see the module docstring)."""

    source: Source
    name: str | None = None
    exclude: frozenset[str] = frozenset()

    def __str__(self) -> str:
        parts = [f'"{self.source}"']
        if self.name is not None:
            parts.append(f"named {self.name!r}")
        if self.exclude:
            parts.append(f"{len(self.exclude)} excluded")
        return ", ".join(parts)

    def pick(self, accounts: Iterable[SubAccount]) -> list[SubAccount]:
        """The sub-accounts the rule keeps, in the order listed."""
        pattern = None if self.name is None else self.name.casefold()
        kept = []
        for account in accounts:
            if account.id in self.exclude or (account.name and account.name in self.exclude):
                continue
            if pattern is not None and not fnmatch.fnmatchcase(account.name.casefold(), pattern):
                continue
            kept.append(account)
        return kept


def parse_selector(value: Any, path: str) -> LocationSelector | None:
    """The rule a template's ``locations`` value states, or None when it is a list.
    ``JobFileError`` for anything else."""
    if isinstance(value, list):
        return None
    if isinstance(value, str):
        if value in _SOURCES:
            return LocationSelector(source=value)
        raise JobFileError(path, f"{_SHAPE}; not the text {value!r}", field="locations")
    if not isinstance(value, dict):
        kind = _KINDS.get(type(value), type(value).__name__)
        raise JobFileError(path, f"{_SHAPE}; not {kind}", field="locations")
    unknown = sorted(set(value) - _KEYS)
    if unknown:
        raise JobFileError(
            path, f"{_SHAPE}; not an object with the keys {unknown}", field="locations"
        )
    source = value.get("from", "all")
    if source not in _SOURCES:
        raise JobFileError(
            path, f'"from" must be "all" or "installed", not {source!r}', field="locations"
        )
    name = value.get("name")
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise JobFileError(path, '"name" must be a pattern such as "*Dental*"', field="locations")
    exclude = value.get("exclude", [])
    if not isinstance(exclude, list) or not all(isinstance(x, str) and x for x in exclude):
        raise JobFileError(
            path, '"exclude" must be a list of location ids or names', field="locations"
        )
    return LocationSelector(source=source, name=name, exclude=frozenset(exclude))


def find_selectors(paths: Sequence[str]) -> list[tuple[str, LocationSelector]]:
    """(path, rule) for every JSON template among ``paths`` whose ``locations`` is a rule.

    A file that cannot be read or parsed here is skipped: reading it for the run reports
    that properly, naming the file and line."""
    found = []
    for path in paths:
        if os.path.splitext(path)[1].lower() in (".csv", ".jsonl", ".ndjson"):
            continue
        try:
            with open(path, "rb") as fh:
                start = fh.read(64).lstrip(b"\xef\xbb\xbf \t\r\n")
                if not start.startswith(b"{"):
                    continue
                fh.seek(0)
                document = orjson.loads(fh.read().removeprefix(b"\xef\xbb\xbf"))
        except (OSError, orjson.JSONDecodeError):
            continue
        if isinstance(document, dict) and "locations" in document:
            selector = parse_selector(document["locations"], path)
            if selector is not None:
                found.append((path, selector))
    return found


class Directory:
    """What each template rule resolved to, for the kind's ``expand``.

    ``offline`` (checking job files without a network): every rule stands for one
    placeholder location, ``<all>`` or ``<installed>``, so that the template's definitions
    are checked as they would be for each sub-account."""

    def __init__(self, *, offline: bool = False) -> None:
        self._found: dict[LocationSelector, list[SubAccount]] = {}
        self._offline = offline

    def get(self, selector: LocationSelector) -> list[SubAccount] | None:
        """The sub-accounts ``selector`` keeps, or None when it was not resolved."""
        if self._offline:
            return [SubAccount(id=f"<{selector.source}>", name=str(selector))]
        return self._found.get(selector)

    def names(self) -> dict[str, str]:
        """Every listed sub-account's name by id."""
        return {a.id: a.name for found in self._found.values() for a in found if a.name}

    async def resolve(
        self,
        selectors: Iterable[LocationSelector],
        *,
        credential: AgencyCredential,
        base_url: str,
        transport: Transport,
        gates: LocationGates,
        retry: RetryPolicy,
    ) -> None:
        """List the company's sub-accounts (once per source) and apply each rule, pacing
        with ``gates`` (the run's own, so that it knows what the listing spent).

        ``ConfigError`` when the listing fails (the agency token refused, a scope missing,
        another company's id): nothing of the job has been sent then."""

        client = Client(
            transport=transport,
            tokens=lambda location_id: (
                credential.token if location_id == credential.resource else None
            ),
            gates=gates,
            read_rate=read_rate,
            policy=retry,
        )
        listed: dict[Source, list[SubAccount]] = {}
        for selector in selectors:
            if selector.source not in listed:
                listed[selector.source] = await _list(client, credential, base_url, selector.source)
            picked = selector.pick(listed[selector.source])
            seen = {a.id for a in listed[selector.source]}
            seen |= {a.name for a in listed[selector.source]}
            missing = sorted(selector.exclude - seen)
            if missing:
                log.warning(
                    "exclude names no listed sub-account", exclude=missing, rule=str(selector)
                )
            self._found[selector] = picked
            log.info(
                "sub-accounts listed",
                rule=str(selector),
                listed=len(listed[selector.source]),
                kept=len(picked),
            )


def _request(base_url: str, credential: AgencyCredential, source: Source, skip: int) -> Request:
    params = {"companyId": credential.company_id, "skip": str(skip), "limit": str(PAGE_SIZE)}
    if source == "all":
        path = "/locations/search"
    else:
        path = "/oauth/installedLocations"
        params |= {"appId": credential.app_id or "", "isInstalled": "true"}
    return Request(
        method="GET",
        url=f"{base_url}{path}",
        location_id=credential.resource,
        params=params,
        headers={"Version": API_VERSION, "Accept": "application/json"},
    )


async def _list(
    client: Client, credential: AgencyCredential, base_url: str, source: Source
) -> list[SubAccount]:
    """Every page, until an empty one (or one with nothing new: a server ignoring skip)."""
    if source == "installed" and not credential.app_id:
        raise ConfigError(
            '"locations": "installed" needs the app\'s id: --app-id ID (or GHL_APP_ID)'
        )
    what = (
        f"listing the sub-accounts of company {credential.company_id}"
        if source == "all"
        else f"listing where app {credential.app_id} is installed in company "
        f"{credential.company_id}"
    )
    found: dict[str, SubAccount] = {}
    skip = 0
    while True:
        request = _request(base_url, credential, source, skip)
        try:
            answer: Exchange = await client.call(request)
        except (RequestError, RunStopped) as exc:  # RunStopped: the host cannot be reached
            raise ConfigError(f"{what}: {exc}; nothing was sent") from None
        response = answer.response
        if response.status != 200:
            hint = ""
            if response.status == 401:
                scope = "locations.readonly" if source == "all" else "oauth.readonly"
                hint = f" (has the agency token expired? does it have the {scope} scope?)"
            raise ConfigError(f"{what}: {error_text(response)}{hint}; nothing was sent")
        body = json_body(response)
        items = body.get("locations") if isinstance(body, dict) else None
        items = items if isinstance(items, list) else []
        skip += len(items)
        fresh = 0
        for item in items:
            if not isinstance(item, dict):
                continue
            location_id = item.get("id") or item.get("_id")
            if source == "installed" and item.get("isInstalled") is False:
                continue
            if isinstance(location_id, str) and location_id and location_id not in found:
                name = item.get("name")
                found[location_id] = SubAccount(
                    id=location_id, name=name if isinstance(name, str) else ""
                )
                fresh += 1
        if not fresh:
            return list(found.values())
