"""A real MariaDB server for tests (Debian's mariadb-server): unprivileged, in a temp dir, on
loopback, on a free port, started with the rendered keel.cnf and set up as the official image's
entrypoint sets up a new store.

mariadbd refuses to run as root, so as root the data directory belongs to `nobody` and the server
runs as that user (pg_helpers' rule); any other user runs it as itself. The entrypoint's first
start is reproduced: the database and the user with every privilege on it (as
docker-entrypoint.sh's docker_setup_db does, mariadb-docker 11.4), then keel's users step (the
exporter's and the backup job's users) as root over the socket. Clients connect over TCP with their
user's password, the way the app, the backup job and the exporter reach the store.
"""

from __future__ import annotations

import atexit
import functools
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pg_helpers import _as_pg_user, _own, free_port

from stores.mariadb.server import CLIENT_USERS, identifier, literal, users_sql
from tests.tool_requirements import require_tool

START_TIMEOUT_S = 60


@dataclass
class Mariadb:
    """A running server: TCP on 127.0.0.1:``port`` as ``user``/``password``; root on ``socket``."""

    port: int
    user: str
    password: str
    database: str
    socket: Path
    data_dir: Path
    log_file: Path
    pid: int
    client_passwords: dict[str, str]
    """The exporter's and the backup job's passwords, by user name (CLIENT_USERS)."""

    def sql(self, statement: str, database: str | None = None, *, root: bool = False, user: str | None = None) -> str:
        """Run SQL (as the store's user, or ``user``, over TCP; or as root on the socket); tab-separated rows."""
        result = self.run_sql(statement, database, root=root, user=user)
        if result.returncode != 0:
            raise AssertionError(f"mariadb failed ({result.returncode}): {result.stderr}")
        return result.stdout.strip()

    def run_sql(
        self, statement: str, database: str | None = None, *, root: bool = False, user: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        if root:
            connect = [f"--socket={self.socket}", "--user=root"]
            env = dict(os.environ)
        else:
            name = user or self.user
            connect = ["--protocol=tcp", "--host=127.0.0.1", f"--port={self.port}", f"--user={name}"]
            env = {**os.environ, "MYSQL_PWD": self.client_passwords[name] if user else self.password}
        return subprocess.run(
            [require_tool("mariadb"), "--no-defaults", *connect, f"--database={database or self.database}",
             "--batch", "--skip-column-names", f"--execute={statement}"],
            env=env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip

    def apply_users(self) -> None:
        """keel's users step: its SQL on the client's stdin, as root over the socket."""
        result = subprocess.run(
            [require_tool("mariadb"), "--no-defaults", f"--socket={self.socket}", "--user=root", "--batch"],
            input=users_sql(self.database, self.user, self.client_passwords),
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        if result.returncode != 0:
            raise AssertionError(f"the users step failed ({result.returncode}): {result.stderr}")

    def rss_kib(self) -> int:
        """The server's resident memory (VmRSS), in KiB."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS for mariadbd")


@contextmanager
def mariadb_server(
    config_text: str, *, database: str = "shop", user: str = "app", extra: tuple[str, ...] = ()
) -> Iterator[Mariadb]:
    """Initialise a data directory, start mariadbd with ``config_text`` as its only option file, and
    set up the database and user as the official image does. Only what a test machine differs in is
    overridden on the command line: the port, loopback only, and paths the unprivileged user owns."""
    require_tool("mariadb-install-db")
    mariadbd = require_tool("mariadbd")
    base = Path(tempfile.mkdtemp(prefix="keel-mariadb-"))
    os.chmod(base, 0o755)
    _own(base)
    try:
        yield from _run(base, mariadbd, config_text, database, user, extra)
    finally:
        shutil.rmtree(base, ignore_errors=True)


@functools.cache
def _installed_template() -> Path:
    """A data directory as mariadb-install-db leaves it, made once per test process: every server
    starts from a copy (install-db takes over a second, more on a loaded machine; a copy a fifth).
    install-db's output is the same for every server: no password, no name of the server's own."""
    base = Path(tempfile.mkdtemp(prefix="keel-mariadb-template-"))
    atexit.register(shutil.rmtree, base, True)
    os.chmod(base, 0o755)
    _own(base)
    install = subprocess.run(
        [require_tool("mariadb-install-db"), "--no-defaults", f"--datadir={base / 'data'}",
         "--auth-root-authentication-method=normal", "--skip-test-db"],
        capture_output=True, text=True, timeout=180, check=False, cwd=base, **_as_pg_user(),
    )  # fmt: skip
    if install.returncode != 0:
        raise AssertionError(f"mariadb-install-db failed: {install.stdout}{install.stderr}")
    return base / "data"


def _run(
    base: Path, mariadbd: str, config_text: str, database: str, user: str, extra: tuple[str, ...]
) -> Iterator[Mariadb]:
    data_dir = base / "data"
    # cp -a keeps the owner (the unprivileged user) and the modes.
    subprocess.run(["cp", "-a", str(_installed_template()), str(data_dir)], check=True, timeout=120)
    config_file = base / "keel.cnf"
    config_file.write_text(config_text)
    port = free_port()
    socket, log_file = base / "mysqld.sock", base / "error.log"
    # Started as the unprivileged user directly, so signals reach mariadbd.
    process = subprocess.Popen(
        [mariadbd, f"--defaults-file={config_file}", f"--datadir={data_dir}", f"--socket={socket}",
         f"--pid-file={base / 'mysqld.pid'}", f"--port={port}", "--bind-address=127.0.0.1",
         f"--log-error={log_file}", "--innodb-flush-log-at-trx-commit=2", *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True, cwd=base,
        **_as_pg_user(),
    )  # fmt: skip
    password = secrets.token_urlsafe(18)
    clients = {name: secrets.token_urlsafe(18) for name in CLIENT_USERS.values()}
    server = Mariadb(port, user, password, database, socket, data_dir, log_file, process.pid, clients)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            ping = subprocess.run(
                [require_tool("mariadb"), "--no-defaults", f"--socket={socket}", "--user=root", "--execute=SELECT 1"],
                capture_output=True, timeout=10, check=False,
            )  # fmt: skip
            if ping.returncode == 0:
                break
            if process.poll() is not None or time.monotonic() > deadline:
                log = log_file.read_text() if log_file.exists() else ""
                raise AssertionError(f"mariadbd did not start:\n{log}")
            time.sleep(0.2)
        # docker-entrypoint.sh's docker_setup_db, then keel's users step once the task is healthy.
        server.sql(
            f"CREATE DATABASE {identifier(database)}; "
            f"CREATE USER {literal(user)}@'%' IDENTIFIED BY {literal(password)}; "
            f"GRANT ALL ON {identifier(database, grant=True)}.* TO {literal(user)}@'%';",
            database="mysql",
            root=True,
        )
        server.apply_users()
        yield server
    finally:
        _stop(process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    # SIGTERM is mariadbd's normal shutdown.
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
