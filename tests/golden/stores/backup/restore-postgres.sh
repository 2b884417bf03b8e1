#!/bin/sh
# Restore a PostgreSQL store's dump into a database, in one transaction, after its roles.
# Usage: restore-postgres.sh STORE HOST PORT DATABASE USER [SNAPSHOT]
# SNAPSHOT defaults to the newest one of the store. The database must exist; objects in it that
# the dump contains are dropped first (--clean).
# Roles come from the newest roles snapshot (KEEL_ROLES_SNAPSHOT picks another). KEEL_RESTORE_ROLES:
# "create-missing" (default) creates the roles the server lacks, with their passwords, and leaves
# every existing role as it is (so a password rotated since the backup stays rotated); "check"
# applies them in a transaction that is rolled back (the drill); "skip". Rendered by keel (render/backup.py).
set -u
KEEL_SCRIPTS_DIR=${KEEL_SCRIPTS_DIR:-$(dirname "$0")}
# shellcheck source=common.sh
. "$KEEL_SCRIPTS_DIR/common.sh"

if [ "$#" -lt 5 ]; then
  echo "usage: $0 STORE HOST PORT DATABASE USER [SNAPSHOT]" >&2
  exit 2
fi
keel_store=$1 keel_host=$2 keel_port=$3 keel_database=$4 keel_user=$5 keel_snapshot=${6:-latest}
: "${KEEL_RESTORE_ROLES:=create-missing}"
keel_restore_open || exit 1

keel_psql() {
  # psql on the target database, the SQL on stdin; stops at the first error.
  PGPASSWORD=$(keel_password "$keel_store") "$PSQL" --no-password --no-psqlrc --quiet --set ON_ERROR_STOP=1 \
    --host "$keel_host" --port "$keel_port" --username "$keel_user" --dbname "$keel_database" "$@"
}

# The roles of the backup that the server does not have (CREATE/ALTER/COMMENT ON ROLE of an
# existing role are left out; memberships are kept). $1: existing role names, one a line.
keel_missing_roles() {
  awk 'NR == FNR { existing[$0] = 1; next }
    {
      if (match($0, /^(CREATE|ALTER) ROLE /) || match($0, /^COMMENT ON ROLE /)) {
        rest = substr($0, RLENGTH + 1)
      } else {
        print
        next
      }
      name = ""
      if (substr(rest, 1, 1) == "\"") {
        rest = substr(rest, 2)
        while ((i = index(rest, "\"")) > 0) {
          name = name substr(rest, 1, i - 1)
          rest = substr(rest, i + 1)
          if (substr(rest, 1, 1) != "\"") break
          name = name "\""
          rest = substr(rest, 2)
        }
      } else {
        match(rest, /^[^ ;]+/)
        name = substr(rest, 1, RLENGTH)
      }
      if (!(name in existing)) print
    }' "$1" -
}

restore_roles() {
  [ "$KEEL_RESTORE_ROLES" = skip ] && return 0
  if ! keel_restic dump --host "$KEEL_SNAPSHOT_HOST" --tag "store=$keel_store,kind=postgres-roles" \
    --path "/$keel_store.roles.sql" "${KEEL_ROLES_SNAPSHOT:-latest}" "/$keel_store.roles.sql" \
    >"$keel_tmp/roles.sql"; then
    if grep -q 'no snapshot found\|no matching' "$keel_err"; then
      keel_log "$keel_store: no roles snapshot (taken before roles were backed up); restoring without roles"
      return 0
    fi
    return 1
  fi
  keel_psql --tuples-only --no-align --command "SELECT rolname FROM pg_roles" >"$keel_tmp/existing" || return 1
  keel_missing_roles "$keel_tmp/existing" <"$keel_tmp/roles.sql" >"$keel_tmp/missing.sql" || return 1
  keel_roles=$(grep -c '^CREATE ROLE ' "$keel_tmp/missing.sql")
  if [ "$KEEL_RESTORE_ROLES" = check ]; then
    # The drill logs in as the backup role, which may not create roles (CREATEROLE would let it grant
    # itself far more before PostgreSQL 16): a restore does that as the superuser.
    keel_may=$(keel_psql --tuples-only --no-align \
      --command "SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user") || return 1
    if [ "$keel_may" != t ]; then
      keel_log "$keel_store: $keel_roles missing role(s) not rehearsed: $keel_user may not create roles"
      return 0
    fi
    { echo "BEGIN;"; cat "$keel_tmp/missing.sql"; echo "ROLLBACK;"; } | keel_psql --file=- || return 1
    keel_log "$keel_store: the roles apply ($keel_roles missing here, created and rolled back)"
  else
    keel_psql --single-transaction --file="$keel_tmp/missing.sql" || return 1
    keel_log "$keel_store: $keel_roles missing role(s) created"
  fi
}

if ! restore_roles; then
  keel_log "$keel_store: restoring the roles failed"
  exit 1
fi
{
  keel_restic dump --host "$KEEL_SNAPSHOT_HOST" --tag "store=$keel_store,kind=postgres" --path "/$keel_store.pgdump" \
    "$keel_snapshot" "/$keel_store.pgdump"
  echo $? >"$keel_tmp/dump"
} | PGPASSWORD=$(keel_password "$keel_store") "$PG_RESTORE" --no-password --host "$keel_host" \
  --port "$keel_port" --username "$keel_user" --dbname "$keel_database" \
  --clean --if-exists --no-owner --single-transaction --exit-on-error
keel_restore_rc=$?
keel_dump_rc=$(cat "$keel_tmp/dump" 2>/dev/null || echo 1)
if [ "$keel_dump_rc" -ne 0 ] || [ "$keel_restore_rc" -ne 0 ]; then
  keel_log "$keel_store: restore failed (restic dump $keel_dump_rc, pg_restore $keel_restore_rc)"
  exit 1
fi
keel_log "$keel_store: restored $keel_snapshot into $keel_database"
