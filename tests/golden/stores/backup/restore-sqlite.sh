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
keel_restore_open || exit 1
keel_name="/$(keel_sqlite_name "$keel_store" "$keel_path")"
if ! keel_restic dump --host "$KEEL_SNAPSHOT_HOST" --tag "store=$keel_store" --path "$keel_name" \
  "$keel_snapshot" "$keel_name" >"$keel_target.restoring"; then
  # Snapshots taken before the flat name were stored as /<store>/<relative path>.
  keel_name="/$keel_store/$keel_path"
  keel_restic dump --host "$KEEL_SNAPSHOT_HOST" --tag "store=$keel_store" --path "$keel_name" \
    "$keel_snapshot" "$keel_name" >"$keel_target.restoring" || { rm -f "$keel_target.restoring"; exit 1; }
fi
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
