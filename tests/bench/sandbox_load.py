"""The sandbox's own throughput, CPU and memory under load (scenarios of bench.py).

The engine is not involved: a minimal aiohttp client (a fresh worker process, pinned to its
own CPU when there are two) sends relation creates round-robin over the locations, then
``GET /associations/relations/{recordId}`` for property records (each linked to about five
contacts), then deletes, each phase at full speed with ``concurrency`` connections. The
sandbox (``python -m engine sandbox --rate-limit 0 --daily-limit 0 --records N``) has one
contact ↔ property definition per location, seeded through its admin routes.

For each phase the worker reads the sandbox's CPU time (``/proc/<pid>/stat``) before and
after: the sandbox's CPU per request says how many requests per second it can serve on one
core, whether or not the client kept up. After each phase it reads the sandbox's resident
memory (``VmRSS``), which covers its whole store: relations, indexes and request log.

sandbox-relations
    50,000 relations in one location: requests/s per phase (target ≥ 3,000).
sandbox-relations-scale
    1,000,000 relations over 1,000 locations: the sandbox's memory per relation.
sandbox-many
    The requests of issue 9's ``many`` scenario without the engine: per location
    ``GET /objects/``, the definitions' two list pages and N/L creates, one after another,
    every location at once (512 connections). Against a sandbox with the documented limits
    and answers delayed 50-150 ms (as in ``many``), and against one with limits off; each
    ``--repeat`` times, alternating, on a fresh sandbox. The sandbox's CPU per request, read
    around the load alone (not its start-up, its tokens or its shutdown), median of the runs.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.bench import bench

__all__ = ["SandboxLoadResult", "load_worker", "render_load", "run_sandbox_load"]

ASSOCIATION_KEY = "bench_home"
CONTACTS_PER_PROPERTY = 5  # each property record is the second record of about 5 relations
PHASE_CAP = 20_000  # most GETs and deletes per run: enough for a steady rate


@dataclass(slots=True)
class Phase:
    """One phase of the load: its requests and what they cost."""

    name: str
    requests: int
    wall: float  # seconds
    statuses: dict[str, int]
    sandbox_cpu: float  # seconds of the sandbox's CPU during the phase
    client_cpu: float  # seconds of the worker's CPU during the phase
    sandbox_rss_kb: int  # after the phase

    @property
    def rate(self) -> float:
        """Requests per second, as the client saw them."""
        return self.requests / self.wall if self.wall else 0.0

    @property
    def sandbox_us(self) -> float:
        """The sandbox's CPU microseconds per request."""
        return self.sandbox_cpu * 1e6 / max(self.requests, 1)

    @property
    def capacity(self) -> float:
        """Requests per second the sandbox would serve at 100% of one core."""
        return 1e6 / self.sandbox_us if self.sandbox_us else 0.0


@dataclass(slots=True)
class SandboxLoadResult:
    records: int
    locations: int
    concurrency: int
    rss_before_kb: int  # sandbox, seeded, before the first relation
    phases: list[Phase] = field(default_factory=list)

    @property
    def bytes_per_relation(self) -> float:
        """The sandbox's extra resident memory per relation after the creates."""
        grown = self.phases[0].sandbox_rss_kb - self.rss_before_kb
        return grown * 1024 / max(self.records, 1)


def run_sandbox_load(
    workdir: Path,
    *,
    records: int = 50_000,
    locations: int = 1,
    concurrency: int = bench.CONCURRENCY,
    name: str = "sandbox-relations",
) -> SandboxLoadResult:
    """Seed a fresh sandbox, then measure one load worker against it."""
    per_location = max(1, records // locations)
    extra = ("--records", str(per_location))
    with bench.SandboxProcess(workdir, name=f"{name}.sandbox", extra=extra) as sandbox:
        ids = bench.location_ids(name[:6].replace("-", ""), locations)
        tokens = sandbox.issue_tokens(ids)
        associations = {}
        for location in ids:
            created = sandbox._call(
                "POST",
                "/_sandbox/associations",
                {
                    "locationId": location,
                    "key": ASSOCIATION_KEY,
                    "firstObjectKey": "contact",
                    "secondObjectKey": "custom_objects.property",
                },
            )
            associations[location] = created["id"]
        spec = {
            "kind": "sandbox-load",
            "base_url": sandbox.url,
            "sandbox_pid": sandbox.pid,
            "tokens": tokens,
            "associations": associations,
            "per_location": per_location,
            "concurrency": concurrency,
        }
        raw, _ = bench._spawn_worker(spec, workdir, name, timeout=3600)
    return SandboxLoadResult(
        records=per_location * locations,
        locations=locations,
        concurrency=concurrency,
        rss_before_kb=raw["rss_before_kb"],
        phases=[Phase(**phase) for phase in raw["phases"]],
    )


# -- the worker (its own process) -------------------------------------------------------------


def _sandbox_cpu(pid: int) -> float:
    """Seconds of CPU the sandbox has used (Linux only, like the whole scenario)."""
    seconds = bench._process_cpu(pid)
    assert seconds is not None, "this scenario reads /proc: Linux only"
    return seconds


def _sandbox_cpu_precise(pid: int) -> float:
    """Seconds of CPU the sandbox has used, to the nanosecond: the scheduler's run time of
    each of its threads (``/proc/<pid>/task/*/schedstat``), where ``/proc/<pid>/stat``
    counts in ticks of 10 ms (3% of a 3,200-request load); ticks where schedstat is missing."""
    try:
        total = 0
        for task in Path(f"/proc/{pid}/task").iterdir():
            total += int((task / "schedstat").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return _sandbox_cpu(pid)
    return total / 1e9


def _proc_rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def load_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Create, read and delete relations as fast as the sandbox answers; time each phase."""
    import asyncio
    import resource
    from collections import Counter

    import aiohttp
    import orjson

    url = spec["base_url"]
    pid = spec["sandbox_pid"]
    per_location = spec["per_location"]
    concurrency = spec["concurrency"]
    tokens: dict[str, str] = spec["tokens"]
    associations: dict[str, str] = spec["associations"]
    properties = max(1, per_location // CONTACTS_PER_PROPERTY)
    headers = {
        location: {
            "Version": bench.API_VERSION,
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
        }
        for location, token in tokens.items()
    }

    Work = Iterator[tuple[str, str, bytes | None]]  # (location, path, body)

    def creates() -> Work:
        """Round-robin over the locations, as the engine sends them."""
        for i in range(1, per_location + 1):
            for location, association_id in associations.items():
                body = {
                    "locationId": location,
                    "associationId": association_id,
                    "firstRecordId": f"contact-{i}",
                    "secondRecordId": f"property-{(i - 1) % properties + 1}",
                }
                yield location, "/associations/relations", orjson.dumps(body)

    def gets() -> Work:
        """Property records, each the second record of several relations."""
        locations = list(tokens)
        for n in range(min(PHASE_CAP, per_location * len(locations))):
            location = locations[n % len(locations)]
            record = f"property-{n // len(locations) % properties + 1}"
            yield (
                location,
                f"/associations/relations/{record}?locationId={location}&skip=0&limit=100",
                None,
            )

    def deletes() -> Work:
        """Relations the creates made, as many as there were GETs."""
        for location, relation_id in created[: min(PHASE_CAP, len(created))]:
            yield location, f"/associations/relations/{relation_id}?locationId={location}", None

    created: list[tuple[str, str]] = []  # (location, relation id)

    async def phase(session: aiohttp.ClientSession, method: str, feed: Work) -> Counter[str]:
        statuses: Counter[str] = Counter()

        async def worker() -> None:
            for location, path, body in feed:
                async with session.request(
                    method, url + path, data=body, headers=headers[location]
                ) as resp:
                    answer = await resp.read()
                    statuses[str(resp.status)] += 1
                    if method == "POST" and resp.status == 201:
                        created.append((location, orjson.loads(answer)["id"]))

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return statuses

    phases: list[dict[str, Any]] = []

    async def main() -> None:
        connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)
        async with aiohttp.ClientSession(connector=connector) as session:
            plans = [
                ("create", "POST", creates),
                ("get", "GET", gets),
                ("delete", "DELETE", deletes),
            ]
            for name, method, make in plans:
                cpu_before = _sandbox_cpu(pid)
                own_before = resource.getrusage(resource.RUSAGE_SELF)
                started = time.perf_counter()
                statuses = await phase(session, method, make())
                wall = time.perf_counter() - started
                own_after = resource.getrusage(resource.RUSAGE_SELF)
                phases.append(
                    {
                        "name": name,
                        "requests": sum(statuses.values()),
                        "wall": wall,
                        "statuses": dict(statuses),
                        "sandbox_cpu": _sandbox_cpu(pid) - cpu_before,
                        "client_cpu": own_after.ru_utime + own_after.ru_stime
                        - own_before.ru_utime - own_before.ru_stime,
                        "sandbox_rss_kb": _proc_rss_kb(pid),
                    }
                )  # fmt: skip

    rss_before = _proc_rss_kb(pid)
    asyncio.run(main())
    return {"rss_before_kb": rss_before, "phases": phases}


# -- output ---------------------------------------------------------------------------------------


def render_load(title: str, result: SandboxLoadResult, elapsed: float) -> list[str]:
    """The scenario's section of the benchmark's Markdown."""
    r = result
    out = [
        f"### {title}: {r.records:,} relations over {r.locations:,} location(s), limits off, "
        f"concurrency {r.concurrency} ({elapsed:.0f} s)",
        "",
        "| phase | requests | answers | wall s | requests/s | sandbox CPU µs / request "
        "| sandbox capacity req/s (one core) | client CPU s | sandbox RSS after MB |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for p in r.phases:
        answers = ", ".join(f"{k} {v:,}" for k, v in sorted(p.statuses.items()))
        out.append(
            f"| {p.name} | {p.requests:,} | {answers} | {p.wall:.2f} | {p.rate:,.0f} "
            f"| {p.sandbox_us:.0f} | {p.capacity:,.0f} | {p.client_cpu:.2f} "
            f"| {p.sandbox_rss_kb / 1024:.1f} |"
        )
    slowest = min((p.capacity for p in r.phases if p.requests), default=0.0)
    out += [
        "",
        f"Sandbox RSS seeded {r.rss_before_kb / 1024:.1f} MB; after the creates "
        f"{r.bytes_per_relation:,.0f} bytes per relation (store, indexes and request log).",
        f"Target ≥ {bench.SANDBOX_TARGET:,} requests/s on every route: slowest sandbox "
        f"capacity {slowest:,.0f}/s → {bench._verdict(slowest >= bench.SANDBOX_TARGET)}.",
        "",
    ]
    return out


# -- the "many" benchmark's requests, against the sandbox alone ---------------------------------

#: (label, --rate-limit, --latency in ms or None; --time-scale multiplies the latency)
MIX_VARIANTS: tuple[tuple[str, str, tuple[float, float] | None], ...] = (
    ("many", "100/10000ms", (50.0, 150.0)),  # issue 9's "many": limits on, answers 50-150 ms
    ("limits off", "0", None),
)
MIX_CONCURRENCY = 512  # connections: every location at once, as the engine's many run does


@dataclass(slots=True)
class MixRun:
    """One run of the mix against a fresh sandbox."""

    requests: int
    statuses: dict[str, int]
    wall: float  # seconds
    sandbox_cpu: float  # seconds of the sandbox's CPU during the load
    client_cpu: float  # seconds of the worker's CPU during the load

    @property
    def sandbox_us(self) -> float:
        """The sandbox's CPU microseconds per request."""
        return self.sandbox_cpu * 1e6 / max(self.requests, 1)


@dataclass(slots=True)
class MixResult:
    """Runs of each variant, alternating; the median counts."""

    locations: int
    per_location: int
    concurrency: int
    latency: tuple[float, float]  # ms, of the "many" variant (after --time-scale)
    runs: dict[str, list[MixRun]] = field(default_factory=dict)

    @property
    def median_us(self) -> dict[str, float]:
        """The sandbox's CPU µs per request of each variant, median of its runs."""
        return {
            label: sorted(r.sandbox_us for r in runs)[len(runs) // 2]
            for label, runs in self.runs.items()
        }


def run_sandbox_mix(
    workdir: Path,
    *,
    records: int = 2_000,
    locations: int = 400,
    concurrency: int = MIX_CONCURRENCY,
    repeat: int = 3,
    scale: float = 1.0,
) -> MixResult:
    """The requests of issue 9's many benchmark from a bare client, each run on a fresh
    sandbox: per location the objects, two list pages and ``records / locations`` creates."""
    per_location = max(1, records // locations)
    low, high = MIX_VARIANTS[0][2] or (0.0, 0.0)
    result = MixResult(locations, per_location, concurrency, (low * scale, high * scale))
    for n in range(repeat):
        for label, rate, latency in MIX_VARIANTS:
            extra = (
                ("--latency", f"{latency[0] * scale:g}-{latency[1] * scale:g}") if latency else ()
            )
            name = f"sandbox-mix-{label.replace(' ', '-')}-{n}"
            with bench.SandboxProcess(
                workdir, rate_limit=rate, name=f"{name}.sandbox", extra=extra
            ) as sandbox:
                ids = bench.location_ids("mix", locations)
                spec = {
                    "kind": "sandbox-mix",
                    "base_url": sandbox.url,
                    "sandbox_pid": sandbox.pid,
                    "tokens": sandbox.issue_tokens(ids),
                    "per_location": per_location,
                    "concurrency": concurrency,
                }
                raw, _ = bench._spawn_worker(spec, workdir, name, timeout=3600)
            result.runs.setdefault(label, []).append(MixRun(**raw))
    return result


def mix_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Per location, what the engine sends in the many benchmark: ``GET /objects/``, the
    definitions' list pages until an empty one (two), then the creates, one after another;
    every location at once. The sandbox's CPU is read around the whole load."""
    import asyncio
    import resource
    from collections import Counter

    import aiohttp
    import orjson

    url, pid = spec["base_url"], spec["sandbox_pid"]
    tokens: dict[str, str] = spec["tokens"]
    per_location, concurrency = spec["per_location"], spec["concurrency"]
    statuses: Counter[str] = Counter()
    rows: dict[str, list[dict[str, str]]] = {location: [] for location in tokens}
    for row in bench.job_rows(list(tokens), per_location):
        rows[row["location_id"]].append(row)

    async def location(session: aiohttp.ClientSession, location_id: str) -> None:
        headers = {
            "Version": bench.API_VERSION,
            "Accept": "application/json",
            "Authorization": f"Bearer {tokens[location_id]}",
        }
        body_headers = headers | {"Content-Type": "application/json"}
        query = f"locationId={location_id}"
        async with session.get(f"{url}/objects/?{query}", headers=headers) as resp:
            await resp.read()
            statuses[str(resp.status)] += 1
        skip = 0
        while True:
            page = f"{url}/associations/?{query}&skip={skip}&limit=100"
            async with session.get(page, headers=headers) as resp:
                found = orjson.loads(await resp.read()).get("associations", [])
                statuses[str(resp.status)] += 1
            if not found:
                break
            skip += len(found)
        for row in rows[location_id]:
            body = {
                "locationId": location_id,
                "key": row["key"],
                "firstObjectKey": row["first_object_key"],
                "firstObjectLabel": row["first_object_label"],
                "secondObjectKey": row["second_object_key"],
                "secondObjectLabel": row["second_object_label"],
            }
            data = orjson.dumps(body)
            async with session.post(f"{url}/associations/", data=data, headers=body_headers) as r:
                await r.read()
                statuses[str(r.status)] += 1

    out: dict[str, Any] = {}

    async def main() -> None:
        connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)
        async with aiohttp.ClientSession(connector=connector) as session:
            cpu_before = _sandbox_cpu_precise(pid)
            own_before = resource.getrusage(resource.RUSAGE_SELF)
            started = time.perf_counter()
            await asyncio.gather(*(location(session, loc) for loc in tokens))
            wall = time.perf_counter() - started
            own_after = resource.getrusage(resource.RUSAGE_SELF)
            out.update(
                requests=sum(statuses.values()),
                statuses=dict(sorted(statuses.items())),
                wall=wall,
                sandbox_cpu=_sandbox_cpu_precise(pid) - cpu_before,
                client_cpu=own_after.ru_utime + own_after.ru_stime
                - own_before.ru_utime - own_before.ru_stime,
            )  # fmt: skip

    asyncio.run(main())
    return out


def render_mix(result: MixResult, elapsed: float) -> list[str]:
    """The scenario's section of the benchmark's Markdown."""
    r = result
    low, high = r.latency
    out = [
        f"### 10. Sandbox, the many benchmark's requests: {r.locations:,} locations x "
        f"(objects, 2 list pages, {r.per_location} creates), bare aiohttp client, "
        f"{r.concurrency} connections ({elapsed:.0f} s)",
        "",
        "| sandbox | runs | answers (last run) | wall s | sandbox CPU µs / request, each run "
        "| **median** |",
        "|---|---:|---|---|---|---:|",
    ]
    medians = r.median_us
    for label, rate, latency in MIX_VARIANTS:
        runs = r.runs.get(label, [])
        if not runs:
            continue
        options = f"`--rate-limit {rate}`" + (f" `--latency {low:g}-{high:g}`" if latency else "")
        answers = ", ".join(f"{k} {v:,}" for k, v in runs[-1].statuses.items())
        walls = " / ".join(f"{run.wall:.2f}" for run in runs)
        each = " / ".join(f"{run.sandbox_us:.0f}" for run in runs)
        out.append(
            f"| {label}: {options} | {len(runs)} | {answers} | {walls} | {each} "
            f"| **{medians[label]:.0f}** |"
        )
    out.append("")
    return out
