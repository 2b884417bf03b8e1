"""The backup scripts: golden text, shellcheck on every script, schedules and spec validation."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from config.loader import parse
from config.models import BackupRepository
from render.backup import (
    FAILURE_REASONS,
    MAX_RUN_S,
    SCRIPT_NAMES,
    BackupSpec,
    backup_spec,
    job_health_command,
    render_backup_scripts,
    repository_url,
    run_deadline_seconds,
    schedule_interval_seconds,
)
from stores.postgres.kind import PostgresTarget
from stores.redis.kind import RedisTarget
from stores.volume.kind import VolumeTarget, sqlite_snapshot_name
from tests.helpers import stack_values, with_fragment
from tests.tool_requirements import require_tool

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "stores" / "backup"
RESTORE_DOC = Path(__file__).resolve().parent.parent.parent / "docs" / "restore.md"


def _prod_spec(repository: dict[str, Any] | None = None) -> BackupSpec:
    fragment = {
        "keel:backup": {"enabled": True, "repository": {"bucket": "shop-backups", **(repository or {})}},
        "keel:services": {"uploads": {"kind": "volume", "sqlite_files": ["data/app.db", "cache.sqlite"]}},
    }
    values: dict[str, Any] = stack_values("prod")
    values.update(with_fragment("prod", fragment))
    raw = {key.split(":", 1)[1]: json.dumps(v) if isinstance(v, (dict, list)) else str(v) for key, v in values.items()}
    cfg = parse(raw)
    return backup_spec(cfg, stack_name="prod")


# The job's scripts, and the restore scripts of the kinds prod has (postgres, redis, volume).
PROD_SCRIPTS = (*SCRIPT_NAMES, "restore-postgres.sh", "restore-redis.sh", "restore-sqlite.sh", "restore-files.sh")


def test_prod_ships_the_job_scripts_and_its_kinds_restore_scripts() -> None:
    assert sorted(render_backup_scripts(_prod_spec())) == sorted(PROD_SCRIPTS)


@pytest.mark.parametrize("name", PROD_SCRIPTS)
def test_rendered_script_matches_golden(name: str) -> None:
    text = render_backup_scripts(_prod_spec())[name]
    golden = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(text)
    assert text == golden.read_text(), f"rendered {name} differs from {golden}; UPDATE_GOLDEN=1 to accept"


def test_every_rendered_script_passes_shellcheck(tmp_path: Path) -> None:
    for name, text in render_backup_scripts(_prod_spec()).items():
        (tmp_path / name).write_text(text)
    result = subprocess.run(
        [require_tool("shellcheck"), "--shell=sh", "--external-sources", "--severity=style", *PROD_SCRIPTS],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_script_is_posix_sh_that_dash_parses(tmp_path: Path) -> None:
    for name, text in render_backup_scripts(_prod_spec()).items():
        path = tmp_path / name
        path.write_text(text)
        parsed = subprocess.run(["sh", "-n", str(path)], capture_output=True, text=True, timeout=30, check=False)
        assert parsed.returncode == 0, f"{name}: {parsed.stderr}"


@pytest.mark.parametrize(
    ("schedule", "seconds"),
    [
        ("0 * * * *", 3600),
        ("15 */2 * * *", 7200),
        ("30 3 * * *", 86400),
        ("30 4 * * 0", 604800),
        # Weekdays only: the alert must allow the weekend's gap, not the weekday one.
        ("0 2 * * 1-5", 3 * 86400),
        ("*/5 * * * *", 300),
    ],
)
def test_schedule_interval_is_the_longest_gap_between_runs(schedule: str, seconds: int) -> None:
    assert schedule_interval_seconds(schedule) == seconds


def test_interval_reaches_the_metrics_file() -> None:
    spec = _prod_spec()
    assert "KEEL_INTERVAL_S=3600\n" in render_backup_scripts(spec)["backup.sh"]


@pytest.mark.parametrize(
    ("endpoint", "path", "url"),
    [
        ("https://fsn1.your-objectstorage.com", "", "s3:https://fsn1.your-objectstorage.com/bkp/shop/prod"),
        ("https://s3.eu-central-1.amazonaws.com/", "team/db", "s3:https://s3.eu-central-1.amazonaws.com/bkp/team/db"),
        ("abc.r2.cloudflarestorage.com", "/x/", "s3:https://abc.r2.cloudflarestorage.com/bkp/x"),
    ],
)
def test_repository_url_for_s3_compatible_endpoints(endpoint: str, path: str, url: str) -> None:
    repo = BackupRepository(bucket="bkp", endpoint=endpoint, path=path)
    assert repository_url(repo, "shop/prod") == url


def test_spec_has_every_store_with_data_and_skips_external_ones() -> None:
    spec = _prod_spec()
    assert spec.store_names == ("db", "cache", "uploads")
    assert spec.targets == (
        PostgresTarget(name="db", host="shop-db", database="shop", user="keel_backup"),
        RedisTarget(name="cache", host="shop-cache", user="keel-backup"),
        VolumeTarget(name="uploads", sqlite_files=("data/app.db", "cache.sqlite"), files=True),
    )
    assert spec.snapshot_host == "shop-prod"


@pytest.mark.parametrize("path", ["../etc/passwd", "app db", "/abs.db"])
def test_a_sqlite_path_the_scripts_could_not_name_safely_is_refused(path: str) -> None:
    with pytest.raises(ValueError, match="expected a relative path"):
        VolumeTarget(name="files", sqlite_files=(path,))


@pytest.mark.parametrize(
    ("targets", "message"),
    [
        ((), "at least one store"),
        ((VolumeTarget(name="files"), VolumeTarget(name="files")), "unique"),
        ((VolumeTarget(name="Files"),), "lower-case letters"),
    ],
)
def test_spec_refuses_what_the_scripts_could_not_quote_safely(targets: tuple[VolumeTarget, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BackupSpec(
            repository="s3:https://example.com/b", snapshot_host="h", schedule="0 * * * *",
            targets=targets,
        )  # fmt: skip


def test_job_health_check_fails_only_after_the_run_deadline(tmp_path: Path) -> None:
    kind, script = job_health_command(3600)
    started = tmp_path / "run-started"
    env = {"PATH": os.environ["PATH"], "KEEL_RUN_STARTED_FILE": str(started)}

    def healthy(age_s: int | None) -> bool:
        if age_s is None:
            started.unlink(missing_ok=True)
        else:
            started.write_text(f"{int(time.time()) - age_s}\n")
        return subprocess.run(["sh", "-c", script], env=env, timeout=30, check=False).returncode == 0

    assert kind == "CMD-SHELL"
    assert healthy(10)
    assert healthy(3500)
    assert not healthy(3700)
    # Before the entry script has written the file (inside swarm's start period) it is not healthy yet.
    assert not healthy(None)


@pytest.mark.parametrize(("schedule", "deadline"), [("0 * * * *", 3600), ("30 3 * * *", MAX_RUN_S), (None, MAX_RUN_S)])
def test_a_runs_deadline_is_its_schedules_gap_at_most_six_hours(schedule: str | None, deadline: int) -> None:
    assert run_deadline_seconds(schedule) == deadline


@pytest.mark.parametrize(("initialise", "default"), [(False, "0"), (True, "1")])
def test_a_run_creates_a_missing_repository_only_when_the_config_allows_it(initialise: bool, default: str) -> None:
    spec = _prod_spec({"initialise": initialise} if initialise else None)
    assert spec.initialise is initialise
    assert f': "${{KEEL_INITIALISE:={default}}}"' in render_backup_scripts(spec)["backup.sh"]
    # Every other script opens the repository without the right to create it.
    for name, text in render_backup_scripts(spec).items():
        if name not in ("backup.sh", "common.sh"):
            assert "keel_open_repository 1" not in text and "KEEL_INITIALISE" not in text, name


def test_check_interval_reaches_the_check_metrics() -> None:
    assert "keel_backup_check_schedule_interval_seconds 604800" in render_backup_scripts(_prod_spec())["check.sh"]


def test_every_failure_reason_the_scripts_give_is_listed_and_documented() -> None:
    text = "\n".join(render_backup_scripts(_prod_spec()).values())
    patterns = (
        r"keel_(?:reason|why)=([a-z_]+)",  # set directly
        r"^\s+(?:\d+\) )?echo ([a-z_]+)(?: ;;)?$",  # printed by keel_classify
        r"write_check_metrics ([a-z_]+)$",
    )
    given = {word for pattern in patterns for word in re.findall(pattern, text, re.MULTILINE)}
    assert given == set(FAILURE_REASONS)
    doc = RESTORE_DOC.read_text()
    assert [reason for reason in FAILURE_REASONS if f"`{reason}`" not in doc] == []


def test_sqlite_snapshot_names_are_flat_and_the_same_in_python_and_sh(tmp_path: Path) -> None:
    (tmp_path / "common.sh").write_text(render_backup_scripts(_prod_spec())["common.sh"])
    result = subprocess.run(
        ["sh", "-c", '. ./common.sh && keel_sqlite_name uploads data/app.db'], cwd=tmp_path,
        env={"PATH": os.environ["PATH"], "KEEL_WORK_DIR": str(tmp_path)}, capture_output=True, text=True,
        timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "/" + result.stdout == sqlite_snapshot_name("uploads", "data/app.db") == "/uploads+data+app.db"
