"""The Redis store kind: the official image with AOF and RDB and a bounded memory (server.py),
oliver006/redis_exporter, and its RDB copied into restic after a BGSAVE."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from config.base import image_major_version
from config.errors import show
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
    StoreKind,
    Tmpfs,
    VolumeAccess,
)
from stores.redis import server
from stores.redis.model import RedisSpec

TEMPLATES = server.TEMPLATES
EXPORTER_PORT = 9121
EXPORTER_MB = 24
DEFAULT_IMAGE = str(RedisSpec.model_fields["image"].default)
BGSAVE_TIMEOUT_S = 600
"""How long a backup run waits for Redis' BGSAVE before it counts the store as failed."""
# The rendered redis.conf uses Redis 7 directives (appenddirname: the multi-part AOF of 7.0), which
# Redis 6 refuses at start-up; say so at load time instead of in a crash-looping task.
MIN_MAJOR = 7


@dataclass(frozen=True, kw_only=True)
class RedisTarget(BackupTarget):
    """A Redis store: commands over the network, its RDB file read from its mounted volume."""

    kind = "redis"
    host: str
    port: int = server.PORT
    user: str = server.BACKUP_USER
    """The ACL user the job logs in as (PING, INFO and BGSAVE only)."""

    def volume_access(self) -> VolumeAccess:
        return "read-only"


class RedisKind(StoreKind[RedisSpec]):
    name = "redis"
    spec_type = RedisSpec
    summary = "Redis (official image) with AOF persistence and a bounded memory"

    def credentials(self, spec: RedisSpec) -> Credentials:
        # The apps log in as the ACL file's `default` user, so the URL names no user.
        return Password(
            secret=spec.password_secret,
            url=lambda host, password: f"redis://:{quote(password, safe='')}@{host}:{server.PORT}/0",
        )

    def clients(self, spec: RedisSpec) -> dict[str, str]:
        return server.CLIENT_USERS

    def mountable(self) -> bool:
        return False

    def images(self, spec: RedisSpec) -> dict[str, str]:
        return {"image": spec.image}

    def problems(self, spec: RedisSpec) -> list[KeyProblem]:
        major = image_major_version(spec.image)
        if major is None or major >= MIN_MAJOR:
            return []
        return [
            KeyProblem(
                "image",
                f"{show(spec.image)} is Redis {major}, whose server refuses the redis.conf keel renders "
                f"(multi-part AOF); expected Redis {MIN_MAJOR} or later, which reads the older RDB and AOF "
                "files as they are",
            )
        ]

    def data_volume(self, spec: RedisSpec) -> bool:
        return True

    def container(self, name: str, spec: RedisSpec) -> ContainerPlan:
        return ContainerPlan(
            image=spec.image,
            # `args` keeps the official entrypoint, which hands /data to the redis user and drops root.
            args=tuple(server.redis_command()),
            data_dir=server.DATA_DIR,
            config_files=(ConfigFile("redis.conf", server.render_redis_conf(spec), server.CONFIG_PATH),),
            secret_files=(
                SecretFile(server.ACL_PATH, part="acl", derive=server.redis_acl),
                # Only the health check's own password: the apps' is not this container's business.
                SecretFile(server.HEALTH_PASSWORD_PATH, client="health"),
            ),
            tmpfs=(Tmpfs("/tmp", 16),),
            health=Probe(tuple(server.redis_health_command()), start_period_s=20),
            resources=spec.resources,
            logging=spec.logging,
            stop_grace_s=30,
            # The image's user from the start: the entrypoint then neither chowns nor switches users.
            user="redis",
        )

    def exporter(self) -> Exporter[RedisSpec]:
        return Exporter(
            image_key="redis_exporter_image",
            default_image="oliver006/redis_exporter:v1.67.0-alpine",
            image_doc="The alpine variant: its shell reads the password file and its wget probes health "
            "(scratch has neither).",
            port=EXPORTER_PORT,
            memory_mb=EXPORTER_MB,
            health_path="/health",
            container=exporter_container,
            dashboards=(_dashboard(),),
            alert_rules=(
                AlertRule("RedisDown", "redis_up == 0", "Redis behind {{ $labels.job }} does not answer its exporter"),
            ),
        )

    def backup(self) -> Backup[RedisSpec]:
        return Backup(
            target=lambda name, spec, host: RedisTarget(name=name, host=host),
            templates=TEMPLATES,
            functions="backup/backup-functions.sh.j2",
            calls="backup/backup-calls.sh.j2",
            drill_functions="backup/drill-functions.sh.j2",
            drill_calls="backup/drill-calls.sh.j2",
            common=None,
            restore=("restore-redis.sh",),
            tool_defaults={"REDIS_CLI": "redis-cli", "REDIS_CHECK_RDB": "redis-check-rdb"},
            tools=job_tools,
            values={
                "rdb_filename": server.RDB_FILENAME,
                "aof_file": server.AOF_FILENAME,
                "aof_dir": server.AOF_DIRNAME,
                "bgsave_timeout_s": BGSAVE_TIMEOUT_S,
            },
        )


def exporter_container(spec: RedisSpec, host: str, password_file: str | None, user: str | None) -> ExporterContainer:
    """redis_exporter reads its password from the environment only, so a shell exports it from the file;
    ``user`` is the store's exporter user (``--redis.user``), whose ACL admits only what it reads.

    (``--redis.password-file`` is a JSON map of URIs to passwords, meant for multi-target mode.)
    """
    args = (f"--redis.addr=redis://{host}:{server.PORT}", *([f"--redis.user={user}"] if user else []))
    if password_file is None:
        return ExporterContainer(command=("/redis_exporter", *args))
    script = f'REDIS_PASSWORD="$(cat {password_file})" && export REDIS_PASSWORD && exec /redis_exporter "$@"'
    return ExporterContainer(command=("/bin/sh", "-c", script, "redis_exporter", *args))


def job_tools(specs: list[RedisSpec]) -> JobTools:
    """redis-cli, and redis-check-rdb for the drill, from the newest Redis image of the stack: an
    older redis-check-rdb cannot read a newer RDB format (Redis 7.4 writes 12, Alpine's 7.2 reads 11)."""
    images = [spec.image for spec in specs]
    newest = max(images, key=lambda image: image_major_version(image) or 0) if images else DEFAULT_IMAGE
    return JobTools(build_args={"REDIS_IMAGE": newest}, checks=("redis-cli --version", "redis-check-rdb --version"))


def _dashboard() -> dict[str, Any]:
    return dashboard(
        "keel-redis",
        "Redis",
        [
            panel("Up", [Query("redis_up", "{{job}}")], "short", kind="stat"),
            panel(
                "Memory",
                [Query("redis_memory_used_bytes", "{{job}} used"), Query("redis_memory_max_bytes", "{{job}} max")],
                "bytes",
            ),
            panel("Clients", [Query("redis_connected_clients", "{{job}}")], "short"),
            panel("Commands", [Query("rate(redis_commands_processed_total[5m])", "{{job}}")], "ops"),
            panel(
                "Hit ratio",
                [
                    Query(
                        "rate(redis_keyspace_hits_total[5m]) / (rate(redis_keyspace_hits_total[5m])"
                        " + rate(redis_keyspace_misses_total[5m]))",
                        "{{job}}",
                    )
                ],
                "percentunit",
            ),
            panel("Evicted keys", [Query("rate(redis_evicted_keys_total[5m])", "{{job}}")], "ops"),
        ],
    )
