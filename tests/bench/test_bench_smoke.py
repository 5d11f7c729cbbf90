"""The benchmark script runs end to end at a tiny size and produces sane numbers.

Nothing here asserts speed: CI machines vary. The real runs are by hand (see bench.py).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from tests.bench import bench
from tests.bench.adapt import best_spans


def test_job_rows_are_unique_per_location_and_never_repeat_a_label_pair() -> None:
    """Benchmark jobs never trip the duplicate-key or duplicate-label-pair checks."""
    rows = list(bench.job_rows(bench.location_ids("smoke", 3), 25))
    assert len(rows) == 75
    assert all(len(r["location_id"]) == 20 for r in rows)
    keys = Counter((r["location_id"], r["key"]) for r in rows)
    assert max(keys.values()) == 1
    sides = Counter(
        (
            r["location_id"],
            r["first_object_key"],
            r["first_object_label"],
            r["second_object_key"],
            r["second_object_label"],
        )
        for r in rows
    )
    assert max(sides.values()) == 1
    assert all(r["first_object_key"] != r["second_object_key"] for r in rows)
    # round-robin: consecutive rows go to different locations
    assert rows[0]["location_id"] != rows[1]["location_id"]


@pytest.mark.timeout(120)
def test_a_burst_across_a_bin_edge_still_counts_as_one_full_window() -> None:
    """The contention measure counts the most requests in one interval starting in each
    window, so a full burst of 20 that a fixed bin would split 17 + 3 counts as 20."""
    burst = [10.9 + i * 0.01 for i in range(20)]  # 10.90 .. 11.09, one interval: 2 s
    later = [13.5, 13.6]
    assert best_spans(burst + later, 9.0, 2.0, 3) == [20, 10, 2]  # 11.00 .. 11.09 start in 2
    assert best_spans([], 9.0, 2.0, 3) == [0, 0, 0]
    assert best_spans([8.9, 15.0, 15.1], 9.0, 2.0, 3) == [0, 0, 0]  # before and after


def test_every_scenario_runs_and_reports_numbers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every scenario runs end to end at a tiny size and reports sane numbers (not speeds)."""
    raw = tmp_path / "bench.json"
    tiny = ["--records", "200", "--locations", "5", "--repeat", "1", "--time-scale", "0.05"]
    tiny += ["--quick"]
    code = bench.main([*tiny, "--json", str(raw)])
    assert code == 0
    table = capsys.readouterr().out
    headings = ("### 1. Overhead", "### 2. Pacing", "### 3. Scale", "### 4. Sandbox")
    headings += ("### 7. Relations, paced", "### 8. Relations at scale", "### 9. Report")
    headings += ("### 10. Sandbox, the many benchmark's requests",)
    headings += ("### Contention", "### Kill and resume", "### Throttled token")
    headings += ("### Honest limits", "### Many locations", "### CPU as users pay it")
    for heading in (*headings, "- machine:"):
        assert heading in table
    results = json.loads(raw.read_text())

    overhead = results["overhead"]
    for client in ("engine", "floor"):
        run = overhead[client]
        assert run["counts"] == {"created": 200}
        assert run["wall"] > 0
        assert run["user"] + run["sys"] > 0
        assert run["peak_rss_kb"] > 0
        assert run["server"]["creates_applied"] == 200
    # the engine reads each location before writing to it
    assert overhead["engine"]["server"]["requests"] > 200
    assert overhead["floor"]["server"]["requests"] == 200
    assert overhead["ratio_per_request"] > 0

    pacing = results["pacing"]
    assert pacing["engine"]["counts"] == {"created": 200}
    assert pacing["bound"] > 0
    assert pacing["ratio"] > 0
    assert pacing["throttled"] == 0  # learned from the first answer, then held to it

    contention = results["contention"]
    assert contention["other"] > 0  # the other client did spend the location's budget
    assert len(contention["windows_after"]) == 3
    assert len(contention["spans_after"]) == 3
    spans, bins = contention["spans_after"], contention["windows_after"]
    assert all(s >= b for s, b in zip(spans, bins, strict=True))  # never fewer
    for resume in results["resume"]:
        assert resume["interrupted"] > 0
        assert resume["uninterrupted"] > 0
    throttled = results["throttled"]
    assert throttled["limit"] == 8
    assert throttled["throttled"] > 0  # the first burst meets the real limit
    for honest in results["windows"]:
        assert honest["requests"] > 0
        assert honest["throttled"] == 0  # no 429 when the limits are honest, whatever size
    many = results["many"]
    assert many["elapsed"] > 0
    assert many["rate_bound"] > 0
    cpu = results["cpu"]
    assert cpu["engine_cpu"][0] > 0
    assert cpu["floor_cpu"][0] > 0

    scale = results["scale"]
    (small, _, first), (full, locations, last) = scale["steps"]
    assert (full, locations) == (200, 5)
    assert small < full
    assert first["counts"] == {"created": small}
    assert last["counts"] == {"created": full}
    assert last["peak_rss_kb"] > 0
    assert last["report_bytes"] > 0

    sandbox = results["sandbox"]
    phases = {p["name"]: p for p in sandbox["phases"]}
    assert list(phases) == [
        "create",
        "create (last tenth)",
        "get by key",
        "list page",
        "delete",
        "list page (after deletes)",
    ]
    assert phases["create"]["statuses"] == {"201": 180}
    assert phases["create (last tenth)"] == phases["create (last tenth)"] | {
        "definitions": 180,
        "statuses": {"201": 20},
    }
    assert phases["get by key"]["statuses"] == {"200": 40}
    assert phases["list page"]["statuses"] == {"200": 8}
    assert phases["delete"]["statuses"] == {"200": 20}
    assert phases["list page (after deletes)"]["definitions"] == 180
    assert all(p["wall"] > 0 for p in phases.values())
    assert sum(p["client_cpu"] for p in phases.values()) > 0
    assert sandbox["server"]["creates_applied"] == 200
    assert sandbox["slowest_rate"] > 0

    paced = results["relations-pacing"]
    assert paced["engine"]["counts"] == {"created": 200}
    assert paced["engine"]["server"]["relation_creates_applied"] == 200
    assert 1.0 < paced["per_relation"] <= 1.05  # the definitions' pages, then one POST each
    assert paced["bound"] > 0

    scaled = results["relations-scale"]
    (small, first), (full, last) = scaled["steps"]
    assert (small, full) == (20, 200)
    assert first["counts"] == {"created": 20}
    assert last["counts"] == {"created": 200}
    assert scaled["plan"]["records"] == 200
    report = results["report"]
    assert report["show"]["records"] == 200
    assert sum(report["show"]["counts"].values()) == 200
    assert 0 < report["html"]["page_bytes"] < 2_000_000
    assert report["html"]["peak_rss_kb"] > 0

    mix = results["sandbox-many"]
    assert (mix["locations"], mix["per_location"]) == (5, 40)
    assert mix["latency"] == [2.5, 7.5]  # 50-150 ms at time scale 0.05
    for label in ("many", "limits off"):
        (run,) = mix["runs"][label]
        # per location: the objects, two list pages (the second one empty), 40 creates
        assert run["statuses"] == {"200": 15, "201": 200}
        assert run["requests"] == 215
        assert run["wall"] > 0
        assert run["sandbox_cpu"] > 0
        assert mix["median_us"][label] == run["sandbox_cpu"] * 1e6 / 215
