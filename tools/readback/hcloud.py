"""hetznercloud/terraform-provider-hcloud v1.66.x, as bundled by pulumi-hcloud 1.43.3.

Sources (internal/): primaryip/ (resource.go schema, model.go FromAPI), server/, volume/,
firewall/, sshkey/, volume attachment in volume/attachment_resource.go.
"""

from __future__ import annotations

import hashlib
from typing import Any

from tools.readback.model import ResourceModel, Rule

V = "hetznercloud/terraform-provider-hcloud v1.66.1"


def _numeric_id(name: str) -> str:
    # Derived from the name, not the registration order, so rendered files are stable.
    return str(1_000_000 + int(hashlib.sha256(name.encode()).hexdigest()[:8], 16) % 9_000_000)


def _primary_ip_outputs(state: dict[str, Any], name: str) -> dict[str, Any]:
    """internal/primaryip/model.go FromAPI: ``ip_address`` is ``hc.IP.String()`` — for IPv6 the
    network's first address without a prefix; ``ip_network`` is the /64."""
    if state.get("type") == "ipv6":
        return {"ipAddress": "2001:db8:4f8::", "ipNetwork": "2001:db8:4f8::/64"}
    return {"ipAddress": "198.51.100.10"}


def _server_outputs(state: dict[str, Any], name: str) -> dict[str, Any]:
    return {
        "ipv4Address": "198.51.100.10",
        "ipv6Address": "2001:db8:4f8::1",
        "ipv6Network": "2001:db8:4f8::/64",
        "status": "running",
    }


def _volume_outputs(state: dict[str, Any], name: str) -> dict[str, Any]:
    return {"linuxDevice": f"/dev/disk/by-id/scsi-0HC_Volume_{_numeric_id(name)}"}


PRIMARY_IP = ResourceModel(
    output_names=("ipAddress", "ipNetwork"),
    type="hcloud:index/primaryIp:PrimaryIp",
    source=f"{V} internal/primaryip/resource.go",
    zero_is_unset=False,
    rules=(
        Rule("type", f"{V} internal/primaryip/resource.go", force_new=True),
        Rule("location", f"{V} internal/primaryip/resource.go", force_new=True),
        Rule("assigneeId", f"{V} internal/primaryip/resource.go", computed=True),
        Rule("assigneeType", f"{V} internal/primaryip/resource.go", computed=True),
    ),
    outputs=_primary_ip_outputs,
)
SERVER = ResourceModel(
    output_names=("ipv4Address", "ipv6Address", "ipv6Network", "status"),
    type="hcloud:index/server:Server",
    source=f"{V} internal/server/resource.go",
    rules=(
        Rule("location", f"{V} internal/server/resource.go", force_new=True),
        Rule("image", f"{V} internal/server/resource.go", force_new=True),
        Rule("userData", f"{V} internal/server/resource.go", force_new=True),
        Rule("sshKeys", f"{V} internal/server/resource.go", force_new=True),
    ),
    outputs=_server_outputs,
)
VOLUME = ResourceModel(
    output_names=("linuxDevice",),
    type="hcloud:index/volume:Volume",
    source=f"{V} internal/volume/resource.go",
    rules=(Rule("location", f"{V} internal/volume/resource.go", force_new=True),),
    outputs=_volume_outputs,
)
SIMPLE = [
    ResourceModel(type="hcloud:index/sshKey:SshKey", source=f"{V} internal/sshkey/resource.go"),
    ResourceModel(type="hcloud:index/firewall:Firewall", source=f"{V} internal/firewall/resource.go"),
    ResourceModel(
        type="hcloud:index/volumeAttachment:VolumeAttachment", source=f"{V} internal/volume/attachment_resource.go"
    ),
]
MODELS = {m.type: m for m in (PRIMARY_IP, SERVER, VOLUME, *SIMPLE)}


def resource_id(type_: str, name: str) -> str:
    """hcloud ids are integers (the program converts them with ``int``)."""
    return _numeric_id(name)
