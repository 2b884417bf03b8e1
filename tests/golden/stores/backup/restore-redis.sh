#!/bin/sh
# Put a Redis store's RDB back into its data directory, for a stopped server.
# Usage: restore-redis.sh STORE DATA_DIR [SNAPSHOT]
# With AOF on, Redis loads only the AOF and ignores dump.rdb (and an empty AOF would start an
# empty server that then saves itself over the RDB). So the current AOF directory is moved
# aside and a new one is written whose base file is the restored RDB: the server starts with
# its normal configuration and loads the snapshot. Rendered by keel (render/backup.py).
set -u
KEEL_SCRIPTS_DIR=${KEEL_SCRIPTS_DIR:-$(dirname "$0")}
# shellcheck source=common.sh
. "$KEEL_SCRIPTS_DIR/common.sh"

if [ "$#" -lt 2 ]; then
  echo "usage: $0 STORE DATA_DIR [SNAPSHOT]" >&2
  exit 2
fi
keel_store=$1 keel_dir=$2 keel_snapshot=${3:-latest}
keel_restore_open || exit 1
mkdir -p "$keel_dir" || exit 1
keel_new="$keel_dir/appendonlydir.restoring"
rm -rf "$keel_new"
mkdir -p "$keel_new" || exit 1
keel_restic dump --host "$KEEL_SNAPSHOT_HOST" --tag "store=$keel_store" --path "/$keel_store.rdb" \
  "$keel_snapshot" "/$keel_store.rdb" >"$keel_new/appendonly.aof.1.base.rdb" || { rm -rf "$keel_new"; exit 1; }
: >"$keel_new/appendonly.aof.1.incr.aof"
printf 'file %s seq 1 type b\nfile %s seq 1 type i\n' "appendonly.aof.1.base.rdb" "appendonly.aof.1.incr.aof" \
  >"$keel_new/appendonly.aof.manifest"
if [ -d "$keel_dir/appendonlydir" ]; then
  mv "$keel_dir/appendonlydir" "$keel_dir/appendonlydir.before-restore.$(date +%s)" || exit 1
fi
cp "$keel_new/appendonly.aof.1.base.rdb" "$keel_dir/dump.rdb" || exit 1
mv "$keel_new" "$keel_dir/appendonlydir" || exit 1
# The official image runs Redis as uid 999; the files must be its own when the store starts.
chown -R "${KEEL_REDIS_UID:-999}:${KEEL_REDIS_GID:-999}" "$keel_dir/appendonlydir" "$keel_dir/dump.rdb" \
  2>/dev/null || keel_log "could not chown the restored files to ${KEEL_REDIS_UID:-999}; check their owner"
keel_log "$keel_store: $keel_snapshot restored to $keel_dir (RDB and a new AOF based on it)"
