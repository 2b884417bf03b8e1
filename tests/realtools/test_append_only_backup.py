"""The restore drill of a bucket the host cannot erase (render/backup_bucket.py), with restic 0.18
and the rendered scripts against moto's S3 on loopback (tests/realtools/s3_harness.py), which
enforces each user's IAM policy (moto's INITIAL_NO_AUTH_ACTION_COUNT set to 0 once the users exist;
the action names of moto 5.2.5 moto/s3/responses.py ACTION_MAP: a DELETE with ``versionId`` is
``DeleteObjectVersion``, without it ``DeleteObject``).

The host's key is the rendered ``host_statements`` policy (AWS), or a key that may do everything
narrowed by the rendered Hetzner bucket policy's denials alone, and the bucket is set up as the
rendered documents say (versioning on, the lifecycle rule). Then, with the host's key, an attacker tries
what would erase the history (restic forget --prune, deleting versions, changing the bucket's
versioning or lifecycle), and does the worst it can (overwrites every snapshot and index file and
the repository's config); the maintenance key's rollback brings the repository back and the real
restore drill passes. Not provable here: that the provider runs the lifecycle rule (moto stores it
but never expires anything), and rest-server's append-only mode (not installable here).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from backup_helpers import BackupWorld, backup_world, restic_binary
from botocore.exceptions import ClientError
from s3_harness import REGION, S3Server

from config.models import Retention
from render import backup_bucket
from render.backup import BackupSpec
from render.backup_bucket import BucketLayout
from stores.volume.kind import VolumeTarget

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.requires_tool("restic")

KEEP_DELETED_DAYS = 30
STACK_HOST = "shop-prod"
"""The snapshots' --host of stack prod (config.names), which the maintenance tool's retention selects."""


def _bucket(tmp_path: Path) -> str:
    """A versioned bucket of the test's own (the shared one stays unversioned for the other tests)."""
    return "keel-ao-" + hashlib.sha256(str(tmp_path).encode()).hexdigest()[:16]


AWS = "aws"
HETZNER = "hetzner"
"""How the host's key is narrowed: AWS, by the rendered identity policy; Hetzner, whose keys may do
everything in their project, by the rendered bucket policy's denials alone. moto evaluates identity
policies only (moto 5.2.5 moto/iam/access_control.py S3IAMRequest: the user's policies, never the
bucket's), so the Hetzner key is modelled as an allow-everything identity policy plus exactly the
denials hetzner-bucket-policy.json applies to it."""


def _setup(
    tmp_path: Path, s3: S3Server, restic_template: Path, *, initialise: bool = False, provider: str = AWS
) -> tuple[BackupWorld, BucketLayout, str, str]:
    """The bucket as `bucket-setup` renders it, the host and maintenance users with their rendered
    policies, and a job whose secrets hold the host's key; the repository is a copy of the template,
    or none (``initialise``: the first run creates it, as on a first deploy). Returns (world, layout,
    host, maintenance)."""
    layout = BucketLayout(bucket=_bucket(tmp_path), prefix="shop/prod")
    admin = s3.client()
    admin.create_bucket(Bucket=layout.bucket)
    documents = backup_bucket.render_documents(layout, KEEP_DELETED_DAYS)
    admin.put_bucket_versioning(Bucket=layout.bucket, VersioningConfiguration=json.loads(documents["versioning.json"]))
    admin.put_bucket_lifecycle_configuration(
        Bucket=layout.bucket, LifecycleConfiguration=json.loads(documents["lifecycle.json"])
    )
    [rule] = admin.get_bucket_lifecycle_configuration(Bucket=layout.bucket)["Rules"]
    assert rule["NoncurrentVersionExpiration"] == {"NoncurrentDays": KEEP_DELETED_DAYS}
    assert rule["Filter"] == {"Prefix": "shop/prod/"}
    suffix = layout.bucket.removeprefix("keel-ao-")
    host, maintenance = f"host-{suffix}", f"maintenance-{suffix}"
    if provider == AWS:
        s3.add_user(host, json.loads(documents["host-iam-policy.json"])["Statement"])
    else:
        principal = backup_bucket.hetzner_principal("1234567", "HOSTKEY")
        denials = backup_bucket.bucket_policy(backup_bucket.host_denials(layout), principal)["Statement"]
        everything = {"Effect": "Allow", "Action": "s3:*", "Resource": "*"}
        s3.add_user(host, [everything, *({k: v for k, v in d.items() if k != "Principal"} for d in denials)])
    s3.add_user(maintenance, json.loads(documents["maintenance-iam-policy.json"])["Statement"])
    if not initialise:
        s3.upload_tree(restic_template, layout.prefix, bucket=layout.bucket)

    spec = BackupSpec(
        repository="s3:https://unused.example.com/bucket", snapshot_host=STACK_HOST, schedule="0 * * * *",
        targets=(VolumeTarget(name="files"),),
    )  # fmt: skip
    world = backup_world(
        tmp_path / "backup", spec, template=restic_template, s3=s3,
        repository=s3.repository(layout.prefix, bucket=layout.bucket), empty=initialise,
    )  # fmt: skip
    world.use_s3_key(host)
    if initialise:
        world.extra_env["KEEL_INITIALISE"] = "1"
    world.extra_env["KEEL_SNAPSHOT_HOST"] = STACK_HOST
    (world.stores / "files").mkdir()
    (world.stores / "files" / "invoice.pdf").write_bytes(os.urandom(300_000))
    return world, layout, host, maintenance


def _restic_as(world: BackupWorld, s3: S3Server, user: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = world.env()
    env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"] = s3.keys[user]
    return subprocess.run(
        [restic_binary(), *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )  # fmt: skip


def _refused(call: object, *args: object, **kwargs: object) -> None:
    with pytest.raises(ClientError) as refused:
        call(*args, **kwargs)  # type: ignore[operator]
    assert refused.value.response["Error"]["Code"] == "AccessDenied", refused.value.response


def _after_this_second() -> datetime:
    """Now, once the clock has moved past the current second (S3 keeps whole seconds and more)."""
    start = datetime.now(UTC)
    deadline = time.monotonic() + 5
    while datetime.now(UTC).replace(microsecond=0) <= start.replace(microsecond=0):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return datetime.now(UTC)


@pytest.mark.parametrize("provider", [AWS, HETZNER])
def test_host_key_backs_up_and_checks_but_cannot_erase_and_a_rollback_undoes_its_worst(
    tmp_path: Path, s3: S3Server, restic_template: Path, provider: str
) -> None:
    world, layout, host, maintenance = _setup(tmp_path, s3, restic_template, provider=provider)

    # The host's whole job works with its key: backups (locks removed), the check, the drill.
    first = world.run("backup.sh")
    assert first.returncode == 0, first.stderr
    assert world.metrics()['keel_backup_last_run_success{store="files"}'] == 1
    assert "keel_backup_retention_last_run_success" not in world.metrics()
    check = world.run("check.sh")
    assert check.returncode == 0, check.stderr
    assert world.locks() == []
    [snapshot] = world.snapshots("--tag", "store=files")

    # The operator's checks of the set-up: the host's key passes its probes, a key that may delete
    # (the maintenance key) does not; the bucket has versioning and the stack's lifecycle rule.
    stack_file = _stack_file(tmp_path, s3, layout, Retention())
    probed = _tool(world, s3, host, stack_file, "check-host-key")
    assert probed.returncode == 0, probed.stdout + probed.stderr
    too_much = _tool(world, s3, maintenance, stack_file, "check-host-key")
    assert too_much.returncode == 1
    assert [line.split(":")[0] for line in too_much.stdout.splitlines() if line.startswith("FAIL")] == [
        "FAIL DeleteObjectVersion (removes history)", "FAIL DeleteObject outside locks/ (hides snapshots)",
    ]  # fmt: skip
    bucket = _tool(world, s3, maintenance, stack_file, "check-bucket")
    assert bucket.returncode == 0, bucket.stdout + bucket.stderr
    longer = tmp_path / "longer" / "Pulumi.prod.yaml"
    longer.parent.mkdir()
    longer.write_text(
        stack_file.read_text().replace(f"keep_deleted_days: {KEEP_DELETED_DAYS}", "keep_deleted_days: 60")
    )
    drifted = _tool(world, s3, maintenance, longer, "check-bucket")
    assert drifted.returncode == 1
    assert "no enabled rule expiring noncurrent versions under shop/prod/ after 60 days" in drifted.stdout

    # What would erase history, refused to the host's key.
    wipe = _restic_as(world, s3, host, "forget", str(snapshot["id"]), "--prune")
    assert "unable to remove snapshot/" in wipe.stderr and "Access Denied" in wipe.stderr, wipe.stderr
    assert [s["id"] for s in world.snapshots("--tag", "store=files")] == [snapshot["id"]]
    as_host = s3.client(host)
    snapshot_key = f"{layout.prefix}/snapshots/{snapshot['id']}"
    _refused(as_host.delete_object, Bucket=layout.bucket, Key=snapshot_key)
    _refused(as_host.delete_object, Bucket=layout.bucket, Key=f"{layout.prefix}/config")
    if provider == AWS:
        _refused(as_host.list_object_versions, Bucket=layout.bucket, Prefix=layout.prefix)
    admin = s3.client()
    [current] = admin.list_object_versions(Bucket=layout.bucket, Prefix=snapshot_key)["Versions"]
    _refused(as_host.delete_object, Bucket=layout.bucket, Key=snapshot_key, VersionId=current["VersionId"])
    _refused(as_host.put_bucket_versioning, Bucket=layout.bucket, VersioningConfiguration={"Status": "Suspended"})
    _refused(
        as_host.put_bucket_lifecycle_configuration, Bucket=layout.bucket,
        LifecycleConfiguration=backup_bucket.lifecycle_configuration(layout, 1),
    )  # fmt: skip
    _refused(as_host.delete_bucket_lifecycle, Bucket=layout.bucket)

    # The worst the host's key can do: overwrite what restic needs to read the history.
    before = _after_this_second()
    ruined = [
        key for key in s3.objects(layout.prefix, bucket=layout.bucket)
        if key.split("/")[2] in ("snapshots", "index", "keys") or key.endswith("/config")
    ]  # fmt: skip
    for key in ruined:
        as_host.put_object(Bucket=layout.bucket, Key=key, Body=b"erased by whoever took the host")
    broken = world.run("drill.sh")
    assert broken.returncode != 0
    assert world.restic("snapshots", "--no-lock").returncode != 0

    # The daily retention sees the overwrites (restic never overwrites) and prunes nothing.
    audited = _tool(world, s3, maintenance, stack_file, "retention", "--restic", restic_binary())
    assert audited.returncode == 1
    assert f"error: {len(ruined)} object(s) of the repository were overwritten (" in audited.stderr
    assert "Nothing was pruned; roll back" in audited.stderr

    # The host's key cannot undo it either (it may not list, or not remove, versions); the
    # maintenance key can.
    when = before.isoformat()
    refused = _tool(world, s3, host, stack_file, "rollback", "--before", when, "--apply")
    assert refused.returncode == 1
    operation = "GetBucketVersioning" if provider == AWS else "DeleteObject"
    assert f"S3 refused {operation} (AccessDenied): rollback needs the maintenance key" in refused.stderr
    dry = _tool(world, s3, maintenance, stack_file, "rollback", "--before", when)
    assert dry.returncode == 0, dry.stderr
    assert sorted(line.split()[3] for line in dry.stdout.splitlines() if line.startswith("would delete")) == sorted(
        ruined
    )
    assert world.restic("snapshots", "--no-lock").returncode != 0  # a dry run changes nothing
    applied = _tool(world, s3, maintenance, stack_file, "rollback", "--before", when, "--apply")
    assert applied.returncode == 0, applied.stderr
    assert f"{len(ruined)} version(s) written since" in applied.stdout
    # Rolled back, nothing looks overwritten any more: retention runs again.
    kept = _tool(world, s3, maintenance, stack_file, "retention", "--restic", restic_binary())
    assert kept.returncode == 0, kept.stderr

    assert [s["id"] for s in world.snapshots("--tag", "store=files")] == [snapshot["id"]]
    drill = world.run("drill.sh")
    assert drill.returncode == 0, drill.stderr
    restored = tmp_path / "restored"
    assert world.run("restore-files.sh", "files", str(restored)).returncode == 0
    found = next(restored.rglob("invoice.pdf"))
    assert found.read_bytes() == (world.stores / "files" / "invoice.pdf").read_bytes()


def test_retention_runs_with_the_maintenance_key_and_what_it_removes_stays_as_versions(
    tmp_path: Path, s3: S3Server, restic_template: Path
) -> None:
    # The first deploy: the host's key creates the repository in the bucket set up for it.
    world, layout, host, maintenance = _setup(tmp_path, s3, restic_template, initialise=True)
    for run in range(2):
        (world.stores / "files" / "note.txt").write_text(str(time.time_ns()))
        result = world.run("backup.sh")
        assert result.returncode == 0, result.stderr
        assert ("creating it (backup/repository/initialise is on)" in result.stderr) == (run == 0)
    older, newer = sorted(world.snapshots("--tag", "store=files"), key=lambda s: str(s["time"]))
    stack_file = _stack_file(tmp_path, s3, layout, Retention(hourly=1, daily=0, weekly=0, monthly=0))

    # The workflow's command with the host's key: it fails, and says why.
    refused = _tool(world, s3, host, stack_file, "retention", "--restic", restic_binary())
    assert refused.returncode == 1
    assert "S3 refused ListObjectVersions (AccessDenied): this needs the maintenance key" in refused.stderr
    assert len(world.snapshots("--tag", "store=files")) == 2

    kept = _tool(world, s3, maintenance, stack_file, "retention", "--restic", restic_binary())
    assert kept.returncode == 0, kept.stderr
    assert [s["id"] for s in world.snapshots("--tag", "store=files")] == [newer["id"]]
    # Forgotten, yet recoverable until the lifecycle rule's window has passed.
    older_key = f"{layout.prefix}/snapshots/{older['id']}"
    history = s3.client().list_object_versions(Bucket=layout.bucket, Prefix=older_key)
    assert [v["IsLatest"] for v in history["Versions"]] == [False]
    assert [m["IsLatest"] for m in history["DeleteMarkers"]] == [True]
    drill = world.run("drill.sh")
    assert drill.returncode == 0, drill.stderr


def _stack_file(tmp_path: Path, s3: S3Server, layout: BucketLayout, retention: Retention) -> Path:
    """prod's stack file, its backup repository moved to the test's bucket."""
    data = yaml.safe_load((ROOT / "Pulumi.prod.yaml").read_text())
    port = int(s3.endpoint.rsplit(":", 1)[1])
    data["config"]["keel:backup"] = {
        "retention": retention.model_dump(),
        "repository": {
            "endpoint": f"https://localhost:{port}", "bucket": layout.bucket, "path": layout.prefix, "region": REGION,
            "keep_deleted_days": KEEP_DELETED_DAYS,
        },
    }  # fmt: skip
    stack_file = tmp_path / "Pulumi.prod.yaml"
    stack_file.write_text(yaml.safe_dump(data))
    return stack_file


def _tool(
    world: BackupWorld, s3: S3Server, user: str, stack_file: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    """`python -m tools.backup_maintenance COMMAND prod --config-file ...` as the workflow runs it,
    with ``user``'s key and the repository password in its environment."""
    access, secret = s3.keys[user]
    env = {
        "PATH": os.environ["PATH"], "HOME": str(world.root), "AWS_ACCESS_KEY_ID": access,
        "AWS_SECRET_ACCESS_KEY": secret, "RESTIC_PASSWORD": (world.root / "restic-password").read_text(),
        "RESTIC_CACHE_DIR": str(world.root / "restic-cache"),
        # What the runner has and this machine lacks: trust in the endpoint's CA.
        "SSL_CERT_FILE": str(s3.ca_file), "AWS_CA_BUNDLE": str(s3.ca_file),
    }  # fmt: skip
    command, rest = args[0], args[1:]
    result = subprocess.run(
        [sys.executable, "-m", "tools.backup_maintenance", command, "prod", "--config-file", str(stack_file), *rest],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    for value in (secret, env["RESTIC_PASSWORD"]):
        assert value not in result.stdout + result.stderr, "a secret reached the log"
    return result
