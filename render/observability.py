"""Monitoring configuration, from the stack's config to text: Prometheus, its alert rules,
Alertmanager, the blackbox exporter and the nginx access-log exporter.

Everything here is pure: a frozen ``ObservabilitySpec`` in, file text out. Grafana's
provisioning and dashboards are in ``render.grafana``.

What is scraped follows from what the stack contains. Every job discovers its targets with
``dns_sd_configs`` on ``tasks.<service>``: swarm's DNS answers that name with one address per
running task, so every replica is scraped and a replaced task is picked up on the next refresh
(the plain service name would resolve to one virtual IP and scrape a random replica).

Two alerts need data that nginx's ``stub_status`` does not have:

- **5xx ratio.** ``stub_status`` counts connections and requests, never status codes. The proxy
  also sends its JSON access log (the same line it writes to stdout) over syslog/UDP to
  ``prometheus-nginxlog-exporter`` (martin-helmich, a kept exporter), which counts responses by
  status: ``proxy_http_response_count_total{status, method}``. Syslog rather than a shared log
  file: no volume to share and rotate between the proxy and the exporter, and a lost UDP
  datagram costs one count, never a request. See ``nginx_access_log_directive``.
- **Certificate expiry.** ``prom/blackbox-exporter`` opens a TLS connection to the proxy for
  each public hostname (with that SNI) and reports ``probe_ssl_earliest_cert_expiry``. It
  skips chain verification on purpose: Cloudflare origin certificates and self-signed ones are
  not publicly trusted, and the alert is about the expiry date, which is read either way.

Backups are watched through the textfile the backup job writes for node-exporter (a contract
with ``render.backup``): ``keel_backup_last_success_timestamp_seconds{store}``,
``keel_backup_last_run_success{store}`` and ``keel_backup_schedule_interval_seconds``. Scheduled
jobs likewise (a contract with ``render.jobs``): ``keel_job_last_run_success{job_name[,reason]}``,
``keel_job_last_success_timestamp_seconds{job_name}``, ``keel_job_run_deadline_timestamp_seconds``
and, from the scheduler, ``keel_job_skipped_runs_total{service}``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from config.models import AlertReceiver, HcloudHostSpec, StackConfig
from config.names import Names
from render import dump_yaml, render_template
from render.backup import schedule_interval_seconds
from render.cloud_init import DATA_DIR
from render.jobs import late_after_s
from render.nginx import NginxRoute
from stores import registry
from stores.base import AlertRule

# Ports inside the internal overlay network.
PROMETHEUS_PORT = 9090
ALERTMANAGER_PORT = 9093
GRAFANA_PORT = 3100
NODE_EXPORTER_PORT = 9100
CADVISOR_PORT = 8080
NGINX_EXPORTER_PORT = 9113
NGINXLOG_EXPORTER_PORT = 4040
NGINXLOG_SYSLOG_PORT = 5531
BLACKBOX_PORT = 9115
PROXY_STUB_STATUS_PORT = 8081
"""The proxy's stub_status listener (a contract with render.nginx): http://<proxy>:8081/stub_status."""
PROXY_STUB_STATUS_PATH = "/stub_status"

PROMETHEUS_CONFIG_DIR = "/etc/prometheus"
PROMETHEUS_CONFIG_FILE = f"{PROMETHEUS_CONFIG_DIR}/prometheus.yml"
RULES_FILE = "rules/keel.yml"
"""Relative to the directory of prometheus.yml, as Prometheus (and promtool) resolve rule_files."""
ALERTMANAGER_CONFIG_FILE = "/etc/alertmanager/alertmanager.yml"
BLACKBOX_CONFIG_FILE = "/etc/blackbox_exporter/config.yml"
NGINXLOG_CONFIG_FILE = "/etc/prometheus-nginxlog-exporter.yml"
SECRETS_DIR = "/run/secrets"
SMTP_PASSWORD_FILE = f"{SECRETS_DIR}/alert-smtp-password"
WEBHOOK_URL_FILE = f"{SECRETS_DIR}/alert-webhook-url"
HEARTBEAT_URL_FILE = f"{SECRETS_DIR}/alert-heartbeat-url"
HEARTBEAT_INTERVAL = "1m"
"""How often Alertmanager re-sends the Watchdog alert to the heartbeat URL (its repeat interval)."""
TSDB_SHARE_OF_DATA_VOLUME = 0.2
"""Prometheus' TSDB may take this share of the data volume (which also holds the stores)."""
GRAFANA_CSP = (
    "script-src 'self' 'unsafe-eval' 'unsafe-inline'; object-src 'none'; font-src 'self' data:; "
    "style-src 'self' 'unsafe-inline' blob:; img-src * data:; base-uri 'self'; connect-src 'self' grafana.com wss:; "
    "manifest-src 'self'; media-src 'none'; form-action 'self'; frame-ancestors 'self'"
)
"""The proxy's policy on Grafana's routes: Grafana's own default template (conf/defaults.ini,
content_security_policy_template, v11.4.0) without the per-response nonce the proxy cannot know,
so its inline boot script runs; plus frame-ancestors against clickjacking."""
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")
"""The method label values the log exporter keeps; anything else counts as "other"."""

NGINXLOG_NAMESPACE = "proxy"
"""Metric prefix of the access-log exporter: proxy_http_response_count_total{status, method}."""
NGINXLOG_SYSLOG_TAG = "nginx"
NGINXLOG_REQUIRED_FIELDS = ("status", "request_time")
"""JSON keys the exporter reads from the proxy's access log: the status label, and the latency histogram."""


@dataclass(frozen=True)
class AlertThresholds:
    """Where each alert fires. The defaults are the house rules (seed 000: memory above 80% of limit)."""

    memory_ratio: float = 0.80
    disk_ratio: float = 0.85
    error_ratio: float = 0.05
    error_min_rps: float = 0.1
    """Below this request rate the 5xx ratio is noise (two failures out of three requests at night)."""
    cert_days: int = 14
    task_starts: int = 3
    """New tasks in one slot within ``task_starts_window`` that count as a crash loop.

    A rollout starts one new task per slot, a rollout and its rollback two, so three is a loop.
    """
    task_starts_window: str = "30m"


@dataclass(frozen=True)
class AppTarget:
    """An app service whose own metrics Prometheus scrapes."""

    name: str
    service_name: str
    port: int
    metrics_path: str


@dataclass(frozen=True)
class StoreTarget:
    """A store whose kind has an exporter, and that exporter."""

    name: str
    kind: str
    service_name: str
    exporter_service_name: str
    exporter_port: int


@dataclass(frozen=True)
class JobTarget:
    """A scheduled job, watched through the report its wrapper writes."""

    name: str
    late_after_s: int
    """Its last success may be this old before the job is late (render.jobs.late_after_s)."""


@dataclass(frozen=True)
class ScrapeJob:
    """One Prometheus job over the tasks of one swarm service."""

    job: str
    service_name: str
    port: int
    metrics_path: str = "/metrics"


@dataclass(frozen=True)
class TlsProbe:
    """One blackbox TLS probe of the proxy, with the SNI of one public hostname."""

    module: str
    hostname: str | None
    """SNI and instance label; None (no DNS: dev) probes the default certificate."""


@dataclass(frozen=True)
class GrafanaUpstream:
    """How the proxy reaches Grafana, and where the public sees it.

    Exactly one of ``host`` (Grafana at / on its own hostname) and ``path_prefix`` (Grafana
    under this prefix on every hostname) is set. The proxy passes the path unchanged:
    Grafana serves from the sub path itself (GF_SERVER_SERVE_FROM_SUB_PATH).
    """

    service_name: str
    port: int
    host: str | None
    path_prefix: str | None
    root_url: str
    strip_prefix: bool = False


# The renderer's own guard on what reaches PromQL in the alert rules (job="<name>") unquoted.
_NAME = re.compile(r"[a-z][a-z0-9-]{0,62}", re.ASCII)


@dataclass(frozen=True)
class ObservabilitySpec:
    """Everything the monitoring files are rendered from."""

    environment: str
    names: Names
    retention_days: int
    proxy_service_name: str
    proxy_https_port: int
    probes: tuple[TlsProbe, ...]
    apps: tuple[AppTarget, ...]
    stores: tuple[StoreTarget, ...]
    receiver: AlertReceiver
    grafana: GrafanaUpstream
    backup_interval_s: int | None = None
    """The longest gap between two scheduled backups; None when backups are off."""
    pitr: bool = False
    """Whether a PostgreSQL store's WAL is archived (its alerts and dashboard panel)."""
    scheduled_jobs: tuple[JobTarget, ...] = ()
    scheduler: bool = False
    """swarm-cronjob runs (backups or jobs): its skipped runs are counted."""
    thresholds: AlertThresholds = field(default_factory=AlertThresholds)
    data_mountpoint: str | None = None
    """Where the data volume is mounted on the host (its own disk alert); None: no separate volume."""
    data_volume_gib: int | None = None
    """Size of the data volume, which bounds Prometheus' TSDB; None: unknown (no size bound)."""

    @property
    def tsdb_retention_size(self) -> str | None:
        """Prometheus' --storage.tsdb.retention.size (its GB are GiB), a share of the data volume."""
        if self.data_volume_gib is None:
            return None
        return f"{max(1, int(self.data_volume_gib * TSDB_SHARE_OF_DATA_VOLUME))}GB"

    @property
    def needs_egress(self) -> bool:
        """Alertmanager talks to the outside: a receiver, or the heartbeat."""
        return self.receiver.kind != "none" or self.receiver.heartbeat_url_secret is not None

    def __post_init__(self) -> None:
        for name in (*(app.name for app in self.apps), *(store.name for store in self.stores)):
            if not _NAME.fullmatch(name):
                raise ValueError(f"target name {name!r}: expected lower-case letters, digits and -")

    @property
    def store_kinds(self) -> tuple[str, ...]:
        """The kinds of the watched stores, in the registry's order."""
        present = {store.kind for store in self.stores}
        return tuple(kind for kind in registry.KINDS if kind in present)

    def store_alert_rules(self) -> tuple[AlertRule, ...]:
        """The alert rules of the watched stores' kinds."""
        rules: list[AlertRule] = []
        for kind in self.store_kinds:
            exporter = registry.kind(kind).exporter()
            assert exporter is not None  # the spec watches only stores with an exporter
            rules += exporter.alert_rules
        return tuple(rules)

    @property
    def nginx_scrape_uri(self) -> str:
        return f"http://{self.proxy_service_name}:{PROXY_STUB_STATUS_PORT}{PROXY_STUB_STATUS_PATH}"

    @property
    def syslog_target(self) -> str:
        """host:port the proxy sends its access log to."""
        return f"{self.names.nginxlog_exporter}:{NGINXLOG_SYSLOG_PORT}"

    def scrape_jobs(self) -> tuple[ScrapeJob, ...]:
        """Every dns_sd job, in the order prometheus.yml lists them."""
        names = self.names
        jobs = [
            ScrapeJob("alertmanager", names.alertmanager, ALERTMANAGER_PORT),
            ScrapeJob("grafana", names.grafana, GRAFANA_PORT),
            ScrapeJob("node", names.node_exporter, NODE_EXPORTER_PORT),
            ScrapeJob("cadvisor", names.cadvisor, CADVISOR_PORT),
            ScrapeJob("nginx", names.nginx_exporter, NGINX_EXPORTER_PORT),
            ScrapeJob("nginxlog", names.nginxlog_exporter, NGINXLOG_EXPORTER_PORT),
            ScrapeJob("blackbox", names.blackbox_exporter, BLACKBOX_PORT),
        ]
        for store in self.stores:
            jobs.append(ScrapeJob(f"{store.kind}-{store.name}", store.exporter_service_name, store.exporter_port))
        for app in self.apps:
            jobs.append(ScrapeJob(f"app-{app.name}", app.service_name, app.port, app.metrics_path))
        return tuple(jobs)


def observability_spec(cfg: StackConfig, *, proxy_https_port: int | None = None) -> ObservabilitySpec:
    """What a stack's monitoring watches, and how it is reached.

    ``proxy_https_port`` is the port the proxy's container listens on for HTTPS inside the
    overlay; default proxy/https_port.
    """
    obs = cfg.observability
    names = cfg.names
    apps = tuple(
        AppTarget(name, names.app(name), app.port, app.metrics_path)
        for name, app in sorted(cfg.apps().items())
        if app.metrics_path and app.port is not None and app.replicas > 0
    )
    stores = tuple(
        StoreTarget(name, store.kind, names.store(name), names.store_exporter(name), exporter.port)
        for name, store in sorted(cfg.stores().items())
        if (exporter := registry.kind_of(store).exporter()) is not None
    )
    hostnames = tuple(cfg.dns.all_hostnames) if cfg.dns else ()
    probes = tuple(TlsProbe(f"tls_{index}", host) for index, host in enumerate(hostnames)) or (TlsProbe("tls_0", None),)
    https_port = proxy_https_port if proxy_https_port is not None else cfg.proxy.https_port
    hcloud = cfg.host if isinstance(cfg.host, HcloudHostSpec) else None
    return ObservabilitySpec(
        environment=cfg.environment,
        names=names,
        retention_days=obs.retention_days,
        proxy_service_name=names.proxy,
        proxy_https_port=https_port,
        probes=probes,
        apps=apps,
        stores=stores,
        receiver=obs.alerts,
        grafana=grafana_upstream(cfg, names),
        backup_interval_s=schedule_interval_seconds(cfg.backup.schedule) if cfg.backup.enabled else None,
        pitr=bool(cfg.pitr_stores()),
        scheduled_jobs=tuple(
            JobTarget(
                name,
                late_after_s(schedule=job.schedule, timeout_s=job.timeout_s, grace_s=job.stop_grace_period_s),
            )
            for name, job in sorted(cfg.jobs.items())
        ),
        scheduler=cfg.backup.enabled or bool(cfg.jobs),
        data_mountpoint=DATA_DIR if hcloud else None,
        data_volume_gib=hcloud.data_volume_gib if hcloud else None,
    )


def grafana_upstream(cfg: StackConfig, names: Names) -> GrafanaUpstream:
    """Grafana on observability/grafana_host, else under /grafana/ on the first public hostname."""
    host = cfg.observability.grafana_host
    if host is not None:
        return GrafanaUpstream(names.grafana, GRAFANA_PORT, host=host, path_prefix=None, root_url=f"https://{host}/")
    if cfg.dns is not None:
        public = cfg.dns.all_hostnames[0]
    else:
        public = "localhost" if cfg.proxy.https_port == 443 else f"localhost:{cfg.proxy.https_port}"
    return GrafanaUpstream(
        names.grafana, GRAFANA_PORT, host=None, path_prefix="/grafana/", root_url=f"https://{public}/grafana/"
    )


# ----------------------------------------------------------------------------- prometheus


def prometheus_args(spec: ObservabilitySpec) -> list[str]:
    """Prometheus' command line; retention is a flag, not a config key. Whichever of the time and
    the size limit is reached first applies: the TSDB never outgrows its share of the data volume."""
    args = [
        f"--config.file={PROMETHEUS_CONFIG_FILE}",
        "--storage.tsdb.path=/prometheus",
        f"--storage.tsdb.retention.time={spec.retention_days}d",
    ]
    if spec.tsdb_retention_size is not None:
        args.append(f"--storage.tsdb.retention.size={spec.tsdb_retention_size}")
    return args


def prometheus_config(spec: ObservabilitySpec) -> dict[str, Any]:
    """prometheus.yml as data. Each dns_sd job asks for tasks.<service>, which resolves to every
    task of a swarm service: each replica is its own target, and the `service` label names the
    service whatever the task's address."""
    jobs: list[dict[str, Any]] = [
        {"job_name": "prometheus", "static_configs": [{"targets": [f"localhost:{PROMETHEUS_PORT}"]}]}
    ]
    for job in spec.scrape_jobs():
        entry: dict[str, Any] = {"job_name": job.job}
        if job.metrics_path != "/metrics":
            entry["metrics_path"] = job.metrics_path
        entry["dns_sd_configs"] = [
            {"names": [f"tasks.{job.service_name}"], "type": "A", "port": job.port, "refresh_interval": "30s"}
        ]
        entry["relabel_configs"] = [
            {"source_labels": ["__meta_dns_name"], "regex": "tasks\\.(.+)", "target_label": "service"}
        ]
        jobs.append(entry)
    # The proxy's TLS certificate, through the blackbox exporter, once per public hostname (SNI).
    jobs.append(
        {
            "job_name": "tls",
            "metrics_path": "/probe",
            "static_configs": [
                {
                    "targets": [f"{spec.proxy_service_name}:{spec.proxy_https_port}"],
                    "labels": {"module": probe.module, "hostname": probe.hostname or "default"},
                }
                for probe in spec.probes
            ],
            "relabel_configs": [
                {"source_labels": ["__address__"], "target_label": "__param_target"},
                {"source_labels": ["module"], "target_label": "__param_module"},
                {"source_labels": ["hostname"], "target_label": "instance"},
                {"target_label": "__address__", "replacement": f"{spec.names.blackbox_exporter}:{BLACKBOX_PORT}"},
            ],
        }
    )
    return {
        "global": {
            "scrape_interval": "30s",
            "scrape_timeout": "10s",
            "evaluation_interval": "30s",
            "external_labels": {"environment": spec.environment},
        },
        "rule_files": [RULES_FILE],
        "alerting": {
            "alertmanagers": [
                {
                    "dns_sd_configs": [
                        {"names": [f"tasks.{spec.names.alertmanager}"], "type": "A", "port": ALERTMANAGER_PORT}
                    ]
                }
            ]
        },
        "scrape_configs": jobs,
    }


def render_prometheus_yml(spec: ObservabilitySpec) -> str:
    return dump_yaml(
        prometheus_config(spec),
        "Rendered by keel (render/observability.py). Retention is a command-line flag, not set here.",
    )


def render_alert_rules(spec: ObservabilitySpec) -> str:
    interval = spec.backup_interval_s
    return render_template(
        "observability/alert-rules.yml.j2",
        spec=spec,
        t=spec.thresholds,
        jobs=["prometheus", *(job.job for job in spec.scrape_jobs()), "tls"],
        backup_interval_s=interval,
        backup_missing_for=_duration(2 * interval) if interval else None,
        duration=_duration,
        cert_seconds=spec.thresholds.cert_days * 86400,
        data_mountpoint=spec.data_mountpoint,
        store_rules=spec.store_alert_rules(),
        scalar=_yaml_scalar,
        quoted=json.dumps,
    )


def _yaml_scalar(text: str) -> str:
    """``text`` as a YAML scalar: as it is where YAML reads it back unchanged, else double-quoted
    (JSON's strings are YAML's double-quoted ones)."""
    plain = "\n" not in text and "#" not in text and ": " not in text
    return text if plain and yaml.safe_load(text) == text else json.dumps(text)


def _duration(seconds: int) -> str:
    """A Prometheus duration in whole minutes (or seconds when shorter than a minute)."""
    if seconds % 60:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes % 60:
        return f"{minutes}m"
    return f"{minutes // 60}h"


# ----------------------------------------------------------------------------- alertmanager


def alertmanager_config(spec: ObservabilitySpec) -> dict[str, Any]:
    """alertmanager.yml as data; credentials are swarm secret files, never inline. With kind none,
    alerts show in Alertmanager only (a receiver without configs)."""
    receiver = spec.receiver
    name = {"none": "null", "email": "email", "webhook": "webhook"}[receiver.kind]
    entry: dict[str, Any] = {"name": name}
    if receiver.kind == "email":
        email: dict[str, Any] = {
            "to": receiver.email_to,
            "from": receiver.email_from,
            "smarthost": receiver.smtp_host,
        }
        if receiver.smtp_username:
            email["auth_username"] = receiver.smtp_username
        if receiver.smtp_password_secret:
            email["auth_password_file"] = SMTP_PASSWORD_FILE
        email.update(require_tls=True, send_resolved=True)
        entry["email_configs"] = [email]
    elif receiver.kind == "webhook":
        entry["webhook_configs"] = [{"url_file": WEBHOOK_URL_FILE, "send_resolved": True}]
    # The always-firing Watchdog is a heartbeat, never a notification: re-sent every
    # HEARTBEAT_INTERVAL to a dead-man's switch outside this host, which raises the alarm when the
    # pings stop (host, Docker, Prometheus or Alertmanager down). Without a heartbeat URL
    # (observability/alerts/heartbeat_url_secret) it goes to a receiver with no configs.
    heartbeat: dict[str, Any]
    if receiver.heartbeat_url_secret:
        heartbeat = {"name": "heartbeat", "webhook_configs": [{"url_file": HEARTBEAT_URL_FILE, "send_resolved": False}]}
    else:
        heartbeat = {"name": "watchdog-nowhere"}
    return {
        "route": {
            "receiver": name,
            "group_by": ["alertname", "service"],
            "group_wait": "30s",
            "group_interval": "5m",
            "repeat_interval": "4h",
            "routes": [
                {
                    "matchers": ['alertname="Watchdog"'],
                    "receiver": heartbeat["name"],
                    "group_wait": "0s",
                    "group_interval": HEARTBEAT_INTERVAL,
                    "repeat_interval": HEARTBEAT_INTERVAL,
                }
            ],
        },
        "receivers": [entry, heartbeat],
    }


def render_alertmanager_yml(spec: ObservabilitySpec) -> str:
    return dump_yaml(
        alertmanager_config(spec),
        "Rendered by keel (render/observability.py). Credentials are swarm secret files, never inline.",
    )


# ----------------------------------------------------------------------------- exporters


def blackbox_config(spec: ObservabilitySpec) -> dict[str, Any]:
    """One TLS module per public hostname (its SNI). Chain verification is off on purpose: origin
    and self-signed certificates are not publicly trusted, and what is watched is the expiry
    date, which the handshake reports either way."""
    modules: dict[str, Any] = {}
    for probe in spec.probes:
        tls_config: dict[str, Any] = {"insecure_skip_verify": True}
        if probe.hostname:
            tls_config["server_name"] = probe.hostname
        modules[probe.module] = {
            "prober": "tcp",
            "timeout": "5s",
            "tcp": {"preferred_ip_protocol": "ip4", "tls": True, "tls_config": tls_config},
        }
    return {"modules": modules}


def render_blackbox_yml(spec: ObservabilitySpec) -> str:
    return dump_yaml(
        blackbox_config(spec),
        "Rendered by keel (render/observability.py). One TLS module per public hostname (its SNI);\n"
        "chain verification is off: the expiry date is what is watched.",
    )


def nginxlog_config(spec: ObservabilitySpec) -> dict[str, Any]:
    return {
        "listen": {"port": NGINXLOG_EXPORTER_PORT, "address": "0.0.0.0", "metrics_endpoint": "/metrics"},
        "namespaces": [
            {
                "name": NGINXLOG_NAMESPACE,
                "parser": "json",
                "source": {
                    "syslog": {
                        "listen_address": f"udp://0.0.0.0:{NGINXLOG_SYSLOG_PORT}",
                        "format": "rfc3164",
                        "tags": [NGINXLOG_SYSLOG_TAG],
                    }
                },
                "histogram_buckets": [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
                # The exporter's built-in `method` label reads the first word of a `request` field
                # (pkg/relabeling/defaults.go, v1.11.0), which the proxy's JSON line does not have: it
                # carries `method`. A relabeling of the same target label comes first and replaces the
                # built-in one (relabeling.UniqueRelabelings keeps the first of each target label).
                "relabel_configs": [{"target_label": "method", "from": "method", "whitelist": list(HTTP_METHODS)}],
            }
        ],
    }


def render_nginxlog_yml(spec: ObservabilitySpec) -> str:
    return dump_yaml(
        nginxlog_config(spec),
        "Rendered by keel (render/observability.py). The proxy sends its JSON access log here over\n"
        f"syslog/UDP; responses are counted by status and method as {NGINXLOG_NAMESPACE}_http_response_count_total.",
    )


def grafana_routes(upstream: GrafanaUpstream) -> tuple[NginxRoute, ...]:
    """The proxy's routes to Grafana, on its own host or its sub path (passed unchanged), all with
    Grafana's CSP: the pages (websockets for Grafana Live), the login form (login rate limit),
    and the HTTP API (api rate limit; Grafana Live's websocket is under it too)."""
    prefix = upstream.path_prefix or "/"
    name, host = upstream.service_name, upstream.host
    return (
        NginxRoute(path=prefix, upstream=name, host=host, websocket=True, max_body="10m", csp=GRAFANA_CSP),
        NginxRoute(path=f"{prefix}login", upstream=name, host=host, rate_limit="login", csp=GRAFANA_CSP),
        NginxRoute(
            path=f"{prefix}api/", upstream=name, host=host, rate_limit="api", websocket=True, max_body="10m",
            csp=GRAFANA_CSP,
        ),
    )  # fmt: skip


def nginx_access_log_destination(spec: ObservabilitySpec) -> str:
    """Where the proxy also sends its JSON access log: the log exporter, over syslog (UDP)."""
    return f"syslog:server={spec.syslog_target},tag={NGINXLOG_SYSLOG_TAG},severity=info"


def nginx_access_log_directive(spec: ObservabilitySpec, log_format: str) -> str:
    """The extra ``access_log`` line the proxy adds beside its stdout log.

    ``log_format`` names the proxy's JSON log format, which must carry NGINXLOG_REQUIRED_FIELDS.
    nginx resolves the exporter's name when it loads its configuration; the service's virtual IP
    exists as soon as the service does, whether or not a task is running.
    """
    return f"access_log {nginx_access_log_destination(spec)} {log_format};"
