"""The two route sets for association definitions, behind one small interface.

``--api associations`` is the official OpenAPI surface (``/associations/``, paged list,
labels required, bare objects); ``--api objects-association`` is the route set of the
integration guide (``/objects-association``, one-shot list, ``description``, wrapped objects).
Both build plain ``engine.Request`` values; nothing here does I/O.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from engine import Request

from .highlevel import API_VERSION

__all__ = ["Api", "Routes", "api_request", "association_from", "associations_from"]


class Api(enum.Enum):
    """Which route set to speak."""

    ASSOCIATIONS = "associations"
    OBJECTS_ASSOCIATION = "objects-association"


#: page size asked of the official list; the service may return fewer while more remain
PAGE_SIZE = 100


def api_request(
    base_url: str,
    method: str,
    path: str,
    location_id: str,
    *,
    params: Mapping[str, str] | None = None,
    json: Any = None,
) -> Request:
    """A request to one location's part of the API, with the headers every route needs
    (the token is added by the engine, for that location only)."""
    return Request(
        method=method,
        url=f"{base_url}{path}",
        location_id=location_id,
        params=dict(params or {}),
        headers={"Version": API_VERSION, "Accept": "application/json"},
        json=json,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Routes:
    """Builds the requests of one route set against one base URL."""

    api: Api
    base_url: str

    @property
    def official(self) -> bool:
        """Whether this is the official route set."""
        return self.api is Api.ASSOCIATIONS

    @property
    def _root(self) -> str:
        return "/associations/" if self.official else "/objects-association"

    def objects(self, location_id: str) -> Request:
        """List the location's object schemas (standard and custom)."""
        return api_request(
            self.base_url, "GET", "/objects/", location_id, params={"locationId": location_id}
        )

    def list(self, location_id: str, skip: int) -> Request:
        """One page of the location's association definitions (the guide's list is one page)."""
        params = {"locationId": location_id}
        if self.official:
            params |= {"skip": str(skip), "limit": str(PAGE_SIZE)}
        return api_request(self.base_url, "GET", self._root, location_id, params=params)

    def by_key(self, location_id: str, key: str) -> Request:
        """Look one definition up by its key."""
        base = "/associations" if self.official else "/objects-association"
        return api_request(
            self.base_url,
            "GET",
            f"{base}/key/{quote(key, safe='')}",
            location_id,
            params={"locationId": location_id},
        )

    def create(self, location_id: str, body: Mapping[str, str]) -> Request:
        """Create one definition."""
        return api_request(self.base_url, "POST", self._root, location_id, json=dict(body))

    def update(self, location_id: str, association_id: str, labels: tuple[str, str]) -> Request:
        """Change a definition's labels (official routes only: the guide has no update)."""
        if not self.official:
            raise ValueError("the integration guide's routes cannot update labels")
        return api_request(
            self.base_url,
            "PUT",
            f"/associations/{quote(association_id, safe='')}",
            location_id,
            json={"firstObjectLabel": labels[0], "secondObjectLabel": labels[1]},
        )

    def delete(self, location_id: str, association_id: str) -> Request:
        """Delete one definition by id (no query parameters: the service rejects them)."""
        base = "/associations" if self.official else "/objects-association"
        return api_request(
            self.base_url, "DELETE", f"{base}/{quote(association_id, safe='')}", location_id
        )


def association_from(body: Any) -> dict[str, Any] | None:
    """The association in a create or lookup answer: bare (spec) or wrapped (guide)."""
    if isinstance(body, dict):
        inner = body.get("association")
        if isinstance(inner, dict):
            return inner
        if "key" in body and "id" in body:
            return body
    return None


def associations_from(body: Any) -> list[dict[str, Any]]:
    """The definitions in a list answer (``{"associations": [...]}``, or a bare list)."""
    items = body.get("associations") if isinstance(body, dict) else body
    if not isinstance(items, list):
        return []
    return [item for item in items if isinstance(item, dict) and "key" in item]
