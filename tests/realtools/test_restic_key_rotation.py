"""The runbook's restic password rotation (docs/runbooks.md, "Rotate a secret"), with the real
restic: a second key is added, the backup job moves to it, then the first key is removed; the
snapshots stay readable with the new password and no longer with the old one."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests.tool_requirements import require_tool


def restic(repo: Path, password_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RESTIC_REPOSITORY": str(repo), "RESTIC_PASSWORD_FILE": str(password_file)}
    env.pop("RESTIC_PASSWORD", None)
    return subprocess.run(
        [require_tool("restic"), "--no-cache", "--json", *args],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_a_second_key_then_removing_the_first_keeps_every_snapshot(tmp_path: Path):
    repo, data = tmp_path / "repo", tmp_path / "data"
    data.mkdir()
    (data / "orders.sql").write_text("INSERT INTO orders VALUES (1);\n")
    old, new = tmp_path / "old", tmp_path / "new"
    old.write_text("old-repository-password")
    new.write_text("new-repository-password")
    assert restic(repo, old, "init").returncode == 0
    assert restic(repo, old, "backup", str(data)).returncode == 0
    first_key = json.loads(restic(repo, old, "key", "list").stdout)
    assert len(first_key) == 1 and first_key[0]["current"]

    # 1. A second key: both passwords open the repository while the job's secret changes.
    added = restic(repo, old, "key", "add", "--new-password-file", str(new))
    assert added.returncode == 0, added.stderr
    assert restic(repo, new, "snapshots").returncode == 0 and restic(repo, old, "snapshots").returncode == 0
    # 2. The job runs with the new secret; then the first key goes, removed with the new one.
    assert restic(repo, new, "backup", str(data)).returncode == 0
    removed = restic(repo, new, "key", "remove", first_key[0]["id"])
    assert removed.returncode == 0, removed.stderr
    snapshots = json.loads(restic(repo, new, "snapshots").stdout)
    assert len(snapshots) == 2
    refused = restic(repo, old, "snapshots")
    assert refused.returncode != 0 and "wrong password" in refused.stderr.lower()


def test_restic_refuses_to_remove_the_key_it_was_opened_with(tmp_path: Path):
    """Why step 2 removes the first key with the new password."""
    repo, password = tmp_path / "repo", tmp_path / "password"
    password.write_text("only-password")
    assert restic(repo, password, "init").returncode == 0
    current = json.loads(restic(repo, password, "key", "list").stdout)[0]["id"]
    assert restic(repo, password, "key", "remove", current).returncode != 0
