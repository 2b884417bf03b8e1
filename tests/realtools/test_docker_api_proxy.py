"""The Docker API proxies' rules, answered by a real HAProxy in front of a stand-in daemon.

render/docker_api.py renders the configuration the proxy image (tecnativa/docker-socket-proxy
v0.4.1) runs; HAProxy expands ``${BIND_CONFIG}`` from its environment itself (the image sets it).
The stand-in daemon is an HTTP server on a Unix socket that records what reaches it: an allowed
request reaches it, a refused one gets 403 from HAProxy and never does. The node-local socket (one
proxy per node, with several nodes) answers the same rules, with a mode its client can open.
"""

from __future__ import annotations

import http.client
import os
import socket
import socketserver
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from render import docker_api
from tests.tool_requirements import require_tool

DEADLINE_S = 20


class StandInDaemon(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def __init__(self, path: Path) -> None:
        self.seen: list[tuple[str, str]] = []
        super().__init__(str(path), Handler)


class Handler(BaseHTTPRequestHandler):
    server: StandInDaemon

    def _answer(self) -> None:
        self.server.seen.append((self.command, self.path))
        body = b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_HEAD = _answer  # noqa: N815 (http.server's method names)

    def address_string(self) -> str:  # a Unix socket has no client address
        return "stand-in"

    def log_message(self, *args: object) -> None:
        pass


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: Path) -> None:
        super().__init__("localhost", timeout=10)
        self.unix_path = str(path)

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(self.unix_path)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def status(connection: http.client.HTTPConnection, method: str, path: str) -> int:
    connection.request(method, path)
    response = connection.getresponse()
    response.read()
    connection.close()
    return response.status


def wait_for(path: Path) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not path.exists():
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} never appeared")
        time.sleep(0.05)


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[tuple[StandInDaemon, Path, int]]:
    haproxy = require_tool("haproxy")
    daemon_socket = tmp_path / "docker.sock"
    front = tmp_path / "front.sock"
    daemon = StandInDaemon(daemon_socket)
    threading.Thread(target=daemon.serve_forever, daemon=True).start()
    text = docker_api.render_haproxy_template(
        "cAdvisor (info, version, container inspection, read-only)",
        docker_api.CADVISOR,
        unix_socket=str(front),
        docker_socket=str(daemon_socket),
    )
    # The image writes the pid file in its own /tmp; here, in the test's directory.
    config = tmp_path / "haproxy.cfg"
    config.write_text(text.replace("pidfile /tmp/haproxy.pid", f"pidfile {tmp_path}/haproxy.pid"))
    port = free_port()
    env = {**os.environ, "BIND_CONFIG": f"127.0.0.1:{port}"}
    check = subprocess.run([haproxy, "-c", "-f", str(config)], env=env, capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    process = subprocess.Popen([haproxy, "-db", "-f", str(config)], env=env, stdout=subprocess.DEVNULL)
    try:
        wait_for(front)
        yield daemon, front, port
    finally:
        process.terminate()
        process.wait(timeout=DEADLINE_S)
        daemon.shutdown()
        daemon.server_close()


def test_the_node_local_socket_answers_the_rules_and_opens_to_any_user(proxy):
    daemon, front, _ = proxy
    assert front.stat().st_mode & 0o777 == 0o666, "cAdvisor runs as nobody, the proxy as root"
    assert status(UnixConnection(front), "GET", "/v1.47/info") == 200
    assert status(UnixConnection(front), "GET", "/containers/0123abc/json") == 200
    assert status(UnixConnection(front), "GET", "/_ping") == 200
    assert daemon.seen == [("GET", "/v1.47/info"), ("GET", "/containers/0123abc/json"), ("GET", "/_ping")]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/containers/0123abc/exec"),  # a shell in any container
        ("GET", "/containers/json"),  # the container list
        ("GET", "/containers/0123abc/archive"),  # a container's files
        ("GET", "/containers/0123abc/export"),
        ("POST", "/containers/create"),
        ("GET", "/containers/../secrets"),
        ("GET", "/services"),  # the scheduler's rules are not cAdvisor's
    ],
)
def test_every_other_request_is_refused_before_the_daemon(proxy, method, path):
    daemon, front, port = proxy
    assert status(UnixConnection(front), method, path) == 403
    assert status(http.client.HTTPConnection("127.0.0.1", port, timeout=10), method, path) == 403
    assert daemon.seen == []


def test_the_tcp_listener_answers_the_same_rules(proxy):
    daemon, _, port = proxy
    assert status(http.client.HTTPConnection("127.0.0.1", port, timeout=10), "GET", "/info") == 200
    assert daemon.seen == [("GET", "/info")]


def test_a_daemon_that_is_down_is_an_error_not_an_answer(proxy):
    daemon, front, _ = proxy
    daemon.shutdown()
    daemon.server_close()
    Path(daemon.server_address).unlink()
    assert status(UnixConnection(front), "GET", "/info") == 503
