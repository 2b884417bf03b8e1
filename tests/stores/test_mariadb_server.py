"""keel.cnf from a MariaDB store's memory limit (golden text and the tuning rules), the SQL names
are quoted for, and the config errors of a MariaDB store."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from config import ConfigError, parse
from stores.mariadb.server import (
    CONNECTION_KB,
    MIN_BUFFER_POOL_MB,
    SERVER_MB,
    identifier,
    literal,
    mariadb_tuning,
    minimum_memory_mb,
    native_password_hash,
    render_keel_cnf,
    users_sql,
)

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "stores"


@pytest.mark.parametrize("memory_mb", [512, 1024])
def test_rendered_config_matches_golden(memory_mb: int) -> None:
    text = render_keel_cnf(memory_mb, 100)
    golden = GOLDEN / f"mariadb-{memory_mb}mb.cnf"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(text)
    assert text == golden.read_text(), f"rendered keel.cnf differs from {golden}; UPDATE_GOLDEN=1 to accept"


@pytest.mark.parametrize(
    ("memory_mb", "connections", "pool", "log_file", "aria", "tmp_table", "tmpdir"),
    [
        (512, 100, 250, 62, 16, 16, 64),
        (1024, 100, 616, 154, 32, 32, 128),
        (4096, 300, 2773, 693, 128, 64, 512),  # aria and tmp tables stop at their ceilings
        (32768, 100, 24352, 1024, 128, 64, 4096),  # the redo log stops at 1 GiB
    ],
)
def test_memory_settings_follow_the_limit(
    memory_mb: int, connections: int, pool: int, log_file: int, aria: int, tmp_table: int, tmpdir: int
) -> None:
    tuning = mariadb_tuning(memory_mb, connections)
    assert (tuning.buffer_pool_mb, tuning.log_file_mb, tuning.aria_pagecache_mb, tuning.tmp_table_mb,
            tuning.tmpdir_mb) == (pool, log_file, aria, tmp_table, tmpdir)  # fmt: skip


def test_the_caches_and_every_connection_fit_the_limit() -> None:
    for connections in (10, 100, 500, 2000):
        for memory_mb in range(minimum_memory_mb(connections), 16384, 112):
            t = mariadb_tuning(memory_mb, connections)
            caches = t.buffer_pool_mb + t.log_buffer_mb + t.aria_pagecache_mb + t.key_buffer_mb
            assert caches + SERVER_MB + connections * CONNECTION_KB / 1024 <= memory_mb, (memory_mb, connections)
            assert t.buffer_pool_mb >= MIN_BUFFER_POOL_MB


def test_the_least_limit_grows_with_the_connections() -> None:
    assert minimum_memory_mb(100) == 224
    assert minimum_memory_mb(2000) > minimum_memory_mb(100)
    for connections in (10, 100, 1000):
        least = minimum_memory_mb(connections)
        assert least % 16 == 0
        assert mariadb_tuning(least - 16, connections).buffer_pool_mb == MIN_BUFFER_POOL_MB  # the floor, not the rule


def test_names_reach_sql_quoted() -> None:
    assert identifier("shop") == "`shop`"
    assert identifier("a`b") == "`a``b`"
    # In a grant, `_` and `%` are wildcards: escaped so only the drill's own database is granted.
    assert identifier("shop_keel_drill", grant=True) == "`shop\\_keel\\_drill`"
    assert literal("it's") == "'it\\'s'"
    assert literal("back\\slash") == "'back\\\\slash'"
    sql = users_sql("shop_1", "app", {"keel_exporter": "e", "keel_backup": "b"}).splitlines()
    assert "GRANT ALL PRIVILEGES ON `shop\\_1\\_keel\\_drill`.* TO 'keel_backup'@'%';" in sql
    assert "GRANT SELECT, SHOW VIEW, TRIGGER, EVENT, LOCK TABLES ON `shop\\_1`.* TO 'keel_backup'@'%';" in sql


def test_the_users_step_sends_password_hashes_not_passwords() -> None:
    # MySQL's and MariaDB's PASSWORD('password') (mysql_native_password), a widely published value.
    assert native_password_hash("password") == "*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19"
    sql = users_sql("shop", "app", {"keel_exporter": "exporter-secret", "keel_backup": "backup-secret"})
    assert "exporter-secret" not in sql and "backup-secret" not in sql
    assert f"IDENTIFIED BY PASSWORD '{native_password_hash('exporter-secret')}' WITH MAX_USER_CONNECTIONS 3;" in sql
    with pytest.raises(ValueError, match="keel_backup"):
        users_sql("shop", "app", {"keel_exporter": "e"})


def _load(store: dict[str, object]) -> None:
    host = {"provider": "local"}
    parse({"environment": "dev", "host": json.dumps(host), "services": json.dumps({"orders": store})})


@pytest.mark.parametrize(
    ("store", "message"),
    [
        (
            {"kind": "mariadb", "resources": {"memory_mb": 192}},
            "services/orders/resources/memory_mb: found 192, which leaves MariaDB less than a 32 MiB buffer pool "
            "beside 100 connections; expected at least 224 (or fewer max_connections)",
        ),
        (
            {"kind": "mariadb", "user": "root"},
            'services/orders/user: found "root", a user the official image or keel creates itself',
        ),
        ({"kind": "mariadb", "database": "Shop"}, "services/orders/database"),
        ({"kind": "mariadb", "database": "a" * 54}, "services/orders/database"),
    ],
)
def test_a_bad_mariadb_store_fails_at_load_naming_the_key(store: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as error:
        _load(store)
    assert message in str(error.value)
