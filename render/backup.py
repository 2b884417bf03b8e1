"""The backup job's shell scripts (restic), rendered from the stack's stores.

Scripts (POSIX sh, shellcheck-clean), all mounted side by side in SCRIPTS_DIR:

- ``common.sh``: restic environment, the job lock, opening the repository (probe, lock healing,
  initialisation only when allowed), failure reasons, the Prometheus textfile writer;
- ``backup.sh``: the entry point of one scheduled run; backs up every store, then ``forget.sh``;
- ``forget.sh``: retention (``restic forget --keep-* --prune``);
- ``check.sh``: ``restic check`` on its own schedule;
- ``restore-postgres.sh``, ``restore-redis.sh``, ``restore-sqlite.sh``, ``restore-files.sh``:
  restore the latest (or a given) snapshot of one store;
- ``drill.sh``: restores every store's latest snapshot into scratch space and checks it.

What each store kind becomes in the repository (one snapshot per item, tagged ``keel``,
``store=<name>`` and ``kind=<kind>``, taken with a fixed ``--host`` so retention groups stay
stable across containers):

- postgres: ``pg_dump -Fc -Z0`` streamed into ``restic backup --stdin-from-command`` as
  ``/<store>.pgdump`` (restic compresses and deduplicates; pg_dump's own compression would defeat
  deduplication; restic makes no snapshot when pg_dump fails), after the roles, which pg_dump
  leaves out (``pg_dumpall --roles-only --no-role-passwords``: the backup role is no superuser and
  may not read pg_authid; keel sets its own roles' passwords again on every deploy), as
  ``/<store>.roles.sql`` (kind ``postgres-roles``);
- redis: ``BGSAVE``, wait until it has finished, then the RDB file as ``/<store>.rdb``;
- sqlite: ``VACUUM INTO`` a temporary copy (never a raw copy of a live file), checked with
  ``PRAGMA integrity_check``, as ``/<store>+<relative path with "/" as "+">`` (a flat name: restic
  0.18.0 cannot name stdin with directories, #5324; restores also find the older
  ``/<store>/<relative path>``). Not ``.backup``: the online backup
  API starts over whenever another connection writes, and under a steady writer it took 6 to
  14 s (finishing only when the writer paused) where VACUUM INTO took 0.1 s;
- volume files: the directory, without its SQLite files (they are in their own snapshots).

Everything the scripts touch comes from environment variables with defaults for the backup
container, so the same scripts run on a test machine: RESTIC_REPOSITORY, RESTIC_PASSWORD_FILE,
KEEL_SECRETS_DIR, KEEL_STORES_DIR, KEEL_TEXTFILE_DIR, KEEL_WORK_DIR, the tool names (RESTIC,
PG_DUMP, PG_DUMPALL, PG_RESTORE, PSQL, REDIS_CLI, SQLITE3), per store KEEL_HOST_<STORE>/KEEL_PORT_<STORE>,
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
``keel_backup_schedule_interval_seconds``, ``keel_backup_retention_last_run_success{[reason]}``,
``keel_backup_retention_last_success_timestamp_seconds`` and, while a run is unfinished,
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
from datetime import UTC, datetime

from croniter import croniter

from config.models import BackupRepository, PostgresSpec, RedisSpec, Retention, StackConfig, VolumeSpec
from render import postgres as pg
from render import redis as rd
from render import render_template

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

SCRIPT_NAMES = (
    "common.sh",
    "backup.sh",
    "forget.sh",
    "check.sh",
    "restore-postgres.sh",
    "restore-redis.sh",
    "restore-sqlite.sh",
    "restore-files.sh",
    "drill.sh",
)

# Names that reach the scripts unquoted (tags, paths, variable names) are limited to these.
_SAFE_PATH = re.compile(r"[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*", re.ASCII)
_STORE_NAME = re.compile(r"[a-z][a-z0-9-]{0,30}", re.ASCII)
_HOST = re.compile(r"[A-Za-z0-9._-]+", re.ASCII)
# Cron schedules are measured over this many runs from a fixed instant, so the result is stable.
_INTERVAL_SAMPLES = 1000
_REFERENCE = datetime(2025, 1, 1, tzinfo=UTC)


def sqlite_snapshot_name(store: str, path: str) -> str:
    """The file of a SQLite database's snapshot (common.sh's keel_sqlite_name)."""
    return f"/{store}+{path.replace('/', '+')}"


def password_file(store: str) -> str:
    """Secret file name (under KEEL_SECRETS_DIR) of a store's password in the backup container."""
    return f"{store}-password"


def env_suffix(store: str) -> str:
    """A store name as it appears in environment variable names (KEEL_HOST_<suffix>)."""
    return store.upper().replace("-", "_")


@dataclass(frozen=True)
class PostgresTarget:
    """A PostgreSQL store reached over the data network."""

    name: str
    host: str
    database: str
    user: str = pg.BACKUP_ROLE
    """The role the job logs in as: the store's backup role (pg_read_all_data), not the app's."""
    port: int = pg.PORT


@dataclass(frozen=True)
class RedisTarget:
    """A Redis store: commands over the network, its RDB file read from its mounted volume."""

    name: str
    host: str
    port: int = rd.PORT
    user: str = rd.BACKUP_USER
    """The ACL user the job logs in as (PING, INFO and BGSAVE only)."""


@dataclass(frozen=True)
class VolumeTarget:
    """A data volume mounted at KEEL_STORES_DIR/<name>: its SQLite files and, optionally, its files."""

    name: str
    sqlite_files: tuple[str, ...] = ()
    files: bool = True


@dataclass(frozen=True)
class BackupSpec:
    """Everything the scripts need to know, fixed at deploy time."""

    repository: str
    """restic repository URL (s3:https://endpoint/bucket/path)."""
    snapshot_host: str
    """The --host of every snapshot: containers have random hostnames, retention groups must not."""
    schedule: str
    retention: Retention
    postgres: tuple[PostgresTarget, ...] = ()
    redis: tuple[RedisTarget, ...] = ()
    volumes: tuple[VolumeTarget, ...] = ()
    s3_region: str = "us-east-1"
    check_schedule: str = "30 4 * * 0"
    initialise: bool = False
    """Whether a backup run may create the repository (and its bucket) when it finds none."""
    redis_bgsave_timeout_s: int = 600
    """How long a run waits for Redis' BGSAVE before it counts the store as failed."""

    def __post_init__(self) -> None:
        names = list(self.store_names)
        if not names:
            raise ValueError("a backup needs at least one store")
        for name in names:
            if not _STORE_NAME.fullmatch(name):
                raise ValueError(f"store name {name!r}: expected lower-case letters, digits and dashes")
        if len(set(names)) != len(names):
            raise ValueError(f"store names must be unique; found {sorted(names)}")
        for volume in self.volumes:
            for path in volume.sqlite_files:
                if not _SAFE_PATH.fullmatch(path) or ".." in path.split("/"):
                    raise ValueError(
                        f"store {volume.name}: sqlite file {path!r}: expected a relative path of letters, "
                        "digits, dots, dashes and underscores"
                    )
        if not _HOST.fullmatch(self.snapshot_host):
            raise ValueError(f"snapshot_host {self.snapshot_host!r}: expected letters, digits, dots and dashes")
        targets: list[PostgresTarget | RedisTarget] = [*self.postgres, *self.redis]
        for target in targets:
            if not _HOST.fullmatch(target.host):
                raise ValueError(
                    f"store {target.name}: host {target.host!r}: expected letters, digits, dots and dashes"
                )

    @property
    def backup_deadline_s(self) -> int:
        """How long a backup run may last: until the next one is due (skip-running skips that one
        anyway), and never more than MAX_RUN_S."""
        return run_deadline_seconds(self.schedule)

    @property
    def store_names(self) -> tuple[str, ...]:
        targets: list[PostgresTarget | RedisTarget | VolumeTarget] = [*self.postgres, *self.redis, *self.volumes]
        return tuple(t.name for t in targets)


def repository_url(repo: BackupRepository, default_path: str) -> str:
    """The restic S3 repository URL for ``repo`` (its path, or ``default_path`` when unset)."""
    endpoint = repo.endpoint.rstrip("/")
    if "://" not in endpoint:
        endpoint = "https://" + endpoint
    path = (repo.path or default_path).strip("/")
    return f"s3:{endpoint}/{repo.bucket}" + (f"/{path}" if path else "")


def schedule_interval_seconds(schedule: str) -> int:
    """The longest gap between two runs of a cron schedule (UTC), in seconds.

    The longest gap, not the first, so that an irregular schedule (weekdays only) does not
    make the backup-age alert fire every weekend.
    """
    runs = croniter(schedule, _REFERENCE)
    previous = runs.get_next(datetime)
    longest = 0
    for _ in range(_INTERVAL_SAMPLES):
        current = runs.get_next(datetime)
        longest = max(longest, int((current - previous).total_seconds()))
        previous = current
    return longest


def run_deadline_seconds(schedule: str | None) -> int:
    """The deadline of a job's run: its schedule's longest gap, at most MAX_RUN_S (on demand: MAX_RUN_S)."""
    return MAX_RUN_S if schedule is None else min(schedule_interval_seconds(schedule), MAX_RUN_S)


def backup_spec(
    cfg: StackConfig,
    *,
    stack_name: str,
    service_names: Mapping[str, str],
) -> BackupSpec:
    """The BackupSpec of a stack: every postgres, redis and volume store (external stores are
    backed up by their provider). ``service_names`` maps store name -> its swarm DNS name."""
    if cfg.backup.repository is None:
        raise ValueError("backup/repository: is required to render the backup scripts")
    postgres: list[PostgresTarget] = []
    redis: list[RedisTarget] = []
    volumes: list[VolumeTarget] = []
    for name, store in cfg.stores().items():
        if isinstance(store, PostgresSpec):
            postgres.append(PostgresTarget(name=name, host=service_names[name], database=store.database))
        elif isinstance(store, RedisSpec):
            redis.append(RedisTarget(name=name, host=service_names[name]))
        elif isinstance(store, VolumeSpec) and (store.backup or store.sqlite_files):
            volumes.append(VolumeTarget(name=name, sqlite_files=tuple(store.sqlite_files), files=store.backup))
    return BackupSpec(
        repository=repository_url(cfg.backup.repository, f"{cfg.name_prefix}/{stack_name}"),
        snapshot_host=f"{cfg.name_prefix}-{stack_name}",
        schedule=cfg.backup.schedule,
        retention=cfg.backup.retention,
        postgres=tuple(postgres),
        redis=tuple(redis),
        volumes=tuple(volumes),
        s3_region=cfg.backup.repository.region,
        check_schedule=cfg.backup.check_schedule,
        initialise=cfg.backup.repository.initialise,
    )


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
    values = {
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
        "rdb_filename": rd.RDB_FILENAME,
        "aof_file": rd.AOF_FILENAME,
        "aof_dir": rd.AOF_DIRNAME,
    }
    return {name: render_template(f"backup/{name}.j2", **values) for name in SCRIPT_NAMES}
