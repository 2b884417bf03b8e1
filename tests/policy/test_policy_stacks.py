"""The policy pack over what each stack really registers under the mock runtime.

Every stack must pass the mandatory rules. The same adapter and evaluation, fed a stack's
resources plus crafted bad ones, must fail: so a pass means the rules looked, not that the
code path skipped them.
"""

from __future__ import annotations

import copy
import dataclasses
from functools import cache
from typing import Any

import pytest
import yaml

from policy.rules import MANDATORY, NETWORK, SERVICE, Violation, evaluate, policy_resource
from tests.helpers import stack_run
from tools import mockrun

STACKS = ("dev", "staging", "prod")


@cache
def registered(stack: str) -> mockrun.Run:
    run = stack_run(stack)
    assert run.error is None, f"{stack}: the program failed under mocks: {run.error!r}"
    return run


def environment(stack: str) -> str:
    data = yaml.safe_load(mockrun.stack_file(stack).read_text())
    return str(data["config"]["keel:environment"])


def as_policy_resources(resources: list[mockrun.Registered]) -> list[Any]:
    """What the analyzer would hand the pack: custom resources, engine property names, options, dependencies.

    Component resources are not sent to analyzers. Properties are the mock's outputs (inputs plus
    what the provider filled in), as after an update.
    """
    custom = [r for r in resources if r.custom]
    built = {
        r.urn: policy_resource(r.type, r.outputs or r.inputs, urn=r.urn, name=r.name, protect=r.protect) for r in custom
    }
    for r in custom:
        built[r.urn].dependencies.extend(built[urn] for urn in r.depends_on if urn in built)
    return list(built.values())


def run_pack(stack: str, resources: list[mockrun.Registered]) -> list[Violation]:
    env = {"environment": environment(stack)}
    config = {"image-pinned": env, "prod-server-delete-protection": env}
    return evaluate(as_policy_resources(resources), config=config)


def describe(violations: list[Violation]) -> str:
    return "\n".join(f"{v.policy} [{v.level.value}] {v.urn}: {v.message}" for v in violations)


@pytest.mark.parametrize("stack", STACKS)
def test_stack_passes_every_mandatory_rule(stack: str) -> None:
    run = registered(stack)
    assert any(r.custom for r in run.resources), f"{stack} registered no resources"
    mandatory = [v for v in run_pack(stack, run.resources) if v.level == MANDATORY]
    assert mandatory == [], describe(mandatory)


@pytest.mark.parametrize("stack", STACKS)
def test_every_registered_service_is_labelled_with_a_role(stack: str) -> None:
    for service in registered(stack).of_type(SERVICE):
        roles = [item.get("value") for item in service.inputs.get("labels", []) if item.get("label") == "keel.role"]
        roles_known = {"proxy", "app", "worker", "store", "observability", "backup", "scheduler", "job", "socket-proxy"}
        assert roles and roles[0] in roles_known, service.urn


def crafted(stack: str, type_: str, name: str, inputs: dict[str, Any], **options: Any) -> mockrun.Registered:
    return mockrun.Registered(
        urn=f"urn:pulumi:{stack}::keel::{type_}::{name}",
        type=type_,
        name=name,
        custom=True,
        inputs=inputs,
        raw_inputs=inputs,
        parent="",
        provider="",
        protect=options.get("protect", False),
        retain_on_delete=False,
        ignore_changes=[],
        depends_on=options.get("depends_on", []),
        delete_before_replace=False,
        outputs={},
    )


def bad_resources(stack: str) -> list[mockrun.Registered]:
    """A service, a network, a firewall that break the rules, and the stack's server unprotected."""
    public = crafted(stack, NETWORK, "rogue-public", {"name": "rogue-public", "internal": False, "id": "rogue-net"})
    service = crafted(
        stack,
        SERVICE,
        "rogue-db",
        {
            "name": "rogue-db",
            "labels": [{"label": "keel.role", "value": "store"}],
            "taskSpec": {
                "containerSpec": {"image": "postgres:latest"},
                "networksAdvanceds": [{"name": "rogue-net"}],
            },
            "endpointSpec": {"ports": [{"targetPort": 5432, "publishedPort": 5432}]},
        },
    )
    networks = {r.name: r for r in registered(stack).of_type(NETWORK)}
    # Attachments name networks by an id known only after an up: the analyzer then matches them
    # through the service's dependencies, as it does for the stack's own services.
    edge, data = networks["networks-edge"].urn, networks["networks-data"].urn
    # A store on the edge, the proxy on the data network, the socket mounted outside the socket proxy.
    edge_db = crafted(
        stack,
        SERVICE,
        "rogue-edge-db",
        {"labels": [{"label": "keel.role", "value": "store"}], "taskSpec": {"networksAdvanceds": [{"id": None}]}},
        depends_on=[edge],
    )
    data_proxy = crafted(
        stack,
        SERVICE,
        "rogue-proxy",
        {"labels": [{"label": "keel.role", "value": "proxy"}], "taskSpec": {"networksAdvanceds": [{"id": None}]}},
        depends_on=[data],
    )
    socket = crafted(
        stack,
        SERVICE,
        "rogue-cadvisor",
        {
            "labels": [{"label": "keel.role", "value": "observability"}],
            "taskSpec": {
                "containerSpec": {
                    "mounts": [{"type": "bind", "source": "/var/run/docker.sock", "target": "/s", "readOnly": True}]
                }
            },
        },
    )
    firewall = crafted(
        stack,
        "hcloud:index/firewall:Firewall",
        "rogue-fw",
        {"rules": [{"direction": "in", "protocol": "tcp", "port": "22", "sourceIps": ["0.0.0.0/0"]}]},
    )
    extra = [public, service, edge_db, data_proxy, socket, firewall]
    for server in registered(stack).of_type("hcloud:index/server:Server"):
        unprotected = dataclasses.replace(server, protect=False, outputs={}, inputs=copy.deepcopy(server.inputs))
        unprotected.inputs["deleteProtection"] = False
        extra.append(dataclasses.replace(unprotected, urn=server.urn + "-unprotected"))
    return extra


@pytest.mark.parametrize("stack", STACKS)
def test_the_same_path_fails_a_stack_with_crafted_bad_resources(stack: str) -> None:
    resources = registered(stack).resources + bad_resources(stack)
    failed = {v.policy for v in run_pack(stack, resources) if v.level == MANDATORY}
    expected = {
        "service-memory-limit",
        "service-health-check",
        "service-log-rotation",
        "only-proxy-publishes-ports",
        "stores-on-internal-networks",
        "network-topology",
        "docker-socket-only-in-socket-proxy",
        "stores-drop-all-capabilities",
        "no-world-ssh",
    }
    if environment(stack) != "dev":
        expected.add("image-pinned")
    if environment(stack) == "prod":
        expected.add("prod-server-delete-protection")
    assert failed == expected, describe(run_pack(stack, resources))
