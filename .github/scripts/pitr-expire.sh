#!/usr/bin/env bash
# Expire the point-in-time archive of every archived PostgreSQL store of one stack:
#   .github/scripts/pitr-expire.sh STACK [STACK_FILE]
# The host's archive key may write but never delete, so `pgbackrest expire` (which applies
# backup/pitr/recovery_window_days) runs here, from the daily maintenance workflow, with the stack's
# delete-capable key and cipher passphrase (docs/restore.md, "Expiry"). pgBackRest reads them from
# PGBACKREST_REPO1_S3_KEY, PGBACKREST_REPO1_S3_KEY_SECRET and PGBACKREST_REPO1_CIPHER_PASS, which it
# never logs (it prints secure options as <redacted>); this script never echoes them nor traces.
# Every store is tried; the script exits non-zero if any store's expiry (or its configuration) failed.
set -euo pipefail

if [ "$#" -lt 1 ] || [ "$#" -gt 2 ]; then
  echo "usage: $0 STACK [STACK_FILE]" >&2
  exit 2
fi
stack=$1
for name in PGBACKREST_REPO1_S3_KEY PGBACKREST_REPO1_S3_KEY_SECRET PGBACKREST_REPO1_CIPHER_PASS; do
  if [ -z "${!name:-}" ]; then
    echo "error: $name is empty: the stack's environment lacks the archive's expiry secret" >&2
    exit 2
  fi
done

workdir=$(mktemp -d)
trap 'rm -rf "$workdir"' EXIT
config_args=()
if [ "$#" -eq 2 ]; then
  config_args=(--config-file "$2")
fi
# The store names come from the stack's config, which only admits [a-z][a-z0-9-]* (render/pitr.py).
stores=$(python -m tools.pitr expire-config "$stack" "${config_args[@]}" --output-dir "$workdir")

failed=()
for store in $stores; do
  echo "::group::pgbackrest expire: stack $stack, store $store"
  if pgbackrest --config="$workdir/expire-$store.conf" --stanza="$store" expire; then
    echo "::endgroup::"
  else
    status=$?
    echo "::endgroup::"
    echo "::error::pgbackrest expire failed for store $store of stack $stack (exit $status)"
    failed+=("$store")
  fi
done
if [ "${#failed[@]}" -gt 0 ]; then
  echo "error: the archive of ${failed[*]} was not expired; it keeps growing until this passes" >&2
  exit 1
fi
echo "expired the archive of: $stores"
