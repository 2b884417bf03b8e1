"""A PostgreSQL password rotated without a gap (stores/postgres/model.py ``logins``), against a real
server: the roles step's SQL (stores/postgres/server.py, roles_sql) for each config a user deploys,
run twice each (the step is idempotent), with a session opened by the old credential held open
throughout, and new connections made with every credential after each step."""

from __future__ import annotations

import os
import secrets
import select
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pg_helpers import Postgres, postgres_server

from config.models import Resources
from stores.postgres import server as pg
from stores.postgres.model import PostgresSpec
from stores.postgres.server import render_postgresql_conf, roles_sql
from tests.tool_requirements import require_tool

SPEC = PostgresSpec(kind="postgres", user="shop", database="shop", resources=Resources(memory_mb=256))
CLIENTS = {pg.EXPORTER_ROLE: "exporter-password-1", pg.BACKUP_ROLE: "backup-password-1"}
SESSION_TIMEOUT_S = 30
REFUSED = ("password authentication failed", "is not permitted to log in")


def spec(*logins: str) -> PostgresSpec:
    # Validated as a user's config is.
    return PostgresSpec.model_validate({**SPEC.model_dump(), "logins": list(logins)})


def apply_roles(server: Postgres, logins: tuple[str, ...], passwords: dict[str, str]) -> None:
    """As the roles step does on a deploy of ``logins``: the SQL on psql's stdin, as the superuser,
    with the passwords of the roles that may log in; twice, as a deploy that changes nothing else
    may run it again."""
    for _ in range(2):
        result = subprocess.run(
            [require_tool("psql"), "-X", "--quiet", "-U", server.user, "-d", "postgres"],
            input=roles_sql(spec(*logins), {**passwords, **CLIENTS}), env=server.env(),
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert result.stdout == "", result.stdout


def connect(server: Postgres, role: str, password: str, sql: str) -> subprocess.CompletedProcess[str]:
    """A new connection, as an app task started now would make."""
    env = {**os.environ, "PGPASSWORD": password, "PGHOST": "127.0.0.1", "PGPORT": str(server.port)}
    return subprocess.run(
        [require_tool("psql"), "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-U", role, "-d", "shop", "-c", sql],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def logs_in(server: Postgres, role: str, password: str) -> bool:
    result = connect(server, role, password, "SELECT current_user")
    if result.returncode != 0:
        assert any(reason in result.stderr for reason in REFUSED), result.stderr
        return False
    # Sessions of a login act as the owner.
    assert result.stdout.strip() == "shop", result.stdout
    return True


class SessionEndedError(Exception):
    """psql exited: the server ended the connection (what psql printed is the message)."""


class Session:
    """One connection held open, as an app task's pool holds it across a deploy."""

    def __init__(self, server: Postgres, role: str, password: str) -> None:
        env = {**os.environ, "PGPASSWORD": password, "PGHOST": "127.0.0.1", "PGPORT": str(server.port)}
        self.process = subprocess.Popen(
            [require_tool("psql"), "-X", "-q", "-t", "-A", "-U", role, "-d", "shop"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
        self.buffer = b""
        assert self.query("SELECT 1") == "1"
        self.pid = self.query("SELECT pg_backend_pid()")

    def query(self, sql: str) -> str:
        """The output of ``sql`` on this connection (errors included, as psql prints them)."""
        assert self.process.stdin is not None and self.process.stdout is not None
        marker = f"done-{secrets.token_hex(4)}"
        self.process.stdin.write(f"{sql};\n\\echo {marker}\n".encode())
        self.process.stdin.flush()
        deadline = time.monotonic() + SESSION_TIMEOUT_S
        while marker.encode() not in self.buffer:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no answer to {sql!r}: {self.buffer!r}"
            readable, _, _ = select.select([self.process.stdout], [], [], remaining)
            if readable:
                chunk = os.read(self.process.stdout.fileno(), 65536)
                if not chunk:
                    raise SessionEndedError(self.buffer.decode())
                self.buffer += chunk
        output, _, self.buffer = self.buffer.partition(marker.encode() + b"\n")
        return output.decode().strip()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Postgres]:
    with postgres_server(tmp_path, render_postgresql_conf(SPEC), user=pg.ADMIN_ROLE) as running:
        running.psql("CREATE DATABASE shop")
        yield running


@pytest.fixture
def sessions() -> Iterator[list[Session]]:
    opened: list[Session] = []
    yield opened
    for session in opened:
        session.close()


def test_a_rotation_from_a_to_b_never_refuses_a_credential_in_use(server: Postgres, sessions: list[Session]):
    a, b = "password-of-a-1", "password-of-b-1"
    apply_roles(server, ("a",), {"shop_a": a})
    assert not logs_in(server, "shop_b", b)
    old = Session(server, "shop_a", a)
    sessions.append(old)
    assert old.query("CREATE TABLE orders (id int); INSERT INTO orders VALUES (1); SELECT count(*) FROM orders") == "1"

    # Step 1, logins [a, b]: b may log in; the apps still hold a.
    apply_roles(server, ("a", "b"), {"shop_a": a, "shop_b": b})
    assert old.query("INSERT INTO orders VALUES (2); SELECT count(*) FROM orders") == "2"
    assert logs_in(server, "shop_a", a) and logs_in(server, "shop_b", b)
    assert not logs_in(server, "shop_b", "password-of-b-0")

    # Step 2, logins [b, a]: the apps roll to b; old tasks keep a, open and new connections alike.
    apply_roles(server, ("b", "a"), {"shop_b": b, "shop_a": a})
    new = Session(server, "shop_b", b)
    sessions.append(new)
    assert old.query("INSERT INTO orders VALUES (3); SELECT count(*) FROM orders") == "3"
    assert logs_in(server, "shop_a", a) and logs_in(server, "shop_b", b)
    # What either login made, the other changes as its owner does.
    assert new.query("ALTER TABLE orders ADD COLUMN note text; INSERT INTO orders VALUES (4, 'b'); "
                     "SELECT count(*) FROM orders") == "4"  # fmt: skip
    assert new.query("CREATE TABLE invoices (id int); SELECT pg_get_userbyid(relowner) FROM pg_class "
                     "WHERE relname = 'invoices'") == "shop"  # fmt: skip
    assert old.query("INSERT INTO invoices VALUES (1); ALTER TABLE invoices ADD COLUMN total int; "
                     "SELECT count(*) FROM invoices") == "1"  # fmt: skip

    # Step 3, logins [b]: a is refused and its sessions end; b goes on.
    apply_roles(server, ("b",), {"shop_b": b})
    # The step returns once a's sessions are gone.
    assert server.psql(f"SELECT count(*) FROM pg_stat_activity WHERE pid = {old.pid}") == "0"
    assert not logs_in(server, "shop_a", a)
    assert logs_in(server, "shop_b", b)
    assert new.query("SELECT count(*) FROM orders") == "4"
    with pytest.raises(SessionEndedError, match="terminating connection due to administrator command"):
        old.query("SELECT 1")
    assert server.psql("SELECT rolcanlogin::text || coalesce(rolpassword, 'none') FROM pg_authid "
                       "WHERE rolname = 'shop_a'") == "falsenone"  # fmt: skip

    # The next rotation: a comes back with a new password only.
    a2 = "password-of-a-2"
    apply_roles(server, ("b", "a"), {"shop_b": b, "shop_a": a2})
    assert logs_in(server, "shop_a", a2) and not logs_in(server, "shop_a", a)


def test_what_a_pool_runs_between_clients_keeps_a_login_acting_as_the_owner(server: Postgres):
    a, b = "password-of-a-1", "password-of-b-1"
    apply_roles(server, ("a", "b"), {"shop_a": a, "shop_b": b})
    env = {**os.environ, "PGPASSWORD": a, "PGHOST": "127.0.0.1", "PGPORT": str(server.port)}
    resets = ("DISCARD ALL", "RESET ALL", "RESET ROLE", "SET SESSION AUTHORIZATION DEFAULT")
    commands = [arg for reset in resets for arg in ("-c", reset, "-c", "SELECT current_user")]
    result = subprocess.run(
        [require_tool("psql"), "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-U", "shop_a", "-d", "shop",
         *commands],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["shop"] * len(resets)
    # Only asking for it acts as the login itself.
    assert connect(server, "shop_a", a, "SET ROLE NONE; SELECT current_user").stdout.split() == ["shop_a"]


def test_the_backup_drill_restores_a_database_the_logins_made(server: Postgres, tmp_path: Path):
    """As the drill does (stores/postgres/templates/backup: pg_dump, then pg_restore into a scratch
    database, both as the backup role): nothing the roles step leaves in the database needs more."""
    a = "password-of-a-1"
    apply_roles(server, ("a",), {"shop_a": a})
    made = connect(
        server, "shop_a", a, "CREATE TABLE orders (id serial PRIMARY KEY); INSERT INTO orders DEFAULT VALUES"
    )
    assert made.returncode == 0, made.stderr
    env = {**os.environ, "PGPASSWORD": CLIENTS[pg.BACKUP_ROLE], "PGHOST": "127.0.0.1", "PGPORT": str(server.port)}
    dump = tmp_path / "shop.pgdump"
    dumped = subprocess.run(
        [require_tool("pg_dump"), "--format=custom", "--username", pg.BACKUP_ROLE, "--dbname", "shop", "--file",
         str(dump)], env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert dumped.returncode == 0, dumped.stderr
    scratch = connect(server, pg.BACKUP_ROLE, CLIENTS[pg.BACKUP_ROLE], "CREATE DATABASE shop_keel_drill")
    assert scratch.returncode == 0, scratch.stderr
    restored = subprocess.run(
        [require_tool("pg_restore"), "--username", pg.BACKUP_ROLE, "--dbname", "shop_keel_drill", "--clean",
         "--if-exists", "--no-owner", "--single-transaction", "--exit-on-error", str(dump)],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert restored.returncode == 0, restored.stderr
    assert server.psql("SELECT count(*) FROM orders", database="shop_keel_drill") == "1"


def test_moving_from_the_owner_to_a_login_keeps_the_owner_until_the_last_step(
    server: Postgres, sessions: list[Session]
):
    owner, a = "password-of-owner-1", "password-of-a-1"
    apply_roles(server, ("owner",), {"shop": owner})
    assert server.psql("SELECT count(*) FROM pg_roles WHERE rolname IN ('shop_a', 'shop_b')") == "0"
    old = Session(server, "shop", owner)
    sessions.append(old)
    old.query("CREATE TABLE users (id int)")

    apply_roles(server, ("a", "owner"), {"shop_a": a, "shop": owner})
    assert logs_in(server, "shop", owner) and logs_in(server, "shop_a", a)
    assert not logs_in(server, "shop_b", "any-password")
    assert connect(server, "shop_a", a, "INSERT INTO users VALUES (1); DROP TABLE users").returncode == 0
    assert old.query("SELECT current_user") == "shop"

    apply_roles(server, ("a",), {"shop_a": a})
    assert not logs_in(server, "shop", owner)
    assert logs_in(server, "shop_a", a)
    # The owner still owns the database: a's sessions act as it.
    assert server.psql("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'shop'") == "shop"

    # And back: the logins may not log in once the owner alone does.
    apply_roles(server, ("owner",), {"shop": "password-of-owner-2"})
    assert not logs_in(server, "shop_a", a)
    assert logs_in(server, "shop", "password-of-owner-2")


def test_a_login_is_refused_without_its_password():
    with pytest.raises(ValueError, match="shop_b"):
        roles_sql(spec("a", "b"), {"shop_a": "x", **CLIENTS})
