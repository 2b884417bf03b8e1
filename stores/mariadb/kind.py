"""The MariaDB store kind: the official image (its entrypoint creates the database and the user
from MARIADB_*_FILE secrets, server.py tunes it from its memory limit), prom/mysqld-exporter, and
mariadb-dump --single-transaction streamed into restic like pg_dump."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

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
    Password,
    Probe,
    SecretFile,
    Setup,
    StoreKind,
    Tmpfs,
    VolumeAccess,
)
from stores.mariadb import server
from stores.mariadb.model import MariadbSpec

PASSWORD_FILE = "/run/secrets/mariadb-password"
ROOT_PASSWORD_FILE = server.ROOT_PASSWORD_FILE
EXPORTER_PORT = 9104
EXPORTER_MB = 32
EXPORTER_COLLECTORS_OFF = ("slave_status", "info_schema.innodb_cmp", "info_schema.innodb_cmpmem")
"""Default collectors with nothing to report: there is no replication here (and SHOW REPLICA STATUS
needs REPLICA MONITOR, which the exporter's user lacks: it would fail every scrape), and no
compressed table."""
_READS = "rate(mysql_global_status_innodb_buffer_pool_reads[5m])"
_READ_REQUESTS = "rate(mysql_global_status_innodb_buffer_pool_read_requests[5m])"


@dataclass(frozen=True, kw_only=True)
class MariadbTarget(BackupTarget):
    """A MariaDB store reached over the data network."""

    kind = "mariadb"
    host: str
    database: str
    user: str = server.BACKUP_USER
    """The user the job logs in as: the store's backup user (reads the database, owns the drill's), not the app's."""
    port: int = server.PORT

    def volume_access(self) -> VolumeAccess:
        return "none"


class MariadbKind(StoreKind[MariadbSpec]):
    name = "mariadb"
    spec_type = MariadbSpec
    summary = "MariaDB (official image), tuned from its memory limit"

    def credentials(self, spec: MariadbSpec) -> Credentials:
        def url(host: str, password: str) -> str:
            return f"mysql://{spec.user}:{quote(password, safe='')}@{host}:{server.PORT}/{spec.database}"

        return Password(secret=spec.password_secret, url=url)

    def clients(self, spec: MariadbSpec) -> dict[str, str]:
        return server.CLIENT_USERS

    def mountable(self) -> bool:
        return False

    def images(self, spec: MariadbSpec) -> dict[str, str]:
        return {"image": spec.image}

    def problems(self, spec: MariadbSpec) -> list[KeyProblem]:
        minimum = server.minimum_memory_mb(spec.max_connections)
        if spec.resources.memory_mb >= minimum:
            return []
        return [
            KeyProblem(
                "resources/memory_mb",
                f"found {spec.resources.memory_mb}, which leaves MariaDB less than a "
                f"{server.MIN_BUFFER_POOL_MB} MiB buffer pool beside {spec.max_connections} connections; "
                f"expected at least {minimum} (or fewer max_connections)",
            )
        ]

    def data_volume(self, spec: MariadbSpec) -> bool:
        return True

    def container(self, name: str, spec: MariadbSpec) -> ContainerPlan:
        tuning = server.mariadb_tuning(spec.resources.memory_mb, spec.max_connections)
        return ContainerPlan(
            image=spec.image,
            # The image's CMD, kept as args: the entrypoint initialises the data directory on first
            # start and reads the *_FILE secrets.
            args=("mariadbd",),
            data_dir=server.DATA_DIR,
            env={
                "MARIADB_DATABASE": spec.database,
                "MARIADB_USER": spec.user,
                "MARIADB_PASSWORD_FILE": PASSWORD_FILE,
                "MARIADB_ROOT_PASSWORD_FILE": ROOT_PASSWORD_FILE,
                # root signs in only inside the container (docker exec), never over the network.
                "MARIADB_ROOT_HOST": "localhost",
                # A new image upgrades the system tables on start (after saving them in the data dir).
                "MARIADB_AUTO_UPGRADE": "1",
            },
            config_files=(
                ConfigFile(
                    "keel.cnf",
                    server.render_keel_cnf(spec.resources.memory_mb, spec.max_connections),
                    server.CONFIG_PATH,
                ),
            ),
            secret_files=(
                SecretFile(PASSWORD_FILE),
                SecretFile(ROOT_PASSWORD_FILE, part="root-password", generated=True),
            ),
            tmpfs=(Tmpfs(server.SOCKET_DIR, 16), Tmpfs("/tmp", tuning.tmpdir_mb)),
            health=Probe(tuple(server.health_command()), start_period_s=120),
            resources=spec.resources,
            logging=spec.logging,
            # mariadbd shuts down cleanly on SIGTERM, flushing InnoDB's log and buffer pool dump.
            stop_grace_s=60,
            # The image's user from the start: the entrypoint then neither chowns the data directory
            # nor steps down with gosu, its only uses of root (MariaDB/mariadb-docker 11.4.12,
            # 11.4/docker-entrypoint.sh: docker_create_db_directories and _main check `id -u` = 0),
            # so no capability is needed.
            user="mysql",
            setup=Setup(
                part="users",
                script=server.users_script,
                stdin=lambda password, clients: server.users_sql(spec.database, spec.user, clients),
            ),
        )

    def exporter(self) -> Exporter[MariadbSpec]:
        return Exporter(
            image_key="mariadb_exporter_image",
            default_image="prom/mysqld-exporter:v0.17.2",
            image_doc="prom/mysqld-exporter, one per MariaDB store; its busybox shell reads the password file.",
            port=EXPORTER_PORT,
            memory_mb=EXPORTER_MB,
            health_path="/",
            container=exporter_container,
            dashboards=(_dashboard(),),
            alert_rules=(
                AlertRule(
                    "MariaDBDown", "mysql_up == 0", "MariaDB behind {{ $labels.job }} does not answer its exporter"
                ),
            ),
        )

    def backup(self) -> Backup[MariadbSpec]:
        return Backup(
            target=lambda name, spec, host: MariadbTarget(name=name, host=host, database=spec.database),
            templates=server.TEMPLATES,
            functions="backup/backup-functions.sh.j2",
            calls="backup/backup-calls.sh.j2",
            drill_functions="backup/drill-functions.sh.j2",
            drill_calls="backup/drill-calls.sh.j2",
            common=None,
            restore=("restore-mariadb.sh",),
            tool_defaults={"MARIADB_DUMP": "mariadb-dump", "MARIADB_CLIENT": "mariadb"},
            tools=job_tools,
            values={"drill_suffix": server.DRILL_SUFFIX},
        )


def exporter_container(spec: MariadbSpec, host: str, password_file: str | None, user: str | None) -> ExporterContainer:
    """mysqld_exporter takes its password from MYSQLD_EXPORTER_PASSWORD (or a my.cnf) only, so its
    image's shell exports it from the secret file (mysqld_exporter v0.17.2, config/config.go)."""
    args = (
        f"--mysqld.address={host}:{server.PORT}",
        f"--mysqld.username={user or spec.user}",
        *(f"--no-collect.{collector}" for collector in EXPORTER_COLLECTORS_OFF),
    )
    if password_file is None:
        return ExporterContainer(command=("/bin/mysqld_exporter", *args))
    script = (
        f'MYSQLD_EXPORTER_PASSWORD="$(cat {password_file})" && export MYSQLD_EXPORTER_PASSWORD '
        '&& exec /bin/mysqld_exporter "$@"'
    )
    return ExporterContainer(command=("/bin/sh", "-c", script, "mysqld_exporter", *args))


def job_tools(specs: list[MariadbSpec]) -> JobTools:
    """mariadb-dump and the mariadb client, from the job image's own distribution."""
    if not specs:
        return JobTools()
    return JobTools(
        apk=("mariadb-client",), apt=("mariadb-client",), checks=("mariadb-dump --version", "mariadb --version")
    )


def _dashboard() -> dict[str, Any]:
    return dashboard(
        "keel-mariadb",
        "MariaDB",
        [
            panel("Up", [Query("mysql_up", "{{job}}")], "short", kind="stat"),
            panel(
                "Connections",
                [
                    Query("mysql_global_status_threads_connected", "{{job}} connected"),
                    Query("mysql_global_status_threads_running", "{{job}} running"),
                    Query("mysql_global_variables_max_connections", "{{job}} max"),
                ],
                "short",
            ),
            panel(
                "Queries",
                [
                    Query("rate(mysql_global_status_queries[5m])", "{{job}} queries"),
                    Query("rate(mysql_global_status_slow_queries[5m])", "{{job}} slow"),
                ],
                "ops",
            ),
            panel("Buffer pool hit ratio", [Query(f"1 - {_READS} / ({_READ_REQUESTS} > 0)", "{{job}}")], "percentunit"),
            panel(
                "Buffer pool",
                [
                    Query("mysql_global_status_innodb_buffer_pool_bytes_data", "{{job}} data"),
                    Query("mysql_global_variables_innodb_buffer_pool_size", "{{job}} size"),
                ],
                "bytes",
            ),
            panel(
                "Waits and refusals",
                [
                    Query("rate(mysql_global_status_innodb_row_lock_waits[5m])", "{{job}} row lock waits"),
                    Query("rate(mysql_global_status_aborted_connects[5m])", "{{job}} refused connections"),
                ],
                "ops",
            ),
        ],
    )
