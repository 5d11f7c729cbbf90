"""The relation routes (official route set only): create, list a record's relations, delete.

HighLevel has no bulk relation endpoint and no route that lists a location's relations: a
relation can be looked up only through one of its records (``GET /associations/relations/
{recordId}``), filtered by association. ``locationId`` goes in the create's body only (as a
query parameter it gets a 422); the list and the delete take it in the query. Nothing here
does I/O: each method builds a plain ``engine.Request``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from engine import Request

from .routes import PAGE_SIZE, api_request

__all__ = ["RelationRoutes", "relation_from", "relations_from"]

_ROOT = "/associations/relations"


@dataclass(frozen=True, slots=True, kw_only=True)
class RelationRoutes:
    """Builds the relation requests against one base URL."""

    base_url: str

    def create(
        self, location_id: str, association_id: str, first_record_id: str, second_record_id: str
    ) -> Request:
        """Link two records under one association (``locationId`` in the body only)."""
        body = {
            "locationId": location_id,
            "associationId": association_id,
            "firstRecordId": first_record_id,
            "secondRecordId": second_record_id,
        }
        return api_request(self.base_url, "POST", _ROOT, location_id, json=body)

    def of_record(
        self, location_id: str, record_id: str, association_id: str, skip: int
    ) -> Request:
        """One page of a record's relations under one association."""
        params = {
            "locationId": location_id,
            "skip": str(skip),
            "limit": str(PAGE_SIZE),
            "associationIds": association_id,
        }
        return api_request(
            self.base_url, "GET", f"{_ROOT}/{quote(record_id, safe='')}", location_id, params=params
        )

    def delete(self, location_id: str, relation_id: str) -> Request:
        """Delete one relation by id."""
        return api_request(
            self.base_url,
            "DELETE",
            f"{_ROOT}/{quote(relation_id, safe='')}",
            location_id,
            params={"locationId": location_id},
        )


def relation_from(body: Any) -> dict[str, Any] | None:
    """The relation in a create answer: bare (spec) or ``{"relation": {...}}`` (field)."""
    if isinstance(body, dict):
        inner = body.get("relation")
        if isinstance(inner, dict):
            return inner
        if "id" in body:
            return body
    return None


def relations_from(body: Any) -> list[dict[str, Any]]:
    """The relations in a list answer (``{"relations": [...], "total": n}``)."""
    items = body.get("relations") if isinstance(body, dict) else body
    if not isinstance(items, list):
        return []
    return [item for item in items if isinstance(item, dict)]
