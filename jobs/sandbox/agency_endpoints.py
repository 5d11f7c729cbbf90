"""The agency routes: mint a location token, search the company's sub-accounts, and list
where the app is installed (spec ``apps/oauth.json`` and ``apps/locations.json``).

The pipeline has already checked the token's class and scope (:mod:`.agency`) and spent
the company's rate budget; each handler validates its input NestJS-style (422 with a list of
messages) and answers from :class:`~.agency.Agencies`.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from .agency import Agencies, Company, Principal
from .config import SandboxConfig
from .pipeline import Context, Endpoint
from .responses import ApiError, json_response
from .store import Location
from .validation import query_error

__all__ = ["AgencyEndpoints"]

_MINT_FIELDS = ("companyId", "locationId")
_SEARCH_PARAMS = ("companyId", "skip", "limit", "order", "email")
_INSTALLED_PARAMS = (
    "companyId",
    "appId",
    "skip",
    "limit",
    "query",
    "isInstalled",
    "versionId",
    "onTrial",
    "planId",
    "locationId",
)


class AgencyEndpoints:
    """Mint a token, search sub-accounts, list where the app is installed."""

    def __init__(self, config: SandboxConfig, agencies: Agencies) -> None:
        self._config = config
        self._agencies = agencies

    def routes(self) -> list[tuple[str, str, Endpoint]]:
        """(method, path, handler) for every agency route."""
        return [
            ("POST", "/oauth/locationToken", self._location_token),
            ("GET", "/locations/search", self._search),
            ("GET", "/oauth/installedLocations", self._installed),
        ]

    # -- helpers ---------------------------------------------------------------------------

    @staticmethod
    def _principal(ctx: Context) -> Principal:
        assert ctx.principal is not None  # the pipeline authenticated the request
        return ctx.principal

    @staticmethod
    def _query(
        request: web.Request, allowed: tuple[str, ...], required: tuple[str, ...] = ()
    ) -> dict[str, str]:
        """The query, validated: unknown or repeated parameters, numbers, booleans (422)."""
        query = request.query
        errors = [f"property {name} should not exist" for name in query if name not in allowed]
        values: dict[str, str] = {}
        for name in allowed:
            given = query.getall(name, [])
            if not given:
                if name in required:
                    errors.append(f"{name} must be a string")
                continue
            if name in ("skip", "limit"):
                error = query_error(name, given)
            elif len(given) != 1:
                error = f"{name} must be a string"
            elif name in ("isInstalled", "onTrial") and given[0] not in ("true", "false"):
                error = f"{name} must be a boolean value"
            elif name == "order" and given[0] not in ("asc", "desc"):
                error = "order must be one of the following values: asc, desc"
            elif name in required and not given[0].strip():
                error = f"{name} should not be empty"
            else:
                error = None
            if error:
                errors.append(error)
            else:
                values[name] = given[0]
        if errors:
            raise ApiError(422, list(dict.fromkeys(errors)))
        return values

    def _page(self, items: list[Any], query: dict[str, str], default_limit: int) -> list[Any]:
        skip = int(query.get("skip", "0"))
        limit = int(query.get("limit", str(default_limit)))
        cap = self._config.page_cap
        return items[skip : skip + (min(limit, cap) if cap > 0 else limit)]

    # -- endpoints -------------------------------------------------------------------------

    async def _location_token(self, request: web.Request, ctx: Context) -> web.Response:
        """Body form-urlencoded (spec); a JSON body has no form fields, so it fails with 422."""
        form = await request.post()
        errors = [f"property {name} should not exist" for name in form if name not in _MINT_FIELDS]
        values: dict[str, str] = {}
        for name in _MINT_FIELDS:
            value = form.get(name)
            if not isinstance(value, str):
                errors.append(f"{name} must be a string")
            elif not value.strip():
                errors.append(f"{name} should not be empty")
            else:
                values[name] = value
        if errors:
            raise ApiError(422, errors)
        company = self._agencies.company_of(self._principal(ctx), values["companyId"])
        ctx.location_id = values["locationId"]
        answer = self._agencies.mint(company, values["locationId"])
        ctx.applied = True
        return json_response(answer)

    async def _search(self, request: web.Request, ctx: Context) -> web.Response:
        """The company's sub-accounts; a location token sees only its own location."""
        query = self._query(request, _SEARCH_PARAMS)
        principal = self._principal(ctx)
        if principal.kind == "agency":
            company = self._agencies.company_of(principal, query.get("companyId"))
            found = self._agencies.locations_of(company)
        else:
            assert principal.location_id is not None
            own = self._agencies.location(principal.location_id)
            wanted = query.get("companyId")
            found = [own] if wanted in (None, own.company_id) else []
        if query.get("email"):
            found = [loc for loc in found if _email(loc.name) == query["email"].lower()]
        if query.get("order") == "desc":
            found = found[::-1]
        page = self._page(found, query, 10)
        return json_response({"locations": [_location_json(loc) for loc in page]})

    async def _installed(self, request: web.Request, ctx: Context) -> web.Response:
        """Where the app is: ``isInstalled=true`` keeps only those, ``query`` matches names."""
        query = self._query(request, _INSTALLED_PARAMS, required=("companyId", "appId"))
        company: Company = self._agencies.company_of(self._principal(ctx), query["companyId"])
        if query["appId"] != self._config.app_id:
            raise ApiError(400, "App not found")
        rows = [(loc, loc.id in company.installed) for loc in self._agencies.locations_of(company)]
        if query.get("isInstalled") == "true":
            rows = [(loc, on) for loc, on in rows if on]
        if query.get("query"):
            needle = query["query"].casefold()
            rows = [(loc, on) for loc, on in rows if needle in loc.name.casefold()]
        if query.get("locationId"):
            rows = [(loc, on) for loc, on in rows if loc.id == query["locationId"]]
        page = self._page(rows, query, 20)
        return json_response(
            {
                "locations": [
                    {"_id": loc.id, "name": loc.name, "address": _address(loc.name),
                     "isInstalled": on}
                    for loc, on in page
                ],
                "count": len(rows),
                "installToFutureLocations": False,
            }
        )  # fmt: skip


def _email(name: str) -> str:
    return "".join(c for c in name.lower() if c.isalnum()) + "@example.com"


def _address(name: str) -> str:
    return f"1 Main St, {name.split(' ')[0]}"


def _location_json(location: Location) -> dict[str, Any]:
    return {
        "id": location.id,
        "name": location.name,
        "companyId": location.company_id,
        "email": _email(location.name),
        "address": _address(location.name),
        "timezone": "US/Central",
    }
