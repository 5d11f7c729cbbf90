"""What happens around every API handler: steps 1 to 5 and 9 of the :mod:`jobs.sandbox` docs.

Unknown routes answer 404; then come the ``Version`` header, the bearer token, the rate
limits of the token's location and the faults; the handler answers; for writes, a lost
response may follow (the handlers themselves do steps 6 to 8). Every request is counted
in the stats and appended to the log.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.typedefs import Handler

from .agency import Agencies, Audience, Principal, audience_of, check_access, required_scope
from .config import LoggedRequest, SandboxConfig, SandboxStats
from .faults import FaultDice, drop_connection, gateway_error
from .limits import RateLimiter
from .responses import ApiError
from .store import Store

__all__ = ["Context", "Endpoint", "Pipeline"]

_API_VERSION = "2021-07-28"
_WRITES = frozenset({"POST", "PUT", "DELETE"})


@dataclass(slots=True)
class Context:
    """What one request has revealed so far, for the log."""

    method: str
    path: str
    at: float  # arrival, in seconds of the sandbox's clock
    location_id: str | None = None
    token_location: str | None = None
    principal: Principal | None = None
    status: int = 0
    applied: bool = False
    faults: list[str] = field(default_factory=list)


def _shared(text: str | None) -> str | None:
    """One copy of a text that many log entries repeat (a path, a location id, a
    User-Agent): each request's headers, query and body are parsed into new strings, which
    the request log would otherwise keep once per request."""
    return None if text is None else sys.intern(text)


Endpoint = Callable[[web.Request, Context], Awaitable[web.Response]]


class Pipeline:
    """Counts, logs, authenticates, rate-limits and injects faults around the endpoints."""

    def __init__(
        self,
        config: SandboxConfig,
        store: Store,
        stats: SandboxStats,
        log: list[LoggedRequest],
        agencies: Agencies,
    ) -> None:
        self._config = config
        self._store = store
        self._agencies = agencies
        self._stats = stats
        self._log = log
        self._limiter = RateLimiter(config, stats)
        self._dice = FaultDice(
            reset_rate=config.reset_rate,
            fail_rate=config.fail_rate,
            stall_rate=config.stall_rate,
            lost_response_rate=config.lost_response_rate,
            latency_ms=config.latency,
            seed=config.seed,
        )

    @web.middleware
    async def unknown_routes(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Step 1: an unknown path or method answers 404 (admin routes excepted)."""
        if request.match_info.http_exception is None or request.path.startswith("/_sandbox/"):
            return await handler(request)
        self._stats.requests += 1
        error = ApiError(404, f"Cannot {request.method} {request.path}")
        self._log.append(
            LoggedRequest(
                method=request.method,
                path=request.path,
                location_id=None,
                token_location=None,
                status=404,
                applied=False,
                user_agent=_shared(request.headers.get("User-Agent")),
                at=self._config.clock(),
            )
        )
        return error.response()

    def wrap(self, endpoint: Endpoint, *, method: str, path: str) -> Handler:
        """The aiohttp handler that runs ``endpoint`` (the route ``method path``) through
        the pipeline, counted and logged."""
        audience, scope = audience_of(path), required_scope(method, path)

        async def handle(request: web.Request) -> web.StreamResponse:
            ctx = Context(request.method, request.path, self._config.clock())
            self._stats.requests += 1
            try:
                return await self._run(request, ctx, endpoint, audience, scope)
            finally:
                principal = ctx.principal
                self._log.append(
                    LoggedRequest(
                        method=ctx.method,
                        path=sys.intern(ctx.path),  # never None
                        location_id=_shared(ctx.location_id),
                        token_location=ctx.token_location,
                        status=ctx.status,
                        applied=ctx.applied,
                        faults=tuple(ctx.faults),
                        user_agent=_shared(request.headers.get("User-Agent")),
                        token_company=principal.company_id if principal else None,
                        token_kind=principal.kind if principal else None,
                        at=ctx.at,
                    )
                )

        return handle

    async def _run(
        self, request: web.Request, ctx: Context, endpoint: Endpoint, audience: Audience, scope: str
    ) -> web.Response:
        """Steps 2 to 9 of the package docs."""
        headers: dict[str, str] = {}
        try:
            ctx.principal = principal = self._authenticate(request)
            ctx.token_location = principal.location_id
            check_access(principal, audience, scope)
            admitted, headers = self._limiter.admit(principal.budget)
            if not admitted:
                self._stats.throttled += 1
                raise ApiError(429, "Too Many Requests", error=None)
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
                    await asyncio.sleep(self._config.stall_seconds)
                if plan.latency > 0:
                    self._fault(ctx, "latency")
                    await asyncio.sleep(plan.latency)
                try:
                    response = await endpoint(request, ctx)
                except ApiError as exc:
                    response = exc.response()
                if plan.lost_response and request.method in _WRITES:
                    self._fault(ctx, "lost_response")
                    return drop_connection(request)
        except ApiError as exc:
            response = exc.response()
        response.headers.update(headers)
        ctx.status = response.status
        return response

    def _fault(self, ctx: Context, kind: str) -> None:
        ctx.faults.append(kind)
        self._stats.faults_injected[kind] = self._stats.faults_injected.get(kind, 0) + 1

    def _authenticate(self, request: web.Request) -> Principal:
        """Who the request's token speaks for, after the Version header check."""
        if request.headers.get("Version") != _API_VERSION:
            raise ApiError(401, "version header was not found.")
        scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not credentials.strip():
            raise ApiError(401, "Unauthorized", error=None)
        principal = self._agencies.principal(credentials.strip())
        if principal is None:  # unknown, or expired
            raise ApiError(401, "Invalid JWT")
        return principal
