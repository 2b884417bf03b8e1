"""The backup job's scripts against the raw tools doing the same work, through an S3 server on loopback.

One S3 server (moto's, a separate process on 127.0.0.1, objects above 5 MiB kept in temp
files on disk) holds both sides' data; restic reaches it as `s3:http://127.0.0.1:PORT/...`, as
the job reaches Hetzner's object storage. Per store kind, side by side on the same server:

- PostgreSQL 15 with the rendered postgresql.conf for a 2 GiB store and `fsync=on`, filled
  until the database is TARGET_BYTES (its index included). raw: `pg_dump -Fc | s3pipe put`,
  `s3pipe get | pg_restore`; job: backup.sh (pg_dump -Z0 | restic backup --stdin)
  and restore-postgres.sh (restic dump | pg_restore), same pg_restore flags on both sides.
- Redis 7 with the rendered redis.conf, REDIS_KEYS keys. raw: `redis-cli --rdb - | s3pipe put`,
  `s3pipe get > dump.rdb`; job: backup.sh (BGSAVE, then the RDB into restic) and
  restore-redis.sh (the RDB back, with a new AOF manifest based on it).
- SQLite, SQLITE_ROWS rows. raw: `sqlite3 .backup` then `s3pipe put`, `s3pipe get`; job:
  backup.sh (VACUUM INTO, integrity_check, restic) and restore-sqlite.sh (restic dump,
  integrity_check).

Before every restore the page cache is dropped (`echo 3 > /proc/sys/vm/drop_caches`, which
needs root; the bench says when it could not), the tools themselves are read back in (so that
only the data comes cold from disk), and restic starts with an empty cache, as on a fresh host.
Then each store changes 1% of its rows and the job backs it up again; the bench prints what
that second backup added to the repository (restic's data_added). PostgreSQL is
changed twice: 1% of rows in one contiguous range (recent rows), then 1% spread evenly.

Each job run is backup.sh for that store alone (one rendered script set per store), so its
time includes opening and checking the repository, as every scheduled run (retention runs from
the maintenance workflow, not the job).
Figures are printed, never asserted. Run: `python -m bench backup`.

Left out: real network latency and bandwidth (loopback), the object store's own speed (moto
is a Python server: both sides pay it), the host's disk cache under a virtual machine (only the
guest's page cache is dropped), concurrent writes during the backup.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import EndpointConnectionError

from config.base import Resources
from render.backup import BackupSpec, env_suffix, password_file, render_backup_scripts
from stores.base import BackupTarget
from stores.postgres.kind import PostgresTarget
from stores.postgres.model import PostgresSpec
from stores.postgres.server import render_postgresql_conf
from stores.redis.kind import RedisTarget
from stores.redis.model import RedisSpec
from stores.redis.server import redis_acl, render_redis_conf
from stores.volume.kind import VolumeTarget
from tests.realtools.pg_helpers import Postgres, free_port, postgres_server, redis_server
from tools.prereqs import need

TARGET_BYTES = 1024**3
BATCH_ROWS = 1_000_000
MAX_BATCHES = 12
MAX_GENERATION_S = 900
REDIS_KEYS = 1_000_000
SQLITE_ROWS = 1_500_000
S3_KEY = "bench-access-key"
S3_SECRET = "bench-secret-key"
RAW_BUCKET = "raw"
JOB_BUCKET = "keel-backups"
RESTORE_FLAGS = "--clean --if-exists --no-owner --single-transaction --exit-on-error"
REDIS_PASSWORD = "bench-redis-password"

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
REDIS_FILL = (
    "for i = tonumber(ARGV[1]), tonumber(ARGV[2]) do "
    "redis.call('SET', 'session:' .. i, redis.sha1hex(tostring(i)) .. redis.sha1hex(tostring(i * 31)) .. "
    "string.rep('u', 60)) end return 0"
)
REDIS_CHANGE = (
    "for i = tonumber(ARGV[1]), tonumber(ARGV[2]), 100 do "
    "redis.call('SET', 'session:' .. i, redis.sha1hex('changed' .. i)) end return 0"
)


@dataclass
class Timings:
    """One store kind's figures: seconds per side, bytes added by the second backup(s)."""

    name: str
    size: int
    raw_backup_s: float = 0.0
    job_backup_s: float = 0.0
    raw_restore_s: float = 0.0
    job_restore_s: float = 0.0
    second: tuple[tuple[str, float, int], ...] = ()
    """(what changed, seconds, bytes added) per later backup."""


class S3Server:
    """moto's S3 server in its own process on loopback."""

    def __init__(self, root: Path) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.log = (root / "moto.log").open("wb")
        self.env = {**os.environ, "TMPDIR": str(root / "s3-objects")}
        (root / "s3-objects").mkdir()
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> S3Server:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=self.log, stderr=subprocess.STDOUT, env=self.env,
        )  # fmt: skip
        client = self.client()
        deadline = time.monotonic() + 30
        while True:
            try:
                client.create_bucket(Bucket=RAW_BUCKET)
                client.create_bucket(Bucket=JOB_BUCKET)
                return self
            except EndpointConnectionError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise
                time.sleep(0.2)

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=30)
        self.log.close()

    def client(self) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=S3_KEY,
            aws_secret_access_key=S3_SECRET,
        )


class Bench:
    """Paths, environment and timing shared by every store kind."""

    def __init__(self, root: Path, s3: S3Server) -> None:
        self.root = root
        self.s3 = s3
        self.secrets = root / "secrets"
        self.stores = root / "stores"
        for directory in (self.secrets, self.stores, root / "work", root / "textfile"):
            directory.mkdir(parents=True, exist_ok=True)
        (self.secrets / "s3-access-key").write_text(S3_KEY)
        (self.secrets / "s3-secret-key").write_text(S3_SECRET)
        (root / "restic-password").write_text("bench-repository-password")
        self.ports: dict[str, int] = {}
        self.dropped_caches = drop_caches()
        self._cache_generation = 0

    def pipe_command(self, action: str, key: str) -> str:
        return shlex.join([sys.executable, "-m", "bench.s3pipe", action, self.s3.endpoint, RAW_BUCKET, key])

    def env(self, store: str, *, fresh_cache: bool = False) -> dict[str, str]:
        if fresh_cache:
            self._cache_generation += 1
        env = {
            "PATH": os.environ["PATH"],
            "HOME": str(self.root),
            # The scripts need restic 0.17 or newer: the one tools/prereqs.py unpacks (0.18).
            "RESTIC": need("restic"),
            "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
            "AWS_ACCESS_KEY_ID": S3_KEY,
            "AWS_SECRET_ACCESS_KEY": S3_SECRET,
            "RESTIC_REPOSITORY": f"s3:{self.s3.endpoint}/{JOB_BUCKET}/{store}",
            "RESTIC_PASSWORD_FILE": str(self.root / "restic-password"),
            "RESTIC_CACHE_DIR": str(self.root / f"restic-cache-{self._cache_generation}"),
            "KEEL_SECRETS_DIR": str(self.secrets),
            "KEEL_S3_ACCESS_KEY_FILE": str(self.secrets / "s3-access-key"),
            "KEEL_S3_SECRET_KEY_FILE": str(self.secrets / "s3-secret-key"),
            "KEEL_STORES_DIR": str(self.stores),
            "KEEL_TEXTFILE_DIR": str(self.root / "textfile"),
            "KEEL_WORK_DIR": str(self.root / "work"),
            "KEEL_SCRIPTS_DIR": str(self.scripts(store)),
            "KEEL_RUN_STARTED_FILE": str(self.root / "run-started"),
        }
        for name, port in self.ports.items():
            env[f"KEEL_HOST_{env_suffix(name)}"] = "127.0.0.1"
            env[f"KEEL_PORT_{env_suffix(name)}"] = str(port)
        return env

    def scripts(self, store: str) -> Path:
        return self.root / f"scripts-{store}"

    def render(self, store: str, spec: BackupSpec) -> None:
        directory = self.scripts(store)
        directory.mkdir(exist_ok=True)
        for name, text in render_backup_scripts(spec).items():
            (directory / name).write_text(text)

    def timed(self, command: str, env: dict[str, str], *, before_restore: bool = False) -> tuple[float, str]:
        """Run `command` with bash -o pipefail; seconds taken and its stderr."""
        if before_restore and self.dropped_caches:
            drop_caches()
            warm_tools(env)
        started = time.monotonic()
        result = subprocess.run(
            ["bash", "-o", "pipefail", "-c", command], env=env, capture_output=True, text=True, check=False
        )
        elapsed = time.monotonic() - started
        if result.returncode != 0:
            raise RuntimeError(f"{command} failed ({result.returncode}):\n{result.stderr[-4000:]}")
        return elapsed, result.stderr

    def job(self, store: str, script: str, *args: str, restore: bool = False) -> tuple[float, str]:
        command = shlex.join(["sh", str(self.scripts(store) / script), *args])
        return self.timed(command, self.env(store, fresh_cache=restore), before_restore=restore)


def drop_caches() -> bool:
    """Empty the page cache (root only); False where the kernel does not allow it."""
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def warm_tools(env: dict[str, str]) -> None:
    """Read the tools back in after dropping the cache: only the data should come cold from disk
    (Python's boto3 is thousands of files, restic one binary; a cold start would favour restic)."""
    for command in (
        [sys.executable, "-c", "import boto3, s3transfer.manager, bench.s3pipe"],
        [need("restic"), "version"],
        [need("pg_restore"), "--version"],
        [need("sqlite3"), "--version"],
        [need("redis-cli"), "--version"],
    ):
        subprocess.run(command, env=env, capture_output=True, check=True, timeout=60)


def data_added(stderr: str) -> int:
    """restic's data_added for the last store, as backup.sh logs it ("N bytes of new data")."""
    import re

    found = re.findall(r"(\d+) bytes of new data", stderr)
    if not found:
        raise RuntimeError(f"backup.sh no longer logs restic's data_added:\n{stderr[-2000:]}")
    return int(found[-1])


def spec_for(*targets: BackupTarget) -> BackupSpec:
    return BackupSpec(
        repository="s3:https://unused.example.com/bucket",
        snapshot_host="bench",
        schedule="0 * * * *",
        initialise=True,
        targets=targets,
    )


# ----------------------------------------------------------------------------- PostgreSQL


def _generate(server: Postgres) -> tuple[int, int, float]:
    server.psql("CREATE DATABASE bench")
    server.psql(SCHEMA, database="bench")
    started = time.monotonic()
    rows = 0
    for batch in range(MAX_BATCHES):
        server.psql(BATCH.format(start=rows + 1, end=rows + BATCH_ROWS), database="bench")
        rows += BATCH_ROWS
        if batch == 0:
            # One index, so restores rebuild one as real databases make them do.
            server.psql("CREATE INDEX events_account ON events (account)", database="bench")
        size = int(server.psql("SELECT pg_database_size('bench')"))
        if size >= TARGET_BYTES or time.monotonic() - started > MAX_GENERATION_S:
            break
    server.psql("VACUUM ANALYZE", database="bench")
    return rows, int(server.psql("SELECT pg_database_size('bench')")), time.monotonic() - started


def _fingerprint(server: Postgres, database: str) -> str:
    return server.psql("SELECT count(*) || ' ' || sum(amount) || ' ' || max(created) FROM events", database=database)


def postgres(bench: Bench) -> Timings:
    store = PostgresSpec(kind="postgres", resources=Resources(memory_mb=2048), database="bench", user="app")
    with postgres_server(bench.root, render_postgresql_conf(store), extra=("-c", "fsync=on")) as server:
        fsync = server.psql("SHOW fsync")
        rows, size, generation_s = _generate(server)
        print(f"postgres: {rows} rows, {size / 1024**2:.0f} MiB in {generation_s:.0f}s, fsync={fsync}", flush=True)
        bench.ports["db"] = server.port
        (bench.secrets / password_file("db")).write_text(server.password)
        bench.render("db", spec_for(PostgresTarget(name="db", host="127.0.0.1", database="bench", user="app")))
        env = {**bench.env("db"), "PGPASSWORD": server.password}
        connection = f"--host 127.0.0.1 --port {server.port} --username app --no-password"
        expected = _fingerprint(server, "bench")
        timings = Timings("PostgreSQL", size)

        timings.raw_backup_s, _ = bench.timed(
            f"{shlex.quote(need('pg_dump'))} {connection} --format=custom --dbname bench"
            f" | {bench.pipe_command('put', 'db.pgdump')}",
            env,
        )
        timings.job_backup_s, _ = bench.job("db", "backup.sh")
        for side in ("raw", "job"):
            server.psql(f"CREATE DATABASE {side}_restore")
            if side == "raw":
                timings.raw_restore_s, _ = bench.timed(
                    f"{bench.pipe_command('get', 'db.pgdump')} | "
                    f"{shlex.quote(need('pg_restore'))} {connection} {RESTORE_FLAGS} --dbname raw_restore",
                    env,
                    before_restore=True,
                )
            else:
                timings.job_restore_s, _ = bench.job(
                    "db", "restore-postgres.sh", "db", "127.0.0.1", str(server.port), "job_restore", "app", restore=True
                )
            if _fingerprint(server, f"{side}_restore") != expected:
                raise RuntimeError(f"the {side} restore differs from the database")
            server.psql(f"DROP DATABASE {side}_restore")

        recent = rows - rows // 100
        server.psql(f"UPDATE events SET amount = amount + 1 WHERE id > {recent}", database="bench")
        clustered_s, log = bench.job("db", "backup.sh")
        server.psql("UPDATE events SET amount = amount + 1 WHERE id % 100 = 50", database="bench")
        spread_s, log2 = bench.job("db", "backup.sh")
        timings.second = (
            ("1% of rows, the most recent", clustered_s, data_added(log)),
            ("1% of rows, spread evenly", spread_s, data_added(log2)),
        )
    return timings


# ----------------------------------------------------------------------------- Redis


def redis(bench: Bench) -> Timings:
    store = RedisSpec.model_validate({"kind": "redis", "resources": {"memory_mb": 1024}})
    data_dir = bench.stores / "cache"
    data_dir.mkdir()
    (bench.secrets / password_file("cache")).write_text(REDIS_PASSWORD)
    config = lambda data: render_redis_conf(store, data_dir=data)  # noqa: E731
    with redis_server(
        bench.root, config, acl_text=redis_acl(REDIS_PASSWORD), password=REDIS_PASSWORD, data_dir=data_dir
    ) as server:
        for start in range(1, REDIS_KEYS + 1, 100_000):
            server.cli("EVAL", REDIS_FILL, "0", str(start), str(min(start + 99_999, REDIS_KEYS)))
        server.cli("BGREWRITEAOF")
        bench.ports["cache"] = server.port
        bench.render("cache", spec_for(RedisTarget(name="cache", host="127.0.0.1")))
        env = {**bench.env("cache"), "REDISCLI_AUTH": REDIS_PASSWORD}
        memory = dict(line.split(":", 1) for line in server.cli("INFO", "memory").stdout.split() if ":" in line)
        size = int(memory["used_memory_dataset"])
        print(f"redis: {server.cli('DBSIZE').stdout.strip()} keys, {size / 1024**2:.0f} MiB of data", flush=True)
        timings = Timings("Redis", size)
        timings.raw_backup_s, _ = bench.timed(
            f"{shlex.quote(need('redis-cli'))} -h 127.0.0.1 -p {server.port} --rdb -"
            f" | {bench.pipe_command('put', 'cache.rdb')}",
            env,
        )
        timings.job_backup_s, _ = bench.job("cache", "backup.sh")
        raw_dir, job_dir = bench.root / "redis-raw-restore", bench.root / "redis-job-restore"
        raw_dir.mkdir()
        timings.raw_restore_s, _ = bench.timed(
            f"{bench.pipe_command('get', 'cache.rdb')} > {shlex.quote(str(raw_dir / 'dump.rdb'))}",
            env,
            before_restore=True,
        )
        timings.job_restore_s, _ = bench.job("cache", "restore-redis.sh", "cache", str(job_dir), restore=True)
        if (raw_dir / "dump.rdb").stat().st_size == 0 or not (job_dir / "dump.rdb").exists():
            raise RuntimeError("a Redis restore wrote no RDB file")
        server.cli("EVAL", REDIS_CHANGE, "0", "1", str(REDIS_KEYS))
        second_s, log = bench.job("cache", "backup.sh")
        timings.second = (("1% of keys, spread evenly", second_s, data_added(log)),)
    return timings


# ----------------------------------------------------------------------------- SQLite


def sqlite(bench: Bench) -> Timings:
    sqlite3 = need("sqlite3")
    database = bench.stores / "files" / "data" / "app.db"
    database.parent.mkdir(parents=True)
    subprocess.run(
        [sqlite3, str(database),
         "PRAGMA journal_mode=WAL; CREATE TABLE orders (id INTEGER PRIMARY KEY, customer INT, item TEXT, "
         "amount REAL, note TEXT); WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g "
         f"WHERE n < {SQLITE_ROWS}) INSERT INTO orders SELECT n, n * 7919 % 100000, 'item-' || (n % 5000), "
         "n % 1000 / 10.0, hex(randomblob(40)) FROM g; CREATE INDEX orders_customer ON orders (customer);"],
        check=True, capture_output=True, timeout=900,
    )  # fmt: skip
    size = database.stat().st_size
    print(f"sqlite: {SQLITE_ROWS} rows, {size / 1024**2:.0f} MiB", flush=True)
    bench.render("files", spec_for(VolumeTarget(name="files", sqlite_files=("data/app.db",), files=False)))
    env = bench.env("files")
    copy = bench.root / "sqlite-raw-copy.db"
    timings = Timings("SQLite", size)
    timings.raw_backup_s, _ = bench.timed(
        f"{shlex.join([sqlite3, str(database), f'.backup {copy}'])} && "
        f"{bench.pipe_command('put', 'app.db')} < {shlex.quote(str(copy))}",
        env,
    )
    copy.unlink()
    timings.job_backup_s, _ = bench.job("files", "backup.sh")
    raw_target, job_target = bench.root / "sqlite-raw-restore.db", bench.root / "sqlite-job-restore.db"
    timings.raw_restore_s, _ = bench.timed(
        f"{bench.pipe_command('get', 'app.db')} > {shlex.quote(str(raw_target))}", env, before_restore=True
    )
    timings.job_restore_s, _ = bench.job(
        "files", "restore-sqlite.sh", "files", "data/app.db", str(job_target), restore=True
    )
    for target in (raw_target, job_target):
        count = subprocess.run(
            [sqlite3, str(target), "SELECT count(*) FROM orders"], capture_output=True, text=True, check=True
        ).stdout.strip()
        if count != str(SQLITE_ROWS):
            raise RuntimeError(f"{target} has {count} rows")
    subprocess.run(
        [sqlite3, str(database), "UPDATE orders SET amount = amount + 1 WHERE id % 100 = 50"],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    second_s, log = bench.job("files", "backup.sh")
    timings.second = (("1% of rows, spread evenly", second_s, data_added(log)),)
    return timings


# ----------------------------------------------------------------------------- main


def report(bench: Bench, results: list[Timings]) -> None:
    caches = "dropped before each restore" if bench.dropped_caches else "NOT dropped (not permitted here)"
    print(f"S3 on loopback (moto {moto_version()}), restic {restic_version()}; page cache {caches}")
    print(
        f"  {'store':11} {'size':>9} {'backup raw':>11} {'job':>8} {'ratio':>6} "
        f"{'restore raw':>12} {'job':>8} {'ratio':>6}"
    )
    for t in results:
        print(
            f"  {t.name:11} {t.size / 1024**2:7.0f} MiB {t.raw_backup_s:10.1f}s {t.job_backup_s:7.1f}s "
            f"{t.job_backup_s / t.raw_backup_s:5.2f}x {t.raw_restore_s:11.1f}s {t.job_restore_s:7.1f}s "
            f"{t.job_restore_s / t.raw_restore_s:5.2f}x"
        )
    print("  target: restore <= 1.5x raw")
    print("second backup after a change (restic's data_added; target < 1% of the store's size):")
    for t in results:
        for what, seconds, added in t.second:
            print(
                f"  {t.name:11} {what:30} {seconds:6.1f}s, added {added / 1024**2:8.1f} MiB "
                f"= {added / t.size * 100:6.2f}% of the store"
            )


def moto_version() -> str:
    from importlib.metadata import version

    return version("moto")


def restic_version() -> str:
    output = subprocess.run([need("restic"), "version"], capture_output=True, text=True, check=True).stdout
    return output.split()[1]


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="keel-backup-bench-") as scratch:
        root = Path(scratch)
        os.chmod(root, 0o755)
        with S3Server(root) as s3:
            bench = Bench(root, s3)
            results = []
            for store in (postgres, redis, sqlite):
                results.append(store(bench))
                # Each store's figures as soon as it is done: a long run interrupted still reports.
                report(bench, results[-1:])
            report(bench, results)


if __name__ == "__main__":
    main()
