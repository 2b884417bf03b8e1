"""Real backups and restores through the rendered scripts: PostgreSQL 15 (with its roles), SQLite
under a writer, Redis, volume files, retention, check and the metrics textfiles, with restic 0.18
against the S3 server on loopback (tests/realtools/s3_harness.py) as the job reaches its bucket,
and against a local repository where the test is about something else (SQLite's consistency,
retention's policy, restic's temporary files)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from backup_helpers import SNAPSHOT_HOST, BackupWorld, backup_world, busybox_userland, job_lock_held, restic_binary
from pg_helpers import postgres_server, redis_server
from s3_harness import S3Server

from config.base import Resources
from config.models import Retention
from render import backup_bucket
from render.backup import BackupSpec, job_health_command
from stores.postgres.kind import PostgresTarget
from stores.postgres.model import PostgresSpec
from stores.postgres.server import render_postgresql_conf
from stores.redis.kind import RedisTarget
from stores.redis.model import RedisSpec
from stores.redis.server import BACKUP_USER, redis_acl, render_redis_conf
from stores.volume.kind import VolumeTarget
from tests.tool_requirements import require_tool

pytestmark = pytest.mark.requires_tool("restic")

ORDERS = """
CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL);
CREATE TABLE orders (id bigint PRIMARY KEY, customer int REFERENCES customers, total numeric(10, 2),
                     created timestamptz NOT NULL);
CREATE INDEX orders_created ON orders (created);
CREATE VIEW big_orders AS SELECT * FROM orders WHERE total > 100;
INSERT INTO customers SELECT g, 'customer ' || g FROM generate_series(1, 97) g;
INSERT INTO orders SELECT g, 1 + g % 97, (g % 1000) / 7.0, '2026-01-01'::timestamptz + g * interval '1 minute'
  FROM generate_series(1, 20000) g;
"""
FINGERPRINT = (
    "SELECT count(*) || ' ' || md5(string_agg(id || ':' || customer || ':' || total || ':' || created, ',' "
    "ORDER BY id)) FROM orders"
)


def _spec(**stores: object) -> BackupSpec:
    return BackupSpec(
        repository="s3:https://unused.example.com/bucket",
        snapshot_host=SNAPSHOT_HOST,
        schedule="0 * * * *",
        **stores,  # type: ignore[arg-type]
    )


@pytest.mark.requires_tool("pg_dump", "pg_dumpall", "pg_restore", "psql")
def test_postgres_backup_survives_a_dropped_database_and_its_roles(
    tmp_path: Path, s3: S3Server, restic_template: Path
) -> None:
    store = PostgresSpec(kind="postgres", resources=Resources(memory_mb=512), database="shop", user="app")
    with postgres_server(tmp_path, render_postgresql_conf(store)) as server:
        server.psql("CREATE DATABASE shop")
        server.psql(ORDERS, database="shop")
        # A role pg_dump does not carry: the dump's GRANT names it.
        server.psql("CREATE ROLE reader LOGIN PASSWORD 'reader-password'")
        server.psql("GRANT SELECT ON orders TO reader", database="shop")
        before = server.psql(FINGERPRINT, database="shop")

        spec = _spec(targets=(PostgresTarget(name="db", host="db.internal", database="shop", user="app"),))
        world = backup_world(tmp_path / "backup", spec, template=restic_template, ports={"db": server.port}, s3=s3)
        (world.secrets / "db-password").write_text(server.password)

        first = world.run("backup.sh")
        assert first.returncode == 0, first.stderr
        metrics = world.metrics()
        assert metrics['keel_backup_last_run_success{store="db"}'] == 1
        succeeded_at = metrics['keel_backup_last_success_timestamp_seconds{store="db"}']
        assert abs(succeeded_at - time.time()) < 120
        assert metrics["keel_backup_schedule_interval_seconds"] == 3600
        assert "keel_backup_retention_last_run_success" not in metrics
        assert "keel_backup_run_deadline_timestamp_seconds" not in metrics
        [snapshot] = world.snapshots("--tag", "store=db,kind=postgres")
        assert snapshot["paths"] == ["/db.pgdump"] and snapshot["hostname"] == SNAPSHOT_HOST
        assert sorted(snapshot["tags"]) == ["keel", "kind=postgres", "store=db"]
        [roles] = world.snapshots("--tag", "store=db,kind=postgres-roles")
        assert roles["paths"] == ["/db.roles.sql"]

        # A dump that fails half-way leaves no snapshot behind (restic's --stdin-from-command), the
        # last success stays, and the reason is in the metrics.
        (world.secrets / "db-password").write_text("wrong")
        time.sleep(1.1)
        failed = world.run("backup.sh")
        assert failed.returncode == 1, failed.stderr
        assert 'could not connect to database "shop"' in failed.stderr
        metrics = world.metrics()
        assert metrics['keel_backup_last_run_success{store="db",reason="source_failed"}'] == 0
        assert metrics['keel_backup_last_success_timestamp_seconds{store="db"}'] == succeeded_at
        assert metrics['keel_backup_last_run_timestamp_seconds{store="db"}'] > succeeded_at
        assert len(world.snapshots("--tag", "store=db")) == 2

        # The app's own password was rotated after the backup: the restore must not turn it back.
        server.psql(f"ALTER ROLE app PASSWORD '{server.password}-rotated'")
        server.password += "-rotated"
        (world.secrets / "db-password").write_text(server.password)
        server.psql("DROP DATABASE shop")
        server.psql("DROP ROLE reader")
        server.psql("CREATE DATABASE shop")
        restored = world.run("restore-postgres.sh", "db", "127.0.0.1", str(server.port), "shop", "app")
        assert restored.returncode == 0, restored.stderr
        assert "1 missing role(s) created" in restored.stderr
        assert server.psql(FINGERPRINT, database="shop") == before
        assert server.psql("SELECT count(*) FROM big_orders", database="shop") != "0"
        assert server.psql("SELECT indexname FROM pg_indexes WHERE indexname = 'orders_created'", database="shop")
        # Without its password: the dump is taken with --no-role-passwords, since the backup role may
        # not read pg_authid (keel sets its own roles' passwords on every deploy; others are reset).
        assert server.psql("SELECT rolpassword IS NULL FROM pg_authid WHERE rolname = 'reader'") == "t"
        assert server.psql("SELECT has_table_privilege('reader', 'orders', 'SELECT')", database="shop") == "t"

        drill = world.run("drill.sh")
        assert drill.returncode == 0, drill.stderr
        assert "db restored rows: public.orders 20000" in drill.stderr
        assert "the roles apply (0 missing here" in drill.stderr
        assert world.metrics("keel_backup_drill.prom")['keel_backup_restore_drill_last_run_success{store="db"}'] == 1
        # The scratch database is gone again, and the drill created no role.
        assert server.psql("SELECT count(*) FROM pg_database WHERE datname = 'shop_keel_drill'") == "0"


WRITER = textwrap.dedent(
    """
    import os, sqlite3, sys, time
    path, stop, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    db = sqlite3.connect(path, timeout=30, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY, payload TEXT NOT NULL)")
    db.execute("CREATE TABLE IF NOT EXISTS tally (n INTEGER NOT NULL)")
    if db.execute("SELECT count(*) FROM tally").fetchone()[0] == 0:
        db.execute("INSERT INTO tally VALUES (0)")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not os.path.exists(stop):
        db.execute("BEGIN IMMEDIATE")
        for _ in range(50):
            db.execute("INSERT INTO events (payload) VALUES (?)", (os.urandom(100).hex(),))
        db.execute("UPDATE tally SET n = n + 50")
        db.execute("COMMIT")
        time.sleep(0.002)
    print(db.execute("SELECT n FROM tally").fetchone()[0])
    """
)
INVARIANT = "SELECT (SELECT count(*) FROM events) || ' ' || (SELECT n FROM tally)"


def _sqlite(path: Path, sql: str) -> str:
    # .timeout: a reader waits for the writer's lock rather than failing with "database is locked".
    result = subprocess.run(
        [require_tool("sqlite3"), str(path), ".timeout 30000", sql], capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.mark.requires_tool("sqlite3")
def test_sqlite_copy_taken_while_a_writer_writes_is_consistent(tmp_path: Path, restic_template: Path) -> None:
    spec = _spec(targets=(VolumeTarget(name="files", sqlite_files=("data/app.db",)),))
    world = backup_world(tmp_path / "backup", spec, template=restic_template)
    volume = world.stores / "files"
    (volume / "data").mkdir(parents=True)
    (volume / "uploads").mkdir()
    (volume / "uploads" / "cat.jpg").write_bytes(b"\xff\xd8 not really a cat")
    database = volume / "data" / "app.db"
    stop = tmp_path / "stop-writer"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(database), str(stop), "60"], stdout=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 20
        while not (database.exists() and int(_sqlite(database, "SELECT count(*) FROM sqlite_schema") or 0) >= 2):
            assert time.monotonic() < deadline, "the writer did not start"
            time.sleep(0.05)
        time.sleep(0.5)
        backups = [world.run("backup.sh", timeout_s=120) for _ in range(2)]
        assert writer.poll() is None, "the writer stopped before the backups ended"
    finally:
        stop.touch()
        final_tally = int(writer.communicate(timeout=60)[0])
    for backup in backups:
        assert backup.returncode == 0, backup.stderr

    restored = tmp_path / "restored.db"
    result = world.run("restore-sqlite.sh", "files", "data/app.db", str(restored))
    assert result.returncode == 0, result.stderr
    assert _sqlite(restored, "PRAGMA integrity_check") == "ok"
    rows, tally = map(int, _sqlite(restored, INVARIANT).split())
    # Every committed transaction or none of it: the copy is one consistent state of the file.
    assert rows == tally
    assert 0 < tally < final_tally

    files = world.run("restore-files.sh", "files", str(tmp_path / "restored-files"))
    assert files.returncode == 0, files.stderr
    assert (tmp_path / "restored-files" / "uploads" / "cat.jpg").read_bytes() == b"\xff\xd8 not really a cat"
    # The live database file is never copied raw: only its consistent copy is in the repository.
    assert not (tmp_path / "restored-files" / "data" / "app.db").exists()
    assert not (tmp_path / "restored-files" / "data" / "app.db-wal").exists()
    assert world.metrics()['keel_backup_last_run_success{store="files"}'] == 1


@pytest.mark.requires_tool("redis-server", "redis-cli")
def test_redis_rdb_after_bgsave_restores_every_key(tmp_path: Path, s3: S3Server, restic_template: Path) -> None:
    password = "redis-test-password"
    spec = _spec(targets=(RedisTarget(name="cache", host="cache.internal"),))
    store = RedisSpec.model_validate({"kind": "redis", "resources": {"memory_mb": 64}})
    world = backup_world(tmp_path / "backup", spec, template=restic_template, s3=s3)
    # The job logs in as the store's backup user (PING, INFO, BGSAVE), with that user's own password.
    acl = redis_acl(password, {BACKUP_USER: "backup-test-password"})
    (world.secrets / "cache-password").write_text("backup-test-password")
    data_dir = world.stores / "cache"
    config = lambda data: render_redis_conf(store, data_dir=data)  # noqa: E731
    with redis_server(tmp_path, config, acl_text=acl, password=password, data_dir=data_dir) as server:
        world.ports["cache"] = server.port
        for index in range(200):
            assert server.cli("SET", f"session:{index}", f"user-{index}").stdout.strip() == "OK"
        assert "rdb_saves:0" in server.cli("INFO", "persistence").stdout
        backup = world.run("backup.sh")
        assert backup.returncode == 0, backup.stderr
        # The job asked for a save and waited for it: the RDB it stored is that save's.
        assert "rdb_saves:1" in server.cli("INFO", "persistence").stdout

    restored_dir = tmp_path / "restored-redis"
    (restored_dir / "appendonlydir").mkdir(parents=True)
    (restored_dir / "appendonlydir" / "appendonly.aof.manifest").write_text("stale AOF of a broken server\n")
    restore = world.run("restore-redis.sh", "cache", str(restored_dir))
    assert restore.returncode == 0, restore.stderr
    # The store starts with its normal configuration (AOF on) and loads the restored snapshot.
    with redis_server(
        tmp_path, config, acl_text=redis_acl(password), password=password, data_dir=restored_dir
    ) as restored:
        assert restored.cli("DBSIZE").stdout.strip() == "200"
        assert restored.cli("GET", "session:199").stdout.strip() == "user-199"
        assert restored.cli("SET", "after", "restore").stdout.strip() == "OK"
    # Writes after the restore land in the new AOF and survive a restart.
    with redis_server(
        tmp_path, config, acl_text=redis_acl(password), password=password, data_dir=restored_dir
    ) as restarted:
        assert restarted.cli("DBSIZE").stdout.strip() == "201"
    assert len(list(restored_dir.glob("appendonlydir.before-restore.*"))) == 1


def _snapshot_at(world: BackupWorld, moment: str, store: str, file_name: str) -> None:
    made = subprocess.run(
        [restic_binary(), "backup", "--quiet", "--host", SNAPSHOT_HOST, "--tag", f"keel,store={store},kind=postgres",
         "--time", moment, "--stdin", "--stdin-filename", file_name],
        input=f"dump at {moment}", env=world.env(), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr


def _kept(world: BackupWorld, store: str) -> list[str]:
    snapshots = world.snapshots("--host", SNAPSHOT_HOST, "--tag", f"store={store}")
    return sorted(str(s["time"])[:19].replace("T", " ") for s in snapshots)


def test_retention_keeps_exactly_the_expected_snapshots(tmp_path: Path, restic_template: Path) -> None:
    """The maintenance workflow's forget (render/backup_bucket.forget_args), on a local repository."""
    spec = _spec(targets=(VolumeTarget(name="files"),))
    world = backup_world(tmp_path / "backup", spec, template=restic_template)
    for moment in [
        "2026-01-10 12:00:00",  # newest: the hourly, daily, weekly and monthly bucket of its hour/day/week/month
        "2026-01-10 11:00:00",  # second hourly
        "2026-01-10 10:00:00",  # third hour: hourly is full, same day as the newest
        "2026-01-09 12:00:00",  # second daily
        "2026-01-08 12:00:00",  # daily is full
        "2026-01-01 12:00:00",  # the week and month of the newest are taken
        "2025-12-15 12:00:00",  # second monthly
    ]:
        _snapshot_at(world, moment, "db", "db.pgdump")
    # A younger store, whose history does not fill the daily buckets yet. Since restic 0.16 (the job
    # image's 0.17.3 included) forget also keeps the oldest snapshot of a group while a --keep-*
    # count is left (CHANGELOG #3624; internal/restic/snapshot_policy.go, ApplyPolicy, v0.17.3): the
    # 11:00 snapshot stays as the "oldest daily", where restic 0.14 would have forgotten it.
    for moment in ["2026-01-10 12:00:00", "2026-01-10 11:30:00", "2026-01-10 11:00:00"]:
        _snapshot_at(world, moment, "cache", "cache.rdb")
    # A snapshot of another host is not this job's to forget.
    other = world.restic("backup", "--quiet", "--host", "elsewhere", "--tag", "keel", str(world.scripts))
    assert other.returncode == 0, other.stderr

    retention = Retention(hourly=2, daily=2, weekly=1, monthly=2)
    result = world.restic(*backup_bucket.forget_args(retention, SNAPSHOT_HOST))
    assert result.returncode == 0, result.stderr
    assert _kept(world, "db") == [
        "2025-12-15 12:00:00", "2026-01-09 12:00:00", "2026-01-10 11:00:00", "2026-01-10 12:00:00"
    ]  # fmt: skip
    assert _kept(world, "cache") == ["2026-01-10 11:00:00", "2026-01-10 11:30:00", "2026-01-10 12:00:00"]
    assert len(world.snapshots("--host", "elsewhere")) == 1


def _lint(text: str) -> None:
    lint = subprocess.run(
        [require_tool("promtool"), "check", "metrics"], input=text, capture_output=True, text=True, timeout=30,
        check=False,
    )  # fmt: skip
    assert lint.returncode == 0, lint.stdout + lint.stderr


@pytest.mark.requires_tool("promtool")
def test_textfiles_pass_promtool_lint_while_unfinished_and_when_done(tmp_path: Path, restic_template: Path) -> None:
    spec = _spec(targets=(VolumeTarget(name="files"),))
    world = backup_world(tmp_path / "backup", spec, template=restic_template)
    (world.stores / "files").mkdir()
    (world.stores / "files" / "a.txt").write_text("a")
    # Another job holds the job lock: the run writes its "unfinished" file first, then gives up.
    world.extra_env = {"KEEL_JOB_LOCK_WAIT_S": "0"}
    with job_lock_held(world):
        busy = world.run("backup.sh")
        check = world.run("check.sh")
    assert busy.returncode == 1 and check.returncode == 1
    metrics = world.metrics()
    assert metrics['keel_backup_last_run_success{store="files",reason="another_job_running"}'] == 0
    _lint((world.textfile / "keel_backup.prom").read_text())
    _lint((world.textfile / "keel_backup_check.prom").read_text())
    world.extra_env = {}
    assert world.run("backup.sh").returncode == 0
    assert world.run("check.sh").returncode == 0
    for name in ("keel_backup.prom", "keel_backup_check.prom"):
        _lint((world.textfile / name).read_text())
    # Only the finished files are visible to node-exporter: no temporary file is left behind.
    assert sorted(p.name for p in world.textfile.iterdir()) == ["keel_backup.prom", "keel_backup_check.prom"]


@pytest.mark.requires_tool("busybox", "sqlite3")
def test_scripts_run_with_the_job_images_busybox_shell_and_tools(
    tmp_path: Path, s3: S3Server, restic_template: Path
) -> None:
    # The job image is alpine-based: sh, sed, awk, date, mktemp, find and timeout are busybox's, not
    # dash and GNU coreutils as on this machine.
    spec = _spec(targets=(VolumeTarget(name="files", sqlite_files=("data/app.db",)),))
    world = backup_world(tmp_path / "backup", spec, template=restic_template, s3=s3)
    world.path_prefix = busybox_userland(tmp_path / "busybox")
    shell = subprocess.run(
        ["sh", "-c", "readlink -f /proc/$$/exe"], env=world.env(), capture_output=True, text=True, timeout=30,
        check=True,
    )  # fmt: skip
    assert shell.stdout.strip().endswith("busybox")
    volume = world.stores / "files"
    (volume / "data").mkdir(parents=True)
    (volume / "uploads").mkdir()
    (volume / "uploads" / "logo.png").write_bytes(b"\x89PNG not really a logo")
    with sqlite3.connect(volume / "data" / "app.db") as db:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, total REAL)")
        db.executemany("INSERT INTO orders (total) VALUES (?)", [(i / 7,) for i in range(500)])

    backup = world.run("backup.sh")
    assert backup.returncode == 0, backup.stderr
    assert world.metrics()['keel_backup_last_run_success{store="files"}'] == 1
    restored = tmp_path / "restored.db"
    result = world.run("restore-sqlite.sh", "files", "data/app.db", str(restored))
    assert result.returncode == 0, result.stderr
    assert _sqlite(restored, "SELECT count(*) FROM orders") == "500"
    files = world.run("restore-files.sh", "files", str(tmp_path / "restored-files"))
    assert files.returncode == 0, files.stderr
    assert (tmp_path / "restored-files" / "uploads" / "logo.png").read_bytes() == b"\x89PNG not really a logo"
    drill = world.run("drill.sh")
    assert drill.returncode == 0, drill.stderr
    assert world.metrics("keel_backup_drill.prom")['keel_backup_restore_drill_last_run_success{store="files"}'] == 1
    check = world.run("check.sh")
    assert check.returncode == 0, check.stderr
    check_metrics = world.metrics("keel_backup_check.prom")
    assert check_metrics["keel_backup_check_last_run_success"] == 1
    assert check_metrics["keel_backup_check_schedule_interval_seconds"] == 7 * 86400
    assert "keel_backup_check_run_deadline_timestamp_seconds" not in check_metrics

    # The swarm health check runs in the same shell: healthy within the deadline, not after it.
    probe = job_health_command(3600)
    assert probe[0] == "CMD-SHELL"
    started = tmp_path / "backup" / "run-started"
    started.write_text(f"{int(time.time()) - 120}\n")
    for deadline, healthy in ((3600, True), (60, False)):
        result = subprocess.run(
            ["sh", "-c", job_health_command(deadline)[1]], env=world.env(), capture_output=True, text=True,
            timeout=30, check=False,
        )  # fmt: skip
        assert (result.returncode == 0) is healthy, (deadline, result.stderr)


def test_restic_packs_its_uploads_in_tmpdir_which_a_fresh_cache_volume_provides(
    tmp_path: Path, restic_template: Path
) -> None:
    spec = _spec(targets=(VolumeTarget(name="files"),))
    world = backup_world(tmp_path / "backup", spec, template=restic_template)
    (world.stores / "files").mkdir()
    (world.stores / "files" / "first.bin").write_bytes(os.urandom(2_000_000))
    # As in the job: TMPDIR is the work directory on the cache volume, which does not exist yet
    # on a new volume; common.sh creates it before any tool runs.
    work = tmp_path / "cache-volume" / "work"
    world.extra_env = {"KEEL_WORK_DIR": str(work), "TMPDIR": str(work)}
    first = world.run("backup.sh")
    assert first.returncode == 0, first.stderr
    assert work.is_dir()

    # restic really writes its pack files there: a TMPDIR it cannot write to fails the run, which
    # is what a full 16 MiB tmpfs does to the first real dump.
    (world.stores / "files" / "second.bin").write_bytes(os.urandom(2_000_000))
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("")
    world.extra_env = {"KEEL_WORK_DIR": str(work), "TMPDIR": str(blocked / "tmp")}
    second = world.run("backup.sh")
    assert second.returncode == 1
    assert "restic-temp-pack" in second.stderr
    assert world.metrics()['keel_backup_last_run_success{store="files",reason="restic_failed"}'] == 0
