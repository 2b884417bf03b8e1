#!/bin/sh
# Retention: keep 24 hourly, 7 daily, 4 weekly and 6 monthly snapshots of each
# item (one group per host and path, so every store, its roles and each SQLite file has its own
# history), then prune the data no snapshot uses. Run by backup.sh after the stores; on its own it
# takes the job lock and opens the repository first. Rendered by keel (render/backup.py).
set -u
KEEL_SCRIPTS_DIR=${KEEL_SCRIPTS_DIR:-$(dirname "$0")}
# shellcheck source=common.sh
. "$KEEL_SCRIPTS_DIR/common.sh"

keel_job_lock "${KEEL_JOB_LOCK_WAIT_S:-1800}" || exit 1
keel_open_repository 0 || exit 1
keel_restic forget --quiet --host "$KEEL_SNAPSHOT_HOST" --tag keel --group-by host,paths \
  --keep-hourly 24 --keep-daily 7 \
  --keep-weekly 4 --keep-monthly 6 --prune
keel_forget_rc=$?
# restic up to 0.18 exits 0 when it could not delete what it forgot or pruned (0.19 exits 3 for
# snapshots, still 0 for packs): a key without delete rights would grow the repository unnoticed.
if [ "$keel_forget_rc" -eq 0 ] && grep -q 'unable to remove' "$keel_err"; then
  keel_log "restic could not remove what retention forgot or pruned"
  exit 1
fi
exit "$keel_forget_rc"
