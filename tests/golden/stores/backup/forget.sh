#!/bin/sh
# Retention: keep 24 hourly, 7 daily, 4 weekly and 6 monthly snapshots of each
# item (one group per host and path, so every store and SQLite file has its own history),
# then prune the data no snapshot uses. Rendered by keel (render/backup.py).
set -u
KEEL_SCRIPTS_DIR=${KEEL_SCRIPTS_DIR:-$(dirname "$0")}
# shellcheck source=common.sh
. "$KEEL_SCRIPTS_DIR/common.sh"

keel_s3_credentials
"$RESTIC" forget --quiet --host "$KEEL_SNAPSHOT_HOST" --tag keel --group-by host,paths \
  --keep-hourly 24 --keep-daily 7 \
  --keep-weekly 4 --keep-monthly 6 --prune
