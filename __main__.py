"""Deploys one stack of a small team's production.

Reads the stack's configuration (config.load()), then declares, in order:
- Host: the Hetzner VM (firewall, primary IPs, data volume, cloud-init, readiness), with node
  pools the Cluster (a private network, more servers joined to its swarm), and the Docker
  provider over SSH; or the local Docker engine in swarm mode on dev;
- Networks: the overlay networks by role: edge (proxy and apps), data (apps and stores),
  monitoring (Prometheus, exporters, apps' metrics);
- StatefulStore per postgres / redis / volume / external service;
- AppService per app service (with its migration step) and per background worker;
- Scheduler (with backups or jobs): swarm-cronjob, the one scheduler of the stack;
- BackupJob (when enabled): restic backups of every store to S3-compatible storage on a
  schedule, retention, a weekly `restic check`, an on-demand restore drill, and a freshness
  metric for the backup-age alert;
- ScheduledJob per entry of `jobs`: a command on a cron schedule, never overlapping, with its
  outcome as metrics for the job alerts;
- ObservabilityStack (when enabled): Prometheus, Alertmanager, Grafana, node-exporter,
  cAdvisor and the exporters for the proxy and each store, with alert rules;
- ProxyTier: Cloudflare DNS and zone TLS settings, the certificate, and nginx, the only
  service that publishes ports (and Grafana's way in);
and exports the addresses, the SSH command (and each pool node's), the Docker host, the URLs, the estimated monthly
cost, the memory budget and the one-off run command of each job.
"""

import pulumi

import config
from components import collector
from components.app_service import AppService
from components.backup_job import BackupJob
from components.host import Host, RegistryLogin, monthly_cost
from components.networks import Networks
from components.observability import ObservabilityStack
from components.proxy_tier import ProxyTier, web_sources
from components.scheduled_job import ScheduledJob, Scheduler
from components.stateful_store import PitrWiring, StatefulStore
from config import capacity
from config.catalogue import PRICES_RECORDED_ON

collector.pause()
stack = config.load()
cfg = stack.config

host = Host(
    "host",
    spec=cfg.host,
    server_name=cfg.names.server(stack.name),
    web_sources=web_sources(cfg),
    registries=[
        RegistryLogin(server=r.server, username=r.username, password=stack.secrets[r.password_secret])
        for r in cfg.registries()
    ],
)
on_host = pulumi.ResourceOptions(provider=host.provider)

networks = Networks(
    "networks",
    names=cfg.names,
    monitoring=cfg.observability.enabled,
    encrypted=host.cluster is not None,
    egress=bool(cfg.pitr_stores()),
    opts=on_host,
)
# node-exporter's textfile collector: where backup and job runs leave their metrics, and where
# a hcloud host's timer reports a pending reboot (cloud-init creates the directory there).
scheduled = cfg.backup.enabled or bool(cfg.jobs)
textfile_dir = f"{host.data_dir or '/var/lib/keel'}/metrics" if scheduled or cfg.host.provider == "hcloud" else None
pitr = (
    PitrWiring(egress_network=networks.egress, textfile_dir=textfile_dir)
    if networks.egress is not None and textfile_dir is not None
    else None
)
stores = {
    name: StatefulStore(name, spec=spec, stack=stack, host=host, networks=networks, pitr=pitr, opts=on_host)
    for name, spec in cfg.stores().items()
}
apps = {
    name: AppService(name, spec=spec, stack=stack, host=host, networks=networks, stores=stores, opts=on_host)
    for name, spec in cfg.apps().items()
}
scheduler = None
if scheduled and textfile_dir is not None:
    scheduler = Scheduler(
        "scheduler", stack=stack, host=host, textfile_dir=textfile_dir, with_jobs=bool(cfg.jobs), opts=on_host
    )

if cfg.backup.enabled and textfile_dir is not None:
    BackupJob(
        "backup",
        stack=stack,
        host=host,
        stores=stores,
        network=networks.data,
        textfile_dir=textfile_dir,
        opts=on_host,
    )

jobs = {
    name: ScheduledJob(
        name,
        spec=spec,
        stack=stack,
        host=host,
        networks=networks,
        scheduler=scheduler,
        apps=apps,
        stores=stores,
        textfile_dir=textfile_dir,
        opts=on_host,
    )
    for name, spec in cfg.jobs.items()
    if scheduler is not None and textfile_dir is not None
}

observability = None
if cfg.observability.enabled:
    observability = ObservabilityStack(
        "observability",
        stack=stack,
        host=host,
        stores=stores,
        networks=networks,
        textfile_dir=textfile_dir,
        proxy_https_port=443,  # the proxy container's own port on the overlay, whatever it publishes
        opts=on_host,
    )

proxy = ProxyTier(
    "proxy",
    stack=stack,
    host=host,
    networks=networks,
    extra_upstreams=[observability.nginx_upstream()] if observability else [],
    extra_routes=observability.nginx_routes() if observability else (),
    extra_access_logs=[observability.proxy_access_log] if observability else [],
    monitoring_network=observability.proxy_network if observability else None,
    # nginx resolves the log exporter's name when it loads its configuration.
    opts=pulumi.ResourceOptions.merge(
        on_host, pulumi.ResourceOptions(depends_on=[observability] if observability else [])
    ),
)

pulumi.export("ipv4", host.ipv4)
pulumi.export("ipv6", host.ipv6)
pulumi.export("ssh_command", host.ssh_command)
pulumi.export("docker_host", host.docker_host)
pulumi.export("known_hosts", host.known_hosts)
if host.cluster is not None:
    # The pool nodes, by server name (the host is ssh_command).
    pulumi.export("node_ssh_commands", host.cluster.ssh_commands)
pulumi.export("urls", proxy.urls)
if observability is not None:
    pulumi.export("grafana_url", observability.grafana_upstream.root_url)
    pulumi.export("grafana_admin_password", observability.grafana_admin_password)
pulumi.export("estimated_monthly_cost_eur", monthly_cost(cfg.host))
pulumi.export("prices_recorded_on", PRICES_RECORDED_ON)
pulumi.export("memory_budget", capacity.budget(cfg).as_output())
if jobs:
    # Run on the host (ssh_command): one run now, outside the schedule.
    pulumi.export("job_run_commands", {name: job.run_command for name, job in jobs.items()})
