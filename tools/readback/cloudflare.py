"""cloudflare/terraform-provider-cloudflare v5.x (plugin framework), as bundled by pulumi-cloudflare 6.23.1.

Sources (internal/services/): dns_record/, zone_setting/, origin_ca_certificate/, ip_ranges/.
"""

from __future__ import annotations

from typing import Any

from tools.readback.model import ResourceModel, Rule

V = "cloudflare/terraform-provider-cloudflare v5"

# Cloudflare's published ranges (https://www.cloudflare.com/ips/), as get_ip_ranges returns them.
CLOUDFLARE_IPV4 = [
    "173.245.48.0/20", "103.21.244.0/22", "103.22.200.0/22", "103.31.4.0/22", "141.101.64.0/18",
    "108.162.192.0/18", "190.93.240.0/20", "188.114.96.0/20", "197.234.240.0/22", "198.41.128.0/17",
    "162.158.0.0/15", "104.16.0.0/13", "104.24.0.0/14", "172.64.0.0/13", "131.0.72.0/22",
]  # fmt: skip
CLOUDFLARE_IPV6 = [
    "2400:cb00::/32", "2606:4700::/32", "2803:f800::/32", "2405:b500::/32",
    "2405:8100::/32", "2a06:98c0::/29", "2c0f:f248::/32",
]  # fmt: skip


def _origin_certificate(state: dict[str, Any], name: str) -> dict[str, Any]:
    return {"certificate": f"-----BEGIN CERTIFICATE-----\nmock-origin-{name}\n-----END CERTIFICATE-----\n"}


MODELS = {
    m.type: m
    for m in (
        ResourceModel(
            type="cloudflare:index/dnsRecord:DnsRecord",
            source=f"{V} internal/services/dns_record/schema.go",
            zero_is_unset=False,
            rules=(Rule("zoneId", f"{V} internal/services/dns_record/schema.go", force_new=True),),
        ),
        ResourceModel(
            type="cloudflare:index/zoneSetting:ZoneSetting",
            source=f"{V} internal/services/zone_setting/schema.go",
            zero_is_unset=False,
            rules=(
                Rule("zoneId", f"{V} internal/services/zone_setting/schema.go", force_new=True),
                Rule("settingId", f"{V} internal/services/zone_setting/schema.go", force_new=True),
            ),
        ),
        ResourceModel(
            type="cloudflare:index/originCaCertificate:OriginCaCertificate",
            source=f"{V} internal/services/origin_ca_certificate/schema.go",
            zero_is_unset=False,
            replace_on_change=True,
            outputs=_origin_certificate,
            output_names=("certificate",),
        ),
    )
}


def _ip_ranges(args: dict[str, Any]) -> dict[str, Any]:
    return {"ipv4Cidrs": CLOUDFLARE_IPV4, "ipv6Cidrs": CLOUDFLARE_IPV6, "id": "ranges"}


CALLS = {"cloudflare:index/getIpRanges:getIpRanges": _ip_ranges}
