"""The services each stack declares on the Docker host, under the mock runtime."""

from __future__ import annotations

import base64
import re

import pytest

from components.app_service import monitor_seconds
from components.swarm import duration
from config import parse
from config.models import image_is_pinned
from render import proxy_runtime
from tests.helpers import parsed, run_with, seconds, stack_run, tag_of
from tools import mockrun
from tools.readback import cloudflare

SERVICE = "docker:index/service:Service"
NETWORK = "docker:index/network:Network"
VOLUME = "docker:index/volume:Volume"
STACKS = ("dev", "staging", "prod")


@pytest.fixture(scope="module", params=STACKS)
def run(request) -> mockrun.Run:
    result = stack_run(request.param)
    assert result.error is None, result.error
    return result


def role(service: mockrun.Registered) -> str:
    return {item["label"]: item["value"] for item in service.inputs["labels"]}["keel.role"]


def services(run: mockrun.Run, wanted: str | None = None) -> list[mockrun.Registered]:
    return [s for s in run.of_type(SERVICE) if wanted is None or role(s) == wanted]


def internal_network_ids(run: mockrun.Run) -> set[str]:
    return {n.id for n in run.of_type(NETWORK) if n.inputs.get("internal")}


def test_every_service_of_the_topology_is_deployed(run):
    names = {s.inputs["name"] for s in services(run)}
    prefix = "dev" if run.stack == "dev" else "shop"
    assert {f"{prefix}-web", f"{prefix}-api", f"{prefix}-db", f"{prefix}-cache", f"{prefix}-proxy"} <= names


def test_only_the_proxy_publishes_ports_in_host_mode(run):
    for service in services(run):
        ports = (service.inputs.get("endpointSpec") or {}).get("ports") or []
        if role(service) == "proxy" and service.name == "proxy-service":
            assert {p["targetPort"] for p in ports} == {80, 443}
            assert {p["publishMode"] for p in ports} == {"host"}
        else:
            assert ports == [], f"{service.urn} publishes {ports}"


def networks_by_role(run: mockrun.Run) -> dict[str, list[mockrun.Registered]]:
    out: dict[str, list[mockrun.Registered]] = {}
    for network in run.of_type(NETWORK):
        labels = {item["label"]: item["value"] for item in network.inputs.get("labels", [])}
        out.setdefault(labels.get("keel.network", "unlabelled"), []).append(network)
    return out


def attached_roles(run: mockrun.Run, service: mockrun.Registered) -> set[str]:
    role_of = {n.id: r for r, nets in networks_by_role(run).items() for n in nets}
    return {role_of[n["id"]] for n in service.inputs["taskSpec"].get("networksAdvanceds", [])}


def labels_of(service: mockrun.Registered) -> dict[str, str]:
    return {item["label"]: item["value"] for item in service.inputs["labels"]}


def part(service: mockrun.Registered) -> str:
    return {item["label"]: item["value"] for item in service.inputs["labels"]}["keel.service"]


def test_networks_by_role_each_internal_unless_it_needs_egress(run):
    by_role = networks_by_role(run)
    assert "unlabelled" not in by_role
    assert len(by_role["edge"]) == len(by_role["data"]) == 1
    for role_name, networks in by_role.items():
        for network in networks:
            # Only the edge (the proxy's published ports, the apps' way out) and the egress networks
            # (backups to S3, alert delivery, certificate renewal) leave the host.
            assert network.inputs.get("internal", False) is (role_name not in ("edge", "egress")), network.urn
            assert network.inputs["attachable"] is False, network.urn
    observed = run.stack != "dev" or "monitoring" in by_role
    assert ("monitoring" in by_role) is observed


def test_each_service_is_only_on_the_networks_of_its_role(run):
    """The graph of who can reach whom: the proxy never meets a store, nothing but Prometheus
    reaches Alertmanager, and each Docker API proxy is shared with its one client only."""
    for service in services(run):
        roles = attached_roles(run, service)
        kind = role(service)
        if kind == "store" and labels_of(service).get("keel.wal-archive") == "true":
            # archive_command ships WAL to S3 from inside the store: the one egress network a store may join.
            assert roles == {"data", "egress"}, service.urn
        elif kind == "store":
            assert roles == {"data"}, service.urn
        elif kind == "proxy" and service.name == "proxy-service":
            assert roles <= {"edge", "proxy-metrics"} and "edge" in roles, service.urn
        elif kind == "proxy":  # acme: its own way out
            assert roles == {"egress"}, service.urn
        elif kind == "app":
            assert roles <= {"edge", "data", "monitoring"}, service.urn
        elif kind == "socket-proxy":
            assert roles == {"docker-api"}, service.urn
        elif part(service) == "alertmanager":
            assert roles <= {"alerting", "egress"} and "alerting" in roles, service.urn
        elif part(service) == "prometheus":
            assert roles == {"monitoring", "alerting"}, service.urn
        else:
            assert "edge" not in roles and "alerting" not in roles, service.urn
    for network in run.of_type(NETWORK):
        labels = {item["label"]: item["value"] for item in network.inputs.get("labels", [])}
        if labels.get("keel.network") == "docker-api":
            users = [
                s
                for s in services(run)
                if network.id in {n["id"] for n in s.inputs["taskSpec"].get("networksAdvanceds") or []}
            ]
            assert sorted(role(s) for s in users)[-1] == "socket-proxy" and len(users) == 2, network.urn


ROOT_EQUIVALENT = ("/", "/var/run", "/run", "/var/lib/docker", "/etc", "/root")


def test_no_service_has_a_root_equivalent_mount(run):
    """Only the Docker API proxies bind the socket; nothing binds /var/run or Docker's state, nor /
    writable or as root (node-exporter reads / read-only as nobody, who cannot open the socket)."""
    for service in services(run):
        container = service.inputs["taskSpec"]["containerSpec"]
        for mount in container.get("mounts", []):
            if mount["type"] != "bind":
                continue
            source = mount["source"].rstrip("/") or "/"
            if source.endswith("docker.sock"):
                assert role(service) == "socket-proxy", service.urn
                continue
            if source in ROOT_EQUIVALENT:
                assert mount.get("readOnly") is True, (service.urn, source)
                assert source == "/" and container["user"] == "65534:65534", (service.urn, source)
                assert part(service) == "node-exporter", service.urn


def test_stores_sit_only_on_the_data_network(run):
    data = {n.id for n in networks_by_role(run)["data"]}
    assert len(data) == 1
    for service in services(run, "store"):
        attached = {n["id"] for n in service.inputs["taskSpec"]["networksAdvanceds"]}
        if service.name == "db-service" and run.stack == "prod":
            # archive_command ships WAL to S3 from inside the store (point-in-time recovery, on in prod).
            assert attached - data == {"networks-pitr-egress-id"}, attached
            attached -= {"networks-pitr-egress-id"}
        assert attached == data, f"{service.urn} is on {attached}"


def test_every_service_has_limits_health_rotation_and_a_pinned_image(run):
    for service in services(run):
        task = service.inputs["taskSpec"]
        assert task["resources"]["limits"]["memoryBytes"] > 0, service.urn
        assert task["resources"]["reservation"]["memoryBytes"] <= task["resources"]["limits"]["memoryBytes"]
        assert task["containerSpec"]["healthcheck"]["tests"], service.urn
        assert task["logDriver"] == {"name": "json-file", "options": {"max-size": "10m", "max-file": "3"}}, service.urn
        assert image_is_pinned(task["containerSpec"]["image"]), service.urn
        policy = task["restartPolicy"]
        assert policy["delay"] and policy["window"], f"{service.urn}: unset delay/window diff forever"


def test_apps_roll_start_first_with_rollback_and_a_monitor_longer_than_start_period(run):
    cfg = parse(_raw(run.stack))
    for service in services(run, "app"):
        name = service.name.removesuffix("-service")
        spec = cfg.apps()[name]
        update = service.inputs["updateConfig"]
        assert update["order"] == "start-first" and update["failureAction"] == "rollback", service.urn
        assert seconds(update["monitor"]) == monitor_seconds(spec) > spec.health.start_period_s
        assert service.inputs["rollbackConfig"]["order"] == "start-first"
        assert service.inputs["convergeConfig"]["timeout"].endswith("s")


def test_apps_are_hardened_by_default(run):
    for service in services(run, "app"):
        container = service.inputs["taskSpec"]["containerSpec"]
        assert container["readOnly"] is True, service.urn
        assert container["capDrops"] == ["ALL"], service.urn
        assert container["init"] is True
        assert container["stopGracePeriod"] == "30s" and container["stopSignal"] == "SIGTERM"
        assert any(m["type"] == "tmpfs" and m["target"] == "/tmp" for m in container["mounts"])
        if run.stack != "dev":
            assert container["user"] == "10001:10001", service.urn


def test_store_volumes_are_protected_and_retained(run):
    volumes = [v for v in run.of_type(VOLUME) if v.name.endswith("-data")]
    assert {v.name for v in volumes} >= {"db-data", "cache-data", "uploads-data"}
    for volume in volumes:
        assert volume.protect and volume.retain_on_delete, volume.urn


def test_hetzner_store_volumes_live_on_the_data_disk(run):
    if run.stack == "dev":
        pytest.skip("dev keeps volumes in Docker's own storage")
    db = run.one(VOLUME, "db-data")
    assert db.inputs["driverOpts"] == {"type": "none", "o": "bind", "device": "/mnt/data/volumes/shop-db-data"}
    mkdir = run.one("command:remote:Command", "db-data-dir")
    assert mkdir.urn in db.depends_on
    assert "mkdir -p /mnt/data/volumes/shop-db-data" in mkdir.inputs["create"]


def test_postgres_gets_its_tuned_config_and_password_file(run):
    db = run.one(SERVICE, "db-service")
    container = db.inputs["taskSpec"]["containerSpec"]
    # As the image's CMD: the official entrypoint must still run (initdb, password file, drop root).
    assert container["args"] == ["postgres", "-c", "config_file=/etc/postgresql/postgresql.conf"]
    assert container["env"]["POSTGRES_PASSWORD_FILE"] == "/run/secrets/postgres-password"
    assert "POSTGRES_PASSWORD" not in container["env"]
    conf = base64.b64decode(run.one("docker:index/serviceConfig:ServiceConfig", "db-postgresql.conf").inputs["data"])
    limit_mb = int(db.inputs["taskSpec"]["resources"]["limits"]["memoryBytes"]) // 2**20
    assert f"shared_buffers = {limit_mb // 4}MB".encode() in conf
    assert container["healthcheck"]["tests"][:2] == ["CMD", "pg_isready"]
    assert db.inputs["taskSpec"]["placement"]["constraints"] == ["node.role==manager"]


def test_redis_gets_acl_password_and_bounded_memory(run):
    cache = run.one(SERVICE, "cache-service")
    container = cache.inputs["taskSpec"]["containerSpec"]
    # The ACL and the health check's own password: never the apps' password.
    assert {s["fileName"] for s in container["secrets"]} == {
        "/run/secrets/redis-acl",
        "/run/secrets/redis-health-password",
    }
    conf = base64.b64decode(run.one("docker:index/serviceConfig:ServiceConfig", "cache-redis.conf").inputs["data"])
    assert b"appendonly yes" in conf and b"maxmemory " in conf


def test_stores_keep_the_official_entrypoint_that_initialises_and_drops_root(run):
    # Swarm's Command replaces the image's ENTRYPOINT: postgres would then run as root without
    # initdb and refuse to start; redis would run as root.
    for name, first in (("db-service", "postgres"), ("cache-service", "redis-server")):
        container = run.one(SERVICE, name).inputs["taskSpec"]["containerSpec"]
        assert container.get("commands") is None, name
        assert container["args"][0] == first, name


def test_apps_and_migrations_wait_for_the_healthy_stores_they_use_and_no_other(run):
    stores = {s.urn: s.name for s in (run.one(SERVICE, "db-service"), run.one(SERVICE, "cache-service"))}
    for urn in stores:
        assert run.by_urn(urn).inputs["convergeConfig"]["timeout"] == duration(600) == "10m", urn
    # web sits on the public network only, where no store is; dev's api (an echo server) names no
    # store; the shop's api names db and cache as hosts and through store: secrets.
    uses = {"web": set(), "api": set() if run.stack == "dev" else {"db-service", "cache-service"}}
    for app in services(run, "app"):
        waits_for = {stores[urn] for urn in app.depends_on if urn in stores}
        assert waits_for == uses[app.name.removesuffix("-service")], app.urn
    if run.stack != "dev":
        migration = run.one("command:remote:Command", "api-migration")
        assert set(stores) <= set(migration.depends_on)


def test_mounted_volumes_are_handed_to_the_app_user_before_it_starts(run):
    api = run.one(SERVICE, "api-service")
    assert api.inputs["taskSpec"]["containerSpec"]["user"] == "10001:10001"
    owner = next(r for r in run.resources if r.name == "api-owns-uploads")
    assert owner.urn in api.depends_on
    volume = run.one(VOLUME, "uploads-data")
    assert volume.urn in owner.depends_on
    script = owner.inputs["create"]
    assert f"-v {volume.inputs['name']}:/volume" in script
    assert "chown -R 10001:10001 /volume" in script
    if run.stack != "dev":
        assert owner.urn in run.one("command:remote:Command", "api-migration").depends_on


def test_app_secrets_are_files_with_the_file_convention(run):
    if run.stack == "dev":
        pytest.skip("the dev apps take no secrets")
    api = run.one(SERVICE, "api-service")
    container = api.inputs["taskSpec"]["containerSpec"]
    assert container["env"]["JWT_SECRET_FILE"] == "/run/secrets/jwt_secret"
    assert container["env"]["DATABASE_PASSWORD_FILE"] == "/run/secrets/database_password"
    assert {s["fileName"] for s in container["secrets"]} == {
        "/run/secrets/jwt_secret",
        "/run/secrets/database_password",
        "/run/secrets/redis_password",
    }
    assert not any(key in container["env"] for key in ("JWT_SECRET", "DATABASE_PASSWORD", "REDIS_PASSWORD"))


def test_app_gets_the_generated_store_password(run):
    if run.stack == "dev":
        pytest.skip("the dev apps take no secrets")
    generated = run.one("random:index/randomPassword:RandomPassword", "db-password").outputs["result"]
    secret = run.one("docker:index/secret:Secret", "api-database_password")
    assert base64.b64decode(secret.inputs["data"]).decode() == generated


def test_migration_runs_with_the_new_image_before_the_rollout(run):
    if run.stack == "dev":
        pytest.skip("the dev apps have no migration")
    migration = run.one("command:remote:Command", "api-migration")
    api = run.one(SERVICE, "api-service")
    assert migration.urn in api.depends_on
    script = migration.inputs["create"]
    assert re.search(r"ghcr\.io/example/shop-api:1\.4\.2@sha256:[0-9a-f]{64} \\\n  npm \\\n  run \\\n  migrate", script)
    # A swarm job on the service's networks, with its secrets as swarm secrets: no value on stdin or disk.
    assert "--mode \\\n  replicated-job" in script
    for network in ("shop-edge", "shop-data"):
        assert f"--network \\\n  {network}" in script
    assert "stdin" not in migration.inputs


def test_proxy_config_travels_by_volume_and_reloads_without_a_restart(run):
    writer = next(r for r in run.resources if r.name == "proxy-nginx.conf")
    proxy = run.one(SERVICE, "proxy-service")
    # The running proxy judges each set: the writer runs after the service and waits for its verdict.
    assert proxy.urn in writer.depends_on
    files = {
        path: base64.b64decode(data).decode()
        for path, data in (line.split(" ") for line in writer.inputs["stdin"].splitlines())
    }
    assert f"want={proxy_runtime.set_digest(files)}\n" in writer.inputs["create"]
    assert "include keel.d/*.conf;" in files["nginx.conf"]
    container = proxy.inputs["taskSpec"]["containerSpec"]
    assert container["commands"] == ["/bin/sh", "/usr/local/bin/keel-proxy"]
    assert any(m["target"] == "/etc/nginx/keel" and m["type"] == "volume" for m in container["mounts"])
    assert proxy.inputs["updateConfig"]["order"] == "stop-first"
    assert "nginx.conf " in writer.inputs["stdin"] and "keel.d/status.conf " in writer.inputs["stdin"]


def test_a_route_change_changes_only_the_written_config_not_the_proxy_service():
    base = stack_run("dev")
    changed = run_with("dev", {"keel:proxy": {"rate_limits": {"api_rps": 50}}})
    assert changed.error is None, changed.error
    assert base.one(SERVICE, "proxy-service").inputs == changed.one(SERVICE, "proxy-service").inputs
    writer = "proxy-nginx.conf"
    assert (
        next(r for r in base.resources if r.name == writer).inputs["stdin"]
        != next(r for r in changed.resources if r.name == writer).inputs["stdin"]
    )


def test_prod_dns_is_proxied_with_strict_tls_and_an_origin_certificate():
    run = stack_run("prod")
    records = run.of_type("cloudflare:index/dnsRecord:DnsRecord")
    assert {(r.inputs["name"], r.inputs["type"]) for r in records} == {("example.com", "A"), ("www.example.com", "A")}
    assert all(r.inputs["proxied"] is True and r.inputs["ttl"] == 1 for r in records)
    settings = {
        s.inputs["settingId"]: s.inputs["value"] for s in run.of_type("cloudflare:index/zoneSetting:ZoneSetting")
    }
    # tls_client_auth: Authenticated Origin Pulls, which the origin's nginx requires when proxied.
    assert settings == {"ssl": "strict", "always_use_https": "on", "min_tls_version": "1.2", "tls_client_auth": "on"}
    origin = run.one("cloudflare:index/originCaCertificate:OriginCaCertificate")
    assert origin.inputs["hostnames"] == ["example.com", "www.example.com"]
    assert origin.inputs["requestType"] == "origin-ecc"


def test_origin_certificate_hostnames_are_sent_sorted_as_cloudflare_returns_them():
    # Read stores the API's order and `hostnames` forces replacement: another order would issue a
    # new certificate (and restart the proxy) on every run (cloudflare/terraform-provider-cloudflare#6239).
    run = run_with("prod", {"keel:dns": {"hostnames": ["www.example.com", "example.com"]}})
    origin = run.one("cloudflare:index/originCaCertificate:OriginCaCertificate")
    assert origin.inputs["hostnames"] == ["example.com", "www.example.com"]


def test_proxied_origin_admits_only_cloudflare_on_80_and_443():
    run = stack_run("prod")
    firewall = run.one("hcloud:index/firewall:Firewall", "host-firewall")
    rules = {r["port"]: r for r in firewall.inputs["rules"] if r.get("port")}
    for port in ("80", "443"):
        assert rules[port]["sourceIps"] == cloudflare.CLOUDFLARE_IPV4 + cloudflare.CLOUDFLARE_IPV6


def test_unproxied_records_with_acme_keep_the_web_open_and_run_a_renewal_service():
    run = run_with(
        "prod",
        {"keel:dns": {"proxied": False}, "keel:proxy": {"tls": {"mode": "acme", "acme_email": "ops@example.com"}}},
    )
    assert run.error is None, run.error
    firewall = run.one("hcloud:index/firewall:Firewall", "host-firewall")
    rules = {r["port"]: r for r in firewall.inputs["rules"] if r.get("port")}
    assert rules["443"]["sourceIps"] == ["0.0.0.0/0", "::/0"]
    acme = run.one(SERVICE, "proxy-acme")
    assert tag_of(acme.inputs["taskSpec"]["containerSpec"]["image"]) == "neilpang/acme.sh:3.1.1"
    script = base64.b64decode(run.one("docker:index/serviceConfig:ServiceConfig", "proxy-acme.sh").inputs["data"])
    assert b"--dns dns_cf -d example.com -d www.example.com" in script
    assert not run.of_type("cloudflare:index/originCaCertificate:OriginCaCertificate")


def test_capacity_error_fires_before_anything_is_registered():
    run = run_with("prod", {"keel:services": {"api": {"replicas": 8}}})
    assert run.error is not None and str(run.error).startswith("host/server_type: memory limits add up to")
    assert run.resources == []


def test_no_secret_reaches_a_resource_in_plaintext(run):
    values, _ = mockrun.read_config_file(mockrun.stack_file(run.stack))
    extra, _ = mockrun.placeholder_secrets(values)
    generated = [r.outputs["result"] for r in run.of_type("random:index/randomPassword:RandomPassword")]
    needles = [*extra.values(), *generated]
    needles += [base64.b64encode(n.encode()).decode() for n in needles]
    for resource in run.resources:
        for path, value in resource.plaintext_strings():
            for needle in needles:
                assert needle not in value, f"secret in plaintext at {resource.urn} {path}"


def _raw(stack: str) -> dict[str, str]:
    values, _ = mockrun.read_config_file(mockrun.stack_file(stack))
    return {k.split(":", 1)[1]: v for k, v in values.items() if k.startswith("keel:")}


def test_long_running_services_restart_on_any_exit_and_backup_jobs_never(run):
    # swarmkit's "on-failure" leaves a task that exited 0 stopped (moby/swarmkit v2.1.2,
    # manager/orchestrator/restart/restart.go, shouldRestart: TaskStateCompleted is not restarted),
    # and a graceful stop exits 0 (Postgres on SIGINT, Redis on SIGTERM, the proxy's watcher).
    jobs = [s for s in services(run, "backup") if _run_to_completion(s)]
    pitr_jobs = {"db-pitr-full", "db-pitr-diff", "db-pitr-drill"} if run.stack == "prod" else set()
    assert {s.name for s in jobs} == (
        set() if run.stack == "dev" else {"backup-backup", "backup-check", "backup-drill", *pitr_jobs}
    )
    for service in jobs:
        assert service.inputs["taskSpec"]["restartPolicy"]["condition"] == "none", service.urn
    long_running = [s for s in services(run) if s not in jobs]
    assert {role(s) for s in long_running} >= {"app", "store", "proxy"}
    for service in long_running:
        assert service.inputs["taskSpec"]["restartPolicy"]["condition"] == "any", service.urn


def _run_to_completion(service: mockrun.Registered) -> bool:
    """A backup job: no replica until its scheduler (or an operator) starts one run."""
    return service.inputs["mode"].get("replicated", {}).get("replicas") == 0


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_prometheus_and_grafana_keep_their_data_on_the_data_volume(stack):
    run = run_with(stack, {"keel:observability": {"enabled": True}})
    assert run.error is None, run.error
    for part, owner, image_key in (
        ("prometheus-data", "65534:65534", "prometheus_image"),
        ("grafana-data", "472:0", "grafana_image"),
    ):
        volume = run.one(VOLUME, f"observability-{part}")
        directory = f"/mnt/data/volumes/shop-{part}"
        assert volume.inputs["driverOpts"] == {"type": "none", "o": "bind", "device": directory}, volume.urn
        assert volume.protect and volume.retain_on_delete, volume.urn
        prepare = run.one("command:remote:Command", f"observability-{part}-dir")
        assert prepare.urn in volume.depends_on
        script = prepare.inputs["create"]
        assert f"mkdir -p {directory}" in script and f"chown -R {owner} /volume" in script
        image = getattr(parsed(stack).observability, image_key)
        assert f"--entrypoint sh {image} -c" in script


def test_prometheus_tsdb_is_bounded_by_a_share_of_the_data_volume():
    run = run_with("prod", {"keel:observability": {"enabled": True}, "keel:host": {"data_volume_gib": 50}})
    assert run.error is None, run.error
    args = run.one(SERVICE, "observability-prometheus").inputs["taskSpec"]["containerSpec"]["args"]
    assert "--storage.tsdb.retention.size=10GB" in args
    assert "--storage.tsdb.retention.time=30d" in args
