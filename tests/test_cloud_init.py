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


def sshd_effective(tmp_path: Path, dropin: str) -> subprocess.CompletedProcess[str]:
    """`sshd -T` (the effective settings for the deploy user) with the drop-in included the way
    Ubuntu's sshd_config includes /etc/ssh/sshd_config.d/*.conf, before anything else."""
    sshd = require_tool("sshd")  # with /run/sshd, without which sshd refuses to check a config
    (tmp_path / "sshd_config.d").mkdir()
    (tmp_path / "sshd_config.d" / "10-hardening.conf").write_text(dropin)
    subprocess.run(
        [require_tool("ssh-keygen"), "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "host_key")], check=True
    )
    main = tmp_path / "sshd_config"
    main.write_text(f"Include {tmp_path}/sshd_config.d/*.conf\nHostKey {tmp_path}/host_key\n")
    return subprocess.run(
        [sshd, "-T", "-f", str(main), "-C", "user=deploy,host=runner,addr=20.1.2.3"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_sshd_accepts_the_hardening_and_the_deploy_user_can_forward_nothing(tmp_path: Path):
    doc = parsed()
    dropin = next(f["content"] for f in doc["write_files"] if f["path"] == "/etc/ssh/sshd_config.d/10-hardening.conf")
    result = sshd_effective(tmp_path, dropin)
    assert result.returncode == 0, result.stderr
    effective = dict(line.split(" ", 1) for line in result.stdout.splitlines() if " " in line)
    assert effective["disableforwarding"] == "yes"
    for option in ("allowtcpforwarding", "allowstreamlocalforwarding", "allowagentforwarding", "x11forwarding"):
        assert effective[option] == "no", option
    assert effective["permittunnel"] == "no"
    assert effective["permitrootlogin"] == "no" and effective["passwordauthentication"] == "no"
    assert effective["allowusers"] == "deploy"
    assert effective["maxstartups"] == "100:30:200"


def test_sshd_check_refuses_a_broken_dropin(tmp_path: Path):
    result = sshd_effective(tmp_path, "DisableForwarding perhaps\n")
    assert result.returncode != 0
    assert "unsupported option" in result.stderr


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


def test_containers_gain_no_privileges_and_share_a_bounded_slice():
    import json

    doc = parsed()
    daemon = json.loads(next(f["content"] for f in doc["write_files"] if f["path"] == "/etc/docker/daemon.json"))
    assert daemon["no-new-privileges"] is True
    assert daemon["cgroup-parent"] == "keel-containers.slice"
    slice_unit = next(f["content"] for f in doc["write_files"] if f["path"].endswith("/keel-containers.slice"))
    assert "\n[Slice]\nTasksMax=8192\n" in slice_unit


def test_containers_lose_the_metadata_service_and_the_user_data_copies_go_after_cloud_init():
    runcmd = parsed()["runcmd"]
    docker = runcmd.index(["systemctl", "enable", "--now", "docker"])
    enable = runcmd.index(["systemctl", "enable", "keel-metadata-block.service", "keel-forget-user-data.service"])
    block = runcmd.index(["systemctl", "start", "keel-metadata-block.service"])
    # runcmd runs inside cloud-final, which the unit waits for: queued, never waited on.
    forget = runcmd.index(["systemctl", "start", "--no-block", "keel-forget-user-data.service"])
    assert docker < enable < block < forget
    unit = next(f["content"] for f in parsed()["write_files"] if f["path"].endswith("/keel-forget-user-data.service"))
    assert "After=cloud-final.service" in unit
    assert "rm -f /var/lib/cloud/instances/*/user-data.txt /var/lib/cloud/instances/*/user-data.txt.i " in unit


def test_the_reboot_window_turns_automatic_reboots_on_at_its_time():
    def local_conf(doc: dict) -> str:
        path = "/etc/apt/apt.conf.d/52unattended-upgrades-local"
        return next(f["content"] for f in doc["write_files"] if f["path"] == path)

    assert 'Unattended-Upgrade::Automatic-Reboot "false";' in local_conf(parsed())
    on = local_conf(parsed(automatic_reboot=True, reboot_time="03:30"))
    assert 'Unattended-Upgrade::Automatic-Reboot "true";' in on
    assert 'Unattended-Upgrade::Automatic-Reboot-Time "03:30";' in on


def test_host_firewall_leaves_ssh_sources_to_the_hetzner_firewalls():
    """A CI runner's address is unknown at boot: the Hetzner firewalls (admin_cidrs, and the CI
    firewall's short-lived /32) decide who reaches 22; the host admits 22 and denies the rest."""
    runcmd = parsed()["runcmd"]
    ufw = [c for c in runcmd if isinstance(c, list) and c[:1] == ["ufw"]]
    assert ufw == [
        ["ufw", "default", "deny", "incoming"],
        ["ufw", "default", "allow", "outgoing"],
        ["ufw", "allow", "22/tcp"],
        ["ufw", "allow", "80/tcp"],
        ["ufw", "allow", "443/tcp"],
        ["ufw", "--force", "enable"],
    ]


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


def test_docker_packages_are_held_out_of_unattended_upgrades_and_upgraded_in_their_window():
    doc = parsed()
    local = next(f["content"] for f in doc["write_files"] if f["path"].endswith("52unattended-upgrades-local"))
    assert 'Unattended-Upgrade::Package-Blacklist { "^docker\\.io$"; "^containerd$"; "^runc$"; };' in local
    units = {f["path"]: f["content"] for f in doc["write_files"]}
    service = units["/etc/systemd/system/keel-docker-upgrade.service"]
    assert "--only-upgrade -o Dpkg::Options::=--force-confold docker.io containerd runc" in service
    timer = units["/etc/systemd/system/keel-docker-upgrade.timer"]
    assert "OnCalendar=Sun *-*-* 04:30:00 UTC" in timer and "Persistent=false" in timer


def test_timers_are_enabled_after_the_units_are_loaded():
    runcmd = parsed()["runcmd"]
    reload = runcmd.index(["systemctl", "daemon-reload"])
    enable = runcmd.index(
        [
            "systemctl",
            "enable",
            "--now",
            "keel-docker-prune.timer",
            "keel-docker-upgrade.timer",
            "keel-reboot-required.timer",
            "keel-swarm-report.timer",
        ]
    )
    assert reload < enable
    directories = next(i for i, c in enumerate(runcmd) if c[:2] == ["install", "-d"])
    assert directories < enable, "the report timers write into the metrics directory at once"


def test_docker_is_enabled_only_once_the_data_volume_is_mounted():
    runcmd = parsed()["runcmd"]
    wait = next(i for i, c in enumerate(runcmd) if "mountpoint -q /mnt/data" in " ".join(map(str, c)))
    assert wait < runcmd.index(["systemctl", "enable", "--now", "docker"])


def test_a_host_without_data_volume_gets_no_docker_drop_in_nor_reboot_metric():
    doc = parsed(data_device=None)
    paths = {f["path"] for f in doc["write_files"]}
    assert "/etc/systemd/system/docker.service.d/10-keel-data-volume.conf" not in paths
    assert "/etc/systemd/system/keel-reboot-required.timer" not in paths
    assert "/etc/systemd/system/keel-swarm-report.timer" not in paths
    assert "/etc/systemd/system/keel-docker-prune.timer" in paths


def test_host_reboot_window_reaches_the_user_data():
    from tests.helpers import run_with

    run = run_with("prod", {"keel:host": {"reboot_window": "03:30"}})
    assert run.error is None, run.error
    text = str(run.one("hcloud:index/server:Server").inputs["userData"])
    assert 'Unattended-Upgrade::Automatic-Reboot "true";' in text
    assert 'Unattended-Upgrade::Automatic-Reboot-Time "03:30";' in text


def test_a_join_mode_pool_node_with_a_private_network_passes_cloud_init_schema(tmp_path: Path):
    path = tmp_path / "user-data.yaml"
    path.write_text(render_cloud_init(spec(private_cidr="10.0.0.0/16", swarm="join", data_device=None)))
    result = subprocess.run(
        [require_tool("cloud-init"), "schema", "--config-file", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_join_mode_node_never_starts_a_swarm_of_its_own():
    doc = parsed(private_cidr="10.0.0.0/16", swarm="join", data_device=None)
    assert not any(f["path"] == "/usr/local/sbin/swarm-init" for f in doc["write_files"])
    assert ["/usr/local/sbin/swarm-init"] not in doc["runcmd"]
    assert "swarm init" not in render_cloud_init(spec(swarm="join"))
    assert ["/usr/local/sbin/swarm-init"] in parsed()["runcmd"]


def test_a_pool_node_reports_its_reboot_flag_but_not_the_swarms_task_counts():
    """node-exporter on every node reads the textfile directory; only the host answers the swarm API
    (a worker's `docker service ls` fails), and one copy of the task counts is enough."""
    node = parsed(private_cidr="10.0.0.0/16", swarm="join", data_device=None)
    enabled = next(c for c in node["runcmd"] if c[:3] == ["systemctl", "enable", "--now"] and "docker" not in c)
    assert "keel-reboot-required.timer" in enabled and "keel-swarm-report.timer" not in enabled
    paths = {f["path"] for f in node["write_files"]}
    assert "/usr/local/sbin/keel-reboot-required" in paths and "/usr/local/sbin/keel-swarm-report" not in paths
    host = next(c for c in parsed()["runcmd"] if c[:3] == ["systemctl", "enable", "--now"] and "docker" not in c)
    assert "keel-swarm-report.timer" in host and "keel-reboot-required.timer" in host


def test_the_private_network_opens_the_swarm_ports_and_esp_from_it_only_before_ufw_is_enabled():
    runcmd = parsed(private_cidr="10.0.0.0/16")["runcmd"]
    rules = [command for command in runcmd if command[:2] == ["ufw", "allow"] and "10.0.0.0/16" in command]
    assert rules == [
        ["ufw", "allow", "from", "10.0.0.0/16", "to", "any", "port", "2377", "proto", "tcp", "comment", "keel swarm"],
        ["ufw", "allow", "from", "10.0.0.0/16", "to", "any", "port", "7946", "proto", "tcp", "comment", "keel swarm"],
        ["ufw", "allow", "from", "10.0.0.0/16", "to", "any", "port", "7946", "proto", "udp", "comment", "keel swarm"],
        ["ufw", "allow", "from", "10.0.0.0/16", "to", "any", "port", "4789", "proto", "udp", "comment", "keel swarm"],
        ["ufw", "allow", "proto", "esp", "from", "10.0.0.0/16", "comment", "keel swarm encrypted overlay"],
    ]
    assert runcmd.index(rules[-1]) < runcmd.index(["ufw", "--force", "enable"])
    # Without a private network (one node) no swarm port is admitted at all.
    assert not any("2377" in command for command in parsed()["runcmd"])
    assert render_cloud_init(spec(private_cidr=None, swarm="init")) == render_cloud_init(spec())


@pytest.mark.parametrize("cidr", ["10.0.0.1/16", "0.0.0.0/0 ; reboot", "2001:db8::/32"])
def test_a_private_cidr_that_is_not_an_ipv4_network_is_refused(cidr: str):
    with pytest.raises(ValueError):
        spec(private_cidr=cidr)
