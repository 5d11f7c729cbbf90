"""The engine's relations kind at the scale it is for: paced, and a million records.

Two scenarios of ``bench.py`` (same harness: the sandbox in its own process, each measured
client in a fresh worker process, CPU and peak RSS of the run alone):

relations-pacing
    One location, N relations (5,000), the sandbox limiting it to ``--server-rate``
    (``100/1s``: HighLevel's 100 per 10 s, ten times faster), the engine not told (its
    default ``--rate 100/10s``; it learns the limit from the headers). Reports wall time
    against the bound the limit allows (requests the server admitted / rate) and requests
    per relation, preflight (the definitions' pages) included.
relations-scale
    N relations (1,000,000) over L locations (1,000), limits off, report written. Runs at a
    tenth of the records over the same locations, then in full: peak RSS at both sizes shows
    whether memory grows per record (records and outcomes live in the run's on-disk store,
    state is per location). Then plans a rollback of the full report in its own process
    (every row read, de-duplicated through a scratch file): its peak RSS too.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.bench import bench

__all__ = [
    "RelationsPacingResult",
    "RelationsScaleResult",
    "plan_worker",
    "render_relations",
    "run_relations_pacing",
    "run_relations_scale",
]

KEY = "pet_owner"
COLUMNS = ("location_id", "association_key", "first_record_id", "second_record_id")
RSS_TARGET_MB = 200
BUDGET = 1.05  # requests per relation on a clean run


def relation_rows(locations: Sequence[str], per_location: int) -> Iterator[tuple[str, ...]]:
    """contact-i → pet-i in every location, round-robin over locations (send order)."""
    for i in range(1, per_location + 1):
        for location in locations:
            yield (location, KEY, f"contact-{i}", f"pet-{i}")


def write_relations_job(path: Path, locations: Sequence[str], per_location: int) -> int:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(COLUMNS)
        count = 0
        for row in relation_rows(locations, per_location):
            writer.writerow(row)
            count += 1
    return count


def _relations_run(
    workdir: Path,
    name: str,
    *,
    locations: int,
    per_location: int,
    server_rate: str = "0",
    rate: tuple[int, float] | None = None,
    concurrency: int = bench.CONCURRENCY,
    plan: bool = False,
) -> tuple[bench.Measured, bench.Measured | None]:
    """A fresh sandbox with records and a definition per location; one measured engine
    run of a relations job against it (and, with ``plan``, a measured rollback plan)."""
    extra = ("--records", str(per_location))
    with bench.SandboxProcess(
        workdir, rate_limit=server_rate, name=f"{name}.sandbox", extra=extra
    ) as sandbox:
        ids = bench.location_ids(name[:6].replace("-", ""), locations)
        tokens_file = workdir / f"{name}.tokens.csv"
        bench.write_tokens(tokens_file, sandbox.issue_tokens(ids))
        for location in ids:
            sandbox._call(
                "POST",
                "/_sandbox/associations",
                {"locationId": location, "key": KEY, "firstObjectKey": "contact",
                 "secondObjectKey": "custom_objects.pet", "firstObjectLabel": "Owner",
                 "secondObjectLabel": "Pet"},
            )  # fmt: skip
        job_file = workdir / f"{name}.job.csv"
        write_relations_job(job_file, ids, per_location)
        report = workdir / f"{name}.report.csv"
        spec = {
            "kind": "engine",
            "base_url": sandbox.url,
            "job_file": str(job_file),
            "tokens_file": str(tokens_file),
            "report": str(report),
            "concurrency": concurrency,
            "rate": list(rate) if rate else None,
        }
        result = bench.run_worker(spec, workdir, name, timeout=4 * 3600)
        result.server = sandbox.stats()
        result.server.pop("writes_by_key", None)
    result.sandbox = sandbox.usage
    planned = None
    if plan:
        spec = {"kind": "plan", "report": str(report)}
        planned = bench.run_worker(spec, workdir, f"{name}-plan", timeout=3600)
    for path in (job_file, report):  # gigabytes at full size: not kept between runs
        path.unlink(missing_ok=True)
    return result, planned


def plan_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Plan a rollback of a report (every row read and de-duplicated), measured."""
    from jobs.rollback import plan_rollback

    def run() -> dict[str, Any]:
        with plan_rollback([spec["report"]]) as plan:
            return {"records": len(plan.records), "counts": {"planned": len(plan.records)}}

    return bench._measure("plan", run)


@dataclass(slots=True)
class RelationsPacingResult:
    records: int
    server_limit: int
    server_interval: float
    engine: bench.Measured

    @property
    def admitted(self) -> int:
        return self.engine.server_requests - int(self.engine.server.get("throttled", 0))

    @property
    def bound(self) -> float:
        """Seconds the limit allows at best for the requests the server admitted."""
        return self.admitted * self.server_interval / self.server_limit

    @property
    def ratio(self) -> float:
        return self.engine.wall / self.bound

    @property
    def per_relation(self) -> float:
        return self.admitted / max(self.records, 1)


def run_relations_pacing(
    workdir: Path,
    *,
    records: int = 5_000,
    locations: int = 1,
    server_rate: str = "100/1s",
    concurrency: int = bench.CONCURRENCY,
) -> RelationsPacingResult:
    """``records`` relations in one location (``locations`` is ignored)."""
    from engine import parse_rate

    limit, interval = parse_rate(server_rate)
    engine, _ = _relations_run(
        workdir,
        "rel-pacing",
        locations=1,
        per_location=records,
        server_rate=server_rate,
        concurrency=concurrency,
    )
    return RelationsPacingResult(
        records=records, server_limit=limit, server_interval=interval, engine=engine
    )


@dataclass(slots=True)
class RelationsScaleResult:
    locations: int
    steps: list[tuple[int, bench.Measured]]  # (records, run)
    plan: bench.Measured | None

    @property
    def full(self) -> bench.Measured:
        return self.steps[-1][1]

    @property
    def bytes_per_record(self) -> float | None:
        """Extra peak RSS per extra record between the small and the full run."""
        (r0, m0), (r1, m1) = self.steps[0], self.steps[-1]
        if r1 == r0:
            return None
        return (m1.peak_rss_kb - m0.peak_rss_kb) * 1024 / (r1 - r0)


def run_relations_scale(
    workdir: Path,
    *,
    records: int = 1_000_000,
    locations: int = 1_000,
    fractions: Sequence[float] = (0.1, 1.0),
    concurrency: int = bench.CONCURRENCY,
) -> RelationsScaleResult:
    steps = []
    planned = None
    for n, fraction in enumerate(fractions):
        per = max(1, round(records * fraction / locations))
        last = n == len(fractions) - 1
        run, plan = _relations_run(
            workdir,
            f"rel-scale-{n}",
            locations=locations,
            per_location=per,
            rate=bench.UNLIMITED_RATE,
            concurrency=concurrency,
            plan=last,
        )
        steps.append((per * locations, run))
        planned = plan or planned
    return RelationsScaleResult(locations=locations, steps=steps, plan=planned)


def render_relations(results: dict[str, Any], elapsed: dict[str, float]) -> list[str]:
    out: list[str] = []
    p: RelationsPacingResult | None = results.get("relations-pacing")
    if p is not None:
        e = p.engine
        out += [
            f"### 7. Relations, paced: {p.records:,} relations in one location, sandbox limit "
            f"{p.server_limit}/{p.server_interval:g}s, engine not told "
            f"({elapsed['relations-pacing']:.0f} s)",
            "",
            "| | |",
            "|---|---:|",
            f"| outcomes | {bench._counts(e.counts)} |",
            f"| requests the server admitted | {p.admitted:,} (429s: "
            f"{int(e.server.get('throttled', 0)):,}) |",
            f"| **requests per relation** (preflight included) | **{p.per_relation:.4f}** |",
            f"| wall s | {e.wall:.2f} |",
            f"| bound s (admitted / limit) | {p.bound:.2f} |",
            f"| **wall / bound** | **{p.ratio:.3f}** |",
            f"| client CPU s | {e.cpu:.2f} |",
            f"| peak RSS MB | {bench._mb(e.peak_rss_kb)} |",
            "",
            f"Target ≤ {BUDGET} requests per relation: {p.per_relation:.4f} → "
            f"{bench._verdict(p.per_relation <= BUDGET)}. At HighLevel's 100/10 s the same "
            f"job takes {p.admitted / 10 / 60:.1f} min.",
            "",
        ]
    s: RelationsScaleResult | None = results.get("relations-scale")
    if s is not None:
        out += [
            f"### 8. Relations at scale: {s.full.records:,} relations over {s.locations:,} "
            f"locations, limits off ({elapsed['relations-scale']:.0f} s)",
            "",
            "| records | wall s | records/s | client CPU s | CPU µs / record "
            "| sandbox CPU s | peak RSS MB | report MB |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for records, m in s.steps:
            out.append(
                f"| {records:,} | {m.wall:.1f} | {m.records / m.wall:,.0f} | {m.cpu:.1f} "
                f"| {bench._us(m.cpu / max(m.records, 1))} | {m.sandbox.cpu:.1f} "
                f"| {bench._mb(m.peak_rss_kb)} | {m.report_bytes / 1e6:.0f} |"
            )
        growth = s.bytes_per_record
        peak = s.full.peak_rss_kb / 1024
        out += [
            "",
            f"Outcomes at full size: {bench._counts(s.full.counts)}. Peak RSS grows "
            + ("n/a" if growth is None else f"{growth:.1f} bytes per extra record")
            + f"; target < {RSS_TARGET_MB} MB at full size: {peak:.0f} MB → "
            f"{bench._verdict(peak < RSS_TARGET_MB)}.",
        ]
        if s.plan is not None:
            out.append(
                f"Planning a rollback of the full report ({s.plan.records:,} deletes): "
                f"{s.plan.wall:.1f} s, peak RSS {bench._mb(s.plan.peak_rss_kb)} MB."
            )
        out.append("")
    return out
