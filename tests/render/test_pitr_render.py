"""render/pitr.py: the pgBackRest files and scripts, from the stack's config (shellcheck on every
script; what they do is proven in tests/realtools/test_pitr_live.py)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from render import pitr
from tests.helpers import BACKUP_ON, parsed
from tests.tool_requirements import require_tool


def _spec() -> pitr.PitrSpec:
    cfg = parsed(
        "prod",
        {
            "keel:backup": {
                **BACKUP_ON,
                "repository": {"bucket": "shop-backups", "endpoint": "https://fsn1.your-objectstorage.com"},
                "pitr": {"archive_timeout_s": 30, "recovery_window_days": 21, "targets": {"rpo_s": 45}},
            }
        },
    )
    return pitr.pitr_specs(cfg, stack_name="prod")["db"]


def test_the_stacks_settings_reach_the_archive_and_its_jobs() -> None:
    spec = _spec()
    assert spec.repository == pitr.Repository(
        host="fsn1.your-objectstorage.com", port=None, bucket="shop-backups", region="us-east-1", path="/shop/prod/pitr"
    )
    assert pitr.archive_settings(spec) == {
        "archive_mode": "on",
        "archive_command": "'pgbackrest --stanza=db archive-push %p'",
        "archive_timeout": "30s",
    }
    conf = pitr.render_pgbackrest_conf(spec)
    assert "repo1-retention-full-type=time\nrepo1-retention-full=21\n" in conf
    assert "repo1-cipher-type=aes-256-cbc" in conf
    assert "repo1-s3-key" not in conf  # the keys live in the secret include only
    drill = pitr.render_scripts(spec)["pitr-drill.sh"]
    assert "keel_pitr_rpo_target_seconds{$keel_labels} 45" in drill


def test_every_script_passes_shellcheck(tmp_path: Path) -> None:
    for name, text in pitr.render_scripts(_spec()).items():
        (tmp_path / name).write_text(text)
    result = subprocess.run(
        [require_tool("shellcheck"), "--shell=sh", "--external-sources", "--severity=style", *pitr.SCRIPT_NAMES],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("bad", ["two\nlines", "  ", "key\rsecret"])
def test_a_secret_that_would_become_more_than_one_option_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="empty or spans lines"):
        pitr.render_secrets_conf(access_key="AK", secret_key=bad, cipher_pass="pass")


def test_the_secret_include_holds_exactly_the_three_options() -> None:
    text = pitr.render_secrets_conf(access_key="AK1", secret_key="SK/2+=", cipher_pass="pass phrase")
    assert text == "[global]\nrepo1-s3-key=AK1\nrepo1-s3-key-secret=SK/2+=\nrepo1-cipher-pass=pass phrase\n"
