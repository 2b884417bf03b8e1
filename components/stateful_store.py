"""StatefulStore: one store of any kind (stores/registry.py), declared from what its kind plans.

Every store with data keeps it in a protected docker.Volume (retained when removed from the
code) which, on a Hetzner host, is a directory on the Hetzner Volume (/mnt/data/volumes/...), so
it survives the server's replacement. A store with a container (PostgreSQL, Redis, MariaDB) runs
one task on the data network only, pinned to the manager node (the one that holds the data
volume) and reachable by its short name (`db`, `cache`) through a network alias; what runs in it
(image, args, env, files, mounts, health, stop) is its kind's ``container`` plan.

Least privilege: a store runs with every capability dropped and a read-only root, as its image's
own user when its plan names one (its data directory handed to that user when the volume is
prepared). Each client the kind names (``clients``: the exporter, the backup job, Redis' health
check) has a user and a generated password of its own, with only what it uses; the plan's
``setup`` step (PostgreSQL's roles) runs after the task is healthy.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Protocol

import pulumi
import pulumi_docker as docker
import pulumi_random as random

from components import swarm
from components.host import Host
from components.networks import Networks
from components.pitr import PitrArchive
from config.base import StoreSpec
from config.loader import Stack
from stores import registry
from stores.base import ContainerPlan, Password, SecretFile, SecretUrl

# First start includes initialisation (initdb, the system tables) or an AOF load, plus the health
# start period.
STORE_CONVERGE_TIMEOUT_S = 600
SOCKET_DIR = "/var/run/postgresql"


@dataclass(frozen=True)
class PitrWiring:
    """What a store whose WAL is archived needs from the stack: a way out to S3, and where its
    jobs leave metrics for node-exporter."""

    egress_network: docker.Network
    textfile_dir: str


class StoreLike(Protocol):
    """What other components (BackupJob, ObservabilityStack) read from a StatefulStore."""

    @property
    def spec(self) -> StoreSpec: ...

    @property
    def service_name(self) -> str: ...

    @property
    def volume(self) -> docker.Volume | None: ...

    @property
    def password(self) -> pulumi.Output[str] | None: ...

    @property
    def password_secret(self) -> docker.Secret | None: ...

    @property
    def client_users(self) -> dict[str, str]: ...

    @property
    def client_secrets(self) -> dict[str, docker.Secret]: ...

    @property
    def ready(self) -> list[pulumi.Resource]: ...


class StatefulStore(pulumi.ComponentResource):
    """One store. Outputs: ``service_name`` (also reachable by the store's own name on the
    internal network), ``volume``, ``password`` (a secret, for stores with one),
    ``password_secret`` (the swarm secret holding it), ``url`` (external stores),
    ``connection_url`` (a secret: what an app's ``store-url:<name>`` receives), ``client_users``
    and ``client_secrets`` (each client's own user and password secret, by client, from the kind's
    ``clients``), and ``ready`` (what must be done before a client connects)."""

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
        pitr: PitrWiring | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """``pitr``: given when the stack archives WAL (cfg.pitr_stores()); stores it names get a PitrArchive."""
        super().__init__("keel:index:StatefulStore", name, {}, opts)
        names = stack.config.names
        kind = registry.kind_of(spec)
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
        self._standby: dict[str, pulumi.Output[str]] = {}
        self.ready = []
        self._name = name
        self._child = pulumi.ResourceOptions(parent=self)
        self._host = host
        self.pitr: PitrArchive | None = None
        self._stack = stack
        self._owner: tuple[str, str] | None = None

        credentials = kind.credentials(spec)
        if isinstance(credentials, SecretUrl):
            self.url = stack.secrets[credentials.secret]
            self.connection_url = self.url
        container = kind.container(name, spec)
        if kind.data_volume(spec):
            # On the data disk: the store's data outlives the server (the resource name is the one
            # the volume always had: renaming it would create an empty volume beside the data).
            # Its server runs as the image's own user, if the plan names one: the directory is that user's.
            self._owner = (container.user, container.image) if container is not None and container.user else None
            self.volume = self._generation(getattr(spec, "volume_generation", 0), protect=True)
        restore_volume = None
        # PostgreSQL stores (stores/postgres/model.py) may be restored to a point in time into a new volume.
        if name in stack.config.pitr_stores() or getattr(spec, "restore_to", None) is not None:
            generation = int(getattr(spec, "volume_generation", 0))
            if generation > 0:
                # The volume it ran on before a restore was swapped in: kept, and no longer
                # protected, so the next swap can drop it from the program (not from the disk).
                self._generation(generation - 1, protect=False)
            if getattr(spec, "restore_to", None) is not None:
                restore_volume = self._generation(generation + 1, protect=False)
            if pitr is not None and name in stack.config.pitr_stores():
                self.pitr = PitrArchive(
                    f"{name}-pitr", store=name, spec=spec, stack=stack, host=host,
                    egress_network=pitr.egress_network, internal_network=networks.data,
                    textfile_dir=pitr.textfile_dir, opts=self._child,
                )  # fmt: skip
        if isinstance(credentials, Password):
            self.password = self._password(f"{name}-{credentials.resource}", credentials.secret, stack)
            for login in credentials.standby:
                self._standby[login.user] = self._password(f"{name}-{login.resource}", login.secret, stack)
            self.password_secret = docker.Secret(
                f"{name}-password", docker.SecretArgs(data=swarm.secret_data(self.password)), opts=self._child
            )
            password, url = self.password, credentials.url
            self.connection_url = swarm.as_secret(password.apply(lambda value: url(name, value)))
        for client, client_user in kind.clients(spec).items():
            self._client(client, client_user)
        if container is not None:
            self.service = self._service(container, networks)
            self.ready = [self.service]
            if container.setup is not None:
                self.ready.append(self._setup(container, stack))
        if self.pitr is not None and self.service is not None and self.volume is not None:
            self.pitr.jobs(data_volume=self.volume, store_service=self.service, restore_volume=restore_volume)

        self.register_outputs({"service_name": self.service_name})

    # ------------------------------------------------------------------ parts

    def _generation(self, generation: int, *, protect: bool) -> docker.Volume:
        # On the data disk: the store's data outlives the server (generation 0's resource name is the
        # one the volume always had: renaming it would create an empty volume beside the data).
        return self._host.data_volume(
            f"{self._name}-data" + (f"-g{generation}" if generation else ""),
            volume_name=self._stack.config.names.store_volume(self._name, generation),
            labels={"keel.store": self._name},
            parent=self,
            protect=protect,
            owner=self._owner[0] if self._owner is not None else None,
            image=self._owner[1] if self._owner is not None else None,
        )

    def _password(self, resource_name: str, configured: str | None, stack: Stack) -> pulumi.Output[str]:
        return stack.secrets[configured] if configured else self._generated(resource_name)

    def _generated(self, resource_name: str) -> pulumi.Output[str]:
        generated = random.RandomPassword(
            resource_name, random.RandomPasswordArgs(length=32, special=False), opts=self._child
        )
        return swarm.as_secret(generated.result)

    def _client(self, client: str, user: str) -> None:
        """A generated password, and its swarm secret, for one client of the store."""
        password = self._generated(f"{self._name}-{client}-password")
        self.client_users[client] = user
        self._client_passwords[client] = password
        self.client_secrets[client] = docker.Secret(
            f"{self._name}-{client}-password", docker.SecretArgs(data=swarm.secret_data(password)), opts=self._child
        )

    def _clients_by_user(self) -> pulumi.Output[dict[str, str]]:
        by_user = {self.client_users[client]: value for client, value in self._client_passwords.items()}
        by_user.update(self._standby)
        return pulumi.Output.all(**by_user).apply(dict)

    def _setup(self, plan: ContainerPlan, stack: Stack) -> pulumi.Resource:
        """The plan's setup step, run on the host after the task is healthy; what it reads (e.g.
        PostgreSQL's roles with their password verifiers) arrives on stdin and touches no disk."""
        setup = plan.setup
        assert setup is not None and self.password is not None and self.service is not None
        stdin = pulumi.Output.all(self.password, self._clients_by_user()).apply(
            lambda values: setup.stdin(values[0], dict(values[1]))
        )
        assert self.volume is not None
        return self._host.run(
            f"{self._name}-{setup.part}",
            create=setup.script(self.service_name),
            stdin=swarm.as_secret(stdin),
            # A new data volume (a restore into the next generation) is a server with none of them yet:
            # the step runs again for it, not only when its script or input change.
            triggers=[self.volume.id],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.service]),
        )

    def _configs(self, plan: ContainerPlan) -> list[docker.ServiceTaskSpecContainerSpecConfigArgs]:
        configs = []
        for file in plan.config_files:
            config = docker.ServiceConfig(
                f"{self._name}-{file.part}", docker.ServiceConfigArgs(data=swarm.b64(file.text)), opts=self._child
            )
            configs.append(swarm.file_config(config, file.path))
        return configs

    def _secret_file(self, file: SecretFile, stack_secret: docker.Secret | None) -> docker.Secret:
        """The password's secret, a client's, or the secret of its own a file names (derived or generated)."""
        if file.client is not None:
            return self.client_secrets[file.client]
        if file.part is None:
            assert stack_secret is not None, f"{self._name}: {file.path} names the password of a store without one"
            return stack_secret
        if file.generated:
            value = self._generated(f"{self._name}-{file.part}")
        else:
            assert file.derive is not None and self.password is not None
            derive = file.derive
            value = swarm.as_secret(
                pulumi.Output.all(self.password, self._clients_by_user()).apply(
                    lambda values: derive(values[0], dict(values[1]))
                )
            )
        return docker.Secret(
            f"{self._name}-{file.part}", docker.SecretArgs(data=swarm.secret_data(value)), opts=self._child
        )

    def _service(self, plan: ContainerPlan, networks: Networks) -> docker.Service:
        assert self.volume is not None, f"{self._name}: a store with a container keeps a data volume"
        conf = next((f for f in plan.config_files if f.part == "postgresql.conf"), None)
        parts = self.pitr.store_parts(conf.text) if self.pitr is not None and conf is not None else None
        if parts is not None:
            # Archived: postgresql.conf with archive_command, and the socket directory on a volume the
            # base-backup jobs share (pgBackRest reaches the server through it) instead of a tmpfs.
            plan = dataclasses.replace(
                plan,
                config_files=tuple(
                    dataclasses.replace(f, text=parts.postgresql_conf) if f.part == "postgresql.conf" else f
                    for f in plan.config_files
                ),
                tmpfs=tuple(t for t in plan.tmpfs if t.path != SOCKET_DIR),
            )
        configs = self._configs(plan)
        secrets = [
            swarm.secret_file(self._secret_file(file, self.password_secret), file.path) for file in plan.secret_files
        ]
        extra_mounts: list[docker.ServiceTaskSpecContainerSpecMountArgs] = []
        networks_extra: list[swarm.Attachment] = []
        if parts is not None:
            configs += parts.configs
            secrets += parts.secrets
            extra_mounts.append(parts.socket_mount)
            networks_extra.append(swarm.Attachment(parts.network))
        return swarm.service(
            f"{self._name}-service",
            name=self.service_name,
            role="store",
            part=self._name,
            # Archived: the same official image plus pgBackRest, built on the host.
            image=parts.image if parts is not None else self._host.image(plan.image),
            # `args`, not `command`: swarm's Command replaces the image's ENTRYPOINT, and the official
            # entrypoint is what initialises the data directory, reads the *_FILE secrets and drops root.
            args=plan.args,
            env=plan.env,
            # With the image's user from the start the entrypoint neither chowns nor switches users,
            # so no capability is needed.
            hardening=swarm.Hardening(read_only=True, user=plan.user),
            secrets=secrets,
            configs=configs,
            mounts=[
                swarm.volume_mount(self.volume.name, plan.data_dir),
                *(swarm.tmpfs_mount(tmpfs.path, tmpfs.size_mb) for tmpfs in plan.tmpfs),
                *extra_mounts,
            ],
            health=swarm.Health(
                plan.health.test,
                interval_s=plan.health.interval_s,
                timeout_s=plan.health.timeout_s,
                start_period_s=plan.health.start_period_s,
                retries=plan.health.retries,
            ),
            resources=plan.resources,
            stop_signal=plan.stop_signal,
            stop_grace_s=plan.stop_grace_s,
            logging=plan.logging,
            constraints=[self._host.pin],
            networks=[swarm.Attachment(networks.data.id, aliases=(self._name,)), *networks_extra],
            labels={"keel.wal-archive": "true"} if parts is not None else None,
            # One task owns the data directory: the old one stops before the new one starts.
            # A swarm task counts as running only once its health check passes, so waiting for
            # convergence means apps and migrations that depend on the store find it accepting
            # connections, on the first deploy too.
            rollout=swarm.Rollout(order="stop-first", converge_timeout_s=STORE_CONVERGE_TIMEOUT_S),
            opts=self._child,
        )
