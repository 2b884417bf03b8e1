"""isntgram (seed 001) under the mock runtime: GHCR images by commit SHA, a managed database,
Cloudflare in front, /health checks, on the cheapest server that fits."""

from __future__ import annotations

import json
import re

import pytest

from config import capacity, catalogue
from config.models import HcloudHostSpec
from tests.examples.example_helpers import (
    SECRET,
    SERVICE,
    container,
    example_run,
    health,
    is_pulumi_secret,
    location,
    nginx_conf,
    probe_url,
    role,
    secret_text,
    service,
    stack_config,
)
from tests.helpers import tag_of
from tools import mockrun

NAME = "isntgram"
SHA_TAG = re.compile(r"^ghcr\.io/isntgram/isntgram/(web|api):[0-9a-f]{40}$")


@pytest.fixture(scope="module")
def run() -> mockrun.Run:
    return example_run(NAME)


@pytest.mark.parametrize("app", ["web", "api"])
def test_images_come_from_ghcr_tagged_by_commit_sha(run, app):
    image = tag_of(container(service(run, app))["image"])
    match = SHA_TAG.match(image)
    assert match and match.group(1) == app, image


def test_ghcr_is_logged_in_once_on_the_docker_provider_with_the_token_as_a_secret(run):
    # On the provider, not in each service's `auth`: that block is ForceNew in the docker provider
    # (kreuzwerker/terraform-provider-docker v4.5.0, internal/provider/resource_docker_service.go),
    # so a rotated token would delete and recreate the services; the provider's registry_auth is
    # used for every service without one (resource_docker_service_funcs.go, retrieveAndMarshalAuth).
    provider = run.one("pulumi:providers:docker", "host-docker")
    assert json.loads(provider.inputs["registryAuth"]) == [
        {
            "address": "ghcr.io",
            "username": "isntgram-deploy",
            "password": "placeholder-secret-ghcr_token-0123456789abcdef0123456789",
        }
    ]
    assert is_pulumi_secret(provider, "registryAuth"), "the registry token is not a Pulumi secret"
    for app in ("web", "api"):
        assert "auth" not in service(run, app).inputs


@pytest.mark.parametrize(("app", "port"), [("web", 3000), ("api", 3001)])
def test_health_is_slash_health_every_30s_timeout_3s_start_5s_3_retries(run, app, port):
    svc = service(run, app)
    assert probe_url(svc) == f"http://127.0.0.1:{port}/health"
    check = health(svc)
    assert (check["interval"], check["timeout"], check["startPeriod"], check["retries"]) == ("30s", "3s", "5s", 3)


def test_the_database_is_managed_elsewhere_so_no_database_runs_on_the_host(run):
    assert [s.name for s in run.of_type(SERVICE) if role(s) == "store"] == []
    images = [container(s)["image"] for s in run.of_type(SERVICE)]
    assert not [i for i in images if "postgres:" in i or i.startswith("postgres")], images
    assert [v.name for v in run.of_type("docker:index/volume:Volume") if v.name.startswith("db-")] == []
    assert run.one("keel:index:StatefulStore", "db"), "the external store is still declared (its URL secret)"


@pytest.mark.parametrize("app", ["web", "api"])
def test_both_apps_get_the_database_url_as_a_secret_file(run, app):
    secret = run.one(SECRET, f"{app}-database_url")
    assert secret_text(secret) == "placeholder-secret-database_url-0123456789abcdef0123456789"
    assert is_pulumi_secret(secret, "data")
    mounted = {s["fileName"] for s in container(service(run, app))["secrets"]}
    assert "/run/secrets/database_url" in mounted
    assert container(service(run, app))["env"]["DATABASE_URL_FILE"] == "/run/secrets/database_url"


def test_dns_is_proxied_through_cloudflare_for_every_hostname(run):
    records = run.of_type("cloudflare:index/dnsRecord:DnsRecord")
    assert {(r.inputs["name"], r.inputs["type"]) for r in records} == {
        ("isntgram.example", "A"),
        ("www.isntgram.example", "A"),
    }
    assert all(r.inputs["proxied"] is True for r in records)
    settings = {
        s.inputs["settingId"]: s.inputs["value"] for s in run.of_type("cloudflare:index/zoneSetting:ZoneSetting")
    }
    # tls_client_auth: Authenticated Origin Pulls, which the origin's nginx requires when proxied.
    assert settings == {"ssl": "strict", "always_use_https": "on", "min_tls_version": "1.2", "tls_client_auth": "on"}


def test_tls_is_automatic_with_a_cloudflare_origin_certificate(run):
    cert = run.one("cloudflare:index/originCaCertificate:OriginCaCertificate")
    assert sorted(cert.inputs["hostnames"]) == ["isntgram.example", "www.isntgram.example"]


def test_only_cloudflare_reaches_the_web_ports(run):
    firewall = run.one("hcloud:index/firewall:Firewall", "host-firewall")
    web_rules = [r for r in firewall.inputs["rules"] if r.get("port") in ("80", "443")]
    assert web_rules, firewall.inputs["rules"]
    for rule in web_rules:
        assert "0.0.0.0/0" not in rule["sourceIps"] and "173.245.48.0/20" in rule["sourceIps"], rule


def test_paths_route_to_web_and_api(run):
    conf = nginx_conf(run)
    assert "proxy_pass http://web;" in location(conf, "/")
    assert "proxy_pass http://api;" in location(conf, "/api/")
    assert "server tasks.isntgram-web:3000 resolve" in conf
    assert "server tasks.isntgram-api:3001 resolve" in conf


def test_the_server_is_the_cheapest_current_type_that_fits_the_budget():
    cfg = stack_config(NAME)
    assert isinstance(cfg.host, HcloudHostSpec)
    needed_mb = capacity.budget(cfg).total_mb
    fitting = [
        t
        for t in catalogue.SERVER_TYPES.values()
        if cfg.host.location in t.locations and int(t.memory_mib * capacity.MAX_SHARE) >= needed_mb
    ]
    cheapest = min(fitting, key=lambda t: t.eur_per_month)
    assert cfg.host.server_type == cheapest.name, f"{cheapest.name} fits {needed_mb} MiB for less"
    # The seed's CX11 is refused, with the types to use instead.
    assert "cx11" in catalogue.DEPRECATED_TYPES


def test_a_failed_rollout_rolls_back_to_the_previous_image(run):
    for app in ("web", "api"):
        update = service(run, app).inputs["updateConfig"]
        assert (update["order"], update["failureAction"]) == ("start-first", "rollback")
