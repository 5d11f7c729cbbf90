"""A faithful fake of HighLevel's association-definition API, served by a real aiohttp server.

It fakes, over one in-memory store per location:

* the official routes (``/associations/...``: create, paged list, get by key, by object
  key and by id, update labels, delete) and the integration guide's routes
  (``/objects-association...``: create, list, get by key, by object, delete);
* ``GET /objects/`` (standard ``contact``, ``opportunity``, ``business`` plus the
  configured custom objects) and two SYSTEM_DEFINED associations per location,
  ``OPPORTUNITIES_CONTACTS_ASSOCIATION`` and ``BUSINESSES_CONTACTS_ASSOCIATION``;
* the ``Version`` header, bearer tokens that each work for one location only, the
  per-location burst and daily rate limits with their ``X-RateLimit-*`` headers, and
  seeded faults: resets, 5xx (sometimes a proxy's HTML page), stalls, latency and lost
  responses (the write is applied, the answer never arrives).

Every request goes through these steps, and the first that fails answers:

1. routing: unknown path or method → 404 ``Cannot GET /path`` (nothing else is checked);
2. ``Version: 2021-07-28`` → else 401 ``version header was not found.``;
3. ``Authorization: Bearer <token>`` → missing 401 ``Unauthorized``, unknown 401 ``Invalid JWT``;
4. rate limits of the token's location → 429 (only admitted requests are counted);
5. faults, in this order: reset, 5xx, stall, latency;
6. body parsing (invalid JSON → 400), then the location guard: a ``locationId`` in the
   query or body that is not the token's location → 403 (and counted);
7. validation: query string → 422 (unknown parameters, missing ``skip``/``limit``...),
   body → 400 (missing or non-string fields, unknown properties);
8. the handler: id routes resolve the id (404, or 403 if it belongs to another
   location), object keys must exist (404), then the duplicate checks;
9. for writes (POST/PUT/DELETE), a lost-response fault drops the connection after the
   change was applied.

Choices where the real service's behaviour is unpublished:

* Burst window: sliding, counting admitted requests that arrived in ``(now - interval, now]``;
  429s are not counted. Daily budget: admitted requests per location per 24 h of ``clock``
  since the sandbox was created. ``rate_limit=0`` (no burst limit, nothing advertised)
  omits the three burst headers; ``daily_limit=0`` omits the two daily headers.
* Official duplicate key → 400 ``association with key K already exists``; the same object
  pair with the same labels as an existing definition (SYSTEM_DEFINED included) → 400
  ``duplicate pair of labels``; the guide answers both with 409.
* Unknown object key on create → 404 ``Object with key K not found``; by-object routes
  with an unknown object key answer an empty list.
* The list hides a page cap (``page_cap``, 50): a page holds ``min(limit, page_cap)``.
* The guide's ``description`` is accepted and not stored.
* A request dropped by a fault is logged with status 0 (the client saw no status).

Nothing here logs tokens: the request log holds locations, never headers, aiohttp's
access log is off, and its error log (which quotes malformed headers) is redacted.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import logging
import math
import os
import re
import secrets
import signal
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any, Literal

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler

from ._sandbox_faults import FaultDice, drop_connection, gateway_error

__all__ = ["LoggedRequest", "Sandbox", "SandboxConfig", "SandboxStats", "serve"]

_API_VERSION = "2021-07-28"
_PIT_PREFIX = "pit-"  # private integration tokens look like "pit-..."
_DAY = 86_400.0  # seconds
_WRITES = frozenset({"POST", "PUT", "DELETE"})
_STANDARD_OBJECTS = (
    ("contact", "Contact", "Contacts"),
    ("opportunity", "Opportunity", "Opportunities"),
    ("business", "Business", "Businesses"),
)
_SYSTEM_ASSOCIATIONS = (
    ("OPPORTUNITIES_CONTACTS_ASSOCIATION", "opportunity", "contact"),
    ("BUSINESSES_CONTACTS_ASSOCIATION", "business", "contact"),
)
# aiohttp logs a malformed request with its raw bytes, headers included: redact credentials
_CREDENTIALS = re.compile(r"(?i)(authorization:\s*|bearer\s+)(?:bearer\s+)?[^\s'\"\\]+|pit-[\w-]+")
_SYSTEM_CREATED_AT = "2023-01-01T00:00:00.000Z"
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


@dataclass(frozen=True, slots=True, kw_only=True)
class SandboxConfig:
    """How the sandbox behaves; the defaults are the documented production limits, no faults."""

    rate_limit: int = 100  # requests per interval per location (0 = no limit)
    rate_interval: float = 10.0  # seconds
    daily_limit: int = 200_000  # requests per location per day (0 = no limit)
    advertise_limit: int | None = None  # what X-RateLimit-Max says; None = rate_limit
    throttle_below: int | None = None  # real limit, lower than the advertised one
    retry_after: bool = False  # send Retry-After (seconds, rounded up) on 429s
    page_cap: int = 50  # most items a list page holds, whatever limit asked
    fail_rate: float = 0.0  # per request: 500/502/503/504 before doing anything
    reset_rate: float = 0.0  # per request: drop the connection before doing anything
    lost_response_rate: float = 0.0  # per write: apply the change, then drop the connection
    stall_rate: float = 0.0  # per request: hang stall_seconds, then answer normally
    stall_seconds: float = 60.0
    latency: tuple[float, float] = (0.0, 0.0)  # min, max milliseconds added to every request
    seed: int | None = None  # seeds the one random.Random behind every fault decision
    objects: tuple[str, ...] = ("custom_objects.property", "custom_objects.pet")
    clock: Callable[[], float] = time.monotonic  # seconds, for the rate windows


@dataclass(slots=True, kw_only=True)
class SandboxStats:
    """Counters over every non-admin request since the sandbox was created."""

    requests: int = 0
    creates_applied: int = 0
    duplicate_creates_applied: int = 0  # must stay 0: a create that made a key appear twice
    updates_applied: int = 0
    deletes_applied: int = 0
    throttled: int = 0  # 429s sent
    faults_injected: dict[str, int] = field(default_factory=dict)  # kind -> count
    cross_location_token_uses: int = 0  # answered 403


@dataclass(frozen=True, slots=True, kw_only=True)
class LoggedRequest:
    """One request as the sandbox saw it (no headers, so never a token)."""

    method: str
    path: str
    location_id: str | None  # the location the request concerns, once resolved
    token_location: str | None  # the location of the bearer token, if it was valid
    status: int  # 0 when the connection was dropped without an answer
    applied: bool  # whether it changed the store
    faults: tuple[str, ...] = ()  # injected faults: reset, fail, stall, latency, lost_response


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


_SERVER_LOG = logging.getLogger(f"{__name__}.server")
_SERVER_LOG.addFilter(_Redact())


class _ApiError(Exception):
    """An error answer in NestJS shape; ``error=None`` leaves the ``error`` field out."""

    def __init__(
        self,
        status: int,
        message: str | list[str],
        error: str | None = "",
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error = HTTPStatus(status).phrase if error == "" else error
        self.headers = headers or {}

    def response(self) -> web.Response:
        body: dict[str, Any] = {"statusCode": self.status, "message": self.message}
        if self.error is not None:
            body["error"] = self.error
        return _json(body, status=self.status, headers=self.headers)


def _json(data: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status, body=orjson.dumps(data), content_type="application/json", headers=headers
    )


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _labels_for(object_key: str) -> tuple[str, str]:
    """Singular and plural labels of a custom object: custom_objects.pet_owner → Pet Owner(s)."""
    words = object_key.rpartition(".")[2].replace("_", " ").title()
    if words.endswith("y") and words[-2:-1] not in "aeiou":
        return words, words[:-1] + "ies"
    if words.endswith(("s", "x", "ch", "sh")):
        return words, words + "es"
    return words, words + "s"


@dataclass(slots=True, kw_only=True)
class _Object:
    key: str
    singular: str
    plural: str
    standard: bool

    def to_json(self) -> dict[str, Any]:
        labels = {"singular": self.singular, "plural": self.plural}
        return {"key": self.key, "labels": labels, "standard": self.standard}


@dataclass(slots=True, kw_only=True)
class _Association:
    id: str
    location_id: str
    key: str
    first_object_key: str
    first_object_label: str
    second_object_key: str
    second_object_label: str
    association_type: Literal["USER_DEFINED", "SYSTEM_DEFINED"]
    created_at: str

    def sides(self) -> list[tuple[str, str]]:
        """The (object key, label) pairs, order-free, for the duplicate-pair check."""
        first = (self.first_object_key, self.first_object_label)
        return sorted([first, (self.second_object_key, self.second_object_label)])

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "locationId": self.location_id,
            "key": self.key,
            "firstObjectKey": self.first_object_key,
            "firstObjectLabel": self.first_object_label,
            "secondObjectKey": self.second_object_key,
            "secondObjectLabel": self.second_object_label,
            "associationType": self.association_type,
            "createdAt": self.created_at,
        }


@dataclass(slots=True, kw_only=True)
class _Location:
    id: str
    token: str
    objects: dict[str, _Object]
    associations: dict[str, _Association]  # by id, in creation order


@dataclass(slots=True)
class _Budget:
    """One location's rate state: admitted arrival times in the window, and today's count."""

    window: deque[float] = field(default_factory=deque)
    day: int = 0
    used_today: int = 0


class _RateLimiter:
    """Per-location sliding window plus daily budget; see the module docs for the choices."""

    def __init__(self, config: SandboxConfig) -> None:
        self._config = config
        self._clock = config.clock
        self._epoch = config.clock()
        self._budgets: dict[str, _Budget] = {}

    def admit(self, location_id: str) -> tuple[bool, dict[str, str]]:
        """Count one request; answer whether it may proceed and the headers to send."""
        cfg = self._config
        now = self._clock()
        budget = self._budgets.setdefault(location_id, _Budget())
        day = int((now - self._epoch) // _DAY)
        if day != budget.day:
            budget.day, budget.used_today = day, 0
        window = budget.window
        while window and window[0] <= now - cfg.rate_interval:
            window.popleft()
        limit = cfg.throttle_below if cfg.throttle_below is not None else cfg.rate_limit
        wait: float | None = None
        if cfg.daily_limit and budget.used_today >= cfg.daily_limit:
            wait = self._epoch + (day + 1) * _DAY - now
        elif limit and len(window) >= limit:
            wait = window[len(window) - limit] + cfg.rate_interval - now
        else:
            window.append(now)
            budget.used_today += 1
        headers = self._headers(len(window), budget.used_today)
        if wait is not None and cfg.retry_after:
            headers["Retry-After"] = str(max(1, math.ceil(wait)))
        return wait is None, headers

    def _headers(self, in_window: int, used_today: int) -> dict[str, str]:
        cfg = self._config
        headers: dict[str, str] = {}
        advertised = cfg.advertise_limit if cfg.advertise_limit is not None else cfg.rate_limit
        if advertised:
            headers["X-RateLimit-Max"] = str(advertised)
            headers["X-RateLimit-Remaining"] = str(max(0, advertised - in_window))
            headers["X-RateLimit-Interval-Milliseconds"] = str(round(cfg.rate_interval * 1000))
        if cfg.daily_limit:
            headers["X-RateLimit-Limit-Daily"] = str(cfg.daily_limit)
            headers["X-RateLimit-Daily-Remaining"] = str(max(0, cfg.daily_limit - used_today))
        return headers


@dataclass(slots=True)
class _Context:
    """What one request has revealed so far, for the log."""

    method: str
    path: str
    location_id: str | None = None
    token_location: str | None = None
    status: int = 0
    applied: bool = False
    faults: list[str] = field(default_factory=list)


_Endpoint = Callable[[web.Request, _Context], Awaitable[web.Response]]


class Sandbox:
    """The fake API: an aiohttp application over an in-memory store, plus test helpers."""

    def __init__(self, config: SandboxConfig = SandboxConfig()) -> None:
        self.config = config
        self.stats = SandboxStats()
        self.log: list[LoggedRequest] = []
        self._locations: dict[str, _Location] = {}
        self._tokens: dict[str, str] = {}  # token -> location id
        self._owners: dict[str, str] = {}  # USER_DEFINED association id -> location id
        self._limiter = _RateLimiter(config)
        self._dice = FaultDice(
            reset_rate=config.reset_rate,
            fail_rate=config.fail_rate,
            stall_rate=config.stall_rate,
            lost_response_rate=config.lost_response_rate,
            latency_ms=config.latency,
            seed=config.seed,
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

    # -- test helpers ------------------------------------------------------------------

    def issue_token(self, location_id: str) -> str:
        """The token of a location, creating the location on first use."""
        return self._location(location_id).token

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
        location = self._location(location_id)
        if id is not None and (id in self._owners or id in location.associations):
            raise ValueError(f"association id {id} already exists")
        try:
            created = self._create(
                location,
                key=key,
                first=(first_object_key, first_object_label or None),
                second=(second_object_key, second_object_label or None),
                conflict_status=400,
                association_id=id,
            )
        except _ApiError as exc:
            message = exc.message if isinstance(exc.message, str) else ", ".join(exc.message)
            raise ValueError(message) from None
        return created.to_json()

    def associations(self, location_id: str) -> list[dict[str, Any]]:
        """All definitions of a location, SYSTEM_DEFINED first, as the API lists them."""
        if location_id not in self._locations:
            raise KeyError(f"unknown location {location_id!r}")
        return [a.to_json() for a in self._locations[location_id].associations.values()]

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
            for loc in self._locations.values()
        }

    # -- store -------------------------------------------------------------------------

    def _location(self, location_id: str) -> _Location:
        location = self._locations.get(location_id)
        if location is not None:
            return location
        objects = {
            k: _Object(key=k, singular=s, plural=p, standard=True) for k, s, p in _STANDARD_OBJECTS
        }
        for key in self.config.objects:
            singular, plural = _labels_for(key)
            objects[key] = _Object(key=key, singular=singular, plural=plural, standard=False)
        token = _PIT_PREFIX + secrets.token_urlsafe(24)
        location = _Location(id=location_id, token=token, objects=objects, associations={})
        for key, first, second in _SYSTEM_ASSOCIATIONS:
            location.associations[key] = _Association(
                id=key,
                location_id=location_id,
                key=key,
                first_object_key=first,
                first_object_label=objects[first].singular,
                second_object_key=second,
                second_object_label=objects[second].singular,
                association_type="SYSTEM_DEFINED",
                created_at=_SYSTEM_CREATED_AT,
            )
        self._locations[location_id] = location
        self._tokens[token] = location_id
        return location

    def _create(
        self,
        location: _Location,
        *,
        key: str,
        first: tuple[str, str | None],
        second: tuple[str, str | None],
        conflict_status: int,
        association_id: str | None = None,
    ) -> _Association:
        """Check and store a new USER_DEFINED definition; labels default to singular labels."""
        (first_key, first_label), (second_key, second_label) = first, second
        for object_key in (first_key, second_key):
            if object_key not in location.objects:
                raise _ApiError(404, f"Object with key {object_key} not found")
        association = _Association(
            id=association_id or secrets.token_hex(12),
            location_id=location.id,
            key=key,
            first_object_key=first_key,
            first_object_label=first_label or location.objects[first_key].singular,
            second_object_key=second_key,
            second_object_label=second_label or location.objects[second_key].singular,
            association_type="USER_DEFINED",
            created_at=_now_iso(),
        )
        self._check(location, association, conflict_status=conflict_status)
        location.associations[association.id] = association
        self._owners[association.id] = location.id
        if sum(a.key == key for a in location.associations.values()) > 1:
            self.stats.duplicate_creates_applied += 1  # by construction never; counted anyway
        return association

    @staticmethod
    def _check(location: _Location, new: _Association, *, conflict_status: int) -> None:
        """Refuse what the service refuses: same-object twins, reused keys, reused label pairs."""
        twins = new.first_object_key == new.second_object_key
        if twins and new.first_object_label == new.second_object_label:
            raise _ApiError(422, "Both object labels can not be same")
        others = [a for a in location.associations.values() if a.id != new.id]
        if any(a.key == new.key for a in others):
            raise _ApiError(conflict_status, f"association with key {new.key} already exists")
        sides = new.sides()
        if any(a.sides() == sides for a in others):
            raise _ApiError(conflict_status, "duplicate pair of labels")

    # -- HTTP plumbing -----------------------------------------------------------------

    def _build_app(self) -> web.Application:
        @web.middleware
        async def unknown_routes(request: web.Request, handler: Handler) -> web.StreamResponse:
            if request.match_info.http_exception is None or request.path.startswith("/_sandbox/"):
                return await handler(request)
            self.stats.requests += 1
            error = _ApiError(404, f"Cannot {request.method} {request.path}")
            self.log.append(
                LoggedRequest(
                    method=request.method,
                    path=request.path,
                    location_id=None,
                    token_location=None,
                    status=404,
                    applied=False,
                )
            )
            return error.response()

        app = web.Application(middlewares=[unknown_routes])
        routes: list[tuple[str, str, _Endpoint]] = [
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
        for method, path, endpoint in routes:
            app.router.add_route(method, path, self._endpoint(endpoint))
        app.router.add_post("/_sandbox/tokens", self._admin_tokens)
        app.router.add_post("/_sandbox/associations", self._admin_associations)
        app.router.add_get("/_sandbox/state", self._admin_state, allow_head=False)
        app.router.add_get("/_sandbox/log", self._admin_log, allow_head=False)
        return app

    def _endpoint(self, endpoint: _Endpoint) -> Handler:
        async def handle(request: web.Request) -> web.StreamResponse:
            ctx = _Context(request.method, request.path)
            self.stats.requests += 1
            try:
                return await self._pipeline(request, ctx, endpoint)
            finally:
                self.log.append(
                    LoggedRequest(
                        method=ctx.method,
                        path=ctx.path,
                        location_id=ctx.location_id,
                        token_location=ctx.token_location,
                        status=ctx.status,
                        applied=ctx.applied,
                        faults=tuple(ctx.faults),
                    )
                )

        return handle

    async def _pipeline(
        self, request: web.Request, ctx: _Context, endpoint: _Endpoint
    ) -> web.Response:
        """Steps 2 to 9 of the module docs."""
        headers: dict[str, str] = {}
        try:
            ctx.token_location = self._authenticate(request)
            admitted, headers = self._limiter.admit(ctx.token_location)
            if not admitted:
                self.stats.throttled += 1
                raise _ApiError(429, "Too Many Requests", error=None)
            plan = self._dice.roll()
            if plan.reset:
                self._fault(ctx, "reset")
                return drop_connection(request)
            if plan.fail_status is not None:
                self._fault(ctx, "fail")
                response = gateway_error(plan.fail_status, html=plan.fail_html)
                if plan.fail_html:  # a proxy answered: no rate-limit headers
                    headers = {}
            else:
                if plan.stall:
                    self._fault(ctx, "stall")
                    await asyncio.sleep(self.config.stall_seconds)
                if plan.latency > 0:
                    self._fault(ctx, "latency")
                    await asyncio.sleep(plan.latency)
                try:
                    response = await endpoint(request, ctx)
                except _ApiError as exc:
                    response = exc.response()
                if plan.lost_response and request.method in _WRITES:
                    self._fault(ctx, "lost_response")
                    return drop_connection(request)
        except _ApiError as exc:
            response = exc.response()
        response.headers.update(headers)
        ctx.status = response.status
        return response

    def _fault(self, ctx: _Context, kind: str) -> None:
        ctx.faults.append(kind)
        self.stats.faults_injected[kind] = self.stats.faults_injected.get(kind, 0) + 1

    def _authenticate(self, request: web.Request) -> str:
        """The location of the request's token, after the Version header check."""
        if request.headers.get("Version") != _API_VERSION:
            raise _ApiError(401, "version header was not found.")
        scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not credentials.strip():
            raise _ApiError(401, "Unauthorized", error=None)
        location_id = self._tokens.get(credentials.strip())
        if location_id is None:
            raise _ApiError(401, "Invalid JWT")
        return location_id

    @staticmethod
    async def _body(request: web.Request) -> dict[str, Any]:
        """The JSON body; like Express's body parser, ignored unless sent as application/json."""
        raw = await request.read()
        if not raw or request.content_type != "application/json":
            return {}
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise _ApiError(400, f"Unexpected token in JSON at position {exc.pos}") from None
        if not isinstance(data, dict):
            raise _ApiError(400, ["request body must be a JSON object"])
        return data

    def _guard(self, ctx: _Context, location_id: str) -> _Location:
        """The location, if the token may act on it; otherwise 403 (and counted)."""
        ctx.location_id = location_id
        if location_id != ctx.token_location:
            self.stats.cross_location_token_uses += 1
            raise _ApiError(403, "The token does not have access to this location.")
        return self._locations[location_id]

    def _prepare(
        self,
        request: web.Request,
        ctx: _Context,
        body: dict[str, Any] | None = None,
        *,
        allowed: tuple[str, ...] = (),
        required: tuple[str, ...] = (),
    ) -> tuple[dict[str, str], _Location | None]:
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
            error = _query_error(name, given)
            if error:
                errors.append(error)
            else:
                values[name] = given[0]
        if errors:
            raise _ApiError(422, list(dict.fromkeys(errors)))
        return values, location

    @staticmethod
    def _fields(
        body: dict[str, Any], required: tuple[str, ...], optional: tuple[str, ...] = ()
    ) -> dict[str, str]:
        """Body validation (400): required non-empty strings, optional strings, nothing else."""
        errors: list[str] = []
        values: dict[str, str] = {}
        for name in required + optional:
            value = body.get(name)
            if name not in body and name in optional:
                continue
            if not isinstance(value, str):
                errors.append(f"{name} must be a string")
            elif value.strip():
                values[name] = value
            elif name in required:
                errors.append(f"{name} should not be empty")
        errors += [f"property {p} should not exist" for p in body if p not in required + optional]
        if errors:
            raise _ApiError(400, errors)
        return values

    def _by_id(self, ctx: _Context, association_id: str) -> tuple[_Location, _Association]:
        """Resolve an id: the token's own location first (SYSTEM ids repeat per location)."""
        assert ctx.token_location is not None
        own = self._locations[ctx.token_location]
        owner = own.id if association_id in own.associations else self._owners.get(association_id)
        if owner is None:
            raise _ApiError(404, "Association not found")
        location = self._guard(ctx, owner)
        return location, location.associations[association_id]

    @staticmethod
    def _by_key(location: _Location, key: str) -> _Association:
        for association in location.associations.values():
            if association.key == key:
                return association
        raise _ApiError(404, "Association not found")

    # -- endpoints ---------------------------------------------------------------------

    async def _official_create(self, request: web.Request, ctx: _Context) -> web.Response:
        body = await self._body(request)
        _, location = self._prepare(request, ctx, body)
        fields = self._fields(body, _OFFICIAL_CREATE_FIELDS)
        return self._create_endpoint(ctx, location, fields, conflict_status=400, wrap=False)

    async def _guide_create(self, request: web.Request, ctx: _Context) -> web.Response:
        body = await self._body(request)
        _, location = self._prepare(request, ctx, body)
        fields = self._fields(body, _GUIDE_CREATE_FIELDS, _GUIDE_OPTIONAL_FIELDS)
        return self._create_endpoint(ctx, location, fields, conflict_status=409, wrap=True)

    def _create_endpoint(
        self,
        ctx: _Context,
        location: _Location | None,
        fields: dict[str, str],
        *,
        conflict_status: int,
        wrap: bool,
    ) -> web.Response:
        assert location is not None  # a valid body has a locationId, so the guard ran
        created = self._create(
            location,
            key=fields["key"],
            first=(fields["firstObjectKey"], fields.get("firstObjectLabel")),
            second=(fields["secondObjectKey"], fields.get("secondObjectLabel")),
            conflict_status=conflict_status,
        )
        self.stats.creates_applied += 1
        ctx.applied = True
        data = created.to_json()
        return _json({"association": data} if wrap else data, status=201)

    async def _official_list(self, request: web.Request, ctx: _Context) -> web.Response:
        names = ("locationId", "skip", "limit")
        query, location = self._prepare(request, ctx, allowed=names, required=names)
        assert location is not None
        skip, limit = int(query["skip"]), int(query["limit"])
        size = min(limit, self.config.page_cap) if self.config.page_cap > 0 else limit
        items = list(location.associations.values())
        page = [a.to_json() for a in items[skip : skip + size]]
        trace_id = str(uuid.uuid4())
        return _json({"associations": page, "total": len(items), "traceId": trace_id})

    async def _guide_list(self, request: web.Request, ctx: _Context) -> web.Response:
        location = self._located(request, ctx)
        return _json({"associations": [a.to_json() for a in location.associations.values()]})

    async def _official_by_key(self, request: web.Request, ctx: _Context) -> web.Response:
        location = self._located(request, ctx)
        return _json(self._by_key(location, request.match_info["key"]).to_json())

    async def _guide_by_key(self, request: web.Request, ctx: _Context) -> web.Response:
        location = self._located(request, ctx)
        found = self._by_key(location, request.match_info["key"])
        return _json({"association": found.to_json()})

    async def _official_by_object(self, request: web.Request, ctx: _Context) -> web.Response:
        # the spec marks locationId optional here: without it, the token's location
        _, location = self._prepare(request, ctx, allowed=("locationId",))
        if location is None:
            assert ctx.token_location is not None
            location = self._guard(ctx, ctx.token_location)
        return self._with_object(location, request.match_info["object_key"])

    async def _guide_by_object(self, request: web.Request, ctx: _Context) -> web.Response:
        location = self._located(request, ctx)
        return self._with_object(location, request.match_info["object_key"])

    @staticmethod
    def _with_object(location: _Location, object_key: str) -> web.Response:
        found = [
            a.to_json()
            for a in location.associations.values()
            if object_key in (a.first_object_key, a.second_object_key)
        ]
        return _json({"associations": found})

    async def _official_get(self, request: web.Request, ctx: _Context) -> web.Response:
        self._prepare(request, ctx)
        _, association = self._by_id(ctx, request.match_info["id"])
        return _json(association.to_json())

    async def _official_update(self, request: web.Request, ctx: _Context) -> web.Response:
        body = await self._body(request)
        self._prepare(request, ctx, body)
        fields = self._fields(body, _UPDATE_FIELDS)
        location, association = self._by_id(ctx, request.match_info["id"])
        if association.association_type == "SYSTEM_DEFINED":
            raise _ApiError(400, "System defined associations cannot be updated")
        first, second = fields["firstObjectLabel"], fields["secondObjectLabel"]
        updated = replace(association, first_object_label=first, second_object_label=second)
        self._check(location, updated, conflict_status=400)
        association.first_object_label, association.second_object_label = first, second
        self.stats.updates_applied += 1
        ctx.applied = True
        return _json(association.to_json())

    async def _delete(self, request: web.Request, ctx: _Context) -> web.Response:
        self._prepare(request, ctx)
        location, association = self._by_id(ctx, request.match_info["id"])
        if association.association_type == "SYSTEM_DEFINED":
            raise _ApiError(400, "System defined associations cannot be deleted")
        del location.associations[association.id]
        self._owners.pop(association.id, None)
        self.stats.deletes_applied += 1
        ctx.applied = True
        message = "Association deleted successfully"
        return _json({"deleted": True, "id": association.id, "message": message})

    async def _objects(self, request: web.Request, ctx: _Context) -> web.Response:
        location = self._located(request, ctx)
        return _json({"objects": [o.to_json() for o in location.objects.values()]})

    def _located(self, request: web.Request, ctx: _Context) -> _Location:
        """For routes whose only query parameter is a required locationId."""
        _, location = self._prepare(request, ctx, allowed=("locationId",), required=("locationId",))
        assert location is not None
        return location

    # -- admin endpoints (no auth, no faults, no limits, not counted) ------------------

    async def _admin_tokens(self, request: web.Request) -> web.Response:
        body = await _admin_body(request)
        locations = body.get("locations")
        if not isinstance(locations, list) or not all(isinstance(x, str) and x for x in locations):
            return _ApiError(400, "locations must be a list of location ids").response()
        return _json({"tokens": {loc: self.issue_token(loc) for loc in locations}})

    async def _admin_associations(self, request: web.Request) -> web.Response:
        body = await _admin_body(request)
        try:
            fields = self._fields(
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
        except _ApiError as exc:
            return exc.response()
        except ValueError as exc:
            return _ApiError(400, str(exc)).response()
        return _json(created, status=201)

    async def _admin_state(self, request: web.Request) -> web.Response:
        stats = asdict(self.stats)
        return _json({"snapshot": self.snapshot(), "stats": stats, "log_size": len(self.log)})

    async def _admin_log(self, request: web.Request) -> web.Response:
        return _json([asdict(entry) for entry in self.log])


def _query_error(name: str, given: list[str]) -> str | None:
    """Validation message for one query parameter, NestJS class-validator style."""
    if name == "locationId":
        if len(given) != 1:
            return "locationId must be a string"
        return None if given[0].strip() else "locationId should not be empty"
    number = given[0].strip() if len(given) == 1 else ""
    if not number.lstrip("-").isdigit():
        return f"{name} must be a number conforming to the specified constraints"
    low, high = (0, None) if name == "skip" else (1, 500)
    if int(number) < low:
        return f"{name} must not be less than {low}"
    if high is not None and int(number) > high:
        return f"{name} must not be greater than {high}"
    return None


async def _admin_body(request: web.Request) -> dict[str, Any]:
    try:
        data = orjson.loads(await request.read() or b"{}")
    except orjson.JSONDecodeError as exc:
        raise web.HTTPBadRequest(text=f"invalid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise web.HTTPBadRequest(text="the body must be a JSON object")
    return data


# -- running it as a process -----------------------------------------------------------


def serve(
    config: SandboxConfig,
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    locations: Sequence[str] = (),
    tokens_file: str | None = None,
    ready: Callable[[str], None] | None = None,
) -> None:
    """Run a sandbox until SIGINT or SIGTERM (blocking).

    Issues tokens for ``locations`` and, if ``tokens_file`` is given, writes them there as
    CSV (header ``location_id,token``, mode 0600) before calling ``ready(url)``.
    """
    asyncio.run(
        _serve(
            config, host=host, port=port, locations=locations, tokens_file=tokens_file, ready=ready
        )
    )


async def _serve(
    config: SandboxConfig,
    *,
    host: str,
    port: int,
    locations: Sequence[str],
    tokens_file: str | None,
    ready: Callable[[str], None] | None,
) -> None:
    sandbox = Sandbox(config)
    tokens = {location: sandbox.issue_token(location) for location in locations}
    url = await sandbox.start(host, port)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    installed: list[signal.Signals] = []
    try:
        if tokens_file is not None:
            _write_tokens(tokens_file, tokens)
        for sig in (signal.SIGINT, signal.SIGTERM):
            # not possible off the main thread or on Windows: then Ctrl-C ends asyncio.run
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, stop.set)
                installed.append(sig)
        if ready is not None:
            ready(url)
        await stop.wait()
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
        await sandbox.aclose()


def _write_tokens(path: str, tokens: dict[str, str]) -> None:
    """Write ``location_id,token`` rows readable by the owner only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # O_CREAT's mode does not apply to a file that already existed
    with os.fdopen(fd, "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["location_id", "token"])
        writer.writerows(tokens.items())
