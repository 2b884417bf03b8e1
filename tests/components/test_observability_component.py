"""The ObservabilityStack component under Pulumi's mock runtime, built directly with fake apps and stores."""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from components.observability import ObservabilityStack
from config import capacity
from config.models import StackConfig
from render import grafana as gf
from render import observability as obs
from stores import registry
from stores.postgres import kind as postgres
from stores.redis import kind as redis
from tests.helpers import EMAIL_ALERTS as EMAIL
from tests.helpers import FakeStore, host_scaffold, store_clients, store_password, tag_of
from tests.helpers import observability_config as stack_config
from tools import mockrun

SERVICE = "docker:index/service:Service"
CONFIG = "docker:index/serviceConfig:ServiceConfig"
SECRET = "docker:index/secret:Secret"
VOLUME = "docker:index/volume:Volume"
NETWORK = "docker:index/network:Network"
RANDOM_PASSWORD = "random:index/randomPassword:RandomPassword"
COMPONENT = "keel:index:ObservabilityStack"
SMTP_PASSWORD = "smtp-password-value-4f1c2a"
GRAFANA_PASSWORD = "grafana-admin-value-9d8e7f"
WEBHOOK_URL = "https://hooks.example.com/T000/B000/secret-token-77aa"


@dataclass
class Declared:
    resources: list[mockrun.Registered]
    component: ObservabilityStack
    password: str
    password_is_secret: bool

    def services(self) -> dict[str, mockrun.Registered]:
        return {r.inputs["name"]: r for r in self.resources if r.type == SERVICE}

    def service(self, part: str) -> mockrun.Registered:
        return self.services()[f"shop-{part}"]

    def one(self, type_: str, name: str) -> mockrun.Registered:
        found = [r for r in self.resources if r.type == type_ and r.name == name]
        assert len(found) == 1, f"expected one {type_} {name}; found {[r.name for r in self.resources]}"
        return found[0]

    def by_id(self, type_: str, resource_id: str) -> mockrun.Registered:
        # The mocks give every resource the id "<name>-id".
        return self.one(type_, resource_id.removesuffix("-id"))

    def config_text(self, part: str, path: str) -> str:
        for mounted in self.service(part).inputs["taskSpec"]["containerSpec"].get("configs", []):
            if mounted["fileName"] == path:
                return base64.b64decode(self.by_id(CONFIG, mounted["configId"]).inputs["data"]).decode()
        raise AssertionError(f"shop-{part} mounts no config at {path}")


def declare(
    cfg: StackConfig, secrets: dict[str, str] | None = None, textfile_dir: str | None = "/mnt/data/tf"
) -> Declared:
    holder: dict[str, Any] = {}

    async def program() -> None:
        host = host_scaffold(cfg, stack_name="test", secrets=secrets or {})
        stores = {}
        for key, store in cfg.stores().items():
            password, secret = store_password(key, store, host.on_host)
            users, client_secrets = store_clients(key, store, host.on_host)
            stores[key] = FakeStore(store, f"shop-{key}", None, password, secret, users, client_secrets)
        component = ObservabilityStack(
            "observability",
            stack=host.stack,
            host=host.host,
            stores=stores,
            networks=host.networks,
            textfile_dir=textfile_dir,
            opts=host.on_host,
        )
        holder["component"] = component
        holder["password"] = await component.grafana_admin_password.future()
        holder["secret"] = await component.grafana_admin_password.is_secret()

    resources, error = mockrun.declare(program)
    assert error is None, error
    return Declared(resources, holder["component"], holder["password"], holder["secret"])


@pytest.fixture(scope="module")
def prod() -> Declared:
    return declare(stack_config("prod", alerts=EMAIL), secrets={"smtp_password": SMTP_PASSWORD})


def test_declares_every_monitoring_service_and_one_exporter_per_store(prod):
    assert sorted(prod.services()) == sorted(
        f"shop-{part}"
        for part in (
            "prometheus",
            "alertmanager",
            "grafana",
            "node-exporter",
            "cadvisor",
            "nginx-exporter",
            "nginxlog-exporter",
            "blackbox-exporter",
            "db-exporter",
            "cache-exporter",
            "docker-api",
        )
    )


def test_every_exporter_matches_a_store_of_its_kind(prod):
    cfg = stack_config("prod")
    for name, service in prod.services().items():
        part = name.removeprefix("shop-")
        if part.removesuffix("-exporter") in cfg.stores():
            store = cfg.stores()[part.removesuffix("-exporter")]
            image = tag_of(service.inputs["taskSpec"]["containerSpec"]["image"])
            exporter = registry.kind_of(store).exporter()
            assert exporter is not None, service.urn
            expected = getattr(cfg.observability, exporter.image_key)
            assert image == expected, f"{service.urn}: {image} does not watch a {store.kind} store"


def test_component_has_its_type_token_and_parents_every_resource(prod):
    component = [r for r in prod.resources if r.type == COMPONENT]
    assert len(component) == 1
    own = [r for r in prod.resources if r.type in (SERVICE, CONFIG, VOLUME) or r.name.startswith("observability-")]
    assert own
    for resource in own:
        if resource.type != COMPONENT:
            assert resource.parent == component[0].urn, f"{resource.urn} is not a child of the stack"


def test_services_use_the_docker_provider_passed_in(prod):
    for service in prod.services().values():
        assert "pulumi:providers:docker::host-docker" in service.provider, (
            f"{service.urn}: provider {service.provider!r}"
        )


def test_every_service_is_labelled_limited_logged_and_pinned(prod):
    cfg = stack_config("prod")
    images = {getattr(cfg.observability, key) for key in type(cfg.observability).model_fields if key.endswith("_image")}
    for name, service in prod.services().items():
        part = name.removeprefix("shop-")
        inputs = service.inputs
        role = "socket-proxy" if part == "docker-api" else "observability"
        expected = [{"label": "keel.role", "value": role}, {"label": "keel.service", "value": f"shop-{part}"}]
        if role == "observability":
            expected = [{"label": "keel.role", "value": role}, {"label": "keel.service", "value": part}]
        if part in ("nginx-exporter", "nginxlog-exporter"):  # FROM scratch: Prometheus watches them
            expected.append({"label": "keel.health", "value": "prometheus-target"})
        assert inputs["labels"] == expected, service.urn
        limit_mb = {
            **capacity.OBSERVABILITY_LIMITS_MB,
            "db-exporter": postgres.EXPORTER_MB,
            "cache-exporter": redis.EXPORTER_MB,
        }[part]
        resources = inputs["taskSpec"]["resources"]
        assert resources["limits"]["memoryBytes"] == limit_mb * 1024 * 1024, service.urn
        assert resources["reservation"]["memoryBytes"] == limit_mb // 2 * 1024 * 1024, service.urn
        assert inputs["taskSpec"]["logDriver"] == {"name": "json-file", "options": {"max-size": "10m", "max-file": "3"}}
        assert tag_of(inputs["taskSpec"]["containerSpec"]["image"]) in images, service.urn
        restart = inputs["taskSpec"]["restartPolicy"]
        assert (restart["condition"], restart["delay"], restart["window"]) == ("any", "5s", "2m"), service.urn
        assert "ports" not in inputs.get("endpointSpec", {}), f"{service.urn} publishes a port"


def test_health_checks_probe_each_service_except_the_two_scratch_images(prod):
    for name, service in prod.services().items():
        tests = service.inputs["taskSpec"]["containerSpec"]["healthcheck"]["tests"]
        if name in ("shop-nginx-exporter", "shop-nginxlog-exporter"):
            assert tests == ["NONE"], service.urn
        else:
            assert tests[:2] == ["CMD", "wget"] and tests[-1].startswith("http://127.0.0.1:"), service.urn


MONITORING, DATA = "networks-monitoring-id", "networks-data-id"
ALERTING, PROXY_METRICS = "observability-alerting-id", "observability-proxy-metrics-id"
DOCKER_API, EGRESS = "observability-docker-api-network-id", "observability-alerts-egress-id"
NETWORKS_BY_SERVICE = {
    "shop-prometheus": [MONITORING, ALERTING],
    # Reachable from Prometheus alone: nothing else can silence an alert.
    "shop-alertmanager": [ALERTING, EGRESS],
    "shop-grafana": [MONITORING, PROXY_METRICS],
    "shop-node-exporter": [MONITORING],
    "shop-cadvisor": [MONITORING, DOCKER_API],
    "shop-docker-api": [DOCKER_API],
    "shop-nginx-exporter": [MONITORING, PROXY_METRICS],
    "shop-nginxlog-exporter": [MONITORING, PROXY_METRICS],
    "shop-blackbox-exporter": [MONITORING, PROXY_METRICS],
    "shop-db-exporter": [MONITORING, DATA],
    "shop-cache-exporter": [MONITORING, DATA],
}


def test_each_service_joins_only_the_networks_its_role_needs(prod):
    egress = prod.one(NETWORK, "observability-alerts-egress")
    assert egress.inputs["internal"] is False and egress.inputs["driver"] == "overlay"
    for name in ("observability-alerting", "observability-proxy-metrics", "observability-docker-api-network"):
        network = prod.one(NETWORK, name)
        assert network.inputs["internal"] is True and network.inputs["attachable"] is False, network.urn
    assert {name: [n["id"] for n in service.inputs["taskSpec"]["networksAdvanceds"]]
            for name, service in prod.services().items()} == NETWORKS_BY_SERVICE  # fmt: skip


def test_without_a_receiver_no_egress_network_is_declared():
    declared = declare(stack_config("prod"))
    assert not [r for r in declared.resources if r.type == NETWORK and r.name.endswith("egress")]
    networks = declared.service("alertmanager").inputs["taskSpec"]["networksAdvanceds"]
    assert [n["id"] for n in networks] == [ALERTING]


def test_no_monitoring_service_mounts_the_host_root_or_the_docker_socket_as_root(prod):
    for name, service in prod.services().items():
        container = service.inputs["taskSpec"]["containerSpec"]
        assert container["capDrops"] == ["ALL"] and not container.get("capAdds"), name
        assert container["readOnly"] is True, name
        for mount in container.get("mounts", []):
            if mount["type"] != "bind":
                continue
            assert mount["readOnly"] is True, f"{name} writes to the host's {mount['source']}"
            assert mount["source"] not in ("/var/run", "/run", "/var/lib/docker"), f"{name} mounts {mount['source']}"
            if mount["source"] == "/var/run/docker.sock":
                assert name == "shop-docker-api", f"{name} mounts the Docker socket"
            if mount["source"] in ("/", "/proc"):
                assert container["user"] == "65534:65534", f"{name} reads the host's {mount['source']} as root"


def test_cadvisor_reads_the_docker_api_through_its_read_only_proxy(prod):
    cadvisor = prod.service("cadvisor").inputs["taskSpec"]["containerSpec"]
    assert "--docker=tcp://shop-docker-api:2375" in cadvisor["args"]
    assert [(m["source"], m["target"]) for m in cadvisor["mounts"]] == [
        ("/sys", "/sys"),
        ("/proc", "/rootfs/proc"),
        ("/var/lib/docker/image/overlay2/layerdb/mounts", "/rootfs/var/lib/docker/image/overlay2/layerdb/mounts"),
    ]
    proxy = prod.service("docker-api").inputs["taskSpec"]["containerSpec"]
    template = base64.b64decode(prod.by_id(CONFIG, proxy["configs"][0]["configId"]).inputs["data"]).decode()
    assert proxy["configs"][0]["fileName"] == "/usr/local/etc/haproxy/haproxy.cfg.template"
    # Read-only: no POST, no container list, logs, archive or export.
    assert "POST" not in template and "/containers/json" not in template and "archive" not in template


def test_prometheus_keeps_30_days_on_a_protected_volume_and_stops_first(prod):
    volume = prod.one(VOLUME, "observability-prometheus-data")
    assert volume.protect and volume.retain_on_delete, volume.urn
    service = prod.service("prometheus")
    spec = service.inputs["taskSpec"]["containerSpec"]
    assert "--storage.tsdb.retention.time=30d" in spec["args"]
    assert {"target": "/prometheus", "source": "shop-prometheus-data", "type": "volume"}.items() <= spec["mounts"][
        0
    ].items()
    assert service.inputs["updateConfig"]["order"] == "stop-first"


def test_configs_are_autonamed_base64_of_the_rendered_files(prod):
    configs = [r for r in prod.resources if r.type == CONFIG]
    assert configs
    for config in configs:
        assert "name" not in config.inputs, f"{config.urn} has a fixed name: it could not be replaced before deletion"
        base64.b64decode(config.inputs["data"], validate=True)
    spec = prod.component.spec
    assert prod.config_text("prometheus", obs.PROMETHEUS_CONFIG_FILE) == obs.render_prometheus_yml(spec)
    assert prod.config_text("prometheus", "/etc/prometheus/rules/keel.yml") == obs.render_alert_rules(spec)
    assert prod.config_text("alertmanager", obs.ALERTMANAGER_CONFIG_FILE) == obs.render_alertmanager_yml(spec)
    assert prod.config_text("grafana", gf.DATASOURCES_FILE) == gf.render_datasources(spec)
    for file, text in gf.render_dashboards(spec).items():
        assert prod.config_text("grafana", f"{gf.DASHBOARDS_DIR}/{file}") == text


def test_generated_grafana_password_is_a_secret_mounted_as_a_file(prod):
    assert [r for r in prod.resources if r.type == RANDOM_PASSWORD], "no RandomPassword for Grafana"
    assert prod.password_is_secret
    grafana = prod.service("grafana").inputs["taskSpec"]["containerSpec"]
    assert grafana["env"]["GF_SECURITY_ADMIN_PASSWORD__FILE"] == gf.ADMIN_PASSWORD_FILE
    assert "GF_SECURITY_ADMIN_PASSWORD" not in grafana["env"]
    (mounted,) = grafana["secrets"]
    assert mounted["fileName"] == gf.ADMIN_PASSWORD_FILE
    secret = prod.by_id(SECRET, mounted["secretId"])
    assert base64.b64decode(secret.inputs["data"]).decode() == prod.password


def test_configured_grafana_password_is_used_and_never_plaintext():
    cfg = stack_config("prod", grafana_admin_password_secret="grafana_admin")
    declared = declare(cfg, secrets={"grafana_admin": GRAFANA_PASSWORD})
    assert not [r for r in declared.resources if r.type == RANDOM_PASSWORD]
    assert declared.password == GRAFANA_PASSWORD and declared.password_is_secret
    encoded = base64.b64encode(GRAFANA_PASSWORD.encode()).decode()
    for resource in declared.resources:
        for path, value in resource.plaintext_strings():
            assert GRAFANA_PASSWORD not in value and encoded not in value, f"{resource.urn}: plaintext at {path}"


def test_smtp_password_reaches_alertmanager_as_a_secret_file_only(prod):
    alertmanager = prod.service("alertmanager").inputs["taskSpec"]["containerSpec"]
    (mounted,) = alertmanager["secrets"]
    assert mounted["fileName"] == obs.SMTP_PASSWORD_FILE
    assert base64.b64decode(prod.by_id(SECRET, mounted["secretId"]).inputs["data"]).decode() == SMTP_PASSWORD
    encoded = base64.b64encode(SMTP_PASSWORD.encode()).decode()
    for resource in prod.resources:
        for path, value in resource.plaintext_strings():
            assert SMTP_PASSWORD not in value and encoded not in value, f"{resource.urn}: plaintext at {path}"
    assert f"auth_password_file: {obs.SMTP_PASSWORD_FILE}" in prod.config_text(
        "alertmanager", obs.ALERTMANAGER_CONFIG_FILE
    )


def test_webhook_url_is_a_secret_file_read_with_url_file():
    declared = declare(
        stack_config("prod", alerts={"kind": "webhook", "webhook_url_secret": "alert_hook"}),
        secrets={"alert_hook": WEBHOOK_URL},
    )
    (mounted,) = declared.service("alertmanager").inputs["taskSpec"]["containerSpec"]["secrets"]
    assert mounted["fileName"] == obs.WEBHOOK_URL_FILE
    assert base64.b64decode(declared.by_id(SECRET, mounted["secretId"]).inputs["data"]).decode() == WEBHOOK_URL
    for resource in declared.resources:
        for path, value in resource.plaintext_strings():
            assert "secret-token-77aa" not in value, f"{resource.urn}: webhook URL in plaintext at {path}"


def test_store_exporters_log_in_with_their_own_statistics_only_credentials(prod):
    db = prod.service("db-exporter").inputs["taskSpec"]["containerSpec"]
    assert db["env"] == {
        "DATA_SOURCE_URI": "shop-db:5432/shop?sslmode=disable",
        "DATA_SOURCE_USER": "keel_exporter",
        "DATA_SOURCE_PASS_FILE": "/run/secrets/db-password",
    }
    # The store's exporter password, never the app's (db-password).
    assert [(s["secretId"], s["fileName"]) for s in db["secrets"]] == [
        ("db-exporter-password-id", "/run/secrets/db-password")
    ]
    cache = prod.service("cache-exporter").inputs["taskSpec"]["containerSpec"]
    assert cache["commands"][:2] == ["/bin/sh", "-c"]
    assert "cat /run/secrets/cache-password" in cache["commands"][2]
    assert cache["commands"][-2:] == ["--redis.addr=redis://shop-cache:6379", "--redis.user=keel-exporter"]
    assert [(s["secretId"], s["fileName"]) for s in cache["secrets"]] == [
        ("cache-exporter-password-id", "/run/secrets/cache-password")
    ]


def test_node_exporter_reads_the_backup_textfile_directory_and_runs_on_every_node(prod):
    service = prod.service("node-exporter")
    spec = service.inputs["taskSpec"]["containerSpec"]
    assert "--collector.textfile.directory=/textfile" in spec["args"]
    textfile = [m for m in spec["mounts"] if m["target"] == "/textfile"]
    assert textfile and textfile[0]["source"] == "/mnt/data/tf" and textfile[0]["readOnly"] is True
    assert service.inputs["mode"] == {"global": True}
    assert prod.service("cadvisor").inputs["mode"] == {"global": True}


def test_node_exporter_reports_host_filesystems_but_not_its_own_container_mounts(prod):
    # Without the host's PID namespace (swarm has none to give) node-exporter lists its own mount
    # table: the host's filesystems under /host, plus its container's bind mounts, which would
    # report the root disk again (and fire the disk alert once per copy).
    args = prod.service("node-exporter").inputs["taskSpec"]["containerSpec"]["args"]
    assert "--path.rootfs=/host" in args
    [exclude] = [a.split("=", 1)[1] for a in args if a.startswith("--collector.filesystem.mount-points-exclude=")]
    container_own = ["/etc/hosts", "/etc/hostname", "/etc/resolv.conf", "/textfile", "/proc", "/sys/fs/cgroup"]
    docker_internal = ["/var/lib/docker/overlay2/3f2a/merged", "/run/docker/netns/1", "/dev/shm"]
    host = ["/", "/mnt/data", "/boot", "/boot/efi", "/var/lib/docker", "/home"]
    assert [m for m in container_own + docker_internal if not re.search(exclude, m)] == []
    assert [m for m in host if re.search(exclude, m)] == []


def test_grafana_under_a_path_serves_from_that_sub_path(prod):
    upstream = prod.component.grafana_upstream
    assert (upstream.service_name, upstream.port, upstream.host, upstream.path_prefix) == (
        "shop-grafana",
        3100,
        None,
        "/grafana/",
    )
    env = prod.service("grafana").inputs["taskSpec"]["containerSpec"]["env"]
    assert env["GF_SERVER_SERVE_FROM_SUB_PATH"] == "true"
    assert env["GF_SERVER_ROOT_URL"] == "https://example.com/grafana/"
    assert env["GF_SERVER_HTTP_PORT"] == "3100"


def test_grafana_on_its_own_hostname_serves_from_the_root():
    dns = {"keel:dns": {"hostnames": ["example.com", "grafana.example.com"]}}
    declared = declare(stack_config("prod", dns, grafana_host="grafana.example.com"))
    upstream = declared.component.grafana_upstream
    assert (upstream.host, upstream.path_prefix, upstream.root_url) == (
        "grafana.example.com",
        None,
        "https://grafana.example.com/",
    )
    env = declared.service("grafana").inputs["taskSpec"]["containerSpec"]["env"]
    assert "GF_SERVER_SERVE_FROM_SUB_PATH" not in env
    assert env["GF_SERVER_DOMAIN"] == "grafana.example.com"


def test_proxy_is_told_where_to_send_its_access_log(prod):
    assert prod.component.access_log_syslog_target == "shop-nginxlog-exporter:5531"
    exporter = prod.service("nginx-exporter").inputs["taskSpec"]["containerSpec"]
    assert "--nginx.scrape-uri=http://shop-proxy:8081/stub_status" in exporter["args"]


def test_proxy_routes_to_grafana_under_its_sub_path_unstripped(prod):
    upstream = prod.component.nginx_upstream()
    assert (upstream.name, upstream.servers) == ("shop-grafana", ("tasks.shop-grafana:3100",))
    main, login, api = prod.component.nginx_routes()
    assert (main.path, main.upstream, main.host, main.websocket, main.strip_prefix) == (
        "/grafana/",
        "shop-grafana",
        None,
        True,
        False,
    )
    assert (login.path, login.rate_limit) == ("/grafana/login", "login")
    # The HTTP API is rate-limited too, and carries Grafana Live's websocket.
    assert (api.path, api.rate_limit, api.websocket) == ("/grafana/api/", "api", True)
    # Grafana's own inline boot script must run: its routes carry a policy that allows it.
    assert {route.csp for route in (main, login, api)} == {obs.GRAFANA_CSP}
    assert "script-src 'self' 'unsafe-eval' 'unsafe-inline'" in obs.GRAFANA_CSP


def test_heartbeat_url_is_a_secret_file_and_opens_the_egress_network():
    declared = declare(
        stack_config("prod", alerts={"kind": "none", "heartbeat_url_secret": "alert_heartbeat"}),
        secrets={"alert_heartbeat": WEBHOOK_URL},
    )
    alertmanager = declared.service("alertmanager").inputs["taskSpec"]
    (mounted,) = alertmanager["containerSpec"]["secrets"]
    assert mounted["fileName"] == obs.HEARTBEAT_URL_FILE
    assert base64.b64decode(declared.by_id(SECRET, mounted["secretId"]).inputs["data"]).decode() == WEBHOOK_URL
    assert len(alertmanager["networksAdvanceds"]) == 2
    for resource in declared.resources:
        for path, value in resource.plaintext_strings():
            assert "secret-token-77aa" not in value, f"{resource.urn}: heartbeat URL in plaintext at {path}"


def test_grafana_keeps_its_state_on_a_protected_volume(prod):
    volume = prod.one(VOLUME, "observability-grafana-data")
    assert volume.protect and volume.retain_on_delete, volume.urn
    mounts = prod.service("grafana").inputs["taskSpec"]["containerSpec"]["mounts"]
    assert [(m["target"], m.get("source"), m["type"]) for m in mounts] == [
        (gf.DATA_DIR, "shop-grafana-data", "volume"),
        ("/tmp", None, "tmpfs"),  # the rest of what it writes: its root is read-only
    ]


def test_proxys_json_access_log_carries_what_the_log_exporter_reads():
    # A contract with render/nginx.py: the same keel_json line goes to stdout and to the exporter.
    template = (Path(__file__).resolve().parents[2] / "render" / "templates" / "nginx.conf.j2").read_text()
    log_format = template[template.index("log_format keel_json") : template.index("access_log")]
    for key in obs.NGINXLOG_REQUIRED_FIELDS:
        assert f'"{key}":' in log_format, f"the proxy's access log has no {key}"
