"""The rendered monitoring files, checked by the real tools that consume them.

- promtool (Debian `prometheus`): `check config`, `check rules`, and `test rules` with the unit
  tests in tests/realtools/promtool/ against the rules rendered for prod (hourly backups);
- amtool (Debian `prometheus-alertmanager`): `check-config` on every receiver kind;
- the blackbox exporter (Debian `prometheus-blackbox-exporter`): `--config.check`.

A missing tool skips the test (fails it under CI=true): tests/tool_requirements.py.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from render import observability as obs
from tests.helpers import BACKUP_ON as BACKUP
from tests.helpers import EMAIL_ALERTS as EMAIL
from tests.helpers import observability_config as stack_config
from tests.helpers import observability_spec as spec_of
from tests.tool_requirements import require_tool

UNIT_TESTS = Path(__file__).resolve().parent / "promtool"
BLACKBOX = "prometheus-blackbox-exporter"


# A job every 10 minutes with a 5-minute timeout and the default 30 s grace: late after
# 600 + 300 + 30 + 300 = 1230 s (render/jobs.py late_after_s); tests/realtools/promtool/jobs_test.yml.
JOBS = {
    "report": {
        "app": "api",
        "command": ["node", "report.js"],
        "schedule": "*/10 * * * *",
        "timeout_s": 300,
        "resources": {"memory_mb": 64},
    }
}

CASES = {
    "prod-email-backup": lambda: stack_config("prod", {"keel:backup": BACKUP, "keel:jobs": JOBS}, alerts=EMAIL),
    "prod-jobs-no-backup": lambda: stack_config("prod", {"keel:jobs": JOBS}),
    "prod-webhook": lambda: stack_config("prod", alerts={"kind": "webhook", "webhook_url_secret": "alert_hook"}),
    "staging-no-receiver": lambda: stack_config("staging", {"keel:backup": {**BACKUP, "schedule": "15 3 * * *"}}),
    "dev": lambda: stack_config("dev"),
}


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=60, check=False)


def write_prometheus(spec: obs.ObservabilitySpec, directory: Path) -> None:
    # Same layout as in the container: rule_files is relative to prometheus.yml's directory.
    (directory / "rules").mkdir(parents=True, exist_ok=True)
    (directory / "prometheus.yml").write_text(obs.render_prometheus_yml(spec))
    (directory / obs.RULES_FILE).write_text(obs.render_alert_rules(spec))


@pytest.mark.parametrize("case", sorted(CASES))
def test_promtool_accepts_the_prometheus_config(case, tmp_path):
    write_prometheus(spec_of(CASES[case]()), tmp_path)
    result = run([require_tool("promtool"), "check", "config", "prometheus.yml"], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 1 rule files found" in result.stdout + result.stderr


@pytest.mark.parametrize("case", sorted(CASES))
def test_promtool_accepts_the_alert_rules(case, tmp_path):
    write_prometheus(spec_of(CASES[case]()), tmp_path)
    result = run([require_tool("promtool"), "check", "rules", obs.RULES_FILE], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_rejects_a_broken_rule_file(tmp_path):
    # The check above means something only if promtool does fail on a bad expression.
    (tmp_path / "bad.yml").write_text("groups:\n  - name: x\n    rules:\n      - alert: X\n        expr: up ==\n")
    result = run([require_tool("promtool"), "check", "rules", "bad.yml"], tmp_path)
    assert result.returncode != 0


def unit_test_files() -> list[Path]:
    return sorted(UNIT_TESTS.glob("*_test.yml"))


@pytest.mark.parametrize("unit", unit_test_files(), ids=lambda p: p.stem)
def test_alert_rule_unit_tests_pass(unit, tmp_path):
    rules = obs.render_alert_rules(spec_of(CASES["prod-email-backup"]()))
    (tmp_path / "keel.yml").write_text(rules)
    shutil.copy(unit, tmp_path / unit.name)
    result = run([require_tool("promtool"), "test", "rules", unit.name], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_firing_and_a_quiet_unit_test():
    rules = yaml.safe_load(obs.render_alert_rules(spec_of(CASES["prod-email-backup"]())))
    alerts = {rule["alert"] for group in rules["groups"] for rule in group["rules"] if "alert" in rule}
    fired: set[str] = set()
    quiet: set[str] = set()
    for unit in unit_test_files():
        for test in yaml.safe_load(unit.read_text())["tests"]:
            for check in test.get("alert_rule_test", []):
                (fired if check["exp_alerts"] else quiet).add(check["alertname"])
    assert alerts - fired == set(), "alerts never shown to fire"
    assert alerts - quiet == set(), "alerts never shown to stay quiet"


@pytest.mark.parametrize("case", ["prod-email-backup", "staging-no-receiver", "dev"])
def test_amtool_accepts_the_alertmanager_config(case, tmp_path):
    (tmp_path / "alertmanager.yml").write_text(obs.render_alertmanager_yml(spec_of(CASES[case]())))
    result = run([require_tool("amtool"), "check-config", "alertmanager.yml"], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("alerts", "files", "receivers"),
    [
        ({"kind": "webhook", "webhook_url_secret": "alert_hook"}, [obs.WEBHOOK_URL_FILE], 2),
        ({"kind": "none", "heartbeat_url_secret": "alert_heartbeat"}, [obs.HEARTBEAT_URL_FILE], 2),
        (
            {"kind": "webhook", "webhook_url_secret": "alert_hook", "heartbeat_url_secret": "alert_heartbeat"},
            [obs.WEBHOOK_URL_FILE, obs.HEARTBEAT_URL_FILE],
            2,
        ),
    ],
    ids=["webhook", "heartbeat", "webhook-and-heartbeat"],
)
def test_amtool_accepts_the_webhook_config_but_for_url_file(alerts, files, receivers, tmp_path):
    """Debian's amtool is 0.25, older than webhook `url_file` (the image runs 0.28, which has it).

    So the check runs on the file with that one key swapped for `url`, after asserting it is the
    only place the two differ.
    """
    text = obs.render_alertmanager_yml(spec_of(stack_config("prod", alerts=alerts)))
    for file in files:
        line = f"      - url_file: {file}\n"
        assert text.count(line) == 1
        text = text.replace(line, "      - url: http://127.0.0.1:9/hook\n")
    assert "url_file" not in text
    (tmp_path / "alertmanager.yml").write_text(text)
    result = run([require_tool("amtool"), "check-config", "alertmanager.yml"], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{receivers} receivers" in result.stdout


@pytest.mark.parametrize("case", ["prod-email-backup", "dev"])
def test_blackbox_exporter_accepts_its_config(case, tmp_path):
    (tmp_path / "blackbox.yml").write_text(obs.render_blackbox_yml(spec_of(CASES[case]())))
    result = run([require_tool(BLACKBOX), "--config.check", "--config.file=blackbox.yml"], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Config file is ok" in result.stdout + result.stderr
