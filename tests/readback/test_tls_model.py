"""The read-back model of terraform-provider-tls v4.3.0 (tools/readback/tls.py), rule by rule.

Paths are under internal/provider/ (read at refs/pull/731/merge, the change v4.3.0 ships).
"""

from __future__ import annotations

import ipaddress
from datetime import timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tools.readback import tls


def paths(changes) -> dict[str, bool]:
    return {change.path: change.replaces for change in changes}


ECDSA = {"algorithm": "ECDSA", "ecdsaCurve": "P256"}


def test_any_private_key_input_change_replaces_the_key():
    """resource_private_key.go Schema: algorithm, ecdsa_curve, rsa_bits RequiresReplace; Update is a no-op."""
    state = tls.PRIVATE_KEY.state(ECDSA, "k")
    assert tls.PRIVATE_KEY.diff(state, ECDSA) == []
    assert paths(tls.PRIVATE_KEY.diff(state, {**ECDSA, "ecdsaCurve": "P384"})) == {"ecdsaCurve": True}
    assert paths(tls.PRIVATE_KEY.diff(state, {"algorithm": "ED25519"})) == {"algorithm": True, "ecdsaCurve": True}


def test_private_key_pem_formats_follow_the_algorithm():
    """resource_private_key.go Create: SEC1 "EC PRIVATE KEY" for ECDSA, PKCS#8 for ED25519, always a
    PKCS#8 copy; no OpenSSH form for the default curve P-224 (common_key.go setPublicKeyAttributes)."""
    ec_key = tls.PRIVATE_KEY.state(ECDSA, "k")
    assert ec_key["privateKeyPem"].startswith("-----BEGIN EC PRIVATE KEY-----")
    assert ec_key["privateKeyPemPkcs8"].startswith("-----BEGIN PRIVATE KEY-----")
    assert ec_key["publicKeyOpenssh"].startswith("ecdsa-sha2-nistp256 ") and ec_key["publicKeyOpenssh"].endswith("\n")
    assert ec_key["publicKeyFingerprintSha256"].startswith("SHA256:")
    ed = tls.PRIVATE_KEY.state({"algorithm": "ED25519"}, "k")
    assert ed["privateKeyPem"].startswith("-----BEGIN PRIVATE KEY-----")
    assert ed["privateKeyOpenssh"].startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    p224 = tls.PRIVATE_KEY.state({"algorithm": "ECDSA"}, "k")
    assert p224["privateKeyOpenssh"] == "" and p224["publicKeyOpenssh"] == ""


def request(names: list[str]) -> dict:
    key = tls.PRIVATE_KEY.state(ECDSA, "k")["privateKeyPem"]
    return {"privateKeyPem": key, "dnsNames": names, "subject": {"commonName": names[0]}}


def test_cert_request_is_signed_by_the_key_and_names_the_hosts():
    """resource_cert_request.go Create: x509.CreateCertificateRequest with the subject and SANs."""
    inputs = request(["example.com", "www.example.com"])
    state = tls.CERT_REQUEST.state(inputs, "csr")
    csr = x509.load_pem_x509_csr(state["certRequestPem"].encode())
    assert csr.is_signature_valid
    assert csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName
    ) == ["example.com", "www.example.com"]
    assert state["keyAlgorithm"] == "ECDSA"
    assert tls.CERT_REQUEST.state(inputs, "csr")["certRequestPem"] == state["certRequestPem"]


def test_cert_request_changes_replace_it():
    """resource_cert_request.go Schema: dns_names, subject RequiresReplace; private_key_pem
    requireReplaceIfStateContainsPEMString (common.go)."""
    inputs = request(["example.com"])
    state = tls.CERT_REQUEST.state(inputs, "csr")
    assert paths(tls.CERT_REQUEST.diff(state, {**inputs, "dnsNames": ["example.org"]})) == {"dnsNames[0]": True}
    other_key = tls.PRIVATE_KEY.state(ECDSA, "other")["privateKeyPem"]
    assert paths(tls.CERT_REQUEST.diff(state, {**inputs, "privateKeyPem": other_key})) == {"privateKeyPem": True}


SELF_SIGNED: dict[str, Any] = {
    "dnsNames": ["localhost"],
    "ipAddresses": ["127.0.0.1"],
    "subject": {"commonName": "localhost", "organization": "keel dev"},
    "validityPeriodHours": 8760.0,
    "earlyRenewalHours": 720.0,
    "allowedUses": ["key_encipherment", "digital_signature", "server_auth"],
}


def self_signed() -> dict:
    return {**SELF_SIGNED, "privateKeyPem": tls.PRIVATE_KEY.state(ECDSA, "k")["privateKeyPem"]}


def test_self_signed_certificate_is_real_and_valid_for_its_period():
    """common_cert.go createCertificate: NotBefore now, NotAfter + validity_period_hours, SANs,
    key usages from allowed_uses, the serial is the id; validity times in RFC 3339."""
    state = tls.SELF_SIGNED_CERT.state(self_signed(), "cert")
    cert = x509.load_pem_x509_certificate(state["certPem"].encode())
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == timedelta(hours=8760)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value[0].dotted_string == "1.3.6.1.5.5.7.3.1"
    key = serialization.load_pem_private_key(self_signed()["privateKeyPem"].encode(), None)
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert cert.public_key().public_bytes(*spki) == key.public_key().public_bytes(*spki)
    assert (state["validityStartTime"], state["validityEndTime"]) == ("2026-01-01T00:00:00Z", "2027-01-01T00:00:00Z")
    assert state["readyForRenewal"] is False


def test_early_renewal_hours_change_in_place_and_the_rest_replaces():
    """resource_self_signed_cert.go Schema: early_renewal_hours has no RequiresReplace (Update copies
    the plan); validity_period_hours, allowed_uses, dns_names, subject do."""
    state = tls.SELF_SIGNED_CERT.state(self_signed(), "cert")
    assert tls.SELF_SIGNED_CERT.diff(state, self_signed()) == []
    assert paths(tls.SELF_SIGNED_CERT.diff(state, {**self_signed(), "earlyRenewalHours": 48.0})) == {
        "earlyRenewalHours": False
    }
    assert paths(tls.SELF_SIGNED_CERT.diff(state, {**self_signed(), "validityPeriodHours": 1.0})) == {
        "validityPeriodHours": True
    }
    assert paths(tls.SELF_SIGNED_CERT.diff(state, {**self_signed(), "dnsNames": ["a"]})) == {"dnsNames[0]": True}
    subject = {**SELF_SIGNED["subject"], "organization": "x"}
    assert paths(tls.SELF_SIGNED_CERT.diff(state, {**self_signed(), "subject": subject})) == {
        "subject.organization": True
    }


def test_the_programs_self_signed_certificate_plans_a_replacement_335_days_after_issue():
    """common_cert.go modifyPlanIfCertificateReadyForRenewal: from validity_end_time minus
    early_renewal_hours (8760 h - 720 h) every plan marks ready_for_renewal unknown and RequiresReplace."""
    state = tls.SELF_SIGNED_CERT.state(self_signed(), "cert")
    due = tls.renewal_due_at(state)
    assert due == tls.ISSUED_AT + timedelta(days=335)
    assert tls.renewal_changes(state, due - timedelta(seconds=1)) == []
    [change] = tls.renewal_changes(state, due)
    assert (change.path, change.replaces) == ("readyForRenewal", True)


def test_early_renewal_at_or_beyond_the_validity_is_ready_at_once():
    """attribute_plan_modifier_bool ReadyForRenewal: true when early_renewal_hours >= validity_period_hours."""
    state = tls.SELF_SIGNED_CERT.state({**self_signed(), "earlyRenewalHours": 8760.0}, "cert")
    assert state["readyForRenewal"] is True
