"""The proxy's health check before and after its first configuration set, run by a real shell."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

from render.proxy_runtime import CURRENT_LINK, health_command


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _check(conf: Path) -> int:
    probe = f"exec 3<>/dev/tcp/127.0.0.1/{_closed_port()}"  # bash: fails when nothing listens
    return subprocess.run(["bash", "-c", health_command(probe, str(conf))], check=False, timeout=10).returncode


def test_a_proxy_waiting_for_its_first_set_counts_as_healthy(tmp_path: Path):
    # `pulumi up` waits for the proxy to converge before its writer stages the first set.
    assert _check(tmp_path) == 0


def test_once_a_set_was_loaded_the_health_check_is_the_probe(tmp_path: Path):
    (tmp_path / "sets" / "abc").mkdir(parents=True)
    (tmp_path / CURRENT_LINK).symlink_to("sets/abc")
    assert _check(tmp_path) != 0
