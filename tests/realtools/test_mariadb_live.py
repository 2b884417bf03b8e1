"""The rendered keel.cnf run by a real MariaDB (Debian's 10.11; the image is 11.4, whose options
keel.cnf uses are the same), and mysqld_exporter 0.17.2 (the image's version) run with the flags the
kind renders: the tuning is what the server runs, and every metric the dashboard and the alert
rule read is exported by the user the exporter signs in as."""

from __future__ import annotations

import re
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from mariadb_helpers import Mariadb, mariadb_server
from pg_helpers import free_port

from config.base import Resources
from render.dashboards import expressions
from stores.mariadb.kind import MariadbKind, exporter_container
from stores.mariadb.model import MariadbSpec
from stores.mariadb.server import (
    BACKUP_USER,
    DRILL_SUFFIX,
    EXPORTER_USER,
    ROOT_PASSWORD_FILE,
    SOCKET,
    identifier,
    mariadb_tuning,
    minimum_memory_mb,
    render_keel_cnf,
    users_script,
    users_sql,
)
from tests.tool_requirements import require_tool

pytestmark = pytest.mark.requires_tool("mariadbd", "mariadb-install-db", "mariadb")

MIB = 1024 * 1024
EXPORTER_START_S = 30


def _variables(server: Mariadb, *names: str) -> dict[str, str]:
    quoted = ", ".join(f"'{name}'" for name in names)
    rows = server.sql(f"SHOW GLOBAL VARIABLES WHERE Variable_name IN ({quoted})")
    return dict(line.split("\t", 1) for line in rows.splitlines())


@pytest.mark.parametrize(("memory_mb", "connections"), [(1024, 100), (512, 60)])
def test_server_runs_the_memory_tuning_of_its_limit(memory_mb: int, connections: int) -> None:
    tuning = mariadb_tuning(memory_mb, connections)
    with mariadb_server(render_keel_cnf(memory_mb, connections)) as server:
        shown = _variables(
            server, "innodb_buffer_pool_size", "innodb_log_file_size", "innodb_log_buffer_size",
            "aria_pagecache_buffer_size", "key_buffer_size", "tmp_table_size", "max_heap_table_size",
            "max_connections", "performance_schema", "skip_name_resolve", "character_set_server",
            "innodb_flush_log_at_trx_commit",
        )  # fmt: skip
        # The test's command line overrides only the flush (speed); the file says 1.
        assert shown.pop("innodb_flush_log_at_trx_commit") == "2"
        assert shown == {
            "innodb_buffer_pool_size": str(tuning.buffer_pool_mb * MIB),
            "innodb_log_file_size": str(tuning.log_file_mb * MIB),
            "innodb_log_buffer_size": str(tuning.log_buffer_mb * MIB),
            "aria_pagecache_buffer_size": str(tuning.aria_pagecache_mb * MIB),
            "key_buffer_size": str(tuning.key_buffer_mb * MIB),
            "tmp_table_size": str(tuning.tmp_table_mb * MIB),
            "max_heap_table_size": str(tuning.tmp_table_mb * MIB),
            "max_connections": str(connections),
            "performance_schema": "OFF",
            "skip_name_resolve": "ON",
            "character_set_server": "utf8mb4",
        }
        # Well inside its limit once started (the buffer pool is allocated, not yet touched).
        assert server.rss_kib() < memory_mb * 1024


def test_the_least_limit_the_config_accepts_starts_a_server() -> None:
    connections = 50
    memory_mb = minimum_memory_mb(connections)
    spec = MariadbSpec(kind="mariadb", resources=Resources(memory_mb=memory_mb), max_connections=connections)
    assert MariadbKind().problems(spec) == []
    with mariadb_server(render_keel_cnf(memory_mb, connections)) as server:
        assert int(_variables(server, "innodb_buffer_pool_size")["innodb_buffer_pool_size"]) >= 32 * MIB
        assert server.rss_kib() < memory_mb * 1024


def _metric_names(expr: str) -> set[str]:
    return {name for name in re.findall(r"\b(mysql_[a-z0-9_]+)", expr)}


def _scrape(url: str, deadline: float) -> str:
    while True:
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                return str(response.read().decode())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _exporter_metrics(script: str, argv0: str, args: list[str]) -> tuple[str, str]:
    """Runs the exporter's shell command under busybox on a free loopback port; its /metrics and stderr."""
    port = free_port()
    process = subprocess.Popen(
        [require_tool("busybox"), "sh", "-c", script, argv0, *args, f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + EXPORTER_START_S
        exporter = MariadbKind().exporter()
        assert "/metrics" in _scrape(f"http://127.0.0.1:{port}{exporter.health_path}", deadline)
        metrics = _scrape(f"http://127.0.0.1:{port}/metrics", deadline)
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=30)
    return metrics, stderr


def _failed_collectors(metrics: str) -> list[str]:
    assert re.search(r"^mysql_exporter_collector_success\{", metrics, re.M), "no collector reports"
    return re.findall(r'^mysql_exporter_collector_success\{collector="([^"]+)"\} 0$', metrics, re.M)


def test_exporter_with_the_rendered_flags_exports_what_the_dashboard_and_alerts_read(tmp_path: Path) -> None:
    exporter_bin = require_tool("mysqld_exporter")
    require_tool("busybox")
    exporter = MariadbKind().exporter()
    spec = MariadbSpec(kind="mariadb", database="shop", user="app", resources=Resources(memory_mb=512))
    with mariadb_server(render_keel_cnf(512, 100), database="shop", user="app") as server:
        # The exporter signs in as its own user (the kind's client), with its own password file.
        assert MariadbKind().clients(spec)["exporter"] == EXPORTER_USER
        password_file = tmp_path / "mariadb-exporter-password"
        password_file.write_text(server.client_passwords[EXPORTER_USER])
        plan = exporter_container(spec, "127.0.0.1", str(password_file), EXPORTER_USER)
        assert plan.command is not None and f"--mysqld.username={EXPORTER_USER}" in plan.command
        assert plan.command is not None
        shell, flag, script, argv0, *args = plan.command
        assert (shell, flag) == ("/bin/sh", "-c")
        # The image's shell is busybox; its binary is at /bin/mysqld_exporter.
        script = script.replace("/bin/mysqld_exporter", exporter_bin)
        args = [arg.replace(":3306", f":{server.port}") for arg in args]
        metrics, stderr = _exporter_metrics(script, argv0, args)
        # Without the flags that turn collectors off, replication's fails: the exporter may not see it.
        default_metrics, _ = _exporter_metrics(script, argv0, [a for a in args if not a.startswith("--no-collect.")])
    assert re.search(r"^mysql_up 1$", metrics, re.M), stderr
    # No collector the kind leaves on fails (each failure would repeat every scrape).
    assert _failed_collectors(metrics) == [], stderr
    assert "level=error" not in stderr.lower(), stderr
    assert _failed_collectors(default_metrics) != []
    exported = set(re.findall(r"^(mysql_[a-z0-9_]+)[{ ]", metrics, re.M))
    read = {name for board in exporter.dashboards for expr in expressions(board) for name in _metric_names(expr)}
    read |= {name for rule in exporter.alert_rules for name in _metric_names(rule.expr)}
    assert len(read) > 10
    assert read - exported == set()


def _denied(server: Mariadb, statement: str, user: str | None = None, database: str | None = None) -> str:
    result = server.run_sql(statement, database, user=user)
    assert result.returncode != 0, f"{user or server.user} may run {statement!r}"
    return result.stderr


def test_each_client_may_do_only_its_own_part() -> None:
    with mariadb_server(render_keel_cnf(256, 50), database="shop", user="app") as server:
        server.sql("CREATE TABLE orders (id int PRIMARY KEY); INSERT INTO orders VALUES (1)")
        # The app: its database, and nothing of the server's users or the drill's database.
        assert "command denied to user 'app'" in _denied(server, "SELECT * FROM mysql.user")
        assert "Access denied for user 'app'" in _denied(server, f"CREATE DATABASE shop{DRILL_SUFFIX}")
        # The exporter: the server's state, no table of the app.
        # (It may not even select the app's database: its sessions use information_schema.)
        assert "Access denied for user 'keel_exporter'" in _denied(server, "SELECT 1", EXPORTER_USER)
        info = "information_schema"
        assert "InnoDB" in server.sql("SHOW ENGINE INNODB STATUS", info, user=EXPORTER_USER)
        assert server.sql("SELECT count(*) > 0 FROM INNODB_METRICS", info, user=EXPORTER_USER) == "1"
        assert "command denied to user 'keel_exporter'" in _denied(
            server, "SELECT * FROM shop.orders", EXPORTER_USER, info
        )
        assert "command denied" in _denied(server, "SELECT * FROM mysql.user", EXPORTER_USER, info)
        # The backup: reads the database, writes only the drill's.
        assert server.sql("SELECT id FROM orders", user=BACKUP_USER) == "1"
        assert "command denied to user 'keel_backup'" in _denied(server, "DELETE FROM orders", BACKUP_USER)
        assert "command denied" in _denied(server, "SELECT * FROM mysql.user", BACKUP_USER)
        scratch = identifier(f"shop{DRILL_SUFFIX}")
        server.sql(f"CREATE DATABASE {scratch}; CREATE TABLE {scratch}.t (id int); DROP DATABASE {scratch}",
                   user=BACKUP_USER)  # fmt: skip
        assert "Access denied for user 'keel_backup'" in _denied(server, "CREATE DATABASE other", BACKUP_USER)


def test_the_users_step_runs_again_and_narrows_a_store_made_before_it() -> None:
    with mariadb_server(render_keel_cnf(256, 50), database="shop", user="app") as server:
        # What keel.sql granted the app's user before the backup had a user of its own.
        server.sql(f"GRANT ALL PRIVILEGES ON {identifier('shop' + DRILL_SUFFIX, grant=True)}.* TO 'app'@'%'", root=True)
        server.client_passwords[EXPORTER_USER] = "a-new-exporter-password"
        server.apply_users()
        server.apply_users()
        assert "Access denied for user 'app'" in _denied(server, f"CREATE DATABASE shop{DRILL_SUFFIX}")
        assert server.sql("SELECT current_user()", "information_schema", user=EXPORTER_USER) == "keel_exporter@%"
        limits = server.sql("SELECT user, max_user_connections FROM mysql.user WHERE user LIKE 'keel%' ORDER BY user",
                            root=True)  # fmt: skip
        assert limits.splitlines() == ["keel_backup\t4", "keel_exporter\t3"]


# Stands in for the host's docker CLI: `ps` finds one task; `exec -i ID sh -c SCRIPT` runs SCRIPT
# here, with the task's secret file and socket at the test's paths.
FAKE_DOCKER_EXEC = """#!/bin/sh
case "$1" in
  ps) echo 0123456789ab; exit 0 ;;
  exec) ;;
  *) echo "unexpected: docker $*" >&2; exit 1 ;;
esac
while [ $# -gt 0 ]; do
  if [ "$1" = -c ]; then script=$2; break; fi
  shift
done
script=$(printf '%s' "$script" | sed -e "s#{secret}#$ROOT_PASSWORD_FILE#g" -e "s#{socket}#$SOCKET#g")
exec sh -c "$script"
"""


def test_the_users_script_applies_the_users_as_root_over_the_socket(tmp_path: Path) -> None:
    require_tool("busybox")
    with mariadb_server(render_keel_cnf(256, 50), database="shop", user="app") as server:
        server.sql("ALTER USER 'root'@'localhost' IDENTIFIED BY 'root-secret'", root=True)
        root_password = tmp_path / "mariadb-root-password"
        root_password.write_text("root-secret")
        fake = tmp_path / "bin"
        fake.mkdir()
        docker = fake / "docker"
        docker.write_text(FAKE_DOCKER_EXEC.replace("{secret}", ROOT_PASSWORD_FILE).replace("{socket}", SOCKET))
        docker.chmod(0o755)
        server.client_passwords[BACKUP_USER] = "a-new-backup-password"
        env = {
            "PATH": f"{fake}:{Path(require_tool('mariadb')).parent}:/usr/bin:/bin",
            "ROOT_PASSWORD_FILE": str(root_password),
            "SOCKET": str(server.socket),
        }
        sql = users_sql("shop", "app", server.client_passwords)
        script = users_script("shop-orders")
        applied = subprocess.run(
            [require_tool("busybox"), "sh", "-c", script], input=sql, env=env,
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert applied.returncode == 0, applied.stderr
        assert applied.stdout.strip().endswith("users of shop-orders are in place")
        assert server.sql("SELECT current_user()", user=BACKUP_USER) == "keel_backup@%"
        # A wrong root password stops the deploy.
        root_password.write_text("wrong")
        refused = subprocess.run(
            [require_tool("busybox"), "sh", "-c", script], input=sql, env=env,
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert refused.returncode != 0 and "Access denied for user 'root'@'localhost'" in refused.stderr
