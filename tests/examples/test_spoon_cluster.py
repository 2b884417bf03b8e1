"""spoon-cluster: spoon on three nodes (the host and two more managers), under the mock runtime.

What a three-node prod stack declares: the private network and every node on it, the join with a
token that stays secret, each node's membership (whose delete drains it), stores and everything
with a volume pinned to the host by its keel.node label, the app spread over the nodes, encrypted
overlays, the swarm's ports closed to the internet, and the cost and memory budget of all nodes.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from config.capacity import node_budgets
from policy import rules
from tests.examples.example_helpers import example_run, service, stack_config
from tools import mockrun

NETWORK = "hcloud:index/network:Network"
SUBNET = "hcloud:index/networkSubnet:NetworkSubnet"
ATTACHMENT = "hcloud:index/serverNetwork:ServerNetwork"
SERVER = "hcloud:index/server:Server"
FIREWALL = "hcloud:index/firewall:Firewall"
COMMAND = "command:remote:Command"
SERVICE = "docker:index/service:Service"
DOCKER_NETWORK = "docker:index/network:Network"
HOST_NODE = "spoon-spoon-cluster"
PIN = f"node.labels.keel.node=={HOST_NODE}"
NODES = (f"{HOST_NODE}-managers-1", f"{HOST_NODE}-managers-2")


@pytest.fixture(scope="module")
def run() -> mockrun.Run:
    return example_run("spoon-cluster")


def named(run: mockrun.Run, name: str) -> mockrun.Registered:
    found = [r for r in run.resources if r.name == name]
    assert len(found) == 1, f"{name}: {len(found)} registrations"
    return found[0]


def constraints(resource: mockrun.Registered) -> list[str]:
    return list(((resource.inputs.get("taskSpec") or {}).get("placement") or {}).get("constraints") or [])


def test_every_node_is_a_server_on_one_private_network(run):
    network = run.one(NETWORK)
    assert network.inputs["ipRange"] == "10.44.0.0/16"
    subnet = run.one(SUBNET)
    assert (subnet.inputs["type"], subnet.inputs["networkZone"], subnet.inputs["ipRange"]) == (
        "cloud",
        "eu-central",
        "10.44.0.0/24",
    )
    servers = {r.inputs["name"]: r for r in run.of_type(SERVER)}
    assert set(servers) == {HOST_NODE, *NODES}
    for name in NODES:
        assert servers[name].inputs["serverType"] == "cx23"
        assert servers[name].inputs["labels"]["keel-node-role"] == "manager"
    attachments = run.of_type(ATTACHMENT)
    assert len(attachments) == 3
    assert all(a.inputs["subnetId"] == subnet.id for a in attachments)
    # The host at a fixed address (after Hetzner's gateway): what the others join.
    primary = named(run, "cluster-primary-network")
    assert primary.inputs["ip"] == "10.44.0.2"


def test_no_firewall_opens_a_swarm_port_to_the_internet(run):
    firewalls = run.of_type(FIREWALL)
    assert {f.inputs["name"] for f in firewalls} >= {f"{HOST_NODE}-firewall", f"{HOST_NODE}-nodes-firewall"}
    for firewall in firewalls:
        assert rules.check_firewall_swarm_ports(firewall.inputs) == [], firewall.name
    nodes_firewall = named(run, "cluster-nodes-firewall")
    assert {(r["protocol"], r.get("port")) for r in nodes_firewall.inputs["rules"]} == {("tcp", "22"), ("icmp", None)}


def test_pool_nodes_boot_in_join_mode_with_swarm_ports_from_the_private_network_only(run):
    for name in NODES:
        server = next(r for r in run.of_type(SERVER) if r.inputs["name"] == name)
        assert "userData" in server.secret_paths(), "the user data holds the node's private host key"
        assert "user_data" in server.ignore_changes or "userData" in server.ignore_changes


def test_the_join_token_is_a_secret_never_logged(run):
    for role in ("manager", "worker"):
        token = named(run, f"cluster-{role}-token")
        assert token.inputs["logging"] == "none"
        assert "stdout" in token.secret_outputs
    for index in (1, 2):
        join = named(run, f"node-managers-{index}-join")
        assert "stdin" in join.secret_paths()
        # On the node itself, over its own pinned host key.
        assert join.inputs["connection"]["hostKey"] != named(run, "host-ready").inputs["connection"]["hostKey"]
        assert named(run, "cluster-manager-token").urn in join.depends_on


def test_each_nodes_membership_runs_on_the_host_after_its_join_and_drains_on_delete(run):
    host_connection = named(run, "host-ready").inputs["connection"]
    for index in (1, 2):
        membership = named(run, f"node-managers-{index}-membership")
        join = named(run, f"node-managers-{index}-join")
        assert membership.inputs["connection"] == host_connection
        assert join.urn in membership.depends_on
        assert membership.inputs["delete"], "the delete drains and removes the node"
        assert membership.inputs["triggers"], "a replaced server is a new node: its membership is replaced"
    # The host's own membership is never deleted by the program: it holds the stores.
    assert "delete" not in named(run, "cluster-primary-membership").inputs


def test_stores_and_everything_with_a_volume_are_pinned_to_the_host_by_label(run):
    services = run.of_type(SERVICE)
    pinned = {s.name for s in services if PIN in constraints(s)}
    for name in ("db-service", "cache-service", "proxy-service", "observability-prometheus", "observability-grafana"):
        assert name in pinned, name
    assert not any("node.role==manager" in constraints(s) for s in services), (
        "three managers: the role names three nodes"
    )
    networks = [*run.of_type(DOCKER_NETWORK), run.one(NETWORK)]
    resources = [rules.policy_resource(r.type, r.inputs, name=r.name) for r in [*services, *networks]]
    assert rules.check_cluster_placement(resources) == []


def test_the_app_spreads_over_the_nodes_with_room_for_a_lost_node(run):
    nextjs = service(run, "nextjs")
    placement = nextjs.inputs["taskSpec"]["placement"]
    assert placement["prefs"] == ["node.id"]
    # 3 replicas over 3 nodes: at most ceil(3 / (3 - 1)) = 2 per node, so 2 nodes hold all 3.
    assert placement["maxReplicas"] == 2
    assert not placement.get("constraints")


def test_node_exporter_and_cadvisor_run_on_every_node(run):
    for part in ("node-exporter", "cadvisor", "docker-api"):
        assert named(run, f"observability-{part}").inputs["mode"] == {"global": True}


def test_each_cadvisor_asks_its_own_nodes_daemon(run):
    """One proxy per node, listening on a Unix socket in a local volume (one per node) that the
    cAdvisor of that node mounts: a node's containers are resolved by that node's daemon."""
    proxy = named(run, "observability-docker-api")
    cadvisor = named(run, "observability-cadvisor")
    socket_volume = "spoon-docker-api-socket"

    def mounts(service: mockrun.Registered) -> dict[str, dict[str, Any]]:
        return {m["target"]: m for m in service.inputs["taskSpec"]["containerSpec"]["mounts"]}

    assert mounts(proxy)["/run/keel-docker-api"]["source"] == socket_volume
    assert mounts(cadvisor)["/run/keel-docker-api"] == {
        "type": "volume",
        "source": socket_volume,
        "target": "/run/keel-docker-api",
        "readOnly": True,
    }
    assert (
        "--docker=unix:///run/keel-docker-api/spoon-docker-api.sock"
        in cadvisor.inputs["taskSpec"]["containerSpec"]["args"]
    )
    assert not constraints(proxy)


def test_every_overlay_network_is_encrypted_and_labelled_so(run):
    networks = run.of_type(DOCKER_NETWORK)
    assert networks
    for network in networks:
        assert network.inputs["options"] == {"encrypted": ""}, network.name
        assert {"label": "keel.encrypted", "value": "true"} in network.inputs["labels"], network.name
        assert "options" in network.ignore_changes


def test_the_cost_sums_every_node_and_the_budget_checks_each(run):
    # cx33 host with IPv4 and 40 GiB volume (spoon's 9.38), and two cx23 with their IPv4.
    assert run.outputs["estimated_monthly_cost_eur"] == pytest.approx(9.38 + 2 * (3.99 + 0.60))
    budget = run.outputs["memory_budget"]
    assert budget["host_memory_mb"] == 8192 + 2 * 4096
    per_node = node_budgets(stack_config("spoon-cluster"))
    assert set(per_node) == {"host", "managers-1", "managers-2"}
    # The others hold only the global tasks; the host everything pinned to it besides.
    assert {line.name for line in per_node["managers-1"].lines} == {"node-exporter", "cadvisor", "docker-api"}
    assert {"db", "cache", "proxy", "prometheus"} <= {line.name for line in per_node["host"].lines}


def test_pool_nodes_never_initialise_a_swarm_of_their_own(run):
    """A pool node joins the host's swarm over SSH after it boots; its cloud-init must not start one."""
    for name in NODES:
        server = next(r for r in run.of_type(SERVER) if r.inputs["name"] == name)
        document: dict[str, Any] = yaml.safe_load(server.inputs["userData"])
        assert document["users"][0]["name"] == "deploy"
        assert ["/usr/local/sbin/swarm-init"] not in document["runcmd"], document["runcmd"]
    host = next(r for r in run.of_type(SERVER) if r.inputs["name"] == HOST_NODE)
    assert ["/usr/local/sbin/swarm-init"] in yaml.safe_load(host.inputs["userData"])["runcmd"]


def test_each_pool_node_is_exported_with_its_ssh_command(run):
    assert set(run.outputs["node_ssh_commands"]) == set(NODES)
    assert all(command.startswith("ssh deploy@") for command in run.outputs["node_ssh_commands"].values())
