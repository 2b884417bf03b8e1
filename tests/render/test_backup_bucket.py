"""The backup bucket's documents and the maintenance tool, without S3 (the real-tool proof is
tests/realtools/test_append_only_backup.py, against moto with these very documents)."""

from __future__ import annotations

import json
import os
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from config.models import Retention
from render import backup_bucket
from render.backup_bucket import BucketLayout, Version
from tools import backup_maintenance

LAYOUT = BucketLayout(bucket="shop-backups", prefix="shop/prod")
GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "backup_bucket"


def _actions(statement: dict[str, Any]) -> list[str]:
    action = statement["Action"]
    return [action] if isinstance(action, str) else list(action)


def _resources(statement: dict[str, Any]) -> list[str]:
    resource = statement["Resource"]
    return [resource] if isinstance(resource, str) else list(resource)


def _granted(statements: list[dict[str, Any]], effect: str, action: str) -> list[str]:
    return [r for s in statements if s["Effect"] == effect and action in _actions(s) for r in _resources(s)]


def test_host_key_may_delete_only_locks_and_is_denied_every_version_and_the_buckets_settings() -> None:
    statements = backup_bucket.host_statements(LAYOUT)
    assert _granted(statements, "Allow", "s3:DeleteObject") == ["arn:aws:s3:::shop-backups/shop/prod/locks/*"]
    assert _granted(statements, "Allow", "s3:PutObject") == ["arn:aws:s3:::shop-backups/shop/prod/*"]
    assert not [s for s in statements if s["Effect"] == "Allow" and "s3:DeleteObjectVersion" in _actions(s)]
    bucket = ["arn:aws:s3:::shop-backups", "arn:aws:s3:::shop-backups/*"]
    for action in ("s3:DeleteObjectVersion", "s3:PutBucketVersioning", "s3:PutLifecycleConfiguration",
                   "s3:PutBucketPolicy", "s3:DeleteBucketPolicy", "s3:PutObjectRetention"):  # fmt: skip
        assert _granted(statements, "Deny", action) == bucket, action
    denied = _granted(statements, "Deny", "s3:DeleteObject")
    assert denied == [f"arn:aws:s3:::shop-backups/shop/prod/{name}" for name in ("config", "keys/*", "snapshots/*",
                                                                                 "index/*", "data/*")]  # fmt: skip
    # Hetzner ignores NotAction, moto ignores NotResource: neither is used.
    assert not [s for s in statements if {"NotAction", "NotResource"} & set(s)]


def test_hetzner_policy_is_the_host_denials_for_that_one_key() -> None:
    principal = backup_bucket.hetzner_principal("1234567", "HOSTKEY0EXAMPLE00001")
    assert principal == "arn:aws:iam:::user/p1234567:HOSTKEY0EXAMPLE00001"
    policy = backup_bucket.bucket_policy(backup_bucket.host_denials(LAYOUT), principal)
    assert [s["Principal"] for s in policy["Statement"]] == [{"AWS": principal}] * 2
    assert [{k: v for k, v in s.items() if k != "Principal"} for s in policy["Statement"]] == (
        backup_bucket.host_denials(LAYOUT)
    )
    assert {s["Effect"] for s in policy["Statement"]} == {"Deny"}


def test_maintenance_key_may_remove_versions_of_the_repository_only() -> None:
    statements = backup_bucket.maintenance_statements(LAYOUT)
    assert _granted(statements, "Allow", "s3:DeleteObjectVersion") == ["arn:aws:s3:::shop-backups/shop/prod/*"]
    assert _granted(statements, "Allow", "s3:ListBucketVersions") == ["arn:aws:s3:::shop-backups"]
    assert not _granted(statements, "Allow", "s3:PutLifecycleConfiguration")


def test_lifecycle_expires_only_noncurrent_versions_of_the_repository() -> None:
    [rule] = backup_bucket.lifecycle_configuration(LAYOUT, 30)["Rules"]
    # Hetzner documents NoncurrentVersionExpiration with NoncurrentDays only; no current version expires.
    assert rule == {
        "ID": "keel-keep-deleted-30d", "Status": "Enabled", "Filter": {"Prefix": "shop/prod/"},
        "NoncurrentVersionExpiration": {"NoncurrentDays": 30},
    }  # fmt: skip


def test_forget_selects_the_stacks_snapshots_and_prunes() -> None:
    args = backup_bucket.forget_args(Retention(hourly=12, daily=5, weekly=3, monthly=2), "shop-prod")
    assert args == [
        "forget", "--retry-lock", "30m", "--host", "shop-prod", "--tag", "keel", "--group-by", "host,paths",
        "--keep-hourly", "12", "--keep-daily", "5", "--keep-weekly", "3", "--keep-monthly", "2", "--prune",
    ]  # fmt: skip


def test_rollback_removes_what_was_written_since_the_moment_to_the_second() -> None:
    def at(second: int) -> datetime:
        return datetime(2026, 11, 30, 6, 0, second, tzinfo=UTC)

    versions = [
        Version("p/config", "v1", at(1)),
        Version("p/config", "v2", at(5)),  # an overwrite
        Version("p/snapshots/a", "v3", at(4)),  # written in the second of the moment, before or after it
        Version("p/snapshots/b", "m1", at(6), delete_marker=True),
        Version("p/index/c", "v4", at(3)),
    ]
    plan = backup_bucket.rollback_plan(versions, at(4).replace(microsecond=500_000))
    assert [(v.key, v.version_id) for v in plan] == [("p/config", "v2"), ("p/snapshots/a", "v3"),
                                                     ("p/snapshots/b", "m1")]  # fmt: skip


def test_bucket_setup_writes_the_documents_of_a_stack(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert backup_maintenance.main(["bucket-setup", "prod", "--output-dir", str(tmp_path)]) == 0
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == ["host-iam-policy.json", "lifecycle.json", "maintenance-iam-policy.json", "versioning.json"]
    repo = backup_maintenance.repository("prod")
    assert repo.layout == BucketLayout(bucket="shop-backups", prefix="shop/prod")
    host = json.loads((tmp_path / "host-iam-policy.json").read_text())
    assert host["Statement"] == backup_bucket.host_statements(repo.layout)
    lifecycle = json.loads((tmp_path / "lifecycle.json").read_text())
    keep = repo.cfg.backup.repository.keep_deleted_days if repo.cfg.backup.repository else None
    assert lifecycle["Rules"][0]["NoncurrentVersionExpiration"] == {"NoncurrentDays": keep}

    hetzner = ["bucket-setup", "prod", "--hetzner-project", "1234567", "--host-access-key", "HOSTKEY0EXAMPLE00001"]
    assert backup_maintenance.main(hetzner) == 0
    assert "arn:aws:iam:::user/p1234567:HOSTKEY0EXAMPLE00001" in capsys.readouterr().out
    assert backup_maintenance.main(hetzner[:-2]) == 1
    assert "--hetzner-project and --host-access-key go together" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        backup_maintenance.main([*hetzner[:-1], 'KEY"}], "Effect": "Allow'])
    assert "expected an access key id (letters and digits)" in capsys.readouterr().err


def test_prods_documents_match_golden(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """What an operator applies to prod's bucket, reviewed as text (UPDATE_GOLDEN=1 rewrites)."""
    setup = ["bucket-setup", "prod", "--output-dir", str(tmp_path), "--hetzner-project", "1234567",
             "--host-access-key", "HOSTKEY0EXAMPLE00001"]  # fmt: skip
    assert backup_maintenance.main(setup) == 0
    capsys.readouterr()
    for path in sorted(tmp_path.iterdir()):
        golden = GOLDEN / path.name
        if os.environ.get("UPDATE_GOLDEN"):
            golden.parent.mkdir(parents=True, exist_ok=True)
            golden.write_text(path.read_text())
        assert path.read_text() == golden.read_text(), f"{path.name} differs from {golden}; UPDATE_GOLDEN=1 to accept"
    assert sorted(p.name for p in GOLDEN.iterdir()) == sorted(p.name for p in tmp_path.iterdir())


def _fake_restic(tmp_path: Path, stderr: str, status: int) -> str:
    script = tmp_path / "restic"
    script.write_text(f"#!/bin/sh\necho \"$@\" > {tmp_path / 'args'}\nprintf '%s\\n' '{stderr}' >&2\nexit {status}\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)


class _FakeS3:
    """ListObjectVersions' pages, all a retention run asks of S3 itself."""

    def __init__(self, versions: list[dict[str, Any]]) -> None:
        self.versions = versions

    def get_paginator(self, name: str) -> Any:
        assert name == "list_object_versions"
        pages = [{"Versions": self.versions, "DeleteMarkers": []}]
        return type("Paginator", (), {"paginate": lambda _self, **_: pages})()


def _version(key: str, version_id: str) -> dict[str, Any]:
    return {"Key": key, "VersionId": version_id, "LastModified": datetime(2026, 11, 30, tzinfo=UTC)}


def test_retention_fails_when_restic_could_not_remove_even_if_it_exits_zero(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "RESTIC_PASSWORD"):
        monkeypatch.setenv(name, "x")
    clean = _FakeS3([_version("shop/prod/config", "1"), _version("shop/prod/locks/a", "1"),
                     _version("shop/prod/locks/a", "2")])  # fmt: skip
    monkeypatch.setattr(backup_maintenance, "s3_client", lambda repo: clean)
    # restic up to 0.18 prints this and exits 0 when a delete is refused.
    restic = _fake_restic(tmp_path, "unable to remove <snapshot/1234> from the repository", 0)
    assert backup_maintenance.main(["retention", "prod", "--restic", restic]) == 1
    assert "the key may not delete" in capsys.readouterr().err
    assert (tmp_path / "args").read_text().split()[:5] == ["forget", "--retry-lock", "30m", "--host", "shop-prod"]

    fine = _fake_restic(tmp_path, "", 0)
    assert backup_maintenance.main(["retention", "prod", "--restic", fine]) == 0
    applied = "retention applied to s3:https://fsn1.your-objectstorage.com/shop-backups/shop/prod"
    assert applied in capsys.readouterr().out

    monkeypatch.delenv("RESTIC_PASSWORD")
    assert backup_maintenance.main(["retention", "prod", "--restic", fine]) == 1
    assert "RESTIC_PASSWORD empty" in capsys.readouterr().err


def test_retention_prunes_nothing_once_an_object_was_overwritten(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "RESTIC_PASSWORD"):
        monkeypatch.setenv(name, "x")
    # Lock files come and go (restic's own, and the one delete the host may do); a second version
    # of anything else is an overwrite.
    attacked = _FakeS3([_version("shop/prod/locks/a", "1"), _version("shop/prod/locks/a", "2"),
                        _version("shop/prod/index/ab", "1"), _version("shop/prod/index/ab", "2")])  # fmt: skip
    monkeypatch.setattr(backup_maintenance, "s3_client", lambda repo: attacked)
    assert backup_maintenance.main(["retention", "prod", "--restic", _fake_restic(tmp_path, "", 0)]) == 1
    assert "1 object(s) of the repository were overwritten (shop/prod/index/ab)" in capsys.readouterr().err
    assert not (tmp_path / "args").exists(), "restic ran"


def test_retention_under_docker_passes_the_secrets_by_name_only() -> None:
    repo = backup_maintenance.repository("prod")
    command = backup_maintenance.retention_command(repo, None)
    assert command[:3] == ["docker", "run", "--rm"]
    assert repo.cfg.backup.image in command
    assert [command[i + 1] for i, part in enumerate(command) if part == "-e"] == [
        "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "RESTIC_PASSWORD", "RESTIC_REPOSITORY", "AWS_DEFAULT_REGION",
    ]  # fmt: skip
    assert not [part for part in command if "=" in part]
