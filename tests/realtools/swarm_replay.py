"""A stand-in `docker` (and `ip`) CLI that replays swarm's answers for render/cluster.py's scripts.

Installed on PATH as two small wrappers (`docker`, `ip`) that exec this file with the command's
name first. The swarm is one JSON file (``SWARM_REPLAY``): the machine the script runs on
(``local``), the nodes a manager sees (``nodes``), the join the "manager" accepts (``join``) and
the addresses on this machine's interfaces. Every invocation's argv is appended to
``SWARM_REPLAY.calls`` (one JSON list a line), so a test can say what was run and what never
reached argv (the join token).

Answers follow moby/docker-cli v28.5.2 (the scripts' module doc cites the files): the join is the
Engine API's POST /swarm/join written into `docker system dial-stdio` (an HTTP/1.1 exchange on
stdin/stdout); a bad token is refused at once, an unreachable manager leaves the join pending after
the daemon's own wait (503, errSwarmJoinTimeoutReached); `node update --label-rm` of a key the node
lacks fails; demoting the last manager, or one whose removal would lose quorum, fails; `node rm` of
a raft member or of a Ready node without --force fails. A format string the replay does not know
fails loudly (exit 2), so a script that changes what it asks is caught.

Time is replayed by counting questions: a node turns Ready after ``ready_after`` inspections of its
status, a drained node's tasks shut down after ``drain_polls`` listings, an address appears after
``address_after`` listings (-1: never).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, NoReturn

JOIN_TIMEOUT = (
    "Timeout was reached before node joined. The attempt to join the swarm will continue in the background. "
    'Use the "docker info" command to see the current swarm status of your node.'
)
BAD_TOKEN = "rpc error: code = InvalidArgument desc = A valid join token is necessary to join this cluster"
ACTIVE_TASK_STATES = ("Running", "Starting", "Preparing", "Assigned")


def load() -> dict[str, Any]:
    with open(os.environ["SWARM_REPLAY"]) as file:
        return dict(json.load(file))


def save(state: dict[str, Any]) -> None:
    path = os.environ["SWARM_REPLAY"]
    with open(path + ".tmp", "w") as file:
        json.dump(state, file, indent=1)
    os.replace(path + ".tmp", path)


def daemon_error(message: str, code: int = 1) -> NoReturn:
    print(f"Error response from daemon: {message}", file=sys.stderr)
    sys.exit(code)


def unknown(args: list[str]) -> NoReturn:
    print(f"replay: no answer for {args!r}", file=sys.stderr)
    sys.exit(2)


def options(args: list[str]) -> tuple[dict[str, list[str]], list[str]]:
    """--flag value pairs (and bare --force/--quiet) and the positional arguments."""
    flags: dict[str, list[str]] = {}
    positional: list[str] = []
    rest = list(args)
    while rest:
        arg = rest.pop(0)
        if arg in ("--force", "--quiet", "-q", "--force-new-cluster"):
            flags.setdefault(arg.lstrip("-"), []).append("")
        elif arg.startswith("--"):
            flags.setdefault(arg[2:], []).append(rest.pop(0))
        else:
            positional.append(arg)
    return flags, positional


def node_of(state: dict[str, Any], node_id: str) -> dict[str, Any]:
    if node_id not in state["nodes"]:
        daemon_error(f"node {node_id} not found")
    node: dict[str, Any] = state["nodes"][node_id]
    return node


def info(state: dict[str, Any], fmt: str) -> str:
    local = state["local"]
    answers = {
        "{{.Swarm.LocalNodeState}}": local["state"],
        "{{range .Swarm.RemoteManagers}}{{.Addr}} {{end}}": "".join(f"{a} " for a in local.get("remote_managers", [])),
        "{{.Swarm.NodeID}}": local.get("node_id", ""),
        "{{.Swarm.NodeAddr}}": local.get("node_addr", ""),
        "{{.Swarm.ControlAvailable}}": "true" if local.get("manager") else "false",
    }
    if fmt not in answers:
        unknown(["info", "--format", fmt])
    return str(answers[fmt])


def dial_stdio(state: dict[str, Any]) -> None:
    request = sys.stdin.buffer.read().decode()
    head, _, body = request.partition("\r\n\r\n")
    lines = head.split("\r\n")
    method, path, _ = lines[0].split(" ")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    assert int(headers["Content-Length"]) == len(body.encode()), (headers, body)
    if (method, path) != ("POST", "/v1.41/swarm/join"):
        unknown(["dial-stdio", method, path])
    join = json.loads(body)
    state["last_join"] = {key: value for key, value in join.items() if key != "JoinToken"}
    state["last_join"]["token_matches"] = join["JoinToken"] == state["join"]["token"]
    local = state["local"]
    expected = state["join"]
    if local["state"] != "inactive":
        status, message = 503, "This node is already part of a swarm."
    elif join["JoinToken"] != expected["token"]:
        status, message = 500, BAD_TOKEN
    elif join["RemoteAddrs"] != [expected["manager"]] or expected.get("outcome") == "unreachable":
        local["state"] = "pending"
        status, message = 503, JOIN_TIMEOUT
    else:
        local.update(state=("active"), node_id=expected["new_id"], remote_managers=[expected["manager"]])
        local["node_addr"] = join["AdvertiseAddr"]
        status, message = 200, ""
    save(state)
    reason = {200: "OK", 500: "Internal Server Error", 503: "Service Unavailable"}[status]
    payload = json.dumps({"message": message}) + "\n" if message else ""
    sys.stdout.write(
        f"HTTP/1.1 {status} {reason}\r\nApi-Version: 1.51\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n{payload}"
    )


def node_inspect(state: dict[str, Any], fmt: str, node_id: str) -> str:
    node = node_of(state, node_id)
    labels: dict[str, str] = node.setdefault("labels", {})
    if fmt == "{{.Status.State}}":
        node["inspections"] = node.get("inspections", 0) + 1
        after = node.get("ready_after", 0)
        ready = after >= 0 and node["inspections"] > after
        save(state)
        return "ready" if ready else node.get("state", "down")
    answers = {
        '{{index .Spec.Labels "keel.labels"}}': labels.get("keel.labels", ""),
        '{{index .Spec.Labels "keel.node"}}': labels.get("keel.node", ""),
        "{{range $k, $v := .Spec.Labels}}{{$k}} {{end}}": "".join(f"{key} " for key in sorted(labels)),
        "{{.Spec.Role}}": node.get("role", "worker"),
        "{{if .ManagerStatus}}member{{end}}": "member" if node.get("manager_status") else "",
    }
    if fmt not in answers:
        unknown(["node", "inspect", "--format", fmt])
    return str(answers[fmt])


def node_update(state: dict[str, Any], flags: dict[str, list[str]], node_id: str) -> None:
    node = node_of(state, node_id)
    labels: dict[str, str] = node.setdefault("labels", {})
    for item in flags.get("label-add", []):
        key, _, value = item.partition("=")
        labels[key] = value
    for key in flags.get("label-rm", []):
        if key not in labels:
            print(f"key {key} doesn't exist in node's labels", file=sys.stderr)
            sys.exit(1)
        del labels[key]
    for availability in flags.get("availability", []):
        node["availability"] = availability
    node["updates"] = node.get("updates", 0) + 1
    save(state)


def node_ps(state: dict[str, Any], node_id: str) -> str:
    node = node_of(state, node_id)
    tasks = node.get("tasks", [])
    if node.get("availability") == "drain":
        node["drain_listings"] = node.get("drain_listings", 0) + 1
        polls = node.get("drain_polls", 0)
        if polls >= 0 and node["drain_listings"] > polls:
            for task in tasks:
                task["state"] = "Shutdown"
        save(state)
    return "".join(f"{task['name']} {task['state']} 3 seconds ago\n" for task in tasks)


def managers(state: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(node_id, node) for node_id, node in sorted(state["nodes"].items()) if node.get("manager_status")]


def node_demote(state: dict[str, Any], node_id: str) -> None:
    node = node_of(state, node_id)
    members = managers(state)
    if len(members) <= 1:
        daemon_error("rpc error: code = FailedPrecondition desc = attempting to demote the last manager of the swarm")
    reachable = sum(1 for mid, m in members if mid != node_id and m["manager_status"] in ("Leader", "Reachable"))
    if reachable < (len(members) - 1) // 2 + 1:
        daemon_error(
            "rpc error: code = FailedPrecondition desc = can't remove member from the raft: "
            "this would result in a loss of quorum"
        )
    node.update(role="worker", manager_status="")
    save(state)


def node_rm(state: dict[str, Any], flags: dict[str, list[str]], node_id: str) -> None:
    node = node_of(state, node_id)
    if node.get("manager_status"):
        daemon_error(f"rpc error: code = FailedPrecondition desc = node {node_id} is a cluster manager and is a member "
                     "of the raft cluster. It must be demoted to worker before removal")  # fmt: skip
    ready = node.get("ready_after", 0) >= 0
    if "force" not in flags and ready:
        daemon_error(f"rpc error: code = FailedPrecondition desc = node {node_id} is not down and can't be removed")
    del state["nodes"][node_id]
    save(state)


def docker(args: list[str]) -> None:
    state = load()
    command = args[:2]
    flags, positional = options(args[2:])
    fmt = flags.get("format", [""])[0]
    if args[:1] == ["info"]:
        flags, _ = options(args[1:])
        print(info(state, flags["format"][0]))
    elif command == ["system", "dial-stdio"]:
        dial_stdio(state)
    elif command == ["swarm", "join-token"]:
        if not state["local"].get("manager"):
            daemon_error("This node is not a swarm manager.")
        print(state["tokens"][positional[0]] if "quiet" in flags else unknown(args))
    elif command == ["swarm", "leave"]:
        state["local"].update(state="inactive", node_id="", remote_managers=[])
        save(state)
    elif command == ["swarm", "init"]:
        if "force-new-cluster" not in flags:
            unknown(args)
        if not state["local"].get("manager"):
            daemon_error("This node is not a swarm manager.")
        local = state["local"]
        local["node_addr"] = flags["advertise-addr"][0]
        local["data_path_addr"] = flags["data-path-addr"][0]
        local["force_new_cluster"] = local.get("force_new_cluster", 0) + 1
        # The raft membership is this manager alone afterwards.
        for node_id, node in state["nodes"].items():
            if node_id != local["node_id"] and node.get("manager_status"):
                node["manager_status"] = "Unreachable"
        save(state)
        print(local["node_id"])
    elif command == ["node", "inspect"]:
        print(node_inspect(state, fmt, positional[0]))
    elif command == ["node", "update"]:
        node_update(state, flags, positional[0])
    elif command == ["node", "ps"]:
        if fmt != "{{.Name}} {{.CurrentState}}":
            unknown(args)
        sys.stdout.write(node_ps(state, positional[0]))
    elif command == ["node", "ls"]:
        if flags.get("filter") != ["role=manager"]:
            unknown(args)
        for node_id, node in managers(state):
            print(node_id if "quiet" in flags else f"{node_id} {node['manager_status']}")
    elif command == ["node", "demote"]:
        node_demote(state, positional[0])
    elif command == ["node", "rm"]:
        node_rm(state, flags, positional[0])
    else:
        unknown(args)


def ip(args: list[str]) -> None:
    if args != ["-o", "-4", "addr", "show"]:
        unknown(["ip", *args])
    state = load()
    state["ip_listings"] = state.get("ip_listings", 0) + 1
    save(state)
    print("1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever")
    print("2: eth0    inet 198.51.100.20/32 metric 100 scope global dynamic eth0\\       valid_lft 86000sec")
    after = state.get("address_after", 0)
    if after >= 0 and state["ip_listings"] > after:
        for number, address in enumerate(state.get("addresses", []), start=3):
            print(f"{number}: enp7s0    inet {address}/32 brd {address} scope global dynamic enp7s0\\  valid_lft 1s")


def main() -> None:
    name, *args = sys.argv[1:]
    with open(os.environ["SWARM_REPLAY"] + ".calls", "a") as log:
        log.write(json.dumps([name, *args]) + "\n")
    if name == "docker":
        docker(args)
    elif name == "ip":
        ip(args)
    else:
        unknown([name, *args])


if __name__ == "__main__":
    main()
