"""Fault injection for :mod:`jobs.sandbox`: seeded dice and the ways a request can go wrong.

Every admitted request rolls the dice exactly once, and every roll draws the same
number of values from one :class:`random.Random`, whatever the outcome. So with a
seed, the n-th admitted request always meets the same faults, whichever faults the
requests before it met (concurrent requests may still arrive in a different order).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from http import HTTPStatus

import orjson
from aiohttp import web

__all__ = ["FaultDice", "FaultPlan", "drop_connection", "gateway_error"]

_FAIL_STATUSES = (500, 502, 503, 504)


@dataclass(frozen=True, slots=True, kw_only=True)
class FaultPlan:
    """What goes wrong with one request; a plan with every field false/zero is harmless."""

    reset: bool  # drop the connection before doing anything
    fail_status: int | None  # answer this 5xx before doing anything
    fail_html: bool  # ... with a proxy's HTML page rather than NestJS JSON
    stall: bool  # hang for the configured stall before answering normally
    latency: float  # seconds added before handling
    lost_response: bool  # for writes: apply the change, then drop the connection


class FaultDice:
    """Rolls one :class:`FaultPlan` per request from a single seeded generator."""

    def __init__(
        self,
        *,
        reset_rate: float,
        fail_rate: float,
        stall_rate: float,
        lost_response_rate: float,
        latency_ms: tuple[float, float],
        seed: int | None,
    ) -> None:
        self._rng = random.Random(seed)
        self._reset_rate = reset_rate
        self._fail_rate = fail_rate
        self._stall_rate = stall_rate
        self._lost_rate = lost_response_rate
        self._latency_ms = latency_ms

    def roll(self) -> FaultPlan:
        """Draw the faults for the next request (always seven draws, see module docs)."""
        rng = self._rng
        reset = rng.random() < self._reset_rate
        fail = rng.random() < self._fail_rate
        status = rng.choice(_FAIL_STATUSES)
        html = rng.random() < 0.5
        stall = rng.random() < self._stall_rate
        low, high = self._latency_ms
        latency_ms = rng.uniform(low, high)
        lost = rng.random() < self._lost_rate
        return FaultPlan(
            reset=reset,
            fail_status=status if fail else None,
            fail_html=html,
            stall=stall,
            latency=max(0.0, latency_ms) / 1000.0,
            lost_response=lost,
        )


def gateway_error(status: int, *, html: bool) -> web.Response:
    """A transient 5xx, either as a proxy's HTML page or as a NestJS JSON error."""
    phrase = HTTPStatus(status).phrase
    if html:
        page = f"<html><body><h1>{status} {phrase}</h1></body></html>"
        return web.Response(status=status, text=page, content_type="text/html")
    body = orjson.dumps({"statusCode": status, "message": phrase, "error": phrase})
    return web.Response(status=status, body=body, content_type="application/json")


def drop_connection(request: web.Request) -> web.Response:
    """Close the connection under the request without answering.

    The client sees a disconnect (``aiohttp.ServerDisconnectedError``), never a status.
    The returned response only satisfies aiohttp: writing it to the closed transport is
    silently skipped.
    """
    transport = request.transport
    if transport is not None:
        transport.abort()
    return web.Response(status=499)
