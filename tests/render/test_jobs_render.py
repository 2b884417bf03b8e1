"""The wait a deploy makes before it changes a scheduled job: shellcheck, and its behaviour against
a stand-in `docker` that answers `docker service ps` as the real one does (and records the
`docker service update` that pauses the schedule). The job wrapper and the scheduler's reader run
in tests/realtools/test_job_scheduling.py."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from render.jobs import idle_script
from tests.tool_requirements import require_tool

FINGERPRINT = "0" * 64


def _run(
    tmp_path: Path, docker_body: str, timeout_s: int = 2, scheduled: bool = True
) -> subprocess.CompletedProcess[str]:
    """The script against a stand-in docker: `service update` calls are recorded in updates.log,
    `service ps` answers with ``docker_body``."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    docker = bin_dir / "docker"
    updates = tmp_path / "updates.log"
    docker.write_text(f'#!/bin/sh\nif [ "$2" = update ]; then echo "$*" >> {updates}; exit 0; fi\n{docker_body}\n')
    docker.chmod(0o755)
    script = idle_script(
        service="shop-backup", fingerprint=FINGERPRINT, timeout_s=timeout_s, poll_s=1, scheduled=scheduled
    )
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    return subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True, timeout=30, check=False)


@pytest.mark.parametrize("scheduled", [True, False])
def test_the_script_passes_shellcheck(scheduled: bool):
    script = idle_script(service="shop-backup", fingerprint=FINGERPRINT, scheduled=scheduled)
    result = subprocess.run(
        [require_tool("shellcheck"), "-s", "sh", "-"], input=script, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout


def test_a_scheduled_job_is_paused_before_the_wait_and_an_unscheduled_one_is_not(tmp_path: Path):
    result = _run(tmp_path, "echo 'Complete 3 minutes ago'")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "updates.log").read_text().splitlines() == [
        "service update --detach --quiet --label-add swarm.cronjob.enable=false shop-backup"
    ]
    (tmp_path / "updates.log").unlink()
    assert _run(tmp_path, "echo 'Complete 3 minutes ago'", scheduled=False).returncode == 0
    assert not (tmp_path / "updates.log").exists()


@pytest.mark.parametrize("state", ["Pending 2 seconds ago", "Preparing 40 seconds ago", "Starting 3 seconds ago"])
def test_a_run_not_yet_running_is_a_run_in_progress(tmp_path: Path, state: str):
    # Pulling its image or waiting for its first health probe: about to run, so not idle.
    result = _run(tmp_path, f"echo '{state}'", timeout_s=1)
    assert result.returncode == 1 and "still in progress" in result.stderr


def test_an_idle_job_lets_the_deploy_go_on(tmp_path: Path):
    result = _run(tmp_path, "echo 'Complete 3 minutes ago'; echo 'Shutdown 1 hour ago'")
    assert result.returncode == 0 and "no run in progress" in result.stdout


def test_a_job_not_yet_deployed_lets_the_deploy_go_on(tmp_path: Path):
    result = _run(tmp_path, "echo 'no such service: shop-backup' >&2; exit 1")
    assert result.returncode == 0 and "not deployed yet" in result.stdout


def test_a_run_in_progress_is_waited_for(tmp_path: Path):
    marker = tmp_path / "calls"
    # Running on the first two looks, finished on the third.
    body = (
        f'n=$(cat {marker} 2>/dev/null || echo 0); n=$((n + 1)); echo "$n" > {marker}; '
        '[ "$n" -lt 3 ] && echo "Running 2 minutes ago" || echo "Complete 1 second ago"'
    )
    result = _run(tmp_path, body, timeout_s=30)
    assert result.returncode == 0, result.stderr
    assert marker.read_text().strip() == "3"


def test_a_run_that_outlasts_the_wait_fails_the_deploy_and_says_why(tmp_path: Path):
    result = _run(tmp_path, "echo 'Running 20 minutes ago'", timeout_s=2)
    assert result.returncode == 1
    assert "a run is still in progress after 2s" in result.stderr
    # The job's update will not happen: its schedule is put back rather than left paused.
    assert (tmp_path / "updates.log").read_text().splitlines() == [
        "service update --detach --quiet --label-add swarm.cronjob.enable=false shop-backup",
        "service update --detach --quiet --label-add swarm.cronjob.enable=true shop-backup",
    ]


@pytest.mark.parametrize(("service", "fingerprint"), [("shop backup", FINGERPRINT), ("shop-backup", "not-a-digest")])
def test_names_that_are_not_plain_are_refused(service, fingerprint):
    with pytest.raises(ValueError):
        idle_script(service=service, fingerprint=fingerprint)
