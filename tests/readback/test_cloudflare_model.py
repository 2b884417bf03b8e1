"""The read-back model of terraform-provider-cloudflare v5.22.0 (tools/readback/cloudflare.py), rule by rule.

Paths are under internal/services/ at v5.22.0.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tools.readback import cloudflare, tls


def paths(changes) -> dict[str, bool]:
    return {change.path: change.replaces for change in changes}


RECORD = {
    "zoneId": "0123456789abcdef0123456789abcdef",
    "name": "www.example.com",
    "type": "A",
    "content": "198.51.100.10",
    "ttl": 1.0,
    "proxied": True,
    "comment": "managed by pulumi (prod)",
}


def test_record_name_as_label_or_apex_matches_the_fqdn_the_api_stores():
    """dns_record/resource.go Read stores the API's FQDN; custom.go ModifyPlan keeps the state's
    name when the plan is "@" or a label the state extends with the zone."""
    state = cloudflare.DNS_RECORD.state(RECORD, "r")
    assert cloudflare.DNS_RECORD.diff(state, {**RECORD, "name": "www"}) == []
    apex = cloudflare.DNS_RECORD.state({**RECORD, "name": "example.com"}, "r")
    assert cloudflare.DNS_RECORD.diff(apex, {**RECORD, "name": "@"}) == []


def test_record_rename_is_an_in_place_update_and_zone_or_type_replace():
    """dns_record/schema.go: name Required without RequiresReplace; zone_id and type RequiresReplace."""
    state = cloudflare.DNS_RECORD.state(RECORD, "r")
    assert paths(cloudflare.DNS_RECORD.diff(state, {**RECORD, "name": "api.example.com"})) == {"name": False}
    assert paths(cloudflare.DNS_RECORD.diff(state, {**RECORD, "type": "AAAA"})) == {"type": True}
    assert paths(cloudflare.DNS_RECORD.diff(state, {**RECORD, "zoneId": "f" * 32})) == {"zoneId": True}
    assert paths(cloudflare.DNS_RECORD.diff(state, {**RECORD, "proxied": False})) == {"proxied": False}


def test_aaaa_content_spelled_long_is_an_update_on_every_plan():
    """The API stores an AAAA address compressed and ModifyPlan normalises only CNAME case
    (custom.go; cloudflare/terraform-provider-cloudflare#3354)."""
    long_form = {**RECORD, "type": "AAAA", "content": "2001:db8:4f8:0:0:0:0:1"}
    state = cloudflare.DNS_RECORD.state(long_form, "r")
    assert state["content"] == "2001:db8:4f8::1"
    assert paths(cloudflare.DNS_RECORD.diff(state, long_form)) == {"content": False}
    short = {**long_form, "content": "2001:db8:4f8::1"}
    assert cloudflare.DNS_RECORD.diff(cloudflare.DNS_RECORD.state(short, "r"), short) == []


def test_record_tags_settings_and_content_from_the_api_are_no_change_while_unset():
    """dns_record/schema.go: tags, settings and content are Optional+Computed."""
    state = {**cloudflare.DNS_RECORD.state(RECORD, "r"), "tags": [], "settings": {"flattenCname": False}}
    bare = {k: v for k, v in RECORD.items() if k != "content"}
    assert cloudflare.DNS_RECORD.diff(state, bare) == []


def test_proxied_record_needs_the_automatic_ttl_at_create():
    """dns_record/resource.go Create: "ttl must be set to 1 when `proxied` is true"."""
    check = cloudflare.DIAGNOSTICS[cloudflare.DNS_RECORD.type]
    assert check(RECORD, None) == []
    assert [d.severity for d in check({**RECORD, "ttl": 300.0}, None)] == ["error"]
    assert check({**RECORD, "ttl": 300.0, "proxied": False}, None) == []


SETTING = {"zoneId": "0123456789abcdef0123456789abcdef", "settingId": "min_tls_version", "value": "1.2"}


def test_zone_setting_value_updates_in_place_and_its_id_replaces():
    """zone_setting/schema.go: setting_id and zone_id RequiresReplace, value updates (Settings.Edit)."""
    state = cloudflare.ZONE_SETTING.state(SETTING, "z")
    assert cloudflare.ZONE_SETTING.diff(state, SETTING) == []
    assert paths(cloudflare.ZONE_SETTING.diff(state, {**SETTING, "value": "1.3"})) == {"value": False}
    assert paths(cloudflare.ZONE_SETTING.diff(state, {**SETTING, "settingId": "ssl"})) == {"settingId": True}


def test_zone_setting_warns_only_on_the_preview_that_creates_it():
    """zone_setting/resource.go ModifyPlan: "Resource Destruction Considerations" when the state is
    null (Delete is a no-op); nothing once it exists."""
    check = cloudflare.DIAGNOSTICS[cloudflare.ZONE_SETTING.type]
    assert [d.severity for d in check(SETTING, None)] == ["warning"]
    assert check(SETTING, cloudflare.ZONE_SETTING.state(SETTING, "z")) == []


def _csr(names: list[str]) -> str:
    key_state = {"algorithm": "ECDSA", "ecdsaCurve": "P256"}
    key = tls.PRIVATE_KEY.state(key_state, "proxy-tls-key")
    request = {"privateKeyPem": key["privateKeyPem"], "dnsNames": names, "subject": {"commonName": names[0]}}
    return tls.CERT_REQUEST.state(request, "proxy-csr")["certRequestPem"]


def origin(names: list[str]) -> dict:
    return {"csr": _csr(sorted(names)), "hostnames": names, "requestType": "origin-ecc", "requestedValidity": 5475.0}


def test_origin_certificate_hostnames_out_of_the_apis_order_replace_it_on_every_plan():
    """origin_ca_certificate/resource.go Read stores the API's hostnames and schema.go gives the list
    RequiresReplace without an order-insensitive modifier (cloudflare/terraform-provider-cloudflare
    #6239, open); the threads show the API's list sorted."""
    unsorted = origin(["www.example.com", "example.com"])
    state = cloudflare.ORIGIN_CA_CERTIFICATE.state(unsorted, "cert")
    assert state["hostnames"] == ["example.com", "www.example.com"]
    assert paths(cloudflare.ORIGIN_CA_CERTIFICATE.diff(state, unsorted)) == {"hostnames[0]": True, "hostnames[1]": True}
    in_order = origin(["example.com", "www.example.com"])
    assert cloudflare.ORIGIN_CA_CERTIFICATE.diff(cloudflare.ORIGIN_CA_CERTIFICATE.state(in_order, "c"), in_order) == []


def test_origin_certificate_inputs_all_replace_and_validity_defaults_to_15_years():
    """origin_ca_certificate/schema.go: csr, request_type, hostnames RequiresReplace;
    requested_validity Default 5475 with RequiresReplaceIfConfigured; Update does nothing."""
    inputs = origin(["example.com"])
    state = cloudflare.ORIGIN_CA_CERTIFICATE.state(inputs, "cert")
    bare = {k: v for k, v in inputs.items() if k != "requestedValidity"}
    assert cloudflare.ORIGIN_CA_CERTIFICATE.diff(state, bare) == []
    assert paths(cloudflare.ORIGIN_CA_CERTIFICATE.diff(state, {**inputs, "requestedValidity": 365.0})) == {
        "requestedValidity": True
    }
    assert paths(cloudflare.ORIGIN_CA_CERTIFICATE.diff(state, {**inputs, "requestType": "origin-rsa"})) == {
        "requestType": True
    }
    assert state["expiresOn"] == "2040-12-28 00:00:00 +0000 UTC"


def test_origin_certificate_is_issued_for_the_requests_key_and_names():
    """The mock answers a real certificate: the CSR's public key, the hostnames as SANs."""
    inputs = origin(["example.com", "www.example.com"])
    pem = cloudflare.ORIGIN_CA_CERTIFICATE.state(inputs, "cert")["certificate"]
    cert = x509.load_pem_x509_certificate(pem.encode())
    csr = x509.load_pem_x509_csr(inputs["csr"].encode())
    der = serialization.Encoding.DER
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    assert cert.public_key().public_bytes(der, spki) == csr.public_key().public_bytes(der, spki)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["example.com", "www.example.com"]


def test_ip_ranges_answers_the_schemas_outputs():
    """ip_ranges/data_source_schema.go: etag, ipv4_cidrs, ipv6_cidrs, jdcloud_cidrs (networks echoed)."""
    answer = cloudflare.CALLS["cloudflare:index/getIpRanges:getIpRanges"]({})
    assert set(answer) == {"etag", "ipv4Cidrs", "ipv6Cidrs", "jdcloudCidrs", "networks"}
    assert "2606:4700::/32" in answer["ipv6Cidrs"] and "104.16.0.0/13" in answer["ipv4Cidrs"]
