"""The DOCKER-USER rules that keep containers off Hetzner's metadata service, loaded by the real
iptables-restore: checked with --test, and loaded for real (twice) into a throw-away network
namespace, whose DOCKER-USER chain must then hold exactly the rules, once."""

from __future__ import annotations

import subprocess
from pathlib import Path

from render import host_units
from tests.tool_requirements import require_root, require_tool

EXPECTED_CHAIN = [
    "-N DOCKER-USER",
    "-A DOCKER-USER -d 169.254.169.254/32 -j REJECT --reject-with icmp-admin-prohibited",
    "-A DOCKER-USER -j RETURN",
]


def rules_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "docker-user.rules"
    path.write_text(text)
    return path


def test_the_rules_pass_iptables_restore_test_and_a_broken_rule_does_not(tmp_path: Path):
    restore = require_tool("iptables-restore")
    require_root("iptables-restore --test reads the kernel's filter table")
    good = rules_file(tmp_path, host_units.docker_user_rules())
    checked = subprocess.run([restore, "--test", "--noflush", str(good)], capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stderr
    broken = rules_file(tmp_path, host_units.docker_user_rules().replace("REJECT", "REJCT"))
    refused = subprocess.run([restore, "--test", "--noflush", str(broken)], capture_output=True, text=True, timeout=30)
    assert refused.returncode != 0


def test_loading_the_rules_twice_leaves_one_copy_in_docker_user(tmp_path: Path):
    """The unit runs again whenever Docker starts: --noflush with the chain named flushes it first."""
    restore = require_tool("iptables-restore")
    unshare = require_tool("unshare")
    require_root("a network namespace of its own")
    path = rules_file(tmp_path, host_units.docker_user_rules())
    iptables = str(Path(restore).with_name("iptables"))
    script = f'"{restore}" --noflush "{path}" && "{restore}" --noflush "{path}" && "{iptables}" -S DOCKER-USER'
    loaded = subprocess.run([unshare, "-n", "sh", "-c", script], capture_output=True, text=True, timeout=30)
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.splitlines() == EXPECTED_CHAIN


def test_the_unit_loads_the_rules_cloud_init_writes():
    files = host_units.host_files(host_units.HostUnitsSpec(data_dir="/mnt/data", metrics_dir="/mnt/data/metrics"))
    unit = files[f"{host_units.UNIT_DIR}/{host_units.METADATA_BLOCK}.service"][1]
    assert f"ExecStart=/usr/sbin/iptables-restore --noflush {host_units.DOCKER_USER_RULES}\n" in unit
    assert files[host_units.DOCKER_USER_RULES][1] == host_units.docker_user_rules()
    assert "PartOf=docker.service" in unit and "WantedBy=docker.service" in unit
