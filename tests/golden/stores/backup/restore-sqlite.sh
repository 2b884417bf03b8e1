#!/bin/sh
# Restore one SQLite database of a volume store to a file (write it elsewhere, then swap it in
# while the app is stopped).
# Usage: restore-sqlite.sh STORE RELATIVE_PATH TARGET_FILE [SNAPSHOT]
# The restored copy is checked with PRAGMA integrity_check. Rendered by keel (render/backup.py).
set -u
KEEL_SCRIPTS_DIR=${KEEL_SCRIPTS_DIR:-$(dirname "$0")}
# shellcheck source=common.sh
. "$KEEL_SCRIPTS_DIR/common.sh"

if [ "$#" -lt 3 ]; then
  echo "usage: $0 STORE RELATIVE_PATH TARGET_FILE [SNAPSHOT]" >&2
  exit 2
fi
keel_store=$1 keel_path=$2 keel_target=$3 keel_snapshot=${4:-latest}
keel_s3_credentials
"$RESTIC" dump --host "$KEEL_SNAPSHOT_HOST" --tag "store=$keel_store" --path "/$keel_store/$keel_path" \
  "$keel_snapshot" "/$keel_store/$keel_path" >"$keel_target.restoring" || { rm -f "$keel_target.restoring"; exit 1; }
keel_integrity=$("$SQLITE3" "$keel_target.restoring" "PRAGMA integrity_check;")
if [ "$keel_integrity" != ok ]; then
  keel_log "$keel_store: restored $keel_path fails its integrity check: $keel_integrity"
  rm -f "$keel_target.restoring"
  exit 1
fi
# A stale WAL beside the new file would be replayed into it.
rm -f "$keel_target-wal" "$keel_target-shm" "$keel_target-journal"
mv -f "$keel_target.restoring" "$keel_target"
keel_log "$keel_store: $keel_path restored to $keel_target"
