"""Relations end to end against the sandbox: run, re-run, lost answers, paging, rollback."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from click.testing import CliRunner

from engine import NOT_RUN, RunConfig, read_report
from engine.cli import main
from engine.console import configure_logging
from jobs.api import rollback_job, run_job
from jobs.rollback import plan_rollback
from jobs.sandbox import Sandbox, SandboxConfig

from ..conftest import ThreadedSandbox
from .helpers import statuses

HEADER = "location_id,association_key,first_record_id,second_record_id\n"


def seed(sb: Sandbox, location: str = "L1", key: str = "pet_owner") -> str:
    made = sb.add_association(
        location, key=key, first_object_key="contact", second_object_key="custom_objects.pet",
        first_object_label=f"Owner {key}", second_object_label=f"Pet {key}",
    )  # fmt: skip
    return str(made["id"])


def job(path: Path, pairs: list[tuple[int, int]], location: str = "L1") -> str:
    rows = "".join(f"{location},pet_owner,contact-{a},pet-{b}\n" for a, b in pairs)
    path.write_text(HEADER + rows, encoding="utf-8")
    return str(path)


async def run(sb: Sandbox, *files: str, **config: object) -> list[str]:
    result = await run_job(
        RunConfig(job_files=files, **config),  # type: ignore[arg-type]
        base_url=sb.url,
        tokens=sb.issue_token,
    )
    with result:
        return statuses(result)


def api_requests(sb: Sandbox) -> int:
    return sum(1 for e in sb.log if not e.path.startswith("/_"))


async def test_a_clean_run_costs_at_most_1_05_requests_per_relation(tmp_path: Path) -> None:
    """200 relations: one POST each plus the definitions' pages; nothing read before a create."""
    async with Sandbox(SandboxConfig(records=200, rate_limit=0)) as sb:
        seed(sb)
        pairs = [(n, n) for n in range(1, 201)]
        report = str(tmp_path / "out.csv")
        fast = (10_000, 1.0)  # the sandbox advertises no limit here: do not pace at 100/10 s
        outcomes = await run(sb, job(tmp_path / "j.csv", pairs), report=report, rate=fast)
        assert outcomes == ["created"] * 200
        assert api_requests(sb) <= 1.05 * 200
        assert sum(1 for e in sb.log if e.method == "POST") == 200
        rows = read_report(report)
        live = {(r["firstRecordId"], r["secondRecordId"]): r["id"] for r in sb.relations("L1")}
        assert {(r["first_record_id"], r["second_record_id"]): r["relation_id"] for r in rows} == (
            live
        )


async def test_a_rerun_says_exists_and_changes_nothing(tmp_path: Path) -> None:
    """Running the same job again: every relation exists, none is created twice."""
    async with Sandbox(SandboxConfig(records=20, rate_limit=0)) as sb:
        seed(sb)
        path = job(tmp_path / "j.csv", [(n, n) for n in range(1, 11)])
        assert await run(sb, path) == ["created"] * 10
        assert await run(sb, path) == ["exists"] * 10
        assert [(w["created"], w["deleted"]) for w in sb.relation_writes("L1")] == [(1, 0)] * 10


async def test_lost_answers_are_still_created_by_this_job(tmp_path: Path) -> None:
    """Creates whose answer was lost (applied, then dropped) are created, never exists."""
    async with Sandbox(
        SandboxConfig(records=40, rate_limit=0, lost_response_rate=0.3, seed=3)
    ) as sb:
        seed(sb)
        result = await run(sb, job(tmp_path / "j.csv", [(n, n) for n in range(1, 41)]))
        assert result == ["created"] * 40
        assert sb.stats.faults_injected.get("lost_response", 0) > 0
        assert [(w["created"], w["deleted"]) for w in sb.relation_writes("L1")] == [(1, 0)] * 40


async def test_keys_past_the_first_page_and_relations_past_the_first_page(
    tmp_path: Path,
) -> None:
    """A key on the second page of definitions resolves; a duplicate found on page two."""
    async with Sandbox(SandboxConfig(records=70, rate_limit=0)) as sb:
        for n in range(60):  # the sandbox's page holds 50
            seed(sb, key=f"k{n:02d}")
        late = seed(sb, key="pet_owner")
        for n in range(1, 61):  # contact-1 links 60 pets, then the job's duplicate
            sb.add_relation("L1", late, "contact-1", f"pet-{n}")
        result = await run(sb, job(tmp_path / "j.csv", [(1, 60), (2, 2)]))
        assert result == ["exists", "created"]
        reads = [e for e in sb.log if e.path == "/associations/relations/contact-1"]
        assert len(reads) == 2  # pages of 50: the pair was on the second


async def test_unknown_keys_and_records_fail_with_what_exists(tmp_path: Path) -> None:
    """An unknown key names the keys there (no request); an unknown record is the 422's text."""
    async with Sandbox(SandboxConfig(records=5, rate_limit=0)) as sb:
        seed(sb)
        path = tmp_path / "j.csv"
        path.write_text(
            HEADER + "L1,nope,contact-1,pet-1\nL1,pet_owner,contact-99,pet-1\n", encoding="utf-8"
        )
        result = await run_job(
            RunConfig(job_files=(str(path),)), base_url=sb.url, tokens=sb.issue_token
        )
        with result:
            first, second = result.outcomes
        assert first.status == second.status == "failed"
        assert "'nope' does not exist in location L1; it has: " in first.error
        assert "pet_owner" in first.error
        assert second.error == "HTTP 422: Record with id contact-99 not found for object contact"
        assert sum(1 for e in sb.log if e.method == "POST") == 1


async def test_200_and_wrapped_answers_are_created(tmp_path: Path) -> None:
    """A 200 with {"relation": {...}}, as seen in the field, is created with its id."""
    async with Sandbox(
        SandboxConfig(records=5, rate_limit=0, relation_status=200, wrap_relation=True)
    ) as sb:
        seed(sb)
        report = str(tmp_path / "out.csv")
        assert await run(sb, job(tmp_path / "j.csv", [(1, 1)]), report=report) == ["created"]
        [row] = read_report(report)
        assert row["relation_id"] == sb.relations("L1")[0]["id"]
        assert row["http_status"] == "200"


async def test_run_then_rollback_deletes_exactly_what_was_created(tmp_path: Path) -> None:
    """Rollback deletes the relations reported created, by id; an existing one stays."""
    async with Sandbox(SandboxConfig(records=10, rate_limit=0)) as sb:
        association = seed(sb)
        before = sb.add_relation("L1", association, "contact-1", "pet-1")
        report = str(tmp_path / "out.csv")
        path = job(tmp_path / "j.csv", [(1, 1), (2, 2), (3, 3)])
        assert await run(sb, path, report=report) == ["exists", "created", "created"]
        with plan_rollback([report]) as plan:
            assert (plan.kind, len(plan.records), plan.by_location) == ("relations", 2, {"L1": 2})
            result = await rollback_job(
                plan,
                RunConfig(job_files=(report,)),
                base_url=sb.url,
                tokens=sb.issue_token,
            )
            with result:
                assert statuses(result) == ["deleted", "deleted"]
        assert sb.relations("L1") == [before]
        assert sum(1 for e in sb.log if e.method == "DELETE") == 2


async def test_deletes_by_id_and_by_records_then_absent(tmp_path: Path) -> None:
    """A delete job by relation id and by key and records; again: absent, nothing sent."""
    async with Sandbox(SandboxConfig(records=10, rate_limit=0)) as sb:
        association = seed(sb)
        made = sb.add_relation("L1", association, "contact-1", "pet-1")
        sb.add_relation("L1", association, "contact-2", "pet-2")
        path = tmp_path / "d.csv"
        path.write_text(
            "location_id,action,relation_id,association_key,first_record_id,second_record_id\n"
            f"L1,delete,{made['id']},,,\nL1,delete,,pet_owner,contact-2,pet-2\n",
            encoding="utf-8",
        )
        assert await run(sb, str(path)) == ["deleted", "deleted"]
        assert sb.relations("L1") == []
        assert await run(sb, str(path)) == ["absent", "absent"]


async def test_spent_daily_budget_says_when_to_resume(tmp_path: Path) -> None:
    """Once the day's budget is spent the rest is not_run, saying --resume and 24 hours."""
    async with Sandbox(SandboxConfig(records=20, rate_limit=0, daily_limit=8)) as sb:
        seed(sb)
        result = await run_job(
            RunConfig(job_files=(job(tmp_path / "j.csv", [(n, n) for n in range(1, 13)]),)),
            base_url=sb.url,
            tokens=sb.issue_token,
        )
        with result:
            outcomes = list(result.outcomes)
        spent = [o for o in outcomes if o.status == NOT_RUN]
        assert [o.status for o in outcomes if o.status != NOT_RUN] == ["created"] * 6
        assert len(spent) == 6
        for outcome in spent:
            assert "daily request budget of location L1 is spent" in outcome.error
            assert "--resume after" in outcome.error
            assert "within 24 hours" in outcome.error


@pytest.fixture
def log_text() -> Iterator[io.StringIO]:
    """What the CLI's default logging (level info, console) writes, captured."""
    out = io.StringIO()
    configure_logging("console", stream=out)
    yield out
    structlog.reset_defaults()


async def test_eta_is_logged_before_a_long_relations_run(
    tmp_path: Path, log_text: io.StringIO
) -> None:
    """At the default level a location whose records take minutes at its budget gets an ETA."""
    path = job(tmp_path / "j.csv", [(n, n) for n in range(1, 5001)], location="L9")
    result = await run_job(RunConfig(job_files=(path,)), tokens=lambda location: None)
    with result:
        assert set(statuses(result)) == {"failed"}  # no token: nothing was sent
    text = log_text.getvalue()
    assert "estimated time" in text
    assert "location=L9" in text
    assert "eta='8 min'" in text or "eta=8 min" in text
    assert "records=5000" in text


def cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def threaded() -> Iterator[ThreadedSandbox]:
    """A sandbox with 20 records per object, in a thread (the CLI runs its own loop)."""
    server = ThreadedSandbox(SandboxConfig(records=20))
    yield server
    server.close()


def test_cli_run_rerun_and_rollback_of_relations(threaded: ThreadedSandbox, tmp_path: Path) -> None:
    """The CLI picks the kind from the file, re-runs as exists, and rolls back by id."""
    threaded.do(seed, threaded.sandbox)
    tokens = threaded.tokens_file(tmp_path / "tokens.csv", "L1")
    path = job(tmp_path / "j.csv", [(1, 1), (2, 2)])
    common = ("--base-url", threaded.url, "--tokens", tokens)
    code, out, _ = cli("run", path, *common, "--report", str(tmp_path / "a.csv"))
    assert code == 0
    assert "created" in out
    code, _, _ = cli("run", path, *common, "--report", str(tmp_path / "b.csv"))
    assert code == 0
    assert {r["outcome"] for r in read_report(str(tmp_path / "b.csv"))} == {"exists"}
    code, out, err = cli("rollback", str(tmp_path / "a.csv"), "--dry-run")
    assert code == 0
    assert "rollback would delete 2 relation(s) in 1 location(s)" in err
    assert out.count("pet_owner\tcontact-") == 2
    code, _, err = cli("rollback", str(tmp_path / "a.csv"), "--tokens", tokens, "--yes")
    assert code == 0, err
    assert threaded.do(threaded.sandbox.relations, "L1") == []


def test_cli_refuses_the_guide_routes_and_mixed_kinds(tmp_path: Path) -> None:
    """--api objects-association or --update-labels for relations, or files of two kinds:
    exit 2, one line."""
    path = job(tmp_path / "j.csv", [(1, 1)])
    code, _, err = cli(
        "run", path, "--api", "objects-association", "--base-url", "http://127.0.0.1:9"
    )
    assert code == 2
    assert "Error: --api objects-association has no relation routes" in err
    assert "Traceback" not in err
    other = tmp_path / "defs.csv"
    other.write_text("location_id,key,first_object_key,second_object_key\nL1,k,contact,business\n")
    code, _, err = cli("run", path, str(other), "--base-url", "http://127.0.0.1:9")
    assert code == 2
    assert "different kinds (relations: j.csv; associations: defs.csv)" in err
    code, _, err = cli("run", path, "--update-labels", "--base-url", "http://127.0.0.1:9")
    assert code == 2
    assert "--update-labels changes definitions' labels; relations have none" in err


async def test_run_and_rollback_resume_later_are_the_same_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A relations run or rollback resumed later (the clock moved on) is not refused as a
    different run: nothing time-bound is in its identity."""
    clock = iter(range(1_800_000_000, 1_900_000_000, 1000))
    monkeypatch.setattr("jobs.relations.time.time", lambda: float(next(clock)))
    async with Sandbox(SandboxConfig(records=10, rate_limit=0)) as sb:
        seed(sb)
        report, undo = str(tmp_path / "out.csv"), str(tmp_path / "undo.csv")
        path = job(tmp_path / "j.csv", [(1, 1), (2, 2)])
        assert await run(sb, path, report=report) == ["created"] * 2
        assert await run(sb, path, report=report, resume=True) == ["created"] * 2
        for resume in (False, True):
            with plan_rollback([report]) as plan:
                config = RunConfig(job_files=(report,), report=undo, resume=resume)
                result = await rollback_job(plan, config, base_url=sb.url, tokens=sb.issue_token)
                with result:
                    assert statuses(result) == ["deleted"] * 2
        assert sb.relations("L1") == []


async def test_rollback_after_the_definition_went_is_absent(tmp_path: Path) -> None:
    """Deleting a definition deletes its relations: a rollback by id then finds them absent."""
    async with Sandbox(SandboxConfig(records=5, rate_limit=0)) as sb:
        association = seed(sb)
        report = str(tmp_path / "out.csv")
        assert await run(sb, job(tmp_path / "j.csv", [(1, 1)]), report=report) == ["created"]
        sb._store.delete(sb._locations["L1"], sb._locations["L1"].associations[association])
        with plan_rollback([report]) as plan:
            config = RunConfig(job_files=(report,))
            result = await rollback_job(plan, config, base_url=sb.url, tokens=sb.issue_token)
            with result:
                assert statuses(result) == ["absent"]


async def test_plan_and_validate_know_a_relations_job(tmp_path: Path) -> None:
    """plan reads the definitions and sends no write (each row: create); validate checks
    relation rows offline."""
    from jobs.api import plan_job, validate_job

    async with Sandbox(SandboxConfig(records=5, rate_limit=0)) as sb:
        seed(sb)
        path = tmp_path / "j.csv"
        path.write_text(HEADER + "L1,pet_owner,contact-1,pet-1\nL1,nope,contact-2,pet-2\n")
        config = RunConfig(job_files=(str(path),))
        with await plan_job(config, base_url=sb.url, tokens=sb.issue_token) as plan:
            outcomes = list(plan.result.outcomes)
            assert [o.status for o in outcomes] == ["create", "blocked"]
            assert "'nope' does not exist" in outcomes[1].error
            assert plan.summary.pending == 1
            assert plan.drift == {}
        assert sb.relations("L1") == []
        assert not any(e.method == "POST" for e in sb.log)
    path.write_text(HEADER + "L1,pet_owner,contact-1,\n", encoding="utf-8")
    problems: list[str] = []
    validate_job((str(path),), problem=lambda o: problems.append(o.error))
    assert problems == ["second_record_id: is required for create"]


async def test_shards_of_a_relations_job_merge_and_roll_back(tmp_path: Path) -> None:
    """Two shards of a relations job, started at different moments, merge into one report,
    whose rollback (and a rollback of one shard's part) deletes what they created."""
    from engine import Shard
    from engine.merge import merge_reports

    async with Sandbox(SandboxConfig(records=5, rate_limit=0)) as sb:
        locations = [f"L{n}" for n in range(6)]
        lines = []
        for location in locations:
            seed(sb, location)
            lines += [f"{location},pet_owner,contact-{n},pet-{n}\n" for n in (1, 2)]
        path = tmp_path / "j.csv"
        path.write_text(HEADER + "".join(lines), encoding="utf-8")
        reports = [str(tmp_path / f"shard-{k}.csv") for k in (0, 1)]
        for k, report in enumerate(reports):
            config = RunConfig(job_files=(str(path),), report=report, shard=Shard(k, 2))
            assert set(await run(sb, str(path), **_fields(config))) == {"created"}
        merged = str(tmp_path / "merged.csv")
        merge_reports(merged, reports)
        assert {r["outcome"] for r in read_report(merged)} == {"created"}
        with plan_rollback([merged]) as plan:
            assert len(plan.records) == 12
            part = plan.for_shard(Shard(0, 2))
            owned = [loc for loc in locations if Shard(0, 2).owns(loc)]
            assert len(part.records) == 2 * len(owned)
            assert {r.location_id for r in part.records} == set(owned)
            result = await rollback_job(
                plan, RunConfig(job_files=(merged,)), base_url=sb.url, tokens=sb.issue_token
            )
            with result:
                assert set(statuses(result)) == {"deleted"}
        assert all(sb.relations(loc) == [] for loc in locations)


def _fields(config: RunConfig) -> dict[str, object]:
    return {"report": config.report, "shard": config.shard}
