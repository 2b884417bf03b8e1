"""The server's files for a MariaDB store: keel.cnf tuned from the memory limit, and the SQL the
official image's entrypoint runs once, after it created the database and the user.

Memory: the container's limit is the machine MariaDB sees. The other caches are sized from the
limit within bounds; InnoDB's buffer pool takes three quarters of what the server, the connections
and those caches leave (about 50% of a 512 MiB limit, 60% of 1 GiB, 70% of 4 GiB: the usual share
for a server that is not alone in its cgroup, as the tmpfs /tmp is charged to the same limit); the
performance schema, whose buffers alone take about 100 MiB, is off.

Names reach SQL quoted for it: identifiers in backquotes (with ``_`` escaped where a grant would
read it as a wildcard), user names in single quotes; the config's grammar allows neither quote.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from render import render_from

TEMPLATES = Path(__file__).resolve().parent / "templates"
PORT = 3306
CONFIG_PATH = "/etc/mysql/conf.d/keel.cnf"
"""The image reads /etc/mysql/conf.d after its own mariadb.conf.d (mariadb-docker #327), so these
settings win."""
INIT_SQL_PATH = "/docker-entrypoint-initdb.d/keel.sql"
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


def render_init_sql(database: str, user: str) -> str:
    """The SQL the entrypoint runs once, after creating ``database`` and ``user``: the user may also
    create and drop the drill's scratch database (render.backup's drill)."""
    return render_from(
        TEMPLATES,
        "keel.sql.j2",
        drill_database=identifier(database + DRILL_SUFFIX, grant=True),
        user=literal(user),
    )


def health_command() -> list[str]:
    """The official image's own check (healthcheck.sh, mariadb-docker 11.4): ``--connect`` fails while
    networking is off, as it is in the entrypoint's temporary initialisation server, and
    ``--innodb_initialized`` once InnoDB's recovery is done. It signs in as the healthcheck user
    the entrypoint creates (its password in <datadir>/.my-healthcheck.cnf)."""
    return ["CMD", "healthcheck.sh", "--connect", "--innodb_initialized"]
