"""A worker's stop, with real processes: the dev stack's Celery-style worker (its exact command from
Pulumi.dev.yaml) under tini (Docker's init), consuming a real Redis, stopped the way Docker stops a
task's container.

Docker's stop (moby docker-v29.7.2 daemon/stop.go, containerStop): the stop signal to the
container's PID 1, then a wait of the stop timeout (the service's stop_grace_period_s, passed by
daemon/cluster/executor/container/adapter.go ``shutdown``), then SIGKILL; the container's processes
die with its PID 1. Swarm first takes the task out of DNS and waits 2 s (controller.go Shutdown),
which does not change what the worker sees. A well-behaved worker finishes the job in hand on
SIGTERM and exits within the grace period; a job longer than the grace period is killed, and only
once the grace period has passed.

Also the heartbeat probe the worker's service runs (components/swarm.py heartbeat_probe), with a
real shell against the file the worker touches.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml
from pg_helpers import Redis, redis_server

from components.swarm import heartbeat_probe
from stores.redis.model import RedisSpec
from stores.redis.server import redis_acl, render_redis_conf
from tests.tool_requirements import require_tool

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "worker-test-password-4f1c"
QUEUE = "dev:jobs"
DEADLINE_S = 30


def dev_worker() -> dict:
    return yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())["config"]["keel:services"]["worker"]


def wait_for(condition, what: str, timeout_s: float = DEADLINE_S):
    deadline = time.monotonic() + timeout_s
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
    return value


@dataclass
class Worker:
    process: subprocess.Popen[bytes]
    log: Path
    heartbeat: Path

    def output(self) -> str:
        return self.log.read_text()

    def docker_stop(self, grace_s: float) -> tuple[float, bool]:
        """SIGTERM to PID 1 (tini), wait up to ``grace_s``, then SIGKILL: (seconds it took, killed)."""
        began = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=grace_s)
            killed = False
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=DEADLINE_S)
            killed = True
        return time.monotonic() - began, killed


@contextmanager
def running_worker(tmp_path: Path) -> Iterator[tuple[Worker, Redis]]:
    spec = dev_worker()
    store = RedisSpec.model_validate({"kind": "redis", "resources": {"memory_mb": 64}})
    with redis_server(
        tmp_path, lambda data: render_redis_conf(store, data_dir=data), acl_text=redis_acl(PASSWORD), password=PASSWORD
    ) as server:
        password_file = tmp_path / "redis_password"
        password_file.write_text(PASSWORD)
        heartbeat = tmp_path / "heartbeat"
        # The service's env (Pulumi.dev.yaml), with this test's addresses and paths.
        env = {
            "PATH": os.environ["PATH"],
            **{key: str(value) for key, value in spec["env"].items()},
            "REDIS_HOST": "127.0.0.1",
            "REDIS_PORT": str(server.port),
            "REDIS_PASSWORD_FILE": str(password_file),
            "HEARTBEAT_FILE": str(heartbeat),
        }
        log = tmp_path / "worker.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [require_tool("tini"), "-s", "--", *spec["command"]],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        worker = Worker(process, log, heartbeat)
        try:
            wait_for(lambda: f"waiting for jobs on {QUEUE}" in worker.output(), "the worker to start")
            yield worker, server
        finally:
            # The container's end: nothing of it outlives its PID 1.
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait(timeout=DEADLINE_S)


def test_the_dev_worker_is_a_worker_with_a_heartbeat_and_a_grace_period():
    spec = dev_worker()
    assert spec["kind"] == "worker" and "port" not in spec
    assert spec["health"]["heartbeat_file"] == spec["env"]["HEARTBEAT_FILE"]
    assert spec["stop_grace_period_s"] == 30


def test_a_worker_stopped_mid_job_finishes_it_within_the_grace_period(tmp_path: Path):
    grace_s = dev_worker()["stop_grace_period_s"]
    with running_worker(tmp_path) as (worker, server):
        server.cli("RPUSH", QUEUE, "3")
        wait_for(lambda: "job 3: started" in worker.output(), "the job to start")
        took, killed = worker.docker_stop(grace_s)
        output = worker.output()
    assert not killed and worker.process.returncode == 0, output
    assert "job 3: done" in output and output.rstrip().endswith("worker: stopped after its current job"), output
    assert took < grace_s


def test_a_job_longer_than_the_grace_period_is_killed_only_once_it_has_passed(tmp_path: Path):
    grace_s = 2.0  # the dev worker's 30 s, shortened: the rule is the same
    with running_worker(tmp_path) as (worker, server):
        server.cli("RPUSH", QUEUE, "20")
        wait_for(lambda: "job 20: started" in worker.output(), "the job to start")
        took, killed = worker.docker_stop(grace_s)
        output = worker.output()
    assert killed and worker.process.returncode == -signal.SIGKILL, output
    assert took >= grace_s, "killed before its grace period was over"
    assert "job 20: done" not in output


def test_the_heartbeat_probe_follows_the_workers_heartbeat(tmp_path: Path):
    spec = dev_worker()
    with running_worker(tmp_path) as (worker, _server):
        wait_for(worker.heartbeat.exists, "the first heartbeat")
        kind, script = heartbeat_probe(str(worker.heartbeat), spec["health"]["heartbeat_max_age_s"])
        alive = subprocess.run(["sh", "-c", script], capture_output=True, timeout=DEADLINE_S, check=False)
        worker.docker_stop(spec["stop_grace_period_s"])
    # Stopped, the worker no longer touches it: once older than the limit, the probe fails.
    old = time.time() - spec["health"]["heartbeat_max_age_s"] - 5
    os.utime(worker.heartbeat, (old, old))
    stale = subprocess.run(["sh", "-c", script], capture_output=True, timeout=DEADLINE_S, check=False)
    worker.heartbeat.unlink()
    missing = subprocess.run(["sh", "-c", script], capture_output=True, timeout=DEADLINE_S, check=False)
    assert kind == "CMD-SHELL"
    assert alive.returncode == 0, alive
    assert stale.returncode != 0 and missing.returncode != 0
