"""The PostgreSQL store kind: the official image tuned from its memory limit (server.py), the
community postgres_exporter, and pg_dump / pg_dumpall streamed into restic."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from config.base import image_major_version
from render.dashboards import Query, dashboard, panel
from stores.base import (
    AlertRule,
    Backup,
    BackupTarget,
    ConfigFile,
    ContainerPlan,
    Credentials,
    Exporter,
    ExporterContainer,
    JobTools,
    KeyProblem,
    Login,
    Password,
    Probe,
    SecretFile,
    Setup,
    StoreKind,
    Tmpfs,
    VolumeAccess,
)
from stores.postgres import server
from stores.postgres.model import PostgresSpec

TEMPLATES = server.TEMPLATES
DATA_DIR = "/var/lib/postgresql/data"
PASSWORD_FILE = "/run/secrets/postgres-password"
EXPORTER_PORT = 9187
EXPORTER_MB = 32
DEFAULT_IMAGE = str(PostgresSpec.model_fields["image"].default)
_HIT = "sum by (job) (rate(pg_stat_database_blks_hit[5m]))"


@dataclass(frozen=True, kw_only=True)
class PostgresTarget(BackupTarget):
    """A PostgreSQL store reached over the data network."""

    kind = "postgres"
    host: str
    database: str
    user: str = server.BACKUP_ROLE
    """The role the job logs in as: the store's backup role (pg_read_all_data), not the app's."""
    port: int = server.PORT

    def volume_access(self) -> VolumeAccess:
        return "none"


class PostgresKind(StoreKind[PostgresSpec]):
    name = "postgres"
    spec_type = PostgresSpec
    summary = "PostgreSQL (official image), tuned from its memory limit"

    def credentials(self, spec: PostgresSpec) -> Credentials:
        active, *others = spec.logins
        user = spec.login_role(active)

        def url(host: str, password: str) -> str:
            return f"postgresql://{user}:{quote(password, safe='')}@{host}:{server.PORT}/{spec.database}"

        def login(slot: str) -> Login:
            return Login(
                user=spec.login_role(slot),
                secret=spec.password_secret if slot == "owner" else None,
                resource=_password_resource(slot),
            )

        return Password(
            secret=login(active).secret,
            url=url,
            resource=_password_resource(active),
            standby=tuple(login(slot) for slot in others),
            password_alone=None
            if active == "owner"
            else f"logins [{', '.join(spec.logins)}] has the apps log in as {user}, a user the password does not name",
        )

    def clients(self, spec: PostgresSpec) -> dict[str, str]:
        return server.CLIENT_ROLES

    def mountable(self) -> bool:
        return False

    def images(self, spec: PostgresSpec) -> dict[str, str]:
        return {"image": spec.image}

    def problems(self, spec: PostgresSpec) -> list[KeyProblem]:
        return []

    def data_volume(self, spec: PostgresSpec) -> bool:
        return True

    def container(self, name: str, spec: PostgresSpec) -> ContainerPlan:
        tuning = server.postgres_tuning(spec.resources.memory_mb, spec.max_connections)
        return ContainerPlan(
            image=spec.image,
            args=tuple(server.postgres_command()),
            data_dir=DATA_DIR,
            env={
                "POSTGRES_DB": spec.database,
                # The bootstrap superuser; the app's role (spec.user) is created by the roles step.
                "POSTGRES_USER": server.ADMIN_ROLE,
                "POSTGRES_PASSWORD_FILE": PASSWORD_FILE,
                # A subdirectory: the volume's root may hold lost+found, which initdb refuses.
                "PGDATA": f"{DATA_DIR}/pgdata",
            },
            config_files=(ConfigFile("postgresql.conf", server.render_postgresql_conf(spec), server.CONFIG_PATH),),
            # The superuser's password, read by the entrypoint at initdb; the file exists only inside
            # this task. The apps' password is the app role's, set by the roles step.
            secret_files=(SecretFile(PASSWORD_FILE, part="admin-password", generated=True),),
            tmpfs=(Tmpfs("/dev/shm", tuning.shm_size_mb), Tmpfs("/var/run/postgresql", 16), Tmpfs("/tmp", 64)),
            health=Probe(tuple(server.postgres_health_command(spec)), start_period_s=60),
            resources=spec.resources,
            logging=spec.logging,
            stop_signal="SIGINT",  # PostgreSQL's "fast" shutdown: clean, without waiting for clients
            stop_grace_s=60,
            # The image's user from the start: the entrypoint then neither chowns nor switches users,
            # so no capability is needed (docker-library/postgres docker-entrypoint.sh).
            user="postgres",
            setup=Setup(
                part="roles",
                script=server.roles_script,
                stdin=lambda password, clients: server.roles_sql(
                    spec, {spec.login_role(spec.logins[0]): password, **clients}
                ),
            ),
        )

    def exporter(self) -> Exporter[PostgresSpec]:
        return Exporter(
            image_key="postgres_exporter_image",
            default_image="quay.io/prometheuscommunity/postgres-exporter:v0.16.0",
            image_doc="The community postgres_exporter, one per PostgreSQL store.",
            port=EXPORTER_PORT,
            memory_mb=EXPORTER_MB,
            health_path="/",
            container=exporter_container,
            dashboards=(_dashboard(),),
            alert_rules=(
                AlertRule(
                    "DatabaseDown",
                    "pg_up == 0",
                    "PostgreSQL behind {{ $labels.job }} does not answer its exporter",
                    comment="The exporter answers (`up` stays 1) while the database behind it does not.",
                ),
            ),
        )

    def backup(self) -> Backup[PostgresSpec]:
        return Backup(
            target=lambda name, spec, host: PostgresTarget(name=name, host=host, database=spec.database),
            templates=TEMPLATES,
            functions="backup/backup-functions.sh.j2",
            calls="backup/backup-calls.sh.j2",
            drill_functions="backup/drill-functions.sh.j2",
            drill_calls="backup/drill-calls.sh.j2",
            common=None,
            restore=("restore-postgres.sh",),
            tool_defaults={
                "PG_DUMP": "pg_dump",
                "PG_DUMPALL": "pg_dumpall",
                "PG_RESTORE": "pg_restore",
                "PSQL": "psql",
            },
            tools=job_tools,
        )


def _password_resource(login: str) -> str:
    """The owner's generated password keeps the resource name it always had; a and b have their own."""
    return "password" if login == "owner" else f"password-{login}"


def exporter_container(spec: PostgresSpec, host: str, password_file: str | None, user: str | None) -> ExporterContainer:
    """postgres_exporter's connection as the store's exporter role (pg_monitor: statistics, no
    table), the password read from a swarm secret file."""
    env = {
        "DATA_SOURCE_URI": f"{host}:{server.PORT}/{spec.database}?sslmode=disable",
        "DATA_SOURCE_USER": user or spec.user,
    }
    if password_file is not None:
        env["DATA_SOURCE_PASS_FILE"] = password_file
    return ExporterContainer(env=env)


def job_tools(specs: list[PostgresSpec]) -> JobTools:
    """The job image is built FROM the newest PostgreSQL image of the stack: its pg_dump can dump
    every older server (and the default image's when the stack has none)."""
    images = [spec.image for spec in specs]
    newest = max(images, key=lambda image: image_major_version(image) or 0) if images else DEFAULT_IMAGE
    return JobTools(
        build_args={"POSTGRES_IMAGE": newest},
        checks=("pg_dump --version", "pg_dumpall --version", "pg_restore --version", "psql --version"),
    )


def _dashboard() -> dict[str, Any]:
    return dashboard(
        "keel-postgres",
        "PostgreSQL",
        [
            panel("Up", [Query("pg_up", "{{job}}")], "short", kind="stat"),
            panel("Connections", [Query("sum by (job, state) (pg_stat_activity_count)", "{{job}} {{state}}")], "none"),
            panel(
                "Transactions",
                [
                    Query("sum by (job) (rate(pg_stat_database_xact_commit[5m]))", "{{job}} commit"),
                    Query("sum by (job) (rate(pg_stat_database_xact_rollback[5m]))", "{{job}} rollback"),
                ],
                "ops",
            ),
            panel(
                "Cache hit ratio",
                [Query(f"{_HIT} / ({_HIT} + sum by (job) (rate(pg_stat_database_blks_read[5m])))", "{{job}}")],
                "percentunit",
            ),
            panel("Locks", [Query("sum by (job, mode) (pg_locks_count)", "{{job}} {{mode}}")], "short"),
            panel("Database size", [Query("pg_database_size_bytes", "{{job}} {{datname}}")], "bytes"),
        ],
    )
