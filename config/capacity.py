"""The memory budget: what every task may use at most, against what the host has.

The sum of memory limits (every replica, every store, the proxy, the observability and backup
tasks) plus the headroom of the largest start-first rollout must fit in MAX_SHARE of the
host's RAM. Components read their fixed limits from here, so the budget and the deployed
limits cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass

from config.models import AppSpec, StackConfig, WorkerSpec
from stores import registry

MAX_SHARE = 0.90

# Limits of the tasks the observability and backup components deploy (MiB); a store's own limit and
# its exporter's come from its kind (stores/<kind>/kind.py).
# Sized so the reference topology (topology/webapp.yaml) with monitoring and backups fits a
# 4 GB host (cx23): Prometheus holds a few thousand series (cAdvisor runs with its costly
# collectors off), Grafana's state is rebuilt from provisioning, and every exporter is one
# small Go binary. The ContainerMemoryHigh alert warns at 80% of each of these.
OBSERVABILITY_LIMITS_MB = {
    "prometheus": 256,
    "grafana": 160,
    "alertmanager": 32,
    "node-exporter": 32,
    "cadvisor": 96,
    "nginx-exporter": 16,
    "nginxlog-exporter": 32,
    "blackbox-exporter": 24,
    # cAdvisor's Docker API proxy (HAProxy, components/docker_api.py).
    "docker-api": 24,
}
DOCKER_API_PROXY_MB = 24
"""A Docker API proxy: HAProxy for one client (a few connections, maxconn 64), a few MiB resident."""
BACKUP_MB = 256
"""The backup job and the stack's scheduler with its Docker API proxy, when backups are on."""
PITR_JOB_MB = 128
"""A point-in-time job's limit (pgBackRest with process-max=2, or the drill's PostgreSQL with 32 MiB of
shared_buffers); one runs at a time per store (their schedules do not overlap by default)."""
PITR_HEARTBEAT_MB = 16
"""The heartbeat writer (a shell loop and psql). archive-push itself runs in the store, within its limit."""
SCHEDULER_MB = 32
"""swarm-cronjob's limit; part of BACKUP_MB when backups are on, a line of its own otherwise (beside
its Docker API proxy's)."""


@dataclass(frozen=True)
class BudgetLine:
    name: str
    memory_mb: int


@dataclass(frozen=True)
class Budget:
    lines: tuple[BudgetLine, ...]
    rollout_headroom_mb: int
    host_memory_mb: int

    @property
    def total_mb(self) -> int:
        return sum(line.memory_mb for line in self.lines) + self.rollout_headroom_mb

    @property
    def allowed_mb(self) -> int:
        return int(self.host_memory_mb * MAX_SHARE)

    @property
    def share(self) -> float:
        return self.total_mb / self.host_memory_mb

    def limits(self) -> dict[str, int]:
        """Each budget line's memory limit (MiB) by name."""
        return {line.name: line.memory_mb for line in self.lines}

    def as_output(self) -> dict[str, object]:
        return {
            "host_memory_mb": self.host_memory_mb,
            "limits_mb": self.limits(),
            "rollout_headroom_mb": self.rollout_headroom_mb,
            "total_mb": self.total_mb,
            "allowed_mb": self.allowed_mb,
            "used_percent": round(self.share * 100, 1),
        }


def budget(cfg: StackConfig) -> Budget:
    lines = [BudgetLine("proxy", cfg.proxy.resources.memory_mb)]
    if cfg.proxy.tls.mode == "acme":
        lines.append(BudgetLine("acme", cfg.proxy.tls.acme_resources.memory_mb))
    headroom = 0
    for name, service in cfg.services.items():
        if isinstance(service, AppSpec):
            lines.append(BudgetLine(name, service.resources.memory_mb * service.replicas))
            if service.replicas:
                # start-first runs `parallelism` new tasks beside the old ones during a rollout. Old
                # workers keep finishing their jobs (up to their grace period) while the next batches
                # start, so all of them may still run beside their replacements.
                extra = service.replicas if isinstance(service, WorkerSpec) else service.rollout.parallelism
                headroom = max(headroom, service.resources.memory_mb * extra)
        else:
            container = registry.kind_of(service).container(name, service)
            if container is not None:
                lines.append(BudgetLine(name, container.resources.memory_mb))
    if cfg.observability.enabled:
        for part, limit in OBSERVABILITY_LIMITS_MB.items():
            lines.append(BudgetLine(part, limit))
        for name, store in cfg.stores().items():
            exporter = registry.kind_of(store).exporter()
            if exporter is not None:
                lines.append(BudgetLine(f"{name}-exporter", exporter.memory_mb))
    if cfg.backup.enabled:
        lines.append(BudgetLine("backup", BACKUP_MB))
    elif cfg.jobs:
        lines.append(BudgetLine("scheduler", SCHEDULER_MB))
        lines.append(BudgetLine("scheduler-docker-api", DOCKER_API_PROXY_MB))
    for name in cfg.pitr_stores():
        lines.append(BudgetLine(f"{name}-pitr", PITR_JOB_MB + PITR_HEARTBEAT_MB))
    # Runs of different jobs may overlap; one job never overlaps itself.
    for name, job in cfg.jobs.items():
        lines.append(BudgetLine(f"job-{name}", job.resources.memory_mb))
    return Budget(tuple(lines), headroom, cfg.host.memory_mib)
