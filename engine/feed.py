"""The order records are sent in: round-robin across locations, read from the store in batches.

Each location has its own rate budget on the server, so a run that sent one location's
records before the next one's would idle most of its budget; round-robin keeps every
location busy and lets no large location starve the rest. Only a short batch per location
is in memory at a time (the rest waits in the :class:`~engine.store.RunStore`).

Batches are sized so that all of them together hold about ``budget`` records: many locations
read one record at a time, a few read larger batches. (At 5,000 locations, a batch of 16
each would keep 80,000 records in memory, which is the job's size again.)

The feed is a plain iterator, shared by every worker of the run: ``next()`` never awaits,
so no two workers are inside it at once, and a worker takes a record only when it is free
(which is the run's backpressure).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

from .model import Record
from .store import RunStore

__all__ = ["Feed"]


@dataclass(slots=True)
class _Cursor:
    location: str
    after: int = -1
    batch: deque[tuple[int, Record]] = field(default_factory=deque)


class Feed(Iterator[tuple[int, Record]]):
    """Yields ``(position, record)`` for every record of ``store`` still to do."""

    def __init__(self, store: RunStore, *, budget: int = 2048, batch: int = 64) -> None:
        self._store = store
        self._ring = deque(_Cursor(location) for location in store.locations())
        self._batch = max(1, min(batch, budget // max(1, len(self._ring))))
        self._finished: set[str] = set()

    def __iter__(self) -> Iterator[tuple[int, Record]]:
        return self

    def __next__(self) -> tuple[int, Record]:
        ring = self._ring
        while ring:
            cursor = ring.popleft()
            if not cursor.batch:
                cursor.batch.extend(self._store.todo(cursor.location, cursor.after, self._batch))
                if not cursor.batch:
                    self._finished.add(cursor.location)
                    continue
                cursor.after = cursor.batch[-1][0]
            item = cursor.batch.popleft()
            ring.append(cursor)
            return item
        raise StopIteration

    @property
    def batch(self) -> int:
        """Records read from the store at a time, per location."""
        return self._batch

    def exhausted(self, location: str) -> bool:
        """Whether every record of ``location`` has been handed out."""
        return location in self._finished

    @property
    def locations(self) -> int:
        """Locations that still have records to hand out."""
        return len(self._ring)
