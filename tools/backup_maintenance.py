"""The backup repository's upkeep that needs a key the host does not have (render/backup_bucket.py).

    python -m tools.backup_maintenance bucket-setup prod --output-dir DIR   # the bucket's JSON documents
    python -m tools.backup_maintenance bucket-setup prod --hetzner-project 1234567 --host-access-key KEY
    python -m tools.backup_maintenance retention prod          # forget --prune, with the maintenance key
    python -m tools.backup_maintenance rollback prod --before 2026-11-30T06:00:00Z [--apply]
    python -m tools.backup_maintenance check-host-key prod    # with the host's key: erasing is refused
    python -m tools.backup_maintenance check-bucket prod      # with the maintenance key: versioning, lifecycle

The host's key may add to the repository but not remove anything from it, so retention (restic
forget --prune with backup/retention) runs here, after checking that no object of the repository
was overwritten (restic never overwrites; the host's key can): from the daily maintenance workflow
(.github/workflows/maintenance.yml) or an operator's machine, with the maintenance key and the
repository password in AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and RESTIC_PASSWORD. It runs the
job's own image (backup/image) with Docker, or ``--restic PATH``. ``rollback`` deletes every object
version written since ``--before`` under the repository's prefix (dry run unless ``--apply``): what
undoes an attack from the host's key (docs/restore.md, "A bucket the host cannot erase").
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from config import ConfigError, parse
from config.models import StackConfig
from render import backup, backup_bucket
from render.backup_bucket import BucketLayout, Version
from tools import mockrun

CREDENTIALS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")


class MaintenanceError(RuntimeError):
    """A problem the command reports in one line (exit status 1), not a traceback."""


@dataclass(frozen=True)
class Repository:
    """One stack's repository, as its config places it."""

    url: str
    endpoint: str
    region: str
    layout: BucketLayout
    snapshot_host: str
    cfg: StackConfig


def repository(stack: str, config_file: Path | None = None) -> Repository:
    values, _ = mockrun.read_config_file(config_file or mockrun.stack_file(stack))
    cfg = parse({key.split(":", 1)[1]: value for key, value in values.items() if key.startswith("keel:")})
    repo = cfg.backup.repository
    if repo is None:
        raise MaintenanceError(f"stack {stack} has no backup/repository")
    if not cfg.backup.enabled:
        raise MaintenanceError(f"stack {stack} has backups off (backup/enabled)")
    default_path = f"{cfg.name_prefix}/{stack}"
    endpoint = repo.endpoint.rstrip("/")
    return Repository(
        url=backup.repository_url(repo, default_path),
        endpoint=endpoint if "://" in endpoint else "https://" + endpoint,
        region=repo.region,
        layout=BucketLayout(bucket=repo.bucket, prefix=(repo.path or default_path).strip("/")),
        snapshot_host=cfg.names.snapshot_host(stack),
        cfg=cfg,
    )


def _require_env(names: Sequence[str]) -> None:
    missing = [name for name in names if not os.environ.get(name)]
    if missing:
        raise MaintenanceError(
            f"{', '.join(missing)} empty: the maintenance key and the repository password are needed"
        )


def retention_command(repo: Repository, restic: str | None) -> list[str]:
    """restic forget --prune for the stack: with ``restic`` (a path), or the job's image under Docker
    (the credentials pass by name, so they never appear on a command line)."""
    args = backup_bucket.forget_args(repo.cfg.backup.retention, repo.snapshot_host)
    if restic is not None:
        return [restic, *args]
    passed = [flag for name in (*CREDENTIALS, "RESTIC_PASSWORD", "RESTIC_REPOSITORY", "AWS_DEFAULT_REGION")
              for flag in ("-e", name)]  # fmt: skip
    return ["docker", "run", "--rm", *passed, repo.cfg.backup.image, *args]


def run_retention(repo: Repository, restic: str | None, client: Any) -> None:
    """forget --prune, unless the repository shows an overwrite: pruning then could only make the
    rollback longer (docs/restore.md, "Undoing an attack from the host")."""
    _require_env((*CREDENTIALS, "RESTIC_PASSWORD"))
    found = backup_bucket.overwritten(_listed(client, repo.layout), repo.layout)
    if found:
        shown = ", ".join(found[:5]) + (f" and {len(found) - 5} more" if len(found) > 5 else "")
        raise MaintenanceError(
            f"{len(found)} object(s) of the repository were overwritten ({shown}); restic never does that: "
            "someone with a key of the bucket did. Nothing was pruned; roll back (docs/restore.md, "
            '"Undoing an attack from the host")'
        )
    env = {**os.environ, "RESTIC_REPOSITORY": repo.url, "AWS_DEFAULT_REGION": repo.region}
    command = retention_command(repo, restic)
    result = subprocess.run(command, env=env, stderr=subprocess.PIPE, text=True, check=False)
    sys.stderr.write(result.stderr)
    if result.returncode != 0:
        raise MaintenanceError(f"restic forget --prune failed (exit {result.returncode})")
    # restic up to 0.18 exits 0 when it could not delete what it forgot or pruned (0.19 exits 3 for
    # snapshots, still 0 for packs): a key without delete rights would grow the repository unnoticed.
    if "unable to remove" in result.stderr:
        raise MaintenanceError("restic could not remove what retention forgot or pruned: the key may not delete")


def _listed(client: Any, layout: BucketLayout) -> list[Version]:
    from botocore.exceptions import ClientError

    try:
        return list(list_versions(client, layout))
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "?")
        raise MaintenanceError(f"S3 refused {error.operation_name} ({code}): this needs the maintenance key") from None


def s3_client(repo: Repository) -> Any:
    import boto3  # the program's venv has it (requirements-dev.txt); only this command needs it

    _require_env(CREDENTIALS)
    return boto3.client("s3", endpoint_url=repo.endpoint, region_name=repo.region)


def list_versions(client: Any, layout: BucketLayout) -> Iterator[Version]:
    pages = client.get_paginator("list_object_versions").paginate(Bucket=layout.bucket, Prefix=layout.key(""))
    for page in pages:
        for item in page.get("Versions", []):
            yield Version(item["Key"], item["VersionId"], item["LastModified"])
        for item in page.get("DeleteMarkers", []):
            yield Version(item["Key"], item["VersionId"], item["LastModified"], delete_marker=True)


def rollback(client: Any, layout: BucketLayout, before: datetime, *, apply: bool) -> list[Version]:
    """Delete (with ``apply``) or list every version written under the prefix since ``before``."""
    from botocore.exceptions import ClientError

    try:
        if client.get_bucket_versioning(Bucket=layout.bucket).get("Status") != "Enabled":
            raise MaintenanceError(f"bucket {layout.bucket} is not versioned: there is nothing to roll back to")
        plan = backup_bucket.rollback_plan(list_versions(client, layout), before)
        for version in plan:
            what = "delete marker" if version.delete_marker else "version"
            print(f"{'deleting' if apply else 'would delete'} {what} {version.key} {version.version_id} "
                  f"({version.modified.isoformat()})")  # fmt: skip
            if apply:
                client.delete_object(Bucket=layout.bucket, Key=version.key, VersionId=version.version_id)
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "?")
        raise MaintenanceError(
            f"S3 refused {error.operation_name} ({code}): rollback needs the maintenance key"
        ) from None
    print(f"{len(plan)} version(s) written since {before.isoformat()} {'deleted' if apply else 'to delete (dry run)'}")
    return plan


PROBE = "keel-probe"
"""The name of the objects the host key's probes touch (nothing restic reads)."""


def check_host_key(client: Any, layout: BucketLayout) -> list[str]:
    """Probe the key in ``client`` as the host's: what restic needs must work, what would erase
    history must be refused. Each refused probe would be harmless had it been allowed (a version id
    that does not exist, a name restic never uses, versioning set to what it is). Returns the
    problems, one sentence each."""
    from botocore.exceptions import ClientError

    problems = []
    lock = layout.key(f"locks/{PROBE}")
    try:
        client.put_object(Bucket=layout.bucket, Key=lock, Body=b"")
        client.delete_object(Bucket=layout.bucket, Key=lock)
    except ClientError as error:
        problems.append(f"restic cannot work with this key: {error.operation_name} on {lock} was refused")
    probes = {
        "DeleteObjectVersion (removes history)": lambda: client.delete_object(
            Bucket=layout.bucket, Key=layout.key("config"), VersionId=f"{PROBE}-no-such-version"
        ),
        "DeleteObject outside locks/ (hides snapshots)": lambda: client.delete_object(
            Bucket=layout.bucket, Key=layout.key(f"snapshots/{PROBE}")
        ),
        "PutBucketVersioning (could suspend versioning)": lambda: client.put_bucket_versioning(
            Bucket=layout.bucket, VersioningConfiguration={"Status": "Enabled"}
        ),
    }
    for what, probe in probes.items():
        try:
            probe()
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "AccessDenied":
                continue
            problems.append(f"{what}: expected AccessDenied, got {error.response.get('Error', {}).get('Code')}")
        else:
            problems.append(f"{what}: allowed to this key")
    return problems


def check_bucket(client: Any, layout: BucketLayout, keep_deleted_days: int) -> list[str]:
    """The bucket's versioning and the stack's lifecycle rule, as bucket-setup renders them."""
    from botocore.exceptions import ClientError

    problems = []
    if client.get_bucket_versioning(Bucket=layout.bucket).get("Status") != "Enabled":
        problems.append(f"bucket {layout.bucket}: versioning is not enabled")
    [wanted] = backup_bucket.lifecycle_configuration(layout, keep_deleted_days)["Rules"]
    try:
        rules = client.get_bucket_lifecycle_configuration(Bucket=layout.bucket).get("Rules", [])
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") != "NoSuchLifecycleConfiguration":
            raise
        rules = []
    if not any(
        rule.get("Status") == "Enabled"
        and rule.get("Filter", {}).get("Prefix") == wanted["Filter"]["Prefix"]
        and rule.get("NoncurrentVersionExpiration", {}).get("NoncurrentDays") == keep_deleted_days
        for rule in rules
    ):
        problems.append(
            f"bucket {layout.bucket}: no enabled rule expiring noncurrent versions under {wanted['Filter']['Prefix']} "
            f"after {keep_deleted_days} days (lifecycle.json of bucket-setup)"
        )
    return problems


def _checked_bucket(client: Any, layout: BucketLayout, keep_deleted_days: int) -> list[str]:
    from botocore.exceptions import ClientError

    try:
        return check_bucket(client, layout, keep_deleted_days)
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "?")
        raise MaintenanceError(f"S3 refused {error.operation_name} ({code}): this needs the maintenance key") from None


def _matching(pattern: str, expected: str) -> Any:
    def check(text: str) -> str:
        if not re.fullmatch(pattern, text):
            raise argparse.ArgumentTypeError(f"{text!r}: expected {expected}")
        return text

    return check


def _timestamp(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no time zone; expected e.g. 2026-11-30T06:00:00Z")
    return moment.astimezone(UTC)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.backup_maintenance", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    setup = commands.add_parser(
        "bucket-setup", help="print (or write) the bucket's versioning, lifecycle and key policies"
    )
    setup.add_argument("--output-dir", type=Path)
    setup.add_argument(
        "--hetzner-project", type=_matching(r"[0-9]{1,20}", "the project's numeric id"),
        help="Hetzner project id: also render the bucket policy for the host's key",
    )  # fmt: skip
    setup.add_argument(
        "--host-access-key", type=_matching(r"[A-Za-z0-9]{8,128}", "an access key id (letters and digits)"),
        help="the host's Hetzner access key id (the value of backup_access_key)",
    )  # fmt: skip
    keep = commands.add_parser("retention", help="restic forget --prune with backup/retention (the maintenance key)")
    keep.add_argument("--restic", help="a restic binary instead of the job's image under Docker")
    commands.add_parser("check-host-key", help="probe the key in AWS_* as the host's: restic works, erasing is refused")
    commands.add_parser("check-bucket", help="with the maintenance key: versioning on, the lifecycle rule in place")
    back = commands.add_parser("rollback", help="delete every version written since --before (dry run unless --apply)")
    back.add_argument("--before", type=_timestamp, required=True)
    back.add_argument("--apply", action="store_true")
    for command in commands.choices.values():
        command.add_argument("stack")
        command.add_argument("--config-file", type=Path)
    args = parser.parse_args(argv)
    try:
        repo = repository(args.stack, args.config_file)
        keep_days = repo.cfg.backup.repository.keep_deleted_days if repo.cfg.backup.repository else 0
        if args.command == "bucket-setup":
            documents = backup_bucket.render_documents(repo.layout, keep_days)
            if (args.hetzner_project is None) != (args.host_access_key is None):
                raise MaintenanceError("--hetzner-project and --host-access-key go together")
            if args.hetzner_project is not None:
                principal = backup_bucket.hetzner_principal(args.hetzner_project, args.host_access_key)
                policy = backup_bucket.bucket_policy(backup_bucket.host_denials(repo.layout), principal)
                documents["hetzner-bucket-policy.json"] = json.dumps(policy, indent=2) + "\n"
            for name, text in documents.items():
                if args.output_dir is not None:
                    (args.output_dir / name).write_text(text)
                    print(name)
                else:
                    print(f"# ---- {name} (bucket {repo.layout.bucket}, prefix {repo.layout.prefix}/)")
                    print(text, end="")
        elif args.command == "retention":
            run_retention(repo, args.restic, s3_client(repo))
            print(f"retention applied to {repo.url}")
        elif args.command in ("check-host-key", "check-bucket"):
            client = s3_client(repo)
            problems = (
                check_host_key(client, repo.layout)
                if args.command == "check-host-key"
                else _checked_bucket(client, repo.layout, keep_days)
            )
            for problem in problems:
                print(f"FAIL {problem}")
            if problems:
                return 1
            print(f"ok: {args.command} for bucket {repo.layout.bucket}, prefix {repo.layout.prefix}/")
        else:
            rollback(s3_client(repo), repo.layout, args.before, apply=args.apply)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except MaintenanceError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
