"""StatefulStore: PostgreSQL, Redis, a plain data volume, or an external managed database.

Every store with data keeps it in a protected docker.Volume (retained when removed from the
code) which, on a Hetzner host, is a directory on the Hetzner Volume (/mnt/data/volumes/...), so
it survives the server's replacement. Stores sit on the data network only, are pinned to the
manager node (the one that holds the data volume) and are reachable by their short name (`db`,
`cache`) through a network alias.

Least privilege: each store runs as its image's own user (postgres, redis), never root, with every
capability dropped and a read-only root; its data directory is handed to that user when the volume
is prepared. Each client has its own credentials with only what it uses: the apps (the app's
PostgreSQL role owns its database and nothing more; Redis' default user has no administrative
command), the exporter, the backup job, and Redis' health check (render/postgres.py roles_sql,
render/redis.py redis_acl).
"""

from __future__ import annotations

from urllib.parse import quote

import pulumi
import pulumi_docker as docker
import pulumi_random as random

from components import swarm
from components.host import Host
from components.networks import Networks
from config.loader import Stack
from config.models import ExternalSpec, PostgresSpec, RedisSpec, StoreSpec
from render import postgres as pg
from render import redis as rd

POSTGRES_DATA = "/var/lib/postgresql/data"
POSTGRES_PASSWORD_FILE = "/run/secrets/postgres-password"
"""The superuser's password (POSTGRES_USER, render.postgres.ADMIN_ROLE): read by the entrypoint at initdb."""
IMAGE_USERS = {"postgres": "postgres", "redis": "redis"}
"""The user each official image runs its server as (its uid differs between alpine and debian)."""
# First start includes initdb (postgres) or an AOF load (redis) plus the health start period.
STORE_CONVERGE_TIMEOUT_S = 600


class StatefulStore(pulumi.ComponentResource):
    """One store. Outputs: ``service_name`` (also reachable by the store's own name on the
    internal network), ``volume``, ``password`` (a secret, for postgres and redis),
    ``password_secret`` (the swarm secret holding it), ``url`` (external stores),
    ``connection_url`` (a secret: what an app's ``store-url:<name>`` receives), ``client_users``
    and ``client_secrets`` (the exporter's and the backup job's own user and password secret, by
    client), and ``ready`` (what must be done before a client connects)."""

    spec: StoreSpec
    service_name: str
    volume: docker.Volume | None
    service: docker.Service | None
    password: pulumi.Output[str] | None
    password_secret: docker.Secret | None
    url: pulumi.Output[str] | None
    connection_url: pulumi.Output[str] | None
    client_users: dict[str, str]
    client_secrets: dict[str, docker.Secret]
    ready: list[pulumi.Resource]

    def __init__(
        self,
        name: str,
        *,
        spec: StoreSpec,
        stack: Stack,
        host: Host,
        networks: Networks,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("keel:index:StatefulStore", name, {}, opts)
        names = stack.config.names
        self.spec = spec
        self.service_name = names.store(name)
        self.volume = None
        self.service = None
        self.password = None
        self.password_secret = None
        self.url = None
        self.connection_url = None
        self.client_users = {}
        self.client_secrets = {}
        self._client_passwords: dict[str, pulumi.Output[str]] = {}
        self.ready = []
        self._child = pulumi.ResourceOptions(parent=self)
        self._host = host

        if isinstance(spec, ExternalSpec):
            self.url = stack.secrets[spec.url_secret]
            self.connection_url = self.url
        else:
            # On the data disk: the store's data outlives the server (the resource name is the one
            # the volume always had: renaming it would create an empty volume beside the data).
            server = isinstance(spec, (PostgresSpec, RedisSpec))
            self.volume = host.data_volume(
                f"{name}-data",
                volume_name=names.store_volume(name),
                labels={"keel.store": name},
                parent=self,
                # Its server runs as the image's own user: the data directory is that user's.
                owner=IMAGE_USERS[spec.kind] if server else None,
                image=spec.image if isinstance(spec, (PostgresSpec, RedisSpec)) else None,
            )
            if isinstance(spec, (PostgresSpec, RedisSpec)):
                self.password = self._password(name, spec, stack)
                self.password_secret = docker.Secret(
                    f"{name}-password", docker.SecretArgs(data=swarm.secret_data(self.password)), opts=self._child
                )
                self.connection_url = connection_url(spec, name, self.password)
                users = pg.CLIENT_ROLES if isinstance(spec, PostgresSpec) else rd.CLIENT_USERS
                for client, user in users.items():
                    self._client(name, client, user)
            if isinstance(spec, PostgresSpec):
                self.service = self._postgres(name, spec, networks)
                self.ready = [self.service, self._postgres_roles(name, spec, stack)]
            elif isinstance(spec, RedisSpec):
                self.service = self._redis(name, spec, networks)
                self.ready = [self.service]

        self.register_outputs({"service_name": self.service_name})

    # ------------------------------------------------------------------ parts

    def _password(self, name: str, spec: PostgresSpec | RedisSpec, stack: Stack) -> pulumi.Output[str]:
        if spec.password_secret:
            return stack.secrets[spec.password_secret]
        generated = random.RandomPassword(
            f"{name}-password", random.RandomPasswordArgs(length=32, special=False), opts=self._child
        )
        return pulumi.Output.secret(generated.result)

    def _client(self, name: str, client: str, user: str) -> None:
        """A generated password, and its swarm secret, for one client of the store."""
        generated = random.RandomPassword(
            f"{name}-{client}-password", random.RandomPasswordArgs(length=32, special=False), opts=self._child
        )
        password = swarm.as_secret(generated.result)
        self.client_users[client] = user
        self._client_passwords[client] = password
        self.client_secrets[client] = docker.Secret(
            f"{name}-{client}-password", docker.SecretArgs(data=swarm.secret_data(password)), opts=self._child
        )

    def _service(
        self,
        name: str,
        spec: PostgresSpec | RedisSpec,
        networks: Networks,
        *,
        image: str,
        args: list[str],
        health: swarm.Health,
        secrets: list[docker.ServiceTaskSpecContainerSpecSecretArgs],
        configs: list[docker.ServiceTaskSpecContainerSpecConfigArgs],
        mounts: list[docker.ServiceTaskSpecContainerSpecMountArgs],
        stop_signal: str | None,
        stop_grace_s: int,
        env: dict[str, str] | None = None,
    ) -> docker.Service:
        assert self.volume is not None
        return swarm.service(
            f"{name}-service",
            name=self.service_name,
            role="store",
            part=name,
            image=self._host.image(image),
            # `args`, not `command`: swarm's Command replaces the image's ENTRYPOINT, and the official
            # entrypoint is what initialises the data directory, reads the *_FILE secrets and drops root.
            args=args,
            env=env,
            # The image's user from the start: the entrypoint then neither chowns nor switches users,
            # so no capability is needed (docker-library/postgres and redis docker-entrypoint.sh).
            hardening=swarm.Hardening(read_only=True, user=IMAGE_USERS[spec.kind]),
            secrets=secrets,
            configs=configs,
            mounts=[swarm.volume_mount(self.volume.name, self._data_dir(spec)), *mounts],
            health=health,
            resources=spec.resources,
            stop_signal=stop_signal,
            stop_grace_s=stop_grace_s,
            logging=spec.logging,
            constraints=[swarm.ON_MANAGER],
            networks=[swarm.Attachment(networks.data.id, aliases=(name,))],
            # One task owns the data directory: the old one stops before the new one starts.
            # A swarm task counts as running only once its health check passes, so waiting for
            # convergence means apps and migrations that depend on the store find it accepting
            # connections, on the first deploy too.
            rollout=swarm.Rollout(order="stop-first", converge_timeout_s=STORE_CONVERGE_TIMEOUT_S),
            opts=self._child,
        )

    @staticmethod
    def _data_dir(spec: PostgresSpec | RedisSpec) -> str:
        return POSTGRES_DATA if isinstance(spec, PostgresSpec) else rd.DATA_DIR

    def _postgres(self, name: str, spec: PostgresSpec, networks: Networks) -> docker.Service:
        tuning = pg.postgres_tuning(spec.resources.memory_mb, spec.max_connections)
        conf = docker.ServiceConfig(
            f"{name}-postgresql.conf",
            docker.ServiceConfigArgs(data=swarm.b64(pg.render_postgresql_conf(spec))),
            opts=self._child,
        )
        admin = random.RandomPassword(
            f"{name}-admin-password", random.RandomPasswordArgs(length=32, special=False), opts=self._child
        )
        admin_secret = docker.Secret(
            f"{name}-admin-password",
            docker.SecretArgs(data=swarm.secret_data(swarm.as_secret(admin.result))),
            opts=self._child,
        )
        return self._service(
            name,
            spec,
            networks,
            image=spec.image,
            args=pg.postgres_command(),
            env={
                "POSTGRES_DB": spec.database,
                # The bootstrap superuser; the app's role (spec.user) is created by the roles step.
                "POSTGRES_USER": pg.ADMIN_ROLE,
                "POSTGRES_PASSWORD_FILE": POSTGRES_PASSWORD_FILE,
                # A subdirectory: the volume's root may hold lost+found, which initdb refuses.
                "PGDATA": f"{POSTGRES_DATA}/pgdata",
            },
            # Read by the entrypoint at initdb; the file exists only inside this task.
            secrets=[swarm.secret_file(admin_secret, POSTGRES_PASSWORD_FILE)],
            configs=[swarm.file_config(conf, pg.CONFIG_PATH)],
            mounts=[
                swarm.tmpfs_mount("/dev/shm", tuning.shm_size_mb),
                swarm.tmpfs_mount("/var/run/postgresql", 16),
                swarm.tmpfs_mount("/tmp", 64),
            ],
            health=swarm.Health(
                tuple(pg.postgres_health_command(spec)), interval_s=10, timeout_s=5, start_period_s=60, retries=5
            ),
            stop_signal="SIGINT",  # PostgreSQL's "fast" shutdown: clean, without waiting for clients
            stop_grace_s=60,
        )

    def _postgres_roles(self, name: str, spec: PostgresSpec, stack: Stack) -> pulumi.Resource:
        """Every role but the superuser, set on each change by the superuser inside the running task
        (render/postgres.py roles_sql and roles_script); the SQL, with password verifiers, arrives on
        stdin and touches no disk."""
        assert self.password is not None and self.service is not None
        passwords = {spec.user: self.password}
        passwords.update({self.client_users[c]: p for c, p in self._client_passwords.items()})
        sql = pulumi.Output.all(**passwords).apply(lambda values: pg.roles_sql(spec, dict(values)))
        return self._host.run(
            f"{name}-roles",
            create=pg.roles_script(stack.config.names.store(name)),
            stdin=swarm.as_secret(sql),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.service]),
        )

    def _redis(self, name: str, spec: RedisSpec, networks: Networks) -> docker.Service:
        assert self.password is not None and self.password_secret is not None
        conf = docker.ServiceConfig(
            f"{name}-redis.conf",
            docker.ServiceConfigArgs(data=swarm.b64(rd.render_redis_conf(spec))),
            opts=self._child,
        )
        clients = {self.client_users[c]: p for c, p in self._client_passwords.items()}
        acl_text = pulumi.Output.all(self.password, pulumi.Output.all(**clients)).apply(
            lambda values: rd.redis_acl(values[0], dict(values[1]))
        )
        acl = docker.Secret(
            f"{name}-acl",
            docker.SecretArgs(data=swarm.secret_data(swarm.as_secret(acl_text))),
            opts=self._child,
        )
        return self._service(
            name,
            spec,
            networks,
            image=spec.image,
            # `args` keeps the official entrypoint, which hands /data to the redis user and drops root.
            args=rd.redis_command(),
            secrets=[
                swarm.secret_file(acl, rd.ACL_PATH),
                # Only the health check's own password: the apps' is not this container's business.
                swarm.secret_file(self.client_secrets["health"], rd.HEALTH_PASSWORD_PATH),
            ],
            configs=[swarm.file_config(conf, rd.CONFIG_PATH)],
            mounts=[swarm.tmpfs_mount("/tmp", 16)],
            health=swarm.Health(
                tuple(rd.redis_health_command()), interval_s=10, timeout_s=5, start_period_s=20, retries=5
            ),
            stop_signal=None,
            stop_grace_s=30,
        )


def connection_url(spec: PostgresSpec | RedisSpec, host: str, password: pulumi.Output[str]) -> pulumi.Output[str]:
    """The URL an app connects with, the password percent-encoded in it; a Pulumi secret."""
    if isinstance(spec, PostgresSpec):
        url = password.apply(
            lambda value: f"postgresql://{spec.user}:{quote(value, safe='')}@{host}:{pg.PORT}/{spec.database}"
        )
    else:
        # The apps log in as the ACL file's `default` user, so the URL names no user.
        url = password.apply(lambda value: f"redis://:{quote(value, safe='')}@{host}:{rd.PORT}/0")
    return pulumi.Output.secret(url)
