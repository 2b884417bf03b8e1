"""The proxy's reload mechanism (render/proxy_runtime.py), run for real with Debian's nginx.

The watcher script is PID 1 of the proxy task. Here it runs on loopback with a small nginx
configuration in a temporary directory: a change is loaded by a graceful reload (an in-flight
request finishes), a broken configuration is refused and the previous one keeps serving.
"""

from __future__ import annotations

import http.server
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from render.proxy_runtime import watcher_script
from tests.tool_requirements import require_tool


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class SlowHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        time.sleep(2)
        body = b"slow done"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        return


def conf(tmp: Path, port: int, upstream: int, text: str) -> str:
    return f"""
worker_processes 1;
pid {tmp}/nginx.pid;
error_log stderr warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{ return 200 "{text}"; }}
        location /slow {{ proxy_pass http://127.0.0.1:{upstream}; proxy_read_timeout 10s; }}
    }}
}}
"""


def get(port: int, path: str = "/") -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
        return response.read().decode()


def wait_for(predicate, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[tuple[Path, int, int]]:
    nginx = require_tool("nginx")
    conf_dir, cert_dir = tmp_path / "conf", tmp_path / "certs"
    conf_dir.mkdir()
    cert_dir.mkdir()
    port, upstream_port = free_port(), free_port()
    upstream = http.server.ThreadingHTTPServer(("127.0.0.1", upstream_port), SlowHandler)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    (conf_dir / "nginx.conf").write_text(conf(tmp_path, port, upstream_port, "v1"))
    script = tmp_path / "keel-proxy"
    script.write_text(watcher_script(conf_dir=str(conf_dir), cert_dir=str(cert_dir), poll_s=1))
    env = {**os.environ, "PATH": f"{Path(nginx).parent}:{os.environ['PATH']}"}
    process = subprocess.Popen(["sh", str(script)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        # The watcher records the digest it loaded only after starting nginx, which may answer first.
        assert wait_for(lambda: _answers(port) and _recorded(conf_dir) != ""), "nginx did not start"
        yield conf_dir, port, upstream_port
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
        subprocess.run(["pkill", "-f", f"{tmp_path}/conf/nginx.conf"], check=False)
        upstream.shutdown()


def _recorded(conf_dir: Path, name: str = ".applied") -> str:
    """What the watcher recorded in conf_dir/name (written after its other records), or ""."""
    path = conf_dir / name
    return path.read_text().strip() if path.is_file() else ""


def _answers(port: int) -> bool:
    try:
        return get(port) in ("v1", "v2")
    except OSError:
        return False


def test_a_changed_configuration_is_reloaded_and_acknowledged(proxy):
    conf_dir, port, upstream = proxy
    assert get(port) == "v1"
    before = (conf_dir / ".applied").read_text()
    (conf_dir / "nginx.conf").write_text(conf(conf_dir.parent, port, upstream, "v2"))
    assert wait_for(lambda: get(port) == "v2"), "the new configuration was not loaded"
    assert wait_for(lambda: _recorded(conf_dir) not in ("", before.strip()))
    assert not (conf_dir / ".error").exists()


def test_an_in_flight_request_survives_the_reload(proxy):
    conf_dir, port, upstream = proxy
    result: dict[str, str] = {}
    slow = threading.Thread(target=lambda: result.update(body=get(port, "/slow")))
    slow.start()
    time.sleep(0.5)  # the request is now waiting on the slow upstream
    (conf_dir / "nginx.conf").write_text(conf(conf_dir.parent, port, upstream, "v2"))
    assert wait_for(lambda: get(port) == "v2")
    slow.join(timeout=15)
    assert result.get("body") == "slow done"


def test_a_broken_configuration_is_refused_and_the_old_one_keeps_serving(proxy):
    conf_dir, port, _ = proxy
    (conf_dir / "nginx.conf").write_text("events {}\nhttp { this is not nginx; }\n")
    digest = subprocess.run(
        f"find {conf_dir} -type f -name '*.conf' | sort | xargs cat | md5sum | cut -d' ' -f1",
        shell=True,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # The watcher writes .error, then .rejected: once .rejected names this digest, .error is complete.
    assert wait_for(lambda: _recorded(conf_dir, ".rejected") == digest), "the broken configuration was not reported"
    assert "unknown directive" in (conf_dir / ".error").read_text()
    assert get(port) == "v1"


def test_watcher_script_passes_shellcheck(tmp_path: Path):
    path = tmp_path / "keel-proxy"
    path.write_text(watcher_script())
    result = subprocess.run([require_tool("shellcheck"), "-s", "sh", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout
