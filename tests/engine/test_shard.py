"""Shards: which process owns which location, the same in every process and every release."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from collections import Counter

import pytest

from engine import Shard, ShardSet, shard_of

IDS = [f"loc{i:04d}x{i * 7919 % 1000:03d}" for i in range(2000)]


def test_shard_of_is_sha256_modulo_n() -> None:
    """The owner is SHA-256 of the UTF-8 id, as a big-endian integer, modulo N (documented)."""
    for location in [*IDS[:200], "", "ve9EPM428h8vShlRW1KT", "ünïcødé"]:
        for count in (1, 2, 3, 4, 7, 64):
            expected = int(hashlib.sha256(location.encode()).hexdigest(), 16) % count
            assert shard_of(location, count) == expected


def test_known_answers_do_not_change_between_releases() -> None:
    """Pinned answers: a release that moved a location to another shard would split a resumed
    job differently from the run it continues."""
    assert [
        shard_of(location, 4)
        for location in ("ve9EPM428h8vShlRW1KT", "Hx2kQm7RtY0pLw3sVb9N", "Zq4TnB8cWe1uKd6fGh2J")
    ] == [1, 2, 1]
    assert shard_of("ve9EPM428h8vShlRW1KT", 64) == 61
    assert shard_of("", 7) == 1  # records without a location id


def test_the_same_in_another_process_with_another_hash_seed() -> None:
    """Python's salted ``hash`` would differ per process; the shard never does."""
    code = "from engine import shard_of; print([shard_of(f'loc{i}', 5) for i in range(50)])"
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("1", "2", "3")
    }
    assert outputs == {f"{[shard_of(f'loc{i}', 5) for i in range(50)]}\n"}


@pytest.mark.parametrize("count", [1, 2, 3, 4, 5, 8])
def test_every_location_is_in_exactly_one_shard(count: int) -> None:
    """For a given N every location is owned by one shard and one only."""
    shards = [Shard(k, count) for k in range(count)]
    for location in [*IDS, ""]:
        assert sum(shard.owns(location) for shard in shards) == 1


def test_shards_are_about_even() -> None:
    """2,000 ids over 4 shards: each shard holds a quarter, give or take a tenth of it."""
    sizes = Counter(shard_of(location, 4) for location in IDS)
    assert set(sizes) == {0, 1, 2, 3}
    assert all(450 <= n <= 550 for n in sizes.values()), sizes


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "4/4",
            "shard 4 of 4 does not exist: shards are numbered 0 to 3 "
            "(as Kubernetes numbers JOB_COMPLETION_INDEX)",
        ),
        ("1/0", "the number of shards must be at least 1, not 0"),
        ("a/4", "K must be a whole number, not 'a'"),
        ("-1/4", "K must be a whole number, not '-1'"),
        ("1/x", "N must be a whole number, not 'x'"),
        ("2", "expected K/N, such as 0/4 (shard 0 of 4), not '2'"),
    ],
)
def test_a_bad_shard_says_what_is_wrong(text: str, message: str) -> None:
    """``--shard`` text that is not K/N with 0 <= K < N is refused, saying why."""
    with pytest.raises(ValueError, match=re.escape(message)):
        Shard.parse(text)


def test_shard_text_round_trips() -> None:
    """``Shard.parse(str(s)) == s``; ``ShardSet`` reads one shard and several alike."""
    assert Shard.parse(" 3 / 8 ") == Shard(3, 8)
    assert str(Shard(3, 8)) == "3/8"
    assert ShardSet.parse("2/4") == ShardSet.of([2], 4)
    merged = ShardSet.parse("3,0,1/4")
    assert str(merged) == "0,1,3/4"
    assert merged.missing == (2,)
    assert merged.describe() == "shards 0, 1, 3 of 4"
    assert ShardSet.parse("2/4").describe() == "shard 2 of 4"
    with pytest.raises(ValueError, match="shard 5 of 4 does not exist"):
        ShardSet.parse("0,5/4")


def test_a_shard_set_owns_the_locations_of_its_shards() -> None:
    """A merge of shards owns exactly what its shards own."""
    merged = ShardSet.of([0, 2], 4)
    for location in IDS[:300]:
        assert merged.owns(location) == (Shard(0, 4).owns(location) or Shard(2, 4).owns(location))
