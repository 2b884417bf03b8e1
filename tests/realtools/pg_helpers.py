"""Real PostgreSQL and Redis servers for tests: unprivileged, in a temp dir, on loopback, free port.

PostgreSQL refuses to run as root, so as root the cluster belongs to `nobody` and initdb and the
server run as that user; any other user runs them as itself. Clients (psql, pg_dump, pg_restore)
run as the test's own user over TCP with a password, the way the backup job reaches the store.
The binaries are found through tests/tool_requirements.py: a machine without them skips.
"""

from __future__ import annotations

import atexit
import functools
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.tool_requirements import require_tool

PG_USER = "nobody"
"""Who runs the cluster when the tests run as root."""
START_TIMEOUT_S = 30


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_pg_user() -> dict[str, Any]:
    """subprocess arguments that drop root to PG_USER; none for a user who is not root."""
    if os.geteuid() != 0:
        return {}
    return {"user": PG_USER, "group": pwd.getpwnam(PG_USER).pw_gid}


def _own(path: Path, user: str = PG_USER) -> None:
    if os.geteuid() == 0:
        shutil.chown(path, user=user)


@dataclass
class Postgres:
    """A running server: connect with host 127.0.0.1, ``port``, user ``user`` and ``password``."""

    port: int
    user: str
    password: str
    password_file: Path
    data_dir: Path
    log_file: Path

    def env(self) -> dict[str, str]:
        return {**os.environ, "PGPASSWORD": self.password, "PGHOST": "127.0.0.1", "PGPORT": str(self.port)}

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run SQL; return the unaligned, tuples-only output."""
        result = subprocess.run(
            [require_tool("psql"), "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-U", self.user, "-d", database,
             "-c", sql],
            env=self.env(), capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        if result.returncode != 0:
            raise AssertionError(f"psql failed ({result.returncode}): {result.stderr}")
        return result.stdout.strip()


@contextmanager
def postgres_server(
    tmp_path: Path,
    config_text: str,
    *,
    extra: tuple[str, ...] = (),
    user: str = "app",
    server_env: Callable[[Path, Path, int], dict[str, str]] | None = None,
    data_dir: Path | None = None,
) -> Iterator[Postgres]:
    """initdb a cluster with scram passwords, start it with ``config_text`` as its config_file.

    Only what a test machine differs in is overridden on the command line: the port, loopback
    only, and a socket directory the unprivileged user may write. ``server_env(data_dir,
    socket_dir, port)`` gives the server's environment (what its archive_command sees); with
    ``data_dir`` (an existing cluster, e.g. a restored one) there is no initdb.
    """
    require_tool("initdb")
    require_tool("postgres")
    # pytest's tmp_path sits below a directory only root may enter: the cluster lives beside it.
    base = Path(tempfile.mkdtemp(prefix="keel-pg-"))
    os.chmod(base, 0o755)
    _own(base)
    try:
        yield from _run_postgres(tmp_path, base, config_text, extra, user, server_env, data_dir)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _run_postgres(
    tmp_path: Path,
    base: Path,
    config_text: str,
    extra: tuple[str, ...],
    user: str,
    server_env: Callable[[Path, Path, int], dict[str, str]] | None,
    existing: Path | None,
) -> Iterator[Postgres]:
    password = secrets.token_urlsafe(18)
    password_file = tmp_path / "pg-password"
    if existing is not None:
        password = password_file.read_text()
    password_file.write_text(password)
    data_dir = existing or base / "data"
    if existing is None:
        # cp -a keeps the owner (PG_USER) and the data directory's 0700.
        subprocess.run(["cp", "-a", str(_initdb_template(user)), str(data_dir)], check=True, timeout=120)
    config_file = base / "postgresql.conf"
    config_file.write_text(config_text)
    _own(config_file)
    port = free_port()
    log_file = base / "server.log"
    log = log_file.open("wb")
    # Started as the unprivileged user directly (not through runuser), so signals reach postgres.
    process = subprocess.Popen(
        [require_tool("postgres"), "-D", str(data_dir),
         "-c", f"config_file={config_file}", "-c", f"port={port}", "-c", "listen_addresses=127.0.0.1",
         "-c", f"unix_socket_directories={base}", "-c", "fsync=off", *extra],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=base,
        env=None if server_env is None else {**os.environ, **server_env(data_dir, base, port)}, **_as_pg_user(),
    )  # fmt: skip
    server = Postgres(port, user, password, password_file, data_dir, log_file)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            ready = subprocess.run(
                [require_tool("pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(port), "-U", user, "-d", "postgres"],
                check=False, timeout=10,
            )  # fmt: skip
            if ready.returncode == 0:
                break
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"postgres did not start:\n{log_file.read_text()}")
            time.sleep(0.2)
        if existing is None:
            _set_password(server)
        yield server
    finally:
        _stop(process)
        log.close()


TEMPLATE_PASSWORD = secrets.token_urlsafe(18)


@functools.cache
def _initdb_template(user: str) -> Path:
    """A fresh cluster whose superuser is ``user`` (password TEMPLATE_PASSWORD), made once per test
    process: initdb costs about a second (several on a loaded machine), a copy of its 40 MB a tenth.
    Each server starts from a copy and gets a password of its own before the test sees it."""
    base = Path(tempfile.mkdtemp(prefix="keel-pg-template-"))
    atexit.register(shutil.rmtree, base, True)
    os.chmod(base, 0o755)
    _own(base)
    password_file = base / "initpw"
    password_file.write_text(TEMPLATE_PASSWORD)
    _own(password_file)
    initdb = subprocess.run(
        [require_tool("initdb"), "-D", str(base / "data"), "-U", user,
         "--pwfile", str(password_file), "-A", "scram-sha-256", "-E", "UTF8", "--locale", "C.UTF-8", "--no-sync"],
        check=False, capture_output=True, text=True, timeout=120, cwd=base, **_as_pg_user(),
    )  # fmt: skip
    if initdb.returncode != 0:
        raise AssertionError(f"initdb failed: {initdb.stderr}")
    return base / "data"


def _set_password(server: Postgres) -> None:
    """The copied cluster's superuser takes the server's own password (a SCRAM verifier, as initdb's)."""
    template = Postgres(server.port, server.user, TEMPLATE_PASSWORD, server.password_file, server.data_dir,
                        server.log_file)  # fmt: skip
    # token_urlsafe: letters, digits, "-" and "_" only, nothing to escape in a literal.
    template.psql(f"ALTER ROLE \"{server.user}\" PASSWORD '{server.password}'")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    # SIGINT is PostgreSQL's fast shutdown.
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


@dataclass
class Redis:
    port: int
    password: str | None
    data_dir: Path
    log_file: Path

    def cli(self, *args: str, auth: bool = True) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ)
        env.pop("REDISCLI_AUTH", None)
        if auth and self.password:
            env["REDISCLI_AUTH"] = self.password
        return subprocess.run(
            [require_tool("redis-cli"), "-h", "127.0.0.1", "-p", str(self.port), *args],
            env=env, capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip


@contextmanager
def redis_server(
    tmp_path: Path,
    render: Callable[[str], str],
    *,
    acl_text: str | None,
    password: str | None,
    data_dir: Path | None = None,
) -> Iterator[Redis]:
    """Start redis-server with the config ``render(data_dir)`` returns; the port, bind address and
    ACL path are overridden on the command line (later arguments win over the file)."""
    redis = require_tool("redis-server")
    base = tmp_path / f"redis-{secrets.token_hex(4)}"
    base.mkdir()
    data = data_dir or base / "data"
    data.mkdir(exist_ok=True)
    config_file = base / "redis.conf"
    config_file.write_text(render(str(data)))
    args = [redis, str(config_file), "--port", str(port := free_port()), "--bind", "127.0.0.1"]
    if acl_text is not None:
        acl_file = base / "users.acl"
        acl_file.write_text(acl_text)
        args += ["--aclfile", str(acl_file)]
    log_file = base / "redis.log"
    log = log_file.open("wb")
    process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    server = Redis(port, password, data, log_file)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if server.cli("ping").stdout.strip() == "PONG":
                break
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"redis-server did not start:\n{log_file.read_text()}")
            time.sleep(0.1)
        yield server
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        log.close()
