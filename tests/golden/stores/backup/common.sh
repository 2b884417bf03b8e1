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
# How long a restic command waits for a lock someone else holds, how long opening the repository
# may take, and where the jobs of this host take turns (a file on the cache volume they share).
: "${KEEL_RETRY_LOCK:=5m}"
: "${KEEL_PROBE_TIMEOUT_S:=120}"
: "${KEEL_JOB_LOCK_FILE:=$KEEL_WORK_DIR/keel-jobs.lock}"
: "${RESTIC:=restic}"
: "${PG_DUMP:=pg_dump}"
: "${PG_DUMPALL:=pg_dumpall}"
: "${PG_RESTORE:=pg_restore}"
: "${PSQL:=psql}"
: "${REDIS_CLI:=redis-cli}"
: "${REDIS_CHECK_RDB:=redis-check-rdb}"
: "${SQLITE3:=sqlite3}"
export RESTIC_REPOSITORY RESTIC_PASSWORD_FILE AWS_DEFAULT_REGION
mkdir -p "$KEEL_WORK_DIR"
keel_tmp=$(mktemp -d "$KEEL_WORK_DIR/keel.XXXXXX") || exit 1
trap 'rm -rf "$keel_tmp"' EXIT
keel_err="$keel_tmp/restic.err"
keel_reason=

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

# restic, waiting at most KEEL_RETRY_LOCK for a lock held by someone else. Its error output is
# shown and kept in $keel_err, for keel_classify.
keel_restic() {
  "$RESTIC" --retry-lock "$KEEL_RETRY_LOCK" "$@" 2>"$keel_err"
  keel_restic_rc=$?
  sed 's/^/restic: /' "$keel_err" >&2
  return "$keel_restic_rc"
}

# The reason label of a failed restic command ($1: its exit status; the text is in $keel_err).
# restic 0.17 exits 10 without a repository, 11 when locked and 12 for a wrong password; every
# other failure is exit 1, told apart by what restic printed.
keel_classify() {
  case $1 in
    3) echo source_failed ;;
    10) echo repository_missing ;;
    11) echo repository_locked ;;
    12) echo wrong_password ;;
    *)
      if grep -q -e 'command failed' -e 'failed to read all source data' "$keel_err"; then
        echo source_failed
      elif grep -q -e 'x509:' -e 'certificate' "$keel_err"; then
        echo certificate_untrusted
      elif grep -q -e 'Access Denied' -e 'AccessDenied' -e 'SignatureDoesNotMatch' -e 'InvalidAccessKeyId' \
        -e 'Forbidden' "$keel_err"; then
        echo access_denied
      elif grep -q -i -e 'connection refused' -e 'no such host' -e 'i/o timeout' -e 'network is unreachable' \
        -e 'connection reset' -e 'deadline exceeded' -e 'handshake timeout' -e 'EOF' "$keel_err"; then
        echo repository_unreachable
      else
        echo restic_failed
      fi
      ;;
  esac
}

# Reasons that concern the repository as a whole: once one is seen, the run stops using it
# rather than wait out restic's retries again for every store.
keel_repository_failure() {
  case $1 in
    source_failed | restic_failed | check_failed) return 1 ;;
    *) return 0 ;;
  esac
}

# The jobs of this host (backup, check, drill) take turns: each holds an flock on one file of the
# cache volume they all mount, waiting at most $1 seconds for it. restore scripts run by the drill
# inherit it. (flock -n on a descriptor: busybox's applet has no -w.)
keel_job_lock() {
  if [ "${KEEL_JOB_LOCK_HELD:-}" = 1 ]; then
    return 0
  fi
  exec 9>>"$KEEL_JOB_LOCK_FILE" || return 1
  keel_waited=0
  until flock -n 9; do
    if [ "$keel_waited" -ge "$1" ]; then
      keel_log "another backup job of this host is still running after ${1}s; giving up"
      keel_reason=another_job_running
      return 1
    fi
    if [ "$keel_waited" -eq 0 ]; then
      keel_log "another backup job of this host is running; waiting up to ${1}s for it"
    fi
    sleep 1
    keel_waited=$((keel_waited + 1))
  done
  KEEL_JOB_LOCK_HELD=1
  export KEEL_JOB_LOCK_HELD
}

# Remove the restic locks of runs that died. This host's jobs take turns (keel_job_lock), and all
# of them run with one hostname: so while the job lock is held, a lock carrying our hostname was
# left by a run that was killed (its PID means nothing in another container) and all of them can
# go. Any other lock is someone else's (an operator's restore): only the stale ones (restic: not
# refreshed for 30 minutes) are removed, and a live one is waited for by --retry-lock.
keel_heal_locks() {
  keel_restic --no-lock list locks >"$keel_tmp/locks" || return 1
  [ -s "$keel_tmp/locks" ] || return 0
  keel_me=$(hostname)
  keel_ours=0
  keel_theirs=0
  while read -r keel_lock; do
    if keel_restic --no-lock cat lock "$keel_lock" </dev/null >"$keel_tmp/lock.json" &&
      [ "$(sed -n 's/.*"hostname": *"\([^"]*\)".*/\1/p' "$keel_tmp/lock.json")" = "$keel_me" ]; then
      keel_ours=$((keel_ours + 1))
    else
      keel_theirs=$((keel_theirs + 1))
      keel_log "lock $keel_lock is not this host's: $(tr -d '\n ' <"$keel_tmp/lock.json")"
    fi
  done <"$keel_tmp/locks"
  if [ "$keel_theirs" -eq 0 ]; then
    keel_log "removing $keel_ours lock(s) left by runs of this host that did not finish"
    keel_restic unlock --remove-all
  else
    keel_restic unlock
  fi
}

# Open the repository before any work, and say what is wrong with it if it cannot be used.
# $1: 1 if this run may create a missing repository (backup/repository/initialise), else 0.
# Sets keel_reason on failure.
keel_open_repository() {
  keel_reason=
  if [ "${KEEL_REPOSITORY_OPEN:-}" = 1 ]; then
    return 0
  fi
  keel_version=$("$RESTIC" version 2>&1)
  if ! printf '%s\n' "$keel_version" | awk '$1 == "restic" { split($2, v, "."); ok = v[1] > 0 ||
      (v[1] == 0 && v[2] >= 17) } END { exit !ok }'; then
    keel_log "$keel_version: these scripts need restic 0.17 or newer (backup/image)"
    keel_reason=restic_too_old
    return 1
  fi
  keel_s3_credentials
  # Bounded: restic 0.18 retries an unreachable endpoint here for 15 minutes, 0.17 for seconds.
  timeout "$KEEL_PROBE_TIMEOUT_S" "$RESTIC" --no-lock cat config >/dev/null 2>"$keel_err"
  keel_probe_rc=$?
  sed 's/^/restic: /' "$keel_err" >&2
  case $keel_probe_rc in
    0) ;;
    10)
      if [ "$1" = 1 ]; then
        keel_log "no repository at $RESTIC_REPOSITORY: creating it (backup/repository/initialise is on)"
        if ! keel_restic init; then
          keel_reason=$(keel_classify "$keel_restic_rc")
          return 1
        fi
      else
        keel_log "no repository at $RESTIC_REPOSITORY: the bucket or path is misspelt, or it was never" \
          "created. Nothing was created; to create it, set backup/repository/initialise: true"
        keel_reason=repository_missing
        return 1
      fi
      ;;
    124 | 143)
      # What restic was retrying says why (an untrusted certificate is retried like a refusal).
      keel_reason=$(keel_classify 1)
      if [ "$keel_reason" = restic_failed ]; then
        keel_reason=repository_unreachable
      fi
      keel_log "$RESTIC_REPOSITORY did not answer within ${KEEL_PROBE_TIMEOUT_S}s: $keel_reason"
      return 1
      ;;
    *)
      keel_reason=$(keel_classify "$keel_probe_rc")
      keel_log "$RESTIC_REPOSITORY cannot be used: $keel_reason"
      return 1
      ;;
  esac
  if ! keel_heal_locks; then
    keel_reason=$(keel_classify "$keel_restic_rc")
    return 1
  fi
  KEEL_REPOSITORY_OPEN=1
  export KEEL_REPOSITORY_OPEN
}

# The file name of a SQLite database's snapshot: /<store>+<relative path, "/" as "+">, one flat name
# ("+" is never in a configured path) because restic 0.18.0 cannot back up stdin under a name with
# directories (restic #5324).
keel_sqlite_name() {
  printf '%s+%s' "$1" "$(printf '%s' "$2" | tr / +)"
}

keel_password() {
  # $1: store. Prints the store's password from its secret file, or nothing.
  if [ -r "$KEEL_SECRETS_DIR/$1-password" ]; then
    cat "$KEEL_SECRETS_DIR/$1-password"
  fi
}

# The newest value of a sample in a textfile, or nothing ($1 file, $2 metric with its labels, e.g.
# keel_backup_last_success_timestamp_seconds{store="db"}).
keel_previous_value() {
  [ -r "$1" ] || return 0
  awk -v key="$2" '$1 == key { value = $2 } END { if (value != "") print value }' "$1"
}

# A sample's labels with the failure reason added when it failed ($1 labels without braces, may be
# empty; $2 reason or nothing). Prints "{...}" or nothing.
keel_labels() {
  if [ -n "$1" ] && [ -n "$2" ]; then
    printf '%s' "{$1,reason=\"$2\"}"
  elif [ -n "$1" ]; then
    printf '%s' "{$1}"
  elif [ -n "$2" ]; then
    printf '%s' "{reason=\"$2\"}"
  fi
}

# Write a textfile atomically: node-exporter reads only *.prom, and mv within one directory is atomic.
# $1: file name; the content comes on stdin.
keel_write_textfile() {
  mkdir -p "$KEEL_TEXTFILE_DIR"
  keel_tmp_metrics="$KEEL_TEXTFILE_DIR/.$1.$$"
  cat >"$keel_tmp_metrics" && chmod 0644 "$keel_tmp_metrics" && mv -f "$keel_tmp_metrics" "$KEEL_TEXTFILE_DIR/$1"
}

# A restore script's preamble: take turns with the jobs of this host (the drill already holds the
# job lock), then open the repository, never creating one.
keel_restore_open() {
  keel_job_lock "${KEEL_JOB_LOCK_WAIT_S:-600}" && keel_open_repository 0
}
