#!/bin/sh
# Restore a volume store's files into a new directory (then swap it in for the volume's content).
# Usage: restore-files.sh STORE TARGET_DIR [SNAPSHOT]
# SQLite files are not in this snapshot: restore them with restore-sqlite.sh.
# Rendered by keel (render/backup.py).
set -u
KEEL_SCRIPTS_DIR=${KEEL_SCRIPTS_DIR:-$(dirname "$0")}
# shellcheck source=common.sh
. "$KEEL_SCRIPTS_DIR/common.sh"

if [ "$#" -lt 2 ]; then
  echo "usage: $0 STORE TARGET_DIR [SNAPSHOT]" >&2
  exit 2
fi
keel_store=$1 keel_target=$2 keel_snapshot=${3:-latest}
if [ -e "$keel_target" ]; then
  echo "$keel_target exists; expected a new directory" >&2
  exit 2
fi
keel_restore_open || exit 1
# The snapshot holds the volume at the path it was mounted at (KEEL_STORES_DIR/STORE).
keel_path=$(keel_restic snapshots --host "$KEEL_SNAPSHOT_HOST" --tag "store=$keel_store,kind=files" --latest 1 \
  --json | sed -n 's/.*"paths":\["\([^"]*\)"\].*/\1/p' | head -n 1)
if [ -z "$keel_path" ]; then
  keel_log "$keel_store: no file snapshot found"
  exit 1
fi
keel_staging="$keel_target.restoring"
rm -rf "$keel_staging"
keel_restic restore --host "$KEEL_SNAPSHOT_HOST" --tag "store=$keel_store,kind=files" "$keel_snapshot" \
  --target "$keel_staging" || { rm -rf "$keel_staging"; exit 1; }
mv "$keel_staging$keel_path" "$keel_target" && rm -rf "$keel_staging" || exit 1
keel_log "$keel_store: files of $keel_snapshot restored to $keel_target"
