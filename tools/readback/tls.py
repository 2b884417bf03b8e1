"""hashicorp/terraform-provider-tls v4.3.0, as bundled by pulumi-tls 5.6.2 (Plugin Framework).

pulumi/pulumi-tls's provider/shim/go.mod pins terraform-provider-tls at 609226f53114
(2026-05-13, "Upgrade terraform-provider-tls to v4.3.0", pulumi-tls #1035). The mirror has no
v4.3.0 tag; the files cited here are read at refs/pull/731/merge (2026-04-30), the write-only
attributes pull request v4.3.0 ships (the SDK's ``private_key_pem_wo`` fields match it).
Paths are under internal/provider/.

The answers are real keys, requests and certificates (deterministic: keys derived from the
resource name, ECDSA signatures RFC 6979, serials from the name, every certificate issued at
``ISSUED_AT``), so what the program builds from them (nginx, ssh known_hosts) can be checked with
the real tools.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import ipaddress
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tools.readback.model import Change, ResourceModel, Rule

V = "hashicorp/terraform-provider-tls v4.3.0"
PRIVATE_KEY_GO = f"{V} resource_private_key.go"
CERT_REQUEST_GO = f"{V} resource_cert_request.go"
SELF_SIGNED_GO = f"{V} resource_self_signed_cert.go"
COMMON_CERT_GO = f"{V} common_cert.go"
PEM_REPLACE = f"{V} common.go requireReplaceIfStateContainsPEMString"

# Every certificate the mock issues starts here; the renewal model counts from it.
ISSUED_AT = datetime(2026, 1, 1, tzinfo=UTC)

PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
CURVES: dict[str, ec.EllipticCurve] = {
    "P224": ec.SECP224R1(),
    "P256": ec.SECP256R1(),
    "P384": ec.SECP384R1(),
    "P521": ec.SECP521R1(),
}


# ---------------------------------------------------------------------------- keys


def _fixed_checkints(pem: bytes) -> str:
    """Zero the two random check integers of an OpenSSH private key so the text is reproducible."""
    lines = pem.decode().strip().splitlines()
    blob = bytearray(base64.b64decode("".join(lines[1:-1])))
    offset = len(b"openssh-key-v1\0")
    for _ in range(3):  # cipher name, kdf name, kdf options
        offset += 4 + int.from_bytes(blob[offset : offset + 4], "big")
    offset += 4  # number of keys
    offset += 4 + int.from_bytes(blob[offset : offset + 4], "big")  # public key
    offset += 4  # length of the private section
    blob[offset : offset + 8] = bytes(8)
    body = base64.b64encode(bytes(blob)).decode()
    wrapped = [body[i : i + 70] for i in range(0, len(body), 70)]
    return "\n".join([lines[0], *wrapped, lines[-1]]) + "\n"


@functools.lru_cache(maxsize=256)
def _private_key(algorithm: str, curve: str, seed_text: str) -> PrivateKey:
    if algorithm == "ED25519":
        return ed25519.Ed25519PrivateKey.from_private_bytes(hashlib.sha256(seed_text.encode()).digest())
    seed = hashlib.sha512(seed_text.encode()).digest()
    if algorithm == "ECDSA":
        chosen = CURVES[curve]
        # Below 2^(bits-1), hence below the order of every NIST curve.
        secret = int.from_bytes(seed, "big") % (2 ** (chosen.key_size - 1)) + 1
        return ec.derive_private_key(secret, chosen)
    raise ValueError(
        f"tls PrivateKey algorithm {algorithm!r}: only ED25519 and ECDSA are modelled"
        " (the program registers no RSA key)"
    )


def key_pair(seed_text: str) -> tuple[str, str, str]:
    """A real, deterministic ed25519 key pair: (openssh private, openssh public, pem private)."""
    outputs = _private_key_outputs({"algorithm": "ED25519"}, seed_text)
    return outputs["privateKeyOpenssh"], outputs["publicKeyOpenssh"], outputs["privateKeyPem"]


def _private_key_outputs(state: Mapping[str, Any], name: str) -> dict[str, Any]:
    """resource_private_key.go Create and common_key.go setPublicKeyAttributes: PKCS#1 for RSA,
    SEC1 ("EC PRIVATE KEY") for ECDSA, PKCS#8 for ED25519; an OpenSSH private key and the
    authorized_keys line except for P-224 (x/crypto/ssh cannot encode it: empty strings); ``id``
    (the hex SHA-1 of the DER public key, common.go hashForState) is the resource id, not an output."""
    algorithm = state.get("algorithm", "")
    curve = state.get("ecdsaCurve") or "P224"  # Schema: ecdsa_curve Default P224
    key = _private_key(algorithm, curve, name)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        )
    else:
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    pkcs8 = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = key.public_key()
    out = {
        "privateKeyPem": pem.decode(),
        "privateKeyPemPkcs8": pkcs8.decode(),
        "publicKeyPem": public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode(),
        "privateKeyOpenssh": "",
        "publicKeyOpenssh": "",
        "publicKeyFingerprintMd5": "",
        "publicKeyFingerprintSha256": "",
    }
    if curve != "P224" or algorithm != "ECDSA":
        openssh = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
        )
        line = public.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
        blob = base64.b64decode(line.split()[1])
        md5 = hashlib.md5(blob).hexdigest()  # ssh.FingerprintLegacyMD5
        out |= {
            "privateKeyOpenssh": _fixed_checkints(openssh),
            "publicKeyOpenssh": line + "\n",  # ssh.MarshalAuthorizedKey ends the line
            "publicKeyFingerprintMd5": ":".join(md5[i : i + 2] for i in range(0, len(md5), 2)),
            "publicKeyFingerprintSha256": "SHA256:"
            + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("="),
        }
    return out


PRIVATE_KEY = ResourceModel(
    type="tls:index/privateKey:PrivateKey",
    source=PRIVATE_KEY_GO,
    zero_is_unset=False,
    # Every input RequiresReplace; Update is a no-op (resource_private_key.go Schema, Update).
    replace_on_change=True,
    rules=(
        Rule("algorithm", f"{PRIVATE_KEY_GO} Schema: algorithm RequiresReplace", force_new=True),
        Rule("ecdsaCurve", f"{PRIVATE_KEY_GO} Schema: ecdsa_curve Default P224, RequiresReplace", default="P224"),
        Rule("rsaBits", f"{PRIVATE_KEY_GO} Schema: rsa_bits Default 2048, RequiresReplace", default=2048),
    ),
    outputs=_private_key_outputs,
    output_names=(
        "privateKeyPem",
        "privateKeyPemPkcs8",
        "publicKeyPem",
        "privateKeyOpenssh",
        "publicKeyOpenssh",
        "publicKeyFingerprintMd5",
        "publicKeyFingerprintSha256",
    ),
)


# ---------------------------------------------------------------------------- requests and certificates


def _load_key(pem: str) -> PrivateKey | None:
    try:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError):
        return None
    return key if isinstance(key, ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey) else None


def _algorithm(key: Any) -> hashes.SHA256 | None:
    """Go's x509 picks ECDSAWithSHA256 for P-256 (SHA-384/512 for the larger curves) and PureEd25519."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        size = key.curve.key_size
        return hashes.SHA512() if size > 384 else hashes.SHA384() if size > 256 else hashes.SHA256()  # type: ignore[return-value]
    return None


def _key_algorithm(key: Any) -> str:
    return "ECDSA" if isinstance(key, ec.EllipticCurvePrivateKey) else "ED25519"


def _subject(subject: Mapping[str, Any] | None) -> x509.Name:
    """common_cert.go createSubjectDistinguishedNames, in pkix.Name's RDN order."""
    subject = subject or {}
    pairs = [
        ("country", NameOID.COUNTRY_NAME),
        ("organization", NameOID.ORGANIZATION_NAME),
        ("organizationalUnit", NameOID.ORGANIZATIONAL_UNIT_NAME),
        ("locality", NameOID.LOCALITY_NAME),
        ("province", NameOID.STATE_OR_PROVINCE_NAME),
        ("postalCode", NameOID.POSTAL_CODE),
        ("serialNumber", NameOID.SERIAL_NUMBER),
        ("commonName", NameOID.COMMON_NAME),
    ]
    return x509.Name([x509.NameAttribute(oid, str(subject[key])) for key, oid in pairs if subject.get(key)])


def _sans(state: Mapping[str, Any]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = [x509.DNSName(n) for n in state.get("dnsNames") or []]
    names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in state.get("ipAddresses") or []]
    names += [x509.UniformResourceIdentifier(u) for u in state.get("uris") or []]
    return names


def _sign_ecdsa_deterministic(key: Any) -> dict[str, Any]:
    return {"ecdsa_deterministic": True} if isinstance(key, ec.EllipticCurvePrivateKey) else {}


def _csr_outputs(state: Mapping[str, Any], name: str) -> dict[str, Any]:
    """resource_cert_request.go Create: a CSR with the subject and SANs, signed by the key."""
    key = _load_key(state.get("privateKeyPem") or "")
    if key is None:
        # A preview passes the key as unknown: the provider answers unknown too.
        return {"certRequestPem": "", "keyAlgorithm": ""}
    builder = x509.CertificateSigningRequestBuilder().subject_name(_subject(_first(state.get("subject"))))
    if _sans(state):
        builder = builder.add_extension(x509.SubjectAlternativeName(_sans(state)), critical=False)
    csr = builder.sign(key, _algorithm(key), **_sign_ecdsa_deterministic(key))
    pem = csr.public_bytes(serialization.Encoding.PEM).decode()
    return {"certRequestPem": pem, "keyAlgorithm": _key_algorithm(key)}


def _first(subject: Any) -> Mapping[str, Any] | None:
    # The Pulumi schema flattens the MaxItems=1 ``subject`` block to an object.
    if isinstance(subject, list):
        return subject[0] if subject else None
    return subject if isinstance(subject, Mapping) else None


KEY_USAGES = {
    "digital_signature": "digital_signature",
    "content_commitment": "content_commitment",
    "key_encipherment": "key_encipherment",
    "data_encipherment": "data_encipherment",
    "key_agreement": "key_agreement",
    "cert_signing": "key_cert_sign",
    "crl_signing": "crl_sign",
    "encipher_only": "encipher_only",
    "decipher_only": "decipher_only",
}
EXTENDED_KEY_USAGES = {
    "server_auth": ExtendedKeyUsageOID.SERVER_AUTH,
    "client_auth": ExtendedKeyUsageOID.CLIENT_AUTH,
    "code_signing": ExtendedKeyUsageOID.CODE_SIGNING,
    "email_protection": ExtendedKeyUsageOID.EMAIL_PROTECTION,
    "timestamping": ExtendedKeyUsageOID.TIME_STAMPING,
    "ocsp_signing": ExtendedKeyUsageOID.OCSP_SIGNING,
}


def _serial(name: str) -> int:
    """createCertificate: a random serial below 2^128; derived from the name here."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:16], "big") | 1


def rfc3339(moment: datetime) -> str:
    """Go's time.Time MarshalText (RFC 3339) for a UTC time."""
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _self_signed_outputs(state: Mapping[str, Any], name: str) -> dict[str, Any]:
    """resource_self_signed_cert.go Create and common_cert.go createCertificate: valid from now for
    ``validity_period_hours``; key usages and extended key usages from ``allowed_uses``; the
    serial number is the resource id; ``ready_for_renewal`` starts false (Schema Default)."""
    hours = int(state.get("validityPeriodHours") or 0)
    start, end = ISSUED_AT, ISSUED_AT + timedelta(hours=hours)
    serial = _serial(name)
    out: dict[str, Any] = {
        "validityStartTime": rfc3339(start),
        "validityEndTime": rfc3339(end),
        "readyForRenewal": hours == 0
        or int(state.get("earlyRenewalHours") or 0) >= hours,  # ReadyForRenewal plan modifier
        "certPem": "",
        "keyAlgorithm": "",
    }
    key = _load_key(state.get("privateKeyPem") or "")
    if key is None:
        return out
    subject = _subject(_first(state.get("subject")))
    uses = state.get("allowedUses") or []
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=bool(state.get("isCaCertificate")), path_length=None), critical=True)
    )
    flags = {value: False for value in KEY_USAGES.values()}
    for use in uses:
        if use in KEY_USAGES:
            flags[KEY_USAGES[use]] = True
    if any(flags.values()):
        builder = builder.add_extension(x509.KeyUsage(**flags), critical=True)
    extended = [EXTENDED_KEY_USAGES[use] for use in uses if use in EXTENDED_KEY_USAGES]
    if extended:
        builder = builder.add_extension(x509.ExtendedKeyUsage(extended), critical=False)
    if _sans(state):
        builder = builder.add_extension(x509.SubjectAlternativeName(_sans(state)), critical=False)
    cert = builder.sign(key, _algorithm(key), **_sign_ecdsa_deterministic(key))
    out["certPem"] = cert.public_bytes(serialization.Encoding.PEM).decode()
    out["keyAlgorithm"] = _key_algorithm(key)
    return out


def issue_from_csr(csr_pem: str, hostnames: list[str], days: int, issuer: str, serial_seed: str) -> str | None:
    """A certificate for the CSR's public key, signed by a deterministic CA named ``issuer`` (used
    for Cloudflare's Origin CA answer). None when the CSR does not parse (an unknown in a preview)."""
    try:
        csr = x509.load_pem_x509_csr(csr_pem.encode())
    except ValueError:
        return None
    ca_key = _private_key("ECDSA", "P256", f"ca:{issuer}")
    start = ISSUED_AT
    cert = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "CloudFlare, Inc."),
                    x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "CloudFlare Origin CA"),
                    x509.NameAttribute(NameOID.COMMON_NAME, "CloudFlare Origin Certificate"),
                ]
            )
        )
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
        .public_key(csr.public_key())
        .serial_number(_serial(serial_seed))
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(h) for h in hostnames]), critical=False)
        .sign(ca_key, hashes.SHA256(), ecdsa_deterministic=True)
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


CERT_REQUEST = ResourceModel(
    type="tls:index/certRequest:CertRequest",
    source=CERT_REQUEST_GO,
    zero_is_unset=False,
    # Every input RequiresReplace; Update only copies the plan (updatedUsingPlan).
    replace_on_change=True,
    rules=(
        Rule("privateKeyPem", PEM_REPLACE, force_new=True),
        Rule("dnsNames", f"{CERT_REQUEST_GO} Schema: dns_names RequiresReplace", force_new=True),
        Rule("ipAddresses", f"{CERT_REQUEST_GO} Schema: ip_addresses RequiresReplace", force_new=True),
        Rule("uris", f"{CERT_REQUEST_GO} Schema: uris RequiresReplace", force_new=True),
        Rule("subject", f"{CERT_REQUEST_GO} Schema: subject block RequiresReplace", force_new=True),
    ),
    outputs=_csr_outputs,
    output_names=("certRequestPem", "keyAlgorithm"),
)

SELF_SIGNED_CERT = ResourceModel(
    type="tls:index/selfSignedCert:SelfSignedCert",
    source=SELF_SIGNED_GO,
    zero_is_unset=False,
    rules=(
        Rule("privateKeyPem", PEM_REPLACE, force_new=True),
        Rule("validityPeriodHours", f"{SELF_SIGNED_GO} Schema: validity_period_hours RequiresReplace", force_new=True),
        Rule("allowedUses", f"{SELF_SIGNED_GO} Schema: allowed_uses RequiresReplace", force_new=True),
        Rule("dnsNames", f"{SELF_SIGNED_GO} Schema: dns_names RequiresReplace", force_new=True),
        Rule("ipAddresses", f"{SELF_SIGNED_GO} Schema: ip_addresses RequiresReplace", force_new=True),
        Rule("uris", f"{SELF_SIGNED_GO} Schema: uris RequiresReplace", force_new=True),
        Rule("subject", f"{SELF_SIGNED_GO} Schema: subject block RequiresReplace", force_new=True),
        Rule(
            "earlyRenewalHours",
            f"{SELF_SIGNED_GO} Schema: early_renewal_hours Default 0, no RequiresReplace (Update copies the plan)",
            default=0,
        ),
        Rule(
            "isCaCertificate",
            f"{SELF_SIGNED_GO} Schema: is_ca_certificate Default false, RequiresReplace",
            force_new=True,
            default=False,
        ),
        Rule(
            "maxPathLength",
            f"{SELF_SIGNED_GO} Schema: max_path_length Optional+Computed, UseStateForUnknown, RequiresReplace",
            force_new=True,
            computed=True,
        ),
        Rule(
            "setSubjectKeyId",
            f"{SELF_SIGNED_GO} Schema: set_subject_key_id Default false, RequiresReplace",
            force_new=True,
            default=False,
        ),
        Rule(
            "setAuthorityKeyId",
            f"{SELF_SIGNED_GO} Schema: set_authority_key_id Default false, RequiresReplace",
            force_new=True,
            default=False,
        ),
    ),
    outputs=_self_signed_outputs,
    output_names=("certPem", "keyAlgorithm", "validityStartTime", "validityEndTime", "readyForRenewal"),
)


def renewal_due_at(state: Mapping[str, Any]) -> datetime:
    """When the certificate becomes "ready for renewal": ``validity_end_time`` minus
    ``early_renewal_hours`` (common_cert.go modifyPlanIfCertificateReadyForRenewal)."""
    end = datetime.strptime(state["validityEndTime"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    return end - timedelta(hours=int(state.get("earlyRenewalHours") or 0))


def renewal_changes(state: Mapping[str, Any], now: datetime) -> list[Change]:
    """What a preview at ``now`` adds to the diff of an unchanged SelfSignedCert.

    From ``renewal_due_at`` on, ModifyPlan (run by every plan: the bridge's Diff calls
    PlanResourceChange) marks ``ready_for_renewal`` unknown and RequiresReplace, so a plain
    ``pulumi preview`` plans a replacement; a refresh also stores ``ready_for_renewal = true``
    (Read: modifyStateIfCertificateReadyForRenewal). ``ResourceModel.diff`` models a preview
    before that moment."""
    if now < renewal_due_at(state):
        return []
    return [
        Change(
            "readyForRenewal",
            state.get("readyForRenewal", False),
            None,
            True,
            f"{COMMON_CERT_GO} modifyPlanIfCertificateReadyForRenewal",
        )
    ]


MODELS = {m.type: m for m in (PRIVATE_KEY, CERT_REQUEST, SELF_SIGNED_CERT)}
