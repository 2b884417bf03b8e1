"""PitrArchive: point-in-time recovery of one PostgreSQL store with pgBackRest (render/pitr.py).

Declared by StatefulStore for each store of ``cfg.pitr_stores()``, in two steps:

- ``PitrArchive(...)`` before the store's service: the image (the store's own official image plus
  pgBackRest, built on the host), pgbackrest.conf (a swarm config), its secret half (the archive
  key that cannot delete and the cipher passphrase, a swarm secret), the scripts, and the volume
  holding PostgreSQL's socket directory, which the store and the jobs share. ``store_parts()`` is
  what the store's service adds: archive_command runs inside the server's container.
- ``jobs(data_volume, store_service)`` after it: the heartbeat writer (the drill's marker), full
  and differential base backups and the restore drill (scheduled by swarm-cronjob, as the restic
  jobs are), and, while ``restore_to`` is set, the one-off restore into the next volume generation.

The jobs run as root with file capabilities only (they read the store's volume and write the host's
textfile directory) and drop to the postgres user where PostgreSQL insists (pg_ctl).
"""

from __future__ import annotations

import hashlib
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import pulumi_docker as docker

from components import swarm
from components.host import Host
from config import capacity
from config.base import Resources
from config.loader import Stack
from render import backup as bk
from render import jobs, pitr

PROJECT_ROOT = Path(__file__).resolve().parent.parent
IMAGE_CONTEXT = "render/templates/pitr/image"
"""Relative to the project directory (see components/backup_job.py IMAGE_CONTEXT)."""
DATA_MOUNT = "/var/lib/postgresql/data"
"""Where the store's volume is mounted, in the store and in the jobs (pgBackRest checks that
pg1-path is the running server's data_directory)."""
JOB_MB = capacity.PITR_JOB_MB
HEARTBEAT_MB = capacity.PITR_HEARTBEAT_MB
JOB_CAPABILITIES = ("CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "SETUID", "SETGID")
RESTORE_DEADLINE_S = 6 * 3600


@dataclass(frozen=True)
class StoreParts:
    """What the store's own service adds for archiving."""

    image: pulumi.Output[str]
    postgresql_conf: str
    configs: list[docker.ServiceTaskSpecContainerSpecConfigArgs]
    secrets: list[docker.ServiceTaskSpecContainerSpecSecretArgs]
    socket_mount: docker.ServiceTaskSpecContainerSpecMountArgs
    network: pulumi.Output[str]


class PitrArchive(pulumi.ComponentResource):
    """WAL archiving, base backups, heartbeat, drill (and a restore in progress) of one store."""

    image: docker.RemoteImage
    heartbeat_service: docker.Service | None
    backup_services: dict[str, docker.Service]
    drill_service: docker.Service | None
    restore_service: docker.Service | None

    def __init__(
        self,
        name: str,
        *,
        store: str,
        spec: Any,
        stack: Stack,
        host: Host,
        egress_network: docker.Network,
        internal_network: docker.Network,
        textfile_dir: str,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("keel:index:PitrArchive", name, {}, opts)
        cfg = stack.config
        self._names = cfg.names
        self._name = name
        self._store = store
        self._store_spec = spec
        self._host = host
        self._child = pulumi.ResourceOptions(parent=self)
        self._textfile_dir = textfile_dir
        self._internal = internal_network
        self._egress = egress_network
        self.spec = pitr.pitr_specs(cfg, stack_name=stack.name)[store]
        self.heartbeat_service = None
        self.backup_services = {}
        self.drill_service = None
        self.restore_service = None

        build_args = {"POSTGRES_IMAGE": host.image(spec.image)}
        dockerfile = (PROJECT_ROOT / IMAGE_CONTEXT / "Dockerfile").read_text()
        tag = hashlib.sha256((dockerfile + spec.image).encode()).hexdigest()[:12]
        self.image = docker.RemoteImage(
            f"{name}-image",
            docker.RemoteImageArgs(
                name=self._names.pitr_image(store, tag),
                build=docker.RemoteImageBuildArgs(
                    context=IMAGE_CONTEXT, dockerfile="Dockerfile", build_args=build_args, use_legacy_builder=True
                ),
                keep_locally=True,
            ),
            opts=self._child,
        )
        conf = docker.ServiceConfig(
            f"{name}-pgbackrest.conf",
            docker.ServiceConfigArgs(data=swarm.b64(pitr.render_pgbackrest_conf(self.spec))),
            opts=self._child,
        )
        settings = cfg.backup.pitr
        secrets_conf = pulumi.Output.all(
            stack.secrets[settings.access_key_secret],
            stack.secrets[settings.secret_key_secret],
            stack.secrets[settings.cipher_secret],
        ).apply(lambda v: pitr.render_secrets_conf(access_key=v[0], secret_key=v[1], cipher_pass=v[2]))
        secret = docker.Secret(
            f"{name}-pgbackrest-secrets",
            docker.SecretArgs(data=swarm.secret_data(pulumi.Output.secret(secrets_conf))),
            opts=self._child,
        )
        self._config_files = [swarm.file_config(conf, pitr.CONFIG_FILE)]
        self._secret_files = [swarm.secret_file(secret, pitr.SECRETS_FILE, 0o444)]
        self._scripts = []
        for script, text in pitr.render_scripts(self.spec).items():
            config = docker.ServiceConfig(
                f"{name}-{script}", docker.ServiceConfigArgs(data=swarm.b64(text)), opts=self._child
            )
            self._scripts.append(swarm.file_config(config, f"{pitr.SCRIPTS_DIR}/{script}", 0o555))
        socket = docker.Volume(
            f"{name}-socket",
            docker.VolumeArgs(
                name=self._names.store_socket_volume(store),
                labels=[docker.VolumeLabelArgs(label="keel.store", value=store)],
            ),
            opts=self._child,
        )
        self._socket_mount = swarm.volume_mount(socket.name, pitr.SOCKET_DIR)
        self.register_outputs({"image": self.image.name})

    def store_parts(self, postgresql_conf: str) -> StoreParts:
        """``postgresql_conf``: the store kind's own rendering, which archiving extends."""
        return StoreParts(
            image=self.image.name,
            postgresql_conf=pitr.render_postgresql_conf(postgresql_conf, self.spec),
            configs=list(self._config_files),
            secrets=list(self._secret_files),
            socket_mount=self._socket_mount,
            network=self._egress.id,
        )

    def jobs(
        self,
        *,
        data_volume: docker.Volume,
        store_service: docker.Service,
        restore_volume: docker.Volume | None,
    ) -> None:
        """The services beside the store (they need its volume, and start once it runs)."""
        after: list[pulumi.Resource] = [store_service]
        textfile = self._host.run(
            f"{self._name}-textfile-dir", create=f"mkdir -p {shlex.quote(self._textfile_dir)}", opts=self._child
        )
        scratch = docker.Volume(
            f"{self._name}-scratch",
            docker.VolumeArgs(
                name=self._names.pitr_scratch_volume(self._store),
                labels=[docker.VolumeLabelArgs(label="keel.role", value="backup")],
            ),
            opts=self._child,
        )
        mounts = [
            swarm.volume_mount(data_volume.name, DATA_MOUNT, read_only=True),
            self._socket_mount,
            swarm.volume_mount(scratch.name, pitr.SCRATCH_DIR),
            swarm.bind_mount(self._textfile_dir, pitr.TEXTFILE_DIR, read_only=False),
            swarm.tmpfs_mount("/tmp", 64),
        ]
        spec = self.spec
        self.heartbeat_service = swarm.service(
            f"{self._name}-heartbeat",
            name=self._names.pitr_job(self._store, "heartbeat"),
            role="backup",
            part=self._names.pitr_job(self._store, "heartbeat"),
            image=self.image.name,
            command=["sh", f"{pitr.SCRIPTS_DIR}/pitr-heartbeat.sh"],
            env={"TZ": "UTC"},
            configs=self._scripts,
            # The store's socket (it logs in as the superuser the image trusts locally: render/pitr.SUPERUSER);
            # it also writes the archiver's state for the archive-lag alerts.
            mounts=[
                self._socket_mount,
                swarm.tmpfs_mount("/tmp", 1),
                swarm.bind_mount(self._textfile_dir, pitr.TEXTFILE_DIR, read_only=False),
            ],
            health=swarm.Health(tuple(pitr.heartbeat_health_command()), interval_s=30, timeout_s=5, start_period_s=120),
            # The image's root without capabilities: the image makes the socket directory 3777, the socket is 0777.
            hardening=swarm.LOCKED,
            resources=Resources(memory_mb=HEARTBEAT_MB),
            # No network: the socket is its only way to the store, and it needs no other.
            # The socket volume is on the store's node.
            constraints=self._host.volume_constraints,
            rollout=swarm.STOP_FIRST,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[*after, textfile]),
        )
        for kind, schedule in (("full", spec.full_schedule), ("diff", spec.diff_schedule)):
            self.backup_services[kind] = self._job(
                kind, ["pitr-backup.sh", kind], schedule, mounts, bk.MAX_RUN_S, [*after, textfile]
            )
        self.drill_service = self._job(
            "drill", ["pitr-drill.sh"], spec.drill_schedule, mounts, bk.MAX_RUN_S, [*after, textfile]
        )
        target = self._store_spec.restore_target
        if restore_volume is not None and target is not None:
            # Fills the next generation (empty until now) and verifies it; runs once, never again.
            restore_mounts = [
                swarm.volume_mount(restore_volume.name, DATA_MOUNT),
                swarm.tmpfs_mount("/tmp", 64),
            ]
            self.restore_service = self._job(
                "restore",
                ["pitr-restore.sh", f"{DATA_MOUNT}/pgdata", target, "keep-archiving"],
                None,
                restore_mounts,
                RESTORE_DEADLINE_S,
                after,
                replicas=1,
            )

    def _job(
        self,
        job: str,
        script: list[str],
        schedule: str | None,
        mounts: list[docker.ServiceTaskSpecContainerSpecMountArgs],
        deadline_s: int,
        after: list[pulumi.Resource],
        replicas: int = 0,
    ) -> docker.Service:
        service_name = self._names.pitr_job(self._store, job)
        labels = {}
        if schedule is not None:
            labels = {
                "swarm.cronjob.enable": "true",
                "swarm.cronjob.schedule": schedule,
                "swarm.cronjob.skip-running": "true",
                "swarm.cronjob.replicas": "1",
            }
        fingerprint = pulumi.Output.all(
            self.image.name,
            *[s.secret_id for s in self._secret_files],
            *[c.config_id for c in [*self._config_files, *self._scripts]],
        ).apply(lambda ids: hashlib.sha256(repr([*ids, script, schedule, deadline_s]).encode()).hexdigest())
        idle = self._host.run(
            f"{self._name}-{job}-idle",
            create=fingerprint.apply(lambda digest: jobs.idle_script(service=service_name, fingerprint=digest)),
            opts=pulumi.ResourceOptions(parent=self, depends_on=after),
        )
        return swarm.service(
            f"{self._name}-{job}",
            name=service_name,
            role="backup",
            part=service_name,
            labels=labels,
            replicas=replicas,
            image=self.image.name,
            command=["sh", f"{pitr.SCRIPTS_DIR}/{script[0]}", *script[1:]],
            env={"TZ": "UTC", "KEEL_SCRIPTS_DIR": pitr.SCRIPTS_DIR},
            secrets=self._secret_files,
            configs=[*self._config_files, *self._scripts],
            mounts=mounts,
            health=swarm.Health(
                tuple(bk.job_health_command(deadline_s)), interval_s=60, timeout_s=10, start_period_s=30
            ),
            hardening=swarm.Hardening(cap_add=JOB_CAPABILITIES, init=True),
            stop_grace_s=60,
            resources=Resources(memory_mb=JOB_MB),
            restart="none",
            constraints=[self._host.pin],
            networks=[swarm.Attachment(self._egress.id)],
            rollout=swarm.JOB,
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=[*after, idle],
                ignore_changes=["mode", "taskSpec.forceUpdate"] if schedule is not None else None,
            ),
        )
