"""Sharded runs in one process: each shard does its own locations only, holds its report to
itself on resume, and ``report merge`` joins the shards into one report and journal that read
as one unsharded run's (or refuses, having written nothing)."""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from engine import (
    ConfigError,
    RunConfig,
    Shard,
    journal_meta,
    merge_reports,
    pending_intents,
    read_report,
    read_timeline,
    shard_of,
)
from engine.cli import main
from engine.journal import journal_entries
from jobs.api import run_job
from jobs.sandbox import Sandbox

from ..conftest import ThreadedSandbox

N = 4
HEADER = "location_id,key,first_object_key,second_object_key,first_object_label\n"


def locations(per_shard: int = 2) -> list[str]:
    """Location ids, ``per_shard`` of them in each of the N shards, in a mixed order."""
    found: dict[int, list[str]] = {k: [] for k in range(N)}
    number = 0
    while any(len(ids) < per_shard for ids in found.values()):
        location = f"loc{number:02d}{'x' * 15}"
        ids = found[shard_of(location, N)]
        if len(ids) < per_shard:
            ids.append(location)
        number += 1
    return sorted(loc for ids in found.values() for loc in ids)


def job_text(ids: list[str]) -> str:
    """Two definitions per location, an invalid row without a location, and a row that fails
    (its location has no such object)."""
    rows = [f"{loc},def_{n},custom_objects.pet,contact,Pet {n}\n" for loc in ids for n in (1, 2)]
    rows.insert(3, ",orphan,custom_objects.pet,contact,Orphan\n")
    rows.insert(6, f"{ids[0]},boat,custom_objects.boat,contact,Boat\n")  # fails: no boats
    return HEADER + "".join(rows)


@dataclass
class Split:
    """A job, its N shard reports, the sandbox they ran against (still serving), and the
    report of one unsharded run of the job against another sandbox."""

    job: Path
    reports: list[Path]
    single: Path
    sandbox: Sandbox


async def run_shard(sb: Sandbox, job: Path, report: Path, shard: Shard | None, **kw: object) -> int:
    config = RunConfig(job_files=(str(job),), report=str(report), shard=shard, **kw)
    with await run_job(config, base_url=sb.url, tokens=sb.issue_token) as result:
        return result.summary.exit_code


@pytest.fixture
async def split(tmp_path: Path) -> AsyncIterator[Split]:
    """Four shards run against one sandbox; the same job unsharded against a fresh one."""
    job = tmp_path / "jobs.csv"
    job.write_text(job_text(locations()), encoding="utf-8")
    reports = [tmp_path / f"shard-{k}.csv" for k in range(N)]
    single = tmp_path / "single" / "out.csv"
    single.parent.mkdir()
    async with Sandbox() as other:
        await run_shard(other, job, single, None)
    async with Sandbox() as sb:
        for k, report in enumerate(reports):
            await run_shard(sb, job, report, Shard(k, N))
        yield Split(job, reports, single, sb)


def without_ids(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    """Rows with the server-made id replaced by whether there is one."""
    return [{**row, "association_id": bool(row["association_id"])} for row in rows]


def end_line(report: Path) -> dict[str, object]:
    entries = list(journal_entries(f"{report}.journal"))
    return entries[-1]


# -- one shard ------------------------------------------------------------------------------


async def test_each_shard_sends_only_for_its_locations(tmp_path: Path) -> None:
    """A shard's report and requests cover its own locations; together the shards cover every
    record of the job exactly once, invalid rows included."""
    ids = locations()
    job = tmp_path / "jobs.csv"
    job.write_text(job_text(ids), encoding="utf-8")
    seen: list[str] = []
    async with Sandbox() as sb:
        for k in range(N):
            shard = Shard(k, N)
            before = len(sb.log)
            config = RunConfig(
                job_files=(str(job),), report=str(tmp_path / f"s{k}.csv"), shard=shard
            )
            with await run_job(config, base_url=sb.url, tokens=sb.issue_token) as result:
                own = [o.record for o in result.outcomes]
                assert result.summary.shard == f"{k}/{N}"
                assert result.summary.total + result.summary.other_shards == len(ids) * 2 + 2
            assert own
            assert all(shard.owns(record.location_id) for record in own)
            sent_for = {entry.token_location for entry in sb.log[before:]}
            assert sent_for
            assert all(shard.owns(loc or "") for loc in sent_for)
            assert journal_meta(str(tmp_path / f"s{k}.csv.journal"))["shard"] == f"{k}/{N}"
            seen += [row["source"] for row in read_report(str(tmp_path / f"s{k}.csv"))]
    assert sorted(seen) == sorted(f"jobs.csv:{n}" for n in range(2, len(ids) * 2 + 4))
    orphan = next(
        r for r in read_report(str(tmp_path / f"s{shard_of('', N)}.csv")) if not r["location_id"]
    )
    assert orphan["outcome"] == "invalid"


async def test_a_shard_with_no_location_of_the_job_ends_cleanly(tmp_path: Path) -> None:
    """A shard that owns none of the job's locations sends nothing and writes an empty,
    finished report (the merge needs it)."""
    location = locations(1)[0]
    job = tmp_path / "one.csv"
    job.write_text(HEADER + f"{location},k,custom_objects.pet,contact,Pet\n", encoding="utf-8")
    other = (shard_of(location, N) + 1) % N
    report = tmp_path / "empty.csv"
    async with Sandbox() as sb:
        assert await run_shard(sb, job, report, Shard(other, N)) == 0
        assert sb.log == []
    assert report.read_text(encoding="utf-8").startswith("source,location_id,")
    assert read_report(str(report)) == []
    assert end_line(report) == {"end": "run", "rows": 0}


async def test_resume_holds_a_report_to_its_shard(tmp_path: Path) -> None:
    """--resume with another shard, or none, is refused naming the shard; the same shard
    resumes (sending nothing, all settled); an unsharded report refuses a shard."""
    job = tmp_path / "jobs.csv"
    job.write_text(job_text(locations()), encoding="utf-8")
    report, whole = tmp_path / "s1.csv", tmp_path / "all.csv"
    async with Sandbox() as sb:
        await run_shard(sb, job, report, Shard(1, N))
        refused = f"{report} is the report of shard 1/4: resume it with --shard 1/4 (this run "
        with pytest.raises(ConfigError, match=re.escape(f"{refused}is shard 2/4)")):
            await run_shard(sb, job, report, Shard(2, N), resume=True)
        with pytest.raises(ConfigError, match=re.escape(f"{refused}is not split into shards)")):
            await run_shard(sb, job, report, None, resume=True)
        with pytest.raises(ConfigError, match="is the report of shard 1/4"):
            await run_shard(sb, job, report, Shard(1, 3), resume=True)
        sent = len(sb.log)
        assert shard_of(locations()[0], N) == 1  # the failing row is shard 1's
        assert await run_shard(sb, job, report, Shard(1, N), resume=True) == 1
        again = [entry.method for entry in sb.log[sent:]]
        assert again
        assert set(again) == {"GET"}
        await run_shard(sb, job, whole, None)
        with pytest.raises(ConfigError, match="belongs to a run that was not split into shards"):
            await run_shard(sb, job, whole, Shard(0, N), resume=True)


# -- merge ------------------------------------------------------------------------------------


def test_merged_shards_read_as_one_unsharded_run(split: Split, tmp_path: Path) -> None:
    """Same rows, same order, same outcomes as one unsharded run; every shard's intents in
    the merged journal, which names no shard and ends with the merge."""
    out = tmp_path / "merged.csv"
    result = merge_reports(str(out), [str(p) for p in reversed(split.reports)])
    merged = read_report(str(out))
    single = read_report(str(split.single))
    assert without_ids(merged) == without_ids(single)
    assert result.rows == len(single)
    assert result.missing == ()
    assert result.inputs == tuple(str(p) for p in split.reports)  # in shard order
    assert result.counts == {"created": 16, "invalid": 1, "failed": 1}
    meta = journal_meta(f"{out}.journal")
    assert meta is not None
    assert "shard" not in meta
    assert meta["merged_from"] == [p.name for p in split.reports]
    intents = set().union(*(pending_intents(f"{p}.journal") for p in split.reports))
    assert pending_intents(f"{out}.journal") == intents
    assert {
        r["location_id"] + "\x1fcreate\x1f" + r["key"] for r in merged if r["outcome"] == "created"
    } == intents
    assert end_line(out) == {"end": "merge", "rows": len(single)}
    # Every shard's run is in the merged timeline, for the merged report's page.
    timeline = read_timeline([f"{out}.timeline"], series=False)
    assert len(timeline.runs) == len(split.reports)
    shards = {loc for p in split.reports for loc in read_timeline([f"{p}.timeline"]).locations}
    assert set(timeline.locations) == shards


async def test_a_complete_merge_resumes_without_a_shard(split: Split, tmp_path: Path) -> None:
    """The merged report of every shard is an unsharded run's: --resume accepts it and sends
    only what is unsettled (the bad row's location is read again)."""
    out = tmp_path / "merged.csv"
    merge_reports(str(out), [str(p) for p in split.reports])
    sb = split.sandbox
    sent = len(sb.log)
    assert await run_shard(sb, split.job, out, None, resume=True) == 1
    again = sb.log[sent:]
    assert again
    assert {entry.method for entry in again} == {"GET"}
    assert {entry.location_id for entry in again} == {locations()[0]}  # the boat's location


def test_merge_refuses_shards_of_other_jobs_or_splits(split: Split, tmp_path: Path) -> None:
    """Different job contents, another N, a shard twice, a report of no shard: refused,
    naming the reports, and nothing written."""
    out = tmp_path / "merged.csv"
    reports = [str(p) for p in split.reports]
    meta_line = Path(f"{reports[1]}.journal").read_bytes().split(b"\n", 1)
    changed = orjson.loads(meta_line[0])
    changed["job_sha256"] = [["jobs.csv", "0" * 64]]
    other_job = tmp_path / "other.csv"
    other_job.write_bytes(Path(reports[1]).read_bytes())
    Path(f"{other_job}.journal").write_bytes(orjson.dumps(changed) + b"\n" + meta_line[1])
    different = f"{reports[0]} and {other_job} are reports of different jobs"
    with pytest.raises(
        ConfigError, match=re.escape(f"{different} (the job files' contents differ)")
    ):
        merge_reports(str(out), [reports[0], str(other_job), *reports[2:]])
    with pytest.raises(ConfigError, match=re.escape(f"report {reports[2]} is given twice")):
        merge_reports(str(out), [*reports, reports[2]])
    twin = tmp_path / "twin.csv"
    twin.write_bytes(Path(reports[2]).read_bytes())
    Path(f"{twin}.journal").write_bytes(Path(f"{reports[2]}.journal").read_bytes())
    with pytest.raises(
        ConfigError, match=re.escape(f"shard 2/4 is in both {reports[2]} and {twin}")
    ):
        merge_reports(str(out), [*reports, str(twin)])
    other_split = dict(changed, job_sha256=orjson.loads(meta_line[0])["job_sha256"], shard="1/3")
    Path(f"{other_job}.journal").write_bytes(orjson.dumps(other_split) + b"\n" + meta_line[1])
    with pytest.raises(
        ConfigError, match=r"is shard 0 of 4 and .* is shard 1 of 3: shards of splits"
    ):
        merge_reports(str(out), [reports[0], str(other_job)])
    with pytest.raises(
        ConfigError, match=re.escape("is not a shard's report (its run had no --shard)")
    ):
        merge_reports(str(out), [str(split.single), *reports])
    os.rename(f"{reports[3]}.journal", tmp_path / "aside")
    with pytest.raises(ConfigError, match=re.escape(f"report {reports[3]} has no journal")):
        merge_reports(str(out), reports)
    assert not out.exists()
    assert not Path(f"{out}.journal").exists()


async def test_missing_shards_are_named_and_merged_only_when_asked(
    split: Split, tmp_path: Path
) -> None:
    """Without --partial a missing shard is refused by number; with it the merge names its
    shards in the journal, and --resume refuses it."""
    out = tmp_path / "merged.csv"
    some = [str(split.reports[k]) for k in (0, 1, 3)]
    with pytest.raises(ConfigError, match=re.escape("no report given for shard(s) 2 of 4")):
        merge_reports(str(out), some)
    result = merge_reports(str(out), some, partial=True)
    assert result.missing == (2,)
    assert journal_meta(f"{out}.journal")["shard"] == "0,1,3/4"
    assert {r["location_id"] for r in read_report(str(out))} == {
        r["location_id"] for p in some for r in read_report(p)
    }
    with pytest.raises(
        ConfigError, match=re.escape("is a merge of shards 0, 1, 3 of 4 only (2 missing)")
    ):
        await run_shard(split.sandbox, split.job, out, None, resume=True)


def test_merge_refuses_unfinished_or_changed_reports(split: Split, tmp_path: Path) -> None:
    """A report whose run did not rewrite it whole, one changed since (rows missing, or a
    row of another shard's location): refused, saying what to do."""
    out = tmp_path / "merged.csv"
    reports = [str(p) for p in split.reports]
    journal = Path(f"{reports[1]}.journal")
    whole = journal.read_bytes()
    journal.write_bytes(whole.rsplit(b"\n", 2)[0] + b"\n")  # as if killed before the end
    with pytest.raises(ConfigError, match=re.escape(
        f"report {reports[1]} (shard 1 of 4) is unfinished: its run stopped before rewriting it "
        f"whole (killed?); resume that shard (run ... --shard 1/4 --report {reports[1]} --resume)"
    )):  # fmt: skip
        merge_reports(str(out), reports)
    journal.write_bytes(whole)
    report = Path(reports[2])
    text = report.read_text(encoding="utf-8")
    report.write_text(text.rsplit("\n", 2)[0] + "\n", encoding="utf-8")  # its last row gone
    with pytest.raises(ConfigError, match=r"has \d+ rows but its run wrote \d+: it was changed"):
        merge_reports(str(out), reports)
    stranger = next(loc for loc in locations() if shard_of(loc, N) == 3)
    owned = read_report(reports[2])[0]["location_id"]
    report.write_text(text.replace(owned, stranger), encoding="utf-8")
    with pytest.raises(
        ConfigError, match=f"has a row of location '{stranger}' .* which is shard 3's"
    ):
        merge_reports(str(out), reports)
    assert not out.exists()


def test_an_earlier_merge_is_replaced_but_never_a_run_report(split: Split, tmp_path: Path) -> None:
    """Merging again replaces an earlier merge that nothing resumed since; a run's report, or
    a merge a run has resumed, is never overwritten."""
    reports = [str(p) for p in split.reports]
    out = tmp_path / "merged.jsonl"  # any report format: JSON Lines from CSV shards
    assert not merge_reports(str(out), reports).replaced
    again = merge_reports(str(out), reports)
    assert again.replaced
    assert len(read_report(str(out))) == again.rows
    with pytest.raises(
        ConfigError,
        match=re.escape(f"report {split.single} already exists and is not an earlier merge"),
    ):
        merge_reports(str(split.single), reports)
    with Path(f"{out}.journal").open("ab") as fh:  # as a resumed run leaves it
        fh.write(b'{"end": "run", "rows": 18}\n')
    with pytest.raises(ConfigError, match="already exists and is not an earlier merge"):
        merge_reports(str(out), reports)
    with pytest.raises(ConfigError, match="is one of the reports to merge"):
        merge_reports(reports[0], reports)


# -- the command line -----------------------------------------------------------------------


def cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def cluster(threaded_sandbox: ThreadedSandbox, tmp_path: Path) -> tuple[Path, list[str]]:
    """A job and the options that run it against a threaded sandbox."""
    ids = locations()
    job = tmp_path / "jobs.csv"
    job.write_text(job_text(ids), encoding="utf-8")
    tokens = threaded_sandbox.tokens_file(tmp_path / "tokens.csv", *ids)
    return job, ["--base-url", threaded_sandbox.url, "--tokens", tokens]


def test_report_merge_and_a_sharded_rollback_from_the_command_line(
    cluster: tuple[Path, list[str]], threaded_sandbox: ThreadedSandbox, tmp_path: Path
) -> None:
    """Shards run, merge (printing counts), and --shard on rollback deletes only that shard's
    locations; a refused merge is one line and exit 2."""
    job, options = cluster
    for k in range(N):
        code, out, err = cli(
            "run",
            str(job),
            *options,
            "--shard",
            f"{k}/{N}",
            "--report",
            str(tmp_path / f"s{k}.csv"),
        )
        assert code == (1 if k == 1 else 0), err  # shard 1 has the orphan and the boat
        assert f"shard {k}/{N}: " in out
    merged = tmp_path / "merged.csv"
    code, out, err = cli(
        "report", "merge", str(merged), *(str(tmp_path / f"s{k}.csv") for k in range(N))
    )
    assert code == 0, err
    assert "merged shards 0, 1, 2, 3 of 4 (s0.csv, s1.csv, s2.csv, s3.csv): 18 rows" in out
    assert re.search(r"created\s+16\n", out)
    code, _, err = cli("report", "merge", str(tmp_path / "m2.csv"), str(tmp_path / "s0.csv"))
    assert code == 2
    assert "Traceback" not in err
    assert [line for line in err.splitlines() if line.startswith("Error:")] == [
        "Error: no report given for shard(s) 1, 2, 3 of 4: merge the reports of all 4 shards, "
        "or pass --partial to merge these (the merged report can then be rolled back, but not "
        "resumed)"
    ]
    snapshot = threaded_sandbox.do(threaded_sandbox.sandbox.snapshot)
    shard = Shard(2, N)
    code, _, err = cli(
        "rollback",
        str(merged),
        "--shard",
        str(shard),
        "--yes",
        "--report",
        str(tmp_path / "undo.csv"),
        *options[2:],
    )
    assert code == 0, err
    assert "rollback would delete 4 definition(s) in 2 location(s) in shard 2/4" in err
    after = threaded_sandbox.do(threaded_sandbox.sandbox.snapshot)
    assert {loc: defs for loc, defs in after.items() if defs} == {
        loc: defs for loc, defs in snapshot.items() if defs and not shard.owns(loc)
    }
    code, _, err = cli(
        "run", str(job), *options, "--shard", "4/4", "--report", str(tmp_path / "x.csv")
    )
    assert code == 2
    assert "shard 4 of 4 does not exist: shards are numbered 0 to 3" in err


def test_plan_with_a_shard_reads_only_its_locations(
    cluster: tuple[Path, list[str]], threaded_sandbox: ThreadedSandbox, tmp_path: Path
) -> None:
    """`plan --shard K/N` plans the shard's records, reading its locations only, writing
    nothing; its report's journal names the shard."""
    job, options = cluster
    shard = Shard(1, N)
    report = tmp_path / "plan-1.csv"
    code, _, err = cli("plan", str(job), *options, "--shard", str(shard), "--report", str(report))
    assert code == 1, err  # the boat is blocked: shard 1 has no such object
    rows = read_report(str(report))
    assert rows
    assert all(shard.owns(row["location_id"]) for row in rows)
    log = threaded_sandbox.sandbox.log
    assert log
    assert {entry.method for entry in log} == {"GET"}
    assert all(shard.owns(entry.token_location or "") for entry in log)
    assert journal_meta(f"{report}.journal")["shard"] == str(shard)
