"""postgresql.conf for a PostgreSQL store, tuned from the store's memory limit, and its health check.

The container's memory limit is the machine PostgreSQL sees, so the usual rules of thumb are
applied to it: shared_buffers about 25%, effective_cache_size about 75%, maintenance_work_mem
about 1/16 (at most 1 GiB), and work_mem sized so that every connection running a few sorts at
once stays inside what shared_buffers leaves. WAL and checkpoints suit a small VM with an SSD.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from pathlib import Path

from render import render_from
from stores.base import find_running_task
from stores.postgres.model import PostgresSpec

TEMPLATES = Path(__file__).resolve().parent / "templates"
PORT = 5432
CONFIG_PATH = "/etc/postgresql/postgresql.conf"
"""Where the component mounts the rendered file; the server is started with config_file=this."""

# Below these the server either refuses to start or thrashes; small limits are clamped up
# rather than rendered into a file PostgreSQL rejects.
MIN_SHARED_BUFFERS_MB = 16
MIN_WORK_MEM_KB = 1024
MIN_MAINTENANCE_WORK_MEM_MB = 16
MAX_MAINTENANCE_WORK_MEM_MB = 1024
# Sorts and hashes a typical query runs at once per connection (PGTune's divisor).
SORTS_PER_CONNECTION = 3


@dataclass(frozen=True)
class PostgresTuning:
    """Memory settings derived from a memory limit and a connection count."""

    memory_mb: int
    max_connections: int
    shared_buffers_mb: int
    effective_cache_size_mb: int
    maintenance_work_mem_mb: int
    work_mem_kb: int
    wal_buffers_kb: int
    shm_size_mb: int
    """Size the container's /dev/shm must have: parallel queries allocate dynamic shared memory
    there, and Docker's default 64 MiB makes them fail with "could not resize shared memory"."""


def postgres_tuning(memory_mb: int, max_connections: int) -> PostgresTuning:
    """The memory settings for a server limited to ``memory_mb`` MiB serving ``max_connections``."""
    shared_buffers_mb = max(MIN_SHARED_BUFFERS_MB, memory_mb // 4)
    effective_cache_size_mb = max(shared_buffers_mb, memory_mb * 3 // 4)
    maintenance_work_mem_mb = min(MAX_MAINTENANCE_WORK_MEM_MB, max(MIN_MAINTENANCE_WORK_MEM_MB, memory_mb // 16))
    left_kb = max(0, memory_mb - shared_buffers_mb) * 1024
    work_mem_kb = max(MIN_WORK_MEM_KB, left_kb // (max_connections * SORTS_PER_CONNECTION))
    # PostgreSQL's own automatic choice (1/32 of shared_buffers, 64 kB..16 MB), written out so the
    # file says what runs.
    wal_buffers_kb = min(16 * 1024, max(64, shared_buffers_mb * 1024 // 32))
    shm_size_mb = max(64, memory_mb // 4)
    return PostgresTuning(
        memory_mb=memory_mb,
        max_connections=max_connections,
        shared_buffers_mb=shared_buffers_mb,
        effective_cache_size_mb=effective_cache_size_mb,
        maintenance_work_mem_mb=maintenance_work_mem_mb,
        work_mem_kb=work_mem_kb,
        wal_buffers_kb=wal_buffers_kb,
        shm_size_mb=shm_size_mb,
    )


def render_postgresql_conf(store: PostgresSpec) -> str:
    """The complete postgresql.conf for ``store`` (mounted at CONFIG_PATH)."""
    tuning = postgres_tuning(store.resources.memory_mb, store.max_connections)
    return render_from(TEMPLATES, "postgresql.conf.j2", tuning=tuning, port=PORT)


def postgres_command(config_path: str = CONFIG_PATH) -> list[str]:
    """The service's args (the image's CMD): the official entrypoint runs them after initdb on first
    start, as the postgres user. Never pass them as swarm `commands`, which replace the entrypoint."""
    return ["postgres", "-c", f"config_file={config_path}"]


def postgres_health_command(store: PostgresSpec, port: int = PORT) -> list[str]:
    """A swarm health check: ready only when the server accepts TCP connections for the app database.

    TCP on 127.0.0.1 rather than the socket, because during first-start initialisation the
    official image runs a socket-only server that must not count as ready.
    """
    return ["CMD", "pg_isready", "-q", "-h", "127.0.0.1", "-p", str(port), "-U", store.user, "-d", store.database]


# ----------------------------------------------------------------------------- roles

ADMIN_ROLE = "postgres"
"""The bootstrap superuser (POSTGRES_USER): used only by keel's roles step, over the container's own
socket, and by an operator's restore. Nothing on the network logs in as it."""
EXPORTER_ROLE = "keel_exporter"
BACKUP_ROLE = "keel_backup"
CLIENT_ROLES = {"exporter": EXPORTER_ROLE, "backup": BACKUP_ROLE}
"""The store's clients other than the app, each with a role of its own (and a password of its own)."""
MIN_MAJOR = 14
"""pg_read_all_data, the backup role's way to read every table, exists from PostgreSQL 14 on."""
SCRAM_ITERATIONS = 4096
"""PostgreSQL's default scram_iterations (src/include/common/scram-common.h, SCRAM_SHA_256_DEFAULT_ITERATIONS)."""


def scram_verifier(role: str, password: str) -> str:
    """What PostgreSQL stores for a SCRAM-SHA-256 password (src/common/scram-common.c,
    scram_build_secret): ``SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>``, base64.

    Sending the verifier instead of the password keeps the plaintext out of the server's logs and
    statistics (an ALTER ROLE that fails is logged with its statement). The salt is derived from the
    role and the password, so the same password gives the same verifier and the roles step stays
    unchanged between deploys. Valid only for a password that SASLprep leaves as it is, which every
    ASCII password is (RFC 4013; PostgreSQL's pg_saslprep): ``role_password`` sends others as text.
    """
    salt = hmac.new(password.encode(), f"keel-scram-salt:{role}".encode(), hashlib.sha256).digest()[:16]
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, SCRAM_ITERATIONS)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    b64 = lambda data: base64.b64encode(data).decode()  # noqa: E731
    return f"SCRAM-SHA-256${SCRAM_ITERATIONS}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def _literal(text: str) -> str:
    """A SQL string literal (standard_conforming_strings is on by default since 9.1)."""
    return "'" + text.replace("'", "''") + "'"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def role_password(role: str, password: str) -> str:
    if not password:
        raise ValueError(f"role {role}: a password must not be empty")
    if password.isascii() and password.isprintable():
        return _literal(scram_verifier(role, password))
    return _literal(password)


APP_ATTRIBUTES = "NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT"
TERMINATE_WAIT_MS = 5000
"""How long the roles step waits for each ended session to go (pg_terminate_backend's timeout, 14+)."""
SLOTS = ("a", "b")
"""The two login roles an app may log in as instead of the owner, so a password rotates without a gap."""


def roles_sql(spec: PostgresSpec, passwords: dict[str, str]) -> str:
    """The roles step's SQL, run by the superuser over the container's socket on every change.

    ``passwords``: role name -> password for every app login that may log in (``spec.logins``, by
    ``spec.login_role``) and for CLIENT_ROLES. Each role is created when missing and then set exactly:
    the app's role (``spec.user``) owns its database and nothing more (no superuser, no CREATEROLE, no
    CREATEDB); the exporter reads statistics (pg_monitor); the backup reads every table
    (pg_read_all_data, BYPASSRLS: pg_dump refuses to dump a table whose row-level security would hide
    rows) and may create a database (the restore drill's scratch one), but not roles (CREATEROLE lets
    a role grant itself pg_execute_server_program before 16).

    Logins a and b (``<user>_a``, ``<user>_b``) are members of the owner whose sessions start as it
    (``ALTER ROLE ... SET role``, which RESET ROLE, RESET ALL and DISCARD ALL return to): what either
    creates belongs to the owner, so the other uses it as its own. Only an explicit ``SET ROLE NONE``
    acts as the login itself. No default privileges stand in for that: pg_dump keeps them, and the
    backup drill's restore, as the backup role, may not set them for another role. A role that may
    not log in has no password and loses its open sessions (NOLOGIN refuses only new ones).
    """
    logins = [spec.login_role(login) for login in spec.logins]
    required = [*logins, *CLIENT_ROLES.values()]
    missing = [role for role in required if role not in passwords]
    if missing:
        raise ValueError(f"no password for role(s) {sorted(missing)}")
    slots = [spec.login_role(slot) for slot in SLOTS]
    slotted = any(login != "owner" for login in spec.logins)
    lines = [
        "-- Rendered by keel (stores/postgres/server.py, roles_sql): every role but the superuser, as the config says.",
        "\\set ON_ERROR_STOP on",
        "BEGIN;",
    ]

    def role(name: str, attrs: str, login: bool) -> None:
        lines.append(
            f"SELECT 'CREATE ROLE {_ident(name)}' WHERE NOT EXISTS "
            f"(SELECT FROM pg_roles WHERE rolname = {_literal(name)})\\gexec"
        )
        password = f"LOGIN PASSWORD {role_password(name, passwords[name])}" if login else "NOLOGIN PASSWORD NULL"
        lines.append(f"ALTER ROLE {_ident(name)} WITH {attrs} {password};")

    role(spec.user, APP_ATTRIBUTES, spec.user in logins)
    if slotted:
        for slot in slots:
            role(slot, APP_ATTRIBUTES, slot in logins)
            lines.append(f"GRANT {_ident(spec.user)} TO {_ident(slot)};")
            lines.append(f"ALTER ROLE {_ident(slot)} SET role = {_literal(spec.user)};")
    else:
        # Back to the owner alone: slots left from an earlier rotation may not log in.
        lines.append(
            "SELECT format('ALTER ROLE %I WITH NOLOGIN PASSWORD NULL', rolname) FROM pg_roles "
            f"WHERE rolname IN ({', '.join(_literal(slot) for slot in slots)})\\gexec"
        )
    role(EXPORTER_ROLE, APP_ATTRIBUTES, True)
    role(BACKUP_ROLE, "NOSUPERUSER CREATEDB NOCREATEROLE NOREPLICATION BYPASSRLS INHERIT", True)
    disabled = [name for name in (spec.user, *slots) if name not in logins]
    lines += [
        f"GRANT pg_monitor TO {_ident(EXPORTER_ROLE)};",
        f"GRANT pg_read_all_data TO {_ident(BACKUP_ROLE)};",
        f"ALTER DATABASE {_ident(spec.database)} OWNER TO {_ident(spec.user)};",
        "COMMIT;",
        # Waits (up to TERMINATE_WAIT_MS each) until they are gone, so the step ends with none left.
        f"SELECT count(pg_terminate_backend(pid, {TERMINATE_WAIT_MS})) AS ended_sessions FROM pg_stat_activity "
        f"WHERE usename IN ({', '.join(_literal(name) for name in disabled)}) \\gset",
    ]
    return "\n".join(lines) + "\n"


def roles_script(service: str) -> str:
    """Runs on the host: feed the roles SQL (stdin) to psql inside the store's running task, as the
    superuser over its socket (the official image trusts local connections). The SQL never touches
    the host's disk: it arrives on stdin and leaves through ``docker exec -i``."""
    return f"""#!/bin/sh
# The roles of {service} (stores/postgres/server.py, roles_sql), applied by its superuser over the socket.
set -eu
{find_running_task(service)}\
if ! docker exec -u {ADMIN_ROLE} "$container" psql --no-psqlrc --quiet --username {ADMIN_ROLE} --dbname postgres \\
  --command 'SELECT 1' >/dev/null; then
  echo "$service has no superuser {ADMIN_ROLE}: a cluster created before keel's roles (its superuser is the" \\
    "app's role); see docs/least-privilege.md" >&2
  exit 1
fi
docker exec -i -u {ADMIN_ROLE} "$container" psql --no-psqlrc --quiet --username {ADMIN_ROLE} --dbname postgres
echo "roles of $service are in place"
"""
