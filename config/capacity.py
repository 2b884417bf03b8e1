"""The memory budget: what every task may use at most, against what the host has.

The sum of memory limits (every replica, every store, the proxy, the observability and backup
tasks) plus the headroom of the largest start-first rollout must fit in MAX_SHARE of the
host's RAM. Components read their fixed limits from here, so the budget and the deployed
limits cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from config.models import AppSpec, HcloudHostSpec, NodeSpec, StackConfig, WorkerSpec
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


GLOBAL_PARTS = frozenset({"node-exporter", "cadvisor"})
"""Observability parts that run one task on every node (global services)."""

Where = Literal["host", "every", "any"]
"""Where a line's tasks run: pinned to the host (its volume, its public IPs, its image), one task on
every node, or wherever the scheduler places them (apps and workers without a volume)."""


@dataclass(frozen=True)
class BudgetLine:
    name: str
    memory_mb: int
    where: Where = "host"
    task_mb: int = 0
    """One task's limit, for lines the scheduler places (it must fit on some node)."""


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
    """Every task's limit against the memory of every node: one host, or the host and its pools' nodes
    (a global task counts once per node)."""
    lines = list(_lines(cfg))
    nodes = _nodes(cfg)
    if len(nodes) > 1:
        lines = [
            BudgetLine(line.name, line.memory_mb * len(nodes), line.where, line.task_mb)
            if line.where == "every"
            else line
            for line in lines
        ]
    memory = sum(node.memory_mib for node in nodes) if nodes else cfg.host.memory_mib
    return Budget(tuple(lines), _headroom(cfg), memory)


def node_budgets(cfg: StackConfig) -> dict[str, Budget]:
    """With node pools: what each node must hold whatever the scheduler does (the host: everything
    pinned to it and the global tasks; any other node: the global tasks), by node (``host``,
    ``<pool>-<n>``). Tasks the scheduler places are checked against the whole (``budget``) and each
    against the room the nodes have left (``crossref``). Empty on one node."""
    nodes = _nodes(cfg)
    if len(nodes) < 2:
        return {}
    lines = _lines(cfg)
    out = {}
    for node in nodes:
        fixed = [line for line in lines if line.where == "every" or (node.pool is None and line.where == "host")]
        key = "host" if node.pool is None else f"{node.pool}-{node.index}"
        out[key] = Budget(tuple(fixed), 0, node.memory_mib)
    return out


def _nodes(cfg: StackConfig) -> list[NodeSpec]:
    if isinstance(cfg.host, HcloudHostSpec):
        return cfg.host.nodes("host")
    return []


def _headroom(cfg: StackConfig) -> int:
    headroom = 0
    for service in cfg.apps().values():
        if service.replicas:
            # start-first runs `parallelism` new tasks beside the old ones during a rollout. Old
            # workers keep finishing their jobs (up to their grace period) while the next batches
            # start, so all of them may still run beside their replacements.
            extra = service.replicas if isinstance(service, WorkerSpec) else service.rollout.parallelism
            headroom = max(headroom, service.resources.memory_mb * extra)
    return headroom


def _lines(cfg: StackConfig) -> list[BudgetLine]:
    lines = [BudgetLine("proxy", cfg.proxy.resources.memory_mb)]
    if cfg.proxy.tls.mode == "acme":
        lines.append(BudgetLine("acme", cfg.proxy.tls.acme_resources.memory_mb))
    for name, service in cfg.services.items():
        if isinstance(service, AppSpec):
            # An app with a volume runs where the volume is; constraints of its own still leave the
            # scheduler a choice among the nodes they name.
            where: Where = "host" if service.volumes else "any"
            limit = service.resources.memory_mb
            lines.append(BudgetLine(name, limit * service.replicas, where, limit))
        else:
            container = registry.kind_of(service).container(name, service)
            if container is not None:
                lines.append(BudgetLine(name, container.resources.memory_mb))
    if cfg.observability.enabled:
        # With several nodes cAdvisor's Docker API proxy runs beside it on each (components/observability.py).
        global_parts = GLOBAL_PARTS | ({"docker-api"} if cfg.host.clustered else set())
        for part, limit in OBSERVABILITY_LIMITS_MB.items():
            lines.append(BudgetLine(part, limit, "every" if part in global_parts else "host"))
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
    return lines
