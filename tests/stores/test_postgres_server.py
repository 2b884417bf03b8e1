"""postgresql.conf from a store's memory limit: golden text and the tuning rules."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from config.base import Resources
from stores.postgres.model import PostgresSpec
from stores.postgres.server import postgres_health_command, postgres_tuning, render_postgresql_conf

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "stores"


def _store(memory_mb: int, max_connections: int = 100) -> PostgresSpec:
    return PostgresSpec(kind="postgres", resources=Resources(memory_mb=memory_mb), max_connections=max_connections)


@pytest.mark.parametrize("memory_mb", [1024, 2048])
def test_rendered_config_matches_golden(memory_mb: int) -> None:
    text = render_postgresql_conf(_store(memory_mb))
    golden = GOLDEN / f"postgresql-{memory_mb}mb.conf"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(text)
    assert text == golden.read_text(), f"rendered postgresql.conf differs from {golden}; UPDATE_GOLDEN=1 to accept"


@pytest.mark.parametrize(
    ("memory_mb", "connections", "shared", "cache", "maintenance", "work_kb"),
    [
        (1024, 100, 256, 768, 64, 2621),  # (1024 - 256) MiB over 100 connections x 3 sorts
        (2048, 100, 512, 1536, 128, 5242),
        (4096, 200, 1024, 3072, 256, 5242),
        (32768, 100, 8192, 24576, 1024, 83886),  # maintenance_work_mem stops at 1 GiB
        (64, 100, 16, 48, 16, 1024),  # floors: shared_buffers 16 MB, work_mem 1 MB
    ],
)
def test_memory_settings_follow_the_limit(
    memory_mb: int, connections: int, shared: int, cache: int, maintenance: int, work_kb: int
) -> None:
    tuning = postgres_tuning(memory_mb, connections)
    assert (
        tuning.shared_buffers_mb,
        tuning.effective_cache_size_mb,
        tuning.maintenance_work_mem_mb,
        tuning.work_mem_kb,
    ) == (shared, cache, maintenance, work_kb)


def test_shared_buffers_and_work_mem_leave_room_for_every_connection() -> None:
    for memory_mb in (256, 512, 1024, 2048, 8192):
        for connections in (20, 100, 300):
            tuning = postgres_tuning(memory_mb, connections)
            worst_case_mb = tuning.shared_buffers_mb + connections * 3 * tuning.work_mem_kb / 1024
            if tuning.work_mem_kb > 1024:  # above the floor, the budget holds
                assert worst_case_mb <= memory_mb, (memory_mb, connections)


def test_dev_shm_is_sized_for_parallel_queries() -> None:
    assert postgres_tuning(1024, 100).shm_size_mb == 256
    assert postgres_tuning(128, 100).shm_size_mb == 64


def test_health_check_asks_pg_isready_over_tcp_for_the_app_database() -> None:
    store = PostgresSpec(kind="postgres", database="shop", user="shop")
    assert postgres_health_command(store) == [
        "CMD", "pg_isready", "-q", "-h", "127.0.0.1", "-p", "5432", "-U", "shop", "-d", "shop",
    ]  # fmt: skip
