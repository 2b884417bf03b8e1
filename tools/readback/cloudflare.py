"""cloudflare/terraform-provider-cloudflare v5.22.0 (Plugin Framework), as bundled by pulumi-cloudflare 6.23.1.

Which upstream: pulumi-cloudflare's ``upstream`` submodule is v5.19.1 at the newest commit we can
see (2026-07-02); the 6.23.1 SDK we pin has resources v5.22.0 added (``moq_relay``) and lacks the
``crawl_options`` v5.22.0 removed, so it bundles v5.22.0 or later. Its DnsRecord also takes an
``include_shadow_metadata`` input that no upstream tag we have puts on the resource (only the data
sources), so it may be a later release: the files below are read at v5.22.0 and the upstream
main of 2026-07-24 changes none of what is modelled here (only DNS ``priority``, unused).
Paths are under internal/services/.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from tools.readback import tls
from tools.readback.diagnostics import Check, Diagnostic
from tools.readback.model import ResourceModel, Rule

V = "cloudflare/terraform-provider-cloudflare v5.22.0"
DNS_SCHEMA = f"{V} internal/services/dns_record/schema.go"
DNS_GO = f"{V} internal/services/dns_record/resource.go"
DNS_CUSTOM = f"{V} internal/services/dns_record/custom.go"
ZONE_SCHEMA = f"{V} internal/services/zone_setting/schema.go"
ZONE_GO = f"{V} internal/services/zone_setting/resource.go"
ORIGIN_SCHEMA = f"{V} internal/services/origin_ca_certificate/schema.go"
ORIGIN_GO = f"{V} internal/services/origin_ca_certificate/resource.go"
MODIFIED_ON = "2026-01-01T00:00:00Z"

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


# ---------------------------------------------------------------------------- DNS record


def _record_content(content: str) -> str:
    """The API stores an AAAA record's address in its compressed form: a config that spells it
    otherwise ("2600:1900:4020:2b73:8000:0:0:0") shows an update on every plan
    (cloudflare/terraform-provider-cloudflare#3354; ModifyPlan normalises only CNAME case)."""
    if ":" in content:
        try:
            return str(ipaddress.IPv6Address(content))
        except ValueError:
            return content
    return content


def _same_record_name(old: Any, new: Any) -> bool:
    """custom.go ModifyPlan: the API answers the FQDN; a plan of "@" against a dotted state, or of a
    label that the state extends with ".<zone>", keeps the state's name. (The zone name comes
    from private state; without it the prefix test alone decides.)"""
    if not isinstance(old, str) or not isinstance(new, str):
        return False
    state, plan = old.rstrip("."), new.rstrip(".")
    return (new == "@" and "." in old) or (plan != state and state.startswith(plan + "."))


def _dns_outputs(state: dict[str, Any], name: str) -> dict[str, Any]:
    """Read: apijson.Unmarshal of the API's record. ``comment_modified_on``/``tags_modified_on`` are
    null without a comment/tags (ModifyPlan keeps them so)."""
    return {
        "createdOn": MODIFIED_ON,
        "modifiedOn": MODIFIED_ON,
        "commentModifiedOn": MODIFIED_ON if state.get("comment") else None,
        "tagsModifiedOn": None,
        "proxiable": state.get("type") in ("A", "AAAA", "CNAME"),
        "meta": "{}",
    }


DNS_RECORD = ResourceModel(
    type="cloudflare:index/dnsRecord:DnsRecord",
    source=DNS_SCHEMA,
    zero_is_unset=False,
    rules=(
        Rule("zoneId", f"{DNS_SCHEMA}: zone_id RequiresReplace", force_new=True),
        Rule("type", f"{DNS_SCHEMA}: type RequiresReplace", force_new=True),
        Rule(
            "name",
            f"{DNS_SCHEMA}: name Required, in place; {DNS_GO} Read stores the API's FQDN; {DNS_CUSTOM} ModifyPlan",
            suppress=_same_record_name,
        ),
        Rule(
            "content",
            f"{DNS_SCHEMA}: content Optional+Computed; Read stores the API's form",
            computed=True,
            read=_record_content,
        ),
        Rule("ttl", f"{DNS_SCHEMA}: ttl Required (1 = automatic, the API stores 1)"),
        Rule("proxied", f"{DNS_SCHEMA}: proxied Optional+Computed, Default false", default=False),
        Rule("comment", f"{DNS_SCHEMA}: comment Optional"),
        Rule(
            "tags",
            f"{DNS_SCHEMA}: tags Optional+Computed set; {DNS_CUSTOM} ModifyPlan: [] equals null",
            computed=True,
        ),
        Rule("settings", f"{DNS_SCHEMA}: settings Optional+Computed; {DNS_GO} normalizeSettings", computed=True),
        Rule("priority", f"{DNS_SCHEMA}: priority Optional"),
        Rule("data", f"{DNS_SCHEMA}: data Optional; {DNS_CUSTOM} DNSRecordDataModel.Equal"),
        Rule("privateRouting", f"{DNS_SCHEMA}: private_routing Optional"),
    ),
    outputs=_dns_outputs,
    output_names=("createdOn", "modifiedOn", "commentModifiedOn", "tagsModifiedOn", "proxiable", "meta"),
    # pulumi-terraform-bridge v3.136.0 pkg/pf/tfbridge/provider_diff.go: Plugin Framework
    # resources create the replacement first unless ResourceInfo.DeleteBeforeReplace is set.
    delete_before_replace=lambda inputs: False,
)


def _dns_diagnostics(inputs: Mapping[str, Any], state: Mapping[str, Any] | None) -> list[Diagnostic]:
    if state is None and inputs.get("proxied") and float(inputs.get("ttl") or 0) != 1:
        return [
            Diagnostic(
                "error",
                "ttl must be set to 1 when `proxied` is true",
                f"{DNS_GO} Create",
                when="apply",
            )
        ]
    return []


# ---------------------------------------------------------------------------- zone setting

ZONE_SETTING = ResourceModel(
    type="cloudflare:index/zoneSetting:ZoneSetting",
    source=ZONE_SCHEMA,
    zero_is_unset=False,
    rules=(
        Rule("zoneId", f"{ZONE_SCHEMA}: zone_id RequiresReplace", force_new=True),
        Rule("settingId", f"{ZONE_SCHEMA}: setting_id RequiresReplace", force_new=True),
        Rule(
            "value",
            f"{ZONE_SCHEMA}: value Required Dynamic (NormalizedDynamicType); {ZONE_GO} Read stores the API's value",
        ),
        Rule("enabled", f"{ZONE_SCHEMA}: enabled Optional+Computed", computed=True),
    ),
    outputs=lambda state, name: {"editable": True, "modifiedOn": MODIFIED_ON},
    output_names=("editable", "modifiedOn"),
    delete_before_replace=lambda inputs: False,
)


def _zone_setting_diagnostics(inputs: Mapping[str, Any], state: Mapping[str, Any] | None) -> list[Diagnostic]:
    # ModifyPlan warns when the state is null (a create); Delete is a no-op, so a removed setting
    # keeps its value at Cloudflare (the same warning, for a destroy plan).
    if state is None:
        return [
            Diagnostic(
                "warning",
                "Resource Destruction Considerations: this resource cannot be destroyed from Terraform",
                f"{ZONE_GO} ModifyPlan",
            )
        ]
    return []


# ---------------------------------------------------------------------------- origin CA certificate


def _api_hostname_order(hostnames: list[str]) -> list[str]:
    """Read stores ``hostnames`` as the API returns them (apijson.Unmarshal overwrites the list; no
    plan modifier ignores order) and the list RequiresReplace: a config in another order replaces
    the certificate on every plan (cloudflare/terraform-provider-cloudflare#6239, open; the plan in
    #5392 shows the state's list sorted: "*.a.b", "*.a.b.c", "a.b"). The API's order is taken to be
    sorted, as both threads show."""
    return sorted(hostnames)


def expires_on(days: int) -> str:
    """The state's form, as the plans in #5392 show it: "2040-04-05 13:40:00 +0000 UTC"."""
    return (tls.ISSUED_AT + timedelta(days=days)).strftime("%Y-%m-%d %H:%M:%S +0000 UTC")


def _origin_outputs(state: dict[str, Any], name: str) -> dict[str, Any]:
    days = int(state.get("requestedValidity") or 5475)
    certificate = tls.issue_from_csr(
        state.get("csr", ""),
        list(state.get("hostnames") or []),
        days,
        "CloudFlare Origin SSL ECC Certificate Authority",
        f"origin:{name}",
    )
    return {"certificate": certificate or "", "expiresOn": expires_on(days)}


ORIGIN_CA_CERTIFICATE = ResourceModel(
    type="cloudflare:index/originCaCertificate:OriginCaCertificate",
    source=ORIGIN_SCHEMA,
    zero_is_unset=False,
    rules=(
        Rule(
            "hostnames",
            f"{ORIGIN_SCHEMA}: hostnames List RequiresReplace; {ORIGIN_GO} Read takes the API's list",
            force_new=True,
            read=_api_hostname_order,
        ),
        Rule("csr", f"{ORIGIN_SCHEMA}: csr RequiresReplace; {ORIGIN_GO} Read keeps the state's csr", force_new=True),
        Rule("requestType", f"{ORIGIN_SCHEMA}: request_type RequiresReplace", force_new=True),
        Rule(
            "requestedValidity",
            f"{ORIGIN_SCHEMA}: requested_validity Default 5475, RequiresReplaceIfConfigured; {ORIGIN_GO} Read keeps it",
            force_new=True,
            default=5475,
        ),
    ),
    outputs=_origin_outputs,
    output_names=("certificate", "expiresOn"),
    delete_before_replace=lambda inputs: False,
)


def _ip_ranges(args: dict[str, Any]) -> dict[str, Any]:
    """internal/services/ip_ranges/data_source_schema.go: ``ipv4_cidrs``, ``ipv6_cidrs``, ``etag``,
    and ``jdcloud_cidrs`` only when ``networks = "jdcloud"``."""
    return {
        "ipv4Cidrs": CLOUDFLARE_IPV4,
        "ipv6Cidrs": CLOUDFLARE_IPV6,
        "etag": "mock-etag",
        "jdcloudCidrs": [],
        "networks": args.get("networks"),
    }


MODELS = {m.type: m for m in (DNS_RECORD, ZONE_SETTING, ORIGIN_CA_CERTIFICATE)}
CALLS = {"cloudflare:index/getIpRanges:getIpRanges": _ip_ranges}
DIAGNOSTICS: dict[str, Check] = {DNS_RECORD.type: _dns_diagnostics, ZONE_SETTING.type: _zone_setting_diagnostics}
