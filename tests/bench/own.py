"""The engine's own CPU per record: a whole run in this process, with nothing on the wire.

::

    python -m tests.bench.own                          # 15,000 creates over 50 locations
    python -m tests.bench.own --records 2000 --locations 400
    python -m tests.bench.own --profile 40             # and the 40 costliest functions

The run is ``jobs.api.run_job`` as ``ghl-migrate run`` makes it (report, journal, run
store, JSON logs to a file, the program's garbage collector settings), but its transport
answers at once from memory, as the sandbox would with limits off (all five rate headers, a
very high limit): the objects list, an empty definitions list, and each create echoed back
with an id (``tests.fakes.FakeTransport``). So the CPU time measured is the engine's and
the job kind's alone, with no HTTP client and no server: what the engine adds to each
request a bare aiohttp client would make. Run it before and after a change to the engine's
per-record path; the median of ``--repeat`` runs counts.
"""

from __future__ import annotations

import argparse
import cProfile
import itertools
import pstats
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import orjson

from engine import Request, Response, RunConfig
from engine.cli import tune_gc
from engine.console import configure_logging
from jobs.api import run_job
from tests.bench.bench import OBJECTS, location_ids, write_job, write_tokens
from tests.fakes import FakeTransport

_HEADERS = {
    "content-type": "application/json",
    "x-ratelimit-max": "1000000",
    "x-ratelimit-remaining": "999999",
    "x-ratelimit-interval-milliseconds": "1000",
    "x-ratelimit-limit-daily": "100000000",
    "x-ratelimit-daily-remaining": "99999999",
}
_OBJECTS = orjson.dumps(
    {"objects": [{"key": key, "labels": {"singular": key, "plural": key}} for key in OBJECTS]}
)
_EMPTY = b'{"associations":[]}'


def _answer(ids: Iterator[int]) -> Callable[[Request], Response]:
    """The sandbox's answers with limits off, at once: the objects list, an empty
    definitions list, and each create echoed back with a new id."""

    def answer(request: Request) -> Response:
        if request.method == "GET":
            objects = request.url.rstrip("/").endswith("/objects")
            return Response(status=200, headers=_HEADERS, body=_OBJECTS if objects else _EMPTY)
        body = dict(request.json) | {
            "id": f"{next(ids):024x}",
            "associationType": "USER_DEFINED",
            "createdAt": "2026-01-01T00:00:00.000Z",
        }
        return Response(status=201, headers=_HEADERS, body=orjson.dumps(body))

    return answer


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def one_run(workdir: Path, n: int, *, records: int, locations: int) -> tuple[float, float]:
    """CPU and wall seconds of one run of ``records`` creates over ``locations``."""
    ids = location_ids(f"own{n}x", locations)
    tokens = workdir / f"tokens{n}.csv"
    write_tokens(tokens, {location: f"pit-{location}" for location in ids})
    job = workdir / f"job{n}.csv"
    count = write_job(job, ids, max(1, records // locations))
    config = RunConfig(job_files=(str(job),), report=str(workdir / f"out{n}.csv"))
    transport = FakeTransport(_answer(itertools.count()))  # one checkpoint per answer

    async def main() -> Any:
        return await run_job(
            config, base_url="http://127.0.0.1:9", tokens_file=str(tokens), transport=transport
        )

    cpu, wall = _cpu(), time.perf_counter()
    result = anyio.run(main)
    cpu, wall = _cpu() - cpu, time.perf_counter() - wall
    created = result.summary.counts.get("created", 0)
    if created != count:
        raise RuntimeError(f"expected {count} created, got {result.summary.counts}")
    return cpu, wall


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=15_000)
    parser.add_argument("--locations", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--profile", type=int, metavar="N", help="print the N costliest calls")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ghl-own-") as tmp:
        workdir = Path(tmp)
        log = (workdir / "log.jsonl").open("w")
        configure_logging("json", stream=log)  # as the CLI does, to a file
        tune_gc()  # and as the program does
        one_run(workdir, 0, records=min(args.records, 500), locations=args.locations)  # warm
        if args.profile:
            profiler = cProfile.Profile()
            profiler.enable()
            one_run(workdir, 1, records=args.records, locations=args.locations)
            profiler.disable()
            stats = pstats.Stats(profiler, stream=sys.stdout)
            stats.sort_stats("tottime").print_stats(args.profile)
            stats.sort_stats("cumulative").print_stats(args.profile)
            return 0
        cpus = []
        for n in range(args.repeat):
            cpu, wall = one_run(workdir, n + 1, records=args.records, locations=args.locations)
            cpus.append(cpu)
            per = cpu / args.records * 1e6
            print(f"run {n + 1}: {cpu:.3f} s CPU ({per:.1f} µs per record), {wall:.3f} s wall")
        median = statistics.median(cpus)
        print(
            f"median: {median:.3f} s CPU for {args.records:,} records over {args.locations} "
            f"locations: {median / args.records * 1e6:.1f} µs per record"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
