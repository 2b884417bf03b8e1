"""The server's files for a MariaDB store: keel.cnf tuned from the memory limit, and the users step
(the exporter's and the backup job's users, set by root after every change).

Memory: the container's limit is the machine MariaDB sees. The other caches are sized from the
limit within bounds; InnoDB's buffer pool takes three quarters of what the server, the connections
and those caches leave (about 50% of a 512 MiB limit, 60% of 1 GiB, 70% of 4 GiB: the usual share
for a server that is not alone in its cgroup, as the tmpfs /tmp is charged to the same limit); the
performance schema, whose buffers alone take about 100 MiB, is off.

Names reach SQL quoted for it: identifiers in backquotes (with ``_`` escaped where a grant would
read it as a wildcard), user names in single quotes; the config's grammar allows neither quote.
"""

from __future__ import annotations

import hashlib
import shlex
from dataclasses import dataclass
from pathlib import Path

from render import render_from
from stores.base import find_running_task

TEMPLATES = Path(__file__).resolve().parent / "templates"
PORT = 3306
CONFIG_PATH = "/etc/mysql/conf.d/keel.cnf"
"""The image reads /etc/mysql/conf.d after its own mariadb.conf.d (mariadb-docker #327), so these
settings win."""
DATA_DIR = "/var/lib/mysql"
SOCKET_DIR = "/run/mysqld"
DRILL_SUFFIX = "_keel_drill"
"""The restore drill restores into <database>_keel_drill beside the live database."""
SERVER_MB = 96
"""What the server takes besides its caches: code, dictionary, the allocator's arenas (measured:
about 70 MiB resident after start with the caches untouched, MariaDB 10.11)."""
CONNECTION_KB = 512
"""Per allowed connection: its thread and a small query's buffers (sort and join buffers are
allocated per query, on demand)."""
MIN_BUFFER_POOL_MB = 32
KEY_BUFFER_MB = 8
"""MyISAM's key cache: no table of the system schema or the app's uses MyISAM."""
BUFFER_POOL_SHARE = 0.75
"""Of what the server, the connections and the other caches leave."""
MAX_LOG_FILE_MB = 1024


@dataclass(frozen=True)
class MariadbTuning:
    """Memory settings derived from a memory limit and a connection count."""

    memory_mb: int
    max_connections: int
    buffer_pool_mb: int
    log_file_mb: int
    log_buffer_mb: int
    aria_pagecache_mb: int
    key_buffer_mb: int
    tmp_table_mb: int
    tmpdir_mb: int
    """Size of the tmpfs /tmp (MariaDB's tmpdir: filesorts and on-disk temporary tables)."""


def _bounded(value: int, low: int, high: int) -> int:
    return max(low, min(high, value))


def mariadb_tuning(memory_mb: int, max_connections: int) -> MariadbTuning:
    """The memory settings for a server limited to ``memory_mb`` MiB serving ``max_connections``.
    The buffer pool never goes below MIN_BUFFER_POOL_MB; a limit that would need it to is refused
    when the config loads (``minimum_memory_mb``)."""
    return MariadbTuning(
        memory_mb=memory_mb,
        max_connections=max_connections,
        buffer_pool_mb=(buffer_pool_mb := max(MIN_BUFFER_POOL_MB, _buffer_pool_mb(memory_mb, max_connections))),
        # A quarter of the buffer pool: enough redo for checkpoints to stay in the background.
        log_file_mb=_bounded(buffer_pool_mb // 4, 32, MAX_LOG_FILE_MB),
        log_buffer_mb=_log_buffer_mb(memory_mb),
        aria_pagecache_mb=_aria_pagecache_mb(memory_mb),
        key_buffer_mb=KEY_BUFFER_MB,
        tmp_table_mb=_bounded(memory_mb // 32, 16, 64),
        tmpdir_mb=max(64, memory_mb // 8),
    )


def _aria_pagecache_mb(memory_mb: int) -> int:
    return _bounded(memory_mb // 32, 8, 128)


def _log_buffer_mb(memory_mb: int) -> int:
    return 16 if memory_mb >= 1024 else 8


def _buffer_pool_mb(memory_mb: int, max_connections: int) -> int:
    """BUFFER_POOL_SHARE of what the server, the connections and the other caches leave."""
    reserved_mb = SERVER_MB + max_connections * CONNECTION_KB // 1024
    caches_mb = _aria_pagecache_mb(memory_mb) + KEY_BUFFER_MB + _log_buffer_mb(memory_mb)
    return int((memory_mb - reserved_mb - caches_mb) * BUFFER_POOL_SHARE)


def minimum_memory_mb(max_connections: int) -> int:
    """The smallest limit (a multiple of 16 MiB) that leaves MIN_BUFFER_POOL_MB of buffer pool."""
    memory_mb = 16
    while _buffer_pool_mb(memory_mb, max_connections) < MIN_BUFFER_POOL_MB:
        memory_mb += 16
    return memory_mb


def render_keel_cnf(memory_mb: int, max_connections: int) -> str:
    """keel.cnf (mounted at CONFIG_PATH)."""
    tuning = mariadb_tuning(memory_mb, max_connections)
    return render_from(TEMPLATES, "keel.cnf.j2", tuning=tuning, port=PORT)


def identifier(name: str, *, grant: bool = False) -> str:
    """``name`` as a backquoted SQL identifier; ``grant``: with ``_`` escaped, as a database name in
    GRANT ... ON `db`.* is a pattern where ``_`` matches any character."""
    quoted = name.replace("`", "``")
    if grant:
        quoted = quoted.replace("\\", "\\\\").replace("_", "\\_").replace("%", "\\%")
    return f"`{quoted}`"


def literal(text: str) -> str:
    """``text`` as a single-quoted SQL string literal."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


EXPORTER_USER = "keel_exporter"
BACKUP_USER = "keel_backup"
CLIENT_USERS = {"exporter": EXPORTER_USER, "backup": BACKUP_USER}
"""The store's clients other than the app, each with a user (and a password) of its own."""
EXPORTER_CONNECTIONS = 3
"""mysqld_exporter's README (v0.17.2, "Required Grants") limits its user to 3 connections, so scrapes
under load cannot take the app's."""
BACKUP_CONNECTIONS = 4
"""mariadb-dump holds one connection; the drill and a restore open one per statement."""
ROOT_PASSWORD_FILE = "/run/secrets/mariadb-root-password"
SOCKET = f"{SOCKET_DIR}/mysqld.sock"


def native_password_hash(password: str) -> str:
    """What MariaDB stores for a mysql_native_password (``PASSWORD()``): ``*`` and the upper-case hex
    SHA1 of the SHA1 of the password. Sent instead of the password so the plaintext reaches no
    statement; with one observed handshake the hash is enough to sign in, so it travels as a secret
    all the same."""
    return "*" + hashlib.sha1(hashlib.sha1(password.encode()).digest()).hexdigest().upper()


def users_sql(database: str, app_user: str, passwords: dict[str, str]) -> str:
    """The users step's SQL, run by root over the container's socket after every change.

    ``passwords``: user name -> password for CLIENT_USERS. Each client is created when missing, given
    its password and its few privileges (a grant adds; a privilege granted by hand stays):

    - the exporter: PROCESS and REPLICATION CLIENT on the server, SELECT on performance_schema (what
      mysqld_exporter's README asks for, with SELECT narrowed from every table to the one schema it
      reads; MariaDB 10.5 renamed REPLICATION CLIENT to BINLOG MONITOR and keeps the old name);
    - the backup job: what ``mariadb-dump --single-transaction --routines --triggers --events``
      reads of the database (SELECT, SHOW VIEW, TRIGGER, EVENT; LOCK TABLES for a table that is not
      InnoDB), the routines' bodies (SELECT on mysql.proc: SHOW CREATE ROUTINE exists from 11.3
      only), and every privilege on the drill's scratch database, which it creates, fills and drops.

    The app's user keeps every privilege on its database, as the entrypoint granted it, and loses the
    drill's scratch database that a store created before these users granted it.
    """
    missing = set(CLIENT_USERS.values()) - set(passwords)
    if missing:
        raise ValueError(f"no password for user(s) {sorted(missing)}")
    exporter, backup = literal(EXPORTER_USER) + "@'%'", literal(BACKUP_USER) + "@'%'"
    live, drill = identifier(database, grant=True), identifier(database + DRILL_SUFFIX, grant=True)

    def user(name: str, connections: int) -> list[str]:
        account = literal(name) + "@'%'"
        return [
            f"CREATE USER IF NOT EXISTS {account};",
            f"ALTER USER {account} IDENTIFIED BY PASSWORD {literal(native_password_hash(passwords[name]))} "
            f"WITH MAX_USER_CONNECTIONS {connections};",
        ]

    return "\n".join(
        [
            "-- Rendered by keel (stores/mariadb/server.py, users_sql): the store's clients, as the config says.",
            *user(EXPORTER_USER, EXPORTER_CONNECTIONS),
            f"GRANT PROCESS, REPLICATION CLIENT ON *.* TO {exporter};",
            f"GRANT SELECT ON performance_schema.* TO {exporter};",
            *user(BACKUP_USER, BACKUP_CONNECTIONS),
            f"GRANT SELECT, SHOW VIEW, TRIGGER, EVENT, LOCK TABLES ON {live}.* TO {backup};",
            f"GRANT SELECT ON mysql.proc TO {backup};",
            f"GRANT ALL PRIVILEGES ON {drill}.* TO {backup};",
            # 1141: there is no such grant (a store created with these users).
            "DELIMITER //",
            "BEGIN NOT ATOMIC",
            "  DECLARE CONTINUE HANDLER FOR 1141 BEGIN END;",
            f"  REVOKE ALL PRIVILEGES ON {drill}.* FROM {literal(app_user)}@'%';",
            "END //",
            "DELIMITER ;",
            "",
        ]
    )


def users_script(service: str) -> str:
    """Runs on the host: feed the users SQL (stdin) to the client inside the store's running task, as
    root over its socket with the root password the task holds as a secret file. The SQL never
    touches the host's disk: it arrives on stdin and leaves through ``docker exec -i``."""
    q = shlex.quote
    client = (
        f"MYSQL_PWD=$(cat {ROOT_PASSWORD_FILE}) || exit 1; export MYSQL_PWD; "
        f"exec mariadb --no-defaults --protocol=socket --socket={SOCKET} --user=root --batch"
    )
    return f"""#!/bin/sh
# The users of {service} (stores/mariadb/server.py, users_sql), applied by root over the socket.
set -eu
{find_running_task(service)}docker exec -i "$container" sh -c {q(client)}
echo "users of $service are in place"
"""


def health_command() -> list[str]:
    """The official image's own check (healthcheck.sh, mariadb-docker 11.4): ``--connect`` fails while
    networking is off, as it is in the entrypoint's temporary initialisation server, and
    ``--innodb_initialized`` once InnoDB's recovery is done. It signs in as the healthcheck user
    the entrypoint creates (its password in <datadir>/.my-healthcheck.cnf)."""
    return ["CMD", "healthcheck.sh", "--connect", "--innodb_initialized"]
