"""AppService: one stateless application (or a background worker) as a swarm service with N replicas.

A worker (``kind: worker``) is an app without a port or route: health from a command or a heartbeat
file, role label ``worker``, and a monitor window that covers its stop grace period.

Rollout is swarm's own: start the new task first, wait for its health check through a monitor
window longer than the health start period, roll back automatically on failure; `pulumi up`
waits for convergence (converge_config), so a rolled-back deploy fails the run. An optional
migration runs once with the new image before the service changes.

Hardening by default: non-root user, read-only root with tmpfs for /tmp, all capabilities
dropped (explicit adds only), an init process, json-file log rotation, memory limits.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping

import pulumi
import pulumi_docker as docker

from components import swarm
from components.host import Host
from components.networks import Networks
from components.stateful_store import StatefulStore
from config import crossref
from config.loader import Stack
from config.models import SWARM_STOP_DELAY_S, AppSpec, SecretRef, WorkerSpec
from render.migration import MigrationJob, migration_script

SECRETS_DIR = "/run/secrets"
NUMERIC_USER = re.compile(r"^(\d+)(?::(\d+))?$")


def secret_file_name(env: str) -> str:
    return env.lower()


def monitor_seconds(spec: AppSpec) -> int:
    """How long swarm watches a new task before calling the update a success."""
    if spec.rollout.monitor_s is not None:
        return spec.rollout.monitor_s
    health = spec.health
    # Longer than the start period plus enough intervals for `retries` failures to be seen.
    seen = health.start_period_s + health.interval_s * (health.retries + 1) + health.timeout_s
    if isinstance(spec, WorkerSpec):
        # And, for a worker, than the old task's drain: config.models.WorkerSpec says why.
        return max(seen, spec.stop_grace_period_s + SWARM_STOP_DELAY_S)
    return seen


class AppService(pulumi.ComponentResource):
    """Outputs: ``service_name`` (swarm DNS name; the short name is an alias on each network),
    ``service`` (docker.Service), ``spec`` and ``container`` (what its tasks run with, shared by
    the scheduled jobs that name it)."""

    spec: AppSpec
    service_name: str
    service: docker.Service
    container: swarm.Container

    def __init__(
        self,
        name: str,
        *,
        spec: AppSpec,
        stack: Stack,
        host: Host,
        networks: Networks,
        stores: Mapping[str, StatefulStore],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("keel:index:AppService", name, {}, opts)
        self.spec = spec
        self.service_name = stack.config.names.app(name)
        child = pulumi.ResourceOptions(parent=self)

        values = {env: secret_value(ref, stack, stores) for env, ref in spec.secrets.items()}
        secrets = {
            env: docker.Secret(
                f"{name}-{secret_file_name(env)}", docker.SecretArgs(data=swarm.secret_data(value)), opts=child
            )
            for env, value in values.items()
        }
        env = dict(spec.env)
        if spec.file_env:
            env.update({f"{key}_FILE": f"{SECRETS_DIR}/{secret_file_name(key)}" for key in spec.secrets})

        attached = [networks.by_role(role) for role in spec.networks]
        if spec.metrics_path is not None and networks.monitoring is not None:
            attached.append(networks.monitoring)  # Prometheus scrapes it there
        secret_files = {f"{SECRETS_DIR}/{secret_file_name(env_name)}": secret for env_name, secret in secrets.items()}
        self.container = swarm.Container(
            image=host.image(spec.image),
            env=env,
            secrets=tuple(swarm.secret_file(secret, path) for path, secret in secret_files.items()),
            mounts=tuple(self._mounts(spec, stores)),
            hardening=swarm.Hardening(
                read_only=spec.read_only, cap_add=tuple(spec.cap_add), user=spec.user, init=spec.init
            ),
            networks=tuple(swarm.Attachment(network.id, aliases=(name,)) for network in attached),
            constraints=tuple(_constraints(spec, host.pin)),
            logging=spec.logging,
        )
        # Stores converge only once healthy: on a first deploy the migration and the new tasks
        # find the database accepting connections instead of failing against a booting one.
        # Only the stores it uses (config.crossref.referenced_stores): others do not hold it back;
        # and their roles exist (the app logs in as its own).
        used = crossref.referenced_stores(spec, stack.config)
        store_services: list[pulumi.Resource] = [
            resource for n, store in stores.items() if n in used for resource in store.ready
        ]
        depends: list[pulumi.Resource] = [*store_services, *self._volume_owners(name, spec, stack, host, stores)]
        if spec.migration is not None:
            depends.append(
                self._migration(
                    name, spec, env, secret_files, attached[: len(spec.networks)], stack, host, stores, list(depends)
                )
            )

        self.service = swarm.service(
            f"{name}-service",
            name=self.service_name,
            role="worker" if isinstance(spec, WorkerSpec) else "app",
            part=name,
            command=spec.command,
            args=spec.args,
            health=swarm.app_health(spec.health, spec.port),
            resources=spec.resources,
            replicas=spec.replicas,
            placement=swarm.spread(spec.replicas, host.node_count, constrained=bool(self.container.constraints)),
            stop_signal=spec.stop_signal,
            stop_grace_s=spec.stop_grace_period_s,
            rollout=rollout(spec),
            opts=pulumi.ResourceOptions(parent=self, depends_on=depends),
            **self.container.settings(),
        )
        self.register_outputs({"service_name": self.service_name})

    @staticmethod
    def _mounts(
        spec: AppSpec, stores: Mapping[str, StatefulStore]
    ) -> list[docker.ServiceTaskSpecContainerSpecMountArgs]:
        return store_mounts(spec.volumes, stores) + [swarm.tmpfs_mount(path) for path in spec.tmpfs]

    def _migration(
        self,
        name: str,
        spec: AppSpec,
        env: Mapping[str, str],
        secret_files: Mapping[str, docker.Secret],
        networks: list[docker.Network],
        stack: Stack,
        host: Host,
        stores: Mapping[str, StatefulStore],
        depends: list[pulumi.Resource],
    ) -> pulumi.Resource:
        """The migration as a swarm job with the service's own user, limits, capabilities, secrets,
        volumes and networks (render/migration.py)."""
        assert spec.migration is not None
        migration = spec.migration
        image = host.image(spec.image)
        constraints = _constraints(spec, host.pin)
        if spec.registry is not None:
            # The provider pulls it with its own registry credentials: the host never logs in.
            pulled = docker.RemoteImage(
                f"{name}-image",
                docker.RemoteImageArgs(name=image, keep_locally=True),
                opts=pulumi.ResourceOptions(parent=self),
            )
            depends = [*depends, pulled]
            if host.pin not in constraints:
                constraints.append(host.pin)  # where the provider pulled it
        volumes = [(stores[store].volume, path) for path, store in sorted(spec.volumes.items())]
        names = pulumi.Output.all(
            image=image,
            networks=pulumi.Output.all(*[network.name for network in networks]),
            secrets=pulumi.Output.all(*[secret.name for secret in secret_files.values()]),
            volumes=pulumi.Output.all(*[volume.name for volume, _ in volumes if volume is not None]),
        )
        script = names.apply(
            lambda v: migration_script(
                MigrationJob(
                    name=stack.config.names.migration(name),
                    image=v["image"],
                    command=tuple(migration.command),
                    networks=tuple(v["networks"]),
                    env=dict(env),
                    secrets=tuple(zip(v["secrets"], secret_files, strict=True)),
                    volumes=tuple(zip(v["volumes"], [path for _, path in volumes], strict=True)),
                    tmpfs=tuple(spec.tmpfs),
                    user=spec.user,
                    read_only=spec.read_only,
                    cap_add=tuple(spec.cap_add),
                    init=spec.init,
                    memory_mb=spec.resources.memory_mb,
                    reservation_mb=spec.resources.reservation_mb,
                    cpus=spec.resources.cpus,
                    cpu_reservation=spec.resources.cpu_reservation,
                    constraints=tuple(constraints),
                    log_max_size=spec.logging.max_size,
                    log_max_file=spec.logging.max_file,
                    timeout_s=migration.timeout_s,
                    labels={swarm.ROLE_LABEL: "migration", swarm.SERVICE_LABEL: name},
                )
            )
        )
        return host.run(
            f"{name}-migration", create=script, opts=pulumi.ResourceOptions(parent=self, depends_on=depends)
        )

    def _volume_owners(
        self, name: str, spec: AppSpec, stack: Stack, host: Host, stores: Mapping[str, StatefulStore]
    ) -> list[pulumi.Resource]:
        """Hand each mounted volume to the uid:gid the app runs as.

        A fresh volume belongs to root (dev) or to the deploy user (its directory on the data disk),
        with mode 0755, so an app running as 10001 with every capability dropped could not write
        its SQLite file or uploads there.
        """
        owner = numeric_owner(spec.user)
        if owner is None:
            return []  # the image's own user: whatever the image prepared for it
        steps: list[pulumi.Resource] = []
        for volume_name in sorted(set(spec.volumes.values())):
            volume = stores[volume_name].volume
            assert volume is not None  # guaranteed by config.crossref: apps mount `volume` stores
            script = volume.name.apply(
                lambda v: volume_owner_script(volume=v, owner=owner, image=stack.config.proxy.image)
            )
            steps.append(
                host.run(f"{name}-owns-{volume_name}", create=script, opts=pulumi.ResourceOptions(parent=self))
            )
        return steps


def store_mounts(
    volumes: Mapping[str, str], stores: Mapping[str, StatefulStore]
) -> list[docker.ServiceTaskSpecContainerSpecMountArgs]:
    """Mount path -> `volume` store, as mounts (sorted by path)."""
    mounts = []
    for path, volume_store in sorted(volumes.items()):
        volume = stores[volume_store].volume
        assert volume is not None  # guaranteed by config.crossref: only `volume` stores are mounted
        mounts.append(swarm.volume_mount(volume.name, path))
    return mounts


def numeric_owner(user: str | None) -> str | None:
    """`uid:gid` for a numeric `user` (`uid` alone means gid = uid); None for names or the image's user."""
    match = NUMERIC_USER.match(user or "")
    if match is None:
        return None
    uid, gid = match.group(1), match.group(2)
    return f"{uid}:{gid if gid is not None else uid}"


def volume_owner_script(*, volume: str, owner: str, image: str) -> str:
    """Runs on the host: chown the volume to ``owner`` unless its root already belongs to it.

    ``image`` only provides sh, stat and chown (the proxy's nginx image, already on the host).
    """
    q = shlex.quote
    inner = f'[ "$(stat -c %u:%g /volume)" = {q(owner)} ] || chown -R {q(owner)} /volume'
    return f"""#!/bin/sh
# The volume belongs to the user its app runs as.
set -eu
docker run --rm --network none --user 0:0 --cap-drop ALL --cap-add CHOWN --cap-add DAC_OVERRIDE \\
  -v {q(volume + ":/volume")} --entrypoint sh {q(image)} -c {q(inner)}
echo {q(f"{volume} belongs to {owner}")}
"""


def secret_value(ref: SecretRef, stack: Stack, stores: Mapping[str, StatefulStore]) -> pulumi.Output[str]:
    if ref.source == "secret":
        return stack.secrets[ref.name]
    store = stores[ref.name]
    value = store.connection_url if ref.source == "store-url" else (store.url or store.password)
    assert value is not None  # guaranteed by config.crossref: the store has a password or URL
    return value


def rollout(spec: AppSpec) -> swarm.Rollout:
    """Start-first, rolled back on failure; `pulumi up` waits for it (a rollback fails the run)."""
    monitor = monitor_seconds(spec)
    per_batch = monitor + spec.rollout.delay_s + 60
    batches = max(1, -(-spec.replicas // spec.rollout.parallelism))
    return swarm.Rollout(
        order="start-first",
        parallelism=spec.rollout.parallelism,
        delay_s=spec.rollout.delay_s,
        monitor_s=monitor,
        max_failure_ratio=spec.rollout.max_failure_ratio,
        converge_timeout_s=per_batch * batches + 120,
    )


def _constraints(spec: AppSpec, pin: str) -> list[str]:
    """The app's own constraints, and ``pin`` (the host's node) when it mounts a volume: volumes live
    on the host's data disk."""
    constraints = list(spec.constraints)
    if spec.volumes and pin not in constraints:
        constraints.append(pin)
    return constraints


def network_id(networks: Networks, role: str) -> pulumi.Output[str]:
    """The id of the network an app's or job's config names (edge or data)."""
    return networks.by_role(role).id
