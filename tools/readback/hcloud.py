"""hetznercloud/terraform-provider-hcloud v1.68.0, as bundled by pulumi-hcloud 1.43.3.

Which upstream the SDK bundles: pulumi/pulumi-hcloud's provider/go.mod names v1.66.1 up to the
newest tag we can see (v1.39.1, 2026-07-15); the 1.43.3 Python SDK we pin is newer. Its schema
carries the v1.67.0 wording "The datacenter attribute is marked for removal" and the
load-balancer-type ``deprecation_announced`` fields that v1.68.0 added, so it bundles v1.68.0
(the newest upstream tag, 2026-07-28). Between v1.66.1 and v1.68.0 only ``datacenter`` changed in
the resources modelled here.

Server, Volume, VolumeAttachment and Firewall are Terraform plugin SDK v2 resources (unset and
zero are the same); PrimaryIp and SshKey are Plugin Framework resources (null and zero differ).
pulumi-hcloud's provider/resources.go calls ``SetAutonaming(255, "-")``: every ``name`` is
auto-named, so a program that sets ``name`` makes an SDKv2 replacement delete the old resource
first (pulumi-terraform-bridge v3.136.0 pkg/tfbridge/schema.go nameRequiresDeleteBeforeReplace);
Plugin Framework resources always create the replacement first (pkg/pf/tfbridge/provider_diff.go:
only ResourceInfo.DeleteBeforeReplace, which pulumi-hcloud never sets).
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
from collections.abc import Mapping
from typing import Any

from tools.readback.diagnostics import Check, Diagnostic
from tools.readback.model import ResourceModel, Rule

V = "hetznercloud/terraform-provider-hcloud v1.68.0"
SERVER_GO = f"{V} internal/server/resource.go"
PRIMARY_IP_GO = f"{V} internal/primaryip/resource.go"
PRIMARY_IP_MODEL = f"{V} internal/primaryip/model.go FromAPI"
VOLUME_GO = f"{V} internal/volume/resource.go"
ATTACHMENT_GO = f"{V} internal/volume/resource_attachment.go"
FIREWALL_GO = f"{V} internal/firewall/resource.go"
SSHKEY_GO = f"{V} internal/sshkey/resource.go"
NETWORK_GO = f"{V} internal/network/resource.go"
SUBNET_GO = f"{V} internal/network/resource_subnet.go"
SERVER_NETWORK_GO = f"{V} internal/server/resource_network.go"
LABELS_GO = f"{V} internal/util/resourceutil/labels.go LabelsSchema"
BRIDGE_DBR = "pulumi-terraform-bridge v3.136.0 pkg/tfbridge/schema.go nameRequiresDeleteBeforeReplace"

# The mock answers: documentation-range addresses, one host per stack.
IPV4 = "198.51.100.10"
IPV6_NETWORK = "2001:db8:4f8::/64"
PRIMARY_DISK_GB = {"cx23": 40, "cx33": 80, "cx43": 160, "cx53": 320}


def _numeric_id(name: str) -> str:
    # Derived from the name, not the registration order, so rendered files are stable.
    return str(1_000_000 + int(hashlib.sha256(name.encode()).hexdigest()[:8], 16) % 9_000_000)


def resource_id(type_: str, name: str, inputs: Mapping[str, Any] | None = None) -> str:
    """hcloud ids are integers (the program converts them with ``int``), except a subnet's:
    ``<network id>-<ip range>`` (internal/network/resource_subnet.go generateNetworkSubnetID)."""
    if type_ == SUBNET.type and inputs and inputs.get("networkId") is not None and inputs.get("ipRange"):
        return f"{int(inputs['networkId'])}-{inputs['ipRange']}"
    return _numeric_id(name)


def _explicit_name(inputs: Mapping[str, Any]) -> bool:
    """nameRequiresDeleteBeforeReplace: an auto-named ``name`` the program set itself."""
    return bool(inputs.get("name"))


# ---------------------------------------------------------------------------- primary IP


def _primary_ip_outputs(state: dict[str, Any], name: str) -> dict[str, Any]:
    """FromAPI: ``ip_address`` is ``hc.IP.String()``; for an IPv6 Primary IP hcloud-go v2.47.0
    (hcloud/schema_gen.go ipFromPrimaryIPSchema) parses the API's "2001:db8::/64" with ParseCIDR,
    so it is the network's first address without a prefix; ``ip_network`` only for IPv6."""
    if state.get("type") == "ipv6":
        network = ipaddress.ip_network(IPV6_NETWORK)
        return {"ipAddress": str(network.network_address), "ipNetwork": str(network)}
    return {"ipAddress": IPV4}


def _primary_ip_on_create(state: dict[str, Any], context: Mapping[str, Any]) -> dict[str, Any]:
    # FromAPI stores the API's assignee_type ("server", the only kind) even while unassigned, and
    # the id of the server once one holds the address (a refresh after the server's create).
    # Both are Optional+Computed: unset in the program, the state's values stand.
    state.setdefault("assigneeType", "server")
    return state


PRIMARY_IP = ResourceModel(
    type="hcloud:index/primaryIp:PrimaryIp",
    source=PRIMARY_IP_GO,
    zero_is_unset=False,
    rules=(
        Rule("name", f"{PRIMARY_IP_GO} Update (opts.Name)"),
        Rule("type", f"{PRIMARY_IP_GO} Schema: type RequiresReplace", force_new=True),
        Rule("location", f"{PRIMARY_IP_GO} Schema: location Optional+Computed, RequiresReplace", force_new=True),
        Rule("assigneeId", f"{PRIMARY_IP_GO} Schema: assignee_id Optional+Computed", computed=True),
        Rule("assigneeType", f"{PRIMARY_IP_GO} Schema: assignee_type Optional+Computed", computed=True),
        Rule("autoDelete", f"{PRIMARY_IP_GO} Schema: auto_delete Default false", default=False),
        Rule("deleteProtection", f"{PRIMARY_IP_GO} Schema: delete_protection Default false", default=False),
        Rule("labels", LABELS_GO + " (Optional+Computed, Default {})", default={}),
    ),
    on_create=_primary_ip_on_create,
    outputs=_primary_ip_outputs,
    output_names=("ipAddress", "ipNetwork"),
    # Plugin Framework: the bridge never deletes first, whatever the name.
    delete_before_replace=lambda inputs: False,
)


def _primary_ip_diagnostics(inputs: Mapping[str, Any], state: Mapping[str, Any] | None) -> list[Diagnostic]:
    out = []
    if inputs.get("assigneeType") and inputs.get("assigneeId") is None:
        out.append(
            Diagnostic(
                "warning",
                "Unused Attribute: assignee_type is only required together with the assignee_id attribute",
                f"{PRIMARY_IP_GO} ValidateConfig",
            )
        )
    if inputs.get("assigneeId") is not None and not inputs.get("assigneeType"):
        out.append(
            Diagnostic(
                "error",
                "Invalid Attribute Combination: [assignee_id,assignee_type]",
                f"{PRIMARY_IP_GO} ValidateConfig",
            )
        )
    if bool(inputs.get("location")) == (inputs.get("assigneeId") is not None):
        out.append(Diagnostic("error", "exactly one of location, assignee_id", f"{PRIMARY_IP_GO} ConfigValidators"))
    if inputs.get("datacenter"):
        out.append(Diagnostic("error", "Removed Attribute: datacenter", f"{PRIMARY_IP_GO} Schema: datacenter"))
    return out


# ---------------------------------------------------------------------------- server


def user_data_hash(user_data: str) -> str:
    """The ``user_data`` StateFunc (userDataHashSum): base64 of its SHA-1. The state never holds the
    text; Read does not set user_data at all (getServerAttributes)."""
    return base64.b64encode(hashlib.sha1(user_data.encode()).digest()).decode()  # the provider's hash


def _user_data_same(old: Any, new: Any) -> bool:
    """The plan applies the StateFunc to the configured text before userDataDiffSuppress compares it
    with the stored hash (helper/schema diffString: StateFunc, then DiffSuppressFunc)."""
    return isinstance(new, str) and (old == user_data_hash(new) or old.strip() == new.strip())


def _server_outputs(state: dict[str, Any], name: str) -> dict[str, Any]:
    """getServerAttributes: ``ipv6_address`` is the assigned IPv6 network's first address plus
    "1" (string concatenation, not arithmetic); ``backups`` and ``backup_window`` come from the
    server's backup window; ``primary_disk_size`` from its type."""
    network = ipaddress.ip_network(IPV6_NETWORK)
    return {
        "ipv4Address": IPV4,
        "ipv6Address": f"{network.network_address}1",
        "ipv6Network": str(network),
        "status": "running",
        "primaryDiskSize": PRIMARY_DISK_GB.get(state.get("serverType", ""), 40),
        "backupWindow": "22-02" if state.get("backups") else "",
    }


SERVER = ResourceModel(
    type="hcloud:index/server:Server",
    source=SERVER_GO,
    rules=(
        Rule("name", f"{SERVER_GO} resourceServerUpdate (Server.Update name)"),
        Rule(
            "serverType",
            f"{SERVER_GO} resourceServerUpdate: Poweroff then ChangeType, in place (the server is down meanwhile)",
        ),
        Rule("image", f"{SERVER_GO} Schema: image Optional+Computed, ForceNew", force_new=True, computed=True),
        Rule("location", f"{SERVER_GO} Schema: location Optional+Computed, ForceNew", force_new=True, computed=True),
        Rule(
            "userData",
            f"{SERVER_GO} Schema: user_data ForceNew, StateFunc userDataHashSum, DiffSuppressFunc userDataDiffSuppress",
            force_new=True,
            read=user_data_hash,
            suppress=_user_data_same,
        ),
        Rule("sshKeys", f"{SERVER_GO} Schema: ssh_keys ForceNew; not in getServerAttributes", force_new=True),
        Rule("keepDisk", f"{SERVER_GO} Schema: keep_disk Default false", default=False),
        Rule("backups", f"{SERVER_GO} Schema: backups Default false; getServerAttributes: BackupWindow != ''"),
        Rule("labels", f"{SERVER_GO} Schema: labels; getServerAttributes: s.Labels"),
        Rule(
            "publicNets",
            f"{SERVER_GO} Schema: public_net TypeSet, not read back; DiffSuppressFunc while unset in the config",
            unordered=True,
            computed=True,
        ),
        Rule(
            "networks",
            f"{SERVER_GO} Schema: network TypeSet; DiffSuppressFunc while unset in the config",
            unordered=True,
            computed=True,
        ),
        Rule(
            "firewallIds",
            f"{SERVER_GO} Schema: firewall_ids TypeSet Optional+Computed; getServerAttributes: PublicNet.Firewalls",
            unordered=True,
            computed=True,
        ),
        Rule("ignoreRemoteFirewallIds", f"{SERVER_GO} Schema: Default false", default=False),
        Rule("placementGroupId", f"{SERVER_GO} resourceServerUpdate setPlacementGroup"),
        Rule("deleteProtection", f"{SERVER_GO} Schema: Default false; Update setProtection", default=False),
        Rule("rebuildProtection", f"{SERVER_GO} Schema: Default false; Update setProtection", default=False),
        Rule(
            "shutdownBeforeDeletion",
            f"{SERVER_GO} Schema: Default false; used by resourceServerDelete only",
            default=False,
        ),
        Rule("iso", f"{SERVER_GO} resourceServerUpdate setISO (resets the server)"),
        Rule("rescue", f"{SERVER_GO} resourceServerUpdate setRescue (resets the server)"),
    ),
    outputs=_server_outputs,
    output_names=("ipv4Address", "ipv6Address", "ipv6Network", "status", "primaryDiskSize", "backupWindow"),
    delete_before_replace=_explicit_name,
)


def _server_diagnostics(inputs: Mapping[str, Any], state: Mapping[str, Any] | None) -> list[Diagnostic]:
    out = []
    if inputs.get("datacenter"):
        out.append(Diagnostic("error", "Removed Attribute: datacenter", f"{SERVER_GO} Schema: datacenter"))
    if "allowDeprecatedImages" in inputs:
        out.append(
            Diagnostic(
                "warning",
                "allow_deprecated_images: Unused attribute, consider removing it from your configuration.",
                f"{SERVER_GO} Schema: allow_deprecated_images Deprecated",
            )
        )
    if bool(inputs.get("deleteProtection")) != bool(inputs.get("rebuildProtection")):
        # The provider passes both to one ChangeProtection call; the API takes them only together.
        out.append(
            Diagnostic(
                "error",
                "delete_protection and rebuild_protection must have the same value (Hetzner API change_protection)",
                f"{SERVER_GO} setProtection",
                when="apply",
            )
        )
    return out


# ---------------------------------------------------------------------------- volume


def _volume_outputs(state: dict[str, Any], name: str) -> dict[str, Any]:
    return {"linuxDevice": f"/dev/disk/by-id/scsi-0HC_Volume_{_numeric_id(name)}"}


VOLUME = ResourceModel(
    type="hcloud:index/volume:Volume",
    source=VOLUME_GO,
    rules=(
        Rule("name", f"{VOLUME_GO} resourceVolumeUpdate (Volume.Update name)"),
        Rule("size", f"{VOLUME_GO} resourceVolumeUpdate: Volume.Resize, in place"),
        Rule("location", f"{VOLUME_GO} Schema: location Optional+Computed, ForceNew", force_new=True, computed=True),
        Rule(
            "serverId",
            f"{VOLUME_GO} Schema: server_id Optional+Computed; getVolumeAttributes sets the attached server",
            computed=True,
        ),
        Rule("labels", f"{VOLUME_GO} Schema: labels; getVolumeAttributes: v.Labels"),
        Rule("automount", f"{VOLUME_GO} Schema: automount Optional; used on create/attach, not read back"),
        Rule("format", f"{VOLUME_GO} Schema: format Optional; create only, not read back, no update"),
        Rule("deleteProtection", f"{VOLUME_GO} Schema: Default false; Update setProtection", default=False),
    ),
    outputs=_volume_outputs,
    output_names=("linuxDevice",),
    delete_before_replace=_explicit_name,
)


def _volume_diagnostics(inputs: Mapping[str, Any], state: Mapping[str, Any] | None) -> list[Diagnostic]:
    if state is not None and float(inputs.get("size") or 0) < float(state.get("size") or 0):
        return [
            Diagnostic(
                "error",
                "a volume can only grow (Hetzner API resize: size must exceed the current size)",
                f"{VOLUME_GO} resourceVolumeUpdate Volume.Resize",
                when="apply",
            )
        ]
    return []


ATTACHMENT = ResourceModel(
    type="hcloud:index/volumeAttachment:VolumeAttachment",
    source=ATTACHMENT_GO,
    rules=(
        Rule("volumeId", f"{ATTACHMENT_GO} Schema: volume_id ForceNew", force_new=True),
        Rule("serverId", f"{ATTACHMENT_GO} Schema: server_id ForceNew", force_new=True),
        Rule(
            "automount",
            f"{ATTACHMENT_GO} Schema: automount Optional+Computed; no UpdateContext, not read back",
            computed=True,
        ),
    ),
)


# ---------------------------------------------------------------------------- firewall


def normalize_ip(text: str) -> str:
    """internal/firewall/validation.go normalizeIP (the source_ips/destination_ips StateFunc): a bare
    address becomes a /32 or /128, a CIDR keeps its host bits, IPv6 in its shortest lower-case form
    (Go's IPNet.String, which Python's ipaddress matches: RFC 5952)."""
    try:
        if "/" in text:
            return ipaddress.ip_interface(text).with_prefixlen
        address = ipaddress.ip_address(text)
    except ValueError:
        return text
    return f"{address}/{address.max_prefixlen}"


def _normalize_rule(rule: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(rule)
    for key in ("sourceIps", "destinationIps"):
        if out.get(key) is not None:
            out[key] = [normalize_ip(ip) for ip in out[key]]
    return out


def _normalize_rules(rules: list[Any]) -> list[Any]:
    """What Read stores (toTFRule of the API's rules, which holds the normalised networks)."""
    return [_normalize_rule(rule) for rule in rules]


def _rule_key(rule: Mapping[str, Any]) -> str:
    """A rule as the set hashes it: unset, empty and zero alike (SDKv2), its IP lists as sets."""
    normal = _normalize_rule(rule)
    kept: dict[str, Any] = {}
    for key, value in normal.items():
        if value in (None, "", [], 0, False):
            continue
        kept[key] = sorted(value) if key in ("sourceIps", "destinationIps") else value
    return json.dumps(kept, sort_keys=True)


def _same_rules(old: Any, new: Any) -> bool:
    """The plan hashes the configured rules after the StateFunc, so "10.0.0.1" matches a stored
    "10.0.0.1/32" and order never matters (rule and source_ips are TypeSet)."""
    if not isinstance(old, list) or not isinstance(new, list):
        return False
    return sorted(_rule_key(rule) for rule in old) == sorted(_rule_key(rule) for rule in new)


FIREWALL = ResourceModel(
    type="hcloud:index/firewall:Firewall",
    source=FIREWALL_GO,
    rules=(
        Rule("name", f"{FIREWALL_GO} resourceFirewallUpdate (Firewall.Update name)"),
        Rule("labels", f"{FIREWALL_GO} Schema: labels Optional+Computed", computed=True),
        Rule(
            "applyTos",
            f"{FIREWALL_GO} Schema: apply_to TypeSet Optional+Computed; DiffSuppressFunc while unset in the config",
            unordered=True,
            computed=True,
        ),
        Rule(
            "rules",
            f"{FIREWALL_GO} Schema: rule TypeSet, source_ips/destination_ips TypeSet with StateFunc normalizeIP;"
            " Update SetRules",
            unordered=True,
            read=_normalize_rules,
            suppress=_same_rules,
        ),
    ),
)


def _firewall_diagnostics(inputs: Mapping[str, Any], state: Mapping[str, Any] | None) -> list[Diagnostic]:
    out = []
    for index, rule in enumerate(inputs.get("rules") or []):
        for key in ("sourceIps", "destinationIps"):
            for ip in rule.get(key) or []:
                normal = normalize_ip(ip)
                try:
                    network = ipaddress.ip_network(normal)
                except ValueError:
                    out.append(Diagnostic("error", f"rules[{index}].{key}: {ip!r} is not an IP or CIDR", FIREWALL_GO))
                    continue
                if normal != network.with_prefixlen:
                    out.append(
                        Diagnostic(
                            "error",
                            f"rules[{index}].{key}: {ip} is not the start of the cidr block {network}",
                            f"{V} internal/firewall/validation.go validateIPDiag",
                        )
                    )
    if state is not None and state.get("rules") and not inputs.get("rules"):
        # resourceFirewallUpdate only calls SetRules when d.GetOk("rule") is set: emptying the rules
        # never reaches the API, so every later preview shows the same change again.
        out.append(
            Diagnostic(
                "warning",
                "removing every rule is never applied (SetRules only runs for a non-empty rule set): perpetual diff",
                f"{FIREWALL_GO} resourceFirewallUpdate",
                when="apply",
            )
        )
    return out


# ---------------------------------------------------------------------------- SSH key


def _trimmed(public_key: str) -> str:
    """The Hetzner API trims surrounding whitespace from ``public_key`` since 2026-04-22 (API
    changelog "ssh-key-trimmed"); populateResourceData stores the API's value and the maintainers
    declined to normalise it (hetznercloud/terraform-provider-hcloud#1389)."""
    return public_key.strip()


def _fingerprint(public_key: str) -> str:
    blob = base64.b64decode(public_key.split()[1]) if len(public_key.split()) > 1 else public_key.encode()
    digest = hashlib.md5(blob).hexdigest()  # the API's MD5 fingerprint format
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


SSH_KEY = ResourceModel(
    type="hcloud:index/sshKey:SshKey",
    source=SSHKEY_GO,
    zero_is_unset=False,
    rules=(
        Rule("name", f"{SSHKEY_GO} Update (opts.Name)"),
        Rule(
            "publicKey",
            f"{SSHKEY_GO} Schema: public_key RequiresReplace; {V} internal/sshkey/common.go populateResourceData"
            " stores the API's (trimmed) key",
            force_new=True,
            read=_trimmed,
        ),
        Rule("labels", LABELS_GO + " (Optional+Computed, Default {})", default={}),
    ),
    outputs=lambda state, name: {"fingerprint": _fingerprint(state.get("publicKey", ""))},
    output_names=("fingerprint",),
    delete_before_replace=lambda inputs: False,
)


# ---------------------------------------------------------------------------- private network


NETWORK = ResourceModel(
    type="hcloud:index/network:Network",
    source=NETWORK_GO,
    rules=(
        Rule("name", f"{NETWORK_GO} resourceNetworkUpdate (Network.Update name)"),
        Rule("ipRange", f"{NETWORK_GO} Schema: ip_range Required, ForceNew", force_new=True),
        Rule("labels", f"{NETWORK_GO} Schema: labels; setNetworkSchema: n.Labels"),
        Rule("deleteProtection", f"{NETWORK_GO} Schema: Default false; Update setProtection", default=False),
        Rule("exposeRoutesToVswitch", f"{NETWORK_GO} Schema: Default false", default=False),
    ),
    delete_before_replace=_explicit_name,
)


def _subnet_outputs(state: dict[str, Any], name: str) -> dict[str, Any]:
    """setNetworkSubnetSchema: ``gateway`` is the API's, the subnet's first address."""
    network = ipaddress.ip_network(state.get("ipRange") or "10.0.0.0/24")
    return {"gateway": str(network.network_address + 1)}


SUBNET = ResourceModel(
    type="hcloud:index/networkSubnet:NetworkSubnet",
    source=SUBNET_GO,
    rules=(
        Rule("networkId", f"{SUBNET_GO} Schema: network_id Required, ForceNew", force_new=True),
        Rule("type", f"{SUBNET_GO} Schema: type Required, ForceNew", force_new=True),
        Rule("networkZone", f"{SUBNET_GO} Schema: network_zone Required, ForceNew", force_new=True),
        Rule("ipRange", f"{SUBNET_GO} Schema: ip_range Required, ForceNew", force_new=True),
        Rule("vswitchId", f"{SUBNET_GO} Schema: vswitch_id Optional, ForceNew", force_new=True),
    ),
    outputs=_subnet_outputs,
    output_names=("gateway",),
)


def _server_network_on_create(state: dict[str, Any], context: Mapping[str, Any]) -> dict[str, Any]:
    """Create: without ``ip`` the API picks a free address of the subnet (the mock: one derived from
    the attachment's server, past the gateway); ``network_id`` is the subnet's network
    (populateNetworkResourceData); ``alias_ips`` defaults to the empty set."""
    subnet = str(state.get("subnetId") or "")
    network_id, _, ip_range = subnet.partition("-")
    if ip_range and not state.get("ip"):
        network = ipaddress.ip_network(ip_range)
        offset = 3 + int(hashlib.sha256(str(state.get("serverId")).encode()).hexdigest()[:8], 16) % 200
        state["ip"] = str(network.network_address + offset)
    if network_id and state.get("networkId") is None:
        state["networkId"] = int(network_id)
    state.setdefault("aliasIps", [])
    return state


SERVER_NETWORK = ResourceModel(
    type="hcloud:index/serverNetwork:ServerNetwork",
    source=SERVER_NETWORK_GO,
    zero_is_unset=False,
    rules=(
        Rule("serverId", f"{SERVER_NETWORK_GO} Schema: server_id RequiresReplace", force_new=True),
        Rule(
            "networkId",
            f"{SERVER_NETWORK_GO} Schema: network_id Optional+Computed, RequiresReplace, UseStateForUnknown",
            force_new=True,
            computed=True,
        ),
        Rule("subnetId", f"{SERVER_NETWORK_GO} Schema: subnet_id RequiresReplace", force_new=True),
        Rule(
            "ip",
            f"{SERVER_NETWORK_GO} Schema: ip Optional+Computed, RequiresReplace, UseStateForUnknown",
            force_new=True,
            computed=True,
        ),
        Rule(
            "aliasIps",
            f"{SERVER_NETWORK_GO} Schema: alias_ips Optional+Computed, Default empty set",
            unordered=True,
            default=[],
        ),
    ),
    on_create=_server_network_on_create,
    outputs=lambda state, name: {"macAddress": "86:00:00:00:00:01"},
    output_names=("macAddress",),
    # Plugin Framework: the bridge never deletes first.
    delete_before_replace=lambda inputs: False,
)


MODELS = {
    m.type: m for m in (PRIMARY_IP, SERVER, VOLUME, ATTACHMENT, FIREWALL, SSH_KEY, NETWORK, SUBNET, SERVER_NETWORK)
}
DIAGNOSTICS: dict[str, Check] = {
    PRIMARY_IP.type: _primary_ip_diagnostics,
    SERVER.type: _server_diagnostics,
    VOLUME.type: _volume_diagnostics,
    FIREWALL.type: _firewall_diagnostics,
}
