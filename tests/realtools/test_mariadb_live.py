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
from stores.mariadb.server import mariadb_tuning, minimum_memory_mb, render_keel_cnf
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
        password_file = tmp_path / "mariadb-password"
        password_file.write_text(server.password)
        plan = exporter_container(spec, "127.0.0.1", str(password_file), None)
        assert plan.command is not None
        shell, flag, script, argv0, *args = plan.command
        assert (shell, flag) == ("/bin/sh", "-c")
        # The image's shell is busybox; its binary is at /bin/mysqld_exporter.
        script = script.replace("/bin/mysqld_exporter", exporter_bin)
        args = [arg.replace(":3306", f":{server.port}") for arg in args]
        metrics, stderr = _exporter_metrics(script, argv0, args)
        # Without the flags that turn collectors off, the app's user lacks what they need.
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
