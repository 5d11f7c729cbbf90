"""The sandbox's settings, its counters, and what its request log keeps of each request."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["LoggedRequest", "SandboxConfig", "SandboxStats"]


@dataclass(frozen=True, slots=True, kw_only=True)
class SandboxConfig:
    """How the sandbox behaves; the defaults are the documented production limits, no faults."""

    rate_limit: int = 100  # requests per interval per location (0 = no limit)
    rate_interval: float = 10.0  # seconds
    daily_limit: int = 200_000  # requests per location per day (0 = no limit)
    advertise_limit: int | None = None  # what X-RateLimit-Max says; None = rate_limit
    throttle_below: int | None = None  # real limit, lower than the advertised one
    window: Literal["sliding", "fixed"] = "sliding"  # how the burst window counts
    retry_after: bool = False  # send Retry-After (seconds, rounded up) on 429s
    bare_429: bool = False  # a 429 carries Retry-After and no X-RateLimit-* headers
    #: another client spending each location's budget: (requests, per seconds), evenly spaced
    contention: tuple[int, float] | None = None
    contention_after: float = 0.0  # seconds after the location's first request it starts
    contention_for: float = math.inf  # seconds it lasts
    page_cap: int = 50  # most items a list page holds, whatever limit asked
    fail_rate: float = 0.0  # per request: 500/502/503/504 before doing anything
    reset_rate: float = 0.0  # per request: drop the connection before doing anything
    lost_response_rate: float = 0.0  # per write: apply the change, then drop the connection
    stall_rate: float = 0.0  # per request: hang stall_seconds, then answer normally
    stall_seconds: float = 60.0
    latency: tuple[float, float] = (0.0, 0.0)  # min, max milliseconds added to every request
    seed: int | None = None  # seeds the one random.Random behind every fault decision
    objects: tuple[str, ...] = ("custom_objects.property", "custom_objects.pet")
    records: int = 0  # generated records per object per location: contact-1 .. contact-N
    relation_status: int = 201  # a relation create's success status (the field has seen 200)
    wrap_relation: bool = False  # answer a relation create as {"relation": {...}}
    clock: Callable[[], float] = time.monotonic  # seconds, for rate windows and token expiry
    #: seconds a location token minted with an agency token lives (the service: 86399)
    token_lifetime: float = 86_399.0
    #: seconds a company's first agency token lives (a renewed one lives a day)
    agency_token_lifetime: float = 86_399.0
    #: the Marketplace app every company token and minted token belongs to
    app_id: str = "sandbox-app"
    #: what the app may do in a location where it is installed (its minted tokens' scopes)
    app_scopes: tuple[str, ...] = (
        "associations.readonly",
        "associations.write",
        "associations/relation.readonly",
        "associations/relation.write",
        "objects/schema.readonly",
    )


@dataclass(slots=True, kw_only=True)
class SandboxStats:
    """Counters over every non-admin request since the sandbox was created."""

    requests: int = 0
    creates_applied: int = 0
    updates_applied: int = 0
    deletes_applied: int = 0
    throttled: int = 0  # 429s sent
    daily_throttled: int = 0  # of which because the daily budget was spent
    contention_admitted: int = 0  # the other client's requests (contention) admitted...
    contention_refused: int = 0  # ...and refused because the window was full
    faults_injected: dict[str, int] = field(default_factory=dict)  # kind -> count
    cross_location_token_uses: int = 0  # answered 403
    relation_creates_applied: int = 0
    relation_deletes_applied: int = 0  # DELETE /associations/relations/{id}
    relation_cascade_deletes: int = 0  # relations deleted with their definition
    #: location -> how many tokens were minted for it with an agency token
    tokens_minted: dict[str, int] = field(default_factory=dict)
    #: location -> key -> {"created": n, "deleted": m}: the creates and deletes the API
    #: applied to each key over the sandbox's life (lost responses included, seeds not).
    #: A key can be live once at most, so ``created - deleted`` above 1 means a duplicate.
    writes_by_key: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)

    def count_write(self, location_id: str, key: str, kind: Literal["created", "deleted"]) -> None:
        """Count one applied create or delete of ``key`` in ``location_id``."""
        counts = self.writes_by_key.setdefault(location_id, {}).setdefault(
            key, {"created": 0, "deleted": 0}
        )
        counts[kind] += 1


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
    #: the client's User-Agent, which tells processes apart (not compared: tests match the rest)
    user_agent: str | None = field(default=None, compare=False)
    #: the company of an agency token (then ``token_location`` is None)
    token_company: str | None = None
    #: which kind of token authenticated it: "pit", "minted" or "agency" (None: none did)
    token_kind: str | None = None
    #: when it arrived, in seconds of the sandbox's clock (not compared: tests match the rest)
    at: float = field(default=0.0, compare=False)
