"""The relation routes: create a relation, list a record's relations, delete a relation.

Like :mod:`.endpoints` (whose location guard and query validation they share), each handler
does steps 6 to 8 of the :mod:`jobs.sandbox` docs; the records and relations themselves
live in :mod:`.relation_store`.
"""

from __future__ import annotations

from aiohttp import web

from .config import SandboxConfig
from .endpoints import Endpoints
from .pipeline import Context, Endpoint
from .relation_store import RelationStore
from .responses import ApiError, json_response
from .store import Association, Store
from .validation import body_fields, read_body

__all__ = ["RelationEndpoints"]

_CREATE_FIELDS = ("locationId", "associationId", "firstRecordId", "secondRecordId")
_LIST_QUERY = ("locationId", "skip", "limit", "associationIds")  # all but the last required


class RelationEndpoints:
    """One handler per relation route, over the relation store; see :meth:`routes`."""

    def __init__(
        self,
        config: SandboxConfig,
        store: Store,
        relations: RelationStore,
        definitions: Endpoints,
    ) -> None:
        self._config = config
        self._store = store
        self._relations = relations
        self._definitions = definitions

    def routes(self) -> list[tuple[str, str, Endpoint]]:
        """(method, path, handler) for every relation route."""
        return [
            ("POST", "/associations/relations", self._create),
            ("POST", "/associations/relations/", self._create),
            ("GET", "/associations/relations/{record_id}", self._of_record),
            ("DELETE", "/associations/relations/{relation_id}", self._delete),
        ]

    def _association(self, ctx: Context, association_id: str) -> Association:
        """The definition in the token's location (SYSTEM ids repeat per location); else 404/403."""
        assert ctx.token_location is not None
        found = self._store.locations[ctx.token_location].associations.get(association_id)
        if found is not None:
            return found
        owner = self._store.owners.get(association_id)
        if owner is None:
            raise ApiError(404, "Association not found")
        return self._definitions.guard(ctx, owner).associations[association_id]  # 403

    async def _create(self, request: web.Request, ctx: Context) -> web.Response:
        body = await read_body(request)
        self._definitions.prepare(request, ctx, body)  # locationId in the query: 422
        fields = body_fields(body, _CREATE_FIELDS)
        association = self._association(ctx, fields["associationId"])
        relation = self._relations.create(
            association, fields["firstRecordId"], fields["secondRecordId"]
        )
        ctx.applied = True
        data = self._relations.to_json(relation)
        return json_response(
            {"relation": data} if self._config.wrap_relation else data,
            status=self._config.relation_status,
        )

    async def _of_record(self, request: web.Request, ctx: Context) -> web.Response:
        query, location = self._definitions.prepare(
            request, ctx, allowed=_LIST_QUERY, required=_LIST_QUERY[:-1]
        )
        assert location is not None
        found = self._relations.of_record(location.id, request.match_info["record_id"])
        wanted = request.query.getall("associationIds", [])
        if wanted:  # a comma list is one id, as Express's query parser reads it
            ids = frozenset(wanted)
            found = [r for r in found if r.association.id in ids]
        skip, limit = int(query["skip"]), int(query["limit"])
        size = min(limit, self._config.page_cap) if self._config.page_cap > 0 else limit
        page = [self._relations.to_json(r) for r in found[skip : skip + size]]
        return json_response({"relations": page, "total": len(found)})

    async def _delete(self, request: web.Request, ctx: Context) -> web.Response:
        self._definitions.prepare(request, ctx, allowed=("locationId",), required=("locationId",))
        relation = self._relations.find(request.match_info["relation_id"])
        if relation is None:
            raise ApiError(404, "Relation not found")
        self._definitions.guard(ctx, relation.association.location_id)  # another's: 403
        relation_id = self._relations.relation_id(relation)
        self._relations.delete(relation)
        ctx.applied = True
        message = "Relation deleted successfully"
        return json_response({"deleted": True, "id": relation_id, "message": message})
