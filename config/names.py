"""Every name derived from the config: swarm services (and so DNS names on the overlay networks),
Docker volumes, networks and images, and the server's name.

One place, because names are part of the contract with existing state: a service or volume
whose name changes is replaced (a database volume would be created empty beside the old one).
Components, ``__main__.py``, the renderers and the tests all ask here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Names:
    """The names of one stack's objects; ``prefix`` is the config's ``name_prefix``."""

    prefix: str

    def of(self, part: str) -> str:
        """``<prefix>-<part>``: the shape of every name below."""
        return f"{self.prefix}-{part}"

    # ------------------------------------------------------------------ host
    def server(self, stack: str) -> str:
        return self.of(stack)

    # ------------------------------------------------------------------ networks
    def network(self, role: str) -> str:
        return self.of(role)

    # ------------------------------------------------------------------ workloads
    def app(self, name: str) -> str:
        return self.of(name)

    def store(self, name: str) -> str:
        return self.of(name)

    def store_volume(self, name: str, generation: int = 0) -> str:
        """Generation 0 is the volume a store always had; a point-in-time restore fills the next one."""
        return self.of(f"{name}-data" + (f"-g{generation}" if generation else ""))

    def store_socket_volume(self, name: str) -> str:
        """PostgreSQL's socket directory, shared with the jobs that reach the server through it (pgBackRest)."""
        return self.of(f"{name}-socket")

    def pitr_job(self, name: str, job: str) -> str:
        """A point-in-time recovery service of store ``name``: heartbeat, full, diff, drill, restore."""
        return self.of(f"{name}-pitr-{job}")

    def pitr_scratch_volume(self, name: str) -> str:
        return self.of(f"{name}-pitr-scratch")

    def pitr_image(self, name: str, tag: str) -> str:
        return f"{self.of(f'{name}-pitr')}:{tag}"

    @property
    def pitr_egress_network(self) -> str:
        return self.of("pitr-egress")

    def migration(self, app: str) -> str:
        """The swarm job that runs an app's migration before its rollout."""
        return self.of(f"{app}-migration")

    def job(self, name: str) -> str:
        """A scheduled job's service (config/models.py JobSpec)."""
        return self.of(f"job-{name}")

    # ------------------------------------------------------------------ proxy
    @property
    def proxy(self) -> str:
        return self.of("proxy")

    @property
    def proxy_conf_volume(self) -> str:
        return self.of("proxy-conf")

    @property
    def proxy_certs_volume(self) -> str:
        return self.of("proxy-certs")

    @property
    def acme(self) -> str:
        return self.of("proxy-acme")

    @property
    def acme_state_volume(self) -> str:
        return self.of("proxy-acme")

    @property
    def acme_egress_network(self) -> str:
        return self.of("acme-egress")

    # ------------------------------------------------------------------ backups
    @property
    def backup(self) -> str:
        return self.of("backup")

    @property
    def backup_check(self) -> str:
        return self.of("backup-check")

    @property
    def backup_drill(self) -> str:
        return self.of("backup-drill")

    @property
    def scheduler(self) -> str:
        return self.of("cronjob")

    @property
    def backup_cache_volume(self) -> str:
        return self.of("backup-cache")

    @property
    def backup_egress_network(self) -> str:
        return self.of("backup-egress")

    @property
    def scheduler_api_proxy(self) -> str:
        """The scheduler's Docker API proxy (services and tasks only)."""
        return self.of("cronjob-docker-api")

    @property
    def scheduler_api_network(self) -> str:
        return self.of("cronjob-docker-api")

    def backup_image(self, tag: str) -> str:
        return f"{self.of('backup')}:{tag}"

    def snapshot_host(self, stack: str) -> str:
        """restic's ``--host`` for every snapshot of the stack (containers have random hostnames)."""
        return self.of(stack)

    # ------------------------------------------------------------------ observability
    @property
    def prometheus(self) -> str:
        return self.of("prometheus")

    @property
    def prometheus_volume(self) -> str:
        return self.of("prometheus-data")

    @property
    def grafana_volume(self) -> str:
        return self.of("grafana-data")

    @property
    def alertmanager(self) -> str:
        return self.of("alertmanager")

    @property
    def alerts_egress_network(self) -> str:
        return self.of("alerts-egress")

    @property
    def alerting_network(self) -> str:
        """Prometheus and Alertmanager, and nothing else."""
        return self.of("alerting")

    @property
    def proxy_metrics_network(self) -> str:
        """The proxy, Grafana and the proxy's exporters."""
        return self.of("proxy-metrics")

    @property
    def docker_api_proxy(self) -> str:
        """cAdvisor's read-only Docker API proxy."""
        return self.of("docker-api")

    @property
    def docker_api_network(self) -> str:
        return self.of("docker-api")

    @property
    def docker_api_socket_volume(self) -> str:
        """With several nodes: the local volume, one per node, where cAdvisor's proxy listens for it."""
        return self.of("docker-api-socket")

    @property
    def grafana(self) -> str:
        return self.of("grafana")

    @property
    def node_exporter(self) -> str:
        return self.of("node-exporter")

    @property
    def cadvisor(self) -> str:
        return self.of("cadvisor")

    @property
    def nginx_exporter(self) -> str:
        return self.of("nginx-exporter")

    @property
    def nginxlog_exporter(self) -> str:
        return self.of("nginxlog-exporter")

    @property
    def blackbox_exporter(self) -> str:
        return self.of("blackbox-exporter")

    def store_exporter(self, store: str) -> str:
        return self.of(f"{store}-exporter")
