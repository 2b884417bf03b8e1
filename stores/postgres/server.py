"""postgresql.conf for a PostgreSQL store, tuned from the store's memory limit, and its health check.

The container's memory limit is the machine PostgreSQL sees, so the usual rules of thumb are
applied to it: shared_buffers about 25%, effective_cache_size about 75%, maintenance_work_mem
about 1/16 (at most 1 GiB), and work_mem sized so that every connection running a few sorts at
once stays inside what shared_buffers leaves. WAL and checkpoints suit a small VM with an SSD.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from render import render_from
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
