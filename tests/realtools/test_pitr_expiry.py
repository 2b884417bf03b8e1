"""The archive's expiry as the maintenance workflow runs it (.github/workflows/maintenance.yml): its
own step script, .github/scripts/pitr-expire.sh, with Debian's pgBackRest, against moto's S3 over
TLS (tests/realtools/s3_harness.py), on an archive the host's scripts wrote with their key that
cannot delete.

The recovery window is whole days, so the script runs under libfaketime (Debian's faketime) as if
36 hours had passed: beyond a one-day window, within the test CA's two days of validity.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from pg_helpers import PG_USER, postgres_server
from pitr_helpers import PitrWorld, pitr_world, server_env, wait_archived
from s3_harness import BUCKET, REGION, S3Server

from config.base import Resources
from render import pitr
from stores.postgres import server as pg_server
from stores.postgres.model import PostgresSpec
from tests.tool_requirements import require_tool

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / ".github" / "scripts" / "pitr-expire.sh"
STORE = PostgresSpec(kind="postgres", resources=Resources(memory_mb=512), database="shop", user="app")
CIPHER = "test-cipher-passphrase"
"""pitr_helpers.pitr_world's: the archive's passphrase, which expiry needs to read its manifests."""


@pytest.fixture()
def world(s3: S3Server, request: pytest.FixtureRequest):
    made = pitr_world(s3, path=f"/pitr-{request.node.name[:40]}")
    yield made
    shutil.rmtree(made.root, ignore_errors=True)


def _stack_file(tmp_path: Path, s3: S3Server, path: str) -> Path:
    """prod's stack file, its backup repository moved to the test's S3 with a one-day window."""
    data = yaml.safe_load((ROOT / "Pulumi.prod.yaml").read_text())
    port = int(s3.endpoint.rsplit(":", 1)[1])
    data["config"]["keel:backup"] = {
        # The test CA names localhost and 127.0.0.1; pgBackRest 2.45 matches the host against DNS names only.
        "repository": {"endpoint": f"https://localhost:{port}", "bucket": BUCKET, "region": REGION},
        "pitr": {"path": path, "recovery_window_days": 1},
    }
    stack_file = tmp_path / "Pulumi.prod.yaml"
    stack_file.write_text(yaml.safe_dump(data))
    return stack_file


def _full_backups(world: PitrWorld) -> list[str]:
    info = world.pgbackrest("info", "--output=json")
    assert info.returncode == 0, info.stdout + info.stderr
    (stanza,) = json.loads(info.stdout)
    return [backup["label"] for backup in stanza["backup"] if backup["type"] == "full"]


def _wal_segments(s3: S3Server, world: PitrWorld) -> list[str]:
    keys = s3.objects(world.spec.repository.path.strip("/") + "/archive/")
    return [key for key in keys if "-" in key.rsplit("/", 1)[1]]  # <segment>-<sha1>.gz, not archive.info


def _expire(
    world: PitrWorld, stack_file: Path, key: tuple[str, str], *, later: str | None = None
) -> subprocess.CompletedProcess[str]:
    """The workflow's step: the script, from the repository root, with the environment's secrets."""
    access, secret = key
    env = {
        "PATH": f"{Path(sys.executable).parent}:{os.path.dirname(shutil.which('pgbackrest') or '')}:/usr/bin:/bin",
        "HOME": str(world.root),
        "PGBACKREST_REPO1_S3_KEY": access,
        "PGBACKREST_REPO1_S3_KEY_SECRET": secret,
        "PGBACKREST_REPO1_CIPHER_PASS": CIPHER,
        # What the runner has and this machine lacks: trust in the endpoint's CA, a lock directory of the test's own.
        "PGBACKREST_REPO1_STORAGE_CA_FILE": str(world.config_dir / "ca.pem"),
        "PGBACKREST_LOCK_PATH": str(world.root / "expire-lock"),
    }
    command = [str(SCRIPT), "prod", str(stack_file)]
    if later is not None:
        command = [require_tool("faketime"), "-f", later, *command]
    result = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    output = result.stdout + result.stderr
    for value in (secret, CIPHER):
        assert value not in output, "a secret reached the log"
    return result


def test_the_workflow_step_expires_backups_beyond_the_window_and_fails_when_s3_refuses(
    tmp_path: Path, s3: S3Server, world: PitrWorld
) -> None:
    require_tool("pgbackrest")
    stack_file = _stack_file(tmp_path, s3, world.spec.repository.path)
    conf = pitr.render_postgresql_conf(pg_server.render_postgresql_conf(STORE), world.spec)

    def env_of(data: Path, sock: Path, port: int) -> dict[str, str]:
        return server_env(world, data, sock, port, "")

    with postgres_server(tmp_path, conf, user=pitr.SUPERUSER, server_env=env_of) as server:
        world.env = server_env(world, server.data_dir, server.data_dir.parent, server.port, server.password)
        (world.secrets / "db-password").write_text(server.password)
        shutil.chown(world.secrets / "db-password", user=PG_USER)
        server.psql("CREATE DATABASE shop")
        # Two full backups by the host's own script and key (which cannot delete), WAL between them.
        first = world.run("pitr-backup.sh", "full")
        assert first.returncode == 0, first.stdout + first.stderr
        server.psql("CREATE TABLE t AS SELECT generate_series(1, 1000) AS n", database="shop")
        wait_archived(server)
        second = world.run("pitr-backup.sh", "full")
        assert second.returncode == 0, second.stdout + second.stderr
        wait_archived(server)
    backups = _full_backups(world)
    assert len(backups) == 2, backups
    wal_before = _wal_segments(s3, world)

    expire_key = s3.add_user("expire")

    # Today both backups are inside the one-day window: nothing goes.
    today = _expire(world, stack_file, expire_key)
    assert today.returncode == 0, today.stdout + today.stderr
    assert _full_backups(world) == backups

    # 36 hours on, with the host's key, which may not delete: S3 refuses, the step fails loudly.
    refused = _expire(world, stack_file, s3.keys["pitr"], later="+36h")
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "::error::pgbackrest expire failed for store db of stack prod" in refused.stdout
    assert "AccessDenied" in refused.stdout + refused.stderr
    assert _full_backups(world) == backups

    # With the key that may delete: the older full backup (and its WAL) is beyond the window and
    # goes; the newer one, the base the window's oldest second is restored from, stays.
    expired = _expire(world, stack_file, expire_key, later="+36h")
    assert expired.returncode == 0, expired.stdout + expired.stderr
    assert "expired the archive of: db" in expired.stdout
    assert _full_backups(world) == backups[1:]
    stanza_dir = world.spec.repository.path.strip("/") + "/backup/db/"
    assert s3.objects(stanza_dir + backups[0] + "/") == []  # backup.history/ keeps only its manifest
    assert s3.objects(stanza_dir + backups[1] + "/") != []
    wal_after = _wal_segments(s3, world)
    assert len(wal_after) < len(wal_before), (wal_before, wal_after)

    # A key S3 refuses everything: still loud.
    s3.deny("expire")
    denied = _expire(world, stack_file, expire_key, later="+36h")
    assert denied.returncode == 1, denied.stdout + denied.stderr
    assert "the archive of db was not expired" in denied.stderr
