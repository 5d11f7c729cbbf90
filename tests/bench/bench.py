"""Benchmarks of the engine against a sandbox in its own process: overhead, pacing, scale.

Run by hand from the repository root::

    python -m tests.bench.bench                      # every scenario, full size
    python -m tests.bench.bench overhead             # one scenario
    python -m tests.bench.bench scale --records 20000 --locations 1000
    python -m tests.bench.bench --json results.json  # the raw numbers too

Scenarios:

overhead
    N creates over L locations, sandbox limits off. The engine (with a rate budget high
    enough never to wait) and a minimal aiohttp client (the *floor*: one ``ClientSession``,
    the same concurrency, the same POSTs with the same headers and body, in the same
    round-robin order, no reads, no report, no retries) each run against a fresh sandbox.
    Compares CPU time per request and per record; each client runs ``--repeat`` times
    (3), alternating, and the median run counts (CPU per request varies by ±15% between
    runs on a small VM).
pacing
    L locations x N/L creates, the sandbox limiting each location to ``--server-rate``
    (50/1s), the engine not told (default ``--rate`` 100/10s: it learns from the
    ``X-RateLimit-*`` headers). Compares wall time with the bound ``requests per location /
    limit`` and counts 429s.
scale
    N records over L locations, limits off, report written. Runs at a quarter of the size
    and at full size; the difference in peak RSS per extra record shows whether memory grows
    with the run.
sandbox
    The sandbox itself, at a realistic size: one location, limits off, a bare aiohttp client
    (``--concurrency`` connections) creating N definitions (N = ``--records``, 50,000), then
    getting keys, reading list pages at random offsets, deleting a tenth and reading pages
    again. Each phase reports requests/s and the sandbox's own CPU time per request (read
    from ``/proc``): the requests/s the sandbox could serve if the client were free.
relations-pacing, relations-scale
    The relations kind: 5,000 relations in one location paced by the sandbox at 100/1 s
    (wall time against the limit's bound, requests per relation), and 1,000,000 relations
    over 1,000 locations with limits off (peak RSS at a tenth and in full, records/s, and a
    rollback plan of the full report). See ``relations_bench.py``.
sandbox-relations, sandbox-relations-scale
    The sandbox itself on the relation routes (no engine): creates, GETs by record and
    deletes at full speed, 50,000 relations in one location, and 1,000,000 over 1,000
    locations; requests/s, the sandbox's CPU per request and its memory per relation. See
    ``sandbox_load.py``.
sandbox-many
    The sandbox itself under the requests of issue 9's ``many`` scenario (no engine): per
    location ``GET /objects/``, two list pages and N/L creates, every location at once from a
    bare aiohttp client (512 connections); once against a sandbox with the documented limits
    and 50-150 ms answers (``--time-scale`` scales them), once with limits off; ``--repeat``
    runs of each, alternating, each on a fresh sandbox. The sandbox's CPU per request, median.
    See ``sandbox_load.py``.
report
    Reading a large report back (no sandbox): ``report show``'s summary (``summarize``) and
    ``report html``'s page (``write_page``) of a synthetic report of N records over L
    locations (1,000,000 over 300: 60 causes of failure, invalid and not_run rows) with its
    timeline, each in a fresh worker: wall and CPU time, peak RSS (flat: rows are streamed
    through a scratch SQLite file), and the page's size.

How it measures. The sandbox is a separate process (``python -m engine sandbox``), so its
work never counts. Each measured client (engine or floor) is a fresh worker process
(``python -m tests.bench.bench _worker``) that, after its imports, reads
``getrusage(RUSAGE_SELF)`` and ``time.perf_counter`` right before and right after the run:
CPU and wall time of the run alone, without interpreter start-up or imports; the report,
journal and logs (JSON, to a file) are written inside that span. Peak RSS is the worker's
``ru_maxrss``: a fresh process per run, so it is that run's own peak and nothing the harness
did (generating job files, earlier scenarios) inflates it. The parent also reaps every child
with ``os.wait4`` and keeps its whole-process rusage as a cross-check; for the sandbox that
gives its CPU time, which shows when the server, not the client, limits throughput. With
two CPUs or more, the sandbox is pinned to one and the measured client to another. Before
anything runs, engine/ and jobs/ are compiled to bytecode (:func:`compile_bytecode`), as an
installed copy is: a process that compiles our sources at start-up measures the compiler.

Where the sandbox's work is needed (tokens, final counters) the harness uses its admin
routes: ``POST /_sandbox/tokens`` and ``GET /_sandbox/state``.
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import csv
import functools
import json
import os
import platform
import re
import resource
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

#: the scenarios of adapt.py (pacing that adapts, concurrency, CPU of a whole run)
ADAPT_SCENARIOS = ("contention", "resume", "throttled", "windows", "many", "cpu")
ADAPT_DEFAULTS = {
    "contention": {"records": 200, "locations": 1},
    "resume": {"records": 300, "locations": 2},
    "throttled": {"records": 1_600, "locations": 8},
    "windows": {"records": 400, "locations": 4},
    "many": {"records": 2_000, "locations": 400},
    "cpu": {"records": 15_000, "locations": 50},
}


def adapt_render(results: dict[str, Any], elapsed: dict[str, float], scale: float) -> list[str]:
    from tests.bench.adapt import render as render_adapt

    return render_adapt(results, elapsed, scale)


#: objects every sandbox location has
OBJECTS = ("custom_objects.property", "custom_objects.pet", "contact", "opportunity", "business")
PAIRS = [(a, b) for a in OBJECTS for b in OBJECTS if a != b]
API_VERSION = "2021-07-28"
#: a per-location budget the engine never reaches: the overhead scenario measures the engine,
#: not its pacing (with limits off the sandbox sends no rate headers to learn from)
UNLIMITED_RATE = (1_000_000, 1.0)
#: connections of the overhead and sandbox scenarios (engine and floor alike); pacing and
#: scale run the engine with its default (concurrency that follows the work) unless told
CONCURRENCY = 32

_LISTENING = re.compile(r"sandbox listening on (\S+)")


# -- job files ------------------------------------------------------------------------------


def location_ids(prefix: str, count: int) -> list[str]:
    """``count`` location ids of 20 characters, like HighLevel's."""
    return [f"{prefix}{i:0{20 - len(prefix)}d}" for i in range(count)]


def job_rows(locations: Sequence[str], per_location: int) -> Iterator[dict[str, str]]:
    """Create rows, round-robin over locations (the order the engine sends them in).

    Every row has its own labels: two keys with the same object pair and labels would be
    refused as a duplicate pair of labels.
    """
    for i in range(per_location):
        first, second = PAIRS[i % len(PAIRS)]
        for location in locations:
            yield {
                "location_id": location,
                "key": f"bench_{i}",
                "first_object_key": first,
                "second_object_key": second,
                "first_object_label": f"L{i}a",
                "second_object_label": f"L{i}b",
            }


JOB_COLUMNS = (
    "location_id",
    "key",
    "first_object_key",
    "second_object_key",
    "first_object_label",
    "second_object_label",
)


def write_job(path: Path, locations: Sequence[str], per_location: int) -> int:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, JOB_COLUMNS)
        writer.writeheader()
        count = 0
        for row in job_rows(locations, per_location):
            writer.writerow(row)
            count += 1
    return count


def write_tokens(path: Path, tokens: dict[str, str]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["location_id", "token"])
        writer.writerows(tokens.items())


# -- processes ------------------------------------------------------------------------------


@dataclass(slots=True)
class Usage:
    """What ``os.wait4`` said about a finished child."""

    user: float = 0.0
    sys: float = 0.0
    maxrss_kb: int = 0
    lifetime: float = 0.0
    exit_code: int | None = None

    @property
    def cpu(self) -> float:
        return self.user + self.sys


#: with two CPUs or more the sandbox and the measured client each get a CPU of their own, so
#: the scheduler moving them around (or onto one CPU) does not blur the numbers
SANDBOX_CPU, CLIENT_CPU = 0, 1


def _pin(pid: int, cpu: int) -> None:
    cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set()
    if len(cpus) >= 2:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(pid, {sorted(cpus)[cpu]})


def _reap(proc: subprocess.Popen[bytes], started: float, timeout: float) -> Usage:
    """Wait for ``proc`` (killing it after ``timeout``) and return its rusage."""
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            proc.kill()
            deadline = float("inf")
        time.sleep(0.02)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Usage(
        user=usage.ru_utime,
        sys=usage.ru_stime,
        maxrss_kb=usage.ru_maxrss,
        lifetime=time.monotonic() - started,
        exit_code=proc.returncode,
    )


class SandboxProcess:
    """``python -m engine sandbox`` on a free port, for the length of a ``with`` block."""

    def __init__(
        self,
        workdir: Path,
        *,
        rate_limit: str = "0",
        name: str = "sandbox",
        extra: Sequence[str] = (),
    ) -> None:
        self.workdir = workdir
        self.rate_limit = rate_limit
        self.name = name
        self.extra = tuple(extra)  # more options for the sandbox command
        self.url = ""
        self.usage = Usage()
        self._proc: subprocess.Popen[bytes] | None = None
        self._started = 0.0

    def __enter__(self) -> SandboxProcess:
        err_path = self.workdir / f"{self.name}.stderr"
        cmd = [
            sys.executable,
            "-m",
            "engine",
            "sandbox",
            "--port",
            "0",
            "--rate-limit",
            self.rate_limit,
            "--daily-limit",
            "0",
            *self.extra,
        ]
        with err_path.open("wb") as err:
            self._started = time.monotonic()
            self._proc = subprocess.Popen(
                cmd, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err
            )
        _pin(self._proc.pid, SANDBOX_CPU)
        deadline = time.monotonic() + 30
        while not self.url:
            match = _LISTENING.search(err_path.read_text(errors="replace"))
            if match:
                self.url = match[1]
            elif self._proc.poll() is not None or time.monotonic() > deadline:
                self._stop()
                raise RuntimeError(f"the sandbox did not start: {err_path.read_text()}")
            else:
                time.sleep(0.02)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop()

    def _stop(self) -> None:
        if self._proc is not None and self._proc.returncode is None:
            self._proc.send_signal(signal.SIGTERM)
            self.usage = _reap(self._proc, self._started, timeout=15)

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(  # noqa: S310 - our own http://127.0.0.1 sandbox
            f"{self.url}{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=120) as response:  # noqa: S310
            return json.loads(response.read())

    def issue_tokens(self, locations: Sequence[str]) -> dict[str, str]:
        """Tokens for ``locations`` through the admin route, a thousand at a time."""
        tokens: dict[str, str] = {}
        for start in range(0, len(locations), 1000):
            chunk = list(locations[start : start + 1000])
            tokens |= self._call("POST", "/_sandbox/tokens", {"locations": chunk})["tokens"]
        return tokens

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def stats(self) -> dict[str, Any]:
        """The sandbox's counters (requests, creates_applied, throttled...)."""
        return dict(self._call("GET", "/_sandbox/state")["stats"])


@dataclass(slots=True)
class Measured:
    """One measured client run: the worker's own numbers plus what the parent saw."""

    kind: str
    records: int
    wall: float  # seconds, the run alone
    user: float
    sys: float
    rss_before_kb: int  # after imports, before the run
    peak_rss_kb: int
    requests: int = 0  # as the client counted them
    rate_limited: int = 0
    retries: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    report_bytes: int = 0
    process: Usage = field(default_factory=Usage)  # whole worker process, from wait4
    server: dict[str, Any] = field(default_factory=dict)  # the sandbox's stats afterwards
    sandbox: Usage = field(default_factory=Usage)

    @property
    def cpu(self) -> float:
        return self.user + self.sys

    @property
    def server_requests(self) -> int:
        return int(self.server.get("requests", 0))


def run_worker(spec: dict[str, Any], workdir: Path, name: str, timeout: float) -> Measured:
    """Run one measured client in a fresh process; raise if it fails."""
    raw, usage = _spawn_worker(spec, workdir, name, timeout)
    result = Measured(**raw)
    result.process = usage
    return result


def _spawn_worker(
    spec: dict[str, Any], workdir: Path, name: str, timeout: float
) -> tuple[dict[str, Any], Usage]:
    """Run ``_worker`` on ``spec`` in a fresh process: its JSON result and its rusage."""
    spec_path, out_path = workdir / f"{name}.spec.json", workdir / f"{name}.result.json"
    spec_path.write_text(json.dumps(spec))
    err_path = workdir / f"{name}.stderr"
    cmd = [sys.executable, "-m", "tests.bench.bench", "_worker", str(spec_path), str(out_path)]
    with err_path.open("wb") as err:
        started = time.monotonic()
        proc = subprocess.Popen(
            cmd, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err
        )
    _pin(proc.pid, CLIENT_CPU)
    usage = _reap(proc, started, timeout)
    if usage.exit_code != 0 or not out_path.exists():
        tail = err_path.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{name} worker failed ({usage.exit_code}):\n{tail}")
    return json.loads(out_path.read_text()), usage


# -- the workers (run in their own process) ---------------------------------------------------


def _current_rss_kb() -> int:
    try:
        with open("/proc/self/statm") as fh:
            pages = int(fh.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") // 1024
    except OSError:  # not Linux: the peak so far is the best there is
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _measure(kind: str, run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    rss_before = _current_rss_kb()
    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    extra = run()
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "kind": kind,
        "wall": wall,
        "user": after.ru_utime - before.ru_utime,
        "sys": after.ru_stime - before.ru_stime,
        "rss_before_kb": rss_before,
        "peak_rss_kb": after.ru_maxrss,
        **extra,
    }


def _engine_worker(spec: dict[str, Any]) -> dict[str, Any]:
    import anyio

    from engine import RunConfig
    from engine.cli import tune_gc
    from engine.console import configure_logging
    from jobs.api import run_job

    configure_logging("json")  # to stderr, which the parent sends to a file: logs included
    tune_gc()  # the collector as the program sets it
    anyio.run(anyio.sleep, 0, backend="asyncio")  # anyio imports its backend on first use
    config = RunConfig(
        job_files=(spec["job_file"],),
        report=spec["report"],
        concurrency=spec["concurrency"],
        **({"rate": tuple(spec["rate"])} if spec.get("rate") else {}),
    )
    start = functools.partial(
        run_job, config, base_url=spec["base_url"], tokens_file=spec["tokens_file"]
    )

    def run() -> dict[str, Any]:
        summary = anyio.run(start, backend="asyncio").summary
        return {
            "records": summary.total,
            "requests": summary.requests,
            "rate_limited": summary.rate_limited,
            "retries": summary.retries,
            "counts": dict(summary.counts),
            "report_bytes": os.path.getsize(spec["report"]),
        }

    return _measure("engine", run)


def _floor_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """The least a client must do: POST each body with its token, read each answer."""
    import asyncio
    from collections import Counter

    import aiohttp
    import orjson

    tokens: dict[str, str] = {}
    with open(spec["tokens_file"], newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            tokens[row["location_id"]] = row["token"]
    with open(spec["job_file"], newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))  # already in round-robin order
    url = f"{spec['base_url']}/associations/"
    concurrency = spec["concurrency"]
    statuses: Counter[int] = Counter()

    async def main() -> None:
        todo = iter(rows)
        connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def worker() -> None:
                for row in todo:
                    location = row["location_id"]
                    body = {
                        "locationId": location,
                        "key": row["key"],
                        "firstObjectKey": row["first_object_key"],
                        "firstObjectLabel": row["first_object_label"],
                        "secondObjectKey": row["second_object_key"],
                        "secondObjectLabel": row["second_object_label"],
                    }
                    headers = {
                        "Version": API_VERSION,
                        "Accept": "application/json",
                        "Authorization": f"Bearer {tokens[location]}",
                        "Content-Type": "application/json",
                    }
                    async with session.post(url, data=orjson.dumps(body), headers=headers) as r:
                        await r.read()
                        statuses[r.status] += 1

            await asyncio.gather(*(worker() for _ in range(concurrency)))

    def run() -> dict[str, Any]:
        asyncio.run(main())
        created = statuses.pop(201, 0)
        counts = {"created": created} | {f"http_{s}": n for s, n in statuses.items()}
        return {"records": len(rows), "requests": len(rows), "counts": counts}

    return _measure("floor", run)


def _process_cpu(pid: int) -> float | None:
    """User + system CPU seconds of another process so far (Linux); None elsewhere."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            fields = fh.read().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _sandbox_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Phases of API calls on one location of a sandbox, each timed, with the sandbox's CPU."""
    import asyncio
    import random
    from collections import Counter

    import aiohttp
    import orjson

    base, location, count = spec["base_url"], spec["location"], spec["definitions"]
    concurrency, pid = spec["concurrency"], spec["sandbox_pid"]
    rng = random.Random(7)
    headers = {
        "Version": API_VERSION,
        "Accept": "application/json",
        "Authorization": f"Bearer {spec['token']}",
    }
    body_headers = headers | {"Content-Type": "application/json"}
    query = f"locationId={location}"
    ids: list[str] = []
    phases: list[dict[str, Any]] = []
    Call = tuple[str, str, bytes | None]

    def create(i: int) -> Call:
        first, second = PAIRS[i % len(PAIRS)]
        body = {
            "locationId": location,
            "key": f"d{i}",
            "firstObjectKey": first,
            "firstObjectLabel": f"S{i}a",
            "secondObjectKey": second,
            "secondObjectLabel": f"S{i}b",
        }
        return "POST", f"{base}/associations/", orjson.dumps(body)

    def page() -> Call:
        skip = rng.randrange(max(len(ids), 1))
        return "GET", f"{base}/associations/?{query}&skip={skip}&limit=50", None

    async def phase(session: aiohttp.ClientSession, name: str, calls: list[Call]) -> None:
        statuses: Counter[int] = Counter()
        todo = iter(calls)
        size = len(ids)

        async def worker() -> None:
            for method, url, body in todo:
                sent = body_headers if body is not None else headers
                async with session.request(method, url, data=body, headers=sent) as r:
                    data = await r.read()
                    statuses[r.status] += 1
                    if method == "POST" and r.status == 201:
                        ids.append(orjson.loads(data)["id"])

        server_before, client_before = _process_cpu(pid), resource.getrusage(resource.RUSAGE_SELF)
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - started
        server_after, client_after = _process_cpu(pid), resource.getrusage(resource.RUSAGE_SELF)
        server = None
        if server_before is not None and server_after is not None:
            server = server_after - server_before
        phases.append(
            {
                "name": name,
                "definitions": size,
                "requests": len(calls),
                "statuses": {str(k): v for k, v in sorted(statuses.items())},
                "wall": wall,
                "client_cpu": (client_after.ru_utime + client_after.ru_stime)
                - (client_before.ru_utime + client_before.ru_stime),
                "server_cpu": server,
            }
        )

    async def main() -> None:
        connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)
        async with aiohttp.ClientSession(connector=connector) as session:
            tail = max(count // 10, 1)
            await phase(session, "create", [create(i) for i in range(count - tail)])
            await phase(
                session, "create (last tenth)", [create(i) for i in range(count - tail, count)]
            )
            keys = [f"d{rng.randrange(count)}" for _ in range(max(count // 5, 1))]
            gets = [("GET", f"{base}/associations/key/{key}?{query}", None) for key in keys]
            await phase(session, "get by key", gets)
            await phase(session, "list page", [page() for _ in range(max(count // 25, 1))])
            doomed = rng.sample(ids, max(count // 10, 1))
            await phase(
                session, "delete", [("DELETE", f"{base}/associations/{i}", None) for i in doomed]
            )
            gone = set(doomed)
            ids[:] = [i for i in ids if i not in gone]
            await phase(
                session, "list page (after deletes)", [page() for _ in range(max(count // 25, 1))]
            )

    asyncio.run(main())
    return {"phases": phases}


def _report_worker(spec: dict[str, Any]) -> dict[str, Any]:
    from engine import summarize
    from engine.page import write_page

    ok = frozenset({"created", "exists"})
    paths = [spec["report"]]

    def run() -> dict[str, Any]:
        if spec["what"] == "show":
            overview = summarize(paths, ok_statuses=ok, groups=10, examples=3)
            return {"records": overview.total, "counts": dict(overview.counts)}
        write_page(paths, spec["page"], ok_statuses=ok)
        return {"page_bytes": os.path.getsize(spec["page"])}

    return _measure(f"report-{spec['what']}", run)


def worker_main(spec_path: str, out_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    if spec["kind"] == "sandbox-load":  # the relation routes: see sandbox_load.py
        from tests.bench.sandbox_load import load_worker

        result = load_worker(spec)
    elif spec["kind"] == "sandbox-mix":  # the many benchmark's requests: see sandbox_load.py
        from tests.bench.sandbox_load import mix_worker

        result = mix_worker(spec)
    elif spec["kind"] == "plan":  # a rollback plan: see relations_bench.py
        from tests.bench.relations_bench import plan_worker

        result = plan_worker(spec)
    else:
        workers = {
            "engine": _engine_worker,
            "floor": _floor_worker,
            "sandbox": _sandbox_worker,
            "report": _report_worker,
        }
        result = workers[spec["kind"]](spec)
    Path(out_path).write_text(json.dumps(result))


# -- scenarios --------------------------------------------------------------------------------


def _client_run(
    workdir: Path,
    name: str,
    *,
    kind: str,
    locations: int,
    per_location: int,
    server_rate: str = "0",
    rate: tuple[int, float] | None = None,
    concurrency: int | None = CONCURRENCY,
    timeout: float = 3600,
) -> Measured:
    """A fresh sandbox, fresh locations, one measured client run against it."""
    with SandboxProcess(workdir, rate_limit=server_rate, name=f"{name}.sandbox") as sandbox:
        ids = location_ids(name[:6].replace("-", ""), locations)
        tokens_file = workdir / f"{name}.tokens.csv"
        write_tokens(tokens_file, sandbox.issue_tokens(ids))
        job_file = workdir / f"{name}.job.csv"
        write_job(job_file, ids, per_location)
        spec = {
            "kind": kind,
            "base_url": sandbox.url,
            "job_file": str(job_file),
            "tokens_file": str(tokens_file),
            "report": str(workdir / f"{name}.report.csv"),
            "concurrency": concurrency,
            "rate": list(rate) if rate else None,
        }
        result = run_worker(spec, workdir, name, timeout)
        result.server = sandbox.stats()
    result.sandbox = sandbox.usage
    return result


def _median_run(runs: list[Measured]) -> Measured:
    return sorted(runs, key=lambda r: r.cpu)[len(runs) // 2]


@dataclass(slots=True)
class OverheadResult:
    records: int
    locations: int
    concurrency: int
    engine: Measured
    floor: Measured
    repeats: int = 1
    engine_cpu_all: list[float] = field(default_factory=list)
    floor_cpu_all: list[float] = field(default_factory=list)

    @property
    def engine_reads(self) -> int:
        return self.engine.server_requests - int(self.engine.server.get("creates_applied", 0))

    def per_request(self, m: Measured) -> float:
        return m.cpu / max(m.server_requests, 1)

    def per_record(self, m: Measured) -> float:
        return m.cpu / max(m.records, 1)

    @property
    def ratio_per_request(self) -> float:
        return self.per_request(self.engine) / self.per_request(self.floor)

    @property
    def ratio_per_record(self) -> float:
        return self.per_record(self.engine) / self.per_record(self.floor)


def run_overhead(
    workdir: Path,
    *,
    records: int = 20_000,
    locations: int = 50,
    concurrency: int = CONCURRENCY,
    repeat: int = 3,
) -> OverheadResult:
    per = max(1, records // locations)
    engines, floors = [], []
    for n in range(repeat):
        floors.append(
            _client_run(
                workdir,
                f"floor-{n}",
                kind="floor",
                locations=locations,
                per_location=per,
                concurrency=concurrency,
            )
        )
        engines.append(
            _client_run(
                workdir,
                f"ovhd-{n}",
                kind="engine",
                locations=locations,
                per_location=per,
                rate=UNLIMITED_RATE,
                concurrency=concurrency,
            )
        )
    return OverheadResult(
        records=per * locations,
        locations=locations,
        concurrency=concurrency,
        engine=_median_run(engines),
        floor=_median_run(floors),
        repeats=repeat,
        engine_cpu_all=[r.cpu for r in engines],
        floor_cpu_all=[r.cpu for r in floors],
    )


@dataclass(slots=True)
class PacingResult:
    records: int
    locations: int
    server_limit: int
    server_interval: float
    engine: Measured

    @property
    def admitted_per_location(self) -> float:
        admitted = self.engine.server_requests - int(self.engine.server.get("throttled", 0))
        return admitted / self.locations

    @property
    def bound(self) -> float:
        """Seconds the server's limit allows at best: requests per location / limit rate."""
        return self.admitted_per_location * self.server_interval / self.server_limit

    @property
    def window_bound(self) -> float:
        """The same under a sliding window: all but the last batch of ``limit`` wait a window."""
        per = round(self.admitted_per_location)
        return max(per - 1, 0) // self.server_limit * self.server_interval

    @property
    def ratio(self) -> float:
        return self.engine.wall / self.bound

    @property
    def throttled(self) -> int:
        return int(self.engine.server.get("throttled", 0))

    @property
    def throttled_share(self) -> float:
        return self.throttled / max(self.engine.server_requests, 1)


def run_pacing(
    workdir: Path,
    *,
    records: int = 6_000,
    locations: int = 20,
    server_rate: str = "50/1s",
    concurrency: int | None = CONCURRENCY,
) -> PacingResult:
    from engine import parse_rate

    limit, interval = parse_rate(server_rate)
    per = max(1, records // locations)
    engine = _client_run(
        workdir,
        "pacing",
        kind="engine",
        locations=locations,
        per_location=per,
        server_rate=server_rate,
        concurrency=concurrency,
    )
    return PacingResult(
        records=per * locations,
        locations=locations,
        server_limit=limit,
        server_interval=interval,
        engine=engine,
    )


@dataclass(slots=True)
class ScaleResult:
    per_location: int
    steps: list[tuple[int, int, Measured]]  # (records, locations, run)

    @property
    def full(self) -> Measured:
        return self.steps[-1][2]

    @property
    def bytes_per_record(self) -> float | None:
        """Extra peak RSS per extra record between the smallest and the full run."""
        if len(self.steps) < 2:
            return None
        (r0, _, m0), (r1, _, m1) = self.steps[0], self.steps[-1]
        if r1 == r0:
            return None
        return (m1.peak_rss_kb - m0.peak_rss_kb) * 1024 / (r1 - r0)


def run_scale(
    workdir: Path,
    *,
    records: int = 100_000,
    locations: int = 5_000,
    fractions: Sequence[float] = (0.25, 1.0),
    concurrency: int | None = CONCURRENCY,
) -> ScaleResult:
    per = max(1, records // locations)
    steps = []
    for n, fraction in enumerate(fractions):
        count = max(1, round(locations * fraction))
        run = _client_run(
            workdir,
            f"scale-{n}",
            kind="engine",
            locations=count,
            per_location=per,
            concurrency=concurrency,
        )
        steps.append((count * per, count, run))
    return ScaleResult(per_location=per, steps=steps)


@dataclass(slots=True)
class SandboxResult:
    definitions: int
    concurrency: int
    phases: list[dict[str, Any]]
    sandbox: Usage = field(default_factory=Usage)
    server: dict[str, Any] = field(default_factory=dict)

    @property
    def slowest_rate(self) -> float:
        """Requests/s of the slowest phase, as the client saw them served."""
        return min(p["requests"] / p["wall"] for p in self.phases)

    @property
    def slowest_capacity(self) -> float | None:
        """Requests/s the sandbox's CPU time allows in its costliest phase."""
        costs = [p["server_cpu"] / p["requests"] for p in self.phases if p["server_cpu"]]
        return 1 / max(costs) if costs else None


SANDBOX_TARGET = 3_000  # requests/s, whatever a location holds


def run_sandbox(
    workdir: Path, *, records: int = 50_000, locations: int = 1, concurrency: int = CONCURRENCY
) -> SandboxResult:
    """``records`` definitions in one location (``locations`` is ignored: always one)."""
    with SandboxProcess(workdir, name="sandbox.sandbox") as sandbox:
        location = location_ids("sbx", 1)[0]
        spec = {
            "kind": "sandbox",
            "base_url": sandbox.url,
            "location": location,
            "token": sandbox.issue_tokens([location])[location],
            "definitions": records,
            "concurrency": concurrency,
            "sandbox_pid": sandbox.pid,
        }
        raw, _ = _spawn_worker(spec, workdir, "sandbox", timeout=3600)
        server = sandbox.stats()
        server.pop("writes_by_key", None)  # one entry per key: not worth keeping here
    return SandboxResult(
        definitions=records,
        concurrency=concurrency,
        phases=raw["phases"],
        sandbox=sandbox.usage,
        server=server,
    )


# -- output -----------------------------------------------------------------------------------


@dataclass(slots=True)
class ReportResult:
    records: int
    locations: int
    report_bytes: int
    timeline_bytes: int
    show: dict[str, Any]
    html: dict[str, Any]


def run_report(workdir: Path, *, records: int, locations: int) -> ReportResult:
    from tests.pagecheck import synthetic_report

    folder = workdir / "report"
    folder.mkdir(exist_ok=True)
    # Every location at its limit of 10 requests a second for as long as the job takes.
    seconds = max(1, records // (locations * 10))
    report = synthetic_report(folder, records, locations, seconds)
    spec = {"kind": "report", "report": str(report), "page": str(folder / "big.html")}
    show, _ = _spawn_worker({**spec, "what": "show"}, workdir, "report-show", 3600)
    html, _ = _spawn_worker({**spec, "what": "html"}, workdir, "report-html", 3600)
    return ReportResult(
        records=records,
        locations=locations,
        report_bytes=report.stat().st_size,
        timeline_bytes=Path(f"{report}.timeline").stat().st_size,
        show=show,
        html=html,
    )


def compile_bytecode() -> None:
    """Compile engine/ and jobs/ to bytecode before measuring, as pip does when it installs a
    package (the image's build stage too).

    Otherwise, with an editable install and PYTHONDONTWRITEBYTECODE set (as on the machine
    these numbers come from), every measured process compiles our sources again: ~40-90 ms
    of CPU per process that no installed copy spends, while the floor's aiohttp comes
    compiled. compileall skips files whose bytecode is current."""
    for package in ("engine", "jobs"):
        compileall.compile_dir(ROOT / package, quiet=1)


def machine() -> dict[str, str]:
    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    import aiohttp

    return {
        "nproc": str(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else ""),
        "cpu": model or platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "aiohttp": aiohttp.__version__,
        "platform": platform.platform(),
    }


def _mb(kb: int) -> str:
    return f"{kb / 1024:.1f}"


def _verdict(ok: bool) -> str:
    return "met" if ok else "**MISSED**"


def _us(seconds: float) -> str:
    return f"{seconds * 1e6:.0f}"


def render(
    results: dict[str, Any], command: str, info: dict[str, str], elapsed: dict[str, float]
) -> str:
    out = [
        "## ghl-migrate benchmark",
        "",
        f"- machine: {info['nproc']} CPUs, {info['cpu']}; Python {info['python']}, "
        f"aiohttp {info['aiohttp']}; {info['platform']}",
        f"- command: `{command}`; engine/ and jobs/ compiled to bytecode first, as installed",
        "",
    ]
    o: OverheadResult | None = results.get("overhead")
    if o is not None:
        e, f = o.engine, o.floor
        out += [
            f"### 1. Overhead: {o.records:,} creates over {o.locations} locations, limits off, "
            f"concurrency {o.concurrency} ({elapsed['overhead']:.0f} s)",
            "",
            "| | engine | floor (bare aiohttp) | engine / floor |",
            "|---|---:|---:|---:|",
            f"| outcomes | {_counts(e.counts)} | {_counts(f.counts)} | |",
            f"| requests (server count) | {e.server_requests:,} ({o.engine_reads:,} reads) "
            f"| {f.server_requests:,} | |",
            f"| wall s | {e.wall:.2f} | {f.wall:.2f} | {e.wall / f.wall:.2f} |",
            f"| records/s | {e.records / e.wall:,.0f} | {f.records / f.wall:,.0f} | |",
            f"| client CPU s (user+sys) | {e.cpu:.2f} | {f.cpu:.2f} | {e.cpu / f.cpu:.2f} |",
            f"| **CPU µs / request** | {_us(o.per_request(e))} | {_us(o.per_request(f))} "
            f"| **{o.ratio_per_request:.2f}** |",
            f"| CPU µs / record | {_us(o.per_record(e))} | {_us(o.per_record(f))} "
            f"| {o.ratio_per_record:.2f} |",
            f"| client CPU / wall | {e.cpu / e.wall:.0%} | {f.cpu / f.wall:.0%} | |",
            f"| sandbox CPU s (its process) | {e.sandbox.cpu:.2f} | {f.sandbox.cpu:.2f} | |",
            f"| peak RSS MB | {_mb(e.peak_rss_kb)} | {_mb(f.peak_rss_kb)} | |",
            "",
            f"Target engine CPU/request ≤ 1.5x floor: {o.ratio_per_request:.2f}x → "
            f"{_verdict(o.ratio_per_request <= 1.5)}."
            + (
                f" (median of {o.repeats}; engine CPU s {_list(o.engine_cpu_all)}, "
                f"floor {_list(o.floor_cpu_all)})"
                if o.repeats > 1
                else ""
            ),
            "",
        ]
    p: PacingResult | None = results.get("pacing")
    if p is not None:
        e = p.engine
        out += [
            f"### 2. Pacing: {p.locations} locations x {p.records // p.locations} creates, "
            f"server {p.server_limit}/{p.server_interval:g}s per location, client not told "
            f"({elapsed['pacing']:.0f} s)",
            "",
            "| measure | value | target |",
            "|---|---:|---|",
            f"| outcomes | {_counts(e.counts)} | |",
            f"| requests (server count, incl. 429s) | {e.server_requests:,} | |",
            f"| admitted requests per location (incl. reads) | {p.admitted_per_location:.0f} | |",
            f"| bound s (per location / {p.server_limit} per {p.server_interval:g} s) "
            f"| {p.bound:.2f} | |",
            f"| strict sliding-window minimum s (limit at once, then one per window) "
            f"| {p.window_bound:.2f} | |",
            f"| wall s | {e.wall:.2f} | |",
            f"| **wall / bound** | **{p.ratio:.3f}** | ≤ 1.15: {_verdict(p.ratio <= 1.15)} |",
            f"| **429s** (server throttled; client saw {e.rate_limited}) "
            f"| **{p.throttled} ({p.throttled_share:.2%})** "
            f"| < 2%: {_verdict(p.throttled_share < 0.02)} |",
            f"| client CPU s | {e.cpu:.2f} | |",
            "",
        ]
    s: ScaleResult | None = results.get("scale")
    if s is not None:
        full = s.full
        out += [
            f"### 3. Scale: {s.steps[-1][0]:,} records ({s.steps[-1][1]:,} locations x "
            f"{s.per_location}), limits off, report written ({elapsed['scale']:.0f} s)",
            "",
            "| records | locations | outcomes | wall s | records/s | client CPU s "
            "| RSS before run MB | peak RSS MB | report MB |",
            "|---:|---:|---|---:|---:|---:|---:|---:|---:|",
        ]
        for records, locations, m in s.steps:
            out.append(
                f"| {records:,} | {locations:,} | {_counts(m.counts)} | {m.wall:.1f} "
                f"| {records / m.wall:,.0f} | {m.cpu:.1f} | {_mb(m.rss_before_kb)} "
                f"| {_mb(m.peak_rss_kb)} | {m.report_bytes / 1e6:.1f} |"
            )
        slope = s.bytes_per_record
        out += [
            "",
            f"Target peak RSS < 250 MB: {_mb(full.peak_rss_kb)} MB → "
            f"{_verdict(full.peak_rss_kb < 250 * 1024)}.",
        ]
        if slope is not None:
            flat = slope < 200  # a few hundred bytes per record: not streamed
            out.append(
                f"Memory growth with the run: {slope:,.0f} bytes of peak RSS per extra record "
                f"→ {'flat (streamed)' if flat else '**grows with the record count**'}."
            )
        out.append("")
    b: SandboxResult | None = results.get("sandbox")
    if b is not None:
        out += [
            f"### 4. Sandbox: {b.definitions:,} definitions in one location, limits off, "
            f"bare aiohttp client, concurrency {b.concurrency} ({elapsed['sandbox']:.0f} s)",
            "",
            "| phase | definitions before | requests | statuses | wall s | requests/s "
            "| client CPU µs / request | sandbox CPU µs / request | sandbox capacity requests/s |",
            "|---|---:|---:|---|---:|---:|---:|---:|---:|",
        ]
        for p in b.phases:
            cost = p["server_cpu"] / p["requests"] if p["server_cpu"] else None
            statuses = ", ".join(f"{k}: {v:,}" for k, v in p["statuses"].items())
            out.append(
                f"| {p['name']} | {p['definitions']:,} | {p['requests']:,} | {statuses} "
                f"| {p['wall']:.2f} | {p['requests'] / p['wall']:,.0f} "
                f"| {_us(p['client_cpu'] / p['requests'])} "
                f"| {_us(cost) if cost else 'n/a'} | {f'{1 / cost:,.0f}' if cost else 'n/a'} |"
            )
        capacity = b.slowest_capacity
        served = f"the slowest phase was served at {b.slowest_rate:,.0f}/s"
        if capacity is None:  # no /proc: only what the client saw
            verdict = f"{served} → {_verdict(b.slowest_rate >= SANDBOX_TARGET)}."
        else:
            verdict = (
                f"the sandbox's CPU time allows {capacity:,.0f}/s in its costliest phase → "
                f"{_verdict(capacity >= SANDBOX_TARGET)} ({served}: the client and the "
                "machine's other load count there too)."
            )
        out += ["", f"Target ≥ {SANDBOX_TARGET:,} requests/s in every phase: {verdict}", ""]
    for number, name in ((5, "sandbox-relations"), (6, "sandbox-relations-scale")):
        if name in results:
            from tests.bench.sandbox_load import render_load

            title = f"{number}. Sandbox, relation routes"
            out += render_load(title, results[name], elapsed[name])
    if "sandbox-many" in results:
        from tests.bench.sandbox_load import render_mix

        out += render_mix(results["sandbox-many"], elapsed["sandbox-many"])
    if "relations-pacing" in results or "relations-scale" in results:
        from tests.bench.relations_bench import render_relations

        out += render_relations(results, elapsed)
    r: ReportResult | None = results.get("report")
    if r is not None:
        out += [
            f"### 9. Report: {r.records:,} records over {r.locations:,} locations, report "
            f"{r.report_bytes / 1e6:.0f} MB, timeline {r.timeline_bytes / 1e6:.0f} MB "
            f"({elapsed['report']:.0f} s)",
            "",
            "| command | wall s | CPU s | records/s | RSS before MB | peak RSS MB | output |",
            "|---|---:|---:|---:|---:|---:|---|",
        ]
        for label, m in (("report show (summarize)", r.show), ("report html", r.html)):
            cpu = m["user"] + m["sys"]
            output = f"{m['page_bytes'] / 1e6:.2f} MB page" if "page_bytes" in m else "summary"
            out.append(
                f"| {label} | {m['wall']:.1f} | {cpu:.1f} | {r.records / m['wall']:,.0f} "
                f"| {_mb(m['rss_before_kb'])} | {_mb(m['peak_rss_kb'])} | {output} |"
            )
        page = r.html["page_bytes"]
        out += ["", f"Target page < 2 MB: {page / 1e6:.2f} MB → {_verdict(page < 2e6)}.", ""]
    return "\n".join(out)


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items())) or "none"


def _list(values: Sequence[float]) -> str:
    return "/".join(f"{v:.2f}" for v in values)


def _jsonable(value: Any) -> Any:
    if hasattr(value, "__dataclass_fields__"):
        data = asdict(value)
        for name in dir(type(value)):
            attr = getattr(type(value), name, None)
            if isinstance(attr, property):
                data[name] = _jsonable(getattr(value, name))
        return data
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


# -- command line -----------------------------------------------------------------------------

SCENARIOS = (
    "overhead",
    "pacing",
    "scale",
    "sandbox",
    "sandbox-relations",
    "sandbox-relations-scale",
    "sandbox-many",
    "relations-pacing",
    "relations-scale",
    "report",
    *ADAPT_SCENARIOS,  # see adapt.py
)
DEFAULTS = ADAPT_DEFAULTS | {
    "overhead": {"records": 20_000, "locations": 50},
    "pacing": {"records": 6_000, "locations": 20},
    "scale": {"records": 100_000, "locations": 5_000},
    "sandbox": {"records": 50_000, "locations": 1},
    "sandbox-relations": {"records": 50_000, "locations": 1},  # see sandbox_load.py
    "sandbox-relations-scale": {"records": 1_000_000, "locations": 1_000},
    "sandbox-many": {"records": 2_000, "locations": 400},  # issue 9's many; sandbox_load.py
    "relations-pacing": {"records": 5_000, "locations": 1},  # see relations_bench.py
    "relations-scale": {"records": 1_000_000, "locations": 1_000},
    "report": {"records": 1_000_000, "locations": 300},
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["_worker"]:
        worker_main(argv[1], argv[2])
        return 0
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench.bench",
        description="Benchmark the engine against a sandbox process (see the module docs).",
    )
    parser.add_argument("scenarios", nargs="*", metavar="scenario", help=" ".join(SCENARIOS))
    parser.add_argument("--records", type=int, help="records per scenario (default: its own)")
    parser.add_argument("--locations", type=int, help="locations per scenario")
    parser.add_argument(
        "--concurrency",
        type=int,
        help=f"default: {CONCURRENCY}, or the engine's own (pacing, scale, relations)",
    )
    parser.add_argument(
        "--server-rate",
        help="pacing, relations-pacing: the sandbox's limit (default 50/1s, 100/1s)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="overhead, cpu, sandbox-many: runs of each variant; the median counts",
    )
    parser.add_argument(
        "--time-scale",
        type=float,
        default=1.0,
        help="adapt.py's scenarios, sandbox-many: multiply intervals, latencies, durations",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="adapt.py's scenarios: one variant each (the CI smoke test)",
    )
    parser.add_argument("--json", help="also write the raw numbers here")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args(argv)
    chosen = args.scenarios or list(SCENARIOS)
    unknown = set(chosen) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenario {sorted(unknown)}: choose from {', '.join(SCENARIOS)}")
    compile_bytecode()
    workdir = Path(tempfile.mkdtemp(prefix="ghl-bench-"))
    results: dict[str, Any] = {}
    elapsed: dict[str, float] = {}
    errors: dict[str, str] = {}
    try:
        for name in chosen:
            size = DEFAULTS[name] | {
                k: v for k, v in (("records", args.records), ("locations", args.locations)) if v
            }
            print(f"running {name} {size} ...", file=sys.stderr, flush=True)
            started = time.monotonic()
            try:
                results[name] = _run_scenario(name, workdir, size, args)
            except Exception as exc:  # report the others anyway
                errors[name] = f"{type(exc).__name__}: {exc}"
                print(f"{name} failed: {errors[name]}", file=sys.stderr, flush=True)
            elapsed[name] = time.monotonic() - started
    finally:
        if args.keep:
            print(f"work folder kept: {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    command = shlex.join(["python", "-m", "tests.bench.bench", *argv])
    info = machine()
    text = render(results, command, info, elapsed)
    text += "\n" + "\n".join(adapt_render(results, elapsed, args.time_scale))
    print(text)
    for name, error in errors.items():
        print(f"**{name} failed**: {error.splitlines()[0]}")
    if args.json:
        raw = {"machine": info, "command": command, "elapsed": elapsed, "errors": errors}
        raw |= {k: _jsonable(v) for k, v in results.items()}
        Path(args.json).write_text(json.dumps(raw, indent=2))
    return 1 if errors else 0


def _run_scenario(name: str, workdir: Path, size: dict[str, int], args: argparse.Namespace) -> Any:
    if name in ADAPT_SCENARIOS:
        from tests.bench.adapt import run

        return run(name, workdir, size, scale=args.time_scale, repeat=args.repeat, quick=args.quick)
    fixed = args.concurrency or CONCURRENCY
    if name == "overhead":
        return run_overhead(workdir, **size, concurrency=fixed, repeat=args.repeat)
    if name == "pacing":
        return run_pacing(
            workdir, **size, server_rate=args.server_rate or "50/1s", concurrency=args.concurrency
        )
    if name == "sandbox":
        return run_sandbox(workdir, **size, concurrency=fixed)
    if name == "relations-pacing":
        from tests.bench.relations_bench import run_relations_pacing

        return run_relations_pacing(
            workdir, **size, server_rate=args.server_rate or "100/1s", concurrency=args.concurrency
        )
    if name == "relations-scale":
        from tests.bench.relations_bench import run_relations_scale

        return run_relations_scale(workdir, **size, concurrency=args.concurrency)
    if name == "report":
        return run_report(workdir, **size)
    if name == "sandbox-many":
        from tests.bench.sandbox_load import MIX_CONCURRENCY, run_sandbox_mix

        concurrency = args.concurrency or MIX_CONCURRENCY
        return run_sandbox_mix(
            workdir, **size, concurrency=concurrency, repeat=args.repeat, scale=args.time_scale
        )
    if name.startswith("sandbox-relations"):
        from tests.bench.sandbox_load import run_sandbox_load

        return run_sandbox_load(workdir, **size, concurrency=fixed, name=name)
    return run_scale(workdir, **size, concurrency=args.concurrency)


if __name__ == "__main__":
    sys.exit(main())
