"""StatefulStore: PostgreSQL, Redis, a plain data volume, or an external managed database.

Every store with data keeps it in a protected docker.Volume (retained when removed from the
code) which, on a Hetzner host, is a directory on the Hetzner Volume (/mnt/data/volumes/...), so
it survives the server's replacement. Stores sit on the internal network only, are pinned to
the manager node (the one that holds the data volume) and are reachable by their short name
(`db`, `cache`) through a network alias.
"""

from __future__ import annotations

import shlex
from urllib.parse import quote

import pulumi
import pulumi_docker as docker
import pulumi_random as random

from components import swarm
from components.host import Host
from components.networks import Networks
from config.loader import Stack
from config.models import ExternalStore, PostgresStore, RedisStore, Store, VolumeStore
from render import postgres as pg
from render import redis as rd

POSTGRES_DATA = "/var/lib/postgresql/data"
POSTGRES_PASSWORD_FILE = "/run/secrets/postgres-password"
# First start includes initdb (postgres) or an AOF load (redis) plus the health start period.
STORE_CONVERGE_TIMEOUT = "600s"


class StatefulStore(pulumi.ComponentResource):
    """One store. Outputs: ``service_name`` (also reachable by the store's own name on the
    internal network), ``volume``, ``password`` (a secret, for postgres and redis),
    ``password_secret`` (the swarm secret holding it), ``url`` (external stores) and
    ``connection_url`` (a secret: what an app's ``store-url:<name>`` receives)."""

    spec: Store
    service_name: str
    alias: str
    volume: docker.Volume | None
    service: docker.Service | None
    password: pulumi.Output[str] | None
    password_secret: docker.Secret | None
    url: pulumi.Output[str] | None
    connection_url: pulumi.Output[str] | None

    def __init__(
        self,
        name: str,
        *,
        spec: Store,
        stack: Stack,
        host: Host,
        networks: Networks,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("keel:index:StatefulStore", name, {}, opts)
        prefix = stack.config.name_prefix
        self.spec = spec
        self.alias = name
        self.service_name = f"{prefix}-{name}"
        self.volume = None
        self.service = None
        self.password = None
        self.password_secret = None
        self.url = None
        self.connection_url = None
        self._child = pulumi.ResourceOptions(parent=self)

        if isinstance(spec, ExternalStore):
            self.url = stack.secrets[spec.url_secret]
            self.connection_url = self.url
        else:
            self.volume = self._volume(name, host)
            if isinstance(spec, (PostgresStore, RedisStore)):
                self.password = self._password(name, spec, stack)
                self.password_secret = docker.Secret(
                    f"{name}-password", docker.SecretArgs(data=swarm.secret_data(self.password)), opts=self._child
                )
                self.connection_url = connection_url(spec, name, self.password)
            if isinstance(spec, PostgresStore):
                self.service = self._postgres(name, spec, networks)
            elif isinstance(spec, RedisStore):
                self.service = self._redis(name, spec, networks)

        self.register_outputs({"service_name": self.service_name})

    # ------------------------------------------------------------------ parts

    def _volume(self, name: str, host: Host) -> docker.Volume:
        volume_name = f"{self.service_name}-data"
        protected = pulumi.ResourceOptions(parent=self, protect=True, retain_on_delete=True)
        labels = [docker.VolumeLabelArgs(label="keel.store", value=name)]
        if host.data_dir is None:
            return docker.Volume(f"{name}-data", docker.VolumeArgs(name=volume_name, labels=labels), opts=protected)
        # A bind-backed local volume on the data disk; Docker needs the directory to exist first.
        directory = f"{host.data_dir}/volumes/{volume_name}"
        prepared = host.run(
            f"{name}-data-dir",
            create=f"mkdir -p {shlex.quote(directory)} && echo {shlex.quote(directory)}",
            opts=self._child,
        )
        return docker.Volume(
            f"{name}-data",
            docker.VolumeArgs(
                name=volume_name,
                driver="local",
                driver_opts={"type": "none", "o": "bind", "device": directory},
                labels=labels,
            ),
            opts=pulumi.ResourceOptions.merge(protected, pulumi.ResourceOptions(depends_on=[prepared])),
        )

    def _password(self, name: str, spec: PostgresStore | RedisStore, stack: Stack) -> pulumi.Output[str]:
        if spec.password_secret:
            return stack.secrets[spec.password_secret]
        generated = random.RandomPassword(
            f"{name}-password", random.RandomPasswordArgs(length=32, special=False), opts=self._child
        )
        return pulumi.Output.secret(generated.result)

    def _mount_volume(self, target: str) -> docker.ServiceTaskSpecContainerSpecMountArgs:
        assert self.volume is not None
        return docker.ServiceTaskSpecContainerSpecMountArgs(type="volume", source=self.volume.name, target=target)

    def _service(
        self,
        name: str,
        spec: PostgresStore | RedisStore,
        networks: Networks,
        container: docker.ServiceTaskSpecContainerSpecArgs,
    ) -> docker.Service:
        return docker.Service(
            f"{name}-service",
            docker.ServiceArgs(
                name=self.service_name,
                labels=swarm.labels("store", name),
                mode=docker.ServiceModeArgs(replicated=docker.ServiceModeReplicatedArgs(replicas=1)),
                task_spec=docker.ServiceTaskSpecArgs(
                    container_spec=container,
                    resources=swarm.resources(spec.resources),
                    restart_policy=swarm.restart_policy(),
                    log_driver=swarm.log_driver(spec.logging),
                    placement=docker.ServiceTaskSpecPlacementArgs(constraints=[swarm.ON_MANAGER]),
                    networks_advanceds=[
                        docker.ServiceTaskSpecNetworksAdvancedArgs(id=networks.internal.id, aliases=[name])
                    ],
                ),
                # One task owns the data directory: the old one stops before the new one starts.
                update_config=docker.ServiceUpdateConfigArgs(
                    order="stop-first", failure_action="rollback", monitor="30s", parallelism=1, delay="0s"
                ),
                rollback_config=docker.ServiceRollbackConfigArgs(order="stop-first", monitor="30s", parallelism=1),
                # A swarm task counts as running only once its health check passes, so waiting for
                # convergence means apps and migrations that depend on the store find it accepting
                # connections, on the first deploy too.
                converge_config=docker.ServiceConvergeConfigArgs(delay="5s", timeout=STORE_CONVERGE_TIMEOUT),
            ),
            opts=self._child,
        )

    def _postgres(self, name: str, spec: PostgresStore, networks: Networks) -> docker.Service:
        tuning = pg.postgres_tuning(spec.resources.memory_mb, spec.max_connections)
        conf = docker.ServiceConfig(
            f"{name}-postgresql.conf",
            docker.ServiceConfigArgs(data=swarm.b64(pg.render_postgresql_conf(spec))),
            opts=self._child,
        )
        assert self.password_secret is not None
        container = docker.ServiceTaskSpecContainerSpecArgs(
            image=spec.image,
            # `args`, not `commands`: swarm's Command replaces the image's ENTRYPOINT, and the official
            # entrypoint is what runs initdb, reads POSTGRES_PASSWORD_FILE and drops root.
            args=pg.postgres_command(),
            env={
                "POSTGRES_DB": spec.database,
                "POSTGRES_USER": spec.user,
                "POSTGRES_PASSWORD_FILE": POSTGRES_PASSWORD_FILE,
                # A subdirectory: the volume's root may hold lost+found, which initdb refuses.
                "PGDATA": f"{POSTGRES_DATA}/pgdata",
            },
            secrets=[
                docker.ServiceTaskSpecContainerSpecSecretArgs(
                    secret_id=self.password_secret.id,
                    secret_name=self.password_secret.name,
                    file_name=POSTGRES_PASSWORD_FILE,
                    # Read by the entrypoint after it drops to the postgres user, whose uid differs
                    # between the alpine and debian images; the file exists only inside this task.
                    file_mode=0o444,
                )
            ],
            configs=[swarm.file_config(conf, pg.CONFIG_PATH)],
            mounts=[
                self._mount_volume(POSTGRES_DATA),
                _tmpfs("/dev/shm", tuning.shm_size_mb),
                _tmpfs("/var/run/postgresql", 16),
                _tmpfs("/tmp", 64),
            ],
            healthcheck=swarm.healthcheck(
                pg.postgres_health_command(spec), interval_s=10, timeout_s=5, start_period_s=60, retries=5
            ),
            read_only=True,
            stop_signal="SIGINT",  # PostgreSQL's "fast" shutdown: clean, without waiting for clients
            stop_grace_period="60s",
        )
        return self._service(name, spec, networks, container)

    def _redis(self, name: str, spec: RedisStore, networks: Networks) -> docker.Service:
        assert self.password is not None and self.password_secret is not None
        conf = docker.ServiceConfig(
            f"{name}-redis.conf",
            docker.ServiceConfigArgs(data=swarm.b64(rd.render_redis_conf(spec))),
            opts=self._child,
        )
        acl = docker.Secret(
            f"{name}-acl",
            docker.SecretArgs(data=swarm.secret_data(self.password.apply(rd.redis_acl))),
            opts=self._child,
        )
        container = docker.ServiceTaskSpecContainerSpecArgs(
            image=spec.image,
            # `args` keeps the official entrypoint, which hands /data to the redis user and drops root.
            args=rd.redis_command(),
            secrets=[
                docker.ServiceTaskSpecContainerSpecSecretArgs(
                    secret_id=acl.id, secret_name=acl.name, file_name=rd.ACL_PATH, file_mode=0o444
                ),
                docker.ServiceTaskSpecContainerSpecSecretArgs(
                    secret_id=self.password_secret.id,
                    secret_name=self.password_secret.name,
                    file_name=rd.PASSWORD_PATH,
                    file_mode=0o444,
                ),
            ],
            configs=[swarm.file_config(conf, rd.CONFIG_PATH)],
            mounts=[self._mount_volume(rd.DATA_DIR), _tmpfs("/tmp", 16)],
            healthcheck=swarm.healthcheck(
                rd.redis_health_command(), interval_s=10, timeout_s=5, start_period_s=20, retries=5
            ),
            read_only=True,
            stop_grace_period="30s",
        )
        return self._service(name, spec, networks, container)


def _tmpfs(target: str, size_mb: int) -> docker.ServiceTaskSpecContainerSpecMountArgs:
    return docker.ServiceTaskSpecContainerSpecMountArgs(
        type="tmpfs",
        target=target,
        tmpfs_options=docker.ServiceTaskSpecContainerSpecMountTmpfsOptionsArgs(size_bytes=size_mb * swarm.MIB),
    )


def connection_url(spec: PostgresStore | RedisStore, host: str, password: pulumi.Output[str]) -> pulumi.Output[str]:
    """The URL an app connects with, the password percent-encoded in it; a Pulumi secret."""
    if isinstance(spec, PostgresStore):
        url = password.apply(
            lambda value: f"postgresql://{spec.user}:{quote(value, safe='')}@{host}:{pg.PORT}/{spec.database}"
        )
    else:
        # The ACL file's only user is `default`, so the URL names no user.
        url = password.apply(lambda value: f"redis://:{quote(value, safe='')}@{host}:{rd.PORT}/0")
    return pulumi.Output.secret(url)


def is_stateful(spec: Store) -> bool:
    return isinstance(spec, (PostgresStore, RedisStore, VolumeStore))
