"""The rendered postgresql.conf, run by a real PostgreSQL 15: it starts, and the tuning is what runs."""

from __future__ import annotations

from pathlib import Path

from pg_helpers import postgres_server

from config.base import Resources
from stores.postgres.model import PostgresSpec
from stores.postgres.server import postgres_tuning, render_postgresql_conf


def _store(memory_mb: int, max_connections: int = 100) -> PostgresSpec:
    return PostgresSpec(kind="postgres", resources=Resources(memory_mb=memory_mb), max_connections=max_connections)


def test_server_starts_with_rendered_config_and_runs_its_memory_tuning(tmp_path: Path) -> None:
    store = _store(1024, max_connections=60)
    tuning = postgres_tuning(1024, 60)
    with postgres_server(tmp_path, render_postgresql_conf(store)) as server:
        shown = {
            name: server.psql(f"SHOW {name}")
            for name in ("shared_buffers", "effective_cache_size", "work_mem", "maintenance_work_mem",
                         "max_connections", "wal_buffers", "listen_addresses", "log_destination",
                         "password_encryption", "max_wal_size", "checkpoint_completion_target")
        }  # fmt: skip
        # Settings the file set (and the command line did not override) come from the file.
        sources = server.psql(
            "SELECT string_agg(name || '=' || source, ',' ORDER BY name) FROM pg_settings "
            "WHERE name IN ('shared_buffers', 'work_mem', 'max_connections')"
        )
    assert shown == {
        "shared_buffers": "256MB",
        "effective_cache_size": "768MB",
        "work_mem": f"{tuning.work_mem_kb}kB",
        "maintenance_work_mem": "64MB",
        "max_connections": "60",
        "wal_buffers": "8MB",
        # The test overrides only the address; the file says '*'.
        "listen_addresses": "127.0.0.1",
        "log_destination": "stderr",
        "password_encryption": "scram-sha-256",
        "max_wal_size": "1GB",
        "checkpoint_completion_target": "0.9",
    }
    assert sources == "max_connections=configuration file,shared_buffers=configuration file,work_mem=configuration file"


def test_small_limit_renders_a_config_the_server_accepts(tmp_path: Path) -> None:
    store = _store(128, max_connections=20)
    with postgres_server(tmp_path, render_postgresql_conf(store)) as server:
        assert server.psql("SHOW shared_buffers") == "32MB"
        assert server.psql("SHOW maintenance_work_mem") == "16MB"
        assert server.psql("SHOW work_mem") == "1638kB"
