"""What each stack declares for its host, under the mock runtime."""

from __future__ import annotations

import base64
import json

import pytest

from tests.helpers import run_with, stack_run
from tools import mockrun

SERVER = "hcloud:index/server:Server"
FIREWALL = "hcloud:index/firewall:Firewall"
PRIMARY_IP = "hcloud:index/primaryIp:PrimaryIp"
VOLUME = "hcloud:index/volume:Volume"
READY = "command:remote:Command"
DOCKER = "pulumi:providers:docker"


@pytest.fixture(scope="module")
def prod() -> mockrun.Run:
    run = stack_run("prod")
    assert run.error is None, run.error
    return run


@pytest.fixture(scope="module")
def staging() -> mockrun.Run:
    run = stack_run("staging")
    assert run.error is None, run.error
    return run


@pytest.fixture(scope="module")
def dev() -> mockrun.Run:
    run = stack_run("dev")
    assert run.error is None, run.error
    return run


def test_prod_declares_the_whole_host(prod):
    for type_ in (
        SERVER,
        FIREWALL,
        VOLUME,
        READY,
        DOCKER,
        "hcloud:index/sshKey:SshKey",
        "tls:index/privateKey:PrivateKey",
    ):
        assert prod.of_type(type_), f"prod registers no {type_}"
    assert {r.inputs["type"] for r in prod.of_type(PRIMARY_IP)} == {"ipv4", "ipv6"}
    server = prod.one(SERVER)
    assert server.inputs["serverType"] == "cx33"
    assert server.inputs["location"] == "fsn1"
    assert server.inputs["backups"] is True


def test_prod_server_is_protected_against_delete_and_rebuild(prod):
    server = prod.one(SERVER)
    assert server.protect, server.urn
    assert server.inputs["deleteProtection"] is True
    assert server.inputs["rebuildProtection"] is True
    # cloud-init shapes the first boot only; a later change must never rebuild the server.
    assert "userData" in server.ignore_changes, server.urn


def test_staging_server_is_unprotected_but_data_volume_still_is(staging):
    server = staging.one(SERVER)
    assert not server.protect and server.inputs["deleteProtection"] is False
    volume = staging.one(VOLUME)
    assert volume.protect and volume.retain_on_delete, volume.urn


def test_primary_ips_outlive_the_server(prod):
    for ip in prod.of_type(PRIMARY_IP):
        assert ip.inputs["autoDelete"] is False, ip.urn
        assert ip.protect, ip.urn
    server = prod.one(SERVER)
    ids = {ip.outputs.get("id") or ip.urn for ip in prod.of_type(PRIMARY_IP)}
    nets = server.inputs["publicNets"][0]
    assert nets["ipv4Enabled"] and nets["ipv6Enabled"]
    assert nets["ipv4"] and nets["ipv6"] and ids


def test_replacements_that_would_reuse_a_name_cannot_happen(prod):
    # SshKey and PrimaryIp are Plugin Framework resources: a replacement is created before the old
    # one is deleted (pulumi-terraform-bridge v3.136.0 pkg/pf/tfbridge/provider_diff.go), and
    # Hetzner refuses a second object of the same name. A new admin key deletes the old one first;
    # an IP's name carries its location (the only input that replaces it, with its type).
    for key in prod.of_type("hcloud:index/sshKey:SshKey"):
        assert key.delete_before_replace, key.urn
    names = {ip.inputs["name"] for ip in prod.of_type(PRIMARY_IP)}
    assert names == {"shop-prod-ipv4-fsn1", "shop-prod-ipv6-fsn1"}


def test_firewall_admits_ssh_only_from_admin_cidrs(prod):
    rules = {rule["port"]: rule for rule in prod.one(FIREWALL, "host-firewall").inputs["rules"] if rule.get("port")}
    assert rules["22"]["sourceIps"] == ["203.0.113.0/28", "2001:db8:1::/48"]
    for rule in prod.one(FIREWALL, "host-firewall").inputs["rules"]:
        if rule.get("port") == "22":
            assert not {"0.0.0.0/0", "::/0"} & set(rule["sourceIps"])
    assert set(rules) == {"22", "80", "443"}


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_ci_firewall_declares_no_rules_ignores_its_live_ones_and_guards_the_server(stack, request):
    """CI opens its runner's /32 on this firewall for a job (tools/ssh_window.py). The provider
    reads rules back on refresh (terraform-provider-hcloud v1.68.0 internal/firewall/resource.go,
    resourceFirewallRead -> getFirewallAttributes sets `rule` from the API), so the program
    declares none and ignores them: a job's short-lived rule is never drift and never undone."""
    run = request.getfixturevalue(stack)
    ci = run.one(FIREWALL, "host-ci-ssh")
    assert not ci.inputs.get("rules"), ci.inputs.get("rules")
    assert ci.ignore_changes == ["rules"]
    assert ci.inputs["labels"] == {"managed-by": "pulumi", "stack": stack, "keel-role": "ci-ssh"}
    assert ci.inputs["name"] == f"shop-{stack}-ci-ssh"  # <name_prefix>-<stack>, as the server
    main = run.one(FIREWALL, "host-firewall")
    assert "rules" not in main.ignore_changes  # the admin and web rules stay under Pulumi's eye
    server = run.one(SERVER)
    assert server.inputs["firewallIds"] == [int(main.id), int(ci.id)]


def test_ci_firewall_label_is_the_one_the_ssh_window_looks_for():
    from components import host
    from tools import ssh_window

    assert (host.CI_FIREWALL_LABEL, host.CI_FIREWALL_ROLE) == (ssh_window.ROLE_LABEL, ssh_window.ROLE)


def test_data_volume_is_mounted_by_cloud_init(prod):
    volume = prod.one(VOLUME)
    assert volume.inputs["size"] == 40 and volume.inputs["format"] == "ext4"
    user_data = prod.one(SERVER).inputs["userData"]
    assert f"/dev/disk/by-id/scsi-0HC_Volume_{volume.outputs['id'] if 'id' in volume.outputs else ''}" in user_data or (
        "/dev/disk/by-id/scsi-0HC_Volume_" in user_data
    )
    attachment = prod.one("hcloud:index/volumeAttachment:VolumeAttachment")
    assert attachment.inputs["automount"] is False


def test_readiness_waits_for_cloud_init_docker_and_swarm_with_pinned_host_key(prod):
    ready = prod.one(READY, "host-ready")
    script = ready.inputs["create"]
    assert "cloud-init status --wait" in script
    assert '"$rc" -ne 0 ] && [ "$rc" -ne 2 ]' in script  # 0 and 2 both mean done
    assert "Swarm.LocalNodeState" in script and "active" in script
    connection = ready.inputs["connection"]
    assert connection["user"] == "deploy"
    assert connection["hostKey"].startswith("ssh-ed25519 AAAA")
    key = prod.one("tls:index/privateKey:PrivateKey", "host-host-key")
    assert connection["hostKey"] == " ".join(key.outputs["publicKeyOpenssh"].split()[:2])


def test_docker_provider_host_comes_from_readiness_and_pins_host_key(prod):
    provider = prod.one(DOCKER, "host-docker")
    ready = prod.one(READY, "host-ready")
    assert provider.inputs["host"] == "ssh://deploy@198.51.100.10"
    # The provider's host is derived from the readiness command's output: it depends on it.
    assert ready.urn in provider.depends_on, provider.depends_on
    opts = (
        json.loads(provider.inputs["sshOpts"])
        if isinstance(provider.inputs["sshOpts"], str)
        else provider.inputs["sshOpts"]
    )
    joined = " ".join(opts)
    assert "StrictHostKeyChecking=yes" in joined
    assert "StrictHostKeyChecking=no" not in joined
    assert "ControlMaster=auto" in joined and "ControlPersist=" in joined
    assert f"KnownHostsCommand=/bin/echo 198.51.100.10 {ready.inputs['connection']['hostKey']}" in joined


def test_no_stack_disables_host_key_checking(prod, staging, dev):
    for run in (prod, staging, dev):
        for resource in run.resources:
            for path, value in resource.plaintext_strings():
                assert "StrictHostKeyChecking=no" not in value, f"{resource.urn} {path}"


def test_dev_uses_the_local_engine_in_swarm_mode(dev):
    assert not dev.of_type(SERVER)
    swarm = dev.one("command:local:Command", "host-swarm")
    assert "docker swarm init" in swarm.inputs["create"]
    provider = dev.one(DOCKER, "host-docker")
    assert swarm.urn in provider.depends_on
    assert provider.inputs["host"] == "unix:///var/run/docker.sock"


def test_local_docker_host_setting_reaches_provider_and_swarm_command():
    run = run_with("dev", {"keel:host": {"docker_host": "unix:///run/user/1000/docker.sock"}})
    assert run.error is None, run.error
    assert run.one(DOCKER, "host-docker").inputs["host"] == "unix:///run/user/1000/docker.sock"
    assert run.one("command:local:Command", "host-swarm").inputs["environment"] == {
        "DOCKER_HOST": "unix:///run/user/1000/docker.sock"
    }


def test_outputs_report_cost_budget_and_access(prod, dev):
    assert prod.outputs["ssh_command"] == "ssh deploy@198.51.100.10"
    assert prod.outputs["docker_host"] == "ssh://deploy@198.51.100.10"
    assert prod.outputs["ipv6"] == "2001:db8:4f8::1"
    # cx33 6.49 + backups 20% + IPv4 0.60 + 40 GiB volume.
    assert prod.outputs["estimated_monthly_cost_eur"] == pytest.approx(6.49 * 1.2 + 0.60 + 40 * 0.0572, abs=0.01)
    budget = prod.outputs["memory_budget"]
    assert budget["host_memory_mb"] == 8192 and budget["total_mb"] <= budget["allowed_mb"]
    assert dev.outputs["estimated_monthly_cost_eur"] == 0.0


def test_no_secret_value_appears_outside_a_pulumi_secret(prod, staging, dev):
    """Every placeholder secret, raw or base64-encoded, only ever travels inside a secret."""
    for run in (prod, staging, dev):
        secrets = [r for r in mockrun.placeholder_secrets(_values(run.stack))[0].values()]
        secrets.append(_host_private_key(run))
        needles = [s for s in secrets if s]
        needles += [base64.b64encode(s.encode()).decode() for s in needles]
        for resource in run.resources:
            for path, value in resource.plaintext_strings():
                for needle in needles:
                    assert needle not in value, f"secret in plaintext at {resource.urn} {path}"


def test_user_data_carrying_the_host_key_is_secret(prod):
    server = prod.one(SERVER)
    assert not any(path.endswith(".userData") for path, _ in server.plaintext_strings())


def _values(stack: str) -> dict[str, str]:
    values, _ = mockrun.read_config_file(mockrun.stack_file(stack))
    return values


def _host_private_key(run: mockrun.Run) -> str:
    keys = [k for k in run.of_type("tls:index/privateKey:PrivateKey") if k.name == "host-host-key"]
    if not keys:
        return ""
    # The body of the private key, without its armour lines.
    return keys[0].outputs["privateKeyOpenssh"].splitlines()[1]
