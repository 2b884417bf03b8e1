"""The pack as the Pulumi CLI runs it: `python policy/__main__.py` serving the analyzer gRPC protocol.

The CLI starts the pack, reads the port it prints, and calls GetAnalyzerInfo, Analyze (per
resource) and AnalyzeStack. These tests do the same, so the entry point, the enforcement
levels and the stack config fallback (PULUMI_CONFIG, which the CLI sets for policy packs)
are checked without the CLI.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import empty_pb2, struct_pb2
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc

ROOT = Path(__file__).resolve().parents[2]
PACK = ROOT / "policy"
UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"  # the engine's sentinel for a value not known in preview
SERVICE = "docker:index/service:Service"
NETWORK = "docker:index/network:Network"
MANDATORY = analyzer_pb2.EnforcementLevel.MANDATORY
ADVISORY = analyzer_pb2.EnforcementLevel.ADVISORY


class Pack:
    """A running policy pack process and a stub to call it."""

    def __init__(self, stack_config: dict[str, str]) -> None:
        env = dict(os.environ, PULUMI_CONFIG=json.dumps(stack_config))
        # The CLI runs the pack with the pack's directory as cwd.
        self.process = subprocess.Popen(
            [sys.executable, "-u", str(PACK / "__main__.py")],
            cwd=PACK,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline().strip()
        if not line.isdigit():
            self.process.kill()
            _, stderr = self.process.communicate(timeout=10)
            raise AssertionError(f"the pack printed {line!r} instead of a port; stderr: {stderr}")
        self.channel = grpc.insecure_channel(f"127.0.0.1:{line}")
        self.stub = analyzer_pb2_grpc.AnalyzerStub(self.channel)

    def close(self) -> None:
        self.channel.close()
        self.process.kill()
        self.process.wait(timeout=10)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()

    def analyze(self, type_: str, props: dict[str, Any], name: str = "r", protect: bool = False) -> list[Any]:
        request = analyzer_pb2.AnalyzeRequest(
            type=type_,
            properties=_struct(props),
            urn=_urn(type_, name),
            name=name,
            options=analyzer_pb2.AnalyzerResourceOptions(protect=protect),
        )
        return list(self.stub.Analyze(request, timeout=30).diagnostics)

    def analyze_stack(self, resources: list[analyzer_pb2.AnalyzerResource]) -> list[Any]:
        request = analyzer_pb2.AnalyzeStackRequest(resources=resources)
        return list(self.stub.AnalyzeStack(request, timeout=30).diagnostics)


def _struct(props: dict[str, Any]) -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    out.update(props)
    return out


def _urn(type_: str, name: str) -> str:
    return f"urn:pulumi:prod::keel::{type_}::{name}"


@pytest.fixture
def pack_for() -> Iterator[Any]:
    started: list[Pack] = []

    def start(environment: str | None) -> Pack:
        pack = Pack({"keel:environment": environment} if environment else {})
        started.append(pack)
        return pack

    yield start
    for pack in started:
        pack.close()


def latest_app() -> dict[str, Any]:
    return {
        "labels": [{"label": "keel.role", "value": "app"}],
        "taskSpec": {
            "containerSpec": {
                "image": "nginx:latest",
                "user": "101:101",
                "readOnly": True,
                "healthcheck": {"tests": ["CMD", "true"]},
            },
            "resources": {"limits": {"memoryBytes": 67108864}},
            "logDriver": {"name": "json-file", "options": {"max-size": "10m", "max-file": "3"}},
        },
    }


def test_pack_serves_every_policy_with_its_enforcement_level(pack_for: Any) -> None:
    info = pack_for("prod").stub.GetAnalyzerInfo(empty_pb2.Empty(), timeout=30)
    assert info.name == "keel-house-rules"
    levels = {p.name: p.enforcementLevel for p in info.policies}
    assert levels == {
        "service-memory-limit": MANDATORY,
        "service-health-check": MANDATORY,
        "service-log-rotation": MANDATORY,
        "image-pinned": MANDATORY,
        "only-proxy-publishes-ports": MANDATORY,
        "stores-on-internal-networks": MANDATORY,
        "network-topology": MANDATORY,
        "swarm-ports-private": MANDATORY,
        "cluster-placement": MANDATORY,
        "docker-socket-only-in-socket-proxy": MANDATORY,
        "stores-drop-all-capabilities": MANDATORY,
        "prod-server-delete-protection": MANDATORY,
        "no-world-ssh": MANDATORY,
        "service-non-root": ADVISORY,
        "service-read-only-root": ADVISORY,
    }


def test_pack_reads_the_environment_from_stack_config(pack_for: Any) -> None:
    on_dev = pack_for("dev").analyze(SERVICE, latest_app())
    assert [d.policyName for d in on_dev] == []
    on_prod = pack_for("prod").analyze(SERVICE, latest_app())
    assert [(d.policyName, d.enforcementLevel) for d in on_prod] == [("image-pinned", MANDATORY)]
    assert "nginx:latest" in on_prod[0].message


def test_pack_takes_an_unknown_environment_as_prod(pack_for: Any) -> None:
    diagnostics = pack_for(None).analyze(
        "hcloud:index/server:Server", {"deleteProtection": False, "name": "s"}, protect=False
    )
    # The analyzer prefixes each message with the policy's description line.
    assert sorted(d.message.splitlines()[-1] for d in diagnostics) == [
        "deleteProtection is not true; expected Hetzner delete protection on a prod server",
        "the resource option protect is off; expected protect=True on a prod server",
    ]


def test_pack_fails_a_store_on_a_public_network_even_before_its_id_is_known(pack_for: Any) -> None:
    public = analyzer_pb2.AnalyzerResource(
        type=NETWORK, urn=_urn(NETWORK, "public"), name="public", properties=_struct({"internal": False, "id": UNKNOWN})
    )
    store_props = latest_app()
    store_props["labels"] = [{"label": "keel.role", "value": "store"}]
    store_props["taskSpec"]["networksAdvanceds"] = [{"name": UNKNOWN}]
    store = analyzer_pb2.AnalyzerResource(
        type=SERVICE,
        urn=_urn(SERVICE, "db"),
        name="db",
        properties=_struct(store_props),
        dependencies=[public.urn],
    )
    diagnostics = pack_for("prod").analyze_stack([public, store])
    assert [(d.policyName, d.urn) for d in diagnostics] == [("stores-on-internal-networks", store.urn)]
    assert "'public', which is not internal" in diagnostics[0].message
