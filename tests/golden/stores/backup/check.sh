#!/bin/sh
# Verify the repository's structure and a sample of its data (restic check), on its own schedule.
# Writes keel_backup_check.prom for the alert rules. Rendered by keel (render/backup.py).
set -u
KEEL_SCRIPTS_DIR=${KEEL_SCRIPTS_DIR:-$(dirname "$0")}
# shellcheck source=common.sh
. "$KEEL_SCRIPTS_DIR/common.sh"

: "${KEEL_CHECK_READ_DATA_SUBSET:=5%}"
keel_mark_start
keel_started=$(date +%s)
keel_s3_credentials
if "$RESTIC" check --read-data-subset "$KEEL_CHECK_READ_DATA_SUBSET"; then
  keel_ok=1
  keel_success=$keel_started
else
  keel_ok=0
  keel_success=$(awk '$1 == "keel_backup_check_last_success_timestamp_seconds" { print $2 }' \
    "$KEEL_TEXTFILE_DIR/keel_backup_check.prom" 2>/dev/null)
fi
{
  echo "# HELP keel_backup_check_last_success_timestamp_seconds When the last successful restic check started."
  echo "# TYPE keel_backup_check_last_success_timestamp_seconds gauge"
  echo "keel_backup_check_last_success_timestamp_seconds ${keel_success:-0}"
  echo "# HELP keel_backup_check_last_run_success 1 if the last restic check succeeded, else 0."
  echo "# TYPE keel_backup_check_last_run_success gauge"
  echo "keel_backup_check_last_run_success $keel_ok"
} | keel_write_textfile keel_backup_check.prom
[ "$keel_ok" = 1 ]
