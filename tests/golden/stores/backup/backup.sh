#!/bin/sh
# One backup run of every store; rendered by keel (render/backup.py). Exit status 0 only if
# every store was backed up and retention ran. Results go to keel_backup.prom in KEEL_TEXTFILE_DIR.
set -u
KEEL_SCRIPTS_DIR=${KEEL_SCRIPTS_DIR:-$(dirname "$0")}
# shellcheck source=common.sh
. "$KEEL_SCRIPTS_DIR/common.sh"

KEEL_INTERVAL_S=3600
keel_mark_start
keel_run_dir=$(mktemp -d "$KEEL_WORK_DIR/keel-backup.XXXXXX") || exit 1
trap 'rm -rf "$keel_run_dir"' EXIT
trap 'exit 130' INT TERM
keel_results="$keel_run_dir/results"
: >"$keel_results"

# Back up stdin as one snapshot, and forget it again if the producer failed ($1 store, $2 kind,
# $3 file name in the snapshot, $4 file holding the producer's exit status).
keel_backup_stdin() {
  "$RESTIC" backup --quiet --json --host "$KEEL_SNAPSHOT_HOST" --tag "keel,store=$1,kind=$2" \
    --stdin --stdin-filename "$3" >"$keel_run_dir/restic.json"
  keel_restic_rc=$?
  keel_producer_rc=$(cat "$4" 2>/dev/null || echo 1)
  if [ "$keel_producer_rc" -ne 0 ] && [ "$keel_restic_rc" -eq 0 ]; then
    keel_snapshot=$(sed -n 's/.*"snapshot_id":"\([0-9a-f]*\)".*/\1/p' "$keel_run_dir/restic.json" | tail -n 1)
    if [ -n "$keel_snapshot" ]; then
      keel_log "$1: removing snapshot $keel_snapshot of a failed dump"
      "$RESTIC" forget --quiet "$keel_snapshot" >/dev/null || true
    fi
  fi
  [ "$keel_producer_rc" -eq 0 ] && [ "$keel_restic_rc" -eq 0 ] || return 1
  keel_added=$(sed -n 's/.*"data_added":\([0-9]*\).*/\1/p' "$keel_run_dir/restic.json" | tail -n 1)
  keel_log "$1: $3 stored, ${keel_added:-?} bytes of new data in the repository"
}

backup_postgres() {
  # $1 store, $2 host, $3 port, $4 database, $5 user
  keel_rc="$keel_run_dir/$1.rc"
  {
    PGPASSWORD=$(keel_password "$1") "$PG_DUMP" --format=custom --compress=0 --no-password \
      --host "$2" --port "$3" --username "$5" --dbname "$4"
    echo $? >"$keel_rc"
  } | keel_backup_stdin "$1" postgres "$1.pgdump" "$keel_rc"
}

keel_redis() {
  # $1 store, $2 host, $3 port, then the command. REDISCLI_AUTH keeps the password out of argv.
  keel_redis_store=$1 keel_redis_host=$2 keel_redis_port=$3
  shift 3
  if [ -r "$KEEL_SECRETS_DIR/$keel_redis_store-password" ]; then
    REDISCLI_AUTH=$(cat "$KEEL_SECRETS_DIR/$keel_redis_store-password") \
      "$REDIS_CLI" -h "$keel_redis_host" -p "$keel_redis_port" "$@"
  else
    "$REDIS_CLI" -h "$keel_redis_host" -p "$keel_redis_port" "$@"
  fi
}

keel_redis_info() {
  # $1 store, $2 host, $3 port, $4 field of INFO persistence
  keel_redis "$1" "$2" "$3" INFO persistence | tr -d '\r' | sed -n "s/^$4://p"
}

backup_redis() {
  # $1 store, $2 host, $3 port. BGSAVE, wait for it to finish, then back up the RDB file.
  keel_saves=$(keel_redis_info "$1" "$2" "$3" rdb_saves)
  [ -n "$keel_saves" ] || { keel_log "$1: redis does not answer"; return 1; }
  # SCHEDULE: if an AOF rewrite is running, the save starts as soon as it ends.
  keel_redis "$1" "$2" "$3" BGSAVE SCHEDULE >/dev/null || return 1
  keel_waited=0
  while :; do
    if [ "$(keel_redis_info "$1" "$2" "$3" rdb_saves)" -gt "$keel_saves" ] &&
      [ "$(keel_redis_info "$1" "$2" "$3" rdb_bgsave_in_progress)" = 0 ]; then
      break
    fi
    if [ "$keel_waited" -ge 600 ]; then
      keel_log "$1: BGSAVE did not finish within 600s"
      return 1
    fi
    sleep 1
    keel_waited=$((keel_waited + 1))
  done
  if [ "$(keel_redis_info "$1" "$2" "$3" rdb_last_bgsave_status)" != ok ]; then
    keel_log "$1: BGSAVE failed"
    return 1
  fi
  keel_rdb="$KEEL_STORES_DIR/$1/dump.rdb"
  [ -r "$keel_rdb" ] || { keel_log "$1: $keel_rdb is not readable"; return 1; }
  # The open descriptor keeps this save's file even if a later save renames a new one over it.
  echo 0 >"$keel_run_dir/$1.rc"
  keel_backup_stdin "$1" redis "$1.rdb" "$keel_run_dir/$1.rc" <"$keel_rdb"
}

backup_sqlite() {
  # $1 store, $2 path of the database relative to the volume.
  # VACUUM INTO copies one read transaction: a consistent state, taken while writers go on (WAL)
  # or after they commit (rollback journal). The online backup API (.backup) starts over each
  # time another connection writes, so under a steady writer it may never finish.
  keel_source="$KEEL_STORES_DIR/$1/$2"
  [ -r "$keel_source" ] || { keel_log "$1: $keel_source is not readable"; return 1; }
  keel_copy="$keel_run_dir/sqlite-copy"
  rm -f "$keel_copy"
  "$SQLITE3" "$keel_source" ".timeout 30000" "VACUUM INTO '$keel_copy'" || return 1
  keel_integrity=$("$SQLITE3" "$keel_copy" "PRAGMA integrity_check;") || return 1
  if [ "$keel_integrity" != ok ]; then
    keel_log "$1: integrity check of the copy of $2 failed: $keel_integrity"
    return 1
  fi
  echo 0 >"$keel_run_dir/$1.rc"
  keel_backup_stdin "$1" sqlite "$1/$2" "$keel_run_dir/$1.rc" <"$keel_copy"
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
  keel_excludes="$keel_run_dir/excludes"
  : >"$keel_excludes"
  for keel_file in "$@"; do
    for keel_suffix in "" -wal -shm -journal; do
      printf '%s\n' "$keel_dir/$keel_file$keel_suffix" >>"$keel_excludes"
    done
  done
  "$RESTIC" backup --quiet --host "$KEEL_SNAPSHOT_HOST" --tag "keel,store=$keel_files_store,kind=files" \
    --exclude-file "$keel_excludes" "$keel_dir"
}

# Each store's backup runs between keel_begin and keel_record STORE $?.
keel_begin() {
  keel_started=$(date +%s)
}

keel_record() {
  if [ "$2" -eq 0 ]; then
    keel_log "$1: backed up"
    keel_ok=1
  else
    keel_log "$1: FAILED"
    keel_ok=0
  fi
  echo "$1 $keel_ok $keel_started $(($(date +%s) - keel_started))" >>"$keel_results"
}

# One line per store: "store ok started duration"; a store with several parts fails if any part fails.
write_metrics() {
  keel_previous="$KEEL_TEXTFILE_DIR/keel_backup.prom"
  {
    echo "# HELP keel_backup_last_success_timestamp_seconds When the store's last successful backup started."
    echo "# TYPE keel_backup_last_success_timestamp_seconds gauge"
    echo "# HELP keel_backup_last_run_timestamp_seconds When the store's last backup attempt started."
    echo "# TYPE keel_backup_last_run_timestamp_seconds gauge"
    echo "# HELP keel_backup_last_run_success 1 if the store's last backup attempt succeeded, else 0."
    echo "# TYPE keel_backup_last_run_success gauge"
    echo "# HELP keel_backup_last_run_duration_seconds How long the store's last backup attempt took."
    echo "# TYPE keel_backup_last_run_duration_seconds gauge"
    echo "# HELP keel_backup_schedule_interval_seconds The longest gap between two scheduled backup runs."
    echo "# TYPE keel_backup_schedule_interval_seconds gauge"
    echo "keel_backup_schedule_interval_seconds $KEEL_INTERVAL_S"
    for keel_store in db cache uploads; do
      # min(ok), earliest start and total duration over the store's parts.
      keel_line=$(awk -v s="$keel_store" '$1 == s { if (!seen || $2 < ok) ok = $2;
        if (!seen || $3 < start) start = $3; dur += $4; seen = 1 }
        END { if (seen) print ok, start, dur }' "$keel_results")
      if [ -z "$keel_line" ]; then
        # Not attempted in this run (the repository was unusable): the run failed for it.
        keel_line="0 $(date +%s) 0"
      fi
      read -r keel_ok keel_started keel_duration <<KEEL_LINE
$keel_line
KEEL_LINE
      keel_success=$(keel_previous_value "$keel_previous" keel_backup_last_success_timestamp_seconds "$keel_store")
      if [ "$keel_ok" = 1 ]; then
        keel_success=$keel_started
      fi
      echo "keel_backup_last_success_timestamp_seconds{store=\"$keel_store\"} ${keel_success:-0}"
      echo "keel_backup_last_run_timestamp_seconds{store=\"$keel_store\"} $keel_started"
      echo "keel_backup_last_run_success{store=\"$keel_store\"} $keel_ok"
      echo "keel_backup_last_run_duration_seconds{store=\"$keel_store\"} $keel_duration"
    done
  } | keel_write_textfile keel_backup.prom
}

keel_status=0
if keel_repository; then
  keel_begin
  backup_postgres db "${KEEL_HOST_DB:-shop-db}" \
    "${KEEL_PORT_DB:-5432}" shop shop
  keel_record db $?
  keel_begin
  backup_redis cache "${KEEL_HOST_CACHE:-shop-cache}" "${KEEL_PORT_CACHE:-6379}"
  keel_record cache $?
  keel_begin
  backup_sqlite uploads data/app.db
  keel_record uploads $?
  keel_begin
  backup_sqlite uploads cache.sqlite
  keel_record uploads $?
  keel_begin
  backup_files uploads data/app.db cache.sqlite
  keel_record uploads $?
  if [ -n "$(awk '$2 == 0' "$keel_results")" ]; then
    keel_status=1
  fi
  if ! sh "$KEEL_SCRIPTS_DIR/forget.sh"; then
    keel_log "retention failed"
    keel_status=1
  fi
else
  keel_log "repository $RESTIC_REPOSITORY is not usable"
  keel_status=1
fi
write_metrics
exit "$keel_status"
