#!/bin/sh
# Restore a PostgreSQL store's dump into a database, in one transaction.
# Usage: restore-postgres.sh STORE HOST PORT DATABASE USER [SNAPSHOT]
# SNAPSHOT defaults to the newest one of the store. The database must exist; objects in it that
# the dump contains are dropped first (--clean). Rendered by keel (render/backup.py).
set -u
KEEL_SCRIPTS_DIR=${KEEL_SCRIPTS_DIR:-$(dirname "$0")}
# shellcheck source=common.sh
. "$KEEL_SCRIPTS_DIR/common.sh"

if [ "$#" -lt 5 ]; then
  echo "usage: $0 STORE HOST PORT DATABASE USER [SNAPSHOT]" >&2
  exit 2
fi
keel_store=$1 keel_host=$2 keel_port=$3 keel_database=$4 keel_user=$5 keel_snapshot=${6:-latest}
keel_s3_credentials
keel_rc_dir=$(mktemp -d "$KEEL_WORK_DIR/keel-restore.XXXXXX") || exit 1
trap 'rm -rf "$keel_rc_dir"' EXIT
{
  "$RESTIC" dump --host "$KEEL_SNAPSHOT_HOST" --tag "store=$keel_store" --path "/$keel_store.pgdump" \
    "$keel_snapshot" "/$keel_store.pgdump"
  echo $? >"$keel_rc_dir/dump"
} | PGPASSWORD=$(keel_password "$keel_store") "$PG_RESTORE" --no-password --host "$keel_host" \
  --port "$keel_port" --username "$keel_user" --dbname "$keel_database" \
  --clean --if-exists --no-owner --single-transaction --exit-on-error
keel_restore_rc=$?
keel_dump_rc=$(cat "$keel_rc_dir/dump" 2>/dev/null || echo 1)
if [ "$keel_dump_rc" -ne 0 ] || [ "$keel_restore_rc" -ne 0 ]; then
  keel_log "$keel_store: restore failed (restic dump $keel_dump_rc, pg_restore $keel_restore_rc)"
  exit 1
fi
keel_log "$keel_store: restored $keel_snapshot into $keel_database"
