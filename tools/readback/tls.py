"""hashicorp/terraform-provider-tls, as bundled by pulumi-tls 5.6.2: every input forces replacement
(internal/provider/resource_private_key.go, resource_cert_request.go, resource_self_signed_cert.go)."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from tools.readback.model import ResourceModel

V = "hashicorp/terraform-provider-tls v4"


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


def key_pair(seed_text: str) -> tuple[str, str, str]:
    """A real, deterministic ed25519 key pair: (openssh private, openssh public, pem private)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(seed_text.encode()).digest())
    private_openssh = _fixed_checkints(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption())
    )
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    return private_openssh, public + "\n", private_pem


def _private_key(state: dict[str, Any], name: str) -> dict[str, Any]:
    private_openssh, public, pem = key_pair(name)
    return {"privateKeyOpenssh": private_openssh, "publicKeyOpenssh": public, "privateKeyPem": pem}


def _csr(state: dict[str, Any], name: str) -> dict[str, Any]:
    return {"certRequestPem": f"-----BEGIN CERTIFICATE REQUEST-----\nmock-{name}\n-----END CERTIFICATE REQUEST-----\n"}


def _cert(state: dict[str, Any], name: str) -> dict[str, Any]:
    return {"certPem": f"-----BEGIN CERTIFICATE-----\nmock-{name}\n-----END CERTIFICATE-----\n"}


MODELS = {
    m.type: m
    for m in (
        ResourceModel(
            "tls:index/privateKey:PrivateKey",
            source=f"{V} resource_private_key.go",
            replace_on_change=True,
            zero_is_unset=False,
            outputs=_private_key,
            output_names=("privateKeyOpenssh", "publicKeyOpenssh", "privateKeyPem"),
        ),
        ResourceModel(
            "tls:index/certRequest:CertRequest",
            source=f"{V} resource_cert_request.go",
            replace_on_change=True,
            zero_is_unset=False,
            outputs=_csr,
            output_names=("certRequestPem",),
        ),
        ResourceModel(
            "tls:index/selfSignedCert:SelfSignedCert",
            source=f"{V} resource_self_signed_cert.go",
            replace_on_change=True,
            zero_is_unset=False,
            outputs=_cert,
            output_names=("certPem",),
        ),
        ResourceModel(
            "tls:index/locallySignedCert:LocallySignedCert",
            source=f"{V} resource_locally_signed_cert.go",
            replace_on_change=True,
            zero_is_unset=False,
            outputs=_cert,
            output_names=("certPem",),
        ),
    )
}
