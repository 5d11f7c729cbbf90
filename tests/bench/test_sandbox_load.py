"""The sandbox's relation benchmark runs end to end at a tiny size and reports sane numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.bench import bench


@pytest.mark.timeout(120)
def test_sandbox_relation_scenarios_report_every_phase(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Creates all succeed, GETs and deletes follow, and each phase has rates and memory."""
    raw = tmp_path / "bench.json"
    args = ["sandbox-relations", "sandbox-relations-scale", "--records", "300"]
    code = bench.main([*args, "--locations", "3", "--json", str(raw)])
    assert code == 0
    table = capsys.readouterr().out
    assert "### 5. Sandbox, relation routes" in table
    assert "### 6. Sandbox, relation routes" in table
    results = json.loads(raw.read_text())
    for name in ("sandbox-relations", "sandbox-relations-scale"):
        result = results[name]
        assert (result["records"], result["locations"]) == (300, 3)
        create, get, delete = result["phases"]
        assert (create["name"], create["statuses"]) == ("create", {"201": 300})
        assert (get["name"], get["statuses"]) == ("get", {"200": 300})
        assert (delete["name"], delete["statuses"]) == ("delete", {"200": 300})
        for phase in (create, get, delete):
            assert phase["wall"] > 0
            assert phase["sandbox_cpu"] > 0  # 300 requests: tens of ms, read from /proc
            assert phase["sandbox_rss_kb"] >= result["rss_before_kb"] > 0
        assert result["bytes_per_relation"] >= 0  # a few KB at this size: not measurable
