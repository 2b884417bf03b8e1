"""render/cluster.py's scripts: shellcheck, and each run by a real shell (bash, the deploy user's
login shell on the Hetzner image; dash; and busybox's ash, as the end-to-end job's docker:dind
nodes run them) against a stand-in docker CLI that replays swarm's answers (swarm_replay.py),
including its refusals and the waits that never end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from backup_helpers import busybox_userland

from render import cluster
from tests.tool_requirements import require_tool

REPLAY = Path(__file__).with_name("swarm_replay.py")
TOKEN = "SWMTKN-1-3pu6hszjas19xyp7ghgosyx9k8atbfcr8p2is99znpy26u2lkl-1awxwuwd3z9j1z3puu7rcgdbx"
MANAGER = "10.0.0.2"
PRIVATE = "10.0.1.5"
NEW_ID = "l4xzq9c2v8m1r7t0k3b6n5w2y"
PRIMARY_ID = "p1m2a3n4a5g6e7r8i9d0a1b2c"
WORKER_ID = "w0r1k2e3r4i5d6a7b8c9d0e1f"


@dataclass
class Swarm:
    """One replayed swarm and a shell to run scripts against it."""

    state_path: Path
    bin_dir: Path
    shell: list[str]
    path: str

    def state(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.state_path.read_text())
        return data

    def set(self, **values: Any) -> None:
        data = self.state()
        data.update(values)
        self.state_path.write_text(json.dumps(data))

    def calls(self) -> list[list[str]]:
        log = Path(f"{self.state_path}.calls")
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    def run(self, script: str, stdin: str = "", env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        environment = {"PATH": self.path, "SWARM_REPLAY": str(self.state_path), **(env or {})}
        return subprocess.run(
            [*self.shell, script], input=stdin, capture_output=True, text=True, timeout=60, env=environment
        )


def primary_state() -> dict[str, Any]:
    return {
        "local": {"state": "active", "node_id": PRIMARY_ID, "node_addr": "198.51.100.10", "manager": True,
                  "remote_managers": ["198.51.100.10:2377"]},
        "tokens": {"worker": TOKEN, "manager": TOKEN.replace("1awx", "9mgr")},
        "join": {"token": TOKEN, "manager": f"{MANAGER}:2377", "new_id": NEW_ID},
        "addresses": [PRIVATE],
        "nodes": {
            PRIMARY_ID: {"role": "manager", "manager_status": "Leader", "labels": {"keel.node": "main"}},
            WORKER_ID: {"role": "worker", "labels": {"keel.node": "worker-1"},
                        "tasks": [{"name": "shop-api.2", "state": "Running"}, {"name": "shop-node-exporter.w0r1", "state": "Running"}]},  # noqa: E501
        },
    }  # fmt: skip


def joining_state() -> dict[str, Any]:
    state = primary_state()
    state["local"] = {"state": "inactive", "node_id": "", "manager": False}
    return state


# The scripts sleep render/cluster.py POLL_S (2 s) between two looks at the swarm. What they wait
# for is counted in the replayed swarm's polls (ready_after, drain_polls), and their deadlines are
# read from the clock, not summed from the sleeps: a short poll runs the same steps without waiting
# out the real interval (`sleep 0.1` is valid for coreutils' and busybox's sleep).
FAST_POLL_S = 0.1


@pytest.fixture(params=["bash", "dash", "busybox"])
def swarm(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Swarm:
    monkeypatch.setattr(cluster, "POLL_S", FAST_POLL_S)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("docker", "ip"):
        wrapper = bin_dir / name
        wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{REPLAY}" {name} "$@"\n')
        wrapper.chmod(0o755)
    state_path = tmp_path / "swarm.json"
    state_path.write_text(json.dumps(primary_state()))
    if request.param == "busybox":
        userland = busybox_userland(tmp_path / "busybox")
        return Swarm(state_path, bin_dir, [str(userland / "sh"), "-c"], f"{bin_dir}:{userland}")
    path = f"{bin_dir}:{os.environ.get('PATH', os.defpath)}"
    # bash: the deploy user's login shell on the Hetzner image, which runs what pulumi-command sends.
    return Swarm(state_path, bin_dir, ["/bin/bash" if request.param == "bash" else "/bin/sh", "-c"], path)


SCRIPTS = {
    "join-token": cluster.join_token_script("worker"),
    "join": cluster.join_script(manager_addr=MANAGER),
    "membership": cluster.membership_script(node="worker-1", labels={"disk": "ssd", "zone": "fsn1-dc14"}),
    "removal": cluster.removal_script(),
    "advertise": cluster.advertise_script(),
    "node-readiness": cluster.node_readiness_script(),
}


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_script_passes_shellcheck(name: str, tmp_path: Path):
    path = tmp_path / name
    path.write_text(SCRIPTS[name])
    result = subprocess.run([require_tool("shellcheck"), "-s", "sh", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_the_swarm_ports_are_swarms_own():
    assert set(cluster.SWARM_PORTS) == {("tcp", 2377), ("tcp", 7946), ("udp", 7946), ("udp", 4789)}
    assert cluster.NODE_LABEL == "keel.node"


# ------------------------------------------------------------------ join token


def test_join_token_prints_only_the_token(swarm: Swarm):
    result = swarm.run(cluster.join_token_script("worker"))
    assert result.returncode == 0, result.stderr
    assert result.stdout == TOKEN + "\n"
    assert swarm.calls() == [["docker", "swarm", "join-token", "--quiet", "worker"]]


def test_join_token_on_a_worker_fails_with_swarms_message(swarm: Swarm):
    swarm.set(local={"state": "active", "manager": False})
    result = swarm.run(cluster.join_token_script("manager"))
    assert result.returncode != 0 and result.stdout == ""
    assert "not a swarm manager" in result.stderr


def test_join_token_refuses_an_unknown_role():
    with pytest.raises(ValueError, match="worker or manager"):
        cluster.join_token_script("admin")  # type: ignore[arg-type]


# ------------------------------------------------------------------ join


def test_join_waits_for_the_private_address_joins_on_it_and_prints_the_node_id(swarm: Swarm):
    swarm.set(**joining_state(), address_after=1)
    result = swarm.run(cluster.join_script(manager_addr=MANAGER), f"{TOKEN}\n{PRIVATE}\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == NEW_ID
    state = swarm.state()
    assert state["ip_listings"] == 2, "the address appeared on the second look"
    assert state["last_join"] == {
        "ListenAddr": "0.0.0.0:2377",
        "AdvertiseAddr": PRIVATE,
        "DataPathAddr": PRIVATE,
        "RemoteAddrs": [f"{MANAGER}:2377"],
        "token_matches": True,
    }
    assert state["local"]["state"] == "active"


def test_the_join_token_never_reaches_argv_or_the_output(swarm: Swarm):
    swarm.set(**joining_state())
    result = swarm.run(cluster.join_script(manager_addr=MANAGER), f"{TOKEN}\n{PRIVATE}")
    assert result.returncode == 0, result.stderr
    calls = swarm.calls()
    assert ["docker", "system", "dial-stdio"] in calls
    assert not any(TOKEN in arg or "SWMTKN" in arg for call in calls for arg in call)
    assert "SWMTKN" not in result.stdout + result.stderr


def test_join_rerun_on_a_member_does_nothing_but_print_the_id(swarm: Swarm):
    swarm.set(**joining_state())
    first = swarm.run(cluster.join_script(manager_addr=MANAGER), f"{TOKEN}\n{PRIVATE}\n")
    assert first.returncode == 0, first.stderr
    calls_before = len(swarm.calls())
    again = swarm.run(cluster.join_script(manager_addr=MANAGER), f"{TOKEN}\n{PRIVATE}\n")
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[-1] == NEW_ID
    assert ["docker", "system", "dial-stdio"] not in swarm.calls()[calls_before:]
    assert "already a member" in again.stderr


def test_join_with_a_bad_token_fails_with_swarms_message(swarm: Swarm):
    swarm.set(**joining_state())
    bad = TOKEN[:-4] + "zzzz"
    result = swarm.run(cluster.join_script(manager_addr=MANAGER), f"{bad}\n{PRIVATE}\n")
    assert result.returncode != 0 and result.stdout == ""
    assert "HTTP 500" in result.stderr and "A valid join token is necessary" in result.stderr
    assert bad not in result.stderr
    assert swarm.state()["local"]["state"] == "inactive"


def test_join_to_an_unreachable_manager_times_out_and_cancels_the_pending_join(swarm: Swarm):
    state = joining_state()
    state["join"]["outcome"] = "unreachable"
    swarm.set(**state)
    result = swarm.run(cluster.join_script(manager_addr=MANAGER, join_timeout_s=1), f"{TOKEN}\n{PRIVATE}\n")
    assert result.returncode != 0
    assert "did not join the swarm at 10.0.0.2:2377 within 1s (state: pending" in result.stderr
    assert "2377/tcp" in result.stderr
    assert ["docker", "swarm", "leave", "--force"] in swarm.calls()
    assert swarm.state()["local"]["state"] == "inactive", "a rerun starts clean"


def test_join_fails_when_the_private_address_never_comes_up(swarm: Swarm):
    swarm.set(**joining_state(), address_after=-1)
    result = swarm.run(cluster.join_script(manager_addr=MANAGER, address_timeout_s=1), f"{TOKEN}\n{PRIVATE}\n")
    assert result.returncode != 0
    assert f"the private address {PRIVATE} is not on any interface after 1s" in result.stderr
    assert "eth0 198.51.100.20/32" in result.stderr
    assert ["docker", "system", "dial-stdio"] not in swarm.calls()


def test_join_refuses_a_node_in_another_swarm(swarm: Swarm):
    swarm.set(local={"state": "active", "node_id": "x" * 25, "remote_managers": ["192.0.2.9:2377"]})
    result = swarm.run(cluster.join_script(manager_addr=MANAGER), f"{TOKEN}\n{PRIVATE}\n")
    assert result.returncode != 0
    assert "in another swarm (managers: 192.0.2.9:2377 )" in result.stderr


@pytest.mark.parametrize(
    ("stdin", "message"),
    [
        ("", "expected the join token on line 1"),
        (f"{TOKEN}\n", "expected this node's private address on line 2"),
        (f"not-a-token\n{PRIVATE}\n", "not a swarm join token"),
        (f'{TOKEN}","Availability":"drain\n{PRIVATE}\n', "characters a token never has"),
        (f"{TOKEN}\n10.0.1.5; reboot\n", "expected this node's private IPv4 address"),
    ],
)
def test_join_checks_what_comes_on_stdin_before_using_it(swarm: Swarm, stdin: str, message: str):
    swarm.set(**joining_state())
    result = swarm.run(cluster.join_script(manager_addr=MANAGER), stdin)
    assert result.returncode != 0
    assert message in result.stderr
    assert swarm.calls() == []


def test_join_refuses_a_manager_address_that_is_not_ipv4():
    with pytest.raises(ValueError, match="IPv4"):
        cluster.join_script(manager_addr="10.0.0.2; rm -rf /")


# ------------------------------------------------------------------ membership


def test_membership_waits_for_ready_sets_labels_and_prints_the_id(swarm: Swarm):
    nodes = primary_state()["nodes"]
    nodes[WORKER_ID].update(ready_after=2, labels={"hand-set": "yes"})
    swarm.set(nodes=nodes)
    result = swarm.run(cluster.membership_script(node="worker-1", labels={"disk": "ssd"}), WORKER_ID + "\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout == WORKER_ID + "\n"
    node = swarm.state()["nodes"][WORKER_ID]
    assert node["inspections"] == 3
    assert node["labels"] == {"hand-set": "yes", "keel.node": "worker-1", "disk": "ssd", "keel.labels": "disk"}


def test_membership_removes_only_the_labels_keel_set_and_no_longer_lists(swarm: Swarm):
    nodes = primary_state()["nodes"]
    nodes[WORKER_ID]["labels"] = {"keel.node": "worker-1", "disk": "ssd", "gpu": "a100", "hand-set": "yes",
                                  "keel.labels": "disk,gpu,vanished"}  # fmt: skip
    swarm.set(nodes=nodes)
    result = swarm.run(cluster.membership_script(node="worker-1", labels={"gpu": "h100"}), WORKER_ID)
    assert result.returncode == 0, result.stderr
    # "vanished" is listed but not on the node: removing it would fail (docker/cli node/update.go).
    assert swarm.state()["nodes"][WORKER_ID]["labels"] == {
        "keel.node": "worker-1", "gpu": "h100", "hand-set": "yes", "keel.labels": "gpu",
    }  # fmt: skip
    update = next(call for call in swarm.calls() if call[1:3] == ["node", "update"])
    assert update.count("--label-rm") == 1 and update[update.index("--label-rm") + 1] == "disk"


def test_membership_never_removes_keels_own_labels_whatever_keel_labels_says(swarm: Swarm):
    nodes = primary_state()["nodes"]
    nodes[WORKER_ID]["labels"] = {"keel.node": "worker-1", "keel.labels": "keel.node,keel.labels"}
    swarm.set(nodes=nodes)
    result = swarm.run(cluster.membership_script(node="worker-1", labels={}), WORKER_ID)
    assert result.returncode == 0, result.stderr
    assert swarm.state()["nodes"][WORKER_ID]["labels"] == {"keel.node": "worker-1", "keel.labels": ""}


def test_membership_takes_the_last_line_of_what_the_join_printed(swarm: Swarm):
    result = swarm.run(cluster.membership_script(node="worker-1", labels={}), f"some notice\n{WORKER_ID}\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout == WORKER_ID + "\n"


def test_membership_rerun_changes_nothing(swarm: Swarm):
    script = cluster.membership_script(node="worker-1", labels={"disk": "ssd"})
    assert swarm.run(script, WORKER_ID).returncode == 0
    labels = swarm.state()["nodes"][WORKER_ID]["labels"]
    again = swarm.run(script, WORKER_ID)
    assert again.returncode == 0, again.stderr
    assert again.stdout == WORKER_ID + "\n"
    assert swarm.state()["nodes"][WORKER_ID]["labels"] == labels


def test_membership_times_out_on_a_node_that_never_becomes_ready(swarm: Swarm):
    nodes = primary_state()["nodes"]
    nodes[WORKER_ID].update(ready_after=-1, state="down")
    swarm.set(nodes=nodes)
    result = swarm.run(cluster.membership_script(node="worker-1", labels={}, ready_timeout_s=1), WORKER_ID)
    assert result.returncode != 0 and result.stdout == ""
    assert f"swarm node {WORKER_ID} (keel node worker-1) is not Ready after 1s (state: down)" in result.stderr


def test_membership_label_values_reach_docker_as_one_argument_each(swarm: Swarm):
    labels = {"note": "$(touch${IFS}/tmp/owned)'\"`x`"}
    result = swarm.run(cluster.membership_script(node="worker-1", labels=labels), WORKER_ID)
    assert result.returncode == 0, result.stderr
    assert swarm.state()["nodes"][WORKER_ID]["labels"]["note"] == labels["note"]


@pytest.mark.parametrize(
    ("node", "labels"),
    [("Worker 1", {}), ("worker-1", {"keel.node": "x"}), ("worker-1", {"a,b": "x"}), ("worker-1", {"k": "a b"})],
)
def test_membership_refuses_names_and_labels_outside_their_grammar(node: str, labels: dict[str, str]):
    with pytest.raises(ValueError):
        cluster.membership_script(node=node, labels=labels)


# ------------------------------------------------------------------ removal


def test_removal_drains_waits_and_removes_the_node(swarm: Swarm):
    nodes = primary_state()["nodes"]
    nodes[WORKER_ID]["drain_polls"] = 2
    swarm.set(nodes=nodes)
    result = swarm.run(cluster.removal_script(), env={"PULUMI_COMMAND_STDOUT": WORKER_ID})
    assert result.returncode == 0, result.stderr
    assert WORKER_ID not in swarm.state()["nodes"]
    docker_calls = [call[1:3] for call in swarm.calls()]
    drain = docker_calls.index(["node", "update"])
    assert docker_calls[drain + 1 :].count(["node", "ps"]) == 3
    assert docker_calls[-1] == ["node", "rm"]
    assert "removed from the swarm" in result.stderr


def test_removal_reads_the_node_id_from_stdin_when_sshd_drops_the_environment(swarm: Swarm):
    result = swarm.run(cluster.removal_script(), WORKER_ID + "\n")
    assert result.returncode == 0, result.stderr
    assert WORKER_ID not in swarm.state()["nodes"]


def test_removal_of_a_node_already_gone_succeeds(swarm: Swarm):
    script = cluster.removal_script()
    assert swarm.run(script, WORKER_ID).returncode == 0
    again = swarm.run(script, WORKER_ID)
    assert again.returncode == 0, again.stderr
    assert "no longer in the swarm: nothing to remove" in again.stderr


def test_removal_names_the_tasks_that_never_leave(swarm: Swarm):
    nodes = primary_state()["nodes"]
    nodes[WORKER_ID]["drain_polls"] = -1
    swarm.set(nodes=nodes)
    result = swarm.run(cluster.removal_script(drain_timeout_s=1), WORKER_ID)
    assert result.returncode != 0
    assert (
        f"swarm node {WORKER_ID} (worker-1) still runs tasks after 1s of draining: shop-api.2, shop-node-exporter.w0r1"
    ) in result.stderr
    node = swarm.state()["nodes"][WORKER_ID]
    assert node["availability"] == "drain", "it stays drained"


def test_removal_of_a_down_node_does_not_wait_for_the_tasks_it_last_reported(swarm: Swarm):
    nodes = primary_state()["nodes"]
    nodes[WORKER_ID].update(drain_polls=-1, ready_after=-1, state="down")
    swarm.set(nodes=nodes)
    result = swarm.run(cluster.removal_script(drain_timeout_s=600), WORKER_ID)
    assert result.returncode == 0, result.stderr
    assert "is down: its tasks were already started elsewhere (shop-api.2, shop-node-exporter.w0r1)" in result.stderr
    assert WORKER_ID not in swarm.state()["nodes"]


def test_removal_demotes_a_manager_first(swarm: Swarm):
    nodes = primary_state()["nodes"]
    second, third = "m" * 25, "n" * 25
    nodes[second] = {"role": "manager", "manager_status": "Reachable", "labels": {"keel.node": "manager-2"}}
    nodes[third] = {"role": "manager", "manager_status": "Reachable", "labels": {"keel.node": "manager-3"}}
    swarm.set(nodes=nodes)
    result = swarm.run(cluster.removal_script(), third)
    assert result.returncode == 0, result.stderr
    docker_calls = [call[1:3] for call in swarm.calls()]
    assert docker_calls.index(["node", "demote"]) < docker_calls.index(["node", "rm"])
    assert third not in swarm.state()["nodes"] and second in swarm.state()["nodes"]


def test_removal_refuses_a_healthy_manager_when_another_is_down_and_changes_nothing(swarm: Swarm):
    nodes = primary_state()["nodes"]
    second, third = "m" * 25, "n" * 25
    nodes[second] = {"role": "manager", "manager_status": "Unreachable", "labels": {"keel.node": "manager-2"}}
    nodes[third] = {"role": "manager", "manager_status": "Reachable", "labels": {"keel.node": "manager-3"}}
    swarm.set(nodes=nodes)
    result = swarm.run(cluster.removal_script(), third)
    assert result.returncode != 0
    assert "refusing to remove manager" in result.stderr
    assert "of the 3 managers, 1 other(s) are reachable, and the 2 left need 2 reachable" in result.stderr
    assert swarm.state()["nodes"][third].get("availability") is None, "not drained"
    # The unreachable one may go: the two left are both reachable.
    removed = swarm.run(cluster.removal_script(), second)
    assert removed.returncode == 0, removed.stderr
    assert second not in swarm.state()["nodes"]


def test_removal_refuses_the_manager_it_runs_on(swarm: Swarm):
    result = swarm.run(cluster.removal_script(), PRIMARY_ID)
    assert result.returncode != 0
    assert "is the manager this runs on" in result.stderr
    assert PRIMARY_ID in swarm.state()["nodes"]


def test_removal_without_a_node_id_fails_saying_where_it_looked(swarm: Swarm):
    result = swarm.run(cluster.removal_script(), "")
    assert result.returncode != 0
    assert "PULUMI_COMMAND_STDOUT is not set and stdin is empty" in result.stderr


# ------------------------------------------------------------------ advertise


def test_advertise_moves_a_lone_manager_to_the_private_address_once(swarm: Swarm):
    result = swarm.run(cluster.advertise_script(), MANAGER + "\n")
    assert result.returncode == 0, result.stderr
    local = swarm.state()["local"]
    assert (local["node_addr"], local["data_path_addr"], local["force_new_cluster"]) == (MANAGER, MANAGER, 1)
    again = swarm.run(cluster.advertise_script(), MANAGER + "\n")
    assert again.returncode == 0, again.stderr
    assert "already advertises" in again.stderr
    assert swarm.state()["local"]["force_new_cluster"] == 1


def test_advertise_refuses_when_other_managers_exist(swarm: Swarm):
    nodes = primary_state()["nodes"]
    nodes["m" * 25] = {"role": "manager", "manager_status": "Reachable"}
    swarm.set(nodes=nodes)
    result = swarm.run(cluster.advertise_script(), MANAGER)
    assert result.returncode != 0
    assert "has 2 managers" in result.stderr and "only a single manager may do" in result.stderr
    assert "force_new_cluster" not in swarm.state()["local"]


def test_advertise_refuses_a_worker_and_bad_input(swarm: Swarm):
    assert "expected the primary's private IPv4" in swarm.run(cluster.advertise_script(), "eth1\n").stderr
    swarm.set(local={"state": "active", "manager": False})
    assert "not a swarm manager" in swarm.run(cluster.advertise_script(), MANAGER).stderr


# ------------------------------------------------------------------ pool node readiness


def stand_in(swarm: Swarm, name: str, body: str) -> None:
    path = swarm.bin_dir / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)


@pytest.mark.parametrize(("status", "ready"), [(0, True), (2, True), (1, False)])
def test_node_readiness_tolerates_recoverable_cloud_init_errors_only(swarm: Swarm, status: int, ready: bool):
    cloud_init = f'[ "$1" = status ] || exit 9\n[ "${{2:-}}" = --long ] && echo detail\nexit {status}\n'
    stand_in(swarm, "cloud-init", cloud_init)
    # sg GROUP -c COMMAND: the command as the group's member (the deploy user's session may predate it).
    stand_in(swarm, "sg", '[ "$1" = docker ] && [ "$2" = -c ] || exit 9\nexec sh -c "$3"\n')
    swarm.set(**joining_state())
    result = swarm.run(cluster.node_readiness_script())
    assert (result.returncode == 0) is ready, result.stderr
    if ready:
        assert result.stdout == "ready (swarm: inactive)\n"
    else:
        assert f"cloud-init failed with status {status}" in result.stderr and "detail" in result.stderr


def test_node_readiness_times_out_when_docker_never_answers(swarm: Swarm):
    stand_in(swarm, "cloud-init", "exit 0\n")
    stand_in(swarm, "sg", "exit 1\n")
    result = swarm.run(cluster.node_readiness_script(timeout_s=1))
    assert result.returncode != 0
    assert "docker does not answer after 1s" in result.stderr
