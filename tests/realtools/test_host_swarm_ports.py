"""Opening the swarm's ports on a host created before its pools (render/cloud_init.py
swarm_firewall_script): the ufw commands a new node gets from cloud-init, run in the host's own
namespaces from a container (the deploy user reaches root only through Docker).

A stand-in ``docker`` on PATH records each invocation; the rules themselves are proven by the real
ufw in tests/realtools/test_swarm_firewall.py.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from render.cloud_init import swarm_firewall_rules, swarm_firewall_script
from tests.tool_requirements import require_tool

IMAGE = "debian:12.12-slim@sha256:" + "a" * 64
CIDR = "10.44.0.0/16"
STAND_IN = """#!/bin/sh
python3 -c 'import json, sys; print(json.dumps(sys.argv[1:]))' "$@" >> "$DOCKER_LOG"
exit "${DOCKER_EXIT:-0}"
"""


def run(tmp_path: Path, exit_code: int = 0) -> tuple[subprocess.CompletedProcess[str], list[list[str]]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    docker = bin_dir / "docker"
    docker.write_text(STAND_IN)
    docker.chmod(0o755)
    log = tmp_path / "docker.log"
    log.write_text("")
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "DOCKER_LOG": str(log),
        "DOCKER_EXIT": str(exit_code),
    }
    result = subprocess.run(
        ["sh", "-c", swarm_firewall_script(IMAGE, CIDR)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return result, [json.loads(line) for line in log.read_text().splitlines()]


def test_the_script_passes_shellcheck(tmp_path):
    script = tmp_path / "ports.sh"
    script.write_text("#!/bin/sh\n" + swarm_firewall_script(IMAGE, CIDR))
    result = subprocess.run([require_tool("shellcheck"), str(script)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout


def test_each_rule_of_cloud_init_runs_in_the_hosts_namespaces(tmp_path):
    result, calls = run(tmp_path)
    assert result.returncode == 0, result.stderr
    rules = swarm_firewall_rules(CIDR)
    assert len(calls) == len(rules)
    for call, rule in zip(calls, rules, strict=True):
        assert call[:6] == ["run", "--rm", "--privileged", "--pid=host", "--network=host", IMAGE]
        # PID 1's mount namespace: the host's ufw, its /etc/ufw and its iptables.
        assert call[6:13] == ["nsenter", "--target", "1", "--mount", "--uts", "--ipc", "--net"]
        assert call[13:] == ["--", *rule]


def test_a_rule_that_fails_fails_the_step(tmp_path):
    result, calls = run(tmp_path, exit_code=1)
    assert result.returncode != 0
    assert len(calls) == 1, "it stops at the first failure"


@pytest.mark.parametrize("cidr", ["10.44.0.0/16; reboot", "203.0.113.0/24 to any", "10.44.0.1/16"])
def test_anything_but_a_network_is_refused_before_a_script_exists(cidr):
    with pytest.raises(ValueError):
        swarm_firewall_script(IMAGE, cidr)
