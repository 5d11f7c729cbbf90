"""Benchmark scenarios for issue 9: pacing that adapts, concurrency that follows the work,
and the CPU a user pays for a whole run.

Each scenario starts a fresh sandbox process with the fault switch for its condition and
runs the real command line (``python -m engine run ... --log-format json``) in its own
process, as a user would. Times come from three places, each named in the table: the run's
own ``run finished`` log line (``elapsed``: from reading the job files to the final report,
without interpreter start-up), the wall clock around whole processes (for the resume
scenario, which pays two start-ups), and the sandbox's request log, which keeps every
request's arrival time on the sandbox's clock (for what the server admitted per window).
CPU is the whole process's, from ``os.wait4`` (start-up included).

``scale`` (``--time-scale``) multiplies every interval, latency and duration, and ``quick``
(``--quick``) runs one variant of each scenario, so that the CI smoke test runs them all in
seconds; the numbers in the README come from ``scale`` 1, every variant.

contention
    1 location x 200 creates at 20 / 2 s; another client spends the same budget (40 / 2 s,
    evenly spaced) from 4 s after the first request, for 5 s; answers take 50-150 ms. Target:
    back to at least 90% of the limit within 3 windows after the other client stops.
resume
    2 locations x 150 creates at 20 / 2 s: one run uninterrupted; another killed (SIGKILL)
    halfway and resumed at once with ``--resume``. Target: killed + resumed at most 1.15x
    the uninterrupted run, wall clock, both start-ups included. Once with the sandbox's full
    rate headers, once with 429s that carry only ``Retry-After`` (``--rate`` told).
throttled
    8 locations x 200 creates; the headers advertise 20 / 2 s, the server admits 8 / 2 s.
    Target: at most 1.08x the bound, at most 10% of requests answered 429.
windows
    4 locations x 100 creates at 20 / 2 s; sliding and fixed windows; the limit learned
    from the headers (default ``--rate``) or known (``--rate 20/2s``, no rate headers).
    Target: 0 429s and at most 1.03x the bound.
many
    400 locations x 5 creates, answers 50-150 ms, the documented limits (100 / 10 s), default
    options. Target: at most 1.1x the larger of the rate-limit bound (requests per location
    / its rate) and the latency bound (a location's requests that must follow each other,
    times the mean latency). Also shown: ``--concurrency 32`` (the old default), and a bare
    aiohttp client sending only the 2,000 POSTs with 512 connections (what this machine and
    this sandbox can do at all).
cpu
    15,000 creates over 50 locations against a sandbox that sends all five ``X-RateLimit-*``
    headers with a very high limit (1,000,000 / s): the engine's whole process (default
    options, report and JSON logs written) against a minimal aiohttp client sending the same
    POSTs (32 connections; its own script, importing only what it needs). Median of 3
    alternating runs of each, CPU time of the whole process. Target: at most 1.25x.
"""

from __future__ import annotations

import json
import math
import os
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.bench.bench import (
    CLIENT_CPU,
    ROOT,
    SandboxProcess,
    Usage,
    _pin,
    _reap,
    location_ids,
    write_job,
    write_tokens,
)

__all__ = ["render", "run"]


# -- running the command line -----------------------------------------------------------------


@dataclass(slots=True)
class CliRun:
    """One ``ghl-migrate run`` process: its exit, rusage, log lines and wall clock."""

    usage: Usage
    wall: float  # seconds, spawn to exit
    logs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def elapsed(self) -> float:
        """The run's own elapsed time (its ``run finished`` line), start-up excluded."""
        for line in reversed(self.logs):
            if line.get("event") == "run finished":
                return float(line["elapsed"])
        raise RuntimeError("the run logged no 'run finished' line")

    @property
    def summary(self) -> dict[str, Any]:
        for line in reversed(self.logs):
            if line.get("event") == "run finished":
                return {k: v for k, v in line.items() if isinstance(v, int) and k != "elapsed"}
        return {}


def _engine_cmd(job: Path, tokens: Path, url: str, report: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "engine",
        "run",
        str(job),
        "--tokens",
        str(tokens),
        "--base-url",
        url,
        "--report",
        str(report),
        "--no-progress",
        "--log-format",
        "json",
        *(["-v"] if os.environ.get("BENCH_VERBOSE") else []),
        *extra,
    ]


def _spawn(cmd: list[str], err: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GHL_")}
    with err.open("ab") as fh:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=fh
        )
    _pin(proc.pid, CLIENT_CPU)
    return proc


def _logs(err: Path) -> list[dict[str, Any]]:
    lines = []
    for text in err.read_text(errors="replace").splitlines():
        if text.startswith("{"):
            try:
                lines.append(json.loads(text))
            except ValueError:
                continue
    return lines


def run_cli(cmd: list[str], err: Path, *, timeout: float = 3600) -> CliRun:
    """Run a command to the end; raise when it fails (exit code 2 or worse)."""
    started = time.monotonic()
    proc = _spawn(cmd, err)
    usage = _reap(proc, started, timeout)
    if usage.exit_code not in (0, 1):
        raise RuntimeError(f"{cmd[3]} failed ({usage.exit_code}): {err.read_text()[-2000:]}")
    return CliRun(usage=usage, wall=time.monotonic() - started, logs=_logs(err))


@dataclass(slots=True)
class Job:
    sandbox: SandboxProcess
    job: Path
    tokens: Path
    ids: list[str]


def _job(sandbox: SandboxProcess, workdir: Path, name: str, locations: int, per: int) -> Job:
    ids = location_ids(name[:6], locations)
    tokens = workdir / f"{name}.tokens.csv"
    write_tokens(tokens, sandbox.issue_tokens(ids))
    job = workdir / f"{name}.job.csv"
    write_job(job, ids, per)
    return Job(sandbox, job, tokens, ids)


def _server_log(sandbox: SandboxProcess) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{sandbox.url}/_sandbox/log", timeout=120) as resp:  # noqa: S310
        entries: list[dict[str, Any]] = json.loads(resp.read())
    return entries


def _admitted(log: list[dict[str, Any]], location: str | None = None) -> list[float]:
    """Arrival times of requests the server admitted (not 429, not dropped)."""
    return [
        e["at"]
        for e in log
        if e["status"] not in (0, 429) and (location is None or e["token_location"] == location)
    ]


def _rate(limit: int, interval: float) -> str:
    return f"{limit}/{round(interval * 1000)}ms"


def _latency(low: float, high: float) -> str:
    return f"{low * 1000:g}-{high * 1000:g}"


# -- contention ---------------------------------------------------------------------------------


@dataclass(slots=True)
class ContentionResult:
    records: int
    locations: int
    limit: int
    interval: float
    other: int  # the other client's requests admitted
    windows_after: list[int]  # ours admitted in each window after the other client stopped
    spans_after: list[int]  # the most of ours admitted in one interval starting in each
    elapsed: float
    bound: float
    throttled: int
    requests: int
    lowered: int  # "throttled below the expected rate" warnings

    @property
    def recovered_in(self) -> int | None:
        """The first window after the contention in which we got >= 90% of the limit: in a
        span of one interval starting in it, as the server's sliding window counts (bins at
        a fixed offset split a burst that straddles their edge: 17 + 3 for a full 20)."""
        for n, count in enumerate(self.spans_after, 1):
            if count >= 0.9 * self.limit:
                return n
        return None


def best_spans(times: list[float], start: float, interval: float, windows: int) -> list[int]:
    """For each of ``windows`` windows from ``start``: the most of ``times`` (sorted) in one
    span of ``interval`` that starts within that window."""
    best = [0] * windows
    end = 0
    for i, t in enumerate(times):
        k = math.floor((t - start) / interval)
        if not 0 <= k < windows:
            continue
        end = max(end, i)
        while end < len(times) and times[end] < t + interval:
            end += 1
        best[k] = max(best[k], end - i)
    return best


def run_contention(
    workdir: Path, *, records: int, locations: int, scale: float = 1.0, quick: bool = False
) -> Any:
    limit, interval = 20, 2.0 * scale
    after, lasting = 4.0 * scale, 5.0 * scale
    extra = ["--latency", _latency(0.05 * scale, 0.15 * scale)]
    extra += ["--contention", _rate(40, interval), "--contention-after", f"{after:g}"]
    extra += ["--contention-for", f"{lasting:g}"]
    per = max(1, records // locations)
    with SandboxProcess(
        workdir, rate_limit=_rate(limit, interval), name="contention.sandbox", extra=extra
    ) as sandbox:
        job = _job(sandbox, workdir, "contention", locations, per)
        run = run_cli(
            _engine_cmd(job.job, job.tokens, sandbox.url, workdir / "contention.csv"),
            workdir / "contention.stderr",
        )
        log = _server_log(sandbox)
        stats = sandbox.stats()
    ours = _admitted(log, job.ids[0])
    ended = min(e["at"] for e in log if e["token_location"] == job.ids[0]) + after + lasting
    windows = [
        sum(1 for t in ours if ended + k * interval <= t < ended + (k + 1) * interval)
        for k in range(3)
    ]
    return ContentionResult(
        records=per * locations,
        locations=locations,
        limit=limit,
        interval=interval,
        other=int(stats.get("contention_admitted", 0)),
        windows_after=windows,
        spans_after=best_spans(sorted(ours), ended, interval, 3),
        elapsed=run.elapsed,
        bound=len(ours) * interval / limit,
        throttled=int(stats.get("throttled", 0)),
        requests=int(stats.get("requests", 0)),
        lowered=sum(1 for line in run.logs if "below the expected rate" in line.get("event", "")),
    )


# -- kill and resume ------------------------------------------------------------------------------


@dataclass(slots=True)
class ResumeResult:
    variant: str
    records: int
    locations: int
    uninterrupted: float  # wall s, one process
    killed_at: float  # wall s after the first start
    interrupted: float  # wall s, first start to the resumed run's exit
    throttled: int
    lowered: int

    @property
    def ratio(self) -> float:
        return self.interrupted / self.uninterrupted


def _resume_variant(
    workdir: Path, variant: str, *, locations: int, per: int, scale: float, extra: list[str]
) -> ResumeResult:
    limit, interval = 20, 2.0 * scale
    told = ["--rate", _rate(limit, interval)] if "--bare-429" in extra else []
    name = f"resume-{variant}"
    with SandboxProcess(
        workdir, rate_limit=_rate(limit, interval), name=f"{name}-a.sandbox", extra=extra
    ) as sandbox:
        job = _job(sandbox, workdir, f"{name}-a", locations, per)
        whole = run_cli(
            _engine_cmd(job.job, job.tokens, sandbox.url, workdir / f"{name}-a.csv", *told),
            workdir / f"{name}-a.stderr",
        )
    with SandboxProcess(
        workdir, rate_limit=_rate(limit, interval), name=f"{name}-b.sandbox", extra=extra
    ) as sandbox:
        job = _job(sandbox, workdir, f"{name}-b", locations, per)
        report = workdir / f"{name}-b.csv"
        err = workdir / f"{name}-b.stderr"
        cmd = _engine_cmd(job.job, job.tokens, sandbox.url, report, *told)
        started = time.monotonic()
        first = _spawn(cmd, err)
        kill_at = whole.wall / 2
        time.sleep(kill_at)
        first.send_signal(signal.SIGKILL)
        _reap(first, started, 30)
        resumed = run_cli([*cmd, "--resume"], err)
        total = time.monotonic() - started
        stats = sandbox.stats()
    return ResumeResult(
        variant=variant,
        records=per * locations,
        locations=locations,
        uninterrupted=whole.wall,
        killed_at=kill_at,
        interrupted=total,
        throttled=int(stats.get("throttled", 0)),
        lowered=sum(
            1 for line in resumed.logs if "below the expected rate" in line.get("event", "")
        ),
    )


def run_resume(
    workdir: Path, *, records: int, locations: int, scale: float = 1.0, quick: bool = False
) -> Any:
    per = max(1, records // locations)
    variants = [("headers", [])] + ([] if quick else [("bare-429", ["--bare-429"])])
    return [
        _resume_variant(workdir, name, locations=locations, per=per, scale=scale, extra=extra)
        for name, extra in variants
    ]


# -- throttled token ------------------------------------------------------------------------------


@dataclass(slots=True)
class PacedResult:
    """A run against a server limit: time against the bound, and 429s."""

    label: str
    locations: int
    records: int
    limit: int  # what the server admits per interval
    interval: float
    admitted_per_location: float
    elapsed: float
    throttled: int
    requests: int
    lowered: int = 0

    @property
    def bound(self) -> float:
        return self.admitted_per_location * self.interval / self.limit

    @property
    def ratio(self) -> float:
        return self.elapsed / self.bound

    @property
    def throttled_share(self) -> float:
        return self.throttled / max(self.requests, 1)


def _paced(
    workdir: Path,
    name: str,
    *,
    locations: int,
    per: int,
    limit: int,
    interval: float,
    advertised: int,
    extra: Sequence[str] = (),
    rate: str | None = None,
) -> PacedResult:
    with SandboxProcess(
        workdir, rate_limit=_rate(advertised, interval), name=f"{name}.sandbox", extra=extra
    ) as sandbox:
        job = _job(sandbox, workdir, name, locations, per)
        told = ["--rate", rate] if rate else []
        run = run_cli(
            _engine_cmd(job.job, job.tokens, sandbox.url, workdir / f"{name}.csv", *told),
            workdir / f"{name}.stderr",
        )
        log = _server_log(sandbox)
        stats = sandbox.stats()
    return PacedResult(
        label=name,
        locations=locations,
        records=per * locations,
        limit=limit,
        interval=interval,
        admitted_per_location=len(_admitted(log)) / locations,
        elapsed=run.elapsed,
        throttled=int(stats.get("throttled", 0)),
        requests=int(stats.get("requests", 0)),
        lowered=sum(1 for line in run.logs if "below the expected rate" in line.get("event", "")),
    )


def run_throttled(
    workdir: Path, *, records: int, locations: int, scale: float = 1.0, quick: bool = False
) -> Any:
    return _paced(
        workdir,
        "throttled",
        locations=locations,
        per=max(1, records // locations),
        limit=8,
        interval=2.0 * scale,
        advertised=20,
        extra=["--throttle-below", "8"],
    )


def run_windows(
    workdir: Path, *, records: int, locations: int, scale: float = 1.0, quick: bool = False
) -> Any:
    interval = 2.0 * scale
    results = []
    variants = [("sliding", False), ("fixed", True)]
    if not quick:
        variants += [("sliding", True), ("fixed", False)]
    for window, known in sorted(variants, reverse=True):
        extra = ["--window", window] + (["--no-rate-headers"] if known else [])
        results.append(
            _paced(
                workdir,
                f"{window}-{'known' if known else 'learned'}",
                locations=locations,
                per=max(1, records // locations),
                limit=20,
                interval=interval,
                advertised=20,
                extra=extra,
                rate=_rate(20, interval) if known else None,
            )
        )
    return results


# -- many locations ------------------------------------------------------------------------------


@dataclass(slots=True)
class ManyResult:
    locations: int
    records: int
    latency: tuple[float, float]  # seconds
    limit: int
    interval: float
    requests_per_location: float
    reads_per_location: float
    elapsed: float  # default options
    elapsed_32: float  # --concurrency 32
    floor_wall: float  # bare aiohttp, POSTs only, 512 connections
    throttled: int

    @property
    def rate_bound(self) -> float:
        return self.requests_per_location * self.interval / self.limit

    @property
    def latency_bound(self) -> float:
        return (self.reads_per_location + 1) * sum(self.latency) / 2

    @property
    def bound(self) -> float:
        return max(self.rate_bound, self.latency_bound)

    @property
    def ratio(self) -> float:
        return self.elapsed / self.bound


def run_many(
    workdir: Path, *, records: int, locations: int, scale: float = 1.0, quick: bool = False
) -> Any:
    limit, interval = 100, 10.0
    low, high = 0.05 * scale, 0.15 * scale
    per = max(1, records // locations)
    extra = ["--latency", _latency(low, high)]
    runs: dict[str, float] = {}
    variants: list[tuple[str, list[str]]] = [("default", [])]
    if not quick:
        variants.append(("c32", ["--concurrency", "32"]))
    for label, options in variants:
        with SandboxProcess(
            workdir, rate_limit=_rate(limit, interval), name=f"many-{label}.sandbox", extra=extra
        ) as sandbox:
            job = _job(sandbox, workdir, f"many-{label}", locations, per)
            run = run_cli(
                _engine_cmd(
                    job.job, job.tokens, sandbox.url, workdir / f"many-{label}.csv", *options
                ),
                workdir / f"many-{label}.stderr",
            )
            runs[label] = run.elapsed
            if label == "default":
                stats = sandbox.stats()
    floor_wall = 0.0
    if not quick:
        with SandboxProcess(
            workdir, rate_limit=_rate(limit, interval), name="many-floor.sandbox", extra=extra
        ) as sandbox:
            job = _job(sandbox, workdir, "many-floor", locations, per)
            floor_wall = _floor(workdir, "many-floor", job, sandbox.url, 512).wall
    requests = int(stats.get("requests", 0))
    creates = int(stats.get("creates_applied", 0))
    return ManyResult(
        locations=locations,
        records=per * locations,
        latency=(low, high),
        limit=limit,
        interval=interval,
        requests_per_location=requests / locations,
        reads_per_location=(requests - creates) / locations,
        elapsed=runs["default"],
        elapsed_32=runs.get("c32", 0.0),
        floor_wall=floor_wall,
        throttled=int(stats.get("throttled", 0)),
    )


# -- CPU of the whole process -------------------------------------------------------------------

#: the floor: the least a client must do to send the same POSTs (its own small script, so
#: that its start-up is only what it needs: asyncio, aiohttp, orjson, csv)
FLOOR_SCRIPT = """
import asyncio, csv, sys
import aiohttp, orjson

def main():
    job, tokens_file, base, concurrency = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    with open(tokens_file, newline="", encoding="utf-8") as fh:
        tokens = {r["location_id"]: r["token"] for r in csv.DictReader(fh)}
    with open(job, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    url = base + "/associations/"

    async def run():
        todo = iter(rows)
        connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)
        async with aiohttp.ClientSession(connector=connector) as session:
            async def worker():
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
                        "Version": "2021-07-28",
                        "Accept": "application/json",
                        "Authorization": "Bearer " + tokens[location],
                        "Content-Type": "application/json",
                    }
                    async with session.post(url, data=orjson.dumps(body), headers=headers) as r:
                        await r.read()
            await asyncio.gather(*(worker() for _ in range(concurrency)))

    asyncio.run(run())

main()
"""


def _floor(workdir: Path, name: str, job: Job, url: str, concurrency: int) -> CliRun:
    script = workdir / "floor.py"
    script.write_text(FLOOR_SCRIPT)
    cmd = [sys.executable, str(script), str(job.job), str(job.tokens), url, str(concurrency)]
    return run_cli(cmd, workdir / f"{name}.stderr")


@dataclass(slots=True)
class CpuResult:
    records: int
    locations: int
    engine_cpu: list[float]
    floor_cpu: list[float]
    engine_wall: list[float]
    floor_wall: list[float]
    engine_start_cpu: list[float]  # a one-record job: start-up and teardown, mostly
    floor_start_cpu: list[float]  # the floor's imports only

    @property
    def engine(self) -> float:
        return statistics.median(self.engine_cpu)

    @property
    def floor(self) -> float:
        return statistics.median(self.floor_cpu)

    @property
    def ratio(self) -> float:
        return self.engine / self.floor

    @property
    def ratios(self) -> list[float]:
        """Engine over floor, pair by pair (each pair ran back to back)."""
        return [e / f for e, f in zip(self.engine_cpu, self.floor_cpu, strict=True)]


def run_cpu(workdir: Path, *, records: int, locations: int, repeat: int = 3) -> Any:
    per = max(1, records // locations)
    high = ["--daily-limit", "100000000"]
    result = CpuResult(per * locations, locations, [], [], [], [], [], [])
    with SandboxProcess(workdir, rate_limit="1000000/1s", name="cpu.sandbox", extra=high) as sb:
        for n in range(repeat):
            job = _job(sb, workdir, f"cpuf{n}", locations, per)
            floor = _floor(workdir, f"cpuf{n}", job, sb.url, 32)
            job = _job(sb, workdir, f"cpue{n}", locations, per)
            engine = run_cli(
                _engine_cmd(job.job, job.tokens, sb.url, workdir / f"cpue{n}.csv"),
                workdir / f"cpue{n}.stderr",
            )
            if engine.summary.get("created") != per * locations:
                raise RuntimeError(f"the engine did not create everything: {engine.summary}")
            result.floor_cpu.append(floor.usage.cpu)
            result.engine_cpu.append(engine.usage.cpu)
            result.floor_wall.append(floor.wall)
            result.engine_wall.append(engine.wall)
        for n in range(repeat):
            one = _job(sb, workdir, f"cpuo{n}", 1, 1)
            start = run_cli(
                _engine_cmd(one.job, one.tokens, sb.url, workdir / f"cpuo{n}.csv"),
                workdir / f"cpuo{n}.stderr",
            )
            result.engine_start_cpu.append(start.usage.cpu)
            imports = run_cli(
                [sys.executable, "-c", "import asyncio, csv, sys, aiohttp, orjson"],
                workdir / "cpu-imports.stderr",
            )
            result.floor_start_cpu.append(imports.usage.cpu)
    return result


# -- the scenarios, and their tables ---------------------------------------------------------------


def run(
    name: str, workdir: Path, size: dict[str, int], *, scale: float, repeat: int, quick: bool
) -> Any:
    """Run scenario ``name`` (one of ``bench.ADAPT_SCENARIOS``)."""
    if name == "cpu":
        return run_cpu(workdir, **size, repeat=repeat)
    runner = {
        "contention": run_contention,
        "resume": run_resume,
        "throttled": run_throttled,
        "windows": run_windows,
        "many": run_many,
    }[name]
    return runner(workdir, **size, scale=scale, quick=quick)


def _verdict(ok: bool) -> str:
    return "met" if ok else "**MISSED**"


def _list(values: Sequence[float], digits: int = 2) -> str:
    return " / ".join(f"{v:.{digits}f}" for v in values)


def render(results: dict[str, Any], elapsed: dict[str, float], scale: float) -> list[str]:
    """Markdown sections for the scenarios of this module that ran."""
    out: list[str] = []
    note = f" (time scale {scale:g})" if scale != 1 else ""
    c: ContentionResult | None = results.get("contention")
    if c is not None:
        out += [
            f"### Contention: {c.locations} location(s) x {c.records // c.locations} creates at "
            f"{c.limit} / {c.interval:g} s, another client for a while{note} "
            f"({elapsed['contention']:.0f} s)",
            "",
            "| measure | value | target |",
            "|---|---:|---|",
            f"| the other client's requests admitted | {c.other} | |",
            f"| ours (the first location) admitted in windows 1, 2, 3 after it stopped | "
            f"{', '.join(map(str, c.windows_after))} (limit {c.limit}) | |",
            f"| the most of ours in one interval starting in windows 1, 2, 3 (as a sliding "
            f"window counts) | {', '.join(map(str, c.spans_after))} | |",
            f"| **back to >= 90% of the limit in window** | **{c.recovered_in}** | "
            f"<= 3: {_verdict(c.recovered_in is not None and c.recovered_in <= 3)} |",
            f"| ceiling lowered (warnings) | {c.lowered} | |",
            f"| run s (its log) / bound s (our admitted at the limit) | "
            f"{c.elapsed:.2f} / {c.bound:.2f} = {c.elapsed / c.bound:.2f} | |",
            f"| 429s / requests (server) | {c.throttled} / {c.requests} | |",
            "",
        ]
    resumes: list[ResumeResult] | None = results.get("resume")
    if resumes:
        r0 = resumes[0]
        out += [
            f"### Kill and resume at once: {r0.records} creates over {r0.locations} locations at "
            f"20 / {2 * scale:g} s{note} ({elapsed['resume']:.0f} s)",
            "",
            "| 429s carry | uninterrupted s | killed at s | killed + resumed s | ratio | "
            "429s | ceiling lowered | target |",
            "|---|---:|---:|---:|---:|---:|---:|---|",
        ]
        for r in resumes:
            out.append(
                f"| {r.variant} | {r.uninterrupted:.2f} | {r.killed_at:.2f} | "
                f"{r.interrupted:.2f} | **{r.ratio:.3f}** | {r.throttled} | {r.lowered} | "
                f"<= 1.15: {_verdict(r.ratio <= 1.15)} |"
            )
        out += ["", "Wall clock around whole processes: the resumed case pays two start-ups.", ""]
    t: PacedResult | None = results.get("throttled")
    if t is not None:
        out += [
            f"### Throttled token: {t.locations} locations x {t.records // t.locations} creates, "
            f"headers say 20 / {t.interval:g} s, the server admits {t.limit}{note} "
            f"({elapsed['throttled']:.0f} s)",
            "",
            "| measure | value | target |",
            "|---|---:|---|",
            f"| bound s ({t.admitted_per_location:.0f} admitted per location at {t.limit} / "
            f"{t.interval:g} s) | {t.bound:.2f} | |",
            f"| run s (its log) | {t.elapsed:.2f} | |",
            f"| **run / bound** | **{t.ratio:.3f}** | <= 1.08: {_verdict(t.ratio <= 1.08)} |",
            f"| **429s** | **{t.throttled} of {t.requests} ({t.throttled_share:.1%})** | "
            f"<= 10%: {_verdict(t.throttled_share <= 0.10)} |",
            "",
        ]
    windows: list[PacedResult] | None = results.get("windows")
    if windows:
        w0 = windows[0]
        out += [
            f"### Honest limits: {w0.locations} locations x {w0.records // w0.locations} creates "
            f"at 20 / {w0.interval:g} s{note} ({elapsed['windows']:.0f} s)",
            "",
            "| window, limit | bound s | run s | run / bound | 429s | target |",
            "|---|---:|---:|---:|---:|---|",
        ]
        for w in windows:
            ok = w.throttled == 0 and w.ratio <= 1.03
            out.append(
                f"| {w.label} | {w.bound:.2f} | {w.elapsed:.2f} | **{w.ratio:.3f}** | "
                f"**{w.throttled}** | 0 and <= 1.03: {_verdict(ok)} |"
            )
        out += [
            "",
            "Learned: default `--rate` (100/10s), the headers say 20; known: `--rate 20/2s` "
            "(scaled), the server sends no rate headers.",
            "",
        ]
    m: ManyResult | None = results.get("many")
    if m is not None:
        low, high = m.latency
        out += [
            f"### Many locations: {m.locations} x {m.records // m.locations} creates, answers "
            f"{low * 1000:g}-{high * 1000:g} ms, {m.limit} / {m.interval:g} s{note} "
            f"({elapsed['many']:.0f} s)",
            "",
            "| measure | value | target |",
            "|---|---:|---|",
            f"| rate-limit bound s ({m.requests_per_location:.0f} requests per location at "
            f"{m.limit} / {m.interval:g} s) | {m.rate_bound:.2f} | |",
            f"| latency bound s ({m.reads_per_location:.0f} reads then a create, one after "
            f"another, at {(low + high) / 2 * 1000:g} ms) | {m.latency_bound:.2f} | |",
            f"| **run s, default options** (its log) | **{m.elapsed:.2f}** "
            f"({m.ratio:.2f}x the larger bound) | <= 1.1x: {_verdict(m.ratio <= 1.1)} |",
            f"| run s, `--concurrency 32` (the old default) | {m.elapsed_32:.2f} | |",
            f"| bare aiohttp client, the {m.records} POSTs only, 512 connections (wall) | "
            f"{m.floor_wall:.2f} | |",
            f"| 429s | {m.throttled} | |",
            "",
        ]
    u: CpuResult | None = results.get("cpu")
    if u is not None:
        out += [
            f"### CPU as users pay it: {u.records:,} creates over {u.locations} locations, all "
            f"five rate headers, limit 1,000,000 / s ({elapsed['cpu']:.0f} s)",
            "",
            "| | engine (`python -m engine run`, defaults) | floor (bare aiohttp, 32 "
            "connections) | engine / floor |",
            "|---|---:|---:|---:|",
            f"| **whole-process CPU s, median** | **{u.engine:.2f}** | **{u.floor:.2f}** | "
            f"**{u.ratio:.2f}** |",
            f"| each run (alternating) | {_list(u.engine_cpu)} | {_list(u.floor_cpu)} | "
            f"{_list(u.ratios)} |",
            f"| wall s | {_list(u.engine_wall)} | {_list(u.floor_wall)} | |",
            f"| start-up CPU s (engine: a one-record job; floor: its imports) | "
            f"{_list(u.engine_start_cpu)} | {_list(u.floor_start_cpu)} | |",
            "",
            f"Target whole-process CPU <= 1.25x the floor: {u.ratio:.2f}x → "
            f"{_verdict(u.ratio <= 1.25)}.",
            "",
        ]
    return out
