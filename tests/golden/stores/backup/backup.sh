#!/bin/sh
# One backup run of every store; rendered by keel (render/backup.py). Exit status 0 only if every
# store was backed up. Results go to keel_backup.prom in KEEL_TEXTFILE_DIR: first every outcome as
# failed ("unfinished", with the run's deadline), then each store's as it ends; a run that is
# killed leaves "unfinished" behind. The run only adds to the repository: retention (forget
# --prune) needs delete rights the host's key does not have, and runs from the maintenance
# workflow (docs/restore.md, "A bucket the host cannot erase").
set -u
KEEL_SCRIPTS_DIR=${KEEL_SCRIPTS_DIR:-$(dirname "$0")}
# shellcheck source=common.sh
. "$KEEL_SCRIPTS_DIR/common.sh"

KEEL_INTERVAL_S=3600
: "${KEEL_INITIALISE:=0}"
: "${KEEL_JOB_LOCK_WAIT_S:=1800}"
keel_mark_start
keel_run_started=$(date +%s)
keel_deadline=$((keel_run_started + 3600))
trap 'exit 130' INT TERM
keel_results="$keel_tmp/results"
: >"$keel_results"
# Set to the reason once the repository itself failed: the rest of the run leaves it alone instead
# of waiting out restic's retries (up to 15 minutes a request) again for every store.
keel_broken=

# One snapshot of stdin or of a command's output ($1 store, $2 kind, $3 file name in the snapshot,
# then restic's source: --stdin, or --stdin-from-command -- COMMAND...). restic makes no snapshot
# when the command fails. On failure the reason is left in $keel_tmp/reason.
keel_snapshot() {
  keel_snapshot_store=$1 keel_snapshot_kind=$2 keel_snapshot_file=$3
  shift 3
  if keel_restic backup --quiet --json --host "$KEEL_SNAPSHOT_HOST" \
    --tag "keel,store=$keel_snapshot_store,kind=$keel_snapshot_kind" --stdin-filename "$keel_snapshot_file" "$@" \
    >"$keel_tmp/restic.json"; then
    keel_added=$(sed -n 's/.*"data_added":\([0-9]*\).*/\1/p' "$keel_tmp/restic.json" | tail -n 1)
    keel_log "$keel_snapshot_store: $keel_snapshot_file stored, ${keel_added:-?} bytes of new data in the repository"
  else
    keel_classify "$keel_restic_rc" >"$keel_tmp/reason"
    return 1
  fi
}

backup_postgres() {
  # $1 store, $2 host, $3 port, $4 database, $5 user. The roles first: pg_dump leaves them out, and
  # a dump whose GRANTs name a missing role does not restore.
  (
    PGPASSWORD=$(keel_password "$1")
    export PGPASSWORD
    # --no-role-passwords: the backup role may not read pg_authid (superusers only). keel sets its
    # roles' passwords from their secrets on every deploy; other roles come back without one.
    keel_snapshot "$1" postgres-roles "$1.roles.sql" --stdin-from-command -- \
      "$PG_DUMPALL" --roles-only --no-role-passwords --no-password --host "$2" --port "$3" --username "$5" \
      --database "$4" &&
      keel_snapshot "$1" postgres "$1.pgdump" --stdin-from-command -- \
        "$PG_DUMP" --format=custom --compress=0 --no-password --host "$2" --port "$3" --username "$5" --dbname "$4"
  )
}

keel_redis() {
  # $1 store, $2 host, $3 port, $4 ACL user, then the command. REDISCLI_AUTH keeps the password out
  # of argv.
  keel_redis_store=$1 keel_redis_host=$2 keel_redis_port=$3 keel_redis_user=$4
  shift 4
  if [ -r "$KEEL_SECRETS_DIR/$keel_redis_store-password" ]; then
    REDISCLI_AUTH=$(cat "$KEEL_SECRETS_DIR/$keel_redis_store-password") \
      "$REDIS_CLI" --user "$keel_redis_user" -h "$keel_redis_host" -p "$keel_redis_port" "$@"
  else
    "$REDIS_CLI" -h "$keel_redis_host" -p "$keel_redis_port" "$@"
  fi
}

keel_redis_info() {
  # $1 store, $2 host, $3 port, $4 ACL user, $5 field of INFO persistence
  keel_redis "$1" "$2" "$3" "$4" INFO persistence | tr -d '\r' | sed -n "s/^$5://p"
}

backup_redis() {
  # $1 store, $2 host, $3 port, $4 ACL user. BGSAVE, wait for it to finish, then back up the RDB file.
  keel_saves=$(keel_redis_info "$1" "$2" "$3" "$4" rdb_saves)
  [ -n "$keel_saves" ] || { keel_log "$1: redis does not answer"; return 1; }
  # SCHEDULE: if an AOF rewrite is running, the save starts as soon as it ends.
  keel_redis "$1" "$2" "$3" "$4" BGSAVE SCHEDULE >/dev/null || return 1
  keel_waited=0
  while :; do
    if [ "$(keel_redis_info "$1" "$2" "$3" "$4" rdb_saves)" -gt "$keel_saves" ] &&
      [ "$(keel_redis_info "$1" "$2" "$3" "$4" rdb_bgsave_in_progress)" = 0 ]; then
      break
    fi
    if [ "$keel_waited" -ge 600 ]; then
      keel_log "$1: BGSAVE did not finish within 600s"
      return 1
    fi
    sleep 1
    keel_waited=$((keel_waited + 1))
  done
  if [ "$(keel_redis_info "$1" "$2" "$3" "$4" rdb_last_bgsave_status)" != ok ]; then
    keel_log "$1: BGSAVE failed"
    return 1
  fi
  keel_rdb="$KEEL_STORES_DIR/$1/dump.rdb"
  [ -r "$keel_rdb" ] || { keel_log "$1: $keel_rdb is not readable"; return 1; }
  # The open descriptor keeps this save's file even if a later save renames a new one over it.
  keel_snapshot "$1" redis "$1.rdb" --stdin <"$keel_rdb"
}

backup_sqlite() {
  # $1 store, $2 path of the database relative to the volume.
  # VACUUM INTO copies one read transaction: a consistent state, taken while writers go on (WAL)
  # or after they commit (rollback journal). The online backup API (.backup) starts over each
  # time another connection writes, so under a steady writer it may never finish.
  keel_source="$KEEL_STORES_DIR/$1/$2"
  [ -r "$keel_source" ] || { keel_log "$1: $keel_source is not readable"; return 1; }
  keel_copy="$keel_tmp/sqlite-copy"
  rm -f "$keel_copy"
  "$SQLITE3" "$keel_source" ".timeout 30000" "VACUUM INTO '$keel_copy'" || return 1
  keel_integrity=$("$SQLITE3" "$keel_copy" "PRAGMA integrity_check;") || return 1
  if [ "$keel_integrity" != ok ]; then
    keel_log "$1: integrity check of the copy of $2 failed: $keel_integrity"
    return 1
  fi
  keel_snapshot "$1" sqlite "$(keel_sqlite_name "$1" "$2")" --stdin <"$keel_copy"
  keel_sqlite_rc=$?
  rm -f "$keel_copy"
  return "$keel_sqlite_rc"
}

backup_files() {
  # $1 store, then the SQLite files to leave out (they have their own consistent snapshots).
  keel_files_store=$1
  keel_dir="$KEEL_STORES_DIR/$1"
  shift
  [ -d "$keel_dir" ] || { keel_log "$keel_dir is not a directory"; return 1; }
  keel_excludes="$keel_tmp/excludes"
  : >"$keel_excludes"
  for keel_file in "$@"; do
    for keel_suffix in "" -wal -shm -journal; do
      printf '%s\n' "$keel_dir/$keel_file$keel_suffix" >>"$keel_excludes"
    done
  done
  if ! keel_restic backup --quiet --host "$KEEL_SNAPSHOT_HOST" --tag "keel,store=$keel_files_store,kind=files" \
    --exclude-file "$keel_excludes" "$keel_dir"; then
    keel_classify "$keel_restic_rc" >"$keel_tmp/reason"
    return 1
  fi
}

# Each part of a store's backup runs as `keel_begin STORE && backup_... ; keel_record STORE $?`.
keel_begin() {
  keel_started=$(date +%s)
  rm -f "$keel_tmp/reason"
  if [ -n "$keel_broken" ]; then
    echo "$keel_broken" >"$keel_tmp/reason"
    keel_log "$1: not attempted: the repository cannot be used ($keel_broken)"
    return 1
  fi
}

keel_record() {
  keel_record_reason=-
  if [ "$2" -eq 0 ]; then
    keel_log "$1: backed up"
    keel_ok=1
  else
    keel_ok=0
    keel_record_reason=$(cat "$keel_tmp/reason" 2>/dev/null)
    keel_record_reason=${keel_record_reason:-source_failed}
    keel_log "$1: FAILED ($keel_record_reason)"
    if keel_repository_failure "$keel_record_reason"; then
      keel_broken=$keel_record_reason
    fi
  fi
  echo "$1 $keel_ok $keel_started $(($(date +%s) - keel_started)) $keel_record_reason" >>"$keel_results"
  write_metrics
}

# The textfile as the run stands: stores without a result yet are failed with reason "unfinished",
# and the run's deadline is there until the run ends ($1 = end).
write_metrics() {
  keel_previous="$KEEL_TEXTFILE_DIR/keel_backup.prom"
  {
    echo "# HELP keel_backup_last_success_timestamp_seconds When the store's last successful backup started."
    echo "# TYPE keel_backup_last_success_timestamp_seconds gauge"
    echo "# HELP keel_backup_last_run_timestamp_seconds When the store's last backup attempt started."
    echo "# TYPE keel_backup_last_run_timestamp_seconds gauge"
    echo "# HELP keel_backup_last_run_success 1 if the store's last backup attempt succeeded, else 0 (and why)."
    echo "# TYPE keel_backup_last_run_success gauge"
    echo "# HELP keel_backup_last_run_duration_seconds How long the store's last backup attempt took."
    echo "# TYPE keel_backup_last_run_duration_seconds gauge"
    echo "# HELP keel_backup_schedule_interval_seconds The longest gap between two scheduled backup runs."
    echo "# TYPE keel_backup_schedule_interval_seconds gauge"
    echo "keel_backup_schedule_interval_seconds $KEEL_INTERVAL_S"
    if [ "${1:-}" != end ]; then
      echo "# HELP keel_backup_run_deadline_timestamp_seconds When the unfinished backup run will be ended as hung."
      echo "# TYPE keel_backup_run_deadline_timestamp_seconds gauge"
      echo "keel_backup_run_deadline_timestamp_seconds $keel_deadline"
    fi
    for keel_store in db cache uploads; do
      # min(ok), earliest start, total duration and the first failure's reason over the store's parts.
      keel_line=$(awk -v s="$keel_store" '$1 == s { if (!seen || $2 < ok) ok = $2;
        if (!seen || $3 < start) start = $3; dur += $4; if ($2 == 0 && why == "") why = $5; seen = 1 }
        END { if (seen) print ok, start, dur, (why == "" ? "-" : why) }' "$keel_results")
      read -r keel_ok keel_started keel_duration keel_why <<KEEL_LINE
${keel_line:-0 $keel_run_started 0 unfinished}
KEEL_LINE
      [ "$keel_why" = - ] && keel_why=
      keel_success=$(keel_previous_value "$keel_previous" "keel_backup_last_success_timestamp_seconds{store=\"$keel_store\"}")
      if [ "$keel_ok" = 1 ]; then
        keel_success=$keel_started
      fi
      echo "keel_backup_last_success_timestamp_seconds{store=\"$keel_store\"} ${keel_success:-0}"
      echo "keel_backup_last_run_timestamp_seconds{store=\"$keel_store\"} $keel_started"
      echo "keel_backup_last_run_success$(keel_labels "store=\"$keel_store\"" "$keel_why") $keel_ok"
      echo "keel_backup_last_run_duration_seconds{store=\"$keel_store\"} $keel_duration"
    done
  } | keel_write_textfile keel_backup.prom
}

write_metrics
if ! keel_job_lock "$KEEL_JOB_LOCK_WAIT_S" || ! keel_open_repository "$KEEL_INITIALISE"; then
  keel_broken=${keel_reason:-restic_failed}
fi
keel_begin db && backup_postgres db "${KEEL_HOST_DB:-shop-db}" \
  "${KEEL_PORT_DB:-5432}" shop keel_backup
keel_record db $?
keel_begin cache && backup_redis cache "${KEEL_HOST_CACHE:-shop-cache}" \
  "${KEEL_PORT_CACHE:-6379}" keel-backup
keel_record cache $?
keel_begin uploads && backup_sqlite uploads data/app.db
keel_record uploads $?
keel_begin uploads && backup_sqlite uploads cache.sqlite
keel_record uploads $?
keel_begin uploads && backup_files uploads data/app.db cache.sqlite
keel_record uploads $?

write_metrics end
[ -z "$(awk '$2 == 0' "$keel_results")" ]
