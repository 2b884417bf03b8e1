"""The cloud-init user data: golden text, Debian's real `cloud-init schema`, and what it must do."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from render.cloud_init import CloudInitSpec, render_cloud_init, volume_device
from tests.tool_requirements import require_tool
from tools import mockrun

GOLDEN = Path(__file__).parent / "golden" / "cloud-init"
# Top-level keys this template may use; `cloud-init schema` accepts unknown keys silently.
KNOWN_KEYS = {
    "package_update", "package_upgrade", "packages", "ssh_pwauth", "disable_root", "ssh_deletekeys",
    "ssh_genkeytypes", "ssh_keys", "users", "swap", "mounts", "write_files", "runcmd",
}  # fmt: skip


def user_data(stack: str) -> str:
    run = mockrun.run(stack)
    assert run.error is None, run.error
    return str(run.one("hcloud:index/server:Server").inputs["userData"])


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_user_data_matches_golden(stack: str):
    text = user_data(stack)
    golden = GOLDEN / f"{stack}.yaml"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(text)
    assert text == golden.read_text(), f"rendered cloud-init differs from {golden}; UPDATE_GOLDEN=1 to accept"


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_user_data_passes_cloud_init_schema(stack: str, tmp_path: Path):
    tool = require_tool("cloud-init")
    path = tmp_path / "user-data.yaml"
    path.write_text(user_data(stack))
    result = subprocess.run([tool, "schema", "--config-file", str(path)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Valid schema" in result.stdout or "Valid cloud-config" in result.stdout, result.stdout


def test_schema_check_catches_a_broken_document(tmp_path: Path):
    """The schema step can fail: a wrong type is reported."""
    path = tmp_path / "bad.yaml"
    path.write_text("#cloud-config\nssh_pwauth: [not, a, boolean]\npackages: 3\n")
    result = subprocess.run(
        [require_tool("cloud-init"), "schema", "--config-file", str(path)], capture_output=True, text=True
    )
    assert result.returncode != 0


def spec(**overrides: object) -> CloudInitSpec:
    values: dict[str, object] = dict(
        deploy_user="deploy",
        admin_ssh_keys=("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGmtrCxHTDSu4Fgp8J ops@example.com",),
        admin_cidrs=("203.0.113.0/28", "2001:db8:1::/48"),
        host_private_key="-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n",
        host_public_key="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOK12 host\n",
        advertise_addr="198.51.100.10",
        data_device=volume_device(4242),
    )
    values.update(overrides)
    return CloudInitSpec(**values)  # type: ignore[arg-type]


def parsed(**overrides: object) -> dict:
    return yaml.safe_load(render_cloud_init(spec(**overrides)))


def test_uses_only_known_top_level_keys():
    assert set(parsed()) <= KNOWN_KEYS, set(parsed()) - KNOWN_KEYS


def test_ssh_is_key_only_without_root_and_with_raised_max_startups():
    doc = parsed()
    assert doc["ssh_pwauth"] is False and doc["disable_root"] is True
    sshd = next(f["content"] for f in doc["write_files"] if f["path"].startswith("/etc/ssh/sshd_config.d/"))
    assert "PermitRootLogin no" in sshd and "PasswordAuthentication no" in sshd
    assert "MaxStartups 100:30:200" in sshd
    assert "AllowUsers deploy" in sshd


def test_pre_generated_host_key_is_installed_and_no_other_is_generated():
    doc = parsed()
    assert doc["ssh_keys"]["ed25519_private"].startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    assert doc["ssh_keys"]["ed25519_public"] == "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOK12 host"
    assert doc["ssh_deletekeys"] is True and doc["ssh_genkeytypes"] == ["ed25519"]


def test_deploy_user_is_in_docker_group_with_admin_keys():
    doc = parsed()
    assert doc["users"][0]["name"] == "deploy"
    assert doc["users"][0]["ssh_authorized_keys"] == list(spec().admin_ssh_keys)
    assert ["usermod", "-aG", "docker", "deploy"] in doc["runcmd"]


def test_docker_logs_rotate_at_ten_megabytes_times_three():
    import json

    doc = parsed()
    daemon = json.loads(next(f["content"] for f in doc["write_files"] if f["path"] == "/etc/docker/daemon.json"))
    assert daemon["log-driver"] == "json-file"
    assert daemon["log-opts"] == {"max-size": "10m", "max-file": "3"}
    assert daemon["live-restore"] is False  # refused by Docker in swarm mode


def test_host_firewall_admits_ssh_only_from_admin_cidrs():
    runcmd = parsed()["runcmd"]
    ssh_rules = [c for c in runcmd if isinstance(c, list) and c[:2] == ["ufw", "allow"] and "22" in c]
    assert [c[3] for c in ssh_rules] == ["203.0.113.0/28", "2001:db8:1::/48"]
    assert ["ufw", "default", "deny", "incoming"] in runcmd
    assert ["ufw", "--force", "enable"] in runcmd


def test_swap_unattended_upgrades_and_swarm_init():
    doc = parsed(swap_gib=3)
    assert doc["swap"]["size"] == 3 * 1024**3
    assert "unattended-upgrades" in doc["packages"]
    auto = next(f["content"] for f in doc["write_files"] if f["path"] == "/etc/apt/apt.conf.d/20auto-upgrades")
    assert 'APT::Periodic::Unattended-Upgrade "1";' in auto
    init = next(f["content"] for f in doc["write_files"] if f["path"] == "/usr/local/sbin/swarm-init")
    assert "docker swarm init --advertise-addr 198.51.100.10" in init
    assert doc["runcmd"][-1] == ["/usr/local/sbin/swarm-init"]


def test_swap_can_be_turned_off():
    assert "swap" not in parsed(swap_gib=0)


def test_data_volume_is_mounted_by_id_and_waited_for():
    doc = parsed()
    mount = doc["mounts"][0]
    assert mount[:3] == ["/dev/disk/by-id/scsi-0HC_Volume_4242", "/mnt/data", "ext4"]
    assert "nofail" in mount[3]
    assert any("mountpoint -q /mnt/data" in " ".join(map(str, c)) for c in doc["runcmd"])


def test_swarm_init_script_passes_shellcheck(tmp_path: Path):
    script = next(f["content"] for f in parsed()["write_files"] if f["path"] == "/usr/local/sbin/swarm-init")
    path = tmp_path / "swarm-init"
    path.write_text(script)
    result = subprocess.run([require_tool("shellcheck"), str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_data_directories_belong_to_the_deploy_user_who_creates_volume_dirs():
    runcmd = parsed(deploy_user="ops")["runcmd"]
    assert ["install", "-d", "-o", "ops", "-g", "ops", "-m", "0755", "/mnt/data/volumes", "/mnt/data/metrics"] in runcmd
