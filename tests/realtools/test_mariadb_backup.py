"""MariaDB backups through the rendered scripts, against a real MariaDB (Debian's mariadb-server,
started with the rendered keel.cnf) and restic 0.18 on the S3 server on loopback
(tests/realtools/s3_harness.py), in the job image's busybox userland: mariadb-dump streamed into
restic as the store's backup user, a failing dump that leaves no snapshot, a restore after the data
is gone, and the drill (whose scratch database is the only one the backup user writes)."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from backup_helpers import SNAPSHOT_HOST, backup_world, busybox_userland
from mariadb_helpers import Mariadb, mariadb_server
from s3_harness import S3Server

from render.backup import BackupSpec
from stores.mariadb.kind import MariadbTarget
from stores.mariadb.server import BACKUP_USER, render_keel_cnf

pytestmark = pytest.mark.requires_tool("restic", "mariadbd", "mariadb-install-db", "mariadb", "mariadb-dump", "busybox")

SHOP = """
CREATE TABLE customers (id int PRIMARY KEY, name varchar(100) NOT NULL) ENGINE=InnoDB;
CREATE TABLE orders (id bigint PRIMARY KEY, customer int NOT NULL, total decimal(10, 2), note blob,
                     created datetime NOT NULL, KEY orders_created (created),
                     CONSTRAINT orders_customer FOREIGN KEY (customer) REFERENCES customers (id)) ENGINE=InnoDB;
CREATE TABLE audit (id int AUTO_INCREMENT PRIMARY KEY, order_id bigint NOT NULL) ENGINE=InnoDB;
CREATE VIEW big_orders AS SELECT * FROM orders WHERE total > 100;
CREATE TRIGGER orders_audit AFTER INSERT ON orders FOR EACH ROW INSERT INTO audit (order_id) VALUES (NEW.id);
CREATE FUNCTION with_tax(amount decimal(10, 2)) RETURNS decimal(10, 2) DETERMINISTIC RETURN amount * 1.19;
CREATE EVENT purge_audit ON SCHEDULE EVERY 1 DAY DISABLE DO DELETE FROM audit WHERE order_id < 0;
INSERT INTO customers SELECT seq, CONCAT('customer ', seq) FROM seq_1_to_97;
INSERT INTO orders SELECT seq, 1 + seq % 97, (seq % 1000) / 7, UNHEX(MD5(seq)),
  '2026-01-01' + INTERVAL seq MINUTE FROM seq_1_to_20000;
"""
FINGERPRINT = (
    "SELECT CONCAT(COUNT(*), ' ', MD5(GROUP_CONCAT(id, ':', customer, ':', total, ':', HEX(note), ':', created "
    "ORDER BY id SEPARATOR ','))) FROM orders"
)


def _spec(target: MariadbTarget) -> BackupSpec:
    return BackupSpec(
        repository="s3:https://unused.example.com/bucket",
        snapshot_host=SNAPSHOT_HOST,
        schedule="0 * * * *",
        targets=(target,),
    )


def _past(timestamp: float) -> None:
    """Returns once the clock's whole seconds are past ``timestamp`` (the metrics' resolution), so
    a run that wrongly rewrote the last success would show a newer one."""
    deadline = time.monotonic() + 5
    while time.time() < int(timestamp) + 1:
        assert time.monotonic() < deadline, "the clock did not move"
        time.sleep(0.05)


def _fill(server: Mariadb) -> str:
    # Long GROUP_CONCAT results are cut at group_concat_max_len (1 MiB by default).
    server.sql("SET GLOBAL group_concat_max_len = 67108864", root=True)
    server.sql(SHOP)
    return server.sql(FINGERPRINT)


def test_mariadb_dump_backup_restores_after_the_data_is_gone_and_drills(
    tmp_path: Path, s3: S3Server, restic_template: Path
) -> None:
    with mariadb_server(render_keel_cnf(512, 100), database="shop", user="app") as server:
        before = _fill(server)
        # The job logs in as the store's backup user (the target's default), with its own password.
        target = MariadbTarget(name="db", host="db.internal", database="shop")
        assert target.user == BACKUP_USER
        world = backup_world(
            tmp_path / "backup", _spec(target), template=restic_template, ports={"db": server.port}, s3=s3
        )
        # The job image is alpine: its sh, sed, awk, date and mktemp are busybox's.
        world.path_prefix = busybox_userland(tmp_path / "busybox")
        backup_password = server.client_passwords[BACKUP_USER]
        (world.secrets / "db-password").write_text(backup_password)

        first = world.run("backup.sh")
        assert first.returncode == 0, first.stderr
        metrics = world.metrics()
        assert metrics['keel_backup_last_run_success{store="db"}'] == 1
        succeeded_at = metrics['keel_backup_last_success_timestamp_seconds{store="db"}']
        [snapshot] = world.snapshots("--tag", "store=db,kind=mariadb")
        assert snapshot["paths"] == ["/db.sql"] and snapshot["hostname"] == SNAPSHOT_HOST
        assert sorted(snapshot["tags"]) == ["keel", "kind=mariadb", "store=db"]
        dump = world.restic("dump", "latest", "/db.sql", "--tag", "store=db,kind=mariadb")
        assert dump.returncode == 0, dump.stderr
        # The routines, triggers and events are in the dump; the dump creates no database.
        assert "CREATE DEFINER=`app`@`%` FUNCTION `with_tax`" in dump.stdout
        assert "TRIGGER orders_audit AFTER INSERT ON orders" in dump.stdout
        # The function's body and the event: the backup user reads them without owning them.
        assert "RETURN amount * 1.19" in dump.stdout
        assert "EVENT `purge_audit` ON SCHEDULE EVERY 1 DAY" in dump.stdout
        assert "CREATE DATABASE" not in dump.stdout and "USE `shop`" not in dump.stdout

        # A dump that fails leaves no snapshot (restic's --stdin-from-command), the last success
        # stays, and the reason is in the metrics.
        (world.secrets / "db-password").write_text("wrong")
        _past(succeeded_at)
        failed = world.run("backup.sh")
        assert failed.returncode == 1, failed.stderr
        assert "Access denied for user 'keel_backup'" in failed.stderr
        metrics = world.metrics()
        assert metrics['keel_backup_last_run_success{store="db",reason="source_failed"}'] == 0
        assert metrics['keel_backup_last_success_timestamp_seconds{store="db"}'] == succeeded_at
        assert metrics['keel_backup_last_run_timestamp_seconds{store="db"}'] > succeeded_at
        assert len(world.snapshots("--tag", "store=db")) == 1

        # The backup user reads and never writes the live database.
        (world.secrets / "db-password").write_text(backup_password)
        refused = world.run("restore-mariadb.sh", "db", "127.0.0.1", str(server.port), "shop", BACKUP_USER)
        assert refused.returncode == 1 and "command denied to user 'keel_backup'" in refused.stderr, refused.stderr
        assert server.sql(FINGERPRINT) == before

        # The data is gone: every table, view, routine and trigger. An operator restores as a user
        # that may write the database (here the app's; docs/restore.md has root do it).
        server.sql("DROP VIEW big_orders; DROP FUNCTION with_tax; DROP TABLE audit, orders, customers")
        (world.secrets / "db-password").write_text(server.password)
        restored = world.run("restore-mariadb.sh", "db", "127.0.0.1", str(server.port), "shop", "app")
        assert restored.returncode == 0, restored.stderr
        assert server.sql(FINGERPRINT) == before
        assert server.sql("SELECT with_tax(100)") == "119.00"
        assert server.sql("SELECT COUNT(*) FROM big_orders") != "0"
        audited = server.sql("SELECT COUNT(*) FROM audit")
        server.sql("INSERT INTO orders VALUES (20001, 1, 1, NULL, NOW())")
        assert int(server.sql("SELECT COUNT(*) FROM audit")) == int(audited) + 1, "the trigger was not restored"

        (world.secrets / "db-password").write_text(backup_password)
        drill = world.run("drill.sh")
        assert drill.returncode == 0, drill.stderr
        assert "db: restored 4 tables (the live database has 4)" in drill.stderr
        assert "db restored rows: orders 20000" in drill.stderr
        assert "db restored rows: customers 97" in drill.stderr
        assert world.metrics("keel_backup_drill.prom")['keel_backup_restore_drill_last_run_success{store="db"}'] == 1
        # The scratch database is gone again.
        assert server.sql("SHOW DATABASES LIKE 'shop\\_keel\\_drill'") == ""


def test_a_restore_fails_loudly_when_either_side_of_its_pipe_fails(
    tmp_path: Path, s3: S3Server, restic_template: Path
) -> None:
    with mariadb_server(render_keel_cnf(256, 50), database="shop", user="app") as server:
        server.sql("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1), (2)")
        target = MariadbTarget(name="db", host="db.internal", database="shop", user="app")
        world = backup_world(
            tmp_path / "backup", _spec(target), template=restic_template, ports={"db": server.port}, s3=s3
        )
        (world.secrets / "db-password").write_text(server.password)
        assert world.run("backup.sh").returncode == 0
        args = ("db", "127.0.0.1", str(server.port), "shop", "app")

        # No such snapshot: restic dump fails, and the client's exit status alone would hide it.
        missing = world.run("restore-mariadb.sh", *args, "0123abcd")
        assert missing.returncode == 1
        assert "db: restore failed (restic dump 1, mariadb 0)" in missing.stderr

        # The server refuses the client (restic, writing into the closed pipe, may die of SIGPIPE).
        (world.secrets / "db-password").write_text("wrong")
        refused = world.run("restore-mariadb.sh", *args)
        assert refused.returncode == 1
        assert "Access denied for user 'app'" in refused.stderr
        assert re.search(r"db: restore failed \(restic dump (0|141), mariadb 1\)", refused.stderr), refused.stderr

        assert world.run("restore-mariadb.sh", "db").returncode == 2
        assert server.sql("SELECT COUNT(*) FROM t") == "2"


def test_a_drill_that_restores_nothing_of_a_database_with_tables_fails(
    tmp_path: Path, s3: S3Server, restic_template: Path
) -> None:
    with mariadb_server(render_keel_cnf(256, 50), database="shop", user="app") as server:
        target = MariadbTarget(name="db", host="db.internal", database="shop")
        world = backup_world(
            tmp_path / "backup", _spec(target), template=restic_template, ports={"db": server.port}, s3=s3
        )
        (world.secrets / "db-password").write_text(server.client_passwords[BACKUP_USER])
        # A backup of an empty database, then tables: the restore brings back none of them.
        assert world.run("backup.sh").returncode == 0
        server.sql("CREATE TABLE orders (id int PRIMARY KEY)")
        drill = world.run("drill.sh")
        assert drill.returncode == 1
        assert "db: the restored database has no tables" in drill.stderr
        assert world.metrics("keel_backup_drill.prom")['keel_backup_restore_drill_last_run_success{store="db"}'] == 0
        assert server.sql("SHOW DATABASES LIKE 'shop\\_keel\\_drill'") == ""
