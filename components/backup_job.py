"""BackupJob: scheduled, encrypted, deduplicated backups of every store with restic.

What runs: three swarm services from one image (restic and the tools of each store kind the
stack backs up: pg_dump, redis-cli, sqlite3, mariadb-dump...; built on the manager from
``render/templates/backup/image``), each with the rendered scripts (``render.backup``) mounted as
immutable configs:

- ``<prefix>-backup``: ``backup.sh`` on ``backup/schedule``: every store (retention runs elsewhere);
- ``<prefix>-backup-check``: ``restic check`` on ``backup/check_schedule`` (weekly by default);
- ``<prefix>-backup-drill``: the restore drill, on demand only
  (``docker service update --force --replicas 1 <prefix>-backup-drill``).

Scheduling: swarm has no cron, so the jobs are swarm services with zero replicas, labelled
``swarm.cronjob.*``, and crazymax/swarm-cronjob (a kept, swarm-native scheduler; one small
service on the manager reading the Docker API, shared with the ``jobs:`` section:
components/scheduled_job.py ``Scheduler``) scales a job to one replica on its schedule.
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

Networks: the stores' data network has no egress, and restic must reach S3, so the jobs also
join a network of their own with egress (``egress_network``, created when not given); they never
join the edge network the proxy and apps share. The stack's scheduler (components/scheduled_job.py)
reaches the swarm API through a Docker API proxy of its own (components/docker_api.py).
"""

from __future__ import annotations

import hashlib
import shlex
from collections.abc import Mapping
from pathlib import Path

import pulumi
import pulumi_docker as docker

from components import swarm
from components.host import Host
from components.networks import MANAGED_LABEL, NETWORK_ROLE_LABEL, encryption_labels, overlay_options, overlay_opts
from components.scheduled_job import SCHEDULER_OWNED_FIELDS, SPEC_LABEL, cron_labels, fingerprint_of, idle_before_update
from components.stateful_store import StoreLike
from config import capacity
from config.loader import Stack
from config.models import Resources, StackConfig
from render import backup as bk

PROJECT_ROOT = Path(__file__).resolve().parent.parent
IMAGE_CONTEXT = "render/templates/backup/image"
"""Relative to the project directory, where Pulumi runs the program: the provider stores the
build context as given and replaces the image when it changes (``build.context`` is ForceNew), so
an absolute path would rebuild it from every other checkout."""
CACHE_DIR = "/cache"
TEXTFILE_TARGET = bk.TEXTFILE_DIR
SCHEDULER_MB = capacity.SCHEDULER_MB
"""The scheduler's limit, taken from the backup budget (config.capacity.BACKUP_MB)."""
JOB_MB = capacity.BACKUP_MB - SCHEDULER_MB - capacity.DOCKER_API_PROXY_MB
MAX_RUN_S = bk.MAX_RUN_S
JOB_CAPABILITIES = ["CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER"]


class BackupJob(pulumi.ComponentResource):
    """Backups of every store whose kind backs it up (external stores are their provider's).

    Outputs: ``image`` (the job image's name), ``backup_service``, ``check_service`` and
    ``drill_service`` (docker.Service), ``repository`` (the restic URL), ``drill_command`` (how to
    run the restore drill). The scheduler that starts them is the stack's ``Scheduler``.
    """

    image: pulumi.Output[str]
    backup_service: docker.Service
    check_service: docker.Service
    drill_service: docker.Service
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
        host: Host,
        egress_network: docker.Network | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """``stores``: store name -> StatefulStore; ``network``: the data network the stores
        are on; ``textfile_dir``: host directory of node-exporter's textfile collector;
        ``host``: the Host the jobs run on (it also creates ``textfile_dir`` before they mount it);
        ``egress_network``: a network with a way out to S3 (default: one created here)."""
        super().__init__("keel:index:BackupJob", name, {}, opts)
        cfg = stack.config
        names = cfg.names
        self._name = name
        self._child = pulumi.ResourceOptions(parent=self)
        self.spec = bk.backup_spec(cfg, stack_name=stack.name)
        backed_up = {n: stores[n] for n in self.spec.store_names}
        self.repository = self.spec.repository

        image = self._image(cfg)
        self.image = image.name
        if egress_network is None:
            # The stores' data network has no way out, and restic must reach S3.
            egress_network = docker.Network(
                f"{name}-egress",
                docker.NetworkArgs(
                    name=names.backup_egress_network,
                    driver="overlay",
                    attachable=False,
                    options=overlay_options(host.cluster is not None),
                    labels=[
                        docker.NetworkLabelArgs(label=MANAGED_LABEL, value="true"),
                        docker.NetworkLabelArgs(label=NETWORK_ROLE_LABEL, value="egress"),
                        *encryption_labels(host.cluster is not None),
                    ],
                ),
                opts=overlay_opts(self._child),
            )
        depends: list[pulumi.Resource] = [
            host.run(f"{name}-textfile-dir", create=f"mkdir -p {shlex.quote(textfile_dir)}", opts=self._child),
            # The job logs in with its own role or user, which the store's roles step creates.
            *[resource for store in backed_up.values() for resource in store.ready],
        ]
        job = _JobParts(
            image=image.name,
            secrets=self._secrets(stack, backed_up),
            configs=self._scripts(),
            mounts=self._mounts(names.backup_cache_volume, textfile_dir, backed_up, self.spec),
            networks=[network.id, egress_network.id],
            depends_on=depends,
            parent=self,
            host=host,
        )
        backup = cfg.backup
        # A backup run may last until the next one is due (skip-running skips that one anyway).
        backup_deadline_s = self.spec.backup_deadline_s
        self.backup_service = job.service(
            f"{name}-backup", names.backup, "backup.sh", backup.schedule, backup_deadline_s
        )
        self.check_service = job.service(
            f"{name}-check", names.backup_check, "check.sh", backup.check_schedule, MAX_RUN_S
        )
        self.drill_service = job.service(f"{name}-drill", names.backup_drill, "drill.sh", None, MAX_RUN_S)
        self.drill_command = f"docker service update --force --replicas 1 {names.backup_drill}"

        self.register_outputs(
            {
                "image": self.image,
                "repository": self.repository,
                "drill_command": self.drill_command,
                "backup_service": self.backup_service.name,
            }
        )

    # ------------------------------------------------------------------ parts

    def _secrets(
        self, stack: Stack, backed_up: Mapping[str, StoreLike]
    ) -> list[docker.ServiceTaskSpecContainerSpecSecretArgs]:
        """The repository's password and S3 keys, and each store's password file."""
        repository = stack.config.backup.repository
        assert repository is not None  # guaranteed by the config model when backups are enabled
        secrets = [
            self._secret(f"{self._name}-{file_name}", stack.secrets[key], file_name, self._child)
            for key, file_name in (
                (repository.password_secret, "restic-password"),
                (repository.access_key_secret, "s3-access-key"),
                (repository.secret_key_secret, "s3-secret-key"),
            )
        ]
        for store_name, store in backed_up.items():
            # The job's own credentials for the store (its backup role or user) where its kind has
            # them, never the apps'; otherwise the store's password.
            secret = store.client_secrets.get("backup", store.password_secret)
            if secret is not None:
                secrets.append(swarm.secret_file(secret, f"{bk.SECRETS_DIR}/{bk.password_file(store_name)}", 0o400))
        return secrets

    def _scripts(self) -> list[docker.ServiceTaskSpecContainerSpecConfigArgs]:
        """Immutable configs, autonamed so a change rolls the jobs to new ones."""
        configs = []
        for script_name, text in bk.render_backup_scripts(self.spec).items():
            config = docker.ServiceConfig(
                f"{self._name}-{script_name}", docker.ServiceConfigArgs(data=swarm.b64(text)), opts=self._child
            )
            configs.append(swarm.file_config(config, f"{bk.SCRIPTS_DIR}/{script_name}", 0o555))
        return configs

    def _image(self, cfg: StackConfig) -> docker.RemoteImage:
        """The job image (restic and each backed-up kind's tools), built on the host from the pinned
        images."""
        tools = bk.job_tools(cfg)
        build_args = {
            **tools.build_args,
            "RESTIC_IMAGE": cfg.backup.image,
            "APK_PACKAGES": " ".join(tools.apk),
            "APT_PACKAGES": " ".join(tools.apt),
            "TOOL_CHECKS": " && ".join(tools.checks) or "true",
        }
        dockerfile = (PROJECT_ROOT / IMAGE_CONTEXT / "Dockerfile").read_text()
        tag = hashlib.sha256((dockerfile + repr(sorted(build_args.items()))).encode()).hexdigest()[:12]
        return docker.RemoteImage(
            f"{self._name}-image",
            docker.RemoteImageArgs(
                name=cfg.names.backup_image(tag),
                build=docker.RemoteImageBuildArgs(
                    context=IMAGE_CONTEXT,
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
            opts=self._child,
        )

    def _mounts(
        self, cache_volume: str, textfile_dir: str, backed_up: Mapping[str, StoreLike], spec: bk.BackupSpec
    ) -> list[docker.ServiceTaskSpecContainerSpecMountArgs]:
        # restic's cache (index and tree blobs) and the scratch space for copies and drills: on
        # disk, not tmpfs, because a tmpfs is charged to the job's memory limit.
        cache = docker.Volume(
            f"{self._name}-cache",
            docker.VolumeArgs(name=cache_volume, labels=[docker.VolumeLabelArgs(label="keel.role", value="backup")]),
            opts=self._child,
        )
        mounts = [
            swarm.volume_mount(cache.name, CACHE_DIR),
            swarm.bind_mount(textfile_dir, TEXTFILE_TARGET, read_only=False),
            swarm.tmpfs_mount("/tmp", 16),
        ]
        access = {target.name: target.volume_access() for target in spec.targets}
        for store_name, store in backed_up.items():
            if access[store_name] != "none" and store.volume is not None:
                mounts.append(
                    swarm.volume_mount(
                        store.volume.name, f"{bk.STORES_DIR}/{store_name}", read_only=access[store_name] == "read-only"
                    )
                )
        return mounts

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
        host: Host,
    ) -> None:
        self.host = host
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
        # The job's spec, as far as an update would change it: the deploy waits for the job to be
        # idle before it applies a new one (render/jobs.py).
        fingerprint = fingerprint_of(
            self.image,
            *[secret.secret_id for secret in self.secrets],
            *[config.config_id for config in self.configs],
            static=[script, schedule, deadline_s],
        )
        labels: dict[str, pulumi.Input[str]] = {SPEC_LABEL: fingerprint}
        if schedule is not None:
            labels.update(cron_labels(schedule))
        idle = idle_before_update(
            self.host,
            f"{resource_name}-idle",
            service_name=service_name,
            fingerprint=fingerprint,
            scheduled=schedule is not None,
            parent=self.parent,
            depends_on=self.depends_on,
        )
        return swarm.service(
            resource_name,
            name=service_name,
            role="backup",
            part=service_name,
            labels=labels,
            # Zero replicas: the scheduler scales the job to one on its schedule.
            replicas=0,
            image=self.image,
            command=["sh", f"{bk.SCRIPTS_DIR}/{script}"],
            # One hostname for the jobs of a node: restic's locks then tell this node's runs (which
            # take turns, see render.backup) from anyone else's.
            hostname=bk.JOB_HOSTNAME,
            env={
                "RESTIC_CACHE_DIR": f"{CACHE_DIR}/restic",
                "KEEL_WORK_DIR": f"{CACHE_DIR}/work",
                # restic writes its pack files (16 MiB each, one per S3 connection) and check's
                # fresh cache to TMPDIR, sqlite3 its temporary tables: on the disk volume, not in
                # the 16 MiB /tmp tmpfs (ENOSPC on the first dump).
                "TMPDIR": f"{CACHE_DIR}/work",
                "KEEL_SCRIPTS_DIR": bk.SCRIPTS_DIR,
                "TZ": "UTC",
            },
            secrets=self.secrets,
            configs=self.configs,
            mounts=self.mounts,
            # Unhealthy once the run outlives its deadline: swarm then ends a hung run
            # (see render.backup.job_health_command).
            health=swarm.Health(
                tuple(bk.job_health_command(deadline_s)), interval_s=60, timeout_s=10, start_period_s=30
            ),
            # Root, to read volumes owned by other uids, but with only file capabilities.
            hardening=swarm.Hardening(cap_add=tuple(JOB_CAPABILITIES), init=True),
            stop_grace_s=60,
            resources=Resources(memory_mb=JOB_MB),
            # Never restarted: a failed run waits for its next tick (and shows in the metrics).
            restart="none",
            constraints=[self.host.pin],
            networks=[swarm.Attachment(network) for network in self.networks],
            rollout=swarm.JOB,
            # On every run the scheduler sets the replicas to 1 and TaskTemplate.ForceUpdate to the
            # service's version index (crazymax/swarm-cronjob internal/worker): neither is drift to
            # undo, or `preview --refresh --expect-no-changes` fails after the first run.
            opts=pulumi.ResourceOptions(
                parent=self.parent, depends_on=[*self.depends_on, idle], ignore_changes=list(SCHEDULER_OWNED_FIELDS)
            ),
        )
