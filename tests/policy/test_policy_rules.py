"""Each house rule on crafted resource properties: what passes, what fails, and the message."""

from __future__ import annotations

import copy
from typing import Any

import pulumi
import pytest

from policy import rules
from policy.rules import (
    FIREWALL,
    NETWORK,
    SERVER,
    SERVICE,
    check_cluster_placement,
    check_docker_socket,
    check_firewall_ssh,
    check_firewall_swarm_ports,
    check_health_check,
    check_image_pinned,
    check_log_rotation,
    check_memory_limit,
    check_network_topology,
    check_non_root,
    check_published_ports,
    check_read_only_root,
    check_server_delete_protection,
    check_store_capabilities,
    check_store_networks,
    environment_of,
    evaluate,
    policy_resource,
)


def service_props(role: str = "app", **changes: Any) -> dict[str, Any]:
    """A service that follows every rule; `changes` replace top-level keys."""
    props: dict[str, Any] = {
        "name": f"shop-{role}",
        "labels": [{"label": "keel.role", "value": role}, {"label": "other", "value": "x"}],
        "taskSpec": {
            "containerSpec": {
                "image": "ghcr.io/example/shop-api:1.4.2",
                "user": "10001:10001",
                "readOnly": True,
                "healthcheck": {"tests": ["CMD", "wget", "-q", "-O-", "http://127.0.0.1:3000/health"]},
            },
            "resources": {"limits": {"memoryBytes": 536870912}},
            "logDriver": {"name": "json-file", "options": {"max-size": "10m", "max-file": "3"}},
            "networksAdvanceds": [{"name": "net-internal-id"}],
        },
        "endpointSpec": {"ports": []},
    }
    props.update(changes)
    return props


def with_task(props: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of `props` with taskSpec.<path> (dot-separated) set to value; None deletes it."""
    out = copy.deepcopy(props)
    node = out["taskSpec"]
    *parents, last = path.split(".")
    for key in parents:
        node = node.setdefault(key, {})
    if value is None:
        node.pop(last, None)
    else:
        node[last] = value
    return out


GOOD = service_props()


# ----------------------------------------------------------------------------- memory limit


def test_memory_limit_passes_with_a_positive_limit() -> None:
    assert check_memory_limit(GOOD) == []


def test_memory_limit_accepts_a_limit_that_crossed_the_engine_as_a_double() -> None:
    assert check_memory_limit(with_task(GOOD, "resources.limits.memoryBytes", 536870912.0)) == []


@pytest.mark.parametrize("limit", [None, 0, -1, "512m", True])
def test_memory_limit_fails_when_missing_or_not_positive(limit: Any) -> None:
    props = with_task(GOOD, "resources.limits.memoryBytes", limit)
    assert check_memory_limit(props) == [
        f"taskSpec.resources.limits.memoryBytes is {limit!r}; expected a positive memory limit in bytes"
    ]


def test_memory_limit_fails_when_resources_are_absent() -> None:
    assert len(check_memory_limit(with_task(GOOD, "resources", None))) == 1


# ----------------------------------------------------------------------------- health check


def test_health_check_passes_with_a_command() -> None:
    assert check_health_check(GOOD) == []


def test_health_check_fails_when_missing() -> None:
    assert check_health_check(with_task(GOOD, "containerSpec.healthcheck", None)) == [
        "taskSpec.containerSpec.healthcheck is missing; expected a health check (tests: [CMD, ...])"
    ]


def test_health_check_none_passes_only_when_prometheus_watches_a_scratch_image() -> None:
    props = with_task(GOOD, "containerSpec.healthcheck", {"tests": ["NONE"]})
    watched = {**props, "labels": [*props["labels"], {"label": "keel.health", "value": "prometheus-target"}]}
    assert check_health_check(watched) == []
    # A label the program never writes exempts nothing (backup-freshness was one, unused, and a loophole).
    job = {**props, "labels": [*props["labels"], {"label": "keel.health", "value": "backup-freshness"}]}
    assert check_health_check(job) != []
    other = {**props, "labels": [*props["labels"], {"label": "keel.health", "value": "trust-me"}]}
    assert check_health_check(other) != []


def test_health_check_fails_when_it_disables_the_images_check() -> None:
    props = with_task(GOOD, "containerSpec.healthcheck", {"tests": ["NONE"]})
    assert check_health_check(props) == [
        "taskSpec.containerSpec.healthcheck disables the image's check (NONE); expected a real health check "
        "(or, for an image with no shell, the label keel.health=prometheus-target and a Prometheus scrape)"
    ]


def test_a_worker_without_a_port_passes_with_a_heartbeat_check() -> None:
    heartbeat = ["CMD-SHELL", '[ "$(( $(date +%s) - $(stat -c %Y /tmp/heartbeat) ))" -lt 60 ]']
    worker = with_task(service_props("worker"), "containerSpec.healthcheck", {"tests": heartbeat})
    assert check_health_check(worker) == []
    assert check_published_ports(worker) == []
    assert [v for v in evaluate([policy_resource(SERVICE, worker)]) if v.level == rules.MANDATORY] == []


@pytest.mark.parametrize("healthcheck", [None, {"tests": []}, {"tests": ["NONE"]}])
def test_a_worker_without_a_health_check_fails_even_when_labelled_for_prometheus(healthcheck: Any) -> None:
    worker = with_task(service_props("worker"), "containerSpec.healthcheck", healthcheck)
    worker["labels"].append({"label": "keel.health", "value": "prometheus-target"})
    found = [v for v in evaluate([policy_resource(SERVICE, worker)]) if v.level == rules.MANDATORY]
    assert [v.policy for v in found] == ["service-health-check"]
    if healthcheck == {"tests": ["NONE"]}:
        assert "on a worker; expected a command or a heartbeat-file check" in found[0].message


def test_health_check_fails_with_empty_tests() -> None:
    assert len(check_health_check(with_task(GOOD, "containerSpec.healthcheck", {"tests": []}))) == 1


# ----------------------------------------------------------------------------- log rotation


def test_log_rotation_passes_with_json_file_size_and_count() -> None:
    assert check_log_rotation(GOOD) == []


def test_log_rotation_fails_with_another_driver() -> None:
    props = with_task(GOOD, "logDriver", {"name": "journald"})
    assert check_log_rotation(props) == [
        "taskSpec.logDriver.name is 'journald'; expected 'json-file' with max-size and max-file"
    ]


def test_log_rotation_fails_without_a_driver() -> None:
    assert len(check_log_rotation(with_task(GOOD, "logDriver", None))) == 1


def test_log_rotation_fails_when_json_file_is_not_rotated() -> None:
    props = with_task(GOOD, "logDriver", {"name": "json-file", "options": {"max-size": "10m"}})
    assert check_log_rotation(props) == ["taskSpec.logDriver.options has no 'max-file'; expected log rotation"]


# ----------------------------------------------------------------------------- pinned images


@pytest.mark.parametrize(
    "image",
    [
        "nginx:1.28.0-alpine",
        "ghcr.io/example/shop-web:1.4.2",
        "registry.local:5000/team/app:2024-06-01",
        "redis@sha256:" + "a" * 64,
        "redis:7.4.1-alpine@sha256:" + "b" * 64,
    ],
)
def test_image_pinned_passes_with_a_tag_or_digest(image: str) -> None:
    props = with_task(GOOD, "containerSpec.image", image)
    assert check_image_pinned(props, "prod") == []
    assert check_image_pinned(props, "staging") == []


@pytest.mark.parametrize("image", ["nginx", "nginx:latest", "registry.local:5000/team/app", "ghcr.io/a/b:latest"])
def test_image_pinned_fails_outside_dev_without_a_version(image: str) -> None:
    props = with_task(GOOD, "containerSpec.image", image)
    expected = [f"image {image!r} is not pinned; expected a version tag (not latest) or an @sha256 digest"]
    assert check_image_pinned(props, "prod") == expected
    assert check_image_pinned(props, "staging") == expected


def test_image_pinned_allows_latest_on_dev() -> None:
    assert check_image_pinned(with_task(GOOD, "containerSpec.image", "nginx:latest"), "dev") == []


# ----------------------------------------------------------------------------- published ports


def test_published_ports_pass_for_the_proxy() -> None:
    props = service_props("proxy", endpointSpec={"ports": [{"targetPort": 443, "publishedPort": 443}]})
    assert check_published_ports(props) == []


def test_published_ports_pass_for_an_app_that_publishes_nothing() -> None:
    assert check_published_ports(GOOD) == []
    assert check_published_ports(service_props(endpointSpec=None)) == []


def test_published_ports_fail_for_an_app() -> None:
    props = service_props("app", endpointSpec={"ports": [{"targetPort": 3000, "publishedPort": 3000}]})
    assert check_published_ports(props) == [
        "publishes port(s) 3000 but its keel.role is 'app'; only the proxy publishes ports"
    ]


def test_published_ports_fail_for_an_unlabelled_service() -> None:
    props = service_props(labels=[], endpointSpec={"ports": [{"targetPort": 5432, "publishedPort": 5432}]})
    assert check_published_ports(props) == [
        "publishes port(s) 5432 but its keel.role is None; only the proxy publishes ports"
    ]


# ----------------------------------------------------------------------------- prod server protection


def test_prod_server_passes_with_delete_protection_and_protect() -> None:
    assert check_server_delete_protection({"deleteProtection": True}, True, "prod") == []


def test_prod_server_fails_without_delete_protection() -> None:
    assert check_server_delete_protection({"deleteProtection": False}, True, "prod") == [
        "deleteProtection is not true; expected Hetzner delete protection on a prod server"
    ]


def test_prod_server_fails_without_protect() -> None:
    assert check_server_delete_protection({"deleteProtection": True}, False, "prod") == [
        "the resource option protect is off; expected protect=True on a prod server"
    ]


def test_staging_server_may_go_unprotected() -> None:
    assert check_server_delete_protection({"deleteProtection": False}, False, "staging") == []


def test_a_prod_pool_node_may_go_unprotected_but_the_host_may_not() -> None:
    """A pool node holds no data and is removed by lowering its pool's count (drained first)."""
    node = {"deleteProtection": False, "labels": {"keel-node-role": "worker"}}
    assert check_server_delete_protection(node, False, "prod") == []
    host = {"deleteProtection": False, "labels": {"stack": "prod"}}
    assert len(check_server_delete_protection(host, False, "prod")) == 2


# ----------------------------------------------------------------------------- world-open ssh


def rule(port: str | None, sources: list[str], protocol: str = "tcp", direction: str = "in") -> dict[str, Any]:
    out: dict[str, Any] = {"direction": direction, "protocol": protocol, "sourceIps": sources}
    if port is not None:
        out["port"] = port
    return out


def test_firewall_passes_when_ssh_is_limited_and_web_is_open() -> None:
    props = {
        "rules": [
            rule("22", ["203.0.113.0/28", "2001:db8:1::/48"]),
            rule("443", ["0.0.0.0/0", "::/0"]),
            rule(None, ["0.0.0.0/0", "::/0"], protocol="icmp"),
            rule("22", ["0.0.0.0/0"], direction="out"),
        ]
    }
    assert check_firewall_ssh(props) == []


@pytest.mark.parametrize(
    ("port", "sources"),
    [("22", ["0.0.0.0/0"]), ("22", ["::/0"]), ("20-30", ["0.0.0.0/0"]), ("any", ["::/0"]), (None, ["0.0.0.0/0"])],
)
def test_firewall_fails_when_ssh_is_open_to_the_world(port: str | None, sources: list[str]) -> None:
    problems = check_firewall_ssh({"rules": [rule("443", ["0.0.0.0/0"]), rule(port, sources)]})
    assert problems == [f"rules[1] opens port {port!r} (SSH) to {sources[0]}; expected the admins' networks only"]


def test_firewall_ignores_a_range_without_ssh() -> None:
    assert check_firewall_ssh({"rules": [rule("8000-9000", ["0.0.0.0/0"])]}) == []


# ----------------------------------------------------------------------------- swarm ports


def test_a_firewall_for_ssh_web_and_ping_opens_no_swarm_port() -> None:
    props = {
        "rules": [
            rule("22", ["203.0.113.0/28"]),
            rule("80", ["0.0.0.0/0"]),
            rule("443", ["0.0.0.0/0"]),
            rule(None, ["0.0.0.0/0"], protocol="icmp"),
            rule("4789", ["0.0.0.0/0"], direction="out", protocol="udp"),
        ]
    }
    assert check_firewall_swarm_ports(props) == []


@pytest.mark.parametrize(
    ("port", "protocol", "found"),
    [
        ("2377", "tcp", "tcp 2377"),
        ("7946", "udp", "udp 7946"),
        ("4000-5000", "udp", "udp 4789"),
        ("any", "tcp", "tcp 2377"),
        (None, "udp", "udp 7946"),
    ],
)
def test_a_firewall_rule_admitting_a_swarm_port_fails(port: str | None, protocol: str, found: str) -> None:
    problems = check_firewall_swarm_ports({"rules": [rule("443", ["0.0.0.0/0"]), rule(port, ["10.0.0.0/8"], protocol)]})
    assert any(problem.startswith(f"rules[1] admits {found},") for problem in problems), problems


def test_a_firewall_rule_admitting_esp_fails() -> None:
    assert check_firewall_swarm_ports({"rules": [rule(None, ["0.0.0.0/0"], protocol="esp")]}) == [
        "rules[0] admits ESP (encrypted overlay traffic); expected the private network only"
    ]


# ----------------------------------------------------------------------------- several nodes

PIN = "node.labels.keel.node==shop-prod"
PRIVATE = policy_resource("hcloud:index/network:Network", {"name": "shop-prod-private", "ipRange": "10.44.0.0/16"})


def pinned(props: dict[str, Any], constraints: list[str] | None) -> dict[str, Any]:
    return with_task(props, "placement", {"constraints": constraints} if constraints else None)


def with_volume(props: dict[str, Any]) -> dict[str, Any]:
    return with_task(props, "containerSpec.mounts", [{"type": "volume", "source": "shop-data", "target": "/data"}])


def overlay_network(name: str, encrypted: bool) -> Any:
    props: dict[str, Any] = {"name": name, "driver": "overlay", "internal": True}
    if encrypted:
        props["options"] = {"encrypted": ""}
    return policy_resource(NETWORK, props, name=name)


def test_on_one_node_nothing_needs_a_label_or_encryption() -> None:
    db = policy_resource(SERVICE, pinned(service_props("store"), ["node.role==manager"]), name="db")
    assert check_cluster_placement([db, overlay_network("data", False)]) == []


def test_with_several_nodes_data_is_pinned_by_label_and_overlays_are_encrypted() -> None:
    db = policy_resource(SERVICE, pinned(service_props("store"), [PIN]), name="db")
    app = policy_resource(SERVICE, with_volume(pinned(service_props("app"), [PIN])), name="uploads")
    spread = policy_resource(SERVICE, service_props("app"), name="api")
    exporter = policy_resource(
        SERVICE,
        with_task(service_props("observability", mode={"global": True}), "containerSpec.mounts", [
            {"type": "bind", "source": "/", "target": "/host"}
        ]),
        name="node-exporter",
    )  # fmt: skip
    assert check_cluster_placement([PRIVATE, db, app, spread, exporter, overlay_network("data", True)]) == []


def test_with_several_nodes_a_store_pinned_by_role_fails() -> None:
    """With three managers, node.role==manager names three nodes: the store could start on an empty disk."""
    db = policy_resource(SERVICE, pinned(service_props("store"), ["node.role==manager"]), name="db")
    assert check_cluster_placement([PRIVATE, db]) == [
        (db.urn, "keeps data in a volume but is not pinned to a node by its keel.node label; "
         "expected a constraint node.labels.keel.node==<node>")
    ]  # fmt: skip


def test_with_several_nodes_an_unpinned_service_with_a_bind_mount_fails() -> None:
    job = with_task(
        service_props("backup"), "containerSpec.mounts", [{"type": "bind", "source": "/mnt/data/m", "target": "/m"}]
    )
    found = check_cluster_placement([PRIVATE, policy_resource(SERVICE, job, name="heartbeat")])
    assert [problem for _, problem in found] == [
        "keeps data in a volume but is not pinned to a node by its keel.node label; "
        "expected a constraint node.labels.keel.node==<node>"
    ]


def test_with_several_nodes_an_overlay_in_clear_fails() -> None:
    clear = overlay_network("edge", False)
    assert check_cluster_placement([PRIVATE, clear, overlay_network("data", True)]) == [
        (clear.urn, "is an overlay network in clear on a swarm of several nodes; expected options.encrypted")
    ]


# ----------------------------------------------------------------------------- advisory


@pytest.mark.parametrize("user", ["10001:10001", "101", "node", "app:app"])
def test_non_root_passes_for_an_unprivileged_user(user: str) -> None:
    assert check_non_root(with_task(GOOD, "containerSpec.user", user)) == []


@pytest.mark.parametrize("user", ["0", "0:0", "root", "root:root"])
def test_non_root_fails_for_root(user: str) -> None:
    assert check_non_root(with_task(GOOD, "containerSpec.user", user)) == [
        f"taskSpec.containerSpec.user is {user!r}; expected a non-root uid:gid"
    ]


def test_non_root_fails_when_the_user_is_left_to_the_image() -> None:
    assert len(check_non_root(with_task(GOOD, "containerSpec.user", None))) == 1


def test_read_only_root_passes_and_fails() -> None:
    assert check_read_only_root(GOOD) == []
    assert check_read_only_root(with_task(GOOD, "containerSpec.readOnly", False)) == [
        "taskSpec.containerSpec.readOnly is not true; expected a read-only root filesystem"
    ]


# ----------------------------------------------------------------------------- stores on internal networks


def network(name: str, internal: bool, id_: str | None = None) -> Any:
    props: dict[str, Any] = {"name": f"shop-{name}", "driver": "overlay", "internal": internal}
    if id_ is not None:
        props["id"] = id_
    return policy_resource(NETWORK, props, name=name)


def store(networks: list[str | None], dependencies: list[Any] = (), name: str = "db") -> Any:  # type: ignore[assignment]
    props = with_task(service_props("store"), "networksAdvanceds", [{"name": n} for n in networks])
    return policy_resource(SERVICE, props, name=name, dependencies=dependencies)


def test_store_on_an_internal_network_resolved_by_id_passes() -> None:
    internal = network("internal", True, "net-internal-id")
    assert check_store_networks([internal, store(["net-internal-id"])]) == []


def test_store_on_a_public_network_resolved_by_id_fails() -> None:
    internal = network("internal", True, "net-internal-id")
    public = network("public", False, "net-public-id")
    db = store(["net-internal-id", "net-public-id"])
    assert check_store_networks([internal, public, db]) == [
        (db.urn, "is a store attached to network 'public', which is not internal; expected internal networks only")
    ]


def test_only_an_archiving_store_may_join_the_wal_archive_egress_network() -> None:
    internal = network("internal", True, "net-internal-id")
    egress = network("pitr-egress", False, "net-egress-id")
    egress.props["labels"] = [{"label": "keel.wal-archive", "value": "egress"}]
    archiving = store(["net-internal-id", "net-egress-id"])
    archiving.props["labels"] = [*archiving.props["labels"], {"label": "keel.wal-archive", "value": "true"}]
    assert check_store_networks([internal, egress, archiving]) == []
    other = store(["net-internal-id", "net-egress-id"], name="cache")
    assert check_store_networks([internal, egress, other]) == [
        (
            other.urn,
            "is a store attached to network 'pitr-egress', which is not internal; expected internal networks only",
        )
    ]
    # The store's label alone opens no other network.
    public = network("public", False, "net-public-id")
    archiving_public = store(["net-internal-id", "net-public-id"])
    archiving_public.props["labels"] = [
        *archiving_public.props["labels"],
        {"label": "keel.wal-archive", "value": "true"},
    ]
    assert [urn for urn, _ in check_store_networks([internal, public, archiving_public])] == [archiving_public.urn]


def test_store_network_resolved_by_name_is_checked_too() -> None:
    public = network("public", False)
    db = store(["shop-public"])
    assert [urn for urn, _ in check_store_networks([public, db])] == [db.urn]


def test_store_on_a_network_of_another_stack_fails() -> None:
    db = store(["some-foreign-network"])
    assert check_store_networks([network("internal", True, "net-internal-id"), db]) == [
        (
            db.urn,
            "is attached to network 'some-foreign-network', which is not a network of this stack; "
            "expected an internal network declared here",
        )
    ]


def test_store_with_an_unknown_network_id_falls_back_to_its_dependencies() -> None:
    internal = network("internal", True)
    public = network("public", False)
    assert check_store_networks([internal, store([None], [internal])]) == []
    db = store([None], [internal, public])
    assert [problem for _, problem in check_store_networks([internal, public, db])] == [
        "is a store attached to network 'public', which is not internal; expected internal networks only"
    ]


def test_apps_may_join_public_networks() -> None:
    public = network("public", False, "net-public-id")
    app = policy_resource(SERVICE, with_task(GOOD, "networksAdvanceds", [{"name": "net-public-id"}]), name="web")
    assert check_store_networks([public, app]) == []


def role_network(name: str, role: str, internal: bool) -> Any:
    props = {
        "name": f"shop-{name}",
        "id": f"net-{name}-id",
        "internal": internal,
        "labels": [{"label": "keel.network", "value": role}],
    }
    return policy_resource(NETWORK, props, name=name)


def attached(role: str, part: str, networks: list[str]) -> Any:
    props = service_props(role)
    props["labels"].append({"label": "keel.service", "value": part})
    return policy_resource(
        SERVICE, with_task(props, "networksAdvanceds", [{"id": f"net-{n}-id"} for n in networks]), name=part
    )


def test_store_on_the_edge_network_fails_by_its_role() -> None:
    edge, data = role_network("edge", "edge", False), role_network("data", "data", True)
    db = attached("store", "db", ["data", "edge"])
    assert check_store_networks([edge, data, db]) == [
        (db.urn, "is a store attached to network 'edge', the edge network the proxy shares; expected the data network")
    ]


def test_proxy_on_the_data_network_fails_and_on_the_edge_passes() -> None:
    edge, data = role_network("edge", "edge", False), role_network("data", "data", True)
    assert check_network_topology([edge, data, attached("proxy", "proxy", ["edge"])]) == []
    proxy = attached("proxy", "proxy", ["edge", "data"])
    assert [(urn, problem.split(",")[0]) for urn, problem in check_network_topology([edge, data, proxy])] == [
        (proxy.urn, "is the proxy attached to network 'data'")
    ]


def test_only_prometheus_and_alertmanager_join_the_alerting_network() -> None:
    alerting = role_network("alerting", "alerting", True)
    allowed = [attached("observability", part, ["alerting"]) for part in ("prometheus", "alertmanager")]
    assert check_network_topology([alerting, *allowed]) == []
    intruders = [attached("observability", "grafana", ["alerting"]), attached("app", "prometheus", ["alerting"])]
    assert [urn for urn, _ in check_network_topology([alerting, *allowed, *intruders])] == [i.urn for i in intruders]


def with_mounts(role: str, mounts: list[dict[str, Any]], user: str = "10001:10001") -> dict[str, Any]:
    return with_task(with_task(service_props(role), "containerSpec.mounts", mounts), "containerSpec.user", user)


def bind(source: str, read_only: bool = True) -> dict[str, Any]:
    return {"type": "bind", "source": source, "target": source, "readOnly": read_only}


def test_only_the_socket_proxy_mounts_the_docker_socket() -> None:
    assert check_docker_socket(with_mounts("socket-proxy", [bind("/var/run/docker.sock")], "0:0")) == []
    for role in ("observability", "backup", "app"):
        for source in ("/var/run/docker.sock", "/run/docker.sock", "/var/run", "/run/"):
            problems = check_docker_socket(with_mounts(role, [bind(source)], "0:0"))
            assert len(problems) == 1 and "holds the Docker socket" in problems[0], (role, source)
    # A read-only socket is still the whole API, whoever runs.
    assert check_docker_socket(with_mounts("observability", [bind("/var/run/docker.sock")], "65534:65534"))
    # Even the proxy may not take the whole of /var/run.
    assert check_docker_socket(with_mounts("socket-proxy", [bind("/var/run")], "0:0"))


def test_a_read_only_root_mount_passes_only_for_a_user_who_cannot_open_the_socket() -> None:
    """node-exporter reads / for filesystem metrics: the socket (root:docker 0660) is closed to nobody."""
    assert check_docker_socket(with_mounts("observability", [bind("/")], "65534:65534")) == []
    assert check_docker_socket(with_mounts("observability", [bind("/", read_only=False)], "65534:65534"))
    for user in ("0:0", "65534", "65534:0", "", "nobody:nogroup"):
        assert check_docker_socket(with_mounts("observability", [bind("/")], user)), user
    grouped = with_task(with_mounts("observability", [bind("/")], "65534:65534"), "containerSpec.groups", ["999"])
    assert check_docker_socket(grouped)
    assert check_docker_socket(with_mounts("observability", [bind("/sys"), bind("/proc")], "0:0")) == []


# ----------------------------------------------------------------------------- environment and wrappers


def test_environment_comes_from_policy_config_first() -> None:
    assert environment_of({"environment": "dev"}) == "dev"


def test_environment_falls_back_to_the_stack_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pulumi.Config, "get", lambda self, key, *a, **k: "staging" if key == "environment" else None)
    assert environment_of(None) == "staging"
    assert environment_of({"environment": "not-an-env"}) == "staging"


def test_environment_defaults_to_the_strictest(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pulumi.Config, "get", lambda self, key, *a, **k: None)
    assert environment_of({}) == "prod"


def test_evaluate_reports_each_failing_policy_with_its_level_and_urn() -> None:
    bad_app = policy_resource(
        SERVICE,
        service_props(
            "app",
            endpointSpec={"ports": [{"targetPort": 80, "publishedPort": 80}]},
            taskSpec={"containerSpec": {"image": "nginx:latest"}},
        ),
        name="web",
    )
    server = policy_resource(SERVER, {"deleteProtection": False}, name="server", protect=False)
    firewall = policy_resource(FIREWALL, {"rules": [rule("22", ["0.0.0.0/0"])]}, name="fw")
    found = evaluate([bad_app, server, firewall], config={"image-pinned": {"environment": "prod"}})
    by_policy = {(v.policy, v.urn) for v in found}
    assert by_policy == {
        ("service-memory-limit", bad_app.urn),
        ("service-health-check", bad_app.urn),
        ("service-log-rotation", bad_app.urn),
        ("image-pinned", bad_app.urn),
        ("only-proxy-publishes-ports", bad_app.urn),
        ("prod-server-delete-protection", server.urn),
        ("no-world-ssh", firewall.urn),
        ("service-non-root", bad_app.urn),
        ("service-read-only-root", bad_app.urn),
    }
    levels = {v.policy: v.level for v in found}
    assert levels["service-non-root"] == rules.ADVISORY
    assert levels["service-read-only-root"] == rules.ADVISORY
    assert levels["image-pinned"] == rules.MANDATORY


def test_every_mandatory_rule_of_the_issue_is_in_the_pack() -> None:
    mandatory = {p.name for p in rules.POLICIES if p.enforcement_level == rules.MANDATORY}
    advisory = {p.name for p in rules.POLICIES if p.enforcement_level == rules.ADVISORY}
    assert mandatory == {
        "service-memory-limit",
        "service-health-check",
        "service-log-rotation",
        "image-pinned",
        "only-proxy-publishes-ports",
        "stores-on-internal-networks",
        "network-topology",
        "swarm-ports-private",
        "cluster-placement",
        "docker-socket-only-in-socket-proxy",
        "stores-drop-all-capabilities",
        "prod-server-delete-protection",
        "no-world-ssh",
    }
    assert advisory == {"service-non-root", "service-read-only-root"}


def test_a_store_passes_only_with_every_capability_dropped_and_none_added() -> None:
    store = service_props("store")
    store["taskSpec"]["containerSpec"]["capDrops"] = ["ALL"]
    assert check_store_capabilities(store) == []
    kept = with_task(store, "containerSpec.capDrops", None)
    assert check_store_capabilities(kept) == ["taskSpec.containerSpec.capDrops is []; expected ['ALL'] for a store"]
    added = with_task(store, "containerSpec.capAdds", ["CHOWN", "SETUID"])
    assert check_store_capabilities(added) == [
        "taskSpec.containerSpec.capAdds is ['CHOWN', 'SETUID']; expected none for a store"
    ]
    # Other roles are the advisory rules' and the graph tests' concern.
    assert check_store_capabilities(service_props("app")) == []
