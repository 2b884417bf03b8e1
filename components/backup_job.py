"""BackupJob: scheduled, encrypted, deduplicated backups of every store with restic.

What runs: three swarm services from one image (restic, pg_dump/pg_restore/psql, sqlite3,
redis-cli; built on the manager from ``render/templates/backup/image``), each with the rendered
scripts (``render.backup``) mounted as immutable configs:

- ``<prefix>-backup``: ``backup.sh`` on ``backup/schedule``: every store, then retention;
- ``<prefix>-backup-check``: ``restic check`` on ``backup/check_schedule`` (weekly by default);
- ``<prefix>-backup-drill``: the restore drill, on demand only
  (``docker service update --force --replicas 1 <prefix>-backup-drill``).

Scheduling: swarm has no cron, so the jobs are swarm services with zero replicas, labelled
``swarm.cronjob.*``, and crazymax/swarm-cronjob (a kept, swarm-native scheduler; one small
service on the manager reading the Docker API) scales a job to one replica on its schedule.
Why this rather than a systemd timer on the host: the jobs stay swarm services, declared,
diffed and replaced by Pulumi like every other service (image, secrets as files, configs,
networks, limits, log rotation), and nothing is installed on the host outside Docker, so the
same program works on the local engine (dev) and on a rebuilt server. ``skip-running`` keeps
two runs of a job from overlapping, and the jobs restart never (``condition: none``): a failed
run waits for the next tick instead of looping.

A missed run is visible: each run writes the node-exporter textfile ``keel_backup.prom``
(``keel_backup_last_success_timestamp_seconds{store}``, ``keel_backup_last_run_success{store}``,
``keel_backup_schedule_interval_seconds``...), and the backup-age alert fires when the last
success is older than twice the schedule's interval, whether the run failed, never started
(scheduler down) or hung.

Networks: the stores' internal network has no egress, and restic must reach S3, so the jobs
also join a network of their own with egress (``egress_network``, created when not given);
they never join the public network the proxy and apps share.
"""

from __future__ import annotations

import hashlib
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

import pulumi
import pulumi_docker as docker

from components import swarm
from components.host import Host
from config import capacity
from config.loader import Stack
from config.models import BackupConfig, PostgresStore, RedisStore, Store, VolumeStore
from render import backup as bk

IMAGE_CONTEXT = Path(__file__).resolve().parent.parent / "render" / "templates" / "backup" / "image"
CACHE_DIR = "/cache"
TEXTFILE_TARGET = bk.TEXTFILE_DIR
SCHEDULER_MB = 32
"""The scheduler's limit, taken from the backup budget (config.capacity.BACKUP_MB)."""
JOB_MB = capacity.BACKUP_MB - SCHEDULER_MB
MAX_RUN_S = bk.MAX_RUN_S
DEFAULT_POSTGRES_IMAGE = PostgresStore(kind="postgres").image
DEFAULT_REDIS_IMAGE = str(RedisStore.model_fields["image"].default)
SCHEDULER_OWNED_FIELDS = ("mode", "taskSpec.forceUpdate")
"""Job service fields swarm-cronjob changes on each run (Pulumi property paths, camelCase)."""
# Volumes holding SQLite files are mounted writable: reading a WAL database creates its -shm.
JOB_CAPABILITIES = ["CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER"]


class StoreLike(Protocol):
    """What BackupJob reads from a StatefulStore."""

    spec: Store
    service_name: str
    volume: docker.Volume | None
    password: pulumi.Output[str] | None
    password_secret: docker.Secret | None


class BackupJob(pulumi.ComponentResource):
    """Backups of every postgres, redis and volume store (external stores are their provider's).

    Outputs: ``image`` (the job image's name), ``backup_service``, ``check_service``,
    ``drill_service`` and ``scheduler_service`` (docker.Service), ``repository`` (the restic URL),
    ``drill_command`` (how to run the restore drill).
    """

    image: pulumi.Output[str]
    backup_service: docker.Service
    check_service: docker.Service
    drill_service: docker.Service
    scheduler_service: docker.Service
    repository: str
    drill_command: str
    spec: bk.BackupSpec

    def __init__(
        self,
        name: str,
        *,
        stack: Stack,
        stores: Mapping[str, StoreLike],
        network: docker.Network,
        textfile_dir: str,
        egress_network: docker.Network | None = None,
        host: Host | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """``stores``: store name -> StatefulStore; ``network``: the internal network the stores
        are on; ``textfile_dir``: host directory of node-exporter's textfile collector;
        ``egress_network``: a network with a way out to S3 (default: one created here);
        ``host``: the Host, used to create ``textfile_dir`` before the jobs mount it (without it the
        directory must exist)."""
        super().__init__("keel:index:BackupJob", name, {}, opts)
        cfg = stack.config
        backup = cfg.backup
        if backup.repository is None:
            raise ValueError("backup/repository: is required when backups are enabled")
        prefix = cfg.name_prefix
        child = pulumi.ResourceOptions(parent=self)
        backed_up = {n: s for n, s in stores.items() if _backed_up(s.spec)}
        self.spec = bk.backup_spec(
            cfg, stack_name=stack.name, service_names={n: s.service_name for n, s in backed_up.items()}
        )
        self.repository = self.spec.repository

        # ---- secrets: the repository's password and S3 keys, and each store's password file
        secrets = [
            self._secret(f"{name}-{file_name}", stack.secrets[key], file_name, child)
            for key, file_name in (
                (backup.repository.password_secret, "restic-password"),
                (backup.repository.access_key_secret, "s3-access-key"),
                (backup.repository.secret_key_secret, "s3-secret-key"),
            )
        ]
        for store_name, store in backed_up.items():
            if store.password_secret is not None:
                secrets.append(
                    docker.ServiceTaskSpecContainerSpecSecretArgs(
                        secret_id=store.password_secret.id,
                        secret_name=store.password_secret.name,
                        file_name=f"{bk.SECRETS_DIR}/{bk.password_file(store_name)}",
                        file_mode=0o400,
                    )
                )

        # ---- scripts: immutable configs, autonamed so a change rolls the jobs to new ones
        configs = []
        for script_name, text in bk.render_backup_scripts(self.spec).items():
            config = docker.ServiceConfig(
                f"{name}-{script_name}", docker.ServiceConfigArgs(data=swarm.b64(text)), opts=child
            )
            configs.append(
                docker.ServiceTaskSpecContainerSpecConfigArgs(
                    config_id=config.id,
                    config_name=config.name,
                    file_name=f"{bk.SCRIPTS_DIR}/{script_name}",
                    file_mode=0o555,
                )
            )

        # ---- the image
        postgres_image = _newest_postgres_image([s.spec for s in backed_up.values()])
        redis_images = [s.spec.image for s in backed_up.values() if isinstance(s.spec, RedisStore)]
        redis_image = max(redis_images, key=_major_version, default=DEFAULT_REDIS_IMAGE)
        build_args = {"POSTGRES_IMAGE": postgres_image, "RESTIC_IMAGE": backup.image, "REDIS_IMAGE": redis_image}
        dockerfile = (IMAGE_CONTEXT / "Dockerfile").read_text()
        tag = hashlib.sha256((dockerfile + repr(sorted(build_args.items()))).encode()).hexdigest()[:12]
        image = docker.RemoteImage(
            f"{name}-image",
            docker.RemoteImageArgs(
                name=f"{prefix}-backup:{tag}",
                build=docker.RemoteImageBuildArgs(
                    context=str(IMAGE_CONTEXT),
                    dockerfile="Dockerfile",
                    build_args=build_args,
                    # The /build API call on the provider's own connection, which streams this
                    # local context over SSH to the host's daemon. The default (buildx) path
                    # resolves a "default builder" through a Docker CLI built beside the provider
                    # ("might not always work", says the provider), and over ssh:// its endpoint
                    # has been wrong in some releases. The Dockerfile needs no buildx feature.
                    use_legacy_builder=True,
                ),
                keep_locally=True,
            ),
            opts=child,
        )
        self.image = image.name

        # ---- networks, scratch space, the textfile directory
        if egress_network is None:
            egress_network = docker.Network(
                f"{name}-egress",
                docker.NetworkArgs(
                    name=f"{prefix}-backup-egress",
                    driver="overlay",
                    attachable=False,
                    labels=[docker.NetworkLabelArgs(label="keel.managed", value="true")],
                ),
                opts=child,
            )
        # restic's cache (index and tree blobs) and the scratch space for copies and drills: on
        # disk, not tmpfs, because a tmpfs is charged to the job's memory limit.
        cache = docker.Volume(
            f"{name}-cache",
            docker.VolumeArgs(
                name=f"{prefix}-backup-cache", labels=[docker.VolumeLabelArgs(label="keel.role", value="backup")]
            ),
            opts=child,
        )
        depends: list[pulumi.Resource] = []
        if host is not None:
            depends.append(host.run(f"{name}-textfile-dir", create=f"mkdir -p {shlex.quote(textfile_dir)}", opts=child))

        mounts = [
            docker.ServiceTaskSpecContainerSpecMountArgs(type="volume", source=cache.name, target=CACHE_DIR),
            docker.ServiceTaskSpecContainerSpecMountArgs(type="bind", source=textfile_dir, target=TEXTFILE_TARGET),
            docker.ServiceTaskSpecContainerSpecMountArgs(
                type="tmpfs",
                target="/tmp",
                tmpfs_options=docker.ServiceTaskSpecContainerSpecMountTmpfsOptionsArgs(size_bytes=16 * swarm.MIB),
            ),
        ]
        for store_name, store in backed_up.items():
            if isinstance(store.spec, (RedisStore, VolumeStore)) and store.volume is not None:
                writable = isinstance(store.spec, VolumeStore) and bool(store.spec.sqlite_files)
                mounts.append(
                    docker.ServiceTaskSpecContainerSpecMountArgs(
                        type="volume",
                        source=store.volume.name,
                        target=f"{bk.STORES_DIR}/{store_name}",
                        read_only=not writable,
                    )
                )

        job = _JobParts(
            image=image.name,
            secrets=secrets,
            configs=configs,
            mounts=mounts,
            networks=[network.id, egress_network.id],
            depends_on=depends,
            parent=self,
        )
        # A backup run may last until the next one is due (skip-running skips that one anyway).
        backup_deadline_s = self.spec.backup_deadline_s
        self.backup_service = job.service(
            f"{name}-backup", f"{prefix}-backup", "backup.sh", backup.schedule, backup_deadline_s
        )
        self.check_service = job.service(
            f"{name}-check", f"{prefix}-backup-check", "check.sh", backup.check_schedule, MAX_RUN_S
        )
        self.drill_service = job.service(f"{name}-drill", f"{prefix}-backup-drill", "drill.sh", None, MAX_RUN_S)
        self.drill_command = f"docker service update --force --replicas 1 {prefix}-backup-drill"
        self.scheduler_service = _scheduler(f"{name}-scheduler", f"{prefix}-cronjob", backup, self)

        self.register_outputs(
            {
                "image": self.image,
                "repository": self.repository,
                "drill_command": self.drill_command,
                "backup_service": self.backup_service.name,
            }
        )

    @staticmethod
    def _secret(
        resource_name: str, value: pulumi.Output[str], file_name: str, child: pulumi.ResourceOptions
    ) -> docker.ServiceTaskSpecContainerSpecSecretArgs:
        secret = docker.Secret(resource_name, docker.SecretArgs(data=swarm.secret_data(value)), opts=child)
        return docker.ServiceTaskSpecContainerSpecSecretArgs(
            secret_id=secret.id, secret_name=secret.name, file_name=f"{bk.SECRETS_DIR}/{file_name}", file_mode=0o400
        )


class _JobParts:
    """What the three job services share; each differs in its script and schedule."""

    def __init__(
        self,
        *,
        image: pulumi.Input[str],
        secrets: list[docker.ServiceTaskSpecContainerSpecSecretArgs],
        configs: list[docker.ServiceTaskSpecContainerSpecConfigArgs],
        mounts: list[docker.ServiceTaskSpecContainerSpecMountArgs],
        networks: list[pulumi.Input[str]],
        depends_on: list[pulumi.Resource],
        parent: pulumi.Resource,
    ) -> None:
        self.image = image
        self.secrets = secrets
        self.configs = configs
        self.mounts = mounts
        self.networks = networks
        self.depends_on = depends_on
        self.parent = parent

    def service(
        self, resource_name: str, service_name: str, script: str, schedule: str | None, deadline_s: int
    ) -> docker.Service:
        labels = swarm.labels("backup", service_name)
        if schedule is not None:
            labels += [
                docker.ServiceLabelArgs(label="swarm.cronjob.enable", value="true"),
                docker.ServiceLabelArgs(label="swarm.cronjob.schedule", value=schedule),
                docker.ServiceLabelArgs(label="swarm.cronjob.skip-running", value="true"),
                docker.ServiceLabelArgs(label="swarm.cronjob.replicas", value="1"),
            ]
        return docker.Service(
            resource_name,
            docker.ServiceArgs(
                name=service_name,
                labels=labels,
                mode=docker.ServiceModeArgs(replicated=docker.ServiceModeReplicatedArgs(replicas=0)),
                task_spec=docker.ServiceTaskSpecArgs(
                    container_spec=docker.ServiceTaskSpecContainerSpecArgs(
                        image=self.image,
                        commands=["sh", f"{bk.SCRIPTS_DIR}/{script}"],
                        # One hostname for the jobs of a node: restic's locks then tell this node's runs
                        # (which take turns, see render.backup) from anyone else's.
                        hostname=bk.JOB_HOSTNAME,
                        env={
                            "RESTIC_CACHE_DIR": f"{CACHE_DIR}/restic",
                            "KEEL_WORK_DIR": f"{CACHE_DIR}/work",
                            # restic writes its pack files (16 MiB each, one per S3 connection) and
                            # check's fresh cache to TMPDIR, sqlite3 its temporary tables: on the
                            # disk volume, not in the 16 MiB /tmp tmpfs (ENOSPC on the first dump).
                            "TMPDIR": f"{CACHE_DIR}/work",
                            "KEEL_SCRIPTS_DIR": bk.SCRIPTS_DIR,
                            "TZ": "UTC",
                        },
                        secrets=self.secrets,
                        configs=self.configs,
                        mounts=self.mounts,
                        # Unhealthy once the run outlives its deadline: swarm then ends a hung run
                        # (see render.backup.job_health_command).
                        healthcheck=swarm.healthcheck(
                            bk.job_health_command(deadline_s), interval_s=60, timeout_s=10, start_period_s=30, retries=3
                        ),
                        read_only=True,
                        # Root, to read volumes owned by other uids, but with only file capabilities.
                        cap_drops=["ALL"],
                        cap_adds=JOB_CAPABILITIES,
                        init=True,
                        stop_grace_period="60s",
                    ),
                    resources=docker.ServiceTaskSpecResourcesArgs(
                        limits=docker.ServiceTaskSpecResourcesLimitsArgs(memory_bytes=JOB_MB * swarm.MIB),
                        reservation=docker.ServiceTaskSpecResourcesReservationArgs(
                            memory_bytes=JOB_MB // 2 * swarm.MIB
                        ),
                    ),
                    # Never restarted: a failed run waits for its next tick (and shows in the metrics).
                    restart_policy=docker.ServiceTaskSpecRestartPolicyArgs(
                        condition="none", delay="5s", window="0s", max_attempts=0
                    ),
                    log_driver=docker.ServiceTaskSpecLogDriverArgs(
                        name="json-file", options={"max-size": "10m", "max-file": "3"}
                    ),
                    placement=docker.ServiceTaskSpecPlacementArgs(constraints=[swarm.ON_MANAGER]),
                    networks_advanceds=swarm.networks(*self.networks),
                ),
            ),
            # On every run the scheduler sets the replicas to 1 and TaskTemplate.ForceUpdate to the
            # service's version index (crazymax/swarm-cronjob internal/worker): neither is drift to
            # undo, or `preview --refresh --expect-no-changes` fails after the first run.
            opts=pulumi.ResourceOptions(
                parent=self.parent, depends_on=self.depends_on, ignore_changes=list(SCHEDULER_OWNED_FIELDS)
            ),
        )


def _scheduler(resource_name: str, service_name: str, backup: BackupConfig, parent: pulumi.Resource) -> docker.Service:
    return docker.Service(
        resource_name,
        docker.ServiceArgs(
            name=service_name,
            labels=swarm.labels("backup", service_name),
            mode=docker.ServiceModeArgs(replicated=docker.ServiceModeReplicatedArgs(replicas=1)),
            task_spec=docker.ServiceTaskSpecArgs(
                container_spec=docker.ServiceTaskSpecContainerSpecArgs(
                    image=backup.scheduler_image,
                    env={"TZ": "UTC", "LOG_LEVEL": "info", "LOG_JSON": "false"},
                    mounts=[
                        docker.ServiceTaskSpecContainerSpecMountArgs(
                            type="bind", source="/var/run/docker.sock", target="/var/run/docker.sock"
                        )
                    ],
                    # Alive and holding the Docker socket it schedules through. Whether it actually
                    # schedules is what the backup-age alert watches.
                    healthcheck=swarm.healthcheck(
                        ["CMD-SHELL", "test -S /var/run/docker.sock && pgrep -x swarm-cronjob >/dev/null"],
                        interval_s=60,
                        timeout_s=10,
                        start_period_s=10,
                        retries=3,
                    ),
                    read_only=True,
                    stop_grace_period="10s",
                ),
                resources=docker.ServiceTaskSpecResourcesArgs(
                    limits=docker.ServiceTaskSpecResourcesLimitsArgs(memory_bytes=SCHEDULER_MB * swarm.MIB),
                    reservation=docker.ServiceTaskSpecResourcesReservationArgs(
                        memory_bytes=SCHEDULER_MB // 2 * swarm.MIB
                    ),
                ),
                restart_policy=swarm.restart_policy(),
                log_driver=docker.ServiceTaskSpecLogDriverArgs(
                    name="json-file", options={"max-size": "10m", "max-file": "3"}
                ),
                # It drives services through the swarm API, which only managers answer.
                placement=docker.ServiceTaskSpecPlacementArgs(constraints=[swarm.ON_MANAGER]),
            ),
        ),
        opts=pulumi.ResourceOptions(parent=parent),
    )


def _backed_up(spec: Store) -> bool:
    if isinstance(spec, (PostgresStore, RedisStore)):
        return True
    return isinstance(spec, VolumeStore) and (spec.backup or bool(spec.sqlite_files))


def _newest_postgres_image(specs: list[Store]) -> str:
    """The postgres image with the highest major version: its pg_dump can dump every older server."""
    images = [s.image for s in specs if isinstance(s, PostgresStore)]
    if not images:
        return DEFAULT_POSTGRES_IMAGE
    return max(images, key=_major_version)


def _major_version(image: str) -> int:
    tag = image.split("@", 1)[0].rsplit("/", 1)[-1].partition(":")[2]
    digits = ""
    for char in tag:
        if not char.isdigit():
            break
        digits += char
    return int(digits) if digits else 0
