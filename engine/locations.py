"""Each location is prepared once (its job kind's ``prepare``) and its state kept while needed.

A job kind usually reads something of a location before it writes there: the definitions
already in place, the ids that association keys stand for. The first record of a location
to arrive runs that preparation; the others wait for it and share its result. A location
whose preparation fails fails all its records with the same reason, without sending more.
When a location's last record is done its state is dropped, so memory follows the locations
in progress, not the job.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio

from .errors import LocationError, RequestError

__all__ = ["LocationStates"]


@dataclass(slots=True)
class _Entry:
    done: anyio.Event
    state: Any = None
    error: LocationError | None = None
    ready: bool = False


class LocationStates:
    """Prepares each location once with ``prepare(location)``; see the module docstring.

    ``prepare`` returns the location's state or raises: ``LocationError`` (the kind's own
    reason), ``RequestError`` (reported as ``reading location L: ...``). Anything else (a
    stopped run) propagates to the record that ran it; the records waiting for it then see
    ``None`` and are left ``not_run``.
    """

    def __init__(self, prepare: Callable[[str], Awaitable[Any]]) -> None:
        self._prepare = prepare
        self._entries: dict[str, _Entry] = {}

    async def get(self, location: str) -> Any:
        """The location's state, or its ``LocationError``; None if preparation was cut short."""
        entry = self._entries.get(location)
        if entry is None:
            entry = self._entries[location] = _Entry(done=anyio.Event())
            try:
                entry.state = await self._prepare(location)
                entry.ready = True
            except LocationError as exc:
                entry.error = exc
            except RequestError as exc:
                entry.error = LocationError(
                    f"reading location {location}: {exc}",
                    http_status=getattr(exc, "status", None),
                    attempts=exc.attempts,
                )
            finally:
                entry.done.set()
        elif not entry.done.is_set():
            await entry.done.wait()
        if entry.error is not None:
            return entry.error
        return entry.state if entry.ready else None

    def forget(self, location: str) -> None:
        """Drop the location's state (its last record is done)."""
        entry = self._entries.get(location)
        if entry is not None and entry.done.is_set():
            del self._entries[location]

    def __len__(self) -> int:
        return len(self._entries)
