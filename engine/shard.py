"""Shards: one job split between N processes by location, with nothing to coordinate.

Servers budget requests per location (and per token), so a location is the unit that can
move to another process without two processes sharing a budget: a shard owns its
locations, all of their records, and nothing else. The owner is a pure function of the
location id and N, so N processes started anywhere (Kubernetes Indexed Job pods, a CI
matrix, a shell loop) agree on it without talking to each other or to a scheduler:

    shard of a location = int.from_bytes(sha256(location_id as UTF-8), "big") % N

Python's own ``hash`` of a string is salted per process, so it is never used. Shards are
numbered from 0 to N-1, as Kubernetes numbers an Indexed Job's pods
(``JOB_COMPLETION_INDEX``), so ``--shard $(JOB_COMPLETION_INDEX)/N`` reads naturally. For a
given N every location, and so every record, lands in exactly one shard; a record without a
location id is in the shard of the empty id. Another N moves most locations to other
shards, which is why reports of different splits are never merged.

A journal names the shards its report covers as text: ``"2/4"`` for one shard, and
``"0,1,3/4"`` for a merge of some of them (see :mod:`engine.merge`); an unsharded run's
journal names none.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["Shard", "ShardSet", "shard_of"]


def shard_of(location_id: str, count: int) -> int:
    """The shard (0 to ``count`` - 1) that owns ``location_id`` when a job is split in
    ``count``: the SHA-256 of its UTF-8 bytes, as a big-endian integer, modulo ``count``."""
    digest = hashlib.sha256(location_id.encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest, "big") % count


def _number(text: str, what: str) -> int:
    text = text.strip()
    if not text.isdigit():
        raise ValueError(f"{what} must be a whole number, not {text!r}")
    return int(text)


@dataclass(frozen=True, slots=True)
class Shard:
    """Shard ``index`` of ``count``: the records of the locations :func:`shard_of` gives
    ``index`` for."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ValueError(f"the number of shards must be at least 1, not {self.count}")
        if not 0 <= self.index < self.count:
            raise ValueError(
                f"shard {self.index} of {self.count} does not exist: shards are numbered "
                f"0 to {self.count - 1} (as Kubernetes numbers JOB_COMPLETION_INDEX)"
            )

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``"K/N"`` → ``Shard(K, N)``; ``ValueError`` saying what is wrong otherwise."""
        index, slash, count = text.partition("/")
        if not slash:
            raise ValueError(f"expected K/N, such as 0/4 (shard 0 of 4), not {text!r}")
        return cls(_number(index, "K"), _number(count, "N"))

    def owns(self, location_id: str) -> bool:
        """Whether the records of ``location_id`` are this shard's."""
        return self.count == 1 or shard_of(location_id, self.count) == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


@dataclass(frozen=True, slots=True)
class ShardSet:
    """Some shards of one split: what a shard's report, or a merge of several, covers."""

    indexes: frozenset[int]
    count: int

    @classmethod
    def of(cls, shards: Iterable[int], count: int) -> ShardSet:
        """The set of ``shards`` out of ``count``."""
        return cls(frozenset(shards), count)

    @classmethod
    def parse(cls, text: str) -> ShardSet:
        """``"2/4"`` or ``"0,1,3/4"`` (as a journal writes it); ``ValueError`` otherwise."""
        indexes, slash, count = text.partition("/")
        if not slash or not indexes:
            raise ValueError(f"expected K/N or K,K,.../N, not {text!r}")
        n = _number(count, "N")
        found = frozenset(_number(k, "K") for k in indexes.split(","))
        for index in found:
            Shard(index, n)  # raises when out of range
        return cls(found, n)

    @property
    def missing(self) -> tuple[int, ...]:
        """The shards of the split that this set does not cover, in order."""
        return tuple(k for k in range(self.count) if k not in self.indexes)

    def owns(self, location_id: str) -> bool:
        """Whether the records of ``location_id`` are in one of these shards."""
        return shard_of(location_id, self.count) in self.indexes

    def __str__(self) -> str:
        return f"{','.join(str(k) for k in sorted(self.indexes))}/{self.count}"

    def describe(self) -> str:
        """``shard 2 of 4``, ``shards 0, 1, 3 of 4``: for messages."""
        shown = sorted(self.indexes)
        if len(shown) == 1:
            return f"shard {shown[0]} of {self.count}"
        return f"shards {', '.join(str(k) for k in shown)} of {self.count}"
