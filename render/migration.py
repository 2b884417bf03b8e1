"""The one-off migration run: the new image, as the app runs, before the rollout.

It runs as a swarm job (``docker service create --mode replicated-job``), not ``docker run``:
swarm gives the task the app's own swarm secrets as files, so no secret value is ever written on
the host (the docker provider cannot declare a job: kreuzwerker/terraform-provider-docker v4.5.0,
resource_docker_service.go, ``mode`` has only ``replicated`` and ``global``; the Docker CLI on the
host can). The task gets exactly what the app's tasks get: user, read-only root, capabilities,
init, memory and CPU limits, tmpfs and volumes, networks, env and secret files. A private image is
pulled beforehand by the docker provider with its own registry credentials (a ``RemoteImage``),
so the host never logs in to a registry, and the job uses that local copy (``--no-resolve-image``;
a digest reference present locally is not pulled again: moby v28.5.2,
daemon/cluster/executor/container/adapter.go, pullImage).

The script waits for the job's one task to complete, prints its log, removes the job and exits
non-zero when the task failed, was rejected or outlived ``timeout_s``, which fails `pulumi up`
before the service changes.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field

POLL_S = 2


@dataclass(frozen=True)
class MigrationJob:
    """Everything the job is created with; names of swarm objects, never secret values."""

    name: str
    """The job's service name (``<prefix>-<app>-migration``)."""
    image: str
    command: tuple[str, ...]
    """The image's CMD for the run (its ENTRYPOINT is kept, as for the service)."""
    networks: tuple[str, ...]
    env: Mapping[str, str]
    secrets: tuple[tuple[str, str], ...] = ()
    """(swarm secret name, file path in the task), as the service mounts them."""
    volumes: tuple[tuple[str, str], ...] = ()
    """(docker volume name, mount path)."""
    tmpfs: tuple[str, ...] = ()
    user: str | None = None
    read_only: bool = True
    cap_add: tuple[str, ...] = ()
    init: bool = True
    memory_mb: int = 256
    reservation_mb: int = 128
    cpus: float | None = None
    cpu_reservation: float | None = None
    constraints: tuple[str, ...] = ()
    log_max_size: str = "10m"
    log_max_file: int = 3
    timeout_s: int = 600
    labels: Mapping[str, str] = field(default_factory=dict)


def create_command(job: MigrationJob) -> list[str]:
    """The ``docker service create`` argument list (unquoted)."""
    args = [
        "docker", "service", "create", "--detach", "--quiet", "--name", job.name,
        "--mode", "replicated-job", "--restart-condition", "none",
        # The image's own HEALTHCHECK means nothing for a run-to-completion task.
        "--no-healthcheck", "--no-resolve-image",
        "--cap-drop", "ALL",
    ]  # fmt: skip
    for capability in job.cap_add:
        args += ["--cap-add", capability]
    if job.read_only:
        args.append("--read-only")
    if job.init:
        args.append("--init")
    if job.user:
        args += ["--user", job.user]
    args += ["--limit-memory", f"{job.memory_mb}m", "--reserve-memory", f"{job.reservation_mb}m"]
    if job.cpus is not None:
        args += ["--limit-cpu", str(job.cpus)]
    if job.cpu_reservation is not None:
        args += ["--reserve-cpu", str(job.cpu_reservation)]
    args += ["--log-driver", "json-file", "--log-opt", f"max-size={job.log_max_size}"]
    args += ["--log-opt", f"max-file={job.log_max_file}"]
    for key, value in sorted(job.labels.items()):
        args += ["--label", f"{key}={value}"]
    for constraint in job.constraints:
        args += ["--constraint", constraint]
    for network in job.networks:
        args += ["--network", network]
    for secret, target in job.secrets:
        args += ["--secret", f"source={secret},target={target},mode=0444"]
    for volume, target in job.volumes:
        args += ["--mount", f"type=volume,source={volume},destination={target}"]
    for target in job.tmpfs:
        args += ["--mount", f"type=tmpfs,destination={target}"]
    for key, value in sorted(job.env.items()):
        args += ["--env", f"{key}={value}"]
    return [*args, job.image, *job.command]


def migration_script(job: MigrationJob) -> str:
    """Runs on the host (the deploy user, Docker CLI at hand): create the job, wait, report, remove."""
    q = shlex.quote
    create = " \\\n  ".join(q(part) for part in create_command(job))
    return f"""#!/bin/sh
# The migration: a swarm job with the app's own user, limits, capabilities, secrets,
# volumes and networks, once, before the rollout; its failure stops the deploy.
set -u
job={q(job.name)}
# A job left by an interrupted deploy has the same name: it goes first.
docker service rm "$job" >/dev/null 2>&1 || true
trap 'docker service rm "$job" >/dev/null 2>&1 || true' EXIT
{create} >/dev/null || exit 1
deadline=$(($(date +%s) + {int(job.timeout_s)}))
state=
while :; do
  state=$(docker service ps --no-trunc --format '{{{{.CurrentState}}}}|{{{{.Error}}}}' "$job" 2>/dev/null | head -n 1)
  case $state in
    Complete*) break ;;
    Failed* | Rejected* | Orphaned* | Remove*) break ;;
  esac
  if [ "$(date +%s)" -ge "$deadline" ]; then
    state="Timeout after {int(job.timeout_s)}s (${{state:-no task}})"
    break
  fi
  sleep {POLL_S}
done
docker service logs --raw "$job" 2>&1 || true
case $state in
  Complete*)
    printf 'migration of %s succeeded\n' {q(job.image)}
    ;;
  *)
    printf 'migration of %s FAILED: %s\n' {q(job.image)} "$state" >&2
    exit 1
    ;;
esac
"""
