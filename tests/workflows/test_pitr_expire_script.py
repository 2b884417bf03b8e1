"""The maintenance workflow's expiry step (.github/scripts/pitr-expire.sh) refuses to start without
its secrets or with a stack that archives nothing, before pgBackRest runs (its real run against S3
is tests/realtools/test_pitr_expiry.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / ".github" / "scripts" / "pitr-expire.sh"
SECRETS = {
    "PGBACKREST_REPO1_S3_KEY": "key-id",
    "PGBACKREST_REPO1_S3_KEY_SECRET": "key-secret",
    "PGBACKREST_REPO1_CIPHER_PASS": "passphrase",
}


def run(*args: str, **overrides: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp")}
    env.update({**SECRETS, **overrides})
    return subprocess.run(
        [str(SCRIPT), *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.parametrize("missing", sorted(SECRETS))
def test_an_empty_secret_stops_the_step_naming_it(missing: str) -> None:
    result = run("prod", **{missing: ""})
    assert result.returncode == 2
    assert f"error: {missing} is empty" in result.stderr
    assert result.stdout == ""  # stopped before any store was tried


def test_a_stack_that_archives_nothing_fails_the_step() -> None:
    result = run("staging")
    assert result.returncode == 2
    assert "stack staging archives no PostgreSQL store" in result.stderr


def test_without_a_stack_the_step_prints_its_usage() -> None:
    result = run()
    assert result.returncode == 2 and "usage:" in result.stderr
