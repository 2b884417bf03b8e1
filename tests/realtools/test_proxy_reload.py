"""The proxy's configuration protocol (render/proxy_runtime.py), run for real with Debian's nginx.

The watcher is PID 1 of the proxy task; here it runs on loopback under busybox's shell and tools
(the alpine image's userland), over a temporary directory that plays the configuration volume.
The writer runs as on the host, with a stand-in `docker` (there is no engine here) that runs its
staging step on that directory and reads the acknowledgement files from it, so the whole
exchange is the real one: stage, `nginx -t`, promote, reload, acknowledge or refuse.

What is proven: a good set is loaded and acknowledged with its digest; a refused set fails the
deploy with nginx's own message and leaves what a restart reads untouched, so a restarted proxy
serves the previous set; a later good set then loads; an in-flight request survives a reload.
"""

from __future__ import annotations

import http.server
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from backup_helpers import busybox_userland
from nginx_harness import debian_nginx, free_port, work_dir

from render import proxy_runtime
from render.proxy_runtime import set_digest, stage_script, watcher_script, writer_script, writer_stdin

FAKE_DOCKER = f"""#!{sys.executable}
# Stands in for the Docker CLI the writer calls on the host: `run` executes the staging step on
# the directory that plays the volume, `ps` names the proxy task, `exec` reads inside the volume.
import os, subprocess, sys
volume = os.environ["KEEL_TEST_VOLUME"]
args = sys.argv[1:]
if args[0] == "run":
    script = args[args.index("-c") + 1]
    sys.exit(subprocess.run(["sh", "-c", script, "sh", volume]).returncode)
if args[0] == "ps":
    print("proxy-task")
    sys.exit(0)
if args[0] == "exec":
    command = [a.replace({proxy_runtime.CONF_DIR!r}, volume) for a in args[2:]]
    sys.exit(subprocess.run(command).returncode)
sys.exit("fake docker: unsupported " + " ".join(args))
"""


class SlowHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.server.started.set()  # type: ignore[attr-defined]
        time.sleep(2)  # the upstream's own latency: the request is in flight during the reload
        body = b"slow done"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        return


@dataclass
class Proxy:
    """The configuration volume, the watcher (PID 1 of the task) and the writer's environment."""

    root: Path
    port: int
    upstream_port: int
    env: dict[str, str]
    upstream_started: threading.Event
    """Set when the slow upstream has received a request."""
    process: subprocess.Popen[bytes] | None = None
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.root / "watcher.log"

    @property
    def volume(self) -> Path:
        return self.root / "volume"

    def files(self, text: str, *, broken: bool = False, also_listen: int | None = None) -> dict[str, str]:
        """A set like the rendered one: a main file and an include with the site (broken: an
        unknown directive; also_listen: a second port to bind)."""
        tmp = self.root
        main = f"""
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
    include {proxy_runtime.INCLUDE_DIR}/*.conf;
}}
"""
        site = f"""
server {{
    listen 127.0.0.1:{self.port};
    {f"listen 127.0.0.1:{also_listen};" if also_listen else ""}
    location / {{ return 200 "{text}"; }}
    location /slow {{ proxy_pass http://127.0.0.1:{self.upstream_port}; proxy_read_timeout 10s; }}
    {"this_is_not_nginx on;" if broken else ""}
}}
"""
        return {"nginx.conf": main, f"{proxy_runtime.INCLUDE_DIR}/site.conf": site}

    def stage(self, files: dict[str, str]) -> str:
        """What the writer's `docker run` does, alone: write the set and point `staged` at it."""
        digest = set_digest(files)
        subprocess.run(
            ["sh", "-c", stage_script(digest), "sh", str(self.volume)],
            input=writer_stdin(files),
            text=True,
            env=self.env,
            check=True,
            timeout=30,
        )
        return digest

    def deploy(self, files: dict[str, str]) -> subprocess.CompletedProcess[str]:
        """The writer, as `pulumi up` runs it on the host: stage, then wait for the verdict."""
        script = writer_script(
            volume="proxy-conf", image="nginx", service="proxy", digest=set_digest(files), ack_timeout_s=30
        )
        return subprocess.run(
            ["/bin/sh", "-c", script],
            input=writer_stdin(files),
            text=True,
            env=self.env,
            capture_output=True,
            timeout=60,
        )

    def start(self) -> None:
        script = self.root / "keel-proxy"
        script.write_text(
            watcher_script(conf_dir=str(self.volume), cert_dir=str(self.root / "certs"), poll_s=1, load_timeout_s=10)
        )
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(["sh", str(script)], env=self.env, stdout=out, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        """What swarm does to the task on a restart: SIGTERM to PID 1, which stops nginx gracefully."""
        if self.process is None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None
        assert wait_for(lambda: not _answers(self.port)), "nginx outlived its watcher"

    def applied(self) -> str | None:
        path = self.volume / ".applied"
        return path.read_text().strip() if path.exists() else None

    def current(self) -> str:
        return os.readlink(self.volume / proxy_runtime.CURRENT_LINK)


def get(port: int, path: str = "/") -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
        return response.read().decode()


def _answers(port: int) -> bool:
    try:
        get(port)
        return True
    except OSError:
        return False


def wait_for(predicate, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[Proxy]:
    nginx = debian_nginx()
    tools = busybox_userland(tmp_path / "busybox")
    (tools / "nginx").symlink_to(nginx)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(FAKE_DOCKER)
    (bin_dir / "docker").chmod(0o755)
    upstream = http.server.ThreadingHTTPServer(("127.0.0.1", 0), SlowHandler)
    upstream.started = threading.Event()  # type: ignore[attr-defined]
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    with work_dir("keel-proxy-") as root:
        (root / "volume").mkdir()
        (root / "certs").mkdir()
        env = {
            **os.environ,
            # Only busybox (the alpine image's userland), nginx and the stand-in docker: nothing else.
            "PATH": f"{tools}:{bin_dir}",
            "KEEL_TEST_VOLUME": str(root / "volume"),
        }
        world = Proxy(root, free_port(), int(upstream.server_address[1]), env, upstream.started)  # type: ignore[attr-defined]
        try:
            yield world
        finally:
            world.stop()
            upstream.shutdown()


@pytest.fixture
def serving_v1(proxy: Proxy) -> Proxy:
    """A proxy that started from a first set and acknowledged it."""
    v1 = proxy.stage(proxy.files("v1"))
    proxy.start()
    # The acknowledgement is the signal, written once nginx has loaded the set (not when it was
    # merely started): waiting for it, not for an answer on the port, is what makes this race-free.
    assert wait_for(lambda: proxy.applied() == v1), proxy.log.read_text()
    assert get(proxy.port) == "v1"
    return proxy


def test_a_good_set_is_tested_loaded_and_acknowledged_with_its_digest(serving_v1: Proxy):
    proxy = serving_v1
    files = proxy.files("v2")
    result = proxy.deploy(files)
    assert result.returncode == 0, result.stdout + result.stderr + proxy.log.read_text()
    digest = set_digest(files)
    assert f"proxy loaded configuration {digest}" in result.stdout
    assert get(proxy.port) == "v2"
    assert proxy.applied() == digest
    assert proxy.current() == f"sets/{digest}"
    assert not (proxy.volume / ".error").exists()


def test_a_refused_set_fails_the_deploy_and_a_restarted_proxy_serves_the_last_good_set(serving_v1: Proxy):
    proxy = serving_v1
    v1 = proxy.applied()
    live_before = {p: p.read_bytes() for p in (proxy.volume / proxy.current()).rglob("*") if p.is_file()}

    bad = proxy.files("v2", broken=True)
    result = proxy.deploy(bad)
    assert result.returncode == 1, result.stdout + result.stderr
    # The deploy fails with nginx's own complaint, naming the staged include it comes from.
    assert f"proxy refused configuration {set_digest(bad)}; it keeps serving {v1}" in result.stderr
    assert 'unknown directive "this_is_not_nginx"' in result.stderr
    assert "keel.d/site.conf" in result.stderr
    assert get(proxy.port) == "v1"
    # Nothing a restart reads has changed: `current` still names the v1 set, byte for byte.
    assert proxy.current() == f"sets/{v1}"
    assert {p: p.read_bytes() for p in (proxy.volume / proxy.current()).rglob("*") if p.is_file()} == live_before

    # A restart (reboot, OOM kill, image bump) starts from the last good set, not the refused one.
    proxy.stop()
    (proxy.volume / ".applied").unlink()
    proxy.start()
    assert wait_for(lambda: proxy.applied() == v1), proxy.log.read_text()
    assert get(proxy.port) == "v1"
    # The restarted watcher looked at the staged set again and refused it again.
    assert wait_for(lambda: (proxy.volume / ".rejected").exists())
    assert (proxy.volume / ".rejected").read_text().strip() == set_digest(bad)

    # Then a good set reloads as usual.
    good = proxy.files("v3")
    result = proxy.deploy(good)
    assert result.returncode == 0, result.stdout + result.stderr + proxy.log.read_text()
    assert get(proxy.port) == "v3"
    assert proxy.applied() == set_digest(good)


def test_a_set_that_passes_nginx_t_but_does_not_load_is_refused_and_rolled_back(serving_v1: Proxy):
    proxy = serving_v1
    v1 = proxy.applied()
    # `nginx -t` does not bind; the reload does, and fails on a port another process holds:
    # nginx then keeps its old workers, so no acknowledgement may be written.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        bad = proxy.files("v2", also_listen=port)
        result = proxy.deploy(bad)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"proxy refused configuration {set_digest(bad)}" in result.stderr
    assert "accepted the configuration (nginx -t) but did not load it" in result.stderr
    assert get(proxy.port) == "v1"
    assert proxy.applied() == v1
    assert proxy.current() == f"sets/{v1}"  # a restart still starts from what nginx runs


def test_a_first_start_waits_for_a_set_nginx_accepts(proxy: Proxy):
    bad = proxy.stage(proxy.files("v0", broken=True))
    proxy.start()
    assert wait_for(lambda: (proxy.volume / ".rejected").exists()), proxy.log.read_text()
    assert (proxy.volume / ".rejected").read_text().strip() == bad
    assert "this_is_not_nginx" in (proxy.volume / ".error").read_text()
    assert not _answers(proxy.port)
    assert proxy.applied() is None

    result = proxy.deploy(proxy.files("v1"))
    assert result.returncode == 0, result.stdout + result.stderr + proxy.log.read_text()
    assert get(proxy.port) == "v1"


def test_an_in_flight_request_survives_the_reload(serving_v1: Proxy):
    proxy = serving_v1
    result: dict[str, str] = {}
    slow = threading.Thread(target=lambda: result.update(body=get(proxy.port, "/slow")))
    slow.start()
    assert proxy.upstream_started.wait(10), "the request never reached the upstream"
    deployed = proxy.deploy(proxy.files("v2"))
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    slow.join(timeout=15)
    assert result.get("body") == "slow done"
    assert get(proxy.port) == "v2"


def test_the_shell_digest_of_a_staged_set_is_the_rendered_one(proxy: Proxy):
    files = proxy.files("v1")
    digest = proxy.stage(files)  # the staging step exits non-zero when the two differ
    assert os.readlink(proxy.volume / proxy_runtime.STAGED_LINK) == f"sets/{digest}"
    staged = proxy.volume / "sets" / digest
    assert {str(p.relative_to(staged)): p.read_text() for p in staged.rglob("*.conf")} == files


def test_a_set_altered_on_the_way_is_not_staged(proxy: Proxy):
    files = proxy.files("v1")
    result = subprocess.run(
        ["sh", "-c", stage_script(set_digest(files)), "sh", str(proxy.volume)],
        input=writer_stdin({**files, "nginx.conf": files["nginx.conf"] + "# changed\n"}),
        text=True,
        env=proxy.env,
        capture_output=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert "not the rendered" in result.stderr
    assert not (proxy.volume / proxy_runtime.STAGED_LINK).exists()
