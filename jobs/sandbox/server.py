"""The :class:`Sandbox`: the fake API as an aiohttp application, its lifecycle, test helpers.

It also serves the admin routes under ``/_sandbox/`` (no auth, no faults, no limits, not
counted), and keeps tokens out of aiohttp's error log.
"""

from __future__ import annotations

import logging
import re
from dataclasses import asdict
from typing import Any

from aiohttp import web

from .config import LoggedRequest, SandboxConfig, SandboxStats
from .endpoints import Endpoints
from .pipeline import Pipeline
from .responses import ApiError, json_response
from .store import Location, Store
from .validation import admin_body, body_fields

__all__ = ["Sandbox"]

# aiohttp logs a malformed request with its raw bytes, headers included: redact credentials
_CREDENTIALS = re.compile(r"(?i)(authorization:\s*|bearer\s+)(?:bearer\s+)?[^\s'\"\\]+|pit-[\w-]+")


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
        self._pipeline = Pipeline(config, self._store, self.stats, self.log)
        self._endpoints = Endpoints(config, self._store, self.stats)
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
        site = web.TCPSite(runner, host, port)
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

    # -- HTTP plumbing -----------------------------------------------------------------

    def _build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._pipeline.unknown_routes])
        for method, path, endpoint in self._endpoints.routes():
            app.router.add_route(method, path, self._pipeline.wrap(endpoint))
        app.router.add_post("/_sandbox/tokens", self._admin_tokens)
        app.router.add_post("/_sandbox/associations", self._admin_associations)
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

    async def _admin_state(self, request: web.Request) -> web.Response:
        stats = asdict(self.stats)
        return json_response(
            {"snapshot": self.snapshot(), "stats": stats, "log_size": len(self.log)}
        )

    async def _admin_log(self, request: web.Request) -> web.Response:
        return json_response([asdict(entry) for entry in self.log])
