"""The :class:`Sandbox`: the fake API as an aiohttp application, its lifecycle, test helpers.

It also serves the admin routes under ``/_sandbox/`` (no auth, no faults, no limits, not
counted), and keeps tokens out of aiohttp's error log.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict
from datetime import datetime
from typing import Any

from aiohttp import web

from .agency import AGENCY_SCOPES, Agencies
from .agency_endpoints import AgencyEndpoints
from .config import LoggedRequest, SandboxConfig, SandboxStats
from .endpoints import Endpoints
from .pipeline import Pipeline
from .relation_endpoints import RelationEndpoints
from .relation_store import RelationStore, generated_prefix
from .responses import ApiError, json_response
from .store import Location, Store
from .validation import admin_body, body_fields

__all__ = ["Sandbox"]

# aiohttp logs a malformed request with its raw bytes, headers included: redact credentials
_CREDENTIALS = re.compile(
    r"(?i)(authorization:\s*|bearer\s+)(?:bearer\s+)?[^\s'\"\\]+|(?:pit|agy|lat)-[\w-]+"
)


class _Redact(logging.Filter):
    """Keeps tokens out of the server's error log, tracebacks included."""

    def filter(self, record: logging.LogRecord) -> bool:
        def redact(text: str) -> str:
            return _CREDENTIALS.sub(lambda m: f"{m.group(1) or ''}[redacted]", text)

        record.msg, record.args = redact(record.getMessage()), ()
        if record.exc_info:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


_SERVER_LOG = logging.getLogger(__name__)  # "jobs.sandbox.server", as before the split
_SERVER_LOG.addFilter(_Redact())

_DEFAULT_CONFIG = SandboxConfig()  # immutable, so one instance serves every default


class Sandbox:
    """The fake API: an aiohttp application over an in-memory store, plus test helpers."""

    def __init__(self, config: SandboxConfig = _DEFAULT_CONFIG) -> None:
        self.config = config
        self.stats = SandboxStats()
        self.log: list[LoggedRequest] = []
        self._store = Store(config)
        self._agencies = Agencies(config, self._store, self.stats)
        self._pipeline = Pipeline(config, self._store, self.stats, self.log, self._agencies)
        self._endpoints = Endpoints(config, self._store, self.stats)
        self._agency_endpoints = AgencyEndpoints(config, self._agencies)
        self._relations = RelationStore(config, self._store, self.stats)
        self._store.on_delete.append(self._relations.drop_association)
        self._relation_endpoints = RelationEndpoints(
            config, self._store, self._relations, self._endpoints
        )
        self._runner: web.AppRunner | None = None
        self._url: str | None = None
        self.app = self._build_app()

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen on host:port (0 picks a free port) and return the base URL."""
        if self._runner is not None:
            raise RuntimeError("the sandbox is already started")
        runner = web.AppRunner(self.app, access_log=None, logger=_SERVER_LOG, shutdown_timeout=1.0)
        await runner.setup()
        # A client that follows the work opens hundreds of connections at once; aiohttp's
        # default backlog (128) would drop their SYNs, and each costs a 1 s retransmit.
        site = web.TCPSite(runner, host, port, backlog=1024)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        bound_port = runner.addresses[0][1]
        shown = "127.0.0.1" if host in ("", "0.0.0.0") else host
        shown = f"[{shown}]" if ":" in shown else shown
        self._url = f"http://{shown}:{bound_port}"
        return self._url

    async def aclose(self) -> None:
        """Stop listening; requests still running get one second to finish."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> Sandbox:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    @property
    def url(self) -> str:
        """Base URL, such as ``http://127.0.0.1:8765``; only after :meth:`start`."""
        if self._url is None:
            raise RuntimeError("the sandbox is not started")
        return self._url

    @property
    def _locations(self) -> dict[str, Location]:
        """The store's locations by id (the live dict: tests reach in for surgery)."""
        return self._store.locations

    # -- test helpers ------------------------------------------------------------------

    def issue_token(self, location_id: str) -> str:
        """The token of a location, creating the location on first use."""
        return self._store.location(location_id).token

    def add_company(
        self,
        company_id: str,
        locations: Sequence[str] = (),
        *,
        count: int = 0,
        names: Mapping[str, str] | None = None,
        not_installed: Iterable[str] = (),
        scopes: Iterable[str] = AGENCY_SCOPES,
    ) -> str:
        """Make a company (an agency) owning ``locations`` and ``count`` generated
        sub-accounts (named, with ids and names that repeat from run to run), the app
        installed in each but ``not_installed``; answer its agency token. Called again, it
        adds sub-accounts. ValueError for a location of another company."""
        company = self._agencies.add_company(
            company_id,
            locations,
            count=count,
            names=names,
            not_installed=not_installed,
            scopes=scopes,
        )
        assert company.token is not None
        return company.token

    def company_locations(self, company_id: str) -> list[dict[str, str]]:
        """The company's sub-accounts, oldest first: ``{"id", "name"}``."""
        company = self._agencies.companies[company_id]
        return [{"id": loc.id, "name": loc.name} for loc in self._agencies.locations_of(company)]

    def install(
        self, location_id: str, *, installed: bool = True, scopes: Iterable[str] | None = None
    ) -> None:
        """Install the app in a company's location, with ``scopes`` (default: the app's
        ``app_scopes``), or uninstall it."""
        self._agencies.install(location_id, installed=installed, scopes=scopes)

    def expire_agency_token(self, company_id: str) -> None:
        """The company's agency token stops working, as at the end of its life (401)."""
        self._agencies.expire(company_id)

    def renew_agency_token(self, company_id: str, lifetime: float = 86_399.0) -> str:
        """A new agency token for the company, living ``lifetime`` seconds (the old one stops
        working)."""
        return self._agencies.renew(company_id, lifetime)

    def minted_tokens(self) -> list[str]:
        """Every location token minted so far (for tests that look for leaks)."""
        return self._agencies.minted_tokens()

    def add_association(
        self,
        location_id: str,
        *,
        key: str,
        first_object_key: str,
        second_object_key: str,
        first_object_label: str = "",
        second_object_label: str = "",
        id: str | None = None,  # shadows the builtin: named after the API's field
    ) -> dict[str, Any]:
        """Seed a USER_DEFINED definition as the API would create it; ValueError if it refuses."""
        location = self._store.location(location_id)
        if id is not None and (id in self._store.owners or id in location.associations):
            raise ValueError(f"association id {id} already exists")
        try:
            created = self._store.create(
                location,
                key=key,
                first=(first_object_key, first_object_label or None),
                second=(second_object_key, second_object_label or None),
                conflict_status=400,
                association_id=id,
            )
        except ApiError as exc:
            message = exc.message if isinstance(exc.message, str) else ", ".join(exc.message)
            raise ValueError(message) from None
        return created.to_json()

    def associations(self, location_id: str) -> list[dict[str, Any]]:
        """All definitions of a location, SYSTEM_DEFINED first, as the API lists them."""
        if location_id not in self._store.locations:
            raise KeyError(f"unknown location {location_id!r}")
        return [a.to_json() for a in self._store.locations[location_id].associations.values()]

    def snapshot(self) -> dict[str, list[dict[str, Any]]]:
        """Location → its USER_DEFINED definitions sorted by key, for final-state asserts."""
        return {
            loc.id: sorted(
                (
                    a.to_json()
                    for a in loc.associations.values()
                    if a.association_type == "USER_DEFINED"
                ),
                key=lambda a: str(a["key"]),
            )
            for loc in self._store.locations.values()
        }

    def add_records(
        self,
        location_id: str,
        object_key: str,
        ids: Iterable[str] = (),
        *,
        count: int = 0,
        prefix: str | None = None,
    ) -> int:
        """Make record ids known: ``ids``, and ``count`` generated ones (``contact-1``...).

        Generated ids are ``prefix`` plus 1 to ``count`` (the prefix defaults to the
        object's name and a dash: ``property-1``). Answers how many records the object now
        has; ValueError for an object the location does not have.
        """
        prefix = generated_prefix(object_key) if prefix is None else prefix
        return self._relations.add_records(location_id, object_key, ids, count=count, prefix=prefix)

    def add_relation(
        self,
        location_id: str,
        association_id: str,
        first_record_id: str,
        second_record_id: str,
        *,
        created_at: float | None = None,
    ) -> dict[str, Any]:
        """Seed a relation as the API would create it (not counted); ValueError if it refuses.

        ``created_at`` (seconds since the epoch) backdates it: a relation that was there
        long before a job ran."""
        location = self._store.location(location_id)
        association = location.associations.get(association_id)
        if association is None:
            raise ValueError(f"no association {association_id} in location {location_id}")
        try:
            relation = self._relations.create(
                association, first_record_id, second_record_id, seeded=True
            )
        except ApiError as exc:
            raise ValueError(str(exc.message)) from None
        if created_at is not None:
            relation.created_at = created_at
        return self._relations.to_json(relation)

    def relations(self, location_id: str) -> list[dict[str, Any]]:
        """A location's relations, oldest first, as the API answers them."""
        return [self._relations.to_json(r) for r in self._relations.alive(location_id)]

    def relation_writes(self, location_id: str) -> list[dict[str, Any]]:
        """Every relation a location ever held, with the creates and deletes the API applied.

        Like ``writes_by_key`` for definitions: lost responses count, seeds do not, and a
        definition's delete counts as a delete of each of its relations. A relation can be
        live once at most, so ``created - deleted`` above 1 would mean a duplicate, and a
        ``created`` of 2 means it was created, deleted and created again.
        """
        return [
            {
                "associationId": r.association.id,
                "firstRecordId": r.first,
                "secondRecordId": r.second,
                "created": r.creates,
                "deleted": r.deletes,
            }
            for r in self._relations.lifetimes(location_id)
        ]

    # -- HTTP plumbing -----------------------------------------------------------------

    def _build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._pipeline.unknown_routes])
        routes = (
            self._endpoints.routes()
            + self._relation_endpoints.routes()
            + self._agency_endpoints.routes()
        )
        for method, path, endpoint in routes:
            handler = self._pipeline.wrap(endpoint, method=method, path=path)
            app.router.add_route(method, path, handler)
        app.router.add_post("/_sandbox/companies", self._admin_companies)
        app.router.add_post("/_sandbox/companies/{company_id}/{action}", self._admin_company_token)
        app.router.add_post("/_sandbox/tokens", self._admin_tokens)
        app.router.add_post("/_sandbox/associations", self._admin_associations)
        app.router.add_post("/_sandbox/records", self._admin_records)
        app.router.add_post("/_sandbox/relations", self._admin_add_relation)
        app.router.add_get("/_sandbox/relations", self._admin_relations, allow_head=False)
        app.router.add_get("/_sandbox/state", self._admin_state, allow_head=False)
        app.router.add_get("/_sandbox/log", self._admin_log, allow_head=False)
        return app

    # -- admin endpoints (no auth, no faults, no limits, not counted) ------------------

    async def _admin_tokens(self, request: web.Request) -> web.Response:
        body = await admin_body(request)
        locations = body.get("locations")
        if not isinstance(locations, list) or not all(isinstance(x, str) and x for x in locations):
            return ApiError(400, "locations must be a list of location ids").response()
        return json_response({"tokens": {loc: self.issue_token(loc) for loc in locations}})

    async def _admin_companies(self, request: web.Request) -> web.Response:
        body = await admin_body(request)
        company_id, locations = body.get("companyId"), body.get("locations", [])
        count, names = body.get("count", 0), body.get("names", {})
        not_installed = body.get("notInstalled", [])
        problems = []
        if not isinstance(company_id, str) or not company_id:
            problems.append("companyId must be a string")
        for name, value in (("locations", locations), ("notInstalled", not_installed)):
            if not isinstance(value, list) or not all(isinstance(x, str) and x for x in value):
                problems.append(f"{name} must be a list of location ids")
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            problems.append("count must be a whole number")
        if not isinstance(names, dict) or not all(isinstance(v, str) for v in names.values()):
            problems.append("names must map location ids to names")
        unknown = sorted(set(body) - {"companyId", "locations", "count", "names", "notInstalled"})
        problems += [f"property {name} should not exist" for name in unknown]
        if problems or not isinstance(company_id, str):
            return ApiError(400, problems).response()
        try:
            token = self.add_company(
                company_id, locations, count=count, names=names, not_installed=not_installed
            )
        except ValueError as exc:
            return ApiError(400, str(exc)).response()
        return json_response(
            {
                "companyId": company_id,
                "token": token,
                "appId": self.config.app_id,
                "locations": self.company_locations(company_id),
            }
        )

    async def _admin_company_token(self, request: web.Request) -> web.Response:
        company_id, action = request.match_info["company_id"], request.match_info["action"]
        if company_id not in self._agencies.companies:
            return ApiError(404, f"unknown company {company_id}").response()
        if action == "expire":
            self.expire_agency_token(company_id)
            return json_response({"companyId": company_id, "expired": True})
        if action == "renew":
            token = self.renew_agency_token(company_id)
            return json_response({"companyId": company_id, "token": token})
        return ApiError(404, f"unknown action {action}: expire or renew").response()

    async def _admin_associations(self, request: web.Request) -> web.Response:
        body = await admin_body(request)
        try:
            fields = body_fields(
                body,
                ("locationId", "key", "firstObjectKey", "secondObjectKey"),
                ("firstObjectLabel", "secondObjectLabel", "id"),
            )
            created = self.add_association(
                fields["locationId"],
                key=fields["key"],
                first_object_key=fields["firstObjectKey"],
                second_object_key=fields["secondObjectKey"],
                first_object_label=fields.get("firstObjectLabel", ""),
                second_object_label=fields.get("secondObjectLabel", ""),
                id=fields.get("id"),
            )
        except ApiError as exc:
            return exc.response()
        except ValueError as exc:
            return ApiError(400, str(exc)).response()
        return json_response(created, status=201)

    async def _admin_records(self, request: web.Request) -> web.Response:
        body = await admin_body(request)
        ids, count, prefix = body.get("ids", []), body.get("count", 0), body.get("prefix")
        problems = []
        if not isinstance(ids, list) or not all(isinstance(x, str) and x for x in ids):
            problems.append("ids must be a list of record ids")
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            problems.append("count must be a whole number")
        if prefix is not None and not isinstance(prefix, str):
            problems.append("prefix must be a string")
        try:
            fields = body_fields(
                {k: v for k, v in body.items() if k in ("locationId", "objectKey")},
                ("locationId", "objectKey"),
            )
        except ApiError as exc:
            problems = [*exc.message, *problems]
        unknown = sorted(set(body) - {"locationId", "objectKey", "ids", "count", "prefix"})
        problems += [f"property {name} should not exist" for name in unknown]
        if problems:
            return ApiError(400, problems).response()
        location_id, object_key = fields["locationId"], fields["objectKey"]
        try:
            total = self.add_records(location_id, object_key, ids, count=count, prefix=prefix)
        except ValueError as exc:
            return ApiError(404, str(exc)).response()
        return json_response({"locationId": location_id, "objectKey": object_key, "records": total})

    async def _admin_add_relation(self, request: web.Request) -> web.Response:
        body = await admin_body(request)
        try:
            fields = body_fields(
                body,
                ("locationId", "associationId", "firstRecordId", "secondRecordId"),
                ("createdAt",),
            )
            backdated = fields.get("createdAt")
            created = self.add_relation(
                fields["locationId"],
                fields["associationId"],
                fields["firstRecordId"],
                fields["secondRecordId"],
                created_at=None
                if backdated is None
                else datetime.fromisoformat(backdated).timestamp(),
            )
        except ApiError as exc:
            return exc.response()
        except ValueError as exc:
            return ApiError(400, str(exc)).response()
        return json_response(created, status=201)

    async def _admin_relations(self, request: web.Request) -> web.Response:
        wanted = request.query.getall("locationId", [])
        locations = wanted or self._relations.locations()
        return json_response(
            {
                "relations": {loc: self.relations(loc) for loc in locations},
                "writes_by_relation": {loc: self.relation_writes(loc) for loc in locations},
            }
        )

    async def _admin_state(self, request: web.Request) -> web.Response:
        stats = asdict(self.stats)
        return json_response(
            {"snapshot": self.snapshot(), "stats": stats, "log_size": len(self.log)}
        )

    async def _admin_log(self, request: web.Request) -> web.Response:
        return json_response([asdict(entry) for entry in self.log])
