"""Point-in-time recovery for real: PostgreSQL 15 archiving through the rendered archive_command
with Debian's pgBackRest into moto's S3 over TLS (tests/realtools/s3_harness.py), with the host's
key that cannot delete; the rendered base-backup, restore and drill scripts; then the database is
destroyed and restored to an instant between two known writes."""

from __future__ import annotations

import dataclasses
import datetime
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from pg_helpers import PG_USER, postgres_server
from pitr_helpers import ARCHIVE_DEADLINE_S, PitrWorld, pitr_world, server_env, wait_archived
from s3_harness import BUCKET, S3Server

from config.base import Resources
from render import pitr
from stores.postgres import server as pg_server
from stores.postgres.model import PostgresSpec

STORE = PostgresSpec(kind="postgres", resources=Resources(memory_mb=512), database="shop", user="app")


def _heartbeats(world: PitrWorld, port: int, count: int) -> subprocess.Popen[str]:
    env = {**world.env, "KEEL_HOST": "127.0.0.1", "KEEL_PORT": str(port), "KEEL_HEARTBEAT_INTERVAL_S": "1",
           "KEEL_HEARTBEAT_COUNT": str(count)}  # fmt: skip
    return subprocess.Popen(
        ["sh", str(world.scripts / "pitr-heartbeat.sh")], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, user=PG_USER,
    )  # fmt: skip


@pytest.fixture()
def world(s3: S3Server, request: pytest.FixtureRequest):
    made = pitr_world(s3, path=f"/pitr-{request.node.name[:40]}")
    yield made
    shutil.rmtree(made.root, ignore_errors=True)


def test_restore_to_an_instant_between_two_writes_brings_back_exactly_the_rows_before_it(
    tmp_path: Path, s3: S3Server, world: PitrWorld
) -> None:
    conf = pitr.render_postgresql_conf(pg_server.render_postgresql_conf(STORE), world.spec)
    assert "archive_command = 'pgbackrest --stanza=db archive-push %p'" in conf

    def env_of(data: Path, sock: Path, port: int) -> dict[str, str]:
        return server_env(world, data, sock, port, "")

    with postgres_server(tmp_path, conf, user=pitr.SUPERUSER, server_env=env_of) as server:
        env = server_env(world, server.data_dir, server.data_dir.parent, server.port, server.password)
        world.env = env
        server.psql("CREATE DATABASE shop")
        server.psql("CREATE TABLE orders (id int PRIMARY KEY, written_at timestamptz NOT NULL)", database="shop")
        (world.secrets / "db-password").write_text(server.password)
        shutil.chown(world.secrets / "db-password", user=PG_USER)
        beats = _heartbeats(world, server.port, count=600)
        try:
            full = world.run("pitr-backup.sh", "full")
            assert full.returncode == 0, full.stderr
            metrics = world.metrics("full")
            assert metrics['keel_pitr_backup_last_run_success{store="db",type="full"}'] == 1
            assert metrics['keel_pitr_backup_schedule_interval_seconds{store="db",type="full"}'] == 7 * 86400

            # Rows written one by one, each with the instant it committed.
            written: list[tuple[int, datetime.datetime]] = []
            for row in range(1, 41):
                at = server.psql(
                    f"INSERT INTO orders VALUES ({row}, clock_timestamp()) RETURNING extract(epoch FROM written_at)",
                    database="shop",
                )
                written.append((row, datetime.datetime.fromtimestamp(float(at), datetime.UTC)))
                time.sleep(0.05)
                if row == 20:
                    diff = world.run("pitr-backup.sh", "diff")
                    assert diff.returncode == 0, diff.stderr
            # An instant strictly between the 27th and the 28th write.
            before, after = written[26][1], written[27][1]
            assert after - before > datetime.timedelta(microseconds=2)
            target = before + (after - before) / 2
            wait_archived(server)

            # The drill, while the store runs: a random recent second is its own business; here one
            # of the heartbeats' seconds, so the figures are known.
            drill_target = int(time.time()) - 3
            beat_count = (
                server.psql("SELECT count(*) FROM heartbeat", database="keel_pitr") if beats.poll() is None else ""
            )
            assert beat_count not in ("", "0"), beats.communicate(timeout=10)[0]
            wait_archived(server)
            world.env = {**env, "KEEL_PITR_DRILL_TARGET": str(drill_target)}
            drill = world.run("pitr-drill.sh", timeout_s=600)
            assert drill.returncode == 0, drill.stderr
            metrics = world.metrics("drill")
            assert metrics['keel_pitr_drill_last_run_success{store="db"}'] == 1
            assert 0 <= metrics['keel_pitr_drill_rpo_seconds{store="db"}'] <= 2, drill.stderr
            assert 0 < metrics['keel_pitr_drill_rto_seconds{store="db"}'] < 300
            assert metrics['keel_pitr_drill_target_timestamp_seconds{store="db"}'] == drill_target
            assert metrics['keel_pitr_rpo_target_seconds{store="db"}'] == 60
            assert not any(world.scratch.iterdir()), "the drill leaves its scratch space empty"
            # The heartbeat wrote the archiver's state: archived recently, nothing waiting.
            archiver = world.metrics("archiver")
            assert time.time() - archiver['keel_pitr_archive_last_success_timestamp_seconds{store="db"}'] < 120
            assert archiver['keel_pitr_archive_timeout_seconds{store="db"}'] == 10
        finally:
            beats.terminate()
            beats.wait(timeout=30)

        # The host's key cannot delete what it archived.
        objects = s3.objects(world.spec.repository.path.strip("/") + "/archive/")
        assert any(key.endswith(".gz") for key in objects), objects
        with pytest.raises(ClientError, match="AccessDenied"):
            _client_as(s3, "pitr").delete_object(Bucket=BUCKET, Key=next(key for key in objects if key.endswith(".gz")))
    # The server and its data directory are gone.

    restored = Path(tempfile.mkdtemp(prefix="keel-restored-"))
    os.chmod(restored, 0o755)
    shutil.chown(restored, user=PG_USER)
    try:
        when = target.strftime("%Y-%m-%d %H:%M:%S.%f+00")
        # As the restore job fills the next volume generation: checked while held in recovery.
        result = world.run("pitr-restore.sh", str(restored / "data"), when, "keep-archiving", timeout_s=600)
        assert result.returncode == 0, result.stderr
        assert "restored and verified: database shop with 1 tables" in result.stderr
        assert not (restored / "keel-verify").exists()
        # Swapped in: it promotes as the store, archiving, so its new timeline reaches the archive
        # (else a later restore would follow the old timeline past the fork).
        with postgres_server(
            tmp_path, conf, user=pitr.SUPERUSER, server_env=env_of, data_dir=restored / "data"
        ) as again:
            deadline = time.monotonic() + ARCHIVE_DEADLINE_S
            while again.psql("SELECT pg_is_in_recovery()") != "f":
                assert time.monotonic() < deadline, again.log_file.read_text()
                time.sleep(0.2)
            rows = again.psql("SELECT string_agg(id::text, ',' ORDER BY id) FROM orders", database="shop")
            assert again.psql("SELECT substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)") == "00000002"
            history = world.spec.repository.path.strip("/") + "/archive/db/"
            while not any(key.endswith("/00000002.history") for key in s3.objects(history)):
                assert time.monotonic() < deadline, again.psql("SELECT * FROM pg_stat_archiver")
                time.sleep(0.2)
        assert rows == ",".join(str(row) for row, at in written if at <= target) == ",".join(map(str, range(1, 28)))

        # Expiry, as the scheduled workflow runs it: the rendered expire config and a key that may delete.
        expire_conf = world.root / "expire.conf"
        expire_conf.write_text(pitr.render_expire_conf(world.spec))
        access, secret = s3.keys["admin"]
        expire_env = {
            "PATH": os.environ["PATH"], "PGBACKREST_REPO1_S3_KEY": access, "PGBACKREST_REPO1_S3_KEY_SECRET": secret,
            "PGBACKREST_REPO1_CIPHER_PASS": "test-cipher-passphrase", "PGBACKREST_LOCK_PATH": str(world.root / "lock"),
            "PGBACKREST_REPO1_STORAGE_CA_FILE": str(world.config_dir / "ca.pem"),
        }  # fmt: skip
        expired = world.pgbackrest(f"--config={expire_conf}", "expire", "--repo1-retention-full-type=count",
                                   "--repo1-retention-full=1", env=expire_env)  # fmt: skip
        assert expired.returncode == 0, expired.stdout + expired.stderr
    finally:
        shutil.rmtree(restored, ignore_errors=True)


def _client_as(s3: S3Server, user: str) -> Any:
    access, secret = s3.keys[user]
    return boto3.client(
        "s3", endpoint_url=s3.direct_endpoint, region_name="us-east-1", aws_access_key_id=access,
        aws_secret_access_key=secret, verify=str(s3.ca_file),
    )  # fmt: skip


def _archiver_after_a_beat(world: PitrWorld, port: int) -> dict[str, float]:
    beat = _heartbeats(world, port, count=1)
    output = beat.communicate(timeout=60)[0]
    assert beat.returncode == 0, output
    return world.metrics("archiver")


def test_wal_that_cannot_reach_the_archive_shows_as_pending_and_failed_then_drains(
    tmp_path: Path, s3: S3Server, world: PitrWorld
) -> None:
    # No timed switch in the background (archive_timeout closes a segment 60 s after the last one
    # when anything was written, the heartbeat included): the segments pending are the ones this
    # test closes, so "none pending" after the drain holds until the metric is read.
    quiet = dataclasses.replace(world.spec, archive_timeout_s=3600)
    conf = pitr.render_postgresql_conf(pg_server.render_postgresql_conf(STORE), quiet)

    def env_of(data: Path, sock: Path, port: int) -> dict[str, str]:
        # pgBackRest retries each refused HTTP request until io-timeout (60 s by default) runs out
        # (pgBackRest release/2.45 src/common/io/http/request.c, httpRequestProcess), and one
        # archive-push makes about 8 of them before it fails: 5 s cost 43 s here, 1 s 10 s. 1 s is
        # still hundreds of times what moto takes to answer (allowed: 0.1-3600, src/build/config/config.yaml).
        return {**server_env(world, data, sock, port, ""), "PGBACKREST_IO_TIMEOUT": "1"}

    with postgres_server(tmp_path, conf, user=pitr.SUPERUSER, server_env=env_of) as server:
        world.env = server_env(world, server.data_dir, server.data_dir.parent, server.port, server.password)
        (world.secrets / "db-password").write_text(server.password)
        shutil.chown(world.secrets / "db-password", user=PG_USER)
        server.psql("CREATE DATABASE shop")
        created = world.pgbackrest("stanza-create")
        assert created.returncode == 0, created.stdout + created.stderr
        wait_archived(server)
        failed_before = int(server.psql("SELECT failed_count FROM pg_stat_archiver"))
        s3.relay.down()
        try:
            server.psql("CREATE TABLE t AS SELECT generate_series(1, 1000) AS n", database="shop")
            segment = server.psql("SELECT pg_walfile_name(pg_switch_wal())")
            deadline = time.monotonic() + ARCHIVE_DEADLINE_S
            while int(server.psql("SELECT failed_count FROM pg_stat_archiver")) == failed_before:
                assert time.monotonic() < deadline, server.psql("SELECT * FROM pg_stat_archiver")
                time.sleep(0.2)
            down = _archiver_after_a_beat(world, server.port)
            assert down['keel_pitr_archive_pending_segments{store="db"}'] >= 1
            assert down['keel_pitr_archive_failed_total{store="db"}'] >= 1
            assert down['keel_pitr_archive_last_failure_timestamp_seconds{store="db"}'] > 0
            assert server.psql("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver") < segment
        finally:
            s3.relay.up()
        # Once the archive answers again, PostgreSQL retries the segments it kept. An archiver that
        # failed three times sleeps up to 60 s (PostgreSQL 15 pgarch.c PGARCH_AUTOWAKE_INTERVAL) unless a
        # new segment wakes it: close one, as the next write-and-switch in production would.
        server.psql("CREATE TABLE wake AS SELECT 1 AS n", database="shop")
        server.psql("SELECT pg_switch_wal()")
        deadline = time.monotonic() + ARCHIVE_DEADLINE_S
        pending = "SELECT count(*) FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready'"
        while (
            server.psql("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver") < segment
            or server.psql(pending) != "0"
        ):
            assert time.monotonic() < deadline, server.psql("SELECT * FROM pg_stat_archiver")
            time.sleep(0.2)
        drained = _archiver_after_a_beat(world, server.port)
        assert drained['keel_pitr_archive_pending_segments{store="db"}'] == 0
        assert (
            drained['keel_pitr_archive_last_success_timestamp_seconds{store="db"}']
            > down['keel_pitr_archive_last_success_timestamp_seconds{store="db"}']
        )
