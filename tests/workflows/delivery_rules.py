"""The delivery loop's security rules, as checks over a parsed workflow.

Each check returns one sentence per violation (empty when the workflow complies), so the tests
run them over the real workflows (expecting nothing) and over broken copies (expecting the
sentence): a rule that stopped biting would fail its test.

The rules (issue 12):
- No secret outside a job bound to a GitHub environment (so none needs to exist at repository
  level), and none in a job's or workflow's `env` (secrets sit on the steps that use them, out of
  `pip install`'s environment). GITHUB_TOKEN is not a secret of ours.
- A job a pull request triggers holds no secret, or binds a pull-request environment (only
  `staging-preview`: staging's read-only credentials) and only that environment's secrets.
  `pull_request_target` and `workflow_run`, which run with secrets beside untrusted code, are
  refused outright.
- A job uses only secrets its environment holds (ENVIRONMENTS, as docs/runbooks.md lists them),
  and touches only its environment's stack: a job that names prod and uses any secret binds
  `production`, and a job bound to `production` names nothing but prod.
- Workflows with a job bound to a main-only environment run only on pushes to main, on schedule
  or by hand (where GitHub runs the default branch's code).
- A job that reaches a host (deploy key, `pulumi up`, a refresh, the smoke check) first opens
  its SSH window and closes it in an `if: always()` step after the last such step; the window's
  expiry outlives the job's timeout.
- Checkouts keep no credentials in .git/config for later steps to find.
- The point-in-time archive's delete-capable key (ARCHIVE_EXPIRY) sits only on the step that runs
  .github/scripts/pitr-expire.sh, in a job that holds no other secret and never reaches a host,
  and that step's failure fails the job (no continue-on-error, no `|| true`). The same holds for
  the restic repository's maintenance key (BACKUP_MAINTENANCE) and the step that runs
  `python -m tools.backup_maintenance retention` (issue 18: the host's key cannot delete backups).
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from typing import Any

SECRET = re.compile(r"secrets\.([A-Za-z_][A-Za-z0-9_]*)")
MATRIX = re.compile(r"\$\{\{\s*matrix\.([A-Za-z_][A-Za-z0-9_-]*)\s*\}\}")
ENV_EXPR = re.compile(r"\$\{\{\s*env\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
STACK_ARG = re.compile(r"(?:--stack|\s-s)\s+(\"?)([^\s\"]+)\1")
PR_TRIGGERS = {"pull_request"}
REFUSED_TRIGGERS = {"pull_request_target", "workflow_run"}
MAIN_ONLY_TRIGGERS = {"push", "schedule", "workflow_dispatch"}
NOT_OURS = {"GITHUB_TOKEN"}

BACKEND = {"PULUMI_ACCESS_TOKEN", "PULUMI_CONFIG_PASSPHRASE", "STATE_ACCESS_KEY_ID", "STATE_SECRET_ACCESS_KEY"}
READ_TOKENS = {"HCLOUD_READ_TOKEN", "CLOUDFLARE_READ_TOKEN"}
WRITE_AND_HOST = {"HCLOUD_TOKEN", "CLOUDFLARE_API_TOKEN", "DEPLOY_SSH_KEY"}
ARCHIVE_EXPIRY = {"PITR_EXPIRE_ACCESS_KEY_ID", "PITR_EXPIRE_SECRET_ACCESS_KEY", "PITR_CIPHER_PASSPHRASE"}
"""A key that may delete the point-in-time archive, and its cipher passphrase (issue 16): only the
stacks that archive (prod) hold them; the maintenance workflow's expiry is their one user."""
EXPIRE_SCRIPT = ".github/scripts/pitr-expire.sh"
BACKUP_MAINTENANCE = {"BACKUP_MAINTENANCE_ACCESS_KEY_ID", "BACKUP_MAINTENANCE_SECRET_ACCESS_KEY", "BACKUP_PASSWORD"}
"""A key that may delete (and roll back) the stack's restic repository, and its password (issue 18):
every stack with backups holds them; the maintenance workflow's retention is their one user."""
RETENTION_COMMAND = "python -m tools.backup_maintenance retention"


@dataclass(frozen=True)
class Environment:
    stack: str | None
    """The stack whose credentials it holds (None: it holds none)."""
    secrets: frozenset[str]
    pull_requests: bool
    """Whether a pull request's code may run in it (its deployment branches admit any branch)."""
    reviewers: bool = False


# Each environment's secrets are that stack's own values, under the same names.
ENVIRONMENTS = {
    "staging-preview": Environment("staging", frozenset(BACKEND | READ_TOKENS), pull_requests=True),
    "staging": Environment(
        "staging", frozenset(BACKEND | READ_TOKENS | WRITE_AND_HOST | BACKUP_MAINTENANCE), pull_requests=False
    ),
    "production": Environment(
        "prod",
        frozenset(BACKEND | READ_TOKENS | WRITE_AND_HOST | ARCHIVE_EXPIRY | BACKUP_MAINTENANCE),
        pull_requests=False,
    ),
    "production-approval": Environment(None, frozenset(), pull_requests=False, reviewers=True),
}


def triggers(workflow: dict[Any, Any]) -> dict[str, Any]:
    value = workflow.get("on", workflow.get(True))  # PyYAML reads the bare key `on` as True
    if isinstance(value, str):
        return {value: None}
    if isinstance(value, list):
        return dict.fromkeys(value)
    return dict(value or {})


def secrets_in(value: Any) -> set[str]:
    return set(SECRET.findall(repr(value))) - NOT_OURS


def _substitute(value: Any, pattern: re.Pattern[str], table: dict[str, Any]) -> Any:
    if isinstance(value, str):
        return pattern.sub(lambda m: str(table[m[1]]) if m[1] in table else m[0], value)
    if isinstance(value, dict):
        return {k: _substitute(v, pattern, table) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, pattern, table) for v in value]
    return value


def matrix_rows(job: dict[str, Any]) -> list[dict[str, Any]]:
    matrix = (job.get("strategy") or {}).get("matrix") or {}
    axes = {k: v for k, v in matrix.items() if k not in ("include", "exclude") and isinstance(v, list)}
    rows: list[dict[str, Any]] = []
    if axes:
        rows = [dict(zip(axes, combo, strict=True)) for combo in itertools.product(*axes.values())]
    rows += [dict(extra) for extra in matrix.get("include", [])]
    return rows or [{}]


@dataclass
class Instance:
    """One job as it runs: a matrix row substituted in, env expressions resolved."""

    workflow: str
    job_id: str
    job: dict[str, Any]
    environment: str | None
    env: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.workflow} {self.job_id}" + (f" ({self.env['STACK']})" if "STACK" in self.env else "")

    @property
    def steps(self) -> list[dict[str, Any]]:
        steps: list[dict[str, Any]] = self.job.get("steps", [])
        return steps

    def stacks(self) -> set[str]:
        """Every stack the job names: its STACK, pulumi's stack-name, the smoke check's stack,
        and --stack/-s in its scripts ("$STACK" meaning its STACK)."""
        named = {self.env["STACK"]} if "STACK" in self.env else set()
        for step in self.steps:
            with_ = step.get("with") or {}
            for key in ("stack-name", "stack"):
                if key in with_:
                    named.add(str(with_[key]))
            for _, value in STACK_ARG.findall(str(step.get("run", ""))):
                named.add(self.env.get("STACK", value) if value in ("$STACK", "${STACK}") else value)
        return named


def instances(name: str, workflow: dict[Any, Any]) -> list[Instance]:
    out = []
    for job_id, job in (workflow.get("jobs") or {}).items():
        for row in matrix_rows(job):
            resolved = _substitute(job, MATRIX, row)
            env = {k: str(v) for k, v in (resolved.get("env") or {}).items()}
            resolved = _substitute(resolved, ENV_EXPR, env)
            environment = resolved.get("environment")
            if isinstance(environment, dict):
                environment = environment.get("name")
            out.append(Instance(name, job_id, resolved, environment, env))
    return out


def is_host_step(step: dict[str, Any]) -> bool:
    uses, run = str(step.get("uses", "")), str(step.get("run", ""))
    if uses.startswith("webfactory/ssh-agent@") or uses == "./.github/actions/smoke":
        return True
    if uses.startswith("pulumi/actions@") and (step.get("with") or {}).get("command") in ("up", "refresh", "destroy"):
        return True
    return bool(re.search(r"pulumi (up|refresh|destroy)\b|--refresh", run))


def window_step(step: dict[str, Any], command: str) -> bool:
    return bool(re.search(rf"python3 tools/ssh_window\.py {command} --stack \"\$STACK\"", str(step.get("run", ""))))


# ----------------------------------------------------------------------------- the checks


def check_secrets_scope(name: str, workflow: dict[Any, Any]) -> list[str]:
    problems = []
    outside = secrets_in({k: v for k, v in workflow.items() if k != "jobs"})
    if outside:
        problems.append(f"{name}: secrets {sorted(outside)} outside any job (workflow level)")
    for job in instances(name, workflow):
        used = secrets_in(job.job)
        if used and job.environment is None:
            problems.append(f"{job.name}: uses secrets {sorted(used)} without an environment")
        in_env = secrets_in(job.job.get("env"))
        if in_env:
            problems.append(f"{job.name}: secrets {sorted(in_env)} in the job's env (every step would see them)")
        if job.environment is not None:
            known = ENVIRONMENTS.get(job.environment)
            if known is None:
                problems.append(f"{job.name}: binds unknown environment {job.environment!r}")
            elif used - known.secrets:
                problems.append(f"{job.name}: uses {sorted(used - known.secrets)}, not held by {job.environment}")
    return problems


def check_pull_requests(name: str, workflow: dict[Any, Any]) -> list[str]:
    on = set(triggers(workflow))
    problems = [f"{name}: refused trigger {t} (runs with secrets beside untrusted code)" for t in on & REFUSED_TRIGGERS]
    if not on & PR_TRIGGERS:
        return problems
    for job in instances(name, workflow):
        used = secrets_in(job.job)
        if job.environment is None:
            continue  # check_secrets_scope: no environment, so no secret
        env = ENVIRONMENTS.get(job.environment)
        if env is None or not env.pull_requests:
            problems.append(f"{job.name}: a pull request's job binds {job.environment}, which is not for pull requests")
        elif used - env.secrets:
            problems.append(f"{job.name}: a pull request's job uses {sorted(used - env.secrets)}")
    return problems


def check_stacks(name: str, workflow: dict[Any, Any]) -> list[str]:
    problems = []
    for job in instances(name, workflow):
        stacks = job.stacks()
        env = ENVIRONMENTS.get(job.environment or "")
        if "prod" in stacks and secrets_in(job.job) and job.environment != "production":
            problems.append(f"{job.name}: names prod and uses secrets, but binds {job.environment}")
        if env is not None and env.stack is not None and stacks - {env.stack}:
            others = sorted(stacks - {env.stack})
            problems.append(f"{job.name}: binds {job.environment} ({env.stack}) but names {others}")
        if env is not None and env.stack is None and secrets_in(job.job):
            problems.append(f"{job.name}: {job.environment} holds no secret, yet the job uses some")
    return problems


def check_main_only(name: str, workflow: dict[Any, Any]) -> list[str]:
    bound = {job.environment for job in instances(name, workflow)} - {None}
    main_only = {e for e in bound if e in ENVIRONMENTS and not ENVIRONMENTS[e].pull_requests}
    if not main_only:
        return []
    on = triggers(workflow)
    problems = [f"{name}: binds {sorted(main_only)} yet runs on {t}" for t in sorted(set(on) - MAIN_ONLY_TRIGGERS)]
    push = on.get("push")
    if "push" in on and (not isinstance(push, dict) or push.get("branches") != ["main"] or "tags" in push):
        problems.append(f"{name}: binds {sorted(main_only)} yet runs on pushes other than to main")
    return problems


def check_host_window(name: str, workflow: dict[Any, Any]) -> list[str]:
    problems = []
    for job in instances(name, workflow):
        steps = job.steps
        host = [i for i, s in enumerate(steps) if is_host_step(s)]
        if not host:
            continue
        opens = [i for i, s in enumerate(steps) if window_step(s, "open")]
        closes = [i for i, s in enumerate(steps) if window_step(s, "close")]
        if not opens or opens[0] > host[0]:
            problems.append(f"{job.name}: reaches the host without opening its SSH window first")
        if not closes or closes[-1] < host[-1]:
            problems.append(f"{job.name}: does not close its SSH window after the last step that reaches the host")
        elif str(steps[closes[-1]].get("if", "")).strip() != "always()":
            problems.append(f"{job.name}: closes its SSH window without `if: always()`")
        for i in opens:
            ttl = re.search(r"--ttl-minutes (\d+)", str(steps[i].get("run", "")))
            if not ttl or int(ttl[1]) <= int(job.job.get("timeout-minutes", 360)):
                problems.append(f"{job.name}: the SSH window's --ttl-minutes must outlast timeout-minutes")
    return problems


def check_checkouts(name: str, workflow: dict[Any, Any]) -> list[str]:
    problems = []
    for job in instances(name, workflow):
        for step in job.steps:
            if str(step.get("uses", "")).startswith("actions/checkout@"):
                if (step.get("with") or {}).get("persist-credentials") is not False:
                    problems.append(f"{job.name}: checkout leaves the token in .git/config (persist-credentials)")
    return problems


def _check_confined_key(
    name: str, workflow: dict[Any, Any], secrets: set[str], command: str, what: str, task: str
) -> list[str]:
    """``secrets`` only on a step that runs ``command`` alone, in a job that holds nothing else and
    never reaches a host, and whose failure fails the job."""
    problems = []
    for job in instances(name, workflow):
        used = secrets_in(job.job)
        if not used & secrets:
            continue
        if used - secrets:
            problems.append(f"{job.name}: holds {what} beside {sorted(used - secrets)}")
        if any(is_host_step(step) for step in job.steps):
            problems.append(f"{job.name}: holds {what} and reaches a host")
        for step in job.steps:
            if not secrets_in(step) & secrets:
                continue
            run = str(step.get("run", "")).strip()
            if not run.startswith(command) or "\n" in run or re.search(r"[|;&]", run):
                problems.append(f"{job.name}: {what} reaches a step other than {command}")
            if step.get("continue-on-error") or "|| true" in run:
                problems.append(f"{job.name}: a failed {task} does not fail the job")
    return problems


def check_archive_key(name: str, workflow: dict[Any, Any]) -> list[str]:
    return _check_confined_key(name, workflow, ARCHIVE_EXPIRY, EXPIRE_SCRIPT, "the archive's expiry key", "expiry")


def check_backup_maintenance_key(name: str, workflow: dict[Any, Any]) -> list[str]:
    return _check_confined_key(
        name, workflow, BACKUP_MAINTENANCE, RETENTION_COMMAND, "the repository's maintenance key", "retention"
    )


CHECKS = (
    check_secrets_scope,
    check_pull_requests,
    check_stacks,
    check_main_only,
    check_host_window,
    check_checkouts,
    check_archive_key,
    check_backup_maintenance_key,
)


def violations(name: str, workflow: dict[Any, Any]) -> list[str]:
    return [problem for check in CHECKS for problem in check(name, workflow)]
