"""The one way a swarm service is declared here, and the parts every service shares.

``service()`` holds every default a service gets in this project: json-file log rotation, a
restart policy, memory limit and reservation, a health check (or an explicit, labelled
exemption), role labels, explicit update and rollback configuration, networks by id, and
durations written the way the docker provider reads them back. Components say only what
differs (image, command, files, mounts, hardening, rollout order), so the defaults cannot
drift apart between them.
"""

from __future__ import annotations

import base64
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

import pulumi
import pulumi_docker as docker

from config.models import HealthCheck, Logging, Resources, WorkerHealthCheck

MIB = 1024 * 1024
ROLE_LABEL = "keel.role"
SERVICE_LABEL = "keel.service"
# For images built FROM scratch, which cannot run a probe: liveness comes from Prometheus.
HEALTH_LABEL = "keel.health"
HEALTH_BY_PROMETHEUS = "prometheus-target"
# The node that holds the data volume: stores and the proxy (which publishes host ports) stay there.
ON_MANAGER = "node.role==manager"

CREATE_ONLY_FIELDS = ("taskSpec.placement.platforms",)
"""Written by the provider's Create and never by its Update, so never a change to undo.

Create passes QueryRegistry (kreuzwerker/terraform-provider-docker v4.5.0, resource_docker_service_funcs.go),
and the daemon's client then sets placement.platforms from the image's manifest list, over any
platforms the service names (moby v28.5.2 client/service_create.go, resolveContainerSpecImage); the
attribute is Optional, not Computed. Ignored, the state keeps the registry's platforms and an
Update sends them back."""
DEFAULT_CONVERGE_S = 300
RESTART_DELAY_S = 5
RESTART_WINDOW_S = 120
"""How long a restarted task must run before it counts as started (swarm's restart window)."""
DEFAULT_LOGGING = Logging()


def duration(seconds: int) -> str:
    """``seconds`` as the docker provider stores a duration, so what is sent equals what is read back.

    kreuzwerker/terraform-provider-docker v4.5.0, internal/provider/resource_docker_service_structures.go,
    ``shortDur``: Go's ``time.Duration.String()`` with a trailing ``m0s`` and then ``h0m`` trimmed.
    60 -> "1m", 135 -> "2m15s", 3600 -> "1h", 3605 -> "1h0m5s"; no DiffSuppressFunc on any duration.
    """
    if seconds < 0:
        raise ValueError(f"a duration cannot be negative: {seconds}")
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        text = f"{hours}h{minutes}m{secs}s"
    elif minutes:
        text = f"{minutes}m{secs}s"
    else:
        text = f"{secs}s"
    if text.endswith("m0s"):
        text = text[:-2]
    if text.endswith("h0m"):
        text = text[:-2]
    return text


def failure_ratio(ratio: float) -> str:
    """``max_failure_ratio`` as the provider reads it back: ``strconv.FormatFloat(v, 'f', 1, 64)``
    (resource_docker_service_structures.go, flattenServiceUpdateOrRollbackConfig). The config
    allows one decimal only, so nothing is rounded away here."""
    return f"{ratio:.1f}"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def as_secret(value: pulumi.Input[str]) -> pulumi.Output[str]:
    """The value, marked secret whatever its source (Output.secret's stub types it too loosely for mypy)."""
    return cast(pulumi.Output[str], pulumi.Output.secret(cast(Any, value)))


def secret_data(value: pulumi.Input[str]) -> pulumi.Output[str]:
    """docker.Secret wants base64; the result stays a Pulumi secret."""
    return as_secret(pulumi.Output.from_input(value).apply(b64))


# ----------------------------------------------------------------------------- parts


@dataclass(frozen=True)
class Health:
    """A swarm health check: ``test`` is ``("CMD", ...)`` or ``("CMD-SHELL", "...")``."""

    test: tuple[str, ...]
    interval_s: int = 30
    timeout_s: int = 10
    start_period_s: int = 30
    retries: int = 3

    def args(self) -> docker.ServiceTaskSpecContainerSpecHealthcheckArgs:
        return docker.ServiceTaskSpecContainerSpecHealthcheckArgs(
            tests=list(self.test),
            interval=duration(self.interval_s),
            timeout=duration(self.timeout_s),
            start_period=duration(self.start_period_s),
            retries=self.retries,
        )


def http_probe(port: int, path: str) -> tuple[str, ...]:
    """An HTTP probe run inside the container: wget (busybox, alpine) or curl, whichever exists.

    The URL reaches the shell as one single-quoted word (``shlex.quote``); config/ also refuses
    any path that is not plain URL text.
    """
    url = shlex.quote(f"http://127.0.0.1:{port}{path}")
    return ("CMD-SHELL", f"wget -q -O /dev/null {url} 2>/dev/null || curl -fsS -o /dev/null {url} || exit 1")


def heartbeat_probe(path: str, max_age_s: int) -> tuple[str, ...]:
    """Healthy while the file a worker touches is younger than ``max_age_s`` (date and stat, in
    busybox and coreutils alike); a missing file fails the arithmetic, so it is unhealthy too.

    The path reaches the shell as one single-quoted word; config/ also refuses any path that is
    not plain letters, digits, ``._-/``.
    """
    age = f"$(( $(date +%s) - $(stat -c %Y {shlex.quote(path)}) ))"
    return ("CMD-SHELL", f'[ "{age}" -lt {int(max_age_s)} ]')


def app_health(spec: HealthCheck, port: int | None) -> Health:
    if isinstance(spec, WorkerHealthCheck) and spec.heartbeat_file is not None:
        test: tuple[str, ...] = heartbeat_probe(spec.heartbeat_file, spec.heartbeat_max_age_s)
    elif spec.command is not None:
        test = ("CMD", *spec.command)
    else:
        assert spec.http_path is not None and port is not None  # guaranteed by the config model
        test = http_probe(port, spec.http_path)
    return Health(
        test,
        interval_s=spec.interval_s,
        timeout_s=spec.timeout_s,
        start_period_s=spec.start_period_s,
        retries=spec.retries,
    )


@dataclass(frozen=True)
class Rollout:
    """How swarm replaces a service's tasks, and whether `pulumi up` waits for it.

    start-first: the new task runs and passes its health check before the old one stops (apps).
    stop-first: one task owns something (a data directory, a host port): the old one stops first.
    A failed update rolls back by itself; a failed rollback pauses for a human.
    """

    order: Literal["start-first", "stop-first"]
    parallelism: int = 1
    delay_s: int = 0
    monitor_s: int = 30
    max_failure_ratio: float = 0.0
    converge_timeout_s: int | None = DEFAULT_CONVERGE_S
    """`pulumi up` waits (up to this long) for the tasks to run and pass their health checks, and
    fails if the update rolled back; None (run-to-completion jobs only) does not wait. Without it
    a rollback that swarm completes after `up` returns would leave a spec naming secrets and
    configs the same `up` already deleted."""

    def update(self) -> docker.ServiceUpdateConfigArgs:
        return docker.ServiceUpdateConfigArgs(
            order=self.order,
            failure_action="rollback",
            parallelism=self.parallelism,
            delay=duration(self.delay_s),
            monitor=duration(self.monitor_s),
            max_failure_ratio=failure_ratio(self.max_failure_ratio),
        )

    def rollback(self) -> docker.ServiceRollbackConfigArgs:
        return docker.ServiceRollbackConfigArgs(
            order=self.order,
            failure_action="pause",
            parallelism=self.parallelism,
            delay=duration(0),
            monitor=duration(self.monitor_s),
            max_failure_ratio=failure_ratio(self.max_failure_ratio),
        )

    def converge(self) -> docker.ServiceConvergeConfigArgs | None:
        if self.converge_timeout_s is None:
            return None
        return docker.ServiceConvergeConfigArgs(delay=duration(5), timeout=duration(self.converge_timeout_s))


START_FIRST = Rollout(order="start-first")
STOP_FIRST = Rollout(order="stop-first")
JOB = Rollout(order="stop-first", converge_timeout_s=None)
"""Run-to-completion jobs (zero replicas until their scheduler starts them): nothing to wait for."""


@dataclass(frozen=True)
class Attachment:
    """A network the service joins (by id: a name makes the provider replace it on every run),
    and the extra DNS names it answers to there."""

    network_id: pulumi.Input[str]
    aliases: tuple[str, ...] = ()

    def args(self) -> docker.ServiceTaskSpecNetworksAdvancedArgs:
        return docker.ServiceTaskSpecNetworksAdvancedArgs(id=self.network_id, aliases=list(self.aliases) or None)


def volume_mount(
    source: pulumi.Input[str], target: str, *, read_only: bool = False
) -> docker.ServiceTaskSpecContainerSpecMountArgs:
    return docker.ServiceTaskSpecContainerSpecMountArgs(
        type="volume", source=source, target=target, read_only=read_only
    )


def bind_mount(
    source: str, target: str, *, read_only: bool = True, propagation: str | None = None
) -> docker.ServiceTaskSpecContainerSpecMountArgs:
    return docker.ServiceTaskSpecContainerSpecMountArgs(
        type="bind",
        source=source,
        target=target,
        read_only=read_only,
        bind_options=docker.ServiceTaskSpecContainerSpecMountBindOptionsArgs(propagation=propagation)
        if propagation
        else None,
    )


def tmpfs_mount(target: str, size_mb: int | None = None) -> docker.ServiceTaskSpecContainerSpecMountArgs:
    """A tmpfs (Docker mounts it noexec, nosuid, nodev); its pages count against the memory limit."""
    return docker.ServiceTaskSpecContainerSpecMountArgs(
        type="tmpfs",
        target=target,
        tmpfs_options=docker.ServiceTaskSpecContainerSpecMountTmpfsOptionsArgs(size_bytes=size_mb * MIB)
        if size_mb is not None
        else None,
    )


def secret_file(secret: docker.Secret, path: str, mode: int = 0o444) -> docker.ServiceTaskSpecContainerSpecSecretArgs:
    """Mount a swarm secret as the file ``path`` inside the task."""
    return docker.ServiceTaskSpecContainerSpecSecretArgs(
        secret_id=secret.id, secret_name=secret.name, file_name=path, file_mode=mode
    )


def file_config(
    config: docker.ServiceConfig, path: str, mode: int = 0o444
) -> docker.ServiceTaskSpecContainerSpecConfigArgs:
    """Mount a swarm config as the file ``path`` inside the task."""
    return docker.ServiceTaskSpecContainerSpecConfigArgs(
        config_id=config.id, config_name=config.name, file_name=path, file_mode=mode
    )


def log_driver(logging: Logging) -> docker.ServiceTaskSpecLogDriverArgs:
    return docker.ServiceTaskSpecLogDriverArgs(
        name="json-file", options={"max-size": logging.max_size, "max-file": str(logging.max_file)}
    )


def task_resources(spec: Resources) -> docker.ServiceTaskSpecResourcesArgs:
    return docker.ServiceTaskSpecResourcesArgs(
        limits=docker.ServiceTaskSpecResourcesLimitsArgs(
            memory_bytes=spec.memory_mb * MIB,
            nano_cpus=int(spec.cpus * 1e9) if spec.cpus else None,
        ),
        reservation=docker.ServiceTaskSpecResourcesReservationArgs(
            memory_bytes=spec.reservation_mb * MIB,
            nano_cpus=int(spec.cpu_reservation * 1e9) if spec.cpu_reservation else None,
        ),
    )


def restart_policy(condition: Literal["any", "none"]) -> docker.ServiceTaskSpecRestartPolicyArgs:
    """``any``: a long-running task comes back after any exit, a clean one included (a graceful
    stop exits 0, and swarm does not restart ``on-failure`` tasks that exited 0: after a daemon
    restart they would stay down). ``none``: run-to-completion jobs, started by their scheduler."""
    # delay and window are explicit: left unset, the provider reports a perpetual diff.
    return docker.ServiceTaskSpecRestartPolicyArgs(
        condition=condition,
        delay=duration(RESTART_DELAY_S),
        window=duration(RESTART_WINDOW_S if condition == "any" else 0),
        max_attempts=0,
    )


@dataclass(frozen=True)
class Hardening:
    """What a container may do beyond running its process."""

    read_only: bool = True
    """A read-only root filesystem (writable paths are volumes or tmpfs)."""
    cap_drop_all: bool = True
    cap_add: tuple[str, ...] = ()
    user: str | None = None
    """uid:gid; None keeps the image's own USER."""
    init: bool | None = None
    """Docker's tiny init as PID 1 (reaps zombies, forwards signals); None leaves the daemon's default."""


LOCKED = Hardening()
"""Read-only root, no capabilities, the image's user."""


@dataclass(frozen=True)
class Spread:
    """How a replicated service's tasks spread over the nodes (only when there are several)."""

    prefs: tuple[str, ...]
    """Placement preferences: ``node.id`` spreads the tasks evenly over the nodes that qualify
    (kreuzwerker v4.5.0 resource_docker_service_structures.go stringSetToPlacementPrefs: each string
    is a SpreadDescriptor)."""
    max_replicas_per_node: int | None


def spread(replicas: int | None, nodes: int, constrained: bool) -> Spread | None:
    """Spread over ``nodes`` nodes; at most ceil(replicas / (nodes - 1)) tasks per node, so losing any
    one node still leaves room for every task and a start-first rollout always finds a free slot.

    None on one node, for global services, and for one replica (nothing to spread). A service with
    constraints gets the preference only: how many nodes qualify is the constraints' business, and a
    per-node maximum computed over all nodes could leave tasks unscheduled.
    """
    if nodes < 2 or replicas is None or replicas < 2:
        return None
    if constrained:
        return Spread(prefs=("node.id",), max_replicas_per_node=None)
    return Spread(prefs=("node.id",), max_replicas_per_node=-(-replicas // (nodes - 1)))


@dataclass(frozen=True)
class Container:
    """What an app's tasks run with besides their command, health, resources and rollout: its image,
    env, secrets, mounts, hardening, networks, placement and logging.

    An app's service, a worker's, and every scheduled job that names the app are declared from one
    (``service(..., **container.settings())``), so none copies a flag by hand.
    """

    image: pulumi.Input[str]
    env: Mapping[str, str]
    secrets: tuple[docker.ServiceTaskSpecContainerSpecSecretArgs, ...] = ()
    mounts: tuple[docker.ServiceTaskSpecContainerSpecMountArgs, ...] = ()
    hardening: Hardening = LOCKED
    networks: tuple[Attachment, ...] = ()
    constraints: tuple[str, ...] = ()
    logging: Logging = DEFAULT_LOGGING

    def settings(self) -> dict[str, Any]:
        """Keyword arguments of ``service()``."""
        return {
            "image": self.image,
            "env": self.env,
            "secrets": self.secrets,
            "mounts": self.mounts,
            "hardening": self.hardening,
            "networks": self.networks,
            "constraints": self.constraints,
            "logging": self.logging,
        }


def service(
    resource_name: str,
    *,
    name: str,
    role: str,
    part: str,
    image: pulumi.Input[str],
    resources: Resources,
    health: Health | None,
    rollout: Rollout,
    hardening: Hardening = LOCKED,
    replicas: int | None = 1,
    command: Sequence[str] | None = None,
    args: Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
    secrets: Sequence[docker.ServiceTaskSpecContainerSpecSecretArgs] = (),
    configs: Sequence[docker.ServiceTaskSpecContainerSpecConfigArgs] = (),
    mounts: Sequence[docker.ServiceTaskSpecContainerSpecMountArgs] = (),
    networks: Sequence[Attachment] = (),
    constraints: Sequence[str] = (),
    placement: Spread | None = None,
    ports: Sequence[docker.ServiceEndpointSpecPortArgs] = (),
    stop_signal: str | None = None,
    stop_grace_s: int = 30,
    hostname: str | None = None,
    restart: Literal["any", "none"] = "any",
    logging: Logging = DEFAULT_LOGGING,
    labels: Mapping[str, pulumi.Input[str]] | None = None,
    opts: pulumi.ResourceOptions | None = None,
) -> docker.Service:
    """Declare one swarm service with every house default.

    ``name``: the swarm service (and DNS) name; ``role``/``part``: its ``keel.role`` and
    ``keel.service`` labels; ``replicas`` None runs one task on every node (global mode);
    ``health`` None disables the image's check, allowed only for images without a shell, and
    labels the service so the policy pack and TargetDown know Prometheus watches it instead.
    ``command`` replaces the image's ENTRYPOINT, ``args`` its CMD.
    """
    all_labels: dict[str, pulumi.Input[str]] = {ROLE_LABEL: role, SERVICE_LABEL: part, **(labels or {})}
    if health is None:
        all_labels[HEALTH_LABEL] = HEALTH_BY_PROMETHEUS
    container = docker.ServiceTaskSpecContainerSpecArgs(
        image=image,
        commands=list(command) if command is not None else None,
        args=list(args) if args is not None else None,
        env=dict(env) if env else None,
        user=hardening.user,
        read_only=hardening.read_only,
        cap_drops=["ALL"] if hardening.cap_drop_all else None,
        cap_adds=list(hardening.cap_add) or None,
        init=hardening.init,
        secrets=list(secrets) or None,
        configs=list(configs) or None,
        mounts=list(mounts) or None,
        healthcheck=health.args()
        if health is not None
        else docker.ServiceTaskSpecContainerSpecHealthcheckArgs(tests=["NONE"]),
        stop_signal=stop_signal,
        stop_grace_period=duration(stop_grace_s),
        hostname=hostname,
    )
    mode = (
        docker.ServiceModeArgs(global_=True)
        if replicas is None
        else docker.ServiceModeArgs(replicated=docker.ServiceModeReplicatedArgs(replicas=replicas))
    )
    return docker.Service(
        resource_name,
        docker.ServiceArgs(
            name=name,
            labels=[docker.ServiceLabelArgs(label=key, value=value) for key, value in all_labels.items()],
            mode=mode,
            task_spec=docker.ServiceTaskSpecArgs(
                container_spec=container,
                resources=task_resources(resources),
                restart_policy=restart_policy(restart),
                log_driver=log_driver(logging),
                placement=docker.ServiceTaskSpecPlacementArgs(
                    constraints=list(constraints) or None,
                    prefs=list(placement.prefs) if placement else None,
                    max_replicas=placement.max_replicas_per_node if placement else None,
                )
                if constraints or placement
                else None,
                networks_advanceds=[network.args() for network in networks] or None,
            ),
            endpoint_spec=docker.ServiceEndpointSpecArgs(mode="vip", ports=list(ports) or None),
            update_config=rollout.update(),
            rollback_config=rollout.rollback(),
            converge_config=rollout.converge(),
        ),
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(ignore_changes=list(CREATE_ONLY_FIELDS))),
    )
