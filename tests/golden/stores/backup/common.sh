# shellcheck shell=sh
# Shared by every backup script (sourced, not run). Rendered by keel (render/backup.py).
# Every path and tool comes from the environment, with the backup container's defaults.

# Config values are assigned quoted first: text inside ${VAR:=...} would still be expanded.
keel_default_repository=s3:https://fsn1.your-objectstorage.com/shop-backups/shop/prod
keel_default_snapshot_host=shop-prod
keel_default_region=us-east-1
: "${RESTIC_REPOSITORY:=$keel_default_repository}"
: "${RESTIC_PASSWORD_FILE:=/run/secrets/restic-password}"
: "${KEEL_SNAPSHOT_HOST:=$keel_default_snapshot_host}"
: "${KEEL_SECRETS_DIR:=/run/secrets}"
: "${KEEL_STORES_DIR:=/stores}"
: "${KEEL_TEXTFILE_DIR:=/textfile}"
: "${KEEL_WORK_DIR:=${TMPDIR:-/tmp}}"
: "${KEEL_S3_ACCESS_KEY_FILE:=/run/secrets/s3-access-key}"
: "${KEEL_S3_SECRET_KEY_FILE:=/run/secrets/s3-secret-key}"
: "${AWS_DEFAULT_REGION:=$keel_default_region}"
: "${RESTIC:=restic}"
: "${PG_DUMP:=pg_dump}"
: "${PG_RESTORE:=pg_restore}"
: "${PSQL:=psql}"
: "${REDIS_CLI:=redis-cli}"
: "${SQLITE3:=sqlite3}"
export RESTIC_REPOSITORY RESTIC_PASSWORD_FILE AWS_DEFAULT_REGION
mkdir -p "$KEEL_WORK_DIR"

# An entry script (backup, check, drill) notes when its run began; the job's health check
# (render.backup.job_health_command) declares the task unhealthy once the run outlives its deadline.
keel_mark_start() {
  date +%s >"${KEEL_RUN_STARTED_FILE:-/tmp/keel-run-started}" 2>/dev/null || true
}

keel_log() {
  printf '%s keel-backup: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" >&2
}

# restic reads S3 credentials from the environment only; they come from secret files.
keel_s3_credentials() {
  if [ -r "$KEEL_S3_ACCESS_KEY_FILE" ] && [ -r "$KEEL_S3_SECRET_KEY_FILE" ]; then
    AWS_ACCESS_KEY_ID=$(cat "$KEEL_S3_ACCESS_KEY_FILE")
    AWS_SECRET_ACCESS_KEY=$(cat "$KEEL_S3_SECRET_KEY_FILE")
    export AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
  fi
}

# The repository is created on the first run. A wrong password or an unreachable endpoint
# fails both commands, so an existing repository is never initialised twice.
keel_repository() {
  keel_s3_credentials
  if ! "$RESTIC" cat config >/dev/null 2>&1; then
    keel_log "no repository at $RESTIC_REPOSITORY yet: initialising"
    "$RESTIC" init || return 1
  fi
  # Only locks left by dead runs are removed.
  "$RESTIC" unlock >/dev/null 2>&1 || true
}

keel_password() {
  # $1: store. Prints the store's password from its secret file, or nothing.
  if [ -r "$KEEL_SECRETS_DIR/$1-password" ]; then
    cat "$KEEL_SECRETS_DIR/$1-password"
  fi
}

# The newest value of a metric for a store in a textfile, or nothing ($1 file, $2 metric, $3 store).
keel_previous_value() {
  [ -r "$1" ] || return 0
  awk -v key="$2{store=\"$3\"}" '$1 == key { value = $2 } END { if (value != "") print value }' "$1"
}

# Write a textfile atomically: node-exporter reads only *.prom, and mv within one directory is atomic.
# $1: file name; the content comes on stdin.
keel_write_textfile() {
  mkdir -p "$KEEL_TEXTFILE_DIR"
  keel_tmp_metrics="$KEEL_TEXTFILE_DIR/.$1.$$"
  cat >"$keel_tmp_metrics" && chmod 0644 "$keel_tmp_metrics" && mv -f "$keel_tmp_metrics" "$KEEL_TEXTFILE_DIR/$1"
}
