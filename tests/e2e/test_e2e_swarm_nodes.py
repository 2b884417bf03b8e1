"""Several swarm nodes on the runner's Docker: render/cluster.py's scripts against real engines.

Three Docker-in-Docker containers (docker:28-dind, privileged) on a user-defined bridge network,
which stands in for the hcloud private network: the first is the primary, initialised the way
cloud-init does it but advertising an address the others cannot reach (127.0.0.1, as the public
IPv4 is for them on Hetzner); the others join over the bridge. Each script runs in its node with
`docker exec -i <node> sh -c <script>` (busybox ash, as the node's login shell would run it), its
stdin what the components give it. In order:
1. advertise: the primary moves to its private address (docker swarm init --force-new-cluster),
   and a service running before keeps its task;
2. join-token, join and membership for two workers; reruns of join and membership change nothing;
3. a service constrained by node.labels.keel.node lands on the labelled node, and a container on
   the primary reaches a worker's service over an overlay network (the re-advertised data path);
4. removal of a worker: its tasks move to the other worker, the node leaves `docker node ls`;
   a second removal of the same node succeeds (already gone).

Needs a Docker engine that may run privileged containers; without one it skips saying so,
unless KEEL_E2E_REQUIRED=1 (the e2e workflow), where that fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from render import cluster

pytestmark = [pytest.mark.e2e, pytest.mark.nodes]

DIND_IMAGE = "docker:28-dind"
SERVICE_IMAGE = "busybox:1.37"
START_TIMEOUT_S = 180.0
CONVERGE_TIMEOUT_S = 180.0


def _missing_engine() -> str | None:
    if shutil.which("docker") is None:
        return "the docker CLI is not installed"
    probe = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"no Docker engine answers: {probe.stderr.strip()}"
    return None


def docker(*args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["docker", *args], input=stdin, capture_output=True, text=True, timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed: {result.stdout}{result.stderr}")
    return result


def wait_for(what: str, condition: Callable[[], bool], timeout_s: float = CONVERGE_TIMEOUT_S) -> None:
    """Polls ``condition`` until it holds, failing with ``what`` at the deadline."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(1)


def engine_answers(container: str) -> Callable[[], bool]:
    return lambda: docker("exec", container, "docker", "info", check=False).returncode == 0


@dataclass
class Node:
    container: str
    hostname: str
    address: str

    def run(self, script: str, stdin: str = "", env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        flags = [arg for key, value in (env or {}).items() for arg in ("-e", f"{key}={value}")]
        return docker("exec", "-i", *flags, self.container, "sh", "-c", script, stdin=stdin, check=False)

    def docker(self, *args: str) -> str:
        return docker("exec", self.container, "docker", *args).stdout.strip()


@pytest.fixture(scope="module")
def nodes() -> Iterator[list[Node]]:
    missing = _missing_engine()
    if missing is not None:
        if os.environ.get("KEEL_E2E_REQUIRED") == "1":
            pytest.fail(f"KEEL_E2E_REQUIRED=1 but {missing}")
        pytest.skip(missing)
    run_id = uuid.uuid4().hex[:8]
    network = f"keel-e2e-private-{run_id}"
    containers = [f"keel-e2e-node-{index}-{run_id}" for index in (1, 2, 3)]
    docker("network", "create", "--driver", "bridge", network)
    try:
        for index, container in enumerate(containers, start=1):
            docker("run", "--detach", "--privileged", "--name", container, "--hostname", f"keel-node-{index}",
                   "--network", network, DIND_IMAGE)  # fmt: skip
        result = []
        for index, container in enumerate(containers, start=1):
            wait_for(f"the engine in {container}", engine_answers(container), START_TIMEOUT_S)
            address = docker(
                "inspect", "--format", f'{{{{(index .NetworkSettings.Networks "{network}").IPAddress}}}}', container
            ).stdout.strip()
            result.append(Node(container, f"keel-node-{index}", address))
        # As cloud-init's swarm-init does, but advertising what the other nodes cannot reach.
        result[0].docker("swarm", "init", "--advertise-addr", "127.0.0.1")
        yield result
    finally:
        for container in containers:
            docker("rm", "--force", "--volumes", container, check=False)
        docker("network", "rm", network, check=False)


@dataclass
class Joined:
    primary: Node
    workers: list[Node]
    ids: dict[str, str]
    """keel node name -> swarm node ID."""


@pytest.fixture(scope="module")
def joined(nodes: list[Node]) -> Joined:
    primary, *workers = nodes
    # A service that runs before the swarm is re-advertised keeps its task (force-new-cluster
    # restarts the manager from its own raft log; the containers are not touched).
    primary.docker("service", "create", "--detach", "--name", "before", SERVICE_IMAGE, "sleep", "86400")
    wait_for("the task that runs before", lambda: running_on(primary, "before") == ["keel-node-1"])
    task_before = primary.docker("service", "ps", "before", "--filter", "desired-state=running", "--quiet")
    moved = primary.run(cluster.advertise_script(), primary.address + "\n")
    assert moved.returncode == 0, moved.stderr
    assert primary.docker("info", "--format", "{{.Swarm.NodeAddr}}") == primary.address
    wait_for("the manager answering again", lambda: running_on(primary, "before") == ["keel-node-1"])
    assert primary.docker("service", "ps", "before", "--filter", "desired-state=running", "--quiet") == task_before
    again = primary.run(cluster.advertise_script(), primary.address + "\n")
    assert again.returncode == 0 and "already advertises" in again.stderr, again.stderr

    token = primary.run(cluster.join_token_script("worker"))
    assert token.returncode == 0, token.stderr
    assert token.stdout.startswith("SWMTKN-1-") and token.stdout.count("\n") == 1
    ids = {}
    for index, worker in enumerate(workers, start=1):
        name = f"worker-{index}"
        stdin = f"{token.stdout.strip()}\n{worker.address}\n"
        join = worker.run(cluster.join_script(manager_addr=primary.address), stdin)
        assert join.returncode == 0, join.stderr
        node_id = join.stdout.strip().splitlines()[-1]
        labels = {"disk": "ssd"} if index == 2 else {}
        member = primary.run(cluster.membership_script(node=name, labels=labels), node_id + "\n")
        assert member.returncode == 0, member.stderr
        assert member.stdout.strip() == node_id
        ids[name] = node_id
    return Joined(primary, workers, ids)


def test_workers_join_over_the_private_network_with_their_labels(joined: Joined):
    listing = joined.primary.docker("node", "ls", "--format", "{{.Hostname}} {{.Status}} {{.ManagerStatus}}")
    assert sorted(listing.splitlines()) == ["keel-node-1 Ready Leader", "keel-node-2 Ready ", "keel-node-3 Ready "]
    for name, worker in zip(("worker-1", "worker-2"), joined.workers, strict=True):
        node_id = joined.ids[name]
        assert joined.primary.docker("node", "inspect", "--format", "{{.Status.Addr}}", node_id) == worker.address
        labels = joined.primary.docker("node", "inspect", "--format", "{{json .Spec.Labels}}", node_id)
        expected = (
            '{"disk":"ssd","keel.labels":"disk","keel.node":"worker-2"}'
            if name == "worker-2"
            else ('{"keel.labels":"","keel.node":"worker-1"}')
        )
        assert labels == expected


def test_join_and_membership_reruns_change_nothing(joined: Joined):
    primary, worker = joined.primary, joined.workers[1]
    token = primary.run(cluster.join_token_script("worker")).stdout.strip()
    rejoin = worker.run(cluster.join_script(manager_addr=primary.address), f"{token}\n{worker.address}\n")
    assert rejoin.returncode == 0, rejoin.stderr
    assert rejoin.stdout.strip().splitlines()[-1] == joined.ids["worker-2"]
    member = primary.run(cluster.membership_script(node="worker-2", labels={"disk": "ssd"}), joined.ids["worker-2"])
    assert member.returncode == 0, member.stderr
    assert len(primary.docker("node", "ls", "--quiet").splitlines()) == 3


def running_on(primary: Node, service: str) -> list[str]:
    """The nodes where the service's tasks are Running (none while the manager does not answer)."""
    tasks = docker("exec", primary.container, "docker", "service", "ps", service, "--filter",
                   "desired-state=running", "--format", "{{.Node}} {{.CurrentState}}", check=False)  # fmt: skip
    lines = tasks.stdout.splitlines() if tasks.returncode == 0 else []
    return sorted(line.split()[0] for line in lines if line.split()[1:2] == ["Running"])


def test_a_service_pinned_by_the_keel_node_label_lands_on_that_node(joined: Joined):
    primary = joined.primary
    primary.docker("service", "create", "--detach", "--name", "pinned", "--constraint",
                   f"node.labels.{cluster.NODE_LABEL}==worker-2", SERVICE_IMAGE, "sleep", "86400")  # fmt: skip
    wait_for("the pinned task running", lambda: running_on(primary, "pinned") == ["keel-node-3"])


def test_an_overlay_network_carries_traffic_from_the_re_advertised_primary_to_a_worker(joined: Joined):
    """The data path the primary advertises after --force-new-cluster works: a container on the
    primary reaches a service on a worker over an overlay network (VXLAN between the nodes)."""
    primary = joined.primary
    primary.docker("network", "create", "--driver", "overlay", "--attachable", "probe-net")
    primary.docker("service", "create", "--detach", "--name", "echo", "--network", "probe-net", "--constraint",
                   f"node.labels.{cluster.NODE_LABEL}==worker-2", SERVICE_IMAGE, "sh", "-c",
                   "mkdir -p /www && echo keel-overlay > /www/index.html && exec httpd -f -p 8080 -h /www")  # fmt: skip
    wait_for("the echo task running", lambda: running_on(primary, "echo") == ["keel-node-3"])

    def answered() -> bool:
        probe = docker("exec", primary.container, "docker", "run", "--rm", "--network", "probe-net",
                       SERVICE_IMAGE, "wget", "-qO-", "-T", "5", "http://echo:8080/", check=False)  # fmt: skip
        return probe.returncode == 0 and probe.stdout.strip() == "keel-overlay"

    wait_for("the worker's service answering the primary over the overlay", answered)


def test_removing_a_worker_drains_it_and_its_tasks_move(joined: Joined):
    primary = joined.primary
    primary.docker("service", "create", "--detach", "--name", "spread", "--replicas", "2",
                   "--constraint", "node.role==worker", "--placement-pref", "spread=node.id",
                   SERVICE_IMAGE, "sleep", "86400")  # fmt: skip
    wait_for("one spread task on each worker", lambda: running_on(primary, "spread") == ["keel-node-2", "keel-node-3"])
    node_id = joined.ids["worker-1"]
    removed = primary.run(cluster.removal_script(drain_timeout_s=300), env={"PULUMI_COMMAND_STDOUT": node_id})
    assert removed.returncode == 0, removed.stderr
    assert node_id not in primary.docker("node", "ls", "--quiet").split()
    wait_for("both spread tasks on the remaining worker", lambda: running_on(primary, "spread") == ["keel-node-3"] * 2)
    again = primary.run(cluster.removal_script(), node_id + "\n")
    assert again.returncode == 0 and "nothing to remove" in again.stderr, again.stderr
