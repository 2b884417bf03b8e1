"""mealsync (seed 003) under the mock runtime: Spring Boot health and graceful shutdown, nginx
load balancing and limits, zero-downtime rollout with automatic rollback, 2 CPU / 2 GB."""

from __future__ import annotations

import json

import pytest

from tests.examples.example_helpers import (
    MIB,
    SERVICE,
    block,
    container,
    example_run,
    health,
    limits,
    location,
    nginx_conf,
    probe_url,
    role,
    service,
    service_config_text,
)
from tests.helpers import seconds, tag_of
from tools import mockrun

NAME = "mealsync"


@pytest.fixture(scope="module")
def run() -> mockrun.Run:
    return example_run(NAME)


@pytest.fixture(scope="module")
def conf(run: mockrun.Run) -> str:
    return nginx_conf(run)


def test_health_is_the_actuator_readiness_probe_every_30s_timeout_3s_start_60s(run):
    app = service(run, "app")
    assert probe_url(app) == "http://127.0.0.1:8080/actuator/health/readiness"
    check = health(app)
    assert (check["interval"], check["timeout"], check["startPeriod"], check["retries"]) == ("30s", "3s", "1m", 3)
    assert container(app)["env"]["MANAGEMENT_ENDPOINT_HEALTH_PROBES_ENABLED"] == "true"


def test_shutdown_is_graceful_for_30s_and_swarm_waits_longer_than_that(run):
    spec = container(service(run, "app"))
    assert spec["env"]["SERVER_SHUTDOWN"] == "graceful"
    assert spec["env"]["SPRING_LIFECYCLE_TIMEOUT_PER_SHUTDOWN_PHASE"] == "30s"
    assert spec["stopSignal"] == "SIGTERM"
    assert seconds(spec["stopGracePeriod"]) > 30


def test_nginx_balances_least_conn_over_at_least_two_replicas(run, conf):
    assert service(run, "app").inputs["mode"]["replicated"]["replicas"] >= 2
    upstream = block(conf, "upstream app")
    assert "least_conn;" in upstream
    # `resolve` follows every task of the service, so least_conn sees each replica.
    assert "server tasks.mealsync-app:8080 resolve" in upstream


def test_rate_limits_are_100_per_second_general_and_5_per_minute_on_login(conf):
    assert "limit_req_zone $binary_remote_addr zone=req_general:10m rate=100r/s;" in conf
    assert "limit_req_zone $binary_remote_addr zone=req_login:10m rate=5r/m;" in conf
    assert "limit_req zone=req_general burst=200 nodelay;" in location(conf, "/")
    assert "limit_req zone=req_login burst=3 nodelay;" in location(conf, "/api/auth/login")


def test_responses_are_gzipped(conf):
    assert "\n    gzip on;\n" in conf
    assert "application/json" in conf[conf.index("gzip_types") :].split(";", 1)[0]


def test_websockets_are_upgraded_on_ws(conf):
    ws = location(conf, "/ws")
    assert "proxy_set_header Upgrade $http_upgrade;" in ws
    assert "proxy_set_header Connection $connection_upgrade;" in ws
    assert "proxy_read_timeout 1h;" in ws
    assert "map $http_upgrade $connection_upgrade" in conf


def test_rollout_starts_the_new_task_first_and_rolls_back_on_failure(run):
    app = service(run, "app")
    update, rollback = app.inputs["updateConfig"], app.inputs["rollbackConfig"]
    assert (update["order"], update["failureAction"], update["parallelism"]) == ("start-first", "rollback", 1)
    assert update["maxFailureRatio"] == "0.0"
    # The new task must stay healthy past its start period before the old one stops.
    assert seconds(update["monitor"]) > 60
    assert rollback["order"] == "start-first"
    assert app.inputs["convergeConfig"]["timeout"].endswith("s"), "pulumi up waits and fails on a rollback"


def test_the_app_is_limited_to_2_cpus_and_2_gb(run):
    assert limits(service(run, "app")) == {"memoryBytes": 2048 * MIB, "nanoCpus": 2_000_000_000}


def test_the_image_is_pinned_to_a_commit_sha_from_a_private_registry(run):
    app = service(run, "app")
    repository, tag = tag_of(container(app)["image"]).rsplit(":", 1)
    assert repository == "ghcr.io/mealsync/mealsync-app" and len(tag) == 40 and int(tag, 16) >= 0
    registries = json.loads(run.one("pulumi:providers:docker", "host-docker").inputs["registryAuth"])
    assert [login["address"] for login in registries] == ["ghcr.io"]


def test_the_database_is_rds_so_no_database_container_runs(run):
    assert [s.name for s in run.of_type(SERVICE) if role(s) == "store"] == []
    mounted = {s["fileName"] for s in container(service(run, "app"))["secrets"]}
    assert mounted == {"/run/secrets/database_url", "/run/secrets/database_username", "/run/secrets/database_password"}
    # Spring reads those files as properties (configtree), so no *_FILE variables are needed.
    env = container(service(run, "app"))["env"]
    assert env["SPRING_CONFIG_IMPORT"] == "optional:configtree:/run/secrets/"
    assert not [key for key in env if key.endswith("_FILE")]


def test_prometheus_scrapes_the_actuator_endpoint(run):
    prometheus = service_config_text(run, "observability-prometheus-config")
    job = prometheus[prometheus.index("- job_name: app-app") :].split("- job_name:", 2)[1]
    assert "metrics_path: /actuator/prometheus" in job and "port: 8080" in job


def test_actuator_is_denied_at_the_proxy(conf: str):
    """A regex location wins over every plain prefix one (nginx checks regexes after the longest
    prefix unless it carries ^~): /actuator/env never reaches the / route. Served by a real nginx
    in tests/realtools/test_origin_live.py."""
    denial = 'location ~* "^/actuator(?:[/;]|$)" {'
    assert denial in conf
    assert conf[conf.index(denial) :].split("}", 1)[0].strip().endswith("return 404;")
    # Only ACME's challenge directory skips the regexes.
    assert [line.strip() for line in conf.splitlines() if "^~" in line] == [
        "location ^~ /.well-known/acme-challenge/ {"
    ] * conf.count("^~")
