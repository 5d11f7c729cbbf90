"""A sharded run as it runs on a cluster: N separate processes against one service.

Four ``python -m engine run --shard K/4`` processes run at once against one sandbox process;
the same job runs unsharded against a second sandbox seeded alike. ``report merge`` joins the
shards, and ``rollback`` of the merged report undoes them (both in this process: they need
no cluster). The sandbox's request log records
each request's User-Agent, which names the sending process (``ghl-migrate/V (pid P)``): the
ground truth for "no location was touched by two shards".
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from engine import read_report, shard_of
from engine.cli import main
from tests.reliability.test_faults import Finished, Harness

N = 4
SEEDED = [
    # (location index, key, objects): a job row's key with the same objects ends 'exists';
    # with other objects 'conflict'; neither is touched, by the run or by the rollback
    (0, "def_1", ("custom_objects.pet", "contact")),
    (5, "def_2", ("custom_objects.pet", "business")),
]


def spread_locations(per_shard: int) -> list[str]:
    """Location ids, ``per_shard`` in each shard, interleaved as a real job would have them."""
    found: dict[int, list[str]] = defaultdict(list)
    number = 0
    while len(found) < N or any(len(ids) < per_shard for ids in found.values()):
        location = f"L{number:03d}sub{'0' * 13}"
        if len(found[shard_of(location, N)]) < per_shard:
            found[shard_of(location, N)].append(location)
        number += 1
    return sorted(loc for ids in found.values() for loc in ids)


def write_job(path: Path, locations: list[str]) -> None:
    """Three definitions per location, a row that fails (no such object) and an invalid one."""
    lines = ["location_id,key,first_object_key,second_object_key,first_object_label"]
    for location in locations:
        lines += [f"{location},def_{n},custom_objects.pet,contact,Pet {n}" for n in (1, 2, 3)]
    lines.insert(5, f"{locations[2]},boat_owner,custom_objects.boat,contact,Boat")
    lines.insert(9, f"{locations[3]},,custom_objects.pet,contact,No key")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def seed(harness: Harness, locations: list[str]) -> None:
    for index, key, (first, second) in SEEDED:
        harness.admin(
            "POST",
            "/_sandbox/associations",
            {"locationId": locations[index], "key": key, "firstObjectKey": first,
             "secondObjectKey": second, "firstObjectLabel": f"Old {key}",
             "secondObjectLabel": f"Older {key}"},
        )  # fmt: skip


def cli(*args: str) -> Finished:
    """``ghl-migrate ARGS`` in this process (merging and rolling back need no cluster)."""
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return Finished(result.exit_code, result.stdout, result.stderr)


def without_ids(rows: list[dict[str, str]]) -> list[dict[str, Any]]:
    return [{**row, "association_id": bool(row["association_id"])} for row in rows]


def senders(harness: Harness) -> dict[str, set[int]]:
    """Location → the pids of the processes that sent API requests for it."""
    found: dict[str, set[int]] = defaultdict(set)
    for entry in harness.admin("GET", "/_sandbox/log"):
        if entry["path"].startswith("/_") or entry["token_location"] is None:
            continue
        match = re.fullmatch(r"ghl-migrate/\S+ \(pid (\d+)\)", entry["user_agent"] or "")
        assert match, entry
        found[entry["token_location"]].add(int(match.group(1)))
    return found


def test_four_shard_processes_merged_equal_one_unsharded_run(tmp_path: Path) -> None:
    """Four shard processes against one sandbox: merged, their report equals one unsharded
    run's; every location was served to exactly one process, its shard's; the merged report
    rolls back to the seeded state."""
    locations = spread_locations(per_shard=3)
    (tmp_path / "single").mkdir()
    shards, single = Harness(tmp_path), Harness(tmp_path / "single")
    try:
        for harness in (shards, single):
            harness.start_sandbox(locations, "--rate-limit", "0")
            seed(harness, locations)
            write_job(harness.dir / "job.csv", locations)
        runs = [
            shards.start_run(shards.dir / "job.csv", "--shard", f"{k}/{N}", "--no-progress",
                             report=shards.dir / f"shard-{k}.csv")
            for k in range(N)
        ]  # fmt: skip
        baseline = single.start_run(single.dir / "job.csv", report=single.dir / "out.csv")
        finished: list[Finished] = [run.wait(timeout=60) for run in runs]
        assert baseline.wait(timeout=60).rc == 1  # the boat, the invalid row, the conflict
        for k, done in enumerate(finished):
            assert done.rc in (0, 1), done.err
            assert f"shard {k}/{N}: " in done.out

        # No location was served to two processes, and each to its own shard's.
        pids = {run.proc.pid: k for k, run in enumerate(runs)}
        by_location = senders(shards)
        assert set(by_location) == set(locations)
        for location, sent_by in by_location.items():
            assert len(sent_by) == 1, (location, sent_by)
            assert pids[sent_by.pop()] == shard_of(location, N)
        assert set(pids.values()) == set(range(N))

        merged = shards.dir / "merged.csv"
        reports = [str(shards.dir / f"shard-{k}.csv") for k in (2, 0, 3, 1)]
        done = cli("report", "merge", str(merged), *reports)
        assert done.rc == 0, done.err
        assert f"merged shards 0, 1, 2, 3 of {N}" in done.out
        merged_rows = read_report(str(merged))
        single_rows = read_report(str(single.dir / "out.csv"))
        assert without_ids(merged_rows) == without_ids(single_rows)
        assert {row["outcome"] for row in merged_rows} == {
            "created", "exists", "conflict", "failed", "invalid"
        }  # fmt: skip

        undo = cli(
            "rollback", str(merged), "--yes", "--tokens", str(shards.tokens_file),
            "--report", str(shards.dir / "undo.csv"),
        )  # fmt: skip
        assert undo.rc == 0, undo.err
        created = sum(row["outcome"] == "created" for row in merged_rows)
        assert f"rollback would delete {created} definition(s) in {len(locations)} location" in (
            undo.err
        )
        snapshot = shards.admin("GET", "/_sandbox/state")["snapshot"]
        left = sorted((loc, d["key"]) for loc, defs in snapshot.items() for d in defs)
        assert left == sorted((locations[i], key) for i, key, _ in SEEDED)
    finally:
        shards.close()
        single.close()
