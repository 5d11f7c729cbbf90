"""Items in insertion order with positional paging in O(log n): what the paged list needs.

The list route answers ``skip``/``limit`` pages in creation order. Copying a location's
definitions into a fresh list for each page costs O(n) per page, so walking every page of
50,000 definitions costs O(n²). Here each item keeps its slot in an append-only list (a
removed one leaves a hole), and a Fenwick tree over the slots counts the live items, so the
slot of the k-th live item is found in O(log n) and a page costs O(log n + its size). Holes
are squeezed out once they outnumber the live items: O(n) once per n/2 removals, so O(1) per
removal on average.
"""

from __future__ import annotations

from typing import Generic, TypeVar

__all__ = ["Ranked"]

T = TypeVar("T")

_MIN_HOLES = 64  # below this many holes, squeezing them out is not worth a rebuild


class Ranked(Generic[T]):
    """Live items by id, in the order they were added; pages by position."""

    __slots__ = ("_live", "_slot_of", "_slots", "_tree")

    def __init__(self) -> None:
        self._slots: list[T | None] = []  # None where an item was removed
        self._slot_of: dict[str, int] = {}  # id -> slot
        self._tree: list[int] = [0]  # 1-based Fenwick tree of live flags over the slots
        self._live = 0

    def __len__(self) -> int:
        return self._live

    def add(self, item_id: str, item: T) -> None:
        """Append an item (its id must not be present)."""
        self._slot_of[item_id] = len(self._slots)
        self._slots.append(item)
        # A new Fenwick node covers (i - lowbit(i), i]: itself plus the nodes that end inside.
        i = len(self._slots)
        count, j, stop = 1, i - 1, i - (i & -i)
        while j > stop:
            count += self._tree[j]
            j -= j & -j
        self._tree.append(count)
        self._live += 1

    def remove(self, item_id: str) -> None:
        """Remove an item by id; KeyError if it is not present."""
        slot = self._slot_of.pop(item_id)
        self._slots[slot] = None
        i, size = slot + 1, len(self._slots)
        while i <= size:
            self._tree[i] -= 1
            i += i & -i
        self._live -= 1
        holes = len(self._slots) - self._live
        if holes >= _MIN_HOLES and holes > self._live:
            self._squeeze()

    def page(self, skip: int, size: int) -> list[T]:
        """The live items at positions ``skip`` to ``skip + size - 1``."""
        out: list[T] = []
        rank, end = skip, min(skip + size, self._live)
        while rank < end:
            slot = self._find(rank)
            # Take the run of live items from there; at a hole, find the next one afresh.
            while rank < end and (item := self._slots[slot]) is not None:
                out.append(item)
                rank += 1
                slot += 1
        return out

    def _find(self, rank: int) -> int:
        """The slot of the live item at position ``rank`` (0-based, < len)."""
        pos, remaining, size = 0, rank + 1, len(self._slots)
        step = 1 << size.bit_length()
        while step:
            nxt = pos + step
            if nxt <= size and self._tree[nxt] < remaining:
                pos = nxt
                remaining -= self._tree[nxt]
            step >>= 1
        return pos  # the 1-based node pos + 1 is the slot pos

    def _squeeze(self) -> None:
        """Drop the holes and rebuild the tree in O(n)."""
        # _slot_of is in slot order: ids are added in order and renumbered in order here.
        self._slots = [self._slots[slot] for slot in self._slot_of.values()]
        self._slot_of = {item_id: slot for slot, item_id in enumerate(self._slot_of)}
        size = len(self._slots)
        tree = [0] + [1] * size
        for i in range(1, size + 1):
            parent = i + (i & -i)
            if parent <= size:
                tree[parent] += tree[i]
        self._tree = tree
