"""Backup and restore of a 1 GiB PostgreSQL database through the job's scripts, beside raw pg_dump/pg_restore.

One real PostgreSQL 15 (the rendered postgresql.conf for a 2 GiB store, as the prod stack has),
filled with generate_series until the database is at least 1 GiB (generation is bounded in
batches and time, and its duration is printed). Then, side by side on the same server:

- raw:  ``pg_dump -Fc -f file`` and ``pg_restore`` of that file into a fresh database;
- job:  the rendered ``backup.sh`` (pg_dump streamed into restic, then retention) into a local
        restic repository, and ``restore-postgres.sh`` (restic dump streamed into pg_restore).

Both restores use the same pg_restore flags (single transaction, exit on error, --clean
--if-exists --no-owner), so the ratio is what restic's decryption and decompression cost.
Finally the job backs up the unchanged database again and the bench prints how many bytes
that second backup added to the repository. Targets: restore <= 1.5x raw, second backup adds
< 1% of the database size. Figures are printed, never asserted. Run: ``python -m bench backup``.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path

from config.models import PostgresStore, Resources, Retention
from render.backup import BackupSpec, PostgresTarget, render_backup_scripts
from render.postgres import render_postgresql_conf
from tests.realtools.pg_helpers import Postgres, postgres_server
from tools.prereqs import need

TARGET_BYTES = 1024**3
BATCH_ROWS = 1_000_000
MAX_BATCHES = 12
MAX_GENERATION_S = 900
RESTORE_FLAGS = ["--clean", "--if-exists", "--no-owner", "--single-transaction", "--exit-on-error"]

SCHEMA = """
CREATE TABLE events (
  id bigint PRIMARY KEY,
  account int NOT NULL,
  kind text NOT NULL,
  payload text NOT NULL,
  amount numeric(12, 2) NOT NULL,
  created timestamptz NOT NULL
);
CREATE TABLE accounts (id int PRIMARY KEY, name text NOT NULL, email text NOT NULL);
INSERT INTO accounts SELECT g, 'account ' || g, 'user' || g || '@example.com' FROM generate_series(1, 100000) g;
"""
BATCH = """
INSERT INTO events
SELECT g, 1 + (g * 7919) % 100000, (ARRAY['view', 'click', 'order', 'refund'])[1 + g % 4],
       md5(g::text) || md5((g * 31)::text) || md5((g * 17)::text), (g % 100000) / 100.0,
       '2025-01-01'::timestamptz + g * interval '1 second'
FROM generate_series({start}::bigint, {end}::bigint) g
"""


def _timed(command: list[str], env: dict[str, str]) -> float:
    started = time.monotonic()
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    elapsed = time.monotonic() - started
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stderr[-4000:]}")
    return elapsed


def _tree_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _generate(server: Postgres) -> tuple[int, int, float]:
    server.psql("CREATE DATABASE bench")
    server.psql(SCHEMA, database="bench")
    started = time.monotonic()
    rows = 0
    for batch in range(MAX_BATCHES):
        server.psql(BATCH.format(start=rows + 1, end=rows + BATCH_ROWS), database="bench")
        rows += BATCH_ROWS
        size = int(server.psql("SELECT pg_database_size('bench')"))
        if size >= TARGET_BYTES or time.monotonic() - started > MAX_GENERATION_S:
            break
        if batch == 0:
            # One index, so restores rebuild one as real databases make them do.
            server.psql("CREATE INDEX events_account ON events (account)", database="bench")
    server.psql("VACUUM ANALYZE", database="bench")
    size = int(server.psql("SELECT pg_database_size('bench')"))
    return rows, size, time.monotonic() - started


def _fingerprint(server: Postgres, database: str) -> str:
    return server.psql("SELECT count(*) || ' ' || sum(amount) || ' ' || max(created) FROM events", database=database)


def main() -> None:
    store = PostgresStore(kind="postgres", resources=Resources(memory_mb=2048), database="bench", user="app")
    with tempfile.TemporaryDirectory(prefix="keel-backup-bench-") as scratch:
        root = Path(scratch)
        with postgres_server(root, render_postgresql_conf(store)) as server:
            rows, size, generation_s = _generate(server)
            print(f"generated {rows} rows, database {size / 1024**3:.2f} GiB in {generation_s:.1f}s", flush=True)
            env = server.env()
            pg_dump, pg_restore = need("pg_dump"), need("pg_restore")
            connection = ["--host", "127.0.0.1", "--port", str(server.port), "--username", "app", "--no-password"]
            expected = _fingerprint(server, "bench")

            raw_file = root / "raw.dump"
            raw_dump_s = _timed(
                [pg_dump, *connection, "--format=custom", "--dbname", "bench", "--file", str(raw_file)], env
            )
            raw_bytes = raw_file.stat().st_size
            server.psql("CREATE DATABASE raw_restore")
            raw_restore_s = _timed(
                [pg_restore, *connection, *RESTORE_FLAGS, "--dbname", "raw_restore", str(raw_file)], env
            )
            assert _fingerprint(server, "raw_restore") == expected
            server.psql("DROP DATABASE raw_restore")
            raw_file.unlink()
            # The same without pg_dump's compression, as the job dumps: isolates what restic adds.
            plain_file = root / "plain.dump"
            plain_dump_s = _timed(
                [pg_dump, *connection, "-Fc", "--compress=0", "--dbname", "bench", "--file", str(plain_file)], env
            )
            server.psql("CREATE DATABASE plain_restore")
            plain_restore_s = _timed(
                [pg_restore, *connection, *RESTORE_FLAGS, "--dbname", "plain_restore", str(plain_file)], env
            )
            assert _fingerprint(server, "plain_restore") == expected
            server.psql("DROP DATABASE plain_restore")
            plain_file.unlink()

            spec = BackupSpec(
                repository="s3:https://unused.example.com/bucket",
                snapshot_host="bench",
                schedule="0 * * * *",
                retention=Retention(),
                postgres=(PostgresTarget(name="db", host="127.0.0.1", database="bench", user="app"),),
            )
            scripts = root / "scripts"
            scripts.mkdir()
            for name, text in render_backup_scripts(spec).items():
                (scripts / name).write_text(text)
            (root / "secrets").mkdir()
            (root / "secrets" / "db-password").write_text(server.password)
            (root / "restic-password").write_text("bench-repository-password")
            repository = root / "repo"
            job_env = {
                "PATH": os.environ["PATH"],
                "HOME": str(root),
                "RESTIC_REPOSITORY": str(repository),
                "RESTIC_PASSWORD_FILE": str(root / "restic-password"),
                "RESTIC_CACHE_DIR": str(root / "restic-cache"),
                "KEEL_SECRETS_DIR": str(root / "secrets"),
                "KEEL_STORES_DIR": str(root / "stores"),
                "KEEL_TEXTFILE_DIR": str(root / "textfile"),
                "KEEL_WORK_DIR": str(root / "work"),
                "KEEL_SCRIPTS_DIR": str(scripts),
                "KEEL_PORT_DB": str(server.port),
                "KEEL_RUN_STARTED_FILE": str(root / "run-started"),
            }
            job_backup_s = _timed(["sh", str(scripts / "backup.sh")], job_env)
            repository_after_first = _tree_bytes(repository)
            server.psql("CREATE DATABASE job_restore")
            job_restore_s = _timed(
                ["sh", str(scripts / "restore-postgres.sh"), "db", "127.0.0.1", str(server.port), "job_restore", "app"],
                job_env,
            )
            assert _fingerprint(server, "job_restore") == expected
            server.psql("DROP DATABASE job_restore")

            second_backup_s = _timed(["sh", str(scripts / "backup.sh")], job_env)
            added = _tree_bytes(repository) - repository_after_first

    print(f"raw pg_dump -Fc          {raw_dump_s:7.1f}s  ({raw_bytes / 1024**2:.1f} MiB file, pg_dump's compression)")
    print(f"raw pg_dump -Fc -Z0      {plain_dump_s:7.1f}s")
    print(f"job backup.sh            {job_backup_s:7.1f}s  (pg_dump -Z0 | restic backup --stdin, then forget --prune)")
    print(f"backup ratio             {job_backup_s / raw_dump_s:7.2f}x raw, {job_backup_s / plain_dump_s:.2f}x raw -Z0")
    print(f"raw pg_restore           {raw_restore_s:7.1f}s")
    print(f"raw pg_restore (-Z0)     {plain_restore_s:7.1f}s")
    print(f"job restore-postgres.sh  {job_restore_s:7.1f}s  (restic dump | pg_restore)")
    print(
        f"restore ratio            {job_restore_s / raw_restore_s:7.2f}x raw, "
        f"{job_restore_s / plain_restore_s:.2f}x raw -Z0  (target <= 1.5x)"
    )
    print(f"repository after 1st     {repository_after_first / 1024**2:7.1f} MiB")
    print(f"2nd backup               {second_backup_s:7.1f}s, repository grew by {added} bytes")
    print(f"2nd backup share         {added / size * 100:7.4f}% of the database (target < 1%)")


if __name__ == "__main__":
    main()
