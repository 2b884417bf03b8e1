#!/bin/sh
# Verify the repository's structure and a sample of its data (restic check), on its own schedule,
# taking turns with the backup runs of this host (the job lock). Writes keel_backup_check.prom for
# the alert rules: first as failed ("unfinished", with the run's deadline), then the outcome.
# Rendered by keel (render/backup.py).
set -u
KEEL_SCRIPTS_DIR=${KEEL_SCRIPTS_DIR:-$(dirname "$0")}
# shellcheck source=common.sh
. "$KEEL_SCRIPTS_DIR/common.sh"

: "${KEEL_CHECK_READ_DATA_SUBSET:=5%}"
: "${KEEL_JOB_LOCK_WAIT_S:=10800}"
keel_mark_start
keel_started=$(date +%s)
keel_deadline=$((keel_started + 21600))
trap 'exit 130' INT TERM

# $1: empty once the check succeeded, else why it did not; $2 = end once the run is over.
write_check_metrics() {
  keel_success=$(keel_previous_value "$KEEL_TEXTFILE_DIR/keel_backup_check.prom" \
    keel_backup_check_last_success_timestamp_seconds)
  if [ -z "$1" ]; then
    keel_success=$keel_started
  fi
  {
    echo "# HELP keel_backup_check_last_success_timestamp_seconds When the last successful restic check started."
    echo "# TYPE keel_backup_check_last_success_timestamp_seconds gauge"
    echo "keel_backup_check_last_success_timestamp_seconds ${keel_success:-0}"
    echo "# HELP keel_backup_check_last_run_success 1 if the last restic check succeeded, else 0 (and why)."
    echo "# TYPE keel_backup_check_last_run_success gauge"
    if [ -z "$1" ]; then
      echo "keel_backup_check_last_run_success 1"
    else
      echo "keel_backup_check_last_run_success$(keel_labels "" "$1") 0"
    fi
    echo "# HELP keel_backup_check_schedule_interval_seconds The longest gap between two scheduled checks."
    echo "# TYPE keel_backup_check_schedule_interval_seconds gauge"
    echo "keel_backup_check_schedule_interval_seconds 604800"
    if [ "${2:-}" != end ]; then
      echo "# HELP keel_backup_check_run_deadline_timestamp_seconds When the unfinished check will be ended as hung."
      echo "# TYPE keel_backup_check_run_deadline_timestamp_seconds gauge"
      echo "keel_backup_check_run_deadline_timestamp_seconds $keel_deadline"
    fi
  } | keel_write_textfile keel_backup_check.prom
}

write_check_metrics unfinished
if ! keel_job_lock "$KEEL_JOB_LOCK_WAIT_S" || ! keel_open_repository 0; then
  keel_why=${keel_reason:-restic_failed}
elif keel_restic check --read-data-subset "$KEEL_CHECK_READ_DATA_SUBSET"; then
  keel_why=
else
  keel_why=$(keel_classify "$keel_restic_rc")
  if [ "$keel_why" = restic_failed ]; then
    keel_why=check_failed
  fi
fi
if [ -n "$keel_why" ]; then
  keel_log "restic check FAILED ($keel_why)"
fi
write_check_metrics "$keel_why" end
[ -z "$keel_why" ]
