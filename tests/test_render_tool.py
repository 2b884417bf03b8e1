"""Offline rendering: `python -m tools.render STACK` writes what the stack declares, with no credentials."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from tools import render

ROOT = Path(__file__).resolve().parent.parent


def test_render_prod_writes_resources_outputs_and_cloud_init(tmp_path: Path):
    assert render.main(["prod", "--out", str(tmp_path)]) == 0
    resources = yaml.safe_load((tmp_path / "resources.yaml").read_text())
    types = {r["type"] for r in resources}
    assert {"hcloud:index/server:Server", "hcloud:index/firewall:Firewall", "pulumi:providers:docker"} <= types
    server = next(r for r in resources if r["type"] == "hcloud:index/server:Server")
    assert server["options"]["protect"] is True
    assert server["inputs"]["userData"] == render.REDACTED  # carries the host key: secret
    outputs = json.loads((tmp_path / "outputs.json").read_text())
    assert outputs["ssh_command"] == "ssh deploy@198.51.100.10"
    cloud_init = (tmp_path / "files" / "host-server.cloud-init.yaml").read_text()
    assert cloud_init.startswith("#cloud-config")


def test_render_reports_a_config_error_without_traceback(tmp_path: Path):
    bad = tmp_path / "Pulumi.bad.yaml"
    bad.write_text("config:\n  keel:host:\n    provider: hcloud\n    server_type: cx11\n")
    result = subprocess.run(
        [sys.executable, "-m", "tools.render", "bad", "--config-file", str(bad), "--out", str(tmp_path / "out")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith('error: 3 configuration problems:\n  - host/server_type: "cx11" is deprecated')


def test_render_refuses_a_missing_config_file(tmp_path: Path, capsys):
    assert render.main(["x", "--config-file", str(tmp_path / "none.yaml")]) == 2
    assert "no such file" in capsys.readouterr().err
