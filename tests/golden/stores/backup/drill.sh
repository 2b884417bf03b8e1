#!/bin/sh
# Restore drill, run on demand: restore every store's newest snapshot into scratch space and
# check it, each kind its own way (drill_<kind>: a database server's into a scratch database on the
# store's own server, created, checked and dropped; files into a temporary directory). Takes turns
# with the backup runs of this host (the job lock). Writes keel_backup_drill.prom. Rendered by
# keel (render/backup.py).
set -u
KEEL_SCRIPTS_DIR=${KEEL_SCRIPTS_DIR:-$(dirname "$0")}
# shellcheck source=common.sh
. "$KEEL_SCRIPTS_DIR/common.sh"

: "${KEEL_JOB_LOCK_WAIT_S:=10800}"
keel_mark_start
keel_drill_dir="$keel_tmp/drill"
mkdir -p "$keel_drill_dir" || exit 1
trap 'exit 130' INT TERM
keel_results="$keel_tmp/results"
: >"$keel_results"

keel_pg_sql() {
  # $1 store, $2 host, $3 port, $4 user, $5 database, $6 SQL. Prints unaligned rows.
  PGPASSWORD=$(keel_password "$1") "$PSQL" --no-password --no-psqlrc --quiet --tuples-only --no-align \
    --set ON_ERROR_STOP=1 --host "$2" --port "$3" --username "$4" --dbname "$5" --command "$6"
}

KEEL_PG_TABLE_COUNTS="SELECT format('%I.%I', schemaname, relname) || ' ' || n_live_tup FROM pg_stat_user_tables ORDER BY 1"

drill_postgres() {
  # $1 store, $2 host, $3 port, $4 database, $5 user
  keel_scratch="${4}_keel_drill"
  keel_pg_sql "$1" "$2" "$3" "$5" "$4" "DROP DATABASE IF EXISTS \"$keel_scratch\"" || return 1
  keel_pg_sql "$1" "$2" "$3" "$5" "$4" "CREATE DATABASE \"$keel_scratch\"" || return 1
  keel_pg_ok=1
  KEEL_RESTORE_ROLES=check sh "$KEEL_SCRIPTS_DIR/restore-postgres.sh" "$1" "$2" "$3" "$keel_scratch" "$5" ||
    keel_pg_ok=0
  if [ "$keel_pg_ok" = 1 ]; then
    keel_pg_sql "$1" "$2" "$3" "$5" "$keel_scratch" "ANALYZE" || keel_pg_ok=0
    keel_restored=$(keel_pg_sql "$1" "$2" "$3" "$5" "$keel_scratch" \
      "SELECT count(*) FROM information_schema.tables WHERE table_schema NOT IN ('pg_catalog', 'information_schema')")
    keel_live=$(keel_pg_sql "$1" "$2" "$3" "$5" "$4" \
      "SELECT count(*) FROM information_schema.tables WHERE table_schema NOT IN ('pg_catalog', 'information_schema')")
    keel_log "$1: restored $keel_restored tables (the live database has ${keel_live:-?})"
    keel_pg_sql "$1" "$2" "$3" "$5" "$keel_scratch" "$KEEL_PG_TABLE_COUNTS" | sed "s/^/$1 restored rows: /" >&2
    # An empty restore of a database that has tables is the failure a drill exists to catch.
    if [ "${keel_restored:-0}" -eq 0 ] && [ "${keel_live:-0}" -gt 0 ]; then
      keel_log "$1: the restored database has no tables"
      keel_pg_ok=0
    fi
  fi
  keel_pg_sql "$1" "$2" "$3" "$5" "$4" "DROP DATABASE IF EXISTS \"$keel_scratch\"" || keel_pg_ok=0
  [ "$keel_pg_ok" = 1 ]
}

drill_redis() {
  # $1 store
  sh "$KEEL_SCRIPTS_DIR/restore-redis.sh" "$1" "$keel_drill_dir/$1" || return 1
  keel_rdb="$keel_drill_dir/$1/dump.rdb"
  if ! "$REDIS_CHECK_RDB" "$keel_rdb" >&2; then
    # The usual cause: an RDB format newer than this redis-check-rdb knows (Redis 7.4 writes 12).
    keel_log "$1: $REDIS_CHECK_RDB ($("$REDIS_CHECK_RDB" --version 2>&1 | head -n 1)) cannot read the RDB," \
      "whose header says format $(head -c 9 "$keel_rdb" | tail -c 4); the job image's Redis must be the store's"
    return 1
  fi
}

drill_sqlite() {
  # $1 store, $2 relative path (restore-sqlite.sh runs the integrity check)
  mkdir -p "$keel_drill_dir/$1" || return 1
  keel_target="$keel_drill_dir/$1/$(basename "$2")"
  sh "$KEEL_SCRIPTS_DIR/restore-sqlite.sh" "$1" "$2" "$keel_target" || return 1
  keel_tables=$("$SQLITE3" "$keel_target" "SELECT count(*) FROM sqlite_schema WHERE type = 'table'") || return 1
  keel_log "$1: $2 restored with $keel_tables tables"
}

drill_files() {
  # $1 store
  sh "$KEEL_SCRIPTS_DIR/restore-files.sh" "$1" "$keel_drill_dir/$1-files" || return 1
  keel_log "$1: restored $(find "$keel_drill_dir/$1-files" -type f | wc -l) files"
}

keel_record() {
  if [ "$2" -eq 0 ]; then keel_ok=1; else keel_ok=0; keel_log "$1: drill FAILED"; fi
  echo "$1 $keel_ok" >>"$keel_results"
}

keel_ready=1
if ! keel_job_lock "$KEEL_JOB_LOCK_WAIT_S" || ! keel_open_repository 0; then
  keel_log "drill not run: ${keel_reason:-restic_failed}"
  keel_ready=0
fi
if [ "$keel_ready" = 1 ]; then
drill_postgres db "${KEEL_HOST_DB:-shop-db}" \
  "${KEEL_PORT_DB:-5432}" shop keel_backup
keel_record db $?
drill_redis cache
keel_record cache $?
drill_sqlite uploads data/app.db
keel_record uploads $?
drill_sqlite uploads cache.sqlite
keel_record uploads $?
drill_files uploads
keel_record uploads $?
fi

keel_now=$(date +%s)
keel_previous="$KEEL_TEXTFILE_DIR/keel_backup_drill.prom"
{
  echo "# HELP keel_backup_restore_drill_last_success_timestamp_seconds When the store's last successful restore drill ran."
  echo "# TYPE keel_backup_restore_drill_last_success_timestamp_seconds gauge"
  echo "# HELP keel_backup_restore_drill_last_run_success 1 if the store's last restore drill succeeded, else 0."
  echo "# TYPE keel_backup_restore_drill_last_run_success gauge"
  for keel_store in db cache uploads; do
    keel_ok=$(awk -v s="$keel_store" '$1 == s { if (!seen || $2 < ok) ok = $2; seen = 1 } END { print ok + 0 }' \
      "$keel_results")
    keel_success=$(keel_previous_value "$keel_previous" \
      "keel_backup_restore_drill_last_success_timestamp_seconds{store=\"$keel_store\"}")
    [ "$keel_ok" = 1 ] && keel_success=$keel_now
    echo "keel_backup_restore_drill_last_success_timestamp_seconds{store=\"$keel_store\"} ${keel_success:-0}"
    echo "keel_backup_restore_drill_last_run_success{store=\"$keel_store\"} $keel_ok"
  done
} | keel_write_textfile keel_backup_drill.prom
[ "$keel_ready" = 1 ] && [ -z "$(awk '$2 == 0' "$keel_results")" ]
