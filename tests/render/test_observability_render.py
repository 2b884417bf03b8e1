"""The monitoring renderers: golden files, and what each file must contain for a given stack.

Golden files live in tests/golden/observability/<case>/; rewrite them with UPDATE_GOLDEN=1.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from config import capacity, crossref
from config.errors import ConfigError
from render import grafana as gf
from render import observability as obs
from stores.postgres import kind as postgres
from stores.redis import kind as redis
from stores.redis.model import RedisSpec
from tests.helpers import BACKUP_ON as BACKUP
from tests.helpers import EMAIL_ALERTS as EMAIL
from tests.helpers import observability_config as stack_config
from tests.helpers import observability_spec as spec_of

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "observability"


def rendered_files(spec: obs.ObservabilitySpec) -> dict[str, str]:
    files = {
        "prometheus.yml": obs.render_prometheus_yml(spec),
        "rules/keel.yml": obs.render_alert_rules(spec),
        "alertmanager.yml": obs.render_alertmanager_yml(spec),
        "blackbox.yml": obs.render_blackbox_yml(spec),
        "nginxlog.yml": obs.render_nginxlog_yml(spec),
        "grafana/datasources.yml": gf.render_datasources(spec),
        "grafana/dashboard-provider.yml": gf.render_dashboard_provider(),
    }
    files.update({f"grafana/dashboards/{name}": text for name, text in gf.render_dashboards(spec).items()})
    return files


CASES = {
    # prod: the reference topology with email alerts and hourly backups.
    "prod": lambda: stack_config("prod", {"keel:backup": BACKUP}, alerts=EMAIL),
    # dev: no DNS (default certificate, localhost URL), no receiver, no backups.
    "dev": lambda: stack_config("dev"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_rendered_files_match_golden(case):
    files = rendered_files(spec_of(CASES[case]()))
    directory = GOLDEN / case
    if os.environ.get("UPDATE_GOLDEN"):
        for name, text in files.items():
            (directory / name).parent.mkdir(parents=True, exist_ok=True)
            (directory / name).write_text(text)
    on_disk = sorted(str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file())
    assert on_disk == sorted(files), "golden files and rendered files differ in name (UPDATE_GOLDEN=1 rewrites)"
    for name, text in files.items():
        assert text == (directory / name).read_text(), f"{case}/{name} differs from its golden file"


def test_every_store_and_metrics_app_gets_a_dns_sd_job_over_its_tasks():
    spec = spec_of(stack_config("prod"))
    config = yaml.safe_load(obs.render_prometheus_yml(spec))
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert sorted(jobs) == sorted(
        [
            "prometheus",
            "alertmanager",
            "grafana",
            "node",
            "cadvisor",
            "nginx",
            "nginxlog",
            "blackbox",
            "postgres-db",
            "redis-cache",
            "app-api",
            "tls",
        ]
    )
    assert jobs["postgres-db"]["dns_sd_configs"] == [
        {"names": ["tasks.shop-db-exporter"], "type": "A", "port": 9187, "refresh_interval": "30s"}
    ]
    assert jobs["redis-cache"]["dns_sd_configs"][0]["names"] == ["tasks.shop-cache-exporter"]
    # api sets metrics_path; web does not, so web is not scraped.
    assert jobs["app-api"]["dns_sd_configs"][0] == {
        "names": ["tasks.shop-api"],
        "type": "A",
        "port": 3000,
        "refresh_interval": "30s",
    }
    assert "metrics_path" not in jobs["app-api"]  # /metrics is the default
    assert config["alerting"]["alertmanagers"][0]["dns_sd_configs"][0]["names"] == ["tasks.shop-alertmanager"]


def test_app_with_a_custom_metrics_path_is_scraped_there():
    cfg = stack_config("prod", {"keel:services": {"api": {"metrics_path": "/api/metrics"}}})
    jobs = {j["job_name"]: j for j in yaml.safe_load(obs.render_prometheus_yml(spec_of(cfg)))["scrape_configs"]}
    assert jobs["app-api"]["metrics_path"] == "/api/metrics"


def test_stack_without_stores_has_no_store_jobs_or_store_dashboards():
    cfg = stack_config("prod")
    apps_only = cfg.model_copy(update={"services": {"web": cfg.services["web"]}})
    spec = spec_of(apps_only)
    jobs = [j["job_name"] for j in yaml.safe_load(obs.render_prometheus_yml(spec))["scrape_configs"]]
    assert not [j for j in jobs if j.startswith(("postgres-", "redis-", "app-"))]
    assert sorted(gf.render_dashboards(spec)) == ["containers.json", "host.json", "proxy.json"]
    assert sorted(gf.render_dashboards(spec_of(cfg))) == [
        "containers.json",
        "host.json",
        "postgres.json",
        "proxy.json",
        "redis.json",
    ]


def test_retention_is_a_command_line_flag_defaulting_to_30_days():
    assert "--storage.tsdb.retention.time=30d" in obs.prometheus_args(spec_of(stack_config("prod")))
    assert "--storage.tsdb.retention.time=90d" in obs.prometheus_args(spec_of(stack_config("prod", retention_days=90)))


def test_tls_probe_per_public_hostname_with_its_sni():
    spec = spec_of(stack_config("prod"))
    blackbox = yaml.safe_load(obs.render_blackbox_yml(spec))
    assert blackbox["modules"]["tls_0"]["tcp"]["tls_config"] == {
        "insecure_skip_verify": True,
        "server_name": "example.com",
    }
    assert blackbox["modules"]["tls_1"]["tcp"]["tls_config"]["server_name"] == "www.example.com"
    jobs = {j["job_name"]: j for j in yaml.safe_load(obs.render_prometheus_yml(spec))["scrape_configs"]}
    assert jobs["tls"]["static_configs"] == [
        {"targets": ["shop-proxy:443"], "labels": {"module": "tls_0", "hostname": "example.com"}},
        {"targets": ["shop-proxy:443"], "labels": {"module": "tls_1", "hostname": "www.example.com"}},
    ]


def test_dev_probes_the_default_certificate_on_the_dev_https_port():
    spec = spec_of(stack_config("dev"))
    assert spec.probes == (obs.TlsProbe("tls_0", None),)
    assert spec.proxy_https_port == 8443
    assert "server_name" not in yaml.safe_load(obs.render_blackbox_yml(spec))["modules"]["tls_0"]["tcp"]["tls_config"]
    assert spec.grafana.root_url == "https://localhost:8443/grafana/"


def test_alert_rules_have_a_for_a_severity_and_a_summary():
    rules = yaml.safe_load(obs.render_alert_rules(spec_of(stack_config("prod", {"keel:backup": BACKUP}))))
    alerts = [rule for group in rules["groups"] for rule in group["rules"] if "alert" in rule]
    assert sorted(a["alert"] for a in alerts) == sorted(
        [
            "ContainerMemoryHigh",
            "RootDiskFull",
            "DataVolumeFull",
            "ProxyErrorRatioHigh",
            "ServiceRestarting",
            "TargetDown",
            "TargetMissing",
            "CertificateExpiringSoon",
            "ProxyProbeFailed",
            "BackupTooOld",
            "BackupFailed",
            "BackupCheckFailed",
            "BackupCheckTooOld",
            "BackupNotReporting",
            # prod archives its PostgreSQL store's WAL by default (backup/pitr).
            "PitrArchiveLagging",
            "PitrWalPilingUp",
            "PitrBaseBackupTooOld",
            "PitrDrillFailed",
            "PitrDrillTooOld",
            "PitrRecoveryPointAboveTarget",
            "PitrRecoveryTimeAboveTarget",
            "Watchdog",
            "OomKill",
            "RebootRequired",
            "ClockNotSynchronised",
            "DatabaseDown",
            "RedisDown",
            "ServiceTasksBelowDesired",
            "SwarmReportStale",
            "ResticCheckFailed",
            "RestoreDrillFailed",
            # The backups share the scheduler, which may skip a run whose previous one is still going.
            "JobRunSkipped",
        ]
    )
    for alert in alerts:
        assert alert["for"], alert["alert"]
        # The Watchdog is a heartbeat, routed to the dead-man's switch only, never a notification.
        expected = ("none",) if alert["alert"] == "Watchdog" else ("warning", "critical")
        assert alert["labels"]["severity"] in expected, alert["alert"]
        assert alert["annotations"]["summary"], alert["alert"]


def test_backup_alerts_use_the_backup_jobs_metric_names_and_exist_only_with_backups():
    with_backup = obs.render_alert_rules(spec_of(stack_config("prod", {"keel:backup": BACKUP})))
    for metric in (
        "keel_backup_last_success_timestamp_seconds",
        "keel_backup_schedule_interval_seconds",
        "keel_backup_last_run_success",
    ):
        assert metric in with_backup
    without = obs.render_alert_rules(spec_of(stack_config("prod", {"keel:backup": {"enabled": False}})))
    assert "keel_backup" not in without


def test_backup_not_reporting_waits_twice_the_longest_schedule_gap():
    daily = {"keel:backup": {**BACKUP, "schedule": "30 2 * * *"}}
    rules = yaml.safe_load(obs.render_alert_rules(spec_of(stack_config("prod", daily))))
    (missing,) = [r for g in rules["groups"] for r in g["rules"] if r.get("alert") == "BackupNotReporting"]
    assert missing["for"] == "48h"


WATCHDOG_NOWHERE = {"name": "watchdog-nowhere"}


def test_alertmanager_without_receiver_routes_to_a_null_receiver():
    config = yaml.safe_load(obs.render_alertmanager_yml(spec_of(stack_config("prod"))))
    assert config["route"]["receiver"] == "null"
    assert config["receivers"] == [{"name": "null"}, WATCHDOG_NOWHERE]


def test_the_watchdog_goes_to_the_heartbeat_url_every_minute_and_nowhere_else():
    alerts = {"kind": "email", **EMAIL, "heartbeat_url_secret": "alert_heartbeat"}
    spec = spec_of(stack_config("prod", alerts=alerts))
    config = yaml.safe_load(obs.render_alertmanager_yml(spec))
    (watchdog,) = config["route"]["routes"]
    assert watchdog == {
        "matchers": ['alertname="Watchdog"'],
        "receiver": "heartbeat",
        "group_wait": "0s",
        "group_interval": "1m",
        "repeat_interval": "1m",
    }
    assert config["receivers"][-1] == {
        "name": "heartbeat",
        "webhook_configs": [{"url_file": obs.HEARTBEAT_URL_FILE, "send_resolved": False}],
    }
    assert spec.needs_egress
    # Without a heartbeat URL the Watchdog still never reaches the e-mail receiver.
    plain = yaml.safe_load(obs.render_alertmanager_yml(spec_of(stack_config("prod", alerts=EMAIL))))
    assert plain["route"]["routes"][0]["receiver"] == "watchdog-nowhere"
    assert plain["receivers"][-1] == WATCHDOG_NOWHERE


def test_a_heartbeat_alone_needs_the_egress_network():
    assert spec_of(stack_config("prod", alerts={"kind": "none", "heartbeat_url_secret": "hb"})).needs_egress
    assert not spec_of(stack_config("prod")).needs_egress


def test_alertmanager_email_reads_its_smtp_password_from_a_file():
    config = yaml.safe_load(obs.render_alertmanager_yml(spec_of(stack_config("prod", alerts=EMAIL))))
    assert config["route"]["receiver"] == "email"
    assert config["receivers"] == [
        {
            "name": "email",
            "email_configs": [
                {
                    "to": "ops@example.com",
                    "from": "alerts@example.com",
                    "smarthost": "smtp.example.com:587",
                    "auth_username": "alerts",
                    "auth_password_file": obs.SMTP_PASSWORD_FILE,
                    "require_tls": True,
                    "send_resolved": True,
                }
            ],
        },
        WATCHDOG_NOWHERE,
    ]


def test_alertmanager_webhook_reads_its_url_from_a_file():
    spec = spec_of(stack_config("prod", alerts={"kind": "webhook", "webhook_url_secret": "alert_hook"}))
    config = yaml.safe_load(obs.render_alertmanager_yml(spec))
    assert config["route"]["receiver"] == "webhook"
    assert config["receivers"] == [
        {"name": "webhook", "webhook_configs": [{"url_file": obs.WEBHOOK_URL_FILE, "send_resolved": True}]},
        WATCHDOG_NOWHERE,
    ]


def test_grafana_provisioning_parses_and_names_the_fixed_datasource_uid():
    spec = spec_of(stack_config("prod"))
    datasources = yaml.safe_load(gf.render_datasources(spec))
    assert datasources["apiVersion"] == 1
    (prometheus,) = datasources["datasources"]
    assert (prometheus["uid"], prometheus["type"], prometheus["url"]) == (
        gf.DATASOURCE_UID,
        "prometheus",
        "http://shop-prometheus:9090",
    )
    provider = yaml.safe_load(gf.render_dashboard_provider())
    assert provider["providers"][0]["options"]["path"] == gf.DASHBOARDS_DIR


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_dashboard_panel_and_query_uses_the_provisioned_datasource(case):
    dashboards = gf.render_dashboards(spec_of(CASES[case]()))
    uids = set()
    for name, text in dashboards.items():
        board = json.loads(text)
        uids.add(board["uid"])
        assert board["panels"], name
        for panel in board["panels"]:
            assert panel["datasource"] == {"type": "prometheus", "uid": gf.DATASOURCE_UID}, f"{name}: {panel['title']}"
            assert panel["targets"], f"{name}: {panel['title']} has no query"
            for target in panel["targets"]:
                assert target["datasource"]["uid"] == gf.DATASOURCE_UID, f"{name}: {panel['title']}"
                assert target["expr"].strip(), f"{name}: {panel['title']}"
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), f"{name}: panel ids repeat"
    assert len(uids) == len(dashboards), "dashboard uids repeat"


def test_grafana_sub_path_and_own_host_settings():
    path_env = gf.grafana_env(spec_of(stack_config("prod")))
    assert path_env["GF_SERVER_SERVE_FROM_SUB_PATH"] == "true"
    assert path_env["GF_SERVER_ROOT_URL"] == "https://example.com/grafana/"
    dns = {"keel:dns": {"hostnames": ["example.com", "grafana.example.com"]}}
    host_spec = spec_of(stack_config("prod", dns, grafana_host="grafana.example.com"))
    host_env = gf.grafana_env(host_spec)
    assert "GF_SERVER_SERVE_FROM_SUB_PATH" not in host_env
    assert host_env["GF_SERVER_ROOT_URL"] == "https://grafana.example.com/"
    assert host_spec.grafana.host == "grafana.example.com" and host_spec.grafana.path_prefix is None


def test_access_log_directive_sends_json_lines_to_the_log_exporter():
    spec = spec_of(stack_config("prod"))
    assert obs.nginx_access_log_directive(spec, "keel_json") == (
        "access_log syslog:server=shop-nginxlog-exporter:5531,tag=nginx,severity=info keel_json;"
    )
    exporter = yaml.safe_load(obs.render_nginxlog_yml(spec))
    (namespace,) = exporter["namespaces"]
    assert namespace["parser"] == "json"
    assert namespace["source"]["syslog"] == {
        "listen_address": "udp://0.0.0.0:5531",
        "format": "rfc3164",
        "tags": ["nginx"],
    }


def test_redis_exporter_without_password_runs_the_binary_directly():
    spec = RedisSpec(kind="redis")
    assert redis.exporter_container(spec, "shop-cache", None, None).command == (
        "/redis_exporter",
        "--redis.addr=redis://shop-cache:6379",
    )


def test_a_metrics_path_without_a_port_is_reported_with_its_key_path():
    """The path's form is the model's (config.grammar); that a port exists to scrape is crossref's."""
    cfg = stack_config("prod")
    changed = cfg.services["api"].model_copy(update={"metrics_path": "/metrics", "port": None})
    routes = [route for route in cfg.proxy.routes if route.service != "api"]
    bad = cfg.model_copy(
        update={
            "services": {**cfg.services, "api": changed},
            "proxy": cfg.proxy.model_copy(update={"routes": routes}),
        }
    )
    with pytest.raises(ConfigError) as caught:
        crossref.check(bad)
    assert "services/api/metrics_path: is set but the service has no port to scrape; set services/api/port" in str(
        caught.value
    )


def test_reference_topology_with_monitoring_and_backups_fits_a_4gb_host():
    cfg = stack_config("staging", {"keel:backup": BACKUP})  # parse runs the capacity check
    plan = capacity.budget(cfg)
    assert cfg.host.memory_mib == 4096
    assert plan.total_mb <= plan.allowed_mb, plan.as_output()
    monitoring = sum(capacity.OBSERVABILITY_LIMITS_MB.values()) + postgres.EXPORTER_MB + redis.EXPORTER_MB
    assert {line.name: line.memory_mb for line in plan.lines}.keys() >= set(capacity.OBSERVABILITY_LIMITS_MB)
    assert monitoring == sum(
        line.memory_mb
        for line in plan.lines
        if line.name in capacity.OBSERVABILITY_LIMITS_MB or line.name.endswith("-exporter")
    )


def test_the_log_exporters_method_label_reads_the_method_the_proxy_logs():
    # The exporter's built-in method label splits a `request` field the proxy's JSON line does not
    # have (prometheus-nginxlog-exporter v1.11.0, pkg/relabeling/defaults.go): so it was empty.
    template = (Path(__file__).resolve().parents[2] / "render" / "templates" / "nginx.conf.j2").read_text()
    log_format = template[template.index("log_format keel_json") : template.index("access_log")]
    assert '"method":"$request_method"' in log_format and '"request":' not in log_format
    (namespace,) = yaml.safe_load(obs.render_nginxlog_yml(spec_of(stack_config("prod"))))["namespaces"]
    assert namespace["relabel_configs"] == [
        {
            "target_label": "method",
            "from": "method",
            "whitelist": ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"],
        }
    ]


def test_prometheus_retention_is_bounded_by_time_and_by_a_share_of_the_data_volume():
    prod = spec_of(stack_config("prod"))
    assert prod.data_volume_gib is not None
    args = obs.prometheus_args(prod)
    assert f"--storage.tsdb.retention.size={max(1, int(prod.data_volume_gib * 0.2))}GB" in args
    dev = obs.prometheus_args(spec_of(stack_config("dev")))
    assert not any(a.startswith("--storage.tsdb.retention.size") for a in dev)


def test_the_readme_lists_every_alert_rule():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    table = readme[readme.index("| alert | fires when |") : readme.index("### When the monitoring itself is down")]
    rules = yaml.safe_load(obs.render_alert_rules(spec_of(stack_config("prod", {"keel:backup": BACKUP}))))
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "alert" in rule:
                assert rule["alert"] in table, f"README's alert table does not list {rule['alert']}"
