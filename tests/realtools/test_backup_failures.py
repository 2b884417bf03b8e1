"""Backups when things go wrong, against the S3 server on loopback: locks left by killed runs,
locks of other hosts, the endpoint down or silent, wrong credentials, an untrusted certificate, a
missing bucket or repository, a damaged repository, a too old restic.
Each says what the run exits with, what the metrics say, and what the next run does
(docs/restore.md, "When backups fail", is the table of these)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from backup_helpers import SNAPSHOT_HOST, BackupWorld, backup_world, job_lock_held, restic_binary
from s3_harness import BUCKET, S3Server

from render.backup import BackupSpec
from stores.redis.kind import RedisTarget
from stores.volume.kind import VolumeTarget
from tests.tool_requirements import require_tool

pytestmark = pytest.mark.requires_tool("restic")

EVENT_TIMEOUT_S = 60
# Short bounds, so that a test waits seconds where the job waits minutes.
FAST = {"KEEL_PROBE_TIMEOUT_S": "5", "KEEL_RETRY_LOCK": "2s"}
# Where the test reads what restic printed before the probe's bound ended it.
SLOW_PROBE_S = 15


def _spec(*, initialise: bool = False) -> BackupSpec:
    return BackupSpec(
        repository="s3:https://unused.example.com/bucket",
        snapshot_host=SNAPSHOT_HOST,
        schedule="0 * * * *",
        targets=(VolumeTarget(name="files"),),
        initialise=initialise,
    )


def _world(
    tmp_path: Path, s3: S3Server, template: Path, *, spec: BackupSpec | None = None, **options: object
) -> BackupWorld:
    world = backup_world(tmp_path / "backup", spec or _spec(), template=template, s3=s3, **options)
    (world.stores / "files").mkdir()
    (world.stores / "files" / "invoice.pdf").write_bytes(os.urandom(300_000))
    world.extra_env = dict(FAST)
    return world


def _prefix(world: BackupWorld) -> str:
    assert world.s3 is not None
    return world.repository.removeprefix(world.s3.repository(""))


def _failed(world: BackupWorld, reason: str) -> None:
    """Every outcome of the last backup run failed for ``reason``."""
    metrics = world.metrics()
    assert metrics[f'keel_backup_last_run_success{{store="files",reason="{reason}"}}'] == 0, metrics
    assert "keel_backup_run_deadline_timestamp_seconds" not in metrics


def _succeeds(world: BackupWorld) -> subprocess.CompletedProcess[str]:
    result = world.run("backup.sh")
    assert result.returncode == 0, result.stderr
    metrics = world.metrics()
    assert metrics['keel_backup_last_run_success{store="files"}'] == 1
    return result


def _in_container(
    world: BackupWorld, command: list[str], *, hostname: str | None = None, stdin: int | None = None
) -> subprocess.Popen[bytes]:
    """Start ``command`` as a job's container would run it: in a PID namespace of its own, so the PID
    its restic writes into a lock means nothing to the next run; ``hostname``: another host's."""
    inner = 'exec "$@"' if hostname is None else f'hostname {hostname} && exec "$@"'
    uts = [] if hostname is None else ["--uts"]
    return subprocess.Popen(
        [require_tool("unshare"), "--pid", "--fork", "--kill-child", *uts, "sh", "-c", inner, "sh", *command],
        env=world.env(), stdin=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip


def _kill(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the whole container, as swarm does once a task outlives its stop grace period."""
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=EVENT_TIMEOUT_S)


def _kill_once_locked(world: BackupWorld, command: list[str], *, hostname: str | None = None) -> None:
    """Run ``command`` until it has written its lock and the endpoint has gone silent, then kill it:
    its lock stays in the repository."""
    assert world.s3 is not None
    tripped = world.s3.stall_after_next_lock()
    process = _in_container(world, command, hostname=hostname)
    try:
        assert tripped.wait(EVENT_TIMEOUT_S), "no lock was written"
    finally:
        _kill(process)
        world.s3.release()
    assert len(world.locks()) == 1


def _restic_in_container(world: BackupWorld, *args: str) -> list[str]:
    assert world.s3 is not None
    access, secret = world.s3.keys["backup"]
    return ["env", f"AWS_ACCESS_KEY_ID={access}", f"AWS_SECRET_ACCESS_KEY={secret}", restic_binary(), *args]


def _wait_for(condition: object, what: str) -> None:
    deadline = time.monotonic() + EVENT_TIMEOUT_S
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_lock_left_by_a_killed_check_does_not_block_the_next_backup(
    tmp_path: Path, s3: S3Server, restic_template: Path
) -> None:
    world = _world(tmp_path, s3, restic_template)
    _succeeds(world)
    # Killed after writing its exclusive lock (the endpoint cut right after, as in production).
    _kill_once_locked(world, world.command("check.sh"))
    # The killed check is on record as failed once its deadline has passed.
    check = world.metrics("keel_backup_check.prom")
    assert check['keel_backup_check_last_run_success{reason="unfinished"}'] == 0
    assert check["keel_backup_check_run_deadline_timestamp_seconds"] > time.time()

    healed = _succeeds(world)
    assert "removing 1 lock(s) left by runs of this host that did not finish" in healed.stderr
    assert world.locks() == []


def test_backup_killed_while_the_endpoint_is_silent_stays_failed_and_the_next_run_heals(
    tmp_path: Path, s3: S3Server, restic_template: Path
) -> None:
    world = _world(tmp_path, s3, restic_template)
    _succeeds(world)
    succeeded_at = world.metrics()['keel_backup_last_success_timestamp_seconds{store="files"}']
    (world.stores / "files" / "more.bin").write_bytes(os.urandom(200_000))

    _kill_once_locked(world, world.command("backup.sh"))
    # What a run killed at its deadline leaves: failed and unfinished, the last success kept.
    metrics = world.metrics()
    assert metrics['keel_backup_last_run_success{store="files",reason="unfinished"}'] == 0
    assert metrics['keel_backup_last_success_timestamp_seconds{store="files"}'] == succeeded_at
    assert time.time() < metrics["keel_backup_run_deadline_timestamp_seconds"] <= time.time() + 3600

    healed = _succeeds(world)
    assert "removing 1 lock(s)" in healed.stderr


def test_endpoint_down_at_start_fails_fast_and_the_next_run_recovers(
    tmp_path: Path, s3: S3Server, restic_template: Path
) -> None:
    world = _world(tmp_path, s3, restic_template)
    world.extra_env["KEEL_PROBE_TIMEOUT_S"] = str(SLOW_PROBE_S)
    s3.relay.down()
    try:
        down = world.run("backup.sh")
    finally:
        s3.relay.up()
    assert down.returncode == 1
    assert "connection refused" in down.stderr
    assert f"did not answer within {SLOW_PROBE_S}s: repository_unreachable" in down.stderr
    _failed(world, "repository_unreachable")
    _succeeds(world)


def test_endpoint_cut_for_a_moment_mid_backup_is_ridden_out_by_restics_retries(
    tmp_path: Path, s3: S3Server, restic_template: Path
) -> None:
    world = _world(tmp_path, s3, restic_template)
    stderr = tmp_path / "backup.err"
    tripped = s3.stall_after_next_lock()
    with stderr.open("w") as err:
        process = subprocess.Popen(world.command("backup.sh"), env=world.env(), stderr=err)
    try:
        assert tripped.wait(EVENT_TIMEOUT_S), "no lock was written"
        s3.relay.down()
        s3.release()
        # Back once restic has seen the outage and is retrying.
        _wait_for(
            lambda: any("retrying after" in p.read_text() for p in world.work.glob("keel.*/restic.err")),
            "restic to retry",
        )
        s3.relay.up()
        assert process.wait(timeout=120) == 0, stderr.read_text()
    finally:
        s3.relay.up()
        s3.release()
        if process.poll() is None:
            process.kill()
    assert "successful after" in stderr.read_text()
    assert world.metrics()['keel_backup_last_run_success{store="files"}'] == 1


def test_key_revoked_mid_run_fails_that_store_and_the_run_leaves_the_repository_alone(
    tmp_path: Path, s3: S3Server, restic_template: Path
) -> None:
    spec = BackupSpec(
        repository="s3:https://unused.example.com/bucket", snapshot_host=SNAPSHOT_HOST, schedule="0 * * * *",
        targets=(VolumeTarget(name="files"), VolumeTarget(name="uploads")),
    )  # fmt: skip
    world = _world(tmp_path, s3, restic_template, spec=spec)
    (world.stores / "uploads").mkdir()
    user = f"revoked-{tmp_path.name}"[:60]
    access, secret = s3.add_user(user)
    (world.secrets / "s3-access-key").write_text(access)
    (world.secrets / "s3-secret-key").write_text(secret)
    # Revoked once the first store's data is uploaded (revoked before its lock is checked, restic
    # would spend 35 s retrying the lock listing first).
    tripped = s3.stall_after_next_lock("/data/")
    stderr = tmp_path / "backup.err"
    with stderr.open("w") as err:
        process = subprocess.Popen(world.command("backup.sh"), env=world.env(), stderr=err)
    try:
        assert tripped.wait(EVENT_TIMEOUT_S), "no data was written"
        s3.deny(user)
    finally:
        s3.release()
    assert process.wait(timeout=120) == 1
    log = stderr.read_text()
    # A refusal is not retried: the first store fails at once, the second is not attempted.
    assert "files: FAILED (access_denied)" in log
    assert "uploads: not attempted: the repository cannot be used (access_denied)" in log
    metrics = world.metrics()
    assert metrics['keel_backup_last_run_success{store="uploads",reason="access_denied"}'] == 0

    s3.deny(user, denied=False)
    healed = _succeeds(world)
    assert "removing 1 lock(s)" in healed.stderr


def _wrong_secret(world: BackupWorld) -> None:
    (world.secrets / "s3-secret-key").write_text("not-the-secret")


def _wrong_password(world: BackupWorld) -> None:
    (world.root / "restic-password").write_text("not-the-password")


def _untrusted_certificate(world: BackupWorld) -> None:
    # The job image trusts the system store; the test CA is in it only through SSL_CERT_FILE.
    world.extra_env["SSL_CERT_FILE"] = "/etc/ssl/certs/ca-certificates.crt"
    # restic 0.18 retries an x509 error until the probe's bound: long enough for its first try
    # and its report of the error on a loaded machine.
    world.extra_env["KEEL_PROBE_TIMEOUT_S"] = str(SLOW_PROBE_S)


@pytest.mark.parametrize(
    ("breakage", "reason", "said"),
    [
        (_wrong_secret, "access_denied", "Access Denied"),
        (_wrong_password, "wrong_password", "wrong password"),
        (_untrusted_certificate, "certificate_untrusted", "x509: certificate signed by unknown authority"),
    ],
    ids=["wrong-s3-secret", "wrong-restic-password", "untrusted-certificate"],
)
def test_unusable_repository_is_reported_with_its_real_error_and_nothing_is_created(
    tmp_path: Path, s3: S3Server, restic_template: Path, breakage: object, reason: str, said: str
) -> None:
    world = _world(tmp_path, s3, restic_template)
    _succeeds(world)
    objects = s3.objects(_prefix(world))
    breakage(world)  # type: ignore[operator]

    broken = world.run("backup.sh")
    assert broken.returncode == 1
    assert said in broken.stderr
    assert f"FAILED ({reason})" in broken.stderr
    assert "creating" not in broken.stderr
    _failed(world, reason)
    assert s3.objects(_prefix(world)) == objects

    world = _world(tmp_path / "fixed", s3, restic_template, repository=world.repository, empty=True)
    _succeeds(world)


def test_missing_repository_or_bucket_is_never_created_unless_the_config_allows_it(
    tmp_path: Path, s3: S3Server, restic_template: Path
) -> None:
    client = s3.client()
    buckets = {b["Name"] for b in client.list_buckets()["Buckets"]}
    # A misspelt path inside the bucket, and a misspelt bucket (restic cannot tell the two apart:
    # S3 answers the HEAD of its config with a bare 404 either way).
    for name, repository in (
        ("path", s3.repository("no-such-path")),
        ("bucket", f"s3:{s3.endpoint}/no-such-bucket/shop/prod"),
    ):
        world = _world(tmp_path / name, s3, restic_template, repository=repository, empty=True)
        missing = world.run("backup.sh")
        assert missing.returncode == 1
        assert "Nothing was created; to create it, set backup/repository/initialise: true" in missing.stderr
        _failed(world, "repository_missing")
    assert s3.objects("no-such-path") == []
    assert {b["Name"] for b in client.list_buckets()["Buckets"]} == buckets

    # backup/repository/initialise: true renders a script that creates it.
    world = backup_world(
        tmp_path / "first-deploy", _spec(initialise=True), template=restic_template, s3=s3,
        repository=s3.repository("first-deploy"), empty=True,
    )  # fmt: skip
    (world.stores / "files").mkdir()
    world.extra_env = dict(FAST)
    created = _succeeds(world)
    assert "creating it (backup/repository/initialise is on)" in created.stderr


def test_a_live_shared_lock_of_another_host_is_left_alone_and_blocks_nothing(
    tmp_path: Path, s3: S3Server, restic_template: Path
) -> None:
    world = _world(tmp_path, s3, restic_template)
    # An operator's restic on a laptop, reading: a live, non-exclusive lock.
    reader = _in_container(
        world, _restic_in_container(world, "backup", "--stdin", "--stdin-filename", "notes.txt"),
        hostname="laptop", stdin=subprocess.PIPE,
    )  # fmt: skip
    try:
        _wait_for(lambda: world.locks() != [], "the laptop's lock")
        run = world.run("backup.sh")
    finally:
        assert reader.stdin is not None
        reader.stdin.close()
        reader.wait(timeout=EVENT_TIMEOUT_S)
    # A backup only needs a shared lock (retention, which needed an exclusive one, left the host).
    assert run.returncode == 0, run.stderr
    assert "is not this host's" in run.stderr and '"hostname":"laptop"' in run.stderr
    assert "removing" not in run.stderr
    assert world.metrics()['keel_backup_last_run_success{store="files"}'] == 1


def test_an_exclusive_lock_of_another_host_is_waited_for_then_reported_locked(
    tmp_path: Path, s3: S3Server, restic_template: Path
) -> None:
    world = _world(tmp_path, s3, restic_template)
    _succeeds(world)
    # A prune on another host, killed: restic treats its lock as live for 30 minutes.
    _kill_once_locked(world, _restic_in_container(world, "prune"), hostname="laptop")
    blocked = world.run("backup.sh")
    assert blocked.returncode == 1
    assert "repository is already locked exclusively" in blocked.stderr
    _failed(world, "repository_locked")
    assert len(world.locks()) == 1


def test_check_waits_for_a_running_backup_then_runs(tmp_path: Path, s3: S3Server, restic_template: Path) -> None:
    world = _world(tmp_path, s3, restic_template)
    _succeeds(world)
    stderr = tmp_path / "check.err"
    with job_lock_held(world), stderr.open("w") as err:
        check = subprocess.Popen(world.command("check.sh"), env=world.env(), stderr=err)
        _wait_for(lambda: "another backup job of this host is running" in stderr.read_text(), "check to wait")
        assert check.poll() is None
    assert check.wait(timeout=120) == 0, stderr.read_text()
    assert world.metrics("keel_backup_check.prom")["keel_backup_check_last_run_success"] == 1


def test_check_that_finds_damage_fails_with_its_reason(tmp_path: Path, s3: S3Server, restic_template: Path) -> None:
    world = _world(tmp_path, s3, restic_template)
    _succeeds(world)
    client = s3.client()
    packs = s3.objects(_prefix(world) + "/data/")
    client.put_object(Bucket=BUCKET, Key=packs[0], Body=b"not what restic wrote")
    world.extra_env["KEEL_CHECK_READ_DATA_SUBSET"] = "100%"
    check = world.run("check.sh")
    assert check.returncode == 1
    metrics = world.metrics("keel_backup_check.prom")
    assert metrics['keel_backup_check_last_run_success{reason="check_failed"}'] == 0
    assert metrics["keel_backup_check_last_success_timestamp_seconds"] == 0


def test_restic_older_than_the_scripts_need_is_refused(tmp_path: Path, s3: S3Server, restic_template: Path) -> None:
    world = _world(tmp_path, s3, restic_template)
    # Debian bookworm's restic 0.14 has no exit codes 10-12, no --retry-lock, no --stdin-from-command.
    world.extra_env["RESTIC"] = require_tool("old-restic")
    old = world.run("backup.sh")
    assert old.returncode == 1
    assert re.search(r"restic 0\.(1[0-6]|[0-9])\.\d+", old.stderr), old.stderr
    assert "need restic 0.17 or newer" in old.stderr
    _failed(world, "restic_too_old")


@pytest.mark.requires_tool("redis-check-rdb")
def test_drill_says_which_rdb_format_its_redis_check_cannot_read(
    tmp_path: Path, s3: S3Server, restic_template: Path
) -> None:
    spec = BackupSpec(
        repository="s3:https://unused.example.com/bucket", snapshot_host=SNAPSHOT_HOST, schedule="0 * * * *",
        targets=(RedisTarget(name="cache", host="cache.internal"),),
    )  # fmt: skip
    world = backup_world(tmp_path / "backup", spec, template=restic_template, s3=s3)
    # An RDB as Redis 7.4 writes it (format 12), newer than this machine's redis-check-rdb (7.0) reads.
    rdb = tmp_path / "dump.rdb"
    rdb.write_bytes(b"REDIS0012\xfa\x09redis-ver\x057.4.1\xff" + bytes(8))
    made = world.restic(
        "backup", "--quiet", "--host", SNAPSHOT_HOST, "--tag", "keel,store=cache,kind=redis", "--stdin",
        "--stdin-filename", "cache.rdb", stdin_file=rdb,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    drill = world.run("drill.sh")
    assert drill.returncode == 1
    assert "whose header says format 0012" in drill.stderr
    assert world.metrics("keel_backup_drill.prom")['keel_backup_restore_drill_last_run_success{store="cache"}'] == 0
