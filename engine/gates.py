"""A run's limiters, one per location, each made when its location is first asked for.

A location is a budget of its own on the server (its own limit, window, daily count and
429s), so a run keeps a map of limiters rather than one, and a job that names many locations
pays only for those it reaches.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import anyio

from .limiter import Clock, LocationLimiter, Sleep
from .rates import check_rate

__all__ = ["LocationGates"]


class LocationGates:
    """Lazily creates one LocationLimiter per location, inside the running loop.

    Each location is a separate budget on the server, so one location's 429s or exhausted
    daily budget never slow another.
    """

    __slots__ = ("_clock", "_gates", "_interval", "_limit", "_sleep")

    def __init__(
        self,
        limit: int,
        interval: float,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = anyio.sleep,
    ) -> None:
        check_rate(limit, interval)
        self._limit = limit
        self._interval = interval
        self._clock = clock
        self._sleep = sleep
        self._gates: dict[str, LocationLimiter] = {}

    def __getitem__(self, location_id: str) -> LocationLimiter:
        gate = self._gates.get(location_id)
        if gate is None:
            gate = LocationLimiter(
                self._limit, self._interval, clock=self._clock, sleep=self._sleep, name=location_id
            )
            self._gates[location_id] = gate
        return gate

    def budget(self, location_id: str) -> tuple[int, float]:
        """The location's limit and interval (the starting ones before its first request)."""
        gate = self._gates.get(location_id)
        if gate is None:
            return self._limit, self._interval
        return gate.limit, gate.interval

    def __len__(self) -> int:
        return len(self._gates)

    # Explicit, because the fallbacks for ``in`` and iteration would call __getitem__ with
    # 0, 1, 2, ... and create limiters forever.
    def __contains__(self, location_id: object) -> bool:
        return location_id in self._gates

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._gates))
