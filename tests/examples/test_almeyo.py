"""almeyo (seed 000) under the mock runtime: the figures its infrastructure summary states."""

from __future__ import annotations

import pytest

from tests.examples.example_helpers import (
    MIB,
    SERVICE,
    VOLUME,
    container,
    example_run,
    health,
    limits,
    location,
    nginx_conf,
    probe_url,
    reservation,
    service,
    service_config_text,
)
from tools import mockrun

NAME = "almeyo"


@pytest.fixture(scope="module")
def run() -> mockrun.Run:
    return example_run(NAME)


@pytest.fixture(scope="module")
def conf(run: mockrun.Run) -> str:
    return nginx_conf(run)


@pytest.mark.parametrize(
    ("component", "limit_mb", "reserved_mb"),
    [("backend", 512, 256), ("frontend", 256, 128), ("proxy", 256, 128)],
)
def test_memory_limits_and_reservations_are_the_seeds_table(run, component, limit_mb, reserved_mb):
    svc = service(run, component)
    assert limits(svc)["memoryBytes"] == limit_mb * MIB, svc.urn
    assert reservation(svc)["memoryBytes"] == reserved_mb * MIB, svc.urn


def test_backend_health_is_api_health_every_30s_timeout_10s_start_40s_3_retries(run):
    backend = service(run, "backend")
    assert probe_url(backend) == "http://127.0.0.1:3000/api/health"
    check = health(backend)
    assert (check["interval"], check["timeout"], check["startPeriod"], check["retries"]) == ("30s", "10s", "40s", 3)


def test_frontend_health_is_root_every_30s_timeout_10s_start_30s_3_retries(run):
    frontend = service(run, "frontend")
    assert probe_url(frontend) == "http://127.0.0.1:80/"
    check = health(frontend)
    assert (check["interval"], check["timeout"], check["startPeriod"], check["retries"]) == ("30s", "10s", "30s", 3)


def test_backend_runs_in_production_on_3000_behind_the_proxy(run, conf):
    backend = service(run, "backend")
    assert container(backend)["env"]["NODE_ENV"] == "production"
    assert "server tasks.almeyo-backend:3000 resolve" in conf
    assert "server tasks.almeyo-frontend:80 resolve" in conf
    assert not backend.inputs["endpointSpec"].get("ports"), "only the proxy publishes ports"


def test_backend_volumes_are_mounted_at_the_documented_paths(run):
    mounts = {m["target"]: m for m in container(service(run, "backend"))["mounts"] if m["type"] == "volume"}
    assert {target: m["source"] for target, m in mounts.items()} == {
        "/app/data": "almeyo-backend-data-data",
        "/app/logs": "almeyo-backend-logs-data",
        "/app/public/images": "almeyo-backend-images-data",
    }


def test_the_three_volumes_are_protected_and_survive_removal(run):
    for store in ("backend-data", "backend-logs", "backend-images"):
        volume = run.one(VOLUME, f"{store}-data")
        assert volume.protect and volume.retain_on_delete, volume.urn


@pytest.mark.parametrize(
    ("path", "upstream", "cache_control"),
    [
        ("/", "frontend", "add_header Cache-Control $site_cache_control;"),
        ("/api/", "backend", 'add_header Cache-Control "no-store" always;'),
        ("/public/images/", "backend", 'add_header Cache-Control "public, max-age=604800";'),
    ],
)
def test_route_table_sends_each_path_to_its_service_with_its_cache_lifetime(conf, path, upstream, cache_control):
    body = location(conf, path)
    assert f"proxy_pass http://{upstream};" in body
    assert cache_control in body


def test_frontend_html_is_cached_1h_and_static_files_30d(conf):
    site_map = conf[conf.index("map $uri $site_cache_control") :].split("}", 1)[0]
    assert '\\.(?:css|js|mjs|map|woff2?|ttf|otf|eot|svg|png|jpe?g|gif|webp|avif|ico)$" "public, max-age=2592000";' in (
        site_map
    )
    assert 'default "public, max-age=3600";' in site_map


def test_api_is_limited_to_20_per_second_and_login_to_5_per_minute(conf):
    assert "limit_req_zone $binary_remote_addr zone=req_api:10m rate=20r/s;" in conf
    assert "limit_req_zone $binary_remote_addr zone=req_login:10m rate=5r/m;" in conf
    assert "limit_req zone=req_api " in location(conf, "/api/")
    assert "limit_req zone=req_login " in location(conf, "/api/auth/login")
    assert "limit_conn conn_per_ip 50;" in conf  # connection limiting per IP


def test_every_container_rotates_its_json_log_at_10m_keeping_3(run):
    for svc in run.of_type(SERVICE):
        assert svc.inputs["taskSpec"]["logDriver"] == {
            "name": "json-file",
            "options": {"max-size": "10m", "max-file": "3"},
        }, svc.urn


def test_backups_run_daily_and_include_the_sqlite_database(run):
    job = run.one(SERVICE, "backup-backup")
    labels = {item["label"]: item["value"] for item in job.inputs["labels"]}
    assert labels["swarm.cronjob.schedule"] == "0 3 * * *"
    assert "backup_sqlite backend-data almeyo.db" in service_config_text(run, "backup-backup.sh")


def test_tls_is_lets_encrypt_with_renewal_and_http_redirects_to_https(run, conf):
    acme = run.one(SERVICE, "proxy-acme")
    assert container(acme)["image"].startswith("neilpang/acme.sh:")
    http_server = conf[conf.index("listen 80 default_server") : conf.index("listen 443 ssl")]
    assert "return 301 https://$host$request_uri;" in http_server


def test_dotfiles_are_denied_and_security_headers_are_sent(conf):
    assert "location ~ /\\.(?!well-known/) {\n            deny all;" in conf
    for header in ("X-Frame-Options", "Content-Security-Policy", "X-Content-Type-Options"):
        assert f"add_header {header} " in location(conf, "/")


def test_logs_older_than_30_days_are_pruned_nightly_with_the_backends_image_and_volume(run):
    job = service(run, "job-prune-logs")
    backend = service(run, "backend")
    spec = container(job)
    labels = {item["label"]: item["value"] for item in job.inputs["labels"]}
    assert labels["swarm.cronjob.schedule"] == "30 2 * * *" and labels["keel.role"] == "job"
    assert spec["image"] == container(backend)["image"]
    assert spec["commands"][2:] == ["find", "/app/logs", "-type", "f", "-mtime", "+30", "-delete"]
    logs = [m for m in spec["mounts"] if m["target"] == "/app/logs"]
    assert logs == [m for m in container(backend)["mounts"] if m["target"] == "/app/logs"]
    assert limits(job)["memoryBytes"] == 64 * MIB


def test_mail_is_sent_by_a_worker_of_the_backends_release(run):
    mailer = service(run, "mailer")
    spec = container(mailer)
    labels = {item["label"]: item["value"] for item in mailer.inputs["labels"]}
    assert labels["keel.role"] == "worker"
    assert spec["image"] == container(service(run, "backend"))["image"]
    assert spec["commands"] == ["node", "dist/mailer.js"]
    assert spec["stopGracePeriod"] == "1m" and spec["env"]["SMTP_PASSWORD_FILE"] == "/run/secrets/smtp_password"
    assert "/tmp/heartbeat" in health(mailer)["tests"][1]
    assert not (mailer.inputs.get("endpointSpec") or {}).get("ports")
