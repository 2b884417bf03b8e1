"""Grafana's provisioning and dashboards, from an ObservabilitySpec to text.

One Prometheus datasource with a fixed uid (DATASOURCE_UID), so dashboards can name it and
survive Grafana's database being rebuilt; one file provider for the dashboards. Dashboards
are generated here rather than kept as exported JSON: every panel is built by one function
that always sets the datasource, and the Postgres and Redis dashboards exist only when the
stack has such a store.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import yaml

from render.observability import GRAFANA_PORT, PROMETHEUS_PORT, ObservabilitySpec

DATASOURCE_UID = "keel-prometheus"
DATASOURCE = {"type": "prometheus", "uid": DATASOURCE_UID}
PROVISIONING_DIR = "/etc/grafana/provisioning"
DATASOURCES_FILE = f"{PROVISIONING_DIR}/datasources/keel.yml"
DASHBOARD_PROVIDER_FILE = f"{PROVISIONING_DIR}/dashboards/keel.yml"
DASHBOARDS_DIR = "/etc/grafana/dashboards"
ADMIN_PASSWORD_FILE = "/run/secrets/grafana-admin-password"
DATA_DIR = "/var/lib/grafana"
"""Grafana's database and plugins (GF_PATHS_DATA's default): a volume."""
SCHEMA_VERSION = 39
_DISKS = 'fstype=~"ext[234]|xfs|btrfs|zfs"'
_SWARM = 'container_label_com_docker_swarm_service_name!=""'
_MEMORY_USED = "1 - node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes"
_DISK_USED = f"1 - node_filesystem_avail_bytes{{{_DISKS}}} / node_filesystem_size_bytes{{{_DISKS}}}"
_BACKUP_AGE = "time() - keel_backup_last_success_timestamp_seconds"
_WORKING_SET = f"container_memory_working_set_bytes{{{_SWARM}}}"
_CPU = f"container_cpu_usage_seconds_total{{{_SWARM}}}"
_LATENCY_BUCKETS = "sum by (le) (rate(proxy_http_response_time_seconds_hist_bucket[5m]))"
_PG_HIT = "sum by (job) (rate(pg_stat_database_blks_hit[5m]))"


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
    if spec.postgres:
        boards.append(_postgres())
    if spec.redis:
        boards.append(_redis())
    return {f"{board['uid'].removeprefix('keel-')}.json": json.dumps(board, indent=2) + "\n" for board in boards}


# ----------------------------------------------------------------------------- building blocks


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""


def _panel(title: str, queries: list[Query], unit: str, *, kind: str = "timeseries", width: int = 12) -> dict[str, Any]:
    return {
        "type": kind,
        "title": title,
        "datasource": DATASOURCE,
        "gridPos": {"h": 8, "w": width, "x": 0, "y": 0},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}} if kind == "timeseries" else {},
        "targets": [
            {"datasource": DATASOURCE, "refId": chr(ord("A") + index), "expr": q.expr, "legendFormat": q.legend}
            for index, q in enumerate(queries)
        ],
    }


def _dashboard(uid: str, title: str, panels: list[dict[str, Any]]) -> dict[str, Any]:
    # Lay panels out two per row, in order.
    x = y = 0
    for index, panel in enumerate(panels, start=1):
        width = panel["gridPos"]["w"]
        if x + width > 24:
            x, y = 0, y + 8
        panel["gridPos"].update(x=x, y=y)
        panel["id"] = index
        x += width
    return {
        "uid": uid,
        "title": title,
        "tags": ["keel"],
        "timezone": "utc",
        "editable": False,
        "refresh": "30s",
        "schemaVersion": SCHEMA_VERSION,
        "time": {"from": "now-6h", "to": "now"},
        "panels": panels,
    }


def _host(spec: ObservabilitySpec) -> dict[str, Any]:
    panels = [
        _panel("CPU busy", [Query('1 - avg(rate(node_cpu_seconds_total{mode="idle"}[5m]))', "cpu")], "percentunit"),
        _panel("Memory used", [Query(_MEMORY_USED, "memory")], "percentunit"),
        _panel("Load", [Query("node_load1", "1m"), Query("node_load5", "5m"), Query("node_load15", "15m")], "short"),
        _panel(
            "Disk used",
            [Query(_DISK_USED, "{{mountpoint}}")],
            "percentunit",
        ),
        _panel(
            "Network",
            [
                Query('rate(node_network_receive_bytes_total{device!~"lo|veth.*"}[5m])', "in {{device}}"),
                Query('rate(node_network_transmit_bytes_total{device!~"lo|veth.*"}[5m])', "out {{device}}"),
            ],
            "Bps",
        ),
        _panel("Swap used", [Query("node_memory_SwapTotal_bytes - node_memory_SwapFree_bytes", "swap")], "bytes"),
    ]
    if spec.backup_interval_s is not None:
        panels.append(_panel("Newest backup age", [Query(_BACKUP_AGE, "{{store}}")], "s"))
    return _dashboard("keel-host", "Host", panels)


def _containers() -> dict[str, Any]:
    by_service = "sum by (container_label_com_docker_swarm_service_name)"
    legend = "{{container_label_com_docker_swarm_service_name}}"
    return _dashboard(
        "keel-containers",
        "Containers",
        [
            _panel("Memory (working set)", [Query(f"{by_service} ({_WORKING_SET})", legend)], "bytes"),
            _panel(
                "Memory of limit (alert at 80%)",
                [
                    Query(
                        f"{_WORKING_SET} / (container_spec_memory_limit_bytes{{{_SWARM}}} > 0)",
                        "{{name}}",
                    )
                ],
                "percentunit",
            ),
            _panel("CPU", [Query(f"{by_service} (rate({_CPU}[5m]))", legend)], "short"),
            _panel(
                "New tasks per slot (30m)",
                [Query("changes(keel:task_slot_start_time_seconds[30m])", "{{service}}.{{slot}}")],
                "short",
            ),
            _panel(
                "Network in",
                [Query(f"{by_service} (rate(container_network_receive_bytes_total{{{_SWARM}}}[5m]))", legend)],
                "Bps",
            ),
            _panel(
                "Network out",
                [Query(f"{by_service} (rate(container_network_transmit_bytes_total{{{_SWARM}}}[5m]))", legend)],
                "Bps",
            ),
        ],
    )


def _proxy() -> dict[str, Any]:
    responses = "proxy_http_response_count_total"
    return _dashboard(
        "keel-proxy",
        "Proxy",
        [
            _panel("Requests", [Query("rate(nginx_http_requests_total[5m])", "requests/s")], "reqps"),
            _panel(
                "Connections",
                [
                    Query("nginx_connections_active", "active"),
                    Query("nginx_connections_reading", "reading"),
                    Query("nginx_connections_writing", "writing"),
                    Query("nginx_connections_waiting", "waiting"),
                ],
                "short",
            ),
            _panel("Responses by status", [Query(f"sum by (status) (rate({responses}[5m]))", "{{status}}")], "reqps"),
            _panel(
                "5xx ratio",
                [Query(f'sum(rate({responses}{{status=~"5.."}}[5m])) / sum(rate({responses}[5m]))', "5xx")],
                "percentunit",
            ),
            _panel(
                "Response time p50 / p95",
                [
                    Query(f"histogram_quantile(0.5, {_LATENCY_BUCKETS})", "p50"),
                    Query(f"histogram_quantile(0.95, {_LATENCY_BUCKETS})", "p95"),
                ],
                "s",
            ),
            _panel(
                "Certificate days left",
                [Query("(probe_ssl_earliest_cert_expiry - time()) / 86400", "{{instance}}")],
                "d",
                kind="stat",
            ),
        ],
    )


def _postgres() -> dict[str, Any]:
    return _dashboard(
        "keel-postgres",
        "PostgreSQL",
        [
            _panel("Up", [Query("pg_up", "{{job}}")], "short", kind="stat"),
            _panel("Connections", [Query("sum by (job, state) (pg_stat_activity_count)", "{{job}} {{state}}")], "none"),
            _panel(
                "Transactions",
                [
                    Query("sum by (job) (rate(pg_stat_database_xact_commit[5m]))", "{{job}} commit"),
                    Query("sum by (job) (rate(pg_stat_database_xact_rollback[5m]))", "{{job}} rollback"),
                ],
                "ops",
            ),
            _panel(
                "Cache hit ratio",
                [Query(f"{_PG_HIT} / ({_PG_HIT} + sum by (job) (rate(pg_stat_database_blks_read[5m])))", "{{job}}")],
                "percentunit",
            ),
            _panel("Locks", [Query("sum by (job, mode) (pg_locks_count)", "{{job}} {{mode}}")], "short"),
            _panel("Database size", [Query("pg_database_size_bytes", "{{job}} {{datname}}")], "bytes"),
        ],
    )


def _redis() -> dict[str, Any]:
    return _dashboard(
        "keel-redis",
        "Redis",
        [
            _panel("Up", [Query("redis_up", "{{job}}")], "short", kind="stat"),
            _panel(
                "Memory",
                [Query("redis_memory_used_bytes", "{{job}} used"), Query("redis_memory_max_bytes", "{{job}} max")],
                "bytes",
            ),
            _panel("Clients", [Query("redis_connected_clients", "{{job}}")], "short"),
            _panel("Commands", [Query("rate(redis_commands_processed_total[5m])", "{{job}}")], "ops"),
            _panel(
                "Hit ratio",
                [
                    Query(
                        "rate(redis_keyspace_hits_total[5m]) / (rate(redis_keyspace_hits_total[5m])"
                        " + rate(redis_keyspace_misses_total[5m]))",
                        "{{job}}",
                    )
                ],
                "percentunit",
            ),
            _panel("Evicted keys", [Query("rate(redis_evicted_keys_total[5m])", "{{job}}")], "ops"),
        ],
    )
