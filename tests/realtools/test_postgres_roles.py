"""The roles step's SQL (stores/postgres/server.py, roles_sql) run by a real PostgreSQL's superuser, then
each role logging in with its own password (sent as a SCRAM verifier, never as text) and trying
what it may and may not do."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from pg_helpers import Postgres, postgres_server

from config.models import Resources
from stores.postgres import server as pg
from stores.postgres.model import PostgresSpec
from stores.postgres.server import render_postgresql_conf, roles_sql
from tests.tool_requirements import require_tool

SPEC = PostgresSpec(kind="postgres", user="shop", database="shop", resources=Resources(memory_mb=256))
PASSWORDS = {"shop": "app-password-1", pg.EXPORTER_ROLE: "exporter-password-1", pg.BACKUP_ROLE: "backup-password-1"}


def run_as(server: Postgres, role: str, password: str, sql: str, database: str = "shop") -> subprocess.CompletedProcess:
    env = {**os.environ, "PGPASSWORD": password, "PGHOST": "127.0.0.1", "PGPORT": str(server.port)}
    return subprocess.run(
        [require_tool("psql"), "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-U", role, "-d", database, "-c", sql],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def apply_roles(server: Postgres, passwords: dict[str, str]) -> None:
    """As the roles step does: the SQL on psql's stdin, as the superuser."""
    result = subprocess.run(
        [require_tool("psql"), "-X", "--quiet", "-U", server.user, "-d", "postgres"],
        input=roles_sql(SPEC, passwords), env=server.env(), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


@pytest.fixture
def server(tmp_path: Path):
    with postgres_server(tmp_path, render_postgresql_conf(SPEC), user=pg.ADMIN_ROLE) as running:
        # The official image creates POSTGRES_DB owned by the superuser; the roles step hands it over.
        running.psql("CREATE DATABASE shop")
        apply_roles(running, PASSWORDS)
        yield running


def test_the_app_owns_its_database_and_is_no_superuser(server: Postgres):
    app = PASSWORDS["shop"]
    assert run_as(server, "shop", app, "CREATE TABLE orders (id int); INSERT INTO orders VALUES (1)").returncode == 0
    assert run_as(server, "shop", app, "SELECT rolsuper, rolcreaterole, rolcreatedb FROM pg_roles "
                  "WHERE rolname = current_user").stdout.strip() == "f|f|f"  # fmt: skip
    for forbidden in ("CREATE ROLE intruder", "CREATE DATABASE other", "COPY orders TO PROGRAM 'id'"):
        result = run_as(server, "shop", app, forbidden)
        refused = "permission denied" in result.stderr or "must be superuser" in result.stderr
        assert result.returncode != 0 and refused, (forbidden, result.stderr)


def test_the_exporter_reads_statistics_but_no_table(server: Postgres):
    run_as(server, "shop", PASSWORDS["shop"], "CREATE TABLE secrets (v text); INSERT INTO secrets VALUES ('x')")
    exporter = PASSWORDS[pg.EXPORTER_ROLE]
    stats = run_as(server, pg.EXPORTER_ROLE, exporter, "SELECT count(*) > 0 FROM pg_stat_activity WHERE query <> ''")
    assert stats.stdout.strip() == "t", stats.stderr
    denied = run_as(server, pg.EXPORTER_ROLE, exporter, "SELECT * FROM secrets")
    assert "permission denied" in denied.stderr


def test_the_backup_reads_every_table_and_writes_none(server: Postgres):
    run_as(server, "shop", PASSWORDS["shop"], "CREATE TABLE orders (id int); INSERT INTO orders VALUES (7)")
    backup = PASSWORDS[pg.BACKUP_ROLE]
    assert run_as(server, pg.BACKUP_ROLE, backup, "SELECT id FROM orders").stdout.strip() == "7"
    for forbidden in ("DELETE FROM orders", "CREATE ROLE intruder"):
        assert "permission denied" in run_as(server, pg.BACKUP_ROLE, backup, forbidden).stderr, forbidden


def test_running_the_step_again_changes_passwords_and_nothing_else(server: Postgres):
    rotated = {**PASSWORDS, "shop": "app-password-2"}
    apply_roles(server, rotated)
    apply_roles(server, rotated)
    assert run_as(server, "shop", "app-password-2", "SELECT 1").returncode == 0
    assert run_as(server, "shop", "app-password-1", "SELECT 1").returncode != 0
    roles = server.psql("SELECT string_agg(rolname, ',' ORDER BY rolname) FROM pg_roles WHERE rolname !~ '^pg_'")
    assert roles == ",".join(sorted([pg.ADMIN_ROLE, "shop", pg.EXPORTER_ROLE, pg.BACKUP_ROLE]))
    assert server.psql("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'shop'") == "shop"
