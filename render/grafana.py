"""Grafana's provisioning and dashboards, from an ObservabilitySpec to text.

One Prometheus datasource with a fixed uid (DATASOURCE_UID), so dashboards can name it and
survive Grafana's database being rebuilt; one file provider for the dashboards. Dashboards
are generated rather than kept as exported JSON: every panel is built by one function
(render.dashboards) that always sets the datasource; a store kind's dashboards (its exporter's,
stores/<kind>/kind.py) exist only when the stack has such a store.
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from render.dashboards import DATASOURCE_UID, Query, dashboard, panel
from render.observability import GRAFANA_PORT, PROMETHEUS_PORT, ObservabilitySpec
from stores import registry

PROVISIONING_DIR = "/etc/grafana/provisioning"
DATASOURCES_FILE = f"{PROVISIONING_DIR}/datasources/keel.yml"
DASHBOARD_PROVIDER_FILE = f"{PROVISIONING_DIR}/dashboards/keel.yml"
DASHBOARDS_DIR = "/etc/grafana/dashboards"
ADMIN_PASSWORD_FILE = "/run/secrets/grafana-admin-password"
DATA_DIR = "/var/lib/grafana"
"""Grafana's database and plugins (GF_PATHS_DATA's default): a volume."""
_DISKS = 'fstype=~"ext[234]|xfs|btrfs|zfs"'
_SWARM = 'container_label_com_docker_swarm_service_name!=""'
_MEMORY_USED = "1 - node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes"
_DISK_USED = f"1 - node_filesystem_avail_bytes{{{_DISKS}}} / node_filesystem_size_bytes{{{_DISKS}}}"
_BACKUP_AGE = "time() - keel_backup_last_success_timestamp_seconds"
_WORKING_SET = f"container_memory_working_set_bytes{{{_SWARM}}}"
_CPU = f"container_cpu_usage_seconds_total{{{_SWARM}}}"
_LATENCY_BUCKETS = "sum by (le) (rate(proxy_http_response_time_seconds_hist_bucket[5m]))"


def grafana_env(spec: ObservabilitySpec) -> dict[str, str]:
    """Grafana's settings: its port, the public URL the proxy serves it on, and lock-down."""
    upstream = spec.grafana
    env = {
        "GF_SERVER_HTTP_PORT": str(GRAFANA_PORT),
        "GF_SERVER_ROOT_URL": upstream.root_url,
        "GF_SECURITY_ADMIN_USER": "admin",
        "GF_SECURITY_ADMIN_PASSWORD__FILE": ADMIN_PASSWORD_FILE,
        "GF_SECURITY_COOKIE_SECURE": "true",
        "GF_SECURITY_DISABLE_GRAVATAR": "true",
        "GF_USERS_ALLOW_SIGN_UP": "false",
        "GF_AUTH_ANONYMOUS_ENABLED": "false",
        # The internal network has no way out: nothing to report to or update from.
        "GF_ANALYTICS_REPORTING_ENABLED": "false",
        "GF_ANALYTICS_CHECK_FOR_UPDATES": "false",
        "GF_ANALYTICS_CHECK_FOR_PLUGIN_UPDATES": "false",
        "GF_PATHS_PROVISIONING": PROVISIONING_DIR,
    }
    if upstream.path_prefix is not None:
        env["GF_SERVER_SERVE_FROM_SUB_PATH"] = "true"
    if upstream.host is not None:
        env["GF_SERVER_DOMAIN"] = upstream.host
    return env


def render_datasources(spec: ObservabilitySpec) -> str:
    data = {
        "apiVersion": 1,
        "datasources": [
            {
                "name": "Prometheus",
                "type": "prometheus",
                "uid": DATASOURCE_UID,
                "access": "proxy",
                "url": f"http://{spec.names.prometheus}:{PROMETHEUS_PORT}",
                "isDefault": True,
                "editable": False,
                "jsonData": {"timeInterval": "30s", "httpMethod": "POST"},
            }
        ],
    }
    return "# Rendered by keel (render/grafana.py).\n" + yaml.safe_dump(data, sort_keys=False)


def render_dashboard_provider() -> str:
    data = {
        "apiVersion": 1,
        "providers": [
            {
                "name": "keel",
                "orgId": 1,
                "folder": "Keel",
                "type": "file",
                "disableDeletion": True,
                "allowUiUpdates": False,
                "updateIntervalSeconds": 60,
                "options": {"path": DASHBOARDS_DIR, "foldersFromFilesStructure": False},
            }
        ],
    }
    return "# Rendered by keel (render/grafana.py).\n" + yaml.safe_dump(data, sort_keys=False)


def render_dashboards(spec: ObservabilitySpec) -> dict[str, str]:
    """File name (under DASHBOARDS_DIR) -> dashboard JSON."""
    boards = [_host(spec), _containers(), _proxy()]
    for kind in spec.store_kinds:
        exporter = registry.kind(kind).exporter()
        assert exporter is not None  # the spec lists only stores with an exporter
        boards.extend(exporter.dashboards)
    return {f"{board['uid'].removeprefix('keel-')}.json": json.dumps(board, indent=2) + "\n" for board in boards}


def _host(spec: ObservabilitySpec) -> dict[str, Any]:
    panels = [
        panel("CPU busy", [Query('1 - avg(rate(node_cpu_seconds_total{mode="idle"}[5m]))', "cpu")], "percentunit"),
        panel("Memory used", [Query(_MEMORY_USED, "memory")], "percentunit"),
        panel("Load", [Query("node_load1", "1m"), Query("node_load5", "5m"), Query("node_load15", "15m")], "short"),
        panel(
            "Disk used",
            [Query(_DISK_USED, "{{mountpoint}}")],
            "percentunit",
        ),
        panel(
            "Network",
            [
                Query('rate(node_network_receive_bytes_total{device!~"lo|veth.*"}[5m])', "in {{device}}"),
                Query('rate(node_network_transmit_bytes_total{device!~"lo|veth.*"}[5m])', "out {{device}}"),
            ],
            "Bps",
        ),
        panel("Swap used", [Query("node_memory_SwapTotal_bytes - node_memory_SwapFree_bytes", "swap")], "bytes"),
    ]
    if spec.backup_interval_s is not None:
        panels.append(panel("Newest backup age", [Query(_BACKUP_AGE, "{{store}}")], "s"))
    if spec.pitr:
        panels += _pitr_panels()
    return dashboard("keel-host", "Host", panels)


def _containers() -> dict[str, Any]:
    by_service = "sum by (container_label_com_docker_swarm_service_name)"
    legend = "{{container_label_com_docker_swarm_service_name}}"
    return dashboard(
        "keel-containers",
        "Containers",
        [
            panel("Memory (working set)", [Query(f"{by_service} ({_WORKING_SET})", legend)], "bytes"),
            panel(
                "Memory of limit (alert at 80%)",
                [
                    Query(
                        f"{_WORKING_SET} / (container_spec_memory_limit_bytes{{{_SWARM}}} > 0)",
                        "{{name}}",
                    )
                ],
                "percentunit",
            ),
            panel("CPU", [Query(f"{by_service} (rate({_CPU}[5m]))", legend)], "short"),
            panel(
                "New tasks per slot (30m)",
                [Query("changes(keel:task_slot_start_time_seconds[30m])", "{{service}}.{{slot}}")],
                "short",
            ),
            panel(
                "Network in",
                [Query(f"{by_service} (rate(container_network_receive_bytes_total{{{_SWARM}}}[5m]))", legend)],
                "Bps",
            ),
            panel(
                "Network out",
                [Query(f"{by_service} (rate(container_network_transmit_bytes_total{{{_SWARM}}}[5m]))", legend)],
                "Bps",
            ),
        ],
    )


def _proxy() -> dict[str, Any]:
    responses = "proxy_http_response_count_total"
    return dashboard(
        "keel-proxy",
        "Proxy",
        [
            panel("Requests", [Query("rate(nginx_http_requests_total[5m])", "requests/s")], "reqps"),
            panel(
                "Connections",
                [
                    Query("nginx_connections_active", "active"),
                    Query("nginx_connections_reading", "reading"),
                    Query("nginx_connections_writing", "writing"),
                    Query("nginx_connections_waiting", "waiting"),
                ],
                "short",
            ),
            panel("Responses by status", [Query(f"sum by (status) (rate({responses}[5m]))", "{{status}}")], "reqps"),
            panel(
                "5xx ratio",
                [Query(f'sum(rate({responses}{{status=~"5.."}}[5m])) / sum(rate({responses}[5m]))', "5xx")],
                "percentunit",
            ),
            panel(
                "Response time p50 / p95",
                [
                    Query(f"histogram_quantile(0.5, {_LATENCY_BUCKETS})", "p50"),
                    Query(f"histogram_quantile(0.95, {_LATENCY_BUCKETS})", "p95"),
                ],
                "s",
            ),
            panel(
                "Certificate days left",
                [Query("(probe_ssl_earliest_cert_expiry - time()) / 86400", "{{instance}}")],
                "d",
                kind="stat",
            ),
        ],
    )


def _pitr_panels() -> list[dict[str, Any]]:
    """What each point-in-time drill achieved against the targets (a month: drills are daily), and
    how far the WAL archive is behind now."""
    drills = panel(
        "Point-in-time drills: recovery point and time",
        [
            Query("keel_pitr_drill_rpo_seconds", "{{store}} RPO achieved"),
            Query("keel_pitr_rpo_target_seconds", "{{store}} RPO target"),
            Query("keel_pitr_drill_rto_seconds", "{{store}} RTO achieved"),
            Query("keel_pitr_rto_target_seconds", "{{store}} RTO target"),
        ],
        "s",
    )
    drills["timeFrom"] = "30d"
    lag = panel(
        "WAL archive lag", [Query("time() - keel_pitr_archive_last_success_timestamp_seconds", "{{store}}")], "s"
    )
    # 16 MiB segments that archive_command has not taken yet, on the data disk.
    waiting = panel(
        "WAL waiting to be archived",
        [Query("keel_pitr_archive_pending_segments * 16 * 1024 * 1024", "{{store}}")],
        "bytes",
    )
    return [drills, lag, waiting]
