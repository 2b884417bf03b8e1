"""The backup job's shell scripts (restic), rendered from the stack's stores.

Scripts (POSIX sh, shellcheck-clean), all mounted side by side in SCRIPTS_DIR:

- ``common.sh``: restic environment, the job lock, opening the repository (probe, lock healing,
  initialisation only when allowed), failure reasons, the Prometheus textfile writer;
- ``backup.sh``: the entry point of one scheduled run; backs up every store. It only adds:
  retention (``restic forget --keep-* --prune``) deletes, and the host's key may not (the bucket is
  versioned and the key may delete nothing but restic's lock files, render/backup_bucket.py), so
  it runs from the maintenance workflow with a key of its own (tools/backup_maintenance.py);
- ``check.sh``: ``restic check`` on its own schedule;
- ``restore-<kind>.sh`` (``restore-postgres.sh``, ``restore-sqlite.sh``, ...): restore the latest
  (or a given) snapshot of one store;
- ``drill.sh``: restores every store's latest snapshot into scratch space and checks it.

The scripts are assembled from the parts each store kind of the stack contributes (its
``Backup``: stores/<kind>/kind.py, templates in stores/<kind>/templates/backup/): the shell
functions of backup.sh and drill.sh, their lines per store, helpers shared with its restore
scripts, the restore scripts themselves and the tool names. A kind the stack has no store of
contributes nothing. What each kind becomes in the repository is said where the kind is (one
snapshot per item, tagged ``keel``, ``store=<name>`` and ``kind=<kind>``, taken with a fixed
``--host`` so retention groups stay stable across containers).

Everything the scripts touch comes from environment variables with defaults for the backup
container, so the same scripts run on a test machine: RESTIC_REPOSITORY, RESTIC_PASSWORD_FILE,
KEEL_SECRETS_DIR, KEEL_STORES_DIR, KEEL_TEXTFILE_DIR, KEEL_WORK_DIR, the tool names (RESTIC and
each kind's: PG_DUMP, REDIS_CLI, SQLITE3, MARIADB_DUMP...), per store KEEL_HOST_<STORE>/KEEL_PORT_<STORE>,
and the bounds KEEL_RETRY_LOCK, KEEL_PROBE_TIMEOUT_S and KEEL_JOB_LOCK_WAIT_S.

The scripts need restic 0.17 or newer (the job image pins 0.18.0, the version the tests run): they
rely on its exit codes (10 no repository, 11 locked, 12 wrong password), ``--retry-lock`` and ``--stdin-from-command``,
and refuse an older restic with reason ``restic_too_old``.

Locks: the jobs of one host (backup, check, drill) take turns on an flock of a file on the cache
volume they share, and all run with one container hostname per node (JOB_HOSTNAME). So while a
job holds that flock, a restic lock carrying its own hostname can only have been left by a run that
died (killed at its deadline, OOM, node restart): it is removed before any restic command that
locks. Locks of other hosts (an operator's restore) are removed only once restic finds them stale,
and are otherwise waited for, for at most KEEL_RETRY_LOCK.

Metrics (node-exporter textfile collector; a contract with the alert rules):
``keel_backup_last_success_timestamp_seconds{store}``, ``keel_backup_last_run_timestamp_seconds{store}``,
``keel_backup_last_run_success{store[,reason]}``, ``keel_backup_last_run_duration_seconds{store}``,
``keel_backup_schedule_interval_seconds`` and, while a run is unfinished,
``keel_backup_run_deadline_timestamp_seconds``; ``restic check`` (``keel_backup_check_*``) and the
drill write their own files. A failed outcome carries a ``reason`` label from FAILURE_REASONS. Each
run first writes every outcome as failed with reason ``unfinished`` and the run's deadline, and
replaces that as it goes: a run that is killed, or hangs until swarm ends it, stays failed, and
the alerts fire once its deadline has passed.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from config import cron
from config.models import BackupRepository, StackConfig
from render import render_from, render_template
from stores import registry
from stores.base import Backup, BackupTarget, JobTools

SCRIPTS_DIR = "/etc/keel-backup"
STORES_DIR = "/stores"
SECRETS_DIR = "/run/secrets"
TEXTFILE_DIR = "/textfile"
RESTIC_PASSWORD_FILE = f"{SECRETS_DIR}/restic-password"
S3_ACCESS_KEY_FILE = f"{SECRETS_DIR}/s3-access-key"
S3_SECRET_KEY_FILE = f"{SECRETS_DIR}/s3-secret-key"
METRICS_FILE = "keel_backup.prom"
CHECK_METRICS_FILE = "keel_backup_check.prom"
DRILL_METRICS_FILE = "keel_backup_drill.prom"
RUN_STARTED_FILE = "/tmp/keel-run-started"
JOB_HOSTNAME = "{{.Node.Hostname}}-keel-backup"
"""The container hostname of every job (a swarm template): the same for the jobs of one node, so
restic's locks tell the runs of this node (which take turns) from anyone else's."""
MAX_RUN_S = 6 * 3600
"""No run of a job lasts longer than this; a run that does is ended as hung."""
RETRY_LOCK = "5m"
"""How long a restic command waits for a lock held by someone else (an operator's restore)."""
PROBE_TIMEOUT_S = 120
"""How long opening the repository may take before the endpoint counts as unreachable. restic 0.17
gives up on an unreachable endpoint in seconds, 0.18 retries the same request for 15 minutes."""
MIN_RESTIC = (0, 17)

FAILURE_REASONS = (
    "unfinished",
    "another_job_running",
    "restic_too_old",
    "repository_missing",
    "repository_locked",
    "wrong_password",
    "access_denied",
    "certificate_untrusted",
    "repository_unreachable",
    "restic_failed",
    "source_failed",
    "check_failed",
)
"""Every value of the ``reason`` label (docs/restore.md says what each means)."""

SCRIPT_NAMES = ("common.sh", "backup.sh", "check.sh", "drill.sh")
"""The job's own scripts; each kind of the stack adds its restore scripts (Backup.restore)."""

# Names that reach the scripts unquoted (tags, variable names, host names) are limited to these.
_STORE_NAME = re.compile(r"[a-z][a-z0-9-]{0,30}", re.ASCII)
_HOST = re.compile(r"[A-Za-z0-9._-]+", re.ASCII)


def password_file(store: str) -> str:
    """Secret file name (under KEEL_SECRETS_DIR) of a store's password in the backup container."""
    return f"{store}-password"


def env_suffix(store: str) -> str:
    """A store name as it appears in environment variable names (KEEL_HOST_<suffix>)."""
    return store.upper().replace("-", "_")


@dataclass(frozen=True)
class BackupSpec:
    """Everything the scripts need to know, fixed at deploy time."""

    repository: str
    """restic repository URL (s3:https://endpoint/bucket/path)."""
    snapshot_host: str
    """The --host of every snapshot: containers have random hostnames, retention groups must not."""
    schedule: str
    targets: tuple[BackupTarget, ...] = ()
    """Every store backed up, kind by kind in the registry's order (each kind's target class)."""
    s3_region: str = "us-east-1"
    check_schedule: str = "30 4 * * 0"
    initialise: bool = False
    """Whether a backup run may create the repository (and its bucket) when it finds none."""

    def __post_init__(self) -> None:
        names = list(self.store_names)
        if not names:
            raise ValueError("a backup needs at least one store")
        for name in names:
            if not _STORE_NAME.fullmatch(name):
                raise ValueError(f"store name {name!r}: expected lower-case letters, digits and dashes")
        if len(set(names)) != len(names):
            raise ValueError(f"store names must be unique; found {sorted(names)}")
        if not _HOST.fullmatch(self.snapshot_host):
            raise ValueError(f"snapshot_host {self.snapshot_host!r}: expected letters, digits, dots and dashes")
        for target in self.targets:
            # Every kind reached over the network names its host (stores.base.BackupTarget).
            host = getattr(target, "host", None)
            if host is not None and not _HOST.fullmatch(host):
                raise ValueError(f"store {target.name}: host {host!r}: expected letters, digits, dots and dashes")

    @property
    def kinds(self) -> tuple[str, ...]:
        """The kinds the targets are of, in the registry's order."""
        present = {target.kind for target in self.targets}
        return tuple(name for name in registry.KINDS if name in present)

    @property
    def backup_deadline_s(self) -> int:
        """How long a backup run may last: until the next one is due (skip-running skips that one
        anyway), and never more than MAX_RUN_S."""
        return run_deadline_seconds(self.schedule)

    @property
    def store_names(self) -> tuple[str, ...]:
        return tuple(target.name for target in self.targets)


def repository_url(repo: BackupRepository, default_path: str) -> str:
    """The restic S3 repository URL for ``repo`` (its path, or ``default_path`` when unset)."""
    endpoint = repo.endpoint.rstrip("/")
    if "://" not in endpoint:
        endpoint = "https://" + endpoint
    path = (repo.path or default_path).strip("/")
    return f"s3:{endpoint}/{repo.bucket}" + (f"/{path}" if path else "")


def schedule_interval_seconds(schedule: str) -> int:
    """The longest gap between two runs of a cron schedule (UTC), in seconds, computed exactly
    (config/cron.py).

    The longest gap, not the first, so that an irregular schedule (weekdays only) does not
    make the backup-age alert fire every weekend.
    """
    return cron.longest_gap_seconds(schedule)


def run_deadline_seconds(schedule: str | None) -> int:
    """The deadline of a job's run: its schedule's longest gap, at most MAX_RUN_S (on demand: MAX_RUN_S)."""
    return MAX_RUN_S if schedule is None else min(schedule_interval_seconds(schedule), MAX_RUN_S)


def backup_spec(cfg: StackConfig, *, stack_name: str) -> BackupSpec:
    """The BackupSpec of a stack: every store its kind backs up (external stores are backed up by
    their provider), reached at its swarm service name."""
    if cfg.backup.repository is None:
        raise ValueError("backup/repository: is required to render the backup scripts")
    return BackupSpec(
        repository=repository_url(cfg.backup.repository, f"{cfg.name_prefix}/{stack_name}"),
        snapshot_host=cfg.names.snapshot_host(stack_name),
        schedule=cfg.backup.schedule,
        targets=backup_targets(cfg),
        s3_region=cfg.backup.repository.region,
        check_schedule=cfg.backup.check_schedule,
        initialise=cfg.backup.repository.initialise,
    )


def backup_targets(cfg: StackConfig) -> tuple[BackupTarget, ...]:
    """The stores the backups cover, kind by kind in the registry's order (as the scripts have always
    run them: a stable order keeps the scripts unchanged)."""
    targets: list[BackupTarget] = []
    for name, store in cfg.stores().items():
        backup = registry.kind_of(store).backup()
        target = backup.target(name, store, cfg.names.store(name)) if backup is not None else None
        if target is not None:
            targets.append(target)
    return tuple(sorted(targets, key=lambda target: registry.order(target.kind)))


def job_tools(cfg: StackConfig) -> JobTools:
    """What the job image must carry: every backed-up kind's tools for the stack's stores of it
    (a kind without a store here may still name the image its tools come from, as a default)."""
    build_args: dict[str, str] = {}
    apk: list[str] = []
    apt: list[str] = []
    checks: list[str] = []
    backed = {target.name for target in backup_targets(cfg)}
    for kind in registry.KINDS.values():
        backup = kind.backup()
        if backup is None:
            continue
        specs = [s for n, s in cfg.stores().items() if s.kind == kind.name and n in backed]
        tools = backup.tools(specs)
        build_args.update(tools.build_args)
        apk += tools.apk
        apt += tools.apt
        checks += tools.checks
    return JobTools(build_args=build_args, apk=tuple(apk), apt=tuple(apt), checks=tuple(checks))


def job_health_command(deadline_s: int) -> list[str]:
    """A job's swarm health check: healthy until its run has lasted ``deadline_s`` seconds.

    A run-to-completion job has no "ready" state to probe; what goes wrong is a run that hangs
    (an unreachable endpoint, a stuck BGSAVE). With ``skip-running`` a hung run would also skip
    every later one, so swarm ends it instead: an unhealthy task is stopped, and with restart
    condition ``none`` the next scheduled run starts afresh. The run's start is the time the
    entry script wrote to RUN_STARTED_FILE (KEEL_RUN_STARTED_FILE overrides it).
    """
    started = f'"${{KEEL_RUN_STARTED_FILE:-{RUN_STARTED_FILE}}}"'
    return [
        "CMD-SHELL",
        f"started=$(cat {started}) && [ $(($(date +%s) - started)) -lt {deadline_s} ]",
    ]


def render_backup_scripts(spec: BackupSpec) -> dict[str, str]:
    """Every script of the job, file name -> text. They source each other from one directory."""
    values: dict[str, object] = {
        "spec": spec,
        "q": shlex.quote,
        "env": env_suffix,
        "password_file": password_file,
        "interval_s": schedule_interval_seconds(spec.schedule),
        "check_interval_s": schedule_interval_seconds(spec.check_schedule),
        "backup_deadline_s": spec.backup_deadline_s,
        "max_run_s": MAX_RUN_S,
        "retry_lock": RETRY_LOCK,
        "probe_timeout_s": PROBE_TIMEOUT_S,
        "min_restic": MIN_RESTIC,
        "scripts_dir": SCRIPTS_DIR,
        "stores_dir": STORES_DIR,
        "secrets_dir": SECRETS_DIR,
        "textfile_dir": TEXTFILE_DIR,
        "restic_password_file": RESTIC_PASSWORD_FILE,
        "s3_access_key_file": S3_ACCESS_KEY_FILE,
        "s3_secret_key_file": S3_SECRET_KEY_FILE,
        "metrics_file": METRICS_FILE,
        "check_metrics_file": CHECK_METRICS_FILE,
        "drill_metrics_file": DRILL_METRICS_FILE,
        "run_started_file": RUN_STARTED_FILE,
    }
    parts: dict[str, list[str]] = {"common": [], "functions": [], "calls": [], "drill_functions": [], "drill_calls": []}
    tools: dict[str, str] = {}
    restore: dict[str, str] = {}
    for name in spec.kinds:
        backup = registry.kind(name).backup()
        assert backup is not None, f"a {name} target without the kind's backup"
        kind_values = {**values, **backup.values}
        if backup.common is not None:
            parts["common"].append(_part(backup, backup.common, kind_values))
        parts["functions"].append(_part(backup, backup.functions, kind_values))
        parts["drill_functions"].append(_part(backup, backup.drill_functions, kind_values))
        for target in (t for t in spec.targets if t.kind == name):
            parts["calls"].append(_part(backup, backup.calls, {**kind_values, "t": target}))
            parts["drill_calls"].append(_part(backup, backup.drill_calls, {**kind_values, "t": target}))
        tools.update(backup.tool_defaults)
        for script in backup.restore:
            restore[script] = render_from(backup.templates, f"backup/{script}.j2", **kind_values)
    scripts = {
        "common.sh": render_template("backup/common.sh.j2", **values, common=parts["common"], tools=tools),
        "backup.sh": render_template(
            "backup/backup.sh.j2", **values, functions=parts["functions"], calls=parts["calls"]
        ),
        "check.sh": render_template("backup/check.sh.j2", **values),
        **restore,
        "drill.sh": render_template(
            "backup/drill.sh.j2", **values, functions=parts["drill_functions"], calls=parts["drill_calls"]
        ),
    }
    return scripts


def _part(backup: Backup[Any], template: str, values: Mapping[str, object]) -> str:
    """One of a kind's script parts, without the blank lines around it (the scripts place them)."""
    return render_from(backup.templates, template, **values).strip("\n")
