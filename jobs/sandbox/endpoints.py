"""The API's routes and their handlers: both route sets and ``GET /objects/``.

Each handler does steps 6 to 8 of the :mod:`jobs.sandbox` docs: the body, the location
guard, query and body validation, then the store.
"""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web

from .config import SandboxConfig, SandboxStats
from .pipeline import Context, Endpoint
from .responses import ApiError, json_response
from .store import Association, Location, Store
from .validation import body_fields, query_error, read_body

__all__ = ["Endpoints"]

_OFFICIAL_CREATE_FIELDS = (
    "locationId",
    "key",
    "firstObjectKey",
    "firstObjectLabel",
    "secondObjectKey",
    "secondObjectLabel",
)
_GUIDE_CREATE_FIELDS = ("locationId", "key", "firstObjectKey", "secondObjectKey")
_GUIDE_OPTIONAL_FIELDS = ("description", "firstObjectLabel", "secondObjectLabel")
_UPDATE_FIELDS = ("firstObjectLabel", "secondObjectLabel")


class Endpoints:
    """One handler per route, over the store; see :meth:`routes`."""

    def __init__(self, config: SandboxConfig, store: Store, stats: SandboxStats) -> None:
        self._config = config
        self._store = store
        self._stats = stats

    def routes(self) -> list[tuple[str, str, Endpoint]]:
        """(method, path, handler) for every route of the API."""
        return [
            ("POST", "/associations/", self._official_create),
            ("POST", "/associations", self._official_create),
            ("GET", "/associations/", self._official_list),
            ("GET", "/associations", self._official_list),
            ("GET", "/associations/key/{key}", self._official_by_key),
            ("GET", "/associations/objectKey/{object_key}", self._official_by_object),
            ("GET", "/associations/{id}", self._official_get),
            ("PUT", "/associations/{id}", self._official_update),
            ("DELETE", "/associations/{id}", self._delete),
            ("POST", "/objects-association", self._guide_create),
            ("POST", "/objects-association/", self._guide_create),
            ("GET", "/objects-association", self._guide_list),
            ("GET", "/objects-association/", self._guide_list),
            ("GET", "/objects-association/key/{key}", self._guide_by_key),
            ("GET", "/objects-association/object/{object_key}", self._guide_by_object),
            ("DELETE", "/objects-association/{id}", self._delete),
            ("GET", "/objects/", self._objects),
            ("GET", "/objects", self._objects),
        ]

    # -- request helpers ---------------------------------------------------------------

    def _guard(self, ctx: Context, location_id: str) -> Location:
        """The location, if the token may act on it; otherwise 403 (and counted)."""
        ctx.location_id = location_id
        if location_id != ctx.token_location:
            self._stats.cross_location_token_uses += 1
            raise ApiError(403, "The token does not have access to this location.")
        return self._store.locations[location_id]

    def _prepare(
        self,
        request: web.Request,
        ctx: Context,
        body: dict[str, Any] | None = None,
        *,
        allowed: tuple[str, ...] = (),
        required: tuple[str, ...] = (),
    ) -> tuple[dict[str, str], Location | None]:
        """Location guard (403), then query validation (422); answers the valid query too."""
        query = request.query
        location_id = query.get("locationId") if len(query.getall("locationId", [])) == 1 else None
        if location_id is None and body is not None and isinstance(body.get("locationId"), str):
            location_id = body["locationId"]
        location = self._guard(ctx, location_id) if location_id else None
        errors = [f"property {name} should not exist" for name in query if name not in allowed]
        values: dict[str, str] = {}
        for name in allowed:
            given = query.getall(name, [])
            if not given and name not in required:
                continue
            error = query_error(name, given)
            if error:
                errors.append(error)
            else:
                values[name] = given[0]
        if errors:
            raise ApiError(422, list(dict.fromkeys(errors)))
        return values, location

    # the relation routes (relation_endpoints.py) share the guard and the query validation
    guard, prepare = _guard, _prepare

    def _located(self, request: web.Request, ctx: Context) -> Location:
        """For routes whose only query parameter is a required locationId."""
        _, location = self._prepare(request, ctx, allowed=("locationId",), required=("locationId",))
        assert location is not None
        return location

    def _by_id(self, ctx: Context, association_id: str) -> tuple[Location, Association]:
        """Resolve an id: the token's own location first (SYSTEM ids repeat per location)."""
        assert ctx.token_location is not None
        own = self._store.locations[ctx.token_location]
        owners = self._store.owners
        owner = own.id if association_id in own.associations else owners.get(association_id)
        if owner is None:
            raise ApiError(404, "Association not found")
        location = self._guard(ctx, owner)
        return location, location.associations[association_id]

    @staticmethod
    def _by_key(location: Location, key: str) -> Association:
        found = location.with_key(key)
        if found is None:
            raise ApiError(404, "Association not found")
        return found

    @staticmethod
    def _with_object(location: Location, object_key: str) -> web.Response:
        found = [a.to_json() for a in location.with_object(object_key)]
        return json_response({"associations": found})

    # -- endpoints ---------------------------------------------------------------------

    async def _official_create(self, request: web.Request, ctx: Context) -> web.Response:
        body = await read_body(request)
        _, location = self._prepare(request, ctx, body)
        fields = body_fields(body, _OFFICIAL_CREATE_FIELDS)
        return self._create_endpoint(ctx, location, fields, conflict_status=400, wrap=False)

    async def _guide_create(self, request: web.Request, ctx: Context) -> web.Response:
        body = await read_body(request)
        _, location = self._prepare(request, ctx, body)
        fields = body_fields(body, _GUIDE_CREATE_FIELDS, _GUIDE_OPTIONAL_FIELDS)
        return self._create_endpoint(ctx, location, fields, conflict_status=409, wrap=True)

    def _create_endpoint(
        self,
        ctx: Context,
        location: Location | None,
        fields: dict[str, str],
        *,
        conflict_status: int,
        wrap: bool,
    ) -> web.Response:
        assert location is not None  # a valid body has a locationId, so the guard ran
        created = self._store.create(
            location,
            key=fields["key"],
            first=(fields["firstObjectKey"], fields.get("firstObjectLabel")),
            second=(fields["secondObjectKey"], fields.get("secondObjectLabel")),
            conflict_status=conflict_status,
        )
        self._stats.creates_applied += 1
        self._stats.count_write(location.id, created.key, "created")
        ctx.applied = True
        data = created.to_json()
        return json_response({"association": data} if wrap else data, status=201)

    async def _official_list(self, request: web.Request, ctx: Context) -> web.Response:
        names = ("locationId", "skip", "limit")
        query, location = self._prepare(request, ctx, allowed=names, required=names)
        assert location is not None
        skip, limit = int(query["skip"]), int(query["limit"])
        size = min(limit, self._config.page_cap) if self._config.page_cap > 0 else limit
        page = [a.to_json() for a in location.page(skip, size)]
        total = len(location.associations)
        trace_id = str(uuid.uuid4())
        return json_response({"associations": page, "total": total, "traceId": trace_id})

    async def _guide_list(self, request: web.Request, ctx: Context) -> web.Response:
        location = self._located(request, ctx)
        return json_response(
            {"associations": [a.to_json() for a in location.associations.values()]}
        )

    async def _official_by_key(self, request: web.Request, ctx: Context) -> web.Response:
        location = self._located(request, ctx)
        return json_response(self._by_key(location, request.match_info["key"]).to_json())

    async def _guide_by_key(self, request: web.Request, ctx: Context) -> web.Response:
        location = self._located(request, ctx)
        found = self._by_key(location, request.match_info["key"])
        return json_response({"association": found.to_json()})

    async def _official_by_object(self, request: web.Request, ctx: Context) -> web.Response:
        # the spec marks locationId optional here: without it, the token's location
        _, location = self._prepare(request, ctx, allowed=("locationId",))
        if location is None:
            assert ctx.token_location is not None
            location = self._guard(ctx, ctx.token_location)
        return self._with_object(location, request.match_info["object_key"])

    async def _guide_by_object(self, request: web.Request, ctx: Context) -> web.Response:
        location = self._located(request, ctx)
        return self._with_object(location, request.match_info["object_key"])

    async def _official_get(self, request: web.Request, ctx: Context) -> web.Response:
        self._prepare(request, ctx)
        _, association = self._by_id(ctx, request.match_info["id"])
        return json_response(association.to_json())

    async def _official_update(self, request: web.Request, ctx: Context) -> web.Response:
        body = await read_body(request)
        self._prepare(request, ctx, body)
        fields = body_fields(body, _UPDATE_FIELDS)
        location, association = self._by_id(ctx, request.match_info["id"])
        if association.association_type == "SYSTEM_DEFINED":
            raise ApiError(400, "System defined associations cannot be updated")
        first, second = fields["firstObjectLabel"], fields["secondObjectLabel"]
        self._store.relabel(location, association, first, second)
        self._stats.updates_applied += 1
        ctx.applied = True
        return json_response(association.to_json())

    async def _delete(self, request: web.Request, ctx: Context) -> web.Response:
        self._prepare(request, ctx)
        location, association = self._by_id(ctx, request.match_info["id"])
        if association.association_type == "SYSTEM_DEFINED":
            raise ApiError(400, "System defined associations cannot be deleted")
        self._store.delete(location, association)
        self._stats.deletes_applied += 1
        self._stats.count_write(location.id, association.key, "deleted")
        ctx.applied = True
        message = "Association deleted successfully"
        return json_response({"deleted": True, "id": association.id, "message": message})

    async def _objects(self, request: web.Request, ctx: Context) -> web.Response:
        location = self._located(request, ctx)
        return json_response({"objects": [o.to_json() for o in location.objects.values()]})
