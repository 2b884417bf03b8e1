"""spoon (seed 004) under the mock runtime: Next.js, tuned PostgreSQL 14, Redis, the whole
observability stack, and each of the seed's "Infrastructure Risks" closed."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from config import ConfigError, parse
from config.models import image_is_pinned
from stores.postgres.server import postgres_tuning
from tests.examples.example_helpers import (
    MIB,
    SECRET,
    SERVICE,
    config_values,
    container,
    example_run,
    is_pulumi_secret,
    limits,
    nginx_conf,
    probe_url,
    secret_text,
    service,
    service_config_text,
)
from tests.helpers import base_image, tag_of
from tools import mockrun

NAME = "spoon"
POSTGRES_DEFAULT_SHARED_BUFFERS = "128MB"


@pytest.fixture(scope="module")
def run() -> mockrun.Run:
    return example_run(NAME)


@pytest.fixture(scope="module")
def prometheus_yml(run: mockrun.Run) -> str:
    return service_config_text(run, "observability-prometheus-config")


def scrape_job(prometheus_yml: str, name: str) -> dict:
    jobs = yaml.safe_load(prometheus_yml)["scrape_configs"]
    return next(job for job in jobs if job["job_name"] == name)


def test_nextjs_listens_on_3000_limited_to_1_gb(run):
    nextjs = service(run, "nextjs")
    assert probe_url(nextjs).startswith("http://127.0.0.1:3000/")
    assert limits(nextjs)["memoryBytes"] == 1024 * MIB
    assert "server tasks.spoon-nextjs:3000 resolve" in nginx_conf(run)


def test_postgres_is_14_and_redis_is_7(run):
    # Archived (point-in-time recovery, on in prod): the store's image is built from the official one.
    db_image = base_image(run, container(service(run, "db"))["image"])
    assert re.fullmatch(r"postgres:14\.[0-9]+-alpine", tag_of(db_image))
    assert re.fullmatch(r"redis:7\.[0-9.]+-alpine", tag_of(container(service(run, "cache"))["image"]))


def test_the_seeds_redis_6_is_refused_with_the_reason_before_anything_is_created():
    values = config_values(NAME)
    services = dict(values["keel:services"])
    services["cache"] = {**services["cache"], "image": "redis:6.2.16-alpine"}
    raw = {key.split(":", 1)[1]: value for key, value in {**values, "keel:services": services}.items()}
    with pytest.raises(ConfigError) as refused:
        parse({key: value if isinstance(value, str) else json.dumps(value) for key, value in raw.items()})
    assert str(refused.value) == (
        'services/cache/image: "redis:6.2.16-alpine" is Redis 6, whose server refuses the redis.conf keel '
        "renders (multi-part AOF); expected Redis 7 or later, which reads the older RDB and AOF files as they are"
    )


def test_prometheus_keeps_30_days(run):
    args = container(run.one(SERVICE, "observability-prometheus"))["args"]
    assert "--storage.tsdb.retention.time=30d" in args


def test_prometheus_scrapes_nextjs_on_api_metrics(prometheus_yml):
    job = scrape_job(prometheus_yml, "app-nextjs")
    assert job["metrics_path"] == "/api/metrics"
    assert job["dns_sd_configs"] == [
        {"names": ["tasks.spoon-nextjs"], "type": "A", "port": 3000, "refresh_interval": "30s"}
    ]


@pytest.mark.parametrize(
    ("job", "target"),
    [
        ("postgres-db", "tasks.spoon-db-exporter"),
        ("redis-cache", "tasks.spoon-cache-exporter"),
        ("node", "tasks.spoon-node-exporter"),
        ("cadvisor", "tasks.spoon-cadvisor"),
    ],
)
def test_prometheus_scrapes_each_exporter_and_cadvisor(prometheus_yml, job, target):
    assert scrape_job(prometheus_yml, job)["dns_sd_configs"][0]["names"] == [target]


def test_cadvisor_and_the_exporters_run(run):
    names = {s.inputs["name"] for s in run.of_type(SERVICE)}
    assert {"spoon-cadvisor", "spoon-node-exporter", "spoon-db-exporter", "spoon-cache-exporter"} <= names


def test_grafana_listens_on_3100_with_its_admin_password_from_a_secret(run):
    grafana = container(run.one(SERVICE, "observability-grafana"))
    assert grafana["env"]["GF_SERVER_HTTP_PORT"] == "3100"
    assert grafana["env"]["GF_SECURITY_ADMIN_PASSWORD__FILE"] == "/run/secrets/grafana-admin-password"
    assert "GF_SECURITY_ADMIN_PASSWORD" not in grafana["env"]
    secret = run.one(SECRET, "observability-grafana-admin-password")
    assert secret_text(secret) == "placeholder-secret-grafana_admin_password-0123456789abcdef0123456789"
    assert is_pulumi_secret(secret, "data")
    assert "server tasks.spoon-grafana:3100 resolve" in nginx_conf(run)
    assert "server_name grafana.spoon.example;" in nginx_conf(run)


# ---------------------------------------------------------------- Infrastructure Risks


def test_risk_1_unbounded_resources_every_container_has_a_memory_limit(run):
    unbounded = [s.urn for s in run.of_type(SERVICE) if not limits(s).get("memoryBytes")]
    assert unbounded == []
    assert limits(service(run, "nextjs"))["memoryBytes"] == 1024 * MIB
    assert limits(service(run, "db"))["memoryBytes"] == 2048 * MIB


def test_risk_1_the_limits_fit_the_host_so_none_can_take_the_server_down(run):
    budget = run.outputs["memory_budget"]
    assert budget["host_memory_mb"] == 8192
    assert budget["total_mb"] <= budget["allowed_mb"] == int(8192 * 0.9)


def test_risk_2_every_container_rotates_json_logs_at_10m_keeping_3(run):
    for svc in run.of_type(SERVICE):
        assert svc.inputs["taskSpec"]["logDriver"] == {
            "name": "json-file",
            "options": {"max-size": "10m", "max-file": "3"},
        }, svc.urn


def test_risk_2_the_docker_daemon_default_rotates_too(run):
    user_data = run.one("hcloud:index/server:Server").inputs["userData"]
    assert '"log-driver": "json-file"' in user_data
    assert '"max-size": "10m"' in user_data and '"max-file": "3"' in user_data


def test_risk_3_postgres_runs_a_config_tuned_for_its_memory_not_the_default(run):
    conf = service_config_text(run, "db-postgresql.conf")
    shared_buffers = re.search(r"^shared_buffers = (\S+)$", conf, re.MULTILINE)
    assert shared_buffers and shared_buffers.group(1) != POSTGRES_DEFAULT_SHARED_BUFFERS
    tuning = postgres_tuning(2048, 100)
    assert shared_buffers.group(1) == f"{tuning.shared_buffers_mb}MB" == "512MB"
    assert f"effective_cache_size = {tuning.effective_cache_size_mb}MB" in conf
    # args, not commands: the official entrypoint must run (initdb, then drop root).
    assert container(service(run, "db"))["args"] == [
        "postgres",
        "-c",
        "config_file=/etc/postgresql/postgresql.conf",
    ]


def test_every_image_is_pinned(run):
    unpinned = [container(s)["image"] for s in run.of_type(SERVICE) if not image_is_pinned(container(s)["image"])]
    assert unpinned == []


def test_nextjs_reaches_postgres_and_redis_by_url_secrets(run):
    assert secret_text(run.one(SECRET, "nextjs-database_url")).startswith("postgresql://spoon_admin:")
    assert secret_text(run.one(SECRET, "nextjs-database_url")).endswith("@db:5432/spoon")
    assert secret_text(run.one(SECRET, "nextjs-redis_url")).endswith("@cache:6379/0")
