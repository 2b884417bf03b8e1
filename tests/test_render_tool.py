"""Offline rendering: `python -m tools.render STACK` writes what the stack declares, with no credentials,
and every file the stack ships as text, where it lands."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from render import proxy_runtime
from tests.helpers import check_render_is_readable, stack_run
from tools import render

ROOT = Path(__file__).resolve().parent.parent
STACKS = ["dev", "staging", "prod"]


@pytest.fixture(scope="module")
def prod(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("prod")
    assert render.main(["prod", "--out", str(out)]) == 0
    return out


def test_render_prod_writes_resources_outputs_and_cloud_init(prod: Path):
    resources = yaml.safe_load((prod / "resources.yaml").read_text())
    types = {r["type"] for r in resources}
    assert {"hcloud:index/server:Server", "hcloud:index/firewall:Firewall", "pulumi:providers:docker"} <= types
    server = next(r for r in resources if r["type"] == "hcloud:index/server:Server")
    assert server["options"]["protect"] is True
    # The user data carries the host key: the file has it redacted, resources.yaml refers to the file.
    assert server["inputs"]["userData"] == {"file": "files/host/cloud-init.yaml", "secrets": "redacted"}
    outputs = json.loads((prod / "outputs.json").read_text())
    assert outputs["ssh_command"] == "ssh deploy@198.51.100.10"
    cloud_init = (prod / "files" / "host" / "cloud-init.yaml").read_text()
    assert cloud_init.startswith("#cloud-config")
    key = yaml.safe_load(cloud_init)["ssh_keys"]["ed25519_private"].splitlines()
    assert key[0] == "-----BEGIN OPENSSH PRIVATE KEY-----" and set(key[1:-1]) == {render.REDACTED}


def test_the_proxy_configuration_is_readable_where_the_proxy_reads_it(prod: Path):
    # The writer stages the set and points `staged` at it: its files, decoded, under that link.
    staged = prod / "files" / "shop-proxy" / "etc" / "nginx" / "keel" / proxy_runtime.STAGED_LINK
    conf = (staged / "nginx.conf").read_text()
    assert "\nhttp {" in conf and "server_name example.com www.example.com;" in conf
    resources = (prod / "resources.yaml").read_text()
    writer = next(r for r in yaml.safe_load(resources) if r["name"] == "proxy-nginx.conf")
    files = {"nginx.conf": conf, "keel.d/status.conf": (staged / "keel.d" / "status.conf").read_text()}
    assert writer["inputs"]["stdin"] == {
        "files": [
            "files/shop-proxy/etc/nginx/keel/staged/keel.d/status.conf",
            "files/shop-proxy/etc/nginx/keel/staged/nginx.conf",
        ],
        # The set's name on the host, the digest the writer waits for: that of the files written here.
        "set": f"sets/{proxy_runtime.set_digest(files)}",
    }
    assert f"want={proxy_runtime.set_digest(files)}\n" in writer["inputs"]["create"]
    # Scripts in resources.yaml are literal blocks, as written.
    assert "    create: |\n      #!/bin/sh\n" in resources


@pytest.mark.parametrize("stack", STACKS)
def test_every_config_is_a_readable_file_and_no_base64_or_secret_is_left(stack: str, tmp_path: Path):
    # The examples get the same check in tests/examples/test_examples.py, on their cached runs.
    run = stack_run(stack)
    assert run.error is None, run.error
    render.write(run, tmp_path)
    check_render_is_readable(run, tmp_path)
    # Where each file goes does not depend on the order the program registered resources in.
    written = render.shipped_files(run).files
    run.resources.reverse()
    assert render.shipped_files(run).files == written


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
