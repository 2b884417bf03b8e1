"""Point-in-time recovery of PostgreSQL stores with pgBackRest, rendered from the stack's config.

Why pgBackRest (2.45 in Debian bookworm, a package in Alpine and in PostgreSQL's own apt
repository, which the official images use): it is the one archiver that can be installed and
proven here (WAL-G ships as a GitHub release binary only: no Debian, PyPI or npm package), and it
does what this needs natively: S3 with path or host addressing, AES-256 encryption of the whole
repository, time-based retention (``repo1-retention-full-type=time``), full, differential and
incremental backups, restore to a time with ``--type=time``, and a separate ``expire`` command,
so the host never needs the right to delete.

Where things run:

- ``archive_command`` runs inside the store's container, so the store runs an image built on the
  host from its own official image plus pgBackRest (``render/templates/pitr/image``), with the
  image's entrypoint untouched (the service passes ``args``). The configuration is
  ``/etc/pgbackrest/pgbackrest.conf`` (a swarm config) and the keys and cipher passphrase are
  ``/etc/pgbackrest/conf.d/keel-secrets.conf`` (a swarm secret that pgBackRest includes).
- Base backups, the drill and the heartbeat run as jobs of the same image beside the store: they
  mount its data volume at the same path (pgBackRest checks that ``pg1-path`` is the server's
  data_directory) and its socket directory (pgBackRest talks to the server over the socket).
- Expiry (``pgbackrest expire``) deletes, so it runs elsewhere with its own key:
  ``python -m tools.pitr expire-config`` renders what a scheduled workflow needs.

The drill's marker: a heartbeat writer inserts ``now()`` into ``keel_pitr.heartbeat`` (a database
of its own in the same cluster, so the app's database is left alone) every HEARTBEAT_INTERVAL_S.
The drill restores to a random second T of the last day into scratch space, starts PostgreSQL
there, and reads the newest heartbeat at or before T: the recovery point it achieved is
T minus that heartbeat, and a heartbeat after T means the restore overshot (a failed drill).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from urllib.parse import urlsplit

from config.models import StackConfig
from render import render_template
from render.backup import schedule_interval_seconds

CONFIG_DIR = "/etc/pgbackrest"
CONFIG_FILE = f"{CONFIG_DIR}/pgbackrest.conf"
SECRETS_FILE = f"{CONFIG_DIR}/conf.d/keel-secrets.conf"
SCRIPTS_DIR = "/etc/keel-pitr"
SOCKET_DIR = "/var/run/postgresql"
SUPERUSER = "postgres"
"""Who pgBackRest, the heartbeat writer and the drill log in as: the cluster's superuser, the
image's POSTGRES_USER as the postgres kind sets it (stores/postgres/server.ADMIN_ROLE; a test keeps
them equal). The app's role owns its database and is no superuser, and archiving needs one
(pg_backup_start, pg_ls_archive_statusdir, CREATE DATABASE for the heartbeat). It connects over
the shared socket, which the official image trusts locally, so no password of it is handed out."""
DATA_DIR = "/var/lib/postgresql/data/pgdata"
"""The store's PGDATA (components/stateful_store.py): jobs mount the volume at the same path."""
TEXTFILE_DIR = "/textfile"
SCRATCH_DIR = "/scratch"
LOCK_DIR = "/tmp/pgbackrest"
HEARTBEAT_DATABASE = "keel_pitr"
HEARTBEAT_INTERVAL_S = 10
"""How often the heartbeat writer marks the time; the drill's resolution."""
DRILL_LOOKBACK_S = 86400
"""The drill's target is a random second of this last stretch (from the oldest backup on)."""
SCRIPT_NAMES = ("pitr-common.sh", "pitr-backup.sh", "pitr-restore.sh", "pitr-drill.sh", "pitr-heartbeat.sh")
BACKUP_TYPES = ("full", "diff")

_STANZA = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
_SAFE = re.compile(r"^[A-Za-z0-9._/-]*$")
_HOST = re.compile(r"^[A-Za-z0-9.-]+$")


@dataclass(frozen=True)
class Repository:
    """Where the archive lives: an S3 bucket and a path, from the backup repository's endpoint."""

    host: str
    port: int | None
    bucket: str
    region: str
    path: str
    uri_style: str = "path"
    """``path``: https://endpoint/bucket/key, which every S3-compatible store answers (Hetzner's and
    MinIO's too); ``host`` (bucket.endpoint) is only needed by stores that refuse path style."""

    def __post_init__(self) -> None:
        if not _HOST.match(self.host):
            raise ValueError(f"repository host {self.host!r}: expected a DNS name or an address")
        for value in (self.bucket, self.region, self.path):
            if not _SAFE.match(value):
                raise ValueError(f"{value!r}: expected letters, digits, dots, dashes, underscores and slashes")


@dataclass(frozen=True)
class PitrSpec:
    """One archived store: what its archive, jobs and drill need to know."""

    store: str
    """Store name, also the pgBackRest stanza."""
    repository: Repository
    database: str
    user: str
    archive_timeout_s: int = 60
    recovery_window_days: int = 14
    full_schedule: str = "0 2 * * 0"
    diff_schedule: str = "0 2 * * 1-6"
    drill_schedule: str = "30 5 * * *"
    rpo_target_s: int = 60
    rto_target_s: int = 900
    host: str = SOCKET_DIR
    """Where the heartbeat writer reaches the store: the shared socket directory (tests pass an address)."""
    port: int = 5432
    max_connections: int = 100
    """The store's: a restored copy must allow at least as many as the server it came from."""

    def __post_init__(self) -> None:
        if not _STANZA.match(self.store):
            raise ValueError(f"store {self.store!r}: expected lower-case letters, digits and dashes")
        for value in (self.database, self.user):
            if not re.match(r"^[a-z][a-z0-9_-]{0,62}$", value):
                raise ValueError(f"{value!r}: expected a lower-case PostgreSQL name")

    @property
    def stanza(self) -> str:
        return self.store


def repository(cfg: StackConfig, stack_name: str) -> Repository:
    """The archive's place: the backup repository's endpoint and bucket, under backup/pitr/path."""
    repo = cfg.backup.repository
    if repo is None:
        raise ValueError("backup/repository: is required for point-in-time recovery")
    endpoint = repo.endpoint if "://" in repo.endpoint else f"https://{repo.endpoint}"
    parts = urlsplit(endpoint)
    path = cfg.backup.pitr.path or f"{cfg.name_prefix}/{stack_name}/pitr"
    return Repository(
        host=parts.hostname or "", port=parts.port, bucket=repo.bucket, region=repo.region, path="/" + path.strip("/")
    )


def pitr_specs(cfg: StackConfig, *, stack_name: str) -> dict[str, PitrSpec]:
    """Store name -> PitrSpec, for every store whose WAL is archived."""
    pitr = cfg.backup.pitr
    specs = {}
    for name, store in sorted(cfg.pitr_stores().items()):
        specs[name] = PitrSpec(
            store=name,
            repository=repository(cfg, stack_name),
            database=store.database,
            user=SUPERUSER,
            archive_timeout_s=pitr.archive_timeout_s,
            recovery_window_days=pitr.recovery_window_days,
            full_schedule=pitr.full_schedule,
            diff_schedule=pitr.diff_schedule,
            drill_schedule=pitr.drill_schedule,
            rpo_target_s=pitr.targets.rpo_s,
            rto_target_s=pitr.targets.rto_s,
            max_connections=store.max_connections,
        )
    return specs


def archive_settings(spec: PitrSpec) -> dict[str, str]:
    """The postgresql.conf settings that archive every WAL segment (values already quoted)."""
    command = f"pgbackrest --stanza={spec.stanza} archive-push %p"
    return {
        "archive_mode": "on",
        "archive_command": "'" + command.replace("'", "''") + "'",
        "archive_timeout": f"{spec.archive_timeout_s}s",
    }


def render_postgresql_conf(text: str, spec: PitrSpec | None) -> str:
    """The store's postgresql.conf, with WAL archiving when it is archived."""
    if spec is None:
        return text
    lines = [f"{key} = {value}" for key, value in archive_settings(spec).items()]
    return (
        text + "\n# ---- WAL archiving for point-in-time recovery (render/pitr.py): archive_timeout bounds the\n"
        "# writes an archive can miss, archive-push writes to the archive and never deletes.\n"
        + "\n".join(lines)
        + "\n"
    )


def render_pgbackrest_conf(spec: PitrSpec) -> str:
    """pgbackrest.conf without secrets (they come from SECRETS_FILE, a swarm secret)."""
    return render_template(
        "pitr/pgbackrest.conf.j2", spec=spec, repo=spec.repository, data_dir=DATA_DIR, socket_dir=SOCKET_DIR,
        lock_dir=LOCK_DIR,
    )  # fmt: skip


def render_secrets_conf(*, access_key: str, secret_key: str, cipher_pass: str) -> str:
    """The secret half of pgBackRest's configuration (an include file; never on a command line)."""
    values = {"repo1-s3-key": access_key, "repo1-s3-key-secret": secret_key, "repo1-cipher-pass": cipher_pass}
    lines = ["[global]"]
    for key, value in values.items():
        value = value.strip()
        if "\n" in value or "\r" in value or not value:
            # One line per option: a value with a line break would become options of its own.
            raise ValueError(f"{key}: the secret is empty or spans lines")
        lines.append(f"{key}={value}")
    return "\n".join(lines) + "\n"


def render_scripts(spec: PitrSpec) -> dict[str, str]:
    """Every script of the store's jobs, file name -> text (they source pitr-common.sh)."""
    values = {
        "spec": spec,
        "q": shlex.quote,
        "scripts_dir": SCRIPTS_DIR,
        "textfile_dir": TEXTFILE_DIR,
        "scratch_dir": SCRATCH_DIR,
        "data_dir": DATA_DIR,
        "heartbeat_database": HEARTBEAT_DATABASE,
        "heartbeat_interval_s": HEARTBEAT_INTERVAL_S,
        "lookback_s": DRILL_LOOKBACK_S,
        "full_interval_s": schedule_interval_seconds(spec.full_schedule),
        "diff_interval_s": schedule_interval_seconds(spec.diff_schedule),
        "drill_interval_s": schedule_interval_seconds(spec.drill_schedule),
    }
    return {name: render_template(f"pitr/{name}.j2", **values) for name in SCRIPT_NAMES}


def render_expire_conf(spec: PitrSpec) -> str:
    """What a scheduled workflow needs to expire the archive: the repository and retention, no
    server (expire reads and deletes in the repository only); the keys come from its environment
    (PGBACKREST_REPO1_S3_KEY, PGBACKREST_REPO1_S3_KEY_SECRET, PGBACKREST_REPO1_CIPHER_PASS)."""
    return render_template("pitr/expire.conf.j2", spec=spec, repo=spec.repository, lock_dir=LOCK_DIR)


def heartbeat_health_command(max_age_s: int = 6 * HEARTBEAT_INTERVAL_S) -> list[str]:
    """The heartbeat writer is healthy while its last successful insert is recent."""
    return ["CMD-SHELL", f"[ $(($(date +%s) - $(cat /tmp/keel-heartbeat 2>/dev/null || echo 0))) -lt {max_age_s} ]"]


def metrics_file(store: str, job: str) -> str:
    """The node-exporter textfile a job of a store writes (one per job: they never overwrite each other)."""
    return f"keel_pitr_{store}_{job}.prom"
