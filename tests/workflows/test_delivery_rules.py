"""The delivery loop's security rules (tests/workflows/delivery_rules.py) hold in every workflow,
each rule catches its own breach in a broken copy, and docs/runbooks.md lists the environments
and their secrets exactly as the workflows use them."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.workflows import delivery_rules as rules
from tools import backup_maintenance
from tools import pitr as pitr_tool

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
RUNBOOKS = ROOT / "docs" / "runbooks.md"


def load(name: str) -> dict[Any, Any]:
    data = yaml.safe_load((ROOT / ".github" / "workflows" / name).read_text())
    assert isinstance(data, dict)
    return data


def step(workflow: dict[Any, Any], job: str, pattern: str) -> dict[str, Any]:
    found = [s for s in workflow["jobs"][job]["steps"] if re.search(pattern, str(s.get("run", s.get("uses", ""))))]
    assert len(found) == 1, (job, pattern, found)
    result: dict[str, Any] = found[0]
    return result


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_every_workflow_keeps_every_delivery_rule(path: Path) -> None:
    assert rules.violations(path.name, load(path.name)) == []


# ----------------------------------------------------------------------------- each rule bites


def _set(path: list[Any], value: Any) -> Callable[[dict[Any, Any]], None]:
    def mutate(workflow: dict[Any, Any]) -> None:
        target = workflow
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return mutate


def _add_step(job: str, new: dict[str, Any], at: int | None = None) -> Callable[[dict[Any, Any]], None]:
    def mutate(workflow: dict[Any, Any]) -> None:
        steps = workflow["jobs"][job]["steps"]
        steps.insert(len(steps) if at is None else at, new)

    return mutate


def _edit_step(job: str, pattern: str, edit: Callable[[dict[str, Any]], None]) -> Callable[[dict[Any, Any]], None]:
    return lambda workflow: edit(step(workflow, job, pattern))


def _drop_step(job: str, pattern: str) -> Callable[[dict[Any, Any]], None]:
    return lambda workflow: workflow["jobs"][job]["steps"].remove(step(workflow, job, pattern))


def _move_close_before_smoke(workflow: dict[Any, Any]) -> None:
    steps = workflow["jobs"]["prod"]["steps"]
    close = step(workflow, "prod", "ssh_window.py close")
    steps.remove(close)
    steps.insert(steps.index(step(workflow, "prod", r"\./\.github/actions/smoke")), close)


def _add_trigger(name: str, value: Any) -> Callable[[dict[Any, Any]], None]:
    def mutate(workflow: dict[Any, Any]) -> None:
        workflow["on" if "on" in workflow else True][name] = value  # PyYAML reads a bare `on` as True

    return mutate


SECRET_ENV = {"env": {"KEY": "${{ secrets.DEPLOY_SSH_KEY }}"}, "run": "true"}
EXPIRE = r"pitr-expire\.sh"
CIPHER_ENV = {"K": "${{ secrets.PITR_CIPHER_PASSPHRASE }}"}
RETENTION = r"tools\.backup_maintenance retention"
PASSWORD_ENV = {"K": "${{ secrets.BACKUP_PASSWORD }}"}
WRITE_TOKEN = "${{ secrets.HCLOUD_TOKEN }}"

BREACHES: list[tuple[str, str, Callable[[dict[Any, Any]], None], str]] = [
    ("pr-job-secret-without-environment", "preview.yml", _add_step("plan", SECRET_ENV),
     "preview.yml plan (staging): uses secrets ['DEPLOY_SSH_KEY'] without an environment"),
    ("pr-job-binds-a-main-only-environment", "preview.yml",
     _set(["jobs", "staging-preview", "environment", "name"], "staging"),
     "preview.yml staging-preview (staging): a pull request's job binds staging, which is not for pull requests"),
    ("pr-job-uses-the-write-token", "preview.yml",
     _edit_step("staging-preview", "pulumi/actions", lambda s: s["env"].update(HCLOUD_TOKEN=WRITE_TOKEN)),
     "a pull request's job uses ['HCLOUD_TOKEN']"),
    ("pr-job-gets-the-deploy-key", "preview.yml", _add_step("staging-preview", SECRET_ENV),
     "uses ['DEPLOY_SSH_KEY'], not held by staging-preview"),
    ("pull-request-target", "preview.yml", _add_trigger("pull_request_target", None),
     "preview.yml: refused trigger pull_request_target"),
    ("prod-deployed-from-the-staging-environment", "deploy.yml",
     _set(["jobs", "prod", "environment", "name"], "staging"),
     "deploy.yml prod (prod): names prod and uses secrets, but binds staging"),
    ("drift-of-prod-in-the-staging-environment", "drift.yml",
     _set(["jobs", "drift", "strategy", "matrix", "include", 1, "environment"], "staging"),
     "drift.yml drift (prod): names prod and uses secrets, but binds staging"),
    ("staging-job-names-prod", "deploy.yml",
     _edit_step("staging", "ssh_window.py open", lambda s: s.update(run=s["run"].replace('"$STACK"', "prod"))),
     "deploy.yml staging (staging): binds staging (staging) but names ['prod']"),
    ("workflow-level-secret", "deploy.yml", _set(["env"], {"HCLOUD_TOKEN": "${{ secrets.HCLOUD_TOKEN }}"}),
     "deploy.yml: secrets ['HCLOUD_TOKEN'] outside any job"),
    ("job-level-secret", "deploy.yml", _set(["jobs", "staging", "env", "X"], "${{ secrets.PULUMI_CONFIG_PASSPHRASE }}"),
     "deploy.yml staging (staging): secrets ['PULUMI_CONFIG_PASSPHRASE'] in the job's env"),
    ("approval-gate-given-a-secret", "deploy.yml", _add_step("approve-prod", SECRET_ENV),
     "deploy.yml approve-prod: production-approval holds no secret, yet the job uses some"),
    ("unknown-environment", "deploy.yml", _set(["jobs", "prod", "environment", "name"], "prod"),
     "deploy.yml prod (prod): binds unknown environment 'prod'"),
    ("deploy-on-pull-requests", "deploy.yml", _add_trigger("pull_request", None),
     "deploy.yml: binds ['production', 'production-approval', 'staging'] yet runs on pull_request"),
    ("deploy-on-other-branches", "deploy.yml", _set([True, "push", "branches"], ["main", "release"]),
     "yet runs on pushes other than to main"),
    ("host-reached-without-opening", "deploy.yml", _drop_step("staging", "ssh_window.py open"),
     "deploy.yml staging (staging): reaches the host without opening its SSH window first"),
    ("window-closed-only-on-success", "deploy.yml", _edit_step("prod", "ssh_window.py close", lambda s: s.pop("if")),
     "deploy.yml prod (prod): closes its SSH window without `if: always()`"),
    ("window-closed-before-the-smoke-check", "deploy.yml", _move_close_before_smoke,
     "deploy.yml prod (prod): does not close its SSH window after the last step that reaches the host"),
    ("drift-never-closes", "drift.yml", _drop_step("drift", "ssh_window.py close"),
     "drift.yml drift (staging): does not close its SSH window"),
    ("window-shorter-than-the-job", "deploy.yml",
     _edit_step("staging", "ssh_window.py open", lambda s: s.update(run=s["run"].replace("50", "40"))),
     "deploy.yml staging (staging): the SSH window's --ttl-minutes must outlast timeout-minutes"),
    ("checkout-keeps-the-token", "preview.yml",
     _edit_step("plan", "actions/checkout", lambda s: s["with"].pop("persist-credentials")),
     "preview.yml plan (prod): checkout leaves the token in .git/config"),
    ("expiry-of-prod-in-the-staging-environment", "maintenance.yml",
     _set(["jobs", "pitr-expire", "strategy", "matrix", "include", 0, "environment"], "staging"),
     "maintenance.yml pitr-expire (prod): names prod and uses secrets, but binds staging"),
    ("expiry-key-in-the-jobs-env", "maintenance.yml",
     _set(["jobs", "pitr-expire", "env", "K"], "${{ secrets.PITR_EXPIRE_SECRET_ACCESS_KEY }}"),
     "maintenance.yml pitr-expire (prod): secrets ['PITR_EXPIRE_SECRET_ACCESS_KEY'] in the job's env"),
    ("expiry-key-beside-the-deploy-key", "maintenance.yml", _add_step("pitr-expire", SECRET_ENV, at=0),
     "maintenance.yml pitr-expire (prod): holds the archive's expiry key beside ['DEPLOY_SSH_KEY']"),
    ("expiry-key-given-to-another-step", "maintenance.yml",
     _edit_step("pitr-expire", "apt-get install", lambda s: s.update(env=CIPHER_ENV)),
     "maintenance.yml pitr-expire (prod): the archive's expiry key reaches a step other than"),
    ("expiry-script-followed-by-more", "maintenance.yml",
     _edit_step("pitr-expire", EXPIRE, lambda s: s.update(run=s["run"] + "\necho done")),
     "the archive's expiry key reaches a step other than .github/scripts/pitr-expire.sh"),
    ("expiry-failure-ignored", "maintenance.yml",
     _edit_step("pitr-expire", EXPIRE, lambda s: s.update({"continue-on-error": True})),
     "maintenance.yml pitr-expire (prod): a failed expiry does not fail the job"),
    ("expiry-failure-swallowed", "maintenance.yml",
     _edit_step("pitr-expire", EXPIRE, lambda s: s.update(run=s["run"] + " || true")),
     "maintenance.yml pitr-expire (prod): a failed expiry does not fail the job"),
    ("expiry-on-pull-requests", "maintenance.yml", _add_trigger("pull_request", None),
     "maintenance.yml: binds ['production', 'staging'] yet runs on pull_request"),
    ("retention-key-beside-the-deploy-key", "maintenance.yml", _add_step("backup-retention", SECRET_ENV, at=0),
     "maintenance.yml backup-retention (prod): holds the repository's maintenance key beside ['DEPLOY_SSH_KEY']"),
    ("retention-key-given-to-the-setup", "maintenance.yml",
     _edit_step("backup-retention", r"actions/setup", lambda s: s.update(env=PASSWORD_ENV)),
     "maintenance.yml backup-retention (staging): the repository's maintenance key reaches a step other than"),
    ("retention-followed-by-more", "maintenance.yml",
     _edit_step("backup-retention", RETENTION, lambda s: s.update(run=s["run"] + " && echo done")),
     "the repository's maintenance key reaches a step other than python -m tools.backup_maintenance retention"),
    ("retention-failure-ignored", "maintenance.yml",
     _edit_step("backup-retention", RETENTION, lambda s: s.update({"continue-on-error": True})),
     "maintenance.yml backup-retention (prod): a failed retention does not fail the job"),
    ("retention-of-prod-in-the-staging-environment", "maintenance.yml",
     _set(["jobs", "backup-retention", "strategy", "matrix", "include", 0, "environment"], "staging"),
     "maintenance.yml backup-retention (prod): names prod and uses secrets, but binds staging"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "mutate", "expected"), [b[1:] for b in BREACHES], ids=[b[0] for b in BREACHES])
def test_each_rule_catches_its_breach(name: str, mutate: Callable[[dict[Any, Any]], None], expected: str) -> None:
    workflow = copy.deepcopy(load(name))
    mutate(workflow)
    found = rules.violations(name, workflow)
    assert any(expected in problem for problem in found), found


# ----------------------------------------------------------------------------- environments


def runbook_environments() -> dict[str, dict[str, str]]:
    """The runbooks' environments table: name -> {column: cell}."""
    lines = RUNBOOKS.read_text().splitlines()
    start = lines.index("<!-- environments: checked by tests/workflows/test_delivery_rules.py -->")
    header = [c.strip() for c in lines[start + 1].strip("|").split("|")]
    table = {}
    for line in lines[start + 3 :]:
        if not line.startswith("|"):
            break
        cells = dict(zip(header, (c.strip() for c in line.strip("|").split("|")), strict=True))
        table[cells["environment"].strip("`")] = cells
    return table


def names_in(cell: str) -> set[str]:
    return set(re.findall(r"`([A-Z][A-Z0-9_]*)`", cell))


def test_the_runbooks_list_each_environment_with_exactly_its_secrets() -> None:
    table = runbook_environments()
    assert set(table) == set(rules.ENVIRONMENTS)
    for name, env in rules.ENVIRONMENTS.items():
        assert names_in(table[name]["secrets"]) == set(env.secrets), name
        assert table[name]["stack"] == (env.stack or "none"), name
        assert ("required reviewers" in table[name]["protection"]) == env.reviewers, name
        assert ("main only" in table[name]["protection"]) == (not env.pull_requests), name


def test_no_environment_holds_a_secret_no_workflow_uses() -> None:
    used: dict[str, set[str]] = {name: set() for name in rules.ENVIRONMENTS}
    for path in WORKFLOWS:
        for job in rules.instances(path.name, load(path.name)):
            if job.environment in used:
                used[job.environment] |= rules.secrets_in(job.job)
    assert used == {name: set(env.secrets) for name, env in rules.ENVIRONMENTS.items()}


def test_no_job_of_a_pull_request_workflow_holds_prod_or_host_credentials() -> None:
    for path in WORKFLOWS:
        workflow = load(path.name)
        if not set(rules.triggers(workflow)) & {"pull_request", "pull_request_target"}:
            continue
        for job in rules.instances(path.name, workflow):
            assert job.environment in (None, "staging-preview"), job.name
            assert not rules.secrets_in(job.job) & rules.WRITE_AND_HOST, job.name


# ----------------------------------------------------------------------------- the workflows' shape


def test_pull_requests_get_the_credential_free_plan_as_one_edited_comment_per_stack() -> None:
    workflow = load("preview.yml")
    assert list(rules.triggers(workflow)) == ["pull_request"]
    assert workflow["permissions"] == {"contents": "read"}
    plan, comment = workflow["jobs"]["plan"], workflow["jobs"]["comment"]
    assert plan["strategy"]["matrix"]["stack"] == comment["strategy"]["matrix"]["stack"] == ["staging", "prod"]
    assert "environment" not in plan and not rules.secrets_in(plan) and "permissions" not in plan
    script = step(workflow, "plan", "make --no-print-directory")["run"]
    assert 'make --no-print-directory -s diff BASE=HEAD^1 STACK="$STACK"' in script
    assert step(workflow, "plan", "actions/checkout")["with"]["fetch-depth"] == 2  # HEAD^1, the base
    # The comment job holds the only token that writes, and runs none of the branch's code.
    assert comment["permissions"] == {"pull-requests": "write"}
    assert not any("checkout" in str(s.get("uses", "")) or "run" in s for s in comment["steps"])
    assert comment["if"] == "${{ !cancelled() && github.event.pull_request.head.repo.full_name == github.repository }}"
    js = step(workflow, "comment", "actions/github-script")["with"]["script"]
    assert "<!-- keel-plan:${stack} -->" in js and "updateComment" in js and "createComment" in js
    assert "const fence = '`'.repeat(Math.max(3, longest + 1));" in js


def test_the_staging_preview_is_for_this_repositorys_branches_only() -> None:
    job = load("preview.yml")["jobs"]["staging-preview"]
    assert job["if"] == "github.event.pull_request.head.repo.full_name == github.repository"
    assert job["environment"] == {"name": "staging-preview"}
    (pulumi,) = [s for s in job["steps"] if str(s.get("uses", "")).startswith("pulumi/actions@")]
    assert pulumi["with"]["command"] == "preview" and "refresh" not in pulumi["with"]


def test_prod_deploys_only_after_staging_the_prod_preview_and_a_reviewer() -> None:
    jobs = load("deploy.yml")["jobs"]
    assert jobs["approve-prod"]["needs"] == ["staging", "prod-preview"]
    assert jobs["approve-prod"]["environment"] == {"name": "production-approval"}
    assert rules.ENVIRONMENTS["production-approval"].reviewers
    assert jobs["prod"]["needs"] == "approve-prod"
    assert jobs["prod"]["environment"] == jobs["prod-preview"]["environment"] == {"name": "production"}


def test_drift_runs_each_stack_in_its_own_environment() -> None:
    found = {(job.env["STACK"], job.environment) for job in rules.instances("drift.yml", load("drift.yml"))}
    assert found == {("staging", "staging"), ("prod", "production")}
    steps = load("drift.yml")["jobs"]["drift"]["steps"]
    audit = [s for s in steps if "ssh_window.py audit" in str(s.get("run", ""))]
    assert len(audit) == 1 and audit[0]["env"]["HCLOUD_TOKEN"] == "${{ secrets.HCLOUD_READ_TOKEN }}"


def test_the_archive_is_expired_daily_for_exactly_the_stacks_that_archive() -> None:
    workflow = load("maintenance.yml")
    assert set(rules.triggers(workflow)) == {"schedule", "workflow_dispatch"}
    assert workflow["permissions"] == {"contents": "read"}
    deployed = {job.env["STACK"] for job in rules.instances("drift.yml", load("drift.yml"))}
    archiving = {stack for stack in deployed if pitr_tool.expire_configs(stack)}
    assert archiving == {"prod"}  # Pulumi.staging.yaml leaves backup/pitr off
    jobs = [job for job in rules.instances("maintenance.yml", workflow) if job.job_id == "pitr-expire"]
    assert {(job.env["STACK"], job.environment) for job in jobs} == {("prod", "production")}
    for job in jobs:
        (expire,) = [s for s in job.steps if rules.EXPIRE_SCRIPT in str(s.get("run", ""))]
        assert expire["run"].strip() == '.github/scripts/pitr-expire.sh "$STACK"'
        assert set(expire["env"]) == {
            "PGBACKREST_REPO1_S3_KEY", "PGBACKREST_REPO1_S3_KEY_SECRET", "PGBACKREST_REPO1_CIPHER_PASS"
        }  # fmt: skip
        assert rules.secrets_in(expire) == rules.ARCHIVE_EXPIRY
        (install,) = [s for s in job.steps if "apt-get install" in str(s.get("run", ""))]
        assert re.search(r"\bpgbackrest=\d[^\s*]*\s", install["run"]), "pgBackRest's version is pinned exactly"


def test_retention_runs_daily_for_exactly_the_stacks_with_backups_in_their_own_environment() -> None:
    workflow = load("maintenance.yml")
    deployed = {job.env["STACK"]: job.environment for job in rules.instances("drift.yml", load("drift.yml"))}
    backed_up = {stack for stack in deployed if backup_maintenance.repository(stack).cfg.backup.enabled}
    assert backed_up == {"prod", "staging"}
    jobs = [job for job in rules.instances("maintenance.yml", workflow) if job.job_id == "backup-retention"]
    assert {(job.env["STACK"], job.environment) for job in jobs} == {(s, deployed[s]) for s in backed_up}
    for job in jobs:
        (retention,) = [s for s in job.steps if rules.RETENTION_COMMAND in str(s.get("run", ""))]
        assert retention["run"].strip() == 'python -m tools.backup_maintenance retention "$STACK"'
        assert set(retention["env"]) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "RESTIC_PASSWORD"}
        assert rules.secrets_in(retention) == rules.BACKUP_MAINTENANCE
