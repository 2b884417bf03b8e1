"""The post-deploy smoke check (.github/actions/smoke/smoke.py): which URLs it probes, how it reads
`docker service ls`, that its ssh believes only the pinned key, and its exit code against a real
HTTPS server on loopback that is healthy, then unhealthy."""

from __future__ import annotations

import datetime
import http.server
import importlib.util
import json
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / ".github" / "actions" / "smoke" / "smoke.py"


def load_smoke() -> ModuleType:
    spec = importlib.util.spec_from_file_location("keel_smoke", SMOKE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


smoke = load_smoke()


def config_json(stack: str) -> dict[str, Any]:
    """What `pulumi config --json` prints for a stack file (objects carry value and objectValue)."""
    data = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())["config"]
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, (dict, list)):
            out[key] = {"value": json.dumps(value), "objectValue": value, "secret": False}
        else:
            out[key] = {"value": str(value), "secret": False}
    out["keel:jwt_secret"] = {"secret": True}
    return out


def test_config_values_keeps_the_project_keys_as_loader_strings() -> None:
    raw = smoke.config_values(
        {
            "keel:environment": {"value": "prod", "secret": False},
            "keel:dns": {"value": '{"zone": "example.com"}', "objectValue": {"zone": "example.com"}, "secret": False},
            "keel:jwt_secret": {"secret": True},
            "hcloud:token": {"secret": True},
        }
    )
    assert raw == {"environment": "prod", "dns": '{"zone": "example.com"}'}


def test_staging_probes_its_hostname_with_verified_tls() -> None:
    targets = smoke.health_targets(config_json("staging"), {"ipv4": "198.51.100.10"})
    assert targets == [smoke.Target("https://staging.example.com/health", True)]


def test_prod_probes_every_hostname() -> None:
    targets = smoke.health_targets(config_json("prod"), {"ipv4": "198.51.100.10"})
    assert [t.url for t in targets] == ["https://example.com/health", "https://www.example.com/health"]


def test_dev_probes_the_self_signed_proxy_port_without_verification() -> None:
    targets = smoke.health_targets(config_json("dev"), {"ipv4": "127.0.0.1"})
    assert targets == [smoke.Target("https://127.0.0.1:8443/health", False)]


def test_unconverged_lists_services_below_their_desired_count() -> None:
    listing = "shop-web 2/2\nshop-api 1/3\nshop-db 1/1 (max 1 per node)\nshop-job 0/1 (1/1 completed)\nodd\n"
    assert smoke.unconverged(listing) == ["shop-api (1/3 running)", "shop-job (0/1 running)"]


def test_ssh_believes_only_the_pinned_host_key(tmp_path: Path) -> None:
    argv = smoke.ssh_argv("deploy@198.51.100.10", tmp_path / "known_hosts", ["docker", "info"])
    pairs = {argv[i + 1] for i, arg in enumerate(argv) if arg == "-o"}
    assert "StrictHostKeyChecking=yes" in pairs
    assert f"UserKnownHostsFile={tmp_path / 'known_hosts'}" in pairs
    assert "GlobalKnownHostsFile=/dev/null" in pairs
    assert argv[-3:] == ["deploy@198.51.100.10", "docker", "info"]


def test_ssh_destination_is_read_from_the_stack_output() -> None:
    assert smoke.ssh_destination("ssh deploy@198.51.100.10") == "deploy@198.51.100.10"
    assert smoke.ssh_destination("(local engine: no ssh)") is None


# ----------------------------------------------------------------------------- against a real server


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


class HealthState:
    """What the test server's /health answers; a test may change it while the server runs."""

    def __init__(self) -> None:
        self.status = 200


@pytest.fixture
def https_server(tmp_path: Path) -> Iterator[tuple[str, HealthState]]:
    state = HealthState()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            code = state.status if self.path == "/health" else 404
            self.send_response(code)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*self_signed(tmp_path))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}/health", state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def run_smoke(url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, str(SMOKE), "--stack", "dev", "--url", url, "--no-ssh", "--attempts", "2"]
    return subprocess.run(
        [*argv, "--interval", "0.1", "--timeout", "5", *extra], capture_output=True, text=True, timeout=60, check=False
    )


def test_smoke_passes_when_the_health_endpoint_answers_200(https_server: Any) -> None:
    url, _ = https_server
    result = run_smoke(url, "--insecure")
    assert result.returncode == 0, result.stderr
    assert f"smoke check passed on attempt 1: {url}" in result.stdout


def test_smoke_fails_the_job_when_unhealthy(https_server: Any) -> None:
    url, state = https_server
    state.status = 503
    result = run_smoke(url, "--insecure")
    assert result.returncode == 1
    assert f"smoke check FAILED:\n  {url}: HTTP 503" in result.stderr
    assert result.stderr.count("attempt ") == 2


def test_smoke_verifies_tls_unless_told_otherwise(https_server: Any) -> None:
    url, _ = https_server
    result = run_smoke(url)
    assert result.returncode == 1
    assert "CERTIFICATE_VERIFY_FAILED" in result.stderr
