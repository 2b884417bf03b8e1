"""The read-back model of terraform-provider-hcloud v1.68.0 (tools/readback/hcloud.py), rule by rule.

Each test names the provider source it holds the model to; paths are under internal/ at v1.68.0.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from tools.readback import hcloud
from tools.readback.model import ResourceModel


def paths(changes) -> dict[str, bool]:
    """path -> replaces"""
    return {change.path: change.replaces for change in changes}


def after_up(model: ResourceModel, inputs: dict, name: str = "r") -> dict:
    return model.state(inputs, name)


# ---------------------------------------------------------------------------- primary IP

IPV6_IP = {"name": "shop-prod-ipv6", "type": "ipv6", "location": "fsn1", "autoDelete": False, "deleteProtection": True}


def test_ipv6_primary_ip_address_is_the_network_address_without_prefix():
    """primaryip/model.go FromAPI stores hc.IP.String(); hcloud-go schema_gen.go ipFromPrimaryIPSchema
    parses the API's CIDR: the address is the network's first one, "2001:db8:4f8::", no "/64"."""
    state = after_up(hcloud.PRIMARY_IP, IPV6_IP)
    assert state["ipAddress"] == "2001:db8:4f8::"
    assert state["ipNetwork"] == "2001:db8:4f8::/64"
    ipv4 = after_up(hcloud.PRIMARY_IP, {**IPV6_IP, "type": "ipv4"})
    assert "ipNetwork" not in ipv4 and ipv4["ipAddress"] == "198.51.100.10"


def test_server_ipv6_address_is_the_primary_network_plus_1():
    """server/resource.go getServerAttributes: ``IPv6.IP.String() + "1"``, a string append."""
    state = after_up(hcloud.SERVER, {"name": "s", "serverType": "cx33"})
    assert state["ipv6Address"] == "2001:db8:4f8::1"
    assert state["ipv6Network"] == "2001:db8:4f8::/64"
    assert state["primaryDiskSize"] == 80


def test_primary_ip_assignee_left_unset_keeps_what_the_server_assignment_stored():
    """primaryip/resource.go Schema: assignee_id and assignee_type are Optional+Computed; FromAPI
    fills them once a server holds the address, and a config without them shows no diff."""
    state = {**after_up(hcloud.PRIMARY_IP, IPV6_IP), "assigneeId": 4242, "assigneeType": "server"}
    assert hcloud.PRIMARY_IP.diff(state, IPV6_IP) == []


def test_primary_ip_type_and_location_replace_and_the_rest_updates_in_place():
    """primaryip/resource.go Schema: type and location RequiresReplace; Update changes name, labels,
    auto_delete, delete_protection."""
    state = after_up(hcloud.PRIMARY_IP, IPV6_IP)
    assert paths(hcloud.PRIMARY_IP.diff(state, {**IPV6_IP, "location": "nbg1"})) == {"location": True}
    assert paths(hcloud.PRIMARY_IP.diff(state, {**IPV6_IP, "type": "ipv4"})) == {"type": True}
    changed = {**IPV6_IP, "name": "other", "deleteProtection": False, "labels": {"a": "b"}}
    assert paths(hcloud.PRIMARY_IP.diff(state, changed)) == {
        "name": False,
        "deleteProtection": False,
        "labels": False,
    }


def test_primary_ip_defaults_match_an_unset_config():
    """Schema: auto_delete and delete_protection Default false, labels Default {} (resourceutil
    LabelsSchema): leaving them out after sending the defaults is no change."""
    state = after_up(hcloud.PRIMARY_IP, {**IPV6_IP, "deleteProtection": False, "labels": {}})
    bare = {k: v for k, v in IPV6_IP.items() if k not in ("autoDelete", "deleteProtection")}
    assert hcloud.PRIMARY_IP.diff(state, bare) == []


def test_primary_ip_assignee_type_alone_warns_on_every_preview():
    """primaryip/resource.go ValidateConfig: "Unused Attribute" while assignee_id is null."""
    found = hcloud.DIAGNOSTICS[hcloud.PRIMARY_IP.type]({**IPV6_IP, "assigneeType": "server"}, None)
    assert [d.summary.split(":")[0] for d in found] == ["Unused Attribute"]
    assert found[0].severity == "warning" and found[0].when == "preview"
    assert hcloud.DIAGNOSTICS[hcloud.PRIMARY_IP.type](IPV6_IP, None) == []


def test_primary_ip_and_ssh_key_replacements_create_the_new_one_first():
    """pulumi-terraform-bridge v3.136.0 pkg/pf/tfbridge/provider_diff.go: a Plugin Framework
    resource deletes first only with ResourceInfo.DeleteBeforeReplace, which pulumi-hcloud never
    sets, so a named Primary IP or SSH key is created again under the same name first."""
    assert hcloud.PRIMARY_IP.delete_before_replace is not None
    assert hcloud.PRIMARY_IP.delete_before_replace(IPV6_IP) is False
    assert hcloud.SSH_KEY.delete_before_replace is not None
    assert hcloud.SSH_KEY.delete_before_replace({"name": "k", "publicKey": "ssh-ed25519 AAAA"}) is False


# ---------------------------------------------------------------------------- server

SERVER: dict[str, Any] = {
    "name": "shop-prod",
    "serverType": "cx33",
    "location": "fsn1",
    "image": "ubuntu-24.04",
    "sshKeys": ["8765428"],
    "firewallIds": [4215893.0, 5880212.0],
    "publicNets": [{"ipv4Enabled": True, "ipv4": 1198158.0, "ipv6Enabled": True, "ipv6": 4151389.0}],
    "userData": "#cloud-config\npackage_update: true\n",
    "backups": True,
    "deleteProtection": True,
    "rebuildProtection": True,
    "shutdownBeforeDeletion": True,
    "labels": {"stack": "prod"},
}


def test_user_data_is_stored_as_its_sha1_and_the_same_text_is_no_change():
    """server/resource.go Schema: user_data StateFunc userDataHashSum (base64 SHA-1), and the plan
    hashes the configured text before userDataDiffSuppress compares it."""
    state = after_up(hcloud.SERVER, SERVER)
    expected = base64.b64encode(hashlib.sha1(SERVER["userData"].encode()).digest()).decode()
    assert state["userData"] == expected
    assert hcloud.SERVER.diff(state, SERVER) == []


def test_changed_user_data_replaces_the_server_unless_ignored():
    """Schema: user_data ForceNew; the program's ignore_changes keeps it from rebuilding the host."""
    state = after_up(hcloud.SERVER, SERVER)
    changed = {**SERVER, "userData": SERVER["userData"] + "runcmd: []\n"}
    assert paths(hcloud.SERVER.diff(state, changed)) == {"userData": True}
    assert hcloud.SERVER.diff(state, changed, ("userData",)) == []


def test_image_location_and_ssh_keys_replace_the_server_but_server_type_changes_in_place():
    """Schema: image, location, ssh_keys ForceNew; resourceServerUpdate powers the server off and
    calls ChangeType for server_type (an in-place update with downtime)."""
    state = after_up(hcloud.SERVER, SERVER)
    assert paths(hcloud.SERVER.diff(state, {**SERVER, "image": "debian-12"})) == {"image": True}
    assert paths(hcloud.SERVER.diff(state, {**SERVER, "location": "nbg1"})) == {"location": True}
    assert paths(hcloud.SERVER.diff(state, {**SERVER, "sshKeys": ["1"]})) == {"sshKeys[0]": True}
    assert paths(hcloud.SERVER.diff(state, {**SERVER, "serverType": "cx43"})) == {"serverType": False}
    assert paths(hcloud.SERVER.diff(state, {**SERVER, "name": "x"})) == {"name": False}


def test_firewall_ids_and_public_nets_are_sets():
    """Schema: firewall_ids and public_net are TypeSet: another order is no change."""
    state = after_up(hcloud.SERVER, SERVER)
    reordered = {**SERVER, "firewallIds": list(reversed(SERVER["firewallIds"]))}
    assert hcloud.SERVER.diff(state, reordered) == []


def test_public_net_and_firewall_ids_left_unset_keep_the_state():
    """public_net is not read back and its DiffSuppressFunc hides it while unset in the config;
    firewall_ids is Optional+Computed (getServerAttributes reads the applied firewalls)."""
    state = after_up(hcloud.SERVER, SERVER)
    bare = {k: v for k, v in SERVER.items() if k not in ("publicNets", "firewallIds")}
    assert hcloud.SERVER.diff(state, bare) == []


def test_server_booleans_default_to_false():
    """Schema: backups, keep_disk, delete_protection, rebuild_protection, shutdown_before_deletion
    Default false (SDKv2: unset and false are the same)."""
    falsy = {**SERVER, "backups": False, "deleteProtection": False, "rebuildProtection": False}
    state = after_up(hcloud.SERVER, falsy)
    bare = {k: v for k, v in falsy.items() if k not in ("backups", "deleteProtection", "rebuildProtection")}
    assert hcloud.SERVER.diff(state, bare) == []
    assert after_up(hcloud.SERVER, falsy)["backupWindow"] == ""


def test_named_sdkv2_resources_delete_before_they_are_replaced():
    """pulumi-hcloud provider/resources.go SetAutonaming(255, "-"); bridge v3.136.0 schema.go
    nameRequiresDeleteBeforeReplace: a name the program set (not in __defaults) deletes first."""
    for model in (hcloud.SERVER, hcloud.VOLUME):
        assert model.delete_before_replace is not None
        assert model.delete_before_replace({"name": "x"}) is True
        assert model.delete_before_replace({}) is False


def test_server_protection_flags_are_sent_together():
    """server/resource.go setProtection sends both flags in one ChangeProtection call; the API takes
    them only with the same value."""
    check = hcloud.DIAGNOSTICS[hcloud.SERVER.type]
    assert check(SERVER, None) == []
    found = check({**SERVER, "rebuildProtection": False}, None)
    assert [d.when for d in found] == ["apply"]


def test_removed_datacenter_attribute_is_an_error():
    """server/resource.go and primaryip/resource.go: datacenter is a "Removed Attribute" since v1.67.0."""
    found = hcloud.DIAGNOSTICS[hcloud.SERVER.type]({**SERVER, "datacenter": "fsn1-dc14"}, None)
    assert [d.severity for d in found] == ["error"]


# ---------------------------------------------------------------------------- volume

VOLUME = {"name": "shop-prod-data", "size": 40.0, "location": "fsn1", "format": "ext4", "automount": False}


def test_volume_resizes_in_place_and_can_only_grow():
    """volume/resource.go resourceVolumeUpdate: Volume.Resize (no ForceNew on size); the API refuses
    a smaller size."""
    state = after_up(hcloud.VOLUME, VOLUME)
    assert paths(hcloud.VOLUME.diff(state, {**VOLUME, "size": 80.0})) == {"size": False}
    check = hcloud.DIAGNOSTICS[hcloud.VOLUME.type]
    assert check({**VOLUME, "size": 80.0}, state) == []
    assert [d.severity for d in check({**VOLUME, "size": 20.0}, state)] == ["error"]


def test_volume_location_replaces_and_format_changes_nothing_but_state():
    """Schema: location ForceNew; format is create-only with no update branch and not read back."""
    state = after_up(hcloud.VOLUME, VOLUME)
    assert paths(hcloud.VOLUME.diff(state, {**VOLUME, "location": "nbg1"})) == {"location": True}
    assert paths(hcloud.VOLUME.diff(state, {**VOLUME, "format": "xfs"})) == {"format": False}


def test_volume_server_id_from_an_attachment_is_no_change():
    """Schema: server_id Optional+Computed; getVolumeAttributes stores the attached server."""
    state = {**after_up(hcloud.VOLUME, VOLUME), "serverId": 2741735}
    assert hcloud.VOLUME.diff(state, VOLUME) == []


def test_volume_attachment_ids_replace():
    """volume/resource_attachment.go Schema: volume_id and server_id ForceNew (no Update at all)."""
    inputs = {"volumeId": 1.0, "serverId": 2.0, "automount": False}
    state = after_up(hcloud.ATTACHMENT, inputs)
    assert paths(hcloud.ATTACHMENT.diff(state, {**inputs, "serverId": 3.0})) == {"serverId": True}


# ---------------------------------------------------------------------------- firewall

RULES = [
    {"direction": "in", "protocol": "tcp", "port": "22", "sourceIps": ["203.0.113.7/32"], "description": "ssh"},
    {"direction": "in", "protocol": "icmp", "sourceIps": ["0.0.0.0/0", "::/0"], "description": "ping"},
]


def test_firewall_stores_bare_addresses_as_host_networks():
    """firewall/validation.go normalizeIP (the source_ips StateFunc): "10.0.0.1" -> "10.0.0.1/32",
    IPv6 lower-cased and compressed with a /128; CIDRs keep their form."""
    assert hcloud.normalize_ip("10.0.0.1") == "10.0.0.1/32"
    assert hcloud.normalize_ip("2001:DB8:0:0:0:0:0:1") == "2001:db8::1/128"
    assert hcloud.normalize_ip("2001:DB8::/32") == "2001:db8::/32"
    assert hcloud.normalize_ip("not-an-ip") == "not-an-ip"
    state = after_up(hcloud.FIREWALL, {"name": "f", "rules": [{**RULES[0], "sourceIps": ["203.0.113.7"]}]})
    assert state["rules"][0]["sourceIps"] == ["203.0.113.7/32"]


def test_firewall_rules_are_a_set_compared_after_normalisation():
    """Schema: rule and source_ips are TypeSet with StateFunc normalizeIP: another order, or a bare
    address for its /32, is no change."""
    state = after_up(hcloud.FIREWALL, {"name": "f", "rules": RULES})
    same = [RULES[1], {**RULES[0], "sourceIps": ["203.0.113.7"]}]
    assert hcloud.FIREWALL.diff(state, {"name": "f", "rules": same}) == []
    changed = [RULES[1], {**RULES[0], "port": "2222"}]
    assert paths(hcloud.FIREWALL.diff(state, {"name": "f", "rules": changed})) == {"rules": False}


def test_firewall_rejects_a_network_with_host_bits():
    """validation.go validateIPDiag: "10.0.0.1/24 is not the start of the cidr block"."""
    rule = {**RULES[0], "sourceIps": ["10.0.0.1/24"]}
    found = hcloud.DIAGNOSTICS[hcloud.FIREWALL.type]({"name": "f", "rules": [rule]}, None)
    assert [d.severity for d in found] == ["error"]
    assert hcloud.DIAGNOSTICS[hcloud.FIREWALL.type]({"name": "f", "rules": RULES}, None) == []


def test_emptying_the_rules_never_reaches_the_api():
    """firewall/resource.go resourceFirewallUpdate calls SetRules only when d.GetOk("rule"): an
    empty rule set stays in the API and the diff comes back on every preview."""
    state = after_up(hcloud.FIREWALL, {"name": "f", "rules": RULES})
    assert paths(hcloud.FIREWALL.diff(state, {"name": "f", "rules": []})) == {"rules": False}
    found = hcloud.DIAGNOSTICS[hcloud.FIREWALL.type]({"name": "f", "rules": []}, state)
    assert [d.summary.split(" ")[0] for d in found] == ["removing"]


def test_firewall_apply_to_and_labels_read_back_are_no_change_while_unset():
    """Schema: apply_to Optional+Computed with a DiffSuppressFunc while unset; labels Optional+Computed."""
    state = {**after_up(hcloud.FIREWALL, {"name": "f"}), "applyTos": [{"server": 1}], "labels": {"a": "b"}}
    assert hcloud.FIREWALL.diff(state, {"name": "f"}) == []


# ---------------------------------------------------------------------------- SSH key

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGmtrCxHTDSu4Fgp8J/vvH4cZ3PpW0d0T2Ez8gq+Rdxw ops@example.com"


def test_ssh_key_sent_with_a_trailing_newline_is_replaced_on_every_preview():
    """sshkey/common.go populateResourceData stores the API's key; the API trims whitespace since
    2026-04-22 and the maintainers keep it so (hetznercloud/terraform-provider-hcloud#1389);
    public_key RequiresReplace (sshkey/resource.go Schema)."""
    state = after_up(hcloud.SSH_KEY, {"name": "k", "publicKey": KEY + "\n"})
    assert state["publicKey"] == KEY
    assert paths(hcloud.SSH_KEY.diff(state, {"name": "k", "publicKey": KEY + "\n"})) == {"publicKey": True}
    trimmed = after_up(hcloud.SSH_KEY, {"name": "k", "publicKey": KEY})
    assert hcloud.SSH_KEY.diff(trimmed, {"name": "k", "publicKey": KEY}) == []


def test_ssh_key_renames_in_place_and_reports_its_md5_fingerprint():
    """sshkey/resource.go Update (name, labels); fingerprint is the API's MD5 of the key blob."""
    state = after_up(hcloud.SSH_KEY, {"name": "k", "publicKey": KEY})
    assert paths(hcloud.SSH_KEY.diff(state, {"name": "other", "publicKey": KEY})) == {"name": False}
    assert len(state["fingerprint"].split(":")) == 16
