"""The ACME renewal service: Let's Encrypt certificates through DNS-01 on the Cloudflare API.

acme.sh (official image neilpang/acme.sh) issues once, then checks twice a day and renews
30 days before expiry, writing the fullchain and key into a volume the proxy mounts read-only;
the proxy's watcher sees the new files and reloads nginx gracefully. Until the first issuance
succeeds, a two-day self-signed certificate lets nginx start. Nobody is involved in renewals;
they are observed through the service's logs and the certificate-expiry alert (< 14 days).
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence

SCRIPT_PATH = "/usr/local/bin/keel-acme"
TOKEN_PATH = "/run/secrets/cloudflare-token"
STATE_DIR = "/acme.sh"
CERT_DIR = "/certs"
RUNTIME_DIR = "/tmp"
"""A tmpfs: acme.sh's account settings file lives here, never in the state volume, because acme.sh
saves every DNS API credential it is given into that file (dns_cf.sh, _saveaccountconf_mutable
CF_Token) and reads it back on renewal. Here the token is read from its secret at each start and
what acme.sh writes of it disappears with the task."""
ACCOUNT_CONF = f"{RUNTIME_DIR}/keel-acme-account.conf"
CHECK_INTERVAL_S = 12 * 3600


def renewal_script(*, domains: Sequence[str], email: str, zone_id: str, staging: bool) -> str:
    q = shlex.quote
    server = "letsencrypt_test" if staging else "letsencrypt"
    domain_flags = " ".join(f"-d {q(d)}" for d in domains)
    first = q(domains[0])
    return f"""#!/bin/sh
# Issue and renew the proxy's certificate with acme.sh (DNS-01 via Cloudflare).
set -u
CF_Token="$(cat {TOKEN_PATH})"
CF_Zone_ID={q(zone_id)}
export CF_Token CF_Zone_ID
home={STATE_DIR}
# Account settings on the tmpfs ({ACCOUNT_CONF}), not in the volume; a token saved there by an
# earlier version is removed.
conf={ACCOUNT_CONF}
if [ -f "$home/account.conf" ]; then
  sed -i '/^SAVED_CF_/d' "$home/account.conf"
fi
if [ ! -s {CERT_DIR}/tls.crt ]; then
  # A stand-in so nginx can start before the first issuance; replaced within minutes.
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \\
    -subj {q("/CN=" + domains[0])} -keyout {CERT_DIR}/tls.key -out {CERT_DIR}/tls.crt 2>/dev/null
fi
acme.sh --home "$home" --accountconf "$conf" --register-account -m {q(email)} --server {server} >/dev/null 2>&1 || true
while :; do
  rc=0
  acme.sh --home "$home" --accountconf "$conf" --issue --dns dns_cf {domain_flags} \\
    --keylength ec-256 --server {server} || rc=$?
  # 0: issued or renewed; 2: not due yet. Anything else is a failure worth a log line.
  if [ "$rc" -ne 0 ] && [ "$rc" -ne 2 ]; then
    echo "keel-acme: issuance failed with status $rc; retrying in an hour" >&2
    sleep 3600
    continue
  fi
  acme.sh --home "$home" --accountconf "$conf" --install-cert -d {first} --ecc \\
    --fullchain-file {CERT_DIR}/tls.crt.new --key-file {CERT_DIR}/tls.key.new >/dev/null
  mv {CERT_DIR}/tls.key.new {CERT_DIR}/tls.key
  mv {CERT_DIR}/tls.crt.new {CERT_DIR}/tls.crt
  date +%s > {CERT_DIR}/.checked
  sleep {CHECK_INTERVAL_S}
done
"""


def health_command() -> list[str]:
    """Healthy while a check ran within the last day (the loop runs every 12 hours)."""
    return ["CMD-SHELL", f"[ $(( $(date +%s) - $(cat {CERT_DIR}/.checked 2>/dev/null || echo 0) )) -lt 86400 ]"]
