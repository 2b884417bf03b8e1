"""What the backup bucket must be for the host to be unable to erase its history, and the
retention that therefore runs elsewhere.

The choice: S3 bucket versioning, a host key that may not delete object versions, and a lifecycle
rule that removes noncurrent versions after ``backup/repository/keep_deleted_days``. Not
rest-server's append-only mode: that needs a server of its own somewhere the host cannot reach as
root, which is one more machine to run, and rest-server is neither in Debian nor on PyPI, so it
could not be tested here. Not S3 Object Lock alone: a version's retention is fixed when it is
written, and restic's packs are deduplicated (a snapshot taken today still uses packs written a
year ago, whose lock has long run out), so Object Lock protects old history only if something
extends the locks, which restic does not do; it is also set when a bucket is created and cannot
be turned off.

How it holds:

- The bucket is versioned: a ``DeleteObject`` without a version id (all restic ever sends:
  internal/backend/s3/s3.go ``Remove`` in restic v0.18.0 and v0.18.1, ``RemoveObject`` with empty
  ``RemoveObjectOptions``) hides the object behind a delete marker, and an overwrite makes a new
  version; the previous version stays until the lifecycle rule expires it.
- The host's key (``host_statements``) may list, read and add objects under the repository's
  prefix, and delete only restic's lock files (restic removes its own locks; every command takes
  one). It is denied ``DeleteObjectVersion`` on the whole bucket, every delete outside ``locks/``
  under the repository, and every change to the bucket's versioning, lifecycle, policy or
  Object Lock configuration. Denials are listed resource by resource (restic's layout: ``config``,
  ``keys/``, ``snapshots/``, ``index/``, ``data/``) rather than with ``NotResource``, which
  moto's IAM evaluation ignores (moto 5.2.5 moto/iam/access_control.py ``IAMPolicyStatement``) so
  that the tests can prove exactly what is rendered.
- So with the host's key, an attacker can only add objects or overwrite them: every earlier
  version stays for ``keep_deleted_days`` after it was replaced, and ``rollback_plan`` lists the
  versions to delete to bring the repository back to a moment before the attack. restic itself
  never overwrites, so ``overwritten`` finds an attack in the version listing; the daily retention
  checks it first and prunes nothing while it finds one.
- Retention (``forget --prune``) runs from the maintenance workflow with the maintenance key
  (``maintenance_statements``); what it deletes also becomes noncurrent and is gone after
  ``keep_deleted_days``.

``keep_deleted_days`` is the window in which an attack can be noticed and undone. It does not need
to exceed the retention window: the lifecycle rule never touches a current version, however old
(a monthly snapshot kept for six months, and the year-old packs it uses, stay). It must exceed the
time an overwrite can go unnoticed: the daily retention run fails on one (a red workflow run), a
damaged snapshot or index fails the next backup (BackupFailed) or the weekly check; the config
requires at least two check intervals, which leaves a week's margin for a workflow that did not run.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from config.models import Retention

RESTIC_FILES = ("config", "keys/*", "snapshots/*", "index/*", "data/*")
"""What a restic repository holds besides its locks (restic v0.18.0 doc/design.rst, "Repository Format")."""

BUCKET_CONFIGURATION_ACTIONS = (
    "s3:PutBucketVersioning",
    "s3:PutLifecycleConfiguration",
    "s3:PutBucketPolicy",
    "s3:DeleteBucketPolicy",
    "s3:PutBucketObjectLockConfiguration",
    "s3:PutObjectRetention",
    "s3:PutObjectLegalHold",
    "s3:BypassGovernanceRetention",
    "s3:DeleteBucket",
)
"""What would let a key undo the protection itself. Listed one by one: Hetzner ignores NotAction."""

_POLICY_VERSION = "2012-10-17"


@dataclass(frozen=True)
class BucketLayout:
    """Where the repository is: the bucket, and its prefix in the bucket (no slashes around it)."""

    bucket: str
    prefix: str

    def arn(self, key: str = "") -> str:
        return f"arn:aws:s3:::{self.bucket}" + (f"/{key}" if key else "")

    def key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name


def host_statements(layout: BucketLayout) -> list[dict[str, Any]]:
    """The host's key: read and add, delete only locks; never a version, never the bucket's settings."""
    return [
        {
            "Sid": "ListTheBucket",
            "Effect": "Allow",
            "Action": ["s3:ListBucket", "s3:GetBucketLocation"],
            "Resource": layout.arn(),
        },
        {
            "Sid": "ReadAndAddToTheRepository",
            "Effect": "Allow",
            "Action": ["s3:GetObject", "s3:PutObject"],
            "Resource": layout.arn(layout.key("*")),
        },
        {
            "Sid": "RemoveResticsOwnLocks",
            "Effect": "Allow",
            "Action": "s3:DeleteObject",
            "Resource": layout.arn(layout.key("locks/*")),
        },
        *host_denials(layout),
    ]


def host_denials(layout: BucketLayout) -> list[dict[str, Any]]:
    """The explicit denials of the host's key: on AWS they only repeat what the allows leave out;
    on Hetzner, whose keys may do anything in their project until a bucket policy denies it, they
    are the whole protection."""
    return [
        {
            "Sid": "NeverRemoveAVersion",
            "Effect": "Deny",
            "Action": ["s3:DeleteObjectVersion", *BUCKET_CONFIGURATION_ACTIONS],
            "Resource": [layout.arn(), layout.arn("*")],
        },
        {
            "Sid": "DeleteNothingButLocks",
            "Effect": "Deny",
            "Action": "s3:DeleteObject",
            "Resource": [layout.arn(layout.key(name)) for name in RESTIC_FILES],
        },
    ]


def maintenance_statements(layout: BucketLayout) -> list[dict[str, Any]]:
    """The maintenance key (retention and rollback, from the workflow or an operator): everything in
    the repository's prefix, versions included, but not the bucket's own settings."""
    return [
        {
            "Sid": "ListTheBucketAndItsVersions",
            "Effect": "Allow",
            "Action": [
                "s3:ListBucket",
                "s3:ListBucketVersions",
                "s3:GetBucketLocation",
                "s3:GetBucketVersioning",
                "s3:GetLifecycleConfiguration",
            ],
            "Resource": layout.arn(),
        },
        {
            "Sid": "PruneAndRollBack",
            "Effect": "Allow",
            "Action": [
                "s3:GetObject",
                "s3:GetObjectVersion",
                "s3:PutObject",
                "s3:DeleteObject",
                "s3:DeleteObjectVersion",
            ],
            "Resource": layout.arn(layout.key("*")),
        },
    ]


def iam_policy(statements: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """An identity policy (AWS IAM: attached to the key's user)."""
    return {"Version": _POLICY_VERSION, "Statement": list(statements)}


def hetzner_principal(project_id: str, access_key: str) -> str:
    """How a Hetzner Object Storage key is named in a bucket policy."""
    return f"arn:aws:iam:::user/p{project_id}:{access_key}"


def bucket_policy(statements: Iterable[Mapping[str, Any]], principal: str) -> dict[str, Any]:
    """A bucket policy applying ``statements`` to one key (Hetzner's only way to narrow a key)."""
    return {
        "Version": _POLICY_VERSION,
        "Statement": [{**statement, "Principal": {"AWS": principal}} for statement in statements],
    }


def lifecycle_configuration(layout: BucketLayout, keep_deleted_days: int) -> dict[str, Any]:
    """The rule that ends what versioning keeps: a version replaced or deleted more than
    ``keep_deleted_days`` ago. Current versions are never touched. (Hetzner documents
    NoncurrentVersionExpiration with NoncurrentDays only: nothing else is used.)"""
    return {
        "Rules": [
            {
                "ID": f"keel-keep-deleted-{keep_deleted_days}d",
                "Status": "Enabled",
                "Filter": {"Prefix": layout.key("")},
                "NoncurrentVersionExpiration": {"NoncurrentDays": keep_deleted_days},
            }
        ]
    }


def forget_args(retention: Retention, snapshot_host: str) -> list[str]:
    """restic's arguments for retention: keep so many snapshots of each item (one group per host and
    path, so every store, its roles and each SQLite file has its own history), then prune the data
    no snapshot uses. Only the stack's own snapshots (its --host, tag keel) are considered. It
    waits up to 30 minutes for the host's jobs' locks (a backup's or check's) to go."""
    return [
        "forget", "--retry-lock", "30m", "--host", snapshot_host, "--tag", "keel", "--group-by", "host,paths",
        "--keep-hourly", str(retention.hourly), "--keep-daily", str(retention.daily),
        "--keep-weekly", str(retention.weekly), "--keep-monthly", str(retention.monthly),
        "--prune",
    ]  # fmt: skip


@dataclass(frozen=True)
class Version:
    """One entry of ListObjectVersions: an object version or a delete marker."""

    key: str
    version_id: str
    modified: datetime
    delete_marker: bool = False


def rollback_plan(versions: Iterable[Version], before: datetime) -> list[Version]:
    """The versions (and delete markers) to delete so that every key is as it was just before
    ``before``: everything written at or after it, to the second (ListObjectVersions gives whole
    seconds: moto's LastModified, AWS's ``.000Z``), so pick a moment before the attack. A key
    that existed then gets its version of then back as the current one; a key created since
    disappears entirely. Needs the maintenance key (s3:DeleteObjectVersion); nothing is copied
    (Hetzner documents that CopyObject may fail)."""
    cut = before.replace(microsecond=0)
    return sorted((v for v in versions if v.modified >= cut), key=lambda v: (v.key, v.modified))


def overwritten(versions: Iterable[Version], layout: BucketLayout) -> list[str]:
    """Keys of the repository (locks aside) with more than one object version: restic never writes
    a name twice (every file but the config is named by its content's hash, and the config is
    written once), so a second version is an overwrite, by whoever holds a key of the bucket."""
    counts: dict[str, int] = {}
    locks = layout.key("locks/")
    for version in versions:
        if not version.delete_marker and not version.key.startswith(locks):
            counts[version.key] = counts.get(version.key, 0) + 1
    return sorted(key for key, count in counts.items() if count > 1)


def render_documents(layout: BucketLayout, keep_deleted_days: int) -> dict[str, str]:
    """The JSON documents of the bucket's set-up, file name -> text."""
    documents = {
        "versioning.json": {"Status": "Enabled"},
        "lifecycle.json": lifecycle_configuration(layout, keep_deleted_days),
        "host-iam-policy.json": iam_policy(host_statements(layout)),
        "maintenance-iam-policy.json": iam_policy(maintenance_statements(layout)),
    }
    return {name: json.dumps(document, indent=2) + "\n" for name, document in documents.items()}
