"""Building blocks every swarm service shares, so each component declares them the same way."""

from __future__ import annotations

import base64
from collections.abc import Sequence

import pulumi
import pulumi_docker as docker

from config.models import HealthCheck, Logging, Resources

MIB = 1024 * 1024
ROLE_LABEL = "keel.role"
# For images built FROM scratch, which cannot run a probe: liveness comes from Prometheus.
HEALTH_LABEL = "keel.health"
HEALTH_BY_PROMETHEUS = "prometheus-target"
# For the scheduled backup jobs: run-to-completion tasks, watched by the backup-age alerts.
HEALTH_BY_BACKUP_FRESHNESS = "backup-freshness"
# The node that holds the data volume: stores and the proxy (which publishes host ports) stay there.
ON_MANAGER = "node.role==manager"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def secret_data(value: pulumi.Input[str]) -> pulumi.Output[str]:
    """docker.Secret wants base64; the result stays a Pulumi secret."""
    return pulumi.Output.secret(pulumi.Output.from_input(value).apply(b64))


def labels(role: str, service: str) -> list[docker.ServiceLabelArgs]:
    return [
        docker.ServiceLabelArgs(label=ROLE_LABEL, value=role),
        docker.ServiceLabelArgs(label="keel.service", value=service),
    ]


def log_driver(logging: Logging) -> docker.ServiceTaskSpecLogDriverArgs:
    return docker.ServiceTaskSpecLogDriverArgs(
        name="json-file", options={"max-size": logging.max_size, "max-file": str(logging.max_file)}
    )


def resources(spec: Resources) -> docker.ServiceTaskSpecResourcesArgs:
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


def healthcheck(
    tests: Sequence[str], *, interval_s: int = 30, timeout_s: int = 10, start_period_s: int = 30, retries: int = 3
) -> docker.ServiceTaskSpecContainerSpecHealthcheckArgs:
    return docker.ServiceTaskSpecContainerSpecHealthcheckArgs(
        tests=list(tests),
        interval=f"{interval_s}s",
        timeout=f"{timeout_s}s",
        start_period=f"{start_period_s}s",
        retries=retries,
    )


def http_probe(port: int, path: str) -> list[str]:
    """An HTTP health probe run inside the container: wget (busybox, alpine) or curl, whichever exists."""
    url = f"http://127.0.0.1:{port}{path}"
    return [
        "CMD-SHELL",
        f"wget -q -O /dev/null '{url}' 2>/dev/null || curl -fsS -o /dev/null '{url}' || exit 1",
    ]


def check(spec: HealthCheck, port: int | None) -> docker.ServiceTaskSpecContainerSpecHealthcheckArgs:
    if spec.command is not None:
        tests = ["CMD", *spec.command]
    else:
        assert spec.http_path is not None and port is not None  # guaranteed by the config model
        tests = http_probe(port, spec.http_path)
    return healthcheck(
        tests,
        interval_s=spec.interval_s,
        timeout_s=spec.timeout_s,
        start_period_s=spec.start_period_s,
        retries=spec.retries,
    )


def file_config(
    config: docker.ServiceConfig, path: str, mode: int = 0o444
) -> docker.ServiceTaskSpecContainerSpecConfigArgs:
    """Mount a swarm config as the file `path` inside the task."""
    return docker.ServiceTaskSpecContainerSpecConfigArgs(
        config_id=config.id, config_name=config.name, file_name=path, file_mode=mode
    )


def restart_policy(max_attempts: int = 0) -> docker.ServiceTaskSpecRestartPolicyArgs:
    # "any", not "on-failure": swarmkit does not restart a task that exited 0, and a graceful stop
    # exits 0 (Postgres on SIGINT, Redis on SIGTERM, the proxy's watcher), so after a daemon
    # restart such a service would stay down. Run-to-completion jobs set their own policy.
    # delay and window are explicit: left unset, the provider reports a perpetual diff.
    return docker.ServiceTaskSpecRestartPolicyArgs(
        condition="any", delay="5s", window="120s", max_attempts=max_attempts
    )


def networks(*network_ids: pulumi.Input[str]) -> list[docker.ServiceTaskSpecNetworksAdvancedArgs]:
    # By id: a network named by its name makes the provider replace the service on every run
    # (and `name` is deprecated in pulumi-docker 5).
    return [docker.ServiceTaskSpecNetworksAdvancedArgs(id=network_id) for network_id in network_ids]
