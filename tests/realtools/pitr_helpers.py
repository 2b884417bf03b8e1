"""Run the rendered point-in-time recovery scripts outside a container, as the store's jobs run them.

pgBackRest (Debian's 2.45) and PostgreSQL 15 run as ``nobody`` (PostgreSQL refuses root, and
archive_command runs as the server's user); pgBackRest reads the rendered pgbackrest.conf and the
rendered secrets include, and only what a test machine differs in comes from its environment
(PGBACKREST_* variables beat the file): the server's data directory, socket and port, the test
CA, a lock directory of the test's own.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pg_helpers import PG_USER
from s3_harness import S3Server

from render import pitr
from tests.tool_requirements import require_tool


def pgbackrest() -> str:
    """Debian's pgbackrest (tools/prereqs.py installs it; a machine without it skips)."""
    return require_tool("pgbackrest")


def pg_bin() -> str:
    """The server's binaries (pg_ctl), which Debian keeps off PATH."""
    return os.path.dirname(require_tool("pg_ctl"))


@dataclass
class PitrWorld:
    root: Path
    spec: pitr.PitrSpec
    config_dir: Path
    scripts: Path
    textfile: Path
    scratch: Path
    secrets: Path
    env: dict[str, str]

    def run(self, script: str, *args: str, timeout_s: float = 300) -> subprocess.CompletedProcess[str]:
        """A rendered script, as the postgres user of the job would run it."""
        return subprocess.run(
            ["sh", str(self.scripts / script), *args], env=self.env, capture_output=True, text=True,
            timeout=timeout_s, check=False, user=PG_USER, cwd=self.root,
        )  # fmt: skip

    def pgbackrest(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [pgbackrest(), f"--stanza={self.spec.stanza}", *args], env=env or self.env, capture_output=True,
            text=True, timeout=300, check=False, user=PG_USER, cwd=self.root,
        )  # fmt: skip

    def metrics(self, job: str) -> dict[str, float]:
        samples = {}
        for line in (self.textfile / pitr.metrics_file(self.spec.store, job)).read_text().splitlines():
            if line and not line.startswith("#"):
                key, value = line.rsplit(" ", 1)
                samples[key] = float(value)
        return samples


def pitr_world(s3: S3Server, *, path: str, archive_timeout_s: int = 10) -> PitrWorld:
    """Render the store's pgBackRest files and scripts into a directory ``nobody`` can use; the
    archive goes to ``path`` in the S3 server's bucket, with the ``pitr`` user's key (no delete)."""
    root = Path(tempfile.mkdtemp(prefix="keel-pitr-"))
    os.chmod(root, 0o755)
    port = int(s3.endpoint.rsplit(":", 1)[1])
    spec = pitr.PitrSpec(
        store="db",
        # The test CA names localhost and 127.0.0.1; pgBackRest 2.45 matches the host against DNS names only.
        repository=pitr.Repository(host="localhost", port=port, bucket="keel-backups", region="us-east-1", path=path),
        database="shop",
        user=pitr.SUPERUSER,
        archive_timeout_s=archive_timeout_s,
        rpo_target_s=60,
        rto_target_s=900,
        host="127.0.0.1",
    )
    config_dir = root / "pgbackrest"
    (config_dir / "conf.d").mkdir(parents=True)
    (config_dir / "pgbackrest.conf").write_text(pitr.render_pgbackrest_conf(spec))
    access, secret = s3.keys["pitr"]
    (config_dir / "conf.d" / "keel-secrets.conf").write_text(
        pitr.render_secrets_conf(access_key=access, secret_key=secret, cipher_pass="test-cipher-passphrase")
    )
    shutil.copy(s3.ca_file, config_dir / "ca.pem")
    scripts = root / "scripts"
    scripts.mkdir()
    for name, text in pitr.render_scripts(spec).items():
        (scripts / name).write_text(text)
    world = PitrWorld(
        root=root, spec=spec, config_dir=config_dir, scripts=scripts, textfile=root / "textfile",
        scratch=root / "scratch", secrets=root / "secrets", env={},
    )  # fmt: skip
    for directory in (world.textfile, world.scratch, world.secrets):
        directory.mkdir()
    for path_ in [root, *root.rglob("*")]:
        shutil.chown(path_, user=PG_USER)
    world.env = {
        "PATH": f"{pg_bin()}:{os.path.dirname(pgbackrest())}:{os.environ['PATH']}",
        "HOME": str(root),
        "TZ": "UTC",
        "PGBACKREST_CONFIG": str(config_dir / "pgbackrest.conf"),
        "PGBACKREST_CONFIG_INCLUDE_PATH": str(config_dir / "conf.d"),
        "PGBACKREST_REPO1_STORAGE_CA_FILE": str(config_dir / "ca.pem"),
        "PGBACKREST_LOCK_PATH": str(root / "lock"),
        "PGBACKREST_SPOOL_PATH": str(root / "spool"),
        "KEEL_TEXTFILE_DIR": str(world.textfile),
        "KEEL_SCRATCH_DIR": str(world.scratch),
        "KEEL_SECRETS_DIR": str(world.secrets),
        "KEEL_RUN_STARTED_FILE": str(root / "run-started"),
        "KEEL_HEARTBEAT_FILE": str(root / "heartbeat"),
    }
    return world


def server_env(world: PitrWorld, data_dir: Path, socket_dir: Path, port: int, password: str) -> dict[str, str]:
    """What archive_command and the backup need to find this server (the rest is pgbackrest.conf)."""
    return {
        **world.env,
        "PGBACKREST_PG1_PATH": str(data_dir),
        "PGBACKREST_PG1_SOCKET_PATH": str(socket_dir),
        "PGBACKREST_PG1_PORT": str(port),
        "PGPASSWORD": password,
    }


ARCHIVE_DEADLINE_S = 120


def wait_archived(server: Any, deadline_s: float = ARCHIVE_DEADLINE_S) -> None:
    """Switch to a new WAL segment and wait until the archiver has pushed the one just closed."""
    segment = server.psql("SELECT pg_walfile_name(pg_switch_wal())")
    deadline = time.monotonic() + deadline_s
    # pg_stat_archiver names only the last file archived, and a backup's history file
    # (<segment>.<offset>.backup, written at pgBackRest's backup stop) archived after a later
    # segment sorts before it: waiting for the name to reach `segment` then waits out
    # archive_timeout (60 s) for the next switch. The segment's own status file says it is done
    # (PostgreSQL 15 src/backend/postmaster/pgarch.c pgarch_archiveDone renames .ready to .done).
    done = f"SELECT (pg_stat_file('pg_wal/archive_status/{segment}.done', true)).modification IS NOT NULL"
    while (
        server.psql(done) != "t"
        and server.psql("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver") < segment
    ):
        if time.monotonic() > deadline:
            raise AssertionError(f"{segment} not archived: {server.psql('SELECT * FROM pg_stat_archiver')}")
        time.sleep(0.2)
