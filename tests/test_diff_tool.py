"""`make diff BASE=<revision>`: the plan between a revision and the working tree, read by people.

Run in a throw-away git repository holding this checkout, so the test needs no history of its own.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.tool_requirements import require_tool

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tree = tmp_path_factory.mktemp("diff") / "repo"
    tree.mkdir()
    git_path = require_tool("git")  # tools.diff runs it too
    listing = [git_path, "ls-files", "-z", "--cached", "--others", "--exclude-standard"]
    archive = subprocess.run(listing, cwd=ROOT, capture_output=True, check=True).stdout
    for name in archive.decode().split("\0"):
        if not name or not (ROOT / name).is_file():
            continue
        target = tree / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((ROOT / name).read_bytes())
    git = [git_path, "-c", "user.name=test", "-c", "user.email=test@example.com"]
    subprocess.run([*git, "init", "-q"], cwd=tree, check=True)
    subprocess.run([*git, "add", "-A"], cwd=tree, check=True)
    subprocess.run([*git, "commit", "-qm", "base"], cwd=tree, check=True)
    return tree


def diff(tree: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tools.diff", "--base", "HEAD", *args],
        cwd=tree,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_the_plan_names_each_changed_resource_field_and_rule_and_hides_secrets(repository: Path):
    stack = repository / "Pulumi.prod.yaml"
    original = stack.read_text()
    changed = original.replace(
        "resources: {memory_mb: 2048, memory_reservation_mb: 1024}",
        "resources: {memory_mb: 2304, memory_reservation_mb: 1024}",
    ).replace(
        "    api:\n      replicas: 3\n", "    api:\n      replicas: 3\n      secrets: {JWT_SECRET: jwt_secret_v2}\n", 1
    )
    assert changed.count("2304") == 1 and "jwt_secret_v2" in changed
    stack.write_text(changed)
    try:
        result = diff(repository, "prod")
    finally:
        stack.write_text(original)
    assert result.returncode == 0, result.stdout + result.stderr
    plan = result.stdout
    assert plan.startswith("Plan of stack prod: HEAD -> working tree\n")
    assert "~ update  docker:index/service:Service::db-service" in plan
    assert "+- replace docker:index/serviceConfig:ServiceConfig::db-postgresql.conf" in plan
    # A config file's change is shown as a text diff of the file, not as base64.
    assert "-shared_buffers = 512MB" in plan and "+shared_buffers = 576MB" in plan
    assert "per kreuzwerker/terraform-provider-docker v4.5.0" in plan
    # The new secret's value is a secret: its change is shown, its value never.
    assert "+- replace docker:index/secret:Secret::api-jwt_secret" in plan
    assert "data: [secret] => [secret]" in plan
    assert "placeholder-secret-jwt_secret_v2" not in plan
    # db-service, and the api's service and migration (its secret files arrive on stdin).
    assert "~ update  command:remote:Command::api-migration" in plan
    assert plan.rstrip().endswith("0 to create, 3 to update, 2 to replace, 0 to delete.")


def test_an_unchanged_tree_plans_nothing(repository: Path):
    result = diff(repository, "dev")
    assert result.returncode == 0, result.stderr
    assert "no changes" in result.stdout
    assert "0 to create, 0 to update, 0 to replace, 0 to delete." in result.stdout


def test_a_refused_configuration_exits_2_with_its_message(repository: Path):
    stack = repository / "Pulumi.dev.yaml"
    original = stack.read_text()
    stack.write_text(original.replace("keel:environment: dev", "keel:environment: dev\n  keel:servics: {}"))
    try:
        result = diff(repository, "dev")
    finally:
        stack.write_text(original)
    assert result.returncode == 2
    assert result.stdout.startswith("error: ")
    assert "servics" in result.stdout
