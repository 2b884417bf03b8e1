"""Point-in-time recovery: the recovery point a crash leaves, and the restore time against raw tools.

    python -m bench pitr                      # a 1 GiB database
    KEEL_BENCH_PITR_MB=256 python -m bench pitr

PostgreSQL 15 with the rendered postgresql.conf (archive_timeout 60 s, the default) archives
through the rendered archive_command (pgBackRest, encrypted, into moto's S3 over TLS on loopback,
tests/realtools/s3_harness.py); the same archive_command also copies each segment it archived to
a local directory for the raw side. The database is filled to the target size, then both sides
take a base backup: pgBackRest's full backup (to S3) and `pg_basebackup -X none` (to local disk).

Then a writer commits a row every WRITE_INTERVAL_S (and a WAL-heavy batch with it) for
WRITE_SECONDS, and the server is killed (SIGKILL: no final archive, as when the host dies).
Achieved recovery point: the last commit the writer saw acknowledged, minus the newest row the
restored database holds.

Restore to the latest archived point, side by side and alternated (raw, pitr, raw, pitr):
  raw:  copy the pg_basebackup directory, replay the local WAL copies (restore_command = cp);
  pitr: `pgbackrest restore` from S3 (decrypt, decompress), replay WAL fetched by archive-get.
Each is timed from the start of the restore to a database that answers and has left recovery.
The ratio pitr/raw is the price of S3, encryption and compression (moto is a Python server:
a real object store is faster, and the network slower, than loopback). Figures are printed.
"""

from __future__ import annotations

import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "realtools"))

from config.base import Resources
from render import pitr
from stores.postgres import server as pg_server
from stores.postgres.model import PostgresSpec
from tools.prereqs import need

SIZE_MB = int(os.environ.get("KEEL_BENCH_PITR_MB", "1024"))
WRITE_SECONDS = int(os.environ.get("KEEL_BENCH_PITR_WRITE_S", "150"))
WRITE_INTERVAL_S = 0.2
ROUNDS = 2
STORE = PostgresSpec(kind="postgres", resources=Resources(memory_mb=1024), database="shop", user="app")


def _chown(path: Path, user: str) -> None:
    subprocess.run(["chown", "-R", user, str(path)], check=True)


def _start(data: Path, sock: Path, user: str, env: dict[str, str], timeout_s: int = 3600) -> float:
    """Start a restored cluster privately; seconds until it answers out of recovery."""
    sock.mkdir(parents=True, exist_ok=True)
    _chown(sock, user)
    started = time.monotonic()
    subprocess.run(
        [need("pg_ctl"), "-D", str(data), "-l", str(sock / "server.log"), "-w", "-t", str(timeout_s), "start", "-o",
         f"-c listen_addresses='' -c unix_socket_directories='{sock}' -c port=5432 -c archive_mode=off "
         f"-c config_file='{data}/postgresql.conf' -c hba_file='{data}/pg_hba.conf'"],
        check=True, user=user, capture_output=True, timeout=timeout_s, env=env,
    )  # fmt: skip
    while _sql(sock, "SELECT pg_is_in_recovery()", user, env) != "f":
        if time.monotonic() - started > timeout_s:
            raise RuntimeError((sock / "server.log").read_text())
        time.sleep(0.2)
    return time.monotonic() - started


def _stop(data: Path, user: str) -> None:
    subprocess.run([need("pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"], user=user, capture_output=True)


def _sql(sock: Path, sql: str, user: str, env: dict[str, str], database: str = "shop") -> str:
    result = subprocess.run(
        [need("psql"), "-X", "-q", "-t", "-A", "-h", str(sock), "-p", "5432", "-U", pitr.SUPERUSER, "-d", database,
         "-c", sql],
        capture_output=True, text=True, user=user, timeout=600, check=False, env=env,
    )  # fmt: skip
    return result.stdout.strip()


def main() -> None:
    from pg_helpers import PG_USER, postgres_server
    from pitr_helpers import pitr_world, server_env
    from s3_harness import s3_server

    for tool in ("pgbackrest", "pg_ctl", "psql", "initdb", "postgres", "pg_basebackup"):
        need(tool)
    root = Path(tempfile.mkdtemp(prefix="keel-bench-pitr-"))
    os.chmod(root, 0o755)
    raw_wal, raw_base = root / "raw-wal", root / "raw-base"
    raw_wal.mkdir()
    _chown(raw_wal, PG_USER)
    try:
        with s3_server(root / "s3") as s3:
            world = pitr_world(s3, path="/bench", archive_timeout_s=60)
            conf = pitr.render_postgresql_conf(pg_server.render_postgresql_conf(STORE), world.spec)
            both = f"pgbackrest --stanza=db archive-push %p && cp %p {raw_wal}/%f"
            conf = conf.replace(
                "archive_command = 'pgbackrest --stanza=db archive-push %p'", f"archive_command = '{both}'"
            )
            assert both in conf
            holder: dict[str, float] = {}

            def env_of(data: Path, sock: Path, port: int) -> dict[str, str]:
                return server_env(world, data, sock, port, "")

            with postgres_server(root, conf, user=pitr.SUPERUSER, server_env=env_of) as server:
                world.env = server_env(world, server.data_dir, server.data_dir.parent, server.port, server.password)
                server.psql("CREATE DATABASE shop")
                server.psql(
                    "CREATE TABLE filler (id bigint PRIMARY KEY, payload text NOT NULL);"
                    "CREATE TABLE orders (id bigserial PRIMARY KEY, written_at timestamptz NOT NULL, payload text)",
                    database="shop",
                )
                started = time.monotonic()
                batch, row = 200_000, 0
                while int(server.psql("SELECT pg_database_size('shop')")) < SIZE_MB * 1024**2:
                    server.psql(
                        f"INSERT INTO filler SELECT g, md5(g::text) || repeat('x', 400) "
                        f"FROM generate_series({row + 1}, {row + batch}) g",
                        database="shop",
                    )
                    row += batch
                size = int(server.psql("SELECT pg_database_size('shop')"))
                print(f"database: {size / 1024**2:.0f} MiB ({row} rows) in {time.monotonic() - started:.0f} s")
                created = world.pgbackrest("stanza-create")
                assert created.returncode == 0, created.stdout + created.stderr
                # The load's WAL first (the backup waits only 60 s for its own start segment to be archived).
                started = time.monotonic()
                segment = server.psql("SELECT pg_walfile_name(pg_switch_wal())")
                while server.psql("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver") < segment:
                    if time.monotonic() - started > 3600:
                        raise RuntimeError(f"not archived in an hour: {server.psql('SELECT * FROM pg_stat_archiver')}")
                    time.sleep(0.5)
                print(f"archiving the load's WAL (up to {segment}): {time.monotonic() - started:.1f} s")
                started = time.monotonic()
                full = world.run("pitr-backup.sh", "full", timeout_s=7200)
                assert full.returncode == 0, full.stderr
                print(f"pgBackRest full backup to S3: {time.monotonic() - started:.1f} s")
                started = time.monotonic()
                subprocess.run(
                    [need("pg_basebackup"), "-D", str(raw_base), "-X", "none", "-c", "fast", "-h", "127.0.0.1",
                     "-p", str(server.port), "-U", pitr.SUPERUSER],
                    env=server.env(), check=True, capture_output=True, timeout=7200,
                )  # fmt: skip
                print(f"pg_basebackup to local disk: {time.monotonic() - started:.1f} s")

                killed = threading.Event()
                failed: list[AssertionError] = []

                def writer() -> None:
                    while not killed.is_set():
                        try:
                            at = server.psql(
                                "INSERT INTO orders (written_at, payload) SELECT clock_timestamp(), repeat('y', 2000) "
                                "FROM generate_series(1, 50) RETURNING extract(epoch FROM written_at)",
                                database="shop",
                            )
                        except AssertionError as error:
                            # The insert in flight at the kill fails unacknowledged: not a lost write.
                            if not killed.is_set():
                                failed.append(error)
                            return
                        holder["last_commit"] = float(at.splitlines()[-1])
                        time.sleep(WRITE_INTERVAL_S)

                thread = threading.Thread(target=writer, daemon=True)
                thread.start()
                time.sleep(WRITE_SECONDS)  # the continuous-write phase lasts this long
                # The host dies: no shutdown checkpoint, no final archive.
                pid = int((server.data_dir / "postmaster.pid").read_text().split()[0])
                killed.set()
                os.kill(pid, signal.SIGKILL)
                thread.join(timeout=30)
                if failed:
                    # An early stop would leave an old last commit and overstate the loss.
                    raise RuntimeError(f"the writer failed before the crash: {failed[0]}")
                wal = len(list(raw_wal.glob("0*")))
                print(f"continuous writes for {WRITE_SECONDS} s; {wal} WAL segments archived before the crash")

            times: dict[str, list[float]] = {"raw": [], "pitr": []}
            rpo: dict[str, float] = {}
            for _round in range(ROUNDS):
                for side in ("raw", "pitr"):
                    target = root / f"restore-{side}"
                    shutil.rmtree(target, ignore_errors=True)
                    started = time.monotonic()
                    if side == "raw":
                        shutil.copytree(raw_base, target)
                        (target / "recovery.signal").touch()
                        with (target / "postgresql.auto.conf").open("a") as auto:
                            auto.write(f"restore_command = 'cp {raw_wal}/%f %p'\n")
                        _chown(target, PG_USER)
                        os.chmod(target, 0o700)
                    else:
                        target.mkdir(mode=0o700)
                        _chown(target, PG_USER)
                        restored = world.pgbackrest(f"--pg1-path={target}", "--archive-mode=off", "restore")
                        assert restored.returncode == 0, restored.stdout + restored.stderr
                    copied = time.monotonic() - started
                    _start(target, root / f"sock-{side}", PG_USER, world.env)
                    elapsed = time.monotonic() - started
                    times[side].append(elapsed)
                    newest = float(
                        _sql(
                            root / f"sock-{side}",
                            "SELECT extract(epoch FROM max(written_at)) FROM orders",
                            PG_USER,
                            world.env,
                        )
                    )
                    rpo[side] = holder["last_commit"] - newest
                    print(f"  {side:4}: {elapsed:6.1f} s to a queryable database ({copied:.1f} s restoring files)")
                    _stop(target, PG_USER)
                    shutil.rmtree(target, ignore_errors=True)
            shutil.rmtree(world.root, ignore_errors=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    raw, pitr_s = statistics.median(times["raw"]), statistics.median(times["pitr"])
    print(f"database size: {SIZE_MB} MiB target ({size / 1024**2:.0f} MiB measured)")
    print(
        f"achieved RPO after a crash: {rpo['pitr']:.1f} s of writes lost (target <= 60 s; raw copy: {rpo['raw']:.1f} s)"
    )
    print(
        f"restore to latest: pitr {pitr_s:.1f} s, raw pg_basebackup + WAL replay {raw:.1f} s, ratio {pitr_s / raw:.2f}"
    )
